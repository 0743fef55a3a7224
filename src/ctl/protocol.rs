//! The control socket's protocol, pure: a request is one JSON object, Kea's shape
//! (`{"command": "leases", "arguments": {"network": "net1"}}`), read up to a newline or the end
//! of the stream; the answer is one JSON object, `{"result": 0, "text": ..., "arguments": ...}`
//! (`result` 1 for an error), and the connection closes.

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::table::MacAddr;

/// The longest request read (a command is a few dozen bytes).
pub const MAX_REQUEST: usize = 64 * 1024;

/// Every command, with a line of help each (`netnode ctl --help` and the error for an unknown
/// one list them).
pub const COMMANDS: &[(&str, &str)] = &[
    (
        "status",
        "version, uptime, services per bridge, the last reload and its problems",
    ),
    ("leases", "leases held (arguments: network, mac)"),
    (
        "lease-release",
        "end a lease now, journaled (arguments: ip)",
    ),
    (
        "reload",
        "reload the table as SIGHUP does, and say how it went",
    ),
    ("stats", "every counter, per bridge or network"),
];

/// A parsed command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `status`.
    Status,
    /// `leases`, filtered by network name and MAC.
    Leases {
        /// Only leases in this network.
        network: Option<String>,
        /// Only this client's.
        mac: Option<MacAddr>,
    },
    /// `lease-release`.
    LeaseRelease {
        /// The leased address.
        ip: Ipv4Addr,
    },
    /// `reload`.
    Reload,
    /// `stats`.
    Stats,
}

/// Why a request was refused (the answer's `text`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// Not JSON, or not an object with a string `command`.
    #[error("malformed request: {0}")]
    Malformed(String),
    /// A command netnode does not have.
    #[error("unknown command {0:?}; commands: {1}")]
    UnknownCommand(String, String),
    /// An argument missing, of the wrong type, or not one the command takes.
    #[error("{command}: {reason}")]
    BadArgument {
        /// The command.
        command: &'static str,
        /// What is wrong, naming the argument.
        reason: String,
    },
    /// Longer than [`MAX_REQUEST`].
    #[error("request longer than {MAX_REQUEST} bytes")]
    TooLong,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Envelope {
    command: String,
    #[serde(default)]
    arguments: Option<Value>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct LeasesArgs {
    network: Option<String>,
    mac: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReleaseArgs {
    ip: String,
}

/// Parses one request (the bytes up to the newline, or all of them).
pub fn parse(bytes: &[u8]) -> Result<Command, RequestError> {
    if bytes.len() > MAX_REQUEST {
        return Err(RequestError::TooLong);
    }
    let env: Envelope =
        serde_json::from_slice(bytes).map_err(|e| RequestError::Malformed(e.to_string()))?;
    let args = env.arguments.filter(|a| !a.is_null());
    let no_args = |command: &'static str, c: Command| match &args {
        Some(Value::Object(m)) if m.is_empty() => Ok(c),
        None => Ok(c),
        Some(_) => Err(RequestError::BadArgument {
            command,
            reason: "takes no arguments".into(),
        }),
    };
    match env.command.as_str() {
        "status" => no_args("status", Command::Status),
        "reload" => no_args("reload", Command::Reload),
        "stats" => no_args("stats", Command::Stats),
        "leases" => {
            let a: LeasesArgs = match args {
                Some(v) => serde_json::from_value(v).map_err(|e| bad("leases", e))?,
                None => LeasesArgs::default(),
            };
            let mac = match a.mac {
                Some(m) => Some(
                    m.parse::<MacAddr>()
                        .map_err(|e| RequestError::BadArgument {
                            command: "leases",
                            reason: format!("mac {m:?}: {e}"),
                        })?,
                ),
                None => None,
            };
            Ok(Command::Leases {
                network: a.network,
                mac,
            })
        }
        "lease-release" => {
            let Some(v) = args else {
                return Err(RequestError::BadArgument {
                    command: "lease-release",
                    reason: "needs arguments {\"ip\": \"<address>\"}".into(),
                });
            };
            let a: ReleaseArgs = serde_json::from_value(v).map_err(|e| bad("lease-release", e))?;
            let ip = a.ip.parse().map_err(|_| RequestError::BadArgument {
                command: "lease-release",
                reason: format!("ip {:?} is not an IPv4 address", a.ip),
            })?;
            Ok(Command::LeaseRelease { ip })
        }
        other => Err(RequestError::UnknownCommand(
            other.chars().take(64).collect(),
            COMMANDS
                .iter()
                .map(|(c, _)| *c)
                .collect::<Vec<_>>()
                .join(", "),
        )),
    }
}

fn bad(command: &'static str, e: serde_json::Error) -> RequestError {
    RequestError::BadArgument {
        command,
        reason: e.to_string(),
    }
}

/// The request a client sends for a command.
pub fn request(command: &Command) -> Value {
    let (name, args) = match command {
        Command::Status => ("status", None),
        Command::Reload => ("reload", None),
        Command::Stats => ("stats", None),
        Command::Leases { network, mac } => {
            let mut m = serde_json::Map::new();
            if let Some(n) = network {
                m.insert("network".into(), n.clone().into());
            }
            if let Some(mac) = mac {
                m.insert("mac".into(), mac.to_string().into());
            }
            ("leases", Some(Value::Object(m)))
        }
        Command::LeaseRelease { ip } => (
            "lease-release",
            Some(serde_json::json!({ "ip": ip.to_string() })),
        ),
    };
    let mut v = serde_json::json!({ "command": name });
    if let (Some(a), Value::Object(m)) = (args, &mut v) {
        m.insert("arguments".into(), a);
    }
    v
}

/// The request a client sends for a command, as one line.
pub fn request_line(command: &Command) -> Vec<u8> {
    let mut line = serde_json::to_vec(&request(command)).unwrap_or_default();
    line.push(b'\n');
    line
}

/// An answer, as sent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Answer {
    /// 0: done; 1: refused or failed.
    pub result: u8,
    /// One line saying what happened.
    pub text: String,
    /// The command's data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arguments: Option<Value>,
}

impl Answer {
    /// A success with data.
    pub fn ok(text: impl Into<String>, arguments: Option<Value>) -> Answer {
        Answer {
            result: 0,
            text: text.into(),
            arguments,
        }
    }

    /// An error.
    pub fn error(text: impl Into<String>) -> Answer {
        Answer {
            result: 1,
            text: text.into(),
            arguments: None,
        }
    }

    /// Reads an answer line.
    pub fn parse(bytes: &[u8]) -> Result<Answer, serde_json::Error> {
        serde_json::from_slice(bytes)
    }

    /// The answer as one line of JSON.
    pub fn to_line(&self) -> Vec<u8> {
        let mut out = serde_json::to_vec(self).unwrap_or_else(|_| {
            br#"{"result":1,"text":"the answer could not be encoded"}"#.to_vec()
        });
        out.push(b'\n');
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_parse_with_and_without_arguments() {
        assert_eq!(parse(br#"{"command":"status"}"#), Ok(Command::Status));
        assert_eq!(
            parse(br#"{"command":"reload","arguments":{}}"#),
            Ok(Command::Reload)
        );
        assert_eq!(
            parse(
                br#"{"command":"leases","arguments":{"network":"n1","mac":"fa:16:3e:00:00:01"}}"#
            ),
            Ok(Command::Leases {
                network: Some("n1".into()),
                mac: Some("fa:16:3e:00:00:01".parse().unwrap())
            })
        );
        assert_eq!(
            parse(br#"{"command":"lease-release","arguments":{"ip":"10.0.0.5"}}"#),
            Ok(Command::LeaseRelease {
                ip: "10.0.0.5".parse().unwrap()
            })
        );
    }

    #[test]
    fn a_request_is_what_parse_reads() {
        for c in [
            Command::Status,
            Command::Stats,
            Command::Reload,
            Command::Leases {
                network: None,
                mac: None,
            },
            Command::Leases {
                network: Some("x".into()),
                mac: Some("02:00:00:00:00:01".parse().unwrap()),
            },
            Command::LeaseRelease {
                ip: "10.1.2.3".parse().unwrap(),
            },
        ] {
            let bytes = serde_json::to_vec(&request(&c)).unwrap();
            assert_eq!(parse(&bytes), Ok(c));
        }
    }

    #[test]
    fn bad_requests_say_what_is_wrong() {
        let err = |b: &[u8]| parse(b).unwrap_err().to_string();
        assert!(err(b"nonsense").starts_with("malformed request"));
        assert!(err(br#"{"command":5}"#).starts_with("malformed request"));
        assert!(err(br#"{"command":"status","x":1}"#).starts_with("malformed request"));
        assert!(err(br#"{"command":"shutdown"}"#).contains("commands: status, leases"));
        assert!(err(br#"{"command":"status","arguments":{"a":1}}"#).contains("takes no arguments"));
        assert!(err(br#"{"command":"lease-release"}"#).contains("needs arguments"));
        assert!(
            err(br#"{"command":"lease-release","arguments":{"ip":"::1"}}"#)
                .contains("not an IPv4 address")
        );
        assert!(err(br#"{"command":"leases","arguments":{"mac":"zz"}}"#).contains("mac \"zz\""));
        assert!(err(br#"{"command":"leases","arguments":{"vlan":1}}"#).contains("unknown field"));
        assert_eq!(
            parse(&vec![b' '; MAX_REQUEST + 1]),
            Err(RequestError::TooLong)
        );
    }
}
