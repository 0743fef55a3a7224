//! dnsmasq opts-file parsing and option encoding: any text, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (lines, _problems) = netnode::table::opts::parse("fuzz.opts", &text);
    for l in &lines {
        assert!(!netnode::table::options::RESERVED.contains(&l.code));
    }
});
