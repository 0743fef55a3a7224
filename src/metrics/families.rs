//! What each counter of a [`Report`](crate::stats::Report) is called in Prometheus: its family
//! name, help, type and the label its `kind` becomes. Written once, here; the stats line keeps
//! the short names.
//!
//! Sums of other counters are left out (`None`): a scraper adds them up itself, and exporting
//! both double counts (Stork's Kea exporter has to drop Kea's summed counters for that reason).

/// A family's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Type {
    /// Only goes up; exported with `_total`.
    Counter,
    /// A level (leases held, a timestamp).
    Gauge,
}

/// Where a sample's label value comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Label {
    /// No label besides `bridge` / `network`.
    None,
    /// The sample's `kind`, under this label name (`reason="unknown_client"`).
    Kind(&'static str),
    /// The sample's own name, under this label name (`type="discover"`).
    Name(&'static str),
}

/// One Prometheus family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Family {
    /// Its name without the `netnode_` prefix and, for counters, without `_total`.
    pub name: &'static str,
    /// Its help text.
    pub help: &'static str,
    /// Counter or gauge.
    pub kind: Type,
    /// The label the sample's kind or name becomes.
    pub label: Label,
}

const fn counter(name: &'static str, help: &'static str, label: Label) -> Option<Family> {
    Some(Family {
        name,
        help,
        kind: Type::Counter,
        label,
    })
}

const fn gauge(name: &'static str, help: &'static str) -> Option<Family> {
    Some(Family {
        name,
        help,
        kind: Type::Gauge,
        label: Label::None,
    })
}

const RECEIVED: Option<Family> = counter(
    "dhcp_received_packets",
    "DHCP requests received, by message type.",
    Label::Name("type"),
);
const SENT: Option<Family> = counter(
    "dhcp_sent_packets",
    "DHCP replies sent, by message type.",
    Label::Name("type"),
);
const NONE: Label = Label::None;

/// Every sample name a service reports, with its family (`None`: a sum of others, not exported).
pub const FAMILIES: &[(&str, Option<Family>)] = &[
    // DHCP
    ("received", None), // the typed requests plus the malformed drops
    ("discover", RECEIVED),
    ("request", RECEIVED),
    ("decline", RECEIVED),
    ("release", RECEIVED),
    ("inform", RECEIVED),
    ("offer", SENT),
    ("ack", SENT),
    ("nak", SENT),
    (
        "drop",
        counter(
            "dhcp_drops",
            "DHCP requests dropped unanswered, by reason.",
            Label::Kind("reason"),
        ),
    ),
    (
        "leases_ended",
        counter(
            "dhcp_leases_ended",
            "Leases ended by their client (RELEASE or DECLINE).",
            NONE,
        ),
    ),
    (
        "repeated_options",
        counter(
            "dhcp_repeated_options",
            "Requests in which some option appeared more than once.",
            NONE,
        ),
    ),
    (
        "leases",
        gauge("dhcp_leases", "Leases held now, per network."),
    ),
    (
        "bound",
        gauge(
            "table_bindings",
            "Addresses bound to a MAC in the served table, per network.",
        ),
    ),
    (
        "journal_failures",
        counter(
            "dhcp_journal_failures",
            "Lease journal commits that failed (a full disk): their ACKs were withheld.",
            NONE,
        ),
    ),
    (
        "acks_withheld",
        counter(
            "dhcp_acks_withheld",
            "ACKs not sent because their lease could not be made durable.",
            NONE,
        ),
    ),
    // Router advertisements
    ("ra_multicast", None), // ra_sent by kind says the same
    ("ra_unicast", None),
    (
        "ra_sent",
        counter(
            "ra_sent",
            "Router advertisements sent, solicited or unsolicited.",
            Label::Kind("kind"),
        ),
    ),
    (
        "rs",
        counter(
            "ra_solicitations",
            "Valid router solicitations received.",
            NONE,
        ),
    ),
    (
        "other_routers",
        counter(
            "ra_other_routers",
            "Router advertisements received from other routers.",
            NONE,
        ),
    ),
    (
        "inconsistencies",
        counter(
            "ra_inconsistencies",
            "Inconsistencies found in other routers' advertisements.",
            NONE,
        ),
    ),
    (
        "ra_drop",
        counter(
            "ra_drops",
            "ICMPv6 messages dropped by the advertiser, by reason.",
            Label::Kind("reason"),
        ),
    ),
    // Metadata
    ("md_requests", None), // the sum of md_answers
    (
        "md_answers",
        counter(
            "metadata_requests",
            "Metadata requests answered, by HTTP status code.",
            Label::Kind("code"),
        ),
    ),
    (
        "md_refused",
        counter(
            "metadata_connections_refused",
            "Metadata connections closed at once: too many open.",
            NONE,
        ),
    ),
    // DNS
    (
        "dns_queries",
        counter("dns_queries", "DNS queries received.", NONE),
    ),
    (
        "dns_tcp",
        counter("dns_tcp_queries", "DNS queries received over TCP.", NONE),
    ),
    (
        "dns",
        counter(
            "dns_answers",
            "DNS queries by how they were answered.",
            Label::Kind("outcome"),
        ),
    ),
    (
        "dns_drop",
        counter(
            "dns_drops",
            "DNS messages dropped, by reason.",
            Label::Kind("reason"),
        ),
    ),
    (
        "dns_upstream_timeouts",
        counter(
            "dns_upstream_timeouts",
            "Queries to an upstream server that timed out.",
            NONE,
        ),
    ),
    (
        "dns_tcp_refused",
        counter(
            "dns_tcp_refused",
            "DNS TCP connections refused: too many open.",
            NONE,
        ),
    ),
    (
        "dns_tcp_idle_closed",
        counter(
            "dns_tcp_idle_closed",
            "DNS TCP connections closed for idleness.",
            NONE,
        ),
    ),
    // Control
    (
        "control_passes",
        counter(
            "control_passes",
            "Control passes (observe, plan, apply).",
            NONE,
        ),
    ),
    (
        "control_ops",
        counter(
            "control_ops",
            "Kernel operations applied by the control module.",
            NONE,
        ),
    ),
    (
        "control_failures",
        counter(
            "control_failures",
            "Kernel operations that failed (retried at the next pass).",
            NONE,
        ),
    ),
    (
        "control_repairs",
        counter(
            "control_repairs",
            "Passes that found the kernel changed by someone else and put it back.",
            NONE,
        ),
    ),
    // Operations
    (
        "metrics_scrapes",
        counter(
            "metrics_scrapes",
            "Scrapes of /metrics served (this one included).",
            NONE,
        ),
    ),
    (
        "ctl_requests",
        counter(
            "ctl_requests",
            "Control socket requests answered, by result.",
            Label::Kind("result"),
        ),
    ),
    (
        "ctl_refused",
        counter(
            "ctl_refused",
            "Control socket connections refused: a user other than root or netnode's own.",
            NONE,
        ),
    ),
    // The daemon
    (
        "reloads",
        counter("reloads", "Table reloads that succeeded.", NONE),
    ),
    (
        "reload_failures",
        counter(
            "reload_failures",
            "Table reloads that failed (the last good table kept serving).",
            NONE,
        ),
    ),
    (
        "last_reload_success",
        gauge(
            "last_reload_success_timestamp_seconds",
            "When the table was last loaded (at start or a reload), in unix seconds.",
        ),
    ),
    (
        "start_time",
        gauge(
            "start_time_seconds",
            "When the daemon started, in unix seconds.",
        ),
    ),
    (
        "manager_generation",
        gauge(
            "manager_generation",
            "The manager database's generation (etcd: revision) the served table was read at.",
        ),
    ),
    // The etcd feed ([manager] backend = "etcd")
    (
        "etcd_connected",
        gauge(
            "etcd_connected",
            "1 while the node has listed and is watching etcd; 0 while it serves its last view.",
        ),
    ),
    (
        "etcd_revision",
        gauge(
            "etcd_revision",
            "The etcd revision of the last view published.",
        ),
    ),
    (
        "etcd_lists",
        counter(
            "etcd_lists",
            "Lists of the node's key ranges: the first and every resync.",
            NONE,
        ),
    ),
    (
        "etcd_compactions",
        counter(
            "etcd_compactions",
            "Resyncs because the watched revision was compacted.",
            NONE,
        ),
    ),
    (
        "etcd_errors",
        counter(
            "etcd_errors",
            "Sessions with etcd that ended (unreachable, broken stream, lost leader, compaction).",
            NONE,
        ),
    ),
    (
        "etcd_events",
        counter(
            "etcd_events",
            "Watch events that changed the node's view.",
            NONE,
        ),
    ),
    (
        "etcd_foreign_events",
        counter(
            "etcd_foreign_events",
            "Watch events for keys outside the node's ranges (0 unless the layout is broken).",
            NONE,
        ),
    ),
    (
        "etcd_views",
        counter(
            "etcd_views",
            "Views published to the server (each a table rebuild).",
            NONE,
        ),
    ),
];

/// Histograms by name: their help (the name is the family's, without `netnode_`).
pub const HISTOGRAMS: &[(&str, &str)] = &[
    ("dhcp_journal_commit_seconds", "Time of one commit of the lease journal (write, and fdatasync unless [state] fsync = false), failed ones included; its count is the number of commits."),
    ("dhcp_journal_commit_changes", "Lease changes per group commit of the lease journal."),
    ("metadata_request_seconds", "Time from a metadata request's head to its answer."),
];

/// The family of a sample name: `Some(None)` when it is deliberately left out, `None` when
/// the name is unknown.
pub fn family(name: &str) -> Option<Option<Family>> {
    FAMILIES.iter().find(|(n, _)| *n == name).map(|(_, f)| *f)
}
