//! dnsmasq `--dhcp-optsfile` lines: `[tag:<t>,|net:<t>,|<t>,]...(<code>|option:<name>)[,<value>...]`.
//! nova writes `3,<gateway>`, bare `3` (send no router) and `NW-<vif>,3,<gateway>`.

use super::options::{self, Kind};
use super::{split_fields, Problem};

/// A tag condition on an option line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TagMatch {
    /// The client must have this tag.
    Has(String),
    /// The client must not have this tag (`tag:!x`).
    Lacks(String),
}

impl TagMatch {
    /// Whether a client with these tags meets the condition.
    pub fn matches(&self, tags: &[&str]) -> bool {
        match self {
            TagMatch::Has(t) => tags.contains(&t.as_str()),
            TagMatch::Lacks(t) => !tags.contains(&t.as_str()),
        }
    }
}

/// One option setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OptionLine {
    /// Conditions that must all hold for the line to apply.
    pub tags: Vec<TagMatch>,
    /// The option code.
    pub code: u8,
    /// The encoded value; `None` means "do not send this option" (nova's bare `3`).
    pub value: Option<Vec<u8>>,
    /// 1-based line number in its source.
    pub line: usize,
}

/// Parses a whole opts file. Bad lines become problems; the rest still load.
pub fn parse(file: &str, text: &str) -> (Vec<OptionLine>, Vec<Problem>) {
    let mut lines = Vec::new();
    let mut problems = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let body = raw.trim();
        if body.is_empty() || body.starts_with('#') {
            continue;
        }
        match parse_line(body) {
            Ok(mut opt) => {
                opt.line = index + 1;
                lines.push(opt);
            }
            Err(reason) => problems.push(Problem::new(file, index + 1, reason)),
        }
    }
    (lines, problems)
}

/// Parses one option line (without its line number).
pub fn parse_line(body: &str) -> Result<OptionLine, String> {
    let fields = split_fields(body);
    let mut tags = Vec::new();
    let mut rest = fields.as_slice();
    let (code, kind) = loop {
        let Some((first, tail)) = rest.split_first() else {
            return Err("no option code".into());
        };
        rest = tail;
        let first = first.trim();
        if let Some(name) = first.strip_prefix("option:") {
            break options::by_name(name).ok_or_else(|| format!("unknown option name {name:?}"))?;
        }
        if let Ok(code) = first.parse::<u8>() {
            break (code, options::kind_of(code));
        }
        if first.starts_with("option6:")
            || first.starts_with("vendor:")
            || first.starts_with("encap:")
            || first.starts_with("vi-encap:")
        {
            return Err(format!(
                "{first:?}: DHCPv6 and vendor-encapsulated options are not supported"
            ));
        }
        let tag = first
            .strip_prefix("tag:")
            .or_else(|| first.strip_prefix("net:"))
            .unwrap_or(first);
        if tag.is_empty() || first.chars().all(|c| c.is_ascii_digit()) {
            return Err(format!("{first:?} is neither a tag nor an option code"));
        }
        tags.push(match tag.strip_prefix('!') {
            Some(t) => TagMatch::Lacks(t.to_string()),
            None => TagMatch::Has(tag.to_string()),
        });
    };
    if options::RESERVED.contains(&code) {
        return Err(format!("option {code} is set by the server itself"));
    }
    let values: Vec<&str> = rest.iter().map(|v| v.trim()).collect();
    let value = if values.is_empty() || values == [""] {
        None
    } else {
        Some(options::encode(kind, &values).map_err(|e| format!("option {code}: {e}"))?)
    };
    if matches!(kind, Kind::Text) && value.as_ref().is_some_and(|v| v.len() > 255 * 4) {
        return Err(format!("option {code}: value too long"));
    }
    Ok(OptionLine {
        tags,
        code,
        value,
        line: 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nova_forms() {
        let o = parse_line("3,198.18.0.1").unwrap();
        assert_eq!((o.code, o.value), (3, Some(vec![198, 18, 0, 1])));
        let o = parse_line("3").unwrap();
        assert_eq!((o.code, o.value), (3, None));
        let o = parse_line("NW-8f2a,3,198.18.0.1").unwrap();
        assert_eq!(o.tags, [TagMatch::Has("NW-8f2a".into())]);
        let o = parse_line("NW-8f2a,3").unwrap();
        assert_eq!(o.value, None);
    }

    #[test]
    fn dnsmasq_forms() {
        let o = parse_line("tag:red,tag:!blue,option:ntp-server,198.18.0.5,198.18.0.6").unwrap();
        assert_eq!(
            o.tags,
            [TagMatch::Has("red".into()), TagMatch::Lacks("blue".into())]
        );
        assert_eq!(o.code, 42);
        assert_eq!(o.value.unwrap().len(), 8);
        let o = parse_line("net:old,option:mtu,1450").unwrap();
        assert_eq!(o.value, Some(vec![0x05, 0xaa]));
        let o = parse_line("option:domain-search,a.example,b.example").unwrap();
        assert_eq!(o.code, 119);
        let o = parse_line("252,\"http://198.18.0.1/wpad.dat\"").unwrap();
        assert_eq!(o.value.unwrap(), b"http://198.18.0.1/wpad.dat");
    }

    #[test]
    fn problems_name_the_line() {
        let (ok, bad) = parse(
            "nova-br100.opts",
            "3,198.18.0.1\noption:nope,1\n53,1\n26,99999\noption6:dns-server,[::]",
        );
        assert_eq!(ok.len(), 1);
        let lines: Vec<usize> = bad.iter().map(|p| p.line).collect();
        assert_eq!(lines, [2, 3, 4, 5]);
        assert!(bad[0]
            .to_string()
            .contains("nova-br100.opts:2: unknown option name"));
    }

    #[test]
    fn tag_logic() {
        assert!(TagMatch::Has("a".into()).matches(&["a", "b"]));
        assert!(!TagMatch::Lacks("a".into()).matches(&["a"]));
    }
}
