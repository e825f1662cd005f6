//! Inside one sandbox. Runs in: the sandbox's own processes — [`init`] (pid 1 of the new
//! pid namespace) and [`command`] (the process init forks for the command). The helper
//! clones init into the new namespaces (`crate::helper::launch`).
//!
//! The order follows bubblewrap's: the helper clones straight into new user, pid, mount,
//! ipc, uts, cgroup (and net) namespaces; the child — pid 1 of the new pid namespace —
//! maps its uid, names its host, brings loopback up, builds the mount view and
//! `pivot_root`s into it, then forks the command, which takes the last steps (session,
//! rlimits, no-new-privs, Landlock, capabilities, seccomp) and execs.

pub mod command;
pub mod init;
pub mod terminal;

use nix::sys::signal::{SigSet, Signal};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

/// The command's stdin, stdout, stderr and, for a copy-on-write template, its fork channel
/// (placed at fd 3); `None` for /dev/null (no channel).
pub type StdioFds = [Option<OwnedFd>; 4];

/// A setup step that failed, reported to the helper before the child exits.
#[derive(Debug)]
pub struct StepError {
    pub step: &'static str,
    pub message: String,
    pub errno: Option<i32>,
}

impl StepError {
    pub fn io(step: &'static str, e: impl Into<std::io::Error>) -> StepError {
        let e: std::io::Error = e.into();
        StepError { step, message: e.to_string(), errno: e.raw_os_error() }
    }
    pub fn msg(step: &'static str, message: impl Into<String>) -> StepError {
        StepError { step, message: message.into(), errno: None }
    }
}

/// Extension for attaching the step name to any error that converts to io::Error.
pub trait Step<T> {
    fn step(self, step: &'static str) -> Result<T, StepError>;
}

impl<T, E: Into<std::io::Error>> Step<T> for Result<T, E> {
    fn step(self, step: &'static str) -> Result<T, StepError> {
        self.map_err(|e| StepError::io(step, e))
    }
}

/// Signals init passes on to the command instead of acting on them.
const FORWARDED: &[Signal] = &[
    Signal::SIGHUP,
    Signal::SIGINT,
    Signal::SIGQUIT,
    Signal::SIGTERM,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGWINCH,
    Signal::SIGCONT,
    Signal::SIGTSTP,
    Signal::SIGTTIN,
    Signal::SIGTTOU,
    Signal::SIGALRM,
];

/// The signals init reads from its signalfd: the forwarded ones and SIGCHLD.
pub(crate) fn supervised_signals() -> SigSet {
    let mut set = SigSet::empty();
    set.add(Signal::SIGCHLD);
    for s in FORWARDED {
        set.add(*s);
    }
    set
}

/// Borrow helper for optional stdio descriptors.
pub(crate) fn borrowed(fds: &StdioFds) -> [Option<BorrowedFd<'_>>; 4] {
    fds.each_ref().map(|f| f.as_ref().map(|f| f.as_fd()))
}
