//! A query from a client, any bytes: the engine answers within the client's limit, never more
//! than it sent when it could not read it, and never panics; a readable answer echoes the id.
#![no_main]
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use netnode::dns::{Decision, Engine, RxMeta, Waiter, Zone};
use netnode::table::{build, config::ConfigFile, Table};

fn table() -> &'static Table {
    static T: OnceLock<Table> = OnceLock::new();
    T.get_or_init(|| {
        let text = "[[network]]\nname = \"n\"\nbridge = \"br100\"\ncidr = \"198.18.0.0/24\"\ndomain = \"novalocal\"\ncidr_v6 = \"fd00:1::/64\"\n[[network.host]]\nmac = \"fa:16:3e:00:00:01\"\nip = \"198.18.0.10\"\nhostname = \"vm-1\"\n[dns]\nno_resolv = true\nservers = [\"198.18.5.53\", \"/corp.example/198.18.6.53\"]\n";
        build::from_config(&ConfigFile::parse(text).unwrap(), std::path::Path::new("f.toml")).unwrap()
    })
}

fuzz_target!(|data: &[u8]| {
    let t = table();
    let mut engine = Engine::new(Arc::new(Zone::build(t)), Arc::new(t.dns.clone().unwrap()), [1; 32]);
    let from = "198.18.0.10:5000".parse().unwrap();
    let rx = RxMeta { from, waiter: Waiter::Udp { socket: 0, addr: from } };
    let mut out = Vec::new();
    match engine.handle(rx, data, Duration::from_secs(1), &mut out) {
        Decision::Reply => {
            assert!(out.len() >= 12);
            assert_eq!(out.get(..2), data.get(..2), "the id is echoed");
            let readable = netnode::dns::wire::parse_query(data).is_ok();
            if readable {
                assert!(out.len() <= 1232, "within the UDP limit");
                hickory_proto::op::Message::from_vec(&out).expect("answers decode");
            } else {
                assert!(out.len() <= data.len(), "never more than an unreadable query");
            }
        }
        Decision::Forward(f) => {
            netnode::dns::wire::parse_query(&f.query).expect("forwarded queries are queries");
        }
        Decision::Wait | Decision::Drop(_) => {}
    }
});
