//! Creating one sandbox. Runs in: the helper (`launch`), then in the sandbox's own
//! processes (`init`, `command`).
//!
//! The order follows bubblewrap's: the helper clones straight into new user, pid, mount,
//! ipc, uts, cgroup (and net) namespaces; the child — pid 1 of the new pid namespace —
//! maps its uid, names its host, brings loopback up, builds the mount view and
//! `pivot_root`s into it, then forks the command, which takes the last steps (session,
//! rlimits, no-new-privs, Landlock, capabilities, seccomp) and execs.

pub mod bridge;
pub mod command;
pub mod init;
pub mod landlock;
pub mod mounts;
pub mod net;
pub mod terminal;
pub mod userns;

use crate::seccomp::Compiled;
use crate::sys;
use corral_core::spec::NetworkSpec;
use corral_core::{CorralError, SandboxSpec};
use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

/// The command's stdin, stdout, stderr and, for a copy-on-write template, its fork channel
/// (placed at fd 3); `None` for /dev/null (no channel).
pub type StdioFds = [Option<OwnedFd>; 4];

/// A sandbox that exists, seen from the helper.
pub struct Launched {
    /// Pid of the sandbox's init, in the helper's pid namespace.
    pub pid: i32,
    pub pidfd: OwnedFd,
    /// The helper's end of the report socket (see `crate::report`).
    pub report: OwnedFd,
}

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

/// Clones the sandbox's init into fresh namespaces. Must run in a single-threaded process.
pub fn launch(
    spec: &SandboxSpec,
    stdio: StdioFds,
    filters: &Compiled,
    helper_pidfd: BorrowedFd<'_>,
    cgroup: Option<&crate::cgroup::SandboxCgroup>,
) -> Result<Launched, CorralError> {
    let (report_r, report_w) = crate::protocol::seqpacket_pair()
        .map_err(|e| CorralError::spawn(format!("creating the report socket: {e}")))?;
    let mut flags =
        libc::CLONE_NEWUSER | libc::CLONE_NEWPID | libc::CLONE_NEWNS | libc::CLONE_NEWIPC | libc::CLONE_NEWUTS;
    // v2 joins the cgroup atomically in clone3 (and the cgroup namespace is rooted there);
    // v1 has no such flag: init joins through descriptors opened here, then unshares the
    // cgroup namespace itself.
    let into = cgroup.and_then(|c| c.dir_fd());
    let procs: Vec<BorrowedFd<'_>> = cgroup.map(|c| c.procs_fds()).unwrap_or_default();
    if procs.is_empty() {
        flags |= libc::CLONE_NEWCGROUP;
    }
    if spec.network != NetworkSpec::Host {
        flags |= libc::CLONE_NEWNET;
    }
    // The proxy's socket, opened here while the host's file system is ours to see.
    let proxy = match (&spec.network, &spec.proxy_socket) {
        (NetworkSpec::Proxied { .. }, Some(path)) => Some(
            nix::fcntl::open(
                path,
                nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_CLOEXEC,
                nix::sys::stat::Mode::empty(),
            )
            .map_err(|e| CorralError::spawn(format!("opening the network proxy's socket {}: {e}", path.display())))?,
        ),
        (NetworkSpec::Proxied { .. }, None) => {
            return Err(CorralError::internal("a proxied network needs the proxy's socket in the spec"))
        }
        _ => None,
    };
    // The child starts with the supervised signals blocked: an init of a pid namespace
    // drops signals it has no handler for, so one sent during setup would be lost.
    let mut previous = SigSet::empty();
    nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&supervised_signals()), Some(&mut previous))
        .map_err(|e| CorralError::spawn(format!("blocking signals: {e}")))?;
    // SAFETY: the helper is single-threaded; the child never returns from init::run.
    let forked = unsafe { sys::clone3_fork(flags as u64, into) };
    if let Ok(sys::Forked::Child) = forked {
        drop(report_r);
        init::run(spec, stdio, report_w, proxy.as_ref().map(|p| p.as_fd()), &procs, filters, helper_pidfd)
    }
    let _ = nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&previous), None);
    match forked {
        Ok(sys::Forked::Child) => unreachable!("the child never returns"),
        Ok(sys::Forked::Parent { pid, pidfd }) => Ok(Launched { pid, pidfd, report: report_r }),
        Err(e) => Err(CorralError::spawn(format!("creating the sandbox's namespaces: {e}"))
            .with_hint("check `corral check`: user namespaces may be restricted on this host")),
    }
}

/// Borrow helper for optional stdio descriptors.
pub(crate) fn borrowed(fds: &StdioFds) -> [Option<BorrowedFd<'_>>; 4] {
    fds.each_ref().map(|f| f.as_ref().map(|f| f.as_fd()))
}
