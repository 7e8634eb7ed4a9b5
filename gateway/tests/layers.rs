//! The gateway's modules form layers: data flows down (server → protocol → storage → ledger,
//! records) and answers come back as return values. This reads the sources and fails on an
//! import circle between top-level modules, and on the lower layers reaching up.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Modules that must never be imported by the ones listed with them.
const FORBIDDEN: &[(&str, &[&str])] = &[
    (
        "storage",
        &["server", "protocol", "http", "groups", "config", "cluster"],
    ),
    // Who leads what is a function of the members alone; storage learns it through a closure.
    (
        "cluster",
        &[
            "server", "protocol", "http", "storage", "groups", "ledger", "state",
        ],
    ),
    (
        "ledger",
        &["server", "protocol", "http", "storage", "groups"],
    ),
    (
        "records",
        &["server", "protocol", "http", "storage", "ledger"],
    ),
    ("groups", &["server", "protocol", "http"]),
    (
        "state",
        &["server", "protocol", "http", "storage", "ledger", "groups"],
    ),
    ("protocol", &["server", "http"]),
];

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("readable source folder") {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a source file belongs to (`storage` for src/storage/partition/read.rs).
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).expect("under src");
    let first = rel.components().next().expect("a component");
    first
        .as_os_str()
        .to_string_lossy()
        .trim_end_matches(".rs")
        .to_string()
}

/// Top-level modules named by `crate::x` paths, including inside `use crate::{x, y::z}`.
fn imports(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let code: String = text
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    let mut rest = code.as_str();
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for part in group[..end].split(',') {
                let name: String = part
                    .trim()
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    out.insert(name);
                }
            }
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                out.insert(name);
            }
        }
    }
    out
}

fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in files {
        let m = module_of(&src, &f);
        if m == "main" || m == "lib" {
            continue;
        }
        let text = std::fs::read_to_string(&f).expect("readable source");
        let deps = g.entry(m.clone()).or_default();
        deps.extend(imports(&text).into_iter().filter(|d| *d != m));
    }
    g
}

#[test]
fn lower_layers_do_not_import_upper_ones() {
    let g = graph();
    let mut wrong = Vec::new();
    for (module, forbidden) in FORBIDDEN {
        let deps = g
            .get(*module)
            .unwrap_or_else(|| panic!("no module {module}"));
        for f in *forbidden {
            if deps.contains(*f) {
                wrong.push(format!("{module} imports {f}"));
            }
        }
    }
    assert!(wrong.is_empty(), "layering broken: {wrong:?}");
}

#[test]
fn top_level_modules_have_no_import_circle() {
    let g = graph();
    // Depth-first search with colours; a grey node reached again closes a circle.
    fn visit(
        n: &str,
        g: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        match state.get(n) {
            Some(1) => {
                let start = path.iter().position(|p| p == n).unwrap_or(0);
                let mut circle = path[start..].to_vec();
                circle.push(n.to_string());
                return Some(circle);
            }
            Some(2) => return None,
            _ => {}
        }
        state.insert(n.to_string(), 1);
        path.push(n.to_string());
        for d in g.get(n).into_iter().flatten() {
            if g.contains_key(d)
                && let Some(c) = visit(d, g, state, path)
            {
                return Some(c);
            }
        }
        path.pop();
        state.insert(n.to_string(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for n in g.keys() {
        let mut path = Vec::new();
        if let Some(circle) = visit(n, &g, &mut state, &mut path) {
            panic!("import circle: {}", circle.join(" → "));
        }
    }
}

#[test]
fn the_import_scanner_sees_grouped_and_plain_paths() {
    let found = imports(
        "use crate::a::B;\nuse crate::{c, d::E};\n// crate::commented\nlet x = crate::f::g();",
    );
    let want: BTreeSet<String> = ["a", "c", "d", "f"].iter().map(|s| s.to_string()).collect();
    assert_eq!(found, want);
}
