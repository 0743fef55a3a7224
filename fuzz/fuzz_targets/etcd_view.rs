//! What a node builds from etcd: any keys and values (a broken or hostile writer) go through
//! the mirror (list, then events) and become a served state without a panic; values that do
//! not parse are left out with a reason, and the saved copy of the view reads back equal.
#![no_main]
use libfuzzer_sys::fuzz_target;
use netnode::manager::etcd::keys::Layout;
use netnode::manager::etcd::record::{self, Stored};
use netnode::source::etcd::mirror::{Change, Mirror, Saved};

fuzz_target!(|data: &[u8]| {
    let layout = Layout {
        prefix: "/nn".into(),
        host: "h".into(),
    };
    let mut m = Mirror::new(&layout);
    // Lines of `key=value`; a key with no '=' is a delete; the first half is the list.
    let text = String::from_utf8_lossy(data);
    let lines: Vec<&str> = text.lines().collect();
    let (listed, events) = lines.split_at(lines.len() / 2);
    let stored = |v: &str, i: usize| Stored {
        value: v.as_bytes().to_vec().into(),
        create_revision: i as i64,
    };
    m.replace(
        1,
        listed
            .iter()
            .enumerate()
            .filter_map(|(i, l)| l.split_once('=').map(|(k, v)| (k.to_string(), stored(v, i))))
            .collect(),
    );
    let changes = events
        .iter()
        .enumerate()
        .map(|(i, l)| match l.split_once('=') {
            Some((k, v)) => Change::Put {
                key: k.to_string(),
                value: v.as_bytes().to_vec().into(),
                create_revision: i as i64,
            },
            None => Change::Delete { key: l.to_string() },
        })
        .collect();
    m.apply(2, changes);
    let view = m.view(true);
    let (served, problems) = record::served(&view.networks, &view.ports, view.revision);
    assert!(served.networks.len() <= view.networks.len());
    assert!(problems.len() <= view.networks.len() + view.ports.len());
    // The saved copy comes back as it was (values are kept as text: valid UTF-8 ones).
    if view
        .networks
        .values()
        .chain(view.ports.values())
        .all(|s| std::str::from_utf8(&s.value).is_ok())
    {
        let text = serde_json::to_vec(&Saved::of(&view)).unwrap();
        let back: Saved = serde_json::from_slice(&text).unwrap();
        assert_eq!(back.into_view(&layout), netnode::source::etcd::View { live: false, ..view });
    }
});
