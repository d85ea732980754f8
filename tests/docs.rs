//! The documentation holds together: every relative link resolves, the
//! configuration reference lists exactly the keys and defaults the code
//! documents (`portcullis::config::defaults::DOCUMENTED`), and the README
//! stays a short front door that leads to every page under `docs/`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use portcullis::config::defaults::DOCUMENTED;

/// The repository root.
fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// The Markdown files of `dir` (not recursive), sorted.
fn markdown_in(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|ext| ext == "md"))
        .collect();
    files.sort();
    files
}

/// Every Markdown page whose links are checked.
fn documentation_pages() -> Vec<PathBuf> {
    let mut pages = vec![
        root().join("README.md"),
        root().join("plugins/README.md"),
        root().join("plugins/ABI.md"),
    ];
    pages.extend(markdown_in(&root().join("docs")));
    pages.extend(markdown_in(&root().join("benches")));
    pages
}

/// `text` without its inline code spans (a link inside backticks is not a link).
fn without_code_spans(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut in_code = false;
    for c in line.chars() {
        if c == '`' {
            in_code = !in_code;
        } else if !in_code {
            out.push(c);
        }
    }
    out
}

/// The targets of the Markdown links of `text` with their line numbers:
/// inline links `[text](target "title")` and reference definitions
/// `[name]: target`, outside fenced code blocks and code spans.
fn link_targets(text: &str) -> Vec<(usize, String)> {
    let mut targets = Vec::new();
    let mut fenced = false;
    for (index, line) in text.lines().enumerate() {
        let number = index + 1;
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        let line = without_code_spans(line);
        if let Some(definition) = line.trim_start().strip_prefix('[') {
            if let Some((label, rest)) = definition.split_once("]:") {
                if !label.is_empty() && !label.contains(']') {
                    if let Some(target) = rest.split_whitespace().next() {
                        targets.push((number, unbracket(target).to_owned()));
                    }
                    continue;
                }
            }
        }
        let mut rest = line.as_str();
        while let Some(start) = rest.find("](") {
            let after = &rest[start + 2..];
            let Some(end) = after.find(')') else {
                break;
            };
            let inside = after[..end].trim();
            let target = inside.split_whitespace().next().unwrap_or("");
            targets.push((number, unbracket(target).to_owned()));
            rest = &after[end..];
        }
    }
    targets
}

fn unbracket(target: &str) -> &str {
    target
        .strip_prefix('<')
        .and_then(|t| t.strip_suffix('>'))
        .unwrap_or(target)
}

/// The file a relative link points to, or `None` for links that leave the
/// repository's files (web, mail) or stay on the page (`#anchor`).
fn linked_file(page: &Path, target: &str) -> Option<PathBuf> {
    let lower = target.to_ascii_lowercase();
    if target.is_empty()
        || target.starts_with('#')
        || lower.starts_with("http://")
        || lower.starts_with("https://")
        || lower.starts_with("mailto:")
    {
        return None;
    }
    let file = target.split('#').next().unwrap_or(target);
    let file = file.split('?').next().unwrap_or(file);
    let dir = page.parent().unwrap_or(root());
    Some(dir.join(file))
}

/// Broken relative links of one page, as `page:line: target`.
fn broken_links(page: &Path, text: &str) -> Vec<String> {
    link_targets(text)
        .into_iter()
        .filter_map(|(line, target)| {
            let file = linked_file(page, &target)?;
            (!file.exists()).then(|| {
                let shown = page.strip_prefix(root()).unwrap_or(page);
                format!("{}:{line}: {target}", shown.display())
            })
        })
        .collect()
}

#[test]
fn every_relative_link_in_the_docs_resolves() {
    let mut broken = Vec::new();
    let mut checked = 0;
    for page in documentation_pages() {
        let text = read(&page);
        checked += link_targets(&text).len();
        broken.extend(broken_links(&page, &text));
    }
    assert!(checked > 0, "no links found: is the link scanner broken?");
    assert!(
        broken.is_empty(),
        "links to files that do not exist:\n{}",
        broken.join("\n")
    );
}

#[test]
fn the_link_check_catches_a_broken_link_and_skips_what_is_not_a_file() {
    let page = root().join("docs/example.md");
    let text = "\
[ok](configuration.md#every-key) [up](../README.md) [web](https://example.com/x.md)\n\
[anchor](#here) [mail](mailto:ops@example.com) `[code](nowhere.md)`\n\
```\n[fenced](nowhere.md)\n```\n\
[broken](no-such-page.md) and [also](../src/no_such_module.rs#L1)\n\
[ref]: missing-reference.md\n";
    assert_eq!(
        broken_links(&page, text),
        [
            "docs/example.md:6: no-such-page.md",
            "docs/example.md:6: ../src/no_such_module.rs#L1",
            "docs/example.md:7: missing-reference.md",
        ]
    );
}

/// The `| key | default | meaning |` table of docs/configuration.md: each
/// key (backticks removed) with its default as written (`—` for none).
fn reference_table(text: &str) -> Vec<(String, String)> {
    let mut rows = Vec::new();
    let mut in_table = false;
    for line in text.lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        if !line.trim_start().starts_with('|') || cells.len() < 4 {
            in_table = false;
            continue;
        }
        if cells[1..4] == ["key", "default", "meaning"] {
            in_table = true;
            continue;
        }
        if !in_table || cells[1].starts_with("---") {
            continue;
        }
        rows.push((cells[1].to_owned(), cells[2].to_owned()));
    }
    rows
}

/// `` `text` `` → `text`; anything else unchanged.
fn code(cell: &str) -> &str {
    cell.strip_prefix('`')
        .and_then(|c| c.strip_suffix('`'))
        .unwrap_or(cell)
}

/// Differences between the reference table and [`DOCUMENTED`], one per line.
fn reference_mismatches(text: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let mut documented: BTreeMap<&str, &str> = BTreeMap::new();
    for (key, default) in DOCUMENTED {
        documented.insert(*key, *default);
    }
    let mut seen = BTreeSet::new();
    for (key_cell, default_cell) in reference_table(text) {
        let key = code(&key_cell).to_owned();
        if !key_cell.starts_with('`') || !key_cell.ends_with('`') {
            problems.push(format!("key {key_cell} is not written in backticks"));
        }
        if !seen.insert(key.clone()) {
            problems.push(format!("`{key}` has more than one row"));
        }
        let Some(expected) = documented.get(key.as_str()) else {
            problems.push(format!(
                "`{key}` is in the reference but not in config::defaults::DOCUMENTED"
            ));
            continue;
        };
        let wanted = if expected.is_empty() {
            "—".to_owned()
        } else {
            format!("`{expected}`")
        };
        if default_cell != wanted {
            problems.push(format!(
                "`{key}`: the reference says {default_cell}, DOCUMENTED says {wanted}"
            ));
        }
    }
    for key in documented.keys() {
        if !seen.contains(*key) {
            problems.push(format!("`{key}` is missing from the reference table"));
        }
    }
    problems
}

#[test]
fn every_config_key_and_default_is_in_the_configuration_reference() {
    let text = read(&root().join("docs/configuration.md"));
    assert!(
        !reference_table(&text).is_empty(),
        "docs/configuration.md has no `| key | default | meaning |` table"
    );
    let problems = reference_mismatches(&text);
    assert!(
        problems.is_empty(),
        "docs/configuration.md and src/config/defaults.rs disagree:\n{}",
        problems.join("\n")
    );
}

#[test]
fn the_reference_check_catches_a_missing_key_and_a_wrong_default() {
    let text = read(&root().join("docs/configuration.md"));
    let missing = text.replace("| `log.spans` | `false` |", "| `log.spanz` | `false` |");
    assert_ne!(missing, text, "the `log.spans` row was not found");
    let problems = reference_mismatches(&missing);
    assert!(problems
        .iter()
        .any(|p| p.contains("`log.spans` is missing")));
    assert!(problems
        .iter()
        .any(|p| p.contains("`log.spanz` is in the reference")));

    let wrong = text.replace("| `jwt.leeway` | `30s` |", "| `jwt.leeway` | `60s` |");
    assert_ne!(wrong, text, "the `jwt.leeway` row was not found");
    assert_eq!(
        reference_mismatches(&wrong),
        ["`jwt.leeway`: the reference says `60s`, DOCUMENTED says `30s`"]
    );

    let none = text.replace(
        "| `listeners.proxy` | — |",
        "| `listeners.proxy` | `none` |",
    );
    assert_ne!(none, text, "the `listeners.proxy` row was not found");
    assert_eq!(reference_mismatches(&none).len(), 1);
}

#[test]
fn the_readme_is_a_front_door() {
    let readme_path = root().join("README.md");
    let readme = read(&readme_path);
    assert!(
        readme.len() <= 12 * 1024,
        "README.md is {} bytes; keep it at most 12 KiB and move detail to docs/",
        readme.len()
    );
    for command in ["make run", "make test"] {
        assert!(
            readme.contains(command),
            "README.md does not show `{command}`"
        );
    }
    let linked: Vec<PathBuf> = link_targets(&readme)
        .into_iter()
        .filter_map(|(_, target)| linked_file(&readme_path, &target))
        .map(|file| file.components().collect())
        .collect();
    let pages = markdown_in(&root().join("docs"));
    assert!(!pages.is_empty(), "docs/ has no pages");
    for page in pages {
        let page: PathBuf = page.components().collect();
        assert!(
            linked.contains(&page),
            "README.md does not link to {}",
            page.strip_prefix(root()).unwrap_or(&page).display()
        );
    }
}
