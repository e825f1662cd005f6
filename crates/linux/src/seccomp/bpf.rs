//! Classic BPF instructions and an emitter that writes a program back to front.
//!
//! Runs in: the helper, compiling.
//!
//! Writing backwards means every jump target already has a position, so offsets are known
//! when a jump is written. Conditional jumps reach at most 255 instructions ahead; a
//! target further away gets a nearby copy of its `RET` or a `JA` (32-bit offset) hop.

use seccompiler::{sock_filter, BpfProgram};
use std::collections::HashMap;

// Opcodes, from linux/bpf_common.h.
pub const LD_W_ABS: u16 = 0x20;
pub const ALU_AND_K: u16 = 0x54;
pub const JA: u16 = 0x05;
pub const JEQ_K: u16 = 0x15;
pub const JGT_K: u16 = 0x25;
pub const JGE_K: u16 = 0x35;
pub const RET_K: u16 = 0x06;

/// `struct seccomp_data` offsets: `int nr; __u32 arch; __u64 ip; __u64 args[6];`.
pub const NR: u32 = 0;
pub const ARCH: u32 = 4;
pub const ARGS: u32 = 16;

/// The kernel's limit on one program (BPF_MAXINSNS).
pub const MAX_LEN: usize = 4096;
const MAX_JUMP: usize = u8::MAX as usize;

/// Where a jump goes: an emitted instruction, or whichever `RET k` is nearest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    At(usize),
    Ret(u32),
}

/// A program under construction; positions count from its end.
pub struct Emitter {
    rev: Vec<sock_filter>,
    /// The nearest copy of each `RET k`.
    rets: HashMap<u32, usize>,
    /// The nearest `JA` hop to each far target.
    hops: HashMap<usize, usize>,
}

impl Emitter {
    /// Starts a program whose last instruction is `RET last` (the kernel requires a final RET).
    pub fn new(last: u32) -> Emitter {
        let mut e = Emitter { rev: Vec::new(), rets: HashMap::new(), hops: HashMap::new() };
        e.ret(last);
        e
    }

    /// The instruction emitted last: the start of the program so far.
    pub fn here(&self) -> Target {
        Target::At(self.rev.len() - 1)
    }

    pub fn stmt(&mut self, code: u16, k: u32) -> Target {
        self.push(code, k)
    }

    /// `if A <op> k goto jt else goto jf`.
    pub fn jump(&mut self, code: u16, k: u32, jt: Target, jf: Target) -> Target {
        // jt leaves room for one more hop should jf need one.
        let jt = self.reach(jt, 1);
        let jf = self.reach(jf, 0);
        let at = self.rev.len();
        let offset = |to: usize| u8::try_from(at - to - 1).expect("reach keeps jumps short");
        self.rev.push(sock_filter { code, jt: offset(jt), jf: offset(jf), k });
        Target::At(at)
    }

    /// Makes `to` the instruction that runs next after whatever is emitted now.
    pub fn fall_into(&mut self, to: Target) -> Target {
        let next = self.rev.len() - 1;
        match to {
            Target::At(at) if at != next => _ = self.ja(at),
            Target::Ret(k) if self.rets.get(&k) != Some(&next) => _ = self.ret(k),
            _ => {}
        }
        self.here()
    }

    /// The program, front to back.
    pub fn finish(mut self) -> BpfProgram {
        self.rev.reverse();
        self.rev
    }

    fn push(&mut self, code: u16, k: u32) -> Target {
        self.rev.push(sock_filter { code, jt: 0, jf: 0, k });
        self.here()
    }

    fn ret(&mut self, k: u32) -> usize {
        let at = self.rev.len();
        self.push(RET_K, k);
        self.rets.insert(k, at);
        at
    }

    fn ja(&mut self, to: usize) -> usize {
        let at = self.rev.len();
        self.push(JA, (at - to - 1) as u32);
        self.hops.insert(to, at);
        at
    }

    /// A position a jump emitted after `slack` more instructions can reach that leads to `to`.
    fn reach(&mut self, to: Target, slack: usize) -> usize {
        let near = |at: usize| self.rev.len() + slack - at - 1 <= MAX_JUMP;
        match to {
            Target::At(at) if near(at) => at,
            Target::At(at) => match self.hops.get(&at) {
                Some(&hop) if near(hop) => hop,
                _ => self.ja(at),
            },
            Target::Ret(k) => match self.rets.get(&k) {
                Some(&copy) if near(copy) => copy,
                _ => self.ret(k),
            },
        }
    }
}
