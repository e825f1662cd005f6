//! The sandbox's user namespace: whose ids it has, and that it makes no more. Runs in:
//! sandbox init, right after clone (the helper's side is `crate::helper::identity`).
//!
//! A sandbox whose ids are the caller's own maps exactly one id, its own, onto itself: no
//! privilege is needed for that, rootless or not, and files keep their owners. `setgroups`
//! is denied first, as the kernel requires for an unprivileged gid map (and so
//! supplementary groups cannot be dropped to escape a group-based deny).
//!
//! A root caller's sandbox maps its root onto unprivileged host ids instead, a map only a
//! process privileged outside the namespace may write: the helper writes it, as a
//! container runtime's parent does, while init waits; then init takes those ids and drops
//! the supplementary groups it inherited from host root (group root would still open
//! group-readable root files).
//!
//! Either way init then allows no user namespace inside this one. A nested namespace gives
//! its creator every capability over the files its ids own, CAP_SETFCAP among them, and a
//! file capability written there through an idmapped mount is stored for host root and
//! honoured by the host: no seccomp profile may open that door.

use crate::sandbox::{Step, StepError};
use crate::sys;
use nix::unistd::{Gid, Uid};
use std::os::fd::BorrowedFd;

pub fn map_self(uid: u32, gid: u32) -> Result<(), StepError> {
    std::fs::write("/proc/self/setgroups", "deny").step("write /proc/self/setgroups")?;
    std::fs::write("/proc/self/uid_map", format!("{uid} {uid} 1\n")).step("write /proc/self/uid_map")?;
    std::fs::write("/proc/self/gid_map", format!("{gid} {gid} 1\n")).step("write /proc/self/gid_map")?;
    Ok(())
}

/// Waits until the helper has written the id maps (one byte on `go`; end of file means it
/// gave up and reports why itself), then becomes `uid`:`gid` with no supplementary groups.
pub fn take_mapped_ids(uid: u32, gid: u32, go: BorrowedFd<'_>) -> Result<(), StepError> {
    let mut byte = [0u8; 1];
    loop {
        match nix::unistd::read(go, &mut byte) {
            Ok(1) => break,
            Ok(_) => sys::exit_now(1),
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(StepError::io("wait for the id maps", e)),
        }
    }
    nix::unistd::setgroups(&[]).step("drop supplementary groups")?;
    let (uid, gid) = (Uid::from_raw(uid), Gid::from_raw(gid));
    nix::unistd::setresgid(gid, gid, gid).step("setresgid")?;
    nix::unistd::setresuid(uid, uid, uid).step("setresuid")?;
    Ok(())
}

/// Tells the helper the view is built (on the socket the ids came by) and waits until it
/// has guarded it.
pub fn view_built(go: BorrowedFd<'_>) -> Result<(), StepError> {
    loop {
        match nix::unistd::write(go, b"v") {
            Ok(_) => break,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(StepError::io("hand the view to the set-id guard", e)),
        }
    }
    let mut byte = [0u8; 1];
    loop {
        match nix::unistd::read(go, &mut byte) {
            Ok(1) => return Ok(()),
            Ok(_) => sys::exit_now(1),
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(StepError::io("wait for the set-id guard", e)),
        }
    }
}

/// No user namespace can be created inside the sandbox's, by any system call: the limit is
/// the namespace's own (`/proc/sys/user` is per user namespace) and init may set it, holding
/// every capability there. With the socket gate the limit is one: the command's own, which
/// it creates before it runs anything of the caller's (`crate::sandbox::command`); the
/// kernel checks this limit for every namespace created below, so no second one can follow.
pub fn no_nested_user_namespaces(gate: bool) -> Result<(), StepError> {
    let limit = if gate { "1" } else { "0" };
    std::fs::write("/proc/sys/user/max_user_namespaces", limit).step("forbid nested user namespaces")
}

/// The kernel's per-user counts that are charged up the namespace chain to the sandbox's
/// owner on the host (the caller, or host root for a root caller): without a bound here a
/// command could take every inotify instance of that user, and later sandboxes and the
/// user's own host processes would get none. Each sandbox gets an eighth of the host's
/// per-user budget (never less than 4), set in the sandbox's own namespace, where init
/// may write it.
const SHARED_COUNTS: &[(&str, &str)] = &[
    ("/proc/sys/user/max_inotify_instances", "/proc/sys/fs/inotify/max_user_instances"),
    ("/proc/sys/user/max_inotify_watches", "/proc/sys/fs/inotify/max_user_watches"),
    ("/proc/sys/user/max_fanotify_groups", "/proc/sys/fs/fanotify/max_user_groups"),
    ("/proc/sys/user/max_fanotify_marks", "/proc/sys/fs/fanotify/max_user_marks"),
];

pub fn bound_shared_counts() -> Result<(), StepError> {
    for (ours, host) in SHARED_COUNTS {
        // A kernel without the host setting (fanotify compiled out) has no such count.
        let Ok(text) = std::fs::read_to_string(host) else { continue };
        let Ok(budget) = text.trim().parse::<u64>() else { continue };
        let share = (budget / 8).max(4);
        std::fs::write(ours, share.to_string()).step("bound the sandbox's share of per-user kernel counts")?;
    }
    Ok(())
}
