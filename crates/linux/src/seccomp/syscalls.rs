//! System call numbers by name, from seccompiler's table.
//!
//! Runs in: the client (name checks) and the helper (compiling).
//!
//! The table is private to seccompiler, so we compile a filter with one rule per name, rule
//! `i` requiring `arg0 == i`, and read the program back: seccompiler emits, per call number,
//! `JEQ <number>` and then each of its rules' `LD arg0; JEQ i`. Lookups are cached per
//! process.

use super::bpf::{ARGS, JEQ_K, LD_W_ABS, NR, RET_K};
use super::{Arch, SeccompError};
use seccompiler::BpfProgram;
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

/// Per architecture, name → number (`None`: not a system call there).
static TABLE: Mutex<BTreeMap<&str, HashMap<String, Option<u32>>>> = Mutex::new(BTreeMap::new());

/// Names per seccompiler call, keeping its program well under the kernel's 4096
/// instructions (seven per name).
const BATCH: usize = 256;

/// The number of each name, `None` where the architecture has no such call.
pub fn numbers(arch: Arch, names: &[&str]) -> Result<Vec<Option<u32>>, SeccompError> {
    let mut table = TABLE.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let known = table.entry(arch.name).or_default();
    let mut unknown: Vec<&str> = names.iter().copied().filter(|n| !known.contains_key(*n)).collect();
    unknown.sort_unstable();
    unknown.dedup();
    for batch in unknown.chunks(BATCH) {
        probe(arch, batch, known)?;
    }
    Ok(names.iter().map(|n| known[*n]).collect())
}

/// Looks `names` up with one seccompiler call; an unknown name fails the call, and the
/// halves are looked up in turn.
fn probe(arch: Arch, names: &[&str], known: &mut HashMap<String, Option<u32>>) -> Result<(), SeccompError> {
    // Written out directly: a serde_json::Value for hundreds of rules costs more to build
    // than seccompiler takes to compile it.
    let rules: Vec<String> = names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let name = serde_json::Value::from(*name);
            format!(r#"{{"syscall":{name},"args":[{{"index":0,"type":"dword","op":"eq","val":{i}}}]}}"#)
        })
        .collect();
    let doc = format!(
        r#"{{"probe":{{"mismatch_action":"allow","match_action":{{"errno":1}},"filter":[{}]}}}}"#,
        rules.join(",")
    );
    match seccompiler::compile_from_json(doc.as_bytes(), arch.target) {
        Ok(programs) => {
            let numbers = programs.get("probe").map(|p| numbers_by_rule(p, names.len())).unwrap_or_default();
            if numbers.len() != names.len() {
                return Err(SeccompError::ProbeShape);
            }
            known.extend(names.iter().zip(numbers).map(|(name, nr)| (name.to_string(), Some(nr))));
        }
        Err(_) if names.len() > 1 => {
            let (front, back) = names.split_at(names.len() / 2);
            probe(arch, front, known)?;
            probe(arch, back, known)?;
        }
        Err(_) => _ = known.insert(names[0].to_string(), None),
    }
    Ok(())
}

/// The call number of each of `rules` rules; empty if the program is not shaped as expected.
fn numbers_by_rule(program: &BpfProgram, rules: usize) -> Vec<u32> {
    let mut found = vec![None; rules];
    let mut number = None;
    for pair in program.windows(2) {
        let (before, jeq) = (&pair[0], &pair[1]);
        if jeq.code != JEQ_K {
            continue;
        }
        match (before.code, before.k) {
            // A number's JEQ follows the load of the number (the first) or a RET.
            (LD_W_ABS, NR) | (RET_K, _) => number = Some(jeq.k),
            (LD_W_ABS, ARGS) => match found.get_mut(jeq.k as usize) {
                Some(slot @ None) => *slot = number,
                _ => return Vec::new(),
            },
            _ => {}
        }
    }
    found.into_iter().collect::<Option<Vec<u32>>>().unwrap_or_default()
}

/// Empties the cache, for timing a cold compile.
#[cfg(test)]
pub fn forget() {
    TABLE.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clear();
}
