//! Networks: `network-create` with nova's flags and layout, list, show, delete, and the
//! project association that guards deletion.

use std::net::{Ipv4Addr, Ipv6Addr};

use ipnetwork::{Ipv4Network, Ipv6Network};
use rusqlite::{params, OptionalExtension, Row, Transaction};
use serde::Serialize;

use super::rules::{self, NetworkRequest};
use super::{found, from_db, opt_addr, to_db, Change, Manager, ManagerError, Result};
use crate::table::config::ManagerKind;

/// `network-create`'s flags (nova network-create and nova-manage network create).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct CreateNetwork {
    /// The network's label (a name; `_N` is appended when several are made).
    #[arg(long = "label", id = "label_flag", hide = true)]
    pub label_flag: Option<String>,
    /// The network's label.
    pub label: Option<String>,
    /// The IPv4 range (`--fixed_range_v4` too).
    #[arg(long, alias = "fixed_range_v4")]
    pub fixed_range_v4: Option<String>,
    /// An IPv6 range; the network gets its first /64 (`--fixed_range_v6` too).
    #[arg(long, alias = "fixed_range_v6")]
    pub fixed_range_v6: Option<String>,
    /// The VLAN id (VLAN networks number from `vlan_start` when it is not given).
    #[arg(long, alias = "vlan_id")]
    pub vlan: Option<u32>,
    /// The first VLAN id of this command's networks.
    #[arg(long, alias = "vlan_start")]
    pub vlan_start: Option<u32>,
    /// The VPN (cloudpipe) public port; the network keeps its second address for the VPN.
    #[arg(long, alias = "vpn_start")]
    pub vpn: Option<u16>,
    /// The default router (default: the first host address).
    #[arg(long)]
    pub gateway: Option<Ipv4Addr>,
    /// The IPv6 gateway (default: the prefix's first address).
    #[arg(long, alias = "gateway_v6")]
    pub gateway_v6: Option<Ipv6Addr>,
    /// The bridge (default `br<vlan>` for VLAN networks, else the first `br<N>` from 100 that no
    /// network has).
    #[arg(long)]
    pub bridge: Option<String>,
    /// The interface enslaved to the bridge (nova's flat_interface / vlan_interface).
    #[arg(long, alias = "bridge_interface")]
    pub bridge_interface: Option<String>,
    /// nova's multi_host (recorded; this node serves the network either way).
    #[arg(long, alias = "multi_host", num_args = 0..=1, default_missing_value = "true")]
    pub multi_host: Option<String>,
    /// First DNS server (option 6).
    #[arg(long)]
    pub dns1: Option<Ipv4Addr>,
    /// Second DNS server.
    #[arg(long)]
    pub dns2: Option<Ipv4Addr>,
    /// Allocation is limited to this sub-range.
    #[arg(long, alias = "fixed_cidr")]
    pub fixed_cidr: Option<String>,
    /// Associate the network with this project.
    #[arg(long, alias = "project_id", alias = "project")]
    pub project_id: Option<String>,
    /// Interface MTU (option 26), 68 or more.
    #[arg(long, value_parser = clap::value_parser!(u16).range(68..))]
    pub mtu: Option<u16>,
    /// Serve DHCP on it (`true`, default, or `false`).
    #[arg(long, alias = "enable_dhcp")]
    pub enable_dhcp: Option<String>,
    /// The DHCP server's address (default: the gateway).
    #[arg(long, alias = "dhcp_server")]
    pub dhcp_server: Option<Ipv4Addr>,
    /// nova's share_address (recorded).
    #[arg(long, alias = "share_address", num_args = 0..=1, default_missing_value = "true")]
    pub share_address: Option<String>,
    /// Allocation starts here.
    #[arg(long, alias = "allowed_start")]
    pub allowed_start: Option<Ipv4Addr>,
    /// Allocation ends here.
    #[arg(long, alias = "allowed_end")]
    pub allowed_end: Option<Ipv4Addr>,
    /// How many networks to split the range into (default `[manager] num_networks`).
    #[arg(long, alias = "num_networks")]
    pub num_networks: Option<u32>,
    /// Addresses per network when splitting (default `[manager] network_size`).
    #[arg(long, alias = "network_size")]
    pub network_size: Option<u32>,
}

/// A network as stored.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct NetworkRow {
    /// nova's integer id.
    pub id: i64,
    /// Its UUID.
    pub uuid: String,
    /// Its label.
    pub label: String,
    /// The IPv4 range.
    pub cidr: Ipv4Network,
    /// The IPv6 /64.
    pub cidr_v6: Option<Ipv6Network>,
    /// Default router.
    pub gateway: Ipv4Addr,
    /// IPv6 gateway.
    pub gateway_v6: Option<Ipv6Addr>,
    /// Broadcast address.
    pub broadcast: Ipv4Addr,
    /// DHCP server address.
    pub dhcp_server: Ipv4Addr,
    /// First DHCP address.
    pub dhcp_start: Ipv4Addr,
    /// The bridge.
    pub bridge: String,
    /// The enslaved interface, if named.
    pub bridge_interface: Option<String>,
    /// The VLAN id.
    pub vlan: Option<u16>,
    /// The VPN's public port.
    pub vpn_public_port: Option<u16>,
    /// The VPN's private address.
    pub vpn_private_address: Option<Ipv4Addr>,
    /// DNS servers.
    pub dns1: Option<Ipv4Addr>,
    /// Second DNS server.
    pub dns2: Option<Ipv4Addr>,
    /// MTU.
    pub mtu: Option<u16>,
    /// DHCP served.
    pub enable_dhcp: bool,
    /// nova's share_address.
    pub share_address: bool,
    /// nova's multi_host.
    pub multi_host: bool,
    /// The project it is associated with.
    pub project_id: Option<String>,
}

const COLUMNS: &str =
    "id, uuid, label, cidr, cidr_v6, gateway, gateway_v6, broadcast, dhcp_server, \
     dhcp_start, bridge, bridge_interface, vlan, vpn_public_port, vpn_private_address, dns1, dns2, \
     mtu, enable_dhcp, share_address, multi_host, project_id";

fn row(r: &Row<'_>) -> rusqlite::Result<NetworkRow> {
    let text = |i: usize| -> rusqlite::Result<String> { r.get(i) };
    let parse_err = |i: usize, e: String| {
        rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, e.into())
    };
    let cidr: Ipv4Network = text(3)?
        .parse()
        .map_err(|e: ipnetwork::IpNetworkError| parse_err(3, e.to_string()))?;
    let cidr_v6 = match r.get::<_, Option<String>>(4)? {
        Some(t) => Some(
            t.parse()
                .map_err(|e: ipnetwork::IpNetworkError| parse_err(4, e.to_string()))?,
        ),
        None => None,
    };
    let gateway_v6 = match r.get::<_, Option<String>>(6)? {
        Some(t) => Some(
            t.parse()
                .map_err(|e: std::net::AddrParseError| parse_err(6, e.to_string()))?,
        ),
        None => None,
    };
    Ok(NetworkRow {
        id: r.get(0)?,
        uuid: r.get(1)?,
        label: r.get(2)?,
        cidr,
        cidr_v6,
        gateway: from_db(r.get(5)?),
        gateway_v6,
        broadcast: from_db(r.get(7)?),
        dhcp_server: from_db(r.get(8)?),
        dhcp_start: from_db(r.get(9)?),
        bridge: r.get(10)?,
        bridge_interface: r.get(11)?,
        vlan: r.get(12)?,
        vpn_public_port: r.get(13)?,
        vpn_private_address: opt_addr(r.get(14)?),
        dns1: opt_addr(r.get(15)?),
        dns2: opt_addr(r.get(16)?),
        mtu: r.get(17)?,
        enable_dhcp: r.get(18)?,
        share_address: r.get(19)?,
        multi_host: r.get(20)?,
        project_id: r.get(21)?,
    })
}

/// Every network, by id.
pub fn all(tx: &Transaction<'_>) -> Result<Vec<NetworkRow>> {
    let mut st = tx.prepare_cached(&format!("SELECT {COLUMNS} FROM networks ORDER BY id"))?;
    let rows = st
        .query_map([], row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}

/// The network a command names: by label, UUID, id or range.
pub fn find(tx: &Transaction<'_>, key: &str) -> Result<NetworkRow> {
    let mut st = tx.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM networks WHERE label = ?1 OR uuid = ?1 OR cidr = ?1 \
         OR CAST(id AS TEXT) = ?1 ORDER BY label = ?1 DESC LIMIT 1"
    ))?;
    found(st.query_row([key], row), "network", key)
}

fn flag_bool(flag: &str, v: &Option<String>, default: bool) -> Result<bool> {
    match v.as_deref().map(str::to_ascii_lowercase).as_deref() {
        None => Ok(default),
        Some("true" | "1" | "yes" | "t") => Ok(true),
        Some("false" | "0" | "no" | "f") => Ok(false),
        Some(other) => Err(ManagerError::Invalid(format!(
            "--{flag}: {other:?} is not true or false"
        ))),
    }
}

fn parse<T: std::str::FromStr>(flag: &str, text: &str) -> Result<T>
where
    T::Err: std::fmt::Display,
{
    text.trim()
        .parse()
        .map_err(|e| ManagerError::Invalid(format!("--{flag}: {text:?}: {e}")))
}

/// `network-create`'s flags read and checked, as both backends need them.
#[derive(Debug, Clone)]
pub struct NetworkFlags {
    /// The label.
    pub label: String,
    /// The IPv4 range (its network address).
    pub range: Ipv4Network,
    /// Allocation is limited to this sub-range.
    pub fixed_cidr: Option<Ipv4Network>,
    /// The IPv6 range, at most a /64.
    pub v6_range: Option<Ipv6Network>,
    /// Serve DHCP on it.
    pub enable_dhcp: bool,
    /// nova's multi_host.
    pub multi_host: bool,
}

impl CreateNetwork {
    /// Reads the label, ranges and switches; `multi_host` is the default of `--multi-host`.
    pub fn flags(&self, multi_host: bool) -> Result<NetworkFlags> {
        let label = self
            .label
            .clone()
            .or_else(|| self.label_flag.clone())
            .ok_or_else(|| ManagerError::Invalid("a label is required".into()))?;
        if label.trim().is_empty() || label.len() > 255 {
            return Err(ManagerError::Invalid(format!(
                "label {label:?}: empty or too long"
            )));
        }
        let range_text = self
            .fixed_range_v4
            .as_deref()
            .ok_or_else(|| ManagerError::Invalid("--fixed-range-v4 is required".into()))?;
        let range: Ipv4Network = parse("fixed-range-v4", range_text)?;
        let range = Ipv4Network::new(range.network(), range.prefix())
            .map_err(|e| ManagerError::Invalid(e.to_string()))?;
        let fixed_cidr: Option<Ipv4Network> = self
            .fixed_cidr
            .as_deref()
            .map(|t| parse("fixed-cidr", t))
            .transpose()?;
        let v6_range: Option<Ipv6Network> = self
            .fixed_range_v6
            .as_deref()
            .map(|t| parse("fixed-range-v6", t))
            .transpose()?;
        if let Some(r) = v6_range.filter(|r| r.prefix() > 64) {
            return Err(ManagerError::Invalid(format!(
                "--fixed-range-v6: {r} is longer than a /64"
            )));
        }
        if let Some(mtu) = self.mtu.filter(|m| *m < 68) {
            return Err(ManagerError::Invalid(format!(
                "--mtu: {mtu} is below the IPv4 minimum of 68"
            )));
        }
        Ok(NetworkFlags {
            label,
            range,
            fixed_cidr,
            v6_range,
            enable_dhcp: flag_bool("enable-dhcp", &self.enable_dhcp, true)?,
            multi_host: flag_bool("multi-host", &self.multi_host, multi_host)?,
        })
    }

    /// The IPv6 gateway of a network with this /64: `--gateway-v6` if it is in it, else the
    /// prefix's first address.
    pub fn gateway_v6_in(&self, prefix: Option<Ipv6Network>) -> Result<Option<Ipv6Addr>> {
        Ok(match (prefix, self.gateway_v6) {
            (Some(p), Some(g)) if p.contains(g) => Some(g),
            (Some(p), Some(g)) => {
                return Err(ManagerError::Invalid(format!(
                    "--gateway-v6: {g} is not in {p}"
                )))
            }
            (Some(p), None) => Some(Ipv6Addr::from(u128::from(p.network()) + 1)),
            (None, _) => None,
        })
    }

    /// `--share-address`, `default` when not given.
    pub fn share_address(&self, default: bool) -> Result<bool> {
        flag_bool("share-address", &self.share_address, default)
    }
}

impl Manager {
    /// `network-create`: one network, or `--num-networks` of them split from the range, laid
    /// out as nova does. Refused, changing nothing, when a label, range, VLAN or /64 is taken.
    pub fn network_create(&mut self, req: &CreateNetwork) -> Result<Vec<NetworkRow>> {
        let NetworkFlags {
            label,
            range,
            fixed_cidr,
            v6_range,
            enable_dhcp,
            multi_host,
        } = req.flags(false)?;
        let s = self.settings.clone();
        let count = req.num_networks.unwrap_or(if req.vlan.is_some() {
            1
        } else {
            s.num_networks
        });
        let size = req.network_size.unwrap_or(s.network_size);
        if count > rules::MAX_VLAN {
            return Err(ManagerError::Invalid(format!(
                "--num-networks: {count} is over {} (a VLAN each at most)",
                rules::MAX_VLAN
            )));
        }
        if count > 1 {
            // One range each: flags naming one address or sub-range cannot apply to all.
            for (flag, given) in [
                ("--fixed-cidr", req.fixed_cidr.is_some()),
                ("--gateway", req.gateway.is_some()),
                ("--dhcp-server", req.dhcp_server.is_some()),
                ("--allowed-start", req.allowed_start.is_some()),
                ("--allowed-end", req.allowed_end.is_some()),
                ("--gateway-v6", req.gateway_v6.is_some()),
            ] {
                if given {
                    return Err(ManagerError::Invalid(format!(
                        "{flag}: not with --num-networks {count} (it names one network's addresses)"
                    )));
                }
            }
        }
        let ranges = rules::split(range, count, size).map_err(ManagerError::Invalid)?;
        let share_address = req.share_address(false)?;
        let vlan_kind = s.kind == ManagerKind::Vlan;
        self.change(|c| {
            c.served();
            let mut made = Vec::new();
            for (i, cidr) in ranges.iter().enumerate() {
                let i = i as u32;
                let label = if ranges.len() > 1 {
                    format!("{label}_{}", i + 1)
                } else {
                    label.clone()
                };
                let vlan = match (req.vlan, req.vlan_start) {
                    (Some(v), _) => Some(rules::vlan_id(v, i).map_err(ManagerError::Invalid)?),
                    (None, Some(start)) => {
                        Some(rules::vlan_id(start, i).map_err(ManagerError::Invalid)?)
                    }
                    (None, None) if vlan_kind => Some(free_vlan(c.db(), s.vlan_start)?),
                    (None, None) => None,
                };
                let vpn_port = match req.vpn {
                    Some(p) => Some(u16::try_from(i).ok().and_then(|i| p.checked_add(i)).ok_or_else(|| {
                        ManagerError::Invalid(format!("--vpn: {p} + {i} is over 65535"))
                    })?),
                    None if vlan_kind => Some(free_vpn_port(c.db(), s.vpn_start)?),
                    None => None,
                };
                let layout = rules::layout(&NetworkRequest {
                    cidr: *cidr,
                    fixed_cidr: if ranges.len() == 1 { fixed_cidr } else { None },
                    gateway: if ranges.len() == 1 { req.gateway } else { None },
                    dhcp_server: if ranges.len() == 1 {
                        req.dhcp_server
                    } else {
                        None
                    },
                    vpn: vpn_port.is_some(),
                    allowed_start: req.allowed_start,
                    allowed_end: req.allowed_end,
                })
                .map_err(ManagerError::Invalid)?;
                let cidr_v6 = match v6_range {
                    Some(r) => Some(nth_64(r, i)?),
                    None if s.use_ipv6 => Some(free_64(c.db(), s.fixed_range_v6)?),
                    None => None,
                };
                let gateway_v6 = req.gateway_v6_in(cidr_v6)?;
                let bridge = match (&req.bridge, vlan) {
                    (Some(b), _) => b.clone(),
                    (None, Some(v)) => format!("br{v}"),
                    (None, None) => default_bridge(c.db(), &s, req.bridge_interface.as_deref())?,
                };
                check_free(c, &s, &label, cidr, cidr_v6, vlan)?;
                check_bridge(
                    c,
                    &s,
                    &NewBridge {
                        bridge: &bridge,
                        gateway: layout.gateway,
                        vlan,
                        interface: req.bridge_interface.as_deref(),
                    },
                )?;
                let row = NetworkRow {
                    id: 0,
                    uuid: super::uuid4(),
                    label,
                    cidr: *cidr,
                    cidr_v6,
                    gateway: layout.gateway,
                    gateway_v6,
                    broadcast: layout.broadcast,
                    dhcp_server: layout.dhcp_server,
                    dhcp_start: layout.dhcp_start,
                    bridge,
                    bridge_interface: req.bridge_interface.clone(),
                    vlan,
                    vpn_public_port: vpn_port,
                    vpn_private_address: layout.vpn_private,
                    dns1: req.dns1,
                    dns2: req.dns2,
                    mtu: req.mtu,
                    enable_dhcp,
                    share_address,
                    multi_host,
                    project_id: req.project_id.clone(),
                };
                let id = insert(c, &row, &layout.rows)?;
                c.db().execute(
                    "UPDATE networks SET fixed_cidr = ?, allowed_start = ?, allowed_end = ? WHERE id = ?",
                    params![
                        fixed_cidr.filter(|_| ranges.len() == 1).map(|f| f.to_string()),
                        req.allowed_start.map(to_db),
                        req.allowed_end.map(to_db),
                        id
                    ],
                )?;
                made.push(NetworkRow { id, ..row });
            }
            Ok(made)
        })
    }

    /// Every network.
    pub fn network_list(&mut self) -> Result<Vec<NetworkRow>> {
        self.read(all)
    }

    /// One network.
    pub fn network_show(&mut self, key: &str) -> Result<NetworkRow> {
        self.read(|tx| find(tx, key))
    }

    /// `network-delete`: refused while a project holds it (run `project scrub`) or a server
    /// has an address in it.
    pub fn network_delete(&mut self, key: &str) -> Result<NetworkRow> {
        self.change(|c| {
            let n = find(c.db(), key)?;
            if let Some(p) = &n.project_id {
                return Err(ManagerError::Refused(format!(
                    "network {:?} is associated with project {p}; disassociate it first (netnode project scrub --project {p})",
                    n.label
                )));
            }
            let used: i64 = c.db().query_row(
                "SELECT count(*) FROM fixed_ips WHERE network_id = ? AND instance_id IS NOT NULL",
                [n.id],
                |r| r.get(0),
            )?;
            if used > 0 {
                return Err(ManagerError::Refused(format!(
                    "network {:?} has {used} address(es) in use by servers; delete them first",
                    n.label
                )));
            }
            c.db().execute(
                "UPDATE floating_ips SET fixed_address = NULL WHERE fixed_address IN \
                 (SELECT address FROM fixed_ips WHERE network_id = ?)",
                [n.id],
            )?;
            c.db().execute("DELETE FROM fixed_ips WHERE network_id = ?", [n.id])?;
            c.db().execute("DELETE FROM networks WHERE id = ?", [n.id])?;
            c.served();
            Ok(n)
        })
    }

    /// `network-associate`: the network belongs to the project from now on.
    pub fn network_associate(&mut self, key: &str, project: &str) -> Result<NetworkRow> {
        self.change(|c| {
            let n = find(c.db(), key)?;
            match &n.project_id {
                Some(p) if p == project => {}
                Some(p) => {
                    return Err(ManagerError::Refused(format!(
                        "network {:?} is associated with project {p}; disassociate it first",
                        n.label
                    )))
                }
                None => {
                    c.db().execute(
                        "UPDATE networks SET project_id = ? WHERE id = ?",
                        params![project, n.id],
                    )?;
                }
            }
            Ok(NetworkRow {
                project_id: Some(project.to_string()),
                ..n
            })
        })
    }

    /// `network-disassociate`: the network belongs to no project.
    pub fn network_disassociate(&mut self, key: &str) -> Result<NetworkRow> {
        self.change(|c| {
            let n = find(c.db(), key)?;
            c.db()
                .execute("UPDATE networks SET project_id = NULL WHERE id = ?", [n.id])?;
            Ok(NetworkRow {
                project_id: None,
                ..n
            })
        })
    }

    /// `project scrub`: every network of the project is disassociated (nova also deletes the
    /// project's security groups; netnode has none yet). Returns the networks' labels.
    pub fn project_scrub(&mut self, project: &str) -> Result<Vec<String>> {
        self.change(|c| {
            let mut st = c.db().prepare(
                "UPDATE networks SET project_id = NULL WHERE project_id = ? RETURNING label",
            )?;
            let labels = st
                .query_map([project], |r| r.get(0))?
                .collect::<rusqlite::Result<Vec<String>>>()?;
            Ok(labels)
        })
    }
}

/// Refuses a label, range, /64 or VLAN another network has.
fn check_free(
    c: &Change<'_>,
    settings: &super::Settings,
    label: &str,
    cidr: &Ipv4Network,
    cidr_v6: Option<Ipv6Network>,
    vlan: Option<u16>,
) -> Result<()> {
    for own in &settings.config_networks {
        if own.name == label {
            return Err(ManagerError::Refused(format!(
                "the config has a network named {label:?}"
            )));
        }
        if own.cidr.is_some_and(|o| o.overlaps(*cidr)) {
            return Err(ManagerError::Refused(format!(
                "--fixed-range-v4: {cidr} conflicts with the config's network {:?}",
                own.name
            )));
        }
    }
    let db = c.db();
    if db
        .query_row(
            "SELECT 1 FROM networks WHERE label = ?",
            [label],
            |_| Ok(()),
        )
        .optional()?
        .is_some()
    {
        return Err(ManagerError::Refused(format!(
            "a network labelled {label:?} exists"
        )));
    }
    let first = to_db(cidr.network());
    let last = to_db(cidr.broadcast());
    if let Some((other, range)) = db
        .query_row(
            "SELECT label, cidr FROM networks WHERE first <= ? AND last >= ?",
            [last, first],
            |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)),
        )
        .optional()?
    {
        return Err(ManagerError::Refused(format!(
            "--fixed-range-v4: {cidr} conflicts with network {other:?} ({range})"
        )));
    }
    if let Some(floating) = db
        .query_row(
            "SELECT address FROM floating_ips WHERE address BETWEEN ? AND ? LIMIT 1",
            [first, last],
            |r| r.get::<_, i64>(0),
        )
        .optional()?
    {
        return Err(ManagerError::Refused(format!(
            "--fixed-range-v4: {cidr} holds floating IP {}",
            from_db(floating)
        )));
    }
    if let Some(v) = vlan {
        if let Some(other) = db
            .query_row("SELECT label FROM networks WHERE vlan = ?", [v], |r| {
                r.get::<_, String>(0)
            })
            .optional()?
        {
            return Err(ManagerError::Refused(format!(
                "--vlan: VLAN {v} is used by network {other:?}"
            )));
        }
    }
    if let Some(v6) = cidr_v6 {
        for n in all(db)? {
            if n.cidr_v6.is_some_and(|o| o.overlaps(v6)) {
                return Err(ManagerError::Refused(format!(
                    "--fixed-range-v6: {v6} conflicts with network {:?}",
                    n.label
                )));
            }
        }
    }
    Ok(())
}

/// The bridge of a network being made, and what it asks of it.
struct NewBridge<'a> {
    bridge: &'a str,
    gateway: Ipv4Addr,
    vlan: Option<u16>,
    interface: Option<&'a str>,
}

/// What the daemon's table requires of bridges, checked here so that a network the manager
/// accepts never makes the daemon refuse its whole table:
/// - names are interface names;
/// - a bridge reaches the wire one way: the networks sharing it have the same uplink as the
///   control module would plumb it (a VLAN counts only with `[manager] vlan_interface`);
/// - no uplink is another network's bridge or another bridge's uplink;
/// - with the control module (`[control]` in the config), a bridge has one gateway, so the
///   networks sharing one must share it.
fn check_bridge(c: &Change<'_>, settings: &super::Settings, new: &NewBridge<'_>) -> Result<()> {
    let bridge = new.bridge;
    crate::table::control::interface_name(bridge)
        .map_err(|m| ManagerError::Invalid(format!("--bridge: {m}")))?;
    if let Some(i) = new.interface {
        crate::table::control::interface_name(i)
            .map_err(|m| ManagerError::Invalid(format!("--bridge-interface: {m}")))?;
    }
    if let Some(own) = settings
        .config_networks
        .iter()
        .find(|n| n.bridge == bridge || Some(n.bridge.as_str()) == new.interface)
    {
        return Err(ManagerError::Refused(format!(
            "--bridge: {} is the bridge of the config's network {:?}; give this one another",
            own.bridge, own.name
        )));
    }
    let mine = settings.uplink(new.vlan, new.interface);
    let show = |u: &super::UplinkKeys| match u {
        (Some(v), Some(i), _) => format!("VLAN {v} on {i}"),
        (_, _, Some(i)) => format!("interface {i}"),
        _ => "no uplink".to_string(),
    };
    let port = |u: &super::UplinkKeys| match u {
        (Some(v), Some(_), _) => Some(format!("vlan{v}")),
        (_, _, Some(i)) => Some(i.clone()),
        _ => None,
    };
    for n in all(c.db())? {
        let theirs = settings.uplink(n.vlan, n.bridge_interface.as_deref());
        if n.bridge == bridge {
            if theirs != mine {
                return Err(ManagerError::Refused(format!(
                    "--bridge: {bridge} carries network {:?} ({}); this one would need {} (give it another --bridge)",
                    n.label,
                    show(&theirs),
                    show(&mine)
                )));
            }
            if settings.control && n.gateway != new.gateway {
                return Err(ManagerError::Refused(format!(
                    "--bridge: {bridge} carries network {:?} with gateway {}; with the control module a bridge has one gateway (give this one another --bridge)",
                    n.label, n.gateway
                )));
            }
            continue;
        }
        let (mine_port, their_port) = (port(&mine), port(&theirs));
        if mine_port.is_some() && mine_port == their_port {
            return Err(ManagerError::Refused(format!(
                "{} is already the uplink of bridge {} (network {:?})",
                mine_port.unwrap_or_default(),
                n.bridge,
                n.label
            )));
        }
        if mine_port.as_deref() == Some(n.bridge.as_str()) || their_port.as_deref() == Some(bridge)
        {
            return Err(ManagerError::Refused(format!(
                "--bridge-interface: a bridge cannot be another bridge's uplink (network {:?} on {})",
                n.label, n.bridge
            )));
        }
    }
    Ok(())
}

/// The bridge of a network made without `--bridge` or a VLAN: with `[manager] flat_interface`
/// (and no interface of its own) the bridge that already carries it (nova's
/// flat_network_bridge: the flat networks share one bridge); else the first `br<N>` from 100
/// that no network, of the database or the config, has.
fn default_bridge(
    db: &Transaction<'_>,
    settings: &super::Settings,
    interface: Option<&str>,
) -> Result<String> {
    let networks = all(db)?;
    if let (Some(flat), None) = (&settings.flat_interface, interface) {
        let carrier = networks.iter().find(|n| {
            settings
                .uplink(n.vlan, n.bridge_interface.as_deref())
                .2
                .as_deref()
                == Some(flat)
        });
        if let Some(n) = carrier {
            return Ok(n.bridge.clone());
        }
    }
    let used: std::collections::HashSet<&str> = networks
        .iter()
        .map(|n| n.bridge.as_str())
        .chain(settings.config_networks.iter().map(|n| n.bridge.as_str()))
        .collect();
    (100..10_000)
        .map(|n| format!("br{n}"))
        .find(|b| !used.contains(b.as_str()))
        .ok_or_else(|| ManagerError::Refused("no free br<N> name; give --bridge".into()))
}

/// Stores a network and one row per address of its range.
fn insert(c: &Change<'_>, n: &NetworkRow, rows: &[(Ipv4Addr, bool)]) -> Result<i64> {
    let db = c.db();
    db.execute(
        "INSERT INTO networks (uuid, label, cidr, first, last, gateway, broadcast, dhcp_server, \
         dhcp_start, cidr_v6, gateway_v6, bridge, bridge_interface, vlan, vpn_public_port, \
         vpn_private_address, dns1, dns2, mtu, enable_dhcp, share_address, multi_host, project_id, \
         created) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
        params![
            n.uuid,
            n.label,
            n.cidr.to_string(),
            to_db(n.cidr.network()),
            to_db(n.cidr.broadcast()),
            to_db(n.gateway),
            to_db(n.broadcast),
            to_db(n.dhcp_server),
            to_db(n.dhcp_start),
            n.cidr_v6.map(|p| p.to_string()),
            n.gateway_v6.map(|g| g.to_string()),
            n.bridge,
            n.bridge_interface,
            n.vlan,
            n.vpn_public_port,
            n.vpn_private_address.map(to_db),
            n.dns1.map(to_db),
            n.dns2.map(to_db),
            n.mtu,
            n.enable_dhcp,
            n.share_address,
            n.multi_host,
            n.project_id,
            c.seq,
        ],
    )?;
    let id = db.last_insert_rowid();
    let mut st = db.prepare_cached(
        "INSERT INTO fixed_ips (address, network_id, reserved, updated) VALUES (?, ?, ?, 0)",
    )?;
    for (a, reserved) in rows {
        st.execute(params![to_db(*a), id, reserved])?;
    }
    Ok(id)
}

fn free_vlan(db: &Transaction<'_>, start: u16) -> Result<u16> {
    let mut st = db.prepare_cached("SELECT vlan FROM networks WHERE vlan >= ? ORDER BY vlan")?;
    let used = st
        .query_map([start], |r| r.get::<_, u16>(0))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let mut next = start;
    for v in used {
        if v == next {
            next += 1;
        } else if v > next {
            break;
        }
    }
    rules::vlan_id(u32::from(next), 0).map_err(ManagerError::Refused)
}

fn free_vpn_port(db: &Transaction<'_>, start: u16) -> Result<u16> {
    let max: Option<u16> = db.query_row(
        "SELECT max(vpn_public_port) FROM networks WHERE vpn_public_port >= ?",
        [start],
        |r| r.get(0),
    )?;
    match max {
        None => Ok(start),
        Some(m) => m
            .checked_add(1)
            .ok_or_else(|| ManagerError::Refused("no VPN port left under 65536".into())),
    }
}

/// The `i`th /64 of a range.
fn nth_64(range: Ipv6Network, i: u32) -> Result<Ipv6Network> {
    let count = 1u128 << (64 - range.prefix());
    if u128::from(i) >= count {
        return Err(ManagerError::Invalid(format!(
            "--fixed-range-v6: {range} has no /64 number {}",
            i + 1
        )));
    }
    let base = u128::from(range.network()) + (u128::from(i) << 64);
    Ipv6Network::new(Ipv6Addr::from(base), 64).map_err(|e| ManagerError::Invalid(e.to_string()))
}

/// The first /64 of `[manager] fixed_range_v6` that no network has.
fn free_64(db: &Transaction<'_>, range: Ipv6Network) -> Result<Ipv6Network> {
    let taken: Vec<Ipv6Network> = all(db)?.into_iter().filter_map(|n| n.cidr_v6).collect();
    let count = (1u64 << (64 - range.prefix()).min(20)) as u32;
    for i in 0..count {
        let p = nth_64(range, i)?;
        if !taken.iter().any(|t| t.overlaps(p)) {
            return Ok(p);
        }
    }
    Err(ManagerError::Refused(format!(
        "[manager] fixed_range_v6: no /64 of {range} is free"
    )))
}
