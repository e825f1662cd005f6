//! Every platform but Linux, for now: each call says that sandboxes do not run here yet.
//! The handle types have no values, so their methods can never be reached.
//!
//! Runs in: the Node process (the addon).

use super::{Clone, Finished, Spawned};
use corral_core::spec::TerminalSize;
use corral_core::{Context, CorralError, ExitStatus, HostCapabilities, Plan, Policy};
use std::collections::BTreeMap;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::path::PathBuf;
use std::time::Duration;

fn unsupported() -> CorralError {
    CorralError::unsupported(format!("corral does not run sandboxes on {} yet", std::env::consts::OS))
}

pub fn caps() -> Result<HostCapabilities, CorralError> {
    Err(unsupported())
}

pub fn plan(_: &Policy, _: &[String], _: &Context) -> Result<Plan, CorralError> {
    Err(unsupported())
}

pub enum Captured {}

impl Captured {
    pub fn listing(&self) -> std::sync::Arc<corral_core::result::ChangeList> {
        match *self {}
    }
}

pub async fn commit(c: Captured) -> Result<(), CorralError> {
    match c {}
}

pub fn inherit_stdio(_: &[i32]) -> Result<[OwnedFd; 3], CorralError> {
    Err(unsupported())
}

pub async fn run(_: Plan, _: Option<Vec<u8>>, _: Option<[OwnedFd; 3]>) -> Result<Finished, CorralError> {
    Err(unsupported())
}

pub enum Running {}

pub async fn spawn(_: Plan, _: bool, _: Option<TerminalSize>) -> Result<Spawned, CorralError> {
    Err(unsupported())
}

impl Running {
    pub fn kill(&self, _: i32) -> Result<(), CorralError> {
        match *self {}
    }

    pub async fn freeze(&self, _: bool) -> Result<(), CorralError> {
        match *self {}
    }

    pub async fn wait(&self) -> Result<Finished, CorralError> {
        match *self {}
    }
}

pub fn resize_terminal(_: BorrowedFd<'_>, _: TerminalSize) -> Result<(), CorralError> {
    Err(unsupported())
}

pub enum Pool {}

#[derive(serde::Serialize)]
pub enum PoolStats {}

impl Pool {
    pub fn new(_: Plan, _: usize, _: usize, _: Option<Duration>) -> Result<Pool, CorralError> {
        Err(unsupported())
    }

    pub async fn run(
        &self,
        _: Vec<String>,
        _: BTreeMap<String, String>,
        _: Option<PathBuf>,
        _: Option<Vec<u8>>,
        _: Option<std::sync::Arc<tokio::sync::Notify>>,
    ) -> Result<Finished, CorralError> {
        match *self {}
    }

    pub fn stats(&self) -> PoolStats {
        match *self {}
    }

    pub async fn close(&self) {
        match *self {}
    }
}

pub enum Template {}

#[derive(Clone)]
pub enum Signaller {}
pub enum Forked {}

impl Template {
    pub async fn start(_: Plan) -> Result<Template, CorralError> {
        Err(unsupported())
    }

    pub fn pid(&self) -> i32 {
        match *self {}
    }

    pub async fn fork(&self, _: u32) -> Result<Vec<Clone>, CorralError> {
        match *self {}
    }

    pub async fn close(&self) -> Result<Finished, CorralError> {
        match *self {}
    }
}

impl Signaller {
    pub async fn signal(&self, _: i32) -> Result<(), CorralError> {
        match *self {}
    }
}

pub async fn clone_exit(forked: Forked) -> ExitStatus {
    match forked {}
}
