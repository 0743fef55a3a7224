//! Operating netnode: `/metrics` scraped with curl after real DHCP, RA and metadata traffic and
//! checked with promtool; the control socket through `netnode ctl` (and raw, hostile requests);
//! systemd's readiness protocol on a NOTIFY_SOCKET the test listens on; JSON logs. Each test
//! builds its own lab (root) and removes it in Drop.

#![allow(clippy::disallowed_methods)] // a test harness in real time

mod common;

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{can_run_with, netnode, own_client, serve_with, Served, LEASE};

const CURL: (&str, &str) = ("curl", "curl");
const PROMTOOL: (&str, &str) = ("promtool", "prometheus");
const SETPRIV: (&str, &str) = ("setpriv", "util-linux");

/// The value of the first series `name{labels}` (exactly as written) in a scrape.
fn value(scrape: &str, series: &str) -> Option<f64> {
    scrape
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// The sum over every series of a family (any labels).
fn family_sum(scrape: &str, family: &str) -> f64 {
    scrape
        .lines()
        .filter(|l| {
            l.strip_prefix(family)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn scrape(s: &Served) -> String {
    let out = s
        .lab
        .server
        .command("curl")
        .args(["-sf", "http://127.0.0.1:9167/metrics"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "scrape failed: {}\nlog:\n{}",
        String::from_utf8_lossy(&out.stderr),
        s.daemon.log_text()
    );
    String::from_utf8(out.stdout).unwrap()
}

/// `netnode ctl -c <config> args...` in the server namespace: (success, stdout).
fn ctl(s: &Served, args: &[&str]) -> (bool, String) {
    let config = s.config.display().to_string();
    let out = Command::new(netnode())
        .args(["ctl", "--config", &config])
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn dhcp(s: &Served, i: usize) {
    let out = own_client(&s.lab.instances[i - 1], &["--configure"]);
    assert!(
        out.status.success(),
        "instance {i} got no lease: {}\nlog:\n{}",
        String::from_utf8_lossy(&out.stdout),
        s.daemon.log_text()
    );
}

/// Stops the lab's daemon and starts it again with `options` before `serve` and `env` added;
/// returns its log's path.
fn restart_with(
    s: &mut Served,
    options: &[&str],
    env: &[(&str, &str)],
    log: &str,
) -> std::path::PathBuf {
    s.daemon.stop().unwrap();
    let config = s.config.display().to_string();
    let mut args = options.to_vec();
    args.extend(["serve", "--config", &config]);
    let log = s.lab.dir.join(log);
    s.daemon =
        netnode::lab::Daemon::start_with_env(&s.lab.server, &netnode(), &args, env, &log).unwrap();
    log
}

#[test]
fn metrics_count_real_traffic_and_pass_promtool() {
    if !can_run_with("metrics", &[], &[CURL, PROMTOOL]) {
        return;
    }
    let server_ip = "198.18.0.1";
    let extra = format!("cidr_v6 = \"fd00:1::/64\"\n[network.ra]\nprofile = \"nova\"\n[metadata]\nlisten = \"{server_ip}:8775\"\n");
    let mut s = serve_with("ops-metrics", 2, 2, LEASE, &extra);
    dhcp(&s, 1);
    dhcp(&s, 2);
    // A metadata request from an instance (it has no instance record: a 404).
    let out = s.lab.instances[0]
        .ns
        .command("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}"])
        .arg(format!("http://{server_ip}:8775/latest/meta-data/"))
        .output()
        .unwrap();
    let code = String::from_utf8_lossy(&out.stdout).to_string();
    // The first router advertisement waits for the bridge's link-local address (DAD).
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut text = scrape(&s);
    while !text.contains("netnode_ra_sent_total{bridge=\"br100\",kind=\"unsolicited\"} ")
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(200));
        text = scrape(&s);
    }

    let bridge =
        |family: &str, label: &str| value(&text, &format!("{family}{{bridge=\"br100\",{label}}}"));
    assert!(
        bridge("netnode_dhcp_sent_packets_total", "type=\"ack\"") >= Some(2.0),
        "{text}"
    );
    assert!(bridge("netnode_dhcp_received_packets_total", "type=\"discover\"") >= Some(2.0));
    assert_eq!(
        value(&text, "netnode_dhcp_leases{network=\"vmnet\"}"),
        Some(2.0)
    );
    assert_eq!(
        value(&text, "netnode_table_bindings{network=\"vmnet\"}"),
        Some(2.0)
    );
    assert!(value(&text, "netnode_dhcp_journal_commit_seconds_count") >= Some(2.0));
    assert!(value(&text, "netnode_dhcp_journal_commit_changes_sum") >= Some(2.0));
    assert!(
        bridge("netnode_ra_sent_total", "kind=\"unsolicited\"") >= Some(1.0),
        "{text}"
    );
    assert_eq!(
        value(
            &text,
            &format!("netnode_metadata_requests_total{{code=\"{code}\"}}")
        ),
        Some(1.0),
        "HTTP {code}: {text}"
    );
    assert_eq!(
        value(&text, "netnode_metadata_request_seconds_count"),
        Some(1.0)
    );
    assert!(text.contains("netnode_build_info{version=\""));
    assert_eq!(value(&text, "netnode_reloads_total"), Some(0.0));
    // No redundant totals: the typed counters only.
    assert!(!text.contains("netnode_received"), "{text}");
    assert!(!text.contains("md_requests"));

    // promtool reads the format and its lints (names, units, _total) pass.
    let mut check = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    check
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let checked = check.wait_with_output().unwrap();
    assert!(
        checked.status.success() && checked.stdout.is_empty() && checked.stderr.is_empty(),
        "promtool: {}{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );

    // A reload is counted, with its time.
    let before = s.daemon.log_text().matches("table reloaded").count();
    s.daemon.signal(libc::SIGHUP);
    s.daemon
        .wait_for_log("table reloaded", before + 1, Duration::from_secs(5))
        .unwrap();
    let text = scrape(&s);
    assert_eq!(value(&text, "netnode_reloads_total"), Some(1.0));
    assert_eq!(value(&text, "netnode_reload_failures_total"), Some(0.0));
    assert!(value(&text, "netnode_last_reload_success_timestamp_seconds") > Some(1.7e9));
    assert!(family_sum(&text, "netnode_metrics_scrapes_total") >= 2.0);

    // Moving the endpoint to another address on the same port re-binds once the old listener
    // is closed (it would collide with itself otherwise).
    let config = fs::read_to_string(&s.config).unwrap();
    fs::write(
        &s.config,
        format!("{config}\n[metrics]\nlisten = \"0.0.0.0:9167\"\n"),
    )
    .unwrap();
    s.daemon.signal(libc::SIGHUP);
    s.daemon
        .wait_for_log("listen=0.0.0.0:9167", 1, Duration::from_secs(5))
        .unwrap();
    let text = scrape(&s);
    assert_eq!(value(&text, "netnode_reloads_total"), Some(2.0), "{text}");
}

#[test]
fn the_control_socket_answers_netnode_ctl_and_refuses_the_rest() {
    if !can_run_with("ctl", &[], &[SETPRIV]) {
        return;
    }
    let mut s = serve_with("ops-ctl", 2, 2, LEASE, "");
    dhcp(&s, 1);
    let ip1 = s.lab.instance_ip(1).to_string();
    let mac1 = s.lab.instances[0].mac.to_string();
    let socket = s.lab.dir.join("state/netnode.sock");
    let mode = fs::metadata(&socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the socket's mode");

    let (ok, out) = ctl(&s, &["status"]);
    assert!(ok, "{out}");
    assert!(out.contains("service dhcp on br100"), "{out}");
    assert!(
        out.contains("table: 1 networks, 2 bindings, 0 problems"),
        "{out}"
    );

    let (ok, out) = ctl(&s, &["leases"]);
    assert!(
        ok && out.contains(&ip1) && out.contains(&mac1) && out.contains("vmnet"),
        "{out}"
    );
    let other = s.lab.instances[1].mac.to_string();
    let (ok, out) = ctl(&s, &["leases", "--mac", &other]);
    assert!(ok && !out.contains(&ip1), "{out}");
    let (ok, out) = ctl(&s, &["--json", "leases", "--network", "vmnet"]);
    assert!(ok, "{out}");
    let answer: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(answer["result"], 0);
    assert_eq!(answer["arguments"][0]["ip"], ip1.as_str());

    let (ok, out) = ctl(&s, &["stats"]);
    assert!(ok && out.contains("ack") && out.contains("br100"), "{out}");

    // Hostile and malformed requests get an error object; the daemon keeps answering.
    for bad in [
        &b"not json\n"[..],
        b"{\"command\":\"shutdown\"}\n",
        b"{\"command\":\"lease-release\",\"arguments\":{\"ip\":\"300.1.1.1\"}}\n",
        b"\xff\xfe\x00{{{{\n",
        b"[1,2,3]",
    ] {
        let mut c = UnixStream::connect(&socket).unwrap();
        c.write_all(bad).unwrap();
        c.shutdown(std::net::Shutdown::Write).unwrap();
        let mut answer = String::new();
        c.read_to_string(&mut answer).unwrap();
        let v: serde_json::Value = serde_json::from_str(&answer).unwrap();
        assert_eq!(v["result"], 1, "{answer}");
    }
    // A client that sends a megabyte and never a newline is cut off, not buffered.
    let mut c = UnixStream::connect(&socket).unwrap();
    let _ = c.write_all(&vec![b'{'; 1 << 20]);
    drop(c);
    // One that sends nothing is timed out; others are served meanwhile.
    let _idle = UnixStream::connect(&socket).unwrap();
    let (ok, out) = ctl(&s, &["status"]);
    assert!(ok, "{out}");

    // Another user cannot connect (file mode), whatever the command.
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(netnode())
        .args(["ctl", "--socket", &socket.display().to_string(), "status"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Permission denied"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // lease-release ends the lease, journaled: the lease file, the leases list, and after a
    // restart.
    let (ok, out) = ctl(&s, &["lease-release", &ip1]);
    assert!(
        ok && out.contains(&format!("lease of {ip1} by {mac1} ended")),
        "{out}"
    );
    s.wait_lease_file(|t| !t.contains(&ip1));
    let (ok, out) = ctl(&s, &["lease-release", &ip1]);
    assert!(!ok && out.contains("no lease is held"), "{out}");
    s.restart(false, "netnode-2.log", 0);
    let (ok, out) = ctl(&s, &["leases"]);
    assert!(
        ok && !out.contains(&ip1),
        "the release did not survive a restart: {out}"
    );

    // reload: success, then a broken config (refused, the old table serves on, status says so).
    let (ok, out) = ctl(&s, &["reload"]);
    assert!(ok && out.starts_with("reloaded in"), "{out}");
    let good = fs::read_to_string(&s.config).unwrap();
    fs::write(&s.config, format!("{good}\n[nonsense]\n")).unwrap();
    let (ok, out) = ctl(&s, &["reload"]);
    assert!(!ok && out.contains("reload failed"), "{out}");
    let (_, out) = ctl(&s, &["status"]);
    assert!(out.contains("last reload: FAILED"), "{out}");
    dhcp(&s, 2);
    fs::write(&s.config, good).unwrap();

    // Clients that never send a request, or never read their answer, do not hold up a stop:
    // the daemon ends within its usual time (Daemon::wait kills it after 10 s and the status
    // then says so).
    let idle: Vec<UnixStream> = (0..20)
        .map(|_| UnixStream::connect(&socket).unwrap())
        .collect();
    s.daemon.signal(libc::SIGTERM);
    let status = s.daemon.wait(Duration::from_secs(10)).unwrap();
    assert!(status.success(), "{status:?}\n{}", s.daemon.log_text());
    drop(idle);
}

#[test]
fn systemd_hears_ready_reloading_watchdog_and_stopping() {
    if !can_run_with("notify", &[], &[]) {
        return;
    }
    let mut s = serve_with("ops-notify", 1, 1, LEASE, "");
    let path = s.lab.dir.join("notify.sock");
    let listener = UnixDatagram::bind(&path).unwrap();
    listener
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let socket = path.display().to_string();
    restart_with(
        &mut s,
        &[],
        &[("NOTIFY_SOCKET", &socket), ("WATCHDOG_USEC", "400000")],
        "netnode-notify.log",
    );
    let mut seen: Vec<String> = Vec::new();
    let wait_for = |want: &str, seen: &mut Vec<String>| {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut buf = [0u8; 4096];
        while Instant::now() < deadline {
            if let Ok(n) = listener.recv(&mut buf) {
                let m = String::from_utf8_lossy(&buf[..n]).to_string();
                seen.push(m.clone());
                if m.contains(want) {
                    return m;
                }
            }
        }
        panic!("systemd never heard {want:?}; it heard {seen:?}");
    };
    let ready = wait_for("READY=1", &mut seen);
    assert!(
        ready.contains("STATUS=serving 1 networks, 1 bindings"),
        "{ready}"
    );
    // Every listener is bound before READY=1: a lease at once.
    dhcp(&s, 1);
    wait_for("WATCHDOG=1", &mut seen);
    s.daemon.signal(libc::SIGHUP);
    let reloading = wait_for("RELOADING=1", &mut seen);
    assert!(reloading.contains("MONOTONIC_USEC="), "{reloading}");
    let ready = wait_for("READY=1", &mut seen);
    assert!(ready.contains("STATUS=serving"), "{ready}");
    s.daemon.signal(libc::SIGTERM);
    wait_for("STOPPING=1", &mut seen);
    let status = s.daemon.wait(Duration::from_secs(10)).unwrap();
    assert!(status.success());
    // The order: READY before any RELOADING, STOPPING last.
    let first = |w: &str| seen.iter().position(|m| m.contains(w)).unwrap();
    assert!(first("READY=1") < first("RELOADING=1"));
    assert_eq!(
        seen.last().map(|m| m.contains("STOPPING=1")),
        Some(true),
        "{seen:?}"
    );
}

#[test]
fn json_logs_are_one_object_per_line() {
    if !can_run_with("json logs", &[], &[]) {
        return;
    }
    let mut s = serve_with("ops-json", 1, 1, LEASE, "");
    let log = restart_with(&mut s, &["--log-format", "json"], &[], "netnode-json.log");
    s.daemon
        .wait_for_log("dhcp listening", 1, Duration::from_secs(10))
        .unwrap();
    dhcp(&s, 1);
    s.daemon
        .wait_for_log("DHCPACK", 1, Duration::from_secs(5))
        .unwrap();
    s.daemon.stop().unwrap();
    let text = fs::read_to_string(&log).unwrap();
    let mut acks = 0;
    for line in text.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(
            v["timestamp"].is_string() && v["level"].is_string(),
            "{line}"
        );
        if v["message"] == "DHCPACK: lease granted" {
            assert_eq!(v["bridge"], "br100");
            assert_eq!(v["ip"], s.lab.instance_ip(1).to_string().as_str());
            acks += 1;
        }
    }
    assert_eq!(acks, 1, "{text}");
}
