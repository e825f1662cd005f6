//! Bringing up loopback in the sandbox's new network namespace. Runs in: sandbox init.
//!
//! A new network namespace has only `lo`, and it is down: servers the command starts on
//! 127.0.0.1 would be unreachable without this.

use crate::sandbox::{Step, StepError};
use std::os::fd::AsRawFd;

pub fn loopback_up() -> Result<(), StepError> {
    let sock = nix::sys::socket::socket(
        nix::sys::socket::AddressFamily::Inet,
        nix::sys::socket::SockType::Datagram,
        nix::sys::socket::SockFlag::SOCK_CLOEXEC,
        None,
    )
    .step("socket for loopback")?;
    // SAFETY: ifreq is plain data; we pass a valid pointer to the ioctls below.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: valid socket and ifreq.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) } < 0 {
        return Err(StepError::io("read loopback flags", std::io::Error::last_os_error()));
    }
    // SAFETY: the union member written by SIOCGIFFLAGS.
    unsafe { req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short };
    // SAFETY: valid socket and ifreq.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) } < 0 {
        return Err(StepError::io("bring loopback up", std::io::Error::last_os_error()));
    }
    Ok(())
}
