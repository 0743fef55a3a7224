//! One request-and-answers exchange on a NETLINK_NETFILTER socket, for the two things netnode
//! asks of netfilter directly: conntrack dumps and deletes, and nf_tables batches that update
//! the floating-IP maps (no `nft` process: a few hundred microseconds instead of tens of
//! milliseconds), and reading netnode's table back the same way.

use std::io;
use std::net::Ipv4Addr;

use std::collections::BTreeMap;

use netlink_packet_netfilter::nftables::{
    ChainAttribute, ChainMessage, DataAttribute, ListAttribute, NfTablesMessage, RuleAttribute,
    RuleMessage, SetAttribute, SetElementAttribute, SetElementList, SetElementMessage, SetMessage,
    TableAttribute, TableMessage,
};
use netlink_packet_netfilter::none::ControlMessage;
use netlink_packet_netfilter::{
    NetfilterHeader, NetfilterMessage, NetfilterMessageInner, NetfilterProtoFamily,
};
use rtnetlink::packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NlasIterator, NLM_F_ACK, NLM_F_CREATE,
    NLM_F_DUMP, NLM_F_REQUEST,
};
pub use rtnetlink::sys::Socket;
use rtnetlink::sys::{protocols::NETLINK_NETFILTER, SocketAddr};

use super::nft::{self, MapChange, NftState};
use super::nftable::ElementBatch;
use rtnetlink::packet_core::DefaultNla;

/// netnode's table's name (family inet).
const TABLE_NAME: &str = "netnode";

/// The nf_tables subsystem id, which batch begin and end carry (NFNL_SUBSYS_NFTABLES).
const NFNL_SUBSYS_NFTABLES: u16 = 10;

/// A message for netfilter with `flags` (NLM_F_REQUEST is added).
pub fn message(
    family: NetfilterProtoFamily,
    res_id: u16,
    inner: impl Into<NetfilterMessageInner>,
    flags: u16,
) -> NetlinkMessage<NetfilterMessage> {
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | flags;
    NetlinkMessage::new(
        header,
        NetlinkPayload::from(NetfilterMessage::new(
            NetfilterHeader::new(family, 0, res_id),
            inner.into(),
        )),
    )
}

/// A NETLINK_NETFILTER socket for [`exchange`]. Keep it: closing one that carried an nf_tables
/// batch waits for an RCU grace period (about 7 ms here).
pub fn open() -> io::Result<Socket> {
    let mut socket = Socket::new(NETLINK_NETFILTER)?;
    socket.bind_auto()?;
    socket.connect(&SocketAddr::new(0, 0))?;
    // A reply that never comes must not stop the control thread for good.
    let timeout = nix::sys::time::TimeVal::new(5, 0);
    nix::sys::socket::setsockopt(&socket, nix::sys::socket::sockopt::ReceiveTimeout, &timeout)
        .map_err(io::Error::from)?;
    Ok(socket)
}

/// Sends `msgs` in one datagram and reads the answers until every message that asked for an
/// ack has one and a dump, if any, has ended. Each answered message goes to `each`; the first
/// error comes back as the OS error it carries (the socket is then best dropped: answers to
/// the rest of the batch may still be queued).
pub fn exchange(
    socket: &Socket,
    msgs: Vec<NetlinkMessage<NetfilterMessage>>,
    mut each: impl FnMut(&NetfilterMessage),
) -> io::Result<()> {
    let mut bad = None;
    exchange_raw(socket, msgs, |bytes| {
        match NetlinkMessage::<NetfilterMessage>::deserialize(bytes) {
            Ok(m) => {
                if let NetlinkPayload::InnerMessage(inner) = m.payload {
                    each(&inner);
                }
            }
            Err(e) => {
                bad.get_or_insert_with(|| {
                    io::Error::new(io::ErrorKind::InvalidData, e.to_string())
                });
            }
        }
    })?;
    bad.map_or(Ok(()), Err)
}

/// [`exchange`] handing each answer over as its raw bytes (header included), for answers the
/// typed parser is slow on: netlink-packet-netfilter 0.4 formats the whole buffer into an
/// error context for every list element, which made a 1,000-element dump take 0.7 s.
fn exchange_raw(
    socket: &Socket,
    mut msgs: Vec<NetlinkMessage<NetfilterMessage>>,
    mut each: impl FnMut(&[u8]),
) -> io::Result<()> {
    /// NLMSG_ERROR and NLMSG_DONE.
    const ERROR: u16 = 2;
    const DONE: u16 = 3;
    let mut buf = Vec::new();
    let mut acks = 0usize;
    let mut dumping = false;
    for (seq, m) in msgs.iter_mut().enumerate() {
        m.header.sequence_number = seq as u32 + 1;
        m.finalize();
        acks += usize::from(m.header.flags & NLM_F_ACK != 0);
        dumping |= m.header.flags & NLM_F_DUMP != 0;
        let at = buf.len();
        buf.resize(at + m.header.length as usize, 0);
        m.serialize(&mut buf[at..]);
    }
    socket.send(&buf, 0)?;
    let mut rx = vec![0u8; 1 << 16];
    while acks > 0 || dumping {
        let n = socket.recv(&mut &mut rx[..], 0)?;
        let mut at = 0;
        while let Some(header) = rx.get(at..at + 16).filter(|_| at < n) {
            let len = u32::from_ne_bytes([header[0], header[1], header[2], header[3]]) as usize;
            let kind = u16::from_ne_bytes([header[4], header[5]]);
            let Some(message) = rx.get(at..at + len).filter(|_| len >= 16 && at + len <= n) else {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "a truncated netlink message",
                ));
            };
            // NLMSG_ERROR and NLMSG_DONE both start with an error code (0: an ack, a clean end).
            let code = message
                .get(16..20)
                .map(|c| i32::from_ne_bytes([c[0], c[1], c[2], c[3]]))
                .unwrap_or(0);
            match kind {
                DONE | ERROR if code < 0 => return Err(io::Error::from_raw_os_error(-code)),
                DONE => dumping = false,
                ERROR => acks = acks.saturating_sub(1),
                _ => each(message),
            }
            at += (len + 3) & !3;
        }
    }
    Ok(())
}

/// Applies the changes in one nf_tables transaction on `inet netnode`: all or none.
pub fn update_maps(socket: &Socket, changes: &[MapChange]) -> io::Result<()> {
    let control =
        |m: ControlMessage| message(NetfilterProtoFamily::Unspec, NFNL_SUBSYS_NFTABLES, m, 0);
    let value = |a: Ipv4Addr| DataAttribute::Value(a.octets().to_vec());
    let elements = |map: &str, list: Vec<ListAttribute<SetElementAttribute>>| SetElementMessage {
        attributes: vec![
            SetElementList::Table(TABLE_NAME.into()),
            SetElementList::Set(map.to_string()),
            SetElementList::Elements(list),
        ],
    };
    let mut msgs = vec![control(ControlMessage::BatchBegin)];
    for c in changes {
        if !c.delete.is_empty() {
            let list = c
                .delete
                .iter()
                .map(|k| ListAttribute::Element(vec![SetElementAttribute::Key(value(*k))]))
                .collect();
            msgs.push(message(
                NetfilterProtoFamily::Inet,
                0,
                NfTablesMessage::DeleteSetElement(elements(&c.map, list)),
                NLM_F_ACK,
            ));
        }
        if !c.add.is_empty() {
            let list = c
                .add
                .iter()
                .map(|(k, v)| {
                    ListAttribute::Element(vec![
                        SetElementAttribute::Key(value(*k)),
                        SetElementAttribute::Data(value(*v)),
                    ])
                })
                .collect();
            msgs.push(message(
                NetfilterProtoFamily::Inet,
                0,
                NfTablesMessage::NewSetElement(elements(&c.map, list)),
                NLM_F_ACK | NLM_F_CREATE,
            ));
        }
    }
    msgs.push(control(ControlMessage::BatchEnd));
    exchange(socket, msgs, |_| {})
}

/// Applies element changes to the sets of `table` (`family name`, as `nft` writes it) in one
/// nf_tables transaction: all or none.
pub fn update_elements(socket: &Socket, table: &str, batches: &[ElementBatch]) -> io::Result<()> {
    let (family, name) = match table.split_once(' ') {
        Some(("inet", n)) => (NetfilterProtoFamily::Inet, n),
        Some(("bridge", n)) => (NetfilterProtoFamily::Bridge, n),
        _ => {
            return Err(io::Error::other(format!(
                "table {table:?}: no netlink family"
            )))
        }
    };
    let control =
        |m: ControlMessage| message(NetfilterProtoFamily::Unspec, NFNL_SUBSYS_NFTABLES, m, 0);
    // NFTA_DATA_VALUE inside NFTA_SET_ELEM_KEY_END.
    const VALUE: u16 = 1;
    let element = |interval: bool, (key, end): &(Vec<u8>, Vec<u8>)| {
        let mut attrs = vec![SetElementAttribute::Key(DataAttribute::Value(key.clone()))];
        if interval {
            attrs.push(SetElementAttribute::KeyEnd(vec![DefaultNla::new(
                VALUE,
                end.clone(),
            )]));
        }
        ListAttribute::Element(attrs)
    };
    let elements = |set: &str, list: Vec<ListAttribute<SetElementAttribute>>| SetElementMessage {
        attributes: vec![
            SetElementList::Table(name.into()),
            SetElementList::Set(set.to_string()),
            SetElementList::Elements(list),
        ],
    };
    let mut msgs = vec![control(ControlMessage::BatchBegin)];
    // Every delete before every add: a changed element is deleted and added under one key.
    for b in batches.iter().filter(|b| !b.delete.is_empty()) {
        let list = b.delete.iter().map(|e| element(b.interval, e)).collect();
        msgs.push(message(
            family,
            0,
            NfTablesMessage::DeleteSetElement(elements(&b.set, list)),
            NLM_F_ACK,
        ));
    }
    for b in batches.iter().filter(|b| !b.add.is_empty()) {
        let list = b.add.iter().map(|e| element(b.interval, e)).collect();
        msgs.push(message(
            family,
            0,
            NfTablesMessage::NewSetElement(elements(&b.set, list)),
            NLM_F_ACK | NLM_F_CREATE,
        ));
    }
    msgs.push(control(ControlMessage::BatchEnd));
    exchange(socket, msgs, |_| {})
}

/// netnode's table as the planner compares it, read over netlink: chains with their rule counts
/// and the marker comment, and every map's elements; `None` when the table does not exist.
/// Five short dumps on one socket instead of an `nft -j list` process (about 12 ms with 2,000
/// map elements).
pub fn read_table(socket: &Socket) -> io::Result<Option<NftState>> {
    let inet = NetfilterProtoFamily::Inet;
    let table = TableMessage {
        attributes: vec![TableAttribute::Name(TABLE_NAME.into())],
    };
    match exchange(
        socket,
        vec![message(
            inet,
            0,
            NfTablesMessage::GetTable(table),
            NLM_F_ACK,
        )],
        |_| {},
    ) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(None),
        Err(e) => return Err(e),
    }
    let mut state = NftState::default();
    let mut foreign = false;
    let dump = |m: NfTablesMessage| message(inet, 0, m, NLM_F_DUMP);
    // Chain dumps are not filtered by table in the kernel: keep netnode's.
    exchange(
        socket,
        vec![dump(NfTablesMessage::GetChain(ChainMessage {
            attributes: Vec::new(),
        }))],
        |m| {
            if let NetfilterMessageInner::NfTables(NfTablesMessage::NewChain(c)) = &m.inner {
                let ours = c
                    .attributes
                    .iter()
                    .any(|a| matches!(a, ChainAttribute::Table(t) if t == TABLE_NAME));
                let name = c.attributes.iter().find_map(|a| match a {
                    ChainAttribute::Name(n) => Some(n.clone()),
                    _ => None,
                });
                if let (true, Some(name)) = (ours, name) {
                    state.chains.entry(name).or_insert(0);
                }
            }
        },
    )?;
    let rules = RuleMessage {
        attributes: vec![RuleAttribute::Table(TABLE_NAME.into())],
    };
    exchange(socket, vec![dump(NfTablesMessage::GetRule(rules))], |m| {
        let NetfilterMessageInner::NfTables(NfTablesMessage::NewRule(r)) = &m.inner else {
            return;
        };
        if !r
            .attributes
            .iter()
            .any(|a| matches!(a, RuleAttribute::Table(t) if t == TABLE_NAME))
        {
            return;
        }
        for a in &r.attributes {
            match a {
                RuleAttribute::Chain(c) => *state.chains.entry(c.clone()).or_insert(0) += 1,
                RuleAttribute::UserData(u) => {
                    if let Some(m) = rule_comment(u)
                        .and_then(|c| c.strip_prefix(nft::MARKER_PREFIX).map(str::to_string))
                    {
                        match &state.marker {
                            Some(seen) if *seen != m => foreign = true,
                            _ => state.marker = Some(m),
                        }
                    }
                }
                _ => {}
            }
        }
    })?;
    let mut sets = Vec::new();
    let query = SetMessage {
        attributes: vec![SetAttribute::Table(TABLE_NAME.into())],
    };
    exchange(socket, vec![dump(NfTablesMessage::GetSet(query))], |m| {
        if let NetfilterMessageInner::NfTables(NfTablesMessage::NewSet(s)) = &m.inner {
            let ours = s
                .attributes
                .iter()
                .any(|a| matches!(a, SetAttribute::Table(t) if t == TABLE_NAME));
            let name = s.attributes.iter().find_map(|a| match a {
                SetAttribute::Name(n) => Some(n.clone()),
                _ => None,
            });
            // nft's anonymous sets (`{ "br100" }` in a rule) are `__set0`...: part of the
            // rules, not maps (`nft -j list` does not list them either).
            if let (true, Some(name)) = (ours, name) {
                if !name.starts_with("__") {
                    sets.push(name);
                }
            }
        }
    })?;
    for name in sets {
        let query = SetElementMessage {
            attributes: vec![
                SetElementList::Table(TABLE_NAME.into()),
                SetElementList::Set(name.clone()),
            ],
        };
        let mut elems = BTreeMap::new();
        exchange_raw(
            socket,
            vec![dump(NfTablesMessage::GetSetElement(query))],
            |m| {
                // After the netlink header (16 bytes) and nfgenmsg (4): the attributes.
                if !elements_of(m.get(20..).unwrap_or_default(), &mut elems) {
                    foreign = true;
                }
            },
        )?;
        state.maps.insert(name, elems);
    }
    if foreign {
        state.marker = None;
    }
    Ok(Some(state))
}

/// Reads NFTA_SET_ELEM_LIST_ELEMENTS of a set element message into `into` (key and data both
/// IPv4 addresses); false when an element is anything else.
fn elements_of(attrs: &[u8], into: &mut BTreeMap<Ipv4Addr, Ipv4Addr>) -> bool {
    // NFTA_SET_ELEM_LIST_ELEMENTS, NFTA_LIST_ELEM, NFTA_SET_ELEM_KEY/DATA, NFTA_DATA_VALUE.
    const LIST_ELEMENTS: u16 = 3;
    const LIST_ELEM: u16 = 1;
    const KEY: u16 = 1;
    const DATA: u16 = 2;
    const VALUE: u16 = 1;
    let value = |nested: &[u8]| {
        NlasIterator::new(nested)
            .filter_map(Result::ok)
            .find(|n| n.kind() == VALUE)
            .and_then(|n| <[u8; 4]>::try_from(n.value()).ok())
            .map(Ipv4Addr::from)
    };
    let mut ok = true;
    for list in NlasIterator::new(attrs).filter_map(Result::ok) {
        if list.kind() != LIST_ELEMENTS {
            continue;
        }
        for elem in NlasIterator::new(list.value()) {
            let Ok(elem) = elem else {
                ok = false;
                continue;
            };
            if elem.kind() != LIST_ELEM {
                ok = false;
                continue;
            }
            let (mut key, mut data) = (None, None);
            for a in NlasIterator::new(elem.value()).filter_map(Result::ok) {
                match a.kind() {
                    KEY => key = value(a.value()),
                    DATA => data = value(a.value()),
                    _ => {}
                }
            }
            match (key, data) {
                (Some(k), Some(v)) => {
                    into.insert(k, v);
                }
                _ => ok = false,
            }
        }
    }
    ok
}

/// The comment in a rule's user data (libnftnl's TLVs: type 0 is the comment, NUL-terminated).
pub fn rule_comment(udata: &[u8]) -> Option<&str> {
    let mut rest = udata;
    while let [kind, len, tail @ ..] = rest {
        let value = tail.get(..usize::from(*len))?;
        if *kind == 0 {
            let text = value.split(|b| *b == 0).next().unwrap_or_default();
            return std::str::from_utf8(text).ok();
        }
        rest = tail.get(usize::from(*len)..)?;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_comment_of_a_rule_is_found_among_its_user_data() {
        // libnftnl's layout: type, length, value (the comment NUL-terminated).
        let mut udata = vec![7, 2, 0xaa, 0xbb, 0, 6];
        udata.extend_from_slice(b"hello\0");
        assert_eq!(rule_comment(&udata), Some("hello"));
        assert_eq!(rule_comment(&[0, 9, b'x']), None, "a length past the end");
        assert_eq!(rule_comment(&[1, 0]), None);
        assert_eq!(rule_comment(&[]), None);
    }
}
