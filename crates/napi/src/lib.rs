//! The Node binding. It only converts and forwards: validation lives in corral-core, the
//! sandbox in the platform backend. Errors cross as JSON-encoded `CorralError`s (prefix
//! `CORRAL_ERROR `) that the TypeScript facade turns into `CorralError` instances; panics
//! are caught here and never unwind into Node.

#![deny(clippy::all)]

use corral_core::{Context, CorralError, HostCapabilities, Policy};
use napi::bindgen_prelude::*;
use napi_derive::napi;
use std::collections::BTreeMap;

#[cfg(target_os = "linux")]
mod backend {
    pub use corral_linux::*;
}

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

#[cfg(target_os = "linux")]
mod linux {
    use super::*;
    use std::path::PathBuf;
    use std::sync::{Arc, Mutex};

    static SUPERVISOR: Mutex<Option<Arc<backend::Supervisor>>> = Mutex::new(None);

    /// `corral-helper` ships beside this addon (in the platform package, or the repo root
    /// in a source build); `CORRAL_HELPER` overrides.
    fn helper_path() -> PathBuf {
        if let Some(p) = std::env::var_os("CORRAL_HELPER") {
            return p.into();
        }
        // SAFETY: dladdr fills `info` for an address inside this shared object.
        unsafe {
            let mut info: libc::Dl_info = std::mem::zeroed();
            if libc::dladdr(helper_path as *const libc::c_void, &mut info) != 0 && !info.dli_fname.is_null() {
                let me = PathBuf::from(std::ffi::CStr::from_ptr(info.dli_fname).to_string_lossy().into_owned());
                if let Some(dir) = me.parent() {
                    return dir.join("corral-helper");
                }
            }
        }
        backend::client::default_helper_path()
    }

    /// The helper, started on first use and restarted if it died.
    pub fn supervisor() -> std::result::Result<Arc<backend::Supervisor>, CorralError> {
        let mut slot = SUPERVISOR.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = slot.as_ref().filter(|s| s.is_alive()) {
            return Ok(s.clone());
        }
        let s = backend::Supervisor::start(&helper_path())?;
        *slot = Some(s.clone());
        Ok(s)
    }

    pub fn caps() -> std::result::Result<HostCapabilities, CorralError> {
        Ok(supervisor()?.caps().clone())
    }
}

#[cfg(target_os = "linux")]
use linux::{caps, supervisor};

#[cfg(target_os = "linux")]
pub mod fork;

#[cfg(not(target_os = "linux"))]
fn caps() -> std::result::Result<HostCapabilities, CorralError> {
    Err(CorralError::unsupported(format!("corral does not run sandboxes on {} yet", std::env::consts::OS)))
}

fn parse_and_plan(
    policy_json: &str,
    argv: &[String],
    ctx: CallerContext,
) -> std::result::Result<corral_core::Plan, CorralError> {
    let policy = Policy::from_json(policy_json)?;
    let caps = caps()?;
    #[cfg(target_os = "linux")]
    return backend::plan(&policy, argv, &context(ctx), &caps);
    #[cfg(not(target_os = "linux"))]
    return Err(CorralError::unsupported(format!("planning for {} is not available yet", std::env::consts::OS)));
}

/// Host capabilities (JSON of `HostCapabilities`).
#[napi]
pub fn check() -> napi::Result<serde_json::Value> {
    guarded(|| serde_json::to_value(caps()?).map_err(|e| CorralError::internal(e.to_string())))
}

/// Compiles a policy without running anything (JSON of `Plan`).
#[napi]
pub fn plan(policy_json: String, argv: Vec<String>, ctx: CallerContext) -> napi::Result<serde_json::Value> {
    guarded(|| {
        serde_json::to_value(parse_and_plan(&policy_json, &argv, ctx)?)
            .map_err(|e| CorralError::internal(e.to_string()))
    })
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

/// The overlay layers of one run. Dropping (or discarding) them frees the memory; nothing
/// reaches the host unless `commit` is called.
#[napi]
pub struct ChangeSet {
    #[cfg(target_os = "linux")]
    inner: std::sync::Arc<std::sync::Mutex<Option<backend::client::changes::Captured>>>,
}

#[napi]
impl ChangeSet {
    /// Applies every captured change to the host, then frees the layers.
    #[napi]
    pub async fn commit(&self) -> napi::Result<()> {
        #[cfg(target_os = "linux")]
        {
            let inner = self.inner.clone();
            let done = tokio::task::spawn_blocking(move || {
                let captured = inner.lock().unwrap_or_else(|e| e.into_inner()).take();
                match captured {
                    Some(c) => c.commit(),
                    None => Err(CorralError::invalid_state("these changes were already committed or discarded")),
                }
            })
            .await
            .map_err(|e| to_napi(CorralError::internal(e.to_string())))?;
            done.map_err(to_napi)
        }
        #[cfg(not(target_os = "linux"))]
        Err(to_napi(CorralError::unsupported("captured changes are not available on this platform")))
    }

    /// Frees the layers without touching the host.
    #[napi]
    pub fn discard(&self) {
        #[cfg(target_os = "linux")]
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
    let plan = guarded(|| parse_and_plan(&policy_json, &argv, ctx))?;
    let stdin = stdin.map(|b| b.to_vec());
    #[cfg(target_os = "linux")]
    let inherited = guarded(|| stdio.map(|fds| dup_stdio(&fds)).transpose())?;
    env.spawn_future(async move {
        #[cfg(target_os = "linux")]
        {
            let sup = supervisor().map_err(to_napi)?;
            let caveats = plan_meta(&plan);
            let task = tokio::spawn(async move {
                match inherited {
                    Some(stdio) => backend::client::run::run_with_stdio(&sup, &plan, stdio).await,
                    None => backend::client::run::run(&sup, &plan, stdin).await,
                }
            });
            let out = match task.await {
                Ok(r) => r.map_err(to_napi)?,
                Err(e) => return Err(to_napi(CorralError::internal(format!("run task failed: {e}")))),
            };
            Ok(run_output(out, caveats))
        }
        #[cfg(not(target_os = "linux"))]
        {
            let _ = (plan, stdin, stdio);
            Err(to_napi(CorralError::unsupported("running sandboxes is not available on this platform yet")))
        }
    })
}

/// Duplicates three descriptors of this process (close-on-exec) for a command to use.
#[cfg(target_os = "linux")]
fn dup_stdio(fds: &[i32]) -> std::result::Result<[backend::Stdio; 3], CorralError> {
    use std::os::fd::{BorrowedFd, OwnedFd};
    if fds.len() != 3 {
        return Err(CorralError::internal("stdio needs exactly three descriptors"));
    }
    let dup = |fd: i32| -> std::result::Result<backend::Stdio, CorralError> {
        // SAFETY: the caller vouches that `fd` is open in this process for the call.
        let b = unsafe { BorrowedFd::borrow_raw(fd) };
        let owned: OwnedFd = b.try_clone_to_owned().map_err(|e| CorralError::spawn(format!("dup of fd {fd}: {e}")))?;
        Ok(backend::Stdio::Fd(owned))
    };
    Ok([dup(fds[0])?, dup(fds[1])?, dup(fds[2])?])
}

/// What every result repeats from the plan: its caveats and the limits in force.
fn plan_meta(plan: &corral_core::Plan) -> serde_json::Value {
    let s = &plan.spec;
    serde_json::json!({
        "caveats": plan.caveats,
        "limits": {
            "cgroup": s.cgroup,
            "rlimits": s.rlimits,
            "timeoutMs": s.timeout_ms,
            "maxOutputBytes": plan.max_output_bytes,
        },
    })
}

/// The JavaScript shape of a finished run.
#[cfg(target_os = "linux")]
fn run_output(out: backend::client::run::Output, meta: serde_json::Value) -> RunOutput {
    let mut info = serde_json::to_value(out.stats).unwrap_or_default();
    info["caveats"] = meta["caveats"].clone();
    info["limits"] = meta["limits"].clone();
    info["truncated"] = out.truncated.into();
    info["violations"] = serde_json::to_value(&out.violations).unwrap_or_default();
    let captured = out.captured.map(|c| {
        info["changes"] = serde_json::to_value(c.changes()).unwrap_or_default();
        ChangeSet { inner: std::sync::Arc::new(std::sync::Mutex::new(Some(c))) }
    });
    RunOutput { info, stdout: out.stdout.into(), stderr: out.stderr.into(), captured }
}

/// A running sandbox started by `spawn`.
#[napi]
pub struct SandboxHandle {
    #[cfg(target_os = "linux")]
    sup: std::sync::Arc<backend::Supervisor>,
    id: u64,
    #[cfg(target_os = "linux")]
    waiter: std::sync::Arc<std::sync::Mutex<Option<backend::client::run::Waiter>>>,
    caveats: serde_json::Value,
}

#[napi]
impl SandboxHandle {
    /// Sends a signal to the command (SIGKILL ends the whole sandbox).
    #[napi]
    pub fn kill(&self, signal: i32) -> napi::Result<()> {
        #[cfg(target_os = "linux")]
        return self.sup.signal(self.id, signal).map_err(to_napi);
        #[cfg(not(target_os = "linux"))]
        Err(to_napi(CorralError::unsupported("not available on this platform")))
    }

    /// Stops (`true`) or continues (`false`) every process of the sandbox.
    #[napi]
    pub async fn freeze(&self, freeze: bool) -> napi::Result<()> {
        #[cfg(target_os = "linux")]
        return self.sup.freeze(self.id, freeze).await.map_err(to_napi);
        #[cfg(not(target_os = "linux"))]
        Err(to_napi(CorralError::unsupported("not available on this platform")))
    }

    /// Resolves when every process of the sandbox is gone (once).
    #[napi]
    pub async fn wait(&self) -> napi::Result<RunOutput> {
        #[cfg(target_os = "linux")]
        {
            let waiter = self.waiter.lock().unwrap_or_else(|e| e.into_inner()).take();
            let Some(waiter) = waiter else {
                return Err(to_napi(CorralError::internal("wait() may be called once")));
            };
            let out = waiter.wait().await.map_err(to_napi)?;
            Ok(run_output(out, self.caveats.clone()))
        }
        #[cfg(not(target_os = "linux"))]
        Err(to_napi(CorralError::unsupported("not available on this platform")))
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
    #[cfg(target_os = "linux")]
    {
        // SAFETY: the caller owns `fd` (a terminal master this module handed out).
        let b = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
        let size = corral_core::spec::TerminalSize {
            cols: size.cols.min(u16::MAX as u32) as u16,
            rows: size.rows.min(u16::MAX as u32) as u16,
        };
        backend::sandbox::terminal::resize(&b, size)
            .map_err(|e| to_napi(CorralError::spawn(format!("resizing the terminal: {e}"))))
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (fd, size);
        Err(to_napi(CorralError::unsupported("not available on this platform")))
    }
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
    let plan = guarded(|| parse_and_plan(&policy_json, &argv, ctx))?;
    env.spawn_future(async move {
        #[cfg(target_os = "linux")]
        {
            use std::os::fd::IntoRawFd;
            let sup = supervisor().map_err(to_napi)?;
            let caveats = plan_meta(&plan);
            let task_sup = sup.clone();
            let s =
                tokio::spawn(
                    async move { backend::client::run::spawn(&task_sup, &plan, with_stdin, terminal, None).await },
                )
                .await
                .map_err(|e| to_napi(CorralError::internal(format!("spawn task failed: {e}"))))?
                .map_err(to_napi)?;
            Ok(Spawned {
                pid: s.pid,
                stdin: s.stdin.map(|fd| fd.into_raw_fd()),
                stdout: s.stdout.map(|fd| fd.into_raw_fd()),
                stderr: s.stderr.map(|fd| fd.into_raw_fd()),
                terminal: s.terminal.map(|fd| fd.into_raw_fd()),
                handle: SandboxHandle {
                    sup,
                    id: s.id,
                    waiter: std::sync::Arc::new(std::sync::Mutex::new(Some(s.waiter))),
                    caveats,
                },
            })
        }
        #[cfg(not(target_os = "linux"))]
        {
            let _ = (plan, with_stdin, terminal);
            Err(to_napi(CorralError::unsupported("running sandboxes is not available on this platform yet")))
        }
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
    #[cfg(target_os = "linux")]
    pool: corral_pool::Pool,
    meta: serde_json::Value,
    /// Runs that may be cancelled, by ticket.
    cancels: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<u32, std::sync::Arc<tokio::sync::Notify>>>>,
}

#[napi]
impl NativePool {
    #[napi(constructor)]
    pub fn new(policy_json: String, ctx: CallerContext, options: PoolOptions) -> napi::Result<Self> {
        let plan = guarded(|| parse_and_plan(&policy_json, &[], ctx))?;
        let idle_timeout = guarded(|| duration("idleTimeout", options.idle_timeout))?;
        let meta = plan_meta(&plan);
        #[cfg(target_os = "linux")]
        {
            let sup = guarded(supervisor)?;
            let opts = corral_pool::PoolOptions {
                size: options.size as usize,
                max_size: options.max_size as usize,
                idle_timeout,
            };
            // The pool refills on napi's tokio runtime.
            let pool = napi::bindgen_prelude::within_runtime_if_available(|| {
                guarded(|| corral_pool::Pool::new(sup, plan, opts))
            })?;
            Ok(NativePool { pool, meta, cancels: Default::default() })
        }
        #[cfg(not(target_os = "linux"))]
        {
            let _ = (plan, options, idle_timeout);
            Err(to_napi(CorralError::unsupported("pools are not available on this platform")))
        }
    }

    /// Runs one command in a warm sandbox and collects its output.
    #[napi]
    pub async fn run(&self, req: PoolRun) -> napi::Result<RunOutput> {
        #[cfg(target_os = "linux")]
        {
            let cancel = req.ticket.map(|t| {
                let n = std::sync::Arc::new(tokio::sync::Notify::new());
                self.cancels.lock().unwrap_or_else(|e| e.into_inner()).insert(t, n.clone());
                n
            });
            let request = corral_pool::RunRequest {
                argv: req.argv,
                env: req.env.unwrap_or_default().into_iter().collect(),
                cwd: req.cwd.map(Into::into),
                stdin: req.stdin.map(|b| b.to_vec()),
                cancel,
            };
            let pool = self.pool.clone();
            let out = tokio::spawn(async move { pool.run(request).await }).await;
            if let Some(t) = req.ticket {
                self.cancels.lock().unwrap_or_else(|e| e.into_inner()).remove(&t);
            }
            let out =
                out.map_err(|e| to_napi(CorralError::internal(format!("pool task failed: {e}"))))?.map_err(to_napi)?;
            Ok(run_output(out, self.meta.clone()))
        }
        #[cfg(not(target_os = "linux"))]
        {
            let _ = req;
            Err(to_napi(CorralError::unsupported("pools are not available on this platform")))
        }
    }

    /// Kills the sandbox of the run given `ticket` (a no-op once that run is over).
    #[napi]
    pub fn cancel(&self, ticket: u32) {
        if let Some(n) = self.cancels.lock().unwrap_or_else(|e| e.into_inner()).get(&ticket) {
            n.notify_one();
        }
    }

    #[napi]
    pub fn stats(&self) -> serde_json::Value {
        #[cfg(target_os = "linux")]
        return serde_json::to_value(self.pool.stats()).unwrap_or_default();
        #[cfg(not(target_os = "linux"))]
        serde_json::Value::Null
    }

    /// Kills every ready sandbox; resolves once they are gone.
    #[napi]
    pub async fn close(&self) -> napi::Result<()> {
        #[cfg(target_os = "linux")]
        {
            let pool = self.pool.clone();
            tokio::spawn(async move { pool.close().await })
                .await
                .map_err(|e| to_napi(CorralError::internal(format!("pool task failed: {e}"))))?;
        }
        Ok(())
    }
}
