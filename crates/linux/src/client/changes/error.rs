//! Why a change set could not be listed or committed, and the bounds that say so. Runs in:
//! the client, on a listing's or a commit's own thread.

use nix::errno::Errno;
use std::io;
use std::path::{Path, PathBuf};

/// Entries read per change set (both sides, every layer) before the listing gives up.
pub const MAX_ENTRIES: u64 = 1_000_000;
/// Bytes of names (and symlink targets) a walk holds at once.
pub const MAX_HELD_BYTES: usize = 64 << 20;
/// Longest path below a layer's root that is walked (the kernel's PATH_MAX, NUL included).
pub(super) const MAX_PATH: usize = libc::PATH_MAX as usize - 1;

/// Why a change set could not be listed or committed.
#[derive(Debug, thiserror::Error)]
pub enum ChangesError {
    #[error("{path:?} is more than {MAX_PATH} bytes below {root:?}: too deep to list or commit")]
    TooDeep { root: PathBuf, path: PathBuf },
    #[error("more than {MAX_ENTRIES} entries: too many to list or commit")]
    TooMany,
    #[error("directories of more than {MAX_HELD_BYTES} bytes of names: too large to list or commit")]
    TooLarge,
    #[error("{action} {path:?}: {source}")]
    Io { action: &'static str, path: PathBuf, source: io::Error },
    #[error("{0}")]
    Listing(String),
    #[error("{failed}; {undo}")]
    Commit { failed: Box<ChangesError>, undo: String },
}

impl ChangesError {
    pub(crate) fn errno(&self) -> Option<i32> {
        match self {
            ChangesError::Io { source, .. } => source.raw_os_error(),
            ChangesError::Commit { failed, .. } => failed.errno(),
            _ => None,
        }
    }
}

pub(super) type Result<T, E = ChangesError> = std::result::Result<T, E>;

pub(super) fn io_err<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(Errno) -> ChangesError + 'a {
    move |e| ChangesError::Io { action, path: path.to_path_buf(), source: e.into() }
}
