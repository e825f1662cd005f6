//! Pausing and resuming a whole sandbox without a cgroup freezer. Runs in: the helper (and,
//! for one system call each, two short-lived children of it).
//!
//! With a cgroup freezer the kernel stops every task atomically (see `crate::helper::cgroup`).
//! Without one, every process of the sandbox but its init (corral's own, which runs none of
//! the command's code) gets SIGSTOP (SIGCONT to resume) from one `kill(-1, signal)` made
//! inside the sandbox's pid namespace. The kernel delivers that to every process of the
//! namespace under one lock, and a fork racing with it is restarted once its parent has the
//! signal pending, so the tree is caught whole, whatever its size and however fast it forks.
//! The helper's part is two forks and two waits, never a walk of the tree: nothing here
//! takes time the command controls.

use crate::sys;
use corral_core::CorralError;
use std::os::fd::{AsRawFd, BorrowedFd};

/// Stops or continues every process of the sandbox whose init's pidfd is `init`.
pub fn set(init: BorrowedFd<'_>, freeze: bool) -> Result<(), CorralError> {
    let signal = if freeze { libc::SIGSTOP } else { libc::SIGCONT };
    // SAFETY: the helper is single-threaded; the child makes system calls and exits.
    match unsafe { sys::clone3_fork(0, None) } {
        Ok(sys::Forked::Child) => sys::exit_now(signal_inside(init, signal)),
        Ok(sys::Forked::Parent { pid, .. }) => match nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None) {
            Ok(nix::sys::wait::WaitStatus::Exited(_, 0)) => Ok(()),
            Ok(nix::sys::wait::WaitStatus::Exited(_, 3)) => {
                Err(CorralError::invalid_state("the sandbox has already exited"))
            }
            other => Err(CorralError::spawn(format!(
                "{} the sandbox by signals failed ({other:?})",
                if freeze { "pausing" } else { "resuming" }
            ))),
        },
        Err(e) => Err(CorralError::spawn(format!("pausing the sandbox: fork: {e}"))),
    }
}

/// In a child of the helper: joins the sandbox's user and pid namespaces (the latter for
/// its own children), forks once more, and has that grandchild, a member of the sandbox's
/// pid namespace, send `signal` to all of it. Returns the exit code for the helper.
fn signal_inside(init: BorrowedFd<'_>, signal: i32) -> i32 {
    // SAFETY: setns with a pidfd we hold and namespace flags; this process has one thread
    // and shares nothing (a plain fork of the single-threaded helper).
    if unsafe { libc::setns(init.as_raw_fd(), libc::CLONE_NEWUSER | libc::CLONE_NEWPID) } != 0 {
        return 3; // init is gone: so is the sandbox
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
