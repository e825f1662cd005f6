//! Argument conditions, compared exactly as seccompiler compares them: `dword` looks at the
//! low 32 bits only, `qword` at both halves (classic BPF loads 32 bits at a time).
//!
//! Runs in: the client (name checks) and the helper (compiling).

use super::bpf::{Emitter, Target, ALU_AND_K, ARGS, JEQ_K, JGE_K, JGT_K, LD_W_ABS};
use super::SeccompError;
use corral_core::seccomp as profiles;
use seccompiler::{SeccompCmpArgLen, SeccompCmpOp};

/// One comparison of a system call argument.
#[derive(Debug, Clone)]
pub struct Cond {
    index: u8,
    qword: bool,
    op: SeccompCmpOp,
    val: u64,
}

/// All conditions must hold.
pub type Rule = Vec<Cond>;

impl Cond {
    /// Reads a condition as seccompiler's JSON front end would, so the same inputs are refused.
    pub fn parse(c: &profiles::Cond) -> Result<Cond, SeccompError> {
        let bad = |reason: String| SeccompError::BadCondition { cond: format!("{c:?}"), reason };
        let op: SeccompCmpOp = serde_json::from_value(c.op.clone()).map_err(|e| bad(e.to_string()))?;
        let width: SeccompCmpArgLen = serde_json::from_value(c.width.into()).map_err(|e| bad(e.to_string()))?;
        if c.index > 5 {
            return Err(bad("system calls have six arguments".into()));
        }
        Ok(Cond { index: c.index, qword: width == SeccompCmpArgLen::Qword, op, val: c.val })
    }

    /// Offsets of the low and high 32 bits (little-endian on every supported arch).
    fn words(&self) -> (u32, u32) {
        let lo = ARGS + 8 * u32::from(self.index);
        (lo, lo + 4)
    }

    /// The condition in program order.
    fn steps(&self) -> Vec<Step> {
        use SeccompCmpOp::*;
        use To::{Fail, Next, Pass};
        let (lo, hi) = self.words();
        let (msb, lsb) = ((self.val >> 32) as u32, self.val as u32);
        let mut s = Vec::with_capacity(6);
        match self.op {
            Eq => {
                if self.qword {
                    s.extend([Step::Load(hi), Step::Jump(JEQ_K, msb, Next, Fail)]);
                }
                s.extend([Step::Load(lo), Step::Jump(JEQ_K, lsb, Pass, Fail)]);
            }
            Ne => {
                if self.qword {
                    s.extend([Step::Load(hi), Step::Jump(JEQ_K, msb, Next, Pass)]);
                }
                s.extend([Step::Load(lo), Step::Jump(JEQ_K, lsb, Fail, Pass)]);
            }
            Ge | Gt => {
                if self.qword {
                    s.extend([Step::Load(hi), Step::Jump(JGT_K, msb, Pass, Next), Step::Jump(JEQ_K, msb, Next, Fail)]);
                }
                let op = if self.op == Ge { JGE_K } else { JGT_K };
                s.extend([Step::Load(lo), Step::Jump(op, lsb, Pass, Fail)]);
            }
            Le | Lt => {
                if self.qword {
                    s.extend([Step::Load(hi), Step::Jump(JGT_K, msb, Fail, Next), Step::Jump(JEQ_K, msb, Next, Pass)]);
                }
                // le: fail when greater; lt: fail when greater or equal.
                let op = if self.op == Le { JGT_K } else { JGE_K };
                s.extend([Step::Load(lo), Step::Jump(op, lsb, Fail, Pass)]);
            }
            MaskedEq(mask) => {
                let val = self.val & mask;
                let mut halves = vec![(lo, mask as u32, val as u32)];
                if self.qword {
                    halves.insert(0, (hi, (mask >> 32) as u32, (val >> 32) as u32));
                }
                // A half under a zero mask always matches (seccompiler compares 0 with 0).
                halves.retain(|&(_, mask, _)| mask != 0);
                let last = halves.len().saturating_sub(1);
                for (i, (word, mask, val)) in halves.into_iter().enumerate() {
                    s.push(Step::Load(word));
                    if mask != u32::MAX {
                        s.push(Step::And(mask));
                    }
                    s.push(Step::Jump(JEQ_K, val, if i == last { Pass } else { Next }, Fail));
                }
            }
        }
        s
    }
}

/// Where a step's jump goes.
#[derive(Debug, Clone, Copy)]
enum To {
    Next,
    Pass,
    Fail,
}

#[derive(Debug, Clone, Copy)]
enum Step {
    Load(u32),
    And(u32),
    Jump(u16, u32, To, To),
}

/// Emits alternatives `rules`: on to `hit` when one holds, to `miss` when none does.
pub fn emit(e: &mut Emitter, rules: &[Rule], hit: Target, miss: Target) -> Target {
    rules.iter().rev().fold(miss, |next_rule, rule| emit_rule(e, rule, hit, next_rule))
}

fn emit_rule(e: &mut Emitter, conds: &[Cond], hit: Target, miss: Target) -> Target {
    let conds: Vec<Vec<Step>> = without_reloads(conds.iter().map(Cond::steps));
    conds.iter().rev().fold(hit, |pass, steps| emit_steps(e, steps, pass, miss))
}

/// Drops loads of the word A already holds. Within a condition each step is reached only
/// from the one before; a condition only from the passing jumps of the one before, so what
/// A holds there is known when they agree.
fn without_reloads(conds: impl Iterator<Item = Vec<Step>>) -> Vec<Vec<Step>> {
    let mut held = None;
    conds
        .map(|steps| {
            let (mut a, mut passing, mut kept) = (held, Vec::new(), Vec::new());
            for step in steps {
                match step {
                    Step::Load(word) if a == Some(word) => continue,
                    Step::Load(word) => a = Some(word),
                    Step::And(_) => a = None,
                    Step::Jump(_, _, jt, jf) if matches!(jt, To::Pass) || matches!(jf, To::Pass) => passing.push(a),
                    Step::Jump(..) => {}
                }
                kept.push(step);
            }
            if let Some(&first) = passing.first() {
                held = if passing.iter().all(|&p| p == first) { first } else { None };
            }
            kept
        })
        .collect()
}

/// Emits one condition's steps; a condition without steps always holds.
fn emit_steps(e: &mut Emitter, steps: &[Step], pass: Target, fail: Target) -> Target {
    steps.iter().rev().fold(pass, |next, step| match *step {
        Step::Load(offset) => e.stmt(LD_W_ABS, offset),
        Step::And(mask) => e.stmt(ALU_AND_K, mask),
        Step::Jump(op, k, jt, jf) => {
            let to = |t| match t {
                To::Next => next,
                To::Pass => pass,
                To::Fail => fail,
            };
            e.jump(op, k, to(jt), to(jf))
        }
    })
}
