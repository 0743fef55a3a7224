//! `netnode ctl`: sends one command to the control socket and prints the answer as a table
//! (or as JSON).

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use super::protocol::{self, Answer, Command};

/// How long to wait for an answer (a reload of a large table takes a while).
const TIMEOUT: Duration = Duration::from_secs(60);
/// The longest answer read (100,000 leases are about 15 MB of JSON).
const MAX_ANSWER: u64 = 256 * 1024 * 1024;

/// Why `netnode ctl` failed.
#[derive(Debug, thiserror::Error)]
pub enum CtlError {
    /// The socket could not be reached.
    #[error("{path}: {source} (is netnode running with this state directory? are you root?)")]
    Connect {
        /// The socket.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// Sending or reading failed.
    #[error("{path}: {source}")]
    Io {
        /// The socket.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The daemon's answer is not an answer.
    #[error("{path}: the answer is not JSON: {source}")]
    Answer {
        /// The socket.
        path: String,
        /// The parse error.
        source: serde_json::Error,
    },
}

/// Sends `command` and returns the daemon's answer.
pub fn send(socket: &Path, command: &Command) -> Result<Answer, CtlError> {
    let path = socket.display().to_string();
    let io = |source| CtlError::Io {
        path: path.clone(),
        source,
    };
    let mut stream = UnixStream::connect(socket).map_err(|source| CtlError::Connect {
        path: path.clone(),
        source,
    })?;
    stream.set_read_timeout(Some(TIMEOUT)).map_err(io)?;
    stream
        .write_all(&protocol::request_line(command))
        .map_err(io)?;
    let mut answer = Vec::new();
    stream
        .take(MAX_ANSWER)
        .read_to_end(&mut answer)
        .map_err(io)?;
    Answer::parse(&answer).map_err(|source| CtlError::Answer { path, source })
}

/// The answer for a person: a table or a few lines per command.
pub fn format(command: &Command, answer: &Answer) -> String {
    if answer.result != 0 {
        return format!("error: {}\n", answer.text);
    }
    let args = answer.arguments.as_ref().unwrap_or(&Value::Null);
    match command {
        Command::Status => status(args),
        Command::Leases { .. } => table(
            &["IP", "MAC", "NETWORK", "BRIDGE", "EXPIRES", "HOSTNAME"],
            args.as_array().into_iter().flatten().map(|r| {
                vec![
                    text(&r["ip"]),
                    text(&r["mac"]),
                    text(&r["network"]),
                    text(&r["bridge"]),
                    match r["expires"].as_u64() {
                        Some(e) => e.to_string(),
                        None => "never".into(),
                    },
                    text(&r["hostname"]),
                ]
            }),
        ),
        Command::Stats => table(
            &["COUNTER", "BRIDGE/NETWORK", "VALUE"],
            args.as_array().into_iter().flatten().map(|c| {
                let scope = match (c["bridge"].as_str(), c["network"].as_str()) {
                    (Some(b), _) => b.to_string(),
                    (None, Some(n)) => n.to_string(),
                    _ => "-".into(),
                };
                vec![text(&c["counter"]), scope, text(&c["value"])]
            }),
        ),
        Command::LeaseRelease { .. } | Command::Reload => {
            let mut out = format!("{}\n", answer.text);
            for p in args["problems"].as_array().into_iter().flatten() {
                out.push_str(&format!("  problem: {}\n", text(p)));
            }
            out
        }
    }
}

/// A JSON value as a cell: strings bare, null as `-`.
fn text(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Rows under a header, columns padded to their widest cell.
fn table(header: &[&str], rows: impl Iterator<Item = Vec<String>>) -> String {
    let rows: Vec<Vec<String>> = std::iter::once(header.iter().map(|h| h.to_string()).collect())
        .chain(rows)
        .collect();
    let widths: Vec<usize> = (0..header.len())
        .map(|i| {
            rows.iter()
                .filter_map(|r| r.get(i))
                .map(|c| c.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for r in &rows {
        let line: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

fn status(s: &Value) -> String {
    let mut out = format!(
        "netnode {} (pid {}), up {} s\nsource: {}\ntable: {} networks, {} bindings, {} problems\n",
        text(&s["version"]),
        text(&s["pid"]),
        text(&s["uptime_seconds"]),
        text(&s["source"]),
        text(&s["networks"]),
        text(&s["bindings"]),
        s["problems"].as_array().map_or(0, Vec::len),
    );
    for svc in s["services"].as_array().into_iter().flatten() {
        let bridges: Vec<String> = svc["bridges"]
            .as_array()
            .into_iter()
            .flatten()
            .map(text)
            .collect();
        let on = if bridges.is_empty() {
            String::new()
        } else {
            format!(" on {}", bridges.join(", "))
        };
        out.push_str(&format!("service {}{on}\n", text(&svc["name"])));
    }
    match s["last_reload"].as_object() {
        Some(r) => out.push_str(&format!(
            "last reload: {} at {} ({}), {} ms{}\n",
            if r.get("ok").and_then(Value::as_bool) == Some(true) {
                "ok"
            } else {
                "FAILED"
            },
            r.get("at").map(text).unwrap_or_default(),
            r.get("why").map(text).unwrap_or_default(),
            r.get("took_ms").map(text).unwrap_or_default(),
            r.get("error")
                .and_then(Value::as_str)
                .map(|e| format!(": {e}"))
                .unwrap_or_default(),
        )),
        None => out.push_str("last reload: none since the start\n"),
    }
    for p in s["problems"].as_array().into_iter().flatten() {
        out.push_str(&format!("problem: {}\n", text(p)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leases_print_as_an_aligned_table() {
        let answer = Answer::ok(
            "1 leases",
            Some(
                serde_json::json!([{"ip":"10.0.0.5","mac":"fa:16:3e:00:00:01","hostname":null,
                "expires":null,"network":"net1","bridge":"br100"}]),
            ),
        );
        let out = format(
            &Command::Leases {
                network: None,
                mac: None,
            },
            &answer,
        );
        assert_eq!(
            out,
            "IP        MAC                NETWORK  BRIDGE  EXPIRES  HOSTNAME\n\
             10.0.0.5  fa:16:3e:00:00:01  net1     br100   never    -\n"
        );
    }

    #[test]
    fn errors_print_their_text() {
        let out = format(&Command::Reload, &Answer::error("reload failed: x"));
        assert_eq!(out, "error: reload failed: x\n");
    }
}
