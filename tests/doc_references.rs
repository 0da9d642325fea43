//! No reference in the repository leads nowhere.
//!
//! Scans every `.rs` and `.md` file of the repository (not `target/`, hidden directories or the verbatim fixture copy
//! under `testdata/spec/fixtures/`) and fails, naming `file:line`, on:
//!
//! - (a) a section reference (the section sign followed by a number) whose file is not given as a repository path.
//!   The required form is `docs/protocol/<file>.md` followed by a space and the section sign with the number, e.g.
//!   `docs/protocol/usage-service.md §2.1`; further sections of the same file may follow on the same line, joined
//!   only by commas, dashes, "and", "or" or "to" (`docs/protocol/adapter-engine.md §4, §5 and §8`). Inside
//!   `docs/protocol/` a bare section sign means the file it is written in. `RFC <n>` followed by a section is an
//!   external standard and is not checked;
//! - (b) a referenced file that does not exist;
//! - (c) a section number that has no heading starting with that number in the referenced file (`## 2. Paging`,
//!   `### 2.1 ...`);
//! - (d) a Markdown link `[text](path)` or reference definition `[label]: path` in a `.md` file, or a mention of a
//!   `.md` path with an `#anchor` in any scanned file, whose file does not exist (or lies outside the repository);
//! - (e) a mention of the steering repository's specification directory (the parent directory's `shared`, or its
//!   `spec` folder) outside `.ci/` and `CHANGELOG.md`: the repository documents the protocol itself, in
//!   `docs/protocol/`.
//!
//! Only the standard library is used.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::Path;

/// Where the protocol reference lives; a bare section sign inside it refers to its own file.
const PROTOCOL_DIR: &str = "docs/protocol/";

/// Paths of files (or directories) excluded from the scan, relative to the repository root.
const EXCLUDED: [&str; 2] = ["target", "testdata/spec/fixtures"];

/// Files allowed to mention the specification outside the repository (rule e).
const SPEC_MENTION_ALLOWED: [&str; 2] = [".ci/", "CHANGELOG.md"];

/// The mentions rule (e) forbids, spelled so that this file does not contain them.
const SPEC_MENTIONS: [&str; 2] = [concat!("..", "/shared"), concat!("shared", "/spec")];

/// The section sign, spelled so that this file's own examples are not read as references.
const SECTION_SIGN: char = '\u{a7}';

/// One reference that leads nowhere.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Problem {
    /// Repository-relative path of the file holding the reference.
    file: String,
    /// 1-based line number.
    line: usize,
    /// What is wrong, and how to write it instead.
    message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.file, self.line, self.message)
    }
}

/// Checks `files` (repository-relative path with `/` separators → text). `exists` answers whether a
/// repository-relative path (file or directory) exists; section headings are read from `files` only.
fn check(files: &BTreeMap<String, String>, exists: &dyn Fn(&str) -> bool) -> Vec<Problem> {
    let mut problems = BTreeSet::new();
    let mut headings: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    for (path, text) in files {
        if path.ends_with(".md") {
            headings.insert(path, section_numbers(text));
        }
    }
    for (path, text) in files {
        let is_markdown = path.ends_with(".md");
        let mut in_fence = false;
        for (index, line) in text.lines().enumerate() {
            let mut report = |message: String| {
                problems.insert(Problem { file: path.clone(), line: index + 1, message });
            };
            for reference in section_references(path, line) {
                match reference {
                    Err(message) => report(message),
                    Ok((target, section)) => match headings.get(target.as_str()) {
                        None => report(format!("`{target} {SECTION_SIGN}{section}`: no such Markdown file")),
                        Some(sections) if !sections.contains(&section) => report(format!(
                            "`{target} {SECTION_SIGN}{section}`: {target} has no heading numbered {section}"
                        )),
                        Some(_) => {}
                    },
                }
            }
            if is_markdown {
                if is_fence(line) {
                    in_fence = !in_fence;
                } else if !in_fence {
                    for target in markdown_link_targets(line) {
                        if let Some(message) = broken_link(path, &target, exists) {
                            report(message);
                        }
                    }
                }
            }
            for target in anchored_mentions(line) {
                let from_dir = resolve(parent_dir(path), &target);
                let from_root = resolve("", &target);
                if ![from_dir, from_root].into_iter().flatten().any(|p| exists(&p)) {
                    report(format!("`{target}`: no such file"));
                }
            }
            if !SPEC_MENTION_ALLOWED.iter().any(|allowed| path.starts_with(allowed)) {
                for mention in SPEC_MENTIONS {
                    if line.contains(mention) {
                        report(format!(
                            "mentions `{mention}`: the specification is not part of the repository; \
                             refer to docs/protocol/ instead"
                        ));
                    }
                }
            }
        }
    }
    problems.into_iter().collect()
}

/// The section numbers of a Markdown file: every heading (outside code fences) whose text starts with a number
/// such as `2`, `2.` or `2.1`.
fn section_numbers(text: &str) -> BTreeSet<String> {
    let mut numbers = BTreeSet::new();
    let mut in_fence = false;
    for line in text.lines() {
        if is_fence(line) {
            in_fence = !in_fence;
            continue;
        }
        if in_fence || !line.starts_with('#') {
            continue;
        }
        let title = line.trim_start_matches('#');
        if !title.starts_with(' ') {
            continue;
        }
        let number = leading_section_number(title.trim_start());
        let rest = &title.trim_start()[number.len()..];
        if !number.is_empty() && (rest.is_empty() || rest.starts_with(['.', ' '])) {
            numbers.insert(number.to_string());
        }
    }
    numbers
}

fn is_fence(line: &str) -> bool {
    let trimmed = line.trim_start();
    trimmed.starts_with("```") || trimmed.starts_with("~~~")
}

/// `2.1` from `2.1 Paging`, `4` from `4.` (a sentence's full stop is not part of the number), `` from `x`.
fn leading_section_number(text: &str) -> &str {
    let bytes = text.as_bytes();
    let mut end = 0;
    while end < bytes.len() && bytes[end].is_ascii_digit() {
        end += 1;
        let dot_then_digit = end + 1 < bytes.len() && bytes[end] == b'.' && bytes[end + 1].is_ascii_digit();
        if dot_then_digit {
            end += 1;
        }
    }
    &text[..end]
}

/// The section references of one line: `Ok((file, section))` for each, or `Err(message)` when the reference is
/// malformed (rule a).
fn section_references(file: &str, line: &str) -> Vec<Result<(String, String), String>> {
    let mut references = Vec::new();
    // The file of the current reference group and the byte offset where its last section number ended.
    let mut group: Option<(String, usize)> = None;
    for (at, sign) in line.match_indices(SECTION_SIGN) {
        let after = &line[at + sign.len()..];
        let before = &line[..at];
        if is_external_standard(before) {
            group = None;
            continue;
        }
        let section = leading_section_number(after).to_string();
        let end = at + sign.len() + section.len();
        let target = if let Some(path) = path_before(before) {
            if !path.contains('/') || path.starts_with("./") || path.starts_with("../") {
                references.push(Err(format!(
                    "`{path} {SECTION_SIGN}{section}`: give the file as a repository path, e.g. \
                     `docs/protocol/{name} {SECTION_SIGN}{section}`",
                    name = path.rsplit('/').next().unwrap_or(&path)
                )));
                group = None;
                continue;
            }
            path
        } else if let Some((path, _)) = group.as_ref().filter(|(_, last)| only_separators(&line[*last..at])) {
            path.clone()
        } else if file.starts_with(PROTOCOL_DIR) {
            file.to_string()
        } else {
            references.push(Err(format!(
                "`{SECTION_SIGN}{section}` does not name its file: write `docs/protocol/<file>.md {SECTION_SIGN}{section}`"
            )));
            group = None;
            continue;
        };
        if section.is_empty() {
            references.push(Err(format!("`{target} {SECTION_SIGN}` has no section number")));
            group = None;
            continue;
        }
        references.push(Ok((target.clone(), section)));
        group = Some((target, end));
    }
    references
}

/// `RFC 9110 ` before a section sign: a section of an external standard.
fn is_external_standard(before: &str) -> bool {
    let trimmed = before.trim_end();
    let without_number = trimmed.trim_end_matches(|c: char| c.is_ascii_digit());
    without_number.len() < trimmed.len() && without_number.trim_end().ends_with("RFC")
}

/// The `.md` path written right before a section sign (after optional white space and a closing backtick).
fn path_before(before: &str) -> Option<String> {
    let trimmed = before.trim_end();
    let trimmed = trimmed.strip_suffix('`').unwrap_or(trimmed);
    if !trimmed.ends_with(".md") {
        return None;
    }
    Some(trimmed[path_suffix_start(trimmed)..].to_string())
}

/// Where the run of path characters that ends `text` starts.
fn path_suffix_start(text: &str) -> usize {
    text.char_indices().rev().take_while(|&(_, c)| is_path_char(c)).last().map_or(text.len(), |(i, _)| i)
}

fn is_path_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '/' | '-')
}

/// Whether the text between two section references only joins them (`, `, ` and `, `–`, ...).
fn only_separators(between: &str) -> bool {
    between
        .split(|c: char| c.is_whitespace() || matches!(c, ',' | ';' | '–' | '—' | '-' | '/' | '(' | ')'))
        .all(|word| matches!(word, "" | "and" | "or" | "to"))
}

/// The targets of the inline links (`[text](target)`) and reference definitions (`[label]: target`) of a line.
fn markdown_link_targets(line: &str) -> Vec<String> {
    let mut targets = Vec::new();
    let mut rest = line;
    while let Some(open) = rest.find("](") {
        let after = &rest[open + 2..];
        let close = after.find([')', ' ']).unwrap_or(after.len());
        targets.push(after[..close].trim_start_matches('<').trim_end_matches('>').to_string());
        rest = &after[close..];
    }
    let trimmed = line.trim_start();
    if trimmed.starts_with('[') {
        if let Some(colon) = trimmed.find("]:") {
            if let Some(target) = trimmed[colon + 2..].split_whitespace().next() {
                targets.push(target.to_string());
            }
        }
    }
    targets
}

/// Why a link target of the Markdown file `file` leads nowhere, if it does.
fn broken_link(file: &str, target: &str, exists: &dyn Fn(&str) -> bool) -> Option<String> {
    if target.is_empty() || target.starts_with('#') || target.contains("://") || target.starts_with("mailto:") {
        return None;
    }
    let path = target.split(['#', '?']).next().unwrap_or(target);
    if path.is_empty() {
        return None;
    }
    match resolve(parent_dir(file), path) {
        None => Some(format!("link `{target}` leads outside the repository")),
        Some(resolved) if !exists(&resolved) => Some(format!("link `{target}`: no such file ({resolved})")),
        Some(_) => None,
    }
}

/// The mentions of a `.md` path followed by an `#anchor` in a line that are not link targets (those are checked as links).
fn anchored_mentions(line: &str) -> Vec<String> {
    let mut mentions = Vec::new();
    for (at, _) in line.match_indices(".md#") {
        let start = path_suffix_start(&line[..at]);
        if start >= at || line[..start].ends_with("](") {
            continue;
        }
        mentions.push(line[start..at + 3].to_string());
    }
    mentions
}

/// The directory part of a repository-relative file path (`` for a file at the root).
fn parent_dir(file: &str) -> &str {
    file.rfind('/').map_or("", |i| &file[..i])
}

/// `target` (relative to `dir`, or to the root when it starts with `/`) as a normalized repository-relative path;
/// `None` when it climbs above the root.
fn resolve(dir: &str, target: &str) -> Option<String> {
    let base = if target.starts_with('/') { "" } else { dir };
    let mut parts: Vec<&str> = base.split('/').filter(|p| !p.is_empty()).collect();
    for part in target.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            name => parts.push(name),
        }
    }
    Some(parts.join("/"))
}

/// Reads every `.rs` and `.md` file under `root` except hidden directories and [`EXCLUDED`].
fn scan(root: &Path) -> BTreeMap<String, String> {
    fn walk(root: &Path, dir: &Path, files: &mut BTreeMap<String, String>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
            .map(|entry| entry.expect("directory entry").path())
            .collect();
        entries.sort();
        for path in entries {
            let rel = path.strip_prefix(root).expect("under the root").to_string_lossy().replace('\\', "/");
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            if name.starts_with('.') || EXCLUDED.contains(&rel.as_str()) {
                continue;
            }
            if path.is_dir() {
                walk(root, &path, files);
            } else if name.ends_with(".rs") || name.ends_with(".md") {
                let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {rel}: {e}"));
                files.insert(rel, text);
            }
        }
    }
    let mut files = BTreeMap::new();
    walk(root, root, &mut files);
    files
}

#[test]
fn every_reference_in_the_repository_leads_somewhere() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let files = scan(root);
    assert!(files.contains_key("docs/protocol/usage-service.md"), "the protocol reference is missing");
    assert!(files.len() > 50, "scanned only {} files", files.len());
    let problems = check(&files, &|rel: &str| root.join(rel).exists());
    assert!(
        problems.is_empty(),
        "{} reference(s) lead nowhere:\n{}",
        problems.len(),
        problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n")
    );
}

#[cfg(test)]
mod checker {
    use super::*;

    /// A small repository: one protocol file and files referring to it, well and badly.
    fn example(files: &[(&str, &str)]) -> Vec<String> {
        let mut map: BTreeMap<String, String> = BTreeMap::new();
        map.insert("docs/protocol/usage-service.md".into(), "# Usage\n\n## 1. Transport\n\n## 2. Endpoints\n\n### 2.1 Paging\n\n```\n## 9. not a heading\n```\n\nSee \u{a7}2.1.\n".into());
        map.insert("testdata/spec/fixtures/README.md".into(), String::new());
        for (path, text) in files {
            map.insert((*path).into(), (*text).into());
        }
        let known = map.clone();
        let exists = move |rel: &str| known.keys().any(|k| k == rel || k.starts_with(&format!("{rel}/")));
        check(&map, &exists).iter().map(ToString::to_string).collect()
    }

    #[test]
    fn well_formed_references_pass() {
        let problems = example(&[
            ("src/lib.rs", "//! Paging (docs/protocol/usage-service.md \u{a7}2.1, \u{a7}1 and \u{a7}2).\n"),
            (
                "docs/a.md",
                "`docs/protocol/usage-service.md` \u{a7}2 and [fixtures](../testdata/spec/fixtures/README.md).\n",
            ),
            ("README.md", "RFC 9110 \u{a7}10.2.3; [docs](docs/a.md#top), [web](https://example.invalid/x.md).\n"),
            ("CHANGELOG.md", &format!("moved from {}\n", SPEC_MENTIONS[1])),
        ]);
        assert_eq!(problems, Vec::<String>::new());
    }

    #[test]
    fn each_kind_of_dangling_reference_is_named_with_file_and_line() {
        let problems = example(&[
            ("src/a.rs", "// ok: docs/protocol/usage-service.md \u{a7}1\n// usage-service.md \u{a7}2.1\n"),
            ("src/b.rs", "/// see \u{a7}2 above\n/// docs/protocol/pricing.md \u{a7}1\n/// docs/protocol/usage-service.md \u{a7}2.2\n"),
            ("docs/c.md", "[x](missing.md) [y](../../outside.md)\n\nsee docs/gone.md\u{23}anchor\n"),
            ("tests/d.rs", &format!("let p = \"{}/fixtures\";\n", SPEC_MENTIONS[0])),
            ("docs/e.md", "docs/protocol/usage-service.md \u{a7}1, then \u{a7}3\n"),
        ]);
        let at = |prefix: &str| problems.iter().filter(|p| p.starts_with(prefix)).count();
        assert_eq!(at("src/a.rs:1:"), 0, "{problems:#?}");
        assert_eq!(
            at("src/a.rs:2: `usage-service.md \u{a7}2.1`: give the file as a repository path"),
            1,
            "{problems:#?}"
        );
        assert_eq!(at("src/b.rs:1: `\u{a7}2` does not name its file"), 1, "{problems:#?}");
        assert_eq!(at("src/b.rs:2: `docs/protocol/pricing.md \u{a7}1`: no such Markdown file"), 1, "{problems:#?}");
        assert_eq!(at("src/b.rs:3: `docs/protocol/usage-service.md \u{a7}2.2`: docs/protocol/usage-service.md has no heading numbered 2.2"), 1, "{problems:#?}");
        assert_eq!(at("docs/c.md:1: link `missing.md`: no such file (docs/missing.md)"), 1, "{problems:#?}");
        assert_eq!(at("docs/c.md:1: link `../../outside.md` leads outside the repository"), 1, "{problems:#?}");
        assert_eq!(at("docs/c.md:3: `docs/gone.md`: no such file"), 1, "{problems:#?}");
        assert_eq!(at("tests/d.rs:1: mentions"), 1, "{problems:#?}");
        assert_eq!(at("docs/e.md:1: `\u{a7}3` does not name its file"), 1, "{problems:#?}");
        assert_eq!(problems.len(), 9, "{problems:#?}");
    }

    #[test]
    fn section_numbers_come_from_headings_outside_code_fences() {
        let numbers = section_numbers(
            "## 1. A\n### 1.2 B\n#### 10 C\n##2. no space\n## x. not numbered\n```\n## 3. fenced\n```\n",
        );
        assert_eq!(numbers.into_iter().collect::<Vec<_>>(), ["1", "1.2", "10"]);
        assert_eq!(leading_section_number("4."), "4");
        assert_eq!(leading_section_number("3.3 B"), "3.3");
        assert_eq!(leading_section_number("x"), "");
    }
}
