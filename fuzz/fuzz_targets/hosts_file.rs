//! dnsmasq hosts-file parsing: any text gives entries and problems, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (entries, problems) = netnode::table::hosts::parse("fuzz.conf", &text);
    for p in &problems {
        assert!(p.line >= 1);
    }
    for e in &entries {
        assert!(!e.macs.is_empty() || e.client_id.is_some());
    }
});
