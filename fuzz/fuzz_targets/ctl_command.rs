//! The control socket's command parser: any bytes are refused or parsed, never a panic; a
//! parsed command, sent as `netnode ctl` sends it, parses to the same command; every answer
//! encodes as one JSON line.
#![no_main]
use libfuzzer_sys::fuzz_target;
use netnode::ctl::protocol::{self, Answer};

fuzz_target!(|data: &[u8]| {
    match protocol::parse(data) {
        Ok(command) => {
            let line = protocol::request_line(&command);
            let again = line.strip_suffix(b"\n").unwrap();
            assert_eq!(protocol::parse(again), Ok(command));
        }
        Err(e) => {
            let line = Answer::error(e.to_string()).to_line();
            assert_eq!(line.iter().filter(|b| **b == b'\n').count(), 1);
            let back = Answer::parse(&line).unwrap();
            assert_eq!(back.result, 1);
        }
    }
});
