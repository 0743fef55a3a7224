//! Property tests of the wire view and the engine's invariants over generated requests.

use std::net::Ipv4Addr;
use std::path::Path;

use dhcproto::v4::{Message, MessageType};
use dhcproto::{Decodable, Decoder};
use proptest::prelude::*;

use super::engine::{Decision, Destination, Engine, RxMeta};
use super::journal;
use super::lease::{Lease, LeaseChange};
use super::wire::{self, RequestBuilder};
use crate::table::config::ConfigFile;
use crate::table::{build, MacAddr, Table};

fn table() -> Table {
    let mut text = String::from("[[network]]\nname = \"n\"\nbridge = \"br100\"\ncidr = \"198.18.0.0/24\"\ngateway = \"198.18.0.1\"\n");
    for i in 0..8u8 {
        text.push_str(&format!(
            "[[network.host]]\nmac = \"fa:16:3e:00:00:{i:02x}\"\nip = \"198.18.0.{}\"\n",
            10 + i
        ));
    }
    text.push_str("[[network]]\nname = \"r\"\nbridge = \"br100\"\ncidr = \"198.19.0.0/24\"\n[[network.host]]\nmac = \"fa:16:3e:00:01:00\"\nip = \"198.19.0.10\"\n");
    build::from_config(&ConfigFile::parse(&text).unwrap(), Path::new("p.toml")).unwrap()
}

/// A MAC from the table most of the time, a stranger otherwise.
fn mac() -> impl Strategy<Value = MacAddr> {
    prop_oneof![
        4 => (0u8..8).prop_map(|i| MacAddr([0xfa, 0x16, 0x3e, 0, 0, i])),
        1 => Just(MacAddr([0xfa, 0x16, 0x3e, 0, 1, 0])),
        1 => any::<[u8; 6]>().prop_map(MacAddr),
    ]
}

/// Addresses that matter: bound ones, the server, strangers, zero.
fn addr() -> impl Strategy<Value = Ipv4Addr> {
    prop_oneof![
        (10u8..18).prop_map(|i| Ipv4Addr::new(198, 18, 0, i)),
        Just(Ipv4Addr::new(198, 18, 0, 1)),
        Just(Ipv4Addr::new(198, 19, 0, 10)),
        Just(Ipv4Addr::UNSPECIFIED),
        any::<u32>().prop_map(Ipv4Addr::from),
    ]
}

prop_compose! {
    fn request()(kind in 1u8..=8, mac in mac(), xid in any::<u32>(), ciaddr in addr(), giaddr in prop_oneof![3 => Just(Ipv4Addr::UNSPECIFIED), 1 => addr()],
                 broadcast in any::<bool>(), requested in proptest::option::of(addr()), server in proptest::option::of(addr()),
                 prl in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..20)), relay in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..40)))
        -> (MacAddr, Vec<u8>) {
        let mut b = RequestBuilder::new(MessageType::from(kind), mac, xid).ciaddr(ciaddr);
        if !giaddr.is_unspecified() { b = b.relayed_by(giaddr); }
        if broadcast { b = b.broadcast(); }
        if let Some(ip) = requested { b = b.option(50, &ip.octets()); }
        if let Some(ip) = server { b = b.option(54, &ip.octets()); }
        if let Some(p) = &prl { b = b.option(55, p); }
        if let Some(r) = &relay { b = b.option(82, r); }
        (mac, b.build())
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn the_wire_view_reads_back_what_was_built(kind in 1u8..=8, mac in any::<[u8; 6]>(), xid in any::<u32>(), ciaddr in any::<u32>(), giaddr in any::<u32>(), id in proptest::collection::vec(any::<u8>(), 0..300)) {
        let giaddr = Ipv4Addr::from(giaddr);
        let mut b = RequestBuilder::new(MessageType::from(kind), MacAddr(mac), xid).ciaddr(Ipv4Addr::from(ciaddr));
        if !giaddr.is_unspecified() { b = b.relayed_by(giaddr); }
        // A client id longer than 255 bytes travels as two options (RFC 3396).
        for chunk in id.chunks(255) { b = b.option(61, chunk); }
        let bytes = b.build();
        let r = wire::parse(&bytes).unwrap();
        prop_assert_eq!(r.message_type, MessageType::from(kind));
        prop_assert_eq!(r.chaddr, MacAddr(mac));
        prop_assert_eq!(r.xid, xid);
        prop_assert_eq!(r.ciaddr, Ipv4Addr::from(ciaddr));
        prop_assert_eq!(r.giaddr, giaddr);
        prop_assert_eq!(r.client_id.as_deref().unwrap_or(&[]), &id[..]);
    }

    #[test]
    fn replies_only_ever_carry_the_clients_own_binding((mac, packet) in request(), now in 0u64..4) {
        let table = table();
        let mut engine = Engine::new();
        let decision = engine.handle(&table, RxMeta { bridge: "br100" }, &packet, now);
        let own = table.networks.iter().find_map(|n| n.binding(mac, None)).map(|b| b.ip);
        match decision {
            Decision::Reply { kind, transmit, lease } => {
                let m = Message::decode(&mut Decoder::new(&transmit.payload)).unwrap();
                prop_assert_eq!(&m.chaddr()[..6], &mac.0[..], "the reply is addressed to the requester");
                prop_assert!(transmit.payload.len() >= 300);
                if kind == MessageType::Nak {
                    prop_assert_eq!(m.yiaddr(), Ipv4Addr::UNSPECIFIED, "a NAK never carries an address");
                    prop_assert!(lease.is_none());
                } else {
                    prop_assert!(m.yiaddr().is_unspecified() || Some(m.yiaddr()) == own, "{} is not {:?}", m.yiaddr(), own);
                }
                if let Destination::Hardware { mac: to, ip } = transmit.to {
                    prop_assert_eq!(to, mac);
                    prop_assert_eq!(Some(ip), own);
                }
                if let Some(LeaseChange::Grant(l)) = lease {
                    prop_assert_eq!(l.mac, mac);
                    prop_assert_eq!(Some(l.ip), own);
                }
            }
            Decision::Record(change) => {
                let (LeaseChange::Release { mac: m, ip } | LeaseChange::Decline { mac: m, ip }) = change else {
                    return Err(TestCaseError::fail("a grant without a reply"));
                };
                prop_assert_eq!(m, mac);
                prop_assert_eq!(Some(ip), own);
            }
            Decision::Drop(_) => {}
        }
    }

    #[test]
    fn any_bytes_are_decided_without_panicking(bytes in proptest::collection::vec(any::<u8>(), 0..700)) {
        let table = table();
        let mut engine = Engine::new();
        let _ = engine.handle(&table, RxMeta { bridge: "br100" }, &bytes, 0);
        // The same bytes behind a valid header and cookie reach the option walker.
        let mut framed = RequestBuilder::new(MessageType::Discover, MacAddr([0xfa, 0x16, 0x3e, 0, 0, 1]), 1).build();
        framed.pop();
        framed.extend_from_slice(&bytes);
        let _ = engine.handle(&table, RxMeta { bridge: "br100" }, &framed, 0);
        prop_assert_eq!(engine.stats().received, 2);
    }

    #[test]
    fn journal_records_round_trip(leases in proptest::collection::vec((any::<[u8; 6]>(), any::<u32>(), proptest::option::of(any::<u64>()), proptest::option::of("[a-z0-9-]{0,300}"), proptest::option::of(proptest::collection::vec(any::<u8>(), 1..300)), 0u8..3), 0..20)) {
        let changes: Vec<LeaseChange> = leases.into_iter().map(|(mac, ip, expires, hostname, client_id, kind)| {
            let (mac, ip) = (MacAddr(mac), Ipv4Addr::from(ip));
            match kind {
                0 => LeaseChange::Grant(Lease { mac, ip, expires: expires.filter(|e| *e != u64::MAX), hostname: hostname.map(|h| h.chars().take(255).collect()), client_id: client_id.map(|c| c[..c.len().min(255)].to_vec()) }),
                1 => LeaseChange::Release { mac, ip },
                _ => LeaseChange::Decline { mac, ip },
            }
        }).collect();
        let mut bytes = journal::HEADER.to_vec();
        for c in &changes { journal::encode(c, &mut bytes); }
        let replay = journal::replay(&bytes);
        let normalise = |c: &LeaseChange| match c {
            LeaseChange::Grant(l) => LeaseChange::Grant(Lease { hostname: l.hostname.clone().filter(|h| !h.is_empty()), ..l.clone() }),
            other => other.clone(),
        };
        prop_assert_eq!(replay.changes, changes.iter().map(normalise).collect::<Vec<_>>());
        prop_assert_eq!(replay.valid_len, bytes.len());
    }

    /// The allocation-free reply encoder writes exactly what dhcproto's owned `Message` writes.
    #[test]
    fn the_reply_encoder_matches_dhcproto_byte_for_byte(
        kind in prop_oneof![Just(MessageType::Offer), Just(MessageType::Ack), Just(MessageType::Nak)],
        request_kind in prop_oneof![Just(MessageType::Discover), Just(MessageType::Request), Just(MessageType::Inform)],
        mac in any::<[u8; 6]>(), xid in any::<u32>(), broadcast in any::<bool>(),
        giaddr in proptest::option::of(addr()), ciaddr in proptest::option::of(addr()),
        prl in proptest::option::of(proptest::collection::vec(1u8..255, 0..40)),
        max_size in proptest::option::of(any::<u16>()),
        relay in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..255)),
        yiaddr in addr(), server in addr(),
        lease in proptest::option::of(prop_oneof![any::<u32>(), Just(u32::MAX)]),
        options in proptest::collection::vec((1u8..255, proptest::collection::vec(any::<u8>(), 0..600)), 0..30),
        message in proptest::option::of("[ -~]{0,80}"),
    ) {
        let mut b = RequestBuilder::new(request_kind, MacAddr(mac), xid);
        if broadcast { b = b.broadcast(); }
        if let Some(g) = giaddr { b = b.relayed_by(g); }
        if let Some(c) = ciaddr { b = b.ciaddr(c); }
        if let Some(p) = &prl { b = b.option(55, p); }
        if let Some(m) = max_size { b = b.option(57, &m.to_be_bytes()); }
        if let Some(r) = &relay { b = b.option(82, r); }
        let packet = b.build();
        let req = wire::parse(&packet);
        prop_assert!(req.is_ok(), "{:?}", req);
        let Ok(req) = req else { return Ok(()) };
        let mut options = options;
        options.sort_by_key(|(c, _)| *c);
        let options: Vec<(u8, &[u8])> = options.iter().map(|(c, v)| (*c, v.as_slice())).collect();
        let spec = super::reply::ReplySpec { kind, request: &req, yiaddr, server, lease, options: &options, message: message.as_deref() };
        prop_assert_eq!(super::reply::encode(&spec), super::reply::encode_with_dhcproto(&spec));
    }
}
