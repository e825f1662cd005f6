//! Committing captured changes: stage complete copies beside their targets, apply by
//! renames that can be undone, then remove what was replaced. Runs in: the client, on a
//! commit's own thread.

use super::error::{io_err, ChangesError, Result, MAX_PATH};
use super::walk::{beneath, dir_mode, file_mode, kept_dir_mode, read_dir, Budget, Kind, Node, Side, Walk};
use super::{layer, rooted};
use corral_core::CorralError;
use nix::dir::Dir;
use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, OpenHow, RenameFlags, ResolveFlag};
use nix::sys::stat::{fstatat, Mode};
use nix::unistd::UnlinkatFlags;
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Stages every layer's changes, applies them, and removes what they replaced; on a
/// failure, undoes what was applied and says what could not be undone.
pub(super) fn commit(root: &OwnedFd, lowers: &[PathBuf]) -> Result<(), CorralError> {
    let mut budget = Budget::default();
    let mut plans = Vec::new();
    for (i, lower) in lowers.iter().enumerate() {
        let (upper, host) = layer(root, i, lower)?;
        let groups = plan(upper.as_fd(), host.as_fd(), &mut budget)?;
        plans.push(Commit { lower, upper, host, groups });
    }
    let result = plans.iter_mut().try_for_each(Commit::stage);
    if let Err(e) = result {
        for c in &mut plans {
            c.unstage();
        }
        return Err(ChangesError::Commit { failed: Box::new(e), undo: "nothing was applied".into() }.into());
    }
    let mut failure = None;
    for (n, c) in plans.iter_mut().enumerate() {
        if let Err(e) = c.apply() {
            failure = Some((n, e));
            break;
        }
    }
    if let Some((n, e)) = failure {
        let mut kept = Vec::new();
        for c in plans[..=n].iter_mut().rev() {
            kept.extend(c.undo());
        }
        for c in &mut plans {
            c.unstage();
        }
        let undo = if kept.is_empty() {
            "nothing was applied (what had been was undone)".to_string()
        } else {
            format!("these stay applied (undoing them failed): {kept:?}")
        };
        return Err(ChangesError::Commit { failed: Box::new(e), undo }.into());
    }
    let mut left = Vec::new();
    for c in &mut plans {
        left.extend(c.clean());
    }
    if !left.is_empty() {
        return Err(CorralError::spawn(format!(
            "the changes were applied, but what they replaced could not be removed from {left:?}"
        )));
    }
    Ok(())
}

/// What commit does to one name of a host directory.
#[derive(Debug)]
enum Action {
    /// Put a complete copy of the layer's entry there (a directory with all it holds).
    Put,
    /// Remove what the host has there.
    Remove,
    /// Give the host's directory these permission bits.
    Chmod(u32),
}

/// What was done to one name, so that it can be undone.
#[derive(Debug)]
enum Done {
    Nothing,
    /// The staged copy was renamed into the empty name.
    Placed,
    /// The staged copy and the host's entry swapped names: the old one is at the staged name.
    Exchanged,
    /// The host's entry was moved to `trash`, then the staged copy into its name.
    Moved {
        trash: OsString,
    },
    /// The host's entry was moved to `trash`.
    Removed {
        trash: OsString,
    },
    Chmodded {
        old: u32,
    },
}

#[derive(Debug)]
struct Op {
    name: OsString,
    action: Action,
    /// The temporary name of the staged copy (for `Put`).
    staged: Option<OsString>,
    done: Done,
}

/// The operations in one host directory, `rel` below the layer's root.
#[derive(Debug)]
struct Group {
    rel: PathBuf,
    ops: Vec<Op>,
}

struct Commit<'a> {
    lower: &'a Path,
    upper: OwnedFd,
    host: OwnedFd,
    groups: Vec<Group>,
}

/// What commit must do, found by the same walk as the listing, stepping only into
/// directories the host has and the layer merges with.
fn plan(upper: BorrowedFd<'_>, host: BorrowedFd<'_>, budget: &mut Budget) -> Result<Vec<Group>> {
    let mut groups: Vec<Group> = Vec::new();
    let mut walk = Walk::new(upper, host, budget)?;
    while let Some((rel, item, _)) = walk.next() {
        let (Some(node), parent) = (item.upper, rel.parent().unwrap_or(Path::new("")).to_path_buf()) else {
            continue;
        };
        let host_kind = item.host.as_ref().map(|h| h.kind);
        let action = match node.kind {
            Kind::Whiteout | Kind::Other => host_kind.map(|_| Action::Remove),
            Kind::File | Kind::Symlink => Some(Action::Put),
            Kind::Dir if host_kind == Some(Kind::Dir) && !node.opaque => {
                let host_mode = item.host.as_ref().map_or(0, |h| h.mode);
                let mode = kept_dir_mode(node.mode, host_mode);
                walk.descend(rel.clone(), Side::Merged)?;
                (mode != host_mode).then_some(Action::Chmod(mode))
            }
            Kind::Dir => Some(Action::Put),
        };
        let Some(action) = action else { continue };
        let op = Op { name: item.name, action, staged: None, done: Done::Nothing };
        match groups.last_mut() {
            Some(g) if g.rel == parent => g.ops.push(op),
            _ => groups.push(Group { rel: parent, ops: vec![op] }),
        }
    }
    Ok(groups)
}

static TEMP_SEQ: AtomicU64 = AtomicU64::new(0);

/// Creates something under a fresh temporary name in `dir` with `make`, which must fail
/// with EEXIST when the name is taken (never replacing anything).
fn fresh_name(mut make: impl FnMut(&OsStr) -> nix::Result<()>) -> nix::Result<OsString> {
    loop {
        let n = TEMP_SEQ.fetch_add(1, Ordering::Relaxed);
        let name = OsString::from(format!(".corral-commit-{}-{n}", std::process::id()));
        match make(&name) {
            Ok(()) => return Ok(name),
            Err(Errno::EEXIST) => continue,
            Err(e) => return Err(e),
        }
    }
}

impl Commit<'_> {
    fn dir(&self, root: BorrowedFd<'_>, rel: &Path) -> Result<OwnedFd> {
        beneath(root, rel).map_err(io_err("opening", &self.lower.join(rel)))
    }

    /// Makes a complete copy of every entry to put, under a temporary name beside it.
    fn stage(&mut self) -> Result<()> {
        let mut budget = Budget::default();
        for g in 0..self.groups.len() {
            let rel = self.groups[g].rel.clone();
            let udir = self.dir(self.upper.as_fd(), &rel)?;
            let hdir = self.dir(self.host.as_fd(), &rel)?;
            for o in 0..self.groups[g].ops.len() {
                if !matches!(self.groups[g].ops[o].action, Action::Put) {
                    continue;
                }
                let name = self.groups[g].ops[o].name.clone();
                let path = self.lower.join(&rel).join(&name);
                let staged = copy(udir.as_fd(), &name, hdir.as_fd(), &rel.join(&name), self.upper.as_fd(), &mut budget)
                    .map_err(|e| match e {
                        ChangesError::Io { action, source, .. } => {
                            ChangesError::Io { action, path: path.clone(), source }
                        }
                        e => rooted(e, self.lower),
                    })?;
                self.groups[g].ops[o].staged = Some(staged);
            }
        }
        Ok(())
    }

    /// Renames the staged copies into place and removes what goes, keeping what was
    /// replaced at temporary names until [`Commit::clean`].
    fn apply(&mut self) -> Result<()> {
        // Permission changes of directories come last, deepest first, so that a directory
        // made read-only has been filled already.
        let order = (0..self.groups.len()).map(|g| (g, false)).chain((0..self.groups.len()).rev().map(|g| (g, true)));
        for (g, chmods) in order {
            let rel = self.groups[g].rel.clone();
            let hdir = self.dir(self.host.as_fd(), &rel)?;
            for op in &mut self.groups[g].ops {
                if matches!(op.action, Action::Chmod(_)) != chmods {
                    continue;
                }
                let path = self.lower.join(&rel).join(&op.name);
                op.done = apply_one(hdir.as_fd(), op).map_err(io_err("applying the change to", &path))?;
            }
        }
        Ok(())
    }

    /// Undoes what [`Commit::apply`] did, last first; returns the paths it could not restore.
    fn undo(&mut self) -> Vec<PathBuf> {
        let mut kept = Vec::new();
        // Permissions first (they were applied last), then the renames, last first.
        let order = (0..self.groups.len()).map(|g| (g, true)).chain((0..self.groups.len()).rev().map(|g| (g, false)));
        for (g, chmods) in order {
            let g = &mut self.groups[g];
            let hdir = beneath(self.host.as_fd(), &g.rel).ok();
            for op in g.ops.iter_mut().rev() {
                if matches!(op.done, Done::Nothing) || matches!(op.done, Done::Chmodded { .. }) != chmods {
                    continue;
                }
                let ok = hdir.as_ref().is_some_and(|d| undo_one(d.as_fd(), op).is_ok());
                if ok {
                    op.done = Done::Nothing;
                } else {
                    kept.push(self.lower.join(&g.rel).join(&op.name));
                }
            }
        }
        kept
    }

    /// Removes staged copies that were not applied.
    fn unstage(&mut self) {
        for g in &mut self.groups {
            let Ok(hdir) = beneath(self.host.as_fd(), &g.rel) else { continue };
            for op in &mut g.ops {
                if matches!(op.done, Done::Nothing) {
                    if let Some(staged) = op.staged.take() {
                        let _ = remove_tree(hdir.as_fd(), &staged);
                    }
                }
            }
        }
    }

    /// Removes what the applied changes replaced; returns where something was left.
    fn clean(&mut self) -> Vec<PathBuf> {
        let mut left = Vec::new();
        for g in &mut self.groups {
            let hdir = beneath(self.host.as_fd(), &g.rel).ok();
            for op in &mut g.ops {
                let old = match &op.done {
                    Done::Exchanged => op.staged.clone(),
                    Done::Moved { trash } | Done::Removed { trash } => Some(trash.clone()),
                    _ => None,
                };
                if let Some(old) = old {
                    if hdir.as_ref().is_none_or(|d| remove_tree(d.as_fd(), &old).is_err()) {
                        left.push(self.lower.join(&g.rel).join(old));
                    }
                }
            }
        }
        left
    }
}

fn exists(dir: BorrowedFd<'_>, name: &OsStr) -> nix::Result<Option<libc::mode_t>> {
    match fstatat(dir, Path::new(name), AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(st.st_mode)),
        Err(Errno::ENOENT) => Ok(None),
        Err(e) => Err(e),
    }
}

fn rename(dir: BorrowedFd<'_>, from: &OsStr, to: &OsStr, flags: RenameFlags) -> nix::Result<()> {
    nix::fcntl::renameat2(dir, Path::new(from), dir, Path::new(to), flags)
}

fn apply_one(dir: BorrowedFd<'_>, op: &Op) -> nix::Result<Done> {
    let trash = |dir: BorrowedFd<'_>, name: &OsStr| fresh_name(|t| rename(dir, name, t, RenameFlags::RENAME_NOREPLACE));
    match &op.action {
        Action::Put => {
            let staged = op.staged.as_deref().ok_or(Errno::EINVAL)?;
            if exists(dir, &op.name)?.is_none() {
                rename(dir, staged, &op.name, RenameFlags::RENAME_NOREPLACE)?;
                return Ok(Done::Placed);
            }
            match rename(dir, staged, &op.name, RenameFlags::RENAME_EXCHANGE) {
                Ok(()) => Ok(Done::Exchanged),
                // A filesystem without exchange: two renames, each undoable.
                Err(Errno::EINVAL) => {
                    let trash = trash(dir, &op.name)?;
                    if let Err(e) = rename(dir, staged, &op.name, RenameFlags::RENAME_NOREPLACE) {
                        let _ = rename(dir, &trash, &op.name, RenameFlags::RENAME_NOREPLACE);
                        return Err(e);
                    }
                    Ok(Done::Moved { trash })
                }
                Err(e) => Err(e),
            }
        }
        Action::Remove => match exists(dir, &op.name)? {
            None => Ok(Done::Nothing),
            Some(_) => Ok(Done::Removed { trash: trash(dir, &op.name)? }),
        },
        Action::Chmod(mode) => {
            let fd = directory_path(dir, &op.name)?;
            let old = nix::sys::stat::fstat(&fd)?.st_mode & 0o7777;
            chmod_path_fd(fd.as_fd(), *mode)?;
            Ok(Done::Chmodded { old })
        }
    }
}

/// An `O_PATH` descriptor on the directory `name` in `dir`, never through a symlink.
fn directory_path(dir: BorrowedFd<'_>, name: &OsStr) -> nix::Result<OwnedFd> {
    nix::fcntl::openat(
        dir,
        Path::new(name),
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
}

fn undo_one(dir: BorrowedFd<'_>, op: &Op) -> nix::Result<()> {
    let staged = op.staged.as_deref();
    match &op.done {
        Done::Nothing => Ok(()),
        Done::Placed => rename(dir, &op.name, staged.ok_or(Errno::EINVAL)?, RenameFlags::RENAME_NOREPLACE),
        Done::Exchanged => rename(dir, staged.ok_or(Errno::EINVAL)?, &op.name, RenameFlags::RENAME_EXCHANGE),
        Done::Moved { trash } => {
            rename(dir, &op.name, staged.ok_or(Errno::EINVAL)?, RenameFlags::RENAME_NOREPLACE)?;
            rename(dir, trash, &op.name, RenameFlags::RENAME_NOREPLACE)
        }
        Done::Removed { trash } => rename(dir, trash, &op.name, RenameFlags::RENAME_NOREPLACE),
        Done::Chmodded { old } => {
            let fd = directory_path(dir, &op.name)?;
            chmod_path_fd(fd.as_fd(), *old)
        }
    }
}

/// chmod of what an `O_PATH` descriptor names (fchmod refuses those; the /proc link works
/// and follows no symlink of the host's, since the descriptor already names the object).
fn chmod_path_fd(fd: BorrowedFd<'_>, mode: u32) -> nix::Result<()> {
    let link = format!("/proc/self/fd/{}", fd.as_raw_fd());
    nix::sys::stat::fchmodat(
        nix::fcntl::AT_FDCWD,
        Path::new(&link),
        Mode::from_bits_truncate(mode),
        nix::sys::stat::FchmodatFlags::FollowSymlink,
    )
}

/// Copies the layer's entry `name` of `udir` (at `src_rel` below the layer's root) into
/// `hdir` under a fresh temporary name, which it returns. A directory is copied with all
/// it holds, its permission bits set last so that a read-only one can be filled first.
fn copy(
    udir: BorrowedFd<'_>,
    name: &OsStr,
    hdir: BorrowedFd<'_>,
    src_rel: &Path,
    upper_root: BorrowedFd<'_>,
    budget: &mut Budget,
) -> Result<OsString> {
    let node = Node::of(udir, name, true).map_err(io_err("reading", src_rel))?;
    let staged = match node.kind {
        Kind::File => fresh_name(|t| copy_file(udir, name, hdir, t, node.mode)),
        Kind::Symlink => {
            let target = node.target.as_deref().unwrap_or_default();
            fresh_name(|t| nix::unistd::symlinkat(target, hdir, Path::new(t)))
        }
        Kind::Dir => fresh_name(|t| nix::sys::stat::mkdirat(hdir, Path::new(t), Mode::from_bits_truncate(0o700))),
        Kind::Whiteout | Kind::Other => Err(Errno::EINVAL),
    }
    .map_err(io_err("staging", src_rel))?;
    if node.kind == Kind::Dir {
        let result = beneath(hdir, Path::new(&staged))
            .map_err(io_err("staging", src_rel))
            .and_then(|dst| copy_tree(upper_root, src_rel, dst.as_fd(), budget).map(|()| dst))
            .and_then(|dst| {
                nix::sys::stat::fchmod(&dst, Mode::from_bits_truncate(dir_mode(node.mode)))
                    .map_err(io_err("staging", src_rel))
            });
        if let Err(e) = result {
            let _ = remove_tree(hdir, &staged);
            return Err(e);
        }
    }
    Ok(staged)
}

fn copy_file(udir: BorrowedFd<'_>, name: &OsStr, hdir: BorrowedFd<'_>, to: &OsStr, mode: u32) -> nix::Result<()> {
    let dst = nix::fcntl::openat(
        hdir,
        Path::new(to),
        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(0o600),
    )?;
    let filled = (|| {
        let src = nix::fcntl::openat(
            udir,
            Path::new(name),
            OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )?;
        let mut dst = std::fs::File::from(dst.try_clone().map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(0)))?);
        io::copy(&mut std::fs::File::from(src), &mut dst)
            .map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)))?;
        // Exactly these bits, whatever the caller's umask, and never set-id.
        nix::sys::stat::fchmod(&dst, Mode::from_bits_truncate(file_mode(mode)))
    })();
    if let Err(e) = filled {
        let _ = nix::unistd::unlinkat(hdir, Path::new(to), UnlinkatFlags::NoRemoveDir);
        return Err(e);
    }
    Ok(())
}

/// Copies the contents of the layer's directory `src_rel` into `dst`, without recursion.
fn copy_tree(upper_root: BorrowedFd<'_>, src_rel: &Path, dst: BorrowedFd<'_>, budget: &mut Budget) -> Result<()> {
    // Directories below `dst` to fill (relative to it), and those filled, whose bits are
    // set once everything is in (deepest last in the list, so set in reverse).
    let mut todo = vec![PathBuf::new()];
    let mut modes: Vec<(PathBuf, u32)> = Vec::new();
    while let Some(inside) = todo.pop() {
        let src_path = src_rel.join(&inside);
        if src_path.as_os_str().len() > MAX_PATH {
            return Err(ChangesError::TooDeep { root: PathBuf::new(), path: src_path });
        }
        let sdir = beneath(upper_root, &src_path).map_err(io_err("reading", &src_path))?;
        let entries = read_dir(sdir.as_fd(), true, budget, &src_path)?;
        let ddir = beneath(dst, &inside).map_err(io_err("staging", &src_path))?;
        for (name, node) in entries {
            let at = |e| io_err("staging", &src_path.join(&name))(e);
            match node.kind {
                Kind::File => copy_file(sdir.as_fd(), &name, ddir.as_fd(), &name, node.mode).map_err(at)?,
                Kind::Symlink => {
                    let target = node.target.as_deref().unwrap_or_default();
                    nix::unistd::symlinkat(target, ddir.as_fd(), Path::new(&name)).map_err(at)?
                }
                Kind::Dir => {
                    nix::sys::stat::mkdirat(ddir.as_fd(), Path::new(&name), Mode::from_bits_truncate(0o700))
                        .map_err(at)?;
                    let child = inside.join(&name);
                    budget.hold(child.as_os_str().len())?;
                    modes.push((child.clone(), dir_mode(node.mode)));
                    todo.push(child);
                }
                // Below a new or opaque directory a whiteout hides nothing; sockets, fifos
                // and devices are never created on the host.
                Kind::Whiteout | Kind::Other => {}
            }
        }
    }
    for (rel, mode) in modes.into_iter().rev() {
        let d = beneath(dst, &rel).map_err(io_err("staging", &src_rel.join(&rel)))?;
        nix::sys::stat::fchmod(&d, Mode::from_bits_truncate(mode)).map_err(io_err("staging", &src_rel.join(&rel)))?;
    }
    Ok(())
}

/// Removes `name` below `dir`, everything in it too if it is a directory, without
/// recursion; missing is fine.
fn remove_tree(dir: BorrowedFd<'_>, name: &OsStr) -> nix::Result<()> {
    match exists(dir, name)? {
        None => return Ok(()),
        Some(mode) if mode & libc::S_IFMT != libc::S_IFDIR => {
            return nix::unistd::unlinkat(dir, Path::new(name), UnlinkatFlags::NoRemoveDir)
        }
        Some(_) => {}
    }
    let mut stack = vec![PathBuf::from(name)];
    while let Some(top) = stack.last().cloned() {
        let d = match beneath(dir, &top) {
            Err(Errno::EACCES) => {
                // A directory of ours made read-only (a staged copy, or a tree the
                // command left so): give ourselves the access to empty it.
                let how = OpenHow::new()
                    .flags(OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC)
                    .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_SYMLINKS);
                let p = nix::fcntl::openat2(dir, &top, how)?;
                let mode = nix::sys::stat::fstat(&p)?.st_mode & 0o7777;
                chmod_path_fd(p.as_fd(), mode | 0o700)?;
                beneath(dir, &top)?
            }
            r => r?,
        };
        let mode = nix::sys::stat::fstat(&d)?.st_mode & 0o7777;
        if mode & 0o300 != 0o300 {
            let _ = nix::sys::stat::fchmod(&d, Mode::from_bits_truncate(mode | 0o700));
        }
        let mut subdirs = Vec::new();
        {
            let mut it = Dir::from_fd(nix::unistd::dup(d.as_fd())?)?;
            for e in it.iter() {
                let e = e?;
                let child = OsStr::from_bytes(e.file_name().to_bytes());
                if child == "." || child == ".." {
                    continue;
                }
                match exists(d.as_fd(), child)? {
                    Some(m) if m & libc::S_IFMT == libc::S_IFDIR => subdirs.push(child.to_os_string()),
                    Some(_) => nix::unistd::unlinkat(d.as_fd(), Path::new(child), UnlinkatFlags::NoRemoveDir)?,
                    None => {}
                }
            }
        }
        if subdirs.is_empty() {
            nix::unistd::unlinkat(dir, &top, UnlinkatFlags::RemoveDir)?;
            stack.pop();
        } else {
            if top.as_os_str().len() > MAX_PATH {
                return Err(Errno::ENAMETOOLONG);
            }
            stack.extend(subdirs.into_iter().map(|s| top.join(s)));
        }
    }
    Ok(())
}
