//! The warden: keeps a sandbox's carve-outs in place while its command runs. Runs in: a
//! process the helper forks for each sandbox that has masks or pins to watch; it stays in
//! the host's pid namespace and joins the sandbox's user and mount namespaces.
//!
//! Putting a carve-out back is a mount, which needs CAP_SYS_ADMIN in the sandbox's user
//! namespace. The sandbox's pid 1 serves the command (the socket gate, the proxy bridge), so
//! it keeps no capability once the command is forked; the mounts are made here instead. The
//! command cannot see, signal or trace this process (it is outside the sandbox's pid
//! namespace), so it cannot stop the watching either.
//!
//! Init sets the watches up before the command is forked (`init::carveouts`) and hands the
//! inotify instance over with a `Watching` report, so nothing the host does from then on is
//! missed: until this process has joined, events queue in the instance (an overflow makes it
//! look at everything again). It ends with the sandbox (init's pidfd), dies with the helper
//! (parent-death signal, which the helper's own client death also leads to), and when a
//! carve-out cannot be put back it reports that on the sandbox's report socket and kills
//! init, which ends the run as init's own failure would.

use crate::ipc::report::Report;
use crate::sandbox::init::carveouts::Watcher;
use crate::sandbox::StepError;
use crate::sys;
use crate::sys::close_all_except;
use corral_core::spec::MountSpec;
use corral_core::CorralError;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

/// A running warden, seen from the helper.
struct Warden {
    pid: i32,
    pidfd: OwnedFd,
}

/// The helper's wardens, reaped when they exit (after their sandbox).
#[derive(Default)]
pub struct Wardens(Vec<Warden>);

impl Wardens {
    /// Starts the warden for a sandbox's `Watching` report (`mounts`: its view, if it has
    /// carve-outs to watch). On failure, the report that ends the run (nothing would put a
    /// replaced carve-out back).
    pub fn start(
        &mut self,
        init: BorrowedFd<'_>,
        mounts: Option<Vec<MountSpec>>,
        fds: Vec<OwnedFd>,
    ) -> Result<(), Report> {
        let started = match mounts {
            Some(mounts) => start(init, &mounts, fds),
            None => Err(CorralError::internal("carve-outs handed over twice, or by a sandbox without any")),
        };
        let w = started.map_err(|e| Report::SetupFailed {
            step: "start the carve-out warden".into(),
            message: e.to_string(),
            errno: None,
        })?;
        self.0.push(w);
        Ok(())
    }

    pub fn pidfds(&self) -> impl Iterator<Item = BorrowedFd<'_>> {
        self.0.iter().map(|w| w.pidfd.as_fd())
    }

    /// Reaps the wardens that have exited (their pidfd is readable).
    pub fn reap(&mut self) {
        self.0.retain(|w| {
            if !sys::ready_now(w.pidfd.as_fd(), libc::POLLIN).unwrap_or(false) {
                return true;
            }
            let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(w.pid), None);
            false
        });
    }

    pub fn kill_all(&mut self) {
        for w in self.0.drain(..) {
            let _ = sys::pidfd_send_signal(w.pidfd.as_fd(), libc::SIGKILL);
            let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(w.pid), None);
        }
    }
}

/// Forks the warden of the sandbox whose init is `init`, with what init attached to its
/// `Watching` report: the inotify instance, the empty file, a writer of the report socket,
/// the sandbox's user and mount namespaces. Must run in the single-threaded helper.
fn start(init: BorrowedFd<'_>, mounts: &[MountSpec], fds: Vec<OwnedFd>) -> Result<Warden, CorralError> {
    let [inotify, empty_file, report, user, mnt]: [OwnedFd; 5] =
        fds.try_into().map_err(|_| CorralError::internal("a Watching report without its five descriptors"))?;
    let h = Handover { inotify, empty_file, user, mnt };
    let helper = std::process::id() as i32;
    // SAFETY: the helper is single-threaded; the child never returns from `run`.
    match unsafe { sys::clone3_fork(0, None) } {
        Ok(sys::Forked::Child) => run(helper, init, mounts, h, report),
        Ok(sys::Forked::Parent { pid, pidfd }) => Ok(Warden { pid, pidfd }),
        Err(e) => Err(CorralError::spawn(format!("starting the carve-out warden: {e}"))),
    }
}

/// What the watching needs of what init attached to its `Watching` report (the report
/// socket's writer travels apart: failures are reported on it after the watching ends).
struct Handover {
    inotify: OwnedFd,
    empty_file: OwnedFd,
    /// The sandbox's user and mount namespaces, as init opened them.
    user: OwnedFd,
    mnt: OwnedFd,
}

fn run(helper: i32, init: BorrowedFd<'_>, mounts: &[MountSpec], h: Handover, report: OwnedFd) -> ! {
    let outcome =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| watch(helper, init, mounts, h, report.as_fd())));
    let failure = match outcome {
        Ok(Ok(())) => sys::exit_now(0),
        Ok(Err(e)) => e,
        Err(_) => StepError::msg("carve-out warden", "panic in the carve-out warden"),
    };
    // A sandbox that ended meanwhile (joining a dead process's namespaces fails) has its
    // answer already.
    if sys::ready_now(init, libc::POLLIN).unwrap_or(false) {
        sys::exit_now(0);
    }
    // The report first, then the kill: the helper reads what was queued before init died.
    Report::SetupFailed { step: failure.step.into(), message: failure.message, errno: failure.errno }
        .send(report.as_fd());
    let _ = sys::pidfd_send_signal(init, libc::SIGKILL);
    sys::exit_now(1)
}

fn watch(
    helper: i32,
    init: BorrowedFd<'_>,
    mounts: &[MountSpec],
    h: Handover,
    report: BorrowedFd<'_>,
) -> Result<(), StepError> {
    let Handover { inotify, empty_file, user, mnt } = h;
    die_with_helper(helper)?;
    // Nothing of the helper's stays open here: its control socket, other sandboxes'
    // descriptors.
    let keep = [
        init.as_raw_fd(),
        inotify.as_raw_fd(),
        empty_file.as_raw_fd(),
        report.as_raw_fd(),
        user.as_raw_fd(),
        mnt.as_raw_fd(),
    ];
    close_all_except(&keep).map_err(|e| StepError::io("close inherited descriptors", e))?;
    // The user namespace first: it gives the capabilities (CAP_SYS_ADMIN, CAP_SYS_CHROOT in
    // the caller's own user namespace) that joining the mount namespace asks for. By the
    // descriptors init opened: init is not dumpable, so a pidfd would need host root.
    sys::setns_fd(user.as_fd(), libc::CLONE_NEWUSER)
        .map_err(|e| StepError::io("join the sandbox's user namespace", e))?;
    sys::setns_fd(mnt.as_fd(), libc::CLONE_NEWNS)
        .map_err(|e| StepError::io("join the sandbox's mount namespace", e))?;
    drop((user, mnt));
    die_with_helper(helper)?;
    // SAFETY: prctl with integer arguments.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(StepError::io("warden no_new_privs", std::io::Error::last_os_error()));
    }
    // SAFETY: prctl with integer arguments.
    if unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) } != 0 {
        return Err(StepError::io("warden PR_SET_DUMPABLE", std::io::Error::last_os_error()));
    }
    let mut watcher = Watcher::adopt(mounts, inotify, empty_file)?;
    loop {
        let mut fds = [
            libc::pollfd { fd: init.as_raw_fd(), events: libc::POLLIN, revents: 0 },
            libc::pollfd { fd: watcher.fd().as_raw_fd(), events: libc::POLLIN, revents: 0 },
        ];
        // SAFETY: a valid array of pollfd for its length.
        if unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, -1) } < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(StepError::io("warden poll", e));
        }
        if fds[0].revents != 0 {
            return Ok(()); // the sandbox is gone
        }
        if fds[1].revents != 0 {
            watcher.handle()?;
        }
    }
}

/// Dies with the helper (set again after joining the user namespace); if it already died,
/// stops now.
fn die_with_helper(helper: i32) -> Result<(), StepError> {
    // SAFETY: prctl with integer arguments.
    if unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) } != 0 {
        return Err(StepError::io("warden PR_SET_PDEATHSIG", std::io::Error::last_os_error()));
    }
    if nix::unistd::getppid().as_raw() != helper {
        sys::exit_now(1);
    }
    Ok(())
}
