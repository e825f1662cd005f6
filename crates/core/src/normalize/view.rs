//! The file-system view: which host paths the sandbox sees, where, and how.
//!
//! Runs in: the client, when planning.
//!
//! Grants (system defaults, `read`, `write`, `exec`, `volumes`) become binds or, in the
//! capturing write modes, overlays; `deny` hides paths under empty read-only masks;
//! `protect` re-binds paths read-only inside writable trees (standing up an empty
//! placeholder for those that do not exist yet); Unix sockets found in granted trees are
//! masked unless listed in `allowUnixSockets`. Landlock rules mirror the grants.

use super::paths::{absolute, depth, lexical, mount_target, resolve_existing, resolve_prefix};
use super::{caveat, Caveat};
use crate::error::{CorralError, Result};
use crate::host::{Context, FileKind, HostFs};
use crate::policy::{FsPolicy, WriteMode};
use crate::spec::{FsAccess, LandlockRule, MountSpec, OverlaySpec, Placeholder};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Top-level system directories exposed read-only by default. On merged-/usr hosts most
/// are symlinks and are recreated as symlinks.
const SYSTEM_DIRS: &[&str] = &["/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc"];
/// Secrets hidden inside the default-readable `/etc`.
const ETC_SECRETS: &[&str] = &[
    "/etc/shadow",
    "/etc/shadow-",
    "/etc/gshadow",
    "/etc/gshadow-",
    "/etc/sudoers",
    "/etc/sudoers.d",
    "/etc/security/opasswd",
    "/etc/ssl/private",
    "/etc/krb5.keytab",
    "/etc/credstore",
    "/etc/credstore.encrypted",
    "/etc/ssh/ssh_host_rsa_key",
    "/etc/ssh/ssh_host_ecdsa_key",
    "/etc/ssh/ssh_host_ed25519_key",
    "/etc/ssh/ssh_host_dsa_key",
];
/// Paths the sandbox gets fresh copies of; host paths there cannot be granted.
const SYNTHETIC: &[&str] = &["/proc", "/dev"];
/// Entries a socket scan may visit per granted tree before giving up with a caveat.
pub const SOCKET_SCAN_BUDGET: usize = 200_000;

/// A host path made visible at `target`, merged across the lists that name it.
#[derive(Debug, Clone)]
struct Grant {
    source: PathBuf,
    field: String,
    write: bool,
    exec: bool,
    system: bool,
    dir: bool,
}

/// What the planner needs from the view besides the mounts.
pub(super) struct View {
    pub mounts: Vec<MountSpec>,
    pub rules: Vec<LandlockRule>,
    pub placeholders: Vec<Placeholder>,
    pub overlay: Option<OverlaySpec>,
    /// Sandbox paths that show host content, and whether writes there persist or land in
    /// an overlay (either way the command may write).
    pub visible: Vec<(PathBuf, bool)>,
}

struct Builder<'a> {
    ctx: &'a Context,
    fs: &'a dyn HostFs,
    grants: BTreeMap<PathBuf, Grant>,
    mounts: Vec<MountSpec>,
    masks: BTreeMap<PathBuf, String>,
    placeholders: Vec<Placeholder>,
}

pub(super) fn build(
    fsp: &FsPolicy,
    disk: Option<u64>,
    ctx: &Context,
    fs: &dyn HostFs,
    caveats: &mut Vec<Caveat>,
) -> Result<View> {
    let mode = fsp.write_mode.unwrap_or(WriteMode::Direct);
    let mut b = Builder {
        ctx,
        fs,
        grants: BTreeMap::new(),
        mounts: Vec::new(),
        masks: BTreeMap::new(),
        placeholders: Vec::new(),
    };
    let symlinks = b.system_dirs();
    b.lists(fsp)?;
    b.volumes(fsp)?;
    let allowed_sockets = b.allowed_sockets(fsp)?;
    b.deny(fsp)?;
    b.protect(fsp, mode, caveats)?;
    b.sockets(&allowed_sockets, caveats);

    // Grants become binds, or overlays where writes must not reach the host.
    let mut layers = 0;
    let mut rules = Vec::new();
    for (target, g) in &b.grants {
        let overlay = g.dir && (mode == WriteMode::Ephemeral || (mode == WriteMode::Overlay && g.write));
        if overlay {
            b.mounts.push(MountSpec::Overlay {
                lower: g.source.clone(),
                target: target.clone(),
                exec: g.exec,
                layer: layers,
            });
            layers += 1;
        } else {
            if g.write && !g.dir && mode != WriteMode::Direct {
                caveats.push(caveat(
                    "CAPTURE_FILE_READONLY",
                    &format!(
                        "{} is a file; only directories can capture writes, so it is read-only here",
                        g.source.display()
                    ),
                    Some(&g.field),
                ));
            }
            let writable = g.write && mode == WriteMode::Direct;
            b.mounts.push(MountSpec::Bind { source: g.source.clone(), target: target.clone(), writable, exec: g.exec });
        }
        rules.push(LandlockRule {
            path: target.clone(),
            access: FsAccess {
                read: true,
                write: overlay || (g.write && mode == WriteMode::Direct),
                exec: g.exec,
                ..Default::default()
            },
        });
    }
    let visible: Vec<(PathBuf, bool)> =
        b.grants.iter().map(|(t, g)| (t.clone(), g.write || (g.dir && mode == WriteMode::Ephemeral))).collect();

    if !b.grants.contains_key(Path::new("/")) {
        for (link, to) in symlinks {
            b.mounts.push(MountSpec::Symlink { link, target: to });
        }
    }
    b.mounts.push(MountSpec::Proc { target: "/proc".into() });
    b.mounts.push(MountSpec::Dev { target: "/dev".into() });
    let private_tmp = !b.grants.contains_key(Path::new("/tmp"));
    if private_tmp {
        b.mounts.push(MountSpec::Tmpfs { target: "/tmp".into(), size: disk, mode: 0o1777 });
    } else if disk.is_some() && layers == 0 {
        caveats.push(caveat(
            "DISK_LIMIT_UNENFORCED",
            "limits.disk caps the private /tmp and overlay layers, but /tmp is the host's here",
            Some("limits.disk"),
        ));
    }
    for secret in ETC_SECRETS {
        let p = Path::new(secret);
        if b.fs.kind(p).is_some() && b.target_of(p).is_some() {
            b.masks.entry(p.to_path_buf()).or_insert_with(|| "defaults".into());
        }
    }
    let masks = std::mem::take(&mut b.masks);
    b.mounts.extend(masks.into_keys().map(|target| MountSpec::Mask { target }));
    // Stable sort by depth: a mount never lands under one made after it.
    b.mounts.sort_by_key(|m| depth(mount_target(m)));

    // Landlock on top of the view (defence in depth).
    // Listing any directory of the view reveals only names the view already exposes
    // (mount points and symlinks); without it `ls /` and tools that walk up fail.
    rules.push(LandlockRule { path: "/".into(), access: FsAccess { list: true, ..Default::default() } });
    let rw = FsAccess { read: true, write: true, ..Default::default() };
    rules.push(LandlockRule { path: "/proc".into(), access: FsAccess { read: true, ..Default::default() } });
    for dev in ["/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom", "/dev/shm"] {
        rules.push(LandlockRule { path: dev.into(), access: rw });
    }
    for tty in ["/dev/tty", "/dev/pts", "/dev/ptmx"] {
        rules.push(LandlockRule { path: tty.into(), access: FsAccess { ioctl: true, ..rw } });
    }
    if private_tmp {
        rules.push(LandlockRule { path: "/tmp".into(), access: rw });
    }
    for socket in &allowed_sockets {
        if let Some(target) = b.target_of(socket) {
            rules.push(LandlockRule { path: target, access: rw });
        }
    }
    rules.sort_by(|a, b| a.path.cmp(&b.path));
    rules.dedup_by(|a, b| a.path == b.path && a.access == b.access);

    let overlay = (layers > 0).then_some(OverlaySpec { size: disk, capture: mode == WriteMode::Overlay });
    Ok(View { mounts: b.mounts, rules, placeholders: b.placeholders, overlay, visible })
}

impl Builder<'_> {
    /// System directories (read-only, executable except /etc); returns the symlinks to
    /// recreate instead.
    fn system_dirs(&mut self) -> Vec<(PathBuf, PathBuf)> {
        let mut symlinks = Vec::new();
        for dir in SYSTEM_DIRS {
            let path = PathBuf::from(dir);
            match self.fs.kind(&path) {
                Some(FileKind::Dir) => {
                    let exec = *dir != "/etc";
                    let g = Grant {
                        source: path.clone(),
                        field: "defaults".into(),
                        write: false,
                        exec,
                        system: true,
                        dir: true,
                    };
                    self.grants.insert(path, g);
                }
                Some(FileKind::Symlink(target)) => symlinks.push((path, target)),
                _ => {}
            }
        }
        symlinks
    }

    /// `fs.read`, `fs.write`, `fs.exec`: host paths seen at the same place.
    fn lists(&mut self, fsp: &FsPolicy) -> Result<()> {
        for (name, list, write, exec) in
            [("read", &fsp.read, false, false), ("write", &fsp.write, true, false), ("exec", &fsp.exec, false, true)]
        {
            for (i, raw) in list.iter().enumerate() {
                let field = format!("fs.{name}[{i}]");
                let path = resolve_existing(&field, raw, self.ctx, self.fs)?;
                check_not_synthetic(&field, &path)?;
                let kind = self.fs.kind(&path);
                if kind == Some(FileKind::Socket) {
                    return Err(CorralError::policy(field, format!("{} is a Unix socket", path.display()))
                        .with_hint("list sockets the sandbox may connect to in fs.allowUnixSockets"));
                }
                let dir = kind == Some(FileKind::Dir);
                let g = self.grants.entry(path.clone()).or_insert_with(|| Grant {
                    source: path,
                    field: field.clone(),
                    write: false,
                    exec: false,
                    system: false,
                    dir,
                });
                if g.system {
                    g.field = field;
                    g.system = false;
                }
                g.write |= write;
                g.exec |= exec;
            }
        }
        Ok(())
    }

    /// `fs.volumes`: a host path seen at another place.
    fn volumes(&mut self, fsp: &FsPolicy) -> Result<()> {
        for (i, v) in fsp.volumes.iter().enumerate() {
            let source = resolve_existing(&format!("fs.volumes[{i}].source"), &v.source, self.ctx, self.fs)?;
            let field = format!("fs.volumes[{i}].target");
            if !v.target.starts_with('/') {
                return Err(CorralError::policy(field, "must be an absolute path inside the sandbox"));
            }
            let target = lexical(Path::new(&v.target));
            check_not_synthetic(&field, &target)?;
            if self.grants.get(&target).is_some_and(|g| !g.system) {
                return Err(CorralError::policy(field, format!("{} is already granted", target.display())));
            }
            // A target inside another grant must exist there: we never create files on the host.
            if let Some((_, host)) = self.host_of(&target) {
                if self.fs.kind(&host).is_none() {
                    return Err(CorralError::policy(
                        field,
                        format!("{} does not exist inside the granted tree that contains it", target.display()),
                    ));
                }
            }
            let dir = self.fs.kind(&source) == Some(FileKind::Dir);
            let g = Grant {
                source,
                field: format!("fs.volumes[{i}]"),
                write: !v.read_only,
                exec: v.exec,
                system: false,
                dir,
            };
            self.grants.insert(target, g);
        }
        Ok(())
    }

    /// `fs.allowUnixSockets`: sockets that stay connectable; bound in if not visible.
    fn allowed_sockets(&mut self, fsp: &FsPolicy) -> Result<BTreeSet<PathBuf>> {
        let mut allowed = BTreeSet::new();
        for (i, raw) in fsp.allow_unix_sockets.iter().enumerate() {
            let field = format!("fs.allowUnixSockets[{i}]");
            let path = resolve_existing(&field, raw, self.ctx, self.fs)?;
            if self.fs.kind(&path) != Some(FileKind::Socket) {
                return Err(CorralError::policy(field, format!("{} is not a Unix socket", path.display())));
            }
            if self.target_of(&path).is_none() {
                self.mounts.push(MountSpec::Bind {
                    source: path.clone(),
                    target: path.clone(),
                    writable: true,
                    exec: false,
                });
            }
            allowed.insert(path);
        }
        Ok(allowed)
    }

    /// `fs.deny`: hidden under an empty read-only file or directory.
    fn deny(&mut self, fsp: &FsPolicy) -> Result<()> {
        for (i, raw) in fsp.deny.iter().enumerate() {
            let field = format!("fs.deny[{i}]");
            let host = resolve_prefix(&absolute(&field, raw, self.ctx)?, self.fs);
            // Nothing to hide if it does not exist or the sandbox cannot see it anyway.
            let Some(target) = self.target_of(&host).filter(|_| self.fs.kind(&host).is_some()) else { continue };
            // Granting a path and hiding it (or what contains it) is a contradiction; the
            // defaults give way silently.
            if let Some((inner, g)) = self.grants.iter().find(|(t, g)| t.starts_with(&target) && !g.system) {
                return Err(CorralError::policy(
                    g.field.clone(),
                    format!("{} is inside {}, which {field} hides", inner.display(), target.display()),
                ));
            }
            self.masks.insert(target, field);
        }
        Ok(())
    }

    /// `fs.protect`: read-only inside writable trees, existing or not.
    fn protect(&mut self, fsp: &FsPolicy, mode: WriteMode, caveats: &mut Vec<Caveat>) -> Result<()> {
        for (i, raw) in fsp.protect.iter().enumerate() {
            let field = format!("fs.protect[{i}]");
            let lexical_path = absolute(&field, raw, self.ctx)?;
            let host = resolve_prefix(&lexical_path, self.fs);
            let Some((grant_target, g)) = self.grant_of(&host) else { continue };
            let writable = g.write || (g.dir && mode == WriteMode::Ephemeral);
            let exec = g.exec;
            if !writable || self.masks.keys().any(|m| host.starts_with(m)) {
                continue; // already read-only, or hidden
            }
            if let Some(FileKind::Symlink(_)) = self.fs.kind(&lexical_path) {
                caveats.push(caveat(
                    "PROTECTED_SYMLINK",
                    &format!(
                        "{} is a symlink: its target is protected, the link itself can be replaced",
                        lexical_path.display()
                    ),
                    Some(&field),
                ));
            }
            let source = if self.fs.kind(&host).is_some() {
                host.clone()
            } else {
                // Stand an empty placeholder up at the first missing component: nothing can be
                // created there or below while the sandbox runs.
                let mut existing = host.clone();
                while self.fs.kind(&existing).is_none() {
                    existing.pop();
                }
                let first_missing = host.strip_prefix(&existing).ok().and_then(|r| r.components().next());
                let Some(name) = first_missing else { continue };
                let relative = PathBuf::from(name.as_os_str());
                let dir = existing.join(&relative) != host;
                self.placeholders.push(Placeholder { root: existing.clone(), relative: relative.clone(), dir });
                existing.join(relative)
            };
            let target = join(&grant_target, source.strip_prefix(&g.source).unwrap_or(Path::new("")));
            self.mounts.push(MountSpec::Bind { source, target, writable: false, exec });
        }
        Ok(())
    }

    /// Masks every Unix socket in granted trees that is not explicitly allowed.
    fn sockets(&mut self, allowed: &BTreeSet<PathBuf>, caveats: &mut Vec<Caveat>) {
        let trees: Vec<(PathBuf, String)> =
            self.grants.values().filter(|g| g.dir && !g.system).map(|g| (g.source.clone(), g.field.clone())).collect();
        for (root, field) in trees {
            match self.fs.find_sockets(&root, SOCKET_SCAN_BUDGET) {
                Some(found) => {
                    for s in found.into_iter().filter(|s| !allowed.contains(s)) {
                        if let Some(target) = self.target_of(&s) {
                            self.masks.entry(target).or_insert_with(|| field.clone());
                        }
                    }
                }
                None => caveats.push(caveat(
                    "UNIX_SOCKETS_UNCHECKED",
                    &format!(
                        "{} has more than {SOCKET_SCAN_BUDGET} entries, so it was not searched for Unix sockets: any there stay connectable",
                        root.display()
                    ),
                    Some(&field),
                )),
            }
        }
    }

    /// The deepest grant whose host source contains `host`.
    fn grant_of(&self, host: &Path) -> Option<(PathBuf, Grant)> {
        self.grants
            .iter()
            .filter(|(_, g)| host.starts_with(&g.source))
            .max_by_key(|(t, _)| depth(t))
            .map(|(t, g)| (t.clone(), g.clone()))
    }

    /// Where the host path `host` appears inside the sandbox, if it does.
    fn target_of(&self, host: &Path) -> Option<PathBuf> {
        let (target, g) = self.grant_of(host)?;
        Some(join(&target, host.strip_prefix(&g.source).ok()?))
    }

    /// The grant containing sandbox path `target` and the host path behind it.
    fn host_of(&self, target: &Path) -> Option<(PathBuf, PathBuf)> {
        let (t, g) = self.grants.iter().filter(|(t, _)| target.starts_with(t)).max_by_key(|(t, _)| depth(t))?;
        Some((t.clone(), join(&g.source, target.strip_prefix(t).ok()?)))
    }
}

/// `base/rel`, without the trailing slash `Path::join` adds for an empty `rel`.
fn join(base: &Path, rel: &Path) -> PathBuf {
    if rel.as_os_str().is_empty() {
        base.to_path_buf()
    } else {
        base.join(rel)
    }
}

fn check_not_synthetic(field: &str, path: &Path) -> Result<()> {
    if let Some(s) = SYNTHETIC.iter().find(|s| path.starts_with(s)) {
        return Err(CorralError::policy(
            field,
            format!("{s} is private to the sandbox and cannot be granted from the host"),
        ));
    }
    Ok(())
}
