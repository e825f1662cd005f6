//! One sandbox as the helper sees it while it runs, and the answer its reports add up to.
//! Runs in: the helper.

use super::cgroup;
use super::launch::Launched;
use super::placeholders;
use crate::error;
use crate::ipc::protocol::Response;
use crate::ipc::report::Report;
use crate::sys;
use corral_core::spec::MountSpec;
use corral_core::{CorralError, ExitStatus};
use std::os::fd::{AsFd, OwnedFd};
use std::time::Instant;

pub(super) struct Running {
    pub(super) launched: Launched,
    pub(super) cgroup: Option<cgroup::SandboxCgroup>,
    /// Reports read so far (failures, the exit status) and the overlay layers, if sent.
    pub(super) reports: Vec<Report>,
    pub(super) layers: Option<OwnedFd>,
    /// The report socket still has writers.
    pub(super) report_open: bool,
    /// The client has its answer (sent as soon as init reported the exit).
    pub(super) answered: bool,
    pub(super) placeholders: placeholders::Holding,
    pub(super) started: Instant,
    pub(super) deadline: Option<Instant>,
    pub(super) timed_out: bool,
    /// A prepared sandbox's mount view, to check the command it is handed against.
    pub(super) waiting: Option<Vec<MountSpec>>,
    /// The mount view of a sandbox with carve-outs to watch, for its warden.
    pub(super) watch: Option<Vec<MountSpec>>,
    /// Its writable grants are marked for the set-id guard: it must not outlive the guard's
    /// responder.
    pub(super) guarded: bool,
    /// Its init will say when its view is built, for the guard to mark what it mounted
    /// beneath its writable grants (`identity::guard_view`); taken once done.
    pub(super) view: Option<super::identity::ViewWait>,
}

impl Running {
    /// Kills the sandbox, paused or not: SIGKILL to its init (which takes the whole pid
    /// namespace along), then a thaw of its cgroup. A v1 freezer holds even SIGKILL until
    /// the thaw, so a paused sandbox would otherwise outlive its timeout and its caller; a
    /// pending SIGKILL is taken before any of its code runs again. (SIGKILL ends a process
    /// stopped by SIGSTOP as it is.)
    pub(super) fn kill(&self) {
        let _ = sys::pidfd_send_signal(self.launched.pidfd.as_fd(), libc::SIGKILL);
        if let Some(c) = &self.cgroup {
            let _ = c.thaw(); // fails at once where there is no freezer: nothing was frozen
        }
    }
}

/// A failure response, or the exit status of a command that ran.
pub(super) fn outcome(id: u64, reports: &[Report], init_status: i32, timed_out: bool) -> Result<Response, ExitStatus> {
    // The first report decides: a command's exec failure precedes init's exit report.
    match reports.first() {
        Some(Report::SetupFailed { step, message, errno }) => {
            return Ok(Response::Failed { id, error: error::setup_failed(step, message, *errno) })
        }
        Some(Report::ExecFailed { program, errno }) => {
            return Ok(Response::Failed { id, error: error::exec_failed(program, *errno) })
        }
        Some(Report::Exited { status, .. }) => return Err(*status),
        Some(Report::Layers | Report::Terminal | Report::Ready | Report::Watching) | None => {}
    }
    // No report: init itself was killed (timeout, kill(), OOM).
    if timed_out || libc::WIFSIGNALED(init_status) {
        let signal = if timed_out { libc::SIGKILL } else { libc::WTERMSIG(init_status) };
        return Err(ExitStatus::Signaled { signal });
    }
    Ok(Response::Failed {
        id,
        error: CorralError::internal(format!(
            "sandbox init exited with status {} without a report",
            libc::WEXITSTATUS(init_status)
        )),
    })
}
