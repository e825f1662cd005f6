//! The Node binding. It converts and forwards, nothing else: validation lives in
//! corral-core, sandboxes in the platform backend (reached through `platform`, which
//! keeps every `cfg` out of this file). Errors cross as JSON-encoded `CorralError`s
//! (prefix `CORRAL_ERROR `) that the TypeScript facade turns into `CorralError`
//! instances; panics are caught here and never unwind into Node.
//!
//! Runs in: the Node process (the addon).

#![deny(clippy::all)]
// Where sandboxes do not run, the handle types have no values (see `platform`), so the
// code after reaching one is unreachable there, by design.
#![cfg_attr(not(target_os = "linux"), allow(unreachable_code, unused_variables))]

pub mod fork;
mod platform;

use corral_core::{Context, CorralError, Policy};
use napi::bindgen_prelude::*;
use napi_derive::napi;
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::os::fd::{BorrowedFd, IntoRawFd};
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

const ERROR_PREFIX: &str = "CORRAL_ERROR ";

fn to_napi(e: CorralError) -> napi::Error {
    napi::Error::new(
        napi::Status::GenericFailure,
        format!("{ERROR_PREFIX}{}", serde_json::to_string(&e).unwrap_or_default()),
    )
}

/// Runs `f`, turning a panic into an INTERNAL error instead of unwinding into Node.
fn guarded<T>(f: impl FnOnce() -> std::result::Result<T, CorralError>) -> napi::Result<T> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(r) => r.map_err(to_napi),
        Err(p) => Err(to_napi(CorralError::internal(format!("panic in corral: {}", panic_message(&p))))),
    }
}

fn panic_message(p: &Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown".into())
}

/// Runs `f` as a task of its own on the runtime, so that a panic in it becomes an
/// INTERNAL error instead of unwinding into Node.
async fn task<T: Send + 'static>(
    f: impl Future<Output = std::result::Result<T, CorralError>> + Send + 'static,
) -> napi::Result<T> {
    match tokio::spawn(f).await {
        Ok(r) => r.map_err(to_napi),
        Err(e) => Err(to_napi(CorralError::internal(format!("corral task failed: {e}")))),
    }
}

fn to_json(value: impl serde::Serialize) -> napi::Result<serde_json::Value> {
    serde_json::to_value(value).map_err(|e| to_napi(CorralError::internal(e.to_string())))
}

fn raw(fd: Option<std::os::fd::OwnedFd>) -> Option<i32> {
    fd.map(|fd| fd.into_raw_fd())
}

/// The caller's context, passed from JavaScript so the environment is read where Node
/// keeps it consistent (the main thread) rather than raced from a worker thread.
#[napi(object)]
pub struct CallerContext {
    pub cwd: String,
    pub env: std::collections::HashMap<String, String>,
}

fn context(c: CallerContext) -> Context {
    let env: BTreeMap<String, String> = c.env.into_iter().collect();
    Context {
        cwd: c.cwd.into(),
        home: env.get("HOME").map(Into::into),
        // SAFETY: geteuid/getegid cannot fail.
        uid: unsafe { libc::geteuid() },
        gid: unsafe { libc::getegid() },
        env,
    }
}

fn parse_and_plan(policy_json: &str, argv: &[String], ctx: CallerContext) -> napi::Result<corral_core::Plan> {
    guarded(|| platform::plan(&Policy::from_json(policy_json)?, argv, &context(ctx)))
}

/// Host capabilities (JSON of `HostCapabilities`).
#[napi]
pub fn check() -> napi::Result<serde_json::Value> {
    to_json(guarded(platform::caps)?)
}

/// Compiles a policy without running anything (JSON of `Plan`).
#[napi]
pub fn plan(policy_json: String, argv: Vec<String>, ctx: CallerContext) -> napi::Result<serde_json::Value> {
    to_json(parse_and_plan(&policy_json, &argv, ctx)?)
}

/// The seccomp profiles: `[{ name, description }]`.
#[napi]
pub fn profiles() -> serde_json::Value {
    corral_core::seccomp::PROFILES.iter().map(|(n, d)| serde_json::json!({ "name": n, "description": d })).collect()
}

#[napi(object, object_from_js = false)]
pub struct RunOutput {
    /// `RunStats` plus `caveats`, `truncated` and `changes`, as JSON.
    pub info: serde_json::Value,
    pub stdout: Buffer,
    pub stderr: Buffer,
    /// Writes captured by `writeMode: 'overlay'`, to commit or discard.
    pub captured: Option<ChangeSet>,
}

impl RunOutput {
    fn from(f: platform::Finished) -> napi::Result<RunOutput> {
        Ok(RunOutput {
            info: to_json(&f.info)?,
            stdout: f.stdout.into(),
            stderr: f.stderr.into(),
            captured: f.captured.map(|c| ChangeSet { listing: c.listing(), inner: Arc::new(Mutex::new(Some(c))) }),
        })
    }
}

/// The overlay layers of one run. Dropping (or discarding) them frees the memory; nothing
/// reaches the host unless `commit` is called.
#[napi]
pub struct ChangeSet {
    inner: Arc<Mutex<Option<platform::Captured>>>,
    listing: Arc<corral_core::result::ChangeList>,
}

#[napi]
impl ChangeSet {
    /// The listed changes as JSON (`FileChange[]`), kept after a commit or discard. Built
    /// when asked, not with every result: tens of thousands of entries made into JavaScript
    /// objects with the result would hold the event loop for every tenant.
    #[napi]
    pub fn files(&self) -> napi::Result<String> {
        serde_json::to_string(&self.listing.files).map_err(|e| to_napi(CorralError::internal(e.to_string())))
    }

    /// Applies every captured change to the host, then frees the layers.
    #[napi]
    pub async fn commit(&self) -> napi::Result<()> {
        let captured = self.inner.lock().unwrap_or_else(|e| e.into_inner()).take();
        let Some(captured) = captured else {
            return Err(to_napi(CorralError::invalid_state("these changes were already committed or discarded")));
        };
        platform::commit(captured).await.map_err(to_napi)
    }

    /// Frees the layers without touching the host.
    #[napi]
    pub fn discard(&self) {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).take();
    }
}

/// Runs a command in a sandbox and collects its output, or, when `stdio` lists three
/// descriptors of this process (the CLI passes 0, 1, 2), hands those to the command
/// instead. Planning happens now, on the calling thread; the run is awaited on napi's
/// runtime.
#[napi]
pub fn run(
    env: &Env,
    policy_json: String,
    argv: Vec<String>,
    ctx: CallerContext,
    stdin: Option<Buffer>,
    stdio: Option<Vec<i32>>,
) -> napi::Result<PromiseRaw<'_, RunOutput>> {
    let plan = parse_and_plan(&policy_json, &argv, ctx)?;
    let stdin = stdin.map(|b| b.to_vec());
    let inherited = guarded(|| stdio.map(|fds| platform::inherit_stdio(&fds)).transpose())?;
    env.spawn_future(async move { RunOutput::from(task(platform::run(plan, stdin, inherited)).await?) })
}

/// A running sandbox started by `spawn`.
#[napi]
pub struct SandboxHandle {
    inner: Arc<platform::Running>,
}

#[napi]
impl SandboxHandle {
    /// Sends a signal to the command (SIGKILL ends the whole sandbox).
    #[napi]
    pub fn kill(&self, signal: i32) -> napi::Result<()> {
        guarded(|| self.inner.kill(signal))
    }

    /// Stops (`true`) or continues (`false`) every process of the sandbox.
    #[napi]
    pub async fn freeze(&self, freeze: bool) -> napi::Result<()> {
        let inner = self.inner.clone();
        task(async move { inner.freeze(freeze).await }).await
    }

    /// Resolves when every process of the sandbox is gone (once).
    #[napi]
    pub async fn wait(&self) -> napi::Result<RunOutput> {
        let inner = self.inner.clone();
        RunOutput::from(task(async move { inner.wait().await }).await?)
    }
}

#[napi(object, object_from_js = false)]
pub struct Spawned {
    pub handle: SandboxHandle,
    /// Pid of the sandbox's init, in this process's pid namespace.
    pub pid: i32,
    /// Descriptors for the caller to stream (owned by the caller from now on).
    pub stdin: Option<i32>,
    pub stdout: Option<i32>,
    pub stderr: Option<i32>,
    /// The master side of the command's terminal (terminal mode).
    pub terminal: Option<i32>,
}

#[napi(object)]
pub struct TerminalSize {
    pub cols: u32,
    pub rows: u32,
}

/// Resizes a terminal given its master descriptor (the command gets SIGWINCH).
#[napi]
pub fn resize_terminal(fd: i32, size: TerminalSize) -> napi::Result<()> {
    // SAFETY: the caller owns `fd` (a terminal master this module handed out).
    let fd = unsafe { BorrowedFd::borrow_raw(fd) };
    let size = corral_core::spec::TerminalSize {
        cols: size.cols.min(u16::MAX as u32) as u16,
        rows: size.rows.min(u16::MAX as u32) as u16,
    };
    guarded(|| platform::resize_terminal(fd, size))
}

/// Starts a command in a sandbox and resolves once the sandbox exists, with pipe
/// descriptors for its stdio.
#[napi]
pub fn spawn(
    env: &Env,
    policy_json: String,
    argv: Vec<String>,
    ctx: CallerContext,
    with_stdin: bool,
    terminal: Option<TerminalSize>,
) -> napi::Result<PromiseRaw<'_, Spawned>> {
    let terminal = terminal.map(|t| corral_core::spec::TerminalSize {
        cols: t.cols.clamp(1, u16::MAX as u32) as u16,
        rows: t.rows.clamp(1, u16::MAX as u32) as u16,
    });
    let plan = parse_and_plan(&policy_json, &argv, ctx)?;
    env.spawn_future(async move {
        let s = task(platform::spawn(plan, with_stdin, terminal)).await?;
        Ok(Spawned {
            pid: s.pid,
            stdin: raw(s.stdin),
            stdout: raw(s.stdout),
            stderr: raw(s.stderr),
            terminal: raw(s.terminal),
            handle: SandboxHandle { inner: Arc::new(s.handle) },
        })
    })
}

#[napi(object)]
pub struct PoolOptions {
    pub size: u32,
    pub max_size: u32,
    /// Milliseconds, or a duration string such as `'30s'` (read by the core's parser).
    pub idle_timeout: Option<Either<f64, String>>,
}

/// A duration as JavaScript passed it, read by the same parser as the policy's.
fn duration(
    field: &str,
    v: Option<Either<f64, String>>,
) -> std::result::Result<Option<std::time::Duration>, CorralError> {
    let value = match v {
        None => return Ok(None),
        Some(Either::A(n)) => serde_json::Number::from_f64(n)
            .map(serde_json::Value::Number)
            .ok_or_else(|| CorralError::policy(field, format!("expected a finite number, got {n}")))?,
        Some(Either::B(s)) => serde_json::Value::String(s),
    };
    let ms: corral_core::units::DurationMs =
        serde_json::from_value(value).map_err(|e| CorralError::policy(field, e.to_string()))?;
    Ok(Some(std::time::Duration::from_millis(ms.0)))
}

#[napi(object)]
pub struct PoolRun {
    pub argv: Vec<String>,
    pub env: Option<std::collections::HashMap<String, String>>,
    pub cwd: Option<String>,
    pub stdin: Option<Buffer>,
    /// A number of the caller's choosing that `cancel(ticket)` names to kill this run.
    pub ticket: Option<u32>,
}

/// A warm pool of sandboxes for one policy.
#[napi]
pub struct NativePool {
    pool: Arc<platform::Pool>,
    /// Runs that may be cancelled, by ticket.
    cancels: Arc<Mutex<HashMap<u32, Arc<Notify>>>>,
}

#[napi]
impl NativePool {
    #[napi(constructor)]
    pub fn new(policy_json: String, ctx: CallerContext, options: PoolOptions) -> napi::Result<Self> {
        let plan = parse_and_plan(&policy_json, &[], ctx)?;
        let idle = guarded(|| duration("idleTimeout", options.idle_timeout))?;
        // The pool refills on napi's tokio runtime.
        let pool = napi::bindgen_prelude::within_runtime_if_available(|| {
            guarded(|| platform::Pool::new(plan, options.size as usize, options.max_size as usize, idle))
        })?;
        Ok(NativePool { pool: Arc::new(pool), cancels: Default::default() })
    }

    /// Runs one command in a warm sandbox and collects its output.
    #[napi]
    pub async fn run(&self, req: PoolRun) -> napi::Result<RunOutput> {
        let cancel = req.ticket.map(|t| {
            let n = Arc::new(Notify::new());
            self.cancels.lock().unwrap_or_else(|e| e.into_inner()).insert(t, n.clone());
            n
        });
        let pool = self.pool.clone();
        let env = req.env.unwrap_or_default().into_iter().collect();
        let (argv, cwd, stdin) = (req.argv, req.cwd.map(Into::into), req.stdin.map(|b| b.to_vec()));
        let out = task(async move { pool.run(argv, env, cwd, stdin, cancel).await }).await;
        if let Some(t) = req.ticket {
            self.cancels.lock().unwrap_or_else(|e| e.into_inner()).remove(&t);
        }
        RunOutput::from(out?)
    }

    /// Kills the sandbox of the run given `ticket` (a no-op once that run is over).
    #[napi]
    pub fn cancel(&self, ticket: u32) {
        if let Some(n) = self.cancels.lock().unwrap_or_else(|e| e.into_inner()).get(&ticket) {
            n.notify_one();
        }
    }

    #[napi]
    pub fn stats(&self) -> napi::Result<serde_json::Value> {
        to_json(self.pool.stats())
    }

    /// Kills every ready sandbox; resolves once they are gone.
    #[napi]
    pub async fn close(&self) -> napi::Result<()> {
        let pool = self.pool.clone();
        task(async move {
            pool.close().await;
            Ok(())
        })
        .await
    }
}
