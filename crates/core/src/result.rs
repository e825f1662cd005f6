//! What a finished sandbox reports.
//!
//! Runs in: the helper (measures a run) and the client (reports it).

use crate::allowlist::Violation;
use crate::normalize::{Caveat, Plan};
use crate::spec::{CgroupLimits, Rlimits};
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
    /// `user_time_us` and `system_time_us` cover every process of the tree (a cgroup counted
    /// them). Without a cgroup they are what the processes that were waited for used: a
    /// process whose parent ignores SIGCHLD is reaped unseen, with all it started.
    #[serde(default)]
    pub cpu_time_tree: bool,
}

/// One change an overlay run made, relative to the host: what committing it does there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FileChange {
    /// Host path the change applies to. A name that is not valid UTF-8 shows U+FFFD for
    /// each byte that is not, and `path_hex` has its exact bytes.
    #[serde(serialize_with = "lossy_path")]
    pub path: std::path::PathBuf,
    /// The path's bytes in hexadecimal, only when they are not valid UTF-8.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path_hex: Option<String>,
    pub kind: ChangeKind,
    /// What stands at `path` once the change is committed; for a deletion, what is removed.
    #[serde(rename = "type")]
    pub file_type: FileType,
    /// For `Replaced`: what stood there before (a directory goes with everything in it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_type: Option<FileType>,
    /// A directory (added, replaced or deleted as a whole).
    pub dir: bool,
    /// Size in bytes of the new content: a file's length, a symlink target's length (0 for
    /// deletions and directories).
    pub size: u64,
    /// Permission bits the host gets (files and directories). Never set-user-ID or
    /// set-group-ID: commit drops those (see `dropped_mode`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<u32>,
    /// Set-user-ID / set-group-ID bits the command set on it, which commit drops.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dropped_mode: Option<u32>,
    /// A symlink's target (lossy, as `path`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
}

fn lossy_path<S: serde::Serializer>(p: &std::path::Path, s: S) -> Result<S::Ok, S::Error> {
    use std::os::unix::ffi::OsStrExt;
    s.serialize_str(&String::from_utf8_lossy(p.as_os_str().as_bytes()))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ChangeKind {
    Added,
    Modified,
    Deleted,
    /// Something of another type now stands where the host has a file, link or directory.
    Replaced,
}

/// The type of a changed object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum FileType {
    File,
    Dir,
    Symlink,
    /// A socket, fifo or device node: listed, never created on the host (committing one
    /// removes what it replaced).
    Other,
}

/// The changes of one overlay run, as listed for review.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ChangeList {
    /// The changes, in path order, up to the listing's bounds.
    pub files: Vec<FileChange>,
    /// Changes past the listing's bounds (counted, not listed); commit applies them too.
    pub omitted: u64,
    /// Why the changes could not be listed in full (too deep, too many, unreadable). When
    /// set, `files` is what was found before, and commit refuses.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A change listing's count of what it left out, and why it is incomplete if it is.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ChangesInfo {
    pub omitted: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl ChangesInfo {
    pub fn of(list: &ChangeList) -> ChangesInfo {
        ChangesInfo { omitted: list.omitted, error: list.error.clone() }
    }
}

/// What every result of a plan repeats from it: the caveats and the limits in force.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PlanSummary {
    pub caveats: Vec<Caveat>,
    pub limits: LimitsInForce,
}

/// The limits a run was held to. Unset ones are `null`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LimitsInForce {
    pub cgroup: Option<CgroupLimits>,
    pub rlimits: Rlimits,
    pub timeout_ms: Option<u64>,
    pub max_output_bytes: Option<u64>,
}

impl PlanSummary {
    pub fn of(plan: &Plan) -> PlanSummary {
        let s = &plan.spec;
        PlanSummary {
            caveats: plan.caveats.clone(),
            limits: LimitsInForce {
                cgroup: s.cgroup,
                rlimits: s.rlimits,
                timeout_ms: s.timeout_ms,
                max_output_bytes: plan.max_output_bytes,
            },
        }
    }
}

/// Everything a finished run reports besides its output: the one shape the binding
/// serialises for JavaScript.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RunInfo {
    #[serde(flatten)]
    pub stats: RunStats,
    #[serde(flatten)]
    pub plan: PlanSummary,
    /// Output past the cap was discarded.
    pub truncated: bool,
    /// Connections the allow-list proxy refused.
    pub violations: Vec<Violation>,
    /// What an overlay run wrote, held aside to commit or discard: the listing's count and
    /// error (its files reach JavaScript apart, when asked).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub changes: Option<ChangesInfo>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::normalize::caveat;

    #[test]
    fn run_info_has_the_shape_javascript_reads() {
        let info = RunInfo {
            stats: RunStats {
                status: ExitStatus::Exited { code: 3 },
                wall_time_us: 10,
                user_time_us: 1,
                system_time_us: 2,
                peak_memory_bytes: 4096,
                timed_out: false,
                oom_killed: false,
                peak_memory_tree: true,
                cpu_time_tree: false,
            },
            plan: PlanSummary {
                caveats: vec![caveat("HOST_NETWORK", "the host's network", Some("network"))],
                limits: LimitsInForce {
                    cgroup: None,
                    rlimits: Rlimits { open_files: Some(64), ..Rlimits::default() },
                    timeout_ms: Some(1000),
                    max_output_bytes: None,
                },
            },
            truncated: true,
            violations: Vec::new(),
            changes: None,
        };
        let json = serde_json::to_value(&info).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "status": { "kind": "exited", "code": 3 },
                "wallTimeUs": 10, "userTimeUs": 1, "systemTimeUs": 2, "peakMemoryBytes": 4096,
                "timedOut": false, "oomKilled": false, "peakMemoryTree": true, "cpuTimeTree": false,
                "caveats": [{ "code": "HOST_NETWORK", "message": "the host's network", "field": "network" }],
                "limits": { "cgroup": null, "rlimits": { "openFiles": 64 }, "timeoutMs": 1000, "maxOutputBytes": null },
                "truncated": true,
                "violations": [],
            })
        );
    }
}
