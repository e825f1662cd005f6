//! seccompiler's programs and ours, run side by side on the same inputs.
//!
//! Runs in: tests only.
//!
//! Long because every profile, with and without the port rules, and the socket gate's
//! filter are run against the same inputs on every architecture, one case beside another.

use super::interp::{check_shape, run, Data};
use super::*;
use corral_core::seccomp::{Cond, Rule};
use serde_json::json;

const KILL_PROCESS: u32 = libc::SECCOMP_RET_KILL_PROCESS;
const ARCHES: [Arch; 2] = [Arch::X86_64, Arch::AARCH64];

/// What the backend compiled before: seccompiler's JSON front end.
fn seccompiler_programs(filters: &[Filter], arch: Arch) -> Vec<BpfProgram> {
    let json = profiles::to_seccompiler_json(filters, arch.name);
    let mut map = seccompiler::compile_from_json(json.to_string().as_bytes(), arch.target).unwrap();
    filters.iter().map(|f| map.remove(f.name).unwrap()).collect()
}

fn profile(name: &str, allow: &[&str], deny: &[&str]) -> (String, Vec<Filter>) {
    let strings = |l: &[&str]| l.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let label = format!("{name} allow={allow:?} deny={deny:?}");
    (label, profiles::filters(name, &strings(allow), &strings(deny)).unwrap())
}

/// Every profile, bare and with custom lists.
fn profile_cases() -> Vec<(String, Vec<Filter>)> {
    let mut cases: Vec<_> = profiles::PROFILES.iter().map(|(name, _)| profile(name, &[], &[])).collect();
    cases.extend([
        profile("default", &["io_uring_setup", "ptrace", "socket", "personality"], &["uname", "getpid", "open"]),
        profile("strict", &["mount", "ioctl", "clone3", "bpf"], &["getpid", "socket", "personality", "stat"]),
        profile("permissive", &["reboot"], &["ioctl", "clone"]),
        profile("network", &[], &["clone", "sendmsg"]),
        profile("compute", &["clone", "unshare"], &[]),
    ]);
    // What TCP port rules add, in the profiles that allow inet sockets.
    for name in ["default", "permissive", "network"] {
        let (label, mut filters) = profile(name, &[], &[]);
        filters.insert(0, profiles::port_rules_filter());
        cases.push((format!("{label} + port rules"), filters));
    }
    cases
}

fn numbers(arch: Arch, names: &[&str]) -> Vec<u32> {
    syscalls::numbers(arch, names).unwrap().into_iter().flatten().collect()
}

/// Argument values worth trying: namespace flags of clone, TIOCSTI with and without high
/// bits, socket families and types with flags, personalities.
const ARG_VALUES: &[u64] = &[
    0,
    1,
    2,
    3,
    5,
    8,
    9,
    10,
    16,
    17,
    0x11,
    0x0002_0000,
    0x0200_0000,
    0x0400_0000,
    0x0800_0000,
    0x1000_0000,
    0x2000_0000,
    0x4000_0000,
    0x003d_0f00,
    0x103d_0f00,
    0x0002_0011,
    0x1_0002_0000,
    0x5412,
    0x1_0000_5412,
    0xffff_ffff_0000_5412,
    0x541c,
    0x5423,
    0x1_0000_5423,
    0x5413,
    3 | 0x800,
    3 | 0x8_0000,
    10 | 0x8_0800,
    1 | 0x8_0800,
    0x1_0000_0003,
    0x0002_0008,
    0x0004_0008,
    0xffff_ffff,
    0x1_0000_0000,
    0x1_0000_0001,
    u64::MAX,
];

/// Argument vectors: each value alone in each position, every socket(family, type,
/// protocol) combination, and a fixed pseudo-random sample.
fn arg_vectors() -> Vec<[u64; 6]> {
    let mut out = vec![[0; 6]];
    for &v in ARG_VALUES {
        for i in 0..3 {
            let mut args = [0; 6];
            args[i] = v;
            out.push(args);
        }
    }
    let types = [1, 2, 3, 5, 10, 3 | 0x800, 10 | 0x8_0000, 1 | 0x8_0800, 0x1_0000_0003];
    for family in [1, 2, 10, 16, 17, 0x1_0000_0001] {
        for ty in types {
            for protocol in [0, 1, 4, 6, 9, 17, 132, 262, 0x1_0000_0000] {
                out.push([family, ty, protocol, 0, 0, 0]);
            }
        }
    }
    // File modes next to creation flags, where the setid filter reads them: open (1, 2)
    // and openat (2, 3), and a mode alone at 1 and 2 (chmod, fchmodat, mkdirat, …).
    let flags = [0, 0o101, 0o20_200_002, 0o2, 0x1_0000_0040, 0xffff_ffbf];
    let modes = [0o755, 0o4755, 0o2755, 0o6755, 0o1777, 0x1_0000_0800, 0xffff_f3ff, 0o4000_0000];
    for (f, m) in [(1, 2), (2, 3)] {
        for flag in flags {
            for mode in modes {
                let mut args = [0; 6];
                (args[f], args[m]) = (flag, mode);
                out.push(args);
            }
        }
    }
    for mode in modes {
        out.extend([[0, mode, 0, 0, 0, 0], [0, 0, mode, 0, 0, 0]]);
    }
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for _ in 0..200 {
        out.push(std::array::from_fn(|_| {
            let r = next();
            if r % 4 == 0 {
                r
            } else {
                ARG_VALUES[(r >> 8) as usize % ARG_VALUES.len()]
            }
        }));
    }
    out
}

/// Every call number with no arguments (and a few with all bits set); the calls that have
/// argument rules, and a few that do not, with every vector.
fn inputs(arch: Arch, filters: &[Filter]) -> Vec<Data> {
    let data = |nr, args| Data { nr, arch: arch.audit, instruction_pointer: 0x7fff_1234, args };
    // x32 numbers, numbers past every table, and the top of the range.
    let odd = [0x4000_0000, 0x4000_0027, 0x4000_00a5, 0x4000_0000 | 0x1b1, 0x7fff_ffff, 999, 4096, u32::MAX];
    let mut out: Vec<Data> = (0..=460).chain(odd).flat_map(|nr| [data(nr, [0; 6]), data(nr, [u64::MAX; 6])]).collect();
    let mut names: Vec<&str> = vec!["clone", "clone3", "ioctl", "socket", "personality", "getpid", "mount", "read"];
    names.extend(filters.iter().flat_map(|f| &f.rules).filter(|r| !r.args.is_empty()).map(|r| r.syscall.as_str()));
    names.sort_unstable();
    names.dedup();
    let vectors = arg_vectors();
    for nr in numbers(arch, &names) {
        out.extend(vectors.iter().map(|&args| data(nr, args)));
    }
    out
}

/// Runs seccompiler's programs and ours for `filters` on every input and on a wrong
/// architecture; panics on the first difference.
fn assert_same(label: &str, filters: &[Filter], arch: Arch, inputs: &[Data]) {
    let before = seccompiler_programs(filters, arch);
    let after = programs(filters, arch).unwrap();
    for ((f, old), new) in filters.iter().zip(&before).zip(&after) {
        check_shape(new);
        for d in inputs {
            let (want, got) = (run(old, d), run(new, d));
            // Our one intended difference: x32 numbers are refused (see dispatch::program).
            let want = if arch.name == "x86_64" && d.nr >= super::dispatch::X32_SYSCALL_BIT {
                libc::SECCOMP_RET_ERRNO | libc::EPERM as u32
            } else {
                want
            };
            assert_eq!(want, got, "{label} on {}: filter {:?}, nr {:#x}, args {:x?}", arch.name, f.name, d.nr, d.args);
        }
        let other = if arch.name == "x86_64" { Arch::AARCH64 } else { Arch::X86_64 };
        for audit in [0x4000_0003 /* i386 */, other.audit] {
            let d = Data { arch: audit, ..inputs[0] };
            assert_eq!((run(old, &d), run(new, &d)), (KILL_PROCESS, KILL_PROCESS), "{label}: wrong arch");
        }
    }
}

#[test]
fn profiles_match_seccompiler() {
    for arch in ARCHES {
        for (label, filters) in profile_cases() {
            assert_same(&label, &filters, arch, &inputs(arch, &filters));
        }
    }
}

fn cond(index: u8, width: &'static str, op: serde_json::Value, val: u64) -> Cond {
    Cond { index, width, op, val }
}

/// Calls present on both architectures, one per comparison under test.
const PLAIN_CALLS: &[&str] = &[
    "read",
    "write",
    "close",
    "fstat",
    "lseek",
    "mmap",
    "mprotect",
    "munmap",
    "brk",
    "ioctl",
    "pread64",
    "pwrite64",
    "readv",
    "writev",
    "getpid",
    "kill",
    "uname",
    "fcntl",
    "flock",
    "fsync",
    "fdatasync",
];

/// Clears bits of the values compared under it, in both halves.
const MASK: u64 = 0x0e00_0000_00fc;

/// Each operator at each width on its own call, conjunctions that reuse a loaded word, and a
/// call with both an unconditional and a conditional rule (only the latter counts, in
/// seccompiler).
fn operator_rules() -> Vec<Rule> {
    let ops =
        [json!("eq"), json!("ne"), json!("ge"), json!("gt"), json!("le"), json!("lt"), json!({ "masked_eq": MASK })];
    let mut rules = Vec::new();
    let mut calls = PLAIN_CALLS.iter();
    for (i, op) in ops.iter().enumerate() {
        for (width, val) in [("dword", 0x1_0000_0005u64), ("qword", 0x1_0000_0005)] {
            let name = calls.next().unwrap().to_string();
            rules.push(Rule { syscall: name, args: vec![cond(i as u8 % 6, width, op.clone(), val)] });
        }
    }
    let name = |i: usize| PLAIN_CALLS[14 + i].to_string();
    rules.push(Rule {
        syscall: name(0),
        args: vec![
            cond(0, "dword", json!("ne"), 1),
            cond(0, "dword", json!("ne"), 2),
            cond(0, "qword", json!("eq"), 0x1_0000_0005),
            cond(0, "dword", json!("eq"), 5),
        ],
    });
    rules.push(Rule {
        syscall: name(0),
        args: vec![cond(0, "dword", json!({ "masked_eq": 0xf }), 5), cond(0, "dword", json!("le"), 6)],
    });
    rules.push(Rule { syscall: name(0), args: vec![cond(1, "qword", json!("gt"), 0xffff_ffff)] });
    rules.push(Rule {
        syscall: name(1),
        args: vec![
            cond(2, "qword", json!("ne"), 5),
            cond(2, "dword", json!("ne"), 5),
            cond(2, "qword", json!("lt"), u64::MAX),
        ],
    });
    rules.push(Rule { syscall: name(2), args: vec![] });
    rules.push(Rule { syscall: name(2), args: vec![cond(5, "dword", json!("eq"), 5)] });
    rules.push(Rule { syscall: name(3), args: vec![] });
    // Masks with a zero or all-ones half, which need no AND or no comparison.
    let masked = |mask: u64, val| cond(3, "qword", json!({ "masked_eq": mask }), val);
    rules.push(Rule { syscall: name(4), args: vec![masked(0xffff_ffff, 0x1_0000_0005)] });
    rules.push(Rule { syscall: name(4), args: vec![masked(0xffff_ffff << 32, 0x1_0000_0000)] });
    rules.push(Rule {
        syscall: name(4),
        args: vec![
            masked(u64::MAX, 0xffff_ffff),
            cond(3, "dword", json!("eq"), u64::MAX),
            masked(0, 7),
            cond(3, "dword", json!("ge"), 4),
        ],
    });
    rules.push(Rule { syscall: name(5), args: vec![masked(0, 0)] });
    // ge passes with either half in A, so le must load again.
    let range = vec![cond(4, "qword", json!("ge"), 0x1_0000_0005), cond(4, "qword", json!("le"), 0x1_ffff_ffff)];
    rules.push(Rule { syscall: name(6), args: range });
    rules
}

/// Values on either side of the constants in `operator_rules`, in both halves.
fn boundary_vectors() -> Vec<[u64; 6]> {
    let mut values = vec![0, u64::MAX];
    for c in [5u64, 0x1_0000_0005, 0xffff_ffff, 0x1_0000_0000, MASK, 4, 1, 2] {
        for v in [c, c.wrapping_sub(1), c + 1, c ^ 1 << 32, c.wrapping_add(1 << 32), c.wrapping_sub(1 << 32), c | 0xf0]
        {
            values.push(v);
        }
    }
    let mut out: Vec<[u64; 6]> = values.iter().map(|&v| [v; 6]).collect();
    for &a in &values {
        out.extend(values.iter().map(|&b| [a, b, a, b, a, b]));
    }
    out
}

#[test]
fn every_operator_matches_seccompiler() {
    let rules = operator_rules();
    let vectors = boundary_vectors();
    for arch in ARCHES {
        let names: Vec<&str> = PLAIN_CALLS.to_vec();
        let inputs: Vec<Data> = numbers(arch, &names)
            .into_iter()
            .chain([0, 1000])
            .flat_map(|nr| vectors.iter().map(move |&args| Data { nr, arch: arch.audit, args, ..Data::default() }))
            .collect();
        for (on_match, otherwise) in [(Action::Errno(1), Action::Allow), (Action::Allow, Action::Errno(38))] {
            let filter = Filter { name: "ops", on_match, otherwise, rules: rules.clone() };
            assert_same("operators", &[filter], arch, &inputs);
        }
    }
}

/// A filter with a conditional rule on each of ~200 calls and one call with a chain of
/// ~70 rules: longer than a conditional jump reaches.
fn long_filter() -> Filter {
    let strict = profiles::filters("strict", &[], &[]).unwrap();
    let allow = strict.iter().find(|f| f.name == "allow").unwrap();
    let ops = [json!("eq"), json!("ne"), json!("ge"), json!("lt"), json!({ "masked_eq": 0xf0f0_f0f0_f0f0_f0f0u64 })];
    // Calls the forked child makes after installing: leave them alone.
    let spare = ["exit", "exit_group", "prctl", "seccomp", "socket"];
    let mut rules: Vec<Rule> = (allow.rules.iter().filter(|r| !spare.contains(&r.syscall.as_str())).enumerate())
        .map(|(i, r)| Rule {
            syscall: r.syscall.clone(),
            args: vec![cond(
                i as u8 % 6,
                ["dword", "qword"][i % 2],
                ops[i % ops.len()].clone(),
                (i as u64) << (i % 40),
            )],
        })
        .collect();
    rules.extend((0..70u64).map(|i| Rule {
        syscall: "socket".into(),
        args: vec![cond(0, "qword", json!({ "masked_eq": u64::MAX }), i << 20 | 1), cond(1, "dword", json!("ne"), i)],
    }));
    Filter { name: "long", on_match: Action::Errno(1), otherwise: Action::Allow, rules }
}

#[test]
fn long_programs_hop_and_match_seccompiler() {
    let filter = long_filter();
    for arch in ARCHES {
        let program = program(&filter, arch).unwrap();
        assert!(program.len() > 4 * 255, "{} instructions", program.len());
        let hops = program.iter().filter(|i| i.code == bpf::JA).count();
        let rets = program.iter().filter(|i| i.code == bpf::RET_K && i.k == ret(Action::Allow)).count();
        assert!(hops > 0 && rets > 1, "{hops} hops, {rets} copies of RET allow");
        let mut inputs = inputs(arch, std::slice::from_ref(&filter));
        let socket = numbers(arch, &["socket"])[0];
        let sockets = (0..72u64).map(|i| [i << 20 | 1, i + (i & 1), 0, 0, 0, 0]);
        inputs.extend(sockets.map(|args| Data { nr: socket, arch: arch.audit, args, ..Data::default() }));
        assert_same("long", std::slice::from_ref(&filter), arch, &inputs);
    }
}

#[test]
fn programs_are_much_shorter() {
    for arch in ARCHES {
        for (name, _) in profiles::PROFILES {
            let filters = profiles::filters(name, &[], &[]).unwrap();
            let lens = |p: Vec<BpfProgram>| p.iter().map(Vec::len).collect::<Vec<_>>();
            let (old, new) = (lens(seccompiler_programs(&filters, arch)), lens(programs(&filters, arch).unwrap()));
            let (before, after) = (old.iter().sum::<usize>(), new.iter().sum::<usize>());
            let names: Vec<&str> = filters.iter().map(|f| f.name).collect();
            println!(
                "{:8} {name:10} {before:5} -> {after:4} BPF instructions; {names:?}: {old:?} -> {new:?}",
                arch.name
            );
            assert!(after * 2 < before, "{name} on {}: {before} -> {after}", arch.name);
        }
    }
}

#[test]
fn names_resolve_as_in_seccompiler() {
    let got = syscalls::numbers(Arch::X86_64, &["read", "getpid", "open", "frobnicate", "clone3"]).unwrap();
    assert_eq!(got, [Some(0), Some(39), Some(2), None, Some(435)]);
    let got = syscalls::numbers(Arch::AARCH64, &["getpid", "open", "read"]).unwrap();
    assert_eq!(got, [Some(172), None, Some(63)]);
}

#[test]
fn bad_filters_are_refused_as_seccompiler_refuses_them() {
    let bad = |rules: Vec<Rule>, on_match| Filter { name: "bad", on_match, otherwise: Action::Allow, rules };
    let one = |c: Cond| vec![Rule { syscall: "read".into(), args: vec![c] }];
    for filter in [
        bad(vec![Rule { syscall: "frobnicate".into(), args: vec![] }], Action::Errno(1)),
        bad(one(cond(6, "dword", json!("eq"), 1)), Action::Errno(1)),
        bad(one(cond(0, "word", json!("eq"), 1)), Action::Errno(1)),
        bad(one(cond(0, "dword", json!("masked"), 1)), Action::Errno(1)),
        bad(vec![Rule { syscall: "read".into(), args: vec![] }], Action::Allow),
    ] {
        let json = profiles::to_seccompiler_json(std::slice::from_ref(&filter), "x86_64");
        assert!(seccompiler::compile_from_json(json.to_string().as_bytes(), TargetArch::x86_64).is_err());
        assert!(program(&filter, Arch::X86_64).is_err(), "{filter:?}");
    }
}

#[test]
fn every_profile_compiles_for_every_arch() {
    for arch in ARCHES {
        for (name, _) in profiles::PROFILES {
            let filters = profiles::filters(name, &[], &[]).unwrap();
            assert!(programs(&filters, arch).is_ok(), "{name} on {}", arch.name);
        }
    }
}

#[test]
fn unknown_names_are_policy_errors() {
    let spec = SeccompSpec {
        profile: "default".into(),
        allow: vec!["getpid".into()],
        deny: vec!["frobnicate".into()],
        gate: false,
        tcp_only: false,
        gate_listen: false,
        no_xattr_writes: false,
    };
    let e = corral_core::CorralError::from(check_names(&spec).unwrap_err());
    assert_eq!((e.code, e.field.as_deref()), (corral_core::ErrorCode::PolicyInvalid, Some("seccomp.deny[0]")));
}

/// Runs `child` in a forked child and returns its exit code. The child must not allocate:
/// the test harness has other threads.
fn in_child(child: impl FnOnce() -> i32) -> i32 {
    // SAFETY: the child only makes system calls and exits.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
    if pid == 0 {
        let code = child();
        unsafe { libc::_exit(code) }
    }
    let mut status = 0;
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    assert!(libc::WIFEXITED(status), "child ended with status {status:#x}");
    libc::WEXITSTATUS(status)
}

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// The kernel takes every program, and they do what they should: getppid works, setns(-1)
/// answers EPERM from the filter, or EBADF from the kernel where the profile allows it.
#[test]
fn kernel_accepts_the_programs() {
    let mut cases: Vec<(String, Vec<BpfProgram>, i32)> = profile_cases()
        .into_iter()
        .map(|(label, filters)| {
            let programs = programs(&filters, Arch::native().unwrap()).unwrap();
            let setns_allowed = label.starts_with("permissive");
            (label, programs, if setns_allowed { libc::EBADF } else { libc::EPERM })
        })
        .collect();
    cases.push(("long".into(), vec![program(&long_filter(), Arch::native().unwrap()).unwrap()], libc::EBADF));
    for (label, programs, want) in cases {
        let got = in_child(|| {
            if install(&programs).is_err() {
                return 100 + errno();
            }
            if unsafe { libc::syscall(libc::SYS_getppid) } <= 0 {
                return 99;
            }
            unsafe { libc::syscall(libc::SYS_setns, -1, 0) };
            errno()
        });
        assert_eq!(got, want, "{label}: child exit code (99: getppid failed, 100 + errno: install failed)");
    }
}

/// Every profile, whatever its allow list: no set-user-ID or set-group-ID mode by chmod,
/// creation or mkdir, no io_uring, openat2 answers ENOSYS; plain modes still work.
#[test]
fn no_profile_makes_setid_files() {
    let dir = std::env::temp_dir().join(format!("corral-setid-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let c = |name: &str| std::ffi::CString::new(dir.join(name).as_os_str().as_encoded_bytes()).unwrap();
    let (file, made, sub) = (c("file"), c("made"), c("sub"));
    std::fs::write(dir.join("file"), b"").unwrap();
    for (label, filters) in profile_cases() {
        let programs = programs(&filters, Arch::native().unwrap()).unwrap();
        let results = |probe: fn(&std::ffi::CStr, &std::ffi::CStr, &std::ffi::CStr) -> i32| {
            in_child(|| {
                if install(&programs).is_err() {
                    return 100 + errno();
                }
                probe(&file, &made, &sub)
            })
        };
        // Each probe returns 0 when the kernel refused as it should, or 10 + its step.
        let refused = results(|file, made, sub| unsafe {
            let eperm = |rc: libc::c_long| rc < 0 && errno() == libc::EPERM;
            let at = libc::AT_FDCWD as libc::c_long;
            let steps = [
                eperm(libc::syscall(libc::SYS_fchmodat, at, file.as_ptr(), 0o4755)),
                eperm(libc::syscall(libc::SYS_fchmodat, at, file.as_ptr(), 0o2755)),
                eperm(libc::syscall(libc::SYS_fchmodat2, at, file.as_ptr(), 0o6755, 0)),
                eperm(libc::syscall(libc::SYS_openat, at, made.as_ptr(), libc::O_CREAT | libc::O_WRONLY, 0o4755)),
                eperm(libc::syscall(
                    libc::SYS_openat,
                    at,
                    made.as_ptr(),
                    libc::O_CREAT | libc::O_WRONLY,
                    0x1_0000_2644u64,
                )),
                eperm(libc::syscall(libc::SYS_mkdirat, at, sub.as_ptr(), 0o2755)),
                eperm(libc::syscall(libc::SYS_mknodat, at, made.as_ptr(), libc::S_IFREG | 0o4755, 0)),
                eperm(libc::syscall(libc::SYS_io_uring_setup, 1, std::ptr::null_mut::<u8>())),
                libc::syscall(libc::SYS_openat2, at, file.as_ptr(), std::ptr::null_mut::<u8>(), 24) < 0
                    && errno() == libc::ENOSYS,
                libc::syscall(libc::SYS_fchmodat, at, file.as_ptr(), 0o755) == 0,
                // Opening without creating ignores the mode, whatever it holds.
                libc::syscall(libc::SYS_openat, at, file.as_ptr(), libc::O_RDONLY, 0o6755) >= 0,
            ];
            steps.iter().position(|ok| !ok).map_or(0, |i| 10 + i as i32)
        });
        assert_eq!(refused, 0, "{label}: child exit code (10 + the step that was not refused as it should be)");
        let meta = std::fs::metadata(dir.join("file")).unwrap();
        assert_eq!(std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o7777, 0o755, "{label}");
        assert!(!dir.join("made").exists() && !dir.join("sub").exists(), "{label}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Microseconds to install `programs` in a fresh child.
fn install_time(programs: &[BpfProgram]) -> f64 {
    let mut fds = [0; 2];
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    let code = in_child(|| {
        let start = std::time::Instant::now();
        let ok = install(programs).is_ok();
        let ns = start.elapsed().as_nanos() as u64;
        let written = unsafe { libc::write(fds[1], ns.to_ne_bytes().as_ptr().cast(), 8) };
        i32::from(!ok || written != 8)
    });
    let mut buf = [0u8; 8];
    let read = unsafe { libc::read(fds[0], buf.as_mut_ptr().cast(), 8) };
    unsafe { libc::close(fds[0]) };
    unsafe { libc::close(fds[1]) };
    assert_eq!((code, read), (0, 8));
    u64::from_ne_bytes(buf) as f64 / 1000.0
}

/// Not a test: prints the median install time per profile, seccompiler's programs against
/// ours, and what compiling once took.
/// `cargo test -p corral-linux --release --lib install_timing -- --ignored --nocapture`
#[test]
#[ignore = "timing experiment"]
fn install_timing() {
    let arch = Arch::native().unwrap();
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    for (name, _) in profiles::PROFILES {
        let filters = profiles::filters(name, &[], &[]).unwrap();
        let start = std::time::Instant::now();
        let old = seccompiler_programs(&filters, arch);
        let compile_before = start.elapsed().as_secs_f64() * 1e6;
        syscalls::forget();
        let start = std::time::Instant::now();
        let new = programs(&filters, arch).unwrap();
        let compile_after = start.elapsed().as_secs_f64() * 1e6;
        let start = std::time::Instant::now();
        programs(&filters, arch).unwrap();
        let compile_warm = start.elapsed().as_secs_f64() * 1e6;
        let (mut before, mut after) = (Vec::new(), Vec::new());
        for _ in 0..101 {
            before.push(install_time(&old));
            after.push(install_time(&new));
        }
        let len = |p: &[BpfProgram]| p.iter().map(Vec::len).sum::<usize>();
        println!(
            "{name:10} {:5} -> {:4} instructions, install {:5.0} µs -> {:4.0} µs (median of 101), \
             compile {compile_before:4.0} µs -> {compile_after:4.0} µs ({compile_warm:3.0} µs with names cached)",
            len(&old),
            len(&new),
            median(before),
            median(after)
        );
    }
}

/// The gate's filter notifies exactly the calls that can reach a path (and `listen` while
/// bind port rules are in force); `sendto` only with an address.
#[test]
fn the_gate_notifies_connects_binds_and_addressed_sends() {
    const NOTIFY: u32 = libc::SECCOMP_RET_USER_NOTIF;
    const ALLOW: u32 = libc::SECCOMP_RET_ALLOW;
    for arch in ARCHES {
        for listen in [false, true] {
            let program = gate_program(arch, listen).unwrap();
            check_shape(&program);
            let nr = |name: &str| numbers(arch, &[name])[0];
            let call = |name: &str, args: [u64; 6]| {
                run(&program, &Data { nr: nr(name), arch: arch.audit, instruction_pointer: 0, args })
            };
            for name in ["connect", "bind", "sendmsg", "sendmmsg"] {
                assert_eq!(call(name, [3, 0x1000, 16, 0, 0, 0]), NOTIFY, "{} {name}", arch.name);
            }
            assert_eq!(call("sendto", [3, 0x1000, 1, 0, 0x2000, 16]), NOTIFY);
            assert_eq!(call("sendto", [3, 0x1000, 1, 0, 0x1_0000_0000, 0]), NOTIFY, "a high-bits-only address");
            assert_eq!(call("sendto", [3, 0x1000, 1, 0, 0, 0]), ALLOW, "a send to the peer");
            assert_eq!(call("listen", [3, 128, 0, 0, 0, 0]), if listen { NOTIFY } else { ALLOW });
            for name in ["read", "write", "socket", "accept4", "recvmsg", "getpid"] {
                assert_eq!(call(name, [3, 0, 0, 0, 0, 0]), ALLOW, "{} {name}", arch.name);
            }
            let other = Data { nr: nr("connect"), arch: 0x4000_0003, instruction_pointer: 0, args: [0; 6] };
            assert_eq!(run(&program, &other), KILL_PROCESS, "another architecture");
        }
    }
}
