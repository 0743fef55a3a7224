//! One request-and-answers exchange on a NETLINK_NETFILTER socket, for the two things netnode
//! asks of netfilter directly: conntrack dumps and deletes, and nf_tables batches that update
//! the floating-IP maps (no `nft` process: a few hundred microseconds instead of tens of
//! milliseconds).

use std::io;
use std::net::Ipv4Addr;

use netlink_packet_netfilter::nftables::{
    DataAttribute, ListAttribute, NfTablesMessage, SetElementAttribute, SetElementList,
    SetElementMessage,
};
use netlink_packet_netfilter::none::ControlMessage;
use netlink_packet_netfilter::{
    NetfilterHeader, NetfilterMessage, NetfilterMessageInner, NetfilterProtoFamily,
};
use rtnetlink::packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP,
    NLM_F_REQUEST,
};
pub use rtnetlink::sys::Socket;
use rtnetlink::sys::{protocols::NETLINK_NETFILTER, SocketAddr};

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
    Ok(socket)
}

/// Sends `msgs` in one datagram and reads the answers until every message that asked for an
/// ack has one and a dump, if any, has ended. Each answered message goes to `each`; the first
/// error comes back as the OS error it carries (the socket is then best dropped: answers to
/// the rest of the batch may still be queued).
pub fn exchange(
    socket: &Socket,
    mut msgs: Vec<NetlinkMessage<NetfilterMessage>>,
    mut each: impl FnMut(&NetfilterMessage),
) -> io::Result<()> {
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
        while at < n {
            let bytes = rx.get(at..n).unwrap_or_default();
            let m = NetlinkMessage::<NetfilterMessage>::deserialize(bytes)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
            let len = m.header.length as usize;
            match m.payload {
                NetlinkPayload::Done(_) => dumping = false,
                NetlinkPayload::Error(e) => match e.code {
                    None => acks = acks.saturating_sub(1),
                    Some(c) => return Err(io::Error::from_raw_os_error(-c.get())),
                },
                NetlinkPayload::InnerMessage(inner) => each(&inner),
                _ => {}
            }
            if len == 0 {
                break;
            }
            at += (len + 3) & !3;
        }
    }
    Ok(())
}

/// Element changes of one map of netnode's table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapChange {
    /// The map.
    pub map: String,
    /// Keys to remove.
    pub delete: Vec<Ipv4Addr>,
    /// Key and value pairs to add.
    pub add: Vec<(Ipv4Addr, Ipv4Addr)>,
}

/// Applies the changes in one nf_tables transaction on `inet netnode`: all or none.
pub fn update_maps(socket: &Socket, changes: &[MapChange]) -> io::Result<()> {
    let control =
        |m: ControlMessage| message(NetfilterProtoFamily::Unspec, NFNL_SUBSYS_NFTABLES, m, 0);
    let value = |a: Ipv4Addr| DataAttribute::Value(a.octets().to_vec());
    let elements = |map: &str, list: Vec<ListAttribute<SetElementAttribute>>| SetElementMessage {
        attributes: vec![
            SetElementList::Table("netnode".into()),
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
