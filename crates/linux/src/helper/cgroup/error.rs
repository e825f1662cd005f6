//! What can go wrong with cgroups. Runs in: the helper.

use cgroups_rs::fs::error::Error as LibError;
use std::io;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    /// This helper cannot create cgroups here; the message says why and what to do.
    #[error("{0}")]
    Unusable(String),
    /// A limit needs a controller the helper's base cgroup does not have.
    #[error("the {controller} cgroup controller is not available in {}", base.display())]
    NoController { controller: &'static str, base: PathBuf },
    #[error("cpus must be above 0, not {0}")]
    InvalidCpus(f64),
    /// A leftover with this name may still hold processes: never shared.
    #[error("the cgroup {} already exists", .0.display())]
    Exists(PathBuf),
    /// Reading or writing one of the cgroup's files failed.
    #[error("{action} {}: {source}", path.display())]
    File {
        action: String,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A cgroups-rs call failed.
    #[error("{action}: {detail}")]
    Library { action: String, detail: String, errno: Option<i32> },
    #[error("no cgroup freezer for this sandbox")]
    NoFreezer,
    #[error("the sandbox's cgroup did not finish freezing within 1 s (a process in uninterruptible sleep?)")]
    FreezeTimeout,
    /// The kernel kept refusing to remove the cgroup.
    #[error("{source}; the kernel still refuses after 1 s, left behind: {left}")]
    LeftBehind {
        #[source]
        source: Box<CgroupError>,
        left: String,
    },
}

impl CgroupError {
    pub(super) fn file(action: impl Into<String>, path: &Path, source: io::Error) -> CgroupError {
        CgroupError::File { action: action.into(), path: path.to_path_buf(), source }
    }

    pub(super) fn library(action: impl Into<String>, e: &LibError) -> CgroupError {
        CgroupError::Library { action: action.into(), detail: describe(e), errno: errno(e) }
    }

    /// The OS error number behind it, if there is one.
    pub fn errno(&self) -> Option<i32> {
        match self {
            CgroupError::File { source, .. } => source.raw_os_error(),
            CgroupError::Library { errno, .. } => *errno,
            CgroupError::LeftBehind { source, .. } => source.errno(),
            _ => None,
        }
    }
}

/// The OS error behind a cgroups-rs error, if there is one.
fn io_source(e: &LibError) -> Option<&io::Error> {
    std::error::Error::source(e).and_then(|s| s.downcast_ref::<io::Error>())
}

pub(super) fn io_kind(e: &LibError) -> Option<io::ErrorKind> {
    io_source(e).map(|e| e.kind())
}

pub(super) fn errno(e: &LibError) -> Option<i32> {
    io_source(e).and_then(|e| e.raw_os_error())
}

/// cgroups-rs's message with the OS error in words rather than `Debug` form.
pub(super) fn describe(e: &LibError) -> String {
    match io_source(e) {
        Some(io) => format!("{}: {io}", e.kind()),
        None => e.to_string(),
    }
}
