//! cgroup v2: one unified hierarchy. Runs in: the helper.
//!
//! Controllers reach a child only when its parent enables them in
//! `cgroup.subtree_control`, which the kernel allows only for a parent that holds no
//! processes (the no-internal-processes rule). A sandbox joins atomically with
//! `clone3(CLONE_INTO_CGROUP)`; freezing, killing and the OOM group are core files.

use super::backend::{not_writable, Anchor, Backend, CpuTime, Entry, Features};
use super::error::{io_kind, CgroupError};
use super::files::{keyed, read_keyed, read_u64, read_words, remove_empty_children, write};
use super::tree::{Dir, Kind, Mount, Tree};
use cgroups_rs::fs::cgroup::Cgroup;
use cgroups_rs::fs::cpu::CpuController;
use cgroups_rs::fs::error::Error as LibError;
use cgroups_rs::fs::freezer::FreezerController;
use cgroups_rs::fs::hierarchies;
use std::fs;
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// The controllers the base enables for its sandboxes.
const WANTED: [&str; 3] = ["memory", "cpu", "pids"];

#[derive(Debug)]
pub(super) struct V2;

impl Backend for V2 {
    fn version(&self) -> &'static str {
        "v2"
    }

    fn unified(&self) -> bool {
        true
    }

    fn mounts(&self) -> Result<Vec<Mount>, CgroupError> {
        let path = PathBuf::from(hierarchies::UNIFIED_MOUNTPOINT);
        Ok(Kind::V2.iter().map(|&kind| Mount { kind, path: path.clone(), mount_root: PathBuf::from("/") }).collect())
    }

    fn below_mount<'a>(&self, raw: &'a str) -> &'a str {
        match raw.strip_prefix(hierarchies::UNIFIED_MOUNTPOINT) {
            Some(rest) if rest.is_empty() || rest.starts_with('/') => rest,
            _ => raw,
        }
    }

    fn own_key(&self, _: Kind) -> &'static str {
        ""
    }

    /// Creates the base, enables memory, cpu and pids for its children, and checks what
    /// it got.
    fn create_base(
        &self,
        parent: &Tree,
        name: &str,
        at: Anchor,
        uid: nix::unistd::Uid,
    ) -> Result<(Tree, Features), CgroupError> {
        let mount = PathBuf::from(hierarchies::UNIFIED_MOUNTPOINT);
        let parent_dir = parent.root.clone();
        // As root, `corral` may not exist yet: cgroups-rs creates it and enables the
        // controllers in it on the way; otherwise the parent is given and must exist.
        let (anchor, path) = match at {
            Anchor::Top => (mount.clone(), format!("corral/{name}")),
            _ => (parent_dir.clone(), name.into()),
        };
        if !anchor.is_dir() {
            return Err(CgroupError::Unusable(format!(
                "the cgroup {} does not exist; CORRAL_CGROUP must name an existing cgroup, relative to {}",
                anchor.display(),
                mount.display()
            )));
        }
        let available = read_words(&mount.join("cgroup.controllers"));
        let wanted: Vec<String> =
            WANTED.iter().filter(|c| available.iter().any(|a| a == *c)).map(|c| c.to_string()).collect();
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

        // Direct writes: cgroups-rs enables controllers only on the parents of what it
        // creates and ignores failures; the base must pass them on to the sandboxes.
        let control = base.join("cgroup.subtree_control");
        let mut failure = None;
        for c in &wanted {
            if let Err(e) = write(&control, &format!("+{c}")) {
                failure.get_or_insert(e);
            }
        }
        let enabled = read_words(&control);
        let on = |c: &str| enabled.iter().any(|e| e == c);
        if !(on("memory") || on("cpu") || on("pids")) {
            let _ = fs::remove_dir(&base);
            return Err(CgroupError::Unusable(diagnosis(&base, &mount, failure, uid)));
        }
        let features = Features {
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
            dirs: Kind::V2
                .iter()
                .map(|&kind| Dir { kind, path: base.clone(), mount_root: PathBuf::from("/") })
                .collect(),
        };
        Ok((tree, features))
    }

    fn create(&self, base: &Tree, name: &str, _: &Cgroup) -> Result<(), LibError> {
        // `Some(vec![])`: without it cgroups-rs writes every controller of the root into
        // the base's `cgroup.subtree_control` on each call; `create_base` did that once.
        Cgroup::new_with_specified_controllers(Box::new(base.clone()), name, Some(Vec::new())).map(drop)
    }

    fn entry(&self, dirs: &[PathBuf]) -> Result<Entry, CgroupError> {
        let fd = fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
            .open(&dirs[0])
            .map_err(|e| CgroupError::file("opening", &dirs[0], e))?;
        Ok(Entry::Dir(fd.into()))
    }

    fn swap_limit(&self, _: i64) -> i64 {
        0
    }

    fn memory_stats(&self, dir: &Path, features: Features) -> (Option<u64>, u64) {
        let peak = if features.peak { read_u64(&dir.join("memory.peak")) } else { None };
        (peak, read_keyed(&dir.join("memory.events"), "oom_kill").unwrap_or(0))
    }

    fn cpu_usage(&self, cg: &Cgroup, _: Features) -> Option<CpuTime> {
        // `cpu.stat` is a core file: there even without the cpu controller.
        let stat = cg.controller_of::<CpuController>()?.cpu().stat;
        Some(CpuTime { user_us: keyed(&stat, "user_usec")?, system_us: keyed(&stat, "system_usec")? })
    }

    fn frozen(&self, dirs: &[PathBuf], _: &FreezerController) -> bool {
        // Direct read: cgroups-rs's state() reads `cgroup.freeze`, which is what was asked
        // for, not whether the kernel is done.
        read_keyed(&dirs[0].join("cgroup.events"), "frozen") == Some(1)
    }

    fn freeze_again(&self, _: &FreezerController) {}

    fn kill_at_once(&self, cg: &Cgroup, features: Features) -> bool {
        features.kill && cg.kill().is_ok()
    }

    fn tidy(&self, dirs: &[PathBuf]) {
        // cgroups-rs removes one directory; a sandbox with its own cgroup namespace may
        // have made children (`cgroup.kill` emptied them already).
        for dir in dirs {
            remove_empty_children(dir);
        }
    }
}

/// Why the base got no controllers, and what to do: finds the nearest ancestor that has
/// them but does not pass them on.
fn diagnosis(base: &Path, mount: &Path, failure: Option<CgroupError>, uid: nix::unistd::Uid) -> String {
    let what = if uid.is_root() {
        "set CORRAL_CGROUP to an empty cgroup that has the memory, cpu and pids controllers".to_string()
    } else {
        format!(
            "cgroups are not usable for uid {uid}; run under `systemd-run --user --scope -p Delegate=yes` with \
             CORRAL_CGROUP set to an empty delegated cgroup (see the corral_linux::helper::cgroup docs)"
        )
    };
    let wanted = |dir: &Path| read_words(&dir.join("cgroup.controllers")).iter().any(|c| WANTED.contains(&c.as_str()));
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
