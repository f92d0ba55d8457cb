//! Guards the architecture (`docs/architecture.md`): a module imports only
//! from its own layer or the layers below it, and export and archive, side
//! by side in the duties' layer, never import each other; and no two
//! modules import each other, directly or through others.
//!
//! The imports are read from the sources: every `crate::…` path and every
//! `super::…` path outside comments, up to a file's `#[cfg(test)]` section
//! (tests may use any fixture). Each path is placed in the layer of the
//! longest module prefix in [`LAYERS`].

use std::path::{Path, PathBuf};

/// Module prefixes and their layers, bottom up.
const LAYERS: &[(&str, u8, &str)] = &[
    ("pb", 1, "types"),
    ("raft", 1, "types"),
    ("clock", 1, "clock"),
    ("text", 1, "types"),
    ("log_limit", 1, "clock"),
    ("backoff", 1, "clock"),
    ("metrics", 1, "types"),
    ("tls", 2, "tls"),
    ("auth", 2, "auth"),
    ("config", 2, "config"),
    ("state", 2, "state"),
    ("store", 3, "store"),
    ("ingest", 3, "ingest"),
    ("peer", 4, "peer"),
    ("node", 5, "node"),
    ("drain", 6, "duties"),
    ("witness", 6, "duties"),
    ("trim", 6, "duties"),
    ("join", 6, "duties"),
    ("export", 6, "export"),
    ("archive", 6, "archive"),
    ("admin", 7, "adapters"),
    ("peer::server", 7, "adapters"),
    ("peer::authorize", 7, "adapters"),
    ("server", 8, "server"),
    ("cli", 8, "cli"),
    ("main", 9, "main"),
    ("bin", 9, "main"),
];

/// The layer of module `path` (`a::b::c`), from its longest known prefix.
fn layer(path: &str) -> Option<(u8, &'static str, &'static str)> {
    LAYERS
        .iter()
        .filter(|(prefix, _, _)| path == *prefix || path.starts_with(&format!("{prefix}::")))
        .max_by_key(|(prefix, _, _)| prefix.len())
        .map(|(prefix, layer, name)| (*layer, *name, *prefix))
}

/// The module path of a source file under `src/`.
fn module_of(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).expect("under src");
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().to_string())
        .collect();
    let last = parts.pop().expect("a file name");
    let stem = last.trim_end_matches(".rs");
    if stem != "lib" && stem != "mod" {
        parts.push(stem.to_string());
    }
    parts
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The module paths a line refers to: `crate::a::b` and `super::x`.
fn references(line: &str, module: &[String]) -> Vec<String> {
    let mut found = Vec::new();
    for (start, prefix) in [("crate::", None), ("super::", Some(()))] {
        let mut rest = line;
        while let Some(i) = rest.find(start) {
            let before = rest[..i].chars().last();
            let after = &rest[i + start.len()..];
            rest = after;
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
                continue;
            }
            let tail: String = after
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
                .collect();
            let segments: Vec<&str> = tail
                .split("::")
                .filter(|s| !s.is_empty())
                .take_while(|s| s.chars().next().is_some_and(|c| c.is_lowercase()))
                .collect();
            let mut path: Vec<String> = match prefix {
                None => Vec::new(),
                // `super` is the parent of this file's module.
                Some(()) => module[..module.len().saturating_sub(1)].to_vec(),
            };
            path.extend(segments.iter().map(|s| s.to_string()));
            if !path.is_empty() {
                found.push(path.join("::"));
            }
        }
    }
    found
}

/// Whether `file` is a module its parent declares under `#[cfg(test)]`
/// (`foo/tests.rs` for `#[cfg(test)] mod tests;` in `foo.rs`): test code,
/// like the `#[cfg(test)]` section of a file, which the rules do not cover.
fn is_test_only(file: &Path) -> bool {
    let (Some(dir), Some(stem)) = (file.parent(), file.file_stem()) else {
        return false;
    };
    let parent = dir.with_extension("rs");
    let Ok(text) = std::fs::read_to_string(parent) else {
        return false;
    };
    let stem = stem.to_string_lossy();
    let declarations = [format!("mod {stem};"), format!("pub(crate) mod {stem};")];
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    lines
        .windows(2)
        .any(|w| w[0] == "#[cfg(test)]" && declarations.iter().any(|d| w[1] == d))
}

/// One import read from the sources.
struct Import {
    file: PathBuf,
    line: usize,
    /// The importing module, `a::b`.
    module: String,
    /// The imported path, `c::d::e` (maybe an item, not a module).
    target: String,
}

/// The module path of every source file, and every import outside test
/// code, with the `//`-comments and `#[cfg(test)]` sections left out.
fn imports() -> (Vec<String>, Vec<Import>) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    let mut modules = Vec::new();
    let mut found = Vec::new();
    for file in files {
        let module = module_of(&src, &file);
        let here = module.join("::");
        modules.push(here.clone());
        if is_test_only(&file) {
            continue;
        }
        let text = std::fs::read_to_string(&file).expect("read source");
        for (n, line) in text.lines().enumerate() {
            let code = line.trim_start();
            if code.starts_with("#[cfg(test)]") {
                break;
            }
            if code.starts_with("//") {
                continue;
            }
            for target in references(code, &module) {
                found.push(Import {
                    file: file.strip_prefix(&src).unwrap_or(&file).to_path_buf(),
                    line: n + 1,
                    module: here.clone(),
                    target,
                });
            }
        }
    }
    (modules, found)
}

/// Every (file, line, importer module, imported module, why) that breaks a
/// rule.
fn violations() -> Vec<String> {
    let (modules, imports) = imports();
    let mut found: Vec<String> = modules
        .iter()
        .filter(|m| !m.is_empty() && layer(m).is_none())
        .map(|m| format!("module `{m}` has no layer"))
        .collect();
    for Import {
        file,
        line,
        module,
        target,
    } in imports
    {
        let (Some((own, own_name, _)), Some((theirs, their_name, _))) =
            (layer(&module), layer(&target))
        else {
            continue;
        };
        let why = if theirs > own {
            Some(format!(
                "layer {own} ({own_name}) imports layer {theirs} ({their_name})"
            ))
        } else if (own_name, their_name) == ("export", "archive")
            || (own_name, their_name) == ("archive", "export")
        {
            Some("export and archive never import each other".to_string())
        } else {
            None
        };
        if let Some(why) = why {
            found.push(format!(
                "{}:{line}: `{module}` uses `{target}`: {why}",
                file.display()
            ));
        }
    }
    found
}

/// The longest module in `modules` that `path` names or lies in.
fn module_named<'a>(path: &str, modules: &'a [String]) -> Option<&'a String> {
    modules
        .iter()
        .filter(|m| !m.is_empty() && (path == m.as_str() || path.starts_with(&format!("{m}::"))))
        .max_by_key(|m| m.len())
}

/// Pairs of modules that reach each other through imports, one cycle each
/// as `a -> b -> a`. A module naming its own parent or child is not an
/// edge: that is how Rust re-exports, not a dependency between parts.
fn import_cycles() -> Vec<String> {
    use std::collections::{BTreeMap, BTreeSet};
    let (modules, imports) = imports();
    let mut edges: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for import in &imports {
        let Some(to) = module_named(&import.target, &modules) else {
            continue;
        };
        let from = import.module.as_str();
        let related = |a: &str, b: &str| a == b || a.starts_with(&format!("{b}::"));
        if !related(from, to) && !related(to, from) {
            edges.entry(from).or_default().insert(to.as_str());
        }
    }
    // A path from `to` back to `from`, breadth first.
    let path_back = |from: &str, to: &str| -> Option<Vec<String>> {
        let mut seen = BTreeMap::from([(to, to)]);
        let mut queue = std::collections::VecDeque::from([to]);
        while let Some(at) = queue.pop_front() {
            for next in edges.get(at).into_iter().flatten() {
                if seen.contains_key(next) {
                    continue;
                }
                seen.insert(next, at);
                if *next == from {
                    let mut path = vec![from.to_string()];
                    let mut step = from;
                    while step != to {
                        step = seen[step];
                        path.push(step.to_string());
                    }
                    path.push(from.to_string());
                    return Some(path);
                }
                queue.push_back(next);
            }
        }
        None
    };
    let mut cycles = BTreeSet::new();
    for (from, tos) in &edges {
        for to in tos {
            if let Some(mut path) = path_back(from, to) {
                // Forwards, from the smallest module, so each cycle is
                // reported once whichever of its edges found it.
                path.reverse();
                path.pop();
                let start = (0..path.len()).min_by_key(|i| &path[*i]).unwrap_or(0);
                path.rotate_left(start);
                path.push(path[0].clone());
                cycles.insert(path.join(" -> "));
            }
        }
    }
    cycles.into_iter().collect()
}

#[test]
fn no_module_imports_from_a_layer_above_it_and_export_and_archive_stay_apart() {
    let found = violations();
    assert!(
        found.is_empty(),
        "{} import(s) break the layers of docs/architecture.md:\n{}",
        found.len(),
        found.join("\n")
    );
}

#[test]
fn the_guard_sees_an_upward_import_and_a_sideways_one() {
    let node = vec!["node".to_string()];
    let refs = references(
        "use crate::admin::Duties; let x = crate::pb::log::Entry;",
        &node,
    );
    assert_eq!(
        refs,
        vec![
            "admin::Duties".replace("::Duties", ""),
            "pb::log".to_string()
        ]
    );
    assert!(layer("admin").unwrap().0 > layer("node").unwrap().0);
    let server = vec!["peer".to_string(), "server".to_string()];
    assert_eq!(
        references("use super::wire::NOT_LEADER;", &server),
        vec!["peer::wire"]
    );
    assert_eq!(layer("peer::wire").unwrap().0, 4);
    assert_eq!(layer("peer::server").unwrap().0, 7);
    assert_eq!(layer("config::sink").unwrap().1, "config");
    assert_eq!(layer("archive::archiver").unwrap().1, "archive");
}

/// The replicated state model is pure: no runtime, no database.
#[test]
fn the_state_model_imports_neither_tokio_nor_redb() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = vec![src.join("state.rs")];
    rust_files(&src.join("state"), &mut files);
    let mut found = Vec::new();
    for file in files {
        if is_test_only(&file) {
            continue;
        }
        let text = std::fs::read_to_string(&file).expect("read source");
        for (n, line) in text.lines().enumerate() {
            if line.trim_start().starts_with("//") {
                continue;
            }
            if ["tokio::", "redb::", "use tokio", "use redb"]
                .iter()
                .any(|p| line.contains(p))
            {
                found.push(format!("{}:{}: {line}", file.display(), n + 1));
            }
        }
    }
    assert!(
        found.is_empty(),
        "the state model does I/O:\n{}",
        found.join("\n")
    );
}

#[test]
fn a_module_declared_under_cfg_test_is_test_code_and_others_are_not() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    assert!(is_test_only(&src.join("archive/block/tests.rs")));
    assert!(is_test_only(&src.join("archive/reader/fixtures.rs")));
    assert!(!is_test_only(&src.join("archive/block/key.rs")));
    assert!(!is_test_only(&src.join("node/membership/safety.rs")));
}

#[test]
fn no_two_modules_import_each_other() {
    let cycles = import_cycles();
    assert!(
        cycles.is_empty(),
        "{} import cycle(s):\n{}",
        cycles.len(),
        cycles.join("\n")
    );
}
