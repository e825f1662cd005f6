//! Masks and read-only pins put back when the host replaces what they cover. Runs in:
//! sandbox init, while the command runs.
//!
//! A mask (a denied path, `/etc`'s secrets, a Unix socket) or a read-only pin (a protected
//! path) is a mount on one directory entry. Inside the sandbox nothing can rename or
//! unlink over a mount point (EBUSY), but when the host does — an editor's atomic save over
//! a denied `.env`, git rewriting a protected `.git/config` through `config.lock` — the
//! kernel drops the mount in every namespace and the new file shows unmasked. Init watches
//! the directories that hold carve-outs (inotify sees the host's changes: the directory is
//! the host's own inode) and puts each carve-out back on whatever now stands there; one it
//! cannot put back ends the run. Between the host's rename and that moment the new file
//! is reachable: this narrows the window to the time init takes to wake, it cannot close it.
//! `/etc`'s secrets are not watched, and a sandbox past the user's inotify limits (128
//! instances by default, shared by all of the user's processes) goes unwatched: its
//! carve-outs hold until the host replaces one, as they did before.

use super::mounts;
use crate::sandbox::{Step, StepError};
use corral_core::spec::MountSpec;
use corral_core::SandboxSpec;
use nix::fcntl::OFlag;
use nix::mount::{mount, MsFlags};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify, WatchDescriptor};
use nix::sys::stat::Mode;
use std::collections::HashMap;
use std::ffi::OsString;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// What stands at a carve-out's path and how to put it back.
enum Kind {
    Mask,
    Pin { read_only: bool, exec: Option<bool> },
}

struct CarveOut {
    /// The sandbox path (absolute).
    target: PathBuf,
    name: OsString,
    kind: Kind,
    /// Device and inode at the path once the carve-out was in place (`None`: nothing there).
    placed: Option<(u64, u64)>,
}

pub struct Watcher {
    inotify: Inotify,
    dirs: HashMap<WatchDescriptor, Vec<usize>>,
    carve_outs: Vec<CarveOut>,
    /// The empty file masks are bound from (see `mounts::build`).
    empty_file: OwnedFd,
}

fn identity(p: &Path) -> Option<(u64, u64)> {
    std::fs::symlink_metadata(p).ok().map(|m| (m.dev(), m.ino()))
}

impl Watcher {
    /// Watches the directories holding the spec's masks and read-only or noexec pins;
    /// `None` when there are none. Called after the view is entered.
    pub fn new(spec: &SandboxSpec, empty_file: OwnedFd) -> Result<Option<Watcher>, StepError> {
        let mut carve_outs = Vec::new();
        for m in &spec.mounts {
            let (target, kind) = match m {
                MountSpec::Mask { target } => (target, Kind::Mask),
                MountSpec::Pin { target, read_only, exec } if *read_only || *exec == Some(false) => {
                    (target, Kind::Pin { read_only: *read_only, exec: *exec })
                }
                _ => continue,
            };
            // `/etc`'s secrets in the default view: an instance per sandbox for them would
            // soon exhaust the user's inotify instances (128 by default), and the sandbox's
            // ids cannot read them in any case unless the caller is root.
            if corral_core::normalize::ETC_SECRETS.iter().any(|s| target == Path::new(s)) {
                continue;
            }
            let Some(name) = target.file_name() else { continue };
            carve_outs.push(CarveOut {
                target: target.clone(),
                name: name.to_os_string(),
                kind,
                placed: identity(target),
            });
        }
        if carve_outs.is_empty() {
            return Ok(None);
        }
        // Out of inotify instances or watches (limits per user): the carve-outs hold as they
        // did before watching, until the host replaces one.
        let Ok(inotify) = Inotify::init(InitFlags::IN_CLOEXEC | InitFlags::IN_NONBLOCK) else {
            return Ok(None);
        };
        let mut dirs: HashMap<WatchDescriptor, Vec<usize>> = HashMap::new();
        let flags = AddWatchFlags::IN_CREATE
            | AddWatchFlags::IN_MOVED_TO
            | AddWatchFlags::IN_ONLYDIR
            | AddWatchFlags::IN_DONT_FOLLOW;
        for (i, c) in carve_outs.iter().enumerate() {
            let Some(parent) = c.target.parent() else { continue };
            // A directory this process cannot read is out of the command's reach too, and
            // one that does not exist holds nothing to replace.
            if let Ok(wd) = inotify.add_watch(parent, flags) {
                dirs.entry(wd).or_default().push(i);
            }
        }
        Ok(Some(Watcher { inotify, dirs, carve_outs, empty_file }))
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.inotify.as_fd()
    }

    /// Reads what changed and puts back every carve-out that was replaced.
    pub fn handle(&mut self) -> Result<(), StepError> {
        let mut due: Vec<usize> = Vec::new();
        loop {
            let events = match self.inotify.read_events() {
                Ok(e) => e,
                Err(nix::errno::Errno::EAGAIN) => break,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(StepError::io("read inotify", e)),
            };
            for e in events {
                if e.mask.contains(AddWatchFlags::IN_Q_OVERFLOW) {
                    due.extend(0..self.carve_outs.len());
                    continue;
                }
                let Some(name) = e.name else { continue };
                let here = self.dirs.get(&e.wd).into_iter().flatten();
                due.extend(here.filter(|i| self.carve_outs[**i].name == name));
            }
        }
        due.sort_unstable();
        due.dedup();
        for i in due {
            self.put_back(i)?;
        }
        Ok(())
    }

    fn put_back(&mut self, i: usize) -> Result<(), StepError> {
        let c = &self.carve_outs[i];
        let now = identity(&c.target);
        if now.is_none() || now == c.placed {
            return Ok(());
        }
        let root = nix::fcntl::open("/", OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())
            .step("open /")?;
        let rel: PathBuf = c.target.strip_prefix("/").unwrap_or(&c.target).to_path_buf();
        let is_dir = std::fs::symlink_metadata(&c.target).is_ok_and(|m| m.is_dir());
        let done = match c.kind {
            // A directory under a fresh empty tmpfs; anything else under the empty file.
            Kind::Mask if is_dir => nix::fcntl::openat2(
                root.as_fd(),
                &rel,
                nix::fcntl::OpenHow::new()
                    .flags(OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC)
                    .resolve(nix::fcntl::ResolveFlag::RESOLVE_NO_SYMLINKS | nix::fcntl::ResolveFlag::RESOLVE_BENEATH),
            )
            .and_then(|at| mask_dir(at.as_fd()))
            .map_err(|e| StepError::io("mask directory", e)),
            Kind::Mask => mounts::mask(root.as_fd(), &rel, self.empty_file.as_fd(), self.empty_file.as_fd()),
            Kind::Pin { read_only, exec } => mounts::pin(root.as_fd(), &rel, read_only, exec),
        };
        done.map_err(|e| {
            StepError::msg(
                "carve-out replaced on the host",
                format!(
                    "{}: replaced during the run and could not be covered again: {}: {}",
                    c.target.display(),
                    e.step,
                    e.message
                ),
            )
        })?;
        self.carve_outs[i].placed = identity(&self.carve_outs[i].target);
        Ok(())
    }
}

/// Hides the directory at `at` under a fresh empty read-only tmpfs.
fn mask_dir(at: BorrowedFd<'_>) -> nix::Result<()> {
    let flags = MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    let path = format!("/proc/self/fd/{}", at.as_raw_fd());
    mount(Some("tmpfs"), path.as_str(), Some("tmpfs"), flags, Some("mode=0555,size=4k,nr_inodes=1"))
}
