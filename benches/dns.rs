//! Criterion benches of the DNS engine as the daemon runs it, without sockets: one query in,
//! one answer out, against the zone of 10,000 bindings (A, PTR, NXDOMAIN with authority) and
//! the cache; and building that zone, which every reload does. See BENCHMARKS.md.

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};

use netnode::dns::{Decision, Engine, RxMeta, Waiter, Zone};
use netnode::table::build;

mod support;

/// A query for `name` (dotted) of type `qtype`, with EDNS as cloud images' resolvers send it.
fn query(name: &str, qtype: u16) -> Vec<u8> {
    let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 1];
    for label in name.split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.push(0);
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&[0, 1, 0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 0]);
    q
}

/// An upstream's answer to a forwarded query: its id and question, one A record, TTL 300.
fn upstream_answer(forwarded: &[u8]) -> Vec<u8> {
    // The forwarded query ends with its 11-byte OPT record; the answer has none.
    let mut r = forwarded[..forwarded.len() - 11].to_vec();
    r[2..12].copy_from_slice(&[0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0]);
    r.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 1, 44, 0, 4, 198, 19, 0, 7]);
    r
}

fn dns(c: &mut Criterion) {
    let (_dir, config) = support::config_with(
        10_000,
        "cidr_v6 = \"fd00:1::/64\"\n[dns]\nno_resolv = true\nservers = [\"198.18.5.53\"]\nclient_rate = 0\n",
    );
    let table = build::from_config(&config, Path::new("bench.toml")).unwrap();
    let zone = Arc::new(Zone::build(&table));
    let mut e = Engine::new(zone, Arc::new(table.dns.clone().unwrap()), [1; 32]);
    let from = "198.18.0.20:40000".parse().unwrap();
    let rx = RxMeta {
        from,
        waiter: Waiter::Udp {
            socket: 0,
            addr: from,
        },
    };
    let now = Duration::from_secs(1);
    let mut out = Vec::with_capacity(512);
    // Fill the cache with one forwarded name.
    let www = query("www.example.com", 1);
    let Decision::Forward(f) = e.handle(rx, &www, now, &mut out) else {
        panic!("www.example.com is forwarded");
    };
    let settled = e.handle_upstream(f.token, f.server, &upstream_answer(&f.query), now);
    assert_eq!(settled.deliveries.len(), 1);

    let mut g = c.benchmark_group("dns");
    g.throughput(Throughput::Elements(1));
    for (label, q) in [
        ("local_a", query("vm-5000.novalocal", 1)),
        ("local_ptr", query("146.19.18.198.in-addr.arpa", 12)),
        ("authority_nxdomain", query("nobody.novalocal", 1)),
        ("cache_hit", www.clone()),
    ] {
        g.bench_function(label, |b| {
            b.iter(|| {
                let d = e.handle(rx, black_box(&q), now, &mut out);
                assert_eq!(d, Decision::Reply);
                black_box(out.len())
            })
        });
    }
    g.finish();
    let mut g = c.benchmark_group("dns_zone");
    g.sample_size(10);
    g.bench_function("build_10k_bindings", |b| {
        b.iter(|| black_box(Zone::build(&table).len()))
    });
    g.finish();
}

criterion_group!(benches, dns);
criterion_main!(benches);
