//! The helper: a single-threaded supervisor that creates every sandbox.
//!
//! Runs in: the `corral-helper` process, started once per client. Because it has exactly
//! one thread it can `clone` into namespaces and run ordinary code in the child, which a
//! multithreaded runtime such as Node must never do. It owns one event loop over its
//! control socket and the pidfds of running sandboxes; it enforces wall-clock timeouts,
//! reaps, and answers each spawn with `Started` then `Exited` or `Failed`.
//!
//! It dies with its client: `PR_SET_PDEATHSIG` (SIGTERM, read from a signalfd in the loop)
//! covers a client killed outright, end of stream on the control socket covers a client
//! that closes it; either way every sandbox is killed first and what the helper made on
//! the host for them (placeholders, cgroups) is removed (each sandbox's init also has the
//! helper as its death signal, so a helper killed outright still takes them along; what
//! such a helper made on the host is removed by the next helper to start).

pub mod cgroup;
mod freezer;
pub mod identity;
pub mod launch;
mod placeholders;
pub mod probe;
mod running;
pub mod setid_guard;
pub mod warden;

use crate::ipc::protocol::{Request, Response};
use crate::ipc::report::{Exec, Report, Usage};
use crate::ipc::transport::{self, StdioKind};
use crate::{error, seccomp, sys};
use corral_core::command::Command;
use corral_core::{CorralError, HostCapabilities, RunStats, PROTOCOL_VERSION};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use running::{outcome, Running};
use std::collections::HashMap;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

pub struct Helper {
    ctl: OwnedFd,
    /// Our own pidfd, inherited by each sandbox init so it can check we are alive.
    self_pidfd: OwnedFd,
    running: HashMap<u64, Running>,
    seccomp: seccomp::Cache,
    caps: Option<HostCapabilities>,
    /// Where sandbox cgroups go, or why there are none.
    cgroups: Result<cgroup::Manager, cgroup::CgroupError>,
    /// The signals that end the helper: its client's death (PDEATHSIG) among them.
    ending: nix::sys::signalfd::SignalFd,
    wardens: warden::Wardens,
    /// Refuses root callers' sandboxes the set-id files of their writable grants.
    guard: setid_guard::Guard,
    buf: Vec<u8>,
}

/// Signals after which the helper ends its sandboxes, cleans up and exits.
fn ending_signals() -> nix::sys::signal::SigSet {
    use nix::sys::signal::Signal;
    let mut set = nix::sys::signal::SigSet::empty();
    for s in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
        set.add(s);
    }
    set
}

/// The environment variable that carries the client's pid to the helper.
pub const PARENT_ENV: &str = "CORRAL_HELPER_PARENT";

/// Entry point of the `corral-helper` binary: `corral-helper --fd N`, with the client's pid
/// in `CORRAL_HELPER_PARENT`.
pub fn main() -> ! {
    let args: Vec<String> = std::env::args().collect();
    let fd = args.iter().position(|a| a == "--fd").and_then(|i| args.get(i + 1)).and_then(|v| v.parse::<i32>().ok());
    let parent = std::env::var(PARENT_ENV).ok().and_then(|v| v.parse::<i32>().ok());
    let (Some(fd), Some(parent)) = (fd, parent) else {
        eprintln!("corral-helper is started by corral itself (usage: {PARENT_ENV}=PID corral-helper --fd N)");
        sys::exit_now(2);
    };
    // When the client dies (even by SIGKILL) the helper gets SIGTERM, read from a signalfd
    // in its loop: it then kills its sandboxes and removes what it made on the host for
    // them (placeholders, cgroups) before exiting, which a SIGKILL here would not allow.
    let ending = match ending_signals().thread_block().and_then(|()| {
        nix::sys::signalfd::SignalFd::with_flags(
            &ending_signals(),
            nix::sys::signalfd::SfdFlags::SFD_CLOEXEC | nix::sys::signalfd::SfdFlags::SFD_NONBLOCK,
        )
    }) {
        Ok(fd) => fd,
        Err(e) => {
            eprintln!("corral-helper: signalfd: {e}");
            sys::exit_now(1);
        }
    };
    // SAFETY: prctl with integer arguments.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) };
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
    // What helpers killed outright left on the host for their sandboxes: placeholders here,
    // cgroups as the manager starts.
    placeholders::sweep();
    let cgroups = cgroup::Manager::new();
    let mut helper = Helper {
        ctl,
        self_pidfd,
        running: HashMap::new(),
        seccomp: seccomp::Cache::default(),
        caps: None,
        cgroups,
        ending,
        wardens: warden::Wardens::default(),
        guard: setid_guard::Guard::default(),
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
            let reporting: Vec<u64> = ids.iter().copied().filter(|id| self.running[id].report_open).collect();
            let viewing: Vec<u64> = ids.iter().copied().filter(|id| self.running[id].view.is_some()).collect();
            let (ctl_ready, exited, reported, viewed, wardens_done, guard_down) = {
                let mut fds = vec![PollFd::new(self.ctl.as_fd(), PollFlags::POLLIN)];
                let running = &self.running;
                fds.extend(ids.iter().map(|id| PollFd::new(running[id].launched.pidfd.as_fd(), PollFlags::POLLIN)));
                fds.extend(
                    reporting.iter().map(|id| PollFd::new(running[id].launched.report.as_fd(), PollFlags::POLLIN)),
                );
                fds.extend(
                    viewing
                        .iter()
                        .filter_map(|id| running[id].view.as_ref())
                        .map(|v| PollFd::new(v.go.as_fd(), PollFlags::POLLIN)),
                );
                let wardens_from = fds.len();
                fds.extend(self.wardens.pidfds().map(|f| PollFd::new(f, PollFlags::POLLIN)));
                let wardens_to = fds.len();
                fds.extend(self.guard.pidfd().map(|f| PollFd::new(f, PollFlags::POLLIN)));
                fds.push(PollFd::new(self.ending.as_fd(), PollFlags::POLLIN));
                match poll(&mut fds, timeout) {
                    Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                    Err(_) => return,
                }
                let ready = |f: &PollFd| f.revents().is_some_and(|r| !r.is_empty());
                if fds.last().is_some_and(ready) {
                    return; // told to end (see `main`)
                }
                let (pidfds, rest) = fds[1..wardens_from].split_at(ids.len());
                let (reports, views) = rest.split_at(reporting.len());
                let ready_ids = |ids: &[u64], fds: &[PollFd]| -> Vec<u64> {
                    ids.iter().zip(fds).filter(|(_, f)| ready(f)).map(|(id, _)| *id).collect()
                };
                let guard_down = fds[wardens_to..fds.len() - 1].iter().any(ready);
                let wardens_done = fds[wardens_from..wardens_to].iter().any(ready);
                (
                    ready(&fds[0]),
                    ready_ids(&ids, pidfds),
                    ready_ids(&reporting, reports),
                    ready_ids(&viewing, views),
                    wardens_done,
                    guard_down,
                )
            };
            if wardens_done {
                self.wardens.reap();
            }
            if guard_down {
                self.guard_died();
            }
            for id in viewed {
                self.guard_view(id);
            }
            for id in reported {
                self.read_reports(id);
            }
            for id in exited {
                self.finish(id);
            }
            self.expire();
            if ctl_ready && !self.handle_request() {
                return;
            }
        }
    }

    /// What the host supports, with cgroups as this helper can actually use them.
    fn capabilities(&mut self) -> HostCapabilities {
        if self.caps.is_none() {
            let mut caps = probe::host_capabilities();
            match &self.cgroups {
                Ok(m) => {
                    caps.cgroup.writable = true;
                    caps.cgroup.controllers = m.controllers();
                    caps.cgroup.detail = None;
                }
                Err(why) => {
                    caps.cgroup.writable = false;
                    caps.cgroup.detail = Some(why.to_string());
                }
            }
            self.caps = Some(caps);
        }
        self.caps.clone().unwrap_or_default()
    }

    /// Handles one request; false when the client is gone.
    ///
    /// The helper has one thread for every tenant, so no request may cost it time a sandbox
    /// controls. Each does a bounded amount of work: one message of at most the transport's
    /// length; a spawn is one clone (the mount view is built in the child); a signal is one
    /// pidfd signal (a kill also one thaw); a pause is one write to a freezer, or, without
    /// one, two forks whatever the tree ([`freezer`]); nothing walks a sandbox's processes.
    fn handle_request(&mut self) -> bool {
        let (req, fds) = match transport::recv::<Request>(self.ctl.as_fd(), &mut self.buf) {
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
            Request::Probe => Some(Response::Probe { caps: Box::new(self.capabilities()) }),
            Request::Spawn { id, spec, stdio, channel, proxy } => self.spawn(id, &spec, stdio, channel, proxy, fds),
            Request::Prepare { id, mut spec, proxy } => {
                spec.wait_for_command = true;
                self.spawn(id, &spec, [StdioKind::Null; 3], false, proxy, fds)
            }
            Request::Exec { id, command, stdio, timeout_ms } => self.exec(id, *command, stdio, timeout_ms, fds),
            Request::Signal { id, signal } => {
                match self.running.get(&id) {
                    Some(r) if signal == libc::SIGKILL => r.kill(),
                    Some(r) => {
                        let _ = sys::pidfd_send_signal(r.launched.pidfd.as_fd(), signal);
                    }
                    None => {}
                }
                None
            }
            Request::Freeze { op, id, freeze } => {
                let error = match self.running.get(&id) {
                    // The cgroup freezer stops the tree atomically; signals are the fallback.
                    Some(Running { cgroup: Some(c), .. }) if self.cgroups.as_ref().is_ok_and(|m| m.can_freeze()) => {
                        let r = if freeze { c.freeze() } else { c.thaw() };
                        r.err().map(|e| error::doing("freezing the sandbox's cgroup", e))
                    }
                    Some(r) => freezer::set(r.launched.pid, r.launched.pidfd.as_fd(), freeze).err(),
                    None => Some(CorralError::invalid_state("the sandbox has already exited")),
                };
                Some(Response::Done { op, error })
            }
        };
        match reply {
            Some(r) => transport::send(self.ctl.as_fd(), &r, &[]).is_ok(),
            None => true,
        }
    }

    fn spawn(
        &mut self,
        id: u64,
        spec: &corral_core::SandboxSpec,
        kinds: [StdioKind; 3],
        channel: bool,
        proxy: bool,
        fds: Vec<OwnedFd>,
    ) -> Option<Response> {
        if !spec.wait_for_command {
            if let Err(error) = corral_core::command::check_spec(spec) {
                return Some(Response::Failed { id, error });
            }
        }
        let (stdio, proxy) = match launch::stdio_from(kinds, channel, proxy, fds) {
            Ok(s) => s,
            Err(e) => return Some(Response::Failed { id, error: e }),
        };
        let filters = match self.seccomp.get(&spec.seccomp) {
            Ok(f) => f,
            Err(e) => return Some(Response::Failed { id, error: e.into() }),
        };
        let started = Instant::now();
        // Tree-wide limits were planned for a cgroup: without one, refuse (fail closed).
        let cgroup = match (&spec.cgroup, &self.cgroups) {
            (None, _) => None,
            (Some(l), Ok(m)) => match m.create(id, l) {
                Ok(c) => Some(c),
                Err(e) => {
                    return Some(Response::Failed { id, error: error::doing("creating the sandbox's cgroup", e) });
                }
            },
            (Some(_), Err(why)) => {
                let why = cgroup::CgroupError::Unusable(why.to_string());
                return Some(Response::Failed { id, error: error::doing("cgroup limits", why) });
            }
        };
        let made = match placeholders::create(&spec.placeholders) {
            Ok(made) => made,
            Err(e) => return Some(Response::Failed { id, error: e }),
        };
        match launch::launch(spec, stdio, proxy, &filters, self.self_pidfd.as_fd(), cgroup.as_ref(), &mut self.guard) {
            Ok(launched) => {
                let (pid, guarded) = (launched.pid, launched.guarded);
                let mut launched = launched;
                let view = launched.view.take();
                // A warm sandbox's clock and deadline start with its command.
                let deadline = (!spec.wait_for_command)
                    .then_some(spec.timeout_ms)
                    .flatten()
                    .map(|ms| started + Duration::from_millis(ms));
                let r = Running {
                    launched,
                    cgroup,
                    reports: Vec::new(),
                    layers: None,
                    report_open: true,
                    placeholders: made,
                    started,
                    deadline,
                    timed_out: false,
                    answered: false,
                    waiting: spec.wait_for_command.then(|| spec.mounts.clone()),
                    watch: crate::sandbox::init::carveouts::any(&spec.mounts).then(|| spec.mounts.clone()),
                    guarded,
                    view,
                };
                self.running.insert(id, r);
                // A warm sandbox is "started" when it says it is ready (see read_reports).
                (!spec.wait_for_command).then_some(Response::Started { id, pid })
            }
            Err(e) => {
                placeholders::remove(made);
                Some(Response::Failed { id, error: e })
            }
        }
        // Our copies of the stdio descriptors close here, so the client sees EOF as soon as
        // the sandbox's last holder exits.
    }

    /// Hands a warm sandbox its command; the answer comes as for any sandbox.
    fn exec(
        &mut self,
        id: u64,
        command: Command,
        stdio: [StdioKind; 3],
        timeout_ms: Option<u64>,
        fds: Vec<OwnedFd>,
    ) -> Option<Response> {
        let Some(r) = self.running.get_mut(&id) else {
            return Some(Response::Failed { id, error: CorralError::internal("no such prepared sandbox") });
        };
        let Some(mounts) = r.waiting.take() else {
            return Some(Response::Failed { id, error: CorralError::internal("the sandbox already has its command") });
        };
        if let Err(error) = command.check(&mounts) {
            // The prepared sandbox is not handed anything: it goes, and the client hears why
            // (once: this is its answer).
            r.kill();
            r.answered = true;
            return Some(Response::Failed { id, error });
        }
        // Verdicts other runs earned since this sandbox started may be stale by now.
        if r.guarded {
            self.guard.forget();
        }
        let raw: Vec<RawFd> = fds.iter().map(|f| f.as_raw_fd()).collect();
        if let Err(e) = transport::send(r.launched.report.as_fd(), &Exec { command, stdio }, &raw) {
            r.kill();
            return Some(Response::Failed { id, error: CorralError::spawn(format!("handing the command over: {e}")) });
        }
        r.started = Instant::now();
        r.deadline = timeout_ms.map(|ms| r.started + Duration::from_millis(ms));
        None
    }

    fn expire(&mut self) {
        let now = Instant::now();
        for r in self.running.values_mut() {
            if !r.timed_out && r.deadline.is_some_and(|d| d <= now) {
                r.timed_out = true;
                r.kill();
            }
        }
    }

    /// Takes what a sandbox reported: a terminal goes to the client at once, a warm
    /// sandbox's readiness too, and the exit status is answered right away (init has
    /// already ended every other process; the namespaces' teardown need not be waited for).
    /// Reports come from the sandbox's init, which the command cannot reach, and one read
    /// takes at most what the socket's buffer holds.
    fn read_reports(&mut self, id: u64) {
        let Some(r) = self.running.get_mut(&id) else { return };
        let (queued, closed) = Report::read_queued(r.launched.report.as_fd());
        r.report_open &= !closed;
        let mut exited = false;
        for (report, fds) in queued {
            match report {
                Report::Terminal => {
                    let raw: Vec<RawFd> = fds.iter().map(|f| f.as_raw_fd()).collect();
                    let _ = transport::send(self.ctl.as_fd(), &Response::Terminal { id }, &raw);
                }
                Report::Ready => {
                    let _ = transport::send(self.ctl.as_fd(), &Response::Started { id, pid: r.launched.pid }, &[]);
                }
                Report::Layers => r.layers = fds.into_iter().next(),
                // A fork and nothing more here; the warden joins the sandbox on its own.
                Report::Watching => {
                    if let Err(failed) = self.wardens.start(r.launched.pidfd.as_fd(), r.watch.take(), fds) {
                        r.kill(); // fail closed: nothing would put a replaced carve-out back
                        r.reports.push(failed);
                    }
                }
                other => {
                    exited |= matches!(other, Report::Exited { .. });
                    r.reports.push(other);
                }
            }
        }
        if exited {
            self.answer(id, None);
        }
    }

    /// Answers the client for sandbox `id`, once. `init_status` is init's wait status when
    /// it has been reaped (needed when it died without a report).
    fn answer(&mut self, id: u64, init_status: Option<(i32, libc::rusage)>) {
        let Some(r) = self.running.get_mut(&id) else { return };
        if r.answered {
            return;
        }
        r.answered = true;
        let wall = r.started.elapsed();
        placeholders::remove(std::mem::take(&mut r.placeholders));
        let tree = r.cgroup.as_ref().map(|c| c.stats());
        let (status, usage) = init_status.unwrap_or((0, unsafe_zeroed_rusage()));
        // Init's count covers the whole tree; without its report, init's own rusage.
        let reported = r.reports.iter().find_map(|rep| match rep {
            Report::Exited { usage: Some(u), .. } => Some(*u),
            _ => None,
        });
        let u = reported.unwrap_or_else(|| Usage::from_rusage(&usage));
        // The cgroup counted every process that was ever in it; rusage only those that were
        // waited for (a child whose parent ignores SIGCHLD, and all below it, are missing).
        let cpu = tree.as_ref().and_then(|t| t.cpu);
        let response = outcome(id, &r.reports, status, r.timed_out).unwrap_or_else(|status| Response::Exited {
            id,
            stats: RunStats {
                status,
                wall_time_us: wall.as_micros() as u64,
                user_time_us: cpu.map_or(u.user_us, |c| c.user_us),
                system_time_us: cpu.map_or(u.system_us, |c| c.system_us),
                peak_memory_bytes: tree.as_ref().and_then(|t| t.peak_memory).unwrap_or(u.max_rss_bytes),
                timed_out: r.timed_out,
                oom_killed: tree.as_ref().is_some_and(|t| t.oom_kills > 0),
                peak_memory_tree: tree.as_ref().is_some_and(|t| t.peak_memory.is_some()),
                cpu_time_tree: cpu.is_some(),
            },
        });
        // The overlay layers (if captured) travel on to the client, which owns them now.
        let layers: Vec<OwnedFd> = r.layers.take().into_iter().collect();
        let raw: Vec<RawFd> = layers.iter().map(|f| f.as_raw_fd()).collect();
        let attach = if matches!(response, Response::Exited { .. }) { &raw[..] } else { &[] };
        let _ = transport::send(self.ctl.as_fd(), &response, attach);
    }

    /// The sandbox's init exited: reap it, answer if not done yet, leave nothing behind.
    fn finish(&mut self, id: u64) {
        // Whatever init reported before it died is queued on the socket still.
        self.read_reports(id);
        let Some(pid) = self.running.get(&id).map(|r| r.launched.pid) else { return };
        let mut status = 0;
        let mut usage = unsafe_zeroed_rusage();
        // SAFETY: waiting for our own child.
        unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        self.answer(id, Some((status, usage)));
        if let Some(r) = self.running.remove(&id) {
            if let Some(c) = r.cgroup {
                if let Err(e) = c.destroy() {
                    eprintln!("corral-helper: removing a sandbox cgroup: {e}");
                }
            }
        }
    }

    /// Sandbox `id`'s init built its view: the set-id guard marks what it mounted beneath
    /// its writable grants, then it goes on. Fail closed: if that cannot be done, it goes.
    fn guard_view(&mut self, id: u64) {
        let Some(r) = self.running.get_mut(&id) else { return };
        let Some(view) = r.view.take() else { return };
        if let Err(e) = identity::guard_view(r.launched.pid, &view, &mut self.guard) {
            r.kill();
            r.reports.push(Report::SetupFailed { step: "guard set-id files".into(), message: e.message, errno: None });
        }
    }

    /// The set-id guard's responder died: every sandbox it guarded goes (fail closed: the
    /// opens it held would pass once the group is closed), then the group.
    fn guard_died(&mut self) {
        if !self.guard.responder_died() {
            return;
        }
        for r in self.running.values_mut().filter(|r| r.guarded) {
            r.kill();
            r.reports.push(Report::SetupFailed {
                step: "guard set-id files".into(),
                message: "the set-id guard stopped; the sandbox was ended".into(),
                errno: None,
            });
        }
        self.guard.release();
    }

    fn kill_all(&mut self) {
        self.wardens.kill_all();
        self.guard.release();
        for r in self.running.values() {
            r.kill();
        }
        for (_, r) in self.running.drain() {
            let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(r.launched.pid), None);
            placeholders::remove(r.placeholders);
            if let Some(c) = r.cgroup {
                let _ = c.destroy();
            }
        }
        // exit_now skips destructors: remove the base cgroup explicitly.
        if let Ok(m) = std::mem::replace(&mut self.cgroups, Err(cgroup::CgroupError::Unusable(String::new()))) {
            m.remove();
        }
    }
}

fn unsafe_zeroed_rusage() -> libc::rusage {
    // SAFETY: rusage is plain data; all-zero is a valid value.
    unsafe { std::mem::zeroed() }
}
