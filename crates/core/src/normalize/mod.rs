//! The normaliser: the one authority that turns a raw [`Policy`] into a [`Plan`].
//!
//! Runs in: the client, when planning.
//!
//! Everything a user can get wrong is caught here and reported with the field that holds
//! it; everything the host cannot enforce becomes a [`Caveat`] (and, in strict mode, an
//! error). Backends execute the resulting [`SandboxSpec`] without further decisions.
//!
//! Path semantics: `~` and relative paths resolve against the caller; symlinks are
//! resolved here, at plan time, and the plan shows the absolute result. At launch every
//! host path is opened again without following any symlink, so a path that changed into
//! a symlink (or vanished) since planning fails the run instead of redirecting it.

mod identity;
mod paths;
mod process;
mod view;

pub use paths::{absolute, mount_target, resolve_as_written, resolve_existing, trusted_symlink};
pub use process::{DEFAULT_HOSTNAME, DEFAULT_PIDS, PROXY_HTTP_PORT, PROXY_SOCKS_PORT};
pub use view::ETC_SECRETS;

use crate::error::{CorralError, Result};
use crate::host::{Context, FileKind, HostCapabilities, HostFs};
use crate::policy::Policy;
use crate::spec::*;
use crate::{command, env};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The compiled policy and what it means on this host.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Plan {
    pub spec: SandboxSpec,
    /// Every rule this host cannot fully enforce. Empty means everything holds.
    pub caveats: Vec<Caveat>,
    /// Cap on captured stdout+stderr bytes, enforced by the caller that collects output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_output_bytes: Option<u64>,
    pub strict: bool,
    /// The allow-list the host-side proxy enforces, for proxied networks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<crate::allowlist::AllowList>,
    /// What the seccomp filters amount to, for people reading the plan.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seccomp_counts: Option<crate::seccomp::Counts>,
    /// Host paths behind every carve-out (denied, protected, placeholders): a sandbox
    /// prepared ahead of time no longer shows the policy's view if one of them was
    /// replaced since (a bind mount goes away in every namespace when the host renames
    /// or unlinks its path), so warm pools compare them before use.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub watch: Vec<PathBuf>,
}

/// The sandbox's memory-backed storage (`/tmp`, `/dev/shm`, overlay layers together)
/// when `limits.disk` is not set: 1 GiB.
pub const DEFAULT_DISK: u64 = 1 << 30;

/// A guarantee that does not hold on this host, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Caveat {
    /// Stable identifier, e.g. `LANDLOCK_UNAVAILABLE`.
    pub code: String,
    pub message: String,
    /// The policy field the caveat is about, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

pub(crate) fn caveat(code: &str, message: &str, field: Option<&str>) -> Caveat {
    Caveat { code: code.into(), message: message.into(), field: field.map(str::to_string) }
}

/// The host path that the mount view shows at sandbox path `p`: through the bind or
/// overlay mount nearest to it.
fn host_path(mounts: &[MountSpec], p: &Path) -> Option<PathBuf> {
    mounts
        .iter()
        .filter_map(|m| match m {
            MountSpec::Bind { source, target, .. } => Some((source, target)),
            MountSpec::Overlay { lower, target, .. } => Some((lower, target)),
            _ => None,
        })
        .filter(|(_, target)| p.starts_with(target))
        .max_by_key(|(_, target)| target.components().count())
        .and_then(|(source, target)| p.strip_prefix(target).ok().map(|rest| source.join(rest)))
}

/// Whether the sandbox shows, at the caller's directory `p`, that same host directory, or
/// a directory that only holds mounts. A volume over it shows another tree there (where
/// `p` may not exist), a fresh tmpfs or a mask shows only its own root.
fn shows_the_same_dir(mounts: &[MountSpec], p: &Path) -> bool {
    let nearest = mounts
        .iter()
        .filter_map(|m| match m {
            MountSpec::Bind { source, target, .. } => Some((target, Some(source))),
            MountSpec::Overlay { lower, target, .. } => Some((target, Some(lower))),
            MountSpec::Tmpfs { target, .. }
            | MountSpec::Proc { target }
            | MountSpec::Dev { target, .. }
            | MountSpec::Mask { target } => Some((target, None)),
            _ => None,
        })
        .filter(|(target, _)| p.starts_with(target))
        .max_by_key(|(target, _)| target.components().count());
    match nearest {
        None => command::shows(mounts, p),
        Some((target, Some(source))) => p.strip_prefix(target).is_ok_and(|rest| source.join(rest) == p),
        Some((target, None)) => p == target.as_path(),
    }
}

/// Compiles `policy` for `argv` (empty when only planning).
pub fn plan(policy: &Policy, argv: &[String], ctx: &Context, host: &HostCapabilities, fs: &dyn HostFs) -> Result<Plan> {
    let mut caveats = Vec::new();
    let strict = policy.strict.unwrap_or(false);
    check_host(host)?;

    // The file-system view, then what the kernel lacks to enforce it.
    let disk = policy.limits.as_ref().and_then(|l| l.disk).map(|s| s.0);
    if disk == Some(0) {
        return Err(CorralError::policy("limits.disk", "must be greater than 0"));
    }
    let view = view::build(&policy.fs.clone().unwrap_or_default(), ctx, fs, &mut caveats)?;
    if disk.is_some() && !view.private_tmp {
        caveats.push(caveat(
            "DISK_LIMIT_UNENFORCED",
            "limits.disk bounds the sandbox's own /tmp, /dev/shm and overlay layers, but /tmp is the host's here",
            Some("limits.disk"),
        ));
    }
    if view.memfd_noexec_required && !host.memfd_noexec {
        caveats.push(caveat(
            "MEMFD_EXEC",
            "memory files (memfd_create) stay executable: vm.memfd_noexec needs Linux 6.3+ and a root caller to be set for the sandbox",
            Some("fs.execWritable"),
        ));
    }
    let network = process::network(policy, host, &mut caveats)?;
    process::landlock_caveats(host.landlock_abi, network.spec, &mut caveats);
    if view.overlay.is_some() && !host.overlay_in_userns {
        return Err(CorralError::unsupported("fs.writeMode needs overlayfs inside a user namespace (Linux 5.11+)")
            .with_field("fs.writeMode"));
    }

    // The process: where it starts, as whom, with what. A `cwd` the policy names must be
    // a directory the sandbox shows. Without one the command starts where the
    // caller is when the sandbox shows that directory — also when it only holds granted
    // paths, so `python3 score.py` with `read: ['./score.py']` finds its script — and
    // otherwise in `/`, as bubblewrap falls back; the plan's `cwd` says which.
    let cwd = match &policy.cwd {
        Some(raw) => {
            let lexical = absolute("cwd", raw, ctx)?;
            let p = fs.canonicalize(&lexical).unwrap_or(lexical);
            command::check_cwd(&view.mounts, &p)?;
            // A file is no working directory; the host path behind it is found through the
            // mount view, so a volume's target still works.
            if host_path(&view.mounts, &p).is_some_and(|h| !matches!(fs.kind(&h), Some(FileKind::Dir))) {
                return Err(CorralError::policy("cwd", format!("{} is not a directory", p.display())));
            }
            p
        }
        None => fs
            .canonicalize(&ctx.cwd)
            .ok()
            .filter(|p| shows_the_same_dir(&view.mounts, p))
            .unwrap_or_else(|| PathBuf::from("/")),
    };
    let home = ctx
        .home
        .as_ref()
        .and_then(|h| fs.canonicalize(h).ok())
        .filter(|h| view.visible.iter().any(|(t, writable)| *writable && h.starts_with(t)))
        .map(|h| h.display().to_string())
        .unwrap_or_else(|| "/tmp".to_string());
    let mut env = env::build(&ctx.env, policy.inherit_env.as_ref(), policy.env.as_ref(), &home)?;
    if let Some(rules) = &network.rules {
        process::proxy_env(&mut env, rules);
    }
    let identity = identity::identity(ctx, host, &view, fs, &mut caveats);
    let hostname = process::hostname(policy)?;
    let limits = process::limits(policy, host, &mut caveats)?;
    let mut seccomp = process::seccomp_spec(policy, host, &network, &mut caveats)?;
    // Host root's files are the sandbox root's in idmapped grants: no ACL may change their
    // modes behind the set-id rules (see `SeccompSpec::no_xattr_writes`).
    seccomp.no_xattr_writes = identity.as_ref().is_some_and(|i| !i.idmapped.is_empty());

    let spec = SandboxSpec {
        argv: argv.to_vec(),
        env,
        cwd,
        hostname,
        uid: ctx.uid,
        gid: ctx.gid,
        identity,
        network: network.spec,
        mounts: view.mounts,
        landlock: LandlockSpec {
            rules: view.rules,
            abi: host.landlock_abi,
            scoped: host.landlock_abi >= 6,
            bind_ports: network.bind_ports,
            connect_ports: network.connect_ports,
        },
        seccomp,
        rlimits: limits.rlimits,
        cgroup: limits.cgroup,
        timeout_ms: policy.timeout.map(|t| t.0).filter(|t| *t > 0),
        scratch: ScratchSpec { size: disk.unwrap_or(DEFAULT_DISK) },
        overlay: view.overlay,
        memfd_noexec: host.memfd_noexec,
        wait_for_command: false,
        terminal: None,
        unix_sockets: view.unix_sockets,
        placeholders: view.placeholders,
    };
    // The command (argv, final environment, working directory), once there is one.
    if !argv.is_empty() {
        command::check_spec(&spec)?;
    }
    if strict {
        refuse_caveats(&caveats)?;
    }
    let seccomp_counts = crate::seccomp::filters(&spec.seccomp.profile, &spec.seccomp.allow, &spec.seccomp.deny)
        .map(|f| crate::seccomp::counts(&f));
    Ok(Plan {
        spec,
        caveats,
        max_output_bytes: limits.max_output_bytes,
        strict,
        network: network.rules,
        seccomp_counts,
        watch: view.watch,
    })
}

/// Strict mode: any caveat — the normaliser's or a backend's — refuses the run.
pub fn refuse_caveats(caveats: &[Caveat]) -> Result<()> {
    let Some(first) = caveats.first() else { return Ok(()) };
    let list: Vec<String> = caveats.iter().map(|c| format!("{}: {}", c.code, c.message)).collect();
    Err(CorralError::unsupported(format!("strict mode refuses to run with caveats: {}", list.join("; ")))
        .with_field(first.field.clone().unwrap_or_else(|| "strict".into())))
}

fn check_host(host: &HostCapabilities) -> Result<()> {
    if host.os == "linux" && !host.user_namespaces {
        let why = host.user_namespaces_detail.clone().unwrap_or_else(|| "user namespaces are unavailable".into());
        return Err(CorralError::unsupported(format!("cannot create sandboxes: {why}"))
            .with_hint("enable unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone=1, user.max_user_namespaces>0, or on Ubuntu kernel.apparmor_restrict_unprivileged_userns=0)"));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
