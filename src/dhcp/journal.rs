//! The lease journal's record codec (pure: bytes in, records out).
//!
//! File layout: an 8-byte header `NNLEASE1`, then records of
//! `[payload length: u32 LE][crc32 of payload: u32 LE][payload]`. A payload is
//! `kind u8 | mac [6] | ip [4] | expires u64 LE (u64::MAX = infinite) | hostname (u8 len + bytes) |
//! client id (u8 len + bytes)`. Replay stops at the first record that is short or fails its
//! checksum: that is where a crash tore the last write, and everything before it is intact.
//!
//! The file may end in zeros: the store extends it ahead of the records (see
//! [`super::store`]) so that a commit's fdatasync writes data blocks only, not the inode. A
//! zero record header (length 0, checksum 0) is not a record, so replay stops there, and zeros
//! after the last record are free space, not a torn write.

use std::net::Ipv4Addr;

use super::lease::{Lease, LeaseChange};
use crate::table::MacAddr;

/// The first bytes of every journal file.
pub const HEADER: &[u8; 8] = b"NNLEASE1";
const GRANT: u8 = 1;
const RELEASE: u8 = 2;
const DECLINE: u8 = 3;
/// Largest payload a valid record can have (two 255-byte strings plus the fixed part).
const MAX_PAYLOAD: usize = 1 + 6 + 4 + 8 + 256 + 256;
/// Largest valid record: more unreadable bytes than this at the end are damage, not a torn write.
pub const MAX_RECORD: usize = 8 + MAX_PAYLOAD;

/// Appends one encoded record to `out`.
pub fn encode(change: &LeaseChange, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&[0; 8]);
    let (kind, mac, ip) = match change {
        LeaseChange::Grant(l) => (GRANT, l.mac, l.ip),
        LeaseChange::Release { mac, ip } => (RELEASE, *mac, *ip),
        LeaseChange::Decline { mac, ip } => (DECLINE, *mac, *ip),
    };
    out.push(kind);
    out.extend_from_slice(&mac.0);
    out.extend_from_slice(&ip.octets());
    if let LeaseChange::Grant(l) = change {
        out.extend_from_slice(&l.expires.unwrap_or(u64::MAX).to_le_bytes());
        put_bytes(out, l.hostname.as_deref().map(str::as_bytes));
        put_bytes(out, l.client_id.as_deref());
    }
    let payload_len = out.len() - start - 8;
    let crc = crc32fast::hash(&out[start + 8..]);
    out[start..start + 4].copy_from_slice(&(payload_len as u32).to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

fn put_bytes(out: &mut Vec<u8>, bytes: Option<&[u8]>) {
    let bytes = bytes.unwrap_or(&[]);
    let bytes = &bytes[..bytes.len().min(255)];
    out.push(bytes.len() as u8);
    out.extend_from_slice(bytes);
}

/// The result of replaying a journal.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Replay {
    /// Every intact record, in order.
    pub changes: Vec<LeaseChange>,
    /// Bytes of the file that hold the header and intact records; the rest is a torn tail.
    pub valid_len: usize,
    /// Whether the header was missing or wrong (the file is not a journal, or empty).
    pub bad_header: bool,
    /// Bytes after `valid_len` up to the last non-zero byte: what a crash tore (or damage).
    /// Zeros after that are preallocated space.
    pub torn_len: usize,
}

/// Replays journal bytes. Never fails: what cannot be read ends the replay.
pub fn replay(bytes: &[u8]) -> Replay {
    let mut out = Replay::default();
    if bytes.get(..HEADER.len()) != Some(&HEADER[..]) {
        out.bad_header = true;
        return out;
    }
    let mut at = HEADER.len();
    out.valid_len = at;
    while let Some(change) = record_at(bytes, &mut at) {
        out.changes.push(change);
        out.valid_len = at;
    }
    out.torn_len = bytes
        .get(out.valid_len..)
        .and_then(|tail| tail.iter().rposition(|&b| b != 0))
        .map_or(0, |last| last + 1);
    out
}

fn record_at(bytes: &[u8], at: &mut usize) -> Option<LeaseChange> {
    let head = bytes.get(*at..at.checked_add(8)?)?;
    let len = u32::from_le_bytes(head.get(..4)?.try_into().ok()?) as usize;
    let crc = u32::from_le_bytes(head.get(4..8)?.try_into().ok()?);
    if len > MAX_PAYLOAD {
        return None;
    }
    let payload = bytes.get(*at + 8..*at + 8 + len)?;
    if crc32fast::hash(payload) != crc {
        return None;
    }
    let change = decode_payload(payload)?;
    *at += 8 + len;
    Some(change)
}

fn decode_payload(p: &[u8]) -> Option<LeaseChange> {
    let (&kind, rest) = p.split_first()?;
    let mac = MacAddr::from_slice(rest.get(..6)?)?;
    let ip = Ipv4Addr::from(<[u8; 4]>::try_from(rest.get(6..10)?).ok()?);
    let rest = rest.get(10..)?;
    match kind {
        GRANT => {
            let expires = u64::from_le_bytes(rest.get(..8)?.try_into().ok()?);
            let (hostname, rest) = take_bytes(rest.get(8..)?)?;
            let (client_id, rest) = take_bytes(rest)?;
            if !rest.is_empty() {
                return None;
            }
            Some(LeaseChange::Grant(Lease {
                mac,
                ip,
                expires: (expires != u64::MAX).then_some(expires),
                hostname: hostname.map(|h| String::from_utf8_lossy(h).into_owned()),
                client_id: client_id.map(<[u8]>::to_vec),
            }))
        }
        RELEASE if rest.is_empty() => Some(LeaseChange::Release { mac, ip }),
        DECLINE if rest.is_empty() => Some(LeaseChange::Decline { mac, ip }),
        _ => None,
    }
}

fn take_bytes(p: &[u8]) -> Option<(Option<&[u8]>, &[u8])> {
    let (&len, rest) = p.split_first()?;
    let len = usize::from(len);
    let value = rest.get(..len)?;
    Some(((len > 0).then_some(value), rest.get(len..)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fuzz_seed_is_a_journal_as_the_daemon_leaves_it() {
        // Records, then zeros written ahead: all of it replays, nothing counts as torn.
        let seed = include_bytes!("../../fuzz/corpus/journal_replay/from-lab");
        let r = replay(seed);
        assert!(!r.bad_header);
        assert!(!r.changes.is_empty());
        assert_eq!(r.torn_len, 0);
        assert!(seed.len() > r.valid_len + 256, "the seed keeps a zero tail");
    }

    fn grant(n: u8) -> LeaseChange {
        LeaseChange::Grant(Lease {
            mac: MacAddr([0xfa, 0x16, 0x3e, 0, 0, n]),
            ip: Ipv4Addr::new(198, 18, 0, n),
            expires: if n.is_multiple_of(3) {
                None
            } else {
                Some(1_700_000_000 + u64::from(n))
            },
            hostname: n.is_multiple_of(2).then(|| format!("host-{n}")),
            client_id: n.is_multiple_of(4).then(|| vec![1, n]),
        })
    }

    fn journal(changes: &[LeaseChange]) -> Vec<u8> {
        let mut out = HEADER.to_vec();
        for c in changes {
            encode(c, &mut out);
        }
        out
    }

    #[test]
    fn round_trips_every_kind() {
        let mut changes: Vec<LeaseChange> = (1..=8).map(grant).collect();
        changes.push(LeaseChange::Release {
            mac: MacAddr([1; 6]),
            ip: Ipv4Addr::new(198, 18, 0, 1),
        });
        changes.push(LeaseChange::Decline {
            mac: MacAddr([2; 6]),
            ip: Ipv4Addr::new(198, 18, 0, 2),
        });
        let bytes = journal(&changes);
        let r = replay(&bytes);
        assert_eq!(r.changes, changes);
        assert_eq!(r.valid_len, bytes.len());
        assert!(!r.bad_header);
    }

    #[test]
    fn a_crash_at_any_byte_keeps_every_complete_record() {
        let changes: Vec<LeaseChange> = (1..=6).map(grant).collect();
        let bytes = journal(&changes);
        let mut ends = vec![HEADER.len()];
        for c in &changes {
            let mut one = Vec::new();
            encode(c, &mut one);
            ends.push(ends.last().unwrap() + one.len());
        }
        for cut in HEADER.len()..=bytes.len() {
            let r = replay(&bytes[..cut]);
            let whole = ends.iter().filter(|&&e| e <= cut).count() - 1;
            assert_eq!(r.changes.len(), whole, "cut at {cut}");
            assert_eq!(r.changes[..], changes[..whole]);
            assert_eq!(r.valid_len, ends[whole]);
        }
    }

    #[test]
    fn zeros_after_the_records_are_free_space_and_a_torn_record_before_them_is_torn() {
        let mut bytes = journal(&[grant(1), grant(2)]);
        let good = bytes.len();
        bytes.resize(good + 4096, 0);
        let r = replay(&bytes);
        assert_eq!((r.changes.len(), r.valid_len, r.torn_len), (2, good, 0));
        let mut partial = Vec::new();
        encode(&grant(3), &mut partial);
        bytes[good..good + 10].copy_from_slice(&partial[..10]);
        let r = replay(&bytes);
        assert_eq!((r.changes.len(), r.valid_len, r.torn_len), (2, good, 10));
    }

    #[test]
    fn a_flipped_bit_ends_the_replay_there() {
        let changes: Vec<LeaseChange> = (1..=3).map(grant).collect();
        let mut bytes = journal(&changes);
        let last = bytes.len() - 3;
        bytes[last] ^= 0x40;
        let r = replay(&bytes);
        assert_eq!(r.changes.len(), 2);
    }

    #[test]
    fn a_foreign_file_is_not_replayed() {
        assert!(replay(b"").bad_header);
        assert!(replay(b"1700000000 fa:16:3e:00:00:01 198.18.0.10 * *\n").bad_header);
    }
}
