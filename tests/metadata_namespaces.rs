//! The metadata service at 169.254.169.254 with cloud-init's own crawlers and curl, from
//! instance namespaces (root). Each test builds its own lab and removes it in Drop.

#![allow(clippy::disallowed_methods)] // a test harness in real time

mod common;

use std::fs;
use std::time::Duration;

use common::{can_run_with, serve_with, Served, LEASE, SYSTEM_PYTHON};
use netnode::lab::{self, Instance};
use netnode::metadata::request::sign;

const UUID1: &str = "6f1c2a9e-3d55-4a59-9d0b-2f5f3c1d7a10";
const UUID2: &str = "0000aaaa-0000-0000-0000-000000000002";
const PROJECT: &str = "8c1e4c6f5e0a4d5f9c0f6b2a3d4e5f60";
const CURL: (&str, &str) = ("curl", "curl");
const CLOUD_INIT: (&str, &str) = ("cloud-init", "cloud-init");

/// A lab of three instances, all bound; instance records for the first two. netnode serves
/// metadata on 169.254.169.254:80 inside the server namespace; every instance has its fixed IP
/// and a route to 169.254.169.254 over its link.
fn serve_metadata(label: &str, metadata_extra: &str) -> Served {
    let s = serve_with(label, 3, 3, LEASE, "cidr_v6 = \"fd00:1::/64\"\n");
    let mut s = s;
    s.daemon.stop().unwrap();
    s.lab
        .server
        .ip(&["addr", "add", "169.254.169.254/32", "dev", "br100"])
        .unwrap();
    let mac = |i: usize| s.lab.instances[i].mac.to_string();
    let config = fs::read_to_string(&s.config).unwrap();
    let extra = format!(
        "[metadata]\nlisten = \"169.254.169.254:80\"\n{metadata_extra}\n\
         [[instance]]\nuuid = \"{UUID1}\"\nname = \"web-1\"\nhostname = \"web-1\"\nmac = \"{}\"\nproject_id = \"{PROJECT}\"\n\
         availability_zone = \"nova\"\nflavor = \"m1.small\"\nuser_data = \"#cloud-config\\nhostname: web-1\\n\"\n\
         public_keys = {{ mykey = \"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHostKey user@host\" }}\nmeta = {{ role = \"web\" }}\nid = 1\n\
         [[instance]]\nuuid = \"{UUID2}\"\nname = \"db-1\"\nmac = \"{}\"\nproject_id = \"other\"\nid = 2\n",
        mac(0),
        mac(1)
    );
    fs::write(&s.config, format!("{config}\n{extra}")).unwrap();
    s.daemon = common::start(&s.lab, &s.config, "netnode-md.log");
    s.daemon
        .wait_for_log("metadata listening", 1, Duration::from_secs(5))
        .unwrap();
    for i in 1..=3 {
        let inst = &s.lab.instances[i - 1];
        inst.ns
            .ip(&[
                "addr",
                "add",
                &format!("{}/24", s.lab.instance_ip(i)),
                "dev",
                &inst.iface,
            ])
            .unwrap();
        inst.ns
            .ip(&["route", "add", "169.254.169.254/32", "dev", &inst.iface])
            .unwrap();
    }
    s
}

/// curl from an instance: (status, content type, body).
fn curl(inst: &Instance, args: &[&str], path: &str) -> (u16, String, String) {
    let out = lab::run(
        inst.ns
            .command("curl")
            .args([
                "-s",
                "-m",
                "5",
                "-o",
                "-",
                "-w",
                "\n%{http_code} %{content_type}",
            ])
            .args(args)
            .arg(format!("http://169.254.169.254{path}")),
    )
    .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, trailer) = text.rsplit_once('\n').unwrap_or(("", ""));
    let (code, ctype) = trailer.split_once(' ').unwrap_or((trailer, ""));
    (
        code.parse().unwrap_or(0),
        ctype.to_string(),
        body.to_string(),
    )
}

const CRAWL: &str = r#"
import json, sys
from cloudinit.sources.helpers import openstack, ec2
url = "http://169.254.169.254"
r = openstack.MetadataReader(url, timeout=2, retries=0).read_v2()
e = ec2.get_instance_metadata("2009-04-04", url, timeout=2, retries=0)
ud = ec2.get_instance_userdata("2009-04-04", url, timeout=2, retries=0)
md = r["metadata"]
print(json.dumps({
    "uuid": md.get("uuid"),
    "hostname": md.get("hostname"),
    "public_keys": md.get("public_keys"),
    "userdata": r.get("userdata").decode() if isinstance(r.get("userdata"), bytes) else r.get("userdata"),
    "network_macs": [l["ethernet_mac_address"] for l in r["networkdata"]["links"]],
    "network_ips": [n.get("ip_address") for n in r["networkdata"]["networks"]],
    "ec2_instance_id": e.get("instance-id"),
    "ec2_local_ipv4": e.get("local-ipv4"),
    "ec2_keys": e.get("public-keys"),
    "ec2_userdata": ud.decode() if isinstance(ud, bytes) else ud,
}))
"#;

#[test]
fn cloud_init_finds_the_openstack_and_ec2_data() {
    if !can_run_with("mdcloudinit", &[], &[CURL, CLOUD_INIT]) {
        return;
    }
    let s = serve_metadata("mdcloudinit", "");
    let script = s.lab.dir.join("crawl.py");
    fs::write(&script, CRAWL).unwrap();
    let inst = &s.lab.instances[0];
    let text = s.run_in(inst, SYSTEM_PYTHON, &[script.to_str().unwrap()]);
    let v: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
    assert_eq!(v["uuid"], UUID1);
    assert_eq!(v["hostname"], "web-1.novalocal");
    assert_eq!(
        v["public_keys"]["mykey"],
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHostKey user@host"
    );
    assert_eq!(v["userdata"], "#cloud-config\nhostname: web-1\n");
    assert_eq!(v["network_macs"], serde_json::json!([inst.mac.to_string()]));
    assert_eq!(v["network_ips"][0], s.lab.instance_ip(1).to_string());
    assert_eq!(v["ec2_instance_id"], "i-00000001");
    assert_eq!(v["ec2_local_ipv4"], s.lab.instance_ip(1).to_string());
    assert!(
        v["ec2_keys"].to_string().contains("ssh-ed25519"),
        "{}",
        v["ec2_keys"]
    );
    assert_eq!(v["ec2_userdata"], "#cloud-config\nhostname: web-1\n");
}

#[test]
fn listings_codes_and_content_types_over_http() {
    if !can_run_with("mdcurl", &[], &[CURL]) {
        return;
    }
    let s = serve_metadata("mdcurl", "");
    let inst = &s.lab.instances[0];
    let text = "text/plain; charset=UTF-8";
    assert_eq!(curl(inst, &[], "/"), (200, text.into(), "1.0\n2007-01-19\n2007-03-01\n2007-08-29\n2007-10-10\n2007-12-15\n2008-02-01\n2008-09-01\n2009-04-04\nlatest".into()));
    assert_eq!(
        curl(inst, &[], "/latest/meta-data/public-keys/"),
        (200, text.into(), "0=mykey".into())
    );
    assert_eq!(
        curl(inst, &[], "/latest/meta-data/instance-id"),
        (200, text.into(), "i-00000001".into())
    );
    let (code, ctype, body) = curl(inst, &[], "/openstack/latest/meta_data.json");
    assert_eq!((code, ctype.as_str()), (200, "application/json"));
    assert!(body.contains(UUID1));
    assert_eq!(
        curl(inst, &[], "/openstack/latest/network_data.json").1,
        "application/json"
    );
    assert_eq!(curl(inst, &[], "/nope").0, 404);
    // netnode's own GET (the demo's fallback without curl) reads the same.
    let own = inst
        .ns
        .command(common::netnode())
        .args([
            "http-get",
            "http://169.254.169.254/latest/meta-data/instance-id",
        ])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&own.stdout), "i-00000001");
    let missing = inst
        .ns
        .command(common::netnode())
        .args(["http-get", "http://169.254.169.254/nope"])
        .output()
        .unwrap();
    assert!(!missing.status.success());
    assert_eq!(curl(inst, &[], "/2021-03-23/meta-data/instance-id").0, 404);
    assert_eq!(
        curl(
            inst,
            &[
                "-X",
                "PUT",
                "-H",
                "X-aws-ec2-metadata-token-ttl-seconds: 21600"
            ],
            "/latest/api/token"
        )
        .0,
        404
    );
    assert_eq!(
        curl(
            inst,
            &["--path-as-is"],
            "/latest/meta-data/../../../../etc/passwd"
        )
        .0,
        404
    );
    assert_eq!(
        curl(
            inst,
            &["--path-as-is"],
            "/latest/%2e%2e/latest/meta-data/instance-id"
        )
        .2,
        "i-00000001"
    );
    // An oversized request head is refused (431 Request Header Fields Too Large), and the
    // service keeps serving.
    let big = format!("X-Big: {}", "a".repeat(20_000));
    assert_eq!(
        curl(inst, &["-H", &big], "/latest/meta-data/instance-id").0,
        431
    );
    assert_eq!(curl(inst, &[], "/latest/meta-data/instance-id").0, 200);
}

#[test]
fn an_instance_never_reads_another_instances_data() {
    if !can_run_with("mdisolation", &[], &[CURL]) {
        return;
    }
    let s = serve_metadata("mdisolation", "");
    let web_ip = s.lab.instance_ip(1).to_string();
    let db = &s.lab.instances[1];
    // A spoofed X-Forwarded-For from an untrusted peer is ignored.
    assert_eq!(
        curl(
            db,
            &["-H", &format!("X-Forwarded-For: {web_ip}")],
            "/latest/meta-data/instance-id"
        )
        .2,
        "i-00000002"
    );
    let forwarded = curl(
        db,
        &["-H", &format!("Forwarded: for={web_ip}")],
        "/openstack/latest/meta_data.json",
    )
    .2;
    assert!(
        forwarded.contains(UUID2) && !forwarded.contains(UUID1),
        "{forwarded}"
    );
    // A bound address with no instance record, and an address of nobody, read nothing.
    let third = &s.lab.instances[2];
    assert_eq!(curl(third, &[], "/latest/meta-data/instance-id").0, 404);
    third
        .ns
        .ip(&["addr", "add", "198.18.0.200/24", "dev", &third.iface])
        .unwrap();
    assert_eq!(
        curl(
            third,
            &["--interface", "198.18.0.200"],
            "/openstack/latest/meta_data.json"
        )
        .0,
        404
    );
    // But the version list answers anyone.
    assert_eq!(curl(third, &[], "/").0, 200);
}

#[test]
fn neutron_proxy_mode_requires_signed_headers() {
    if !can_run_with("mdproxy", &[], &[CURL]) {
        return;
    }
    let s = serve_metadata(
        "mdproxy",
        "proxy_shared_secret = \"s3cret\"\ntrusted_proxies = [\"198.18.0.12\"]\n",
    );
    let proxy = &s.lab.instances[2];
    let sig = sign("s3cret", UUID1);
    let h = |k: &str, v: &str| format!("{k}: {v}");
    let good = [
        h("X-Instance-ID", UUID1),
        h("X-Tenant-ID", PROJECT),
        h("X-Instance-ID-Signature", &sig),
    ];
    let args = |hs: &[String]| {
        hs.iter()
            .flat_map(|x| ["-H".to_string(), x.clone()])
            .collect::<Vec<String>>()
    };
    let run = |hs: &[String]| {
        let a = args(hs);
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        curl(proxy, &a, "/latest/meta-data/instance-id")
    };
    assert_eq!(run(&good).2, "i-00000001");
    let bad_sig = [
        good[0].clone(),
        good[1].clone(),
        h("X-Instance-ID-Signature", &"0".repeat(64)),
    ];
    assert_eq!(
        run(&bad_sig),
        (
            403,
            "text/plain; charset=UTF-8".into(),
            "Invalid proxy request signature.".into()
        )
    );
    assert_eq!(run(&good[1..]).0, 400);
    let wrong_project = [good[0].clone(), h("X-Tenant-ID", "other"), good[2].clone()];
    assert_eq!(run(&wrong_project).0, 404);
}

#[test]
fn passwords_are_set_once_and_survive_a_restart() {
    if !can_run_with("mdpassword", &[], &[CURL]) {
        return;
    }
    let mut s = serve_metadata("mdpassword", "");
    let inst = &s.lab.instances[0];
    assert_eq!(
        curl(inst, &[], "/openstack/latest/password"),
        (200, "text/plain; charset=UTF-8".into(), String::new())
    );
    assert_eq!(
        curl(
            inst,
            &["-X", "POST", "--data-binary", &"x".repeat(1021)],
            "/openstack/latest/password"
        )
        .0,
        400
    );
    assert_eq!(
        curl(
            inst,
            &["-X", "POST", "--data-binary", "encrypted-password"],
            "/openstack/latest/password"
        )
        .0,
        200
    );
    assert_eq!(
        curl(
            inst,
            &["-X", "POST", "--data-binary", "again"],
            "/openstack/latest/password"
        )
        .0,
        409
    );
    s.daemon.stop().unwrap();
    s.daemon = common::start(&s.lab, &s.config, "netnode-md2.log");
    s.daemon
        .wait_for_log("metadata listening", 1, Duration::from_secs(5))
        .unwrap();
    let inst = &s.lab.instances[0];
    assert_eq!(
        curl(inst, &[], "/openstack/2013-04-04/password").2,
        "encrypted-password"
    );
    // Another instance has none.
    assert_eq!(
        curl(&s.lab.instances[1], &[], "/openstack/latest/password").2,
        ""
    );
}

#[test]
fn the_metadata_listener_follows_the_table_without_a_restart() {
    if !can_run_with("mdreload", &[], &[CURL]) {
        return;
    }
    let mut s = serve_metadata("mdreload", "");
    let inst = &s.lab.instances[0];
    assert_eq!(
        curl(inst, &[], "/latest/meta-data/instance-id").2,
        "i-00000001"
    );
    let with = fs::read_to_string(&s.config).unwrap();
    // [metadata] removed at a reload: the listener closes (curl cannot connect).
    let at = with.find("[metadata]").unwrap();
    fs::write(&s.config, &with[..at]).unwrap();
    s.daemon.signal(libc::SIGHUP);
    s.daemon_wait("[metadata] removed");
    let refused = inst
        .ns
        .command("curl")
        .args([
            "-s",
            "-m",
            "5",
            "http://169.254.169.254/latest/meta-data/instance-id",
        ])
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(7), "curl: could not connect");
    // And back: it opens again, with the instances.
    fs::write(&s.config, &with).unwrap();
    s.daemon.signal(libc::SIGHUP);
    s.daemon
        .wait_for_log("metadata listening", 2, Duration::from_secs(5))
        .unwrap();
    assert_eq!(
        curl(inst, &[], "/latest/meta-data/instance-id").2,
        "i-00000001"
    );
}
