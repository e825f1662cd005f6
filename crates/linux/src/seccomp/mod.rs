//! Compiling the profiles of `corral_core::seccomp` to BPF, and installing them.
//!
//! Runs in: client (name checks at plan time), helper (compiling, cached per profile),
//! command (installing, last step before execve).
//!
//! The programs mean exactly what seccompiler's JSON front end would make of
//! `profiles::to_seccompiler_json` (the tests run both side by side), but search the call
//! number instead of comparing it against every call in turn, which makes them several
//! times shorter and cheaper to install. seccompiler still names the calls.

mod args;
mod bpf;
mod dispatch;
#[cfg(test)]
mod interp;
mod syscalls;
#[cfg(test)]
mod tests;

use corral_core::seccomp::{self as profiles, Action, Filter};
use corral_core::spec::SeccompSpec;
use seccompiler::{BpfProgram, SeccompAction, TargetArch};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// What can go wrong compiling a profile or checking names.
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    #[error("unknown profile {0:?}")]
    UnknownProfile(String),
    #[error("seccomp filters are not built for {0}")]
    UnsupportedArch(&'static str),
    /// A name in the policy's `seccomp.allow` or `seccomp.deny` (`list`), at `index`.
    #[error("{name:?} is not a system call on {arch}")]
    NotACall { list: &'static str, index: usize, name: String, arch: &'static str },
    /// A profile that cannot become a program: a bug in the profile data or here.
    #[error("compiling seccomp profile {profile:?}: {source}")]
    Compile {
        profile: String,
        #[source]
        source: Box<SeccompError>,
    },
    #[error("filter {0:?}: the match and mismatch actions are equal")]
    EqualActions(String),
    /// A profile's own rule names a call this architecture does not have.
    #[error("{name:?} is not a system call on {arch}")]
    UnknownCall { name: String, arch: &'static str },
    #[error("condition {cond}: {reason}")]
    BadCondition { cond: String, reason: String },
    #[error("filter {filter:?} needs {len} BPF instructions, over the kernel's {max}")]
    TooLong { filter: String, len: usize, max: usize },
    #[error("seccompiler's probe filter has an unexpected shape")]
    ProbeShape,
}

impl SeccompError {
    fn in_profile(profile: &str) -> impl FnOnce(SeccompError) -> SeccompError + '_ {
        move |e| SeccompError::Compile { profile: profile.to_string(), source: Box::new(e) }
    }
}

pub(crate) const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;

/// A target architecture, as seccompiler names it and as the kernel reports it.
#[derive(Debug, Clone, Copy)]
struct Arch {
    name: &'static str,
    target: TargetArch,
    /// AUDIT_ARCH_* from linux/audit.h: the ELF machine, 64-bit, little-endian.
    audit: u32,
}

impl Arch {
    const X86_64: Arch = Arch { name: "x86_64", target: TargetArch::x86_64, audit: AUDIT_ARCH_X86_64 };
    const AARCH64: Arch = Arch { name: "aarch64", target: TargetArch::aarch64, audit: 0xc000_00b7 };
    const RISCV64: Arch = Arch { name: "riscv64", target: TargetArch::riscv64, audit: 0xc000_00f3 };

    fn native() -> Result<Arch, SeccompError> {
        let arch = std::env::consts::ARCH;
        let supported = [Arch::X86_64, Arch::AARCH64, Arch::RISCV64];
        supported.into_iter().find(|a| a.name == arch).ok_or(SeccompError::UnsupportedArch(arch))
    }
}

/// What a sandbox's command installs.
#[derive(Debug)]
pub struct Programs {
    /// The profile's filters in installation order (the last installed takes precedence
    /// among equal actions, which is why the clone3 → ENOSYS filter comes last).
    pub filters: Vec<BpfProgram>,
    /// The socket gate's filter, whose notifications go to the sandbox's init
    /// (`crate::sandbox::init::gate`); installed first, with a listener.
    pub gate: Option<BpfProgram>,
}

pub type Compiled = Arc<Programs>;

pub fn compile(spec: &SeccompSpec) -> Result<Compiled, SeccompError> {
    let mut filters = profiles::filters(&spec.profile, &spec.allow, &spec.deny)
        .ok_or_else(|| SeccompError::UnknownProfile(spec.profile.clone()))?;
    if spec.tcp_only {
        // First: the filters that must come last (clone3, openat2) stay last.
        filters.insert(0, profiles::port_rules_filter());
    }
    let arch = Arch::native()?;
    let mut filters = programs(&filters, arch).map_err(SeccompError::in_profile(&spec.profile))?;
    if spec.no_xattr_writes {
        // First, like the port rules: a profile's own refusal of these still wins.
        filters.insert(0, xattr_writes_program(arch).map_err(SeccompError::in_profile(&spec.profile))?);
    }
    let gate = if spec.gate {
        Some(gate_program(arch, spec.gate_listen).map_err(SeccompError::in_profile(&spec.profile))?)
    } else {
        None
    };
    Ok(Arc::new(Programs { filters, gate }))
}

/// `setxattr` and its variants answer EOPNOTSUPP (see `SeccompSpec::no_xattr_writes`).
/// By number: `setxattrat` (Linux 6.13, the same number on every architecture since 5.1's
/// unified table) is newer than seccompiler's tables.
fn xattr_writes_program(arch: Arch) -> Result<BpfProgram, SeccompError> {
    const SETXATTRAT: u32 = 463;
    let names = ["setxattr", "lsetxattr", "fsetxattr"];
    let mut calls: BTreeMap<u32, Vec<args::Rule>> = BTreeMap::new();
    for (name, number) in names.iter().zip(syscalls::numbers(arch, &names)?) {
        let number = number.ok_or_else(|| SeccompError::UnknownCall { name: name.to_string(), arch: arch.name })?;
        calls.insert(number, Vec::new());
    }
    calls.insert(SETXATTRAT, Vec::new());
    Ok(dispatch::program(arch.audit, &calls, ret(Action::Errno(libc::EOPNOTSUPP as u32)), ret(Action::Allow)))
}

/// The socket gate's filter: `connect`, `bind`, `sendmsg`, `sendmmsg`, `sendto` with an
/// address (and `listen`, while bind port rules are in force) stop for the sandbox's init
/// (SECCOMP_RET_USER_NOTIF), which performs them; every other call passes. The actions of
/// the profile's filters take precedence (an errno beats a notification).
fn gate_program(arch: Arch, listen: bool) -> Result<BpfProgram, SeccompError> {
    let mut names = vec!["connect", "bind", "sendmsg", "sendmmsg", "sendto"];
    if listen {
        names.push("listen");
    }
    let numbers = syscalls::numbers(arch, &names)?;
    let mut calls: BTreeMap<u32, Vec<args::Rule>> = BTreeMap::new();
    for (name, number) in names.iter().zip(numbers) {
        let number = number.ok_or_else(|| SeccompError::UnknownCall { name: name.to_string(), arch: arch.name })?;
        let rules = match *name {
            // sendto(fd, buf, len, flags, dest_addr, addrlen): without an address it sends
            // to the socket's peer, which the gate saw when it was connected.
            "sendto" => {
                let cond = profiles::Cond { index: 4, width: "qword", op: serde_json::json!("ne"), val: 0 };
                vec![vec![args::Cond::parse(&cond)?]]
            }
            _ => Vec::new(),
        };
        calls.insert(number, rules);
    }
    let program = dispatch::program(arch.audit, &calls, libc::SECCOMP_RET_USER_NOTIF, libc::SECCOMP_RET_ALLOW);
    if program.len() > bpf::MAX_LEN {
        return Err(SeccompError::TooLong { filter: "gate".into(), len: program.len(), max: bpf::MAX_LEN });
    }
    Ok(program)
}

/// One program per filter, in the filters' order.
fn programs(filters: &[Filter], arch: Arch) -> Result<Vec<BpfProgram>, SeccompError> {
    filters.iter().map(|f| program(f, arch)).collect()
}

fn program(filter: &Filter, arch: Arch) -> Result<BpfProgram, SeccompError> {
    if filter.on_match == filter.otherwise {
        return Err(SeccompError::EqualActions(filter.name.to_string()));
    }
    // The same skip as `profiles::to_seccompiler_json`.
    let rules: Vec<_> = filter
        .rules
        .iter()
        .filter(|r| arch.name == "x86_64" || !profiles::X86_64_ONLY.contains(&r.syscall.as_str()))
        .collect();
    let names: Vec<&str> = rules.iter().map(|r| r.syscall.as_str()).collect();
    let numbers = syscalls::numbers(arch, &names)?;
    let mut calls: BTreeMap<u32, Vec<args::Rule>> = BTreeMap::new();
    for (rule, number) in rules.iter().zip(numbers) {
        let number = number.ok_or_else(|| SeccompError::UnknownCall { name: rule.syscall.clone(), arch: arch.name })?;
        // As in seccompiler, a rule without conditions adds no alternative: a call matches
        // unconditionally only when none of its rules has conditions.
        let alternatives = calls.entry(number).or_default();
        if !rule.args.is_empty() {
            alternatives.push(rule.args.iter().map(args::Cond::parse).collect::<Result<_, _>>()?);
        }
    }
    let program = dispatch::program(arch.audit, &calls, ret(filter.on_match), ret(filter.otherwise));
    if program.len() > bpf::MAX_LEN {
        return Err(SeccompError::TooLong { filter: filter.name.to_string(), len: program.len(), max: bpf::MAX_LEN });
    }
    Ok(program)
}

/// The filter's return value for an action, as seccompiler encodes it.
fn ret(action: Action) -> u32 {
    u32::from(match action {
        Action::Allow => SeccompAction::Allow,
        Action::Errno(e) => SeccompAction::Errno(e),
    })
}

/// Checks that every name in the custom lists is a system call of this architecture, so
/// a typo is a policy error naming the entry rather than a failure at spawn time.
pub fn check_names(spec: &SeccompSpec) -> Result<(), SeccompError> {
    let arch = Arch::native()?;
    for (list, names) in [("allow", &spec.allow), ("deny", &spec.deny)] {
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let numbers = syscalls::numbers(arch, &names).map_err(SeccompError::in_profile(&spec.profile))?;
        if let Some(index) = numbers.iter().position(Option::is_none) {
            return Err(SeccompError::NotACall { list, index, name: names[index].to_string(), arch: arch.name });
        }
    }
    Ok(())
}

/// Compiles each profile once per helper.
#[derive(Default)]
pub struct Cache(HashMap<String, Compiled>);

impl Cache {
    pub fn get(&mut self, spec: &SeccompSpec) -> Result<Compiled, SeccompError> {
        let key = serde_json::to_string(spec).unwrap_or_default();
        if let Some(c) = self.0.get(&key) {
            return Ok(c.clone());
        }
        let c = compile(spec)?;
        self.0.insert(key, c.clone());
        Ok(c)
    }
}

/// Installs the profile's filters on the calling thread. Must be the last step before
/// execve.
pub fn install(filters: &[BpfProgram]) -> std::io::Result<()> {
    for f in filters {
        seccompiler::apply_filter(f).map_err(std::io::Error::other)?;
    }
    Ok(())
}

/// Installs the gate's filter; its notifications go to the returned listener.
pub fn install_gate(program: &BpfProgram) -> std::io::Result<std::os::fd::OwnedFd> {
    crate::sys::seccomp_with_listener(program)
}
