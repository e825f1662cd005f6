//! Empty placeholders for denied or protected paths that do not exist yet. Runs in: the
//! helper, before a sandbox is cloned and after it is gone.
//!
//! A placeholder is the mount point the sandbox's mask or read-only pin needs; while it
//! exists nothing else can be created at that path, and a file the host writes there later
//! is written into it, so it stays hidden or read-only in the sandbox. It is created
//! relative to its (existing) parent opened without following symlinks, so a link planted
//! by an earlier run cannot redirect it.
//!
//! Several sandboxes (of this helper or of another caller's) may stand on one placeholder:
//! each holds a shared `flock` on it for its lifetime, and a placeholder is removed only
//! by someone who gets the exclusive lock, when it is still the empty thing corral made
//! (marked with the `user.corral.placeholder` attribute where the file system has user
//! attributes; otherwise only its creator removes it). Removing it while another sandbox
//! used it would take that sandbox's mount away, in every namespace.
//!
//! A helper killed outright (SIGKILL, the OOM killer) cannot remove what it made: each
//! sandbox's placeholders are listed in a registry of this user's, and the next helper to
//! start removes those of helpers that are gone, by the same rules ([`registry`]).

mod registry;

use corral_core::spec::Placeholder;
use corral_core::CorralError;
use nix::fcntl::{OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{fstat, fstatat, FileStat, Mode};
use nix::unistd::UnlinkatFlags;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;

const MARK: &std::ffi::CStr = c"user.corral.placeholder";
/// Attempts when a placeholder is removed between our finding and locking it.
const RETRIES: usize = 8;
/// Milliseconds to wait for a remover's exclusive lock to go.
const LOCK_WAITS: usize = 50;

/// A placeholder this sandbox stands on (and may have to remove).
pub struct Held {
    parent: OwnedFd,
    name: PathBuf,
    dir: bool,
    /// Open on the placeholder, holding the shared lock.
    lock: OwnedFd,
    created: bool,
}

/// The placeholders one sandbox stands on, and the list that names them (see [`sweep`]).
#[derive(Default)]
pub struct Holding {
    held: Vec<Held>,
    list: Option<registry::List>,
}

pub fn create(all: &[Placeholder]) -> Result<Holding, CorralError> {
    let mut held = Holding::default();
    if all.is_empty() {
        return Ok(held);
    }
    held.list = registry::List::new(all);
    for p in all {
        match hold(p) {
            Ok(Some(h)) => {
                if let (true, Some(list)) = (h.created, held.list.as_mut()) {
                    list.created(p, registry::Identity::of(h.lock.as_fd()));
                }
                held.held.push(h);
            }
            Ok(None) => {}
            Err(e) => {
                remove(held);
                return Err(CorralError::spawn(format!(
                    "cannot reserve {} for the sandbox: {e}",
                    p.root.join(&p.relative).display()
                )));
            }
        }
    }
    Ok(held)
}

fn hold(p: &Placeholder) -> nix::Result<Option<Held>> {
    let how = OpenHow::new()
        .flags(OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_NO_SYMLINKS);
    let parent = nix::fcntl::openat2(nix::fcntl::AT_FDCWD, &p.root, how)?;
    for _ in 0..RETRIES {
        let made = if p.dir {
            nix::sys::stat::mkdirat(parent.as_fd(), &p.relative, Mode::from_bits_truncate(0o755))
        } else {
            nix::fcntl::openat(
                parent.as_fd(),
                &p.relative,
                OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_WRONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                Mode::from_bits_truncate(0o644),
            )
            .map(drop)
        };
        let created = match made {
            Ok(()) => true,
            // It exists (the real thing, or another sandbox's placeholder): stand on it.
            Err(nix::errno::Errno::EEXIST) => false,
            Err(e) => return Err(e),
        };
        // Read-only and not following a symlink.
        let lock = match nix::fcntl::openat(
            parent.as_fd(),
            &p.relative,
            OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK,
            Mode::empty(),
        ) {
            Ok(fd) => fd,
            // A symlink there now fails the run when the sandbox opens the path; one this
            // caller cannot read is not one of ours to stand on.
            Err(nix::errno::Errno::ELOOP | nix::errno::Errno::EACCES) => return Ok(None),
            Err(nix::errno::Errno::ENOENT) => continue, // removed meanwhile: again
            Err(e) => return Err(e),
        };
        if created {
            // Best effort: where user attributes are unsupported only the creator removes it.
            // SAFETY: a valid descriptor and a NUL-terminated name; the value is one byte.
            unsafe { libc::fsetxattr(lock.as_raw_fd(), MARK.as_ptr(), c"1".as_ptr().cast(), 1, 0) };
        }
        lock_shared(lock.as_fd())?;
        // Whoever removes a placeholder does so holding the exclusive lock: if ours is
        // still the one at the path now, it stays there as long as we hold the shared one.
        if same_file(&fstat(lock.as_fd())?, &parent, p)? {
            return Ok(Some(Held { parent, name: p.relative.clone(), dir: p.dir, lock, created }));
        }
    }
    Err(nix::errno::Errno::EAGAIN)
}

fn same_file(held: &FileStat, parent: &OwnedFd, p: &Placeholder) -> nix::Result<bool> {
    match fstatat(parent.as_fd(), &p.relative, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(now) => Ok(now.st_dev == held.st_dev && now.st_ino == held.st_ino),
        Err(nix::errno::Errno::ENOENT) => Ok(false),
        Err(e) => Err(e),
    }
}

/// The shared lock, waiting a little while a remover holds the exclusive one (it does so
/// only to unlink). Never blocking for long: this helper serves every sandbox, and anyone
/// who can open the placeholder can lock it.
fn lock_shared(fd: BorrowedFd<'_>) -> nix::Result<()> {
    for _ in 0..LOCK_WAITS {
        match flock(fd, libc::LOCK_SH | libc::LOCK_NB) {
            Err(nix::errno::Errno::EWOULDBLOCK) => std::thread::sleep(std::time::Duration::from_millis(1)),
            r => return r,
        }
    }
    Err(nix::errno::Errno::EWOULDBLOCK)
}

fn flock(fd: BorrowedFd<'_>, op: libc::c_int) -> nix::Result<()> {
    loop {
        // SAFETY: flock on a descriptor we hold.
        match unsafe { libc::flock(fd.as_raw_fd(), op) } {
            0 => return Ok(()),
            _ => match nix::errno::Errno::last() {
                nix::errno::Errno::EINTR => continue,
                e => return Err(e),
            },
        }
    }
}

/// Removes each placeholder nobody else stands on any more, if it is still the empty
/// thing corral made, then the list that named them.
pub fn remove(holding: Holding) {
    release(holding.held);
    if let Some(list) = holding.list {
        list.remove();
    }
}

/// Removes each placeholder nobody else stands on any more, if it is still the empty
/// thing corral made (rmdir refuses a non-empty directory; a file must be empty).
fn release(held: Vec<Held>) {
    for h in held {
        if flock(h.lock.as_fd(), libc::LOCK_EX | libc::LOCK_NB).is_err() {
            continue; // another sandbox still stands on it: it removes it later
        }
        let ours = h.created || marked(h.lock.as_fd());
        let Ok(now) = fstatat(h.parent.as_fd(), &h.name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW) else { continue };
        let Ok(held) = fstat(h.lock.as_fd()) else { continue };
        if !ours || now.st_dev != held.st_dev || now.st_ino != held.st_ino {
            continue;
        }
        if h.dir && now.st_mode & libc::S_IFMT == libc::S_IFDIR {
            let _ = nix::unistd::unlinkat(h.parent.as_fd(), &h.name, UnlinkatFlags::RemoveDir);
        } else if now.st_size == 0 && now.st_mode & libc::S_IFMT == libc::S_IFREG {
            let _ = nix::unistd::unlinkat(h.parent.as_fd(), &h.name, UnlinkatFlags::NoRemoveDir);
        }
        // The lock goes with the descriptor.
    }
}

fn marked(fd: BorrowedFd<'_>) -> bool {
    mark(fd) == Some(true)
}

/// Whether the file `fd` carries the mark; `None` when its file system has no user
/// attributes at all (so no placeholder there carries one).
fn mark(fd: BorrowedFd<'_>) -> Option<bool> {
    let mut v = [0u8; 1];
    // SAFETY: a valid descriptor and a buffer of the given length.
    match unsafe { libc::fgetxattr(fd.as_raw_fd(), MARK.as_ptr(), v.as_mut_ptr().cast(), v.len()) } {
        1 => return Some(true),
        0.. => return Some(false), // an attribute of that name, but not the mark
        _ => {}
    }
    match nix::errno::Errno::last() {
        nix::errno::Errno::EOPNOTSUPP => None,
        _ => Some(false),
    }
}

/// Removes what helpers killed outright left: the placeholders their lists name that are
/// still marked (or are the very file the dead helper created), empty, and stood on by
/// nobody. Never fails and never follows a symlink; anything unexpected is left alone.
pub fn sweep() {
    registry::sweep(|listed| {
        let found: Vec<Held> = listed.iter().filter_map(|(p, id)| reopen(p, *id)).collect();
        release(found);
    });
}

/// A listed placeholder as [`release`] takes it: there, of the kind listed, and either
/// marked or the file its creator recorded.
fn reopen(p: &Placeholder, identity: Option<registry::Identity>) -> Option<Held> {
    let how = OpenHow::new()
        .flags(OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_NO_SYMLINKS);
    let parent = nix::fcntl::openat2(nix::fcntl::AT_FDCWD, &p.root, how).ok()?;
    // Non-blocking: a FIFO put there opens without waiting for a writer.
    let lock = nix::fcntl::openat(
        parent.as_fd(),
        &p.relative,
        OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK,
        Mode::empty(),
    )
    .ok()?;
    let kind = fstat(lock.as_fd()).ok()?.st_mode & libc::S_IFMT;
    if kind != if p.dir { libc::S_IFDIR } else { libc::S_IFREG } {
        return None;
    }
    // A list is only a claim: whoever can write the registry (a sandbox with a write grant
    // over /tmp or the runtime directory too) can name any file, and its device, inode and
    // birth time are there for anyone who can stat it. So the recorded identity counts only
    // where the file system keeps no marks at all; elsewhere an unmarked file is not ours.
    let ours = match mark(lock.as_fd()) {
        Some(marked) => marked,
        None => identity.is_some_and(|id| registry::Identity::of(lock.as_fd()) == Some(id)),
    };
    ours.then(|| Held { parent, name: p.relative.clone(), dir: p.dir, lock, created: true })
}
