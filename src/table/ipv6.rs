//! Instance IPv6 addresses, as nova's `ipv6_backend`s compute them. The RA engine, the demo and
//! (later) the metadata service all use these two functions.

use std::net::Ipv6Addr;

use sha1::{Digest, Sha1};

use super::MacAddr;

/// nova's `ipv6_backend` choices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Backend {
    /// Modified EUI-64 of the MAC (RFC 2462/4291): what the kernel's SLAAC forms.
    #[default]
    #[value(name = "rfc2462")]
    Rfc2462,
    /// A project hash in the upper interface-identifier bits, the MAC's low 24 bits below.
    #[value(name = "account_identifier", alias = "account-identifier")]
    AccountIdentifier,
}

/// Why an address cannot be computed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    /// SLAAC interface identifiers are 64 bits: the prefix must be /64 or shorter.
    #[error("prefix length /{0} leaves fewer than 64 bits for the interface identifier")]
    PrefixTooLong(u8),
    /// account_identifier needs the instance's project id.
    #[error("the account_identifier backend needs a project id")]
    NoProject,
}

/// The modified EUI-64 interface identifier of a MAC: flip the universal/local bit of the first
/// octet and put ff:fe in the middle.
pub fn eui64_interface_id(mac: MacAddr) -> u64 {
    let m = mac.0;
    u64::from_be_bytes([m[0] ^ 0x02, m[1], m[2], 0xff, 0xfe, m[3], m[4], m[5]])
}

/// nova's account_identifier interface id: `(int(sha1(project_id).hexdigest()[:8], 16) << 32)
/// ^ (0xff << 24) ^ (mac & 0xffffff)`.
pub fn account_interface_id(mac: MacAddr, project_id: &str) -> u64 {
    let digest = Sha1::digest(project_id.as_bytes());
    let high = u64::from(u32::from_be_bytes([
        digest[0], digest[1], digest[2], digest[3],
    ]));
    let low24 = u64::from(u32::from_be_bytes([0, mac.0[3], mac.0[4], mac.0[5]]));
    (high << 32) ^ (0xff << 24) ^ low24
}

/// The instance address for `mac` in `prefix`/`prefix_len` with the given backend.
pub fn instance_address(
    prefix: Ipv6Addr,
    prefix_len: u8,
    mac: MacAddr,
    backend: Backend,
    project_id: Option<&str>,
) -> Result<Ipv6Addr, AddressError> {
    if prefix_len > 64 {
        return Err(AddressError::PrefixTooLong(prefix_len));
    }
    let iid = match backend {
        Backend::Rfc2462 => eui64_interface_id(mac),
        Backend::AccountIdentifier => {
            account_interface_id(mac, project_id.ok_or(AddressError::NoProject)?)
        }
    };
    let mask = if prefix_len == 0 {
        0
    } else {
        u128::MAX << (128 - u32::from(prefix_len))
    };
    // nova ORs the identifier into the prefix; the bits of a /64 never overlap.
    Ok(Ipv6Addr::from(
        (u128::from(prefix) & mask) | u128::from(iid),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mac(s: &str) -> MacAddr {
        s.parse().unwrap()
    }

    const P: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0);

    #[test]
    fn rfc2462_vectors_from_nova() {
        // nova/tests/unit/test_ipv6.py (RFC2462TestCase).
        let got =
            instance_address(P, 64, mac("00:16:3e:33:44:55"), Backend::Rfc2462, None).unwrap();
        assert_eq!(
            got,
            "2001:db8::216:3eff:fe33:4455".parse::<Ipv6Addr>().unwrap()
        );
        let got =
            instance_address(P, 64, mac("02:16:3e:33:44:55"), Backend::Rfc2462, None).unwrap();
        assert_eq!(
            got,
            "2001:db8::16:3eff:fe33:4455".parse::<Ipv6Addr>().unwrap()
        );
        let got = instance_address(
            "fd00:1::".parse().unwrap(),
            64,
            mac("fa:16:3e:00:00:01"),
            Backend::Rfc2462,
            None,
        )
        .unwrap();
        assert_eq!(got, "fd00:1::f816:3eff:fe00:1".parse::<Ipv6Addr>().unwrap());
    }

    #[test]
    fn account_identifier_vectors_from_nova() {
        // nova/tests/unit/test_ipv6.py (AccountIdentifierTestCase): project "test".
        let got = instance_address(
            P,
            64,
            mac("02:16:3e:33:44:55"),
            Backend::AccountIdentifier,
            Some("test"),
        )
        .unwrap();
        assert_eq!(
            got,
            "2001:db8::a94a:8fe5:ff33:4455".parse::<Ipv6Addr>().unwrap()
        );
        let got = instance_address(
            P,
            64,
            mac("00:16:3e:33:44:55"),
            Backend::AccountIdentifier,
            Some("test"),
        )
        .unwrap();
        assert_eq!(
            got,
            "2001:db8::a94a:8fe5:ff33:4455".parse::<Ipv6Addr>().unwrap()
        );
        assert_eq!(
            instance_address(
                P,
                64,
                mac("00:16:3e:33:44:55"),
                Backend::AccountIdentifier,
                None
            ),
            Err(AddressError::NoProject)
        );
    }

    #[test]
    fn host_bits_of_the_prefix_are_ignored_and_long_prefixes_refused() {
        let got = instance_address(
            "2001:db8::1".parse().unwrap(),
            64,
            mac("02:16:3e:33:44:55"),
            Backend::Rfc2462,
            None,
        )
        .unwrap();
        assert_eq!(
            got,
            "2001:db8::16:3eff:fe33:4455".parse::<Ipv6Addr>().unwrap()
        );
        assert_eq!(
            instance_address(P, 80, mac("02:16:3e:33:44:55"), Backend::Rfc2462, None),
            Err(AddressError::PrefixTooLong(80))
        );
    }
}
