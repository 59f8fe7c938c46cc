//! One-way stairs between a crate's modules, checked as a test.
//!
//! [`check`] reads a crate's `src/` tree as text and finds which module
//! names which, at any depth: every `use` path (groups and renames
//! included), and every path written inline that starts with `crate::`,
//! `super::`, `self::`, a child module or a name the module imports. A
//! path names the deepest module it reaches (`crate::gui::app::Message`
//! names `gui::app`); a name a module only imports (`pub use x::Thing`,
//! or a plain `use` its children see through `super::`) is followed to
//! where it comes from, so a re-export hides no edge.
//!
//! The rule, at every level of the tree: the children of a module, each
//! taken with everything below it, form one-way stairs, with no cycle
//! between them. A module naming its own descendants (a parent declaring,
//! using and re-exporting its children) or an ancestor (a child using its
//! parent's items through `super::`) is the ordinary parent/child bond and
//! is not counted; any other edge counts between the two siblings under
//! the deepest module both stand in (`gui::screens::setup` naming
//! `gui::app` is `gui::screens` naming `gui::app`, inside `gui`). So two
//! siblings never need each other, and neither do their subtrees.
//!
//! On top of that, [`check`] can hold the crate's top-level modules to a
//! rank table (module → floor: a module may only name lower floors).
//!
//! It reads text, not the compiler's view: comments (doc links included)
//! and string literals are skipped, `#[cfg]` is not evaluated (test code
//! counts like any other: a lower module's tests that need a higher one
//! belong to the higher one), glob imports (`use x::*`) bring no names to
//! follow, and the crate root (`lib.rs`, `main.rs`) is the module every
//! other one stands in.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

/// Where one module names another.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Edge {
    /// Module paths below the crate root (`gui::app`); the root is `crate`.
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

/// Every module of the crate at `src` and the first place each names each
/// other one, ancestors and descendants included. Panics when the tree
/// cannot be read (a test's setup error).
pub fn edges(src: &Path) -> Vec<Edge> {
    Crate::read(src).edges()
}

/// Checks the crate at `src`: no cycle between siblings at any level (see
/// the module docs) and, when `ranks` is not empty, every top-level module
/// ranked and every edge between two of them going to a lower rank.
/// Returns every problem found, one sentence each.
pub fn check(src: &Path, ranks: &[(&str, u32)]) -> Result<(), Vec<String>> {
    let krate = Crate::read(src);
    let edges = krate.edges();
    let mut problems = sibling_cycles(&edges);
    if !ranks.is_empty() {
        let rank: BTreeMap<&str, u32> = ranks.iter().copied().collect();
        let top: BTreeSet<String> =
            krate.modules.iter().filter(|m| m.len() == 1).map(|m| name(m)).collect();
        for module in &top {
            if !rank.contains_key(module.as_str()) {
                problems.push(format!("module {module} has no rank: place it on a floor"));
            }
        }
        for name in rank.keys() {
            if !top.contains(*name) {
                problems.push(format!("ranked module {name} does not exist"));
            }
        }
        // The first edge between each two ranked top-level modules.
        let mut between: BTreeMap<(&str, &str), &Edge> = BTreeMap::new();
        for e in &edges {
            let top_of = |m: &str| rank.get_key_value(m.split("::").next().unwrap_or(m));
            if let (Some((&from, _)), Some((&to, _))) = (top_of(&e.from), top_of(&e.to))
                && from != to
            {
                between.entry((from, to)).or_insert(e);
            }
        }
        for ((from, to), e) in between {
            let (a, b) = (rank[from], rank[to]);
            if b >= a {
                problems.push(format!("{e}: rank {a} may only name lower ranks, not {b}"));
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

/// One cycle between siblings per module whose children have one, as
/// `cycle in P: a -> b -> a`, then each step's first naming.
fn sibling_cycles(edges: &[Edge]) -> Vec<String> {
    // Parent → (sibling edge → the edge it stands for).
    let mut levels: BTreeMap<Module, BTreeMap<(String, String), &Edge>> = BTreeMap::new();
    for e in edges {
        let (from, to) = (path(&e.from), path(&e.to));
        let shared = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
        if shared < from.len() && shared < to.len() {
            let step = (name(&from[..=shared]), name(&to[..=shared]));
            levels.entry(from[..shared].to_vec()).or_default().entry(step).or_insert(e);
        }
    }
    let mut problems = Vec::new();
    for (parent, steps) in &levels {
        let sibling_edges: Vec<Edge> = steps
            .iter()
            .map(|((from, to), e)| Edge { from: from.clone(), to: to.clone(), ..(*e).clone() })
            .collect();
        if let Some(cycle) = find_cycle(&sibling_edges) {
            let mut text = format!("cycle in {}: {}", name(parent), cycle.join(" -> "));
            for pair in cycle.windows(2) {
                text += &format!("\n    {}", steps[&(pair[0].clone(), pair[1].clone())]);
            }
            problems.push(text);
        }
    }
    problems
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

/// A module's path below the crate root: `[]` is the root, `[gui, app]`
/// is `gui::app`.
type Module = Vec<String>;

fn name(module: &[String]) -> String {
    if module.is_empty() { "crate".to_string() } else { module.join("::") }
}

fn path(name: &str) -> Module {
    if name == "crate" { Vec::new() } else { name.split("::").map(str::to_string).collect() }
}

/// A path as a file writes it.
#[derive(Debug)]
struct Written {
    /// The module it is written in: the file's, deepened by inline `mod x
    /// { … }` blocks, so `super::` resolves as the compiler does.
    base: Module,
    segments: Vec<String>,
    /// The name a `use` binds (`Thing` in `use a::Thing`, `B` in `use a::A
    /// as B`); none for inline paths and globs.
    binds: Option<String>,
    line: usize,
}

/// A crate's modules and what each file writes.
struct Crate {
    /// Every module: each file's, the directories', and the root.
    modules: BTreeSet<Module>,
    /// Each file, its module, and the paths it writes.
    paths: Vec<(PathBuf, Module, Vec<Written>)>,
    /// What each module's `use`s bind: name → absolute path.
    imports: BTreeMap<Module, BTreeMap<String, Vec<String>>>,
}

impl Crate {
    fn read(src: &Path) -> Crate {
        let mut krate = Crate {
            modules: BTreeSet::from([Vec::new()]),
            paths: Vec::new(),
            imports: BTreeMap::new(),
        };
        for file in rust_files(src) {
            let module = file_module(src, &file);
            for depth in 1..=module.len() {
                krate.modules.insert(module[..depth].to_vec());
            }
            let paths = paths_in(&strip(&read(&file)), &module);
            krate.paths.push((file, module, paths));
        }
        let mut imports: BTreeMap<Module, BTreeMap<String, Vec<String>>> = BTreeMap::new();
        for (_, module, paths) in &krate.paths {
            for written in paths {
                if let (Some(bound), Some(to)) = (&written.binds, krate.absolute(module, written)) {
                    imports.entry(module.clone()).or_default().insert(bound.clone(), to);
                }
            }
        }
        krate.imports = imports;
        krate
    }

    /// Each module another names, and the first place it does.
    fn edges(&self) -> Vec<Edge> {
        let mut found: BTreeMap<(Module, Module), Edge> = BTreeMap::new();
        for (file, from, paths) in &self.paths {
            for written in paths {
                let Some(to) = self.absolute(from, written).map(|p| self.resolve(&p, 0)) else {
                    continue;
                };
                if &to != from {
                    found.entry((from.clone(), to.clone())).or_insert_with(|| Edge {
                        from: name(from),
                        to: name(&to),
                        file: file.clone(),
                        line: written.line,
                    });
                }
            }
        }
        found.into_values().collect()
    }

    /// The path from the crate root that `written`, in a file of `module`,
    /// stands for; none for what lies outside the crate (`std::…`, other
    /// crates, local names).
    fn absolute(&self, module: &Module, written: &Written) -> Option<Vec<String>> {
        let (first, rest) = written.segments.split_first()?;
        let base = &written.base;
        let ups = written.segments.iter().take_while(|s| *s == "super").count();
        let joined = |head: &[String], tail: &[String]| [head, tail].concat();
        match first.as_str() {
            "crate" => Some(rest.to_vec()),
            "self" => Some(joined(base, rest)),
            "super" => {
                Some(joined(&base[..base.len().checked_sub(ups)?], &written.segments[ups..]))
            }
            _ => {
                if let Some(imported) = self.imports.get(module).and_then(|i| i.get(first)) {
                    Some(joined(imported, rest))
                } else {
                    let child = joined(base, &written.segments[..1]);
                    self.modules.contains(&child).then(|| joined(base, &written.segments))
                }
            }
        }
    }

    /// The module an absolute path names: its deepest module prefix, or,
    /// when the next name is one that module only imports, where that
    /// comes from (`hops` bounds a chain of re-exports).
    fn resolve(&self, path: &[String], hops: usize) -> Module {
        let depth =
            (0..=path.len()).rev().find(|&n| self.modules.contains(&path[..n])).unwrap_or(0);
        let module = path[..depth].to_vec();
        if let Some(next) = path.get(depth)
            && let Some(imported) = self.imports.get(&module).and_then(|i| i.get(next))
            && hops < 8
        {
            return self.resolve(&[imported, &path[depth + 1..]].concat(), hops + 1);
        }
        module
    }
}

fn read(file: &Path) -> String {
    std::fs::read_to_string(file).unwrap_or_else(|e| panic!("cannot read {}: {e}", file.display()))
}

/// Every `.rs` file below `src`, but `bin/` (other crates).
fn rust_files(src: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut dirs = vec![src.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for entry in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())) {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                if path != src.join("bin") {
                    dirs.push(path);
                }
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// The module of a file below `src`: `src/lib.rs` → `[]`, `src/job/mod.rs`
/// and `src/job.rs` → `[job]`, `src/job/copy.rs` → `[job, copy]`.
fn file_module(src: &Path, file: &Path) -> Module {
    let rel = file.strip_prefix(src).expect("file below src");
    let mut module: Module =
        rel.iter().map(|c| c.to_string_lossy().trim_end_matches(".rs").to_string()).collect();
    if module.last().is_some_and(|l| l == "mod") || module == ["lib"] || module == ["main"] {
        module.pop();
    }
    module
}

/// The paths a stripped file writes: each path of each `use`, and each
/// inline path of two names or more (`a::b`). `file_module` is the file's
/// module; inline `mod x { … }` blocks deepen it.
fn paths_in(text: &str, file_module: &[String]) -> Vec<Written> {
    let tokens = tokenize(text);
    let mut found = Vec::new();
    // The module path at each brace depth that opened an inline module.
    let mut base = file_module.to_vec();
    let mut inline: Vec<usize> = Vec::new();
    let mut depth = 0usize;
    let mut i = 0;
    while i < tokens.len() {
        let tok = tokens[i].0.as_str();
        let before = i.checked_sub(1).map(|b| tokens[b].0.as_str());
        match tok {
            "{" => depth += 1,
            "}" => {
                depth = depth.saturating_sub(1);
                if inline.last() == Some(&depth) {
                    inline.pop();
                    base.pop();
                }
            }
            "mod" if tokens.get(i + 2).is_some_and(|t| t.0 == "{") => {
                base.push(tokens[i + 1].0.clone());
                inline.push(depth);
            }
            "use" => {
                let mut trees = Vec::new();
                i = use_tree(&tokens, i + 1, Vec::new(), &mut trees);
                found.extend(trees.into_iter().map(|(segments, binds, line)| Written {
                    base: base.clone(),
                    segments,
                    binds,
                    line,
                }));
                continue;
            }
            // The start of an inline path; `$crate` belongs to macros.
            _ if is_ident(tok)
                && tokens.get(i + 1).is_some_and(|t| t.0 == "::")
                && !matches!(before, Some("::" | "$")) =>
            {
                let line = tokens[i].1;
                let mut segments = vec![tok.to_string()];
                while tokens.get(i + 1).is_some_and(|t| t.0 == "::")
                    && let Some(next) = tokens.get(i + 2).filter(|t| is_ident(&t.0))
                {
                    segments.push(next.0.clone());
                    i += 2;
                }
                found.push(Written { base: base.clone(), segments, binds: None, line });
            }
            _ => {}
        }
        i += 1;
    }
    found
}

/// Reads the `use` tree at token `at` below `prefix` into `out` (each
/// path, the name it binds, its line); returns the index after it.
fn use_tree(
    tokens: &[(String, usize)],
    mut at: usize,
    mut prefix: Vec<String>,
    out: &mut Vec<(Vec<String>, Option<String>, usize)>,
) -> usize {
    while let Some((tok, line)) = tokens.get(at) {
        match tok.as_str() {
            "::" => at += 1,
            "*" => {
                out.push((prefix, None, *line));
                return at + 1;
            }
            "{" => {
                at += 1;
                while tokens.get(at).is_some_and(|t| t.0 != "}") {
                    let end = use_tree(tokens, at, prefix.clone(), out);
                    at = if end == at { at + 1 } else { end };
                    if tokens.get(at).is_some_and(|t| t.0 == ",") {
                        at += 1;
                    }
                }
                return at + 1;
            }
            t if is_ident(t) => {
                prefix.push(t.to_string());
                at += 1;
                if tokens.get(at).is_some_and(|t| t.0 == "::") {
                    continue;
                }
                if prefix.last().is_some_and(|l| l == "self") {
                    prefix.pop();
                }
                let mut binds = prefix.last().cloned();
                if tokens.get(at).is_some_and(|t| t.0 == "as") {
                    binds = tokens.get(at + 1).map(|t| t.0.clone()).filter(|b| b != "_");
                    at += 2;
                }
                out.push((prefix, binds, *line));
                return at;
            }
            _ => return at,
        }
    }
    at
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
            vec![
                pair("crate", "a"),
                pair("a", "crate"),
                pair("a", "b"),
                pair("a", "c"),
                pair("a", "d"),
                pair("b", "d"),
                pair("b::inner", "b"),
                pair("c", "d"),
            ]
        );
        assert_eq!(check(t.path(), &[]), Ok(()));
        let e = edges(t.path()).into_iter().find(|e| e.to == "d" && e.from == "a").expect("a -> d");
        assert_eq!((e.file.ends_with("a.rs"), e.line), (true, 2));
    }

    #[test]
    fn a_path_names_the_deepest_module_it_reaches() {
        let t = tree(&[
            ("lib.rs", "mod gui; mod verify;"),
            ("gui/mod.rs", "mod app; mod screens; mod state;"),
            ("gui/state.rs", "pub struct Message;"),
            ("gui/screens/mod.rs", "pub mod setup;"),
            (
                "gui/screens/setup.rs",
                "use crate::gui::state::Message;\nfn f() { super::super::state::Message }",
            ),
            ("gui/app.rs", "use super::screens;\nfn f() { screens::setup::view(); }"),
            ("verify.rs", "mod pipeline; use self::pipeline::run;"),
            ("verify/pipeline.rs", "pub fn run() { std::process::exit(0) }"),
        ]);
        // `mod x;` declares; it names nothing.
        assert_eq!(
            pairs(t.path()),
            vec![
                pair("gui::app", "gui::screens"),
                pair("gui::app", "gui::screens::setup"),
                pair("gui::screens::setup", "gui::state"),
                pair("verify", "verify::pipeline"),
            ]
        );
    }

    #[test]
    fn root_reexports_name_their_module() {
        let t = tree(&[
            ("lib.rs", "pub mod a; pub mod b;\npub use a::{Thing, Other as Renamed};"),
            ("a.rs", "pub struct Thing; pub struct Other;"),
            ("b.rs", "use crate::{Renamed};"),
        ]);
        assert_eq!(pairs(t.path()), vec![pair("crate", "a"), pair("b", "a")]);
    }

    #[test]
    fn a_name_a_parent_imports_is_followed_to_where_it_comes_from() {
        let t = tree(&[
            ("lib.rs", "mod gui;"),
            ("gui/mod.rs", "mod app; mod log;\nuse app::Line;"),
            ("gui/app.rs", "pub struct Line; use super::log;"),
            ("gui/log.rs", "fn f(l: &super::Line) {}"),
        ]);
        let problems = check(t.path(), &[]).expect_err("a cycle through a re-export");
        assert!(problems[0].starts_with("cycle in gui: gui::app -> gui::log -> gui::app"));
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
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].starts_with("cycle in crate: a -> b -> c -> a\n"), "{problems:?}");
        let last = format!("c -> a ({}:2)", t.path().join("c.rs").display());
        assert!(problems[0].ends_with(&last), "{problems:?}");
    }

    #[test]
    fn parents_and_children_may_name_each_other_but_siblings_and_cousins_may_not() {
        let parent_and_child = tree(&[
            ("lib.rs", "mod gui;"),
            ("gui/mod.rs", "mod app; mod screens; pub use app::App; use screens::setup::Setup;"),
            ("gui/app.rs", "pub struct App; fn f() { super::screens::setup::Setup }"),
            ("gui/screens/mod.rs", "pub mod setup; use super::super::gui::Thing;"),
            ("gui/screens/setup.rs", "pub struct Setup; use super::*; use crate::gui::Thing;"),
        ]);
        assert_eq!(check(parent_and_child.path(), &[]), Ok(()));

        // A cousin naming an uncle's module: the uncle's subtree and the
        // cousin's subtree name each other, a cycle between `app` and `screens`.
        let cousins = tree(&[
            ("lib.rs", "mod gui;"),
            ("gui/mod.rs", "mod app; mod screens;"),
            ("gui/app.rs", "use super::screens::setup;"),
            ("gui/screens/mod.rs", "pub mod setup;"),
            ("gui/screens/setup.rs", "fn f() -> crate::gui::app::State {}"),
        ]);
        let problems = check(cousins.path(), &[]).expect_err("a cycle");
        assert_eq!(problems.len(), 1, "{problems:?}");
        let lines: Vec<&str> = problems[0].lines().collect();
        assert_eq!(lines[0], "cycle in gui: gui::app -> gui::screens -> gui::app");
        assert!(lines[1].starts_with("    gui::app -> gui::screens::setup ("), "{lines:?}");
        assert!(lines[2].starts_with("    gui::screens::setup -> gui::app ("), "{lines:?}");
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
