//! Engine scenarios without root: a simulated network with a virtual clock. A client
//! builds requests, the real engine decides, replies are decoded and leases applied to a map,
//! and the assertions are on values and counters.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::path::Path;

use dhcproto::v4::{DhcpOption, Message, MessageType, OptionCode};
use dhcproto::{Decodable, Decoder};

use super::engine::{Decision, Destination, Engine, RxMeta};
use super::lease::{Lease, LeaseChange};
use super::stats::{DropReason, Message as Counted};
use super::wire::{RequestBuilder, WireError};
use crate::table::config::ConfigFile;
use crate::table::{build, MacAddr, Table};

const CONFIG: &str = r#"
[[network]]
name = "vmnet"
bridge = "br100"
cidr = "198.18.0.0/24"
gateway = "198.18.0.1"
lease_time = "120s"
domain = "novalocal"
dns_servers = ["198.18.0.53"]
mtu = 1450
[[network.host]]
mac = "fa:16:3e:00:00:01"
ip = "198.18.0.10"
hostname = "web-1"
[[network.host]]
mac = "fa:16:3e:00:00:02"
ip = "198.18.0.11"
hostname = "db"
lease_time = "infinite"
client_id = "01:fa:16:3e:00:00:02"
[[network.host]]
mac = "fa:16:3e:00:00:03"
ip = "198.18.0.12"
ignore = true

[[network]]
name = "remote"
bridge = "br200"
cidr = "198.19.5.0/24"
gateway = "198.19.5.1"
server_address = "198.19.5.2"
[[network.host]]
mac = "fa:16:3e:00:05:01"
ip = "198.19.5.20"
hostname = "far"
"#;

const WEB: MacAddr = MacAddr([0xfa, 0x16, 0x3e, 0, 0, 1]);
const DB: MacAddr = MacAddr([0xfa, 0x16, 0x3e, 0, 0, 2]);
const IGNORED: MacAddr = MacAddr([0xfa, 0x16, 0x3e, 0, 0, 3]);
const FAR: MacAddr = MacAddr([0xfa, 0x16, 0x3e, 0, 5, 1]);
const STRANGER: MacAddr = MacAddr([0xfa, 0x16, 0x3e, 9, 9, 9]);
const SERVER: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const WEB_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 10);

/// The simulated network: a table, one engine, a lease map and a clock.
struct Sim {
    table: Table,
    engine: Engine,
    leases: HashMap<Ipv4Addr, Lease>,
    now: u64,
}

impl Sim {
    fn new() -> Sim {
        let config = ConfigFile::parse(CONFIG).unwrap();
        let table = build::from_config(&config, Path::new("sim.toml")).unwrap();
        assert!(table.problems.is_empty(), "{:?}", table.problems);
        Sim {
            table,
            engine: Engine::new(),
            leases: HashMap::new(),
            now: 1_000_000,
        }
    }

    fn send(&mut self, packet: Vec<u8>) -> Decision {
        self.send_on("br100", packet)
    }

    fn send_on(&mut self, bridge: &str, packet: Vec<u8>) -> Decision {
        let d = self
            .engine
            .handle(&self.table, RxMeta { bridge }, &packet, self.now);
        match &d {
            Decision::Reply {
                lease: Some(change),
                ..
            }
            | Decision::Record(change) => self.apply(change),
            _ => {}
        }
        d
    }

    fn apply(&mut self, change: &LeaseChange) {
        match change {
            LeaseChange::Grant(l) => {
                self.leases.insert(l.key(), l.clone());
            }
            other => {
                self.leases.remove(&other.key());
            }
        }
    }

    fn active(&self, mac: MacAddr) -> Option<&Lease> {
        self.leases
            .values()
            .find(|l| l.mac == mac && l.is_active(self.now))
    }
}

fn reply(d: &Decision) -> (MessageType, Destination, Message) {
    match d {
        Decision::Reply { kind, transmit, .. } => {
            assert!(transmit.payload.len() >= 300, "padded to 300 bytes");
            let m = Message::decode(&mut Decoder::new(&transmit.payload)).unwrap();
            (*kind, transmit.to, m)
        }
        other => panic!("expected a reply, got {other:?}"),
    }
}

fn opt(m: &Message, code: u8) -> Option<&DhcpOption> {
    m.opts().get(OptionCode::from(code))
}

fn discover(mac: MacAddr) -> RequestBuilder {
    RequestBuilder::new(MessageType::Discover, mac, 0x1234)
}

fn request(mac: MacAddr) -> RequestBuilder {
    RequestBuilder::new(MessageType::Request, mac, 0x1234)
}

#[test]
fn full_dora_gives_exactly_the_binding() {
    let mut sim = Sim::new();
    let (kind, to, offer) = reply(&sim.send(discover(WEB).build()));
    assert_eq!(kind, MessageType::Offer);
    assert_eq!(
        to,
        Destination::Hardware {
            ip: WEB_IP,
            mac: WEB
        },
        "broadcast flag clear: unicast to chaddr"
    );
    assert_eq!(offer.yiaddr(), WEB_IP);
    assert_eq!(offer.xid(), 0x1234);
    assert!(sim.leases.is_empty(), "an OFFER grants nothing");

    let (kind, _, ack) = reply(
        &sim.send(
            request(WEB)
                .option(50, &WEB_IP.octets())
                .option(54, &SERVER.octets())
                .build(),
        ),
    );
    assert_eq!(kind, MessageType::Ack);
    assert_eq!(ack.yiaddr(), WEB_IP);
    assert_eq!(
        opt(&ack, 1),
        Some(&DhcpOption::SubnetMask(Ipv4Addr::new(255, 255, 255, 0)))
    );
    assert_eq!(opt(&ack, 3), Some(&DhcpOption::Router(vec![SERVER])));
    assert_eq!(
        opt(&ack, 6),
        Some(&DhcpOption::DomainNameServer(vec![Ipv4Addr::new(
            198, 18, 0, 53
        )]))
    );
    assert_eq!(opt(&ack, 12), Some(&DhcpOption::Hostname("web-1".into())));
    assert_eq!(
        opt(&ack, 15),
        Some(&DhcpOption::DomainName("novalocal".into()))
    );
    assert_eq!(opt(&ack, 26), Some(&DhcpOption::InterfaceMtu(1450)));
    assert_eq!(
        opt(&ack, 28),
        Some(&DhcpOption::BroadcastAddr(Ipv4Addr::new(198, 18, 0, 255)))
    );
    assert_eq!(opt(&ack, 51), Some(&DhcpOption::AddressLeaseTime(120)));
    assert_eq!(opt(&ack, 54), Some(&DhcpOption::ServerIdentifier(SERVER)));
    assert_eq!(opt(&ack, 58), Some(&DhcpOption::Renewal(60)));
    assert_eq!(opt(&ack, 59), Some(&DhcpOption::Rebinding(105)));
    assert_eq!(sim.active(WEB).unwrap().expires, Some(sim.now + 120));
    let s = sim.engine.stats();
    assert_eq!(
        [
            Counted::Discover,
            Counted::Request,
            Counted::Offer,
            Counted::Ack
        ]
        .map(|m| s.messages(m)),
        [1, 1, 1, 1]
    );
}

#[test]
fn the_broadcast_flag_gets_a_broadcast_reply() {
    let mut sim = Sim::new();
    let (_, to, _) = reply(&sim.send(discover(WEB).broadcast().build()));
    assert_eq!(to, Destination::Broadcast);
}

#[test]
fn unknown_and_ignored_clients_get_nothing_and_are_counted() {
    let mut sim = Sim::new();
    assert_eq!(
        sim.send(discover(STRANGER).build()),
        Decision::Drop(DropReason::UnknownClient)
    );
    assert_eq!(
        sim.send(request(STRANGER).option(50, &WEB_IP.octets()).build()),
        Decision::Drop(DropReason::UnknownClient)
    );
    assert_eq!(
        sim.send(discover(IGNORED).build()),
        Decision::Drop(DropReason::IgnoredClient)
    );
    assert_eq!(
        sim.send_on("br999", discover(WEB).build()),
        Decision::Drop(DropReason::NoNetwork)
    );
    let s = sim.engine.stats();
    assert_eq!(s.dropped(DropReason::UnknownClient), 2);
    assert_eq!(s.dropped(DropReason::IgnoredClient), 1);
    assert_eq!(s.dropped(DropReason::NoNetwork), 1);
    assert_eq!(
        s.messages(Counted::Offer) + s.messages(Counted::Ack) + s.messages(Counted::Nak),
        0
    );
}

#[test]
fn a_request_naming_another_server_is_ignored() {
    let mut sim = Sim::new();
    let other = Ipv4Addr::new(198, 18, 0, 99);
    let d = sim.send(
        request(WEB)
            .option(50, &WEB_IP.octets())
            .option(54, &other.octets())
            .build(),
    );
    assert_eq!(d, Decision::Drop(DropReason::OtherServer));
}

#[test]
fn requests_for_another_address_are_naked_in_every_state() {
    let mut sim = Sim::new();
    let wrong = Ipv4Addr::new(198, 18, 0, 77);
    let selecting = request(WEB)
        .option(50, &wrong.octets())
        .option(54, &SERVER.octets())
        .build();
    let init_reboot = request(WEB).option(50, &wrong.octets()).build();
    let renewing = request(WEB).ciaddr(wrong).build();
    for packet in [selecting, init_reboot, renewing] {
        let (kind, to, nak) = reply(&sim.send(packet));
        assert_eq!(kind, MessageType::Nak);
        assert_eq!(to, Destination::Broadcast);
        assert_eq!(
            nak.yiaddr(),
            Ipv4Addr::UNSPECIFIED,
            "a NAK never carries an address"
        );
        assert!(opt(&nak, 51).is_none());
    }
    assert_eq!(sim.engine.stats().messages(Counted::Nak), 3);
    assert!(sim.leases.is_empty());
    // A REQUEST that fits no state is malformed, not NAKed.
    assert_eq!(
        sim.send(request(WEB).build()),
        Decision::Drop(DropReason::BadRequest)
    );
}

#[test]
fn init_reboot_renew_and_rebind_keep_the_address_and_extend_the_lease() {
    let mut sim = Sim::new();
    let (kind, to, _) = reply(&sim.send(request(WEB).option(50, &WEB_IP.octets()).build()));
    assert_eq!(
        (kind, to),
        (
            MessageType::Ack,
            Destination::Hardware {
                ip: WEB_IP,
                mac: WEB
            }
        )
    );
    let first = sim.active(WEB).unwrap().expires.unwrap();

    sim.now += 60; // T1: RENEWING, unicast from its address
    let (kind, to, ack) = reply(&sim.send(request(WEB).ciaddr(WEB_IP).build()));
    assert_eq!((kind, to), (MessageType::Ack, Destination::Client(WEB_IP)));
    assert_eq!(ack.ciaddr(), WEB_IP);
    assert_eq!(ack.yiaddr(), WEB_IP);
    assert_eq!(sim.active(WEB).unwrap().expires, Some(first + 60));

    sim.now += 45; // T2: REBINDING, broadcast
    let (kind, to, _) = reply(&sim.send(request(WEB).ciaddr(WEB_IP).broadcast().build()));
    assert_eq!((kind, to), (MessageType::Ack, Destination::Client(WEB_IP)));

    sim.now += 121; // no renewal: the lease lapses
    assert!(sim.active(WEB).is_none());
}

#[test]
fn relayed_requests_use_the_giaddr_network_and_echo_option_82() {
    let mut sim = Sim::new();
    let giaddr = Ipv4Addr::new(198, 19, 5, 1);
    let relay_info = [1, 4, b'p', b'o', b'r', b't'];
    let packet = discover(FAR)
        .relayed_by(giaddr)
        .option(82, &relay_info)
        .build();
    let (kind, to, offer) = {
        // Arriving on another bridge, a giaddr cannot reach this network's bindings.
        assert_eq!(
            sim.send(packet.clone()),
            Decision::Drop(DropReason::NoNetwork)
        );
        reply(&sim.send_on("br200", packet))
    };
    assert_eq!(kind, MessageType::Offer);
    assert_eq!(to, Destination::Relay(giaddr));
    assert_eq!(offer.giaddr(), giaddr);
    assert_eq!(offer.yiaddr(), Ipv4Addr::new(198, 19, 5, 20));
    assert_eq!(
        opt(&offer, 54),
        Some(&DhcpOption::ServerIdentifier(Ipv4Addr::new(198, 19, 5, 2)))
    );
    let raw = match sim.send_on(
        "br200",
        discover(FAR)
            .relayed_by(giaddr)
            .option(82, &relay_info)
            .build(),
    ) {
        Decision::Reply { transmit, .. } => transmit.payload,
        other => panic!("{other:?}"),
    };
    assert!(raw
        .windows(8)
        .any(|w| w == [82, 6, 1, 4, b'p', b'o', b'r', b't']));
    // A client of another network cannot be served through this relay.
    assert_eq!(
        sim.send_on("br200", discover(WEB).relayed_by(giaddr).build()),
        Decision::Drop(DropReason::UnknownClient)
    );
    assert_eq!(
        sim.send_on(
            "br200",
            discover(FAR)
                .relayed_by(Ipv4Addr::new(198, 20, 0, 1))
                .build()
        ),
        Decision::Drop(DropReason::NoNetwork)
    );
    // A NAK through a relay goes to the relay with the broadcast bit set.
    let (kind, to, nak) = reply(
        &sim.send_on(
            "br200",
            request(FAR)
                .relayed_by(giaddr)
                .option(50, &[198, 19, 5, 99])
                .build(),
        ),
    );
    assert_eq!((kind, to), (MessageType::Nak, Destination::Relay(giaddr)));
    assert!(nak.flags().broadcast());
}

#[test]
fn release_and_decline_end_the_lease() {
    let mut sim = Sim::new();
    let _ = sim.send(request(WEB).option(50, &WEB_IP.octets()).build());
    assert!(sim.active(WEB).is_some());
    let wrong = RequestBuilder::new(MessageType::Release, WEB, 1)
        .ciaddr(Ipv4Addr::new(198, 18, 0, 77))
        .build();
    assert_eq!(sim.send(wrong), Decision::Drop(DropReason::NotItsAddress));
    let release = RequestBuilder::new(MessageType::Release, WEB, 1)
        .ciaddr(WEB_IP)
        .option(54, &SERVER.octets())
        .build();
    assert_eq!(
        sim.send(release),
        Decision::Record(LeaseChange::Release {
            mac: WEB,
            ip: WEB_IP
        })
    );
    assert!(sim.active(WEB).is_none());

    let _ = sim.send(request(WEB).option(50, &WEB_IP.octets()).build());
    let decline = RequestBuilder::new(MessageType::Decline, WEB, 1)
        .option(50, &WEB_IP.octets())
        .option(54, &SERVER.octets())
        .build();
    assert_eq!(
        sim.send(decline),
        Decision::Record(LeaseChange::Decline {
            mac: WEB,
            ip: WEB_IP
        })
    );
    assert!(sim.active(WEB).is_none());
    assert_eq!(sim.engine.stats().leases_ended, 2);
}

#[test]
fn inform_gets_options_but_no_address_or_lease() {
    let mut sim = Sim::new();
    let (kind, to, ack) = reply(
        &sim.send(
            RequestBuilder::new(MessageType::Inform, WEB, 5)
                .ciaddr(WEB_IP)
                .build(),
        ),
    );
    assert_eq!((kind, to), (MessageType::Ack, Destination::Client(WEB_IP)));
    assert_eq!(ack.yiaddr(), Ipv4Addr::UNSPECIFIED);
    assert!(opt(&ack, 51).is_none() && opt(&ack, 58).is_none());
    assert!(opt(&ack, 3).is_some());
    assert!(sim.leases.is_empty(), "INFORM grants no lease");
}

#[test]
fn client_ids_and_per_host_infinite_leases() {
    let mut sim = Sim::new();
    let id = [1, 0xfa, 0x16, 0x3e, 0, 0, 2];
    let (_, _, ack) = reply(
        &sim.send(
            request(DB)
                .option(61, &id)
                .option(50, &[198, 18, 0, 11])
                .build(),
        ),
    );
    assert_eq!(opt(&ack, 51), Some(&DhcpOption::AddressLeaseTime(u32::MAX)));
    assert!(opt(&ack, 58).is_none(), "no T1 for an infinite lease");
    assert_eq!(sim.active(DB).unwrap().expires, None);
    assert_eq!(sim.active(DB).unwrap().client_id.as_deref(), Some(&id[..]));
    // The same MAC with a different client id is a different client, and unknown.
    assert_eq!(
        sim.send(discover(DB).option(61, &[9, 9]).build()),
        Decision::Drop(DropReason::UnknownClient)
    );
    // Others are unaffected: web-1 is still offered its own address, and db with its own id
    // is still answered with its address and keeps its lease.
    let (kind, _, offer) = reply(&sim.send(discover(WEB).build()));
    assert_eq!((kind, offer.yiaddr()), (MessageType::Offer, WEB_IP));
    let (kind, _, offer) = reply(&sim.send(discover(DB).option(61, &id).build()));
    assert_eq!(
        (kind, offer.yiaddr()),
        (MessageType::Offer, Ipv4Addr::new(198, 18, 0, 11))
    );
    assert_eq!(sim.active(DB).unwrap().client_id.as_deref(), Some(&id[..]));
}

#[test]
fn malformed_packets_are_counted_by_reason() {
    let mut sim = Sim::new();
    assert_eq!(
        sim.send(vec![1; 10]),
        Decision::Drop(DropReason::Malformed(WireError::Truncated))
    );
    let mut reply_op = discover(WEB).build();
    reply_op[0] = 2;
    assert_eq!(
        sim.send(reply_op),
        Decision::Drop(DropReason::Malformed(WireError::NotRequest))
    );
    let offer_from_client = RequestBuilder::new(MessageType::Offer, WEB, 1).build();
    assert_eq!(
        sim.send(offer_from_client),
        Decision::Drop(DropReason::UnexpectedMessageType)
    );
    let s = sim.engine.stats();
    assert_eq!(s.received, 3);
    assert_eq!(s.dropped_total(), 3);
    assert!(s.to_string().contains("drop.truncated=1"), "{s}");
}

#[test]
fn a_reload_serves_new_bindings_to_the_same_engine() {
    let mut sim = Sim::new();
    assert_eq!(
        sim.send(discover(STRANGER).build()),
        Decision::Drop(DropReason::UnknownClient)
    );
    let text = format!("{CONFIG}\n[[network]]\nname = \"late\"\nbridge = \"br100\"\ncidr = \"198.18.9.0/24\"\n[[network.host]]\nmac = \"{STRANGER}\"\nip = \"198.18.9.9\"\n");
    sim.table =
        build::from_config(&ConfigFile::parse(&text).unwrap(), Path::new("sim.toml")).unwrap();
    let (kind, _, offer) = reply(&sim.send(discover(STRANGER).build()));
    assert_eq!(kind, MessageType::Offer);
    assert_eq!(offer.yiaddr(), Ipv4Addr::new(198, 18, 9, 9));
    assert_eq!(
        opt(&offer, 54),
        Some(&DhcpOption::ServerIdentifier(Ipv4Addr::new(198, 18, 9, 1)))
    );
}

#[test]
fn a_flood_from_one_mac_is_rate_limited_per_second() {
    let mut sim = Sim::new();
    let mut answered = 0;
    for _ in 0..100 {
        if matches!(sim.send(discover(WEB).build()), Decision::Reply { .. }) {
            answered += 1;
        }
    }
    assert_eq!(answered, super::engine::PER_CLIENT_PER_SECOND);
    assert_eq!(
        sim.engine.stats().dropped(DropReason::RateLimited),
        100 - u64::from(super::engine::PER_CLIENT_PER_SECOND)
    );
    // Others are not affected, and the next second brings a new allowance.
    assert!(matches!(
        sim.send(
            discover(FAR)
                .relayed_by(Ipv4Addr::new(198, 19, 5, 1))
                .build()
        ),
        Decision::Drop(DropReason::NoNetwork)
    ));
    sim.now += 1;
    assert!(matches!(
        sim.send(discover(WEB).build()),
        Decision::Reply { .. }
    ));
}

struct Held(MacAddr, Ipv4Addr);

impl super::engine::LeaseView for Held {
    fn holder(&self, ip: Ipv4Addr) -> Option<MacAddr> {
        (ip == self.1).then_some(self.0)
    }
}

#[test]
fn a_release_after_the_binding_left_the_table_still_ends_the_lease() {
    let mut sim = Sim::new();
    // nova: the host leaves the hosts file (a reload), then dhcp_release sends the RELEASE.
    let text = CONFIG.replace(
        "mac = \"fa:16:3e:00:00:01\"\nip = \"198.18.0.10\"\nhostname = \"web-1\"\n",
        "mac = \"fa:16:3e:00:00:0a\"\nip = \"198.18.0.40\"\n",
    );
    sim.table =
        build::from_config(&ConfigFile::parse(&text).unwrap(), Path::new("sim.toml")).unwrap();
    let release = RequestBuilder::new(MessageType::Release, WEB, 1)
        .ciaddr(WEB_IP)
        .option(54, &SERVER.octets())
        .build();
    let rx = RxMeta { bridge: "br100" };
    let held = Held(WEB, WEB_IP);
    assert_eq!(
        sim.engine
            .handle_with_leases(&sim.table, rx, &release, sim.now, &held),
        Decision::Record(LeaseChange::Release {
            mac: WEB,
            ip: WEB_IP
        })
    );
    // Not the holder, or no lease, or another bridge: nothing.
    let other = Held(STRANGER, WEB_IP);
    assert_eq!(
        sim.engine
            .handle_with_leases(&sim.table, rx, &release, sim.now, &other),
        Decision::Drop(DropReason::UnknownClient)
    );
    assert_eq!(
        sim.engine.handle(&sim.table, rx, &release, sim.now),
        Decision::Drop(DropReason::UnknownClient)
    );
    assert_eq!(
        sim.engine.handle_with_leases(
            &sim.table,
            RxMeta { bridge: "br200" },
            &release,
            sim.now,
            &held
        ),
        Decision::Drop(DropReason::UnknownClient)
    );
}
