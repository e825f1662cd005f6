//! The helper: a single-threaded supervisor that creates every sandbox.
//!
//! Runs in: the `corral-helper` process, started once per client. Because it has exactly
//! one thread it can `clone` into namespaces and run ordinary code in the child, which a
//! multithreaded runtime such as Node must never do. It owns one event loop over its
//! control socket and the pidfds of running sandboxes; it enforces wall-clock timeouts,
//! reaps, and answers each spawn with `Started` then `Exited` or `Failed`.
//!
//! It dies with its client: `PR_SET_PDEATHSIG` covers a client killed outright, end of
//! stream on the control socket covers a client that closes it; either way every sandbox
//! is killed first (each sandbox's init also has the helper as its death signal).

use crate::protocol::{self, Request, Response, StdioKind};
use crate::report::Report;
use crate::sandbox::{self, Launched, StdioFds};
use crate::{placeholders, probe, seccomp, sys};
use corral_core::{CorralError, ExitStatus, HostCapabilities, RunStats, PROTOCOL_VERSION};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use std::collections::HashMap;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

struct Running {
    launched: Launched,
    placeholders: Vec<placeholders::Created>,
    started: Instant,
    deadline: Option<Instant>,
    timed_out: bool,
}

pub struct Helper {
    ctl: OwnedFd,
    /// Our own pidfd, inherited by each sandbox init so it can check we are alive.
    self_pidfd: OwnedFd,
    running: HashMap<u64, Running>,
    seccomp: seccomp::Cache,
    caps: Option<HostCapabilities>,
    buf: Vec<u8>,
}

/// Entry point of the `corral-helper` binary: `corral-helper --fd N --parent PID`.
pub fn main() -> ! {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| {
        args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).and_then(|v| v.parse::<i32>().ok())
    };
    let (Some(fd), Some(parent)) = (arg("--fd"), arg("--parent")) else {
        eprintln!("corral-helper is started by corral itself (usage: corral-helper --fd N --parent PID)");
        sys::exit_now(2);
    };
    // SAFETY: prctl with integer arguments.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
    if nix::unistd::getppid().as_raw() != parent {
        sys::exit_now(1); // the client died before we could watch it
    }
    ensure_std_fds();
    // SAFETY: the client passed us this descriptor and nothing else owns it.
    let ctl = unsafe { OwnedFd::from_raw_fd(fd) };
    let self_pidfd = match sys::pidfd_open(std::process::id() as i32) {
        Ok(fd) => fd,
        Err(e) => {
            eprintln!("corral-helper: pidfd_open: {e} (Linux 5.3 or newer is required)");
            sys::exit_now(1);
        }
    };
    let mut helper = Helper {
        ctl,
        self_pidfd,
        running: HashMap::new(),
        seccomp: seccomp::Cache::default(),
        caps: None,
        buf: Vec::new(),
    };
    helper.run();
    helper.kill_all();
    sys::exit_now(0)
}

/// Received descriptors must never land on 0, 1 or 2.
fn ensure_std_fds() {
    for fd in 0..3 {
        // SAFETY: F_GETFD only asks whether the descriptor exists.
        if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
            if let Ok(null) = nix::fcntl::open("/dev/null", nix::fcntl::OFlag::O_RDWR, nix::sys::stat::Mode::empty()) {
                std::mem::forget(null); // it takes the lowest free number: the missing one
            }
        }
    }
}

impl Helper {
    fn run(&mut self) {
        loop {
            let ids: Vec<u64> = self.running.keys().copied().collect();
            let timeout = self
                .running
                .values()
                .filter(|r| !r.timed_out)
                .filter_map(|r| r.deadline)
                .min()
                .map(|d| {
                    PollTimeout::try_from(
                        d.saturating_duration_since(Instant::now()).as_millis().min(60_000) as i32 + 1,
                    )
                    .unwrap_or(PollTimeout::NONE)
                })
                .unwrap_or(PollTimeout::NONE);
            let (ctl_ready, exited) = {
                let mut fds = vec![PollFd::new(self.ctl.as_fd(), PollFlags::POLLIN)];
                fds.extend(
                    ids.iter().map(|id| PollFd::new(self.running[id].launched.pidfd.as_fd(), PollFlags::POLLIN)),
                );
                match poll(&mut fds, timeout) {
                    Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                    Err(_) => return,
                }
                let ready = |f: &PollFd| f.revents().is_some_and(|r| !r.is_empty());
                let exited: Vec<u64> = ids.iter().zip(&fds[1..]).filter(|(_, f)| ready(f)).map(|(id, _)| *id).collect();
                (ready(&fds[0]), exited)
            };
            for id in exited {
                self.finish(id);
            }
            self.expire();
            if ctl_ready && !self.handle_request() {
                return;
            }
        }
    }

    /// Handles one request; false when the client is gone.
    fn handle_request(&mut self) -> bool {
        let (req, fds) = match protocol::recv::<Request>(self.ctl.as_fd(), &mut self.buf) {
            Ok(Some(m)) => m,
            Ok(None) => return false,
            Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                eprintln!("corral-helper: malformed request: {e}");
                return true;
            }
            Err(_) => return false,
        };
        let reply = match req {
            Request::Hello { version } => {
                if version != PROTOCOL_VERSION {
                    eprintln!("corral-helper: client speaks {version}, helper {PROTOCOL_VERSION}");
                }
                Some(Response::Hello { version: PROTOCOL_VERSION.into(), pid: std::process::id() as i32 })
            }
            Request::Probe => {
                Some(Response::Probe { caps: Box::new(self.caps.get_or_insert_with(probe::host_capabilities).clone()) })
            }
            Request::Spawn { id, spec, stdio } => Some(self.spawn(id, &spec, stdio, fds)),
            Request::Signal { id, signal } => {
                if let Some(r) = self.running.get(&id) {
                    let _ = sys::pidfd_send_signal(r.launched.pidfd.as_fd(), signal);
                }
                None
            }
        };
        match reply {
            Some(r) => protocol::send(self.ctl.as_fd(), &r, &[]).is_ok(),
            None => true,
        }
    }

    fn spawn(
        &mut self,
        id: u64,
        spec: &corral_core::SandboxSpec,
        kinds: [StdioKind; 3],
        fds: Vec<OwnedFd>,
    ) -> Response {
        if spec.argv.is_empty() {
            return Response::Failed { id, error: CorralError::policy("argv", "no command given") };
        }
        let mut fds = fds.into_iter();
        let mut stdio: StdioFds = [None, None, None];
        for (slot, kind) in stdio.iter_mut().zip(kinds) {
            if kind == StdioKind::Fd {
                match fds.next() {
                    Some(fd) => *slot = Some(fd),
                    None => {
                        return Response::Failed {
                            id,
                            error: CorralError::internal("stdio descriptor missing from spawn request"),
                        }
                    }
                }
            }
        }
        let filters = match self.seccomp.get(&spec.seccomp) {
            Ok(f) => f,
            Err(e) => return Response::Failed { id, error: e },
        };
        let started = Instant::now();
        let made = match placeholders::create(&spec.placeholders) {
            Ok(made) => made,
            Err(e) => return Response::Failed { id, error: e },
        };
        match sandbox::launch(spec, stdio, &filters, self.self_pidfd.as_fd()) {
            Ok(launched) => {
                let pid = launched.pid;
                let deadline = spec.timeout_ms.map(|ms| started + Duration::from_millis(ms));
                self.running.insert(id, Running { launched, placeholders: made, started, deadline, timed_out: false });
                Response::Started { id, pid }
            }
            Err(e) => {
                placeholders::remove(made);
                Response::Failed { id, error: e }
            }
        }
        // Our copies of the stdio descriptors close here, so the client sees EOF as soon as
        // the sandbox's last holder exits.
    }

    fn expire(&mut self) {
        let now = Instant::now();
        for r in self.running.values_mut() {
            if !r.timed_out && r.deadline.is_some_and(|d| d <= now) {
                r.timed_out = true;
                // Killing init tears down the whole pid namespace.
                let _ = sys::pidfd_send_signal(r.launched.pidfd.as_fd(), libc::SIGKILL);
            }
        }
    }

    /// The sandbox's init exited: reap it, read its reports, answer the client.
    fn finish(&mut self, id: u64) {
        let Some(r) = self.running.remove(&id) else { return };
        let mut status = 0;
        // SAFETY: rusage is plain data filled by the kernel.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: waiting for our own child.
        unsafe { libc::wait4(r.launched.pid, &mut status, 0, &mut usage) };
        let wall = r.started.elapsed();
        placeholders::remove(r.placeholders);
        let (reports, fds) = Report::read_all(r.launched.report.as_fd());
        // The overlay layers (if captured) travel on to the client, which owns them now.
        let layers: Vec<RawFd> = fds.iter().map(|f| f.as_raw_fd()).collect();
        let response = outcome(id, &reports, status, r.timed_out).unwrap_or_else(|status| {
            let us = |t: libc::timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
            Response::Exited {
                id,
                stats: RunStats {
                    status,
                    wall_time_us: wall.as_micros() as u64,
                    user_time_us: us(usage.ru_utime),
                    system_time_us: us(usage.ru_stime),
                    peak_memory_bytes: usage.ru_maxrss as u64 * 1024,
                    timed_out: r.timed_out,
                },
            }
        });
        let attach = if matches!(response, Response::Exited { .. }) { &layers[..] } else { &[] };
        let _ = protocol::send(self.ctl.as_fd(), &response, attach);
    }

    fn kill_all(&mut self) {
        for r in self.running.values() {
            let _ = sys::pidfd_send_signal(r.launched.pidfd.as_fd(), libc::SIGKILL);
        }
        for (_, r) in self.running.drain() {
            let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(r.launched.pid), None);
            placeholders::remove(r.placeholders);
        }
    }
}

/// A failure response, or the exit status of a command that ran.
fn outcome(id: u64, reports: &[Report], init_status: i32, timed_out: bool) -> Result<Response, ExitStatus> {
    // The first report decides: a command's exec failure precedes init's exit report.
    match reports.iter().find(|r| **r != Report::Layers) {
        Some(Report::SetupFailed { step, message, errno }) => {
            return Ok(Response::Failed {
                id,
                error: CorralError::spawn(format!("sandbox setup failed at {step}: {message}")).with_errno(*errno),
            })
        }
        Some(Report::ExecFailed { program, errno }) => {
            return Ok(Response::Failed { id, error: exec_error(program, *errno) })
        }
        Some(Report::Exited { status }) => return Err(*status),
        Some(Report::Layers) | None => {}
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

fn exec_error(program: &str, errno: i32) -> CorralError {
    let e = std::io::Error::from_raw_os_error(errno);
    let err = CorralError::spawn(format!("cannot execute {program:?}: {e}")).with_errno(Some(errno));
    match errno {
        libc::ENOENT => err.with_hint("not found in the sandbox: is its directory granted with fs.read or fs.exec, and is it on the sandbox's PATH?"),
        libc::EACCES => err.with_hint("not executable in the sandbox: grant its directory with fs.exec"),
        _ => err,
    }
}
