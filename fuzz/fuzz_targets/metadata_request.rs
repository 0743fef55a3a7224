//! Metadata request routing: method, path and headers from the input (one per line: method,
//! path, then `name: value` headers), answered from a fixed tree in both identity modes.
#![no_main]
use std::net::IpAddr;
use std::path::Path;
use std::sync::OnceLock;

use http::{HeaderMap, HeaderName, HeaderValue, Method};
use libfuzzer_sys::fuzz_target;
use netnode::metadata::request::{self, Context, Outcome, Request};
use netnode::metadata::Tree;
use netnode::table::{build, config::ConfigFile, instance::MetadataSettings};

fn fixture() -> &'static (Tree, MetadataSettings, MetadataSettings) {
    static F: OnceLock<(Tree, MetadataSettings, MetadataSettings)> = OnceLock::new();
    F.get_or_init(|| {
        let text = "[[network]]\nname = \"n\"\nbridge = \"br100\"\ncidr = \"198.18.0.0/24\"\ngateway = \"198.18.0.1\"\ncidr_v6 = \"fd00:1::/64\"\n[[network.host]]\nmac = \"fa:16:3e:00:00:01\"\nip = \"198.18.0.10\"\n[metadata]\ntrusted_proxies = [\"127.0.0.1\"]\n[[instance]]\nuuid = \"u1\"\nname = \"web\"\nmac = \"fa:16:3e:00:00:01\"\nproject_id = \"p\"\nuser_data = \"x\"\npublic_keys = { k = \"ssh-ed25519 A\" }\n";
        let table = build::from_config(&ConfigFile::parse(text).unwrap(), Path::new("fuzz.toml")).unwrap();
        let direct = table.metadata.clone().unwrap();
        let proxied = MetadataSettings { proxy_shared_secret: Some("s".into()), ..direct.clone() };
        (Tree::build(&table), direct, proxied)
    })
}

fuzz_target!(|data: &[u8]| {
    let (tree, direct, proxied) = fixture();
    let text = String::from_utf8_lossy(data);
    let mut lines = text.split('\n');
    let method =
        Method::from_bytes(lines.next().unwrap_or("GET").as_bytes()).unwrap_or(Method::GET);
    let path = lines.next().unwrap_or("/");
    let mut headers = HeaderMap::new();
    for line in lines.by_ref().take(32) {
        if let Some((k, v)) = line.split_once(':') {
            if let (Ok(k), Ok(v)) = (
                HeaderName::from_bytes(k.trim().as_bytes()),
                HeaderValue::from_str(v.trim()),
            ) {
                headers.append(k, v);
            }
        }
    }
    let body = data.get(..data.len().min(1100)).unwrap_or(&[]);
    let ctx = Context {
        password: &|_| None,
        random: &|| [7u8; request::SEED_BYTES],
    };
    for (settings, peer) in [
        (direct, "198.18.0.10"),
        (direct, "127.0.0.1"),
        (proxied, "127.0.0.1"),
    ] {
        let req = Request {
            method: &method,
            path,
            peer: peer.parse::<IpAddr>().unwrap(),
            headers: &headers,
            body,
        };
        match request::answer(tree, settings, &req, &ctx) {
            Outcome::Respond(r) => assert!(r.status.as_u16() >= 200 && r.status.as_u16() < 500),
            Outcome::SetPassword { value, .. } => assert!(value.len() <= request::MAX_PASSWORD),
        }
    }
});
