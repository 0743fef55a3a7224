//! An upstream's reply, any bytes, to a forwarded query: believed or not, cached or not, the
//! engine never panics, and whatever it answers the client with decodes; the cached answer it
//! gives a second client decodes too.
#![no_main]
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use netnode::dns::{Decision, Engine, RxMeta, Waiter, Zone};
use netnode::table::{build, config::ConfigFile, Table};

fn table() -> &'static Table {
    static T: OnceLock<Table> = OnceLock::new();
    T.get_or_init(|| {
        let text = "[[network]]\nname = \"n\"\nbridge = \"br100\"\ncidr = \"198.18.0.0/24\"\n[dns]\nno_resolv = true\nservers = [\"198.18.5.53\"]\n";
        build::from_config(&ConfigFile::parse(text).unwrap(), std::path::Path::new("f.toml")).unwrap()
    })
}

const QUERY: &[u8] = &[0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 3, b'w', b'w', b'w', 7, b'e', b'x', b'a', b'm', b'p', b'l', b'e', 3, b'c', b'o', b'm', 0, 0, 1, 0, 1];

fuzz_target!(|data: &[u8]| {
    let t = table();
    let mut engine = Engine::new(Arc::new(Zone::build(t)), Arc::new(t.dns.clone().unwrap()), [1; 32]);
    let from = "198.18.0.10:5000".parse().unwrap();
    let rx = RxMeta { from, waiter: Waiter::Udp { socket: 0, addr: from } };
    let mut out = Vec::new();
    let Decision::Forward(f) = engine.handle(rx, QUERY, Duration::from_secs(1), &mut out) else {
        panic!("the query is forwarded");
    };
    // The fuzzer's bytes as the reply, with the id and question made right half the time so
    // that the cache path is reached.
    let mut reply = data.to_vec();
    if data.first().is_some_and(|b| b & 1 == 1) && reply.len() >= 12 {
        reply[..2].copy_from_slice(&f.query[..2]);
    }
    let r = engine.handle_upstream(f.token, f.server, &reply, Duration::from_secs(1));
    for d in &r.deliveries {
        hickory_proto::op::Message::from_vec(&d.bytes).expect("answers to clients decode");
    }
    let mut again = Vec::new();
    if engine.handle(rx, QUERY, Duration::from_secs(2), &mut again) == Decision::Reply {
        hickory_proto::op::Message::from_vec(&again).expect("cached answers decode");
    }
});
