//! The command line as an operator first meets it: the help, the drop-ins' usage, and `check`
//! on configs that are wrong in the ways configs are. No root needed.

use std::fs;
use std::path::PathBuf;
use std::process::{Command, Output};

fn netnode(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_netnode"))
        .args(args)
        .output()
        .unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn the_help_lists_operator_commands_first_and_tools_apart_and_claims_only_what_exists() {
    let out = netnode(&["--help"]);
    assert!(out.status.success());
    let help = text(&out);
    let at = |what: &str| {
        help.find(what)
            .unwrap_or_else(|| panic!("{what} in {help}"))
    };
    assert!(at("  serve") < at("Tools"), "{help}");
    assert!(at("  dnsmasq") < at("Tools"), "{help}");
    assert!(at("  check") < at("Tools"), "{help}");
    assert!(at("Tools") < at("  bench"), "{help}");
    assert!(at("Tools") < at("  http-null"), "{help}");
    assert!(at("  net") < at("Tools"), "{help}");
    // The manager's commands have their own heading, after the operator's.
    assert!(at("  serve") < at("Manager ("), "{help}");
    assert!(at("Manager (") < at("  network-create"), "{help}");
    assert!(at("  server  ") < at("Tools"), "{help}");
    // Multi-host: `nodes` with the manager's commands, the simulation with the tools.
    assert!(at("Manager (") < at("  nodes"), "{help}");
    assert!(at("Tools") < at("  sim-etcd"), "{help}");
}

#[test]
fn serve_and_check_help_say_where_logs_go_the_signals_and_the_exit_codes() {
    let serve = text(&netnode(&["serve", "--help"]));
    for needle in ["stderr", "RUST_LOG", "SIGHUP", "SIGUSR1", "SIGTERM"] {
        assert!(serve.contains(needle), "{needle} in {serve}");
    }
    let check = text(&netnode(&["check", "--help"]));
    assert!(check.contains("Exit status: 0"), "{check}");
    assert!(check.contains("2 when"), "{check}");
}

#[test]
fn the_drop_ins_print_their_usage() {
    let out = netnode(&["dnsmasq", "--help"]);
    assert!(out.status.success(), "dnsmasq's own --help exits 0");
    let usage = text(&out);
    assert!(usage.contains("Usage: dnsmasq") && usage.contains("--dhcp-hostsfile"));
    let help = text(&netnode(&["help", "dnsmasq"]));
    assert!(help.contains("Options acted on"), "{help}");
    let out = netnode(&["radvd", "--help"]);
    assert!(out.status.success());
    assert!(text(&out).contains("Usage: radvd"));
    let out = netnode(&["dhcp_release"]);
    assert!(!out.status.success());
    assert!(text(&out).contains("usage: dhcp_release <interface>"));
}

struct Dir(PathBuf);

impl Dir {
    fn new(name: &str) -> Dir {
        let d = std::env::temp_dir().join(format!("netnode-cli-{name}-{}", std::process::id()));
        fs::create_dir_all(&d).unwrap();
        Dir(d)
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.0.join(name);
        fs::write(&p, text).unwrap();
        p
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn check(config: &std::path::Path) -> (Option<i32>, String) {
    let out = netnode(&["check", "--config", &config.display().to_string()]);
    (out.status.code(), text(&out))
}

#[test]
fn check_names_the_network_and_key_of_a_missing_file_once() {
    let d = Dir::new("missing");
    let c = d.write(
        "c.toml",
        "[[network]]\nname = \"vmnet\"\nbridge = \"br100\"\ncidr = \"198.18.0.0/24\"\nhosts_file = \"hosts.missing\"\n",
    );
    let (code, out) = check(&c);
    assert_eq!(code, Some(1), "{out}");
    let abs = d.0.join("hosts.missing");
    assert!(
        out.contains(&format!("network \"vmnet\": hosts_file: {}", abs.display())),
        "{out}"
    );
    assert_eq!(out.matches("No such file or directory").count(), 1, "{out}");
}

#[test]
fn check_names_both_sides_of_an_overlap_and_the_holder_of_a_taken_address() {
    let d = Dir::new("overlap");
    let c = d.write(
        "c.toml",
        "[[network]]\nname = \"a\"\nbridge = \"br1\"\ncidr = \"198.18.0.0/23\"\n[[network]]\nname = \"b\"\nbridge = \"br2\"\ncidr = \"198.18.1.0/24\"\n",
    );
    let (code, out) = check(&c);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("198.18.1.0/24 overlaps network \"a\" (198.18.0.0/23)"),
        "{out}"
    );
    d.write(
        "hosts",
        "fa:16:3e:00:00:01,web,198.18.0.10\nfa:16:3e:00:00:02,db,198.18.0.10\n",
    );
    let c = d.write(
        "c2.toml",
        "[[network]]\nname = \"a\"\nbridge = \"netnode-nobr\"\ncidr = \"198.18.0.0/24\"\nhosts_file = \"hosts\"\n",
    );
    let (code, out) = check(&c);
    assert_eq!(code, Some(2), "{out}");
    assert!(
        out.contains("address 198.18.0.10 is already bound to web (fa:16:3e:00:00:01), line 1"),
        "{out}"
    );
    assert!(
        out.contains("warning: bridge netnode-nobr does not exist"),
        "{out}"
    );
}
