//! The whole DHCP engine, bytes in, decision out, against a fixed table; checks the invariants
//! that must hold for any input: replies go to the requester, carry only its own binding, and a
//! NAK carries no address.
#![no_main]
use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::OnceLock;

use dhcproto::{Decodable, Decoder};
use libfuzzer_sys::fuzz_target;
use netnode::dhcp::{wire, Decision, Engine, RxMeta};
use netnode::table::{build, config::ConfigFile, MacAddr, Table};

fn table() -> &'static Table {
    static T: OnceLock<Table> = OnceLock::new();
    T.get_or_init(|| {
        let mut text = String::from("[[network]]\nname = \"n\"\nbridge = \"br100\"\ncidr = \"198.18.0.0/24\"\ngateway = \"198.18.0.1\"\ndomain = \"novalocal\"\nmtu = 1450\nroutes = [{ destination = \"198.19.0.0/16\", gateway = \"198.18.0.254\" }]\noptions = [\"option:ntp-server,198.18.0.1\", \"option:domain-search,a.example,b.example\", \"252,\\\"http://198.18.0.1/wpad\\\"\"]\n");
        for i in 0..4u8 {
            text.push_str(&format!("[[network.host]]\nmac = \"fa:16:3e:00:00:{i:02x}\"\nip = \"198.18.0.{}\"\nhostname = \"vm-{i}\"\n", 10 + i));
        }
        text.push_str("[[network.host]]\nmac = \"fa:16:3e:00:00:09\"\nip = \"198.18.0.99\"\nclient_id = \"01:02\"\nlease_time = \"infinite\"\n");
        build::from_config(&ConfigFile::parse(&text).unwrap(), Path::new("fuzz.toml")).unwrap()
    })
}

fuzz_target!(|data: &[u8]| {
    let table = table();
    let mut engine = Engine::new();
    let mac = data.get(28..34).and_then(MacAddr::from_slice);
    match engine.handle(table, RxMeta { bridge: "br100" }, data, 1_000_000) {
        Decision::Reply { kind, transmit, .. } => {
            let m = dhcproto::v4::Message::decode(&mut Decoder::new(&transmit.payload))
                .expect("replies decode");
            assert_eq!(Some(&m.chaddr()[..6]), mac.as_ref().map(|m| &m.0[..]));
            // The address given is exactly the binding of this client: its MAC, or the client
            // id it sent (a binding by client id may be reached from any MAC, never otherwise).
            let req = wire::parse(data).expect("a request that was answered parses");
            let own = table
                .networks
                .iter()
                .find_map(|n| n.binding(req.chaddr, req.client_id.as_deref()))
                .map(|b| b.ip);
            if kind == dhcproto::v4::MessageType::Nak {
                assert_eq!(m.yiaddr(), Ipv4Addr::UNSPECIFIED);
            } else if !m.yiaddr().is_unspecified() {
                assert_eq!(Some(m.yiaddr()), own);
            }
        }
        Decision::Record(_) | Decision::Drop(_) => {}
    }
});
