//! Pausing and resuming a whole sandbox. Runs in: the helper.
//!
//! With a cgroup freezer the kernel stops every task atomically (see `crate::helper::cgroup`).
//! Without one, every process of the tree gets SIGSTOP (SIGCONT to resume): the tree is
//! walked through `/proc/<pid>/task/<tid>/children` until a pass finds nothing new, so a
//! process forked during the walk is still caught. Stopped processes cannot fork, so the
//! walk converges.

use corral_core::CorralError;
use std::collections::BTreeSet;

/// Stops or continues every process of the sandbox whose init is `init`.
pub fn set(init: i32, freeze: bool) -> Result<(), CorralError> {
    if !std::path::Path::new(&format!("/proc/{init}/task/{init}/children")).exists() {
        return Err(CorralError::unsupported(
            "pausing needs a cgroup freezer or /proc/<pid>/task/<tid>/children (CONFIG_PROC_CHILDREN)",
        ));
    }
    let signal = if freeze { libc::SIGSTOP } else { libc::SIGCONT };
    let mut done = BTreeSet::new();
    loop {
        let tree = descendants(init);
        let fresh: Vec<i32> = tree.iter().copied().filter(|p| !done.contains(p)).collect();
        if fresh.is_empty() {
            return Ok(());
        }
        for pid in fresh {
            // SAFETY: kill(2) on a pid of our own sandbox (a child's descendants); a pid
            // that is gone meanwhile needs nothing.
            unsafe { libc::kill(pid, signal) };
            done.insert(pid);
        }
        if !freeze {
            return Ok(()); // continuing needs no convergence: stopped processes do not fork
        }
    }
}

/// `init` and everything below it.
fn descendants(init: i32) -> Vec<i32> {
    let mut out = vec![init];
    let mut i = 0;
    while i < out.len() {
        let pid = out[i];
        if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
            for t in tasks.flatten() {
                let children = std::fs::read_to_string(t.path().join("children")).unwrap_or_default();
                out.extend(children.split_whitespace().filter_map(|c| c.parse::<i32>().ok()));
            }
        }
        i += 1;
    }
    out
}
