//! The metadata trees (EC2 and OpenStack) of every instance, rendered once per table: a request
//! is then a map lookup. Only `random_seed` is made per request, spliced into a prepared
//! meta_data.json.

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;
use std::sync::Arc;

use bytes::Bytes;
use serde_json::{json, Map, Value};

use crate::table::instance::{Instance, MetadataSettings};
use crate::table::Table;

/// EC2 metadata versions nova serves; `latest` is the last.
pub const EC2_VERSIONS: &[&str] = &[
    "1.0",
    "2007-01-19",
    "2007-03-01",
    "2007-08-29",
    "2007-10-10",
    "2007-12-15",
    "2008-02-01",
    "2008-09-01",
    "2009-04-04",
];
/// OpenStack metadata versions nova serves; `latest` is the last.
pub const OPENSTACK_VERSIONS: &[&str] = &[
    "2012-08-10",
    "2013-04-04",
    "2013-10-17",
    "2015-10-15",
    "2016-06-30",
    "2016-10-06",
    "2017-02-22",
    "2018-08-27",
    "2020-10-14",
    "2025-04-04",
];
/// Plain text, as nova (webob) sends it.
pub const TEXT: &str = "text/plain; charset=UTF-8";
/// JSON documents.
pub const JSON: &str = "application/json";

/// What a path answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Content {
    /// Fixed bytes.
    Static(Bytes),
    /// meta_data.json with a fresh base64 random_seed between the two halves.
    WithSeed(Bytes, Bytes),
    /// The instance's password (GET) or the place to set it (POST).
    Password,
}

/// One answerable path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// Content-Type header.
    pub content_type: &'static str,
    /// The body.
    pub content: Content,
}

/// An instance's whole tree, by normalised path (no leading or trailing slash).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct InstanceTree {
    /// The instance's UUID.
    pub uuid: String,
    /// Its project.
    pub project_id: String,
    /// Every path it answers.
    pub paths: HashMap<String, Node>,
}

/// The trees of all instances, with the lookups that identify them.
#[derive(Debug, Clone, Default)]
pub struct Tree {
    instances: Vec<Arc<InstanceTree>>,
    by_ip: HashMap<Ipv4Addr, usize>,
    by_uuid: HashMap<String, usize>,
    /// `GET /`: the EC2 versions, then `latest`.
    pub root: Bytes,
}

impl Tree {
    /// Renders every instance of the table.
    pub fn build(table: &Table) -> Tree {
        let default_settings;
        let settings = match &table.metadata {
            Some(s) => s,
            None => {
                default_settings = MetadataSettings::default();
                &default_settings
            }
        };
        let mut tree = Tree {
            root: listing(EC2_VERSIONS.iter().copied().chain(["latest"])),
            ..Tree::default()
        };
        for inst in &table.instances {
            let index = tree.instances.len();
            for nic in &inst.nics {
                tree.by_ip.entry(nic.ip).or_insert(index);
            }
            tree.by_uuid.insert(inst.uuid.clone(), index);
            tree.instances.push(Arc::new(render(inst, table, settings)));
        }
        tree
    }

    /// The instance whose fixed IP this is.
    pub fn by_ip(&self, ip: Ipv4Addr) -> Option<&Arc<InstanceTree>> {
        self.instances.get(*self.by_ip.get(&ip)?)
    }

    /// The instance with this UUID.
    pub fn by_uuid(&self, uuid: &str) -> Option<&Arc<InstanceTree>> {
        self.instances.get(*self.by_uuid.get(uuid)?)
    }

    /// Number of instances.
    pub fn len(&self) -> usize {
        self.instances.len()
    }

    /// Whether there is no instance.
    pub fn is_empty(&self) -> bool {
        self.instances.is_empty()
    }
}

/// A directory listing: names joined by newlines, no trailing newline.
fn listing<'a>(names: impl IntoIterator<Item = &'a str>) -> Bytes {
    Bytes::from(names.into_iter().collect::<Vec<_>>().join("\n"))
}

/// A piece of a tree before it is flattened into paths.
enum Entry {
    Leaf(Bytes),
    /// Children; and a listing that replaces the generated one (EC2 public-keys).
    Dir(BTreeMap<String, Entry>, Option<Bytes>),
}

fn leaf(text: impl Into<String>) -> Entry {
    Entry::Leaf(Bytes::from(text.into()))
}

fn dir(children: impl IntoIterator<Item = (&'static str, Entry)>) -> Entry {
    Entry::Dir(
        children
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
        None,
    )
}

fn flatten(path: &str, entry: &Entry, out: &mut HashMap<String, Node>) {
    match entry {
        Entry::Leaf(b) => {
            out.insert(
                path.to_string(),
                Node {
                    content_type: TEXT,
                    content: Content::Static(b.clone()),
                },
            );
        }
        Entry::Dir(children, custom) => {
            let generated = || {
                let names: Vec<String> = children
                    .iter()
                    .map(|(k, v)| {
                        if matches!(v, Entry::Dir(..)) {
                            format!("{k}/")
                        } else {
                            k.clone()
                        }
                    })
                    .collect();
                Bytes::from(names.join("\n"))
            };
            let body = custom.clone().unwrap_or_else(generated);
            out.insert(
                path.to_string(),
                Node {
                    content_type: TEXT,
                    content: Content::Static(body),
                },
            );
            for (name, child) in children {
                flatten(&format!("{path}/{name}"), child, out);
            }
        }
    }
}

fn fqdn(inst: &Instance, table: &Table, settings: &MetadataSettings) -> String {
    let domain = inst
        .nics
        .first()
        .and_then(|n| table.networks.get(n.network))
        .and_then(|n| n.domain.clone())
        .unwrap_or_else(|| settings.dhcp_domain.clone());
    if domain.is_empty() {
        inst.hostname.clone()
    } else {
        format!("{}.{domain}", inst.hostname)
    }
}

/// Renders one instance's EC2 and OpenStack trees.
pub fn render(inst: &Instance, table: &Table, settings: &MetadataSettings) -> InstanceTree {
    let mut paths = HashMap::new();
    let host = fqdn(inst, table, settings);
    let vendordata = settings.vendordata.clone().unwrap_or_else(|| json!({}));
    for (i, version) in EC2_VERSIONS.iter().enumerate() {
        let tree = ec2(inst, &host, version);
        flatten(version, &tree, &mut paths);
        if i == EC2_VERSIONS.len() - 1 {
            flatten("latest", &tree, &mut paths);
        }
    }
    let network_data = Bytes::from(network_data(inst, table).to_string());
    let openstack_listing = listing(OPENSTACK_VERSIONS.iter().copied().chain(["latest"]));
    paths.insert(
        "openstack".into(),
        Node {
            content_type: TEXT,
            content: Content::Static(openstack_listing),
        },
    );
    for (i, version) in OPENSTACK_VERSIONS.iter().enumerate() {
        let mut names = vec!["meta_data.json"];
        let mut files: Vec<(&str, Node)> =
            vec![("meta_data.json", meta_data_json(inst, &host, version))];
        // User data is shared with the table's copy (an Arc), not copied per version.
        if let Some(ud) = &inst.user_data {
            names.push("user_data");
            files.push((
                "user_data",
                Node {
                    content_type: TEXT,
                    content: Content::Static(Bytes::from_owner(ud.clone())),
                },
            ));
        }
        if *version >= "2013-04-04" {
            names.push("password");
            files.push((
                "password",
                Node {
                    content_type: TEXT,
                    content: Content::Password,
                },
            ));
        }
        if *version >= "2013-10-17" {
            names.push("vendor_data.json");
            files.push(("vendor_data.json", json_node(vendordata.to_string())));
        }
        if *version >= "2015-10-15" {
            names.push("network_data.json");
            files.push((
                "network_data.json",
                Node {
                    content_type: JSON,
                    content: Content::Static(network_data.clone()),
                },
            ));
        }
        if *version >= "2016-10-06" {
            names.push("vendor_data2.json");
            files.push((
                "vendor_data2.json",
                json_node(json!({ "static": vendordata }).to_string()),
            ));
        }
        let dirs: Vec<&str> = if i == OPENSTACK_VERSIONS.len() - 1 {
            vec![version, "latest"]
        } else {
            vec![version]
        };
        for d in dirs {
            paths.insert(
                format!("openstack/{d}"),
                Node {
                    content_type: TEXT,
                    content: Content::Static(listing(names.iter().copied())),
                },
            );
            for (name, node) in &files {
                paths.insert(format!("openstack/{d}/{name}"), node.clone());
            }
        }
    }
    InstanceTree {
        uuid: inst.uuid.clone(),
        project_id: inst.project_id.clone(),
        paths,
    }
}

fn json_node(text: String) -> Node {
    Node {
        content_type: JSON,
        content: Content::Static(Bytes::from(text)),
    }
}

/// nova's get_ec2_metadata for one version.
fn ec2(inst: &Instance, host: &str, version: &str) -> Entry {
    let mut meta: BTreeMap<String, Entry> = BTreeMap::new();
    let mut put = |k: &str, e: Entry| {
        meta.insert(k.to_string(), e);
    };
    put("ami-id", leaf(format!("ami-{:08x}", inst.image_id)));
    put("ami-launch-index", leaf(inst.launch_index.to_string()));
    put("ami-manifest-path", leaf("FIXME"));
    put("hostname", leaf(host));
    put("instance-id", leaf(format!("i-{:08x}", inst.ec2_id)));
    put(
        "local-ipv4",
        leaf(
            inst.nics
                .first()
                .map(|n| n.ip.to_string())
                .unwrap_or_default(),
        ),
    );
    put("reservation-id", leaf(inst.reservation_id.clone()));
    put("security-groups", leaf(inst.security_groups.join("\n")));
    if !inst.public_keys.is_empty() {
        let mut keys = BTreeMap::new();
        let mut names = Vec::new();
        for (i, (name, key)) in inst.public_keys.iter().enumerate() {
            names.push(format!("{i}={name}"));
            keys.insert(i.to_string(), dir([("openssh-key", leaf(key.clone()))]));
        }
        put(
            "public-keys",
            Entry::Dir(keys, Some(Bytes::from(names.join("\n")))),
        );
    }
    if version >= "2007-01-19" {
        put("local-hostname", leaf(host));
        put("public-hostname", leaf(host));
        put(
            "public-ipv4",
            leaf(
                inst.floating_ips
                    .first()
                    .map(|f| f.to_string())
                    .unwrap_or_default(),
            ),
        );
    }
    if version >= "2007-08-29" {
        put("instance-type", leaf(inst.flavor.clone()));
    }
    if version >= "2007-12-15" {
        put(
            "block-device-mapping",
            dir([("ami", leaf("vda")), ("root", leaf("/dev/vda"))]),
        );
    }
    if version >= "2008-02-01" {
        put(
            "placement",
            dir([("availability-zone", leaf(inst.availability_zone.clone()))]),
        );
    }
    if version >= "2008-09-01" {
        put("instance-action", leaf("none"));
    }
    let mut top = BTreeMap::new();
    top.insert("meta-data".to_string(), Entry::Dir(meta, None));
    if let Some(ud) = &inst.user_data {
        top.insert(
            "user-data".to_string(),
            Entry::Leaf(Bytes::from_owner(ud.clone())),
        );
    }
    Entry::Dir(top, None)
}

/// nova's meta_data.json for one version (keys in nova's order).
fn meta_data_json(inst: &Instance, host: &str, version: &str) -> Node {
    let mut m = Map::new();
    m.insert("uuid".into(), json!(inst.uuid));
    if !inst.meta.is_empty() {
        m.insert(
            "meta".into(),
            Value::Object(
                inst.meta
                    .iter()
                    .map(|(k, v)| (k.clone(), json!(v)))
                    .collect(),
            ),
        );
    }
    if !inst.public_keys.is_empty() {
        m.insert(
            "public_keys".into(),
            Value::Object(
                inst.public_keys
                    .iter()
                    .map(|(k, v)| (k.clone(), json!(v)))
                    .collect(),
            ),
        );
        m.insert(
            "keys".into(),
            Value::Array(
                inst.public_keys
                    .iter()
                    .map(|(k, v)| json!({"name": k, "type": "ssh", "data": v}))
                    .collect(),
            ),
        );
    }
    m.insert("hostname".into(), json!(host));
    m.insert("name".into(), json!(inst.name));
    m.insert("launch_index".into(), json!(inst.launch_index));
    m.insert("availability_zone".into(), json!(inst.availability_zone));
    // random_seed is fresh per request: everything before it and after it is rendered now, and
    // the seed is spliced between (no marker text that a name or meta value could contain).
    let seeded = version >= "2013-04-04";
    let mut after = Map::new();
    if version >= "2015-10-15" {
        after.insert("project_id".into(), json!(inst.project_id));
    }
    if version >= "2016-06-30" {
        after.insert("devices".into(), json!([]));
    }
    if version >= "2020-10-14" {
        after.insert("dedicated_cpus".into(), json!([]));
    }
    let inner = |m: Map<String, Value>| {
        let text = Value::Object(m).to_string();
        text.get(1..text.len() - 1).unwrap_or("").to_string()
    };
    let (before, after) = (inner(m), inner(after));
    let content = if seeded {
        let tail = if after.is_empty() {
            "\"}".to_string()
        } else {
            format!("\",{after}}}")
        };
        Content::WithSeed(
            Bytes::from(format!("{{{before},\"random_seed\":\"")),
            Bytes::from(tail),
        )
    } else {
        let all = if after.is_empty() {
            before
        } else {
            format!("{before},{after}")
        };
        Content::Static(Bytes::from(format!("{{{all}}}")))
    };
    Node {
        content_type: JSON,
        content,
    }
}

/// network_data.json: a link per interface, an ipv4 network per fixed IP (with its routes and DNS
/// services) and an ipv6_slaac network where the network has a prefix.
fn network_data(inst: &Instance, table: &Table) -> Value {
    let mut links = Vec::new();
    let mut networks = Vec::new();
    let mut services: Vec<Value> = Vec::new();
    for (i, nic) in inst.nics.iter().enumerate() {
        let Some(net) = table.networks.get(nic.network) else {
            continue;
        };
        let vif = vif_id(&inst.uuid, &nic.mac.to_string());
        let link = format!("tap{}", &vif[..11]);
        links.push(json!({"id": link, "vif_id": vif, "type": "bridge", "mtu": mtu(net), "ethernet_mac_address": nic.mac.to_string()}));
        let dns: Vec<Value> = net
            .dns_servers()
            .map(|a| json!({"type": "dns", "address": a.to_string()}))
            .collect();
        for d in &dns {
            if !services.contains(d) {
                services.push(d.clone());
            }
        }
        // Only the first NIC gets a default route (nova's multinic rule).
        let routes: Vec<Value> = match (i, net.gateway) {
            (0, Some(gw)) => {
                vec![json!({"network": "0.0.0.0", "netmask": "0.0.0.0", "gateway": gw.to_string()})]
            }
            _ => vec![],
        };
        networks.push(json!({
            "id": format!("network{}", networks.len()),
            "type": "ipv4",
            "link": link,
            "ip_address": nic.ip.to_string(),
            "netmask": net.cidr.mask().to_string(),
            "routes": routes,
            "network_id": net.name,
            "services": dns,
        }));
        if let (Some(v6), Some(addr)) = (net.cidr_v6, nic.ipv6) {
            networks.push(json!({
                "id": format!("network{}", networks.len()),
                "type": "ipv6_slaac",
                "link": link,
                "ip_address": addr.to_string(),
                "netmask": ipv6_mask(v6.prefix()),
                "routes": [],
                "network_id": net.name,
                "services": [],
            }));
        }
    }
    json!({"links": links, "networks": networks, "services": services})
}

fn mtu(net: &crate::table::Network) -> Value {
    net.mtu().map_or(Value::Null, |m| json!(m))
}

fn ipv6_mask(prefix: u8) -> String {
    let bits = if prefix == 0 {
        0
    } else {
        u128::MAX << (128 - u32::from(prefix))
    };
    std::net::Ipv6Addr::from(bits).to_string()
}

/// A stable UUID-shaped VIF id for an instance's MAC (nova-network had VIF rows; netnode derives).
fn vif_id(uuid: &str, mac: &str) -> String {
    use sha2::{Digest, Sha256};
    let h = Sha256::digest(format!("{uuid}/{mac}").as_bytes());
    let x: String = h.iter().take(16).map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &x[..8],
        &x[8..12],
        &x[12..16],
        &x[16..20],
        &x[20..32]
    )
}
