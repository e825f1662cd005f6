//! Cloning a sandbox's init into fresh namespaces. Runs in: the helper (the child of the
//! clone goes straight to `crate::sandbox::init::run` and never returns here).

use crate::helper::cgroup::SandboxCgroup;
use crate::helper::identity;
use crate::helper::setid_guard::Guard;
use crate::ipc::transport::StdioKind;
use crate::sandbox::init::{mounts, Mapped};
use crate::sandbox::{init, supervised_signals, StdioFds};
use crate::seccomp::Compiled;
use crate::{ipc, sys};
use corral_core::spec::NetworkAccess;
use corral_core::{CorralError, SandboxSpec};
use nix::sys::signal::{SigSet, SigmaskHow};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

/// A sandbox that exists, seen from the helper.
pub struct Launched {
    /// Pid of the sandbox's init, in the helper's pid namespace.
    pub pid: i32,
    pub pidfd: OwnedFd,
    /// The helper's end of the report socket (see `crate::ipc::report`).
    pub report: OwnedFd,
    /// Its writable grants are marked for the set-id guard.
    pub guarded: bool,
    /// Init will say on this when its view is built, for the set-id guard to mark what it
    /// mounted beneath them (`identity::guard_view`); it waits until then.
    pub view: Option<identity::ViewWait>,
}

/// Clones the sandbox's init into fresh namespaces. Must run in a single-threaded process.
pub fn launch(
    spec: &SandboxSpec,
    stdio: StdioFds,
    proxy: Option<OwnedFd>,
    filters: &Compiled,
    helper_pidfd: BorrowedFd<'_>,
    cgroup: Option<&SandboxCgroup>,
    guard: &mut Guard,
) -> Result<Launched, CorralError> {
    let (report_r, report_w) =
        ipc::transport::pair().map_err(|e| CorralError::spawn(format!("creating the report socket: {e}")))?;
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
    if spec.network != NetworkAccess::Host {
        flags |= libc::CLONE_NEWNET;
    }
    // The proxy's channel goes to the bridge in init; only proxied networks have one.
    let proxy = match (&spec.network, proxy) {
        (NetworkAccess::Proxied { .. }, Some(channel)) => Some(channel),
        (NetworkAccess::Proxied { .. }, None) => {
            return Err(CorralError::internal("a proxied network needs its proxy's channel with the request"))
        }
        (_, Some(_)) => return Err(CorralError::internal("a proxy channel came with a network that is not proxied")),
        (_, None) => None,
    };
    // A root caller's sandbox: its init will be an unprivileged host id (see
    // `helper::identity`), so the host sources are captured here, as root, before the
    // clone; the proxy's socket (in a directory only root may enter, reached through this
    // descriptor alone) becomes the sandbox's to connect to.
    let mapped = match &spec.identity {
        Some(ids) => {
            if let Some(p) = &proxy {
                nix::unistd::fchownat(
                    p,
                    "",
                    Some(nix::unistd::Uid::from_raw(ids.host_uid)),
                    Some(nix::unistd::Gid::from_raw(ids.host_gid)),
                    nix::fcntl::AtFlags::AT_EMPTY_PATH,
                )
                .map_err(|e| CorralError::spawn(format!("handing the proxy's socket to the sandbox: {e}")))?;
            }
            let captured =
                mounts::capture(spec).map_err(|e| crate::error::setup_failed(e.step, &e.message, e.errno))?;
            // Both ways: init also says when its view is built (`identity::map`).
            let (go_r, go_w) = nix::sys::socket::socketpair(
                nix::sys::socket::AddressFamily::Unix,
                nix::sys::socket::SockType::Stream,
                None,
                nix::sys::socket::SockFlag::SOCK_CLOEXEC,
            )
            .map_err(|e| CorralError::spawn(format!("creating the id-map socket: {e}")))?;
            Some((Mapped { captured, go: go_r }, go_w))
        }
        None => None,
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
        let mapped = mapped.map(|(m, _go_w)| m); // the write end closes with init's sweep
        init::run(spec, stdio, report_w, proxy.as_ref().map(|p| p.as_fd()), &procs, filters, helper_pidfd, mapped)
    }
    let _ = nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&previous), None);
    match forked {
        Ok(sys::Forked::Child) => unreachable!("the child never returns"),
        Ok(sys::Forked::Parent { pid, pidfd }) => {
            let (mut guarded, mut view) = (false, None);
            if let (Some((m, go)), Some(ids)) = (mapped, &spec.identity) {
                let Mapped { captured, go: go_r } = m;
                drop(go_r);
                match identity::map(pid, spec, ids, &captured, go, guard) {
                    Ok(g) => (guarded, view) = g,
                    Err(e) => {
                        let _ = sys::pidfd_send_signal(pidfd.as_fd(), libc::SIGKILL);
                        let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
                        return Err(e);
                    }
                }
            }
            Ok(Launched { pid, pidfd, report: report_r, guarded, view })
        }
        Err(e) => Err(CorralError::spawn(format!("creating the sandbox's namespaces: {e}"))
            .with_hint("check `corral check`: user namespaces may be restricted on this host")),
    }
}

/// The stdio descriptors of a request, in order, for the slots marked `Fd`, then the fork
/// channel and the proxy's channel if the request says they are there.
pub fn stdio_from(
    kinds: [StdioKind; 3],
    channel: bool,
    proxy: bool,
    fds: Vec<OwnedFd>,
) -> Result<(StdioFds, Option<OwnedFd>), CorralError> {
    let mut fds = fds.into_iter();
    let mut stdio: StdioFds = [None, None, None, None];
    for (slot, kind) in stdio.iter_mut().zip(kinds) {
        if kind == StdioKind::Fd {
            *slot = Some(fds.next().ok_or_else(|| CorralError::internal("stdio descriptor missing from the request"))?);
        }
    }
    if channel {
        stdio[3] = Some(fds.next().ok_or_else(|| CorralError::internal("fork channel missing from the request"))?);
    }
    let proxy = match proxy {
        true => Some(fds.next().ok_or_else(|| CorralError::internal("proxy channel missing from the request"))?),
        false => None,
    };
    Ok((stdio, proxy))
}
