//! Daemonizing as dnsmasq and radvd do for nova: the command returns 0 only once the daemon
//! serves (nova then reads the pid file), and the daemon's /proc/<pid>/cmdline keeps the
//! original arguments (a fork keeps them; nova checks for `nova-<dev>.conf` there before HUP).

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::Path;

use nix::fcntl::OFlag;
use nix::unistd::{dup2_stderr, dup2_stdin, dup2_stdout, fork, pipe2, setsid, ForkResult};

/// The daemon's end of the pipe to the waiting parent.
#[derive(Debug)]
pub struct Readiness {
    pipe: Option<File>,
}

impl Readiness {
    /// For a process that did not fork (foreground): nothing to tell.
    pub fn foreground() -> Readiness {
        Readiness { pipe: None }
    }

    /// Tells the parent the daemon serves: it exits 0.
    pub fn ready(&mut self) {
        if let Some(mut p) = self.pipe.take() {
            let _ = p.write_all(b"ok");
        }
    }

    /// Tells the parent why starting failed: it prints this and exits 1.
    pub fn failed(&mut self, why: &str) {
        if let Some(mut p) = self.pipe.take() {
            let _ = p.write_all(why.as_bytes());
        }
    }
}

/// Forks. The parent waits for the child's word and exits with 0 (ready) or 1 (it printed the
/// reason); only the child returns. The child starts a new session and points stdin and stdout
/// to /dev/null and stderr to `log` (or /dev/null), so the caller's pipes close. Must be called
/// before any thread is started.
pub fn daemonize(log: Option<&Path>) -> io::Result<Readiness> {
    // Close-on-exec: the scripts the daemon runs must not inherit the write end and hold the
    // parent open.
    let (read_end, write_end) = pipe2(OFlag::O_CLOEXEC)?;
    // SAFETY: no other thread runs yet (documented precondition), so fork is safe.
    match unsafe { fork() }? {
        ForkResult::Child => {
            drop(read_end);
            setsid()?;
            redirect(log)?;
            Ok(Readiness {
                pipe: Some(File::from(write_end)),
            })
        }
        ForkResult::Parent { .. } => {
            drop(write_end);
            let mut word = String::new();
            let _ = File::from(read_end).read_to_string(&mut word);
            if word == "ok" {
                std::process::exit(0);
            }
            if word.is_empty() {
                word = "the daemon exited before it was ready".into();
            }
            eprintln!("netnode: {word}");
            std::process::exit(1);
        }
    }
}

fn redirect(log: Option<&Path>) -> io::Result<()> {
    let null = File::options().read(true).write(true).open("/dev/null")?;
    let err = match log {
        Some(path) => File::options().create(true).append(true).open(path)?,
        None => null.try_clone()?,
    };
    dup2_stdin(&null)?;
    dup2_stdout(&null)?;
    dup2_stderr(&err)?;
    Ok(())
}

/// Writes the pid file (the daemon's own pid, newline-terminated, as dnsmasq and radvd do).
pub fn write_pid_file(path: &Path) -> io::Result<()> {
    crate::durable::write_atomically(path, format!("{}\n", std::process::id()).as_bytes())
        .map_err(|e| io::Error::other(e.to_string()))
}

/// A pid file that names a live netnode, dnsmasq or radvd: that daemon is running, so starting
/// another would orphan it (nova starts dnsmasq only when its pid file names no live process).
#[derive(Debug, thiserror::Error)]
#[error("already running as pid {pid} (pid file {}); not starting a second copy", path.display())]
pub struct AlreadyRunning {
    /// The running daemon's pid.
    pub pid: i32,
    /// The pid file.
    pub path: std::path::PathBuf,
}

/// Checks a pid file before starting: a live netnode, dnsmasq or radvd named in it refuses the
/// start; a missing file, garbage, a dead pid or a pid reused by another program is stale and
/// will be replaced.
pub fn check_pid_file(path: &Path) -> Result<(), AlreadyRunning> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Ok(());
    };
    let Ok(pid) = text.trim().parse::<i32>() else {
        return Ok(());
    };
    if pid <= 0 || pid == std::process::id() as i32 {
        return Ok(());
    }
    // The program's name (argv[0]'s file name: a symlink named dnsmasq shows as dnsmasq).
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    if matches!(comm.trim(), "netnode" | "dnsmasq" | "radvd") {
        return Err(AlreadyRunning {
            pid,
            path: path.to_path_buf(),
        });
    }
    Ok(())
}
