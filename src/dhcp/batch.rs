//! Batched UDP IO for the listener: many datagrams per system call (`recvmmsg`, `sendmmsg`),
//! through nix's safe wrappers.
//!
//! Under load a DHCP server spends most of its time in the kernel, one system call per
//! datagram; batching receives and sends divides that by the batch size. Both calls work on a
//! blocking socket: a receive waits for the first datagram (or the socket's receive timeout)
//! and then takes whatever else is queued, without waiting for more.

use std::io::{self, IoSlice, IoSliceMut};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::AsRawFd;

use nix::errno::Errno;
use nix::sys::socket::{recvmmsg, sendmmsg, MsgFlags, MultiHeaders, SockaddrIn};

/// Bytes per receive slot. DHCP requests fit in one Ethernet frame (jumbo frames aside);
/// anything longer arrives truncated and is reported as such, never handed on cut short.
pub const SLOT: usize = 4096;

/// Whether a receive ended with nothing to read and is simply tried again: its timeout passed
/// (`WouldBlock` or `TimedOut`, by platform), nothing was queued, or a signal interrupted it.
pub fn nothing_received(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}

/// One datagram taken by [`RecvBatch::recv`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Received {
    /// Its length (at most [`SLOT`]).
    pub len: usize,
    /// Its sender.
    pub from: SocketAddrV4,
    /// It was longer than [`SLOT`] and was cut.
    pub truncated: bool,
}

/// Receive buffers and headers for up to `slots` datagrams per call, allocated once (each call
/// still builds its short list of buffer slices).
pub struct RecvBatch {
    buf: Vec<u8>,
    got: Vec<Received>,
    headers: MultiHeaders<SockaddrIn>,
}

impl RecvBatch {
    /// Buffers for `slots` datagrams of [`SLOT`] bytes.
    pub fn new(slots: usize) -> RecvBatch {
        let slots = slots.max(1);
        RecvBatch {
            buf: vec![0; slots * SLOT],
            got: Vec::with_capacity(slots),
            headers: MultiHeaders::preallocate(slots, None),
        }
    }

    /// Waits for a datagram (at most the socket's receive timeout, which yields
    /// `WouldBlock`), then takes every queued one up to the batch size, in one system call.
    pub fn recv(&mut self, socket: &impl AsRawFd) -> io::Result<usize> {
        self.recv_with(socket, MsgFlags::MSG_WAITFORONE)
    }

    /// Takes the queued datagrams up to the batch size without waiting (`WouldBlock` if none).
    pub fn recv_queued(&mut self, socket: &impl AsRawFd) -> io::Result<usize> {
        self.recv_with(socket, MsgFlags::MSG_DONTWAIT)
    }

    fn recv_with(&mut self, socket: &impl AsRawFd, flags: MsgFlags) -> io::Result<usize> {
        self.got.clear();
        let mut slices: Vec<[IoSliceMut<'_>; 1]> = self
            .buf
            .chunks_exact_mut(SLOT)
            .map(|c| [IoSliceMut::new(c)])
            .collect();
        let results = recvmmsg(
            socket.as_raw_fd(),
            &mut self.headers,
            slices.iter_mut(),
            flags,
            None,
        )
        .map_err(io::Error::from)?;
        for msg in results {
            let from = msg.address.map_or(
                SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0),
                |a: SockaddrIn| SocketAddrV4::new(a.ip(), a.port()),
            );
            self.got.push(Received {
                len: msg.bytes.min(SLOT),
                from,
                truncated: msg.flags.contains(MsgFlags::MSG_TRUNC),
            });
        }
        Ok(self.got.len())
    }

    /// The datagrams the last [`recv`](Self::recv) took, with their bytes.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], Received)> + '_ {
        self.got
            .iter()
            .zip(self.buf.chunks_exact(SLOT))
            .map(|(r, slot)| (slot.get(..r.len).unwrap_or(&[]), *r))
    }
}

/// Send headers for up to `slots` datagrams per system call, allocated once (each call still
/// builds its lists of slices and addresses).
pub struct SendBatch {
    slots: usize,
    headers: MultiHeaders<SockaddrIn>,
}

impl SendBatch {
    /// Headers for `slots` datagrams per call.
    pub fn new(slots: usize) -> SendBatch {
        let slots = slots.max(1);
        SendBatch {
            slots,
            headers: MultiHeaders::preallocate(slots, None),
        }
    }

    /// Sends every datagram, in order, `slots` per system call. A datagram the kernel refuses
    /// is skipped and reported (with its index); the others still go.
    pub fn send(
        &mut self,
        socket: &impl AsRawFd,
        datagrams: &[(SocketAddrV4, &[u8])],
    ) -> Vec<(usize, io::Error)> {
        let mut failed = Vec::new();
        let mut at = 0;
        while at < datagrams.len() {
            let chunk = datagrams
                .get(at..(at + self.slots).min(datagrams.len()))
                .unwrap_or(&[]);
            let slices: Vec<[IoSlice<'_>; 1]> =
                chunk.iter().map(|(_, b)| [IoSlice::new(b)]).collect();
            let addrs: Vec<Option<SockaddrIn>> = chunk
                .iter()
                .map(|(a, _)| Some(SockaddrIn::from(*a)))
                .collect();
            match sendmmsg(
                socket.as_raw_fd(),
                &mut self.headers,
                slices.iter(),
                &addrs,
                [],
                MsgFlags::empty(),
            ) {
                Ok(sent) => {
                    // sendmmsg stops early only at a failing datagram; the next call reports it.
                    at += sent.count().max(1);
                }
                Err(Errno::EINTR) => {}
                Err(e) => {
                    failed.push((at, io::Error::from(e)));
                    at += 1;
                }
            }
        }
        failed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;
    use std::time::Duration;

    fn pair() -> (UdpSocket, UdpSocket) {
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").unwrap();
        b.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        (a, b)
    }

    fn v4(s: &UdpSocket) -> SocketAddrV4 {
        match s.local_addr().unwrap() {
            std::net::SocketAddr::V4(a) => a,
            other => panic!("not v4: {other}"),
        }
    }

    #[test]
    fn sends_and_receives_many_per_call_in_order() {
        let (a, b) = pair();
        let to = v4(&b);
        let payloads: Vec<Vec<u8>> = (0..100u8).map(|i| vec![i; 10 + usize::from(i)]).collect();
        let datagrams: Vec<(SocketAddrV4, &[u8])> =
            payloads.iter().map(|p| (to, p.as_slice())).collect();
        assert!(SendBatch::new(16).send(&a, &datagrams).is_empty());
        let mut rx = RecvBatch::new(64);
        let mut seen = Vec::new();
        while seen.len() < 100 {
            let n = rx.recv(&b).unwrap();
            assert!((1..=64).contains(&n));
            for (bytes, r) in rx.iter() {
                assert_eq!(r.from, v4(&a));
                assert!(!r.truncated);
                seen.push(bytes.to_vec());
            }
        }
        assert_eq!(seen, payloads);
    }

    #[test]
    fn a_timeout_is_would_block_and_an_oversized_datagram_is_marked() {
        let (a, b) = pair();
        let mut rx = RecvBatch::new(4);
        let e = rx.recv(&b).unwrap_err();
        assert!(matches!(
            e.kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
        ));
        assert!(nothing_received(&e));
        a.send_to(&vec![7u8; SLOT + 100], b.local_addr().unwrap())
            .unwrap();
        assert_eq!(rx.recv(&b).unwrap(), 1);
        let (bytes, r) = rx.iter().next().unwrap();
        assert!(r.truncated);
        assert_eq!(bytes.len(), SLOT);
    }

    #[test]
    fn a_refused_datagram_is_reported_and_the_rest_still_go() {
        let (a, b) = pair();
        let good = v4(&b);
        let bad = SocketAddrV4::new(Ipv4Addr::BROADCAST, 9); // no SO_BROADCAST: EACCES
        let datagrams = [(good, &b"one"[..]), (bad, &b"x"[..]), (good, &b"two"[..])];
        let failed = SendBatch::new(8).send(&a, &datagrams);
        assert_eq!(failed.len(), 1);
        assert_eq!(failed[0].0, 1);
        let mut rx = RecvBatch::new(8);
        let mut got = Vec::new();
        while got.len() < 2 {
            rx.recv(&b).unwrap();
            got.extend(rx.iter().map(|(d, _)| d.to_vec()));
        }
        assert_eq!(got, vec![b"one".to_vec(), b"two".to_vec()]);
    }
}
