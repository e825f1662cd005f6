//! The one error type that crosses every boundary (helper → addon → Node).
//!
//! Runs in: every process: errors cross from the helper to the client and on to Node.
//!
//! `code` is stable and documented; `field` names the offending policy field (dotted path,
//! e.g. `limits.memory` or `fs.read[2]`) for `POLICY_INVALID`; `hint` says what the user
//! can do about it.

use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    /// The policy or the command is malformed; `field` says where.
    PolicyInvalid,
    /// The sandbox could not be created or the command could not be started.
    SpawnFailed,
    /// The host cannot do what was asked (or strict mode refused a caveat).
    Unsupported,
    /// Something was used after it ended: a closed pool or template, a sandbox that has
    /// exited, changes already committed or discarded.
    InvalidState,
    /// The run was cancelled (AbortSignal) before it finished.
    Aborted,
    /// A bug in corral; please report it.
    Internal,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::PolicyInvalid => "POLICY_INVALID",
            ErrorCode::SpawnFailed => "SPAWN_FAILED",
            ErrorCode::Unsupported => "UNSUPPORTED",
            ErrorCode::InvalidState => "INVALID_STATE",
            ErrorCode::Aborted => "ABORTED",
            ErrorCode::Internal => "INTERNAL",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(rename_all = "camelCase")]
pub struct CorralError {
    pub code: ErrorCode,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
    /// The OS error number behind a `SPAWN_FAILED`, when there is one (ENOENT: command
    /// not found, EACCES: not executable).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errno: Option<i32>,
}

impl fmt::Display for CorralError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(field) = &self.field {
            write!(f, "{}: {}", field, self.message)?;
        } else {
            write!(f, "{}", self.message)?;
        }
        if let Some(hint) = &self.hint {
            write!(f, " ({hint})")?;
        }
        Ok(())
    }
}

impl CorralError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        CorralError { code, message: message.into(), field: None, hint: None, errno: None }
    }
    pub fn policy(field: impl Into<String>, message: impl Into<String>) -> Self {
        CorralError {
            code: ErrorCode::PolicyInvalid,
            message: message.into(),
            field: Some(field.into()),
            hint: None,
            errno: None,
        }
    }
    pub fn spawn(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::SpawnFailed, message)
    }
    pub fn unsupported(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unsupported, message)
    }
    pub fn invalid_state(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidState, message)
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Internal, message)
    }
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
    pub fn with_errno(mut self, errno: Option<i32>) -> Self {
        self.errno = errno;
        self
    }
    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }
}

pub type Result<T, E = CorralError> = std::result::Result<T, E>;
