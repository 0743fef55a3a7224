//! dnsmasq's command line and conf files: the input's first line is the argument list (split
//! on spaces), the rest is what any `--conf-file` reads; then the table config built from it.
#![no_main]
use libfuzzer_sys::fuzz_target;
use netnode::compat::dnsmasq;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (line, conf) = text.split_once('\n').unwrap_or((&text, ""));
    let args: Vec<String> = line.split(' ').filter(|a| !a.is_empty()).take(64).map(str::to_string).collect();
    let conf = conf.to_string();
    let read = move |_: &str| Ok(conf.clone());
    if let Ok(opts) = dnsmasq::parse(&args, &read) {
        let addrs = vec![("br100".to_string(), std::net::Ipv4Addr::new(198, 18, 0, 1), 24)];
        let _ = dnsmasq::to_config(&opts, &addrs);
    }
});
