//! Routing one metadata request: normalise the path, identify the instance (source address,
//! trusted proxy headers, or Neutron's signed headers), and pick the answer. Pure: the shell
//! passes the random bytes for `random_seed` and the stored password in.

use std::net::{IpAddr, Ipv4Addr};

use base64::Engine as _;
use bytes::{Bytes, BytesMut};
use hmac::{KeyInit, Mac};
use http::{HeaderMap, Method, StatusCode};

use super::tree::{Content, InstanceTree, Tree, TEXT};
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

/// The client's address: the peer, or, when the peer is a trusted proxy, the nearest address in
/// `X-Forwarded-For` (else `Forwarded: for=`) that is not itself a trusted proxy.
pub fn client_address(peer: IpAddr, headers: &HeaderMap, trusted: &[IpAddr]) -> IpAddr {
    if !trusted.contains(&peer) {
        return peer;
    }
    let hops = |name: &str, parse: fn(&str) -> Vec<String>| -> Vec<String> {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(parse)
            .collect()
    };
    let xff = hops("x-forwarded-for", |v| {
        v.split(',').map(|s| s.trim().to_string()).collect()
    });
    let fwd = hops("forwarded", |v| {
        v.split(',')
            .filter_map(|element| {
                element.split(';').find_map(|pair| {
                    let (k, val) = pair.trim().split_once('=')?;
                    k.eq_ignore_ascii_case("for").then(|| {
                        val.trim()
                            .trim_matches('"')
                            .trim_start_matches('[')
                            .split(']')
                            .next()
                            .unwrap_or("")
                            .to_string()
                    })
                })
            })
            .collect()
    });
    let chain = if xff.is_empty() { fwd } else { xff };
    chain
        .iter()
        .rev()
        .filter_map(|a| a.parse::<IpAddr>().ok())
        .find(|a| !trusted.contains(a))
        .unwrap_or(peer)
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
    if text.len() % 2 != 0 {
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
            let addr = client_address(req.peer, req.headers, &settings.trusted_proxies);
            match ipv4_of(addr).and_then(|a| tree.by_ip(a)) {
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
            Method::POST => Outcome::SetPassword {
                uuid: inst.uuid.clone(),
                value: Bytes::copy_from_slice(req.body),
            },
            _ => Outcome::Respond(Response::text(StatusCode::BAD_REQUEST, "Bad request")),
        },
    }
}
