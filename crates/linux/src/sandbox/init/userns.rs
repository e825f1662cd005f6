//! Mapping the sandbox's uid and gid. Runs in: sandbox init, first thing after clone.
//!
//! The child maps exactly one id, its own, to itself: no privilege is needed for that,
//! rootless or not, and files keep their owners. `setgroups` is denied first, as the
//! kernel requires for an unprivileged gid map (and so supplementary groups cannot be
//! dropped to escape a group-based deny).

use crate::sandbox::{Step, StepError};

pub fn map_self(uid: u32, gid: u32) -> Result<(), StepError> {
    std::fs::write("/proc/self/setgroups", "deny").step("write /proc/self/setgroups")?;
    std::fs::write("/proc/self/uid_map", format!("{uid} {uid} 1\n")).step("write /proc/self/uid_map")?;
    std::fs::write("/proc/self/gid_map", format!("{gid} {gid} 1\n")).step("write /proc/self/gid_map")?;
    Ok(())
}
