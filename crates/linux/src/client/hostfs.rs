//! [`HostFs`] over the real file system, for the planner. Runs in: the client.
//!
//! The socket search walks granted trees on every plan, so it keeps a per-process cache
//! of each directory's sockets and subdirectories, revalidated by the directory's
//! modification time (creating or removing an entry changes it): a second plan of the
//! same tree costs one `stat` per directory.

use corral_core::host::{FileKind, HostFs};
use std::collections::HashMap;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

pub struct RealFs;

#[derive(Clone)]
struct DirEntries {
    mtime: (i64, i64),
    sockets: Vec<PathBuf>,
    subdirs: Vec<PathBuf>,
    entries: usize,
}

static CACHE: Mutex<Option<HashMap<PathBuf, DirEntries>>> = Mutex::new(None);
/// Trees the sandbox never sees from the host (replaced or absent in the view).
const SKIP: &[&str] = &["/proc", "/sys", "/dev"];

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

    fn find_sockets(&self, root: &Path, budget: usize) -> Option<Vec<PathBuf>> {
        let mut guard = CACHE.lock().unwrap_or_else(|e| e.into_inner());
        let cache = guard.get_or_insert_with(HashMap::new);
        let mut found = Vec::new();
        let mut seen = 0usize;
        let mut stack = vec![root.to_path_buf()];
        while let Some(dir) = stack.pop() {
            if SKIP.iter().any(|s| dir.starts_with(s)) {
                continue;
            }
            let Ok(meta) = std::fs::symlink_metadata(&dir) else { continue };
            let mtime = (meta.mtime(), meta.mtime_nsec());
            let entries = match cache.get(&dir) {
                Some(e) if e.mtime == mtime => e.clone(),
                _ => {
                    let e = read(&dir, mtime);
                    cache.insert(dir.clone(), e.clone());
                    e
                }
            };
            seen += entries.entries;
            if seen > budget {
                return None;
            }
            found.extend(entries.sockets);
            stack.extend(entries.subdirs);
        }
        found.sort();
        Some(found)
    }
}

fn read(dir: &Path, mtime: (i64, i64)) -> DirEntries {
    let mut e = DirEntries { mtime, sockets: Vec::new(), subdirs: Vec::new(), entries: 0 };
    let Ok(rd) = std::fs::read_dir(dir) else { return e };
    for entry in rd.flatten() {
        e.entries += 1;
        // d_type from readdir: no extra stat, and symlinks are never followed.
        let Ok(ft) = entry.file_type() else { continue };
        if ft.is_socket() {
            e.sockets.push(entry.path());
        } else if ft.is_dir() {
            e.subdirs.push(entry.path());
        }
    }
    e
}
