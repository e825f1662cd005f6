//! The HTTP side: `CONNECT host:port` tunnels and plain `GET http://host/…` forwarding.
//!
//! Runs in: the client, on the proxy's tokio tasks.
//!
//! A forwarded request is rewritten to origin form with `Connection: close`, and its `Host`
//! header is replaced by the checked authority (RFC 9112 §3.2.2): one connection carries
//! one request to the one host that was checked, so neither a second pipelined request nor
//! a forged `Host` header can steer traffic elsewhere.

use super::connect::{self, Failure};
use super::relay;
use super::{Shared, HANDSHAKE_TIMEOUT};
use std::io;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::time::timeout;

/// Request line plus headers, in all.
const MAX_HEAD: usize = 64 << 10;

/// Headers that belong to the hop between client and proxy (or that the proxy sets itself),
/// never forwarded as received.
const HOP_HEADERS: &[&str] = &["connection", "proxy-connection", "proxy-authorization", "keep-alive", "host"];

enum HeadError {
    TooLarge,
    Io(io::Error),
}

pub(super) async fn serve(mut client: UnixStream, first: u8, shared: &Shared, handoff: bool) -> io::Result<()> {
    let (buf, head_len) = match timeout(HANDSHAKE_TIMEOUT, read_head(&mut client, first)).await {
        Err(_) => return Ok(()),
        Ok(Err(HeadError::Io(e))) => return Err(e),
        Ok(Err(HeadError::TooLarge)) => {
            return reject(client, 431, "Request Header Fields Too Large", "corral: request head over 64 KiB").await
        }
        Ok(Ok(head)) => head,
    };
    let request = match parse(&buf[..head_len]) {
        Ok(request) => request,
        Err(why) => return reject(client, 400, "Bad Request", &format!("corral: {why}")).await,
    };
    let leftover = &buf[head_len..];
    let (protocol, pending) = match request.kind {
        Kind::Connect => ("connect", leftover.to_vec()),
        Kind::Forward { origin } => {
            let mut head = rewrite(&request, origin);
            head.extend_from_slice(leftover);
            ("http", head)
        }
    };
    let upstream = match connect::open(shared, request.host, request.port, protocol).await {
        Ok(upstream) => upstream,
        Err(failure) => {
            let text = failure.describe(request.host, request.port);
            return match failure {
                Failure::Refused { .. } => reject(client, 403, "Forbidden", &text).await,
                Failure::Unresolved(_) | Failure::Unreachable(_) => reject(client, 502, "Bad Gateway", &text).await,
            };
        }
    };
    let reply: &[u8] = match request.kind {
        Kind::Connect => b"HTTP/1.1 200 Connection established\r\n\r\n",
        // A forwarded request's connection stays with its first origin (later requests on
        // it are relayed as they come), so it is a tunnel like CONNECT's.
        Kind::Forward { .. } => b"",
    };
    relay::tunnel(client, upstream, reply, &pending, handoff).await
}

/// Reads until the empty line ending the head; returns the buffer and the head's length
/// (bytes after it belong to the body or the tunnel).
async fn read_head(client: &mut UnixStream, first: u8) -> Result<(Vec<u8>, usize), HeadError> {
    let mut buf = Vec::with_capacity(4096);
    buf.push(first);
    let mut chunk = vec![0u8; 16 << 10];
    let mut scanned = 0;
    loop {
        if let Some(end) = head_end(&buf, scanned) {
            return if end > MAX_HEAD { Err(HeadError::TooLarge) } else { Ok((buf, end)) };
        }
        if buf.len() >= MAX_HEAD {
            return Err(HeadError::TooLarge);
        }
        // The terminator may straddle two reads.
        scanned = buf.len().saturating_sub(2);
        let n = client.read(&mut chunk).await.map_err(HeadError::Io)?;
        if n == 0 {
            return Err(HeadError::Io(io::ErrorKind::UnexpectedEof.into()));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// End of the head (just after the empty line), searching from `from`; bare LF line ends
/// are tolerated as RFC 9112 §2.2 allows.
fn head_end(buf: &[u8], from: usize) -> Option<usize> {
    (from..buf.len()).find_map(|i| {
        let rest = &buf[i..];
        if rest.starts_with(b"\n\r\n") {
            Some(i + 3)
        } else if rest.starts_with(b"\n\n") {
            Some(i + 2)
        } else {
            None
        }
    })
}

struct Request<'a> {
    method: &'a str,
    version: &'a str,
    host: &'a str,
    port: u16,
    /// `host[:port]` as written, for the `Host` header.
    authority: &'a str,
    kind: Kind<'a>,
    /// Header lines as received (without line ends), hop-by-hop ones already dropped.
    headers: Vec<&'a [u8]>,
}

#[derive(Clone, Copy)]
enum Kind<'a> {
    Connect,
    /// Path and query for the origin-form request line.
    Forward {
        origin: &'a str,
    },
}

fn parse(head: &[u8]) -> Result<Request<'_>, &'static str> {
    let mut lines = head.split(|&b| b == b'\n').map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let line = std::str::from_utf8(lines.next().unwrap_or_default()).map_err(|_| "request line is not text")?;
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("malformed request line");
    };
    if method.is_empty() || !method.bytes().all(is_token) {
        return Err("malformed method");
    }
    if version != "HTTP/1.1" && version != "HTTP/1.0" {
        return Err("only HTTP/1.0 and HTTP/1.1 are supported");
    }
    let mut headers = Vec::new();
    for line in lines.take_while(|l| !l.is_empty()) {
        let colon = line.iter().position(|&b| b == b':').ok_or("header line without `:`")?;
        // Whitespace before the colon or a folded line invites request smuggling.
        if colon == 0 || !line[..colon].iter().copied().all(is_token) {
            return Err("malformed header name");
        }
        let name = std::str::from_utf8(&line[..colon]).map_err(|_| "malformed header name")?;
        if !HOP_HEADERS.iter().any(|h| h.eq_ignore_ascii_case(name)) {
            headers.push(line);
        }
    }
    let (authority, kind) = if method == "CONNECT" {
        (target, Kind::Connect)
    } else {
        let rest = strip_prefix_ignore_case(target, "http://").ok_or_else(|| {
            if strip_prefix_ignore_case(target, "https://").is_some() {
                "https:// URIs go through CONNECT"
            } else {
                "a proxy request needs an absolute http:// URI"
            }
        })?;
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let origin = rest[end..].split('#').next().unwrap_or_default();
        (&rest[..end], Kind::Forward { origin })
    };
    let default_port = match kind {
        Kind::Connect => None,
        Kind::Forward { .. } => Some(80),
    };
    let (host, port) = split_authority(authority, default_port)?;
    Ok(Request { method, version, host, port, authority, kind, headers })
}

/// `host:port`, `[v6]:port`, or (with a default port) the same without `:port`.
fn split_authority(authority: &str, default_port: Option<u16>) -> Result<(&str, u16), &'static str> {
    if authority.is_empty() || authority.contains('@') {
        return Err("malformed authority");
    }
    let (host, port) = match authority.strip_prefix('[') {
        Some(rest) => {
            let close = rest.find(']').ok_or("malformed IPv6 authority")?;
            let after = &rest[close + 1..];
            let port =
                if after.is_empty() { None } else { Some(after.strip_prefix(':').ok_or("malformed authority")?) };
            (&authority[..close + 2], port)
        }
        None => match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        },
    };
    let port = match port {
        Some(p) if !p.is_empty() => match p.parse::<u16>() {
            Ok(n) if n > 0 && p.bytes().all(|b| b.is_ascii_digit()) => n,
            _ => return Err("malformed port"),
        },
        _ => default_port.ok_or("CONNECT needs host:port")?,
    };
    if host.is_empty() {
        return Err("empty host");
    }
    Ok((host, port))
}

/// The head sent upstream: origin-form request line, the checked `Host`, the client's
/// other end-to-end headers, `Connection: close`.
fn rewrite(request: &Request<'_>, origin: &str) -> Vec<u8> {
    let path = match origin {
        "" => "/".to_string(),
        o if o.starts_with('?') => format!("/{o}"),
        o => o.to_string(),
    };
    let mut head =
        format!("{} {path} {}\r\nHost: {}\r\n", request.method, request.version, request.authority).into_bytes();
    for line in &request.headers {
        head.extend_from_slice(line);
        head.extend_from_slice(b"\r\n");
    }
    head.extend_from_slice(b"Connection: close\r\n\r\n");
    head
}

/// Sends an error response and closes gracefully: unread request bytes must not turn the
/// close into a reset that destroys the response on its way through the bridge.
async fn reject(mut client: UnixStream, status: u16, reason: &str, text: &str) -> io::Result<()> {
    let response = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{text}\n",
        text.len() + 1
    );
    client.write_all(response.as_bytes()).await?;
    client.shutdown().await?;
    let mut sink = [0u8; 8192];
    let _ = timeout(Duration::from_secs(2), async {
        let mut drained = 0usize;
        while drained < (1 << 20) {
            match client.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => drained += n,
            }
        }
    })
    .await;
    Ok(())
}

fn is_token(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    match s.get(..prefix.len()) {
        Some(head) if head.eq_ignore_ascii_case(prefix) => Some(&s[prefix.len()..]),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_forward_requests_and_rewrites_them() {
        let head =
            b"GET http://Allowed.test:8080?q=1#frag HTTP/1.1\r\nHost: evil.test\r\nProxy-Connection: keep-alive\r\n\
            Proxy-Authorization: x\r\nAccept: */*\r\nConnection: keep-alive\r\nX-Raw: \xff\r\n\r\n";
        let r = parse(head).unwrap();
        assert_eq!((r.host, r.port, r.authority), ("Allowed.test", 8080, "Allowed.test:8080"));
        let Kind::Forward { origin } = r.kind else { panic!("not a forward") };
        assert_eq!(
            rewrite(&r, origin),
            b"GET /?q=1 HTTP/1.1\r\nHost: Allowed.test:8080\r\nAccept: */*\r\nX-Raw: \xff\r\nConnection: close\r\n\r\n"
        );
        let r = parse(b"POST http://a.test HTTP/1.0\r\n\r\n").unwrap();
        assert_eq!((r.host, r.port), ("a.test", 80));
        let Kind::Forward { origin } = r.kind else { panic!("not a forward") };
        assert!(rewrite(&r, origin).starts_with(b"POST / HTTP/1.0\r\nHost: a.test\r\n"));
    }

    #[test]
    fn parses_connect() {
        let r = parse(b"CONNECT [::1]:443 HTTP/1.1\r\nHost: [::1]:443\r\n\r\n").unwrap();
        assert_eq!((r.host, r.port), ("[::1]", 443));
        assert!(matches!(r.kind, Kind::Connect));
        let r = parse(b"CONNECT a.test:1 HTTP/1.0\n\n").unwrap();
        assert_eq!((r.host, r.port), ("a.test", 1));
    }

    #[test]
    fn refuses_malformed_requests() {
        for head in [
            &b"CONNECT a.test HTTP/1.1\r\n\r\n"[..],
            b"CONNECT a.test:0 HTTP/1.1\r\n\r\n",
            b"CONNECT a.test:99999 HTTP/1.1\r\n\r\n",
            b"CONNECT a.test:+1 HTTP/1.1\r\n\r\n",
            b"CONNECT :443 HTTP/1.1\r\n\r\n",
            b"CONNECT [::1:443 HTTP/1.1\r\n\r\n",
            b"GET https://a.test/ HTTP/1.1\r\n\r\n",
            b"GET /index.html HTTP/1.1\r\nHost: a.test\r\n\r\n",
            b"GET ftp://a.test/ HTTP/1.1\r\n\r\n",
            b"GET http://user@a.test/ HTTP/1.1\r\n\r\n",
            b"GET http:///x HTTP/1.1\r\n\r\n",
            b"GET http://a.test/ HTTP/2.0\r\n\r\n",
            b"GET  http://a.test/ HTTP/1.1\r\n\r\n",
            b"GET http://a.test/ HTTP/1.1\r\nBad Header: x\r\n\r\n",
            b"GET http://a.test/ HTTP/1.1\r\nNoColon\r\n\r\n",
            b"GET http://a.test/ HTTP/1.1\r\n folded: x\r\n\r\n",
            b"PRI * HTTP/2.0\r\n\r\n",
            b"\xff\xfe HTTP/1.1\r\n\r\n",
        ] {
            assert!(parse(head).is_err(), "{:?}", String::from_utf8_lossy(head));
        }
    }

    #[test]
    fn finds_the_end_of_the_head() {
        assert_eq!(head_end(b"GET / HTTP/1.1\r\n\r\nbody", 0), Some(18));
        assert_eq!(head_end(b"GET / HTTP/1.1\n\nbody", 0), Some(16));
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nA: b\r\n", 0), None);
    }
}
