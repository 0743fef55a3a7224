//! Routing one metadata request: normalise the path, identify the instance (source address,
//! trusted proxy headers, or Neutron's signed headers), and pick the answer. Pure: the shell
//! passes the random bytes for `random_seed` and the stored password in.

use std::net::{IpAddr, Ipv4Addr};

use base64::Engine as _;
use bytes::{Bytes, BytesMut};
use hmac::{KeyInit, Mac};
use http::{HeaderMap, Method, StatusCode};

use super::tree::{Content, InstanceTree, Tree, TEXT};
use crate::table::config::ForwardedHeader;
use crate::table::instance::MetadataSettings;

/// Largest password nova accepts.
pub const MAX_PASSWORD: usize = 1020;
/// Random bytes in `random_seed`.
pub const SEED_BYTES: usize = 512;

/// An HTTP answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Status code.
    pub status: StatusCode,
    /// Content-Type.
    pub content_type: &'static str,
    /// Body.
    pub body: Bytes,
}

impl Response {
    fn text(status: StatusCode, body: &'static str) -> Response {
        Response {
            status,
            content_type: TEXT,
            body: Bytes::from_static(body.as_bytes()),
        }
    }

    /// 404 with a plain body.
    pub fn not_found() -> Response {
        Response::text(
            StatusCode::NOT_FOUND,
            "404 Not Found\n\nThe resource could not be found.\n",
        )
    }
}

/// What to do with a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Send this.
    Respond(Response),
    /// Store the instance's password if it has none (200), else answer 409.
    SetPassword {
        /// The instance.
        uuid: String,
        /// The password as posted.
        value: Bytes,
    },
}

/// One request, as values.
#[derive(Debug)]
pub struct Request<'a> {
    /// Method.
    pub method: &'a Method,
    /// Path, raw (percent-encoded, possibly with a query).
    pub path: &'a str,
    /// The TCP peer.
    pub peer: IpAddr,
    /// Headers.
    pub headers: &'a HeaderMap,
    /// The body (read only for password POSTs; empty otherwise).
    pub body: &'a [u8],
}

/// What the shell knows that the tree does not.
pub struct Context<'a> {
    /// The instance's stored password, looked up by UUID.
    pub password: &'a dyn Fn(&str) -> Option<Bytes>,
    /// Fresh random bytes for `random_seed`.
    pub random: &'a dyn Fn() -> [u8; SEED_BYTES],
}

/// Normalises a request path as nova's posixpath.normpath does, after percent-decoding: no
/// empty segments, `.` dropped, `..` pops (never above the root). `None` when the encoding is
/// invalid.
pub fn normalise(raw: &str) -> Option<String> {
    let path = raw.split(['?', '#']).next().unwrap_or("");
    let bytes = path.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let text = std::str::from_utf8(hex).ok()?;
            decoded.push(u8::from_str_radix(text, 16).ok()?);
            i += 3;
        } else {
            decoded.push(b);
            i += 1;
        }
    }
    let decoded = String::from_utf8(decoded).ok()?;
    let mut segments: Vec<&str> = Vec::new();
    for seg in decoded.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    Some(segments.join("/"))
}

/// One hop of a forwarding header: an address, with a port or brackets (RFC 7239) removed.
fn hop_address(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim().trim_matches('"');
    if let Ok(a) = hop.parse() {
        return Some(a);
    }
    if let Some(rest) = hop.strip_prefix('[') {
        return rest.split(']').next()?.parse().ok();
    }
    let (host, port) = hop.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    host.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)
}

/// The client's address. From an untrusted peer: the peer itself, whatever the headers say.
/// From a trusted proxy: the operator's one chosen header is read from the nearest hop back,
/// skipping trusted proxies; the first untrusted hop is the client, and if it is not an address
/// (`unknown`, garbage) nobody is identified (`None`), rather than reading further back into
/// hops the client may have written itself. No header: the proxy itself.
pub fn client_address(
    peer: IpAddr,
    headers: &HeaderMap,
    trusted: &[IpAddr],
    header: ForwardedHeader,
) -> Option<IpAddr> {
    if !trusted.contains(&peer) {
        return Some(peer);
    }
    let values = headers.get_all(match header {
        ForwardedHeader::XForwardedFor => "x-forwarded-for",
        ForwardedHeader::Forwarded => "forwarded",
    });
    let mut hops: Vec<String> = Vec::new();
    for v in values.iter() {
        let Ok(v) = v.to_str() else { return None };
        for element in v.split(',') {
            let hop = match header {
                ForwardedHeader::XForwardedFor => Some(element.to_string()),
                ForwardedHeader::Forwarded => element.split(';').find_map(|pair| {
                    let (k, val) = pair.trim().split_once('=')?;
                    k.trim()
                        .eq_ignore_ascii_case("for")
                        .then(|| val.to_string())
                }),
            };
            hops.push(hop.unwrap_or_default());
        }
    }
    if hops.is_empty() {
        return Some(peer);
    }
    for hop in hops.iter().rev() {
        match hop_address(hop) {
            Some(a) if trusted.contains(&a) => continue,
            found => return found,
        }
    }
    Some(peer)
}

fn ipv4_of(addr: IpAddr) -> Option<Ipv4Addr> {
    match addr {
        IpAddr::V4(a) => Some(a),
        IpAddr::V6(a) => a.to_ipv4_mapped(),
    }
}

/// Neutron proxy mode: the instance comes from signed headers.
fn identify_by_headers<'t>(
    tree: &'t Tree,
    headers: &HeaderMap,
    secret: &str,
) -> Result<&'t InstanceTree, Response> {
    let one = |name: &'static str,
               missing: &'static str,
               many: &'static str|
     -> Result<String, Response> {
        let mut values = headers.get_all(name).iter();
        let first = values
            .next()
            .ok_or(Response::text(StatusCode::BAD_REQUEST, missing))?;
        if values.next().is_some() {
            return Err(Response::text(StatusCode::BAD_REQUEST, many));
        }
        first
            .to_str()
            .map(str::to_string)
            .map_err(|_| Response::text(StatusCode::BAD_REQUEST, missing))
    };
    let instance_id = one(
        "x-instance-id",
        "X-Instance-ID header is missing from request.",
        "Multiple X-Instance-ID headers found within request.",
    )?;
    let signature = one(
        "x-instance-id-signature",
        "X-Instance-ID-Signature header is missing from request.",
        "Multiple X-Instance-ID-Signature headers found within request.",
    )?;
    let tenant_id = one(
        "x-tenant-id",
        "X-Tenant-ID header is missing from request.",
        "Multiple X-Tenant-ID headers found within request.",
    )?;
    if !signature_valid(secret, &instance_id, &signature) {
        return Err(Response::text(
            StatusCode::FORBIDDEN,
            "Invalid proxy request signature.",
        ));
    }
    let inst = tree.by_uuid(&instance_id).ok_or_else(Response::not_found)?;
    if inst.project_id != tenant_id {
        return Err(Response::not_found());
    }
    Ok(inst)
}

/// hex(HMAC-SHA256(secret, instance_id)) == signature, compared in constant time.
pub fn signature_valid(secret: &str, instance_id: &str, signature: &str) -> bool {
    let Some(given) = decode_hex(signature) else {
        return false;
    };
    let Ok(mut mac) = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()) else {
        return false;
    };
    mac.update(instance_id.as_bytes());
    mac.verify_slice(&given).is_ok()
}

/// The signature a Neutron metadata proxy sends for an instance.
pub fn sign(secret: &str, instance_id: &str) -> String {
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes())
        .expect("HMAC takes any key length");
    mac.update(instance_id.as_bytes());
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Answers one request.
pub fn answer(
    tree: &Tree,
    settings: &MetadataSettings,
    req: &Request<'_>,
    ctx: &Context<'_>,
) -> Outcome {
    let Some(path) = normalise(req.path) else {
        return Outcome::Respond(Response::not_found());
    };
    if path.is_empty() {
        return Outcome::Respond(Response {
            status: StatusCode::OK,
            content_type: TEXT,
            body: tree.root.clone(),
        });
    }
    let inst = match &settings.proxy_shared_secret {
        Some(secret) => match identify_by_headers(tree, req.headers, secret) {
            Ok(i) => i,
            Err(r) => return Outcome::Respond(r),
        },
        None => {
            let addr = client_address(
                req.peer,
                req.headers,
                &settings.trusted_proxies,
                settings.forwarded_header,
            );
            match addr.and_then(ipv4_of).and_then(|a| tree.by_ip(a)) {
                Some(i) => i,
                None => return Outcome::Respond(Response::not_found()),
            }
        }
    };
    let Some(node) = inst.paths.get(&path) else {
        return Outcome::Respond(Response::not_found());
    };
    let ok = |body: Bytes| {
        Outcome::Respond(Response {
            status: StatusCode::OK,
            content_type: node.content_type,
            body,
        })
    };
    match &node.content {
        Content::Static(b) => ok(b.clone()),
        Content::WithSeed(before, after) => {
            let seed = base64::engine::general_purpose::STANDARD.encode((ctx.random)());
            let mut body = BytesMut::with_capacity(before.len() + seed.len() + after.len());
            body.extend_from_slice(before);
            body.extend_from_slice(seed.as_bytes());
            body.extend_from_slice(after);
            ok(body.freeze())
        }
        Content::Password => match *req.method {
            Method::GET | Method::HEAD => ok((ctx.password)(&inst.uuid).unwrap_or_default()),
            Method::POST if req.body.len() > MAX_PASSWORD => Outcome::Respond(Response::text(
                StatusCode::BAD_REQUEST,
                "Request is too large.",
            )),
            // nova stores what is posted; an empty value is no password, so storing it would only
            // cost a file write per request.
            Method::POST if req.body.is_empty() => ok(Bytes::new()),
            Method::POST => Outcome::SetPassword {
                uuid: inst.uuid.clone(),
                value: Bytes::copy_from_slice(req.body),
            },
            _ => Outcome::Respond(Response::text(StatusCode::BAD_REQUEST, "Bad request")),
        },
    }
}
