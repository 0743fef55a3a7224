//! Criterion benches of the DHCP engine as the daemon runs it: decode + decide + encode of one
//! DISCOVER and one REQUEST, the journal codec, and hosts-file parsing. See BENCHMARKS.md.

use std::hint::black_box;
use std::net::Ipv4Addr;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};

use netnode::dhcp::{journal, Engine, Lease, LeaseChange, RxMeta};
use std::path::Path;

use netnode::table::{build, hosts};

mod support;
use support::{discover, hosts_text, mac, request, table};

fn engine(c: &mut Criterion) {
    let table = table(1000);
    let discover = discover(500, 7);
    let request = request(500, 7);
    let mut g = c.benchmark_group("engine");
    g.throughput(Throughput::Elements(1));
    let mut e = Engine::new();
    let rx = RxMeta { bridge: "br100" };
    // The clock advances a second per request, so the per-client rate limit (16 a second)
    // never turns the measured path into a drop.
    let mut now = 1_000_000u64;
    g.bench_function("discover_to_offer", |b| {
        b.iter(|| {
            now += 1;
            let d = e.handle(&table, rx, black_box(&discover), now);
            assert!(matches!(d, netnode::dhcp::Decision::Reply { .. }));
            black_box(d)
        })
    });
    g.bench_function("request_to_ack", |b| {
        b.iter(|| {
            now += 1;
            let d = e.handle(&table, rx, black_box(&request), now);
            assert!(matches!(d, netnode::dhcp::Decision::Reply { .. }));
            black_box(d)
        })
    });
    g.finish();
}

fn journal_codec(c: &mut Criterion) {
    let change = LeaseChange::Grant(Lease {
        mac: mac(1),
        ip: Ipv4Addr::new(198, 18, 0, 10),
        expires: Some(1_700_000_000),
        hostname: Some("vm-1".into()),
        client_id: None,
    });
    let mut buf = Vec::with_capacity(128);
    c.bench_function("journal_encode", |b| {
        b.iter(|| {
            buf.clear();
            journal::encode(black_box(&change), &mut buf);
        })
    });
}

fn parsing(c: &mut Criterion) {
    let text = hosts_text(10_000);
    let mut g = c.benchmark_group("hosts_file");
    g.throughput(Throughput::Elements(10_000));
    g.sample_size(20);
    g.bench_function("parse_10k_lines", |b| {
        b.iter(|| black_box(hosts::parse("bench", black_box(&text))))
    });
    g.finish();
}

/// 1M-binding runs only when benchmarking (`cargo bench`), not in `cargo test`'s single pass.
fn sizes() -> Vec<u32> {
    let mut out = vec![1_000, 100_000];
    if std::env::args().any(|a| a == "--bench") {
        out.push(1_000_000);
    }
    out
}

fn lookups(c: &mut Criterion) {
    let mut g = c.benchmark_group("table_lookup");
    g.throughput(Throughput::Elements(1));
    for n in sizes() {
        let t = table(n);
        let net = &t.networks[0];
        let mut i = 0u32;
        g.bench_function(format!("{n}_bindings"), |b| {
            b.iter(|| {
                i = (i + 7919) % n;
                black_box(net.binding(mac(i), None))
            })
        });
    }
    g.finish();
}

fn snapshot_build(c: &mut Criterion) {
    let mut g = c.benchmark_group("snapshot");
    g.sample_size(10);
    g.throughput(Throughput::Elements(100_000));
    // The file is written once; each iteration reads and parses it and builds the table.
    let (_dir, config) = support::config(100_000);
    g.bench_function("hosts_file_100k_parse_and_build", |b| {
        b.iter(|| black_box(build::from_config(&config, Path::new("bench.toml")).unwrap()))
    });
    g.finish();
}

fn journal_append(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = netnode::dhcp::LeaseStore::open(dir.path(), false, None, 0).unwrap();
    let mut n = 0u32;
    c.bench_function("journal_append_no_fsync", |b| {
        b.iter(|| {
            n = n.wrapping_add(1);
            let change = LeaseChange::Grant(Lease {
                mac: mac(n),
                ip: Ipv4Addr::from(n),
                expires: Some(1_700_000_000),
                hostname: Some("vm".into()),
                client_id: None,
            });
            store.commit(std::slice::from_ref(&change)).unwrap();
        })
    });
}

criterion_group!(
    benches,
    engine,
    journal_codec,
    parsing,
    lookups,
    snapshot_build,
    journal_append
);
criterion_main!(benches);
