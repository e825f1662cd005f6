//! The Rust sources stay easy to follow: every module says at its top which process it
//! runs in, no file is so long that it hides several concerns unless its top says why
//! ("Long because"), and no two modules import each other, directly or around a loop.
//!
//! Imports are read from `crate::…`, `super::…` and `use child::…` paths at file level,
//! the way a reader follows them; a file's own `mod` declarations are not imports.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// Every library source file, by crate: `(crate src dir, files)`. Binaries, tests and
/// examples are crates of their own and import only through the public API.
fn sources() -> Vec<(PathBuf, Vec<PathBuf>)> {
    let crates = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let mut out = Vec::new();
    for entry in fs::read_dir(crates).unwrap().flatten() {
        let src = entry.path().join("src");
        if src.join("lib.rs").exists() {
            let mut files = Vec::new();
            walk(&src, &mut files);
            files.retain(|f| !f.strip_prefix(&src).unwrap().starts_with("bin"));
            files.sort();
            out.push((src, files));
        }
    }
    out
}

fn walk(dir: &Path, files: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap().flatten() {
        let p = entry.path();
        if p.is_dir() {
            walk(&p, files);
        } else if p.extension().is_some_and(|e| e == "rs") {
            files.push(p);
        }
    }
}

/// The module path of a file: `lib.rs` is `[]`, `a/mod.rs` and `a.rs` are `[a]`.
fn module_of(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).unwrap();
    let mut parts: Vec<String> = rel.iter().map(|c| c.to_string_lossy().into_owned()).collect();
    let last = parts.pop().unwrap();
    if last != "mod.rs" && last != "lib.rs" {
        parts.push(last.trim_end_matches(".rs").to_string());
    }
    parts
}

/// The file of module `path`, if there is one.
fn file_of(src: &Path, path: &[String]) -> Option<PathBuf> {
    if path.is_empty() {
        return Some(src.join("lib.rs"));
    }
    let dir: PathBuf = path.iter().collect();
    [src.join(&dir).with_extension("rs"), src.join(&dir).join("mod.rs")].into_iter().find(|p| p.exists())
}

/// The deepest module file that `path` names (the rest are items inside it).
fn resolve(src: &Path, path: &[String]) -> Option<PathBuf> {
    (0..=path.len()).rev().find_map(|n| file_of(src, &path[..n]).filter(|_| n > 0 || path.is_empty()))
}

/// Path segments after `at` in `line`: identifiers joined by `::`, with one level of
/// `{a, b::c}` expanded.
fn paths_after(line: &str, at: usize) -> Vec<Vec<String>> {
    let rest = &line[at..];
    let mut head = Vec::new();
    let mut chars = rest.char_indices().peekable();
    let mut word = String::new();
    while let Some((i, c)) = chars.next() {
        if c.is_alphanumeric() || c == '_' {
            word.push(c);
        } else if rest[i..].starts_with("::") {
            chars.next();
            head.push(std::mem::take(&mut word));
            if rest[i + 2..].starts_with('{') {
                let close = rest[i + 2..].find('}').map(|j| i + 2 + j).unwrap_or(rest.len());
                return rest[i + 3..close]
                    .split(',')
                    .map(|item| {
                        let mut p = head.clone();
                        p.extend(
                            item.trim()
                                .split("::")
                                .map(|s| s.trim().to_string())
                                .filter(|s| !s.is_empty() && s.chars().all(|c| c.is_alphanumeric() || c == '_')),
                        );
                        p
                    })
                    .collect();
            }
        } else {
            break;
        }
    }
    if !word.is_empty() {
        head.push(word);
    }
    vec![head]
}

/// The files `file` imports within its crate.
fn imports(src: &Path, file: &Path) -> BTreeSet<PathBuf> {
    let me = module_of(src, file);
    let is_mod_file = file.ends_with("mod.rs") || file.ends_with("lib.rs");
    let text = fs::read_to_string(file).unwrap();
    let mut out = BTreeSet::new();
    // Unit tests below `#[cfg(test)]` are not part of the layering (and their `super` is
    // the file itself).
    for raw in text.lines().take_while(|l| !l.trim_start().starts_with("#[cfg(test)]")) {
        let line = raw.split("//").next().unwrap();
        let mut candidates = Vec::new();
        for (at, _) in line.match_indices("crate::") {
            if at > 0 && line[..at].ends_with(|c: char| c.is_alphanumeric() || c == '_') {
                continue; // e.g. `corral_crate::`
            }
            for p in paths_after(line, at) {
                candidates.push(p[1..].to_vec());
            }
        }
        for (at, _) in line.match_indices("super::") {
            if at > 0 && line[..at].ends_with("::") {
                continue; // counted with the first `super::`
            }
            for p in paths_after(line, at) {
                let ups = p.iter().take_while(|s| *s == "super").count();
                // In `a/b.rs` (module a::b) `super` is `a`; in `a/mod.rs` (module a) too.
                let mut base = me.clone();
                for _ in 0..ups {
                    base.pop();
                }
                base.extend(p[ups..].iter().cloned());
                candidates.push(base);
            }
        }
        // `use child::…` in a file that has children.
        if let Some(at) = line.trim_start().strip_prefix("use ").map(|_| line.find("use ").unwrap() + 4) {
            for p in paths_after(line, at) {
                if is_mod_file && !p.is_empty() && p[0] != "crate" && p[0] != "super" && p[0] != "self" {
                    let mut child = me.clone();
                    child.push(p[0].clone());
                    if file_of(src, &child).is_some() {
                        let mut full = me.clone();
                        full.extend(p.iter().cloned());
                        candidates.push(full);
                    }
                }
            }
        }
        for c in candidates {
            if let Some(target) = resolve(src, &c) {
                if target != file {
                    out.insert(target);
                }
            }
        }
    }
    out
}

#[test]
fn no_import_loops() {
    let mut loops = Vec::new();
    for (src, files) in sources() {
        let graph: BTreeMap<PathBuf, BTreeSet<PathBuf>> = files.iter().map(|f| (f.clone(), imports(&src, f))).collect();
        let mut state: BTreeMap<PathBuf, bool> = BTreeMap::new(); // false: open, true: done
        fn visit(
            f: &PathBuf,
            graph: &BTreeMap<PathBuf, BTreeSet<PathBuf>>,
            state: &mut BTreeMap<PathBuf, bool>,
            path: &mut Vec<PathBuf>,
            loops: &mut Vec<String>,
        ) {
            match state.get(f) {
                Some(true) => return,
                Some(false) => {
                    let start = path.iter().position(|p| p == f).unwrap();
                    let names: Vec<String> = path[start..].iter().chain([f]).map(|p| p.display().to_string()).collect();
                    loops.push(names.join(" -> "));
                    return;
                }
                None => {}
            }
            state.insert(f.clone(), false);
            path.push(f.clone());
            for g in graph.get(f).into_iter().flatten() {
                visit(g, graph, state, path, loops);
            }
            path.pop();
            state.insert(f.clone(), true);
        }
        for f in &files {
            visit(f, &graph, &mut state, &mut Vec::new(), &mut loops);
        }
    }
    assert_eq!(loops, Vec::<String>::new());
}

/// The library files whose text breaks a rule, for an assertion that lists them.
fn breaking(rule: impl Fn(&str) -> bool) -> Vec<String> {
    let files = sources().into_iter().flat_map(|(_, files)| files);
    files.filter(|f| !rule(&fs::read_to_string(f).unwrap())).map(|f| f.display().to_string()).collect()
}

#[test]
fn long_files_say_why() {
    let long = breaking(|text| {
        let top: String = text.lines().take(40).collect::<Vec<_>>().join("\n");
        text.lines().count() <= 600 || top.contains("Long because")
    });
    assert_eq!(long, Vec::<String>::new());
}

#[test]
fn every_module_says_which_process_it_runs_in() {
    let silent = breaking(|text| {
        let top: Vec<&str> = text.lines().take(16).map(|l| l.trim_start_matches("//!").trim()).collect();
        top.join(" ").contains("Runs in:")
    });
    assert_eq!(silent, Vec::<String>::new());
}

#[test]
fn the_reader_finds_imports_in_every_spelling() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().join("linux/src");
    let helper = imports(&src, &src.join("helper/mod.rs"));
    for f in ["ipc/protocol.rs", "ipc/transport.rs", "helper/running.rs", "ipc/report.rs", "error.rs"] {
        assert!(helper.contains(&src.join(f)), "helper/mod.rs imports {f}: {helper:?}");
    }
    let init = imports(&src, &src.join("sandbox/init/mod.rs"));
    assert!(init.contains(&src.join("sandbox/mod.rs")), "{init:?}");
    assert!(init.contains(&src.join("sandbox/init/bridge.rs")), "{init:?}");
}
