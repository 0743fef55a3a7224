//! Ending the flows through a floating IP, as nova's `conntrack -D -r <fixed>` did, over
//! ctnetlink (netlink-packet-netfilter) rather than the conntrack binary: dump the IPv4 table,
//! pick the entries that went through the floating IP, delete each by its original tuple.

use std::io;
use std::net::{IpAddr, Ipv4Addr};

use netlink_packet_netfilter::conntrack::{
    ConntrackAttribute, ConntrackMessage, IPTuple, ProtoTuple, Tuple,
};
use netlink_packet_netfilter::{NetfilterMessageInner, NetfilterProtoFamily};
use rtnetlink::packet_core::{NLM_F_ACK, NLM_F_DUMP};

use super::netfilter::{exchange, message, Socket};
use crate::table::firewall::FirewallSettings;

/// Deletes the conntrack entries of connections that came in through a floating IP (DNATed to
/// its fixed one) or went out through it (SNATed from the fixed one), for every (floating,
/// fixed) pair, in one walk of the table; returns how many.
pub fn forget(socket: &Socket, pairs: &[(Ipv4Addr, Ipv4Addr)]) -> io::Result<usize> {
    let mut doomed = Vec::new();
    let dump = message(
        NetfilterProtoFamily::IPv4,
        0,
        ConntrackMessage::Get(Vec::new()),
        NLM_F_DUMP,
    );
    exchange(socket, vec![dump], |m| {
        if let NetfilterMessageInner::Conntrack(ConntrackMessage::New(attrs)) = &m.inner {
            let orig = tuple(attrs, true);
            let reply = tuple(attrs, false);
            if let (Some((orig, o_src, o_dst)), Some((_, r_src, r_dst))) = (orig, reply) {
                if pairs
                    .iter()
                    .any(|(f, x)| through(*f, *x, (o_src, o_dst), (r_src, r_dst)))
                {
                    doomed.push(orig);
                }
            }
        }
    })?;
    delete(socket, NetfilterProtoFamily::IPv4, doomed)
}

/// Deletes the conntrack entries (IPv4 and IPv6) of flows the security groups no longer allow
/// (judged as their first packet would be now: [`super::firewall::allows`]), so a flow a
/// removed rule let in ends as operators expect; returns how many.
pub fn forget_forbidden(socket: &Socket, settings: &FirewallSettings) -> io::Result<usize> {
    let mut deleted = 0;
    for family in [NetfilterProtoFamily::IPv4, NetfilterProtoFamily::IPv6] {
        let mut doomed = Vec::new();
        let dump = message(family, 0, ConntrackMessage::Get(Vec::new()), NLM_F_DUMP);
        exchange(socket, vec![dump], |m| {
            if let NetfilterMessageInner::Conntrack(ConntrackMessage::New(attrs)) = &m.inner {
                let (Some((orig, source, _)), Some((reply, destination, _))) =
                    (tuple(attrs, true), tuple(attrs, false))
                else {
                    return;
                };
                // After NAT: the reply comes from the real destination and its port.
                let (protocol, port) = protocol_port(&reply);
                if !super::firewall::allows(settings, protocol, source, destination, port) {
                    doomed.push(orig);
                }
            }
        })?;
        deleted += delete(socket, family, doomed)?;
    }
    Ok(deleted)
}

/// The protocol and source port of a tuple (0 without ports).
fn protocol_port(t: &[Tuple]) -> (u8, u16) {
    let mut out = (0, 0);
    for x in t {
        if let Tuple::Proto(p) = x {
            for p in p {
                match p {
                    ProtoTuple::Protocol(n) => out.0 = u8::from(*n),
                    ProtoTuple::SourcePort(port) => out.1 = *port,
                    _ => {}
                }
            }
        }
    }
    out
}

/// Deletes each entry by its original tuple; returns how many went.
fn delete(
    socket: &Socket,
    family: NetfilterProtoFamily,
    doomed: Vec<Vec<Tuple>>,
) -> io::Result<usize> {
    let mut deleted = 0;
    for orig in doomed {
        let delete = ConntrackMessage::Delete(vec![ConntrackAttribute::CtaTupleOrig(orig)]);
        match exchange(socket, vec![message(family, 0, delete, NLM_F_ACK)], |_| {}) {
            Ok(()) => deleted += 1,
            // Gone already (it timed out, or another flow's delete took it).
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(deleted)
}

/// Whether a flow with these original and reply (source, destination) went through the
/// floating IP: in from outside (original destination the floating IP, reply from the fixed
/// one) or out from the instance (original source the fixed IP, reply to the floating one).
pub fn through(
    floating: Ipv4Addr,
    fixed: Ipv4Addr,
    orig: (IpAddr, IpAddr),
    reply: (IpAddr, IpAddr),
) -> bool {
    let (f, x) = (IpAddr::V4(floating), IpAddr::V4(fixed));
    (orig.1 == f && reply.0 == x) || (orig.0 == x && reply.1 == f)
}

/// The tuple (as sent back for a delete) with its source and destination.
fn tuple(attrs: &[ConntrackAttribute], original: bool) -> Option<(Vec<Tuple>, IpAddr, IpAddr)> {
    let t = attrs.iter().find_map(|a| match (a, original) {
        (ConntrackAttribute::CtaTupleOrig(t), true)
        | (ConntrackAttribute::CtaTupleReply(t), false) => Some(t),
        _ => None,
    })?;
    let ips = t.iter().find_map(|x| match x {
        Tuple::Ip(ips) => Some(ips),
        _ => None,
    })?;
    let src = ips.iter().find_map(|i| match i {
        IPTuple::SourceAddress(a) => Some(*a),
        _ => None,
    })?;
    let dst = ips.iter().find_map(|i| match i {
        IPTuple::DestinationAddress(a) => Some(*a),
        _ => None,
    })?;
    Some((t.clone(), src, dst))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flows_through_a_floating_ip_in_both_directions() {
        let (f, x): (Ipv4Addr, Ipv4Addr) = (
            "198.19.1.10".parse().unwrap(),
            "198.18.0.10".parse().unwrap(),
        );
        let out: IpAddr = "198.19.0.2".parse().unwrap();
        let (fi, xi) = (IpAddr::V4(f), IpAddr::V4(x));
        // In: outside -> floating, answered by the fixed address.
        assert!(through(f, x, (out, fi), (xi, out)));
        // Out: fixed -> outside, SNATed to the floating address.
        assert!(through(f, x, (xi, out), (out, fi)));
        // A flow to the fixed address from a neighbour is not through the floating IP.
        let peer: IpAddr = "198.18.0.11".parse().unwrap();
        assert!(!through(f, x, (peer, xi), (xi, peer)));
        // Out through routing_source_ip instead.
        let snat: IpAddr = "198.19.0.1".parse().unwrap();
        assert!(!through(f, x, (xi, out), (out, snat)));
    }
}
