//! The messages between a client and the helper, over the helper's control socket (see
//! [`transport`](super::transport)). Runs in: client and helper.
//!
//! Every request carries an `id` chosen by the client; every response names the `id` it
//! answers, so many sandboxes can be in flight at once.

use super::transport::{StdioKind, Wire};
use corral_core::command::Command;
use corral_core::{CorralError, HostCapabilities, RunStats, SandboxSpec};
use serde::{Deserialize, Serialize};

/// Largest message either side accepts (a spec with a large inherited environment fits
/// easily).
pub const MAX_MESSAGE: usize = 1 << 20;

impl Wire for Request {
    const MAX_LEN: usize = MAX_MESSAGE;
}

impl Wire for Response {
    const MAX_LEN: usize = MAX_MESSAGE;
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "type")]
pub enum Request {
    /// First message: the helper answers with its version so stale binaries are caught.
    Hello { version: String },
    /// Report host capabilities.
    Probe,
    /// Create a sandbox and run `spec.argv` in it. `stdio` says which of stdin, stdout,
    /// stderr come as attached descriptors (in that order) and which are `/dev/null`.
    /// `channel`: one more descriptor follows the stdio ones, for the command's fd 3 (a
    /// copy-on-write template's fork channel). `proxy`: the last descriptor is the
    /// sandbox's end of its allow-list proxy's channel (proxied networks).
    Spawn {
        id: u64,
        spec: Box<SandboxSpec>,
        stdio: [StdioKind; 3],
        #[serde(default)]
        channel: bool,
        #[serde(default)]
        proxy: bool,
    },
    /// Create a sandbox that waits for its command (a warm pool's); `Started` follows once
    /// it is ready. `proxy` as for `Spawn`.
    Prepare {
        id: u64,
        spec: Box<SandboxSpec>,
        #[serde(default)]
        proxy: bool,
    },
    /// Run a command in a prepared sandbox: stdio descriptors attached as for `Spawn`.
    Exec { id: u64, command: Box<Command>, stdio: [StdioKind; 3], timeout_ms: Option<u64> },
    /// Send a signal to the sandbox's command (SIGKILL kills the whole sandbox).
    Signal { id: u64, signal: i32 },
    /// Stop (`freeze: true`) or continue every process of the sandbox; answered by `Done`.
    Freeze { op: u64, id: u64, freeze: bool },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "type")]
pub enum Response {
    Hello {
        version: String,
        pid: i32,
    },
    Probe {
        caps: Box<HostCapabilities>,
    },
    /// The sandbox exists; `pid` is its init in the caller's pid namespace.
    Started {
        id: u64,
        pid: i32,
    },
    /// The command ran and the sandbox is gone.
    Exited {
        id: u64,
        stats: RunStats,
    },
    /// The sandbox could not be created or the command could not be started; nothing is
    /// left behind.
    Failed {
        id: u64,
        error: CorralError,
    },
    /// The master side of the command's terminal is attached.
    Terminal {
        id: u64,
    },
    /// The answer to a control request such as `Freeze`.
    Done {
        op: u64,
        error: Option<CorralError>,
    },
}
