//! One sandbox's cgroup: limits, statistics, freezing, and a clean kill. Runs in: the
//! helper.

use super::backend::{Backend, CpuTime, Entry, Features};
use super::error::CgroupError;
use super::files::write;
use cgroups_rs::fs::cgroup::Cgroup;
use cgroups_rs::fs::cpu::CpuController;
use cgroups_rs::fs::freezer::FreezerController;
use cgroups_rs::fs::memory::MemController;
use cgroups_rs::fs::pid::PidController;
use cgroups_rs::fs::{Controller, MaxValue};
use corral_core::spec::CgroupLimits;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The CFS period corral uses; the quota is `cpus` times it.
const CPU_PERIOD_US: u64 = 100_000;
/// The kernel refuses quotas below 1 ms.
const CPU_MIN_QUOTA_US: i64 = 1_000;
/// How long [`SandboxCgroup::destroy`] and [`SandboxCgroup::freeze`] wait for the kernel.
const KERNEL_GRACE: Duration = Duration::from_secs(1);

/// What the kernel counted for one sandbox.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// The most memory charged at once (v2 `memory.peak`, 5.19+; v1 `memory.max_usage_in_bytes`).
    pub peak_memory: Option<u64>,
    /// Processes the OOM killer killed (v2 `memory.events`, v1 `memory.oom_control`).
    pub oom_kills: u64,
    /// CPU time used by every process that was ever in the cgroup.
    pub cpu: Option<CpuTime>,
}

/// One sandbox's cgroup. Dropping it without [`destroy`](Self::destroy) destroys it too
/// (errors ignored), so a sandbox never outlives its handle. The cloned child inherits a
/// copy of the handle: it must end with `execve` or `_exit`, never by dropping it.
#[derive(Debug)]
pub struct SandboxCgroup {
    cg: Cgroup,
    backend: &'static dyn Backend,
    features: Features,
    /// Each distinct directory (v2: one).
    dirs: Vec<PathBuf>,
    entry: Option<Entry>,
    gone: bool,
}

impl SandboxCgroup {
    pub(super) fn new(cg: Cgroup, backend: &'static dyn Backend, features: Features, dirs: Vec<PathBuf>) -> Self {
        SandboxCgroup { cg, backend, features, dirs, entry: None, gone: false }
    }

    pub(super) fn cgroup(&self) -> &Cgroup {
        &self.cg
    }

    pub(super) fn open_entry(&mut self) -> Result<(), CgroupError> {
        self.entry = Some(self.backend.entry(&self.dirs)?);
        Ok(())
    }

    /// v2 only: an `O_DIRECTORY` descriptor of the cgroup for `clone3(CLONE_INTO_CGROUP)`.
    /// None on v1.
    pub fn dir_fd(&self) -> Option<BorrowedFd<'_>> {
        match &self.entry {
            Some(Entry::Dir(fd)) => Some(fd.as_fd()),
            _ => None,
        }
    }

    /// v1: open descriptors of each controller's `cgroup.procs`, opened by the helper, so
    /// the sandbox's first process can move itself in by writing `0` to each (see
    /// [`join_self`](super::join_self)) before it does anything else (a process in a new
    /// user namespace could not open them itself). Empty on v2.
    pub fn procs_fds(&self) -> Vec<BorrowedFd<'_>> {
        match &self.entry {
            Some(Entry::Procs(fds)) => fds.iter().map(|fd| fd.as_fd()).collect(),
            _ => Vec::new(),
        }
    }

    /// Peak memory, OOM kills and CPU time so far. Values the kernel does not offer are
    /// `None` (or 0 OOM kills).
    pub fn stats(&self) -> Stats {
        let f = self.features;
        let mut stats = Stats::default();
        // Direct reads of the two files needed: cgroups-rs's memory_stat() reads and parses
        // eight (v2) or eleven (v1) files for them (~80 µs per sandbox, measured on v1), and
        // has nothing for v2's `memory.events`.
        if f.memory {
            if let Some(mem) = self.cg.controller_of::<MemController>() {
                (stats.peak_memory, stats.oom_kills) = self.backend.memory_stats(mem.path(), f);
            }
        }
        stats.cpu = self.backend.cpu_usage(&self.cg, f);
        stats
    }

    /// Stops every process of the cgroup (v2 `cgroup.freeze`, v1 freezer controller) and
    /// returns once the kernel reports them all frozen. Err if there is no freezer, or if
    /// the kernel has not finished within a second (the cgroup is thawed again then).
    pub fn freeze(&self) -> Result<(), CgroupError> {
        let freezer = self.freezer()?;
        freezer.freeze().map_err(|e| CgroupError::library("freezing the sandbox's cgroup", &e))?;
        let deadline = Instant::now() + KERNEL_GRACE;
        let mut pause = Duration::from_micros(50);
        loop {
            if self.backend.frozen(&self.dirs, freezer) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                let _ = freezer.thaw();
                return Err(CgroupError::FreezeTimeout);
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(10));
            self.backend.freeze_again(freezer);
        }
    }

    /// Lets the processes run again.
    pub fn thaw(&self) -> Result<(), CgroupError> {
        self.freezer()?.thaw().map_err(|e| CgroupError::library("thawing the sandbox's cgroup", &e))
    }

    /// Kills anything still inside (v2 `cgroup.kill`; v1: SIGKILL every pid in
    /// `cgroup.procs`, repeated until empty), then removes the cgroup, retrying briefly
    /// while the kernel finishes tearing processes down (rmdir gives EBUSY). Never leaves
    /// the directory behind unless the kernel refuses for more than a second; returns Err then.
    pub fn destroy(mut self) -> Result<(), CgroupError> {
        self.teardown()
    }

    fn teardown(&mut self) -> Result<(), CgroupError> {
        if std::mem::replace(&mut self.gone, true) {
            return Ok(());
        }
        self.entry = None;
        let deadline = Instant::now() + KERNEL_GRACE;
        let mut pause = Duration::from_micros(50);
        loop {
            self.kill_all();
            let err = match self.cg.delete() {
                Ok(()) => return Ok(()),
                Err(_) if self.dirs.iter().all(|d| !d.exists()) => return Ok(()),
                Err(e) => CgroupError::library("removing the sandbox's cgroup", &e),
            };
            if Instant::now() >= deadline {
                let left: Vec<String> =
                    self.dirs.iter().filter(|d| d.exists()).map(|d| d.display().to_string()).collect();
                return Err(CgroupError::LeftBehind { source: Box::new(err), left: left.join(", ") });
            }
            self.backend.tidy(&self.dirs);
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(20));
        }
    }

    /// One round of killing everything inside.
    fn kill_all(&self) {
        if self.backend.kill_at_once(&self.cg, self.features) {
            return;
        }
        // Signal each process. Frozen, nothing can fork between reading the list and the
        // signals; SIGKILL takes effect at the thaw. (Should the freeze fail, the caller's
        // loop repeats the round until the cgroup is empty.)
        if self.cg.procs().is_empty() {
            return;
        }
        if self.features.freezer {
            let _ = self.freeze();
        }
        let me = std::process::id() as u64;
        for p in self.cg.procs() {
            if p.pid > 0 && p.pid != me {
                if let Ok(pid) = i32::try_from(p.pid) {
                    // A pid that is gone meanwhile needs nothing.
                    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
                }
            }
        }
        if self.features.freezer {
            // Also thaws a sandbox the caller had paused, so the SIGKILLs land.
            let _ = self.thaw();
        }
    }

    fn freezer(&self) -> Result<&FreezerController, CgroupError> {
        if !self.features.freezer {
            return Err(CgroupError::NoFreezer);
        }
        self.cg.controller_of::<FreezerController>().ok_or(CgroupError::NoFreezer)
    }

    pub(super) fn apply(&self, limits: &CgroupLimits) -> Result<(), CgroupError> {
        let f = self.features;
        let missing = |controller| CgroupError::NoController { controller, base: self.dirs[0].clone() };
        if let Some(bytes) = limits.memory {
            let mem = self.cg.controller_of::<MemController>().ok_or_else(|| missing("memory"))?;
            let bytes = i64::try_from(bytes).unwrap_or(i64::MAX);
            // Called one by one, not through `Cgroup::apply`, which ignores memory errors.
            mem.set_limit(bytes).map_err(|e| CgroupError::library("setting the memory limit", &e))?;
            if f.swap {
                mem.set_memswap_limit(self.backend.swap_limit(bytes))
                    .map_err(|e| CgroupError::library("setting the swap limit", &e))?;
            }
            if f.oom_group {
                // Direct write: cgroups-rs has no call for `memory.oom.group`.
                write(&self.dirs[0].join("memory.oom.group"), "1")?;
            }
        }
        if let Some(cpus) = limits.cpus {
            let cpu = self.cg.controller_of::<CpuController>().ok_or_else(|| missing("cpu"))?;
            let quota = ((cpus * CPU_PERIOD_US as f64).round() as i64).max(CPU_MIN_QUOTA_US);
            cpu.set_cfs_quota_and_period(Some(quota), Some(CPU_PERIOD_US))
                .map_err(|e| CgroupError::library("setting the CPU quota", &e))?;
        }
        if let Some(n) = limits.pids {
            let pids = self.cg.controller_of::<PidController>().ok_or_else(|| missing("pids"))?;
            let n = i64::try_from(n).unwrap_or(i64::MAX);
            pids.set_pid_max(MaxValue::Value(n)).map_err(|e| CgroupError::library("setting the process limit", &e))?;
        }
        Ok(())
    }
}

impl Drop for SandboxCgroup {
    fn drop(&mut self) {
        let _ = self.teardown();
    }
}
