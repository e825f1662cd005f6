//! Copy-on-write fork for JavaScript: a template command and its clones (corral_pool::fork).

use super::*;
use corral_pool::fork::{Forked, Signaller, Template};
use std::os::fd::IntoRawFd;
use std::sync::{Arc, Mutex};

/// A running template.
#[napi]
pub struct NativeTemplate {
    template: Arc<Template>,
    meta: serde_json::Value,
}

/// One clone: a handle plus its stdout and stderr read ends (the caller owns them).
#[napi(object, object_from_js = false)]
pub struct NativeClone {
    pub handle: CloneHandle,
    /// Its `CLONE_ID`.
    pub clone_id: u32,
    /// Pid inside the template's sandbox.
    pub pid: i32,
    pub stdout: Option<i32>,
    pub stderr: Option<i32>,
}

#[napi]
pub struct CloneHandle {
    signaller: Signaller,
    forked: Arc<Mutex<Option<Forked>>>,
}

/// How a clone ended: `code`, or `signal`.
#[napi(object)]
pub struct CloneExit {
    pub code: Option<i32>,
    pub signal: Option<i32>,
}

/// Starts `argv` as a template and resolves once it said it is ready.
#[napi]
pub fn start_template(
    env: &Env,
    policy_json: String,
    argv: Vec<String>,
    ctx: CallerContext,
) -> napi::Result<PromiseRaw<'_, NativeTemplate>> {
    let plan = guarded(|| parse_and_plan(&policy_json, &argv, ctx))?;
    env.spawn_future(async move {
        let sup = supervisor().map_err(to_napi)?;
        let meta = plan_meta(&plan);
        let template = tokio::spawn(async move { Template::start(sup, &plan).await })
            .await
            .map_err(|e| to_napi(CorralError::internal(format!("template task failed: {e}"))))?
            .map_err(to_napi)?;
        Ok(NativeTemplate { template: Arc::new(template), meta })
    })
}

#[napi]
impl NativeTemplate {
    /// Pid of the template sandbox's init, in this process's pid namespace.
    #[napi(getter)]
    pub fn pid(&self) -> i32 {
        self.template.pid
    }

    /// Forks `n` clones (`CLONE_ID` 0..n-1); resolves once all exist.
    #[napi]
    pub async fn fork(&self, n: u32) -> napi::Result<Vec<NativeClone>> {
        let template = self.template.clone();
        let clones = tokio::spawn(async move { template.fork(n).await })
            .await
            .map_err(|e| to_napi(CorralError::internal(format!("fork task failed: {e}"))))?
            .map_err(to_napi)?;
        Ok(clones
            .into_iter()
            .map(|mut c| NativeClone {
                clone_id: c.clone_id,
                pid: c.pid,
                stdout: c.stdout.take().map(|fd| fd.into_raw_fd()),
                stderr: c.stderr.take().map(|fd| fd.into_raw_fd()),
                handle: CloneHandle { signaller: c.signaller(), forked: Arc::new(Mutex::new(Some(c))) },
            })
            .collect())
    }

    /// Stops serving and waits for the template's sandbox to end; clones still running end
    /// with it. Resolves with the template's own result.
    #[napi]
    pub async fn close(&self) -> napi::Result<RunOutput> {
        let template = self.template.clone();
        let out = tokio::spawn(async move { template.close().await })
            .await
            .map_err(|e| to_napi(CorralError::internal(format!("template task failed: {e}"))))?
            .map_err(to_napi)?;
        Ok(run_output(out, self.meta.clone()))
    }
}

#[napi]
impl CloneHandle {
    /// Sends `signal` to the clone (SIGSTOP / SIGCONT pause and resume it).
    #[napi]
    pub async fn signal(&self, signal: i32) -> napi::Result<()> {
        let s = self.signaller.clone();
        tokio::spawn(async move { s.signal(signal).await })
            .await
            .map_err(|e| to_napi(CorralError::internal(format!("signal task failed: {e}"))))?
            .map_err(to_napi)
    }

    /// Resolves when the clone has exited (once).
    #[napi]
    pub async fn wait(&self) -> napi::Result<CloneExit> {
        let forked = self.forked.lock().unwrap_or_else(|e| e.into_inner()).take();
        let Some(forked) = forked else {
            return Err(to_napi(CorralError::internal("wait() may be called once")));
        };
        Ok(match forked.wait().await {
            corral_core::ExitStatus::Exited { code } => CloneExit { code: Some(code), signal: None },
            corral_core::ExitStatus::Signaled { signal } => CloneExit { code: None, signal: Some(signal) },
        })
    }
}
