//! A classic BPF interpreter for the instructions seccomp filters here use, to run
//! seccompiler's programs and ours on the same inputs.
//!
//! Runs in: tests only.

use super::bpf::{MAX_LEN, RET_K};
use seccompiler::sock_filter;

/// `struct seccomp_data`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Data {
    pub nr: u32,
    pub arch: u32,
    pub instruction_pointer: u64,
    pub args: [u64; 6],
}

impl Data {
    fn bytes(&self) -> [u8; 64] {
        let mut b = [0; 64];
        b[0..4].copy_from_slice(&self.nr.to_le_bytes());
        b[4..8].copy_from_slice(&self.arch.to_le_bytes());
        b[8..16].copy_from_slice(&self.instruction_pointer.to_le_bytes());
        for (i, a) in self.args.iter().enumerate() {
            b[16 + 8 * i..24 + 8 * i].copy_from_slice(&a.to_le_bytes());
        }
        b
    }
}

/// The filter's return value for `data`. Panics on anything the kernel would refuse.
pub fn run(program: &[sock_filter], data: &Data) -> u32 {
    let bytes = data.bytes();
    let (mut a, mut pc) = (0u32, 0usize);
    loop {
        let i = &program[pc];
        pc += 1;
        let branch = |taken: bool| usize::from(if taken { i.jt } else { i.jf });
        match i.code {
            0x20 => {
                let k = i.k as usize;
                assert!(k & 3 == 0 && k + 4 <= bytes.len(), "load at {k}");
                a = u32::from_le_bytes(bytes[k..k + 4].try_into().unwrap());
            }
            0x54 => a &= i.k,
            0x05 => pc += i.k as usize,
            0x15 => pc += branch(a == i.k),
            0x25 => pc += branch(a > i.k),
            0x35 => pc += branch(a >= i.k),
            RET_K => return i.k,
            code => panic!("unexpected opcode {code:#x}"),
        }
        assert!(pc < program.len(), "ran off the end");
    }
}

/// The checks the kernel makes on a program's shape: length, jumps in range, a final RET.
pub fn check_shape(program: &[sock_filter]) {
    assert!(!program.is_empty() && program.len() <= MAX_LEN, "length {}", program.len());
    assert_eq!(program.last().unwrap().code, RET_K, "last instruction");
    for (pc, i) in program.iter().enumerate() {
        let rest = program.len() - pc - 1;
        match i.code {
            0x05 => assert!((i.k as usize) < rest, "JA at {pc}"),
            0x15 | 0x25 | 0x35 => assert!(usize::from(i.jt.max(i.jf)) < rest, "jump at {pc}"),
            _ => {}
        }
    }
}
