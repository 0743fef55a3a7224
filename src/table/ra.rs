//! Router advertisement parameters, named and defaulted as radvd names and defaults them
//! (radvd.conf(5)), with nova's values as a named profile.

use std::net::Ipv6Addr;
use std::time::Duration;

use serde::Deserialize;

/// A lifetime written as seconds or `infinity`, as radvd.conf allows.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum Lifetime {
    /// Seconds.
    Seconds(u32),
    /// `"infinity"` (0xffffffff on the wire).
    Text(String),
}

impl Lifetime {
    fn seconds(&self, key: &str) -> Result<u32, String> {
        match self {
            Lifetime::Seconds(s) => Ok(*s),
            Lifetime::Text(t) if t.eq_ignore_ascii_case("infinity") => Ok(u32::MAX),
            Lifetime::Text(t) => Err(format!("{key}: {t:?} is neither seconds nor \"infinity\"")),
        }
    }
}

/// The `[network.ra]` table; keys are radvd's option names. Every key is optional.
#[allow(non_snake_case)]
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RaConfig {
    /// `"nova"` (MinRtrAdvInterval 3, MaxRtrAdvInterval 10, as nova writes radvd.conf) or
    /// `"radvd"` (radvd's own defaults: 200 and 600 s). Explicit keys override the profile.
    pub profile: Option<String>,
    /// Send advertisements at all (default on for a network with an IPv6 prefix).
    pub AdvSendAdvert: Option<bool>,
    /// Seconds, 4-1800 (default 600, or 10 in the nova profile).
    pub MaxRtrAdvInterval: Option<f64>,
    /// Seconds, 3 to 0.75 x Max (default 0.33 x Max, or 0.75 x Max when Max < 9).
    pub MinRtrAdvInterval: Option<f64>,
    /// M flag (default off).
    pub AdvManagedFlag: Option<bool>,
    /// O flag (default off).
    pub AdvOtherConfigFlag: Option<bool>,
    /// MTU option; 0 sends none (default 0).
    pub AdvLinkMTU: Option<u32>,
    /// Reachable time in ms, 0-3600000 (default 0: unspecified).
    pub AdvReachableTime: Option<u32>,
    /// Retransmit timer in ms (default 0: unspecified).
    pub AdvRetransTimer: Option<u32>,
    /// Cur Hop Limit (default 64).
    pub AdvCurHopLimit: Option<u8>,
    /// Router lifetime in seconds: 0, or Max-9000 (default 3 x Max).
    pub AdvDefaultLifetime: Option<u32>,
    /// Include the source link-layer address option (default on).
    pub AdvSourceLLAddress: Option<bool>,
    /// L flag of the prefixes (default on).
    pub AdvOnLink: Option<bool>,
    /// A flag of the prefixes (default on).
    pub AdvAutonomous: Option<bool>,
    /// Prefix valid lifetime (default 86400).
    pub AdvValidLifetime: Option<Lifetime>,
    /// Prefix preferred lifetime (default 14400).
    pub AdvPreferredLifetime: Option<Lifetime>,
    /// RDNSS servers (RFC 8106).
    #[serde(default)]
    pub rdnss: Vec<Ipv6Addr>,
    /// RDNSS lifetime (default 3 x Max).
    pub AdvRDNSSLifetime: Option<Lifetime>,
    /// DNSSL search domains (RFC 8106).
    #[serde(default)]
    pub dnssl: Vec<String>,
    /// DNSSL lifetime (default 3 x Max).
    pub AdvDNSSLLifetime: Option<Lifetime>,
}

/// Most RDNSS servers in one RA.
pub const MAX_RDNSS: usize = 16;
/// Most bytes of encoded DNSSL names in one RA.
pub const MAX_DNSSL_BYTES: usize = 512;

/// Validated parameters, in wire units.
#[derive(Debug, Clone, PartialEq)]
pub struct RaParams {
    /// Whether to advertise at all.
    pub send: bool,
    /// Minimum interval between unsolicited multicast RAs.
    pub min_interval: Duration,
    /// Maximum interval between unsolicited multicast RAs.
    pub max_interval: Duration,
    /// M flag.
    pub managed: bool,
    /// O flag.
    pub other_config: bool,
    /// MTU option value (0: none).
    pub link_mtu: u32,
    /// Reachable time, ms.
    pub reachable_time: u32,
    /// Retransmit timer, ms.
    pub retrans_timer: u32,
    /// Cur Hop Limit.
    pub cur_hop_limit: u8,
    /// Router lifetime, s.
    pub default_lifetime: u16,
    /// Source link-layer address option.
    pub source_lladdr: bool,
    /// Prefix L flag.
    pub on_link: bool,
    /// Prefix A flag.
    pub autonomous: bool,
    /// Prefix valid lifetime, s.
    pub valid_lifetime: u32,
    /// Prefix preferred lifetime, s.
    pub preferred_lifetime: u32,
    /// RDNSS servers.
    pub rdnss: Vec<Ipv6Addr>,
    /// RDNSS lifetime, s.
    pub rdnss_lifetime: u32,
    /// DNSSL domains.
    pub dnssl: Vec<String>,
    /// DNSSL lifetime, s.
    pub dnssl_lifetime: u32,
}

impl Default for RaParams {
    fn default() -> Self {
        RaParams::from_config(&RaConfig::default()).expect("the defaults are valid")
    }
}

impl RaParams {
    /// Applies profile, defaults and radvd's range checks; the error names the key.
    pub fn from_config(c: &RaConfig) -> Result<RaParams, String> {
        let (profile_min, profile_max) = match c.profile.as_deref() {
            None | Some("radvd") => (None, 600.0),
            Some("nova") => (Some(3.0), 10.0),
            Some(other) => return Err(format!("profile: {other:?} is not \"nova\" or \"radvd\"")),
        };
        let max = c.MaxRtrAdvInterval.unwrap_or(profile_max);
        // `contains` is false for NaN, so non-finite values fail these range checks.
        if !(4.0..=1800.0).contains(&max) {
            return Err(format!(
                "MaxRtrAdvInterval: {max} is outside 4-1800 seconds"
            ));
        }
        let min = c
            .MinRtrAdvInterval
            .or(profile_min)
            .unwrap_or(if max >= 9.0 { 0.33 * max } else { 0.75 * max });
        if !(3.0..=0.75 * max).contains(&min) {
            return Err(format!(
                "MinRtrAdvInterval: {min} is outside 3 to 0.75 x MaxRtrAdvInterval ({})",
                0.75 * max
            ));
        }
        let default_lifetime = c.AdvDefaultLifetime.unwrap_or((3.0 * max).round() as u32);
        if default_lifetime != 0 && (f64::from(default_lifetime) < max || default_lifetime > 9000) {
            return Err(format!("AdvDefaultLifetime: {default_lifetime} must be 0 or between MaxRtrAdvInterval and 9000"));
        }
        let reachable_time = c.AdvReachableTime.unwrap_or(0);
        if reachable_time > 3_600_000 {
            return Err(format!(
                "AdvReachableTime: {reachable_time} is over 3600000 ms"
            ));
        }
        let link_mtu = c.AdvLinkMTU.unwrap_or(0);
        if link_mtu != 0 && link_mtu < 1280 {
            return Err(format!(
                "AdvLinkMTU: {link_mtu} is below the IPv6 minimum of 1280"
            ));
        }
        let valid = c
            .AdvValidLifetime
            .as_ref()
            .map_or(Ok(86_400), |l| l.seconds("AdvValidLifetime"))?;
        let preferred = c
            .AdvPreferredLifetime
            .as_ref()
            .map_or(Ok(14_400), |l| l.seconds("AdvPreferredLifetime"))?;
        if preferred > valid {
            return Err(format!(
                "AdvPreferredLifetime: {preferred} exceeds AdvValidLifetime {valid}"
            ));
        }
        let three_max = (3.0 * max).round() as u32;
        let rdnss_lifetime = c
            .AdvRDNSSLifetime
            .as_ref()
            .map_or(Ok(three_max), |l| l.seconds("AdvRDNSSLifetime"))?;
        let dnssl_lifetime = c
            .AdvDNSSLLifetime
            .as_ref()
            .map_or(Ok(three_max), |l| l.seconds("AdvDNSSLLifetime"))?;
        for d in &c.dnssl {
            if !super::hosts::is_hostname(d) {
                return Err(format!("dnssl: {d:?} is not a domain name"));
            }
        }
        // Keep the RA well inside the minimum IPv6 MTU (and each option under its 8-bit length).
        if c.rdnss.len() > MAX_RDNSS {
            return Err(format!(
                "rdnss: {} servers; at most {MAX_RDNSS}",
                c.rdnss.len()
            ));
        }
        let dnssl_bytes: usize = c.dnssl.iter().map(|d| d.len() + 2).sum();
        if dnssl_bytes > MAX_DNSSL_BYTES {
            return Err(format!(
                "dnssl: {dnssl_bytes} bytes of names; at most {MAX_DNSSL_BYTES}"
            ));
        }
        Ok(RaParams {
            send: c.AdvSendAdvert.unwrap_or(true),
            min_interval: Duration::from_secs_f64(min),
            max_interval: Duration::from_secs_f64(max),
            managed: c.AdvManagedFlag.unwrap_or(false),
            other_config: c.AdvOtherConfigFlag.unwrap_or(false),
            link_mtu,
            reachable_time,
            retrans_timer: c.AdvRetransTimer.unwrap_or(0),
            cur_hop_limit: c.AdvCurHopLimit.unwrap_or(64),
            default_lifetime: default_lifetime as u16,
            source_lladdr: c.AdvSourceLLAddress.unwrap_or(true),
            on_link: c.AdvOnLink.unwrap_or(true),
            autonomous: c.AdvAutonomous.unwrap_or(true),
            valid_lifetime: valid,
            preferred_lifetime: preferred,
            rdnss: c.rdnss.clone(),
            rdnss_lifetime,
            dnssl: c.dnssl.clone(),
            dnssl_lifetime,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn radvd_defaults() {
        let p = RaParams::default();
        assert_eq!(p.max_interval, Duration::from_secs(600));
        assert_eq!(p.min_interval, Duration::from_secs(198));
        assert_eq!(p.default_lifetime, 1800);
        assert_eq!(
            (p.cur_hop_limit, p.valid_lifetime, p.preferred_lifetime),
            (64, 86_400, 14_400)
        );
        assert!(p.on_link && p.autonomous && p.source_lladdr && p.send);
        assert_eq!(p.link_mtu, 0);
    }

    #[test]
    fn the_nova_profile() {
        let p = RaParams::from_config(&RaConfig {
            profile: Some("nova".into()),
            ..RaConfig::default()
        })
        .unwrap();
        assert_eq!(p.min_interval, Duration::from_secs(3));
        assert_eq!(p.max_interval, Duration::from_secs(10));
        assert_eq!(p.default_lifetime, 30);
        assert_eq!(p.rdnss_lifetime, 30);
    }

    #[test]
    fn range_checks_name_the_key() {
        let bad = |c: RaConfig| RaParams::from_config(&c).unwrap_err();
        assert!(bad(RaConfig {
            MaxRtrAdvInterval: Some(2.0),
            ..Default::default()
        })
        .starts_with("MaxRtrAdvInterval"));
        assert!(bad(RaConfig {
            MaxRtrAdvInterval: Some(10.0),
            MinRtrAdvInterval: Some(9.0),
            ..Default::default()
        })
        .starts_with("MinRtrAdvInterval"));
        assert!(bad(RaConfig {
            AdvDefaultLifetime: Some(5),
            ..Default::default()
        })
        .starts_with("AdvDefaultLifetime"));
        assert!(bad(RaConfig {
            AdvLinkMTU: Some(1000),
            ..Default::default()
        })
        .starts_with("AdvLinkMTU"));
        assert!(bad(RaConfig {
            AdvPreferredLifetime: Some(Lifetime::Seconds(90_000)),
            ..Default::default()
        })
        .starts_with("AdvPreferredLifetime"));
        assert!(bad(RaConfig {
            profile: Some("x".into()),
            ..Default::default()
        })
        .starts_with("profile"));
        let inf = RaParams::from_config(&RaConfig {
            AdvValidLifetime: Some(Lifetime::Text("infinity".into())),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(inf.valid_lifetime, u32::MAX);
    }
}
