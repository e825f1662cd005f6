//! A filter's program: the architecture check, then a balanced binary search over the
//! system call numbers that have rules, then those rules' argument conditions.
//!
//! Runs in: the helper, compiling.
//!
//! seccompiler compares the number against each call in turn; a search keeps both the
//! program and the path through it short, which is what the kernel pays for when it
//! JIT-compiles a filter and emulates it per call number to build its allow-cache.

use super::args::{self, Rule};
use super::bpf::{Emitter, Target, ARCH, JEQ_K, JGE_K, LD_W_ABS, NR};
use seccompiler::BpfProgram;
use std::collections::BTreeMap;

/// Numbers `lo..hi` that share one outcome.
struct Run<'a> {
    lo: u64,
    hi: u64,
    leaf: Leaf<'a>,
}

enum Leaf<'a> {
    Ret(u32),
    Rules(&'a [Rule]),
}

/// x32 system calls are x86_64 numbers with this bit set; the ABI shares the audit arch.
pub const X32_SYSCALL_BIT: u32 = 0x4000_0000;
const RET_EPERM: u32 = libc::SECCOMP_RET_ERRNO | libc::EPERM as u32;

/// The program for one filter. `calls` maps a number to its alternative rules; an empty
/// list matches the call whatever its arguments. A wrong architecture kills the process
/// (as seccompiler does: numbers mean nothing across architectures).
///
/// On x86_64, x32-ABI numbers answer EPERM in every filter: they reach the same kernel
/// entry points under other numbers, so a deny-list keyed on the x86_64 numbers would let
/// `mount` or `unshare` through where the kernel enables x32. (seccompiler lets them
/// through; this is the one place we differ from it.)
pub fn program(audit: u32, calls: &BTreeMap<u32, Vec<Rule>>, hit: u32, miss: u32) -> BpfProgram {
    let mut e = Emitter::new(miss);
    let runs = runs(calls, hit);
    let x86_64 = audit == super::AUDIT_ARCH_X86_64;
    // With no runs (and no x32 guard), the final `RET miss` follows the architecture check.
    if !runs.is_empty() || x86_64 {
        let root = search(&mut e, &runs, 0, if x86_64 { u64::from(X32_SYSCALL_BIT) } else { 1 << 32 }, hit, miss);
        let root = if x86_64 { e.jump(JGE_K, X32_SYSCALL_BIT, Target::Ret(RET_EPERM), root) } else { root };
        e.fall_into(root);
        e.stmt(LD_W_ABS, NR);
    }
    let body = e.here();
    e.jump(JEQ_K, audit, body, Target::Ret(libc::SECCOMP_RET_KILL_PROCESS));
    e.stmt(LD_W_ABS, ARCH);
    e.finish()
}

/// Consecutive numbers matched whatever the arguments merge into one run.
fn runs(calls: &BTreeMap<u32, Vec<Rule>>, hit: u32) -> Vec<Run<'_>> {
    let mut runs: Vec<Run> = Vec::new();
    for (&nr, rules) in calls {
        let nr = u64::from(nr);
        match runs.last_mut() {
            Some(last) if rules.is_empty() && last.hi == nr && matches!(last.leaf, Leaf::Ret(_)) => last.hi += 1,
            _ => runs.push(Run {
                lo: nr,
                hi: nr + 1,
                leaf: if rules.is_empty() { Leaf::Ret(hit) } else { Leaf::Rules(rules) },
            }),
        }
    }
    runs
}

/// Emits the search for `runs`, which lie within `lo..hi`; numbers between runs miss.
fn search(e: &mut Emitter, runs: &[Run], lo: u64, hi: u64, hit: u32, miss: u32) -> Target {
    let miss_t = Target::Ret(miss);
    match runs {
        [] => miss_t,
        [run] => {
            let leaf = match run.leaf {
                Leaf::Ret(k) => Target::Ret(k),
                Leaf::Rules(rules) => args::emit(e, rules, Target::Ret(hit), miss_t),
            };
            // Bounds are below 2^32 wherever they become a constant.
            let (start, end) = (run.lo as u32, run.hi as u32);
            match (run.lo == lo, run.hi == hi) {
                (true, true) => leaf,
                _ if run.hi - run.lo == 1 => e.jump(JEQ_K, start, leaf, miss_t),
                (true, false) => e.jump(JGE_K, end, miss_t, leaf),
                (false, true) => e.jump(JGE_K, start, leaf, miss_t),
                (false, false) => {
                    let inner = e.jump(JGE_K, start, leaf, miss_t);
                    e.jump(JGE_K, end, miss_t, inner)
                }
            }
        }
        _ => {
            let mid = runs.len() / 2;
            let split = runs[mid].lo;
            // Written back to front: the upper half, then the lower half, which the split
            // falls into.
            let upper = search(e, &runs[mid..], split, hi, hit, miss);
            let lower = search(e, &runs[..mid], lo, split, hit, miss);
            e.jump(JGE_K, split as u32, upper, lower)
        }
    }
}
