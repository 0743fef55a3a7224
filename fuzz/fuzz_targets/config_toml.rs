//! The TOML config and the table built from it (inline hosts, options, RA parameters,
//! instances): any text gives a table or an error naming the problem, never a panic.
#![no_main]
use std::path::Path;

use libfuzzer_sys::fuzz_target;
use netnode::table::{build, config::ConfigFile};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(mut config) = ConfigFile::parse(text) else {
        return;
    };
    // Files named by a hostile config are not read here: only the inline parts are fuzzed.
    for n in &mut config.network {
        n.hosts_file = None;
        n.opts_file = None;
    }
    config.metadata.as_mut().map(|m| m.vendordata_file = None);
    for i in &mut config.instance {
        i.user_data_file = None;
    }
    if let Ok(table) = build::from_config(&config, Path::new("fuzz.toml")) {
        let _ = netnode::metadata::Tree::build(&table);
        for b in table.bridges() {
            let _ = table.ra_for(&b);
        }
    }
});
