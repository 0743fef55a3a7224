//! Where a drop-in daemon logs, as dnsmasq decides it: syslog by default (facility DAEMON),
//! another facility with `--log-facility=LOCAL0` (and the other names), a file with
//! `--log-facility=/path`, stderr with `--log-facility=-`. nova's rootwrap strips the
//! environment, so the command line is what counts; `NETNODE_LOG_FILE` still wins when set.
//!
//! Syslog messages go to the local syslog socket (`/dev/log`, or `NETNODE_SYSLOG` when set,
//! which the tests use to listen themselves) as RFC 3164 datagrams:
//! `<PRI>Mmm dd hh:mm:ss TAG[PID]: message`, one per event, the severity from its level.

#![allow(clippy::disallowed_methods)] // IO shell: reads the clock for the syslog timestamp

use std::io::{self, Write};
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::sync::Arc;

use tracing::Level;
use tracing_subscriber::fmt::MakeWriter;

/// The syslog socket.
pub const DEV_LOG: &str = "/dev/log";

/// Where the daemon's log lines go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogTarget {
    /// Syslog, with this facility number (RFC 3164: DAEMON is 3).
    Syslog(u8),
    /// A file, appended to.
    File(PathBuf),
    /// Standard error.
    Stderr,
}

/// A facility name dnsmasq's `--log-facility` takes (any case), as its number.
pub fn facility(name: &str) -> Option<u8> {
    const NAMES: [&str; 24] = [
        "kern",
        "user",
        "mail",
        "daemon",
        "auth",
        "syslog",
        "lpr",
        "news",
        "uucp",
        "cron",
        "authpriv",
        "ftp",
        "ntp",
        "security",
        "console",
        "solaris-cron",
        "local0",
        "local1",
        "local2",
        "local3",
        "local4",
        "local5",
        "local6",
        "local7",
    ];
    let lower = name.to_ascii_lowercase();
    NAMES
        .iter()
        .position(|n| *n == lower)
        .and_then(|i| u8::try_from(i).ok())
}

/// The target `--log-facility`'s value names (dnsmasq: `-` is stderr, a value with a `/` is a
/// file, anything else a facility). `None` when it is not a facility dnsmasq knows.
pub fn target(value: Option<&str>) -> Option<LogTarget> {
    match value {
        None => Some(LogTarget::Syslog(DAEMON)),
        Some("-") => Some(LogTarget::Stderr),
        Some(v) if v.contains('/') => Some(LogTarget::File(PathBuf::from(v))),
        Some(v) => facility(v).map(LogTarget::Syslog),
    }
}

/// The DAEMON facility, dnsmasq's default.
pub const DAEMON: u8 = 3;

/// Sends each log event to syslog as one datagram.
#[derive(Debug, Clone)]
pub struct Syslog {
    socket: Arc<Option<UnixDatagram>>,
    facility: u8,
    tag: Arc<str>,
}

impl Syslog {
    /// A sender to the syslog socket (`NETNODE_SYSLOG` or `/dev/log`) tagging lines `tag[pid]`.
    /// Without a syslog socket the lines are dropped, as syslog(3) does.
    pub fn new(facility: u8, tag: &str) -> Syslog {
        let path = std::env::var_os("NETNODE_SYSLOG").unwrap_or_else(|| DEV_LOG.into());
        Syslog::to(std::path::Path::new(&path), facility, tag)
    }

    /// A sender to the syslog socket at `path`.
    pub fn to(path: &std::path::Path, facility: u8, tag: &str) -> Syslog {
        let socket = UnixDatagram::unbound()
            .and_then(|s| s.connect(path).map(|()| s))
            .ok();
        Syslog {
            socket: Arc::new(socket),
            facility,
            tag: tag.into(),
        }
    }
}

/// One event's line, sent when the formatter has written it.
pub struct SyslogLine {
    out: Syslog,
    severity: u8,
    line: Vec<u8>,
}

impl Write for SyslogLine {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.line.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for SyslogLine {
    fn drop(&mut self) {
        let Some(socket) = self.out.socket.as_ref() else {
            return;
        };
        let text = String::from_utf8_lossy(&self.line);
        let message = text.trim_end();
        if message.is_empty() {
            return;
        }
        let pri = u16::from(self.out.facility) * 8 + u16::from(self.severity);
        let stamp = timestamp(crate::clock::unix_now());
        let datagram = format!(
            "<{pri}>{stamp} {}[{}]: {message}",
            self.out.tag,
            std::process::id()
        );
        let _ = socket.send(datagram.as_bytes());
    }
}

impl<'a> MakeWriter<'a> for Syslog {
    type Writer = SyslogLine;

    fn make_writer(&'a self) -> SyslogLine {
        self.line(6)
    }

    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> SyslogLine {
        // RFC 5424 severities: error 3, warning 4, info 6, debug 7.
        let severity = match *meta.level() {
            Level::ERROR => 3,
            Level::WARN => 4,
            Level::INFO => 6,
            Level::DEBUG | Level::TRACE => 7,
        };
        self.line(severity)
    }
}

impl Syslog {
    fn line(&self, severity: u8) -> SyslogLine {
        SyslogLine {
            out: self.clone(),
            severity,
            line: Vec::with_capacity(256),
        }
    }
}

/// `Mmm dd hh:mm:ss` of a unix time, in UTC (RFC 3164's timestamp; syslog daemons usually
/// replace it with their own).
fn timestamp(secs: u64) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (h, m, s) = (rem / 3600, rem % 3600 / 60, rem % 60);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let name = MONTHS.get((month - 1) as usize).copied().unwrap_or("Jan");
    format!("{name} {day:>2} {h:02}:{m:02}:{s:02}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_facility_values_as_dnsmasq_reads_them() {
        assert_eq!(target(None), Some(LogTarget::Syslog(3)));
        assert_eq!(target(Some("DAEMON")), Some(LogTarget::Syslog(3)));
        assert_eq!(target(Some("local0")), Some(LogTarget::Syslog(16)));
        assert_eq!(target(Some("LOCAL7")), Some(LogTarget::Syslog(23)));
        assert_eq!(target(Some("-")), Some(LogTarget::Stderr));
        assert_eq!(
            target(Some("/var/log/d.log")),
            Some(LogTarget::File("/var/log/d.log".into()))
        );
        assert_eq!(target(Some("bogus")), None);
    }

    #[test]
    fn one_datagram_per_event_with_priority_and_tag() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let listener = UnixDatagram::bind(&path).unwrap();
        let out = Syslog::to(&path, 16, "dnsmasq");
        {
            let mut line = out.line(4);
            line.write_all(b"WARN something happened\n").unwrap();
        }
        let mut buf = [0u8; 512];
        let n = listener.recv(&mut buf).unwrap();
        let got = String::from_utf8_lossy(&buf[..n]);
        // LOCAL0 (16) * 8 + warning (4) = 132.
        assert!(got.starts_with("<132>"), "{got}");
        assert!(
            got.ends_with(&format!(
                "dnsmasq[{}]: WARN something happened",
                std::process::id()
            )),
            "{got}"
        );
    }

    #[test]
    fn the_timestamp_is_the_civil_date_in_utc() {
        assert_eq!(timestamp(0), "Jan  1 00:00:00");
        assert_eq!(timestamp(951_782_400), "Feb 29 00:00:00"); // 2000, a leap year
        assert_eq!(timestamp(1_795_600_000), "Nov 25 09:46:40");
    }
}
