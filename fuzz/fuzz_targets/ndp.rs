//! ICMPv6 RS/RA parsing and the RA engine: the first two bytes choose the hop limit and
//! whether the source is ::, a link-local host or another router; the rest is the message.
#![no_main]
use std::net::Ipv6Addr;
use std::sync::Arc;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use netnode::table::ra::{RaConfig, RaParams};
use netnode::ra::{Advertiser, Output, RaSpec, Received};
use netnode::table::MacAddr;

fuzz_target!(|data: &[u8]| {
    let (Some(&hops), Some(&who), Some(msg)) = (data.first(), data.get(1), data.get(2..)) else {
        return;
    };
    let _ = netnode::ra::wire::parse_rs(msg);
    if let Ok(ra) = netnode::ra::wire::parse_ra(msg) {
        // What parses re-encodes to something that parses the same.
        assert_eq!(
            netnode::ra::wire::parse_ra(&ra.emit()).map(|r| r.prefixes.len()),
            Ok(ra.prefixes.len())
        );
    }
    let params = RaParams::from_config(&RaConfig {
        profile: Some("nova".into()),
        AdvLinkMTU: Some(1450),
        rdnss: vec!["fd00::53".parse().unwrap()],
        dnssl: vec!["novalocal".into()],
        ..RaConfig::default()
    })
    .unwrap();
    let link_local: Ipv6Addr = "fe80::1".parse().unwrap();
    let spec = RaSpec {
        params: Arc::new(params),
        prefixes: vec!["fd00:1::/64".parse().unwrap()],
        mac: MacAddr([2, 0, 0, 0, 0, 1]),
        link_local,
    };
    let mut adv = Advertiser::new(spec, Duration::ZERO, u64::from(who));
    // The first multicast RA goes at 0; what follows is measured against that schedule.
    assert!(adv.handle_timeout(Duration::ZERO).is_some());
    let before = adv.poll_timeout();
    assert!(before > Duration::ZERO);
    let src = match who % 4 {
        0 => Ipv6Addr::UNSPECIFIED,
        1 => "fe80::99".parse().unwrap(),
        2 => link_local,
        _ => "fd00::99".parse().unwrap(),
    };
    match adv.handle_icmp(Duration::from_secs(1), src, hops, msg) {
        Received::Reply(Output::Unicast { to, .. }) => {
            assert_eq!(to, src);
            assert_eq!(hops, 255);
        }
        // A solicitation may bring the next RA forward, never closer than 3 s after the last
        // multicast one (RFC 4861 6.2.6).
        Received::Scheduled => assert!(adv.poll_timeout() >= Duration::from_secs(3)),
        _ => {}
    }
    // Nothing a peer sends pushes the schedule back.
    assert!(adv.poll_timeout() <= before);
});
