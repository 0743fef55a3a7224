//! The DNS engine driven without sockets: a table, an engine on a virtual clock, queries built
//! as clients write them and upstream replies as servers would send them.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::Message;

use super::engine::{Decision, Engine, Forward, RxMeta, Waiter, MAX_FORWARDS, TCP_LIMIT};
use super::stats::{DropKind, DropReason, Outcome};
use super::wire::{self, class, rcode, rtype, Answer, Section};
use super::zone::Zone;
use crate::table::{build, config::ConfigFile, Table};

const CONFIG: &str = r#"
[[network]]
name = "vmnet"
bridge = "br100"
cidr = "198.18.0.0/24"
gateway = "198.18.0.1"
domain = "novalocal"
cidr_v6 = "fd00:1::/64"
[[network.host]]
mac = "fa:16:3e:00:00:01"
ip = "198.18.0.10"
hostname = "vm-1"
[[network.host]]
mac = "fa:16:3e:00:00:02"
ip = "198.18.0.11"
hostname = "vm-2"
[dns]
no_resolv = true
servers = ["198.18.5.53", "198.18.5.54", "/corp.example/198.18.6.53", "/quiet.example/"]
strict_order = true
"#;

const UP1: &str = "198.18.5.53:53";
const UP2: &str = "198.18.5.54:53";
const CLIENT: &str = "198.18.0.10:40000";

fn table(text: &str) -> Table {
    build::from_config(&ConfigFile::parse(text).unwrap(), Path::new("dns.toml")).unwrap()
}

struct Sim {
    engine: Engine,
    now: Duration,
    out: Vec<u8>,
}

impl Sim {
    fn new(text: &str) -> Sim {
        let t = table(text);
        let settings = Arc::new(t.dns.clone().unwrap());
        Sim {
            engine: Engine::new(Arc::new(Zone::build(&t)), settings, [7; 32]),
            now: Duration::from_secs(1000),
            out: Vec::new(),
        }
    }

    fn ask_from(&mut self, from: &str, waiter: Waiter, bytes: &[u8]) -> (Decision, Vec<u8>) {
        let rx = RxMeta {
            from: from.parse().unwrap(),
            waiter,
        };
        let d = self.engine.handle(rx, bytes, self.now, &mut self.out);
        (d, self.out.clone())
    }

    fn ask(&mut self, bytes: &[u8]) -> (Decision, Vec<u8>) {
        self.ask_from(CLIENT, udp(CLIENT), bytes)
    }

    /// Asks and expects an answer; returns it decoded.
    fn answer(&mut self, bytes: &[u8]) -> Message {
        let (d, out) = self.ask(bytes);
        assert_eq!(d, Decision::Reply, "{d:?}");
        Message::from_vec(&out).unwrap()
    }

    fn forward(&mut self, bytes: &[u8]) -> Forward {
        match self.ask(bytes).0 {
            Decision::Forward(f) => f,
            other => panic!("expected a forward, got {other:?}"),
        }
    }
}

fn udp(addr: &str) -> Waiter {
    Waiter::Udp {
        socket: 0,
        addr: addr.parse().unwrap(),
    }
}

fn query(id: u16, name: &str, qtype: u16, edns: bool) -> Vec<u8> {
    let mut q = id.to_be_bytes().to_vec();
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, u8::from(edns)]);
    for label in name.split('.').filter(|l| !l.is_empty()) {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.push(0);
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&class::IN.to_be_bytes());
    if edns {
        q.extend_from_slice(&[0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 0]);
    }
    q
}

/// What an upstream sends back to a forward: the same id and question, `records` A records
/// with `ttl` (or, for `code` NXDOMAIN, a SOA with minimum `ttl`).
fn upstream_reply(f: &Forward, code: u8, ttl: u32, records: usize, txt: Option<usize>) -> Vec<u8> {
    let q = wire::parse_query(&f.query).unwrap();
    let mut out = Vec::new();
    let mut a = Answer::new(&mut out, &q, 0, code);
    for i in 0..records {
        a.record(Section::Answer, rtype::A, ttl, &[198, 18, 7, i as u8]);
    }
    if let Some(len) = txt {
        let mut rdata = Vec::new();
        for chunk in vec![b'x'; len].chunks(255) {
            rdata.push(chunk.len() as u8);
            rdata.extend_from_slice(chunk);
        }
        a.record(Section::Answer, 16, ttl, &rdata);
    }
    if code == rcode::NXDOMAIN {
        let zone = wire::encode_name("example.com").unwrap();
        let soa = wire::soa_rdata(&zone, &zone, 1, ttl);
        a.record_named(Section::Authority, &zone, rtype::SOA, 3600, &soa);
    }
    a.opt();
    a.finish().to_vec()
}

fn ttls(m: &Message) -> Vec<u32> {
    m.answers.iter().map(|r| r.ttl).collect()
}

#[test]
fn instance_names_are_answered_with_authority_ttl_0_and_the_clients_case() {
    let mut sim = Sim::new(CONFIG);
    let m = sim.answer(&query(1, "VM-1.NovaLocal", rtype::A, false));
    assert!(m.metadata.authoritative);
    assert_eq!(m.queries[0].name().to_string(), "VM-1.NovaLocal.");
    assert_eq!(m.answers.len(), 1);
    assert_eq!(m.answers[0].name.to_string(), "VM-1.NovaLocal.");
    assert_eq!(ttls(&m), [0]);
    let m = sim.answer(&query(2, "vm-2", rtype::AAAA, true));
    assert_eq!(m.answers.len(), 1);
    assert!(m.edns.is_some(), "EDNS answered with EDNS");
    let m = sim.answer(&query(3, "10.0.18.198.in-addr.arpa", rtype::PTR, false));
    assert_eq!(m.answers[0].data.to_string(), "vm-1.novalocal.");
    let m = sim.answer(&query(
        4,
        "1.0.0.0.0.0.e.f.f.f.e.3.6.1.8.f.0.0.0.0.0.0.0.0.1.0.0.0.0.0.d.f.ip6.arpa",
        rtype::PTR,
        false,
    ));
    assert_eq!(m.answers[0].data.to_string(), "vm-1.novalocal.");
    assert_eq!(sim.engine.stats().outcome(Outcome::Local), 4);
}

#[test]
fn bindings_take_the_dhcp_ttl_and_hosts_files_the_local_ttl() {
    let dir = tempfile::tempdir().unwrap();
    let hosts = dir.path().join("addn");
    std::fs::write(&hosts, "198.18.0.50 db.novalocal db\n").unwrap();
    let text = CONFIG.replace(
        "[dns]\n",
        &format!(
            "[dns]\nlocal_ttl = 5\ndhcp_ttl = 60\naddn_hosts = [{:?}]\n",
            hosts
        ),
    );
    let mut sim = Sim::new(&text);
    let m = sim.answer(&query(1, "vm-1.novalocal", rtype::A, false));
    assert_eq!(ttls(&m), [60]);
    let m = sim.answer(&query(2, "10.0.18.198.in-addr.arpa", rtype::PTR, false));
    assert_eq!(ttls(&m), [60]);
    let m = sim.answer(&query(3, "db", rtype::A, false));
    assert_eq!(ttls(&m), [5]);
    let m = sim.answer(&query(4, "50.0.18.198.in-addr.arpa", rtype::PTR, false));
    assert_eq!(m.answers[0].data.to_string(), "db.novalocal.");
    assert_eq!(ttls(&m), [5]);
    // A negative answer is remembered for local_ttl (the SOA minimum and its own TTL).
    let m = sim.answer(&query(5, "nobody.novalocal", rtype::A, false));
    assert_eq!(
        m.metadata.response_code,
        hickory_proto::op::ResponseCode::NXDomain
    );
    assert_eq!(m.authorities[0].ttl, 5);
}

#[test]
fn the_instance_domain_is_never_forwarded() {
    let mut sim = Sim::new(CONFIG);
    // NODATA: a known name, another type; the SOA says how long to remember.
    let m = sim.answer(&query(1, "vm-1.novalocal", 15, false));
    assert_eq!(
        u16::from(m.metadata.response_code),
        u16::from(rcode::NOERROR)
    );
    assert!(m.answers.is_empty());
    assert_eq!(m.authorities.len(), 1);
    // NXDOMAIN: an unknown name in the domain, and in the reverse zone of the fixed range.
    for (name, t) in [
        ("nope.novalocal", rtype::A),
        ("99.0.18.198.in-addr.arpa", rtype::PTR),
    ] {
        let m = sim.answer(&query(2, name, t, false));
        assert_eq!(
            u16::from(m.metadata.response_code),
            u16::from(rcode::NXDOMAIN),
            "{name}"
        );
        assert!(m.metadata.authoritative);
        assert_eq!(m.authorities.len(), 1, "the SOA rides along");
    }
    // The apex has its SOA and NS.
    let m = sim.answer(&query(3, "novalocal", rtype::SOA, false));
    assert_eq!(m.answers.len(), 1);
    // A single label that is no instance: not forwarded.
    let m = sim.answer(&query(4, "printer", rtype::A, false));
    assert_eq!(
        u16::from(m.metadata.response_code),
        u16::from(rcode::NXDOMAIN)
    );
    assert_eq!(sim.engine.forwards(), 0, "nothing went upstream");
}

#[test]
fn forwarded_answers_are_cached_merged_and_count_down() {
    let mut sim = Sim::new(CONFIG);
    let f = sim.forward(&query(1, "www.example.com", rtype::A, false));
    assert_eq!(f.server, UP1.parse::<SocketAddr>().unwrap());
    assert!(!f.tcp);
    // The same question from another client joins it.
    let (d, _) = sim.ask_from(
        "198.18.0.11:5000",
        udp("198.18.0.11:5000"),
        &query(9, "WWW.example.com", rtype::A, true),
    );
    assert_eq!(d, Decision::Wait);
    let r = sim.engine.handle_upstream(
        f.token,
        f.server,
        &upstream_reply(&f, rcode::NOERROR, 300, 2, None),
        sim.now,
    );
    assert_eq!(r.deliveries.len(), 2);
    let second = Message::from_vec(&r.deliveries[1].bytes).unwrap();
    assert_eq!(second.metadata.id, 9);
    assert_eq!(second.queries[0].name().to_string(), "WWW.example.com.");
    assert!(second.edns.is_some() && !second.metadata.authoritative);
    // Ten seconds later: from the cache, TTLs counted down.
    sim.now += Duration::from_secs(10);
    let m = sim.answer(&query(2, "www.example.com", rtype::A, false));
    assert_eq!(ttls(&m), [290, 290]);
    assert!(m.edns.is_none(), "no OPT for a client that sent none");
    assert_eq!(sim.engine.stats().outcome(Outcome::CacheHit), 1);
    // Past the TTL it is asked again.
    sim.now += Duration::from_secs(300);
    assert!(matches!(
        sim.ask(&query(3, "www.example.com", rtype::A, false)).0,
        Decision::Forward(_)
    ));
}

#[test]
fn a_negative_answer_is_kept_for_its_soa_minimum() {
    let mut sim = Sim::new(CONFIG);
    let f = sim.forward(&query(1, "gone.example.com", rtype::A, false));
    let r = sim.engine.handle_upstream(
        f.token,
        f.server,
        &upstream_reply(&f, rcode::NXDOMAIN, 60, 0, None),
        sim.now,
    );
    assert_eq!(r.deliveries.len(), 1);
    sim.now += Duration::from_secs(59);
    let m = sim.answer(&query(2, "gone.example.com", rtype::A, false));
    assert_eq!(
        u16::from(m.metadata.response_code),
        u16::from(rcode::NXDOMAIN)
    );
    sim.now += Duration::from_secs(2);
    assert!(matches!(
        sim.ask(&query(3, "gone.example.com", rtype::A, false)).0,
        Decision::Forward(_)
    ));
}

#[test]
fn only_the_server_asked_with_the_id_and_question_asked_is_believed() {
    let mut sim = Sim::new(CONFIG);
    let f = sim.forward(&query(1, "www.example.com", rtype::A, false));
    let good = upstream_reply(&f, rcode::NOERROR, 300, 1, None);
    let other: SocketAddr = "198.18.9.9:53".parse().unwrap();
    assert!(sim
        .engine
        .handle_upstream(f.token, other, &good, sim.now)
        .deliveries
        .is_empty());
    let mut wrong_id = good.clone();
    wrong_id[0] ^= 0xff;
    assert!(sim
        .engine
        .handle_upstream(f.token, f.server, &wrong_id, sim.now)
        .deliveries
        .is_empty());
    let mut wrong_question = good.clone();
    wrong_question[13] = b'z';
    assert!(sim
        .engine
        .handle_upstream(f.token, f.server, &wrong_question, sim.now)
        .deliveries
        .is_empty());
    assert_eq!(sim.engine.stats().dropped(DropKind::SpoofedReply), 3);
    // The real one still counts; a duplicate after it is late.
    assert_eq!(
        sim.engine
            .handle_upstream(f.token, f.server, &good, sim.now)
            .deliveries
            .len(),
        1
    );
    assert!(sim
        .engine
        .handle_upstream(f.token, f.server, &good, sim.now)
        .deliveries
        .is_empty());
    assert_eq!(sim.engine.stats().dropped(DropKind::LateReply), 1);
}

#[test]
fn only_a_response_to_a_standard_query_is_an_answer() {
    // Found by the dns_upstream fuzz target: an UPDATE reply (which may carry empty records)
    // with the right id and question was handed on as a query answer no client could decode.
    let mut sim = Sim::new(CONFIG);
    let f = sim.forward(&query(1, "www.example.com", rtype::A, false));
    let good = upstream_reply(&f, rcode::NOERROR, 300, 1, None);
    let mut update = good.clone();
    update[2] |= 5 << 3;
    let mut not_a_response = good.clone();
    not_a_response[2] &= 0x7f;
    for bad in [&update, &not_a_response] {
        assert!(sim
            .engine
            .handle_upstream(f.token, f.server, bad, sim.now)
            .deliveries
            .is_empty());
    }
    assert_eq!(sim.engine.stats().dropped(DropKind::BadReply), 2);
    assert_eq!(
        sim.engine
            .handle_upstream(f.token, f.server, &good, sim.now)
            .deliveries
            .len(),
        1
    );
}

#[test]
fn a_dead_upstream_fails_over_in_order_and_then_servfail() {
    let mut sim = Sim::new(CONFIG);
    let f = sim.forward(&query(1, "www.example.com", rtype::A, false));
    assert_eq!(f.server, UP1.parse::<SocketAddr>().unwrap());
    let r = sim.engine.handle_timeout(f.token);
    let retry = r.retry.expect("the next upstream");
    assert_eq!(retry.server, UP2.parse::<SocketAddr>().unwrap());
    assert_eq!(retry.token, f.token);
    assert_ne!(retry.query[..2], f.query[..2], "a fresh transaction id");
    let r = sim.engine.handle_timeout(f.token);
    assert!(r.retry.is_none());
    let m = Message::from_vec(&r.deliveries[0].bytes).unwrap();
    assert_eq!(
        u16::from(m.metadata.response_code),
        u16::from(rcode::SERVFAIL)
    );
    assert_eq!(sim.engine.stats().upstream_timeouts, 2);
}

#[test]
fn servers_by_domain_and_refused_without_any() {
    let mut sim = Sim::new(CONFIG);
    let f = sim.forward(&query(1, "intranet.corp.example", rtype::A, false));
    assert_eq!(f.server, "198.18.6.53:53".parse::<SocketAddr>().unwrap());
    let m = sim.answer(&query(2, "x.quiet.example", rtype::A, false));
    assert_eq!(
        u16::from(m.metadata.response_code),
        u16::from(rcode::NXDOMAIN),
        "/quiet.example/ is local only"
    );
    let mut none = Sim::new("[[network]]\nname = \"n\"\nbridge = \"br100\"\ncidr = \"198.18.0.0/24\"\n[dns]\nno_resolv = true\n");
    let m = none.answer(&query(3, "www.example.com", rtype::A, false));
    assert_eq!(
        u16::from(m.metadata.response_code),
        u16::from(rcode::REFUSED)
    );
}

#[test]
fn too_large_over_udp_is_truncated_and_whole_over_tcp() {
    let mut sim = Sim::new(CONFIG);
    let f = sim.forward(&query(1, "big.example.com", 16, false));
    let big = upstream_reply(&f, rcode::NOERROR, 300, 0, Some(1000));
    let r = sim.engine.handle_upstream(f.token, f.server, &big, sim.now);
    let m = Message::from_vec(&r.deliveries[0].bytes).unwrap();
    assert!(m.metadata.truncation, "512 bytes without EDNS");
    assert!(m.answers.is_empty());
    assert!(r.deliveries[0].bytes.len() <= 512);
    let (d, out) = sim.ask_from(
        CLIENT,
        Waiter::Tcp { conn: 1 },
        &query(2, "big.example.com", 16, false),
    );
    assert_eq!(d, Decision::Reply, "a cache hit over TCP");
    let m = Message::from_vec(&out).unwrap();
    assert!(!m.metadata.truncation && m.answers.len() == 1);
    assert!(out.len() <= TCP_LIMIT);
}

#[test]
fn a_truncated_upstream_reply_is_passed_on_and_not_kept() {
    let mut sim = Sim::new(CONFIG);
    let f = sim.forward(&query(1, "tc.example.com", rtype::A, false));
    let mut tc = upstream_reply(&f, rcode::NOERROR, 300, 1, None);
    tc[2] |= 0x02;
    let r = sim.engine.handle_upstream(f.token, f.server, &tc, sim.now);
    assert!(
        Message::from_vec(&r.deliveries[0].bytes)
            .unwrap()
            .metadata
            .truncation
    );
    // Over TCP the client retries, and netnode asks upstream over TCP.
    let (d, _) = sim.ask_from(
        CLIENT,
        Waiter::Tcp { conn: 2 },
        &query(2, "tc.example.com", rtype::A, false),
    );
    assert!(
        matches!(d, Decision::Forward(Forward { tcp: true, .. })),
        "{d:?}"
    );
}

#[test]
fn malformed_queries_get_formerr_or_nothing_never_more_than_they_sent() {
    let mut sim = Sim::new(CONFIG);
    let good = query(7, "vm-1.novalocal", rtype::A, false);
    assert!(
        matches!(sim.ask(&good[..5]).0, Decision::Drop(_)),
        "no header: silence"
    );
    let mut response = good.clone();
    response[2] |= 0x80;
    assert!(
        matches!(sim.ask(&response).0, Decision::Drop(_)),
        "a response: silence"
    );
    let mut cases: Vec<Vec<u8>> = Vec::new();
    let mut two = good.clone();
    two[5] = 2;
    cases.push(two);
    let mut loop_ptr = good.clone();
    loop_ptr[12] = 0xc0;
    loop_ptr[13] = 12;
    cases.push(loop_ptr);
    let mut zero = good.clone();
    zero[5] = 0;
    cases.push(zero);
    cases.push(good[..20].to_vec());
    let mut notify = good.clone();
    notify[2] = 0x20; // opcode 4
    cases.push(notify);
    for bad in cases {
        let (d, out) = sim.ask(&bad);
        assert_eq!(d, Decision::Reply);
        assert!(out.len() <= bad.len(), "{} > {}", out.len(), bad.len());
        let code = out[3] & 0xf;
        assert!(code == rcode::FORMERR || code == rcode::NOTIMP, "{code}");
        assert_eq!(&out[..2], &bad[..2]);
    }
    assert_eq!(sim.answer(&good).answers.len(), 1, "and it keeps answering");
}

#[test]
fn transaction_ids_are_random_and_forwards_are_bounded() {
    let mut sim = Sim::new(CONFIG);
    let mut ids = std::collections::HashSet::new();
    for i in 0..MAX_FORWARDS {
        let f = sim.forward(&query(1, &format!("n{i}.example.com"), rtype::A, false));
        ids.insert(u16::from_be_bytes([f.query[0], f.query[1]]));
    }
    assert!(
        ids.len() > MAX_FORWARDS * 95 / 100,
        "{} distinct of {MAX_FORWARDS}",
        ids.len()
    );
    let (d, _) = sim.ask(&query(1, "one-more.example.com", rtype::A, false));
    assert!(matches!(d, Decision::Drop(_)));
    assert_eq!(sim.engine.stats().dropped(DropKind::TooManyForwards), 1);
}

#[test]
fn a_client_over_its_rate_is_dropped_and_others_are_answered() {
    let mut sim = Sim::new(&CONFIG.replace(
        "strict_order = true",
        "strict_order = true\nclient_rate = 5",
    ));
    let q = query(1, "vm-1.novalocal", rtype::A, false);
    for _ in 0..5 {
        assert_eq!(sim.ask(&q).0, Decision::Reply);
    }
    assert!(matches!(sim.ask(&q).0, Decision::Drop(_)));
    let (d, _) = sim.ask_from("198.18.0.11:1", udp("198.18.0.11:1"), &q);
    assert_eq!(d, Decision::Reply);
    sim.now += Duration::from_secs(1);
    assert_eq!(sim.ask(&q).0, Decision::Reply, "a new second");
}

#[test]
fn only_clients_of_the_networks_are_answered() {
    // dnsmasq's --local-service, always: an open resolver would be an amplifier.
    let mut sim = Sim::new(CONFIG);
    let q = query(1, "vm-1.novalocal", rtype::A, false);
    for from in ["198.19.0.5:53", "[fd00:9::5]:53"] {
        let (d, _) = sim.ask_from(from, udp(from), &q);
        assert_eq!(d, Decision::Drop(DropReason::NotLocal), "{from}");
    }
    for from in ["198.18.0.200:53", "[fd00:1::5]:53", "[fe80::1]:53"] {
        let (d, _) = sim.ask_from(from, udp(from), &q);
        assert_eq!(d, Decision::Reply, "{from}");
    }
    assert_eq!(sim.engine.stats().dropped(DropKind::NotLocal), 2);
}

#[test]
fn edns_versions_above_0_get_badvers_and_any_gets_a_minimal_answer() {
    let mut sim = Sim::new(CONFIG);
    let mut q = query(1, "vm-1.novalocal", rtype::A, true);
    let version = q.len() - 5;
    q[version] = 1;
    let m = sim.answer(&q);
    // 16 is BADVERS (hickory names it BADSIG, which shares the code).
    assert_eq!(u16::from(m.metadata.response_code), 16);
    assert!(m.answers.is_empty());
    assert_eq!(m.edns.as_ref().map(|e| e.version()), Some(0));
    assert_eq!(sim.engine.stats().outcome(Outcome::BadVersion), 1);
    // ANY: a known name's addresses; anyone else's, one HINFO and nothing forwarded.
    let m = sim.answer(&query(2, "vm-1.novalocal", rtype::ANY, false));
    assert_eq!(m.answers.len(), 2, "A and AAAA");
    let m = sim.answer(&query(3, "www.example.com", rtype::ANY, false));
    assert_eq!(m.answers.len(), 1);
    assert_eq!(u16::from(m.answers[0].record_type()), rtype::HINFO);
    assert_eq!(m.answers[0].data.to_string(), "RFC8482 ");
    assert_eq!(sim.engine.forwards(), 0);
}
