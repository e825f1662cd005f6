//! The lists of placeholders that live sandboxes stand on, so that a helper starting later
//! can remove those a helper killed outright (SIGKILL, the OOM killer) had to leave. Runs
//! in: the helper.
//!
//! Where: `$XDG_RUNTIME_DIR/corral-placeholders` when that directory is this user's and
//! nobody else may write to it, else `/tmp/corral-placeholders-UID`. The registry must be a
//! directory owned by this user with no access for anyone else, opened without following
//! a symlink and used through that descriptor only: a directory someone else made (or a
//! symlink, or loose modes) means there is no registry, and a helper killed outright then
//! leaves its placeholders as before. Nothing someone else could have written is read.
//!
//! One file per sandbox, holding an exclusive `flock` for as long as its helper lives (the
//! lock goes with the process, whatever its pid and whatever pid namespace it runs in, so
//! neither pid reuse nor another namespace's pids can make a live helper look dead). A file
//! whose lock can be taken belongs to a helper that is gone. A list only names places: a
//! listed placeholder is removed only under the rules of [`super::release`] (still there,
//! reached without symlinks, empty, nobody stands on it), and only when it is marked as a
//! placeholder or is the very file the dead helper created (same device, inode and birth
//! time, for file systems without user attributes). A list naming one that stays only
//! because a sandbox (of another caller, say) still stands on it is kept for a later sweep.
//! When in doubt, nothing is removed, and nothing here ever fails a run.

use corral_core::spec::Placeholder;
use nix::fcntl::{OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{fstat, Mode};
use nix::unistd::UnlinkatFlags;
use std::ffi::{OsStr, OsString};
use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// A list larger than this was not written by a helper (one placeholder per rule).
const MAX_LIST: i64 = 1 << 20;
/// Lists looked at per sweep: a sweep is bounded whatever the directory holds.
const MAX_LISTS: usize = 4096;
/// Bytes of lists read, and placeholders looked at, per sweep: whoever can write the
/// registry (a sandbox with a write grant over it too) must not make a helper's start slow.
/// What is past them is left for the next helper's sweep.
const SWEEP_BYTES: i64 = 4 << 20;
const SWEEP_ENTRIES: usize = 1 << 14;
/// Attempts to make a list when the registry is removed or a name is taken meanwhile.
const ATTEMPTS: usize = 4;

/// Who a placeholder's creator found it to be: enough to know it again without its mark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Identity {
    dev: u64,
    ino: u64,
    birth: (i64, u32),
}

impl Identity {
    /// The identity of the open file `fd`, if the file system records birth times.
    pub fn of(fd: BorrowedFd<'_>) -> Option<Identity> {
        // SAFETY: statx of an open descriptor (empty path) into a zeroed buffer we own.
        let mut st: libc::statx = unsafe { std::mem::zeroed() };
        let rc = unsafe {
            libc::statx(fd.as_raw_fd(), c"".as_ptr(), libc::AT_EMPTY_PATH, libc::STATX_INO | libc::STATX_BTIME, &mut st)
        };
        if rc != 0 || st.stx_mask & libc::STATX_BTIME == 0 || st.stx_mask & libc::STATX_INO == 0 {
            return None;
        }
        Some(Identity {
            dev: libc::makedev(st.stx_dev_major, st.stx_dev_minor),
            ino: st.stx_ino,
            birth: (st.stx_btime.tv_sec, st.stx_btime.tv_nsec),
        })
    }

    fn text(&self) -> String {
        format!("{} {} {} {}", self.dev, self.ino, self.birth.0, self.birth.1)
    }

    fn parse(s: &[u8]) -> Option<Identity> {
        let s = std::str::from_utf8(s).ok()?;
        let mut f = s.split(' ');
        let id = Identity {
            dev: f.next()?.parse().ok()?,
            ino: f.next()?.parse().ok()?,
            birth: (f.next()?.parse().ok()?, f.next()?.parse().ok()?),
        };
        f.next().is_none().then_some(id)
    }
}

/// One sandbox's list, locked while this helper lives.
pub struct List {
    dir: OwnedFd,
    path: PathBuf,
    name: OsString,
    file: OwnedFd,
}

impl List {
    /// A new list naming every placeholder of `all` (written before any is made, so a
    /// helper killed in between leaves nothing unlisted). `None` when there is no registry
    /// or it cannot be written: then only this helper removes them.
    pub fn new(all: &[Placeholder]) -> Option<List> {
        static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        for _ in 0..ATTEMPTS {
            let (dir, path) = open(true)?;
            let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let name = OsString::from(format!("{}.{n}", std::process::id()));
            let file = match nix::fcntl::openat(
                dir.as_fd(),
                name.as_os_str(),
                OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_WRONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                Mode::from_bits_truncate(0o600),
            ) {
                Ok(f) => f,
                // The registry was removed as we opened it, or a dead helper of our pid
                // left this name: another try.
                Err(nix::errno::Errno::ENOENT | nix::errno::Errno::EEXIST) => continue,
                Err(_) => return None,
            };
            // A sweep may have taken the (empty) list for a dead helper's between our
            // creating and locking it, and removed it: then it is no list, another try.
            if super::flock(file.as_fd(), libc::LOCK_EX | libc::LOCK_NB).is_err()
                || fstat(file.as_fd()).map_or(true, |s| s.st_nlink == 0)
            {
                continue;
            }
            let mut list = List { dir, path, name, file };
            let mut text = Vec::new();
            for p in all {
                entry(&mut text, p, None);
            }
            if list.append(&text) {
                return Some(list);
            }
            list.remove();
            return None;
        }
        None
    }

    /// Adds what the placeholder `p` that this helper created is, so that it can be known
    /// again where it carries no mark.
    pub fn created(&mut self, p: &Placeholder, identity: Option<Identity>) {
        if let Some(id) = identity {
            let mut text = Vec::new();
            entry(&mut text, p, Some(id));
            self.append(&text);
        }
    }

    fn append(&mut self, mut text: &[u8]) -> bool {
        while !text.is_empty() {
            match nix::unistd::write(&self.file, text) {
                Ok(n @ 1..) => text = &text[n..],
                Err(nix::errno::Errno::EINTR) => continue,
                Ok(0) | Err(_) => return false,
            }
        }
        true
    }

    /// Removes the list (its placeholders are gone or another sandbox's now), and the
    /// registry when that was the last list in it.
    pub fn remove(self) {
        let _ = nix::unistd::unlinkat(self.dir.as_fd(), self.name.as_os_str(), UnlinkatFlags::NoRemoveDir);
        remove_registry_if_empty(&self.dir, &self.path);
    }
}

/// Appends one entry: root, name, kind and identity, each ended by a NUL.
fn entry(text: &mut Vec<u8>, p: &Placeholder, identity: Option<Identity>) {
    let id = identity.map(|i| i.text()).unwrap_or_default();
    let kind: &[u8] = if p.dir { b"d" } else { b"f" };
    for part in [p.root.as_os_str().as_bytes(), p.relative.as_os_str().as_bytes(), kind, id.as_bytes()] {
        text.extend_from_slice(part);
        text.push(0);
    }
}

/// The placeholders a list names, each with the identity its creator recorded, if any.
pub fn parse(text: &[u8]) -> Vec<(Placeholder, Option<Identity>)> {
    let mut out: Vec<(Placeholder, Option<Identity>)> = Vec::new();
    // Where each placeholder is in `out`: a list of many entries is read in linear time.
    let mut at: std::collections::HashMap<(PathBuf, PathBuf, bool), usize> = std::collections::HashMap::new();
    // The last field ends with a NUL; a list cut short by a kill ends without one.
    let mut fields: Vec<&[u8]> = text.split(|b| *b == 0).collect();
    fields.pop();
    for e in fields.chunks_exact(4) {
        let (root, name, kind, id) = (e[0], e[1], e[2], e[3]);
        let root = PathBuf::from(OsStr::from_bytes(root));
        let name = PathBuf::from(OsStr::from_bytes(name));
        // One component below an absolute root, as the helper only ever makes them.
        let one =
            name.components().count() == 1 && matches!(name.components().next(), Some(std::path::Component::Normal(_)));
        if !root.is_absolute() || !one || (kind != b"d" && kind != b"f") {
            continue;
        }
        let id = Identity::parse(id);
        match at.entry((root, name, kind == b"d")) {
            std::collections::hash_map::Entry::Occupied(e) => {
                let known = &mut out[*e.get()].1;
                *known = known.or(id);
            }
            std::collections::hash_map::Entry::Vacant(e) => {
                let (root, relative, dir) = e.key().clone();
                e.insert(out.len());
                out.push((Placeholder { root, relative, dir }, id));
            }
        }
    }
    out
}

/// Where the registry is: the runtime directory when it is this user's alone.
fn location() -> PathBuf {
    use std::os::unix::fs::MetadataExt;
    let uid = nix::unistd::geteuid().as_raw();
    let runtime = std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from).filter(|p| {
        p.is_absolute()
            && std::fs::symlink_metadata(p).is_ok_and(|m| m.is_dir() && m.uid() == uid && m.mode() & 0o022 == 0)
    });
    match runtime {
        Some(run) => run.join("corral-placeholders"),
        None => PathBuf::from(format!("/tmp/corral-placeholders-{uid}")),
    }
}

/// The registry, opened without following symlinks and checked to be this user's alone;
/// made first when `make` is set. `None` when it does not exist or is not trustworthy.
fn open(make: bool) -> Option<(OwnedFd, PathBuf)> {
    use std::os::unix::fs::DirBuilderExt;
    let path = location();
    if make {
        let _ = std::fs::DirBuilder::new().mode(0o700).create(&path);
    }
    let how = OpenHow::new()
        .flags(OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_NO_SYMLINKS);
    let dir = nix::fcntl::openat2(nix::fcntl::AT_FDCWD, &path, how).ok()?;
    let st = fstat(dir.as_fd()).ok()?;
    let ours = st.st_uid == nix::unistd::geteuid().as_raw() && st.st_mode & 0o077 == 0;
    (st.st_mode & libc::S_IFMT == libc::S_IFDIR && ours).then_some((dir, path))
}

/// Removes the registry directory if it holds nothing any more (`rmdir` refuses otherwise;
/// a helper making a list in it meanwhile tries again, see [`List::new`]).
fn remove_registry_if_empty(dir: &OwnedFd, path: &Path) {
    // Only the directory we checked: if the name now leads elsewhere, leave it.
    let Ok(held) = fstat(dir.as_fd()) else { return };
    match nix::sys::stat::lstat(path) {
        Ok(now) if now.st_dev == held.st_dev && now.st_ino == held.st_ino => {
            let _ = nix::unistd::unlinkat(nix::fcntl::AT_FDCWD, path, UnlinkatFlags::RemoveDir);
        }
        _ => {}
    }
}

/// The lists of helpers that are gone: each is handed, locked, to `each`, then removed
/// unless `each` says to keep it (for a later sweep).
pub fn sweep(mut each: impl FnMut(Vec<(Placeholder, Option<Identity>)>) -> bool) {
    let Some((dir, path)) = open(false) else { return };
    let Ok(mut listing) =
        nix::dir::Dir::openat(dir.as_fd(), ".", OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())
    else {
        return;
    };
    // Only what may be a list counts toward the bound: directories, symlinks and the like
    // are never removed here, so as many of them (a sandbox with a write grant over the
    // registry can make them) would otherwise keep every later sweep from the lists.
    let names: Vec<OsString> = listing
        .iter()
        .flatten()
        .filter(|e| matches!(e.file_type(), Some(nix::dir::Type::File) | None))
        .map(|e| OsStr::from_bytes(e.file_name().to_bytes()).to_os_string())
        .take(MAX_LISTS)
        .collect();
    let uid = nix::unistd::geteuid().as_raw();
    let (mut bytes, mut entries) = (SWEEP_BYTES, SWEEP_ENTRIES);
    for name in names {
        if entries == 0 {
            break;
        }
        let Ok(file) = nix::fcntl::openat(
            dir.as_fd(),
            name.as_os_str(),
            OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
            Mode::empty(),
        ) else {
            continue;
        };
        let Ok(st) = fstat(file.as_fd()) else { continue };
        if st.st_mode & libc::S_IFMT != libc::S_IFREG || st.st_uid != uid || st.st_size > MAX_LIST {
            continue; // not a list a helper of ours wrote: left alone
        }
        if st.st_size > bytes {
            break; // for the next sweep
        }
        if super::flock(file.as_fd(), libc::LOCK_EX | libc::LOCK_NB).is_err() {
            continue; // its helper is alive and removes its placeholders itself
        }
        let mut text = Vec::new();
        let mut f = std::fs::File::from(file);
        let mut keep = false;
        // Read while holding the lock (it stays with the file until it is closed).
        if (&mut f).take(bytes as u64).read_to_end(&mut text).is_ok() {
            let mut listed = parse(&text);
            if listed.len() > entries && entries < SWEEP_ENTRIES {
                break; // for a later sweep
            }
            // Longer than a whole sweep: not a helper's list (one entry per rule).
            listed.truncate(entries);
            bytes -= text.len() as i64;
            entries -= listed.len();
            keep = each(listed);
        }
        if !keep {
            let _ = nix::unistd::unlinkat(dir.as_fd(), name.as_os_str(), UnlinkatFlags::NoRemoveDir);
        }
    }
    remove_registry_if_empty(&dir, &path);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_names_each_placeholder_once_with_the_identity_it_gave() {
        let p = |name: &str, dir| Placeholder { root: PathBuf::from("/r"), relative: PathBuf::from(name), dir };
        let id = Identity { dev: 1, ino: 2, birth: (3, 4) };
        let mut text = Vec::new();
        entry(&mut text, &p("a", false), None);
        entry(&mut text, &p("b", true), None);
        entry(&mut text, &p("a", false), Some(id));
        entry(&mut text, &p("a", true), None);
        // Many entries are read in one pass (a list is anyone's who can write the registry).
        for i in 0..50_000 {
            entry(&mut text, &p(&format!("n{i}"), false), None);
        }
        text.extend_from_slice(b"/r\0cut"); // a kill in the middle of an entry
        let listed = parse(&text);
        assert_eq!(listed.len(), 3 + 50_000);
        assert_eq!(listed[0], (p("a", false), Some(id)));
        assert_eq!(listed[1], (p("b", true), None));
        assert_eq!(listed[2], (p("a", true), None));
    }
}
