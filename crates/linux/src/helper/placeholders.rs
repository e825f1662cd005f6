//! Empty placeholders for protected paths that do not exist yet. Runs in: the helper,
//! before a sandbox is cloned and after it is gone.
//!
//! A placeholder is the mount point the sandbox's read-only bind needs; while it exists
//! nothing else can be created at that path. It is created relative to its (existing)
//! parent opened without following symlinks, so a link planted by an earlier run cannot
//! redirect it, and removed afterwards only if it is still the empty thing we made.

use corral_core::spec::Placeholder;
use corral_core::CorralError;
use nix::fcntl::{OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::Mode;
use nix::unistd::UnlinkatFlags;
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;

/// A placeholder this helper created (and so must remove).
pub struct Created {
    parent: OwnedFd,
    name: PathBuf,
    dir: bool,
}

pub fn create(all: &[Placeholder]) -> Result<Vec<Created>, CorralError> {
    let mut created = Vec::new();
    for p in all {
        let how = OpenHow::new()
            .flags(OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC)
            .resolve(ResolveFlag::RESOLVE_NO_SYMLINKS);
        let fail = |e: nix::Error| {
            CorralError::spawn(format!(
                "cannot create the placeholder for protected {}: {e}",
                p.root.join(&p.relative).display()
            ))
        };
        let parent = nix::fcntl::openat2(nix::fcntl::AT_FDCWD, &p.root, how).map_err(fail)?;
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
        match made {
            Ok(()) => created.push(Created { parent, name: p.relative.clone(), dir: p.dir }),
            // It appeared since planning: the read-only bind protects the real thing.
            Err(nix::errno::Errno::EEXIST) => {}
            Err(e) => {
                remove(created);
                return Err(fail(e));
            }
        }
    }
    Ok(created)
}

/// Removes what `create` made, if still empty (rmdir refuses a non-empty directory).
pub fn remove(created: Vec<Created>) {
    for c in created {
        if c.dir {
            let _ = nix::unistd::unlinkat(c.parent.as_fd(), &c.name, UnlinkatFlags::RemoveDir);
        } else {
            let empty = nix::sys::stat::fstatat(c.parent.as_fd(), &c.name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW)
                .is_ok_and(|st| st.st_size == 0 && st.st_mode & libc::S_IFMT == libc::S_IFREG);
            if empty {
                let _ = nix::unistd::unlinkat(c.parent.as_fd(), &c.name, UnlinkatFlags::NoRemoveDir);
            }
        }
    }
}
