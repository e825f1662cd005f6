//! The helper a process shares, and where its binary is. Runs in: the client.

use super::Supervisor;
use corral_core::CorralError;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

static SHARED: Mutex<Option<Arc<Supervisor>>> = Mutex::new(None);

/// This process's helper: started on first use, restarted on the next call after it died.
pub fn shared() -> Result<Arc<Supervisor>, CorralError> {
    let mut slot = SHARED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(s) = slot.as_ref().filter(|s| s.is_alive()) {
        return Ok(s.clone());
    }
    let s = Supervisor::start(&helper_path())?;
    *slot = Some(s.clone());
    Ok(s)
}

/// Where `corral-helper` is: `$CORRAL_HELPER`, else beside the shared object this code
/// was linked into (the Node addon, in its platform package or the repository root of a
/// source build), else beside the executable or one level up (Cargo's `deps/` layout).
/// When none exists, the first place looked, so that the error names it.
pub fn helper_path() -> PathBuf {
    if let Some(p) = std::env::var_os("CORRAL_HELPER") {
        return p.into();
    }
    let exe = std::env::current_exe().unwrap_or_default();
    let linked = linked_object();
    let candidates: Vec<PathBuf> = linked
        .as_deref()
        .into_iter()
        .chain(exe.ancestors().skip(1).take(2))
        .map(|dir| dir.join("corral-helper"))
        .collect();
    candidates
        .iter()
        .find(|c| c.exists())
        .or(candidates.first())
        .cloned()
        .unwrap_or_else(|| PathBuf::from("corral-helper"))
}

/// The directory of the shared object (or executable) this function is part of.
fn linked_object() -> Option<PathBuf> {
    // SAFETY: dladdr fills `info` for an address inside a loaded object; dli_fname is a
    // NUL-terminated string owned by the loader.
    unsafe {
        let mut info: libc::Dl_info = std::mem::zeroed();
        if libc::dladdr(linked_object as *const libc::c_void, &mut info) == 0 || info.dli_fname.is_null() {
            return None;
        }
        let me = PathBuf::from(std::ffi::CStr::from_ptr(info.dli_fname).to_string_lossy().into_owned());
        me.parent().map(PathBuf::from)
    }
}
