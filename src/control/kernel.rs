//! The thin IO side of the control module: reads the kernel into an [`Observed`] and carries
//! out a plan's [`Op`]s. Links, addresses and routes go over rtnetlink; netnode's nftables
//! tables (NAT, and the firewall's two) through one `nft -f` transaction each (Debian's nftables
//! package), element updates as one nf_tables batch over netlink; conntrack deletes over
//! ctnetlink; gratuitous ARPs as raw frames. Nothing here decides anything.

#![allow(clippy::disallowed_methods)] // IO shell: times each op for the debug log

use std::collections::BTreeMap;
use std::io::Write as _;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::process::{Command, Stdio};

use futures_util::TryStreamExt;
use ipnetwork::{IpNetwork, Ipv4Network};
use rtnetlink::packet_route::address::{AddressAttribute, AddressProtocol};
use rtnetlink::packet_route::link::{
    BridgeStpState, InfoBridge, InfoData, InfoKind, InfoVlan, LinkAttribute, LinkFlags, LinkInfo,
    LinkMessage,
};
use rtnetlink::packet_route::route::{
    RouteAddress, RouteAttribute, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use rtnetlink::{Handle, LinkBridge, LinkUnspec, LinkVlan, RouteMessageBuilder};

use crate::table::MacAddr;

use super::nftable::{self, TableState};
use super::plan::{LinkChange, Op};
use super::state::{Address, Link, LinkKind, Observed, Route, OWNER_ALIAS, OWNER_PROTO};
use super::{firewall, nft};

/// The main routing table.
const MAIN_TABLE: u8 = 254;

/// Why the kernel could not be read or changed.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    /// A netlink request failed.
    #[error("{what}: {source}")]
    Netlink {
        /// What was asked.
        what: String,
        /// The kernel's answer.
        source: rtnetlink::Error,
    },
    /// `nft` failed or could not be run.
    #[error("nft: {0}")]
    Nft(String),
    /// Anything else (a sysctl, a raw socket, conntrack).
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The OS error.
        source: std::io::Error,
    },
}

fn netlink(what: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> KernelError {
    let what = what.into();
    move |source| KernelError::Netlink { what, source }
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> KernelError {
    let what = what.into();
    move |source| KernelError::Io { what, source }
}

/// A connection to the kernel's routing netlink. Must be made inside a tokio runtime.
pub struct Kernel {
    handle: Handle,
    /// netnode's table as last listed or applied (`None`: unknown, list it). Whoever watches
    /// nftables events calls [`Kernel::nft_changed`], so a long-lived `Kernel` lists the table
    /// only after someone (netnode included) changed it.
    nft_cache: std::sync::Mutex<Option<Option<nft::NftState>>>,
    /// The firewall's tables as last listed or applied (`None`: unknown, list them).
    tables_cache: std::sync::Mutex<Option<BTreeMap<String, TableState>>>,
    /// The netfilter socket, opened on first use and kept (see [`super::netfilter::open`]).
    netfilter: std::sync::Mutex<Option<super::netfilter::Socket>>,
}

impl Kernel {
    /// Opens the netlink connection (its task runs on the current runtime).
    pub fn new() -> Result<Kernel, KernelError> {
        let (connection, handle, _) =
            rtnetlink::new_connection().map_err(io("opening rtnetlink"))?;
        tokio::spawn(connection);
        Ok(Kernel {
            handle,
            nft_cache: std::sync::Mutex::new(None),
            tables_cache: std::sync::Mutex::new(None),
            netfilter: std::sync::Mutex::new(None),
        })
    }

    /// Runs `f` on the kept netfilter socket; a failed exchange drops it (answers to the rest
    /// of its batch may be queued), and the next use opens a fresh one.
    fn with_netfilter<T>(
        &self,
        f: impl FnOnce(&super::netfilter::Socket) -> std::io::Result<T>,
    ) -> std::io::Result<T> {
        let mut slot = self.netfilter.lock().unwrap_or_else(|p| p.into_inner());
        let socket = match slot.take() {
            Some(s) => s,
            None => super::netfilter::open()?,
        };
        let result = f(&socket);
        if result.is_ok() {
            *slot = Some(socket);
        }
        result
    }

    /// Something changed in nftables: the next observation lists netnode's table again.
    pub fn nft_changed(&self) {
        *self.nft_cache.lock().unwrap_or_else(|p| p.into_inner()) = None;
        *self.tables_cache.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// The firewall's tables that exist (listed with `nft -j -p`, so elements read back in the
    /// form they were written).
    fn firewall_tables(&self) -> Result<BTreeMap<String, TableState>, KernelError> {
        let mut cache = self.tables_cache.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(known) = &*cache {
            return Ok(known.clone());
        }
        let mut tables = BTreeMap::new();
        for name in firewall::TABLES.into_iter().chain([super::isolate::TABLE]) {
            if let Some(json) = list_table(name)? {
                let state = nftable::parse_json(&json)
                    .map_err(|e| KernelError::Nft(format!("table {name}: {e}")))?;
                tables.insert(name.to_string(), state);
            }
        }
        *cache = Some(tables.clone());
        Ok(tables)
    }

    fn nft_state(&self) -> Result<Option<nft::NftState>, KernelError> {
        let mut cache = self.nft_cache.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(known) = &*cache {
            return Ok(known.clone());
        }
        tracing::debug!("control: listing table inet netnode");
        // Over netlink; `nft -j list` is the fallback (same answer, a process and ~12 ms more).
        let state = match self.with_netfilter(super::netfilter::read_table) {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(error = %e, "reading table inet netnode over netlink failed; running nft");
                read_nft()?
            }
        };
        if let Some(s) = &state {
            tracing::debug!(
                marker = ?s.marker,
                chains = ?s.chains,
                maps = ?s.maps.iter().map(|(k, v)| (k, v.len())).collect::<Vec<_>>(),
                "control: table inet netnode"
            );
        }
        *cache = Some(state.clone());
        Ok(state)
    }

    /// Reads what the planner compares.
    pub async fn observe(&self) -> Result<Observed, KernelError> {
        let messages: Vec<LinkMessage> = self
            .handle
            .link()
            .get()
            .execute()
            .try_collect()
            .await
            .map_err(netlink("listing links"))?;
        let names: Vec<(u32, String)> = messages
            .iter()
            .filter_map(|m| Some((m.header.index, link_name(m)?)))
            .collect();
        let name_of = |i: u32| names.iter().find(|(x, _)| *x == i).map(|(_, n)| n.clone());
        let ra_links = self.ra_learned_links(&name_of).await?;
        let mut links = Vec::new();
        for m in &messages {
            let Some(name) = link_name(m) else { continue };
            links.push(read_link(m, name, &name_of, &ra_links));
        }
        let mut addresses = Vec::new();
        let mut stream = self.handle.address().get().execute();
        while let Some(a) = stream
            .try_next()
            .await
            .map_err(netlink("listing addresses"))?
        {
            let Some(link) = name_of(a.header.index) else {
                continue;
            };
            let mut ip = None;
            let mut owned = false;
            for attr in &a.attributes {
                match attr {
                    // IFA_LOCAL is the address itself on point-to-point links; else IFA_ADDRESS.
                    AddressAttribute::Local(l) => ip = Some(*l),
                    AddressAttribute::Address(x) if ip.is_none() => ip = Some(*x),
                    AddressAttribute::Protocol(p) => owned = u8::from(*p) == OWNER_PROTO,
                    _ => {}
                }
            }
            if let Some(cidr) = ip.and_then(|ip| IpNetwork::new(ip, a.header.prefix_len).ok()) {
                addresses.push(Address { link, cidr, owned });
            }
        }
        let routes = self.routes(&name_of).await?;
        Ok(Observed {
            links,
            addresses,
            routes,
            ip_forward: sysctl("net/ipv4/ip_forward").as_deref() == Some("1"),
            ipv6_forward: sysctl("net/ipv6/conf/all/forwarding").as_deref() == Some("1"),
            nft: self.nft_state()?,
            tables: self.firewall_tables()?,
            bridge_nf: sysctl("net/bridge/bridge-nf-call-iptables").map(|v4| {
                v4 == "1" && sysctl("net/bridge/bridge-nf-call-ip6tables").as_deref() == Some("1")
            }),
        })
    }

    /// Every route of the family `query` names.
    async fn dump_routes(
        &self,
        query: RouteMessage,
        what: &str,
    ) -> Result<Vec<RouteMessage>, KernelError> {
        self.handle
            .route()
            .get(query)
            .execute()
            .try_collect()
            .await
            .map_err(netlink(what))
    }

    /// Routes an operator or a DHCP client made (not the kernel's), IPv4 main table.
    async fn routes(
        &self,
        name_of: &impl Fn(u32) -> Option<String>,
    ) -> Result<Vec<Route>, KernelError> {
        let messages = self
            .dump_routes(
                RouteMessageBuilder::<Ipv4Addr>::new().build(),
                "listing routes",
            )
            .await?;
        let mut out = Vec::new();
        for m in messages {
            let h = &m.header;
            if h.table != MAIN_TABLE
                || h.kind != RouteType::Unicast
                || h.protocol == RouteProtocol::Kernel
            {
                continue;
            }
            let mut link = None;
            let mut dest = Ipv4Addr::UNSPECIFIED;
            let mut gateway = None;
            let mut metric = 0;
            for attr in &m.attributes {
                match attr {
                    RouteAttribute::Oif(i) => link = name_of(*i),
                    RouteAttribute::Destination(RouteAddress::Inet(d)) => dest = *d,
                    RouteAttribute::Gateway(RouteAddress::Inet(g)) => gateway = Some(*g),
                    RouteAttribute::Priority(p) => metric = *p,
                    _ => {}
                }
            }
            let (Some(link), Ok(destination)) =
                (link, Ipv4Network::new(dest, h.destination_prefix_length))
            else {
                continue;
            };
            out.push(Route {
                link,
                destination,
                gateway,
                metric,
                protocol: u8::from(h.protocol),
            });
        }
        Ok(out)
    }

    /// Links with an IPv6 route learnt from a router advertisement.
    async fn ra_learned_links(
        &self,
        name_of: &impl Fn(u32) -> Option<String>,
    ) -> Result<Vec<String>, KernelError> {
        let messages = self
            .dump_routes(
                RouteMessageBuilder::<Ipv6Addr>::new().build(),
                "listing IPv6 routes",
            )
            .await?;
        Ok(messages
            .iter()
            .filter(|m| m.header.protocol == RouteProtocol::Ra)
            .flat_map(|m| {
                m.attributes.iter().filter_map(|a| match a {
                    RouteAttribute::Oif(i) => name_of(*i),
                    _ => None,
                })
            })
            .collect())
    }

    /// Carries out `ops` in order. A failed op is reported and the rest still run (an op on an
    /// unrelated bridge should not wait for a broken one); the errors come back together.
    pub async fn apply(&self, ops: &[Op]) -> Vec<(usize, KernelError)> {
        let mut failed = Vec::new();
        for (i, op) in ops.iter().enumerate() {
            let started = std::time::Instant::now();
            if let Err(e) = self.apply_one(op).await {
                failed.push((i, e));
            }
            tracing::debug!(
                op = i,
                ms = started.elapsed().as_secs_f64() * 1e3,
                "control: op applied"
            );
        }
        failed
    }

    async fn apply_one(&self, op: &Op) -> Result<(), KernelError> {
        let links = self.handle.link();
        match op {
            Op::AddBridge { name, mtu } => {
                let mut b = LinkBridge::new(name)
                    .forward_delay(0)
                    .stp_state(BridgeStpState::Disabled);
                if let Some(m) = mtu {
                    b = b.mtu(*m);
                }
                links
                    .add(b.build())
                    .execute()
                    .await
                    .map_err(netlink(format!("creating bridge {name}")))?;
                let marked = self
                    .change(name, |l| l.alias(OWNER_ALIAS).up(), "marking and raising")
                    .await;
                self.undo_unmarked(name, marked).await
            }
            Op::AddVlan {
                name,
                parent,
                id,
                mac,
                mtu,
                master,
            } => {
                let master_index = index(master)?;
                links
                    .add(vlan_message(name, index(parent)?, *id, *mac, *mtu))
                    .execute()
                    .await
                    .map_err(netlink(format!("creating {name} on {parent}")))?;
                let marked = self
                    .change(
                        name,
                        |l| l.alias(OWNER_ALIAS).controller(master_index).up(),
                        "marking, enslaving and raising",
                    )
                    .await;
                self.undo_unmarked(name, marked).await
            }
            Op::SetBridge { name } => {
                // STP off first: the kernel refuses a forward delay under 2 s while STP is on.
                let stp = LinkBridge::new(name)
                    .stp_state(BridgeStpState::Disabled)
                    .build();
                links
                    .change(stp)
                    .execute()
                    .await
                    .map_err(netlink(format!("setting STP off on {name}")))?;
                let delay = LinkBridge::new(name).forward_delay(0).build();
                links
                    .change(delay)
                    .execute()
                    .await
                    .map_err(netlink(format!("setting forward delay 0 on {name}")))
            }
            Op::SetLink { name, change } => {
                let master = match change {
                    LinkChange::Master(b) => Some(index(b)?),
                    _ => None,
                };
                self.change(
                    name,
                    |l| match change {
                        LinkChange::Up => l.up(),
                        LinkChange::Mtu(m) => l.mtu(*m),
                        LinkChange::Mac(m) => l.address(m.0.to_vec()),
                        LinkChange::Master(_) => l.controller(master.unwrap_or_default()),
                        LinkChange::NoMaster => l.nocontroller(),
                    },
                    "changing",
                )
                .await
            }
            Op::DeleteLink { name } => {
                let i = index(name)?;
                links
                    .del(i)
                    .execute()
                    .await
                    .map_err(netlink(format!("deleting {name}")))
            }
            Op::AddAddress { link, cidr, owned } => {
                let mut req = self
                    .handle
                    .address()
                    .add(index(link)?, cidr.ip(), cidr.prefix());
                if *owned {
                    req.message_mut()
                        .attributes
                        .push(AddressAttribute::Protocol(AddressProtocol::from(
                            OWNER_PROTO,
                        )));
                }
                // Already there (another `netnode net apply` at the same moment): done.
                tolerate(req.execute().await, libc::EEXIST)
                    .map_err(netlink(format!("adding {cidr} to {link}")))
            }
            Op::DeleteAddress { link, cidr } => {
                // The same message as the add names the address to delete: no lookup first.
                let mut req = self
                    .handle
                    .address()
                    .add(index(link)?, cidr.ip(), cidr.prefix());
                let msg = req.message_mut().clone();
                // Already gone: done.
                tolerate(
                    self.handle.address().del(msg).execute().await,
                    libc::EADDRNOTAVAIL,
                )
                .map_err(netlink(format!("deleting {cidr} from {link}")))
            }
            Op::AddRoute(r) => self
                .handle
                .route()
                .add(route_message(r)?)
                .execute()
                .await
                .map_err(netlink(format!(
                    "adding route {} via {}",
                    r.destination, r.link
                ))),
            Op::DeleteRoute(r) => self
                .handle
                .route()
                .del(route_message(r)?)
                .execute()
                .await
                .map_err(netlink(format!(
                    "deleting route {} via {}",
                    r.destination, r.link
                ))),
            Op::Sysctl { key, value } => std::fs::write(format!("/proc/sys/{key}"), value)
                .map_err(io(format!("writing /proc/sys/{key}"))),
            Op::Nft {
                script,
                maps,
                result,
            } => {
                let done = if maps.is_empty() {
                    run_nft(script)
                } else {
                    // Over netlink; `nft` is the fallback (same transaction, slower).
                    self.with_netfilter(|s| super::netfilter::update_maps(s, maps))
                        .map_err(|e| KernelError::Nft(e.to_string()))
                        .or_else(|e| {
                        tracing::debug!(error = %e, "nf_tables element update over netlink failed; running nft");
                        run_nft(script)
                    })
                };
                *self.nft_cache.lock().unwrap_or_else(|p| p.into_inner()) = match &done {
                    Ok(()) => Some(result.clone()),
                    Err(_) => None,
                };
                done
            }
            Op::Table {
                table,
                script,
                elements,
                result,
            } => {
                let done = if elements.is_empty() {
                    run_nft(script)
                } else {
                    // Over netlink; `nft` is the fallback (same transaction, slower).
                    self.with_netfilter(|s| super::netfilter::update_elements(s, table, elements))
                        .map_err(|e| KernelError::Nft(e.to_string()))
                        .or_else(|e| {
                            tracing::debug!(error = %e, "nf_tables element update over netlink failed; running nft");
                            run_nft(script)
                        })
                };
                let mut cache = self.tables_cache.lock().unwrap_or_else(|p| p.into_inner());
                match (&done, cache.as_mut()) {
                    (Ok(()), Some(tables)) => {
                        match result {
                            Some(r) => tables.insert(table.clone(), r.clone()),
                            None => tables.remove(table),
                        };
                    }
                    _ => *cache = None,
                }
                done
            }
            Op::ForgetForbidden(settings) => self
                .with_netfilter(|s| super::conntrack::forget_forbidden(s, settings))
                .map(|_| ())
                .map_err(io("deleting the flows the security groups now forbid")),
            Op::ForgetFlows(pairs) => self
                .with_netfilter(|s| super::conntrack::forget(s, pairs))
                .map(|_| ())
                .map_err(io("deleting the flows through floating IPs")),
            Op::AnnounceArp {
                interface,
                address,
                count,
            } => super::garp::announce(interface, *address, *count)
                .map_err(io(format!("announcing {address} on {interface}"))),
        }
    }

    /// A link just made but not marked as netnode's would never be netnode's to delete: it goes.
    async fn undo_unmarked(
        &self,
        name: &str,
        marked: Result<(), KernelError>,
    ) -> Result<(), KernelError> {
        if marked.is_err() {
            if let Some(i) = crate::netif::index(name) {
                let _ = self.handle.link().del(i).execute().await;
            }
        }
        marked
    }

    /// `ip link set <name> ...` over RTM_NEWLINK (which also sets the alias).
    async fn change(
        &self,
        name: &str,
        f: impl FnOnce(
            rtnetlink::LinkMessageBuilder<LinkUnspec>,
        ) -> rtnetlink::LinkMessageBuilder<LinkUnspec>,
        what: &str,
    ) -> Result<(), KernelError> {
        let msg = f(LinkUnspec::new_with_index(index(name)?)).build();
        self.handle
            .link()
            .change(msg)
            .execute()
            .await
            .map_err(netlink(format!("{what} {name}")))
    }
}

/// The RTM_NEWLINK message that makes `vlan<id>` on the interface with index `parent`.
pub fn vlan_message(
    name: &str,
    parent: u32,
    id: u16,
    mac: MacAddr,
    mtu: Option<u32>,
) -> LinkMessage {
    let mut v = LinkVlan::new(name, parent, id).address(mac.0.to_vec());
    if let Some(m) = mtu {
        v = v.mtu(m);
    }
    v.build()
}

/// `Ok` when the request failed only with `errno`, which means the kernel is already as asked.
fn tolerate(r: Result<(), rtnetlink::Error>, errno: i32) -> Result<(), rtnetlink::Error> {
    match r {
        Err(rtnetlink::Error::NetlinkError(m)) if m.code.is_some_and(|c| -c.get() == errno) => {
            Ok(())
        }
        other => other,
    }
}

fn index(name: &str) -> Result<u32, KernelError> {
    crate::netif::index(name).ok_or_else(|| KernelError::Io {
        what: format!("interface {name}"),
        source: std::io::Error::from(std::io::ErrorKind::NotFound),
    })
}

fn route_message(r: &Route) -> Result<RouteMessage, KernelError> {
    let mut b = RouteMessageBuilder::<Ipv4Addr>::new()
        .destination_prefix(r.destination.network(), r.destination.prefix())
        .output_interface(index(&r.link)?)
        .priority(r.metric)
        .protocol(RouteProtocol::from(r.protocol));
    b = match r.gateway {
        Some(g) => b.gateway(g),
        None => b.scope(RouteScope::Link),
    };
    Ok(b.build())
}

fn link_name(m: &LinkMessage) -> Option<String> {
    m.attributes.iter().find_map(|a| match a {
        LinkAttribute::IfName(n) => Some(n.clone()),
        _ => None,
    })
}

fn read_link(
    m: &LinkMessage,
    name: String,
    name_of: &impl Fn(u32) -> Option<String>,
    ra_links: &[String],
) -> Link {
    let mut link = Link {
        kind: LinkKind::Other,
        master: None,
        up: m.header.flags.contains(LinkFlags::Up),
        mtu: 0,
        mac: None,
        owned: false,
        accept_ra: sysctl(&format!("net/ipv6/conf/{name}/accept_ra")).and_then(|v| v.parse().ok()),
        ra_learned: ra_links.contains(&name),
        name,
    };
    let mut parent = None;
    for a in &m.attributes {
        match a {
            LinkAttribute::Mtu(x) => link.mtu = *x,
            LinkAttribute::Address(x) => link.mac = MacAddr::from_slice(x),
            LinkAttribute::Controller(i) => link.master = name_of(*i),
            LinkAttribute::IfAlias(x) => link.owned = x == OWNER_ALIAS,
            LinkAttribute::Link(i) => parent = name_of(*i),
            LinkAttribute::LinkInfo(infos) => {
                for info in infos {
                    match info {
                        LinkInfo::Kind(InfoKind::Bridge) if link.kind == LinkKind::Other => {
                            link.kind = LinkKind::Bridge {
                                stp: false,
                                forward_delay: 0,
                            }
                        }
                        LinkInfo::Data(InfoData::Bridge(data)) => {
                            let (mut stp, mut forward_delay) = (false, 0);
                            for d in data {
                                match d {
                                    InfoBridge::StpState(s) => stp = *s != BridgeStpState::Disabled,
                                    InfoBridge::ForwardDelay(f) => forward_delay = *f,
                                    _ => {}
                                }
                            }
                            link.kind = LinkKind::Bridge { stp, forward_delay };
                        }
                        LinkInfo::Data(InfoData::Vlan(data)) => {
                            let id = data
                                .iter()
                                .find_map(|d| match d {
                                    InfoVlan::Id(i) => Some(*i),
                                    _ => None,
                                })
                                .unwrap_or(0);
                            link.kind = LinkKind::Vlan { parent: None, id };
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    if let LinkKind::Vlan { parent: p, .. } = &mut link.kind {
        *p = parent;
    }
    link
}

/// A sysctl's value, trimmed; `None` when it does not exist (no IPv6, no such interface).
fn sysctl(key: &str) -> Option<String> {
    std::fs::read_to_string(format!("/proc/sys/{key}"))
        .ok()
        .map(|v| v.trim().to_string())
}

/// netnode's table as `nft -j` lists it; `None` when it does not exist.
fn read_nft() -> Result<Option<nft::NftState>, KernelError> {
    match list_table(nft::TABLE)? {
        Some(json) => nft::parse_json(&json).map(Some).map_err(KernelError::Nft),
        None => Ok(None),
    }
}

/// `nft -j -p list table <table>` (protocols as numbers); `None` when the table does not exist.
fn list_table(table: &str) -> Result<Option<String>, KernelError> {
    let mut args = vec!["-j", "-p", "list", "table"];
    args.extend(table.split(' '));
    let out = Command::new("nft")
        .args(&args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| KernelError::Nft(format!("cannot run nft (Debian package nftables): {e}")))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        if err.contains("No such file or directory") {
            return Ok(None);
        }
        return Err(KernelError::Nft(format!(
            "listing table {table}: {}",
            err.trim()
        )));
    }
    Ok(Some(String::from_utf8_lossy(&out.stdout).into_owned()))
}

/// Runs one `nft -f -` transaction: all of it applies, or none of it.
fn run_nft(script: &str) -> Result<(), KernelError> {
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| KernelError::Nft(format!("cannot run nft (Debian package nftables): {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(script.as_bytes())
            .map_err(|e| KernelError::Nft(format!("writing the script: {e}")))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| KernelError::Nft(e.to_string()))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(KernelError::Nft(
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ))
    }
}
