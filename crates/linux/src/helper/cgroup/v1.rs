//! cgroup v1, and hybrid hosts (v1 controllers beside an empty v2 tree), which corral
//! treats as v1. Runs in: the helper.
//!
//! Each controller has its own hierarchy (`memory`, `cpu`, `cpuacct`, `pids`, `freezer`),
//! so a cgroup is one directory per controller, and controllers need no enabling. There is
//! no `CLONE_INTO_CGROUP`: the child joins through `cgroup.procs` descriptors the helper
//! opened. Freezing is the `freezer` controller; killing is a signal to each process.

use super::backend::{not_writable, Anchor, Backend, CpuTime, Entry, Features};
use super::error::{io_kind, CgroupError};
use super::files::read_keyed;
use super::files::read_u64;
use super::tree::{Dir, Kind, Mount, Tree};
use cgroups_rs::fs::cgroup::Cgroup;
use cgroups_rs::fs::cpuacct::CpuAcctController;
use cgroups_rs::fs::error::Error as LibError;
use cgroups_rs::fs::freezer::FreezerController;
use cgroups_rs::fs::hierarchies::V1 as Mounted;
use cgroups_rs::fs::Controller;
use cgroups_rs::FreezerState;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

#[derive(Debug)]
pub(super) struct V1;

impl Backend for V1 {
    fn version(&self) -> &'static str {
        "v1"
    }

    fn unified(&self) -> bool {
        false
    }

    fn mounts(&self) -> Result<Vec<Mount>, CgroupError> {
        let v1 = Mounted::new();
        let found: Vec<Mount> = Kind::V1
            .iter()
            .filter_map(|&kind| {
                let (path, mount_root) = v1.get_mount_point(kind.v1_controller())?;
                Some(Mount { kind, path, mount_root })
            })
            .collect();
        if !found.iter().any(|m| matches!(m.kind, Kind::Memory | Kind::Cpu | Kind::Pids)) {
            return Err(CgroupError::Unusable(
                "no cgroup hierarchy is mounted: /sys/fs/cgroup is not cgroup2 and no cgroup v1 memory, cpu or \
                 pids controller is mounted; mount cgroup2 at /sys/fs/cgroup (or run where it is)"
                    .into(),
            ));
        }
        Ok(found)
    }

    fn below_mount<'a>(&self, raw: &'a str) -> &'a str {
        raw
    }

    fn own_key(&self, kind: Kind) -> &'static str {
        kind.name()
    }

    /// Creates the base in each controller's hierarchy; the ones that work are used. A
    /// delegated parent (`$CORRAL_CGROUP`) is used only in the hierarchies where it exists.
    fn create_base(
        &self,
        parent: &Tree,
        name: &str,
        at: Anchor,
        uid: nix::unistd::Uid,
    ) -> Result<(Tree, Features), CgroupError> {
        let delegated = at == Anchor::Delegated;
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
                None if delegated => CgroupError::Unusable(format!(
                    "CORRAL_CGROUP names no existing cgroup in the v1 memory, cpu or pids hierarchies (looked for {})",
                    parent.dirs.iter().map(|d| d.path.display().to_string()).collect::<Vec<_>>().join(", ")
                )),
                None => CgroupError::Unusable("no cgroup v1 memory, cpu or pids controller is usable".into()),
            });
        }
        let memory = tree.dirs.iter().find(|d| d.kind == Kind::Memory).map(|d| d.path.clone());
        let features = Features {
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

    fn create(&self, _: &Tree, _: &str, cg: &Cgroup) -> Result<(), LibError> {
        cg.create()
    }

    fn entry(&self, dirs: &[PathBuf]) -> Result<Entry, CgroupError> {
        let mut procs = Vec::new();
        for dir in dirs {
            let path = dir.join("cgroup.procs");
            // std opens with O_CLOEXEC: the descriptors vanish at the sandbox's execve.
            let fd =
                fs::OpenOptions::new().write(true).open(&path).map_err(|e| CgroupError::file("opening", &path, e))?;
            procs.push(fd.into());
        }
        Ok(Entry::Procs(procs))
    }

    fn swap_limit(&self, bytes: i64) -> i64 {
        bytes
    }

    fn memory_stats(&self, dir: &Path, _: Features) -> (Option<u64>, u64) {
        (
            read_u64(&dir.join("memory.max_usage_in_bytes")),
            read_keyed(&dir.join("memory.oom_control"), "oom_kill").unwrap_or(0),
        )
    }

    fn cpu_usage(&self, cg: &Cgroup, features: Features) -> Option<CpuTime> {
        if !features.cpuacct {
            return None;
        }
        // Two files: cgroups-rs's cpuacct() reads eight for these two numbers.
        let acct = cg.controller_of::<CpuAcctController>()?;
        let ns = |f: &str| read_u64(&acct.path().join(f));
        Some(CpuTime { user_us: ns("cpuacct.usage_user")? / 1000, system_us: ns("cpuacct.usage_sys")? / 1000 })
    }

    fn frozen(&self, _: &[PathBuf], freezer: &FreezerController) -> bool {
        matches!(freezer.state(), Ok(FreezerState::Frozen))
    }

    fn freeze_again(&self, freezer: &FreezerController) {
        // Writing FROZEN again retries tasks that could not be frozen yet.
        let _ = freezer.freeze();
    }

    fn kill_at_once(&self, _: &Cgroup, _: Features) -> bool {
        false
    }

    fn tidy(&self, _: &[PathBuf]) {}
}
