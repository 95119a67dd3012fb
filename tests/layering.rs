//! The module layering stays as `docs/ARCHITECTURE.md` draws it: only `cli` wires things
//! together, producers (the controller, the file reloader) publish into the route sink without
//! knowing the proxy, `config` does not know the route table, and `tls` depends on nothing of
//! ours. Checked on the source text, so a forbidden import fails here with the file and line.

use std::path::{Path, PathBuf};

/// Every top-level module of the crate.
const MODULES: &[&str] = &[
    "access_log",
    "allocator",
    "auth",
    "cli",
    "config",
    "controller",
    "guard",
    "metrics",
    "ppl",
    "proxy",
    "reload",
    "routes",
    "source",
    "tls",
];

/// Leaves: modules that use nothing else of ours.
const LEAVES: &[&str] = &[
    "access_log",
    "allocator",
    "guard",
    "metrics",
    "source",
    "tls",
];

/// (module, modules it must not use), for the modules that are not leaves.
const RULES: &[(&str, &[&str])] = &[
    ("controller", &["cli", "proxy"]),
    ("proxy", &["cli", "controller", "reload"]),
    ("routes", &["cli", "proxy", "controller", "reload", "auth"]),
    ("reload", &["cli", "proxy", "controller"]),
    ("auth", &["cli", "proxy", "controller", "routes", "reload"]),
    (
        "config",
        &["cli", "proxy", "controller", "routes", "reload", "auth"],
    ),
    (
        "ppl",
        &[
            "cli",
            "proxy",
            "controller",
            "routes",
            "reload",
            "auth",
            "config",
        ],
    ),
];

/// Every (module, forbidden modules) pair: the rules, and each leaf against all other modules.
fn rules() -> Vec<(&'static str, Vec<&'static str>)> {
    let mut out: Vec<(&str, Vec<&str>)> = RULES.iter().map(|(m, f)| (*m, f.to_vec())).collect();
    for leaf in LEAVES {
        out.push((
            leaf,
            MODULES.iter().copied().filter(|m| m != leaf).collect(),
        ));
    }
    out
}

/// Every `.rs` file of a top-level module: `src/NAME.rs` and everything under `src/NAME/`.
fn files_of(module: &str) -> Vec<PathBuf> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut out = Vec::new();
    let single = src.join(format!("{module}.rs"));
    if single.exists() {
        out.push(single);
    }
    let mut dirs = vec![src.join(module)];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    out
}

/// The top-level modules a line names as `crate::NAME` (also inside `use crate::{a, b}`).
fn crate_modules(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let code = line.split("//").next().unwrap_or("");
    let mut rest = code;
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for item in group[..end].split(',') {
                let name: String = item
                    .trim()
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    out.push(name);
                }
            }
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            out.push(name);
        }
    }
    out
}

#[test]
fn modules_import_only_what_the_layering_allows() {
    let mut broken = Vec::new();
    for (module, forbidden) in rules() {
        let files = files_of(module);
        assert!(!files.is_empty(), "no source files for module {module}");
        for file in files {
            let text = std::fs::read_to_string(&file).unwrap();
            for (n, line) in text.lines().enumerate() {
                for used in crate_modules(line) {
                    if forbidden.contains(&used.as_str()) {
                        broken.push(format!(
                            "{}:{}: `{module}` must not use `crate::{used}`: {}",
                            file.display(),
                            n + 1,
                            line.trim()
                        ));
                    }
                }
            }
        }
    }
    assert!(broken.is_empty(), "layering broken:\n{}", broken.join("\n"));
}

#[test]
fn the_check_sees_grouped_and_plain_imports() {
    assert_eq!(crate_modules("use crate::cli::serve;"), vec!["cli"]);
    assert_eq!(
        crate_modules("use crate::{proxy::Shared, routes};"),
        vec!["proxy", "routes"]
    );
    assert_eq!(
        crate_modules("let x = crate::tls::load_pem(a, b);"),
        vec!["tls"]
    );
    assert!(crate_modules("// crate::cli in a comment").is_empty());
}

#[test]
fn every_module_of_the_crate_is_listed() {
    let lib =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/lib.rs")).unwrap();
    let mut declared: Vec<&str> = lib
        .lines()
        .filter_map(|l| l.trim().strip_prefix("pub mod ")?.strip_suffix(';'))
        .collect();
    declared.sort_unstable();
    assert_eq!(
        declared, MODULES,
        "update MODULES (and the rules) in tests/layering.rs"
    );
}
