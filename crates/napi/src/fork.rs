//! Copy-on-write fork for JavaScript: a template command and its clones.
//!
//! Runs in: the Node process (the addon).

use super::*;

/// A running template.
#[napi]
pub struct NativeTemplate {
    template: Arc<platform::Template>,
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
    signaller: platform::Signaller,
    forked: Arc<Mutex<Option<platform::Forked>>>,
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
    let plan = parse_and_plan(&policy_json, &argv, ctx)?;
    env.spawn_future(async move {
        let template = task(platform::Template::start(plan)).await?;
        Ok(NativeTemplate { template: Arc::new(template) })
    })
}

#[napi]
impl NativeTemplate {
    /// Pid of the template sandbox's init, in this process's pid namespace.
    #[napi(getter)]
    pub fn pid(&self) -> i32 {
        self.template.pid()
    }

    /// Forks `n` clones (`CLONE_ID` 0..n-1); resolves once all exist.
    #[napi]
    pub async fn fork(&self, n: u32) -> napi::Result<Vec<NativeClone>> {
        let template = self.template.clone();
        let clones = task(async move { template.fork(n).await }).await?;
        Ok(clones
            .into_iter()
            .map(|c| NativeClone {
                clone_id: c.clone_id,
                pid: c.pid,
                stdout: raw(c.stdout),
                stderr: raw(c.stderr),
                handle: CloneHandle { signaller: c.signaller, forked: Arc::new(Mutex::new(Some(c.forked))) },
            })
            .collect())
    }

    /// Stops serving and waits for the template's sandbox to end; clones still running end
    /// with it. Resolves with the template's own result.
    #[napi]
    pub async fn close(&self) -> napi::Result<RunOutput> {
        let template = self.template.clone();
        RunOutput::from(task(async move { template.close().await }).await?)
    }
}

#[napi]
impl CloneHandle {
    /// Sends `signal` to the clone (SIGSTOP / SIGCONT pause and resume it).
    #[napi]
    pub async fn signal(&self, signal: i32) -> napi::Result<()> {
        let s = self.signaller.clone();
        task(async move { s.signal(signal).await }).await
    }

    /// Resolves when the clone has exited (once).
    #[napi]
    pub async fn wait(&self) -> napi::Result<CloneExit> {
        let forked = self.forked.lock().unwrap_or_else(|e| e.into_inner()).take();
        let forked = forked.ok_or_else(|| to_napi(CorralError::internal("wait() may be called once")))?;
        Ok(match platform::clone_exit(forked).await {
            corral_core::ExitStatus::Exited { code } => CloneExit { code: Some(code), signal: None },
            corral_core::ExitStatus::Signaled { signal } => CloneExit { code: None, signal: Some(signal) },
        })
    }
}
