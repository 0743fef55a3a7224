//! radvd.conf (radvd.conf(5)): interface blocks with their options, prefix, RDNSS and DNSSL
//! blocks; what nova writes and the common options besides. Pure: text in, interfaces or an
//! error with the line and reason out.

use std::net::Ipv6Addr;

use ipnetwork::Ipv6Network;

use std::sync::Arc;

use crate::table::ra::{Lifetime, RaConfig, RaParams};
use crate::table::{RaOnly, Table};

/// One `interface` block.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RadvdInterface {
    /// The interface name.
    pub name: String,
    /// Its options, with radvd's names (prefix options folded in: see [`parse`]).
    pub config: RaConfig,
    /// Its prefixes.
    pub prefixes: Vec<Ipv6Network>,
    /// `route` and `clients` blocks and options netnode accepts but does not act on.
    pub ignored: Vec<String>,
    /// The validated parameters (set once the interface block is read whole).
    pub params: Option<Arc<RaParams>>,
}

/// A radvd.conf error: the line and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct ConfError {
    /// 1-based line.
    pub line: usize,
    /// What is wrong.
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Word(String),
    Open,
    Close,
    Semi,
}

fn tokenize(text: &str) -> Vec<(usize, Token)> {
    let mut out = Vec::new();
    for (n, raw) in text.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or("");
        let mut word = String::new();
        let flush = |word: &mut String, out: &mut Vec<(usize, Token)>| {
            if !word.is_empty() {
                out.push((n + 1, Token::Word(std::mem::take(word))));
            }
        };
        for c in line.chars() {
            match c {
                '{' | '}' | ';' => {
                    flush(&mut word, &mut out);
                    out.push((
                        n + 1,
                        match c {
                            '{' => Token::Open,
                            '}' => Token::Close,
                            _ => Token::Semi,
                        },
                    ));
                }
                c if c.is_whitespace() => flush(&mut word, &mut out),
                c => word.push(c),
            }
        }
        flush(&mut word, &mut out);
    }
    out
}

struct Parser {
    tokens: Vec<(usize, Token)>,
    at: usize,
}

impl Parser {
    fn line(&self) -> usize {
        self.tokens
            .get(self.at)
            .or(self.tokens.last())
            .map_or(1, |(l, _)| *l)
    }

    fn err(&self, reason: impl Into<String>) -> ConfError {
        ConfError {
            line: self.line(),
            reason: reason.into(),
        }
    }

    fn next(&mut self) -> Option<Token> {
        let t = self.tokens.get(self.at).map(|(_, t)| t.clone());
        self.at += 1;
        t
    }

    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at).map(|(_, t)| t)
    }

    fn expect(&mut self, want: Token, what: &str) -> Result<(), ConfError> {
        match self.next() {
            Some(t) if t == want => Ok(()),
            _ => {
                self.at -= 1;
                Err(self.err(format!("expected {what}")))
            }
        }
    }

    fn word(&mut self, what: &str) -> Result<String, ConfError> {
        match self.next() {
            Some(Token::Word(w)) => Ok(w),
            _ => {
                self.at -= 1;
                Err(self.err(format!("expected {what}")))
            }
        }
    }

    /// Words up to `{` or `;` (the arguments of RDNSS/DNSSL/clients).
    fn words(&mut self) -> Vec<String> {
        let mut out = Vec::new();
        while let Some(Token::Word(w)) = self.peek().cloned() {
            out.push(w);
            self.at += 1;
        }
        out
    }

    /// `{ Option value; ... };` calling `set` for each option.
    fn block(
        &mut self,
        mut set: impl FnMut(&str, &str, usize) -> Result<(), ConfError>,
    ) -> Result<(), ConfError> {
        self.expect(Token::Open, "'{'")?;
        loop {
            match self.peek() {
                Some(Token::Close) => {
                    self.at += 1;
                    self.expect(Token::Semi, "';' after '}'")?;
                    return Ok(());
                }
                None => return Err(self.err("missing '}'")),
                _ => {}
            }
            let line = self.line();
            let name = self.word("an option name")?;
            let value = self.word(&format!("a value for {name}"))?;
            self.expect(Token::Semi, &format!("';' after {name} {value}"))?;
            set(&name, &value, line)?;
        }
    }

    /// Skips a `{ ... };` block whose contents netnode does not use.
    fn skip_block(&mut self) -> Result<(), ConfError> {
        self.expect(Token::Open, "'{'")?;
        let mut depth = 1;
        while depth > 0 {
            match self.next() {
                Some(Token::Open) => depth += 1,
                Some(Token::Close) => depth -= 1,
                Some(_) => {}
                None => return Err(self.err("missing '}'")),
            }
        }
        self.expect(Token::Semi, "';' after '}'")
    }
}

fn flag(name: &str, value: &str, line: usize) -> Result<bool, ConfError> {
    match value {
        "on" | "yes" | "true" | "1" => Ok(true),
        "off" | "no" | "false" | "0" => Ok(false),
        _ => Err(ConfError {
            line,
            reason: format!("{name}: {value:?} is not on or off"),
        }),
    }
}

fn number<T: std::str::FromStr>(name: &str, value: &str, line: usize) -> Result<T, ConfError> {
    value.parse().map_err(|_| ConfError {
        line,
        reason: format!("{name}: {value:?} is not a number"),
    })
}

fn lifetime(name: &str, value: &str, line: usize) -> Result<Lifetime, ConfError> {
    if value.eq_ignore_ascii_case("infinity") {
        Ok(Lifetime::Text("infinity".into()))
    } else {
        number(name, value, line).map(Lifetime::Seconds)
    }
}

/// Parses a whole radvd.conf. Prefix options (AdvOnLink, AdvAutonomous, lifetimes) apply to
/// every prefix of the interface, as netnode advertises one set per bridge; the first prefix
/// block's values win.
pub fn parse(text: &str) -> Result<Vec<RadvdInterface>, ConfError> {
    let mut p = Parser {
        tokens: tokenize(text),
        at: 0,
    };
    let mut out: Vec<RadvdInterface> = Vec::new();
    while p.peek().is_some() {
        let kw = p.word("'interface'")?;
        if kw != "interface" {
            return Err(ConfError {
                line: p.line(),
                reason: format!("expected 'interface', found {kw:?}"),
            });
        }
        let mut iface = RadvdInterface {
            name: p.word("an interface name")?,
            ..RadvdInterface::default()
        };
        if out.iter().any(|i| i.name == iface.name) {
            return Err(p.err(format!("interface {} is defined twice", iface.name)));
        }
        p.expect(Token::Open, "'{'")?;
        let mut prefix_options_seen = false;
        loop {
            match p.peek() {
                Some(Token::Close) => {
                    p.at += 1;
                    p.expect(Token::Semi, "';' after '}'")?;
                    break;
                }
                None => return Err(p.err("missing '}' of the interface block")),
                _ => {}
            }
            let line = p.line();
            let word = p.word("an option or block")?;
            match word.as_str() {
                "prefix" => {
                    let text = p.word("a prefix")?;
                    let net: Ipv6Network = text.parse().map_err(|_| ConfError {
                        line,
                        reason: format!("{text:?} is not an IPv6 prefix"),
                    })?;
                    iface
                        .prefixes
                        .push(Ipv6Network::new(net.network(), net.prefix()).map_err(|e| {
                            ConfError {
                                line,
                                reason: e.to_string(),
                            }
                        })?);
                    let first = !prefix_options_seen;
                    prefix_options_seen = true;
                    let c = &mut iface.config;
                    let ignored = &mut iface.ignored;
                    p.block(|name, value, line| {
                        match name {
                            "AdvOnLink" if first => c.AdvOnLink = Some(flag(name, value, line)?),
                            "AdvAutonomous" if first => {
                                c.AdvAutonomous = Some(flag(name, value, line)?)
                            }
                            "AdvValidLifetime" if first => {
                                c.AdvValidLifetime = Some(lifetime(name, value, line)?)
                            }
                            "AdvPreferredLifetime" if first => {
                                c.AdvPreferredLifetime = Some(lifetime(name, value, line)?)
                            }
                            "AdvOnLink"
                            | "AdvAutonomous"
                            | "AdvValidLifetime"
                            | "AdvPreferredLifetime" => {}
                            "AdvRouterAddr" | "DeprecatePrefix" | "DecrementLifetimes"
                            | "Base6Interface" | "Base6to4Interface" => {
                                ignored.push(format!("prefix option {name}"))
                            }
                            other => {
                                return Err(ConfError {
                                    line,
                                    reason: format!("unknown prefix option {other}"),
                                })
                            }
                        }
                        Ok(())
                    })?;
                }
                "RDNSS" => {
                    for a in p.words() {
                        iface
                            .config
                            .rdnss
                            .push(a.parse::<Ipv6Addr>().map_err(|_| ConfError {
                                line,
                                reason: format!("RDNSS: {a:?} is not an IPv6 address"),
                            })?);
                    }
                    let c = &mut iface.config;
                    p.block(|name, value, line| match name {
                        "AdvRDNSSLifetime" => {
                            c.AdvRDNSSLifetime = Some(lifetime(name, value, line)?);
                            Ok(())
                        }
                        "FlushRDNSS" | "AdvRDNSSPreference" | "AdvRDNSSOpen" => Ok(()),
                        other => Err(ConfError {
                            line,
                            reason: format!("unknown RDNSS option {other}"),
                        }),
                    })?;
                }
                "DNSSL" => {
                    iface.config.dnssl.extend(p.words());
                    let c = &mut iface.config;
                    p.block(|name, value, line| match name {
                        "AdvDNSSLLifetime" => {
                            c.AdvDNSSLLifetime = Some(lifetime(name, value, line)?);
                            Ok(())
                        }
                        "FlushDNSSL" => Ok(()),
                        other => Err(ConfError {
                            line,
                            reason: format!("unknown DNSSL option {other}"),
                        }),
                    })?;
                }
                "route" | "clients" | "abro" | "lowpanco" | "nat64prefix"
                | "autoignoreprefixes" => {
                    let _ = p.words();
                    p.skip_block()?;
                    iface.ignored.push(format!("{word} block"));
                }
                name => {
                    let value = p.word(&format!("a value for {name}"))?;
                    p.expect(Token::Semi, &format!("';' after {name} {value}"))?;
                    let c = &mut iface.config;
                    match name {
                        "AdvSendAdvert" => c.AdvSendAdvert = Some(flag(name, &value, line)?),
                        "MaxRtrAdvInterval" => {
                            c.MaxRtrAdvInterval = Some(number(name, &value, line)?)
                        }
                        "MinRtrAdvInterval" => {
                            c.MinRtrAdvInterval = Some(number(name, &value, line)?)
                        }
                        "AdvManagedFlag" => c.AdvManagedFlag = Some(flag(name, &value, line)?),
                        "AdvOtherConfigFlag" => {
                            c.AdvOtherConfigFlag = Some(flag(name, &value, line)?)
                        }
                        "AdvLinkMTU" => c.AdvLinkMTU = Some(number(name, &value, line)?),
                        "AdvReachableTime" => {
                            c.AdvReachableTime = Some(number(name, &value, line)?)
                        }
                        "AdvRetransTimer" => c.AdvRetransTimer = Some(number(name, &value, line)?),
                        "AdvCurHopLimit" => c.AdvCurHopLimit = Some(number(name, &value, line)?),
                        "AdvDefaultLifetime" => {
                            c.AdvDefaultLifetime = Some(number(name, &value, line)?)
                        }
                        "AdvSourceLLAddress" => {
                            c.AdvSourceLLAddress = Some(flag(name, &value, line)?)
                        }
                        "IgnoreIfMissing"
                        | "AdvDefaultPreference"
                        | "AdvHomeAgentFlag"
                        | "AdvIntervalOpt"
                        | "AdvHomeAgentInfo"
                        | "UnicastOnly"
                        | "AdvRASolicitedUnicast"
                        | "MinDelayBetweenRAs"
                        | "AdvMobRtrSupportFlag"
                        | "AdvRAMTU" => iface.ignored.push(name.to_string()),
                        other => {
                            return Err(ConfError {
                                line,
                                reason: format!("unknown interface option {other}"),
                            })
                        }
                    }
                }
            }
        }
        let params = RaParams::from_config(&iface.config).map_err(|reason| ConfError {
            line: p.line(),
            reason: format!("interface {}: {reason}", iface.name),
        })?;
        iface.params = Some(Arc::new(params));
        out.push(iface);
    }
    Ok(out)
}

/// The table of a radvd.conf: only advertising interfaces.
pub fn to_table(ifaces: &[RadvdInterface]) -> Table {
    let mut table = Table::empty();
    for i in ifaces {
        let Some(params) = &i.params else { continue };
        if params.send && !i.prefixes.is_empty() {
            table.ra_only.push(RaOnly {
                interface: i.name.clone(),
                params: params.clone(),
                prefixes: i.prefixes.clone(),
            });
        }
        for what in &i.ignored {
            tracing::info!(
                interface = i.name,
                what,
                "radvd.conf: accepted, has no effect in netnode"
            );
        }
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Exactly what nova's linux_net.py writes.
    const NOVA: &str = "interface br100\n{\n   AdvSendAdvert on;\n   MinRtrAdvInterval 3;\n   MaxRtrAdvInterval 10;\n   prefix fd00:1::/64\n   {\n        AdvOnLink on;\n        AdvAutonomous on;\n   };\n};\n";

    #[test]
    fn novas_file() {
        let ifaces = parse(NOVA).unwrap();
        assert_eq!(ifaces.len(), 1);
        let i = &ifaces[0];
        assert_eq!(i.name, "br100");
        assert_eq!(i.prefixes, ["fd00:1::/64".parse::<Ipv6Network>().unwrap()]);
        assert_eq!(
            (i.config.MinRtrAdvInterval, i.config.MaxRtrAdvInterval),
            (Some(3.0), Some(10.0))
        );
        assert_eq!(
            (
                i.config.AdvOnLink,
                i.config.AdvAutonomous,
                i.config.AdvSendAdvert
            ),
            (Some(true), Some(true), Some(true))
        );
    }

    #[test]
    fn common_options_rdnss_dnssl_and_comments() {
        let text = "# site\ninterface br1 {\n AdvSendAdvert on; AdvLinkMTU 1450; AdvManagedFlag off; AdvOtherConfigFlag on;\n AdvCurHopLimit 32; AdvDefaultLifetime 600; AdvReachableTime 30000; AdvRetransTimer 1000;\n IgnoreIfMissing on;\n prefix fd00:2::1/64 { AdvValidLifetime infinity; AdvPreferredLifetime 3600; AdvRouterAddr on; };\n prefix fd00:3::/64 { AdvOnLink off; };\n RDNSS fd00:2::53 fd00:2::54 { AdvRDNSSLifetime 60; };\n DNSSL novalocal example.org { AdvDNSSLLifetime 60; };\n route ::/0 { AdvRoutePreference high; };\n};\ninterface br2 { prefix fd00:4::/64 {}; };\n";
        let ifaces = parse(text).unwrap();
        let i = &ifaces[0];
        assert_eq!(i.prefixes.len(), 2);
        assert_eq!(
            i.prefixes[0].to_string(),
            "fd00:2::/64",
            "host bits cleared"
        );
        assert_eq!(i.config.AdvLinkMTU, Some(1450));
        assert_eq!(
            i.config.AdvValidLifetime,
            Some(Lifetime::Text("infinity".into()))
        );
        assert_eq!(i.config.AdvOnLink, None, "the first prefix's options count");
        assert_eq!(i.config.rdnss.len(), 2);
        assert_eq!(i.config.dnssl, ["novalocal", "example.org"]);
        assert!(i.ignored.iter().any(|x| x == "route block"));
        assert_eq!(ifaces[1].name, "br2");
    }

    #[test]
    fn errors_name_the_line_and_reason() {
        let cases = [
            (
                "interface br0 {\n AdvSendAdvert maybe;\n};",
                2,
                "not on or off",
            ),
            (
                "interface br0 {\n Frobnicate 1;\n};",
                2,
                "unknown interface option Frobnicate",
            ),
            (
                "interface br0 {\n prefix nope { };\n};",
                2,
                "not an IPv6 prefix",
            ),
            ("interface br0 {\n AdvSendAdvert on\n};", 3, "expected ';'"),
            (
                "interface br0 {\n MaxRtrAdvInterval 2;\n};",
                3,
                "MaxRtrAdvInterval",
            ),
            ("prefix fd00::/64 {};", 1, "expected 'interface'"),
            ("interface br0 {\n AdvSendAdvert on;\n", 2, "missing '}'"),
        ];
        for (text, line, reason) in cases {
            let e = parse(text).unwrap_err();
            assert_eq!(e.line, line, "{text}: {e}");
            assert!(e.reason.contains(reason), "{text}: {e}");
        }
    }
}
