//! Writes captured by overlays (`writeMode: 'overlay'`): listing them and committing
//! them to the host. Runs in: the client, which owns the layers after the run.
//!
//! The layers live on a tmpfs the sandbox mounted; a directory descriptor is all that
//! keeps it alive, so discarding is dropping. Overlayfs records a deletion as a whiteout
//! (a 0:0 character device) and a directory that replaced a lower one as "opaque"
//! (`user.overlay.opaque=y`, since unprivileged overlays use user xattrs). Committing
//! walks the host side with `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS` from each layer's
//! root, so nothing the sandbox wrote can steer a write outside it, and replaces files by
//! renaming a complete copy over them.

use corral_core::result::{ChangeKind, FileChange};
use corral_core::CorralError;
use nix::dir::Dir;
use nix::fcntl::{AtFlags, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{fstatat, FileStat, Mode};
use nix::unistd::UnlinkatFlags;
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// The captured layers of one run and the host directories they sit on.
#[derive(Debug)]
pub struct Captured {
    root: OwnedFd,
    lowers: Vec<PathBuf>,
    changes: Vec<FileChange>,
}

enum Entry {
    Whiteout,
    Dir { opaque: bool },
    File(FileStat),
    Symlink(FileStat),
    Other,
}

impl Captured {
    /// `root` holds `upper/N` for the N-th overlay, whose lower layer is `lowers[N]`.
    pub fn new(root: OwnedFd, lowers: Vec<PathBuf>) -> io::Result<Captured> {
        let mut changes = Vec::new();
        for (i, lower) in lowers.iter().enumerate() {
            let upper = open_dir(root.as_fd(), Path::new(&format!("upper/{i}")))?;
            list(upper.as_fd(), lower, &mut changes)?;
        }
        Ok(Captured { root, lowers, changes })
    }

    pub fn changes(&self) -> &[FileChange] {
        &self.changes
    }

    /// Applies every change to the host. On error, changes already applied stay applied.
    pub fn commit(&self) -> Result<(), CorralError> {
        for (i, lower) in self.lowers.iter().enumerate() {
            let fail = |e: io::Error| CorralError::spawn(format!("committing changes to {}: {e}", lower.display()));
            let upper = open_dir(self.root.as_fd(), Path::new(&format!("upper/{i}"))).map_err(fail)?;
            let how = OpenHow::new()
                .flags(OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC)
                .resolve(ResolveFlag::RESOLVE_NO_SYMLINKS);
            let host = nix::fcntl::openat2(nix::fcntl::AT_FDCWD, lower, how).map_err(|e| fail(e.into()))?;
            apply(upper.as_fd(), host.as_fd()).map_err(fail)?;
        }
        Ok(())
    }
}

fn open_dir(parent: BorrowedFd<'_>, name: &Path) -> io::Result<OwnedFd> {
    Ok(nix::fcntl::openat(
        parent,
        name,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?)
}

/// Opens `name` below `parent` without following symlinks or leaving it.
fn open_beneath(parent: BorrowedFd<'_>, name: &OsStr) -> nix::Result<OwnedFd> {
    let how = OpenHow::new()
        .flags(OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_SYMLINKS);
    nix::fcntl::openat2(parent, Path::new(name), how)
}

fn entries(dir: BorrowedFd<'_>) -> io::Result<Vec<(OsString, Entry)>> {
    let mut d = Dir::from_fd(nix::unistd::dup(dir)?)?;
    let mut out = Vec::new();
    for e in d.iter() {
        let e = e?;
        let name = OsStr::from_bytes(e.file_name().to_bytes()).to_os_string();
        if name == "." || name == ".." {
            continue;
        }
        let st = fstatat(dir, Path::new(&name), AtFlags::AT_SYMLINK_NOFOLLOW)?;
        let entry = match st.st_mode & libc::S_IFMT {
            libc::S_IFCHR if st.st_rdev == 0 => Entry::Whiteout,
            libc::S_IFDIR => Entry::Dir { opaque: opaque(dir, &name) },
            libc::S_IFREG => Entry::File(st),
            libc::S_IFLNK => Entry::Symlink(st),
            _ => Entry::Other,
        };
        out.push((name, entry));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

fn opaque(dir: BorrowedFd<'_>, name: &OsStr) -> bool {
    let Ok(fd) = open_dir(dir, Path::new(name)) else { return false };
    let mut value = [0u8; 2];
    // SAFETY: reading an xattr of a descriptor we own into a buffer we own.
    let n = unsafe {
        libc::fgetxattr(fd.as_raw_fd(), c"user.overlay.opaque".as_ptr(), value.as_mut_ptr().cast(), value.len())
    };
    n == 1 && value[0] == b'y'
}

fn list(upper: BorrowedFd<'_>, lower: &Path, out: &mut Vec<FileChange>) -> io::Result<()> {
    for (name, entry) in entries(upper)? {
        let path = lower.join(&name);
        let host = std::fs::symlink_metadata(&path).ok();
        let kind = if host.is_some() { ChangeKind::Modified } else { ChangeKind::Added };
        match entry {
            Entry::Whiteout => {
                let dir = host.as_ref().is_some_and(|m| m.is_dir());
                out.push(FileChange { path, kind: ChangeKind::Deleted, dir, size: 0 });
            }
            Entry::Dir { opaque } => {
                let existed = host.as_ref().is_some_and(|m| m.is_dir());
                if !existed {
                    out.push(FileChange { path: path.clone(), kind: ChangeKind::Added, dir: true, size: 0 });
                } else if opaque {
                    // Replaced wholesale: whatever the host has there and the layer lacks goes.
                    let kept: Vec<OsString> =
                        entries(open_dir(upper, Path::new(&name))?.as_fd())?.into_iter().map(|(n, _)| n).collect();
                    for e in std::fs::read_dir(&path)?.flatten() {
                        if !kept.contains(&e.file_name()) {
                            let dir = e.file_type().is_ok_and(|t| t.is_dir());
                            out.push(FileChange { path: e.path(), kind: ChangeKind::Deleted, dir, size: 0 });
                        }
                    }
                }
                list(open_dir(upper, Path::new(&name))?.as_fd(), &path, out)?;
            }
            Entry::File(st) | Entry::Symlink(st) => {
                out.push(FileChange { path, kind, dir: false, size: st.st_size as u64 })
            }
            Entry::Other => {}
        }
    }
    Ok(())
}

fn apply(upper: BorrowedFd<'_>, host: BorrowedFd<'_>) -> io::Result<()> {
    for (name, entry) in entries(upper)? {
        match entry {
            Entry::Whiteout => remove(host, &name)?,
            Entry::Dir { opaque } => {
                let existing = fstatat(host, Path::new(&name), AtFlags::AT_SYMLINK_NOFOLLOW).ok();
                let is_dir = existing.is_some_and(|st| st.st_mode & libc::S_IFMT == libc::S_IFDIR);
                if existing.is_some() && (opaque || !is_dir) {
                    remove(host, &name)?;
                }
                if existing.is_none() || opaque || !is_dir {
                    let mode = fstatat(upper, Path::new(&name), AtFlags::AT_SYMLINK_NOFOLLOW)?.st_mode & 0o7777;
                    nix::sys::stat::mkdirat(host, Path::new(&name), Mode::from_bits_truncate(mode))?;
                }
                apply(open_dir(upper, Path::new(&name))?.as_fd(), open_beneath(host, &name)?.as_fd())?;
            }
            Entry::File(st) => replace(host, &name, |tmp| {
                let src = nix::fcntl::openat(
                    upper,
                    Path::new(&name),
                    OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                    Mode::empty(),
                )?;
                let dst = nix::fcntl::openat(
                    host,
                    Path::new(tmp),
                    OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                    Mode::from_bits_truncate(st.st_mode & 0o7777),
                )?;
                io::copy(&mut std::fs::File::from(src), &mut std::fs::File::from(dst))?;
                Ok(())
            })?,
            Entry::Symlink(_) => replace(host, &name, |tmp| {
                let target = nix::fcntl::readlinkat(upper, Path::new(&name))?;
                nix::unistd::symlinkat(target.as_os_str(), host, Path::new(tmp))?;
                Ok(())
            })?,
            Entry::Other => {}
        }
    }
    Ok(())
}

/// Writes a complete copy under a temporary name, then renames it over `name`.
fn replace(host: BorrowedFd<'_>, name: &OsStr, write: impl FnOnce(&OsStr) -> io::Result<()>) -> io::Result<()> {
    let tmp = OsString::from(format!(".corral-commit-{}-{}", std::process::id(), name.to_string_lossy()));
    let _ = nix::unistd::unlinkat(host, Path::new(&tmp), UnlinkatFlags::NoRemoveDir);
    write(&tmp)?;
    if fstatat(host, Path::new(name), AtFlags::AT_SYMLINK_NOFOLLOW)
        .is_ok_and(|st| st.st_mode & libc::S_IFMT == libc::S_IFDIR)
    {
        remove(host, name)?;
    }
    nix::fcntl::renameat(host, Path::new(&tmp), host, Path::new(name))?;
    Ok(())
}

/// Removes `name` below `dir`, recursively if it is a directory; missing is fine.
fn remove(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<()> {
    let Ok(st) = fstatat(dir, Path::new(name), AtFlags::AT_SYMLINK_NOFOLLOW) else { return Ok(()) };
    if st.st_mode & libc::S_IFMT == libc::S_IFDIR {
        let sub = open_beneath(dir, name)?;
        for (child, _) in entries(sub.as_fd())? {
            remove(sub.as_fd(), &child)?;
        }
        nix::unistd::unlinkat(dir, Path::new(name), UnlinkatFlags::RemoveDir)?;
    } else {
        nix::unistd::unlinkat(dir, Path::new(name), UnlinkatFlags::NoRemoveDir)?;
    }
    Ok(())
}
