//! The database's schema, as numbered migrations: a database records the last one applied in
//! `PRAGMA user_version`, and opening it applies the rest, each in its own transaction.
//!
//! Addresses are stored as integers (IPv4 as `u32`), so ranges, overlaps and ordering are
//! index lookups. `meta` holds two counters: `generation`, bumped by every change the daemon
//! serves (the daemon rebuilds its table when it moves), and `sequence`, bumped by every change
//! at all, which orders fixed IPs by when they were last touched (nova's least-recently-used
//! reuse, without trusting the wall clock).

use rusqlite::Connection;

/// Migration `n` (1-based) takes a database from version `n - 1` to `n`.
pub const MIGRATIONS: &[&str] = &[
    // 1: nova-network's tables.
    "
    CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
    INSERT INTO meta (key, value) VALUES ('generation', 0), ('sequence', 0);

    CREATE TABLE networks (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        uuid TEXT NOT NULL UNIQUE,
        label TEXT NOT NULL UNIQUE,
        cidr TEXT NOT NULL,
        first INTEGER NOT NULL,
        last INTEGER NOT NULL,
        gateway INTEGER NOT NULL,
        broadcast INTEGER NOT NULL,
        dhcp_server INTEGER NOT NULL,
        dhcp_start INTEGER NOT NULL,
        cidr_v6 TEXT,
        gateway_v6 TEXT,
        bridge TEXT NOT NULL,
        bridge_interface TEXT,
        vlan INTEGER UNIQUE,
        vpn_public_port INTEGER,
        vpn_private_address INTEGER,
        dns1 INTEGER,
        dns2 INTEGER,
        mtu INTEGER,
        enable_dhcp INTEGER NOT NULL DEFAULT 1,
        share_address INTEGER NOT NULL DEFAULT 0,
        multi_host INTEGER NOT NULL DEFAULT 0,
        project_id TEXT,
        created INTEGER NOT NULL
    );

    CREATE TABLE instances (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        uuid TEXT NOT NULL UNIQUE,
        name TEXT NOT NULL UNIQUE,
        hostname TEXT NOT NULL,
        project_id TEXT NOT NULL,
        created INTEGER NOT NULL
    );

    CREATE TABLE vifs (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        mac TEXT NOT NULL UNIQUE,
        instance_id INTEGER NOT NULL REFERENCES instances(id) ON DELETE CASCADE,
        network_id INTEGER NOT NULL REFERENCES networks(id),
        position INTEGER NOT NULL,
        UNIQUE (instance_id, network_id)
    );

    CREATE TABLE fixed_ips (
        address INTEGER PRIMARY KEY,
        network_id INTEGER NOT NULL REFERENCES networks(id) ON DELETE CASCADE,
        reserved INTEGER NOT NULL DEFAULT 0,
        allocated INTEGER NOT NULL DEFAULT 0,
        leased INTEGER NOT NULL DEFAULT 0,
        instance_id INTEGER REFERENCES instances(id),
        vif_id INTEGER REFERENCES vifs(id),
        updated INTEGER NOT NULL DEFAULT 0,
        CHECK (reserved = 0 OR instance_id IS NULL)
    );
    CREATE INDEX fixed_ips_free ON fixed_ips (network_id, updated, address)
        WHERE reserved = 0 AND allocated = 0 AND leased = 0 AND instance_id IS NULL;
    CREATE INDEX fixed_ips_instance ON fixed_ips (instance_id) WHERE instance_id IS NOT NULL;

    CREATE TABLE floating_ips (
        address INTEGER PRIMARY KEY,
        pool TEXT NOT NULL,
        interface TEXT,
        project_id TEXT,
        fixed_address INTEGER UNIQUE REFERENCES fixed_ips(address),
        auto_assigned INTEGER NOT NULL DEFAULT 0,
        CHECK (fixed_address IS NULL OR project_id IS NOT NULL)
    );
    CREATE INDEX floating_ips_free ON floating_ips (pool, address) WHERE project_id IS NULL;
    ",
    // 2: what a network limits allocation to (so `fixed unreserve` keeps it), and the indexes
    // a reload and a delete need (found by EXPLAIN QUERY PLAN: each was a scan).
    "
    ALTER TABLE networks ADD COLUMN fixed_cidr TEXT;
    ALTER TABLE networks ADD COLUMN allowed_start INTEGER;
    ALTER TABLE networks ADD COLUMN allowed_end INTEGER;
    CREATE INDEX fixed_ips_allocated ON fixed_ips (network_id, address) WHERE instance_id IS NOT NULL;
    CREATE INDEX fixed_ips_vif ON fixed_ips (vif_id) WHERE vif_id IS NOT NULL;
    CREATE INDEX vifs_network ON vifs (network_id);
    CREATE INDEX floating_ips_associated ON floating_ips (fixed_address) WHERE fixed_address IS NOT NULL;
    ",
    // 3: security groups; the servers there are join their project's default group, which
    // allows all egress (OpenStack's two rules) and no ingress.
    "
    CREATE TABLE security_groups (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        project_id TEXT NOT NULL,
        name TEXT NOT NULL,
        description TEXT NOT NULL DEFAULT '',
        UNIQUE (project_id, name)
    );
    CREATE TABLE security_group_rules (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        group_id INTEGER NOT NULL REFERENCES security_groups(id) ON DELETE CASCADE,
        direction TEXT NOT NULL,
        ethertype TEXT NOT NULL,
        protocol INTEGER,
        port_min INTEGER,
        port_max INTEGER,
        remote_ip TEXT,
        remote_group_id INTEGER REFERENCES security_groups(id)
    );
    CREATE INDEX security_group_rules_group ON security_group_rules (group_id);
    CREATE INDEX security_group_rules_remote ON security_group_rules (remote_group_id)
        WHERE remote_group_id IS NOT NULL;
    CREATE TABLE instance_security_groups (
        instance_id INTEGER NOT NULL REFERENCES instances(id) ON DELETE CASCADE,
        group_id INTEGER NOT NULL REFERENCES security_groups(id),
        PRIMARY KEY (instance_id, group_id)
    );
    CREATE INDEX instance_security_groups_group ON instance_security_groups (group_id);
    INSERT INTO security_groups (project_id, name, description)
        SELECT DISTINCT project_id, 'default', 'default group' FROM instances;
    INSERT INTO security_group_rules (group_id, direction, ethertype)
        SELECT id, 'egress', 'IPv4' FROM security_groups;
    INSERT INTO security_group_rules (group_id, direction, ethertype)
        SELECT id, 'egress', 'IPv6' FROM security_groups;
    INSERT INTO instance_security_groups (instance_id, group_id)
        SELECT i.id, g.id FROM instances i JOIN security_groups g
        ON g.project_id = i.project_id AND g.name = 'default';
    ",
];

/// Why the schema could not be brought up to date.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    /// Written by a newer netnode.
    #[error("the database is at schema version {found}, newer than this netnode knows ({known}); use a newer netnode")]
    TooNew {
        /// Its version.
        found: u32,
        /// The last this build has.
        known: u32,
    },
    /// SQLite refused.
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
}

/// Applies every migration the database lacks; returns its version now.
pub fn migrate(conn: &mut Connection) -> Result<u32, SchemaError> {
    let known = MIGRATIONS.len() as u32;
    // Up to date (the usual case): no write transaction, so readers such as the daemon never
    // queue behind a storm of writers for the lock.
    let found: u32 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if found == known {
        return Ok(found);
    }
    loop {
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let found: u32 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if found > known {
            return Err(SchemaError::TooNew { found, known });
        }
        let Some(sql) = MIGRATIONS.get(found as usize) else {
            return Ok(found);
        };
        tx.execute_batch(sql)?;
        tx.execute_batch(&format!("PRAGMA user_version = {}", found + 1))?;
        tx.commit()?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_apply_once_and_a_newer_database_is_refused() {
        let mut c = Connection::open_in_memory().unwrap();
        assert_eq!(migrate(&mut c).unwrap(), MIGRATIONS.len() as u32);
        assert_eq!(migrate(&mut c).unwrap(), MIGRATIONS.len() as u32);
        c.execute_batch("PRAGMA user_version = 99").unwrap();
        let e = migrate(&mut c).unwrap_err();
        assert!(e.to_string().contains("version 99"), "{e}");
    }
}
