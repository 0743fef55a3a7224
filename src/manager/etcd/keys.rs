//! The key layout under one prefix. Each node lists and watches two ranges only, its own
//! host's ports and the networks, so a write reaches the nodes it concerns and no other.
//!
//! ```text
//! <prefix>/networks/<label>               a network (JSON): every node watches these
//! <prefix>/hosts/<host>/ports/<vif>       a port on that host (JSON): only that host watches
//! <prefix>/addresses/<label>/<ip>         an allocated fixed IP ("<host>/<vif>"), created with
//!                                         compare-and-swap so no address is handed out twice
//! <prefix>/servers/<name>                 a server (JSON): its host and ports
//! <prefix>/floating/<ip>                  a floating IP (JSON): pool, project, association
//! <prefix>/nodes/<host>                   a live node (JSON), kept by its lease
//! ```

use std::net::Ipv4Addr;

/// The keys of one prefix, for one host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// Without a trailing `/`.
    pub prefix: String,
    /// This node's host.
    pub host: String,
}

/// Checks a name used as one key segment: not empty, no `/`, no control characters.
pub fn segment(what: &str, name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 253 {
        return Err(format!("{what} {name:?}: empty or longer than 253 bytes"));
    }
    if name.contains('/') || name.chars().any(char::is_control) {
        return Err(format!(
            "{what} {name:?}: a '/' or control character cannot be part of an etcd key segment"
        ));
    }
    Ok(())
}

/// Normalizes a configured prefix: one leading `/`, none trailing (`""` and `/` are refused:
/// netnode's keys never share the root with other users of the cluster).
pub fn prefix(text: &str) -> Result<String, String> {
    let p = text.trim_end_matches('/');
    if p.is_empty() || !p.starts_with('/') {
        return Err(format!(
            "prefix {text:?}: must start with '/' and name more than the root"
        ));
    }
    Ok(p.to_string())
}

impl Layout {
    /// Every network: `<prefix>/networks/`.
    pub fn networks(&self) -> String {
        format!("{}/networks/", self.prefix)
    }

    /// One network.
    pub fn network(&self, label: &str) -> String {
        format!("{}/networks/{label}", self.prefix)
    }

    /// Every port of `host`: `<prefix>/hosts/<host>/ports/`.
    pub fn host_ports(&self, host: &str) -> String {
        format!("{}/hosts/{host}/ports/", self.prefix)
    }

    /// This node's ports.
    pub fn own_ports(&self) -> String {
        self.host_ports(&self.host)
    }

    /// One port.
    pub fn port(&self, host: &str, vif: &str) -> String {
        format!("{}/hosts/{host}/ports/{vif}", self.prefix)
    }

    /// Every allocated address of a network.
    pub fn addresses(&self, label: &str) -> String {
        format!("{}/addresses/{label}/", self.prefix)
    }

    /// One allocated address.
    pub fn address(&self, label: &str, ip: Ipv4Addr) -> String {
        format!("{}/addresses/{label}/{ip}", self.prefix)
    }

    /// Every server.
    pub fn servers(&self) -> String {
        format!("{}/servers/", self.prefix)
    }

    /// One server.
    pub fn server(&self, name: &str) -> String {
        format!("{}/servers/{name}", self.prefix)
    }

    /// Every floating IP.
    pub fn floatings(&self) -> String {
        format!("{}/floating/", self.prefix)
    }

    /// One floating IP.
    pub fn floating(&self, address: Ipv4Addr) -> String {
        format!("{}/floating/{address}", self.prefix)
    }

    /// Every live node.
    pub fn nodes(&self) -> String {
        format!("{}/nodes/", self.prefix)
    }

    /// This node's liveness key.
    pub fn node(&self) -> String {
        format!("{}/nodes/{}", self.prefix, self.host)
    }
}

/// The end of the range of every key starting with `prefix` (etcd's prefix range: the prefix
/// with its last byte incremented).
pub fn range_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_watches_two_disjoint_ranges() {
        let l = Layout {
            prefix: "/nn".into(),
            host: "h1".into(),
        };
        assert_eq!(l.own_ports(), "/nn/hosts/h1/ports/");
        assert_eq!(l.port("h1", "v"), "/nn/hosts/h1/ports/v");
        // Host h1's range does not contain h10's ports.
        assert!(!l.port("h10", "v").starts_with(&l.own_ports()));
        assert_eq!(range_end("/nn/networks/"), b"/nn/networks0".to_vec());
    }

    #[test]
    fn prefixes_and_segments_are_checked() {
        assert_eq!(prefix("/netnode/").unwrap(), "/netnode");
        assert!(prefix("/").is_err());
        assert!(prefix("netnode").is_err());
        assert!(segment("host", "a/b").is_err());
        assert!(segment("host", "").is_err());
        assert!(segment("host", "node-1.example").is_ok());
    }
}
