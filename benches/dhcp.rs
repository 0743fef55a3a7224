//! Criterion benches of the DHCP engine as the daemon runs it: decode + decide + encode of one
//! DISCOVER and one REQUEST, the journal codec, and hosts-file parsing. See BENCHMARKS.md.

use std::hint::black_box;
use std::net::Ipv4Addr;
use std::path::Path;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use dhcproto::v4::MessageType;

use netnode::dhcp::wire::RequestBuilder;
use netnode::dhcp::{journal, Engine, Lease, LeaseChange, RxMeta};
use netnode::table::config::ConfigFile;
use netnode::table::{build, hosts, MacAddr, Table};

fn mac(i: u32) -> MacAddr {
    let b = i.to_be_bytes();
    MacAddr([0xfa, 0x16, b[0], b[1], b[2], b[3]])
}

fn hosts_text(n: u32) -> String {
    (0..n)
        .map(|i| {
            format!(
                "{},vm-{i}.novalocal,{}\n",
                mac(i),
                Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 18, 0, 10)) + i)
            )
        })
        .collect()
}

fn table(n: u32) -> Table {
    let dir = std::env::temp_dir().join(format!("netnode-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let hosts = dir.join("hosts");
    std::fs::write(&hosts, hosts_text(n)).unwrap();
    let text = format!("[[network]]\nname = \"vmnet\"\nbridge = \"br100\"\ncidr = \"198.18.0.0/15\"\ngateway = \"198.18.0.1\"\nlease_time = \"120s\"\ndomain = \"novalocal\"\nhosts_file = {hosts:?}\n");
    let t =
        build::from_config(&ConfigFile::parse(&text).unwrap(), Path::new("bench.toml")).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    t
}

fn engine(c: &mut Criterion) {
    let table = table(1000);
    let prl = [1, 3, 6, 12, 15, 26, 28, 42, 51, 54, 58, 59, 119, 121];
    let discover = RequestBuilder::new(MessageType::Discover, mac(500), 7)
        .option(55, &prl)
        .option(57, &1500u16.to_be_bytes())
        .build();
    let request = RequestBuilder::new(MessageType::Request, mac(500), 7)
        .option(55, &prl)
        .option(50, &Ipv4Addr::new(198, 18, 1, 254).octets())
        .option(54, &Ipv4Addr::new(198, 18, 0, 1).octets())
        .build();
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
    g.bench_function("hosts_file_100k_parse_and_build", |b| {
        b.iter(|| black_box(table(100_000)))
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
