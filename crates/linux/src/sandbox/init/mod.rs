//! The sandbox's pid 1. Runs in: the first process of the new namespaces.
//!
//! It finishes the namespaces (uid map, hostname, loopback, mount view), forks the
//! command, then stays as a minimal init: it reaps every zombie (orphans re-parent to
//! it), forwards signals to the command's process group, serves the network bridge and
//! the socket gate, and when the command ends it reports the status and exits — which
//! makes the kernel kill whatever is left in the pid namespace, so nothing outlives the
//! command.
//!
//! It serves the command (bridge connections, gated system calls), so once the command is
//! forked it keeps nothing it does not need, as bubblewrap's pid 1: no-new-privs, no
//! capability in any set, and before the fork a Landlock domain of its own (abstract
//! sockets and signals scoped to the sandbox, the TCP port rules) that the command's
//! nests in.

pub mod bridge;
pub mod carveouts;
pub mod gate;
pub mod loopback;
pub mod mounts;
pub mod userns;

use super::{borrowed, command, terminal, StdioFds, Step, StepError};
use crate::ipc::report::{Report, Usage};
use crate::seccomp::Compiled;
use crate::sys;
use bridge::Bridge;
use corral_core::spec::NetworkAccess;
use corral_core::{ExitStatus, SandboxSpec};
use nix::sys::signal::Signal;
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};

/// What the helper hands a sandbox whose ids it maps (a root caller's): the host sources it
/// captured, and the pipe on which it says the id maps are written.
pub struct Mapped {
    pub captured: mounts::Captured,
    pub go: OwnedFd,
}

#[allow(clippy::too_many_arguments)] // each is a descriptor or plan the helper hands over at clone
pub fn run(
    spec: &SandboxSpec,
    stdio: StdioFds,
    report: OwnedFd,
    proxy: Option<BorrowedFd<'_>>,
    cgroup_procs: &[BorrowedFd<'_>],
    filters: &Compiled,
    helper: BorrowedFd<'_>,
    mapped: Option<Mapped>,
) -> ! {
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        setup_and_supervise(spec, &stdio, report.as_fd(), proxy, cgroup_procs, filters, helper, mapped)
    }));
    match outcome {
        Ok(Ok(status)) => {
            let usage = end_the_tree();
            Report::Exited { status, usage: Some(usage) }.send(report.as_fd());
            sys::exit_now(0)
        }
        Ok(Err(e)) => {
            Report::SetupFailed { step: e.step.into(), message: e.message, errno: e.errno }.send(report.as_fd());
            sys::exit_now(1)
        }
        Err(_) => {
            Report::SetupFailed { step: "init".into(), message: "panic in sandbox init".into(), errno: None }
                .send(report.as_fd());
            sys::exit_now(1)
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn setup_and_supervise(
    spec: &SandboxSpec,
    stdio: &StdioFds,
    report: BorrowedFd<'_>,
    proxy: Option<BorrowedFd<'_>>,
    cgroup_procs: &[BorrowedFd<'_>],
    filters: &Compiled,
    helper: BorrowedFd<'_>,
    mapped: Option<Mapped>,
) -> Result<ExitStatus, StepError> {
    // Into the sandbox's cgroup (v1) before anything else, so every process it ever has is
    // counted; then a cgroup namespace rooted there.
    if !cgroup_procs.is_empty() {
        crate::helper::cgroup::join_self(cgroup_procs).step("join the sandbox's cgroup")?;
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWCGROUP).step("unshare the cgroup namespace")?;
    }
    die_with(helper)?;
    // Keep only our own descriptors: the helper's control socket and other sandboxes'
    // pipes must not stay open here (a held pipe would delay another run's EOF).
    let mut keep: Vec<RawFd> = borrowed(stdio).iter().flatten().map(|f| f.as_raw_fd()).collect();
    keep.push(report.as_raw_fd());
    keep.extend(proxy.map(|p| p.as_raw_fd()));
    if let Some(m) = &mapped {
        keep.extend(m.captured.raw_fds());
        keep.push(m.go.as_raw_fd());
        keep.push(helper.as_raw_fd()); // to check again once the ids are ours
    }
    sys::close_all_except(&keep).step("close inherited descriptors")?;

    // Memory files never run: written while this process is still host root to the
    // kernel's permission check (before its ids are mapped), for its own pid namespace.
    if spec.memfd_noexec {
        std::fs::write(crate::helper::probe::MEMFD_NOEXEC, "2").step("set vm.memfd_noexec")?;
    }
    // Neither needs the id maps: done while the helper may still be writing them.
    nix::unistd::sethostname(&spec.hostname).step("sethostname")?;
    if spec.network != NetworkAccess::Host {
        loopback::loopback_up()?;
    }
    let (captured, go) = match (&spec.identity, mapped) {
        (None, None) => {
            userns::map_self(spec.uid, spec.gid)?;
            (None, None)
        }
        (Some(_), Some(Mapped { captured, go })) => {
            userns::take_mapped_ids(spec.uid, spec.gid, go.as_fd())?;
            // Changing ids cleared the death signal.
            die_with(helper)?;
            // SAFETY: our copy of the helper's pidfd, which its owner never closes here
            // (init ends in _exit); nothing uses it after this.
            unsafe { libc::close(helper.as_raw_fd()) };
            (Some(captured), Some(go))
        }
        _ => return Err(StepError::msg("map ids", "the helper and the spec disagree on whose ids these are")),
    };
    userns::no_nested_user_namespaces(filters.gate.is_some())?;
    userns::bound_shared_counts()?;
    let (layers, stand) = mounts::build(spec, captured)?;
    // The helper guards what the view mounted beneath a guarded grant (see
    // `crate::helper::setid_guard::Guard::guard_view`) before anything of the caller's runs.
    if let Some(go) = go.filter(|_| crate::helper::setid_guard::view_needs_guarding(spec)) {
        userns::view_built(go.as_fd())?;
    }
    if let Some(layers) = layers {
        Report::Layers.send_with(report, &layers);
    }
    // The carve-outs are watched from here on; putting one back is the warden's (a process
    // of the helper's outside this pid namespace, see `crate::helper::warden`), so that this
    // process, which serves the command, needs no capability once the command is forked.
    if let Some(w) = carveouts::Watcher::new(&spec.mounts, stand)? {
        // The namespaces by descriptor, opened here: once this process is not dumpable
        // (below), only host root could open them, or join them by pidfd.
        let open_ns = |name: &str| {
            nix::fcntl::open(
                name,
                nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_CLOEXEC,
                nix::sys::stat::Mode::empty(),
            )
            .step("open the sandbox's namespaces")
        };
        let (user, mnt) = (open_ns("/proc/self/ns/user")?, open_ns("/proc/self/ns/mnt")?);
        let fds = [w.fd(), w.empty_file(), report, user.as_fd(), mnt.as_fd()];
        if !Report::Watching.send_with_all(report, &fds) {
            return Err(StepError::msg("hand the carve-outs over", "the helper did not take them"));
        }
        // Never closed here: closing an inotify instance can wait for the kernel to retire
        // its watches (an SRCU grace period, ~15-20 ms); the warden holds it now.
        std::mem::forget(w);
    }
    // The terminal, from the sandbox's own devpts: the master goes to the caller.
    let tty = match spec.terminal {
        Some(size) => {
            let (master, slave) = terminal::open(size)?;
            Report::Terminal.send_with(report, &master);
            Some(slave)
        }
        None => None,
    };
    // Nothing in the sandbox may read this process's memory or descriptors (it keeps the
    // proxy's channel and the gate's listener).
    // SAFETY: prctl with integer arguments.
    if unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) } != 0 {
        return Err(StepError::io("PR_SET_DUMPABLE", std::io::Error::last_os_error()));
    }

    // What we forward (and SIGCHLD) has been blocked since the clone (see `launch`), so a
    // signal sent while we set up waits for us; the command unblocks everything before exec.
    let sfd = SignalFd::with_flags(&super::supervised_signals(), SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
        .step("signalfd")?;
    let bridge = match (spec.network, proxy) {
        (NetworkAccess::Proxied { http_port, socks_port }, Some(fd)) => {
            Some(Bridge::listen(&[http_port, socks_port], fd.as_raw_fd())?)
        }
        _ => None,
    };

    // The command hands the gate's listener over on this pair (see `receive_gate`).
    let handover = match filters.gate {
        Some(_) => Some(
            nix::sys::socket::socketpair(
                nix::sys::socket::AddressFamily::Unix,
                nix::sys::socket::SockType::Stream,
                None,
                nix::sys::socket::SockFlag::SOCK_CLOEXEC,
            )
            .step("socketpair for the socket gate")?,
        ),
        None => None,
    };
    // Our own Landlock domain, before the fork so that the command's nests inside it: the
    // gate connects and binds for the command under the same port rules and scopes.
    command::landlock::restrict_init(&spec.landlock)?;

    // SAFETY: this process is single-threaded (a clone of the single-threaded helper).
    let child = match unsafe { nix::unistd::fork() }.step("fork command")? {
        nix::unistd::ForkResult::Child => {
            let gate = handover.as_ref().map(|(_, theirs)| theirs.as_fd());
            command::run(spec, stdio, tty.as_ref().map(|t| t.as_raw_fd()), report, filters, gate)
        }
        nix::unistd::ForkResult::Parent { child } => child,
    };
    // The command has its own copies of stdio; ours would hold pipes open.
    drop(tty);
    for fd in borrowed(stdio).iter().flatten() {
        // SAFETY: closing our copies; their OwnedFds belong to `run`, which ends in _exit.
        unsafe { libc::close(fd.as_raw_fd()) };
    }
    // Everything that needed a capability is done: from here on this process serves the
    // command, and holds no privilege it could be talked into using.
    drop_privileges()?;
    let gate = match handover {
        Some((ours, theirs)) => {
            drop(theirs);
            receive_gate(ours, child, spec)?
        }
        None => None,
    };
    supervise(child, &sfd, bridge, gate)
}

/// No-new-privs, and every capability gone: bounding, ambient and inheritable sets emptied,
/// securebits locked, effective and permitted cleared. Each result is checked.
fn drop_privileges() -> Result<(), StepError> {
    // SAFETY: prctl with integer arguments.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(StepError::io("init no_new_privs", std::io::Error::last_os_error()));
    }
    command::drop_capabilities(None)
}

/// Takes the socket gate's listener from the command, which installed the filter in itself
/// and sends the descriptor's number (a plain write: every send of its own stops at the
/// gate from then on). `None` if the command ended first (its setup failed).
fn receive_gate(sock: OwnedFd, command: Pid, spec: &SandboxSpec) -> Result<Option<gate::Gate>, StepError> {
    let mut number = [0u8; 4];
    let mut got = 0;
    while got < number.len() {
        match nix::unistd::read(&sock, &mut number[got..]) {
            Ok(0) => return Ok(None),
            Ok(n) => got += n,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(StepError::io("receive the socket gate", e)),
        }
    }
    let taken =
        sys::pidfd_open(command.as_raw()).and_then(|pidfd| sys::pidfd_getfd(pidfd.as_fd(), i32::from_ne_bytes(number)));
    // The command waits for this answer before it goes on (and closes its copy).
    let _ = nix::unistd::write(&sock, &[u8::from(taken.is_ok())]);
    let listener = taken.step("take the socket gate's listener")?;
    let rules = gate::Rules {
        unix_sockets: spec.unix_sockets.clone(),
        bind_ports: spec.seccomp.gate_listen,
        writable: spec.landlock.rules.iter().filter(|r| r.access.write).map(|r| r.path.clone()).collect(),
    };
    gate::Gate::new(listener, rules).step("start the socket gate").map(Some)
}

/// Dies with the helper (the kernel clears this whenever our ids change). If it already
/// died, stops now.
fn die_with(helper: BorrowedFd<'_>) -> Result<(), StepError> {
    // SAFETY: prctl with integer arguments.
    if unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) } != 0 {
        return Err(StepError::io("PR_SET_PDEATHSIG", std::io::Error::last_os_error()));
    }
    if sys::ready_now(helper, libc::POLLIN).step("poll helper")? {
        sys::exit_now(1);
    }
    Ok(())
}

/// Kills and reaps every other process of the sandbox, then measures the whole tree. Once
/// this returns only init is left, so the helper may answer before the kernel finishes
/// tearing the namespaces down.
fn end_the_tree() -> Usage {
    // SAFETY: kill(-1) from a pid namespace's init reaches every other process in it only.
    unsafe { libc::kill(-1, libc::SIGKILL) };
    // Until ECHILD: nobody left.
    while let Ok(_) | Err(nix::errno::Errno::EINTR) = waitpid(None, None) {}
    // SAFETY: rusage is plain data the kernel fills.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage into a local.
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru) };
    Usage::from_rusage(&ru)
}

/// Reaps until the command ends, forwarding signals and serving the bridge and the socket
/// gate meanwhile.
fn supervise(
    command: Pid,
    sfd: &SignalFd,
    mut bridge: Option<Bridge>,
    mut gate: Option<gate::Gate>,
) -> Result<ExitStatus, StepError> {
    let mut fds: Vec<libc::pollfd> = Vec::new();
    loop {
        fds.clear();
        fds.push(libc::pollfd { fd: sfd.as_fd().as_raw_fd(), events: libc::POLLIN, revents: 0 });
        let watched = fds.len();
        if let Some(b) = &bridge {
            b.interest(&mut fds);
        }
        let gate_from = fds.len();
        if let Some(g) = &gate {
            g.interest(&mut fds);
        }
        let timeout =
            gate.as_ref().and_then(|g| g.timeout()).map_or(-1, |t| t.as_millis().min(i32::MAX as u128) as i32 + 1);
        // SAFETY: a valid array of pollfd for its length.
        if unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout) } < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(StepError::io("poll", e));
        }
        if let Some(b) = &mut bridge {
            b.handle(&fds[watched..gate_from]);
        }
        if let Some(g) = &mut gate {
            if !g.handle(&fds[gate_from..]) {
                gate = None; // no process is left under the filter
            }
        }
        if fds[0].revents == 0 {
            continue;
        }
        let info = match sfd.read_signal() {
            Ok(Some(info)) => info,
            Ok(None) | Err(nix::errno::Errno::EINTR) | Err(nix::errno::Errno::EAGAIN) => continue,
            Err(e) => return Err(StepError::io("read signalfd", e)),
        };
        if info.ssi_signo as i32 == libc::SIGCHLD {
            loop {
                match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                    Ok(WaitStatus::Exited(pid, code)) if pid == command => return Ok(ExitStatus::Exited { code }),
                    Ok(WaitStatus::Signaled(pid, sig, _)) if pid == command => {
                        return Ok(ExitStatus::Signaled { signal: sig as i32 })
                    }
                    Ok(WaitStatus::StillAlive) | Err(nix::errno::Errno::ECHILD) => break,
                    Ok(_) => continue,
                    Err(nix::errno::Errno::EINTR) => continue,
                    Err(e) => return Err(StepError::io("waitpid", e)),
                }
            }
        } else if let Ok(sig) = Signal::try_from(info.ssi_signo as i32) {
            // The command leads its own process group once it has called setsid; until then
            // the group does not exist and the process itself gets the signal.
            if nix::sys::signal::killpg(command, sig).is_err() {
                let _ = nix::sys::signal::kill(command, sig);
            }
        }
    }
}
