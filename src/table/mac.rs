//! Ethernet hardware addresses as they appear in hosts files, configs and packets.

use std::fmt;
use std::str::FromStr;

/// A 48-bit Ethernet MAC address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// Reads a MAC from the first six bytes of a slice, if there are six.
    pub fn from_slice(bytes: &[u8]) -> Option<MacAddr> {
        bytes.get(..6)?.try_into().ok().map(MacAddr)
    }

    /// The raw octets.
    pub fn octets(self) -> [u8; 6] {
        self.0
    }
}

/// Why text is not a MAC address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not a MAC address (want six hex octets separated by ':' or '-')")]
pub struct BadMac;

impl FromStr for MacAddr {
    type Err = BadMac;

    fn from_str(text: &str) -> Result<MacAddr, BadMac> {
        let mut out = [0u8; 6];
        let mut parts = text.split([':', '-']);
        for slot in &mut out {
            let part = parts.next().ok_or(BadMac)?;
            if part.is_empty() || part.len() > 2 {
                return Err(BadMac);
            }
            *slot = u8::from_str_radix(part, 16).map_err(|_| BadMac)?;
        }
        match parts.next() {
            None => Ok(MacAddr(out)),
            Some(_) => Err(BadMac),
        }
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let mac: MacAddr = "FA:16:3e:0:a:ff".parse().unwrap();
        assert_eq!(mac.0, [0xfa, 0x16, 0x3e, 0, 0x0a, 0xff]);
        assert_eq!(mac.to_string(), "fa:16:3e:00:0a:ff");
        assert_eq!("fa-16-3e-00-0a-ff".parse::<MacAddr>(), Ok(mac));
    }

    #[test]
    fn rejects_bad_text() {
        for bad in [
            "",
            "fa:16:3e:00:0a",
            "fa:16:3e:00:0a:ff:01",
            "fa:16:3e:00:0a:fff",
            "zz:16:3e:00:0a:ff",
            "fa::3e:00:0a:ff",
        ] {
            assert!(bad.parse::<MacAddr>().is_err(), "{bad}");
        }
    }
}
