//! Security groups: OpenStack's commands (`secgroup create`, `secgroup rule create --protocol
//! tcp --dst-port 22:22 default`...) over three tables (migration 3). Every project has a
//! `default` group, made with its first server or its first rule; a new group allows all
//! egress (two rules, as OpenStack makes them) and no ingress. Rules are checked by the same
//! parser the config file's `[[security_group.rule]]` uses, so both refuse alike.

use ipnetwork::IpNetwork;
use rusqlite::{params, OptionalExtension, Transaction};
use serde::Serialize;

use super::{Change, Manager, ManagerError, Result};
use crate::table::firewall::{Direction, Ethertype, RemoteSpec, RuleConfig, RuleSpec};

/// The group every project has.
pub const DEFAULT_GROUP: &str = "default";

/// A group as `secgroup list` shows it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct GroupRow {
    /// Its id.
    pub id: i64,
    /// Its project.
    pub project_id: String,
    /// Its name.
    pub name: String,
    /// Its description.
    pub description: String,
    /// How many rules it has.
    pub rules: i64,
    /// How many servers are in it.
    pub servers: i64,
}

/// A rule as `secgroup rule list` shows it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct RuleRow {
    /// Its id (what `rule delete` takes).
    pub id: i64,
    /// Its group.
    pub group: String,
    /// Its group's project.
    pub project_id: String,
    /// The rule.
    #[serde(flatten)]
    pub spec: RuleSpec,
}

/// `secgroup rule create`'s request: the rule as text, its group and project.
#[derive(Debug, Clone, Default)]
pub struct RuleCreate {
    /// The group's name.
    pub group: String,
    /// Its project (none: the one project with a group of that name).
    pub project: Option<String>,
    /// The rule.
    pub rule: RuleConfig,
}

fn direction_text(d: Direction) -> &'static str {
    match d {
        Direction::Ingress => "ingress",
        Direction::Egress => "egress",
    }
}

fn ethertype_text(e: Ethertype) -> &'static str {
    match e {
        Ethertype::IPv4 => "IPv4",
        Ethertype::IPv6 => "IPv6",
    }
}

/// The rules of every group (or of one, by id), with the remote group's name.
pub(super) const RULES_SQL: &str = "SELECT r.id, g.name, g.project_id, r.direction, r.ethertype, \
     r.protocol, r.port_min, r.port_max, r.remote_ip, rg.name, r.group_id \
     FROM security_group_rules r JOIN security_groups g ON g.id = r.group_id \
     LEFT JOIN security_groups rg ON rg.id = r.remote_group_id";

/// Reads the rows of [`RULES_SQL`] (with the group id last).
pub(super) fn rules(
    db: &Transaction<'_>,
    filter: &str,
    args: &[&dyn rusqlite::ToSql],
) -> Result<Vec<(RuleRow, i64)>> {
    let mut st = db.prepare_cached(&format!("{RULES_SQL} {filter} ORDER BY r.group_id, r.id"))?;
    let rows = st
        .query_map(args, |r| {
            let text = |i: usize| r.get::<_, Option<String>>(i);
            let config = RuleConfig {
                direction: text(3)?,
                ethertype: text(4)?,
                protocol: r.get::<_, Option<i64>>(5)?.map(|p| p.to_string()),
                dst_port: match (r.get::<_, Option<i64>>(6)?, r.get::<_, Option<i64>>(7)?) {
                    (Some(lo), Some(hi)) => Some(format!("{lo}:{hi}")),
                    _ => None,
                },
                remote_ip: text(8)?,
                remote_group: text(9)?,
            };
            Ok((
                r.get::<_, i64>(0)?,
                text(1)?,
                text(2)?,
                config,
                r.get::<_, i64>(10)?,
            ))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    rows.into_iter()
        .map(|(id, group, project, config, group_id)| {
            // Stored by this module, so it parses; a database edited by hand says which row.
            let (spec, _) = config
                .parse()
                .map_err(|e| ManagerError::Invalid(format!("security group rule {id}: {e}")))?;
            Ok((
                RuleRow {
                    id,
                    group: group.unwrap_or_default(),
                    project_id: project.unwrap_or_default(),
                    spec,
                },
                group_id,
            ))
        })
        .collect()
}

/// The group `name` of `project`, made (with OpenStack's two egress rules) if it is the
/// project's default group and does not exist yet.
pub(super) fn group_id(c: &Change<'_>, project: &str, name: &str) -> Result<i64> {
    let db = c.db();
    let id: Option<i64> = db
        .prepare_cached("SELECT id FROM security_groups WHERE project_id = ? AND name = ?")?
        .query_row([project, name], |r| r.get(0))
        .optional()?;
    match id {
        Some(id) => Ok(id),
        None if name == DEFAULT_GROUP => insert_group(c, project, name, "default group"),
        None => Err(ManagerError::NotFound {
            what: "security group",
            name: format!("{name} (project {project})"),
        }),
    }
}

fn insert_group(c: &Change<'_>, project: &str, name: &str, description: &str) -> Result<i64> {
    let db = c.db();
    db.prepare_cached(
        "INSERT INTO security_groups (project_id, name, description) VALUES (?, ?, ?)",
    )?
    .execute(params![project, name, description])?;
    let id = db.last_insert_rowid();
    for spec in RuleSpec::default_egress() {
        insert_rule(db, id, &spec, None)?;
    }
    Ok(id)
}

fn insert_rule(
    db: &Transaction<'_>,
    group: i64,
    spec: &RuleSpec,
    remote_group: Option<i64>,
) -> Result<i64> {
    let (port_min, port_max) = match spec.ports {
        Some((lo, hi)) => (Some(i64::from(lo)), Some(i64::from(hi))),
        None => (None, None),
    };
    let remote_ip = match &spec.remote {
        RemoteSpec::Cidr(n) => Some(n.to_string()),
        _ => None,
    };
    db.prepare_cached(
        "INSERT INTO security_group_rules (group_id, direction, ethertype, protocol, port_min, \
         port_max, remote_ip, remote_group_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
    )?
    .execute(params![
        group,
        direction_text(spec.direction),
        ethertype_text(spec.ethertype),
        spec.protocol.map(i64::from),
        port_min,
        port_max,
        remote_ip,
        remote_group
    ])?;
    Ok(db.last_insert_rowid())
}

/// The project of a group named without `--project`: the only one that has a group of that name.
fn project_of(db: &Transaction<'_>, name: &str, project: Option<&str>) -> Result<String> {
    if let Some(p) = project {
        return Ok(p.to_string());
    }
    let projects: Vec<String> = db
        .prepare_cached(
            "SELECT project_id FROM security_groups WHERE name = ? ORDER BY project_id",
        )?
        .query_map([name], |r| r.get(0))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    match projects.as_slice() {
        [one] => Ok(one.clone()),
        [] => Err(ManagerError::NotFound {
            what: "security group",
            name: if name == DEFAULT_GROUP {
                format!("{name} (a project's default group is made with its first server; or give --project)")
            } else {
                name.to_string()
            },
        }),
        many => Err(ManagerError::Invalid(format!(
            "security group {name:?} exists in projects {}: give --project",
            many.join(", ")
        ))),
    }
}

impl Manager {
    /// `secgroup create NAME --project P`.
    pub fn secgroup_create(
        &mut self,
        name: &str,
        project: &str,
        description: &str,
    ) -> Result<GroupRow> {
        if name.trim().is_empty() || name.len() > 255 {
            return Err(ManagerError::Invalid(format!(
                "group name {name:?}: empty or too long"
            )));
        }
        if project.trim().is_empty() {
            return Err(ManagerError::Invalid("--project is required".into()));
        }
        self.change(|c| {
            let exists: Option<i64> = c
                .db()
                .query_row(
                    "SELECT id FROM security_groups WHERE project_id = ? AND name = ?",
                    [project, name],
                    |r| r.get(0),
                )
                .optional()?;
            if exists.is_some() {
                return Err(ManagerError::Refused(format!(
                    "project {project} already has a security group {name:?}"
                )));
            }
            let id = insert_group(c, project, name, description)?;
            c.served();
            list(c.db(), Some(id)).and_then(|mut v| {
                v.pop()
                    .ok_or_else(|| ManagerError::Invalid("group vanished".into()))
            })
        })
    }

    /// `secgroup delete NAME`: refused for a default group, a group with servers, or one
    /// another group's rule names.
    pub fn secgroup_delete(&mut self, name: &str, project: Option<&str>) -> Result<GroupRow> {
        self.change(|c| {
            let project = project_of(c.db(), name, project)?;
            if name == DEFAULT_GROUP {
                return Err(ManagerError::Refused(format!(
                    "the default group of project {project} cannot be deleted"
                )));
            }
            let id = group_id(c, &project, name)?;
            let row = list(c.db(), Some(id))?
                .pop()
                .ok_or_else(|| ManagerError::Invalid("group vanished".into()))?;
            if row.servers > 0 {
                return Err(ManagerError::Refused(format!(
                    "security group {name:?} has {} server(s)",
                    row.servers
                )));
            }
            let users: Vec<String> = c
                .db()
                .prepare(
                    "SELECT DISTINCT g.name FROM security_group_rules r JOIN security_groups g \
                     ON g.id = r.group_id WHERE r.remote_group_id = ? AND r.group_id != ?",
                )?
                .query_map([id, id], |r| r.get(0))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            if !users.is_empty() {
                return Err(ManagerError::Refused(format!(
                    "security group {name:?} is the remote group of rules in {}",
                    users.join(", ")
                )));
            }
            c.db()
                .execute("DELETE FROM security_group_rules WHERE group_id = ?", [id])?;
            c.db()
                .execute("DELETE FROM security_groups WHERE id = ?", [id])?;
            c.served();
            Ok(row)
        })
    }

    /// `secgroup list`.
    pub fn secgroup_list(&mut self, project: Option<&str>) -> Result<Vec<GroupRow>> {
        self.read(|tx| {
            let all = list(tx, None)?;
            Ok(all
                .into_iter()
                .filter(|g| project.is_none_or(|p| g.project_id == p))
                .collect())
        })
    }

    /// `secgroup rule create`: checked, refused when the same rule exists; a CIDR with host
    /// bits set is normalized and the second value says so.
    pub fn rule_create(&mut self, req: &RuleCreate) -> Result<(RuleRow, Option<String>)> {
        let (spec, warning) = req
            .rule
            .parse()
            .map_err(|e| ManagerError::Invalid(format!("rule for group {:?}: {e}", req.group)))?;
        self.change(|c| {
            let project = match &req.project {
                Some(p) => p.clone(),
                None => project_of(c.db(), &req.group, None)?,
            };
            let group = group_id(c, &project, &req.group)?;
            let remote_group = match &spec.remote {
                RemoteSpec::Group(g) => Some(group_id(c, &project, g).map_err(|_| {
                    ManagerError::Invalid(format!(
                        "rule for group {:?}: remote-group {g:?}: no such group in project {project}",
                        req.group
                    ))
                })?),
                _ => None,
            };
            let existing = rules(c.db(), "WHERE r.group_id = ?", &[&group])?;
            if let Some((same, _)) = existing.iter().find(|(r, _)| r.spec == spec) {
                return Err(ManagerError::Refused(format!(
                    "group {:?} already has this rule (id {}): {}",
                    req.group,
                    same.id,
                    spec.describe()
                )));
            }
            let id = insert_rule(c.db(), group, &spec, remote_group)?;
            c.served();
            let row = rules(c.db(), "WHERE r.id = ?", &[&id])?
                .pop()
                .map(|(r, _)| r)
                .ok_or_else(|| ManagerError::Invalid("rule vanished".into()))?;
            Ok((row, warning.clone()))
        })
    }

    /// `secgroup rule delete ID`.
    pub fn rule_delete(&mut self, id: i64) -> Result<RuleRow> {
        self.change(|c| {
            let row = rules(c.db(), "WHERE r.id = ?", &[&id])?
                .pop()
                .map(|(r, _)| r)
                .ok_or_else(|| ManagerError::NotFound {
                    what: "security group rule",
                    name: id.to_string(),
                })?;
            c.db()
                .execute("DELETE FROM security_group_rules WHERE id = ?", [id])?;
            c.served();
            Ok(row)
        })
    }

    /// `secgroup rule list [GROUP]`.
    pub fn rule_list(
        &mut self,
        group: Option<&str>,
        project: Option<&str>,
    ) -> Result<Vec<RuleRow>> {
        self.read(|tx| {
            let all = rules(tx, "", &[])?;
            Ok(all
                .into_iter()
                .map(|(r, _)| r)
                .filter(|r| group.is_none_or(|g| r.group == g))
                .filter(|r| project.is_none_or(|p| r.project_id == p))
                .collect())
        })
    }
}

/// Groups with their counts (one, or all).
fn list(db: &Transaction<'_>, only: Option<i64>) -> Result<Vec<GroupRow>> {
    let sql = "SELECT g.id, g.project_id, g.name, g.description, \
         (SELECT COUNT(*) FROM security_group_rules r WHERE r.group_id = g.id), \
         (SELECT COUNT(*) FROM instance_security_groups s WHERE s.group_id = g.id) \
         FROM security_groups g";
    let map = |r: &rusqlite::Row<'_>| {
        Ok(GroupRow {
            id: r.get(0)?,
            project_id: r.get(1)?,
            name: r.get(2)?,
            description: r.get(3)?,
            rules: r.get(4)?,
            servers: r.get(5)?,
        })
    };
    let rows = match only {
        Some(id) => db
            .prepare_cached(&format!("{sql} WHERE g.id = ?"))?
            .query_map([id], map)?
            .collect::<rusqlite::Result<Vec<_>>>()?,
        None => db
            .prepare_cached(&format!("{sql} ORDER BY g.project_id, g.name"))?
            .query_map([], map)?
            .collect::<rusqlite::Result<Vec<_>>>()?,
    };
    Ok(rows)
}

/// Puts a new server in its groups (default: the project's default group).
pub(super) fn join(c: &Change<'_>, instance: i64, project: &str, groups: &[String]) -> Result<()> {
    let default = [DEFAULT_GROUP.to_string()];
    let groups = if groups.is_empty() {
        &default[..]
    } else {
        groups
    };
    for g in groups {
        let id = group_id(c, project, g)?;
        c.db()
            .prepare_cached("INSERT OR IGNORE INTO instance_security_groups (instance_id, group_id) VALUES (?, ?)")?
            .execute([instance, id])?;
    }
    Ok(())
}

/// The group names of every server, by instance id, in name order.
pub(super) fn memberships(db: &Transaction<'_>) -> Result<Vec<(i64, String)>> {
    Ok(db
        .prepare_cached(
            "SELECT s.instance_id, g.name FROM instance_security_groups s \
             JOIN security_groups g ON g.id = s.group_id ORDER BY s.instance_id, g.name",
        )?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<Vec<_>>>()?)
}

/// Every group with its rules, as config sections.
pub(super) fn configs(
    db: &Transaction<'_>,
) -> Result<Vec<crate::table::firewall::SecurityGroupConfig>> {
    let groups = list(db, None)?;
    let mut out: Vec<crate::table::firewall::SecurityGroupConfig> = groups
        .iter()
        .map(|g| crate::table::firewall::SecurityGroupConfig {
            name: g.name.clone(),
            project: g.project_id.clone(),
            rule: Vec::new(),
        })
        .collect();
    let index: std::collections::HashMap<i64, usize> =
        groups.iter().enumerate().map(|(i, g)| (g.id, i)).collect();
    for (row, group) in rules(db, "", &[])? {
        if let Some(c) = index.get(&group).and_then(|&i| out.get_mut(i)) {
            c.rule.push(rule_config(&row.spec));
        }
    }
    Ok(out)
}

/// A rule as the config's keys.
pub fn rule_config(spec: &RuleSpec) -> RuleConfig {
    RuleConfig {
        direction: Some(direction_text(spec.direction).into()),
        ethertype: Some(ethertype_text(spec.ethertype).into()),
        protocol: spec.protocol.map(|p| p.to_string()),
        dst_port: spec.ports.map(|(lo, hi)| format!("{lo}:{hi}")),
        remote_ip: match &spec.remote {
            RemoteSpec::Cidr(n) => Some(IpNetwork::to_string(n)),
            _ => None,
        },
        remote_group: match &spec.remote {
            RemoteSpec::Group(g) => Some(g.clone()),
            _ => None,
        },
    }
}
