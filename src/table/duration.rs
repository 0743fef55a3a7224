//! Lease times as dnsmasq and the TOML config write them: `120`, `120s`, `45m`, `12h`,
//! `2d`, `1w` or `infinite`.

use std::fmt;

/// A DHCP lease duration; `Infinite` is encoded on the wire as `0xffff_ffff`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LeaseTime {
    /// A finite lease of this many seconds.
    Seconds(u32),
    /// A lease that never expires.
    Infinite,
}

impl LeaseTime {
    /// The value of option 51.
    pub fn wire(self) -> u32 {
        match self {
            LeaseTime::Seconds(s) => s,
            LeaseTime::Infinite => u32::MAX,
        }
    }

    /// When a lease granted at `now` (unix seconds) expires; `None` for infinite leases.
    pub fn expiry(self, now: u64) -> Option<u64> {
        match self {
            LeaseTime::Seconds(s) => Some(now.saturating_add(u64::from(s))),
            LeaseTime::Infinite => None,
        }
    }

    /// Parses a lease time; `None` when the text is not one.
    pub fn parse(text: &str) -> Option<LeaseTime> {
        let text = text.trim();
        if text.eq_ignore_ascii_case("infinite") {
            return Some(LeaseTime::Infinite);
        }
        let (digits, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
            Some(at) => text.split_at(at),
            None => (text, ""),
        };
        if digits.is_empty() {
            return None;
        }
        let multiplier: u64 = match unit {
            "" | "s" | "S" => 1,
            "m" | "M" => 60,
            "h" | "H" => 3600,
            "d" | "D" => 86_400,
            "w" | "W" => 7 * 86_400,
            _ => return None,
        };
        let value: u64 = digits.parse().ok()?;
        let seconds = value.checked_mul(multiplier)?;
        // 0xffffffff means infinite on the wire, so a finite lease stays below it.
        u32::try_from(seconds)
            .ok()
            .filter(|s| *s < u32::MAX)
            .map(LeaseTime::Seconds)
    }
}

impl fmt::Display for LeaseTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LeaseTime::Seconds(s) => write!(f, "{s}s"),
            LeaseTime::Infinite => f.write_str("infinite"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_dnsmasq_form() {
        assert_eq!(LeaseTime::parse("120"), Some(LeaseTime::Seconds(120)));
        assert_eq!(LeaseTime::parse("120s"), Some(LeaseTime::Seconds(120)));
        assert_eq!(LeaseTime::parse("45m"), Some(LeaseTime::Seconds(2700)));
        assert_eq!(LeaseTime::parse("12h"), Some(LeaseTime::Seconds(43_200)));
        assert_eq!(LeaseTime::parse("2d"), Some(LeaseTime::Seconds(172_800)));
        assert_eq!(LeaseTime::parse("1w"), Some(LeaseTime::Seconds(604_800)));
        assert_eq!(LeaseTime::parse("infinite"), Some(LeaseTime::Infinite));
        assert_eq!(LeaseTime::parse("INFINITE"), Some(LeaseTime::Infinite));
    }

    #[test]
    fn rejects_what_is_not_a_time() {
        for bad in ["", "s", "12x", "web-1", "1.5h", "99999999999", "4294967295"] {
            assert_eq!(LeaseTime::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn wire_and_expiry() {
        assert_eq!(LeaseTime::Infinite.wire(), u32::MAX);
        assert_eq!(LeaseTime::Seconds(60).expiry(1000), Some(1060));
        assert_eq!(LeaseTime::Infinite.expiry(1000), None);
    }
}
