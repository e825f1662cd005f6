//! Plain file I/O on the cgroup file system: what cgroups-rs has no call for, or reads
//! only as part of a whole-controller report. Runs in: the helper.

use super::error::CgroupError;
use std::fs;
use std::io::Write;
use std::path::Path;

pub(super) fn write(path: &Path, value: &str) -> Result<(), CgroupError> {
    fs::OpenOptions::new()
        .write(true)
        .open(path)
        .and_then(|mut f| f.write_all(value.as_bytes()))
        .map_err(|e| CgroupError::file(format!("writing {value:?} to"), path, e))
}

pub(super) fn read_words(path: &Path) -> Vec<String> {
    fs::read_to_string(path).unwrap_or_default().split_whitespace().map(String::from).collect()
}

pub(super) fn read_u64(path: &Path) -> Option<u64> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// The value of `key` in a flat-keyed file (`key value` lines).
pub(super) fn read_keyed(path: &Path, key: &str) -> Option<u64> {
    keyed(&fs::read_to_string(path).ok()?, key)
}

pub(super) fn keyed(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

/// rmdir of every cgroup below `dir`, deepest first; populated ones stay (the kernel
/// refuses to remove them).
pub(super) fn remove_empty_children(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            remove_empty_tree(&entry.path());
        }
    }
}

pub(super) fn remove_empty_tree(dir: &Path) {
    remove_empty_children(dir);
    let _ = fs::remove_dir(dir);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyed_files() {
        let events = "low 0\nhigh 0\nmax 12\noom 3\noom_kill 2\noom_group_kill 1\n";
        assert_eq!(keyed(events, "oom_kill"), Some(2));
        assert_eq!(keyed(events, "oom"), Some(3));
        assert_eq!(keyed(events, "missing"), None);
        assert_eq!(keyed("usage_usec 1234\nuser_usec 1000\n", "usage_usec"), Some(1234));
    }
}
