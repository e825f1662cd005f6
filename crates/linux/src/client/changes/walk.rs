//! One walk of a captured layer beside the host directory it sits on, shared by the
//! listing and commit so that the two agree. Runs in: the client, on a listing's or a
//! commit's own thread.
//!
//! Each directory is opened, read in full and closed before the next is opened, so a walk
//! holds no descriptor across steps; the names it holds are counted against a budget.

use super::error::{io_err, ChangesError, Result, MAX_ENTRIES, MAX_HELD_BYTES, MAX_PATH};
use corral_core::result::FileType;
use nix::dir::Dir;
use nix::fcntl::{AtFlags, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{fstatat, Mode};
use std::ffi::{OsStr, OsString};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Opens directory `rel` below `root`, neither following symlinks nor leaving it.
pub(super) fn beneath(root: BorrowedFd<'_>, rel: &Path) -> nix::Result<OwnedFd> {
    let rel = if rel.as_os_str().is_empty() { Path::new(".") } else { rel };
    let how = OpenHow::new()
        .flags(OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_SYMLINKS | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    nix::fcntl::openat2(root, rel, how)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Whiteout,
    Dir,
    File,
    Symlink,
    Other,
}

impl Kind {
    pub(super) fn file_type(self) -> FileType {
        match self {
            Kind::Dir => FileType::Dir,
            Kind::File => FileType::File,
            Kind::Symlink => FileType::Symlink,
            Kind::Whiteout | Kind::Other => FileType::Other,
        }
    }
}

/// One directory entry, as read while its directory was open.
#[derive(Debug)]
pub(super) struct Node {
    pub(super) kind: Kind,
    pub(super) mode: u32,
    pub(super) size: u64,
    /// A directory the overlay marked opaque (upper side only).
    pub(super) opaque: bool,
    /// A symlink's target (upper side only).
    pub(super) target: Option<OsString>,
}

impl Node {
    pub(super) fn of(dir: BorrowedFd<'_>, name: &OsStr, upper: bool) -> nix::Result<Node> {
        let st = fstatat(dir, Path::new(name), AtFlags::AT_SYMLINK_NOFOLLOW)?;
        let kind = match st.st_mode & libc::S_IFMT {
            libc::S_IFCHR if upper && st.st_rdev == 0 => Kind::Whiteout,
            libc::S_IFDIR => Kind::Dir,
            libc::S_IFREG => Kind::File,
            libc::S_IFLNK => Kind::Symlink,
            _ => Kind::Other,
        };
        let opaque = upper && kind == Kind::Dir && opaque(dir, name);
        let target =
            if upper && kind == Kind::Symlink { Some(nix::fcntl::readlinkat(dir, Path::new(name))?) } else { None };
        Ok(Node { kind, mode: st.st_mode & 0o7777, size: st.st_size as u64, opaque, target })
    }
}

fn opaque(dir: BorrowedFd<'_>, name: &OsStr) -> bool {
    let Ok(fd) = nix::fcntl::openat(
        dir,
        Path::new(name),
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    ) else {
        return false;
    };
    let mut value = [0u8; 2];
    // SAFETY: reading an xattr of a descriptor we own into a buffer we own.
    let n = unsafe {
        libc::fgetxattr(fd.as_raw_fd(), c"user.overlay.opaque".as_ptr(), value.as_mut_ptr().cast(), value.len())
    };
    n == 1 && value[0] == b'y'
}

/// What a walk may still read and hold.
#[derive(Default)]
pub(super) struct Budget {
    entries: u64,
    held: usize,
}

impl Budget {
    fn read(&mut self, n: usize) -> Result<()> {
        self.entries += n as u64;
        if self.entries > MAX_ENTRIES {
            return Err(ChangesError::TooMany);
        }
        Ok(())
    }
    pub(super) fn hold(&mut self, bytes: usize) -> Result<()> {
        self.held += bytes;
        if self.held > MAX_HELD_BYTES {
            return Err(ChangesError::TooLarge);
        }
        Ok(())
    }
}

/// Reads every entry of `dir` (sorted by name), counting them against `budget`.
pub(super) fn read_dir(
    dir: BorrowedFd<'_>,
    upper: bool,
    budget: &mut Budget,
    path: &Path,
) -> Result<Vec<(OsString, Node)>> {
    let mut d =
        Dir::from_fd(nix::unistd::dup(dir).map_err(io_err("reading", path))?).map_err(io_err("reading", path))?;
    let mut out = Vec::new();
    for e in d.iter() {
        let e = e.map_err(io_err("reading", path))?;
        let name = OsStr::from_bytes(e.file_name().to_bytes());
        if name == "." || name == ".." {
            continue;
        }
        budget.read(1)?;
        let node = Node::of(dir, name, upper).map_err(io_err("reading", &path.join(name)))?;
        out.push((name.to_os_string(), node));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// How a directory of the upper layer relates to the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Side {
    /// The host has nothing there: everything below is new.
    Fresh,
    /// The host's directory shows through, with the layer's entries over it.
    Merged,
    /// The host has a directory there, but none of it shows through (an opaque directory
    /// or one below it): what the layer lacks is deleted.
    Opaque,
}

/// An entry of a directory being walked: the layer's side, the host's, or both.
pub(super) struct Item {
    pub(super) name: OsString,
    pub(super) upper: Option<Node>,
    pub(super) host: Option<Node>,
}

struct Frame {
    rel: PathBuf,
    items: std::vec::IntoIter<Item>,
    side: Side,
    held: usize,
}

/// A depth-first walk of one layer beside its host directory, in path order. Callers take
/// entries with [`Walk::next`] and step into a directory with [`Walk::descend`] right
/// after it was returned.
pub(super) struct Walk<'a> {
    upper: BorrowedFd<'a>,
    host: BorrowedFd<'a>,
    stack: Vec<Frame>,
    budget: &'a mut Budget,
}

impl<'a> Walk<'a> {
    pub(super) fn new(upper: BorrowedFd<'a>, host: BorrowedFd<'a>, budget: &'a mut Budget) -> Result<Walk<'a>> {
        let mut w = Walk { upper, host, stack: Vec::new(), budget };
        w.descend(PathBuf::new(), Side::Merged)?;
        Ok(w)
    }

    pub(super) fn descend(&mut self, rel: PathBuf, side: Side) -> Result<()> {
        if rel.as_os_str().len() > MAX_PATH {
            return Err(ChangesError::TooDeep { root: PathBuf::from("the layer"), path: rel });
        }
        let udir = beneath(self.upper, &rel).map_err(io_err("opening", &rel))?;
        let upper = read_dir(udir.as_fd(), true, self.budget, &rel)?;
        drop(udir);
        let mut items: Vec<Item> = match side {
            Side::Fresh => upper.into_iter().map(|(name, n)| Item { name, upper: Some(n), host: None }).collect(),
            Side::Merged => {
                let hdir = beneath(self.host, &rel).map_err(io_err("opening the host's", &rel))?;
                upper
                    .into_iter()
                    .map(|(name, n)| {
                        let host = Node::of(hdir.as_fd(), &name, false).ok();
                        Item { name, upper: Some(n), host }
                    })
                    .collect()
            }
            Side::Opaque => {
                let hdir = beneath(self.host, &rel).map_err(io_err("opening the host's", &rel))?;
                let host = read_dir(hdir.as_fd(), false, self.budget, &rel)?;
                merge(upper, host)
            }
        };
        items.sort_by(|a, b| a.name.cmp(&b.name));
        let held: usize = items
            .iter()
            .map(|i| i.name.len() + i.upper.as_ref().and_then(|n| n.target.as_ref()).map_or(0, |t| t.len()))
            .sum::<usize>()
            + rel.as_os_str().len();
        self.budget.hold(held)?;
        self.stack.push(Frame { rel, items: items.into_iter(), side, held });
        Ok(())
    }

    /// The next entry in path order: its path below the layer, itself, and how its
    /// directory relates to the host.
    pub(super) fn next(&mut self) -> Option<(PathBuf, Item, Side)> {
        loop {
            let top = self.stack.last_mut()?;
            if let Some(item) = top.items.next() {
                return Some((top.rel.join(&item.name), item, top.side));
            }
            let done = self.stack.pop()?;
            self.budget.held -= done.held;
        }
    }
}

/// The layer's entries and the host's, joined by name (both sorted).
fn merge(upper: Vec<(OsString, Node)>, host: Vec<(OsString, Node)>) -> Vec<Item> {
    let mut out = Vec::with_capacity(upper.len().max(host.len()));
    let mut h = host.into_iter().peekable();
    for (name, u) in upper {
        while h.peek().is_some_and(|(n, _)| *n < name) {
            let (n, node) = h.next().unwrap_or_else(|| unreachable!());
            out.push(Item { name: n, upper: None, host: Some(node) });
        }
        let host = if h.peek().is_some_and(|(n, _)| *n == name) { h.next().map(|(_, n)| n) } else { None };
        out.push(Item { name, upper: Some(u), host });
    }
    out.extend(h.map(|(name, node)| Item { name, upper: None, host: Some(node) }));
    out
}

/// Permission bits the host gets for a file: never set-id (nor sticky, meaningless there).
pub(super) fn file_mode(mode: u32) -> u32 {
    mode & 0o777
}

/// Permission bits a directory new to the host gets: sticky kept, never set-id.
pub(super) fn dir_mode(mode: u32) -> u32 {
    mode & 0o1777
}

/// Permission bits a directory the host already has gets: set-id bits only where the host
/// had them already.
pub(super) fn kept_dir_mode(mode: u32, host: u32) -> u32 {
    dir_mode(mode) | (mode & host & 0o6000)
}
