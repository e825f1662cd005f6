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
//! | stats | `memory.peak` (5.19+), `memory.events` `oom_kill`, `cpu.stat` `user_usec` `system_usec` | `memory.max_usage_in_bytes`, `memory.oom_control` `oom_kill`, `cpuacct.usage_user` `cpuacct.usage_sys` |
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
//! # Where the code is
//!
//! `backend` is the one trait for what differs between the versions, implemented by
//! `v1` and `v2`; `placement` decides where the base goes; `tree` adapts the
//! controllers to cgroups-rs; `files` holds the direct file I/O; `sandbox` is one
//! sandbox's cgroup; errors are [`CgroupError`].
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

mod backend;
mod error;
mod files;
mod placement;
mod sandbox;
mod tree;
mod v1;
mod v2;

pub use backend::CpuTime;
pub use error::CgroupError;
pub use sandbox::{SandboxCgroup, Stats};

use backend::{Backend, Features};
use cgroups_rs::fs::cgroup::Cgroup;
use cgroups_rs::fs::hierarchies;
use corral_core::spec::CgroupLimits;
use placement::{remove_stale, Placement};
use std::fs;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::path::PathBuf;
use tree::Tree;

/// Where this helper may create cgroups, found once at helper start.
#[derive(Debug)]
pub struct Manager {
    backend: &'static dyn Backend,
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

impl Manager {
    /// Finds or creates a base cgroup for this helper process: `$CORRAL_CGROUP/h<pid>` if
    /// `CORRAL_CGROUP` is set (a delegated, writable cgroup path relative to the hierarchy
    /// root, e.g. for `systemd-run --user -p Delegate=yes`), else as root `corral/h<pid>` at
    /// the top of the hierarchy, else (non-root) a child `corral-h<pid>` of the process's
    /// own cgroup if that works (on v2 it usually does not because of the
    /// no-internal-processes rule; then this fails). Enables the memory, cpu and pids
    /// controllers for children where v2 needs it (`cgroup.subtree_control`), and removes
    /// stale `h<pid>` siblings whose helper pid no longer exists (left by a helper that was
    /// SIGKILLed) — only empty ones, killing nothing. Fails with
    /// [`CgroupError::Unusable`], whose message says what to do, when cgroups are not
    /// usable.
    ///
    /// One `Manager` per process: a second one in the same process shares the base.
    pub fn new() -> Result<Manager, CgroupError> {
        let pid = std::process::id();
        let uid = nix::unistd::geteuid();
        let backend: &'static dyn Backend = if hierarchies::is_cgroup2_unified_mode() { &v2::V2 } else { &v1::V1 };
        let mounts = backend.mounts()?;
        let placement = Placement::choose(backend, uid)?;
        let name = format!("{}{pid}", placement.prefix());
        let parent = placement.parent(backend, &mounts)?;

        // Before creating ours: a helper that died by SIGKILL left its base behind.
        for dir in parent.unique_paths() {
            remove_stale(&dir, placement.prefix(), pid);
        }

        let shared = match placement {
            Placement::Top => parent.unique_paths(),
            _ => Vec::new(),
        };
        let (base, features) = match backend.create_base(&parent, &name, placement.anchor(), uid) {
            Ok(made) => made,
            Err(e) => {
                // The shared `corral` we may have made, unless other helpers use it.
                for dir in &shared {
                    let _ = fs::remove_dir(dir);
                }
                return Err(e);
            }
        };
        Ok(Manager { backend, parent, name, base, features, shared, removed: false })
    }

    /// `"v2"` or `"v1"` (a hybrid host counts as v1).
    pub fn version(&self) -> &'static str {
        self.backend.version()
    }

    /// Whether sandboxes' cgroups can be frozen (v2 `cgroup.freeze`, v1 freezer).
    pub fn can_freeze(&self) -> bool {
        self.features.freezer
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
    pub fn create(&self, id: u64, limits: &CgroupLimits) -> Result<SandboxCgroup, CgroupError> {
        let f = self.features;
        for (wanted, have, controller) in [
            (limits.memory.is_some(), f.memory, "memory"),
            (limits.cpus.is_some(), f.cpu, "cpu"),
            (limits.pids.is_some(), f.pids, "pids"),
        ] {
            if wanted && !have {
                return Err(CgroupError::NoController { controller, base: self.base.root.clone() });
            }
        }
        if let Some(cpus) = limits.cpus {
            if !(cpus.is_finite() && cpus > 0.0) {
                return Err(CgroupError::InvalidCpus(cpus));
            }
        }
        let name = format!("s{id}");
        // A leftover of an earlier helper with our (reused) pid may still hold processes:
        // never share it. (cgroups-rs's create accepts an existing directory.)
        let dirs = self.base.child(&name).unique_paths();
        if dirs[0].exists() {
            return Err(CgroupError::Exists(dirs[0].clone()));
        }
        let cg = Cgroup::load(Box::new(self.base.clone()), &name);
        // From here on, dropping the handle (on any error) removes whatever was created.
        let mut sandbox = SandboxCgroup::new(cg, self.backend, f, dirs);
        self.backend.create(&self.base, &name, sandbox.cgroup()).map_err(|e| {
            CgroupError::library(format!("creating the cgroup {name} in {}", self.base.root.display()), &e)
        })?;
        sandbox.apply(limits)?;
        sandbox.open_entry()?;
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
                files::remove_empty_tree(&dir);
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

/// Writes `0` (= the calling process) to each descriptor: used in the child right after
/// clone to join the v1 cgroups opened by [`SandboxCgroup::procs_fds`]. Runs in: the
/// sandbox's init, first thing. Only `write(2)`: no allocation, safe in a freshly cloned
/// child.
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
