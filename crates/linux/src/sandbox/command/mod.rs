//! The command's process: the last steps before `execve`. Runs in: the child init forks.
//!
//! Order matters and follows bubblewrap: signals back to defaults, a new session (so the
//! command can never reach the caller's terminal), die-with-init, stdio, rlimits, cwd,
//! every other descriptor close-on-exec, a user namespace of its own (owned by init, for
//! the socket gate), no-new-privs, Landlock, capabilities dropped, and seccomp last "so
//! that filters don't need to handle anything above": the gate's filter first (its
//! listener goes to init), then the profile's.

pub mod landlock;

use super::{borrowed, StdioFds, Step, StepError};
use crate::ipc::report::{Exec, Report};
use crate::ipc::transport::{self, StdioKind};
use crate::seccomp::Compiled;
use crate::sys;
use corral_core::spec::{Rlimit, Rlimits};
use corral_core::SandboxSpec;
use nix::sys::resource::{setrlimit, Resource};
use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
use std::ffi::CString;
use std::os::fd::{AsRawFd, BorrowedFd};

pub fn run(
    spec: &SandboxSpec,
    stdio: &StdioFds,
    tty: Option<i32>,
    report: BorrowedFd<'_>,
    filters: &Compiled,
    gate: Option<BorrowedFd<'_>>,
) -> ! {
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        prepare(spec, stdio, tty, filters, gate)?;
        // A warm sandbox's command process is ready now, restricted as it will run; only
        // the command itself, its stdio and cwd are missing.
        if spec.wait_for_command {
            return receive_command(spec, report).map(Some);
        }
        Ok(None)
    }));
    match result {
        Ok(Ok(Some(warm))) => exec(&warm, report),
        Ok(Ok(None)) => exec(spec, report),
        Ok(Err(e)) => Report::SetupFailed { step: e.step.into(), message: e.message, errno: e.errno }.send(report),
        Err(_) => Report::SetupFailed { step: "command".into(), message: "panic before exec".into(), errno: None }
            .send(report),
    }
    sys::exit_now(127)
}

fn prepare(
    spec: &SandboxSpec,
    stdio: &StdioFds,
    tty: Option<i32>,
    filters: &Compiled,
    gate: Option<BorrowedFd<'_>>,
) -> Result<(), StepError> {
    reset_signals()?;
    nix::unistd::setsid().step("setsid")?;
    // SAFETY: prctl with integer arguments.
    if unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) } != 0 {
        return Err(StepError::io("PR_SET_PDEATHSIG", std::io::Error::last_os_error()));
    }
    match tty {
        Some(slave) => super::terminal::adopt(slave)?,
        None if !spec.wait_for_command => setup_stdio(stdio)?,
        None => {}
    }
    rlimits(&spec.rlimits)?;
    if !spec.wait_for_command {
        chdir(&spec.cwd)?;
    }
    // A template's fork channel stays open at fd 3 (see setup_stdio).
    let first = if stdio[3].is_some() { 4 } else { 3 };
    sys::cloexec_from(first).step("close descriptors on exec")?;
    if filters.gate.is_some() {
        nested_user_namespace()?;
    }
    // SAFETY: prctl with integer arguments.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(StepError::io("no_new_privs", std::io::Error::last_os_error()));
    }
    landlock::restrict(&spec.landlock)?;
    drop_capabilities(None)?;
    if let (Some(program), Some(sock)) = (&filters.gate, gate) {
        hand_over_gate(program, sock)?;
    }
    crate::seccomp::install(&filters.filters).step("install seccomp filter")?;
    Ok(())
}

/// A user namespace nested in init's, mapping the same ids. Init owns it, so init, though
/// it holds no capability at all, may read the memory and take the descriptors of every
/// process in it (ptrace access), which the socket gate needs, also for a process that
/// made itself non-dumpable; and it owns nothing else (no other namespace is created in it).
fn nested_user_namespace() -> Result<(), StepError> {
    let (uid, gid) = (nix::unistd::geteuid(), nix::unistd::getegid());
    // Init made itself non-dumpable, and so are we, its copy: our /proc files then belong
    // to root and the maps below could not be written. Dumpable until the gate is handed
    // over, which ends non-dumpable again (nothing else runs in the sandbox yet).
    // SAFETY: prctl with integer arguments.
    if unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 1, 0, 0, 0) } != 0 {
        return Err(StepError::io("PR_SET_DUMPABLE (command)", std::io::Error::last_os_error()));
    }
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWUSER).step("unshare the command's user namespace")?;
    std::fs::write("/proc/self/setgroups", "deny").step("write /proc/self/setgroups (command)")?;
    std::fs::write("/proc/self/uid_map", format!("{uid} {uid} 1\n")).step("write /proc/self/uid_map (command)")?;
    std::fs::write("/proc/self/gid_map", format!("{gid} {gid} 1\n")).step("write /proc/self/gid_map (command)")?;
    Ok(())
}

/// Installs the socket gate's filter and hands its listener to init: the descriptor's
/// number over `sock` (a plain write; sends stop at the gate from now on), then init's
/// answer once it holds its own copy. Ours closes before exec.
///
/// Until exec this process is a copy of init, which made itself non-dumpable, so init could
/// not take a descriptor from it: it is dumpable for the moment of the hand-over (nothing
/// else runs in the sandbox yet that could look).
fn hand_over_gate(program: &seccompiler::BpfProgram, sock: BorrowedFd<'_>) -> Result<(), StepError> {
    let listener = crate::seccomp::install_gate(program).step("install the socket gate")?;
    let dumpable = |on: bool| -> Result<(), StepError> {
        // SAFETY: prctl with integer arguments.
        if unsafe { libc::prctl(libc::PR_SET_DUMPABLE, libc::c_ulong::from(on), 0, 0, 0) } != 0 {
            return Err(StepError::io("PR_SET_DUMPABLE (command)", std::io::Error::last_os_error()));
        }
        Ok(())
    };
    dumpable(true)?;
    let number = listener.as_raw_fd().to_ne_bytes();
    nix::unistd::write(sock, &number).step("hand the socket gate to init")?;
    let mut answer = [0u8; 1];
    let taken = loop {
        match nix::unistd::read(sock, &mut answer) {
            Ok(1) if answer[0] == 1 => break Ok(()),
            Ok(_) => break Err(StepError::msg("socket gate", "init could not take the gate's listener")),
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => break Err(StepError::io("socket gate", e)),
        }
    };
    dumpable(false)?;
    taken
}

fn chdir(cwd: &std::path::Path) -> Result<(), StepError> {
    nix::unistd::chdir(cwd).map_err(|e| StepError::msg("chdir", format!("{}: {e}", cwd.display())))
}

/// Says "ready", then waits for the helper's `Exec` and its stdio descriptors; runs
/// under the sandbox's seccomp filter already, so it does only plain I/O.
fn receive_command(spec: &SandboxSpec, report: BorrowedFd<'_>) -> Result<SandboxSpec, StepError> {
    Report::Ready.send(report);
    let mut buf = Vec::new();
    let (Exec { command, stdio: kinds }, fds) = match transport::recv::<Exec>(report, &mut buf) {
        Ok(Some(m)) => m,
        // The helper went away (the pool closed): nothing to run.
        Ok(None) => sys::exit_now(0),
        Err(e) => return Err(StepError::io("receive the command", e)),
    };
    let mut fds = fds.into_iter();
    let mut stdio: StdioFds = [None, None, None, None];
    for (slot, kind) in stdio.iter_mut().zip(kinds) {
        if kind == StdioKind::Fd {
            *slot = Some(fds.next().ok_or_else(|| StepError::msg("receive the command", "stdio descriptor missing"))?);
        }
    }
    setup_stdio(&stdio)?;
    chdir(&command.cwd)?;
    let mut spec = spec.clone();
    (spec.argv, spec.env, spec.cwd) = (command.argv, command.env, command.cwd);
    Ok(spec)
}

fn reset_signals() -> Result<(), StepError> {
    let default = SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty());
    for sig in Signal::iterator() {
        if sig != Signal::SIGKILL && sig != Signal::SIGSTOP {
            // SAFETY: installing the default disposition.
            let _ = unsafe { sigaction(sig, &default) };
        }
    }
    SigSet::all().thread_unblock().step("unblock signals")
}

fn setup_stdio(stdio: &StdioFds) -> Result<(), StepError> {
    let fds = borrowed(stdio);
    // The fork channel moves out of the way first: its number, or a stdio source's, may be
    // any of 0..=3. The copy is close-on-exec; the dup2 onto fd 3 at the end is not.
    let channel = match fds[3] {
        // SAFETY: fcntl on a descriptor we own.
        Some(fd) => match unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 10) } {
            -1 => return Err(StepError::io("move fork channel", std::io::Error::last_os_error())),
            high => Some(high),
        },
        None => None,
    };
    for (target, fd) in fds.iter().take(3).enumerate() {
        let src = match fd {
            Some(fd) => fd.as_raw_fd(),
            None => {
                let flags = if target == 0 { nix::fcntl::OFlag::O_RDONLY } else { nix::fcntl::OFlag::O_WRONLY };
                // Close-on-exec: the dup2 below gives the command its copy, and this one must
                // not outlive the exec (a warm sandbox opens it after cloexec_from has run).
                let flags = flags | nix::fcntl::OFlag::O_CLOEXEC;
                let null =
                    nix::fcntl::open("/dev/null", flags, nix::sys::stat::Mode::empty()).step("open /dev/null")?;
                let raw = null.as_raw_fd();
                std::mem::forget(null); // dup'd below; the original closes at exec
                raw
            }
        };
        if src != target as i32 {
            // SAFETY: dup2 onto a standard descriptor number.
            if unsafe { libc::dup2(src, target as i32) } < 0 {
                return Err(StepError::io("dup2 stdio", std::io::Error::last_os_error()));
            }
        }
    }
    if let Some(high) = channel {
        // SAFETY: dup2 onto fd 3, which no stdio target uses.
        if unsafe { libc::dup2(high, 3) } < 0 {
            return Err(StepError::io("dup2 fork channel", std::io::Error::last_os_error()));
        }
    }
    Ok(())
}

fn rlimits(r: &Rlimits) -> Result<(), StepError> {
    for (limit, v) in r.entries() {
        let res = match limit {
            Rlimit::AddressSpace => Resource::RLIMIT_AS,
            Rlimit::Processes => Resource::RLIMIT_NPROC,
            Rlimit::OpenFiles => Resource::RLIMIT_NOFILE,
            Rlimit::FileSize => Resource::RLIMIT_FSIZE,
            Rlimit::CpuSeconds => Resource::RLIMIT_CPU,
        };
        setrlimit(res, v, v).map_err(|e| StepError::msg("setrlimit", format!("{res:?}={v}: {e}")))?;
    }
    Ok(())
}

/// No capabilities survive exec, even for a command that runs as uid 0 inside: empty
/// bounding, ambient and inheritable sets, securebits locked so root gains nothing at
/// exec, then effective and permitted sets holding `keep` alone (init keeps the one it needs
/// to put carve-outs back; the command keeps none).
pub(crate) fn drop_capabilities(keep: Option<caps::Capability>) -> Result<(), StepError> {
    use caps::CapSet;
    let err =
        |what: &'static str| move |e: caps::errors::CapsError| StepError::msg("capabilities", format!("{what}: {e}"));
    for cap in caps::all() {
        caps::drop(None, CapSet::Bounding, cap).map_err(err("drop bounding"))?;
    }
    caps::clear(None, CapSet::Ambient).map_err(err("clear ambient"))?;
    caps::clear(None, CapSet::Inheritable).map_err(err("clear inheritable"))?;
    const SECBIT_NOROOT: libc::c_ulong = 1 << 0;
    const SECBIT_NOROOT_LOCKED: libc::c_ulong = 1 << 1;
    const SECBIT_NO_SETUID_FIXUP: libc::c_ulong = 1 << 2;
    const SECBIT_NO_SETUID_FIXUP_LOCKED: libc::c_ulong = 1 << 3;
    const SECBIT_KEEP_CAPS_LOCKED: libc::c_ulong = 1 << 5;
    const SECBIT_NO_CAP_AMBIENT_RAISE: libc::c_ulong = 1 << 6;
    const SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED: libc::c_ulong = 1 << 7;
    let bits = SECBIT_NOROOT
        | SECBIT_NOROOT_LOCKED
        | SECBIT_NO_SETUID_FIXUP
        | SECBIT_NO_SETUID_FIXUP_LOCKED
        | SECBIT_KEEP_CAPS_LOCKED
        | SECBIT_NO_CAP_AMBIENT_RAISE
        | SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED;
    // SAFETY: prctl with integer arguments.
    if unsafe { libc::prctl(libc::PR_SET_SECUREBITS, bits, 0, 0, 0) } != 0 {
        return Err(StepError::io("securebits", std::io::Error::last_os_error()));
    }
    let kept: caps::CapsHashSet = keep.into_iter().collect();
    caps::set(None, CapSet::Effective, &kept).map_err(err("set effective"))?;
    caps::set(None, CapSet::Permitted, &kept).map_err(err("set permitted"))?;
    Ok(())
}

/// execve with a PATH search over the sandbox's own PATH (glibc's execvpe would search
/// the helper's). Only returns by reporting the failure.
fn exec(spec: &SandboxSpec, report: BorrowedFd<'_>) {
    let program = &spec.argv[0];
    let to_c = |s: &str| CString::new(s).unwrap_or_default();
    let argv: Vec<CString> = spec.argv.iter().map(|a| to_c(a)).collect();
    let envp: Vec<CString> = spec.env.iter().map(|(k, v)| to_c(&format!("{k}={v}"))).collect();
    let candidates: Vec<String> = if program.contains('/') {
        vec![program.clone()]
    } else {
        let path = spec.env.get("PATH").map(String::as_str).unwrap_or(corral_core::env::DEFAULT_PATH);
        path.split(':').map(|d| if d.is_empty() { program.clone() } else { format!("{d}/{program}") }).collect()
    };
    let mut errno = libc::ENOENT;
    for candidate in candidates {
        let err = match nix::unistd::execve(&to_c(&candidate), &argv, &envp) {
            Err(e) => e,
            Ok(never) => match never {},
        };
        match err {
            // Keep searching, remembering that something was found but refused.
            nix::errno::Errno::EACCES => errno = libc::EACCES,
            nix::errno::Errno::ENOENT
            | nix::errno::Errno::ENOTDIR
            | nix::errno::Errno::ELOOP
            | nix::errno::Errno::ENAMETOOLONG => {}
            other => {
                errno = other as i32;
                break;
            }
        }
    }
    Report::ExecFailed { program: program.clone(), errno }.send(report);
}
