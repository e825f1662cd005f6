//! [`HostFs`] over the real file system, for the planner. Runs in: the client.
//!
//! Whether a tree can be idmapped is read from `/proc/self/mountinfo`: the file system of
//! the mount holding the path and of every mount below it must be one the kernel can
//! idmap. The list is of those known to; anything else counts as no (a caveat, never a
//! failure), and the helper's `mount_setattr` has the last word at launch.

use crate::mountinfo;
use corral_core::host::{FileKind, HostFs, LinkedOut, Owner};
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

pub struct RealFs;

impl HostFs for RealFs {
    fn canonicalize(&self, path: &Path) -> io::Result<PathBuf> {
        std::fs::canonicalize(path)
    }

    fn kind(&self, path: &Path) -> Option<FileKind> {
        let meta = std::fs::symlink_metadata(path).ok()?;
        let ft = meta.file_type();
        Some(if ft.is_symlink() {
            FileKind::Symlink(std::fs::read_link(path).ok()?)
        } else if ft.is_dir() {
            FileKind::Dir
        } else if ft.is_file() {
            FileKind::File
        } else if ft.is_socket() {
            FileKind::Socket
        } else {
            FileKind::Other
        })
    }

    fn owner(&self, path: &Path) -> Option<Owner> {
        let meta = std::fs::symlink_metadata(path).ok()?;
        Some(Owner { uid: meta.uid(), mode: meta.mode() & 0o7777, links: meta.nlink() })
    }

    fn submounts(&self, path: &Path) -> Vec<PathBuf> {
        let Ok(table) = std::fs::read("/proc/self/mountinfo") else { return Vec::new() };
        let mut inner: Vec<PathBuf> =
            mountinfo::mount_points(&table).filter(|p| p.starts_with(path) && p != path).collect();
        inner.sort();
        inner.dedup();
        inner
    }

    fn is_empty(&self, path: &Path) -> bool {
        match std::fs::symlink_metadata(path) {
            Ok(m) if m.is_file() => m.len() == 0,
            Ok(m) if m.is_dir() => std::fs::read_dir(path).is_ok_and(|mut d| d.next().is_none()),
            _ => false,
        }
    }

    fn linked_out(&self, dir: &Path) -> LinkedOut {
        super::links::linked_out(dir)
    }

    fn writable(&self, dir: &Path) -> bool {
        nix::unistd::access(dir, nix::unistd::AccessFlags::W_OK).is_ok()
    }

    fn idmap_support(&self, path: &Path) -> Option<bool> {
        // Bytes: a mount point anywhere on the host need not be UTF-8.
        let mountinfo = std::fs::read("/proc/self/mountinfo").ok()?;
        let mounts: Vec<(PathBuf, &str)> = mountinfo.split(|&c| c == b'\n').filter_map(mount_point_and_type).collect();
        let holder = mounts.iter().filter(|(at, _)| path.starts_with(at)).max_by_key(|(at, _)| at.as_os_str().len())?;
        let below = mounts.iter().filter(|(at, _)| at.starts_with(path) && at != path);
        Some(std::iter::once(holder).chain(below).all(|(_, fs)| idmappable(fs)))
    }
}

/// The mount point and file system type of one line of /proc/self/mountinfo.
fn mount_point_and_type(line: &[u8]) -> Option<(PathBuf, &str)> {
    let dash = line.windows(3).position(|w| w == b" - ")?;
    let (left, right) = (&line[..dash], &line[dash + 3..]);
    let at = left.split(|&c| c == b' ').nth(4)?;
    let fs = right.split(|&c| c == b' ').next()?;
    Some((PathBuf::from(mountinfo::unescape(at)), std::str::from_utf8(fs).ok()?))
}

/// File systems the kernel can idmap (`FS_ALLOW_IDMAP`): tmpfs from Linux 6.3.
fn idmappable(fs: &str) -> bool {
    match fs {
        "ext2" | "ext3" | "ext4" | "xfs" | "btrfs" | "f2fs" | "vfat" | "msdos" => true,
        "tmpfs" => kernel_at_least(6, 3),
        _ => false,
    }
}

fn kernel_at_least(major: u32, minor: u32) -> bool {
    let Ok(uts) = nix::sys::utsname::uname() else { return false };
    let release = uts.release().to_string_lossy().into_owned();
    let mut parts = release.split(|c: char| !c.is_ascii_digit()).filter_map(|p| p.parse::<u32>().ok());
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0)) >= (major, minor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_lines() {
        let l = b"36 35 98:0 / /mnt/my\\040disk rw,noatime master:1 - ext4 /dev/root rw";
        assert_eq!(mount_point_and_type(l), Some((PathBuf::from("/mnt/my disk"), "ext4")));
        assert!(idmappable("xfs") && !idmappable("nfs4") && !idmappable("fuse.sshfs"));
    }
}
