//! Masks and pins put back when the host replaces what they cover, or a directory above
//! them. Runs in: sandbox init, which sets the watches up before the command is forked, and
//! the carve-out warden (`crate::helper::warden`), which puts carve-outs back while it runs.
//!
//! A mask (a denied path, a Unix socket) or a pin (a protected path, read-only; each
//! directory between a writable grant's root and a protected path; a path whose exec rule
//! differs from its grant's) is a mount on one directory entry. Inside the sandbox nothing
//! can rename or unlink over a mount point (EBUSY), but when the host does — an editor's
//! atomic save over a denied `.env`, git rewriting a protected `.git/config` through
//! `config.lock`, a restore moving a new `.aws` or `.git` over the old one — the kernel
//! drops the mount in every namespace, and a directory renamed away takes the mounts
//! beneath it along: the new entry shows uncovered.
//!
//! So each carve-out is watched in every directory from the root of the grant that
//! shows it (the bind mount it lives on) down to the directory holding it: inotify sees the
//! host's changes, these being the host's own inodes. A new entry (created or moved in)
//! under a name on the way to a carve-out re-resolves the chain below that name (watches
//! move to the new directories, the old ones are dropped) and puts back every carve-out
//! under it that no longer has a mount of its own, shallowest first (a protected path's
//! ancestor pins before the path). What counts as "still in place" is the kernel's own
//! answer: the entry is the root of a mount (only corral mounts anything in the view).
//! One that cannot be put back ends the run.
//!
//! What the command can do here: in a writable grant it can create and rename entries in
//! watched directories (a denied path's directories are not pinned), so each event costs
//! only the carve-outs under that one name (a hash lookup, then a walk of their chains),
//! a path that is missing or not a directory is simply not watched until something appears
//! under its name, a symlink standing where a mask or a directory above it was is itself
//! covered, and a failure caused by an entry that changed meanwhile waits for that
//! change's own event instead of ending the run. Putting back never makes an event, so it
//! cannot loop. Each put-back is a mount that stays (the old one may still cover the real
//! file under its new name), so a command that keeps replacing a denied path's directory
//! in its own grant spends the namespace's mount limit and ends its own run.
//!
//! What remains: between the host's rename and the moment the warden has read the event and
//! mounted again, the new entry is reachable (a window of the time it takes to wake, longer
//! for events in the first moments of a run, which wait until the warden has joined the
//! sandbox: it narrows, it does not close). Directories above a grant's root are not watched (the
//! command moving them moves the grant along). A directory on the chain that this process
//! may not read (search-only, mode 0711) cannot be watched. `/etc`'s secrets are not
//! watched, and a sandbox past the user's inotify limits (128 instances by default, shared
//! by all of the user's processes) goes unwatched: its carve-outs hold until the host
//! replaces one, as they did before. When the host puts a symlink on the way to a protected
//! path, nothing can be pinned there that keeps the name what it was: the run ends.

use super::mounts;
use crate::sandbox::{Step, StepError};
use corral_core::spec::MountSpec;
use nix::fcntl::{OFlag, OpenHow, ResolveFlag};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify, WatchDescriptor};
use nix::sys::stat::Mode;
use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::hash::Hash;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

/// What stands at a carve-out's path and how to put it back.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Mask,
    Pin { read_only: bool, exec: Option<bool> },
}

struct CarveOut {
    /// The sandbox path (absolute).
    target: PathBuf,
    kind: Kind,
    /// Where the chain of watched directories starts: the root of the grant that shows
    /// the carve-out (its parent when no grant does).
    root: PathBuf,
    /// The components from `root` down to the carve-out: `names[k]` is looked for in the
    /// chain's `k`-th directory (`root` joined with `names[..k]`).
    names: Vec<OsString>,
    /// The watch on each directory of the chain; `None` where it is missing, not a
    /// directory, or could not be watched.
    watched: Vec<Option<WatchDescriptor>>,
}

/// Which carve-outs lie below each name of each watched directory, as (carve-out, depth).
struct Index<W> {
    by_dir: HashMap<W, HashMap<OsString, Vec<(usize, usize)>>>,
}

impl<W: Hash + Eq + Copy> Index<W> {
    fn new() -> Self {
        Index { by_dir: HashMap::new() }
    }

    fn add(&mut self, dir: W, name: &OsStr, at: (usize, usize)) {
        let under = self.by_dir.entry(dir).or_default().entry(name.to_os_string()).or_default();
        if !under.contains(&at) {
            under.push(at);
        }
    }

    /// Takes `at` out; true when nothing is left under `dir` (its watch may go).
    fn remove(&mut self, dir: W, name: &OsStr, at: (usize, usize)) -> bool {
        let Some(names) = self.by_dir.get_mut(&dir) else { return false };
        if let Some(under) = names.get_mut(name) {
            under.retain(|x| *x != at);
            if under.is_empty() {
                names.remove(name);
            }
        }
        if names.is_empty() {
            self.by_dir.remove(&dir);
            return true;
        }
        false
    }

    fn under(&self, dir: W, name: &OsStr) -> &[(usize, usize)] {
        self.by_dir.get(&dir).and_then(|n| n.get(name)).map_or(&[], |v| v.as_slice())
    }

    /// Everything under `dir`, which is no longer watched.
    fn forget(&mut self, dir: W) -> Vec<(usize, usize)> {
        self.by_dir.remove(&dir).map(|n| n.into_values().flatten().collect()).unwrap_or_default()
    }
}

/// The masks and pins among `mounts`, each with its chain.
fn carve_outs(mounts: &[MountSpec]) -> Vec<CarveOut> {
    let grants = grants(mounts);
    let mut carve_outs = Vec::new();
    for m in mounts {
        let (target, kind) = match m {
            MountSpec::Mask { target } => (target, Kind::Mask),
            MountSpec::Pin { target, read_only, exec } => (target, Kind::Pin { read_only: *read_only, exec: *exec }),
            _ => continue,
        };
        // `/etc`'s secrets in the default view: an instance per sandbox for them would
        // soon exhaust the user's inotify instances (128 by default), and the sandbox's
        // ids cannot read them in any case unless the caller is root.
        if corral_core::normalize::ETC_SECRETS.iter().any(|s| target == Path::new(s)) {
            continue;
        }
        let Some((root, names)) = chain_of(&grants, target) else { continue };
        let watched = vec![None; names.len()];
        carve_outs.push(CarveOut { target: target.clone(), kind, root, names, watched });
    }
    carve_outs
}

/// Whether `mounts` has a carve-out to watch (a sandbox without one needs no watcher).
pub fn any(mounts: &[MountSpec]) -> bool {
    !carve_outs(mounts).is_empty()
}

/// The grants' targets: the bind mounts and overlays a chain may start from.
fn grants(mounts: &[MountSpec]) -> Vec<&Path> {
    mounts
        .iter()
        .filter_map(|m| match m {
            MountSpec::Bind { target, .. } | MountSpec::Overlay { target, .. } => Some(target.as_path()),
            _ => None,
        })
        .collect()
}

/// Where the chain of the carve-out at `target` starts, and the names from there down:
/// the deepest grant strictly above it, else its parent; `None` for a path with no name.
fn chain_of(grants: &[&Path], target: &Path) -> Option<(PathBuf, Vec<OsString>)> {
    let grant = grants.iter().filter(|t| target.starts_with(t) && target != **t).max_by_key(|t| t.components().count());
    let root = match grant {
        Some(g) => g.to_path_buf(),
        None => target.parent()?.to_path_buf(),
    };
    let names: Vec<OsString> = target
        .strip_prefix(&root)
        .ok()?
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            _ => None,
        })
        .collect();
    (!names.is_empty()).then_some((root, names))
}

fn relative(p: &Path) -> PathBuf {
    p.components().filter(|c| matches!(c, Component::Normal(_))).collect()
}

/// Opens `rel` beneath `at` as `O_PATH` without following any symlink, a final one
/// included (that one is opened itself).
fn open_nofollow(at: BorrowedFd<'_>, rel: &Path, extra: OFlag) -> nix::Result<OwnedFd> {
    if rel.as_os_str().is_empty() {
        return nix::fcntl::openat(at, ".", OFlag::O_PATH | OFlag::O_CLOEXEC | extra, Mode::empty());
    }
    let how = OpenHow::new()
        .flags(OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | extra)
        .resolve(ResolveFlag::RESOLVE_NO_SYMLINKS | ResolveFlag::RESOLVE_BENEATH);
    nix::fcntl::openat2(at, rel, how)
}

/// Whether `fd` is the root of a mount: a carve-out in place.
fn is_mount_root(fd: BorrowedFd<'_>) -> bool {
    // SAFETY: statx is plain data the kernel fills.
    let mut stx: libc::statx = unsafe { std::mem::zeroed() };
    // SAFETY: statx of our own descriptor (AT_EMPTY_PATH) into a local.
    let r = unsafe {
        libc::statx(fd.as_raw_fd(), c"".as_ptr(), libc::AT_EMPTY_PATH | libc::AT_SYMLINK_NOFOLLOW, 0, &mut stx)
    };
    let bit = libc::STATX_ATTR_MOUNT_ROOT as u64;
    r == 0 && stx.stx_attributes_mask & bit != 0 && stx.stx_attributes & bit != 0
}

fn file_type(fd: BorrowedFd<'_>) -> Option<libc::mode_t> {
    nix::sys::stat::fstat(fd).ok().map(|s| s.st_mode & libc::S_IFMT)
}

/// Whether `rel` beneath `at` is still the file `was` (not replaced or removed).
fn still(at: BorrowedFd<'_>, rel: &Path, was: BorrowedFd<'_>) -> bool {
    let Ok(now) = open_nofollow(at, rel, OFlag::empty()) else { return false };
    match (nix::sys::stat::fstat(now.as_fd()), nix::sys::stat::fstat(was)) {
        (Ok(a), Ok(b)) => a.st_dev == b.st_dev && a.st_ino == b.st_ino,
        _ => false,
    }
}

const WATCH: AddWatchFlags =
    AddWatchFlags::IN_CREATE.union(AddWatchFlags::IN_MOVED_TO).union(AddWatchFlags::IN_ONLYDIR);

pub struct Watcher {
    inotify: Inotify,
    index: Index<WatchDescriptor>,
    carve_outs: Vec<CarveOut>,
    /// The view's root, which every carve-out is opened beneath.
    root: OwnedFd,
    /// The empty file masks are bound from (see `mounts::build`).
    empty_file: OwnedFd,
}

impl Watcher {
    /// Watches the chains of the masks and pins among `mounts`; `None` when there are none,
    /// or no inotify instance is left. Called after the view is entered.
    pub fn new(mounts: &[MountSpec], empty_file: OwnedFd) -> Result<Option<Watcher>, StepError> {
        let carve_outs = carve_outs(mounts);
        if carve_outs.is_empty() {
            return Ok(None);
        }
        // Out of inotify instances (a limit per user): the carve-outs hold as they did
        // before watching, until the host replaces one.
        let Ok(inotify) = Inotify::init(InitFlags::IN_CLOEXEC | InitFlags::IN_NONBLOCK) else {
            return Ok(None);
        };
        Self::start(carve_outs, inotify, empty_file).map(Some)
    }

    /// Takes over the instance `new` made in another process (the sandbox's init), from a
    /// process that has joined the sandbox's mount namespace: watching a directory again
    /// gives the descriptor it already has, and what changed in between is queued as
    /// events; every carve-out is also checked once now.
    pub fn adopt(mounts: &[MountSpec], inotify: OwnedFd, empty_file: OwnedFd) -> Result<Watcher, StepError> {
        // SAFETY: an inotify descriptor, received with the report that says so.
        let inotify = unsafe { Inotify::from_owned_fd(inotify) };
        let w = Self::start(carve_outs(mounts), inotify, empty_file)?;
        let mut order: Vec<usize> = (0..w.carve_outs.len()).collect();
        order.sort_unstable_by_key(|i| (w.carve_outs[*i].target.components().count(), *i));
        for i in order {
            w.put_back(i)?;
        }
        Ok(w)
    }

    fn start(carve_outs: Vec<CarveOut>, inotify: Inotify, empty_file: OwnedFd) -> Result<Watcher, StepError> {
        let root = nix::fcntl::open("/", OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())
            .step("open /")?;
        let mut w = Watcher { inotify, index: Index::new(), carve_outs, root, empty_file };
        for i in 0..w.carve_outs.len() {
            w.walk(i, 0);
        }
        // Back where `walk` leaves it (it changes directory to watch by descriptor).
        nix::unistd::fchdir(&w.root).step("chdir /")?;
        Ok(w)
    }

    /// The empty file masks are bound from.
    pub fn empty_file(&self) -> BorrowedFd<'_> {
        self.empty_file.as_fd()
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.inotify.as_fd()
    }

    /// Watches the chain of carve-out `i` from its `from`-th directory down, moving each
    /// watch to whatever directory now stands there. The working directory is left
    /// anywhere: callers go back to `/`.
    fn walk(&mut self, i: usize, from: usize) {
        let c = &self.carve_outs[i];
        let n = c.names.len();
        if from >= n {
            return;
        }
        let first: PathBuf = relative(&c.root).join(c.names[..from].iter().collect::<PathBuf>());
        let mut dir = open_nofollow(self.root.as_fd(), &first, OFlag::O_DIRECTORY).ok();
        for k in from..n {
            // inotify takes a path: the directory's own, reached by descriptor (no symlink
            // or rename on the way can redirect it, and it needs no /proc).
            let wd = dir.as_ref().and_then(|d| {
                nix::unistd::fchdir(d).ok()?;
                self.inotify.add_watch(".", WATCH).ok()
            });
            self.set_watch(i, k, wd);
            if k + 1 < n {
                let name = Path::new(&self.carve_outs[i].names[k]);
                dir = dir.and_then(|d| open_nofollow(d.as_fd(), name, OFlag::O_DIRECTORY).ok());
            }
        }
    }

    fn set_watch(&mut self, i: usize, k: usize, wd: Option<WatchDescriptor>) {
        let old = self.carve_outs[i].watched[k];
        if old == wd {
            return;
        }
        let name = self.carve_outs[i].names[k].clone();
        if let Some(o) = old {
            if self.index.remove(o, &name, (i, k)) {
                let _ = self.inotify.rm_watch(o);
            }
        }
        if let Some(w) = wd {
            self.index.add(w, &name, (i, k));
        }
        self.carve_outs[i].watched[k] = wd;
    }

    /// Reads what changed and puts back every carve-out that a new entry uncovered.
    pub fn handle(&mut self) -> Result<(), StepError> {
        // Carve-out -> the shallowest depth at which a name on its way was replaced.
        let mut due: HashMap<usize, usize> = HashMap::new();
        loop {
            let events = match self.inotify.read_events() {
                Ok(e) => e,
                Err(nix::errno::Errno::EAGAIN) => break,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(StepError::io("read inotify", e)),
            };
            for e in events {
                if e.mask.contains(AddWatchFlags::IN_Q_OVERFLOW) {
                    // Events were lost: re-resolve every chain from its root.
                    for i in 0..self.carve_outs.len() {
                        due.insert(i, 0);
                    }
                    continue;
                }
                if e.mask.contains(AddWatchFlags::IN_IGNORED) {
                    // The directory is gone (or its watch was dropped here).
                    for (i, k) in self.index.forget(e.wd) {
                        self.carve_outs[i].watched[k] = None;
                    }
                    continue;
                }
                let Some(name) = e.name else { continue };
                for &(i, k) in self.index.under(e.wd, &name) {
                    // The directory below the replaced name (depth k + 1) may be new.
                    let from = k + 1;
                    due.entry(i).and_modify(|d| *d = (*d).min(from)).or_insert(from);
                }
            }
        }
        if due.is_empty() {
            return Ok(());
        }
        // Watch the new directories first: a change after this point makes its own event.
        for (&i, &from) in &due {
            self.walk(i, from);
        }
        nix::unistd::fchdir(&self.root).step("chdir /")?;
        // Shallowest first: a protected path's ancestor pins before the path itself.
        let mut order: Vec<usize> = due.into_keys().collect();
        order.sort_unstable_by_key(|i| (self.carve_outs[*i].target.components().count(), *i));
        for i in order {
            self.put_back(i)?;
        }
        Ok(())
    }

    /// Puts carve-out `i` back on whatever stands at its path, unless a mount of its own
    /// is still there.
    fn put_back(&self, i: usize) -> Result<(), StepError> {
        let c = &self.carve_outs[i];
        let rel = relative(&c.target);
        let at = match open_nofollow(self.root.as_fd(), &rel, OFlag::empty()) {
            Ok(at) => at,
            // Nothing stands there now: what appears later is an event of its own. Out of
            // this process's reach is out of the command's.
            Err(nix::errno::Errno::ENOENT | nix::errno::Errno::ENOTDIR | nix::errno::Errno::EACCES) => return Ok(()),
            Err(nix::errno::Errno::ELOOP) => return self.symlink_on_the_way(c),
            Err(e) => return Err(self.failed(c, StepError::io("open carve-out", e))),
        };
        if is_mount_root(at.as_fd()) {
            return Ok(());
        }
        match self.place(c, at.as_fd()) {
            Ok(()) => Ok(()),
            // The entry changed while we mounted: that change has an event of its own.
            Err(_) if !still(self.root.as_fd(), &rel, at.as_fd()) => Ok(()),
            Err(e) => Err(self.failed(c, e)),
        }
    }

    fn place(&self, c: &CarveOut, at: BorrowedFd<'_>) -> Result<(), StepError> {
        match c.kind {
            // A directory under a fresh empty tmpfs; anything else (a symlink too) under
            // the empty file.
            Kind::Mask if file_type(at) == Some(libc::S_IFDIR) => mask_dir(at).step("mask directory"),
            Kind::Mask => mounts::cover(at, self.empty_file.as_fd()),
            Kind::Pin { read_only, exec } => mounts::pin_at(at, &relative(&c.target), read_only, exec),
        }
    }

    /// A symlink now stands on the way from the grant's root to carve-out `c`. Above the
    /// grant's root it is none of ours (the grant moved away with its directory). For a
    /// mask, the first symlink is covered; a protected path cannot be kept what it was under
    /// its name (the host put the symlink there: its directories are pinned), so the run
    /// ends; a pin that only carries an exec rule or keeps an ancestor in place has nothing
    /// to hold behind a symlink (the protected path below it, if any, answers for itself).
    fn symlink_on_the_way(&self, c: &CarveOut) -> Result<(), StepError> {
        let Ok(mut dir) = open_nofollow(self.root.as_fd(), &relative(&c.root), OFlag::O_DIRECTORY) else {
            return Ok(());
        };
        for name in &c.names {
            let Ok(next) = open_nofollow(dir.as_fd(), Path::new(name), OFlag::empty()) else { return Ok(()) };
            match file_type(next.as_fd()) {
                Some(libc::S_IFLNK) => {
                    return match c.kind {
                        Kind::Mask if is_mount_root(next.as_fd()) => Ok(()),
                        Kind::Mask => match mounts::cover(next.as_fd(), self.empty_file.as_fd()) {
                            Err(_) if !still(dir.as_fd(), Path::new(name), next.as_fd()) => Ok(()),
                            r => r.map_err(|e| self.failed(c, e)),
                        },
                        Kind::Pin { read_only: true, .. } => {
                            Err(self.failed(c, StepError::msg("protect path", "a symlink now stands on the way to it")))
                        }
                        Kind::Pin { .. } => Ok(()),
                    };
                }
                Some(libc::S_IFDIR) => dir = next,
                _ => return Ok(()),
            }
        }
        Ok(())
    }

    fn failed(&self, c: &CarveOut, e: StepError) -> StepError {
        StepError::msg(
            "carve-out replaced on the host",
            format!(
                "{}: replaced during the run and could not be covered again: {}: {}",
                c.target.display(),
                e.step,
                e.message
            ),
        )
    }
}

/// Hides the directory at `at` under a fresh empty read-only tmpfs.
fn mask_dir(at: BorrowedFd<'_>) -> std::io::Result<()> {
    let tmpfs = crate::sys::empty_tmpfs()?;
    crate::sys::move_mount_fd(tmpfs.as_fd(), at)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    #[test]
    fn a_chain_starts_at_the_deepest_grant_above_the_carve_out() {
        let grants =
            [Path::new("/"), Path::new("/home/u"), Path::new("/home/u/proj/vendor"), Path::new("/home/u/proj")];
        let (root, n) = chain_of(&grants, Path::new("/home/u/proj/.git/config")).unwrap();
        assert_eq!(root, Path::new("/home/u/proj"));
        assert_eq!(n, names(&[".git", "config"]));
        // A sibling whose name shares a prefix is not above it.
        let grants = [Path::new("/home/u/pro"), Path::new("/home/u")];
        let (root, n) = chain_of(&grants, Path::new("/home/u/proj/.aws/credentials")).unwrap();
        assert_eq!(root, Path::new("/home/u"));
        assert_eq!(n, names(&["proj", ".aws", "credentials"]));
        // A grant of the host's `/`.
        let (root, n) = chain_of(&[Path::new("/")], Path::new("/srv/.env")).unwrap();
        assert_eq!(root, Path::new("/"));
        assert_eq!(n, names(&["srv", ".env"]));
    }

    #[test]
    fn without_a_grant_above_the_chain_is_the_parent() {
        let grants = [Path::new("/srv/x")];
        let (root, n) = chain_of(&grants, Path::new("/srv/x")).unwrap();
        assert_eq!(root, Path::new("/srv"));
        assert_eq!(n, names(&["x"]));
        assert!(chain_of(&grants, Path::new("/")).is_none());
    }

    #[test]
    fn the_index_finds_only_the_carve_outs_under_a_name() {
        let mut idx: Index<u32> = Index::new();
        // Two carve-outs below `.git` of directory 1, one below `.aws`.
        idx.add(1, OsStr::new(".git"), (0, 0));
        idx.add(1, OsStr::new(".git"), (1, 0));
        idx.add(1, OsStr::new(".git"), (1, 0));
        idx.add(1, OsStr::new(".aws"), (2, 0));
        idx.add(2, OsStr::new("config"), (1, 1));
        assert_eq!(idx.under(1, OsStr::new(".git")), &[(0, 0), (1, 0)]);
        assert_eq!(idx.under(1, OsStr::new("other")), &[] as &[(usize, usize)]);
        assert_eq!(idx.under(3, OsStr::new(".git")), &[] as &[(usize, usize)]);
        // The watch may go only when nothing is left under its directory.
        assert!(!idx.remove(1, OsStr::new(".git"), (0, 0)));
        assert!(!idx.remove(1, OsStr::new(".git"), (1, 0)));
        assert!(idx.under(1, OsStr::new(".git")).is_empty());
        assert!(idx.remove(1, OsStr::new(".aws"), (2, 0)));
        assert!(!idx.remove(1, OsStr::new(".aws"), (2, 0)));
        let mut gone = idx.forget(2);
        gone.sort();
        assert_eq!(gone, vec![(1, 1)]);
        assert!(idx.forget(2).is_empty());
    }
}
