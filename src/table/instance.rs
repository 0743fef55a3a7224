//! Instance records (for the metadata service), joined with the bindings: an instance's MACs
//! find its fixed IPs, networks and SLAAC addresses.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;

use super::ipv6::{self, Backend};
use super::{MacAddr, Network, Problem};

use serde::Deserialize;
use std::path::PathBuf;

/// `[metadata]`.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct MetadataConfig {
    /// Where the HTTP server listens (default `0.0.0.0:8775`, nova's metadata_listen).
    pub listen: Option<String>,
    /// A StaticJSON vendor data file (vendor_data.json and the "static" key of vendor_data2.json).
    pub vendordata_file: Option<PathBuf>,
    /// Peers whose `X-Forwarded-For` / `Forwarded: for=` headers are believed.
    #[serde(default)]
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// Neutron proxy mode: requests identify the instance with X-Instance-ID, X-Tenant-ID and
    /// an HMAC-SHA256 X-Instance-ID-Signature made with this secret.
    pub proxy_shared_secret: Option<String>,
    /// Domain for EC2 hostnames when the instance's network sets none (nova's dhcp_domain).
    pub dhcp_domain: Option<String>,
    /// Which header trusted proxies write: `x-forwarded-for` (default) or `forwarded`.
    #[serde(default)]
    pub forwarded_header: ForwardedHeader,
}

/// Which header a trusted proxy writes the client's address into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
pub enum ForwardedHeader {
    /// `X-Forwarded-For: client, proxy1, ...`.
    #[default]
    #[serde(rename = "x-forwarded-for")]
    XForwardedFor,
    /// RFC 7239 `Forwarded: for=client, for=proxy1`.
    #[serde(rename = "forwarded")]
    Forwarded,
}

/// One `[[instance]]`.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct InstanceConfig {
    /// The instance's UUID.
    pub uuid: String,
    /// Display name.
    pub name: String,
    /// Host name (without domain).
    pub hostname: Option<String>,
    /// Its MAC; joins the bindings, whose fixed IPs identify the instance.
    pub mac: Option<String>,
    /// More MACs (multinic).
    #[serde(default)]
    pub macs: Vec<String>,
    /// Owning project.
    pub project_id: Option<String>,
    /// Availability zone (default "nova").
    pub availability_zone: Option<String>,
    /// Flavor name (EC2 instance-type).
    pub flavor: Option<String>,
    /// User data, inline.
    pub user_data: Option<String>,
    /// User data, from a file (bytes as they are).
    pub user_data_file: Option<PathBuf>,
    /// SSH keys by name.
    #[serde(default)]
    pub public_keys: std::collections::BTreeMap<String, String>,
    /// Free-form metadata.
    #[serde(default)]
    pub meta: std::collections::BTreeMap<String, String>,
    /// Launch index (default 0).
    pub launch_index: Option<u32>,
    /// Security group names (default ["default"]).
    pub security_groups: Option<Vec<String>>,
    /// The host-side device of each interface (a tap or veth on the bridge), in the order of
    /// `mac` then `macs`: the firewall filters the interfaces it can name.
    #[serde(default)]
    pub ports: Vec<String>,
    /// Floating IPs associated with it.
    #[serde(default)]
    pub floating_ips: Vec<std::net::Ipv4Addr>,
    /// nova's integer instance id, for EC2's `i-%08x` (default: its position, from 1).
    pub id: Option<u32>,
    /// nova's integer image id, for EC2's `ami-%08x` (default 1).
    pub image_id: Option<u32>,
    /// EC2 reservation id (default derived from the UUID).
    pub reservation_id: Option<String>,
}

/// One network interface of an instance, found through its MAC's binding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nic {
    /// The interface's MAC.
    pub mac: MacAddr,
    /// Index of its network in `Table::networks`.
    pub network: usize,
    /// Its fixed IPv4 address.
    pub ip: Ipv4Addr,
    /// Its SLAAC address, when the network has an IPv6 prefix.
    pub ipv6: Option<Ipv6Addr>,
    /// The host-side device the interface is plugged into (a tap or veth on the bridge), when
    /// known: the firewall filters only ports it can name.
    pub port: Option<String>,
}

/// An instance as the metadata service describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    /// UUID.
    pub uuid: String,
    /// Display name.
    pub name: String,
    /// Host name without domain.
    pub hostname: String,
    /// Interfaces, in the order of the record's MACs (the first is the primary).
    pub nics: Vec<Nic>,
    /// Owning project.
    pub project_id: String,
    /// Availability zone.
    pub availability_zone: String,
    /// Flavor name.
    pub flavor: String,
    /// User data.
    pub user_data: Option<Arc<[u8]>>,
    /// SSH keys (name, key), sorted by name.
    pub public_keys: Vec<(String, String)>,
    /// Free-form metadata, sorted by key.
    pub meta: Vec<(String, String)>,
    /// Launch index.
    pub launch_index: u32,
    /// Security groups.
    pub security_groups: Vec<String>,
    /// Floating IPs.
    pub floating_ips: Vec<Ipv4Addr>,
    /// nova's integer id (EC2 `i-%08x`).
    pub ec2_id: u32,
    /// nova's integer image id (EC2 `ami-%08x`).
    pub image_id: u32,
    /// EC2 reservation id.
    pub reservation_id: String,
}

/// Metadata service settings.
#[derive(Debug, Clone, PartialEq)]
pub struct MetadataSettings {
    /// Listen address.
    pub listen: SocketAddr,
    /// StaticJSON vendor data.
    pub vendordata: Option<serde_json::Value>,
    /// Peers whose forwarding headers are believed.
    pub trusted_proxies: Vec<IpAddr>,
    /// Neutron proxy mode secret.
    pub proxy_shared_secret: Option<String>,
    /// The header trusted proxies write the client's address into.
    pub forwarded_header: ForwardedHeader,
    /// Domain for host names when the network has none.
    pub dhcp_domain: String,
}

/// nova's default metadata listen address and port.
pub const DEFAULT_LISTEN: &str = "0.0.0.0:8775";

impl Default for MetadataSettings {
    /// nova's defaults: what an empty `[metadata]` table gives.
    fn default() -> Self {
        MetadataSettings {
            listen: ([0, 0, 0, 0], 8775).into(),
            vendordata: None,
            trusted_proxies: Vec::new(),
            proxy_shared_secret: None,
            forwarded_header: Default::default(),
            dhcp_domain: "novalocal".into(),
        }
    }
}

/// Validates `[metadata]`; the error names the key.
pub fn settings(c: &MetadataConfig) -> Result<MetadataSettings, String> {
    let listen_text = c.listen.as_deref().unwrap_or(DEFAULT_LISTEN);
    let listen = listen_text
        .parse()
        .map_err(|e| format!("[metadata] listen: {listen_text:?}: {e}"))?;
    let vendordata = match &c.vendordata_file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("[metadata] vendordata_file: {}: {e}", path.display()))?;
            Some(serde_json::from_str(&text).map_err(|e| {
                format!(
                    "[metadata] vendordata_file: {}: line {}: {e}",
                    path.display(),
                    e.line()
                )
            })?)
        }
        None => None,
    };
    Ok(MetadataSettings {
        listen,
        vendordata,
        trusted_proxies: c.trusted_proxies.clone(),
        proxy_shared_secret: match c.proxy_shared_secret.as_deref() {
            Some("") => return Err("[metadata] proxy_shared_secret: empty (give a secret, or remove the key to identify instances by address)".into()),
            other => other.map(str::to_string),
        },
        forwarded_header: c.forwarded_header,
        dhcp_domain: c.dhcp_domain.clone().unwrap_or_else(|| "novalocal".into()),
    })
}

/// Builds the instances, joining their MACs with the networks' bindings. A MAC without a
/// binding is a problem (the instance is still served by UUID in proxy mode).
pub fn build(
    configs: &[InstanceConfig],
    networks: &[Network],
    backend: Backend,
    origin: &Path,
    problems: &mut Vec<Problem>,
) -> Result<Vec<Instance>, String> {
    let mut out: Vec<Instance> = Vec::with_capacity(configs.len());
    // A set, not a scan of `out`: ten thousand instances are ten thousand lookups, not fifty
    // million comparisons.
    let mut uuids: std::collections::HashSet<&str> = std::collections::HashSet::new();
    for (index, c) in configs.iter().enumerate() {
        let label = format!("instance {} ({:?})", index + 1, c.uuid);
        if c.uuid.trim().is_empty() {
            return Err(format!("{label}: uuid: empty"));
        }
        if !uuids.insert(c.uuid.as_str()) {
            return Err(format!("{label}: uuid: used by another instance"));
        }
        let user_data: Option<Arc<[u8]>> = match (&c.user_data, &c.user_data_file) {
            (Some(_), Some(_)) => {
                return Err(format!("{label}: user_data and user_data_file: give one"))
            }
            (Some(text), None) => Some(text.as_bytes().into()),
            (None, Some(path)) => Some(
                std::fs::read(path)
                    .map_err(|e| format!("{label}: user_data_file: {}: {e}", path.display()))?
                    .into(),
            ),
            (None, None) => None,
        };
        let mut macs = Vec::new();
        for text in c.mac.iter().chain(&c.macs) {
            macs.push(
                text.parse::<MacAddr>()
                    .map_err(|e| format!("{label}: mac: {text:?}: {e}"))?,
            );
        }
        let project_id = c.project_id.clone().unwrap_or_default();
        let mut nics = Vec::new();
        for (k, mac) in macs.iter().enumerate() {
            let found = networks
                .iter()
                .enumerate()
                .find_map(|(i, n)| n.binding(*mac, None).map(|b| (i, n, b)));
            let Some((network, net, binding)) = found else {
                problems.push(Problem::instance(
                    origin.display().to_string(),
                    format!("{label}: MAC {mac} has no binding, so no address identifies it"),
                ));
                continue;
            };
            let ipv6 = net.cidr_v6.and_then(|p| {
                ipv6::instance_address(p.network(), p.prefix(), *mac, backend, Some(&project_id))
                    .ok()
            });
            nics.push(Nic {
                mac: *mac,
                network,
                ip: binding.ip,
                ipv6,
                port: c.ports.get(k).cloned(),
            });
        }
        let hostname = c
            .hostname
            .clone()
            .unwrap_or_else(|| sanitize_hostname(&c.name));
        out.push(Instance {
            uuid: c.uuid.clone(),
            name: c.name.clone(),
            hostname,
            nics,
            project_id,
            availability_zone: c.availability_zone.clone().unwrap_or_else(|| "nova".into()),
            flavor: c.flavor.clone().unwrap_or_else(|| "m1.small".into()),
            user_data,
            public_keys: c
                .public_keys
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            meta: c.meta.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            launch_index: c.launch_index.unwrap_or(0),
            security_groups: c
                .security_groups
                .clone()
                .unwrap_or_else(|| vec!["default".into()]),
            floating_ips: c.floating_ips.clone(),
            ec2_id: c.id.unwrap_or(index as u32 + 1),
            image_id: c.image_id.unwrap_or(1),
            reservation_id: c.reservation_id.clone().unwrap_or_else(|| {
                format!(
                    "r-{}",
                    c.uuid.replace('-', "").chars().take(8).collect::<String>()
                )
            }),
        });
    }
    Ok(out)
}

/// nova's hostname sanitising: lower case, letters, digits and hyphens, at most 63.
pub fn sanitize_hostname(name: &str) -> String {
    let mut h: String = name
        .to_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else if c == ' ' || c == '_' || c == '.' {
                '-'
            } else {
                '\0'
            }
        })
        .filter(|c| *c != '\0')
        .collect();
    h = h.trim_matches('-').chars().take(63).collect();
    if h.is_empty() {
        "server".into()
    } else {
        h
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostnames_are_sanitised_like_novas() {
        assert_eq!(sanitize_hostname("Web Server_1"), "web-server-1");
        assert_eq!(sanitize_hostname("..."), "server");
        assert_eq!(sanitize_hostname(&"a".repeat(80)).len(), 63);
    }

    #[test]
    fn settings_validate() {
        let s = settings(&MetadataConfig::default()).unwrap();
        assert_eq!(
            s,
            MetadataSettings::default(),
            "an empty [metadata] is nova's defaults"
        );
        assert_eq!(s.listen, DEFAULT_LISTEN.parse().unwrap());
        assert_eq!(s.dhcp_domain, "novalocal");
        let bad = MetadataConfig {
            listen: Some("nowhere".into()),
            ..Default::default()
        };
        assert!(settings(&bad).unwrap_err().contains("listen"));
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("v.json");
        std::fs::write(&f, "{\"a\": ").unwrap();
        let bad = MetadataConfig {
            vendordata_file: Some(f),
            ..Default::default()
        };
        assert!(settings(&bad).unwrap_err().contains("line 1"));
    }
}
