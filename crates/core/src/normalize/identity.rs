//! Which host identity the sandbox has. Runs in: the planner (no OS calls).
//!
//! A non-root caller's sandbox maps the caller's own uid and gid onto themselves, one to
//! one: it can do nothing on the host that the caller cannot. A root caller's sandbox would
//! be host root that way (reading every root-only file it sees, planting set-user-ID-root
//! files), so it maps onto the unprivileged host ids the helper found unused instead, and
//! the caller's own grants become idmapped mounts: there the caller's files are the
//! sandbox's, and what the command creates lands owned by the caller. The system
//! directories every sandbox sees are not idmapped: their root-only files stay unreadable.

use super::paths::depth;
use super::view::View;
use super::{caveat, Caveat};
use crate::host::{Context, HostCapabilities, HostFs};
use crate::spec::{MountSpec, ShiftedIdentity};
use std::path::{Path, PathBuf};

pub(super) fn identity(
    ctx: &Context,
    host: &HostCapabilities,
    view: &View,
    fs: &dyn HostFs,
    caveats: &mut Vec<Caveat>,
) -> Option<ShiftedIdentity> {
    if host.os != "linux" || ctx.uid != 0 {
        return None;
    }
    let Some(ids) = host.identity.root_maps_to else {
        let why = host.identity.detail.as_deref().unwrap_or("none was found");
        caveats.push(caveat(
            "ROOT_IDENTITY",
            &format!(
                "no unused unprivileged host ids for the sandbox's root ({why}): it runs as host root, so it can read root-only files in every tree it sees"
            ),
            None,
        ));
        return None;
    };
    let mut idmapped = Vec::new();
    let mut refused: Vec<&Path> = Vec::new();
    for m in &view.mounts {
        let (source, target) = match m {
            MountSpec::Bind { source, target, .. } => (source, target),
            MountSpec::Overlay { lower, target, .. } => (lower, target),
            _ => continue,
        };
        if shows_defaults(view, target) {
            continue;
        }
        if host.identity.idmapped_mounts && fs.idmap_support(source) == Some(true) {
            idmapped.push(target.clone());
        } else if !refused.contains(&source.as_path()) {
            refused.push(source);
            caveats.push(caveat(
                "IDMAP_UNSUPPORTED",
                &format!(
                    "{}: its file system cannot be mounted idmapped here, so the sandbox meets it as host uid {}: your files there are not its own (root-only ones are unreadable, root-owned directories read-only) and files it creates there are owned by uid {}",
                    source.display(),
                    ids.uid,
                    ids.uid
                ),
                Some("fs"),
            ));
        }
    }
    let guard_setid = host.identity.setid_guard;
    if !guard_setid {
        if let Some(source) = writable_idmapped(view, &idmapped) {
            let why = host.identity.setid_guard_detail.as_deref().unwrap_or("no fanotify permission events");
            caveats.push(caveat(
                "SETID_UNGUARDED",
                &format!(
                    "{}: your files there are the sandbox's own, and set-id or file-capability files in it cannot be refused to it here ({why}): rewritten through a shared writable mapping, such a file keeps its bits",
                    source.display()
                ),
                Some("fs"),
            ));
        }
    }
    Some(ShiftedIdentity { host_uid: ids.uid, host_gid: ids.gid, idmapped, guard_setid })
}

/// The source of the first writable bind among the idmapped targets.
fn writable_idmapped<'a>(view: &'a View, idmapped: &[PathBuf]) -> Option<&'a Path> {
    view.mounts.iter().find_map(|m| match m {
        MountSpec::Bind { source, target, writable: true, .. } if idmapped.contains(target) => Some(source.as_path()),
        _ => None,
    })
}

/// Whether the deepest grant that contains `target` is one of the system defaults (or
/// nothing grants it: a bound socket the policy allowed, which is the caller's).
fn shows_defaults(view: &View, target: &Path) -> bool {
    let deepest: Option<&PathBuf> =
        view.visible.iter().map(|(t, _)| t).filter(|t| target.starts_with(t)).max_by_key(|t| depth(t));
    deepest.is_some_and(|t| view.defaults.contains(t))
}
