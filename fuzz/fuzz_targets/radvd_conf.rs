//! radvd.conf: any text gives interfaces or an error with a line, never a panic; what parses
//! builds a table.
#![no_main]
use libfuzzer_sys::fuzz_target;
use netnode::compat::radvd;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    match radvd::parse(&text) {
        Ok(ifaces) => {
            let _ = radvd::to_table(&ifaces);
        }
        Err(e) => assert!(e.line >= 1),
    }
});
