//! Files inside a directory that have other names (hard links) outside it, for the
//! planner's caveats on denied and protected directories. Runs in: the client, when
//! planning.
//!
//! The walk opens each directory relative to its parent without following symlinks, reads
//! its entries and `lstat`s only the regular files among them (what `getdents` says), so it
//! costs about one system call per entry. A file counts when its link count is higher than
//! the number of its names the walk saw inside the directory. Bounded by
//! [`LINK_WALK_ENTRIES`] entries and [`LINK_WALK_DEPTH`] levels: past either the answer says
//! it is incomplete. A subdirectory the caller cannot read is skipped: the sandbox, which
//! never has more access than its caller, cannot reach files through it either.

use corral_core::host::{LinkedOut, LINKED_OUT_NAMED, LINK_WALK_DEPTH, LINK_WALK_ENTRIES};
use nix::dir::{Dir, Type};
use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{fstatat, Mode};
use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;

/// One file with more than one name: its link count, the names seen inside, and one of them.
struct Seen {
    links: libc::nlink_t,
    inside: libc::nlink_t,
    first: PathBuf,
}

pub fn linked_out(dir: &Path) -> LinkedOut {
    walk(dir, LINK_WALK_ENTRIES, LINK_WALK_DEPTH)
}

fn walk(dir: &Path, max_entries: usize, max_depth: usize) -> LinkedOut {
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let Ok(top) = nix::fcntl::open(dir, flags, Mode::empty()) else {
        // Gone or unreadable to the caller: nothing the sandbox could reach through it.
        return LinkedOut { complete: true, ..LinkedOut::default() };
    };
    let mut seen: HashMap<(u64, u64), Seen> = HashMap::new();
    // Order of discovery, for naming the first few.
    let mut order: Vec<(u64, u64)> = Vec::new();
    let mut entries = 0usize;
    let mut complete = true;
    // Depth-first. A pending directory holds its parent open; those parents are all on the
    // current path, so at most one descriptor per level is open.
    let mut pending: Vec<(Rc<OwnedFd>, PathBuf, usize)> = Vec::new();
    let mut next = Some((top, dir.to_path_buf(), 0usize));
    while let Some((fd, path, depth)) = next.take().or_else(|| {
        // Open the next pending directory, skipping those that cannot be opened.
        while let Some((parent, path, depth)) = pending.pop() {
            let name = path.file_name().unwrap_or_default().to_os_string();
            match nix::fcntl::openat(parent.as_fd(), name.as_os_str(), flags, Mode::empty()) {
                Ok(fd) => return Some((fd, path, depth)),
                // Replaced meanwhile (a symlink or a file is not walked into).
                Err(Errno::ENOENT | Errno::ELOOP | Errno::ENOTDIR) => {}
                // Unreadable to the caller, or anything else: not checked.
                Err(_) => complete = false,
            }
        }
        None
    }) {
        let fd = Rc::new(fd);
        let Ok(mut d) = fd.try_clone().and_then(|f| Dir::from_fd(f).map_err(std::io::Error::from)) else {
            complete = false;
            continue;
        };
        for e in d.iter() {
            let Ok(e) = e else {
                complete = false;
                break;
            };
            let name = OsStr::from_bytes(e.file_name().to_bytes());
            if name == "." || name == ".." {
                continue;
            }
            entries += 1;
            if entries > max_entries {
                complete = false;
                pending.clear();
                break;
            }
            let kind = match e.file_type() {
                Some(t) => t,
                // A file system without d_type: ask.
                None => match fstatat(fd.as_fd(), name, AtFlags::AT_SYMLINK_NOFOLLOW) {
                    Ok(st) if st.st_mode & libc::S_IFMT == libc::S_IFDIR => Type::Directory,
                    Ok(st) if st.st_mode & libc::S_IFMT == libc::S_IFREG => Type::File,
                    Ok(_) | Err(Errno::ENOENT) => continue,
                    Err(_) => {
                        complete = false;
                        continue;
                    }
                },
            };
            match kind {
                Type::Directory if depth + 1 > max_depth => complete = false,
                Type::Directory => pending.push((fd.clone(), path.join(name), depth + 1)),
                Type::File => {
                    let st = match fstatat(fd.as_fd(), name, AtFlags::AT_SYMLINK_NOFOLLOW) {
                        Ok(st) => st,
                        Err(Errno::ENOENT) => continue, // removed meanwhile
                        // A directory the caller may list but not search (no x).
                        Err(_) => {
                            complete = false;
                            continue;
                        }
                    };
                    if st.st_mode & libc::S_IFMT != libc::S_IFREG || st.st_nlink < 2 {
                        continue;
                    }
                    let key = (st.st_dev, st.st_ino);
                    let s = seen.entry(key).or_insert_with(|| {
                        order.push(key);
                        Seen { links: st.st_nlink, inside: 0, first: path.join(name) }
                    });
                    s.inside += 1;
                }
                _ => {}
            }
        }
    }
    let out: Vec<&Seen> = order.iter().map(|k| &seen[k]).filter(|s| s.links > s.inside).collect();
    LinkedOut {
        first: out.iter().take(LINKED_OUT_NAMED).map(|s| s.first.clone()).collect(),
        count: out.len() as u64,
        complete,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn finds_files_with_names_outside_only() {
        let base = std::env::temp_dir().join(format!("corral-links-{}", std::process::id()));
        let _ = fs::remove_dir_all(&base);
        let d = base.join("denied");
        fs::create_dir_all(d.join("sub/deeper")).unwrap();
        fs::create_dir_all(base.join("elsewhere")).unwrap();
        fs::write(d.join("alone"), "x").unwrap();
        // Two names, both inside: not out.
        fs::write(d.join("twin"), "x").unwrap();
        fs::hard_link(d.join("twin"), d.join("sub/twin")).unwrap();
        // Names outside, at two depths.
        fs::write(d.join("credentials"), "x").unwrap();
        fs::hard_link(d.join("credentials"), base.join("creds.bak")).unwrap();
        fs::write(d.join("sub/deeper/key"), "x").unwrap();
        fs::hard_link(d.join("sub/deeper/key"), base.join("elsewhere/key")).unwrap();
        // A symlink to a directory with such files is not followed.
        std::os::unix::fs::symlink(base.join("elsewhere"), d.join("link")).unwrap();
        let found = linked_out(&d);
        assert!(found.complete);
        assert_eq!(found.count, 2);
        let mut first = found.first.clone();
        first.sort();
        assert_eq!(first, vec![d.join("credentials"), d.join("sub/deeper/key")]);
        // Past a bound: incomplete.
        assert!(!walk(&d, 3, 32).complete);
        let shallow = walk(&d, 100, 1);
        assert!(!shallow.complete && shallow.count == 1, "{shallow:?}");
        // A directory that is gone is nothing to report.
        assert_eq!(linked_out(&base.join("missing")), LinkedOut { complete: true, ..LinkedOut::default() });
        fs::remove_dir_all(&base).unwrap();
    }
}
