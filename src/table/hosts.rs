//! dnsmasq `--dhcp-hostsfile` lines, in every form nova and dnsmasq write:
//! `[<hwaddr>...][,id:<client_id>|*][,set:<tag>|net:<tag>][,tag:<tag>][,<ipaddr>][,<hostname>][,<lease_time>][,ignore]`.

use std::net::Ipv4Addr;

use super::options::hex_bytes;
use super::{split_fields, LeaseTime, MacAddr, Problem};

/// How a host line matches a client's identifier (option 61).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientIdMatch {
    /// `id:*`: ignore the client identifier, match by MAC only.
    Any,
    /// `id:<bytes>`: match a client sending exactly this identifier.
    Exact(Vec<u8>),
}

/// One parsed host line.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HostEntry {
    /// Hardware addresses this line applies to (dnsmasq allows several).
    pub macs: Vec<MacAddr>,
    /// The `id:` field.
    pub client_id: Option<ClientIdMatch>,
    /// Tags set for clients matching this line (`set:` and the old `net:`).
    pub set_tags: Vec<String>,
    /// Tags the client must already have for the line to apply (`tag:`).
    pub require_tags: Vec<String>,
    /// The fixed address.
    pub ip: Option<Ipv4Addr>,
    /// The host name, possibly with a domain (`web-1.novalocal`).
    pub hostname: Option<String>,
    /// A per-host lease time.
    pub lease_time: Option<LeaseTime>,
    /// `ignore`: never answer this client.
    pub ignore: bool,
    /// 1-based line number in its file.
    pub line: usize,
}

/// Parses a whole hosts file. Bad lines become problems; the rest still load.
pub fn parse(file: &str, text: &str) -> (Vec<HostEntry>, Vec<Problem>) {
    let mut entries = Vec::new();
    let mut problems = Vec::new();
    parse_each(file, text, |parsed| match parsed {
        Ok(entry) => entries.push(entry),
        Err(problem) => problems.push(problem),
    });
    (entries, problems)
}

/// Parses a hosts file line by line, handing each entry (or the problem with its line) to
/// `each` in file order, so a caller can use the entries without holding them all.
pub fn parse_each(file: &str, text: &str, mut each: impl FnMut(Result<HostEntry, Problem>)) {
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        let body = raw.trim();
        if body.is_empty() || body.starts_with('#') {
            continue;
        }
        each(match parse_line(body) {
            Ok(mut entry) => {
                entry.line = line;
                Ok(entry)
            }
            Err(reason) => Err(Problem::new(file, line, reason)),
        });
    }
}

/// Parses one host line (without its line number).
pub fn parse_line(body: &str) -> Result<HostEntry, String> {
    let mut entry = HostEntry::default();
    for field in split_fields(body) {
        let field = field.trim();
        if field.is_empty() {
            return Err("empty field".into());
        }
        if let Some(id) = field.strip_prefix("id:") {
            entry.client_id = Some(if id == "*" {
                ClientIdMatch::Any
            } else {
                ClientIdMatch::Exact(hex_bytes(id).unwrap_or_else(|| id.as_bytes().to_vec()))
            });
        } else if let Some(tag) = field
            .strip_prefix("set:")
            .or_else(|| field.strip_prefix("net:"))
        {
            entry.set_tags.push(nonempty_tag(tag)?);
        } else if let Some(tag) = field.strip_prefix("tag:") {
            entry.require_tags.push(nonempty_tag(tag)?);
        } else if field.eq_ignore_ascii_case("ignore") {
            entry.ignore = true;
        } else if field.starts_with('[') {
            // An IPv6 address for DHCPv6: not served by netnode's DHCPv4; accepted and unused.
        } else if let Some(mac) = parse_hwaddr(field) {
            entry.macs.push(mac);
        } else if let Ok(ip) = field.parse::<Ipv4Addr>() {
            if entry.ip.replace(ip).is_some() {
                return Err(format!("second IPv4 address {field:?}"));
            }
        } else if let Some(lease) = LeaseTime::parse(field) {
            entry.lease_time = Some(lease);
        } else if is_hostname(field) {
            if entry.hostname.replace(field.to_string()).is_some() {
                return Err(format!("second host name {field:?}"));
            }
        } else {
            return Err(format!("field {field:?} is not a MAC, id:, tag, IPv4 address, host name, lease time or 'ignore'"));
        }
    }
    if entry.macs.is_empty() && !matches!(entry.client_id, Some(ClientIdMatch::Exact(_))) {
        return Err("no hardware address or client id".into());
    }
    Ok(entry)
}

fn nonempty_tag(tag: &str) -> Result<String, String> {
    if tag.is_empty() {
        Err("empty tag".into())
    } else {
        Ok(tag.to_string())
    }
}

/// A MAC, optionally with dnsmasq's hardware-type prefix (`1-fa:16:...` for Ethernet).
fn parse_hwaddr(field: &str) -> Option<MacAddr> {
    let mac = match field.split_once('-') {
        Some(("1" | "01", rest)) if rest.contains(':') => rest,
        _ => field,
    };
    // Require colons or dashes so a hostname such as "ab-cd-ef-01-02-03" is not a MAC only by luck.
    if mac.len() < 11 {
        return None;
    }
    mac.parse().ok()
}

/// RFC 1123 host names, possibly with a domain (dnsmasq accepts a trailing dot, as nova writes
/// `name.` when dhcp_domain is empty).
pub fn is_hostname(text: &str) -> bool {
    let text = text.strip_suffix('.').unwrap_or(text);
    !text.is_empty()
        && text.len() <= 253
        && text.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mac(s: &str) -> MacAddr {
        s.parse().unwrap()
    }

    #[test]
    fn nova_default_line() {
        let e = parse_line("fa:16:3e:00:00:01,web-1.novalocal,198.18.0.10").unwrap();
        assert_eq!(e.macs, [mac("fa:16:3e:00:00:01")]);
        assert_eq!(e.hostname.as_deref(), Some("web-1.novalocal"));
        assert_eq!(e.ip, Some("198.18.0.10".parse().unwrap()));
        assert_eq!(e.lease_time, None);
        assert!(!e.ignore);
    }

    #[test]
    fn nova_single_default_gateway_line_and_empty_domain() {
        let e = parse_line("fa:16:3e:00:00:02,db.,198.18.0.11,net:NW-8f2a").unwrap();
        assert_eq!(e.set_tags, ["NW-8f2a"]);
        assert_eq!(e.hostname.as_deref(), Some("db."));
    }

    #[test]
    fn general_dnsmasq_syntax() {
        let e = parse_line(
            "fa:16:3e:00:00:03,id:01:fa:16:3e:00:00:03,set:red,tag:known,198.18.0.12,h3,45m",
        )
        .unwrap();
        assert_eq!(
            e.client_id,
            Some(ClientIdMatch::Exact(vec![1, 0xfa, 0x16, 0x3e, 0, 0, 3]))
        );
        assert_eq!(e.set_tags, ["red"]);
        assert_eq!(e.require_tags, ["known"]);
        assert_eq!(e.lease_time, Some(LeaseTime::Seconds(2700)));
        let e = parse_line("fa:16:3e:00:00:04,id:*,198.18.0.13,infinite").unwrap();
        assert_eq!(e.client_id, Some(ClientIdMatch::Any));
        assert_eq!(e.lease_time, Some(LeaseTime::Infinite));
        let e = parse_line("1-fa:16:3e:00:00:05,ignore").unwrap();
        assert!(e.ignore);
        assert_eq!(e.macs, [mac("fa:16:3e:00:00:05")]);
        let e = parse_line("id:client-7,198.18.0.14").unwrap();
        assert_eq!(
            e.client_id,
            Some(ClientIdMatch::Exact(b"client-7".to_vec()))
        );
        let e = parse_line("fa:16:3e:00:00:06,fa:16:3e:00:00:07,198.18.0.15,[fd00::15]").unwrap();
        assert_eq!(e.macs.len(), 2);
    }

    #[test]
    fn bad_lines_name_line_and_reason_and_rest_loads() {
        let text = "fa:16:3e:00:00:01,a,198.18.0.10\n\n# comment\nfa:16:3e:00:00:02,b,198.18.0.11,198.18.0.12\nnonsense!\nfa:16:3e:00:00:03,c,198.18.0.13";
        let (entries, problems) = parse("nova-br100.conf", text);
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[1].line, 6);
        assert_eq!(problems.len(), 2);
        assert_eq!(problems[0].line, 4);
        assert!(
            problems[0].to_string().starts_with("nova-br100.conf:4: "),
            "{}",
            problems[0]
        );
        assert!(problems[0].reason.contains("second IPv4"));
        assert_eq!(problems[1].line, 5);
    }

    #[test]
    fn hostnames() {
        assert!(is_hostname("web-1"));
        assert!(is_hostname("web-1.novalocal."));
        assert!(!is_hostname("-web"));
        assert!(!is_hostname("a..b"));
        assert!(!is_hostname(&"a".repeat(64)));
    }
}
