//! corral-pool: the warm pool and copy-on-write fork (SPEC F14, F15; issue "Warm pool and
//! copy-on-write fork").
//!
//! Purpose. Two features carry corral's speed promise, and both grow out of the Linux
//! helper (`corral_linux::helper`), which is single-threaded and may therefore fork:
//!
//! - **Warm pool**: sandboxes prepared ahead of time — namespaces created (a new network
//!   namespace alone costs about a millisecond and is serialised in the kernel), mount
//!   view built, cgroup ready — parked in the helper until a command arrives. Acquiring
//!   one then costs the last steps only (Landlock, seccomp, exec), so a sandboxed command
//!   starts in about the time of a plain fork+exec. Each prepared sandbox is used once.
//! - **Copy-on-write fork**: a template sandbox initialises once (loads a model, parses a
//!   corpus), then forks clones that share its memory copy-on-write, each in a sandbox of
//!   its own with `CLONE_ID` set; a reducer collects their outputs.
//!
//! This crate holds the pool's policy — sizing, refill, idle expiry, statistics — and the
//! template/clone bookkeeping, as plain code over the helper's protocol; the process work
//! itself happens in the helper. Until those land, corral creates every sandbox cold.
