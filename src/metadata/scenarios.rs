//! Metadata request scenarios: the real tree and router, without sockets.

use std::cell::Cell;
use std::net::IpAddr;
use std::path::Path;

use base64::Engine as _;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, StatusCode};

use super::request::{self, answer, normalise, Context, Outcome, Request};
use super::tree::{Tree, JSON, TEXT};
use crate::table::build;
use crate::table::config::ConfigFile;
use crate::table::instance::MetadataSettings;

const CONFIG: &str = r##"
[[network]]
name = "vmnet"
bridge = "br100"
cidr = "198.18.0.0/24"
gateway = "198.18.0.1"
domain = "novalocal"
dns_servers = ["198.18.0.53"]
mtu = 1450
cidr_v6 = "fd00:1::/64"
[[network.host]]
mac = "fa:16:3e:00:00:01"
ip = "198.18.0.10"
[[network.host]]
mac = "fa:16:3e:00:00:02"
ip = "198.18.0.11"
[metadata]
trusted_proxies = ["127.0.0.1", "198.18.0.254"]
[[instance]]
uuid = "6f1c2a9e-3d55-4a59-9d0b-2f5f3c1d7a10"
name = "web-1"
hostname = "web-1"
mac = "fa:16:3e:00:00:01"
project_id = "8c1e4c6f5e0a4d5f9c0f6b2a3d4e5f60"
flavor = "m1.small"
user_data = "#cloud-config\n"
public_keys = { mykey = "ssh-ed25519 AAAA user@host" }
meta = { role = "web" }
id = 42
floating_ips = ["198.19.0.5"]
[[instance]]
uuid = "0000aaaa-0000-0000-0000-000000000002"
name = "DB Server"
mac = "fa:16:3e:00:00:02"
project_id = "other"
"##;

/// A request header, name and value.
type Header<'a> = (&'static str, &'a str);

const WEB: &str = "198.18.0.10";
const DB: &str = "198.18.0.11";

struct Sim {
    tree: Tree,
    settings: MetadataSettings,
    password: Option<Bytes>,
    seeds: Cell<u8>,
}

impl Sim {
    fn new(extra_metadata: &str) -> Sim {
        let text = CONFIG.replace("[metadata]\n", &format!("[metadata]\n{extra_metadata}"));
        let table =
            build::from_config(&ConfigFile::parse(&text).unwrap(), Path::new("md.toml")).unwrap();
        assert!(table.problems.is_empty(), "{:?}", table.problems);
        Sim {
            tree: Tree::build(&table),
            settings: table.metadata.clone().unwrap(),
            password: None,
            seeds: Cell::new(0),
        }
    }

    fn ask(
        &self,
        method: Method,
        path: &str,
        peer: &str,
        headers: &[(&'static str, &str)],
        body: &[u8],
    ) -> Outcome {
        let mut map = HeaderMap::new();
        for (k, v) in headers {
            map.append(*k, HeaderValue::from_str(v).unwrap());
        }
        let req = Request {
            method: &method,
            path,
            peer: peer.parse::<IpAddr>().unwrap(),
            headers: &map,
            body,
        };
        let ctx = Context {
            password: &|_| self.password.clone(),
            random: &|| {
                self.seeds.set(self.seeds.get().wrapping_add(1));
                [self.seeds.get(); request::SEED_BYTES]
            },
        };
        answer(&self.tree, &self.settings, &req, &ctx)
    }

    fn get(&self, path: &str, peer: &str) -> (StatusCode, &'static str, String) {
        self.get_with(path, peer, &[])
    }

    fn get_with(
        &self,
        path: &str,
        peer: &str,
        headers: &[(&'static str, &str)],
    ) -> (StatusCode, &'static str, String) {
        match self.ask(Method::GET, path, peer, headers, b"") {
            Outcome::Respond(r) => (
                r.status,
                r.content_type,
                String::from_utf8_lossy(&r.body).into_owned(),
            ),
            other => panic!("{other:?}"),
        }
    }
}

fn ok(s: &Sim, path: &str) -> String {
    let (status, _, body) = s.get(path, WEB);
    assert_eq!(status, StatusCode::OK, "{path}: {body}");
    body
}

#[test]
fn the_root_lists_ec2_versions_for_anyone() {
    let s = Sim::new("");
    let (status, ctype, body) = s.get("/", "203.0.113.9");
    assert_eq!((status, ctype), (StatusCode::OK, TEXT));
    assert_eq!(body, "1.0\n2007-01-19\n2007-03-01\n2007-08-29\n2007-10-10\n2007-12-15\n2008-02-01\n2008-09-01\n2009-04-04\nlatest");
    assert_eq!(
        s.get("/latest/meta-data/", "198.18.0.99").0,
        StatusCode::NOT_FOUND,
        "an unknown address"
    );
}

#[test]
fn ec2_meta_data_follows_the_version() {
    let s = Sim::new("");
    assert_eq!(ok(&s, "/1.0/meta-data/"), "ami-id\nami-launch-index\nami-manifest-path\nhostname\ninstance-id\nlocal-ipv4\npublic-keys/\nreservation-id\nsecurity-groups");
    let latest = ok(&s, "/latest/meta-data");
    assert_eq!(latest, ok(&s, "/2009-04-04/meta-data/"));
    for key in [
        "local-hostname",
        "public-ipv4",
        "instance-type",
        "block-device-mapping/",
        "placement/",
        "instance-action",
    ] {
        assert!(latest.lines().any(|l| l == key), "{key} in {latest}");
    }
    assert!(!ok(&s, "/2007-10-10/meta-data/").contains("placement/"));
    assert_eq!(ok(&s, "/latest/meta-data/instance-id"), "i-0000002a");
    assert_eq!(ok(&s, "/latest/meta-data/ami-id"), "ami-00000001");
    assert_eq!(ok(&s, "/latest/meta-data/hostname"), "web-1.novalocal");
    assert_eq!(ok(&s, "/latest/meta-data/local-ipv4"), WEB);
    assert_eq!(ok(&s, "/latest/meta-data/public-ipv4"), "198.19.0.5");
    assert_eq!(ok(&s, "/latest/meta-data/security-groups"), "default");
    assert_eq!(
        ok(&s, "/latest/meta-data/placement/availability-zone"),
        "nova"
    );
    assert_eq!(
        ok(&s, "/latest/meta-data/block-device-mapping/"),
        "ami\nroot"
    );
    assert_eq!(ok(&s, "/latest/meta-data/public-keys/"), "0=mykey");
    assert_eq!(ok(&s, "/latest/meta-data/public-keys/0"), "openssh-key");
    assert_eq!(
        ok(&s, "/latest/meta-data/public-keys/0/openssh-key"),
        "ssh-ed25519 AAAA user@host"
    );
    assert_eq!(ok(&s, "/latest/"), "meta-data/\nuser-data");
    assert_eq!(ok(&s, "/latest/user-data"), "#cloud-config\n");
    assert_eq!(
        s.get("/2021-03-23/meta-data/instance-id", WEB).0,
        StatusCode::NOT_FOUND,
        "cloud-init's probe of a newer version"
    );
}

#[test]
fn an_instance_without_user_data_or_keys_does_not_list_them() {
    let s = Sim::new("");
    assert_eq!(s.get("/latest/", DB).2, "meta-data/");
    assert_eq!(s.get("/latest/user-data", DB).0, StatusCode::NOT_FOUND);
    assert!(!s.get("/latest/meta-data/", DB).2.contains("public-keys"));
    assert_eq!(
        s.get("/latest/meta-data/public-ipv4", DB),
        (StatusCode::OK, TEXT, String::new()),
        "empty with 200"
    );
    assert_eq!(
        s.get("/latest/meta-data/hostname", DB).2,
        "db-server.novalocal",
        "nova's sanitised name"
    );
    assert_eq!(
        s.get("/openstack/latest", DB).2,
        "meta_data.json\npassword\nvendor_data.json\nnetwork_data.json\nvendor_data2.json"
    );
}

#[test]
fn openstack_versions_and_listings() {
    let s = Sim::new("");
    assert_eq!(ok(&s, "/openstack"), "2012-08-10\n2013-04-04\n2013-10-17\n2015-10-15\n2016-06-30\n2016-10-06\n2017-02-22\n2018-08-27\n2020-10-14\n2025-04-04\nlatest");
    assert_eq!(
        ok(&s, "/openstack/2012-08-10/"),
        "meta_data.json\nuser_data"
    );
    assert_eq!(
        ok(&s, "/openstack/2013-04-04"),
        "meta_data.json\nuser_data\npassword"
    );
    assert_eq!(
        ok(&s, "/openstack/2015-10-15"),
        "meta_data.json\nuser_data\npassword\nvendor_data.json\nnetwork_data.json"
    );
    assert_eq!(ok(&s, "/openstack/latest"), "meta_data.json\nuser_data\npassword\nvendor_data.json\nnetwork_data.json\nvendor_data2.json");
    assert_eq!(ok(&s, "/openstack/latest/user_data"), "#cloud-config\n");
    assert_eq!(
        s.get("/openstack/2099-01-01/meta_data.json", WEB).0,
        StatusCode::NOT_FOUND
    );
}

#[test]
fn meta_data_json_has_novas_keys_and_a_fresh_seed() {
    let s = Sim::new("");
    let (status, ctype, body) = s.get("/openstack/latest/meta_data.json", WEB);
    assert_eq!((status, ctype), (StatusCode::OK, JSON));
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["uuid"], "6f1c2a9e-3d55-4a59-9d0b-2f5f3c1d7a10");
    assert_eq!(v["hostname"], "web-1.novalocal");
    assert_eq!(v["name"], "web-1");
    assert_eq!(v["meta"]["role"], "web");
    assert_eq!(v["public_keys"]["mykey"], "ssh-ed25519 AAAA user@host");
    assert_eq!(v["keys"][0]["type"], "ssh");
    assert_eq!(v["project_id"], "8c1e4c6f5e0a4d5f9c0f6b2a3d4e5f60");
    assert_eq!(v["devices"], serde_json::json!([]));
    let seed = base64::engine::general_purpose::STANDARD
        .decode(v["random_seed"].as_str().unwrap())
        .unwrap();
    assert_eq!(seed.len(), 512);
    let again: serde_json::Value =
        serde_json::from_str(&s.get("/openstack/latest/meta_data.json", WEB).2).unwrap();
    assert_ne!(
        v["random_seed"], again["random_seed"],
        "a fresh seed per request"
    );
    let old: serde_json::Value =
        serde_json::from_str(&ok(&s, "/openstack/2012-08-10/meta_data.json")).unwrap();
    assert!(old.get("random_seed").is_none() && old.get("project_id").is_none());
    let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
    assert_eq!(
        keys[..3],
        ["uuid", "meta", "public_keys"],
        "nova's key order"
    );
}

#[test]
fn a_name_that_looks_like_json_cannot_break_the_seed() {
    let text = CONFIG.replace(
        "name = \"web-1\"",
        "name = \"\\\",\\\"random_seed\\\":\\\"x\"",
    );
    let table =
        build::from_config(&ConfigFile::parse(&text).unwrap(), Path::new("md.toml")).unwrap();
    let tree = Tree::build(&table);
    let s = Sim {
        tree,
        settings: table.metadata.clone().unwrap(),
        password: None,
        seeds: Cell::new(0),
    };
    let v: serde_json::Value =
        serde_json::from_str(&ok(&s, "/openstack/latest/meta_data.json")).unwrap();
    let seed = base64::engine::general_purpose::STANDARD
        .decode(v["random_seed"].as_str().unwrap())
        .unwrap();
    assert_eq!(seed.len(), 512);
    assert_eq!(v["name"], "\",\"random_seed\":\"x");
}

#[test]
fn network_data_describes_links_networks_and_services() {
    let s = Sim::new("");
    let v: serde_json::Value =
        serde_json::from_str(&ok(&s, "/openstack/latest/network_data.json")).unwrap();
    assert_eq!(v["links"][0]["ethernet_mac_address"], "fa:16:3e:00:00:01");
    assert_eq!(v["links"][0]["mtu"], 1450);
    assert_eq!(v["networks"][0]["type"], "ipv4");
    assert_eq!(v["networks"][0]["ip_address"], WEB);
    assert_eq!(v["networks"][0]["netmask"], "255.255.255.0");
    assert_eq!(v["networks"][0]["routes"][0]["gateway"], "198.18.0.1");
    assert_eq!(v["networks"][0]["services"][0]["address"], "198.18.0.53");
    assert_eq!(v["networks"][1]["type"], "ipv6_slaac");
    assert_eq!(v["networks"][1]["ip_address"], "fd00:1::f816:3eff:fe00:1");
    assert_eq!(v["networks"][1]["link"], v["links"][0]["id"]);
    assert_eq!(v["services"][0]["type"], "dns");
    assert_eq!(
        ok(&s, "/openstack/latest/vendor_data2.json"),
        "{\"static\":{}}"
    );
}

#[test]
fn passwords() {
    let mut s = Sim::new("");
    assert_eq!(
        s.get("/openstack/latest/password", WEB),
        (StatusCode::OK, TEXT, String::new())
    );
    match s.ask(
        Method::POST,
        "/openstack/latest/password",
        WEB,
        &[],
        b"hunter2",
    ) {
        Outcome::SetPassword { uuid, value } => assert_eq!(
            (uuid.as_str(), &value[..]),
            ("6f1c2a9e-3d55-4a59-9d0b-2f5f3c1d7a10", &b"hunter2"[..])
        ),
        other => panic!("{other:?}"),
    }
    let big = vec![b'x'; 1021];
    assert!(
        matches!(s.ask(Method::POST, "/openstack/latest/password", WEB, &[], &big), Outcome::Respond(r) if r.status == StatusCode::BAD_REQUEST && &r.body[..] == b"Request is too large.")
    );
    assert!(matches!(
        s.ask(
            Method::POST,
            "/openstack/latest/password",
            WEB,
            &[],
            &big[..1020]
        ),
        Outcome::SetPassword { .. }
    ));
    assert!(
        matches!(s.ask(Method::PUT, "/openstack/latest/password", WEB, &[], b"x"), Outcome::Respond(r) if r.status == StatusCode::BAD_REQUEST)
    );
    assert!(
        matches!(s.ask(Method::POST, "/openstack/latest/password", WEB, &[], b""), Outcome::Respond(r) if r.status == StatusCode::OK),
        "an empty POST stores nothing"
    );
    s.password = Some(Bytes::from_static(b"hunter2"));
    assert_eq!(s.get("/openstack/2013-04-04/password", WEB).2, "hunter2");
    assert_eq!(
        s.get("/openstack/2012-08-10/password", WEB).0,
        StatusCode::NOT_FOUND,
        "no password before 2013-04-04"
    );
}

#[test]
fn other_methods_on_data_paths_and_the_imdsv2_token() {
    let s = Sim::new("");
    assert!(
        matches!(s.ask(Method::POST, "/latest/meta-data/instance-id", WEB, &[], b""), Outcome::Respond(r) if &r.body[..] == b"i-0000002a")
    );
    assert!(
        matches!(s.ask(Method::PUT, "/latest/api/token", WEB, &[("x-aws-ec2-metadata-token-ttl-seconds", "21600")], b""), Outcome::Respond(r) if r.status == StatusCode::NOT_FOUND)
    );
}

#[test]
fn paths_are_normalised_and_cannot_leave_the_tree() {
    assert_eq!(
        normalise("/latest//meta-data/./"),
        Some("latest/meta-data".into())
    );
    assert_eq!(normalise("/../../../etc/passwd"), Some("etc/passwd".into()));
    assert_eq!(
        normalise("/latest/%6deta-data?x=1"),
        Some("latest/meta-data".into())
    );
    assert_eq!(normalise("/%2e%2e/%2e%2e/latest"), Some("latest".into()));
    assert_eq!(normalise("/bad%zz"), None);
    assert_eq!(normalise("/bad%"), None);
    assert_eq!(normalise("/%ff"), None, "not UTF-8");
    let s = Sim::new("");
    assert_eq!(
        ok(&s, "/latest/meta-data/../meta-data/instance-id"),
        "i-0000002a"
    );
    assert_eq!(s.get("/../../etc/passwd", WEB).0, StatusCode::NOT_FOUND);
    assert_eq!(
        s.get("/latest/meta-data/instance-id/extra", WEB).0,
        StatusCode::NOT_FOUND
    );
}

#[test]
fn forwarding_headers_count_only_from_trusted_proxies() {
    let s = Sim::new("");
    let xff = [("x-forwarded-for", WEB)];
    // An instance claiming to be another: its own data, not the other's.
    assert_eq!(
        s.get_with("/latest/meta-data/instance-id", DB, &xff).2,
        "i-00000002"
    );
    // An untrusted stranger: nobody.
    assert_eq!(
        s.get_with("/latest/meta-data/instance-id", "198.18.0.200", &xff)
            .0,
        StatusCode::NOT_FOUND
    );
    // A trusted proxy: the client it names.
    assert_eq!(
        s.get_with("/latest/meta-data/instance-id", "127.0.0.1", &xff)
            .2,
        "i-0000002a"
    );
    // Through two trusted proxies: the nearest untrusted address counts, not a spoofed first one.
    let chain = [("x-forwarded-for", "198.18.0.11, 198.18.0.10, 198.18.0.254")];
    assert_eq!(
        s.get_with("/latest/meta-data/instance-id", "127.0.0.1", &chain)
            .2,
        "i-0000002a"
    );
    // Only the operator's chosen header counts: X-Forwarded-For by default, so a Forwarded
    // header the proxy passed through from the client is ignored.
    let fwd = [("forwarded", "for=198.18.0.11;proto=http")];
    assert_eq!(
        s.get_with("/latest/meta-data/instance-id", "127.0.0.1", &fwd)
            .0,
        StatusCode::NOT_FOUND
    );
    // The first untrusted hop is the client; if it is not an address, nobody is (no reading
    // further back into hops the client wrote).
    let spoof = [("x-forwarded-for", "198.18.0.10, unknown, 198.18.0.254")];
    assert_eq!(
        s.get_with("/latest/meta-data/instance-id", "127.0.0.1", &spoof)
            .0,
        StatusCode::NOT_FOUND
    );
    let with_port = [("x-forwarded-for", "198.18.0.10:41234")];
    assert_eq!(
        s.get_with("/latest/meta-data/instance-id", "127.0.0.1", &with_port)
            .2,
        "i-0000002a"
    );
    let f = Sim::new("forwarded_header = \"forwarded\"\n");
    assert_eq!(
        f.get_with("/latest/meta-data/instance-id", "127.0.0.1", &fwd)
            .2,
        "i-00000002"
    );
    let ported = [("forwarded", "for=\"198.18.0.10:41234\", for=198.18.0.254")];
    assert_eq!(
        f.get_with("/latest/meta-data/instance-id", "127.0.0.1", &ported)
            .2,
        "i-0000002a"
    );
    assert_eq!(
        f.get_with("/latest/meta-data/instance-id", "127.0.0.1", &xff)
            .0,
        StatusCode::NOT_FOUND,
        "X-Forwarded-For is ignored then"
    );
    assert_eq!(
        s.get("/latest/meta-data/instance-id", "127.0.0.1").0,
        StatusCode::NOT_FOUND,
        "the proxy itself is no instance"
    );
}

#[test]
fn neutron_proxy_mode_checks_the_signature_and_project() {
    let s = Sim::new("proxy_shared_secret = \"s3cret\"\n");
    let uuid = "6f1c2a9e-3d55-4a59-9d0b-2f5f3c1d7a10";
    let project = "8c1e4c6f5e0a4d5f9c0f6b2a3d4e5f60";
    let sig = request::sign("s3cret", uuid);
    let good = [
        ("x-instance-id", uuid),
        ("x-tenant-id", project),
        ("x-instance-id-signature", sig.as_str()),
    ];
    assert_eq!(
        s.get_with("/latest/meta-data/instance-id", "127.0.0.1", &good)
            .2,
        "i-0000002a"
    );
    let cases: [(&[Header<'_>], StatusCode, &str); 6] = [
        (
            &good[1..],
            StatusCode::BAD_REQUEST,
            "X-Instance-ID header is missing from request.",
        ),
        (
            &[good[0], good[1]],
            StatusCode::BAD_REQUEST,
            "X-Instance-ID-Signature header is missing from request.",
        ),
        (
            &[good[0], good[2]],
            StatusCode::BAD_REQUEST,
            "X-Tenant-ID header is missing from request.",
        ),
        (
            &[good[0], good[0], good[1], good[2]],
            StatusCode::BAD_REQUEST,
            "Multiple X-Instance-ID headers found within request.",
        ),
        (
            &[good[0], good[1], ("x-instance-id-signature", "00ff")],
            StatusCode::FORBIDDEN,
            "Invalid proxy request signature.",
        ),
        (
            &[good[0], ("x-tenant-id", "someone-else"), good[2]],
            StatusCode::NOT_FOUND,
            "404 Not Found\n\nThe resource could not be found.\n",
        ),
    ];
    for (headers, status, body) in cases {
        assert_eq!(
            s.get_with("/latest/meta-data/instance-id", "127.0.0.1", headers)
                .0,
            status,
            "{body}"
        );
        assert_eq!(
            s.get_with("/latest/meta-data/instance-id", "127.0.0.1", headers)
                .2,
            body
        );
    }
    // In proxy mode the source address identifies nobody.
    assert_eq!(
        s.get("/latest/meta-data/instance-id", WEB).0,
        StatusCode::BAD_REQUEST
    );
    assert!(request::signature_valid("s3cret", uuid, &sig));
    assert!(!request::signature_valid(
        "s3cret",
        uuid,
        &sig.to_uppercase().replace('A', "B")
    ));
    assert!(!request::signature_valid("s3cret", uuid, "not hex"));
}
