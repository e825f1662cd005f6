//! What differs between cgroup v1 and v2, behind one trait; [`super::v1`] and
//! [`super::v2`] implement it, and everything else in this module is shared. Runs in: the
//! helper.

use super::error::CgroupError;
use super::tree::{Kind, Mount, Tree};
use cgroups_rs::fs::cgroup::Cgroup;
use cgroups_rs::fs::error::Error as LibError;
use cgroups_rs::fs::freezer::FreezerController;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

/// What the base cgroup offers, found once when it is made.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Features {
    pub memory: bool,
    pub cpu: bool,
    pub cpuacct: bool,
    pub pids: bool,
    pub freezer: bool,
    /// v2 `memory.swap.max`; v1 `memory.memsw.limit_in_bytes` (swap accounting).
    pub swap: bool,
    /// v2 `memory.oom.group` (4.19+).
    pub oom_group: bool,
    /// v2 `memory.peak` (5.19+); v1 always has `memory.max_usage_in_bytes`.
    pub peak: bool,
    /// v2 `cgroup.kill` (5.14+).
    pub kill: bool,
}

/// Where the base cgroup is made, as far as the backends care (the path is in the parent
/// tree they are given).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Anchor {
    /// `corral/` at the top of the hierarchy, made if missing (as root).
    Top,
    /// The cgroup `$CORRAL_CGROUP` names, used only in the hierarchies where it exists.
    Delegated,
    /// Below the helper's own cgroup.
    Own,
}

/// How a sandbox's first process enters its cgroup; the helper opens these before the
/// clone (a process in a new user namespace could not open them itself).
#[derive(Debug)]
pub(super) enum Entry {
    /// v2: the cgroup's directory, for `clone3(CLONE_INTO_CGROUP)`.
    Dir(OwnedFd),
    /// v1: each controller's `cgroup.procs`, for the child to write `0` to.
    Procs(Vec<OwnedFd>),
}

/// CPU time, in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuTime {
    pub user_us: u64,
    pub system_us: u64,
}

pub(super) trait Backend: Sync + std::fmt::Debug {
    /// `"v1"` or `"v2"` (a hybrid host counts as v1).
    fn version(&self) -> &'static str;
    /// cgroups-rs's flag for the unified hierarchy.
    fn unified(&self) -> bool;
    /// The controllers corral uses and where they are mounted.
    fn mounts(&self) -> Result<Vec<Mount>, CgroupError>;
    /// `$CORRAL_CGROUP` as written, without a leading mount point where one may be given.
    fn below_mount<'a>(&self, raw: &'a str) -> &'a str;
    /// The key of `kind`'s line in `/proc/self/cgroup`.
    fn own_key(&self, kind: Kind) -> &'static str;
    /// Makes the base cgroup `name` in `parent`, passes controllers on to its children
    /// where the version needs it, and says what the base offers.
    fn create_base(
        &self,
        parent: &Tree,
        name: &str,
        anchor: Anchor,
        uid: nix::unistd::Uid,
    ) -> Result<(Tree, Features), CgroupError>;
    /// Makes the sandbox cgroup `name` in the base (`cg` is it, loaded).
    fn create(&self, base: &Tree, name: &str, cg: &Cgroup) -> Result<(), LibError>;
    /// Opens the way in for the sandbox's first process (`dirs`: the cgroup's directories).
    fn entry(&self, dirs: &[PathBuf]) -> Result<Entry, CgroupError>;
    /// The value for `set_memswap_limit` with `bytes` of memory: v2 limits swap on its own
    /// (none), v1 memory and swap together (the same total).
    fn swap_limit(&self, bytes: i64) -> i64;
    /// Peak memory and OOM kills, from the memory controller's directory.
    fn memory_stats(&self, dir: &Path, features: Features) -> (Option<u64>, u64);
    /// CPU time used, user and system, in microseconds.
    fn cpu_usage(&self, cg: &Cgroup, features: Features) -> Option<CpuTime>;
    /// Whether the kernel has finished freezing (not only been asked to).
    fn frozen(&self, dirs: &[PathBuf], freezer: &FreezerController) -> bool;
    /// Asks again while a freeze is not done yet, where that helps.
    fn freeze_again(&self, freezer: &FreezerController);
    /// Kills everything inside in one step where the kernel can; `false`: signal each
    /// process instead.
    fn kill_at_once(&self, cg: &Cgroup, features: Features) -> bool;
    /// Before removal is retried: clears what else may hold the cgroup.
    fn tidy(&self, dirs: &[PathBuf]);
}

/// The message for a base cgroup that could not be created.
pub(super) fn not_writable(uid: nix::unistd::Uid, dir: &Path, e: &LibError) -> CgroupError {
    let denied = matches!(super::error::errno(e), Some(libc::EACCES | libc::EPERM | libc::EROFS));
    let detail = format!("{}: {}", dir.display(), super::error::describe(e));
    CgroupError::Unusable(match (denied, uid.is_root()) {
        (true, false) => format!(
            "cgroups are not writable for uid {uid} ({detail}); run under `systemd-run --user --scope -p \
             Delegate=yes` or set CORRAL_CGROUP to a delegated, writable cgroup"
        ),
        (true, true) => format!(
            "cannot create a cgroup ({detail}); is /sys/fs/cgroup mounted read-only (as in many containers)? \
             Set CORRAL_CGROUP to a writable cgroup"
        ),
        (false, _) => format!("cannot create a cgroup ({detail})"),
    })
}
