//! Link and address events from the kernel (rtnetlink multicast), so that services follow
//! bridges that appear, disappear, are recreated or gain their link-local address, without
//! polling.
//!
//! An event only says *which* interface changed; whoever receives it reads the facts it needs
//! afresh (index, MAC, link-local address). That keeps the monitor simple and makes a lost or
//! reordered event harmless: if the kernel's buffer overflowed, a [`LinkEvent::Resync`] tells
//! everyone to check everything.

use futures_util::StreamExt;
use rtnetlink::packet_core::NetlinkPayload;
use rtnetlink::packet_route::link::LinkAttribute;
use rtnetlink::packet_route::RouteNetlinkMessage;
use rtnetlink::sys::AsyncSocket;
use rtnetlink::{new_multicast_connection, MulticastGroup};
use tokio::sync::mpsc;

/// Receive buffer of the netlink socket: creating hundreds of bridges at once sends thousands
/// of messages (a link, then its addresses, then its link-local address after DAD).
const RECEIVE_BUFFER: usize = 4 << 20;

/// Something changed about a network interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkEvent {
    /// An interface appeared or changed (flags, carrier, MAC), or one of its addresses did.
    Changed {
        /// Its index.
        index: u32,
        /// Its name, when known (an address event on an interface already gone has none).
        name: Option<String>,
    },
    /// An interface was deleted.
    Removed {
        /// Its index.
        index: u32,
        /// Its name.
        name: Option<String>,
    },
    /// Events were lost: everything must be checked again.
    Resync,
}

impl LinkEvent {
    /// Whether the event may concern the interface called `name`, which was last seen with
    /// index `known` (if it was seen at all).
    pub fn concerns(&self, name: &str, known: Option<u32>) -> bool {
        match self {
            LinkEvent::Resync => true,
            LinkEvent::Changed { index, name: n } | LinkEvent::Removed { index, name: n } => {
                n.as_deref() == Some(name) || known == Some(*index)
            }
        }
    }
}

/// Subscribes to link and address changes and returns the events as they come. Must be called
/// inside a tokio runtime; the monitor runs until the receiver is dropped.
pub fn monitor() -> std::io::Result<mpsc::UnboundedReceiver<LinkEvent>> {
    let (mut connection, _handle, mut messages) = new_multicast_connection(&[
        MulticastGroup::Link,
        MulticastGroup::Ipv4Ifaddr,
        MulticastGroup::Ipv6Ifaddr,
    ])?;
    // Past rmem_max where privileges allow (as with the DHCP sockets); otherwise the default.
    let _ = nix::sys::socket::setsockopt(
        &*connection.socket_mut().socket_mut(),
        nix::sys::socket::sockopt::RcvBufForce,
        &RECEIVE_BUFFER,
    );
    tokio::spawn(connection);
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some((message, _)) = messages.next().await {
            let event = match message.payload {
                NetlinkPayload::InnerMessage(m) => event_of(m),
                NetlinkPayload::Overrun(_) => Some(LinkEvent::Resync),
                _ => None,
            };
            if let Some(e) = event {
                if tx.send(e).is_err() {
                    return;
                }
            }
        }
        tracing::warn!("the netlink link monitor stopped; interfaces are checked only at reloads");
    });
    Ok(rx)
}

/// The event of one rtnetlink message, if it is one the services care about.
fn event_of(message: RouteNetlinkMessage) -> Option<LinkEvent> {
    let link_name = |attrs: &[LinkAttribute]| {
        attrs.iter().find_map(|a| match a {
            LinkAttribute::IfName(n) => Some(n.clone()),
            _ => None,
        })
    };
    Some(match message {
        RouteNetlinkMessage::NewLink(m) => LinkEvent::Changed {
            index: m.header.index,
            name: link_name(&m.attributes),
        },
        RouteNetlinkMessage::DelLink(m) => LinkEvent::Removed {
            index: m.header.index,
            name: link_name(&m.attributes),
        },
        RouteNetlinkMessage::NewAddress(m) | RouteNetlinkMessage::DelAddress(m) => {
            LinkEvent::Changed {
                index: m.header.index,
                name: super::name(m.header.index),
            }
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_concerns_its_interface_by_name_or_by_the_index_last_seen() {
        let changed = LinkEvent::Changed {
            index: 7,
            name: Some("br100".into()),
        };
        assert!(changed.concerns("br100", None));
        assert!(!changed.concerns("br200", Some(8)));
        let gone = LinkEvent::Removed {
            index: 9,
            name: None,
        };
        assert!(gone.concerns("br100", Some(9)), "the socket's old index");
        assert!(!gone.concerns("br100", Some(7)));
        assert!(LinkEvent::Resync.concerns("anything", None));
    }
}
