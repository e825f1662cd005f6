//! Pausing and resuming a whole sandbox without a cgroup freezer. Runs in: the helper (and,
//! for a few system calls each, two short-lived children of it).
//!
//! With a cgroup freezer the kernel stops every task atomically (see `crate::helper::cgroup`).
//! Without one, every process of the sandbox but its init (corral's own, which runs none of
//! the command's code) gets SIGSTOP (SIGCONT to resume) from one `kill(-1, signal)` made
//! inside the sandbox's pid namespace. The kernel delivers that to every process of the
//! namespace under one lock, and a fork racing with it is restarted once its parent has the
//! signal pending, so the tree is caught whole, whatever its size and however fast it forks.
//! The helper's part is two forks and two waits, never a walk of the tree: nothing here
//! takes time the command controls.
//!
//! Getting into the namespace: `setns` on a pidfd of a process of the sandbox. Its init is
//! not dumpable, which an unprivileged helper cannot get past, so the other candidates are
//! init's children (the command, orphans it reparented), each only if it is in init's own
//! pid namespace (same depth in `NSpid`: a process in a namespace the command made below
//! would see only part of the tree). A candidate that changed its own user namespace cannot
//! be joined for the pid namespace either (EPERM), and the next is tried.

use crate::sys;
use corral_core::CorralError;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};

/// Most of init's children tried as a way in.
const MAX_CANDIDATES: usize = 8;

/// Stops or continues every process of the sandbox whose init is `init` (pid and pidfd).
pub fn set(init: i32, init_fd: BorrowedFd<'_>, freeze: bool) -> Result<(), CorralError> {
    let what = if freeze { "pausing" } else { "resuming" };
    let signal = if freeze { libc::SIGSTOP } else { libc::SIGCONT };
    let children = candidates(init);
    let mut fds: Vec<RawFd> = vec![init_fd.as_raw_fd()];
    fds.extend(children.iter().map(|f| f.as_raw_fd()));
    // SAFETY: the helper is single-threaded; the child makes system calls and exits.
    match unsafe { sys::clone3_fork(0, None) } {
        Ok(sys::Forked::Child) => sys::exit_now(signal_inside(&fds, signal)),
        Ok(sys::Forked::Parent { pid, .. }) => match nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None) {
            Ok(nix::sys::wait::WaitStatus::Exited(_, 0)) => Ok(()),
            Ok(nix::sys::wait::WaitStatus::Exited(_, 3))
                if !std::path::Path::new(&format!("/proc/{init}")).exists() =>
            {
                Err(CorralError::invalid_state("the sandbox has already exited"))
            }
            Ok(nix::sys::wait::WaitStatus::Exited(_, 3)) => Err(CorralError::unsupported(format!(
                "{what} the sandbox needs a cgroup freezer, or a process of the sandbox to send the signal from: \
                 none of its processes could be joined (the command's own changed user namespace, or it is \
                 not dumpable)"
            ))),
            other => Err(CorralError::spawn(format!("{what} the sandbox by signals failed ({other:?})"))),
        },
        Err(e) => Err(CorralError::spawn(format!("{what} the sandbox: fork: {e}"))),
    }
}

/// Pidfds of up to [`MAX_CANDIDATES`] children of `init` in init's own pid namespace.
fn candidates(init: i32) -> Vec<OwnedFd> {
    let depth = |pid: &str| {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        status.lines().find_map(|l| l.strip_prefix("NSpid:")).map(|v| v.split_whitespace().count())
    };
    let Some(own) = depth(&init.to_string()) else { return Vec::new() };
    let children = std::fs::read_to_string(format!("/proc/{init}/task/{init}/children")).unwrap_or_default();
    children
        .split_whitespace()
        .filter(|c| depth(c) == Some(own))
        .filter_map(|c| c.parse::<i32>().ok())
        .filter_map(|c| sys::pidfd_open(c).ok())
        .take(MAX_CANDIDATES)
        .collect()
}

/// In a child of the helper: joins the sandbox's user and pid namespaces (the latter for
/// its own children) through the first of `fds` that lets it, forks once more, and has that
/// grandchild, a member of the sandbox's pid namespace, send `signal` to all of it. Returns
/// the exit code for the helper: 3 when no candidate could be joined.
fn signal_inside(fds: &[RawFd], signal: i32) -> i32 {
    // SAFETY: setns with pidfds we hold and namespace flags; this process has one thread
    // and shares nothing (a plain fork of the single-threaded helper).
    let joined = fds.iter().any(|&fd| unsafe { libc::setns(fd, libc::CLONE_NEWUSER | libc::CLONE_NEWPID) } == 0);
    if !joined {
        return 3;
    }
    // SAFETY: as above; the grandchild makes one system call and exits.
    match unsafe { sys::clone3_fork(0, None) } {
        Ok(sys::Forked::Child) => {
            // SAFETY: kill(2). -1: every process of this pid namespace but init and the caller.
            let rc = unsafe { libc::kill(-1, signal) };
            let none_left = std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH);
            sys::exit_now(if rc == 0 || none_left { 0 } else { 4 })
        }
        Ok(sys::Forked::Parent { pid, .. }) => match nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None) {
            Ok(nix::sys::wait::WaitStatus::Exited(_, code)) => code,
            _ => 5,
        },
        Err(_) => 6,
    }
}
