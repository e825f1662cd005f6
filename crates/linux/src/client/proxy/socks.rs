//! SOCKS5 (RFC 1928), CONNECT only, no authentication. Names (ATYP 3) are resolved here,
//! on the host, so the sandbox needs no resolver (`socks5h://`).
//!
//! Runs in: the client, on the proxy's tokio tasks.

use super::connect::{self, Failure};
use super::relay;
use super::{Shared, HANDSHAKE_TIMEOUT};
use corral_core::allowlist::Violation;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::time::timeout;

pub(super) const VERSION: u8 = 0x05;

const NO_AUTH: u8 = 0x00;
const NO_ACCEPTABLE_METHOD: u8 = 0xff;

const CMD_CONNECT: u8 = 0x01;
const CMD_BIND: u8 = 0x02;
const CMD_UDP_ASSOCIATE: u8 = 0x03;

const ATYP_IPV4: u8 = 0x01;
const ATYP_DOMAIN: u8 = 0x03;
const ATYP_IPV6: u8 = 0x04;

const REP_SUCCEEDED: u8 = 0x00;
const REP_GENERAL_FAILURE: u8 = 0x01;
const REP_NOT_ALLOWED: u8 = 0x02;
const REP_HOST_UNREACHABLE: u8 = 0x04;
const REP_CONNECTION_REFUSED: u8 = 0x05;
const REP_COMMAND_NOT_SUPPORTED: u8 = 0x07;
const REP_ADDRESS_TYPE_NOT_SUPPORTED: u8 = 0x08;

struct Request {
    command: u8,
    /// As the client sent it: an address, or a name (maybe invalid; `open` judges it).
    host: String,
    port: u16,
}

/// Serves one SOCKS5 client whose version byte has been read.
pub(super) async fn serve(mut client: UnixStream, shared: &Shared, handoff: bool) -> io::Result<()> {
    let request = match timeout(HANDSHAKE_TIMEOUT, handshake(&mut client)).await {
        Ok(Ok(Some(request))) => request,
        Ok(Ok(None)) | Err(_) => return Ok(()),
        Ok(Err(e)) => return Err(e),
    };
    if request.command != CMD_CONNECT {
        let what = if request.command == CMD_BIND { "BIND" } else { "UDP ASSOCIATE" };
        shared.record(Violation {
            destination: request.host,
            port: request.port,
            rule: None,
            reason: format!("SOCKS5 {what} is not supported; only CONNECT is"),
            protocol: "socks5".into(),
            count: 1,
        });
        return reply(&mut client, REP_COMMAND_NOT_SUPPORTED, None).await;
    }
    match connect::open(shared, &request.host, request.port, "socks5").await {
        Ok(upstream) => {
            let answer = reply_bytes(REP_SUCCEEDED, upstream.local_addr().ok());
            relay::tunnel(client, upstream, &answer, &[], handoff).await
        }
        Err(failure) => {
            let code = match &failure {
                Failure::Refused { .. } => REP_NOT_ALLOWED,
                Failure::Unresolved(_) => REP_HOST_UNREACHABLE,
                Failure::Unreachable(e) if e.kind() == io::ErrorKind::ConnectionRefused => REP_CONNECTION_REFUSED,
                Failure::Unreachable(_) => REP_HOST_UNREACHABLE,
            };
            reply(&mut client, code, None).await
        }
    }
}

/// Method negotiation and the request. `None`: the conversation ended with a refusal
/// already sent (no acceptable method, bad version, unknown command or address type).
async fn handshake(client: &mut UnixStream) -> io::Result<Option<Request>> {
    let count = client.read_u8().await?;
    let mut methods = vec![0u8; usize::from(count)];
    client.read_exact(&mut methods).await?;
    if !methods.contains(&NO_AUTH) {
        client.write_all(&[VERSION, NO_ACCEPTABLE_METHOD]).await?;
        return Ok(None);
    }
    client.write_all(&[VERSION, NO_AUTH]).await?;

    let mut header = [0u8; 4];
    client.read_exact(&mut header).await?;
    let [version, command, _reserved, atyp] = header;
    if version != VERSION {
        reply(client, REP_GENERAL_FAILURE, None).await?;
        return Ok(None);
    }
    let host = match atyp {
        ATYP_IPV4 => {
            let mut octets = [0u8; 4];
            client.read_exact(&mut octets).await?;
            Ipv4Addr::from(octets).to_string()
        }
        ATYP_IPV6 => {
            let mut octets = [0u8; 16];
            client.read_exact(&mut octets).await?;
            Ipv6Addr::from(octets).to_string()
        }
        ATYP_DOMAIN => {
            let len = client.read_u8().await?;
            let mut name = vec![0u8; usize::from(len)];
            client.read_exact(&mut name).await?;
            // Bytes that are not UTF-8 cannot form a valid name; keep them visible in the
            // violation anyway.
            String::from_utf8_lossy(&name).into_owned()
        }
        _ => {
            reply(client, REP_ADDRESS_TYPE_NOT_SUPPORTED, None).await?;
            return Ok(None);
        }
    };
    let port = client.read_u16().await?;
    if matches!(command, CMD_CONNECT | CMD_BIND | CMD_UDP_ASSOCIATE) {
        return Ok(Some(Request { command, host, port }));
    }
    reply(client, REP_COMMAND_NOT_SUPPORTED, None).await?;
    Ok(None)
}

/// `VER REP RSV ATYP BND.ADDR BND.PORT`; the bound address is 0.0.0.0:0 when unknown.
async fn reply(client: &mut UnixStream, code: u8, bound: Option<SocketAddr>) -> io::Result<()> {
    client.write_all(&reply_bytes(code, bound)).await
}

fn reply_bytes(code: u8, bound: Option<SocketAddr>) -> Vec<u8> {
    let bound = bound.unwrap_or_else(|| SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), 0));
    let mut out = vec![VERSION, code, 0x00];
    match bound.ip() {
        IpAddr::V4(ip) => {
            out.push(ATYP_IPV4);
            out.extend_from_slice(&ip.octets());
        }
        IpAddr::V6(ip) => {
            out.push(ATYP_IPV6);
            out.extend_from_slice(&ip.octets());
        }
    }
    out.extend_from_slice(&bound.port().to_be_bytes());
    out
}
