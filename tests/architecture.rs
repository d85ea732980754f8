//! The shape of `src/`: module dependencies go one way. Reads the sources
//! (no compiler help needed): every `crate::a::…` and `super::…` path in a
//! file is an edge from that file's module to the module it names.
//! Top-level modules must form no cycle, the submodules of one directory
//! module must form no cycle among themselves (its `mod.rs`, the module's
//! interface, is left out), and no domain module reads the raw YAML types.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const SRC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/src");

/// `src/jwt/cache.rs` → `["jwt", "cache"]`; `src/jwt/mod.rs` → `["jwt"]`.
fn module_of(file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(SRC).expect("under src/");
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_owned())
        .collect();
    if parts
        .last()
        .is_some_and(|p| p == "mod" || p == "lib" || p == "main")
    {
        parts.pop();
    }
    parts
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            if !path.ends_with("bin") {
                rust_files(&path, out);
            }
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The code of a file without comments and without its `#[cfg(test)]` tail
/// (tests may reach anywhere).
fn code_of(text: &str) -> String {
    let text = match text.find("#[cfg(test)]") {
        Some(i) => &text[..i],
        None => text,
    };
    text.lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Module paths a file's code names: `crate::x::y` and `super::…` (resolved).
fn references(module: &[String], code: &str) -> BTreeSet<Vec<String>> {
    let mut out = BTreeSet::new();
    let ident = |s: &str| -> Vec<String> {
        s.split("::")
            .map(|p| {
                p.chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect::<String>()
            })
            .take_while(|p| !p.is_empty())
            .collect()
    };
    for (i, _) in code.match_indices("crate::") {
        let path = ident(&code[i + "crate::".len()..]);
        if !path.is_empty() {
            out.insert(path);
        }
    }
    for (i, _) in code.match_indices("super::") {
        // `super` is the module one level up (for `a/b.rs` and for
        // `a/b/mod.rs` alike, whose module paths are `a::b`).
        let mut base: Vec<String> = module.to_vec();
        base.pop();
        let rest = ident(&code[i + "super::".len()..]);
        // Only the first segment after `super` can be `super` again in this
        // code base's style; skip such chains (resolved by the next match).
        if rest.first().is_some_and(|s| s == "super") {
            continue;
        }
        base.extend(rest);
        out.insert(base);
    }
    out
}

/// The module graph at `depth` path segments, restricted to paths under `scope`.
fn graph(depth: usize, scope: &[String]) -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    rust_files(Path::new(SRC), &mut files);
    let known: BTreeSet<Vec<String>> = files.iter().map(|f| module_of(f)).collect();
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in &files {
        let module = module_of(file);
        if module.len() < depth || !module.starts_with(scope) {
            continue;
        }
        // The interface file of the scope itself is left out.
        if module.len() == scope.len() && !scope.is_empty() {
            continue;
        }
        let from = module[..depth].join("::");
        let code = code_of(&std::fs::read_to_string(file).expect("read source"));
        for target in references(&module, &code) {
            if !target.starts_with(scope) || target.len() < depth {
                continue;
            }
            // Only edges to real modules (not items of the scope's mod.rs).
            let to_module: Vec<String> = target[..depth].to_vec();
            if !known.iter().any(|k| k.starts_with(&to_module)) {
                continue;
            }
            let to = to_module.join("::");
            if to != from {
                edges.entry(from.clone()).or_default().insert(to);
            }
        }
    }
    edges
}

/// One cycle of the graph, if it has any.
fn find_cycle(edges: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        stack: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(pos) = stack.iter().position(|n| n == node) {
            let mut cycle = stack[pos..].to_vec();
            cycle.push(node.to_owned());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        stack.push(node.to_owned());
        for next in edges.get(node).into_iter().flatten() {
            if let Some(c) = visit(next, edges, stack, done) {
                return Some(c);
            }
        }
        stack.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    for node in edges.keys() {
        if let Some(c) = visit(node, edges, &mut Vec::new(), &mut done) {
            return Some(c);
        }
    }
    None
}

#[test]
fn top_level_modules_depend_on_each_other_one_way() {
    let edges = graph(1, &[]);
    assert!(edges.contains_key("proxy"), "the graph was read: {edges:?}");
    if let Some(cycle) = find_cycle(&edges) {
        panic!("module cycle: {}", cycle.join(" -> "));
    }
}

#[test]
fn submodules_of_each_directory_module_depend_on_each_other_one_way() {
    let mut dirs = Vec::new();
    for entry in std::fs::read_dir(SRC).expect("read src") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() && !path.ends_with("bin") {
            dirs.push(
                path.file_name()
                    .expect("name")
                    .to_string_lossy()
                    .into_owned(),
            );
        }
    }
    assert!(dirs.len() >= 5, "{dirs:?}");
    for dir in dirs {
        let edges = graph(2, std::slice::from_ref(&dir));
        if let Some(cycle) = find_cycle(&edges) {
            panic!("module cycle in {dir}/: {}", cycle.join(" -> "));
        }
    }
}

#[test]
fn the_cycle_finder_finds_a_cycle() {
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    edges.entry("a".into()).or_default().insert("b".into());
    edges.entry("b".into()).or_default().insert("c".into());
    assert_eq!(find_cycle(&edges), None);
    edges.entry("c".into()).or_default().insert("a".into());
    assert_eq!(
        find_cycle(&edges),
        Some(vec!["a".into(), "b".into(), "c".into(), "a".into()])
    );
}

#[test]
fn no_domain_module_reads_the_raw_yaml_types() {
    let mut files = Vec::new();
    rust_files(Path::new(SRC), &mut files);
    for file in files {
        let module = module_of(&file);
        if module.first().is_some_and(|m| m == "config" || m == "cli") {
            continue;
        }
        let code = code_of(&std::fs::read_to_string(&file).expect("read source"));
        assert!(
            !code.contains("config::raw"),
            "{} reads config::raw; domain types belong in their module",
            file.display()
        );
    }
}
