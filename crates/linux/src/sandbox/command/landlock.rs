//! Landlock on top of the mount view (defence in depth). Runs in: the command process,
//! after the mount view exists, so rule paths are sandbox paths; and sandbox init, which
//! takes the scopes and port rules alone ([`restrict_init`]).
//!
//! The ruleset handles every file-system right of the ABI the plan was made for, with
//! `HardRequirement` compatibility: if the kernel offers less than the plan assumed, the
//! run fails instead of silently enforcing less. What the plan already knew this kernel
//! lacks is a caveat in the plan.

use crate::sandbox::StepError;
use corral_core::spec::{FsAccess, LandlockSpec};
use landlock::{
    Access, AccessFs, AccessNet, BitFlags, CompatLevel, Compatible, NetPort, PathBeneath, PathFd, Ruleset, RulesetAttr,
    RulesetCreatedAttr, RulesetStatus, Scope, ABI,
};

fn rights(access: FsAccess, abi: ABI, is_dir: bool) -> BitFlags<AccessFs> {
    let mut r = BitFlags::<AccessFs>::empty();
    if access.list {
        r |= AccessFs::ReadDir;
    }
    if access.read {
        r |= AccessFs::ReadFile | AccessFs::ReadDir;
    }
    if access.exec {
        r |= AccessFs::Execute;
    }
    if access.write {
        // Every write right of this ABI except device ioctls, which `ioctl` grants.
        r |= AccessFs::from_write(abi) & !AccessFs::IoctlDev;
    }
    if access.ioctl {
        r |= AccessFs::IoctlDev;
    }
    r &= AccessFs::from_all(abi);
    if !is_dir {
        r &= AccessFs::from_file(abi);
    }
    r
}

/// Init's own domain: the scopes (abstract Unix sockets and signals stay inside the
/// sandbox) and the TCP port rules, no file rules (init reads the command's `/proc` entries
/// and opens paths for the socket gate). The command's domain nests in this one, so the
/// gate's connects and binds for the command obey the same port rules and scopes, and
/// init keeps the right to trace (the gate reads arguments) and signal the command.
pub fn restrict_init(spec: &LandlockSpec) -> Result<(), StepError> {
    if spec.abi == 0 {
        return Ok(());
    }
    let abi = ABI::from(spec.abi as i32);
    let fail = |what: &str, e: &dyn std::fmt::Display| StepError::msg("init landlock", format!("{what}: {e}"));
    let mut net = BitFlags::<AccessNet>::empty();
    if spec.bind_ports.is_some() {
        net |= AccessNet::BindTcp;
    }
    if spec.connect_ports.is_some() {
        net |= AccessNet::ConnectTcp;
    }
    if !spec.scoped && net.is_empty() {
        return Ok(());
    }
    let mut ruleset = Ruleset::default().set_compatibility(CompatLevel::HardRequirement);
    if spec.scoped {
        ruleset = ruleset.scope(Scope::from_all(abi)).map_err(|e| fail("scope", &e))?;
    }
    if !net.is_empty() {
        ruleset = ruleset.handle_access(net).map_err(|e| fail("handle network access", &e))?;
    }
    let mut created = ruleset.create().map_err(|e| fail("create ruleset", &e))?;
    for (ports, access) in [(&spec.bind_ports, AccessNet::BindTcp), (&spec.connect_ports, AccessNet::ConnectTcp)] {
        for port in ports.iter().flatten() {
            created = created.add_rule(NetPort::new(*port, access)).map_err(|e| fail(&format!("port {port}"), &e))?;
        }
    }
    let status = created.restrict_self().map_err(|e| fail("restrict_self", &e))?;
    if status.ruleset != RulesetStatus::FullyEnforced {
        return Err(StepError::msg(
            "init landlock",
            format!("the kernel enforced the ruleset only {:?}", status.ruleset),
        ));
    }
    Ok(())
}

pub fn restrict(spec: &LandlockSpec) -> Result<(), StepError> {
    if spec.abi == 0 {
        return Ok(()); // planned without Landlock: a caveat says so
    }
    let abi = ABI::from(spec.abi as i32);
    let fail = |what: &str, e: &dyn std::fmt::Display| StepError::msg("landlock", format!("{what}: {e}"));
    let mut ruleset = Ruleset::default()
        .set_compatibility(CompatLevel::HardRequirement)
        .handle_access(AccessFs::from_all(abi))
        .map_err(|e| fail("handle access", &e))?;
    if spec.scoped {
        ruleset = ruleset.scope(Scope::from_all(abi)).map_err(|e| fail("scope", &e))?;
    }
    // TCP port rules: only the kinds of access the policy restricts are handled.
    let mut net = BitFlags::<AccessNet>::empty();
    if spec.bind_ports.is_some() {
        net |= AccessNet::BindTcp;
    }
    if spec.connect_ports.is_some() {
        net |= AccessNet::ConnectTcp;
    }
    if !net.is_empty() {
        ruleset = ruleset.handle_access(net).map_err(|e| fail("handle network access", &e))?;
    }
    let mut created = ruleset.create().map_err(|e| fail("create ruleset", &e))?;
    for rule in &spec.rules {
        // Paths the view lacks on this host (e.g. no /dev/tty) have nothing to grant.
        let Ok(fd) = PathFd::new(&rule.path) else { continue };
        let is_dir = std::fs::metadata(&rule.path).map(|m| m.is_dir()).unwrap_or(false);
        let access = rights(rule.access, abi, is_dir);
        if access.is_empty() {
            continue;
        }
        created = created
            .add_rule(PathBeneath::new(fd, access))
            .map_err(|e| fail(&format!("rule for {}", rule.path.display()), &e))?;
    }
    for (ports, access) in [(&spec.bind_ports, AccessNet::BindTcp), (&spec.connect_ports, AccessNet::ConnectTcp)] {
        for port in ports.iter().flatten() {
            created = created.add_rule(NetPort::new(*port, access)).map_err(|e| fail(&format!("port {port}"), &e))?;
        }
    }
    let status = created.restrict_self().map_err(|e| fail("restrict_self", &e))?;
    if status.ruleset != RulesetStatus::FullyEnforced {
        return Err(StepError::msg("landlock", format!("the kernel enforced the ruleset only {:?}", status.ruleset)));
    }
    Ok(())
}
