//! The entry points of the drop-in programs: `dnsmasq`, `radvd` and `dhcp_release` (by
//! argv[0], e.g. a symlink, or as `netnode dnsmasq ...`). Each returns the exit status.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use super::daemon::{self, Readiness};
use super::logging::{LogTarget, Syslog};
use crate::server;
use crate::service::{DropIn, ScriptSettings};
use crate::source::Source;

/// How a drop-in daemon runs: in the foreground or not, its pid file, where it logs.
struct Daemon<'a> {
    program: &'a str,
    foreground: bool,
    pid_file: Option<PathBuf>,
    log: LogTarget,
    /// More detail (dnsmasq's `--log-dhcp`: every lease event).
    log_dhcp: bool,
}

/// Where the lines go: `NETNODE_LOG_FILE` when set (a file), else what the command line says.
fn log_target(from_args: LogTarget) -> LogTarget {
    match std::env::var_os("NETNODE_LOG_FILE") {
        Some(f) => LogTarget::File(f.into()),
        None => from_args,
    }
}

fn init_logging(program: &str, target: &LogTarget, log_dhcp: bool) {
    let default = if log_dhcp {
        "info,netnode::dhcp=debug"
    } else {
        "info"
    };
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| default.into());
    let fmt = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false);
    let _ = match target {
        // syslog stamps the time and carries the level as the severity.
        LogTarget::Syslog(facility) => fmt
            .without_time()
            .with_level(false)
            .with_writer(Syslog::new(*facility, program))
            .try_init(),
        // The file is the daemon's stderr (see daemonize); in the foreground, stderr itself.
        LogTarget::File(_) | LogTarget::Stderr => fmt.with_writer(std::io::stderr).try_init(),
    };
}

/// Forks unless told to stay in the foreground, then runs the server from `source` and, once it
/// serves, writes the pid file and releases the parent. A pid file naming a live daemon refuses
/// the start (exit 1), before anything forks.
fn run_daemon(d: Daemon<'_>, source: Source, drop_in: DropIn) -> i32 {
    let program = d.program;
    if let Some(p) = &d.pid_file {
        if let Err(e) = daemon::check_pid_file(p) {
            eprintln!("{program}: {e}");
            return 1;
        }
    }
    let log_file = match &d.log {
        LogTarget::File(f) => Some(f.clone()),
        _ => None,
    };
    let readiness = if d.foreground {
        Readiness::foreground()
    } else {
        match daemon::daemonize(log_file.as_deref()) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("{program}: cannot daemonize: {e}");
                return 1;
            }
        }
    };
    init_logging(program, &d.log, d.log_dhcp);
    let (foreground, pid_file) = (d.foreground, d.pid_file);
    let readiness = Arc::new(Mutex::new(readiness));
    let result = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(server::ServerError::from)
        .and_then(|rt| {
            let ready = readiness.clone();
            rt.block_on(server::serve_from(source, drop_in, move |_| {
                if let Some(p) = &pid_file {
                    daemon::write_pid_file(p).map_err(|e| {
                        std::io::Error::new(
                            e.kind(),
                            format!("writing the pid file {}: {e}", p.display()),
                        )
                    })?;
                }
                ready.lock().unwrap_or_else(|p| p.into_inner()).ready();
                Ok(())
            }))
        });
    match result {
        Ok(()) => 0,
        Err(e) => {
            let msg = e.to_string();
            tracing::error!("{program}: {msg}");
            readiness
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .failed(&msg);
            if foreground {
                eprintln!("{program}: {msg}");
            }
            1
        }
    }
}

/// `dnsmasq [options]`.
pub fn dnsmasq(args: &[String]) -> i32 {
    if args.iter().any(|a| a == "--help" || a == "-w") {
        print!("{}", super::dnsmasq::usage());
        return 0;
    }
    if args.iter().any(|a| a == "--version" || a == "-v") {
        println!(
            "Dnsmasq version 2.90 compatible: netnode {}",
            env!("CARGO_PKG_VERSION")
        );
        return 0;
    }
    let read = |p: &str| std::fs::read_to_string(p);
    let opts = match super::dnsmasq::parse(args, &read) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("dnsmasq: {e}");
            return 1;
        }
    };
    let Some(log) = super::logging::target(opts.log_facility.as_deref()) else {
        eprintln!(
            "dnsmasq: bad log facility {:?}",
            opts.log_facility.as_deref().unwrap_or_default()
        );
        return 1;
    };
    for ignored in &opts.ignored {
        eprintln!("dnsmasq: {ignored} is accepted and has no effect in netnode");
    }
    let drop_in = DropIn {
        script: opts.script.clone().map(|path| ScriptSettings {
            path,
            domain: opts.domain.clone(),
            leasefile_ro: opts.leasefile_ro,
        }),
        log_dhcp: opts.log_dhcp,
    };
    let daemon = Daemon {
        program: "dnsmasq",
        foreground: opts.foreground,
        pid_file: opts.pid_file.clone(),
        log: log_target(log),
        log_dhcp: opts.log_dhcp,
    };
    run_daemon(daemon, Source::Dnsmasq(Box::new(opts)), drop_in)
}

/// radvd's usage line.
pub const RADVD_USAGE: &str = "Usage: radvd [ -hsvcn ] [ -d level ] [ -C config_file ] [ -m log_method ] [ -l log_file ]\n\t[ -f facility ] [ -p pid_file ] [ -u username ] [ -t chrootdir ]\n\nnetnode in place of radvd: router advertisements for the interfaces of config_file\n(default /etc/radvd.conf). -n stays in the foreground; -m syslog (default), stderr,\nlogfile (with -l) or none; -f sets the syslog facility; -d and -u are accepted.\n";

/// `radvd -C <conf> [-p <pidfile>] [-n] [-d <level>] [-m <method>] [-l <logfile>] [-f <facility>]
/// [-u <user>]`.
pub fn radvd(args: &[String]) -> i32 {
    let mut conf = PathBuf::from("/etc/radvd.conf");
    let (mut pid, mut foreground) = (None, false);
    let (mut method, mut log_file, mut facility) = ("syslog".to_string(), None, None);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .cloned()
                .ok_or_else(|| format!("option {name} needs a value"))
        };
        let r = match a.as_str() {
            "-h" | "--help" => {
                print!("{RADVD_USAGE}");
                return 0;
            }
            "-v" | "--version" => {
                println!(
                    "Version: 2.19 compatible: netnode {}",
                    env!("CARGO_PKG_VERSION")
                );
                return 0;
            }
            "-C" | "--config" => value(a).map(|v| conf = v.into()),
            "-p" | "--pidfile" => value(a).map(|v| pid = Some(PathBuf::from(v))),
            "-n" | "--nodaemon" => {
                foreground = true;
                Ok(())
            }
            "-m" | "--logmethod" => value(a).map(|v| method = v),
            "-l" | "--logfile" => value(a).map(|v| log_file = Some(PathBuf::from(v))),
            "-f" | "--facility" => value(a).map(|v| facility = Some(v)),
            "-d" | "--debug" | "-u" | "--username" | "-t" | "--chrootdir" => value(a).map(|_| ()),
            "-c" | "--configtest" => {
                Err("netnode has no separate config test; run `netnode check`".into())
            }
            other => Err(format!("unknown option {other}\n{RADVD_USAGE}")),
        };
        if let Err(e) = r {
            eprintln!("radvd: {e}");
            return 1;
        }
    }
    let facility = match facility.as_deref().map(str::parse::<u8>) {
        None => super::logging::DAEMON,
        Some(Ok(n)) if n < 24 => n,
        Some(_) => {
            eprintln!("radvd: -f takes a facility number (0-23)");
            return 1;
        }
    };
    let log = match method.as_str() {
        "syslog" | "stderr_syslog" => LogTarget::Syslog(facility),
        "stderr" | "none" => LogTarget::Stderr,
        "logfile" => LogTarget::File(log_file.unwrap_or_else(|| "/var/log/radvd.log".into())),
        other => {
            eprintln!("radvd: unknown log method {other}");
            return 1;
        }
    };
    // A bad config is an error with line and reason before anything forks.
    if let Err(e) = Source::Radvd(conf.clone()).load() {
        eprintln!("radvd: {e}");
        return 1;
    }
    let daemon = Daemon {
        program: "radvd",
        foreground,
        pid_file: pid,
        log: log_target(log),
        log_dhcp: false,
    };
    run_daemon(daemon, Source::Radvd(conf), DropIn::default())
}

/// `dhcp_release <interface> <address> <MAC> [<client_id>]`.
pub fn dhcp_release(args: &[String]) -> i32 {
    match super::release::parse(args) {
        Ok(r) => match super::release::send(&r) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("dhcp_release: {e}");
                1
            }
        },
        Err(e) => {
            eprintln!("dhcp_release: {e}");
            1
        }
    }
}
