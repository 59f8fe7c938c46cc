//! One-way stairs between a crate's top-level modules, checked as a test.
//!
//! [`check`] reads a crate's `src/` tree as text, finds which top-level
//! module names which (`crate::x` paths, grouped `use crate::{a, b}`
//! imports, and `super::` paths that climb out of a module), and refuses
//! (a) any cycle and (b) any edge that does not go down a rank table
//! (module → floor: a module may only name modules on lower floors).
//!
//! It reads text, not the compiler's view: comments (doc links included)
//! and string literals are skipped, `#[cfg]` is not evaluated (test code
//! counts like any other: a lower module's tests that need a higher one
//! belong to the higher one), and the crate root (`lib.rs`, `main.rs`),
//! which declares and re-exports everything, is not a module of its own.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

/// Where one top-level module names another.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Edge {
    pub from: String,
    pub to: String,
    /// The first place that names it: file and 1-based line.
    pub file: PathBuf,
    pub line: usize,
}

impl fmt::Display for Edge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} -> {} ({}:{})", self.from, self.to, self.file.display(), self.line)
    }
}

/// The top-level modules of the crate at `src` and the first place each
/// names each other one. Panics when the tree cannot be read (a test's
/// setup error).
pub fn edges(src: &Path) -> Vec<Edge> {
    let modules = top_level_modules(src);
    let reexported = root_reexports(src, &modules);
    let mut found: BTreeMap<(String, String), Edge> = BTreeMap::new();
    for (module, files) in &modules {
        for file in files {
            let path = file_module_path(src, file);
            for (name, line) in names_in(&strip(&read(file)), &path) {
                let to = reexported.get(&name).cloned().unwrap_or(name);
                if &to != module && modules.contains_key(&to) {
                    let key = (module.clone(), to.clone());
                    found.entry(key).or_insert_with(|| Edge {
                        from: module.clone(),
                        to,
                        file: file.clone(),
                        line,
                    });
                }
            }
        }
    }
    found.into_values().collect()
}

/// Checks the crate at `src`: no cycle between its top-level modules and,
/// when `ranks` is not empty, every module ranked and every edge going to
/// a lower rank. Returns every problem found, one sentence each.
pub fn check(src: &Path, ranks: &[(&str, u32)]) -> Result<(), Vec<String>> {
    let edges = edges(src);
    let mut problems = Vec::new();
    if let Some(cycle) = find_cycle(&edges) {
        problems.push(format!("cycle: {}", cycle.join(" -> ")));
    }
    if !ranks.is_empty() {
        let rank: BTreeMap<&str, u32> = ranks.iter().copied().collect();
        for module in top_level_modules(src).keys() {
            if !rank.contains_key(module.as_str()) {
                problems.push(format!("module {module} has no rank: place it on a floor"));
            }
        }
        for name in rank.keys() {
            if !top_level_modules(src).contains_key(*name) {
                problems.push(format!("ranked module {name} does not exist"));
            }
        }
        for e in &edges {
            if let (Some(from), Some(to)) = (rank.get(e.from.as_str()), rank.get(e.to.as_str()))
                && to >= from
            {
                problems.push(format!("{e}: rank {from} may only name lower ranks, not {to}"));
            }
        }
    }
    if problems.is_empty() { Ok(()) } else { Err(problems) }
}

/// Panics with every problem [`check`] finds.
pub fn assert_layered(src: &Path, ranks: &[(&str, u32)]) {
    if let Err(problems) = check(src, ranks) {
        panic!("{} is not layered:\n  {}", src.display(), problems.join("\n  "));
    }
}

/// A cycle among the edges, as the modules along it (first repeated last).
pub fn find_cycle(edges: &[Edge]) -> Option<Vec<String>> {
    let mut next: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for e in edges {
        next.entry(&e.from).or_default().push(&e.to);
    }
    let mut done = BTreeSet::new();
    next.keys().find_map(|start| visit(start, &next, &mut Vec::new(), &mut done))
}

/// Depth-first from `node`: a cycle through the modules on `path`, if any.
fn visit<'a>(
    node: &'a str,
    next: &BTreeMap<&'a str, Vec<&'a str>>,
    path: &mut Vec<&'a str>,
    done: &mut BTreeSet<&'a str>,
) -> Option<Vec<String>> {
    if let Some(at) = path.iter().position(|&m| m == node) {
        return Some(path[at..].iter().chain([&node]).map(|m| m.to_string()).collect());
    }
    if done.contains(node) {
        return None;
    }
    path.push(node);
    for &to in next.get(node).map(Vec::as_slice).unwrap_or_default() {
        if let Some(cycle) = visit(to, next, path, done) {
            return Some(cycle);
        }
    }
    path.pop();
    done.insert(node);
    None
}

fn read(file: &Path) -> String {
    std::fs::read_to_string(file).unwrap_or_else(|e| panic!("cannot read {}: {e}", file.display()))
}

/// The names the crate root re-exports from its modules (`pub use
/// error::{Error, Side};` makes `crate::Error` name `error`).
fn root_reexports(
    src: &Path,
    modules: &BTreeMap<String, Vec<PathBuf>>,
) -> BTreeMap<String, String> {
    let mut names = BTreeMap::new();
    for root in ["lib.rs", "main.rs"].map(|f| src.join(f)).iter().filter(|f| f.is_file()) {
        let tokens = tokenize(&strip(&read(root)));
        let mut i = 0;
        while i < tokens.len() {
            if tokens[i].0 == "use" {
                let end =
                    tokens[i..].iter().position(|t| t.0 == ";").map_or(tokens.len(), |e| i + e);
                let mut path = tokens[i + 1..end].iter().map(|t| t.0.as_str()).peekable();
                if path.next_if(|&t| t == "crate").is_some() {
                    path.next_if(|&t| t == "::");
                }
                if let Some(module) = path.next().filter(|m| modules.contains_key(*m)) {
                    for name in path.filter(|t| is_ident(t) && !["self", "as"].contains(t)) {
                        names.insert(name.to_string(), module.to_string());
                    }
                }
                i = end;
            }
            i += 1;
        }
    }
    names
}

/// Each top-level module (`x.rs` or `x/`) and its files; the crate root
/// (`lib.rs`, `main.rs`) and `bin/` are not modules.
fn top_level_modules(src: &Path) -> BTreeMap<String, Vec<PathBuf>> {
    let mut modules: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();
    let entries =
        std::fs::read_dir(src).unwrap_or_else(|e| panic!("cannot list {}: {e}", src.display()));
    for entry in entries {
        let path = entry.expect("directory entry").path();
        let Some(name) = path.file_stem().and_then(|s| s.to_str()).map(str::to_string) else {
            continue;
        };
        if path.is_dir() {
            if name != "bin" {
                modules.entry(name).or_default().extend(rust_files(&path));
            }
        } else if path.extension().is_some_and(|e| e == "rs") && name != "lib" && name != "main" {
            modules.entry(name).or_default().push(path);
        }
    }
    modules
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for entry in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())) {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// The module path of a file below `src`: `src/job/mod.rs` → `[job]`,
/// `src/job/copy.rs` → `[job, copy]`.
fn file_module_path(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).expect("file below src");
    let mut path: Vec<String> =
        rel.iter().map(|c| c.to_string_lossy().trim_end_matches(".rs").to_string()).collect();
    if path.last().is_some_and(|l| l == "mod") {
        path.pop();
    }
    path
}

/// The text with comments and string/char literals blanked out (lines
/// kept, so line numbers stay right).
fn strip(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let blank = |s: &[u8], out: &mut String| {
        for &c in s {
            out.push(if c == b'\n' { '\n' } else { ' ' });
        }
    };
    while i < b.len() {
        let rest = &b[i..];
        if rest.starts_with(b"//") {
            let end = rest.iter().position(|&c| c == b'\n').unwrap_or(rest.len());
            blank(&rest[..end], &mut out);
            i += end;
        } else if rest.starts_with(b"/*") {
            // Block comments nest in Rust.
            let (mut depth, mut j) = (0usize, 0);
            while j < rest.len() {
                if rest[j..].starts_with(b"/*") {
                    depth += 1;
                    j += 2;
                } else if rest[j..].starts_with(b"*/") {
                    depth -= 1;
                    j += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    j += 1;
                }
            }
            blank(&rest[..j], &mut out);
            i += j;
        } else if let Some(len) = raw_string_len(rest) {
            blank(&rest[..len], &mut out);
            i += len;
        } else if rest[0] == b'"' {
            let mut j = 1;
            while j < rest.len() && rest[j] != b'"' {
                j += if rest[j] == b'\\' { 2 } else { 1 };
            }
            let len = (j + 1).min(rest.len());
            blank(&rest[..len], &mut out);
            i += len;
        } else if let Some(len) = (rest[0] == b'\'').then(|| char_literal_len(&text[i..])).flatten()
        {
            blank(&rest[..len], &mut out);
            i += len;
        } else {
            // Copy one whole UTF-8 character.
            let ch = text[i..].chars().next().expect("in bounds");
            out.push(ch);
            i += ch.len_utf8();
        }
    }
    out
}

/// The length of a raw string literal (`r"…"`, `r#"…"#`, `br"…"`) at the
/// start of `s`, if one starts there.
fn raw_string_len(s: &[u8]) -> Option<usize> {
    let start = if s.starts_with(b"br") {
        2
    } else if s.starts_with(b"r") {
        1
    } else {
        return None;
    };
    let hashes = s[start..].iter().take_while(|&&c| c == b'#').count();
    if s.get(start + hashes) != Some(&b'"') {
        return None;
    }
    let close: Vec<u8> = std::iter::once(b'"').chain(std::iter::repeat_n(b'#', hashes)).collect();
    let body = start + hashes + 1;
    let end = s[body..].windows(close.len()).position(|w| w == close.as_slice())?;
    Some(body + end + close.len())
}

/// The length of a char literal (`'a'`, `'\\n'`, `'\\u{1F600}'`) at the start
/// of `s`; none for a lifetime (`'a`).
fn char_literal_len(s: &str) -> Option<usize> {
    let mut chars = s.char_indices().skip(1);
    let (_, c) = chars.next()?;
    if c == '\\' {
        return s[2..].find('\'').map(|end| end + 3);
    }
    let (at, quote) = chars.next()?;
    (quote == '\'').then_some(at + 1)
}

/// The top-level modules a stripped file names, with the line of each
/// naming. `file_path` is the file's module path; inline `mod x { … }`
/// blocks deepen it, so `super::` resolves like the compiler does.
fn names_in(text: &str, file_path: &[String]) -> Vec<(String, usize)> {
    let tokens = tokenize(text);
    let mut found = Vec::new();
    // The module path at each brace depth that opened an inline module.
    let mut path = file_path.to_vec();
    let mut inline: Vec<usize> = Vec::new();
    let mut depth = 0usize;
    let mut i = 0;
    while i < tokens.len() {
        let (tok, line) = (&tokens[i].0, tokens[i].1);
        match tok.as_str() {
            "{" => depth += 1,
            "}" => {
                depth = depth.saturating_sub(1);
                if inline.last() == Some(&depth) {
                    inline.pop();
                    path.pop();
                }
            }
            "mod" if tokens.get(i + 2).is_some_and(|t| t.0 == "{") => {
                path.push(tokens[i + 1].0.clone());
                inline.push(depth);
            }
            "crate" if tokens.get(i + 1).is_some_and(|t| t.0 == "::") => {
                let before = i.checked_sub(1).map(|b| tokens[b].0.as_str());
                // `$crate` in macros, and `pub(crate)` (no `::` after) aside.
                if before != Some("$") {
                    found.extend(targets(&tokens, i + 2).into_iter().map(|m| (m, line)));
                }
            }
            "super" if tokens.get(i + 1).is_some_and(|t| t.0 == "::") => {
                let before = i.checked_sub(2).map(|b| tokens[b].0.as_str());
                // Only the first `super` of a `super::super::…` chain counts.
                if !(before == Some("super") && tokens[i - 1].0 == "::") {
                    let (mut up, mut j) = (0, i);
                    while tokens.get(j).is_some_and(|t| t.0 == "super")
                        && tokens.get(j + 1).is_some_and(|t| t.0 == "::")
                    {
                        up += 1;
                        j += 2;
                    }
                    let base = &path[..path.len().saturating_sub(up)];
                    match base.first() {
                        Some(top) => found.push((top.clone(), line)),
                        None => found.extend(targets(&tokens, j).into_iter().map(|m| (m, line))),
                    }
                }
            }
            _ => {}
        }
        i += 1;
    }
    found
}

/// The first segment(s) of the path starting at token `at`: one name, or
/// each first name in a `{a, b::c, …}` group.
fn targets(tokens: &[(String, usize)], at: usize) -> Vec<String> {
    let Some((tok, _)) = tokens.get(at) else { return Vec::new() };
    if tok != "{" {
        return if is_ident(tok) { vec![tok.clone()] } else { Vec::new() };
    }
    let mut names = Vec::new();
    let (mut depth, mut expect_name) = (0, true);
    for (t, _) in &tokens[at..] {
        match t.as_str() {
            "{" => {
                depth += 1;
                expect_name = depth == 1;
            }
            "}" => {
                depth -= 1;
                if depth == 0 {
                    break;
                }
            }
            "," if depth == 1 => expect_name = true,
            t if expect_name && depth == 1 => {
                if is_ident(t) && t != "self" {
                    names.push(t.to_string());
                }
                expect_name = false;
            }
            _ => {}
        }
    }
    names
}

fn is_ident(t: &str) -> bool {
    t.chars().next().is_some_and(|c| c.is_alphabetic() || c == '_')
}

/// Identifiers, `::`, and single punctuation characters, with their line.
fn tokenize(text: &str) -> Vec<(String, usize)> {
    let mut tokens = Vec::new();
    let mut line = 1;
    let mut chars = text.char_indices().peekable();
    while let Some((at, c)) = chars.next() {
        if c == '\n' {
            line += 1;
        } else if c.is_alphanumeric() || c == '_' {
            let mut end = at + c.len_utf8();
            while let Some(&(j, d)) = chars.peek() {
                if !(d.is_alphanumeric() || d == '_') {
                    break;
                }
                end = j + d.len_utf8();
                chars.next();
            }
            tokens.push((text[at..end].to_string(), line));
        } else if c == ':' && chars.peek().is_some_and(|&(_, d)| d == ':') {
            chars.next();
            tokens.push(("::".to_string(), line));
        } else if !c.is_whitespace() {
            tokens.push((c.to_string(), line));
        }
    }
    tokens
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A crate tree in a temporary directory: `(path below src, text)`.
    fn tree(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("temp dir");
        for (path, text) in files {
            let path = dir.path().join(path);
            std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            std::fs::write(path, text).expect("write");
        }
        dir
    }

    fn pairs(src: &Path) -> Vec<(String, String)> {
        edges(src).into_iter().map(|e| (e.from, e.to)).collect()
    }

    fn pair(a: &str, b: &str) -> (String, String) {
        (a.to_string(), b.to_string())
    }

    #[test]
    fn finds_crate_paths_groups_and_super() {
        let t = tree(&[
            ("lib.rs", "pub mod a; pub mod b; pub mod c; pub mod d; use crate::a::X;"),
            ("a.rs", "use crate::{b::Y, c, self};\npub(crate) fn f() { crate::d::g(); }"),
            ("b/mod.rs", "mod inner;\nfn h() -> super::d::T { super::d::T }"),
            ("b/inner.rs", "use super::Y; // crate::a in a comment\nlet s = \"crate::a\";"),
            ("c.rs", "mod tests { use super::*; fn f() { super::super::d::g() } }"),
            ("d.rs", "macro_rules! m { () => { $crate::a::f() } }\nlet r = r#\"crate::a\"#;"),
        ]);
        assert_eq!(
            pairs(t.path()),
            vec![pair("a", "b"), pair("a", "c"), pair("a", "d"), pair("b", "d"), pair("c", "d")]
        );
        assert_eq!(check(t.path(), &[]), Ok(()));
        let e = edges(t.path()).into_iter().find(|e| e.to == "d" && e.from == "a").expect("a -> d");
        assert_eq!((e.file.ends_with("a.rs"), e.line), (true, 2));
    }

    #[test]
    fn root_reexports_name_their_module() {
        let t = tree(&[
            ("lib.rs", "pub mod a; pub mod b;\npub use a::{Thing, Other as Renamed};"),
            ("a.rs", "pub struct Thing; pub struct Other;"),
            ("b.rs", "use crate::{Renamed};"),
        ]);
        assert_eq!(pairs(t.path()), vec![pair("b", "a")]);
    }

    #[test]
    fn a_planted_cycle_fails() {
        let t = tree(&[
            ("lib.rs", "pub mod a; pub mod b; pub mod c;"),
            ("a.rs", "use crate::b::X;"),
            ("b.rs", "pub struct X; use crate::{c::{self, Y}};"),
            ("c.rs", "pub struct Y;\nfn f() { let _ = crate::a::g; }"),
        ]);
        let problems = check(t.path(), &[]).expect_err("a cycle");
        assert_eq!(problems, vec!["cycle: a -> b -> c -> a".to_string()]);
    }

    #[test]
    fn an_edge_up_the_rank_table_fails() {
        let t = tree(&[
            ("main.rs", "mod low; mod high; mod side;"),
            ("low.rs", "use crate::high::Thing;"),
            ("high.rs", "pub struct Thing;"),
            ("side.rs", "use crate::low;"),
        ]);
        assert_eq!(check(t.path(), &[("low", 0), ("high", 1), ("side", 1)]).unwrap_err().len(), 1);
        assert_eq!(check(t.path(), &[("high", 0), ("low", 1), ("side", 2)]), Ok(()));
        // Same floor is not below; unranked and unknown modules are named.
        let problems = check(t.path(), &[("high", 0), ("low", 1), ("side", 1), ("gone", 3)])
            .expect_err("problems");
        assert_eq!(problems.len(), 2, "{problems:?}");
        let missing = check(t.path(), &[("high", 0), ("low", 1)]).expect_err("side unranked");
        assert!(missing[0].contains("side has no rank"), "{missing:?}");
    }
}
