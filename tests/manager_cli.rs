//! The manager's commands as operators type them (no root needed): the seed's commands as
//! written, refusals with a non-zero exit that change nothing, `--json`, a database that is
//! not one, and two processes allocating at once.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn netnode() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_netnode"))
}

/// An empty config beside the database: nova's defaults.
fn config(db: &Path) -> PathBuf {
    let c = db.with_file_name("netnode.toml");
    if !c.exists() {
        std::fs::write(&c, "").unwrap();
    }
    c
}

fn run(db: &Path, args: &[&str]) -> Output {
    Command::new(netnode())
        .args(args)
        .env("NETNODE_DATABASE", db)
        .env("NETNODE_CONFIG", config(db))
        .env_remove("RUST_LOG")
        .output()
        .unwrap()
}

/// Runs a command that must succeed; its stdout.
fn ok(db: &Path, args: &[&str]) -> String {
    let out = run(db, args);
    assert!(
        out.status.success(),
        "netnode {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// Runs a command that must be refused; its message.
fn refused(db: &Path, args: &[&str]) -> String {
    let before = ok(db, &["network-list", "--json"]) + &ok(db, &["floating", "list", "--json"]);
    let out = run(db, args);
    assert!(!out.status.success(), "netnode {args:?} was not refused");
    let after = ok(db, &["network-list", "--json"]) + &ok(db, &["floating", "list", "--json"]);
    assert_eq!(before, after, "netnode {args:?} changed something");
    String::from_utf8_lossy(&out.stderr).to_string()
}

/// The seed's second `network-create`, as written.
const PUBLIC: &[&str] = &[
    "network-create",
    "public",
    "--fixed-range-v4",
    "198.18.1.0/24",
    "--vlan",
    "100",
    "--vpn",
    "1000",
    "--fixed-range-v6",
    "fd00:1::/48",
];

fn json(db: &Path, args: &[&str]) -> Value {
    let mut args = args.to_vec();
    args.push("--json");
    serde_json::from_str(&ok(db, &args)).unwrap()
}

#[test]
fn the_seeds_commands_work_as_written() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("manager.db");
    let project = "3c7a6b4f1c4d4a1e9f0e8d7c6b5a4f3e";
    ok(
        &db,
        &[
            "network-create",
            "vmnet",
            "--fixed-range-v4",
            "198.18.0.0/16",
            "--fixed-cidr",
            "198.18.20.0/24",
            "--bridge",
            "br100",
        ],
    );
    // Overlaps vmnet (nova's CidrConflict) until vmnet goes.
    let e = refused(&db, PUBLIC);
    assert!(e.contains("conflicts with network \"vmnet\""), "{e}");
    ok(&db, &["network-delete", "vmnet"]);
    ok(&db, PUBLIC);
    ok(
        &db,
        &[
            "network-create",
            "first-net",
            "--fixed-range-v4",
            "198.18.2.0/24",
            "--project-id",
            project,
        ],
    );
    ok(&db, &["fixed", "reserve", "--address", "198.18.1.5"]);
    let e = refused(&db, &["fixed", "reserve", "--address", "198.20.0.5"]);
    assert!(e.contains("198.20.0.5"), "{e}");
    ok(&db, &["fixed", "unreserve", "--address", "198.18.1.5"]);
    let fixed = json(&db, &["fixed", "list", "--network", "public"]);
    assert_eq!(fixed.as_array().unwrap().len(), 256);
    ok(
        &db,
        &[
            "floating",
            "create",
            "--pool",
            "nova",
            "--ip_range",
            "198.19.26.170/31",
        ],
    );
    ok(
        &db,
        &[
            "floating",
            "create",
            "--pool",
            "nova",
            "--ip-range",
            "198.19.27.1",
            "--interface",
            "pub0",
        ],
    );
    let list = ok(&db, &["floating", "list"]);
    assert!(
        list.contains("198.19.26.170") && list.contains("198.19.26.171"),
        "{list}"
    );
    ok(&db, &["floating", "delete", "198.19.26.170/31"]);
    assert_eq!(
        json(&db, &["floating", "list"]).as_array().unwrap().len(),
        1
    );
    // A network held by a project is deleted only after project scrub.
    let e = refused(&db, &["network-delete", "first-net"]);
    assert!(e.contains("project scrub"), "{e}");
    ok(&db, &["project", "scrub", "--project", project]);
    ok(&db, &["network-delete", "first-net"]);
    // The instance side, and the seed's Networks column.
    ok(
        &db,
        &[
            "network-create",
            "network2",
            "--fixed-range-v4",
            "198.18.2.0/24",
            "--bridge",
            "br102",
        ],
    );
    let s = json(&db, &["server", "create", "vm", "--project", project]);
    let nets = ok(&db, &["server", "list"]);
    let a = |i: usize| {
        s[0]["addresses"][i]["address"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert!(
        nets.contains(&format!("public={}; network2={}", a(0), a(1))),
        "{nets}"
    );
    let f = json(&db, &["floating", "allocate", "--project", project]);
    assert_eq!(f["address"], "198.19.27.1");
    ok(
        &db,
        &["floating", "associate", "198.19.27.1", "--server", "vm"],
    );
    let e = refused(&db, &["floating", "deallocate", "198.19.27.1"]);
    assert!(e.contains("disassociate it first"), "{e}");
    ok(&db, &["floating", "disassociate", "198.19.27.1"]);
    ok(&db, &["floating", "deallocate", "198.19.27.1"]);
    let shown = json(&db, &["network-show", "public"]);
    assert_eq!(shown["vpn_private_address"], "198.18.1.2");
    assert_eq!(shown["cidr_v6"], "fd00:1::/64");
    ok(&db, &["server", "delete", "vm"]);
    assert!(json(&db, &["server", "list"])
        .as_array()
        .unwrap()
        .is_empty());
    let e = refused(&db, &["server", "delete", "vm"]);
    assert!(e.contains("no server \"vm\""), "{e}");
}

#[test]
fn bad_input_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("manager.db");
    // Reading commands make no database.
    let out = run(&db, &["network-list"]);
    assert!(!out.status.success() && !db.exists(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("no manager command has made one yet"));
    ok(&db, &["project", "scrub", "--project", "nobody"]);
    let e = refused(
        &db,
        &["network-create", "x", "--fixed-range-v4", "198.18.0.0/33"],
    );
    assert!(e.contains("--fixed-range-v4"), "{e}");
    let e = refused(
        &db,
        &[
            "network-create",
            "x",
            "--fixed-range-v4",
            "198.18.0.0/24",
            "--vlan",
            "4095",
        ],
    );
    assert!(e.contains("4094"), "{e}");
    let e = refused(&db, &["floating", "create", "--ip_range", "198.16.0.0/12"]);
    assert!(e.contains("at most 1000000"), "{e}");
    // A file that is not a database names itself.
    let junk = dir.path().join("junk.db");
    std::fs::write(&junk, vec![0x5a; 8192]).unwrap();
    let out = run(&junk, &["network-list"]);
    assert!(!out.status.success());
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(e.contains("junk.db"), "{e}");
    // An explicit config that does not exist is an error, not nova's defaults.
    let out = Command::new(netnode())
        .args(["network-list", "--config", "/nonexistent/n.toml"])
        .env_remove("NETNODE_DATABASE")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/n.toml"));
}

#[test]
fn two_processes_creating_500_servers_each_at_once_never_share_an_address() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("manager.db");
    ok(
        &db,
        &["network-create", "big", "--fixed-range-v4", "198.18.0.0/22"],
    );
    // Each process is a shell loop of 500 separate `server create` commands, so the two
    // interleave transaction by transaction.
    let script = format!(
        "for i in $(seq 1 500); do {} server create \"$0-$i\" --project p >/dev/null || exit 1; done",
        netnode().display()
    );
    let spawn = |prefix: &str| {
        Command::new("sh")
            .args(["-c", &script, prefix])
            .env("NETNODE_DATABASE", &db)
            .env("NETNODE_CONFIG", config(&db))
            .spawn()
            .unwrap()
    };
    let (mut a, mut b) = (spawn("a"), spawn("b"));
    assert!(a.wait().unwrap().success());
    assert!(b.wait().unwrap().success());
    let servers = json(&db, &["server", "list"]);
    let servers = servers.as_array().unwrap();
    assert_eq!(servers.len(), 1000);
    let mut addrs: Vec<&str> = servers
        .iter()
        .map(|s| s["addresses"][0]["address"].as_str().unwrap())
        .collect();
    let mut macs: Vec<&str> = servers
        .iter()
        .map(|s| s["addresses"][0]["mac"].as_str().unwrap())
        .collect();
    addrs.sort();
    addrs.dedup();
    macs.sort();
    macs.dedup();
    assert_eq!(addrs.len(), 1000, "an address was given twice");
    assert_eq!(macs.len(), 1000, "a MAC was given twice");
}

#[test]
fn a_state_the_daemon_cannot_build_is_reported_once_and_the_next_change_recovers() {
    // The daemon on the host, for bridges that do not exist here: it binds nothing and changes
    // nothing, and its table still follows the database.
    let dir = tempfile::tempdir().unwrap();
    let daemon_config = dir.path().join("netnode.toml");
    std::fs::write(
        &daemon_config,
        format!(
            "[state]\ndir = \"{}\"\n[manager]\n[[network]]\nname = \"own\"\nbridge = \"nnx9\"\ncidr = \"198.18.9.0/24\"\n",
            dir.path().join("state").display()
        ),
    )
    .unwrap();
    let db = dir.path().join("state/manager.db");
    let log = dir.path().join("serve.log");
    /// Ends the daemon however the test ends.
    struct Killed(std::process::Child);
    impl Drop for Killed {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let daemon = Command::new(netnode())
        .args(["serve", "--config", daemon_config.to_str().unwrap()])
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(std::fs::File::create(dir.path().join("serve.err")).unwrap())
        .spawn()
        .unwrap();
    let daemon = Killed(daemon);
    let text = || {
        std::fs::read_to_string(&log).unwrap_or_default()
            + &std::fs::read_to_string(dir.path().join("serve.err")).unwrap_or_default()
    };
    let wait = |what: &str, n: usize| {
        for _ in 0..100 {
            if text().matches(what).count() >= n {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!("{what} x{n} not logged:\n{}", text());
    };
    wait("table loaded", 1);
    // Committed with --database alone, so the command cannot know the config's network.
    let out = Command::new(netnode())
        .args([
            "network-create",
            "bad",
            "--fixed-range-v4",
            "198.18.9.0/24",
            "--bridge",
            "nnx8",
        ])
        .env("NETNODE_DATABASE", &db)
        .env("NETNODE_CONFIG", config(&db.with_file_name("x.db")))
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    wait("reload failed", 1);
    std::thread::sleep(std::time::Duration::from_secs(2));
    let failed = text().matches("reload failed").count();
    // The next change (with the daemon's config) is served.
    let out = Command::new(netnode())
        .args(["network-delete", "bad"])
        .env("NETNODE_CONFIG", &daemon_config)
        .env_remove("NETNODE_DATABASE")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    wait("table reloaded (the manager's database changed)", 1);
    drop(daemon);
    assert_eq!(failed, 1, "one line per bad state, not a loop:\n{}", text());
}
