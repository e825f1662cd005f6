//! Writes captured by overlays (`writeMode: 'overlay'`): listing them and committing
//! them to the host. Runs in: the client, which owns the layers after the run, on a thread
//! of its own per listing or commit ([`on_own_thread`]), never on an async runtime's
//! worker: both take time in proportion to what the command wrote.
//!
//! The layers live on a tmpfs the sandbox mounted; a directory descriptor is all that
//! keeps it alive, so discarding is dropping. Overlayfs records a deletion as a whiteout
//! (a 0:0 character device) and a directory that replaced a lower one as "opaque"
//! (`user.overlay.opaque=y`, since unprivileged overlays use user xattrs): nothing of the
//! lower directory shows through it, at any depth.
//!
//! The listing is the difference between the host and what the sandbox saw at its end;
//! commit makes the host look like that, so the two agree by construction: both come from
//! one walk ([`Walk`]). Every lookup on either side is relative to a layer's root with
//! `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`, so nothing the sandbox wrote can steer a read
//! or a write outside it.
//!
//! Bounds. The trees walked here are the command's work, so no loop runs on its goodwill:
//! - no recursion anywhere: walks keep an explicit stack, so depth costs heap, not stack;
//! - a path below its layer is at most `PATH_MAX` bytes; deeper trees are reported as too
//!   deep, not walked (this also bounds the stack);
//! - at most [`MAX_ENTRIES`] entries are read per change set, and the names held at once
//!   are at most [`MAX_HELD_BYTES`]; past either the listing fails and commit refuses;
//! - the listing keeps at most [`MAX_LISTED`] changes and [`MAX_LISTED_BYTES`] of paths;
//!   the rest are counted (`omitted`), and commit applies them too;
//! - each directory is opened, read and closed before the next: a walk holds two
//!   descriptors at most, whatever the depth or width.
//!
//! Commit stages everything first (complete copies under temporary names beside their
//! targets), then applies by renames that can each be undone (`RENAME_EXCHANGE` keeps what
//! was replaced), then removes what was replaced. If staging fails nothing changed; if
//! applying fails what was applied is undone, and the error names anything that could not
//! be. Set-user-ID and set-group-ID bits are never carried to the host, nor are extended
//! attributes (so no file capabilities): files land owned by the caller, as plain files.

use corral_core::result::{ChangeKind, ChangeList, FileChange, FileType};
use corral_core::CorralError;
use error::{io_err, Result};
pub use error::{ChangesError, MAX_ENTRIES, MAX_HELD_BYTES};
use nix::fcntl::{OFlag, OpenHow, ResolveFlag};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use walk::{beneath, dir_mode, file_mode, kept_dir_mode, Budget, Kind, Node, Side, Walk};

mod commit;
mod error;
mod walk;

/// Changes a listing keeps.
pub const MAX_LISTED: usize = 50_000;
/// Bytes of paths a listing keeps.
pub const MAX_LISTED_BYTES: usize = 16 << 20;

/// Runs `f` on a thread of its own and resolves with its result, so that work whose length
/// a command controls never occupies an async runtime's worker or a shared blocking pool.
/// A panic there comes back as an error.
pub async fn on_own_thread<T: Send + 'static>(
    name: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, CorralError> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            let _ = tx.send(f());
        })
        .map_err(|e| CorralError::spawn(format!("starting a {name} thread: {e}")))?;
    rx.await.map_err(|_| CorralError::internal(format!("the {name} thread ended without an answer")))
}

/// The captured layers of one run, the host directories they sit on, and their listing.
#[derive(Debug)]
pub struct Captured {
    root: OwnedFd,
    lowers: Vec<PathBuf>,
    list: std::sync::Arc<ChangeList>,
}

impl Captured {
    /// `root` holds `upper/N` for the N-th overlay, whose lower layer is `lowers[N]`. Never
    /// fails: what cannot be listed is said in the listing's `error`.
    pub fn new(root: OwnedFd, lowers: Vec<PathBuf>) -> Captured {
        let mut listing = Listing::default();
        let mut budget = Budget::default();
        let mut error = None;
        for (i, lower) in lowers.iter().enumerate() {
            if let Err(e) = layer(&root, i, lower)
                .and_then(|(upper, host)| list(upper.as_fd(), host.as_fd(), lower, &mut budget, &mut listing))
            {
                error = Some(e.to_string());
                break;
            }
        }
        let list = ChangeList { files: listing.files, omitted: listing.omitted, error };
        Captured { root, lowers, list: std::sync::Arc::new(list) }
    }

    /// [`Captured::new`] on a thread of its own.
    pub async fn list(root: OwnedFd, lowers: Vec<PathBuf>) -> Result<Captured, CorralError> {
        on_own_thread("corral-changes", move || Captured::new(root, lowers)).await
    }

    pub fn changes(&self) -> &ChangeList {
        &self.list
    }

    /// The listing, to keep after the layers are committed or dropped.
    pub fn listing(&self) -> std::sync::Arc<ChangeList> {
        self.list.clone()
    }

    /// Applies every change to the host (see the module's comment for how a failure is
    /// undone), then drops the layers.
    pub fn commit(self) -> Result<(), CorralError> {
        if let Some(why) = &self.list.error {
            return Err(CorralError::invalid_state(format!(
                "these changes could not be listed in full, so they are not committed: {why}"
            )));
        }
        commit::commit(&self.root, &self.lowers)
    }
}

fn layer(root: &OwnedFd, i: usize, lower: &Path) -> Result<(OwnedFd, OwnedFd)> {
    let name = PathBuf::from(format!("upper/{i}"));
    let upper = beneath(root.as_fd(), &name).map_err(io_err("opening the captured layer", &name))?;
    let how = OpenHow::new()
        .flags(OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_NO_SYMLINKS);
    let host = nix::fcntl::openat2(nix::fcntl::AT_FDCWD, lower, how).map_err(io_err("opening", lower))?;
    Ok((upper, host))
}

#[derive(Default)]
struct Listing {
    files: Vec<FileChange>,
    omitted: u64,
    bytes: usize,
}

impl Listing {
    fn push(&mut self, change: FileChange) {
        let bytes = change.path.as_os_str().len() + change.target.as_ref().map_or(0, |t| t.len());
        if self.files.len() >= MAX_LISTED || self.bytes + bytes > MAX_LISTED_BYTES {
            self.omitted += 1;
        } else {
            self.bytes += bytes;
            self.files.push(change);
        }
    }
}

fn list(
    upper: BorrowedFd<'_>,
    host: BorrowedFd<'_>,
    lower: &Path,
    budget: &mut Budget,
    out: &mut Listing,
) -> Result<()> {
    let mut walk = Walk::new(upper, host, budget).map_err(|e| rooted(e, lower))?;
    while let Some((rel, item, side)) = walk.next() {
        let path = lower.join(&rel);
        let host_type = item.host.as_ref().map(|h| h.kind.file_type());
        let Some(node) = item.upper else {
            // Only the host has it, below a directory that hides the host's: deleted.
            if let Some(t) = host_type {
                out.push(change(path, ChangeKind::Deleted, t, None, None, None));
            }
            continue;
        };
        if node.kind == Kind::Whiteout {
            if let Some(t) = host_type {
                out.push(change(path, ChangeKind::Deleted, t, None, None, None));
            }
            continue;
        }
        let new = node.kind.file_type();
        let (kind, previous) = match host_type {
            None => (ChangeKind::Added, None),
            Some(t) if t == new => (ChangeKind::Modified, None),
            Some(t) => (ChangeKind::Replaced, Some(t)),
        };
        if node.kind != Kind::Dir {
            out.push(change(path, kind, new, previous, Some(&node), None));
            continue;
        }
        let next = match (kind, side) {
            (ChangeKind::Modified, Side::Merged) if !node.opaque => {
                let host_mode = item.host.as_ref().map_or(0, |h| h.mode);
                let mode = kept_dir_mode(node.mode, host_mode);
                if mode != host_mode {
                    out.push(change(path, kind, new, None, Some(&node), Some(mode)));
                }
                Side::Merged
            }
            (ChangeKind::Modified, _) => {
                if item.host.as_ref().map_or(0, |h| h.mode) != dir_mode(node.mode) {
                    out.push(change(path, kind, new, None, Some(&node), None));
                }
                Side::Opaque
            }
            _ => {
                out.push(change(path, kind, new, previous, Some(&node), None));
                Side::Fresh
            }
        };
        walk.descend(rel, next).map_err(|e| rooted(e, lower))?;
    }
    Ok(())
}

/// Names the host directory in a "too deep" error.
pub(super) fn rooted(e: ChangesError, lower: &Path) -> ChangesError {
    match e {
        ChangesError::TooDeep { path, .. } => ChangesError::TooDeep { root: lower.to_path_buf(), path },
        e => e,
    }
}

fn change(
    path: PathBuf,
    kind: ChangeKind,
    file_type: FileType,
    previous_type: Option<FileType>,
    node: Option<&Node>,
    dir_mode_kept: Option<u32>,
) -> FileChange {
    let (mode, dropped) = match (node, file_type) {
        (Some(n), FileType::File) => (Some(file_mode(n.mode)), n.mode & 0o6000),
        (Some(n), FileType::Dir) => {
            let mode = dir_mode_kept.unwrap_or(dir_mode(n.mode));
            (Some(mode), n.mode & 0o6000 & !mode)
        }
        _ => (None, 0),
    };
    let size = match (node, file_type) {
        (Some(n), FileType::File) => n.size,
        (Some(n), FileType::Symlink) => n.target.as_ref().map_or(0, |t| t.len() as u64),
        _ => 0,
    };
    let bytes = path.as_os_str().as_bytes();
    let path_hex = std::str::from_utf8(bytes).is_err().then(|| bytes.iter().map(|b| format!("{b:02x}")).collect());
    FileChange {
        path_hex,
        path,
        kind,
        file_type,
        previous_type,
        dir: file_type == FileType::Dir,
        size,
        mode,
        dropped_mode: (dropped != 0).then_some(dropped),
        target: node.and_then(|n| n.target.as_ref()).map(|t| String::from_utf8_lossy(t.as_bytes()).into_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::{symlink, PermissionsExt};

    /// A captured-layers root (`upper/0`) and a host directory beside it.
    fn layers(name: &str) -> (PathBuf, PathBuf, PathBuf) {
        let base = std::env::temp_dir().join(format!("corral-changes-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&base);
        let (root, host) = (base.join("layers"), base.join("host"));
        fs::create_dir_all(root.join("upper/0")).unwrap();
        fs::create_dir_all(&host).unwrap();
        (base, root, host)
    }

    fn captured(root: &Path, host: &Path) -> Captured {
        let fd = nix::fcntl::open(
            root,
            OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .unwrap();
        Captured::new(fd, vec![host.to_path_buf()])
    }

    #[test]
    fn lists_types_replacements_targets_and_modes() {
        let (base, root, host) = layers("list");
        let upper = root.join("upper/0");
        fs::create_dir_all(host.join(".git/hooks")).unwrap();
        fs::write(host.join("a.txt"), "a").unwrap();
        fs::write(upper.join(".git"), "gitdir: x\n").unwrap();
        symlink("/etc/shadow", upper.join("a.txt")).unwrap();
        fs::write(upper.join("t"), "x").unwrap();
        fs::set_permissions(upper.join("t"), fs::Permissions::from_mode(0o4755)).unwrap();
        let c = captured(&root, &host);
        let got: Vec<_> = c
            .changes()
            .files
            .iter()
            .map(|f| (f.path.strip_prefix(&host).unwrap().to_path_buf(), f.kind, f.file_type, f.previous_type))
            .collect();
        assert_eq!(
            got,
            vec![
                (".git".into(), ChangeKind::Replaced, FileType::File, Some(FileType::Dir)),
                ("a.txt".into(), ChangeKind::Replaced, FileType::Symlink, Some(FileType::File)),
                ("t".into(), ChangeKind::Added, FileType::File, None),
            ]
        );
        let files = &c.changes().files;
        assert_eq!(files[1].target.as_deref(), Some("/etc/shadow"));
        assert_eq!((files[2].mode, files[2].dropped_mode), (Some(0o755), Some(0o4000)));
        c.commit().unwrap();
        assert_eq!(fs::read_to_string(host.join(".git")).unwrap(), "gitdir: x\n");
        assert_eq!(fs::read_link(host.join("a.txt")).unwrap(), Path::new("/etc/shadow"));
        assert_eq!(fs::metadata(host.join("t")).unwrap().permissions().mode() & 0o7777, 0o755);
        fs::remove_dir_all(base).unwrap();
    }

    #[test]
    fn a_tree_deeper_than_path_max_is_reported_not_walked() {
        let (base, root, host) = layers("deep");
        // 2100 levels of "d/": 4200 bytes below the layer, built by relative steps.
        let mut dir = nix::fcntl::open(
            &root.join("upper/0"),
            OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .unwrap();
        for _ in 0..2100 {
            nix::sys::stat::mkdirat(&dir, "d", nix::sys::stat::Mode::from_bits_truncate(0o755)).unwrap();
            dir = nix::fcntl::openat(
                &dir,
                "d",
                OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC,
                nix::sys::stat::Mode::empty(),
            )
            .unwrap();
        }
        let c = captured(&root, &host);
        assert!(
            c.changes().error.as_deref().unwrap().contains("too deep to list or commit"),
            "{:?}",
            c.changes().error
        );
        assert!(c.commit().unwrap_err().message.contains("could not be listed in full"));
        assert!(fs::read_dir(&host).unwrap().next().is_none(), "nothing reached the host");
        let _ = std::process::Command::new("rm").arg("-rf").arg(&base).status();
    }

    #[test]
    fn listings_are_bounded_and_count_the_rest() {
        let (base, root, host) = layers("many");
        for i in 0..MAX_LISTED + 7 {
            fs::File::create(root.join(format!("upper/0/f{i}"))).unwrap();
        }
        let c = captured(&root, &host);
        assert_eq!((c.changes().files.len(), c.changes().omitted, c.changes().error.as_ref()), (MAX_LISTED, 7, None));
        c.commit().unwrap();
        assert_eq!(fs::read_dir(&host).unwrap().count(), MAX_LISTED + 7);
        fs::remove_dir_all(base).unwrap();
    }
}
