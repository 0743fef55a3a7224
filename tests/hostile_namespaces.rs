//! Hostile traffic against the live daemon, crafted with scapy from an instance namespace
//! (root): malformed DHCP of every kind, a flood from one MAC, ICMPv6 junk at the RA socket.
//! Afterwards a real client still gets its lease and the counters show every rejection.

#![allow(clippy::disallowed_methods)] // a test harness in real time

mod common;

use std::fs;
use std::time::Duration;

use common::{can_run_with, counter, serve_with, LEASE, SYSTEM_PYTHON};
use netnode::lab::clients::{ClientKind, ClientRun};
use netnode::lab::{self, Lab};

const CRAFT: &str = r#"
import struct, sys
from scapy.all import (Ether, IP, UDP, Raw, IPv6, ICMPv6ND_RS, ICMPv6ND_RA, ICMPv6NDOptSrcLLAddr,
                       ICMPv6Unknown, fragment, sendp)
iface, mac, ll = sys.argv[1], sys.argv[2], sys.argv[3]
own = bytes.fromhex(mac.replace(":", ""))
stranger = bytes.fromhex("fa163e999999")

def bootp(op=1, hlen=6, chaddr=own, cookie=b"\x63\x82\x53\x63", opts=b"\x35\x01\x01\xff"):
    head = struct.pack("!BBBBIHH", op, 1, hlen, 0, 0x1234, 0, 0) + b"\0" * 16
    return head + chaddr.ljust(16, b"\0") + b"\0" * 192 + cookie + opts

def frames(payload, src=mac):
    ip = IP(src="0.0.0.0", dst="255.255.255.255") / UDP(sport=68, dport=67) / Raw(payload)
    parts = fragment(ip, fragsize=1400) if len(ip) > 1500 else [ip]
    return [Ether(src=src, dst="ff:ff:ff:ff:ff:ff") / p for p in parts]

bad = [
    bootp()[:100],                                               # truncated
    bootp(cookie=b"\x01\x02\x03\x04"),                           # wrong magic cookie
    bootp(opts=b"\x35\x01\x01\x3d\x28\x01\x02"),                 # option length past the end
    bootp(opts=b"\x35\x01\x01\x0c\xff" + b"x" * 10),             # 255-length option, cut short
    bootp(chaddr=stranger, opts=b"\x35\x01\x01\x0c\x00\x3c\xff" + b"x" * 255 + b"\xff"),  # 0- and 255-length options
    bootp(hlen=17),                                              # hlen > 16
    bootp(op=2),                                                 # BOOTREPLY from a client
    bootp(chaddr=stranger, opts=b"\x35\x01\x01" + b"\0" * 3700 + b"\xff"),  # oversized, fragmented
]
for b in bad:
    sendp(frames(b), iface=iface, verbose=False)
# A flood from one MAC.
sendp(frames(bootp()) * 300, iface=iface, verbose=False)

def six(pkt, src=ll, hlim=255):
    return Ether(src=mac, dst="33:33:00:00:00:02") / IPv6(src=src, dst="ff02::2", hlim=hlim) / pkt

junk = [
    six(ICMPv6ND_RS(code=1)),                                    # code != 0
    six(ICMPv6ND_RS() / Raw(b"\x01\x00" + b"\0" * 6)),           # option of length 0
    six(ICMPv6ND_RS() / Raw(b"\x01\x04\xaa\xbb")),               # option past the end
    six(ICMPv6Unknown(type=133, code=0, msgbody=b"")),           # truncated RS
    six(ICMPv6ND_RS(), hlim=64),                                 # not from the link
    six(ICMPv6ND_RS() / ICMPv6NDOptSrcLLAddr(lladdr=mac), src="::"),  # :: with a link-layer option
    six(ICMPv6ND_RA(), src="fd00::99"),                          # RA from a global source
]
sendp(junk, iface=iface, verbose=False)
print("sent")
"#;

#[test]
fn hostile_traffic_is_counted_and_real_clients_are_still_served() {
    if !can_run_with(
        "hostile",
        &[ClientKind::Udhcpc],
        &[("scapy", "python3-scapy")],
    ) {
        return;
    }
    let mut s = serve_with(
        "hostile",
        1,
        1,
        LEASE,
        "cidr_v6 = \"fd00:1::/64\"\n[network.ra]\nprofile = \"nova\"\n",
    );
    s.daemon
        .wait_for_log("router advertisements on", 1, Duration::from_secs(10))
        .unwrap();
    let inst = &s.lab.instances[0];
    let ll = Lab::link_local(inst)
        .expect("the instance's link-local address")
        .to_string();
    let script = s.lab.dir.join("craft.py");
    fs::write(&script, CRAFT).unwrap();
    let out = lab::run(inst.ns.command(SYSTEM_PYTHON).arg(&script).args([
        inst.iface.as_str(),
        &inst.mac.to_string(),
        &ll,
    ]))
    .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("sent"));
    std::thread::sleep(Duration::from_millis(1500));

    let stats = s.stats();
    eprintln!("counters after the hostile traffic: {stats}");
    for name in [
        "truncated",
        "bad_magic",
        "bad_option_len",
        "bad_hlen",
        "not_request",
        "rate_limited",
        "unknown_client",
    ] {
        assert!(
            counter(&stats, &format!("drop.{name}")) >= 1,
            "drop.{name} in {stats}"
        );
    }
    assert!(counter(&stats, "drop.bad_option_len") >= 2, "{stats}");
    assert!(
        counter(&stats, "drop.unknown_client") >= 2,
        "the valid odd packets reach the engine: {stats}"
    );
    assert!(counter(&stats, "drop.rate_limited") >= 250, "{stats}");
    // The burst takes well under two seconds, so it may straddle one boundary of the per-second
    // window: at most two seconds' allowance (16 each) is answered.
    assert!(
        counter(&stats, "offer") <= 32,
        "the flood got at most two seconds' allowance: {stats}"
    );
    for name in [
        "bad_code",
        "bad_hop_limit",
        "unspecified_with_lladdr",
        "not_link_local",
    ] {
        assert!(
            counter(&stats, &format!("ra_drop.{name}")) >= 1,
            "ra_drop.{name} in {stats}"
        );
    }
    assert!(counter(&stats, "ra_drop.malformed") >= 3, "{stats}");

    // Still serving: a real client gets its lease.
    let inst = &s.lab.instances[0];
    let run = ClientRun::new(inst, ClientKind::Udhcpc, &s.lab.dir).unwrap();
    run.obtain()
        .unwrap_or_else(|e| panic!("{e}\n{}", s.daemon.log_text()));
    assert_eq!(run.acquired().unwrap().ip, Some(s.lab.instance_ip(1)));
    // Malformed packets are logged, rate-limited: one line per reason per second, not per packet.
    let log = s.daemon.log_text();
    assert!(log.contains("client over its request rate"));
    assert!(
        log.matches("client over its request rate").count() <= 3,
        "{log}"
    );
}
