//! The controllers corral uses, and a cgroups-rs hierarchy that holds only those. Runs in:
//! the helper.

use cgroups_rs::fs::cgroup::Cgroup;
use cgroups_rs::fs::cpu::CpuController;
use cgroups_rs::fs::cpuacct::CpuAcctController;
use cgroups_rs::fs::freezer::FreezerController;
use cgroups_rs::fs::memory::MemController;
use cgroups_rs::fs::pid::PidController;
use cgroups_rs::fs::{Controllers, Hierarchy, Subsystem};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The controllers corral uses. `CpuAcct` exists only on v1 (v2 reports CPU time in `cpu.stat`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Kind {
    Memory,
    Cpu,
    CpuAcct,
    Pids,
    Freezer,
}

impl Kind {
    pub const V1: [Kind; 5] = [Kind::Memory, Kind::Cpu, Kind::CpuAcct, Kind::Pids, Kind::Freezer];
    pub const V2: [Kind; 4] = [Kind::Memory, Kind::Cpu, Kind::Pids, Kind::Freezer];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Memory => "memory",
            Kind::Cpu => "cpu",
            Kind::CpuAcct => "cpuacct",
            Kind::Pids => "pids",
            Kind::Freezer => "freezer",
        }
    }

    pub fn v1_controller(self) -> Controllers {
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

    pub fn of(s: &Subsystem) -> Option<Kind> {
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
pub(super) struct Dir {
    pub kind: Kind,
    pub path: PathBuf,
    pub mount_root: PathBuf,
}

/// A mounted controller: where its hierarchy is visible and which part of it is.
pub(super) struct Mount {
    pub kind: Kind,
    pub path: PathBuf,
    pub mount_root: PathBuf,
}

/// A cgroups-rs hierarchy rooted at a directory of our choosing (the base cgroup, or the
/// place it is created in) that holds only the controllers corral uses. cgroups-rs's own
/// `V1`/`V2` hierarchies are rooted at the mount and carry every mounted controller (v1
/// `cpuset`, `devices`, `blkio`, …), which would make every sandbox a directory in each.
#[derive(Debug, Clone)]
pub(super) struct Tree {
    /// cgroups-rs's flag for the unified hierarchy.
    pub v2: bool,
    /// On v2 the cgroup's directory (cgroups-rs creates, kills and deletes relative to it).
    pub root: PathBuf,
    pub dirs: Vec<Dir>,
}

impl Tree {
    /// The same controllers, one level down.
    pub fn child(&self, name: &str) -> Tree {
        Tree {
            v2: self.v2,
            root: self.root.join(name),
            dirs: self.dirs.iter().map(|d| Dir { path: d.path.join(name), ..d.clone() }).collect(),
        }
    }

    /// Each distinct directory once (v1 `cpu` and `cpuacct` may share a mount).
    pub fn unique_paths(&self) -> Vec<PathBuf> {
        let mut seen = BTreeSet::new();
        self.dirs.iter().filter(|d| seen.insert(d.path.clone())).map(|d| d.path.clone()).collect()
    }

    pub fn has(&self, kind: Kind) -> bool {
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
