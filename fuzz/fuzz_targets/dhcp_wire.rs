//! DHCPv4 decode: any bytes give a request or a counted error, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(req) = netnode::dhcp::wire::parse(data) {
        // A parsed request is internally consistent.
        assert!(data.len() >= netnode::dhcp::wire::HEADER_LEN);
        let _ = (
            req.client_id.as_deref(),
            req.parameters.as_deref(),
            req.relay_info.as_deref(),
        );
    }
});
