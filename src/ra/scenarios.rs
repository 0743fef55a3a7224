//! Router advertisement engine scenarios on a virtual clock with fixed seeds.

use std::net::Ipv6Addr;
use std::sync::Arc;
use std::time::Duration;

use super::engine::{
    Advertiser, DropReason, Output, RaSpec, Received, MIN_DELAY_BETWEEN_RAS,
    UNICAST_REPLIES_PER_SECOND,
};
use super::wire::{self, NdpError, RouterAdvertisement};
use crate::table::ra::{RaConfig, RaParams};
use crate::table::MacAddr;

const MAC: MacAddr = MacAddr([0xfa, 0x16, 0x3e, 0, 0, 0xaa]);
const SELF_LL: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0xf816, 0x3eff, 0xfe00, 0xaa);
const HOST_LL: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0xf816, 0x3eff, 0xfe00, 1);
const RS: [u8; 8] = [133, 0, 0, 0, 0, 0, 0, 0];

fn spec(config: RaConfig) -> RaSpec {
    RaSpec {
        params: Arc::new(RaParams::from_config(&config).unwrap()),
        prefixes: vec!["fd00:1::/64".parse().unwrap()],
        mac: MAC,
        link_local: SELF_LL,
    }
}

fn nova() -> RaConfig {
    RaConfig {
        profile: Some("nova".into()),
        ..RaConfig::default()
    }
}

fn ra_of(out: &Output) -> RouterAdvertisement {
    match out {
        Output::Multicast(p) | Output::Unicast { payload: p, .. } => wire::parse_ra(p).unwrap(),
    }
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

/// Runs the advertiser's own timer from `start` to `end`, returning when each multicast went.
fn run(adv: &mut Advertiser, start: Duration, end: Duration) -> Vec<Duration> {
    let mut now = start;
    let mut sent = Vec::new();
    for _ in 0..10_000 {
        now = now.max(adv.poll_timeout());
        if now > end {
            break;
        }
        if adv.handle_timeout(now).is_some() {
            sent.push(now);
        }
    }
    sent
}

#[test]
fn the_schedule_follows_rfc4861_with_radvds_defaults() {
    for seed in 0..40 {
        let mut adv = Advertiser::new(spec(RaConfig::default()), Duration::ZERO, seed);
        let sent = run(&mut adv, Duration::ZERO, secs(6000.0));
        assert_eq!(sent[0], Duration::ZERO, "the first RA goes at once");
        let gaps: Vec<Duration> = sent.windows(2).map(|w| w[1] - w[0]).collect();
        for g in &gaps[..3] {
            assert!(*g <= secs(16.0), "seed {seed}: initial gap {g:?}");
        }
        for g in &gaps[3..] {
            assert!(
                *g >= secs(198.0) && *g <= secs(600.0),
                "seed {seed}: gap {g:?} outside [Min, Max]"
            );
        }
    }
}

#[test]
fn the_nova_profile_advertises_every_3_to_10_seconds() {
    let mut adv = Advertiser::new(spec(nova()), Duration::ZERO, 7);
    let sent = run(&mut adv, Duration::ZERO, secs(300.0));
    let gaps: Vec<Duration> = sent.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(
        gaps.iter().all(|g| *g >= secs(3.0) && *g <= secs(10.0)),
        "{gaps:?}"
    );
    assert!(gaps.len() > 25);
    // Uniform in [Min, Max]: both halves of the range are used.
    assert!(gaps.iter().any(|g| *g < secs(6.5)) && gaps.iter().any(|g| *g > secs(6.5)));
    assert_eq!(adv.stats().multicast as usize, sent.len());
}

#[test]
fn the_advertisement_carries_every_configured_field() {
    let config = RaConfig {
        AdvManagedFlag: Some(true),
        AdvOtherConfigFlag: Some(true),
        AdvLinkMTU: Some(1450),
        AdvReachableTime: Some(30_000),
        AdvRetransTimer: Some(1_000),
        AdvCurHopLimit: Some(32),
        rdnss: vec!["fd00:1::53".parse().unwrap()],
        dnssl: vec!["novalocal".into()],
        ..nova()
    };
    let mut adv = Advertiser::new(spec(config), Duration::ZERO, 1);
    let ra = ra_of(&adv.handle_timeout(Duration::ZERO).unwrap());
    assert_eq!(
        (ra.cur_hop_limit, ra.managed, ra.other_config),
        (32, true, true)
    );
    assert_eq!(
        (ra.router_lifetime, ra.reachable_time, ra.retrans_timer),
        (30, 30_000, 1_000)
    );
    assert_eq!(ra.source_lladdr, Some(MAC));
    assert_eq!(ra.mtu, Some(1450));
    let p = ra.prefixes[0];
    assert_eq!(
        (
            p.prefix,
            p.len,
            p.on_link,
            p.autonomous,
            p.valid,
            p.preferred
        ),
        ("fd00:1::".parse().unwrap(), 64, true, true, 86_400, 14_400)
    );
    assert_eq!(ra.rdnss, Some((30, vec!["fd00:1::53".parse().unwrap()])));
    assert_eq!(ra.dnssl, Some((30, vec!["novalocal".to_string()])));
    // nova's radvd.conf: no MTU option, router lifetime 3 x 10.
    let ra = ra_of(
        &Advertiser::new(spec(nova()), Duration::ZERO, 1)
            .handle_timeout(Duration::ZERO)
            .unwrap(),
    );
    assert_eq!(
        (ra.cur_hop_limit, ra.router_lifetime, ra.mtu, ra.managed),
        (64, 30, None, false)
    );
}

#[test]
fn solicitations_are_validated() {
    let mut adv = Advertiser::new(spec(nova()), Duration::ZERO, 1);
    let now = secs(1.0);
    assert_eq!(
        adv.handle_icmp(now, HOST_LL, 64, &RS),
        Received::Drop(DropReason::BadHopLimit)
    );
    assert_eq!(
        adv.handle_icmp(now, HOST_LL, 255, &[133, 1, 0, 0, 0, 0, 0, 0]),
        Received::Drop(DropReason::Malformed(NdpError::BadCode))
    );
    assert_eq!(
        adv.handle_icmp(now, HOST_LL, 255, &RS[..4]),
        Received::Drop(DropReason::Malformed(NdpError::Truncated))
    );
    let with_lladdr = [133, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0xfa, 0x16, 0x3e, 0, 0, 1];
    assert_eq!(
        adv.handle_icmp(now, Ipv6Addr::UNSPECIFIED, 255, &with_lladdr),
        Received::Drop(DropReason::UnspecifiedWithLladdr)
    );
    assert_eq!(
        adv.handle_icmp(now, HOST_LL, 255, &[128, 0, 0, 0]),
        Received::Drop(DropReason::OtherType)
    );
    assert_eq!(adv.stats().solicitations, 0);
    assert_eq!(adv.stats().dropped(DropReason::BadHopLimit), 1);
    assert_eq!(adv.stats().drops.iter().sum::<u64>(), 5);
}

#[test]
fn a_solicitation_from_an_address_gets_an_immediate_unicast_answer() {
    let mut adv = Advertiser::new(spec(nova()), Duration::ZERO, 1);
    let _ = adv.handle_timeout(Duration::ZERO);
    let with_lladdr = [133, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0xfa, 0x16, 0x3e, 0, 0, 1];
    match adv.handle_icmp(secs(0.5), HOST_LL, 255, &with_lladdr) {
        Received::Reply(out @ Output::Unicast { to, .. }) => {
            assert_eq!(to, HOST_LL);
            assert_eq!(ra_of(&out).router_lifetime, 30);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(adv.stats().unicast, 1);
}

#[test]
fn a_solicitation_from_unspecified_gets_a_rate_limited_multicast() {
    let mut checked_late = 0;
    for seed in 0..40 {
        let mut adv = Advertiser::new(spec(nova()), Duration::ZERO, seed);
        let _ = adv.handle_timeout(Duration::ZERO);
        // Right after a multicast: no sooner than 3 s after it, plus up to 0.5 s.
        assert_eq!(
            adv.handle_icmp(secs(1.0), Ipv6Addr::UNSPECIFIED, 255, &RS),
            Received::Scheduled
        );
        let due = adv.poll_timeout();
        assert!(
            due >= MIN_DELAY_BETWEEN_RAS && due <= secs(3.5),
            "seed {seed}: {due:?}"
        );
        let _ = adv.handle_timeout(due);
        // More than 3 s after the last multicast: within 0.5 s, unless the periodic RA is
        // due even sooner.
        let later = due + secs(3.2);
        let periodic = adv.poll_timeout();
        if periodic <= later {
            continue;
        }
        assert_eq!(
            adv.handle_icmp(later, Ipv6Addr::UNSPECIFIED, 255, &RS),
            Received::Scheduled
        );
        let answer = adv.poll_timeout();
        assert!(answer <= periodic, "seed {seed}: never later than planned");
        assert!(
            answer == periodic || (answer >= later && answer <= later + secs(0.5)),
            "seed {seed}: {answer:?} for an RS at {later:?}"
        );
        checked_late += 1;
    }
    assert!(
        checked_late >= 10,
        "only {checked_late} seeds reached the late case"
    );
}

#[test]
fn a_flood_of_unicast_solicitations_is_capped() {
    let mut adv = Advertiser::new(spec(nova()), Duration::ZERO, 1);
    let mut unicast = 0;
    for i in 0..(UNICAST_REPLIES_PER_SECOND + 50) {
        if let Received::Reply(_) = adv.handle_icmp(
            secs(1.0) + Duration::from_micros(u64::from(i)),
            HOST_LL,
            255,
            &RS,
        ) {
            unicast += 1;
        }
    }
    assert_eq!(unicast, UNICAST_REPLIES_PER_SECOND);
    assert!(
        matches!(
            adv.handle_icmp(secs(2.5), HOST_LL, 255, &RS),
            Received::Reply(_)
        ),
        "a new second, a new allowance"
    );
}

#[test]
fn shutdown_retire_and_removed_prefixes() {
    let mut adv = Advertiser::new(spec(nova()), Duration::ZERO, 1);
    let last = ra_of(&adv.shutdown());
    assert_eq!(last.router_lifetime, 0);
    assert_eq!(
        last.prefixes[0].valid, 86_400,
        "radvd keeps prefixes on a plain stop"
    );

    let mut two = spec(nova());
    two.prefixes.push("fd00:2::/64".parse().unwrap());
    let mut adv = Advertiser::new(two, Duration::ZERO, 1);
    assert_eq!(
        adv.update(spec(nova()).clone(), Duration::ZERO)
            .map(|o| ra_of(&o))
            .map(|ra| {
                let gone = ra
                    .prefixes
                    .iter()
                    .find(|p| p.prefix == "fd00:2::".parse::<Ipv6Addr>().unwrap())
                    .copied()
                    .unwrap();
                (
                    ra.router_lifetime,
                    gone.valid,
                    gone.preferred,
                    ra.prefixes.len(),
                )
            }),
        Some((30, 0, 0, 2))
    );
    assert_eq!(
        adv.update(spec(nova()), Duration::ZERO),
        None,
        "nothing removed, nothing extra to send"
    );
    let retired = ra_of(&adv.retire());
    assert_eq!(retired.router_lifetime, 0);
    assert!(retired
        .prefixes
        .iter()
        .all(|p| p.valid == 0 && p.preferred == 0));
}

#[test]
fn other_routers_are_checked_for_consistency() {
    let mut adv = Advertiser::new(spec(nova()), Duration::ZERO, 1);
    let mut theirs = adv.advertisement(30, &[]);
    assert_eq!(
        adv.handle_icmp(secs(1.0), SELF_LL, 255, &theirs.emit()),
        Received::Own
    );
    let other = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 9);
    assert_eq!(
        adv.handle_icmp(secs(1.0), other, 255, &theirs.emit()),
        Received::OtherRouter {
            from: other,
            inconsistencies: vec![]
        }
    );
    theirs.cur_hop_limit = 255;
    theirs.managed = true;
    theirs.prefixes[0].valid = 100;
    match adv.handle_icmp(secs(1.0), other, 255, &theirs.emit()) {
        Received::OtherRouter {
            inconsistencies, ..
        } => assert_eq!(inconsistencies.len(), 3, "{inconsistencies:?}"),
        x => panic!("{x:?}"),
    }
    assert_eq!(
        adv.handle_icmp(secs(1.0), "fd00::9".parse().unwrap(), 255, &theirs.emit()),
        Received::Drop(DropReason::NotLinkLocal)
    );
    assert_eq!(
        adv.handle_icmp(secs(1.0), other, 64, &theirs.emit()),
        Received::Drop(DropReason::BadHopLimit)
    );
    assert_eq!(adv.stats().inconsistencies, 3);
}

#[test]
fn a_changed_spec_is_announced_soon_and_keeps_the_minimum_gap() {
    let mut adv = Advertiser::new(spec(RaConfig::default()), Duration::ZERO, 3);
    let _ = run(&mut adv, Duration::ZERO, secs(100.0));
    let before = adv.poll_timeout();
    assert!(before > secs(100.0));
    let mut changed = spec(RaConfig::default());
    changed.prefixes.push("fd00:9::/64".parse().unwrap());
    assert_eq!(adv.update(changed, secs(100.0)), None, "nothing withdrawn");
    let due = adv.poll_timeout();
    assert!(
        due <= secs(100.5) && due >= secs(100.0),
        "announced within 0.5 s, not at {before:?}: {due:?}"
    );
    assert!(adv.handle_timeout(due).is_some());
    // A withdrawal is a multicast RA: the next announcement waits 3 s after it.
    let withdrawal = adv.update(spec(RaConfig::default()), secs(101.0));
    assert!(withdrawal.is_some());
    let mut again = spec(RaConfig::default());
    again.prefixes.push("fd00:8::/64".parse().unwrap());
    assert_eq!(adv.update(again, secs(102.0)), None);
    let next = adv.poll_timeout();
    assert!(
        next >= secs(104.0) && next <= secs(104.5),
        "3 s after the withdrawal at 101 s: {next:?}"
    );
}
