//! This node's copy of its two key ranges (pure): a list replaces it, watch events change it,
//! and each published [`View`] is one consistent revision of it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::manager::etcd::keys::Layout;
use crate::manager::etcd::record::Stored;

/// One key's change, from a watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Created or replaced.
    Put {
        /// The key.
        key: String,
        /// The value.
        value: bytes::Bytes,
        /// The revision that created it.
        create_revision: i64,
    },
    /// Deleted (or its lease expired).
    Delete {
        /// The key.
        key: String,
    },
}

/// What a node serves from etcd at one revision.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct View {
    /// The revision it is complete up to.
    pub revision: i64,
    /// `<prefix>/networks/...`.
    pub networks: BTreeMap<String, Stored>,
    /// `<prefix>/hosts/<host>/ports/...`.
    pub ports: BTreeMap<String, Stored>,
    /// Read from a live watch (false: etcd is unreachable, this is the last copy).
    pub live: bool,
}

/// The two ranges a node follows, and its copy of them.
#[derive(Debug, Clone)]
pub struct Mirror {
    networks_prefix: String,
    ports_prefix: String,
    view: View,
}

impl Mirror {
    /// An empty mirror of `layout`'s networks and its host's ports.
    pub fn new(layout: &Layout) -> Mirror {
        Mirror {
            networks_prefix: layout.networks(),
            ports_prefix: layout.own_ports(),
            view: View::default(),
        }
    }

    /// The prefixes it follows: networks, then this host's ports.
    pub fn prefixes(&self) -> [&str; 2] {
        [&self.networks_prefix, &self.ports_prefix]
    }

    fn slot(&mut self, key: &str) -> Option<&mut BTreeMap<String, Stored>> {
        if key.starts_with(&self.networks_prefix) {
            Some(&mut self.view.networks)
        } else if key.starts_with(&self.ports_prefix) {
            Some(&mut self.view.ports)
        } else {
            None
        }
    }

    /// Replaces everything with a list read at `revision`: keys that vanished meanwhile (a
    /// compaction or an outage hid their delete events) are gone.
    pub fn replace(&mut self, revision: i64, listed: Vec<(String, Stored)>) {
        self.view.networks.clear();
        self.view.ports.clear();
        for (key, stored) in listed {
            if let Some(slot) = self.slot(&key) {
                slot.insert(key, stored);
            }
        }
        self.view.revision = revision;
    }

    /// Applies one watch response's changes, made at `revision`; returns how many touched
    /// this node's ranges (keys outside them are counted by the caller: there should be none).
    pub fn apply(&mut self, revision: i64, changes: Vec<Change>) -> usize {
        let mut touched = 0;
        for c in changes {
            match c {
                Change::Put {
                    key,
                    value,
                    create_revision,
                } => {
                    if let Some(slot) = self.slot(&key) {
                        slot.insert(
                            key,
                            Stored {
                                value,
                                create_revision,
                            },
                        );
                        touched += 1;
                    }
                }
                Change::Delete { key } => {
                    if let Some(slot) = self.slot(&key) {
                        if slot.remove(&key).is_some() {
                            touched += 1;
                        }
                    }
                }
            }
        }
        self.view.revision = self.view.revision.max(revision);
        touched
    }

    /// The revision the copy is complete up to.
    pub fn revision(&self) -> i64 {
        self.view.revision
    }

    /// How many of this host's ports it holds.
    pub fn port_count(&self) -> usize {
        self.view.ports.len()
    }

    /// A copy to publish.
    pub fn view(&self, live: bool) -> View {
        View {
            live,
            ..self.view.clone()
        }
    }

    /// Starts from a saved copy (a node restarted while etcd was down).
    pub fn restore(&mut self, saved: &View) {
        self.view = View {
            live: false,
            ..saved.clone()
        };
    }
}

/// The saved copy's file format: values are JSON text.
#[derive(Debug, Serialize, Deserialize)]
pub struct Saved {
    /// The view's revision.
    pub revision: i64,
    /// (key, create revision, value) of every key.
    pub keys: Vec<(String, i64, String)>,
}

impl Saved {
    /// The view as saved.
    pub fn of(view: &View) -> Saved {
        Saved {
            revision: view.revision,
            keys: view
                .networks
                .iter()
                .chain(&view.ports)
                .map(|(k, s)| {
                    (
                        k.clone(),
                        s.create_revision,
                        String::from_utf8_lossy(&s.value).into_owned(),
                    )
                })
                .collect(),
        }
    }

    /// Back into a mirror of `layout` (keys of other ranges, from another host's config,
    /// are dropped).
    pub fn into_view(self, layout: &Layout) -> View {
        let mut m = Mirror::new(layout);
        m.replace(
            self.revision,
            self.keys
                .into_iter()
                .map(|(k, create_revision, v)| {
                    (
                        k,
                        Stored {
                            value: v.into_bytes().into(),
                            create_revision,
                        },
                    )
                })
                .collect(),
        );
        m.view(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout() -> Layout {
        Layout {
            prefix: "/nn".into(),
            host: "a".into(),
        }
    }

    fn put(key: &str, v: &str, rev: i64) -> Change {
        Change::Put {
            key: key.into(),
            value: v.as_bytes().to_vec().into(),
            create_revision: rev,
        }
    }

    #[test]
    fn events_change_only_the_followed_ranges() {
        let mut m = Mirror::new(&layout());
        assert_eq!(
            m.apply(
                5,
                vec![
                    put("/nn/networks/n1", "{}", 3),
                    put("/nn/hosts/a/ports/v1", "{}", 5),
                    put("/nn/hosts/ab/ports/v2", "{}", 5),
                ]
            ),
            2
        );
        assert_eq!(m.view(true).ports.len(), 1);
        assert_eq!(
            m.apply(
                6,
                vec![Change::Delete {
                    key: "/nn/hosts/a/ports/v1".into()
                }]
            ),
            1
        );
        assert!(m.view(true).ports.is_empty());
        assert_eq!(m.revision(), 6);
    }

    #[test]
    fn a_relist_drops_what_vanished_and_a_saved_copy_comes_back_whole() {
        let mut m = Mirror::new(&layout());
        m.apply(4, vec![put("/nn/hosts/a/ports/old", "{}", 4)]);
        m.replace(
            9,
            vec![(
                "/nn/hosts/a/ports/new".into(),
                Stored {
                    value: b"{\"x\":1}".to_vec().into(),
                    create_revision: 8,
                },
            )],
        );
        let v = m.view(true);
        assert_eq!(
            v.ports.keys().collect::<Vec<_>>(),
            ["/nn/hosts/a/ports/new"]
        );
        let text = serde_json::to_string(&Saved::of(&v)).unwrap();
        let back = serde_json::from_str::<Saved>(&text)
            .unwrap()
            .into_view(&layout());
        assert_eq!(back, View { live: false, ..v });
    }
}
