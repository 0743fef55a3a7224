//! The entry points of the drop-in programs: `dnsmasq`, `radvd` and `dhcp_release` (by
//! argv[0], e.g. a symlink, or as `netnode dnsmasq ...`). Each returns the exit status.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use super::daemon::{self, Readiness};
use crate::server;
use crate::service::ScriptSettings;
use crate::source::Source;

/// Where a drop-in daemon logs: `NETNODE_LOG_FILE`, or nowhere once it has daemonized (nova
/// reads the program's output pipes to their end, so a daemon must not keep them).
fn log_file() -> Option<PathBuf> {
    std::env::var_os("NETNODE_LOG_FILE").map(PathBuf::from)
}

fn init_logging() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_ansi(false)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Forks unless told to stay in the foreground, then runs the server from `source` and, once it
/// serves, writes the pid file and releases the parent.
fn run_daemon(
    program: &str,
    foreground: bool,
    pid_file: Option<PathBuf>,
    source: Source,
    script: Option<ScriptSettings>,
) -> i32 {
    let readiness = if foreground {
        Readiness::foreground()
    } else {
        match daemon::daemonize(log_file().as_deref()) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("{program}: cannot daemonize: {e}");
                return 1;
            }
        }
    };
    init_logging();
    let readiness = Arc::new(Mutex::new(readiness));
    let result = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(server::ServerError::from)
        .and_then(|rt| {
            let ready = readiness.clone();
            rt.block_on(server::serve_from(source, script, move |_| {
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
    let read = |p: &str| std::fs::read_to_string(p);
    let opts = match super::dnsmasq::parse(args, &read) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("dnsmasq: {e}");
            return 1;
        }
    };
    for ignored in &opts.ignored {
        eprintln!("dnsmasq: {ignored} is accepted and has no effect in netnode");
    }
    if opts.port != Some(0) {
        eprintln!("dnsmasq: netnode does not serve DNS yet; only DHCP is served");
    }
    let script = opts.script.clone().map(|path| ScriptSettings {
        path,
        domain: opts.domain.clone(),
        leasefile_ro: opts.leasefile_ro,
    });
    let (foreground, pid) = (opts.foreground, opts.pid_file.clone());
    run_daemon(
        "dnsmasq",
        foreground,
        pid,
        Source::Dnsmasq(Box::new(opts)),
        script,
    )
}

/// `radvd -C <conf> [-p <pidfile>] [-n] [-d <level>] [-m <method>] [-l <logfile>] [-u <user>]`.
pub fn radvd(args: &[String]) -> i32 {
    let mut conf = PathBuf::from("/etc/radvd.conf");
    let (mut pid, mut foreground) = (None, false);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .cloned()
                .ok_or_else(|| format!("option {name} needs a value"))
        };
        let r = match a.as_str() {
            "-C" | "--config" => value(a).map(|v| conf = v.into()),
            "-p" | "--pidfile" => value(a).map(|v| pid = Some(PathBuf::from(v))),
            "-n" | "--nodaemon" => {
                foreground = true;
                Ok(())
            }
            "-d" | "--debug" | "-m" | "--logmethod" | "-l" | "--logfile" | "-u" | "--username"
            | "-f" | "--facility" => value(a).map(|_| ()),
            "-c" | "--configtest" => {
                Err("netnode has no separate config test; run `netnode check`".into())
            }
            other => Err(format!("unknown option {other}")),
        };
        if let Err(e) = r {
            eprintln!("radvd: {e}");
            return 1;
        }
    }
    // A bad config is an error with line and reason before anything forks.
    if let Err(e) = Source::Radvd(conf.clone()).load() {
        eprintln!("radvd: {e}");
        return 1;
    }
    run_daemon("radvd", foreground, pid, Source::Radvd(conf), None)
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
