//! Servers (instances): what nova-compute asked nova-network for at boot and delete. A create
//! makes the instance, one virtual interface (a unique `fa:16:3e` MAC) and one fixed IP on each
//! of its networks (multinic), and a floating IP with `auto_assign_floating_ip`; a delete gives
//! everything back.

use std::net::Ipv4Addr;

use rusqlite::{params, OptionalExtension, Transaction};
use serde::Serialize;

use super::{found, from_db, rules, Change, Manager, ManagerError, Result};
use crate::table::config::ManagerKind;

/// One interface of a server.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Nic {
    /// Its network's label.
    pub network: String,
    /// Its fixed IP.
    pub address: Ipv4Addr,
    /// Its MAC.
    pub mac: String,
    /// nova's virtual interface id (the `NW-<id>` tag of the hosts file).
    pub vif_id: i64,
    /// The host-side device the hypervisor plugs it into (`tap` and the MAC's digits): the
    /// firewall filters what comes in from it.
    pub port: String,
}

/// A server as `server list` shows it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ServerRow {
    /// nova's integer id.
    pub id: i64,
    /// Its UUID.
    pub uuid: String,
    /// Its display name.
    pub name: String,
    /// Its hostname.
    pub hostname: String,
    /// Its project.
    pub project_id: String,
    /// Its interfaces, the first first.
    pub addresses: Vec<Nic>,
    /// Its floating IPs.
    pub floating_ips: Vec<Ipv4Addr>,
    /// Its security groups.
    pub security_groups: Vec<String>,
}

impl ServerRow {
    /// The seed's Networks column: `network2=198.18.2.3; private=198.18.1.14`.
    pub fn networks_column(&self) -> String {
        let mut parts: Vec<String> = Vec::new();
        for n in &self.addresses {
            let mut s = format!("{}={}", n.network, n.address);
            if n.vif_id == self.addresses.first().map_or(-1, |f| f.vif_id) {
                for f in &self.floating_ips {
                    s.push_str(&format!(", {f}"));
                }
            }
            parts.push(s);
        }
        parts.join("; ")
    }
}

/// What a delete gave back.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Deleted {
    /// The server.
    pub server: ServerRow,
    /// Floating IPs returned to their pool (auto-assigned ones).
    pub released_floating: Vec<Ipv4Addr>,
}

/// `server create`'s request.
#[derive(Debug, Clone, Default)]
pub struct ServerCreate {
    /// Display name (with `count` > 1: `NAME-1`, `NAME-2`...).
    pub name: String,
    /// Its project.
    pub project: String,
    /// The networks (default: the project's).
    pub networks: Vec<String>,
    /// How many servers (nova's `--min-count`), made in one transaction.
    pub count: u32,
    /// Its security groups (default: the project's `default`).
    pub security_groups: Vec<String>,
    /// The host it runs on (etcd backend: its ports go under this host's keys; default this
    /// node's `[etcd] host`).
    pub host: Option<String>,
}

impl ServerCreate {
    /// The servers' names: `NAME`, or `NAME-1`, `NAME-2`... with a count over 1.
    pub fn names(&self) -> Vec<String> {
        match self.count.max(1) {
            1 => vec![self.name.clone()],
            n => (1..=n).map(|i| format!("{}-{i}", self.name)).collect(),
        }
    }
}

/// Most servers one `server create --count` makes (one transaction holds the write lock).
pub const MAX_COUNT: u32 = 100_000;

/// The server a command names: by name or UUID.
pub fn find(db: &Transaction<'_>, key: &str) -> Result<ServerRow> {
    let id: i64 = found(
        db.query_row(
            "SELECT id FROM instances WHERE name = ?1 OR uuid = ?1",
            [key],
            |r| r.get(0),
        ),
        "server",
        key,
    )?;
    let mut rows = load(db, Some(id))?;
    rows.pop().ok_or_else(|| ManagerError::NotFound {
        what: "server",
        name: key.to_string(),
    })
}

/// A server's interfaces (with a `WHERE`).
pub(super) const NICS: &str = "SELECT f.instance_id, n.label, f.address, v.mac, v.id \
     FROM fixed_ips f JOIN vifs v ON v.id = f.vif_id JOIN networks n ON n.id = f.network_id";
/// A server's floating IPs (with a `WHERE`).
pub(super) const FIPS: &str = "SELECT x.instance_id, f.address FROM floating_ips f \
     JOIN fixed_ips x ON x.address = f.fixed_address";

/// A server's security groups (with a `WHERE`).
pub(super) const GROUPS: &str = "SELECT s.instance_id, g.name FROM instance_security_groups s \
     JOIN security_groups g ON g.id = s.group_id";

/// Servers with their interfaces and floating IPs: one by id, or all. (Two statements each,
/// not `?1 IS NULL OR id = ?1`: that form keeps SQLite from using the index, and a create
/// that reads its server back would scan every fixed IP.)
fn load(db: &Transaction<'_>, only: Option<i64>) -> Result<Vec<ServerRow>> {
    let by = |all: &str, one: &str| {
        if only.is_some() {
            one.to_string()
        } else {
            all.to_string()
        }
    };
    let params: Vec<i64> = only.into_iter().collect();
    let params = rusqlite::params_from_iter(params.iter());
    let mut servers: Vec<ServerRow> = db
        .prepare_cached(&by(
            "SELECT id, uuid, name, hostname, project_id FROM instances ORDER BY id",
            "SELECT id, uuid, name, hostname, project_id FROM instances WHERE id = ?1",
        ))?
        .query_map(params.clone(), |r| {
            Ok(ServerRow {
                id: r.get(0)?,
                uuid: r.get(1)?,
                name: r.get(2)?,
                hostname: r.get(3)?,
                project_id: r.get(4)?,
                addresses: Vec::new(),
                floating_ips: Vec::new(),
                security_groups: Vec::new(),
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let index: std::collections::HashMap<i64, usize> =
        servers.iter().enumerate().map(|(i, s)| (s.id, i)).collect();
    let mut st = db.prepare_cached(&by(
        &format!("{NICS} WHERE f.instance_id IS NOT NULL ORDER BY f.instance_id, v.position"),
        &format!("{NICS} WHERE f.instance_id = ?1 ORDER BY v.position"),
    ))?;
    let nics = st.query_map(params.clone(), |r| {
        Ok((
            r.get::<_, i64>(0)?,
            Nic {
                network: r.get(1)?,
                address: from_db(r.get(2)?),
                port: rules::port_device(&r.get::<_, String>(3)?),
                mac: r.get(3)?,
                vif_id: r.get(4)?,
            },
        ))
    })?;
    for nic in nics {
        let (id, nic) = nic?;
        if let Some(s) = index.get(&id).and_then(|&i| servers.get_mut(i)) {
            s.addresses.push(nic);
        }
    }
    let mut st = db.prepare_cached(&by(
        &format!("{FIPS} ORDER BY f.address"),
        &format!("{FIPS} WHERE x.instance_id = ?1 ORDER BY f.address"),
    ))?;
    let fips = st.query_map(params.clone(), |r| {
        Ok((r.get::<_, i64>(0)?, from_db(r.get(1)?)))
    })?;
    for f in fips {
        let (id, a) = f?;
        if let Some(s) = index.get(&id).and_then(|&i| servers.get_mut(i)) {
            s.floating_ips.push(a);
        }
    }
    let mut st = db.prepare_cached(&by(
        &format!("{GROUPS} ORDER BY s.instance_id, g.name"),
        &format!("{GROUPS} WHERE s.instance_id = ?1 ORDER BY g.name"),
    ))?;
    let groups = st.query_map(params, |r| {
        Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
    })?;
    for g in groups {
        let (id, name) = g?;
        if let Some(s) = index.get(&id).and_then(|&i| servers.get_mut(i)) {
            s.security_groups.push(name);
        }
    }
    Ok(servers)
}

impl Manager {
    /// `server create`: one transaction for all `count` servers; refused as a whole (nothing
    /// made) when a name is taken, a network is full or another project's, or the floating
    /// pool is empty with `auto_assign_floating_ip`.
    pub fn server_create(&mut self, req: &ServerCreate) -> Result<Vec<ServerRow>> {
        if req.name.trim().is_empty() || req.name.len() > 255 {
            return Err(ManagerError::Invalid(format!(
                "server name {:?}: empty or too long",
                req.name
            )));
        }
        if req.project.trim().is_empty() {
            return Err(ManagerError::Invalid("--project is required".into()));
        }
        if let Some(h) = &req.host {
            return Err(ManagerError::Invalid(format!(
                "--host {h}: only with [manager] backend = \"etcd\" (this node serves every server)"
            )));
        }
        if req.count > MAX_COUNT {
            return Err(ManagerError::Invalid(format!(
                "--count: {} is over {MAX_COUNT} servers in one command",
                req.count
            )));
        }
        let settings = self.settings.clone();
        self.change(|c| {
            c.served();
            let networks = networks_for(c, &settings.kind, &req.project, &req.networks)?;
            let mut made = Vec::new();
            for name in req.names() {
                let id = create_one(c, &settings, &name, &req.project, &networks)?;
                super::secgroup::join(c, id, &req.project, &req.security_groups)?;
                made.push(id);
            }
            let mut rows = Vec::with_capacity(made.len());
            for id in made {
                rows.extend(load(c.db(), Some(id))?);
            }
            Ok(rows)
        })
    }

    /// `server delete NAME`: its fixed IPs are freed (and their leases ended, with
    /// `force_dhcp_release`), its floating IPs disassociated (auto-assigned ones deallocated).
    pub fn server_delete(&mut self, key: &str) -> Result<Deleted> {
        let force = self.settings.force_dhcp_release;
        self.change(|c| {
            let server = find(c.db(), key)?;
            let db = c.db();
            let released: Vec<Ipv4Addr> = db
                .prepare(
                    "UPDATE floating_ips SET project_id = NULL, fixed_address = NULL, auto_assigned = 0 \
                     WHERE auto_assigned = 1 AND fixed_address IN \
                     (SELECT address FROM fixed_ips WHERE instance_id = ?) RETURNING address",
                )?
                .query_map([server.id], |r| Ok(from_db(r.get(0)?)))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            db.execute(
                "UPDATE floating_ips SET fixed_address = NULL WHERE fixed_address IN \
                 (SELECT address FROM fixed_ips WHERE instance_id = ?)",
                [server.id],
            )?;
            // Without force_dhcp_release the address stays leased until its lease ends (the
            // DHCP service's `del` clears it), so it is not handed to another server meanwhile.
            db.execute(
                "UPDATE fixed_ips SET allocated = 0, instance_id = NULL, vif_id = NULL, updated = ?, \
                 leased = CASE WHEN ? THEN 0 ELSE leased END WHERE instance_id = ?",
                params![c.seq, force, server.id],
            )?;
            db.execute("DELETE FROM vifs WHERE instance_id = ?", [server.id])?;
            db.execute("DELETE FROM instances WHERE id = ?", [server.id])?;
            c.served();
            Ok(Deleted {
                server,
                released_floating: released,
            })
        })
    }

    /// `server list`.
    pub fn server_list(&mut self) -> Result<Vec<ServerRow>> {
        self.read(|tx| load(tx, None))
    }

    /// `server show NAME`.
    pub fn server_show(&mut self, key: &str) -> Result<ServerRow> {
        self.read(|tx| find(tx, key))
    }
}

/// The networks a new server of the project gets, in order: the named ones, else the
/// project's (VLAN: a free network is associated with a project that has none, as nova did),
/// else (flat kinds) every network no other project holds.
fn networks_for(
    c: &Change<'_>,
    kind: &ManagerKind,
    project: &str,
    named: &[String],
) -> Result<Vec<(i64, String)>> {
    let db = c.db();
    if !named.is_empty() {
        let mut out: Vec<(i64, String)> = Vec::new();
        for key in named {
            let n = super::network::find(db, key)?;
            if let Some(p) = n.project_id.as_deref().filter(|p| *p != project) {
                return Err(ManagerError::Refused(format!(
                    "network {:?} belongs to project {p}",
                    n.label
                )));
            }
            if out.iter().any(|(id, _)| *id == n.id) {
                return Err(ManagerError::Invalid(format!(
                    "--network {key}: named twice (one interface per network)"
                )));
            }
            out.push((n.id, n.label));
        }
        return Ok(out);
    }
    let query = |sql: &str| -> Result<Vec<(i64, String)>> {
        let mut st = db.prepare_cached(sql)?;
        let rows = st
            .query_map([project], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    };
    let own = query("SELECT id, label FROM networks WHERE project_id = ? ORDER BY id")?;
    let out = match kind {
        ManagerKind::Vlan if own.is_empty() => {
            let free: Option<(i64, String)> = db
                .query_row(
                    "SELECT id, label FROM networks WHERE project_id IS NULL ORDER BY id LIMIT 1",
                    [],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?;
            let Some((id, label)) = free else {
                return Err(ManagerError::Refused(format!(
                    "project {project} has no network and none is free to associate (VLAN manager)"
                )));
            };
            db.execute(
                "UPDATE networks SET project_id = ? WHERE id = ?",
                params![project, id],
            )?;
            vec![(id, label)]
        }
        ManagerKind::Vlan => own,
        ManagerKind::Flat | ManagerKind::Flatdhcp => query(
            "SELECT id, label FROM networks WHERE project_id IS NULL OR project_id = ? ORDER BY id",
        )?,
    };
    if out.is_empty() {
        return Err(ManagerError::Refused(format!(
            "no network for project {project}; create one (netnode network-create)"
        )));
    }
    Ok(out)
}

/// Makes one server, its interfaces and addresses; returns its id.
fn create_one(
    c: &mut Change<'_>,
    settings: &super::Settings,
    name: &str,
    project: &str,
    networks: &[(i64, String)],
) -> Result<i64> {
    let db = c.db();
    if db
        .prepare_cached("SELECT 1 FROM instances WHERE name = ?")?
        .query_row([name], |_| Ok(()))
        .optional()?
        .is_some()
    {
        return Err(ManagerError::Refused(format!(
            "a server named {name:?} exists"
        )));
    }
    db.prepare_cached(
        "INSERT INTO instances (uuid, name, hostname, project_id, created) VALUES (?, ?, ?, ?, ?)",
    )?
    .execute(params![
        super::uuid4(),
        name,
        crate::table::instance::sanitize_hostname(name),
        project,
        c.seq
    ])?;
    let id = db.last_insert_rowid();
    let mut first = None;
    for (position, (network_id, label)) in networks.iter().enumerate() {
        let vif = insert_vif(c, id, *network_id, position)?;
        let address = super::fixed::allocate(c, *network_id, label, id, vif)?;
        first.get_or_insert(address);
    }
    if settings.auto_assign_floating_ip && settings.kind != ManagerKind::Flat {
        let Some(fixed) = first else {
            return Ok(id);
        };
        let floating = super::floating::allocate(c, &settings.default_floating_pool, project, true)
            .map_err(|e| match e {
                ManagerError::Refused(m) => ManagerError::Refused(format!(
                    "{m} (auto_assign_floating_ip); server {name:?} not created"
                )),
                other => other,
            })?;
        super::floating::associate(c, floating, fixed)?;
    }
    Ok(id)
}

/// A virtual interface with a fresh unique MAC.
fn insert_vif(c: &Change<'_>, instance: i64, network: i64, position: usize) -> Result<i64> {
    let db = c.db();
    let mut st = db.prepare_cached(
        "INSERT OR IGNORE INTO vifs (mac, instance_id, network_id, position) VALUES (?, ?, ?, ?)",
    )?;
    // 2^24 MACs: a collision is rare until the table is large; each retry is a fresh draw.
    for _ in 0..64 {
        let mac = rules::mac(rand::random()).to_string();
        if st.execute(params![mac, instance, network, position as i64])? == 1 {
            return Ok(db.last_insert_rowid());
        }
    }
    Err(ManagerError::Refused(
        "no unused fa:16:3e MAC found in 64 draws; the MAC space is nearly full".into(),
    ))
}
