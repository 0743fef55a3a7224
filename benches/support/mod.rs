//! Fixtures shared by the criterion benches and the callgrind profile (`examples/`): a table
//! of `n` nova bindings and the requests the benches send.

#![allow(dead_code)]

use std::net::Ipv4Addr;
use std::path::Path;

use dhcproto::v4::MessageType;
use netnode::dhcp::wire::RequestBuilder;
use netnode::table::config::ConfigFile;
use netnode::table::{build, MacAddr, Table};

/// The MAC of binding `i`.
pub fn mac(i: u32) -> MacAddr {
    let b = i.to_be_bytes();
    MacAddr([0xfa, 0x16, b[0], b[1], b[2], b[3]])
}

/// The address of binding `i`.
pub fn ip(i: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 18, 0, 10)) + i)
}

/// A nova hosts file of `n` bindings.
pub fn hosts_text(n: u32) -> String {
    (0..n)
        .map(|i| format!("{},vm-{i}.novalocal,{}\n", mac(i), ip(i)))
        .collect()
}

/// A config of one network whose hosts file (in the returned directory, which must outlive its
/// use) holds `n` bindings.
pub fn config(n: u32) -> (tempfile::TempDir, ConfigFile) {
    config_with(n, "")
}

/// The same, with `extra` TOML after the network's keys (more keys, then other tables).
pub fn config_with(n: u32, extra: &str) -> (tempfile::TempDir, ConfigFile) {
    let dir = tempfile::tempdir().unwrap();
    let hosts = dir.path().join("hosts");
    std::fs::write(&hosts, hosts_text(n)).unwrap();
    let text = format!("[[network]]\nname = \"vmnet\"\nbridge = \"br100\"\ncidr = \"198.18.0.0/15\"\ngateway = \"198.18.0.1\"\nlease_time = \"120s\"\ndomain = \"novalocal\"\nhosts_file = {hosts:?}\n{extra}");
    (dir, ConfigFile::parse(&text).unwrap())
}

/// A table of one network with `n` bindings, read from a hosts file as the daemon reads it.
pub fn table(n: u32) -> Table {
    let (_dir, config) = config(n);
    build::from_config(&config, Path::new("bench.toml")).unwrap()
}

/// A parameter request list as a cloud image's dhclient sends it.
const PRL: [u8; 14] = [1, 3, 6, 12, 15, 26, 28, 42, 51, 54, 58, 59, 119, 121];

/// A DISCOVER from binding `i`.
pub fn discover(i: u32, xid: u32) -> Vec<u8> {
    RequestBuilder::new(MessageType::Discover, mac(i), xid)
        .option(55, &PRL)
        .option(57, &1500u16.to_be_bytes())
        .build()
}

/// The REQUEST that answers its OFFER.
pub fn request(i: u32, xid: u32) -> Vec<u8> {
    RequestBuilder::new(MessageType::Request, mac(i), xid)
        .option(55, &PRL)
        .option(50, &ip(i).octets())
        .option(54, &Ipv4Addr::new(198, 18, 0, 1).octets())
        .build()
}
