//! The file-system view: which host paths the sandbox sees, where, and how.
//!
//! Runs in: the client, when planning.
//!
//! Long because every rule about a host path is placed at every place that path appears in
//! one pass, and splitting that pass would let a rule be placed at one place and not another.
//!
//! Grants (system defaults, `read`, `write`, `exec`, `volumes`) become binds or, in the
//! capturing write modes, overlays. Every other rule is about a host path and holds at
//! every place that path appears in the view (a volume can show a granted tree a second
//! time, elsewhere): `deny` hides it under an empty read-only mask, `protect` pins it
//! read-only, `noexec` and `exec` set whether its files run, and the masks over `/etc`'s
//! secrets follow it too; so do the sockets `allowUnixSockets` lists.
//!
//! Other Unix sockets in granted trees need nothing here: the backend's socket gate refuses
//! every connection to a pathname socket the policy does not list (or the sandbox did not
//! bind itself), whenever the socket appeared, so no tree is searched for them.
//!
//! A protected path stays what it is under its name: every directory and symlink on the
//! way to it inside a writable place is pinned (mounted on itself), because a mount point
//! cannot be renamed, replaced or removed. A denied or protected path that does not exist
//! yet gets an empty placeholder on the host for the sandbox's lifetime, so one created
//! later is still hidden or read-only. A rule that matches nothing in the view is a
//! caveat, never silence.
//!
//! Execution: the system directories and `exec` grants run programs, and so does every
//! place the command can write unless `execWritable` is false (W^X: then no place is both
//! writable and executable). Whatever may not run is mounted `noexec`, which the dynamic
//! loader cannot get around (mapping a file executable is refused too); whatever may, runs
//! by every route.

use super::paths::{absolute, depth, lexical, mount_target, resolve_as_written, resolve_prefix};
use super::{caveat, Caveat};
use crate::error::{CorralError, Result};
use crate::host::{Context, FileKind, HostFs};
use crate::policy::{FsPolicy, WriteMode};
use crate::spec::{FsAccess, LandlockRule, MountSpec, OverlaySpec, Placeholder};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::ffi::OsString;
use std::path::{Component, Path, PathBuf};

/// Top-level system directories exposed read-only by default. On merged-/usr hosts most
/// are symlinks and are recreated as symlinks.
const SYSTEM_DIRS: &[&str] = &["/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc"];
/// Secrets hidden inside the default-readable `/etc`, wherever it is visible.
pub const ETC_SECRETS: &[&str] = &[
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
/// Top-level names corral uses while it builds the view.
const RESERVED_PREFIX: &str = ".corral";
/// The one reserved name a volume may take: where `template()` shows its Python module
/// when a volume hides the module's own path. Nothing builds the view with it.
const FORK_HELPER_TARGET: &str = "/.corral-python";
/// Symlinks followed while walking the view, as the kernel allows.
const MAX_LINKS: usize = 40;
/// Submounts named in a caveat before "and N more".
const NAMED_SUBMOUNTS: usize = 3;

/// A host path made visible at a target, merged across the lists that name it.
#[derive(Debug, Clone)]
struct Grant {
    source: PathBuf,
    field: String,
    write: bool,
    exec: bool,
    /// A `noexec` rule names exactly this grant.
    noexec: bool,
    system: bool,
    dir: bool,
    /// Writes land in an overlay of `source` instead of on the host.
    overlay: bool,
}

/// What the planner needs from the view besides the mounts.
pub(super) struct View {
    pub mounts: Vec<MountSpec>,
    pub rules: Vec<LandlockRule>,
    pub placeholders: Vec<Placeholder>,
    pub overlay: Option<OverlaySpec>,
    /// The sandbox has a `/tmp` of its own (the host's is not granted).
    pub private_tmp: bool,
    /// Sandbox paths that show host content, and whether writes there persist or land in
    /// an overlay (either way the command may write).
    pub visible: Vec<(PathBuf, bool)>,
    /// Those of `visible` that only the system defaults grant (no rule of the policy's).
    pub defaults: Vec<PathBuf>,
    /// Host paths of every carve-out (masked, pinned, placeholder): if one is replaced
    /// after a sandbox was built, that sandbox no longer shows the policy's view.
    pub watch: Vec<PathBuf>,
    /// Memory files must not run either (W^X).
    pub memfd_noexec_required: bool,
    /// Every place in the view of the sockets `allowUnixSockets` lists.
    pub unix_sockets: Vec<PathBuf>,
}

/// Which part of the view a sandbox path falls in.
#[derive(Debug, Clone, PartialEq)]
enum Owner {
    /// Inside the grant whose target is this.
    Grant(PathBuf),
    /// `/proc`, `/dev`, the private `/tmp`: nothing of the host.
    Synthetic,
}

/// One directory entry a path goes through, as the sandbox resolves it.
#[derive(Debug)]
enum Step {
    Entry { path: PathBuf, host: PathBuf, writable: bool, mount_root: bool, links: u64 },
    Link { path: PathBuf, host: PathBuf, writable: bool },
    Missing { path: PathBuf, host: PathBuf, writable: bool, last: bool },
}

#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Pin {
    read_only: bool,
    exec: Option<bool>,
}

struct Builder<'a> {
    ctx: &'a Context,
    fs: &'a dyn HostFs,
    mode: WriteMode,
    exec_writable: bool,
    grants: BTreeMap<PathBuf, Grant>,
    private_tmp: bool,
    masks: BTreeMap<PathBuf, String>,
    pins: BTreeMap<PathBuf, Pin>,
    binds: Vec<MountSpec>,
    placeholders: BTreeMap<PathBuf, Placeholder>,
    watch: BTreeSet<PathBuf>,
    /// Directories already checked for files with names outside them.
    link_checked: BTreeSet<PathBuf>,
    tmp_exec: bool,
    shm_exec: bool,
    /// Landlock rules beyond the grants' own (exec at an alias, allowed sockets).
    rules: Vec<LandlockRule>,
}

pub(super) fn build(fsp: &FsPolicy, ctx: &Context, fs: &dyn HostFs, caveats: &mut Vec<Caveat>) -> Result<View> {
    let exec_writable = fsp.exec_writable.unwrap_or(true);
    let mut b = Builder {
        ctx,
        fs,
        mode: fsp.write_mode.unwrap_or(WriteMode::Direct),
        exec_writable,
        grants: BTreeMap::new(),
        private_tmp: true,
        masks: BTreeMap::new(),
        pins: BTreeMap::new(),
        binds: Vec::new(),
        placeholders: BTreeMap::new(),
        watch: BTreeSet::new(),
        link_checked: BTreeSet::new(),
        tmp_exec: exec_writable,
        shm_exec: exec_writable,
        rules: Vec::new(),
    };
    let symlinks = b.system_dirs();
    let exec_paths = b.lists(fsp)?;
    b.volumes(fsp)?;
    b.settle_grants(&exec_paths, caveats)?;
    b.noexec(fsp, caveats)?;
    b.check_exec(&exec_paths)?;
    let unix_sockets = b.allowed_sockets(fsp)?;
    b.deny(fsp, caveats)?;
    b.protect(fsp, caveats)?;
    b.etc_secrets();
    Ok(View { unix_sockets, ..b.finish(symlinks, caveats) })
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
                    let g = Grant {
                        source: path.clone(),
                        field: "defaults".into(),
                        write: false,
                        exec: *dir != "/etc",
                        noexec: false,
                        system: true,
                        dir: true,
                        overlay: false,
                    };
                    self.grants.insert(path, g);
                }
                Some(FileKind::Symlink(target)) => symlinks.push((path, target)),
                _ => {}
            }
        }
        symlinks
    }

    /// `fs.read`, `fs.write`, `fs.exec`: host paths seen at the same place. Returns the
    /// `exec` paths, which also hold wherever else those paths appear.
    fn lists(&mut self, fsp: &FsPolicy) -> Result<Vec<PathBuf>> {
        let mut exec_paths = Vec::new();
        for (name, list, write, exec) in
            [("read", &fsp.read, false, false), ("write", &fsp.write, true, false), ("exec", &fsp.exec, false, true)]
        {
            for (i, raw) in list.iter().enumerate() {
                let field = format!("fs.{name}[{i}]");
                let path = resolve_as_written(&field, raw, self.ctx, self.fs)?;
                check_target(&field, &path)?;
                let kind = self.fs.kind(&path);
                if kind == Some(FileKind::Socket) {
                    return Err(CorralError::policy(field, format!("{} is a Unix socket", path.display()))
                        .with_hint("list sockets the sandbox may connect to in fs.allowUnixSockets"));
                }
                if exec {
                    exec_paths.push(path.clone());
                }
                let dir = kind == Some(FileKind::Dir);
                let g = self.grants.entry(path.clone()).or_insert_with(|| Grant {
                    source: path,
                    field: field.clone(),
                    write: false,
                    exec: false,
                    noexec: false,
                    system: false,
                    dir,
                    overlay: false,
                });
                if g.system {
                    g.field = field;
                    g.system = false;
                }
                g.write |= write;
                g.exec |= exec;
            }
        }
        Ok(exec_paths)
    }

    /// `fs.volumes`: a host path seen at another place.
    fn volumes(&mut self, fsp: &FsPolicy) -> Result<()> {
        for (i, v) in fsp.volumes.iter().enumerate() {
            let source = resolve_as_written(&format!("fs.volumes[{i}].source"), &v.source, self.ctx, self.fs)?;
            let field = format!("fs.volumes[{i}].target");
            if !v.target.starts_with('/') {
                return Err(CorralError::policy(field, "must be an absolute path inside the sandbox"));
            }
            let target = lexical(Path::new(&v.target));
            check_target(&field, &target)?;
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
                noexec: false,
                system: false,
                dir,
                overlay: false,
            };
            self.grants.insert(target, g);
        }
        Ok(())
    }

    /// Decisions that need every grant: what a containing grant says about the system
    /// directories, where `exec` paths appear again, which grants become overlays.
    fn settle_grants(&mut self, exec_paths: &[PathBuf], caveats: &mut Vec<Caveat>) -> Result<()> {
        // `--write /` makes /usr writable too; the system grants stay separate mounts so
        // that their programs still run.
        let explicit: Vec<(PathBuf, PathBuf, bool)> = self
            .grants
            .iter()
            .filter(|(_, g)| !g.system)
            .map(|(t, g)| (t.clone(), g.source.clone(), g.write))
            .collect();
        // Under W^X they stay read-only instead: their programs must run.
        let exec_writable = self.exec_writable;
        for (target, g) in self.grants.iter_mut().filter(|(_, g)| g.system && (exec_writable || !g.exec)) {
            for (t, s, write) in &explicit {
                if target.starts_with(t) && g.source.strip_prefix(s).ok() == target.strip_prefix(t).ok() {
                    g.write |= write;
                }
            }
        }
        for g in self.grants.values_mut() {
            if exec_paths.iter().any(|e| g.source.starts_with(e)) {
                g.exec = true;
            }
        }
        self.private_tmp = !self.grants.contains_key(Path::new("/tmp"));
        // A grant shown inside a volume is mounted on what the volume shows there, which
        // must exist: we never create files on the host.
        for (target, g) in &self.grants {
            let outer =
                self.grants.iter().filter(|(t, _)| target.starts_with(t) && *t != target).max_by_key(|(t, _)| depth(t));
            let Some((t, o)) = outer else { continue };
            let behind = join(&o.source, target.strip_prefix(t).unwrap_or(Path::new("")));
            if *t != o.source && self.fs.kind(&behind).is_none() {
                return Err(CorralError::policy(
                    g.field.clone(),
                    format!(
                        "{} lies inside the volume at {}, where nothing exists to show it on ({} is missing)",
                        target.display(),
                        t.display(),
                        behind.display()
                    ),
                ));
            }
        }
        let ephemeral = self.mode == WriteMode::Ephemeral;
        let capture = self.mode == WriteMode::Overlay;
        for g in self.grants.values_mut() {
            let wanted = g.dir && (ephemeral || (capture && g.write));
            // W^X: a place that runs programs is never made writable by an overlay.
            if !wanted || (!self.exec_writable && g.exec && !g.write) {
                continue;
            }
            // Inside a user namespace the host's mounts are locked to the trees that
            // contain them, and an overlay cannot take such a tree as its lower layer.
            let inner = self.fs.submounts(&g.source);
            if inner.is_empty() {
                g.overlay = true;
                continue;
            }
            let mut names: Vec<String> = inner.iter().take(NAMED_SUBMOUNTS).map(|m| m.display().to_string()).collect();
            if inner.len() > NAMED_SUBMOUNTS {
                names.push(format!("and {} more", inner.len() - NAMED_SUBMOUNTS));
            }
            caveats.push(caveat(
                "OVERLAY_SUBMOUNTS",
                &format!(
                    "{} contains mount points ({}), and an overlay cannot be made over such a tree in a user namespace: it is read-only here, so writes to it fail",
                    g.source.display(),
                    names.join(", ")
                ),
                Some(&g.field),
            ));
        }
        Ok(())
    }

    /// Whether the command may write at the grant `target` (on the host or in an overlay).
    fn writable(&self, target: &Path) -> bool {
        self.grants.get(target).is_some_and(|g| g.overlay || (g.write && self.mode == WriteMode::Direct))
    }

    /// Whether files under the grant `target` run.
    fn runs(&self, target: &Path) -> bool {
        self.grants.get(target).is_some_and(|g| !g.noexec && (g.exec || (self.exec_writable && self.writable(target))))
    }

    /// `fs.noexec`: never executable, wherever the path appears.
    fn noexec(&mut self, fsp: &FsPolicy, caveats: &mut Vec<Caveat>) -> Result<()> {
        for (i, raw) in fsp.noexec.iter().enumerate() {
            let field = format!("fs.noexec[{i}]");
            let lexical_path = absolute(&field, raw, self.ctx)?;
            // The private /tmp and /dev/shm are the sandbox's own: the path names them.
            if self.private_tmp && lexical_path == Path::new("/tmp") {
                self.tmp_exec = false;
                continue;
            }
            if lexical_path == Path::new("/dev/shm") {
                self.shm_exec = false;
                continue;
            }
            let host = resolve_prefix(&lexical_path, self.fs);
            let places = self.places(&host);
            if places.is_empty() {
                self.unmatched(&field, &lexical_path, caveats)?;
            }
            for place in places {
                match self.grants.get_mut(&place) {
                    Some(g) => g.noexec = true,
                    None => self.pins.entry(place).or_default().exec = Some(false),
                }
            }
        }
        Ok(())
    }

    /// `fs.exec` paths run at every place they appear; with W^X nothing is both writable
    /// and executable.
    fn check_exec(&mut self, exec_paths: &[PathBuf]) -> Result<()> {
        for e in exec_paths {
            for place in self.places(e) {
                let Some(Owner::Grant(t)) = self.owner(&place) else { continue };
                if self.runs(&t)
                    || self.grants[&t].noexec
                    || self.pins.get(&place).is_some_and(|p| p.exec == Some(false))
                {
                    continue;
                }
                self.pins.entry(place.clone()).or_default().exec = Some(true);
                let write = self.writable(&t);
                if write && !self.exec_writable {
                    return Err(wx_conflict(&self.grants[&t].field));
                }
                self.rules.push(LandlockRule {
                    path: place,
                    access: FsAccess { read: true, write, exec: true, ..Default::default() },
                });
            }
        }
        if !self.exec_writable {
            if let Some(g) = self.grants.iter().find(|(t, g)| g.exec && !g.noexec && self.writable(t)).map(|(_, g)| g) {
                return Err(wx_conflict(&g.field));
            }
        }
        Ok(())
    }

    /// `fs.allowUnixSockets`: sockets that stay connectable, bound in if not visible;
    /// returns every place they are in the view.
    fn allowed_sockets(&mut self, fsp: &FsPolicy) -> Result<Vec<PathBuf>> {
        let mut allowed = Vec::new();
        let rw = FsAccess { read: true, write: true, ..Default::default() };
        for (i, raw) in fsp.allow_unix_sockets.iter().enumerate() {
            let field = format!("fs.allowUnixSockets[{i}]");
            let path = resolve_as_written(&field, raw, self.ctx, self.fs)?;
            if self.fs.kind(&path) != Some(FileKind::Socket) {
                return Err(CorralError::policy(field, format!("{} is not a Unix socket", path.display())));
            }
            let mut places = self.places(&path);
            if places.is_empty() {
                check_target(&field, &path)?;
                self.binds.push(MountSpec::Bind {
                    source: path.clone(),
                    target: path.clone(),
                    writable: true,
                    exec: false,
                });
                places.push(path.clone());
            }
            for place in places {
                self.rules.push(LandlockRule { path: place.clone(), access: rw });
                if !allowed.contains(&place) {
                    allowed.push(place);
                }
            }
        }
        Ok(allowed)
    }

    /// `fs.deny`: hidden under an empty read-only file or directory at every place the
    /// path appears, whether it exists now or is created later.
    fn deny(&mut self, fsp: &FsPolicy, caveats: &mut Vec<Caveat>) -> Result<()> {
        for (i, raw) in fsp.deny.iter().enumerate() {
            let field = format!("fs.deny[{i}]");
            let lexical_path = absolute(&field, raw, self.ctx)?;
            let host = resolve_prefix(&lexical_path, self.fs);
            // What stands at the path: the thing itself, or a placeholder at its first
            // missing component (hiding that hides everything later created below it).
            let (object, placeholder) = match self.fs.kind(&host) {
                Some(_) => (host.clone(), self.standing_placeholder(&host)),
                None => match self.first_missing(&host, raw.ends_with('/')) {
                    Some(p) => (p.root.join(&p.relative), Some(p)),
                    None => (host.clone(), None),
                },
            };
            let places = self.places(&object);
            if places.is_empty() {
                self.unmatched(&field, &lexical_path, caveats)?;
                continue;
            }
            // Granting a path and hiding it (or what contains it) is a contradiction; the
            // defaults give way silently.
            for place in &places {
                if let Some((inner, g)) = self.grants.iter().find(|(t, g)| t.starts_with(place) && !g.system) {
                    return Err(CorralError::policy(
                        g.field.clone(),
                        format!("{} is inside {}, which {field} hides", inner.display(), place.display()),
                    ));
                }
            }
            if let Some(links) = self.fs.owner(&object).map(|o| o.links).filter(|n| *n > 1 && !self.is_dir(&object)) {
                caveats.push(caveat(
                    "DENIED_FILE_HAS_LINKS",
                    &format!(
                        "{} has {links} hard links: its other names are not hidden unless denied too",
                        object.display()
                    ),
                    Some(&field),
                ));
            }
            if self.fs.kind(&object) == Some(FileKind::Dir) {
                self.links_inside(&object, &field, true, caveats);
            }
            match placeholder {
                Some(p) if self.fs.kind(&host).is_some() => {
                    self.placeholders.entry(object.clone()).or_insert(p);
                }
                Some(p) => {
                    self.reserve(p, &field, "hidden", caveats);
                }
                None => {}
            }
            self.watch.insert(object);
            for place in places {
                self.masks.entry(place).or_insert_with(|| field.clone());
            }
        }
        Ok(())
    }

    /// `fs.protect`: read-only inside writable places, existing or not, and unchanged
    /// under its name whatever happens to the directories and symlinks on the way.
    fn protect(&mut self, fsp: &FsPolicy, caveats: &mut Vec<Caveat>) -> Result<()> {
        for (i, raw) in fsp.protect.iter().enumerate() {
            let field = format!("fs.protect[{i}]");
            let lexical_path = absolute(&field, raw, self.ctx)?;
            let as_dir = raw.ends_with('/');
            // The path as written, and what it resolves to now: both must hold.
            let mut starts = self.places(&lexical_path);
            for p in self.places(&resolve_prefix(&lexical_path, self.fs)) {
                if !starts.contains(&p) {
                    starts.push(p);
                }
            }
            if starts.is_empty() {
                self.unmatched(&field, &lexical_path, caveats)?;
                continue;
            }
            for start in starts {
                let (steps, reached) = self.walk(&start);
                let count = steps.len();
                for (k, step) in steps.into_iter().enumerate() {
                    let last = reached && k + 1 == count;
                    match step {
                        Step::Entry { path, host, writable: true, mount_root, links } => {
                            if last && self.fs.kind(&host) == Some(FileKind::Dir) {
                                self.links_inside(&host, &field, false, caveats);
                            }
                            if last && mount_root {
                                let g = self.grants.get_mut(&path).expect("a grant root");
                                if g.write {
                                    return Err(CorralError::policy(
                                        field,
                                        format!("{} is itself granted writable by {}", path.display(), g.field),
                                    ));
                                }
                                // Writable only by ephemeral mode: keep it read-only instead.
                                g.overlay = false;
                                continue;
                            }
                            if last && links > 1 {
                                caveats.push(caveat(
                                    "PROTECTED_FILE_HAS_LINKS",
                                    &format!(
                                        "{} has {links} hard links: its other names can still be written unless protected too",
                                        host.display()
                                    ),
                                    Some(&field),
                                ));
                            }
                            if last || !mount_root {
                                if let Some(p) = self.standing_placeholder(&host).filter(|_| last) {
                                    self.placeholders.entry(host.clone()).or_insert(p);
                                }
                                self.pins.entry(path).or_default().read_only |= last;
                                self.watch.insert(host);
                            }
                        }
                        Step::Link { path, host, writable: true } => {
                            self.pins.entry(path).or_default();
                            self.watch.insert(host);
                        }
                        Step::Missing { path, host, writable: true, last } => {
                            let (Some(root), Some(name)) = (host.parent(), host.file_name()) else { continue };
                            let p = Placeholder {
                                root: root.to_path_buf(),
                                relative: PathBuf::from(name),
                                dir: !last || as_dir,
                            };
                            if self.reserve(p, &field, "protected", caveats) {
                                self.pins.entry(path).or_default().read_only = true;
                                self.watch.insert(host);
                            }
                        }
                        _ => {}
                    }
                }
            }
        }
        Ok(())
    }

    /// Files inside the denied or protected directory `dir` that have other names outside
    /// it (hard links made beforehand, by the user, a tool such as `git clone --local`, or
    /// an earlier run): their content is reachable there. Said as a caveat naming the first
    /// few and the count, or that the directory was too large or deep to check in full;
    /// once per directory. (The sandbox cannot add such a name itself: a link across mounts
    /// fails, and the carve-out is a mount of its own.)
    fn links_inside(&mut self, dir: &Path, field: &str, denied: bool, caveats: &mut Vec<Caveat>) {
        if !self.link_checked.insert(dir.to_path_buf()) {
            return;
        }
        let found = self.fs.linked_out(dir);
        let (code, reach) = match denied {
            true => ("DENIED_DIR_HAS_LINKS", "their content shows there unless those are denied too"),
            false => ("PROTECTED_DIR_HAS_LINKS", "those can still change them where they are writable"),
        };
        if found.count > 0 {
            let mut named: Vec<String> = found.first.iter().map(|p| p.display().to_string()).collect();
            if found.count > named.len() as u64 {
                named.push(format!("and {} more", found.count - named.len() as u64));
            }
            caveats.push(caveat(
                code,
                &format!(
                    "{} holds {} file(s) with other names (hard links) outside it: {}; {reach}",
                    dir.display(),
                    found.count,
                    named.join(", ")
                ),
                Some(field),
            ));
        }
        if !found.complete {
            caveats.push(caveat(
                "LINKS_UNCHECKED",
                &format!(
                    "{} could not be checked in full for hard links (it holds a directory you cannot read, or is larger than corral checks: at most {} entries, {} levels deep): files there may have other names outside it",
                    dir.display(),
                    crate::host::LINK_WALK_ENTRIES,
                    crate::host::LINK_WALK_DEPTH
                ),
                Some(field),
            ));
        }
    }

    /// `/etc`'s secrets, wherever `/etc` is visible.
    fn etc_secrets(&mut self) {
        for secret in ETC_SECRETS {
            let p = Path::new(secret);
            if self.fs.kind(p).is_none() {
                continue;
            }
            for place in self.places(p) {
                self.masks.entry(place).or_insert_with(|| "defaults".into());
            }
            self.watch.insert(p.to_path_buf());
        }
    }

    /// The mounts in order, the Landlock rules, and what the planner needs besides.
    fn finish(mut self, symlinks: Vec<(PathBuf, PathBuf)>, caveats: &mut Vec<Caveat>) -> View {
        let mut mounts = Vec::new();
        let mut rules = std::mem::take(&mut self.rules);
        let mut layers = 0;
        for (target, g) in &self.grants {
            if g.overlay {
                mounts.push(MountSpec::Overlay {
                    lower: g.source.clone(),
                    target: target.clone(),
                    exec: self.runs(target),
                    layer: layers,
                });
                layers += 1;
            } else {
                if g.write && !g.dir && self.mode != WriteMode::Direct {
                    caveats.push(caveat(
                        "CAPTURE_FILE_READONLY",
                        &format!(
                            "{} is a file; only directories can capture writes, so it is read-only here",
                            g.source.display()
                        ),
                        Some(&g.field),
                    ));
                }
                mounts.push(MountSpec::Bind {
                    source: g.source.clone(),
                    target: target.clone(),
                    writable: self.writable(target),
                    exec: self.runs(target),
                });
            }
            rules.push(LandlockRule {
                path: target.clone(),
                access: FsAccess {
                    read: true,
                    write: self.writable(target),
                    exec: self.runs(target),
                    ..Default::default()
                },
            });
        }
        mounts.append(&mut self.binds);
        // Pins under a mask are hidden anyway; grant roots are mount points already.
        for (target, pin) in &self.pins {
            if self.masks.keys().any(|m| target.starts_with(m)) || self.grants.contains_key(target) {
                continue;
            }
            mounts.push(MountSpec::Pin { target: target.clone(), read_only: pin.read_only, exec: pin.exec });
        }
        let visible: Vec<(PathBuf, bool)> = self.grants.keys().map(|t| (t.clone(), self.writable(t))).collect();
        let defaults: Vec<PathBuf> = self.grants.iter().filter(|(_, g)| g.system).map(|(t, _)| t.clone()).collect();

        if !self.grants.contains_key(Path::new("/")) {
            for (link, to) in symlinks {
                mounts.push(MountSpec::Symlink { link, target: to });
            }
        }
        mounts.push(MountSpec::Proc { target: "/proc".into() });
        mounts.push(MountSpec::Dev { target: "/dev".into(), shm_exec: self.shm_exec });
        if self.private_tmp {
            mounts.push(MountSpec::Tmpfs { target: "/tmp".into(), exec: self.tmp_exec });
        }
        let masks = std::mem::take(&mut self.masks);
        mounts.extend(masks.into_keys().map(|target| MountSpec::Mask { target }));
        // Stable sort by depth: a mount never lands under one made after it.
        mounts.sort_by_key(|m| depth(mount_target(m)));

        // Landlock on top of the view (defence in depth).
        // Listing any directory of the view reveals only names the view already exposes
        // (mount points and symlinks); without it `ls /` and tools that walk up fail.
        rules.push(LandlockRule { path: "/".into(), access: FsAccess { list: true, ..Default::default() } });
        let rw = FsAccess { read: true, write: true, ..Default::default() };
        rules.push(LandlockRule { path: "/proc".into(), access: FsAccess { read: true, ..Default::default() } });
        for dev in ["/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom"] {
            rules.push(LandlockRule { path: dev.into(), access: rw });
        }
        rules.push(LandlockRule { path: "/dev/shm".into(), access: FsAccess { exec: self.shm_exec, ..rw } });
        for tty in ["/dev/tty", "/dev/pts", "/dev/ptmx"] {
            rules.push(LandlockRule { path: tty.into(), access: FsAccess { ioctl: true, ..rw } });
        }
        if self.private_tmp {
            rules.push(LandlockRule { path: "/tmp".into(), access: FsAccess { exec: self.tmp_exec, ..rw } });
        }
        rules.sort_by(|a, b| a.path.cmp(&b.path));
        rules.dedup_by(|a, b| a.path == b.path && a.access == b.access);

        let overlay = (layers > 0).then_some(OverlaySpec { capture: self.mode == WriteMode::Overlay });
        View {
            mounts,
            rules,
            placeholders: self.placeholders.into_values().collect(),
            overlay,
            private_tmp: self.private_tmp,
            visible,
            defaults,
            watch: self.watch.into_iter().collect(),
            memfd_noexec_required: !self.exec_writable,
            unix_sockets: Vec::new(),
        }
    }

    /// Every sandbox path at which the host path `host`, or part of it, is visible (it need
    /// not exist): where a grant's source contains it, and the target of every grant whose
    /// source lies inside it (`--volume H/.aws/credentials:/creds` shows part of `H/.aws`
    /// at `/creds`, so a rule about `H/.aws` holds there too).
    fn places(&self, host: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for (target, g) in &self.grants {
            let place = match g.source.strip_prefix(host) {
                Ok(rel) if !rel.as_os_str().is_empty() => target.clone(),
                _ => {
                    let Ok(rel) = host.strip_prefix(&g.source) else { continue };
                    join(target, rel)
                }
            };
            if self.owner(&place) == Some(Owner::Grant(target.clone())) && !out.contains(&place) {
                out.push(place);
            }
        }
        out
    }

    /// The part of the view the sandbox path `p` is in: the deepest grant or synthetic
    /// tree containing it.
    fn owner(&self, p: &Path) -> Option<Owner> {
        let grant = self.grants.keys().filter(|t| p.starts_with(t)).max_by_key(|t| depth(t));
        let synthetic = SYNTHETIC
            .iter()
            .map(Path::new)
            .chain(self.private_tmp.then_some(Path::new("/tmp")))
            .filter(|s| p.starts_with(s))
            .max_by_key(|s| depth(s));
        match (grant, synthetic) {
            (Some(t), Some(s)) if depth(s) >= depth(t) => Some(Owner::Synthetic),
            (Some(t), _) => Some(Owner::Grant(t.clone())),
            (None, Some(_)) => Some(Owner::Synthetic),
            (None, None) => None,
        }
    }

    /// The directory entries the sandbox goes through to resolve `start`, following
    /// symlinks as it would (inside its own view). The second value says whether the walk
    /// reached the end of the path (the last step is then the object itself).
    fn walk(&self, start: &Path) -> (Vec<Step>, bool) {
        let mut todo: VecDeque<OsString> = names(start).collect();
        let mut cur = PathBuf::from("/");
        let mut steps = Vec::new();
        let mut links = 0;
        while let Some(name) = todo.pop_front() {
            let next = cur.join(&name);
            if self.masks.keys().any(|m| next.starts_with(m)) {
                return (steps, false); // hidden: deny wins
            }
            let t = match self.owner(&next) {
                Some(Owner::Grant(t)) => t,
                // The read-only skeleton of the root above grants, or nothing at all.
                None if self.grants.keys().any(|t| t.starts_with(&next)) => {
                    cur = next;
                    continue;
                }
                None | Some(Owner::Synthetic) => return (steps, false),
            };
            let g = &self.grants[&t];
            let host = join(&g.source, next.strip_prefix(&t).unwrap_or(Path::new("")));
            let writable = self.writable(&t);
            match self.fs.kind(&host) {
                None => {
                    let last = todo.is_empty();
                    steps.push(Step::Missing { path: next, host, writable, last });
                    return (steps, false);
                }
                Some(FileKind::Symlink(to)) => {
                    links += 1;
                    if links > MAX_LINKS {
                        return (steps, false);
                    }
                    steps.push(Step::Link { path: next, host, writable });
                    let followed = lexical(&cur.join(&to));
                    for part in names(&followed).collect::<Vec<_>>().into_iter().rev() {
                        todo.push_front(part);
                    }
                    cur = PathBuf::from("/");
                }
                Some(kind) => {
                    let mount_root = self.grants.contains_key(&next);
                    let links = self.fs.owner(&host).map(|o| o.links).unwrap_or(1);
                    let dir = kind == FileKind::Dir;
                    steps.push(Step::Entry {
                        path: next.clone(),
                        host,
                        writable,
                        mount_root,
                        links: if dir { 1 } else { links },
                    });
                    if !dir && !todo.is_empty() {
                        return (steps, false);
                    }
                    cur = next;
                }
            }
        }
        (steps, true)
    }

    /// The placeholder for a path that does not exist: its first missing component, in the
    /// existing directory above it; a directory if more follows or `as_dir` says so, else
    /// an empty file.
    fn first_missing(&self, host: &Path, as_dir: bool) -> Option<Placeholder> {
        let mut existing = host.to_path_buf();
        while self.fs.kind(&existing).is_none() {
            existing.pop();
        }
        let name = host.strip_prefix(&existing).ok()?.components().next()?;
        let relative = PathBuf::from(name.as_os_str());
        let dir = as_dir || existing.join(&relative) != host;
        Some(Placeholder { root: existing, relative, dir })
    }

    /// An empty file or directory standing where a carve-out is may be another sandbox's
    /// placeholder, which its helper removes when that sandbox ends unless someone else
    /// still stands on it: this sandbox stands on it too (the helper finds it existing).
    fn standing_placeholder(&self, host: &Path) -> Option<Placeholder> {
        if !self.fs.is_empty(host) {
            return None;
        }
        let (root, name) = (host.parent()?, host.file_name()?);
        Some(Placeholder { root: root.to_path_buf(), relative: PathBuf::from(name), dir: self.is_dir(host) })
    }

    /// Records a placeholder, if the caller can create it; otherwise says that one created
    /// later (by someone who can) would not be covered.
    fn reserve(&mut self, p: Placeholder, field: &str, what: &str, caveats: &mut Vec<Caveat>) -> bool {
        let path = p.root.join(&p.relative);
        if !self.fs.writable(&p.root) {
            caveats.push(caveat(
                "NOT_RESERVED",
                &format!(
                    "{} does not exist and you cannot create it to reserve its place: if someone else creates it while a sandbox exists, it is not {what} there",
                    path.display()
                ),
                Some(field),
            ));
            return false;
        }
        self.placeholders.entry(path).or_insert(p);
        true
    }

    /// A rule that names nothing the sandbox can see. A path that does not exist on the
    /// host but lies inside a volume's target is a sandbox path where a host path was
    /// meant: refused, with the host path to use.
    fn unmatched(&self, field: &str, path: &Path, caveats: &mut Vec<Caveat>) -> Result<()> {
        let volume =
            self.grants.iter().filter(|(t, g)| path.starts_with(t) && **t != g.source).max_by_key(|(t, _)| depth(t));
        if let Some((target, g)) = volume.filter(|_| self.fs.canonicalize(path).is_err()) {
            let host = join(&g.source, path.strip_prefix(target).unwrap_or(Path::new("")));
            return Err(CorralError::policy(
                field,
                format!(
                    "{} is inside the volume at {}, but rules take host paths and nothing of the host is visible there",
                    path.display(),
                    target.display()
                ),
            )
            .with_hint(format!("write the host path, {}", host.display())));
        }
        caveats.push(caveat(
            "RULE_UNMATCHED",
            &format!("{} is not visible in the sandbox: the rule applies to nothing", path.display()),
            Some(field),
        ));
        Ok(())
    }

    fn is_dir(&self, p: &Path) -> bool {
        self.fs.kind(p) == Some(FileKind::Dir)
    }

    /// The grant containing sandbox path `target` and the host path behind it.
    fn host_of(&self, target: &Path) -> Option<(PathBuf, PathBuf)> {
        let (t, g) = self.grants.iter().filter(|(t, _)| target.starts_with(t)).max_by_key(|(t, _)| depth(t))?;
        Some((t.clone(), join(&g.source, target.strip_prefix(t).ok()?)))
    }
}

fn wx_conflict(field: &str) -> CorralError {
    CorralError::policy(field, "is both writable and executable, and fs.execWritable is false (W^X)")
        .with_hint("drop one of the two, or let writable places run programs (fs.execWritable: true)")
}

fn names(p: &Path) -> impl Iterator<Item = OsString> + '_ {
    p.components().filter_map(|c| match c {
        Component::Normal(n) => Some(n.to_os_string()),
        _ => None,
    })
}

/// `base/rel`, without the trailing slash `Path::join` adds for an empty `rel`.
fn join(base: &Path, rel: &Path) -> PathBuf {
    if rel.as_os_str().is_empty() {
        base.to_path_buf()
    } else {
        base.join(rel)
    }
}

/// A place a grant can show up: not one the sandbox gets fresh copies of, and not one of
/// corral's own names.
fn check_target(field: &str, path: &Path) -> Result<()> {
    if let Some(s) = SYNTHETIC.iter().find(|s| path.starts_with(s)) {
        return Err(CorralError::policy(
            field,
            format!("{s} is private to the sandbox and cannot be granted from the host"),
        ));
    }
    let first = path.components().find_map(|c| match c {
        Component::Normal(n) => Some(n.to_string_lossy().into_owned()),
        _ => None,
    });
    if first.is_some_and(|n| n.starts_with(RESERVED_PREFIX)) && path != Path::new(FORK_HELPER_TARGET) {
        return Err(CorralError::policy(
            field,
            format!("{}: names starting with /{RESERVED_PREFIX} are reserved for corral's own use", path.display()),
        ));
    }
    Ok(())
}
