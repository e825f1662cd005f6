//! One cgroup per sandbox: limits, stats, freezing, and a clean kill. Runs in: the helper
//! (everything but [`join_self`], which runs in the freshly cloned child).
//!
//! # Layout
//!
//! The helper finds (or makes) one *base* cgroup when it starts ([`Manager::new`]) and
//! puts every sandbox in a child `<base>/s<id>` ([`Manager::create`]):
//!
//! - `$CORRAL_CGROUP/h<helper pid>` when `CORRAL_CGROUP` names a delegated, writable cgroup
//!   (a path relative to the hierarchy root, e.g. `/user.slice/.../run-r1.scope`);
//! - else, as root, `corral/h<helper pid>` at the top of the hierarchy;
//! - else (non-root) `<own cgroup>/corral-h<helper pid>`, which works on v1 when the own
//!   cgroup was handed to the user, and on v2 almost never (see below).
//!
//! A helper killed with SIGKILL cannot remove its base; the next helper removes such stale
//! `h<pid>` siblings whose pid is gone, but only empty ones (a plain `rmdir`, which the
//! kernel refuses for a populated cgroup), so it never kills or moves anything it does not
//! own. A base whose pid was reused by an unrelated live process stays until that process
//! ends and another helper starts. Pids are those of the helper's pid namespace: helpers in
//! different pid namespaces must not share one parent (give each its own `CORRAL_CGROUP`),
//! or one could take the other's idle, empty base for stale.
//!
//! # cgroup v2 and v1
//!
//! | | v2 (`/sys/fs/cgroup` is cgroup2) | v1, and hybrid (v1 controllers, treated as v1) |
//! |---|---|---|
//! | tree | one directory per cgroup | one directory per controller hierarchy (`memory`, `cpu`, `cpuacct`, `pids`, `freezer`) |
//! | controllers for children | enabled in the parent's `cgroup.subtree_control`, only if the parent holds no processes (the *no-internal-processes* rule) | always there |
//! | joining | `clone3(CLONE_INTO_CGROUP)` with [`SandboxCgroup::dir_fd`]: the child is born inside, atomically | the child writes `0` to each controller's `cgroup.procs` through [`SandboxCgroup::procs_fds`] before anything else |
//! | memory | `memory.max`, `memory.swap.max = 0`, `memory.oom.group = 1` (the whole sandbox dies together on OOM) | `memory.limit_in_bytes`, and `memory.memsw.limit_in_bytes` to the same value when swap accounting exists |
//! | cpu | `cpu.max = "<cpus*100000> 100000"` | `cpu.cfs_quota_us`, `cpu.cfs_period_us` |
//! | pids | `pids.max` | `pids.max` |
//! | freeze | `cgroup.freeze` (a core file, no controller), done when `cgroup.events` says `frozen 1` | the `freezer` controller, done when `freezer.state` says `FROZEN` |
//! | kill | `cgroup.kill` (5.14+) | SIGKILL every pid of `cgroup.procs` (frozen meanwhile, so nothing forks in between), until empty |
//! | stats | `memory.peak` (5.19+), `memory.events` `oom_kill`, `cpu.stat` `usage_usec` | `memory.max_usage_in_bytes`, `memory.oom_control` `oom_kill`, `cpuacct.usage` |
//!
//! # Why the join happens the way it does
//!
//! A sandbox must be inside its cgroup before it can fork or allocate, or a child could
//! escape the limits. On v2 `CLONE_INTO_CGROUP` places the new process in the target
//! cgroup as part of `clone3` itself, so there is no moment when it is outside. v1 has no
//! such flag: the helper opens every controller's `cgroup.procs` (a process in a new user
//! namespace could not open them itself: the files belong to the host's root or user), the
//! child inherits the descriptors and writes `0` (= itself) to each as its very first step,
//! before it forks anything. The kernel checks the permission against the credentials of
//! whoever *opened* the file, so the write works after the child has changed namespaces.
//! The descriptors are close-on-exec, so they vanish with the sandbox's `execve`.
//!
//! # Rootless on v2
//!
//! A user's own cgroup (e.g. a terminal's scope) holds the user's processes, so v2 refuses
//! to enable controllers below it. Give corral an empty delegated cgroup instead:
//!
//! ```sh
//! systemd-run --user --scope -p Delegate=yes bash   # a delegated scope running this shell
//! cg=$(cut -d: -f3 /proc/self/cgroup)               # the scope, e.g. /user.slice/.../run-r1.scope
//! mkdir /sys/fs/cgroup$cg/shell && echo $$ > /sys/fs/cgroup$cg/shell/cgroup.procs
//! export CORRAL_CGROUP=$cg                          # now empty: corral may enable controllers in it
//! ```
//!
//! # What is read or written directly
//!
//! cgroups-rs creates the cgroups, sets the limits, freezes and thaws, lists and kills (v2)
//! the processes, reads `cpu.stat`, and deletes. Read or written directly, each marked where
//! it happens:
//!
//! - `cgroup.subtree_control` of the base: cgroups-rs enables controllers only on the
//!   *parents* of what it creates, and ignores failures;
//! - `memory.oom.group`: cgroups-rs has no call for it;
//! - `memory.events` and `cgroup.events` (is the freeze done?): no call either;
//! - `memory.peak` / `memory.max_usage_in_bytes`, `memory.oom_control` and
//!   `cpuacct.usage`: cgroups-rs only reads these as part of whole-controller reports of
//!   eight to eleven files each (~80 µs per sandbox), for one number.

use cgroups_rs::fs::cgroup::{get_cgroups_relative_paths, Cgroup};
use cgroups_rs::fs::cpu::CpuController;
use cgroups_rs::fs::cpuacct::CpuAcctController;
use cgroups_rs::fs::error::Error as CgError;
use cgroups_rs::fs::freezer::FreezerController;
use cgroups_rs::fs::hierarchies::{self, V1};
use cgroups_rs::fs::memory::MemController;
use cgroups_rs::fs::pid::PidController;
use cgroups_rs::fs::{Controller, Controllers, Hierarchy, MaxValue, Subsystem};
use cgroups_rs::FreezerState;
use corral_core::spec::CgroupLimits;
use std::collections::{BTreeSet, HashMap};
use std::fmt::Display;
use std::fs;
use std::io::{self, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, Instant};

/// What the kernel counted for one sandbox.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// The most memory charged at once (v2 `memory.peak`, 5.19+; v1 `memory.max_usage_in_bytes`).
    pub peak_memory: Option<u64>,
    /// Processes the OOM killer killed (v2 `memory.events`, v1 `memory.oom_control`).
    pub oom_kills: u64,
    /// CPU time used, user and system, in microseconds.
    pub cpu_usage_us: Option<u64>,
}

/// The CFS period corral uses; the quota is `cpus` times it.
const CPU_PERIOD_US: u64 = 100_000;
/// The kernel refuses quotas below 1 ms.
const CPU_MIN_QUOTA_US: i64 = 1_000;
/// How long [`SandboxCgroup::destroy`] and [`SandboxCgroup::freeze`] wait for the kernel.
const KERNEL_GRACE: Duration = Duration::from_secs(1);
/// The v2 controllers the base enables for its sandboxes.
const V2_WANTED: [&str; 3] = ["memory", "cpu", "pids"];

/// The controllers corral uses. `CpuAcct` exists only on v1 (v2 reports CPU time in `cpu.stat`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Memory,
    Cpu,
    CpuAcct,
    Pids,
    Freezer,
}

impl Kind {
    const V1: [Kind; 5] = [Kind::Memory, Kind::Cpu, Kind::CpuAcct, Kind::Pids, Kind::Freezer];
    const V2: [Kind; 4] = [Kind::Memory, Kind::Cpu, Kind::Pids, Kind::Freezer];

    fn name(self) -> &'static str {
        match self {
            Kind::Memory => "memory",
            Kind::Cpu => "cpu",
            Kind::CpuAcct => "cpuacct",
            Kind::Pids => "pids",
            Kind::Freezer => "freezer",
        }
    }

    fn v1_controller(self) -> Controllers {
        match self {
            Kind::Memory => Controllers::Mem,
            Kind::Cpu => Controllers::Cpu,
            Kind::CpuAcct => Controllers::CpuAcct,
            Kind::Pids => Controllers::Pids,
            Kind::Freezer => Controllers::Freezer,
        }
    }

    fn subsystem(self, dir: PathBuf, mount_root: PathBuf, v2: bool) -> Subsystem {
        match self {
            Kind::Memory => Subsystem::Mem(MemController::new(dir, mount_root, v2)),
            Kind::Cpu => Subsystem::Cpu(CpuController::new(dir, mount_root, v2)),
            Kind::CpuAcct => Subsystem::CpuAcct(CpuAcctController::new(dir, mount_root)),
            Kind::Pids => Subsystem::Pid(PidController::new(dir, mount_root, v2)),
            Kind::Freezer => Subsystem::Freezer(FreezerController::new(dir, mount_root, v2)),
        }
    }

    fn of(s: &Subsystem) -> Option<Kind> {
        match s {
            Subsystem::Mem(_) => Some(Kind::Memory),
            Subsystem::Cpu(_) => Some(Kind::Cpu),
            Subsystem::CpuAcct(_) => Some(Kind::CpuAcct),
            Subsystem::Pid(_) => Some(Kind::Pids),
            Subsystem::Freezer(_) => Some(Kind::Freezer),
            _ => None,
        }
    }
}

/// One controller's directory for some cgroup, and the root of the mount it lives in.
#[derive(Debug, Clone)]
struct Dir {
    kind: Kind,
    path: PathBuf,
    mount_root: PathBuf,
}

/// A cgroups-rs hierarchy rooted at a directory of our choosing (the base cgroup, or the
/// place it is created in) that holds only the controllers corral uses. cgroups-rs's own
/// `V1`/`V2` hierarchies are rooted at the mount and carry every mounted controller (v1
/// `cpuset`, `devices`, `blkio`, …), which would make every sandbox a directory in each.
#[derive(Debug, Clone)]
struct Tree {
    v2: bool,
    /// On v2 the cgroup's directory (cgroups-rs creates, kills and deletes relative to it).
    root: PathBuf,
    dirs: Vec<Dir>,
}

impl Tree {
    /// The same controllers, one level down.
    fn child(&self, name: &str) -> Tree {
        Tree {
            v2: self.v2,
            root: self.root.join(name),
            dirs: self.dirs.iter().map(|d| Dir { path: d.path.join(name), ..d.clone() }).collect(),
        }
    }

    /// Each distinct directory once (v1 `cpu` and `cpuacct` may share a mount).
    fn unique_paths(&self) -> Vec<PathBuf> {
        let mut seen = BTreeSet::new();
        self.dirs.iter().filter(|d| seen.insert(d.path.clone())).map(|d| d.path.clone()).collect()
    }

    fn has(&self, kind: Kind) -> bool {
        self.dirs.iter().any(|d| d.kind == kind)
    }
}

impl Hierarchy for Tree {
    fn subsystems(&self) -> Vec<Subsystem> {
        self.dirs.iter().map(|d| d.kind.subsystem(d.path.clone(), d.mount_root.clone(), self.v2)).collect()
    }

    fn root(&self) -> PathBuf {
        self.root.clone()
    }

    fn root_control_group(&self) -> Cgroup {
        Cgroup::load(Box::new(self.clone()), "")
    }

    fn parent_control_group(&self, path: &str) -> Cgroup {
        Cgroup::load(Box::new(self.clone()), Path::new(path).parent().unwrap_or(Path::new("")))
    }

    fn v2(&self) -> bool {
        self.v2
    }
}

/// What the base cgroup offers, found once in [`Manager::new`].
#[derive(Debug, Clone, Copy, Default)]
struct Features {
    v2: bool,
    memory: bool,
    cpu: bool,
    cpuacct: bool,
    pids: bool,
    freezer: bool,
    /// v2 `memory.swap.max`; v1 `memory.memsw.limit_in_bytes` (swap accounting).
    swap: bool,
    /// v2 `memory.oom.group` (4.19+).
    oom_group: bool,
    /// v2 `memory.peak` (5.19+); v1 always has `memory.max_usage_in_bytes`.
    peak: bool,
    /// v2 `cgroup.kill` (5.14+).
    kill: bool,
}

/// Where this helper may create cgroups, found once at helper start.
#[derive(Debug)]
pub struct Manager {
    /// The cgroup the base lives in.
    parent: Tree,
    /// The base's name in `parent` (`h<pid>` or `corral-h<pid>`).
    name: String,
    /// The base, with the controllers that could be set up in it.
    base: Tree,
    features: Features,
    /// The shared `corral` directories at the top of each hierarchy (as root), removed
    /// with the last helper's base.
    shared: Vec<PathBuf>,
    removed: bool,
}

/// Where the base goes.
enum Placement {
    /// `$CORRAL_CGROUP`, relative to the hierarchy root.
    Delegated(PathBuf),
    /// `corral/` at the top (root).
    Top,
    /// Below the process's own cgroup (non-root).
    Own,
}

impl Manager {
    /// Finds or creates a base cgroup for this helper process: `$CORRAL_CGROUP/h<pid>` if
    /// `CORRAL_CGROUP` is set (a delegated, writable cgroup path relative to the hierarchy
    /// root, e.g. for `systemd-run --user -p Delegate=yes`), else as root `corral/h<pid>` at
    /// the top of the hierarchy, else (non-root) a child `corral-h<pid>` of the process's
    /// own cgroup if that works (on v2 it usually does not because of the
    /// no-internal-processes rule; then this fails). Enables the memory, cpu and pids
    /// controllers for children where v2 needs it (`cgroup.subtree_control`), and removes
    /// stale `h<pid>` siblings whose helper pid no longer exists (left by a helper that was
    /// SIGKILLed) — only empty ones, killing nothing. Returns Err with a human-readable
    /// reason that says what to do when cgroups are not usable.
    ///
    /// One `Manager` per process: a second one in the same process shares the base.
    pub fn new() -> Result<Manager, String> {
        let pid = std::process::id();
        let uid = nix::unistd::geteuid();
        let v2 = hierarchies::is_cgroup2_unified_mode();
        let mounts = mounts(v2)?;
        let placement = match std::env::var("CORRAL_CGROUP") {
            Ok(p) if !p.trim().is_empty() => Placement::Delegated(delegated_path(&p, v2)?),
            _ if uid.is_root() => Placement::Top,
            _ => Placement::Own,
        };
        let (prefix, name) = match placement {
            Placement::Own => ("corral-h", format!("corral-h{pid}")),
            _ => ("h", format!("h{pid}")),
        };
        let own = match placement {
            Placement::Own => get_cgroups_relative_paths()
                .map_err(|e| format!("cannot read this process's cgroups from /proc/self/cgroup: {e}"))?,
            _ => HashMap::new(),
        };
        let mut dirs = Vec::new();
        for m in &mounts {
            let rel = match &placement {
                Placement::Delegated(p) => p.clone(),
                Placement::Top => PathBuf::from("corral"),
                Placement::Own => own_path(&own, m, v2)?,
            };
            dirs.push(Dir { kind: m.kind, path: m.path.join(rel), mount_root: m.mount_root.clone() });
        }
        let parent = Tree { v2, root: dirs[0].path.clone(), dirs };

        // Before creating ours: a helper that died by SIGKILL left its base behind.
        for dir in parent.unique_paths() {
            remove_stale(&dir, prefix, pid);
        }

        let shared = match placement {
            Placement::Top => parent.unique_paths(),
            _ => Vec::new(),
        };
        let made = if v2 {
            create_base_v2(&parent, &name, matches!(placement, Placement::Top), uid)
        } else {
            create_base_v1(&parent, &name, matches!(placement, Placement::Delegated(_)), uid)
        };
        let (base, features) = match made {
            Ok(made) => made,
            Err(e) => {
                // The shared `corral` we may have made, unless other helpers use it.
                for dir in &shared {
                    let _ = fs::remove_dir(dir);
                }
                return Err(e);
            }
        };
        Ok(Manager { parent, name, base, features, shared, removed: false })
    }

    /// `"v2"` or `"v1"` (a hybrid host counts as v1).
    pub fn version(&self) -> &'static str {
        if self.features.v2 {
            "v2"
        } else {
            "v1"
        }
    }

    /// Which of memory, cpu, pids and freezer sandboxes get.
    pub fn controllers(&self) -> Vec<String> {
        let f = &self.features;
        [(f.memory, "memory"), (f.cpu, "cpu"), (f.pids, "pids"), (f.freezer, "freezer")]
            .iter()
            .filter(|(on, _)| *on)
            .map(|(_, name)| name.to_string())
            .collect()
    }

    /// A fresh cgroup `<base>/s<id>` with the limits applied (memory.max +
    /// memory.swap.max=0 and memory.oom.group=1 on v2; memory.limit_in_bytes and memsw when
    /// swap accounting exists on v1; cpu quota/period = cpus*100000/100000; pids.max).
    /// Fails, creating nothing, if a limit needs a controller the base lacks.
    pub fn create(&self, id: u64, limits: &CgroupLimits) -> io::Result<SandboxCgroup> {
        let f = self.features;
        for (wanted, have, what) in [
            (limits.memory.is_some(), f.memory, "memory"),
            (limits.cpus.is_some(), f.cpu, "cpu"),
            (limits.pids.is_some(), f.pids, "pids"),
        ] {
            if wanted && !have {
                return Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    format!("the {what} cgroup controller is not available in {}", self.base.root.display()),
                ));
            }
        }
        if let Some(cpus) = limits.cpus {
            if !(cpus.is_finite() && cpus > 0.0) {
                return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("cpus must be above 0, not {cpus}")));
            }
        }
        let name = format!("s{id}");
        // A leftover of an earlier helper with our (reused) pid may still hold processes:
        // never share it. (cgroups-rs's create accepts an existing directory.)
        let dirs = self.base.child(&name).unique_paths();
        if dirs[0].exists() {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("the cgroup {} already exists", dirs[0].display()),
            ));
        }
        let cg = Cgroup::load(Box::new(self.base.clone()), &name);
        // From here on, dropping `sandbox` (on any error) removes whatever was created.
        let mut sandbox = SandboxCgroup { cg, features: f, dirs, dir: None, procs: Vec::new(), gone: false };
        let created = if f.v2 {
            // `Some(vec![])`: without it cgroups-rs writes every controller of the root into
            // the base's `cgroup.subtree_control` on each call; `Manager::new` did that once.
            Cgroup::new_with_specified_controllers(Box::new(self.base.clone()), &name, Some(Vec::new())).map(drop)
        } else {
            sandbox.cg.create()
        };
        created.map_err(|e| cg_err(format!("creating the cgroup {name} in {}", self.base.root.display()), e))?;
        sandbox.apply(limits)?;
        if f.v2 {
            let fd = fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
                .open(&sandbox.dirs[0])
                .map_err(|e| with_path("opening", &sandbox.dirs[0], e))?;
            sandbox.dir = Some(fd.into());
        } else {
            for dir in sandbox.dirs.clone() {
                let procs = dir.join("cgroup.procs");
                // std opens with O_CLOEXEC: the descriptors vanish at the sandbox's execve.
                let fd =
                    fs::OpenOptions::new().write(true).open(&procs).map_err(|e| with_path("opening", &procs, e))?;
                sandbox.procs.push(fd.into());
            }
        }
        Ok(sandbox)
    }

    /// Removes the base cgroup (after all sandboxes are gone). Dropping the manager does
    /// the same.
    pub fn remove(mut self) {
        self.remove_base();
    }

    fn remove_base(&mut self) {
        if std::mem::replace(&mut self.removed, true) {
            return;
        }
        let cg = Cgroup::load(Box::new(self.parent.clone()), &self.name);
        if cg.delete().is_err() {
            // Empty sandbox cgroups someone forgot to destroy; populated ones stay.
            for dir in self.base.unique_paths() {
                remove_empty_tree(&dir);
            }
        }
        // A plain rmdir: it fails (as it should) while other helpers' bases are inside;
        // cgroups-rs's delete would retry with sleeps.
        for dir in &self.shared {
            let _ = fs::remove_dir(dir);
        }
    }
}

impl Drop for Manager {
    fn drop(&mut self) {
        self.remove_base();
    }
}

/// One sandbox's cgroup. Dropping it without [`destroy`](Self::destroy) destroys it too
/// (errors ignored), so a sandbox never outlives its handle. The cloned child inherits a
/// copy of the handle: it must end with `execve` or `_exit`, never by dropping it.
#[derive(Debug)]
pub struct SandboxCgroup {
    cg: Cgroup,
    features: Features,
    /// Each distinct directory (v2: one).
    dirs: Vec<PathBuf>,
    dir: Option<OwnedFd>,
    procs: Vec<OwnedFd>,
    gone: bool,
}

impl SandboxCgroup {
    /// v2 only: an `O_DIRECTORY` descriptor of the cgroup for `clone3(CLONE_INTO_CGROUP)`.
    /// None on v1.
    pub fn dir_fd(&self) -> Option<BorrowedFd<'_>> {
        self.dir.as_ref().map(|fd| fd.as_fd())
    }

    /// v1: open descriptors of each controller's `cgroup.procs`, opened by the helper, so
    /// the sandbox's first process can move itself in by writing `0` to each (see
    /// [`join_self`]) before it does anything else (a process in a new user namespace could
    /// not open them itself). Empty on v2.
    pub fn procs_fds(&self) -> Vec<BorrowedFd<'_>> {
        self.procs.iter().map(|fd| fd.as_fd()).collect()
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
                let dir = mem.path();
                if f.v2 {
                    if f.peak {
                        stats.peak_memory = read_u64(&dir.join("memory.peak"));
                    }
                    stats.oom_kills = read_keyed(&dir.join("memory.events"), "oom_kill").unwrap_or(0);
                } else {
                    stats.peak_memory = read_u64(&dir.join("memory.max_usage_in_bytes"));
                    stats.oom_kills = read_keyed(&dir.join("memory.oom_control"), "oom_kill").unwrap_or(0);
                }
            }
        }
        if f.v2 {
            // `cpu.stat` is a core file on v2: there even without the cpu controller.
            if let Some(cpu) = self.cg.controller_of::<CpuController>() {
                stats.cpu_usage_us = keyed(&cpu.cpu().stat, "usage_usec");
            }
        } else if f.cpuacct {
            if let Some(acct) = self.cg.controller_of::<CpuAcctController>() {
                // One file: cgroups-rs's cpuacct() reads eight for this one number.
                stats.cpu_usage_us = read_u64(&acct.path().join("cpuacct.usage")).map(|ns| ns / 1000);
            }
        }
        stats
    }

    /// Stops every process of the cgroup (v2 `cgroup.freeze`, v1 freezer controller) and
    /// returns once the kernel reports them all frozen. Err if there is no freezer, or if
    /// the kernel has not finished within a second (the cgroup is thawed again then).
    pub fn freeze(&self) -> io::Result<()> {
        let freezer = self.freezer()?;
        freezer.freeze().map_err(|e| cg_err("freezing the sandbox's cgroup", e))?;
        let deadline = Instant::now() + KERNEL_GRACE;
        let mut pause = Duration::from_micros(50);
        loop {
            if self.frozen(freezer) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                let _ = freezer.thaw();
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the sandbox's cgroup did not finish freezing within 1 s (a process in uninterruptible sleep?)",
                ));
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(10));
            if !self.features.v2 {
                // v1: writing FROZEN again retries tasks that could not be frozen yet.
                let _ = freezer.freeze();
            }
        }
    }

    /// Lets the processes run again.
    pub fn thaw(&self) -> io::Result<()> {
        self.freezer()?.thaw().map_err(|e| cg_err("thawing the sandbox's cgroup", e))
    }

    /// Kills anything still inside (v2 `cgroup.kill`; v1: SIGKILL every pid in
    /// `cgroup.procs`, repeated until empty), then removes the cgroup, retrying briefly
    /// while the kernel finishes tearing processes down (rmdir gives EBUSY). Never leaves
    /// the directory behind unless the kernel refuses for more than a second; returns Err then.
    pub fn destroy(mut self) -> io::Result<()> {
        self.teardown()
    }

    fn teardown(&mut self) -> io::Result<()> {
        if std::mem::replace(&mut self.gone, true) {
            return Ok(());
        }
        self.dir = None;
        self.procs.clear();
        let deadline = Instant::now() + KERNEL_GRACE;
        let mut pause = Duration::from_micros(50);
        loop {
            self.kill_all();
            let err = match self.cg.delete() {
                Ok(()) => return Ok(()),
                Err(_) if self.dirs.iter().all(|d| !d.exists()) => return Ok(()),
                Err(e) => cg_err("removing the sandbox's cgroup", e),
            };
            if Instant::now() >= deadline {
                let dirs: Vec<String> =
                    self.dirs.iter().filter(|d| d.exists()).map(|d| d.display().to_string()).collect();
                return Err(io::Error::new(
                    err.kind(),
                    format!("{err}; the kernel still refuses after 1 s, left behind: {}", dirs.join(", ")),
                ));
            }
            if self.features.v2 {
                // cgroups-rs removes one directory on v2; a sandbox with its own cgroup
                // namespace may have made children (cgroup.kill emptied them already).
                for dir in &self.dirs {
                    remove_empty_children(dir);
                }
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(20));
        }
    }

    /// One round of killing everything inside.
    fn kill_all(&self) {
        if self.features.v2 && self.features.kill && self.cg.kill().is_ok() {
            return;
        }
        // v1, or v2 before 5.14: signal each process. Frozen, nothing can fork between
        // reading the list and the signals; SIGKILL takes effect at the thaw. (Should the
        // freeze fail, the caller's loop repeats the round until the cgroup is empty.)
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

    fn freezer(&self) -> io::Result<&FreezerController> {
        if !self.features.freezer {
            return Err(io::Error::new(io::ErrorKind::Unsupported, "no cgroup freezer for this sandbox"));
        }
        self.cg
            .controller_of::<FreezerController>()
            .ok_or_else(|| io::Error::new(io::ErrorKind::Unsupported, "no cgroup freezer for this sandbox"))
    }

    fn frozen(&self, freezer: &FreezerController) -> bool {
        if self.features.v2 {
            // Direct read: cgroups-rs's state() reads `cgroup.freeze`, which is what was
            // asked for, not whether the kernel is done.
            read_keyed(&self.dirs[0].join("cgroup.events"), "frozen") == Some(1)
        } else {
            matches!(freezer.state(), Ok(FreezerState::Frozen))
        }
    }

    fn apply(&self, limits: &CgroupLimits) -> io::Result<()> {
        let f = self.features;
        if let Some(bytes) = limits.memory {
            let mem = self.cg.controller_of::<MemController>().ok_or_else(|| missing("memory"))?;
            let bytes = i64::try_from(bytes).unwrap_or(i64::MAX);
            // Called one by one, not through `Cgroup::apply`, which ignores memory errors.
            mem.set_limit(bytes).map_err(|e| cg_err("setting the memory limit", e))?;
            if f.swap {
                // v2 limits swap on its own (none); v1 limits memory+swap (the same total).
                let swap = if f.v2 { 0 } else { bytes };
                mem.set_memswap_limit(swap).map_err(|e| cg_err("setting the swap limit", e))?;
            }
            if f.oom_group {
                // Direct write: cgroups-rs has no call for `memory.oom.group`.
                write_file(&self.dirs[0].join("memory.oom.group"), "1")?;
            }
        }
        if let Some(cpus) = limits.cpus {
            let cpu = self.cg.controller_of::<CpuController>().ok_or_else(|| missing("cpu"))?;
            let quota = ((cpus * CPU_PERIOD_US as f64).round() as i64).max(CPU_MIN_QUOTA_US);
            cpu.set_cfs_quota_and_period(Some(quota), Some(CPU_PERIOD_US))
                .map_err(|e| cg_err("setting the CPU quota", e))?;
        }
        if let Some(n) = limits.pids {
            let pids = self.cg.controller_of::<PidController>().ok_or_else(|| missing("pids"))?;
            let n = i64::try_from(n).unwrap_or(i64::MAX);
            pids.set_pid_max(MaxValue::Value(n)).map_err(|e| cg_err("setting the process limit", e))?;
        }
        Ok(())
    }
}

impl Drop for SandboxCgroup {
    fn drop(&mut self) {
        let _ = self.teardown();
    }
}

/// Writes `0` (= the calling process) to each descriptor: used in the child right after
/// clone to join the v1 cgroups opened by [`SandboxCgroup::procs_fds`]. Only `write(2)`:
/// no allocation, safe in a freshly cloned child.
pub fn join_self(fds: &[BorrowedFd<'_>]) -> io::Result<()> {
    for fd in fds {
        loop {
            // SAFETY: write(2) of a one-byte static buffer to a descriptor the caller lends.
            let rc = unsafe { libc::write(fd.as_raw_fd(), b"0".as_ptr().cast(), 1) };
            if rc >= 0 {
                break;
            }
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::Interrupted {
                return Err(err);
            }
        }
    }
    Ok(())
}

/// A mounted controller: where its hierarchy is visible and which part of it is.
struct Mount {
    kind: Kind,
    path: PathBuf,
    mount_root: PathBuf,
}

/// The controllers corral uses and where they are mounted.
fn mounts(v2: bool) -> Result<Vec<Mount>, String> {
    if v2 {
        let path = PathBuf::from(hierarchies::UNIFIED_MOUNTPOINT);
        return Ok(Kind::V2
            .iter()
            .map(|&kind| Mount { kind, path: path.clone(), mount_root: PathBuf::from("/") })
            .collect());
    }
    let v1 = V1::new();
    let found: Vec<Mount> = Kind::V1
        .iter()
        .filter_map(|&kind| {
            let (path, mount_root) = v1.get_mount_point(kind.v1_controller())?;
            Some(Mount { kind, path, mount_root })
        })
        .collect();
    if !found.iter().any(|m| matches!(m.kind, Kind::Memory | Kind::Cpu | Kind::Pids)) {
        return Err("no cgroup hierarchy is mounted: /sys/fs/cgroup is not cgroup2 and no cgroup v1 memory, cpu \
                    or pids controller is mounted; mount cgroup2 at /sys/fs/cgroup (or run where it is)"
            .into());
    }
    Ok(found)
}

/// `$CORRAL_CGROUP` as a path relative to the hierarchy root; `..` is refused.
fn delegated_path(raw: &str, v2: bool) -> Result<PathBuf, String> {
    let trimmed = raw.trim();
    let rel = match trimmed.strip_prefix(hierarchies::UNIFIED_MOUNTPOINT) {
        Some(rest) if v2 && (rest.is_empty() || rest.starts_with('/')) => rest,
        _ => trimmed,
    };
    let mut out = PathBuf::new();
    for c in Path::new(rel).components() {
        match c {
            Component::Normal(part) => out.push(part),
            Component::RootDir | Component::CurDir => {}
            _ => return Err(format!("CORRAL_CGROUP={raw:?} must be a cgroup path without `..`")),
        }
    }
    Ok(out)
}

/// This process's cgroup in the hierarchy of `m`, relative to the mount.
fn own_path(own: &HashMap<String, String>, m: &Mount, v2: bool) -> Result<PathBuf, String> {
    let key = if v2 { "" } else { m.kind.name() };
    let path = own
        .get(key)
        .ok_or_else(|| format!("/proc/self/cgroup names no cgroup for the {} controller", m.kind.name()))?;
    let root = m.mount_root.to_string_lossy();
    let rel = if root == "/" { path.as_str() } else { path.strip_prefix(root.as_ref()).unwrap_or(path) };
    Ok(PathBuf::from(rel.trim_start_matches('/')))
}

/// v2: creates the base, enables memory, cpu and pids for its children, and checks what
/// it got.
fn create_base_v2(parent: &Tree, name: &str, top: bool, uid: nix::unistd::Uid) -> Result<(Tree, Features), String> {
    let mount = PathBuf::from(hierarchies::UNIFIED_MOUNTPOINT);
    let parent_dir = parent.root.clone();
    // As root, `corral` may not exist yet: cgroups-rs creates it and enables the
    // controllers in it on the way; otherwise the parent is given and must exist.
    let (anchor, path) =
        if top { (mount.clone(), format!("corral/{name}")) } else { (parent_dir.clone(), name.into()) };
    if !anchor.is_dir() {
        return Err(format!(
            "the cgroup {} does not exist; CORRAL_CGROUP must name an existing cgroup, relative to {}",
            anchor.display(),
            mount.display()
        ));
    }
    let available = read_words(&mount.join("cgroup.controllers"));
    let wanted: Vec<String> =
        V2_WANTED.iter().filter(|c| available.iter().any(|a| a == *c)).map(|c| c.to_string()).collect();
    let anchor_tree = Tree { v2: true, root: anchor.clone(), dirs: Vec::new() };
    let mut attempt = 0;
    loop {
        match Cgroup::new_with_specified_controllers(Box::new(anchor_tree.clone()), &path, Some(wanted.clone())) {
            Ok(_) => break,
            // Another helper removed the shared `corral` between our mkdirs: once more.
            Err(e) if attempt == 0 && io_kind(&e) == Some(io::ErrorKind::NotFound) => attempt += 1,
            Err(e) => return Err(not_writable(uid, &anchor.join(&path), &e)),
        }
    }
    let base = parent_dir.join(name);

    // Direct writes: cgroups-rs enables controllers only on the parents of what it creates
    // and ignores failures; the base must pass them on to the sandboxes.
    let control = base.join("cgroup.subtree_control");
    let mut failure = None;
    for c in &wanted {
        if let Err(e) = write_file(&control, &format!("+{c}")) {
            failure.get_or_insert(e);
        }
    }
    let enabled = read_words(&control);
    let on = |c: &str| enabled.iter().any(|e| e == c);
    if !(on("memory") || on("cpu") || on("pids")) {
        let _ = fs::remove_dir(&base);
        return Err(v2_diagnosis(&base, &mount, failure, uid));
    }
    let features = Features {
        v2: true,
        memory: on("memory"),
        cpu: on("cpu"),
        cpuacct: false,
        pids: on("pids"),
        freezer: base.join("cgroup.freeze").exists(),
        swap: base.join("memory.swap.max").exists(),
        oom_group: base.join("memory.oom.group").exists(),
        peak: base.join("memory.peak").exists(),
        kill: base.join("cgroup.kill").exists(),
    };
    let tree = Tree {
        v2: true,
        root: base.clone(),
        // All of them: cgroups-rs finds `cgroup.procs` and `cpu.stat` through any; the
        // features above say which limits may be set.
        dirs: Kind::V2.iter().map(|&kind| Dir { kind, path: base.clone(), mount_root: PathBuf::from("/") }).collect(),
    };
    Ok((tree, features))
}

/// Why v2 gave the base no controllers, and what to do: finds the nearest ancestor that
/// has them but does not pass them on.
fn v2_diagnosis(base: &Path, mount: &Path, failure: Option<io::Error>, uid: nix::unistd::Uid) -> String {
    let what = if uid.is_root() {
        "set CORRAL_CGROUP to an empty cgroup that has the memory, cpu and pids controllers".to_string()
    } else {
        format!(
            "cgroups are not usable for uid {uid}; run under `systemd-run --user --scope -p Delegate=yes` with \
             CORRAL_CGROUP set to an empty delegated cgroup (see the corral_linux::cgroup docs)"
        )
    };
    let wanted =
        |dir: &Path| read_words(&dir.join("cgroup.controllers")).iter().any(|c| V2_WANTED.contains(&c.as_str()));
    if wanted(base) {
        let why = failure.map(|e| format!(": {e}")).unwrap_or_default();
        return format!("cannot enable the memory, cpu and pids controllers in {}{why}; {what}", base.display());
    }
    let Some(stop) = base.ancestors().skip(1).take_while(|a| a.starts_with(mount)).find(|a| wanted(a)) else {
        return format!("cgroup v2 has none of the memory, cpu and pids controllers here; {what}");
    };
    let holds_processes = fs::read_to_string(stop.join("cgroup.procs")).map(|s| !s.trim().is_empty()).unwrap_or(false);
    let writable = nix::unistd::access(&stop.join("cgroup.subtree_control"), nix::unistd::AccessFlags::W_OK).is_ok();
    if holds_processes && writable {
        format!(
            "the cgroup {} holds processes, and cgroup v2 hands controllers only to children of a cgroup \
             without processes (the no-internal-processes rule); {what}",
            stop.display()
        )
    } else {
        format!(
            "the cgroup {} does not pass the memory, cpu and pids controllers on to {}; {what}",
            stop.display(),
            base.display()
        )
    }
}

/// v1: creates the base in each controller's hierarchy; the ones that work are used. A
/// delegated parent (`$CORRAL_CGROUP`) is used only in the hierarchies where it exists.
fn create_base_v1(
    parent: &Tree,
    name: &str,
    delegated: bool,
    uid: nix::unistd::Uid,
) -> Result<(Tree, Features), String> {
    let cg = Cgroup::load(Box::new(parent.clone()), name);
    let mut made = Vec::new();
    let mut failures = Vec::new();
    for s in cg.subsystems() {
        let Some(kind) = Kind::of(s) else { continue };
        let c = s.to_controller();
        let parent_dir = c.path().parent().unwrap_or(Path::new("/"));
        if delegated && !parent_dir.is_dir() {
            continue;
        }
        let mut result = c.create();
        if matches!(&result, Err(e) if io_kind(e) == Some(io::ErrorKind::NotFound)) {
            // Another helper removed the shared `corral` meanwhile: once more.
            result = c.create();
        }
        match result {
            Ok(()) => made.push(Dir { kind, path: c.path().to_path_buf(), mount_root: c.base().to_path_buf() }),
            Err(e) => failures.push((c.path().to_path_buf(), e)),
        }
    }
    let tree = Tree { v2: false, root: made.first().map(|d| d.path.clone()).unwrap_or_default(), dirs: made };
    if !(tree.has(Kind::Memory) || tree.has(Kind::Cpu) || tree.has(Kind::Pids)) {
        for dir in tree.unique_paths() {
            let _ = fs::remove_dir(dir);
        }
        return Err(match failures.first() {
            Some((path, e)) => not_writable(uid, path, e),
            None if delegated => format!(
                "CORRAL_CGROUP names no existing cgroup in the v1 memory, cpu or pids hierarchies (looked for {})",
                parent.dirs.iter().map(|d| d.path.display().to_string()).collect::<Vec<_>>().join(", ")
            ),
            None => "no cgroup v1 memory, cpu or pids controller is usable".into(),
        });
    }
    let memory = tree.dirs.iter().find(|d| d.kind == Kind::Memory).map(|d| d.path.clone());
    let features = Features {
        v2: false,
        memory: memory.is_some(),
        cpu: tree.has(Kind::Cpu),
        cpuacct: tree.has(Kind::CpuAcct),
        pids: tree.has(Kind::Pids),
        freezer: tree.has(Kind::Freezer),
        swap: memory.map(|m| m.join("memory.memsw.limit_in_bytes").exists()).unwrap_or(false),
        oom_group: false,
        peak: true,
        kill: false,
    };
    Ok((tree, features))
}

/// The message for a base cgroup that could not be created.
fn not_writable(uid: nix::unistd::Uid, dir: &Path, e: &CgError) -> String {
    let denied = matches!(io_raw(e), Some(libc::EACCES | libc::EPERM | libc::EROFS));
    let detail = format!("{}: {}", dir.display(), describe(e));
    match (denied, uid.is_root()) {
        (true, false) => format!(
            "cgroups are not writable for uid {uid} ({detail}); run under `systemd-run --user --scope -p \
             Delegate=yes` or set CORRAL_CGROUP to a delegated, writable cgroup"
        ),
        (true, true) => format!(
            "cannot create a cgroup ({detail}); is /sys/fs/cgroup mounted read-only (as in many containers)? \
             Set CORRAL_CGROUP to a writable cgroup"
        ),
        (false, _) => format!("cannot create a cgroup ({detail})"),
    }
}

/// Removes the bases that helpers killed by SIGKILL left in `parent`: `<prefix><pid>` for a
/// pid that no longer exists. Only empty cgroups go (rmdir refuses populated ones); of our
/// own name (a reused pid) only the empty sandbox cgroups inside.
fn remove_stale(parent: &Path, prefix: &str, own: u32) {
    let Ok(entries) = fs::read_dir(parent) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(digits) = name.to_str().and_then(|n| n.strip_prefix(prefix)) else { continue };
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(pid) = digits.parse::<i32>() else { continue };
        let path = entry.path();
        if pid as u32 == own {
            remove_empty_children(&path);
        } else if pid > 0 && !alive(pid) {
            remove_empty_tree(&path);
        }
    }
}

fn alive(pid: i32) -> bool {
    // Signal 0 checks existence; EPERM means it exists but is not ours.
    !matches!(nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None), Err(nix::errno::Errno::ESRCH))
}

/// rmdir of every cgroup below `dir`, deepest first; populated ones stay.
fn remove_empty_children(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            remove_empty_tree(&entry.path());
        }
    }
}

fn remove_empty_tree(dir: &Path) {
    remove_empty_children(dir);
    let _ = fs::remove_dir(dir);
}

fn write_file(path: &Path, value: &str) -> io::Result<()> {
    fs::OpenOptions::new()
        .write(true)
        .open(path)
        .and_then(|mut f| f.write_all(value.as_bytes()))
        .map_err(|e| with_path(&format!("writing {value:?} to"), path, e))
}

fn read_words(path: &Path) -> Vec<String> {
    fs::read_to_string(path).unwrap_or_default().split_whitespace().map(String::from).collect()
}

fn read_u64(path: &Path) -> Option<u64> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// The value of `key` in a flat-keyed file (`key value` lines).
fn read_keyed(path: &Path, key: &str) -> Option<u64> {
    keyed(&fs::read_to_string(path).ok()?, key)
}

fn keyed(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

fn missing(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::Unsupported, format!("the {what} cgroup controller is not available"))
}

fn with_path(what: &str, path: &Path, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{what} {}: {e}", path.display()))
}

/// The OS error behind a cgroups-rs error, if there is one.
fn io_source(e: &CgError) -> Option<&io::Error> {
    std::error::Error::source(e).and_then(|s| s.downcast_ref::<io::Error>())
}

fn io_kind(e: &CgError) -> Option<io::ErrorKind> {
    io_source(e).map(|e| e.kind())
}

fn io_raw(e: &CgError) -> Option<i32> {
    io_source(e).and_then(|e| e.raw_os_error())
}

/// cgroups-rs's message with the OS error in words rather than `Debug` form.
fn describe(e: &CgError) -> String {
    match io_source(e) {
        Some(io) => format!("{}: {io}", e.kind()),
        None => e.to_string(),
    }
}

fn cg_err(what: impl Display, e: CgError) -> io::Error {
    io::Error::new(io_kind(&e).unwrap_or(io::ErrorKind::Other), format!("{what}: {}", describe(&e)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyed_files() {
        let events = "low 0\nhigh 0\nmax 12\noom 3\noom_kill 2\noom_group_kill 1\n";
        assert_eq!(keyed(events, "oom_kill"), Some(2));
        assert_eq!(keyed(events, "oom"), Some(3));
        assert_eq!(keyed(events, "missing"), None);
        assert_eq!(keyed("usage_usec 1234\nuser_usec 1000\n", "usage_usec"), Some(1234));
    }

    #[test]
    fn delegated_paths() {
        assert_eq!(delegated_path("/user.slice/x.scope", true).unwrap(), PathBuf::from("user.slice/x.scope"));
        assert_eq!(delegated_path("/sys/fs/cgroup/a/b", true).unwrap(), PathBuf::from("a/b"));
        assert_eq!(delegated_path("/sys/fs/cgroup/a/b", false).unwrap(), PathBuf::from("sys/fs/cgroup/a/b"));
        assert_eq!(delegated_path("a/./b/", true).unwrap(), PathBuf::from("a/b"));
        assert!(delegated_path("a/../../etc", true).is_err());
    }

    #[test]
    fn own_paths_strip_the_mount_root() {
        let own: HashMap<String, String> =
            [("memory".to_string(), "/docker/abc/x".to_string()), (String::new(), "/user.slice/y".to_string())].into();
        let m =
            |root: &str| Mount { kind: Kind::Memory, path: "/sys/fs/cgroup/memory".into(), mount_root: root.into() };
        assert_eq!(own_path(&own, &m("/"), false).unwrap(), PathBuf::from("docker/abc/x"));
        assert_eq!(own_path(&own, &m("/docker/abc"), false).unwrap(), PathBuf::from("x"));
        assert_eq!(own_path(&own, &m("/"), true).unwrap(), PathBuf::from("user.slice/y"));
    }
}
