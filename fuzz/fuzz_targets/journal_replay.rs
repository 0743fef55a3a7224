//! Lease journal replay of torn or corrupted bytes: never a panic, and what is replayed is
//! exactly the intact prefix (re-encoding the records gives back those bytes).
#![no_main]
use libfuzzer_sys::fuzz_target;
use netnode::dhcp::journal;

fuzz_target!(|data: &[u8]| {
    let replay = journal::replay(data);
    assert!(replay.valid_len <= data.len());
    if !replay.bad_header {
        let mut again = journal::HEADER.to_vec();
        for c in &replay.changes {
            journal::encode(c, &mut again);
        }
        // Empty host names replay as absent and re-encode the same (a zero length).
        assert_eq!(&again[..], &data[..replay.valid_len]);
    }
});
