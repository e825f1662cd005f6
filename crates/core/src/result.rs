//! What a finished sandbox reports.

use serde::{Deserialize, Serialize};

/// How the sandboxed command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "kind")]
pub enum ExitStatus {
    /// `exit(code)`.
    Exited { code: i32 },
    /// Killed by a signal (number).
    Signaled { signal: i32 },
}

impl ExitStatus {
    /// The conventional shell status: the exit code, or 128 + signal.
    pub fn shell_code(self) -> i32 {
        match self {
            ExitStatus::Exited { code } => code,
            ExitStatus::Signaled { signal } => 128 + signal,
        }
    }
}

/// Statistics of one run, measured by the helper.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunStats {
    pub status: ExitStatus,
    /// From sandbox creation to the death of its last process.
    pub wall_time_us: u64,
    pub user_time_us: u64,
    pub system_time_us: u64,
    /// Largest resident set of any one process of the tree (rusage); the whole tree's peak
    /// where a cgroup measured it.
    pub peak_memory_bytes: u64,
    /// The wall-clock timeout fired and the sandbox was killed.
    pub timed_out: bool,
    /// The kernel's OOM killer ended a process of the sandbox (from cgroup events).
    #[serde(default)]
    pub oom_killed: bool,
    /// `peak_memory_bytes` covers the whole tree (a cgroup measured it).
    #[serde(default)]
    pub peak_memory_tree: bool,
}

/// One change an overlay run made, relative to the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FileChange {
    /// Host path the change applies to.
    pub path: std::path::PathBuf,
    pub kind: ChangeKind,
    /// A directory (added or deleted as a whole).
    pub dir: bool,
    /// Size in bytes of the new content (0 for deletions and directories).
    pub size: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ChangeKind {
    Added,
    Modified,
    Deleted,
}
