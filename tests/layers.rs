//! The layer map of `src/lib.rs` and docs/architecture.md, held against the code: every
//! `crate::…` path in a module of the server library names a module of a lower layer (or its own
//! module). A reference upwards, or sideways between two modules of one layer, fails here with
//! the file and line. Comments are not code and are skipped.

#![allow(clippy::expect_used)]

use std::path::{Path, PathBuf};

/// Each top-level module of the library and its rank: a module may use only modules of a
/// strictly lower rank. Within a layer the ranks order the few one-way ties (`lease` and `geo`
/// use `storage` and `redis_health`, `streams` uses `storage` and `lease`; `auth` uses `config`; `http` uses
/// `error`).
const RANKS: [(&str, u32); 17] = [
    // 1 base
    ("domain", 10),
    ("envelope", 10),
    ("telemetry", 10),
    ("config", 11),
    ("auth", 12),
    // 2 infrastructure
    ("redis_conn", 19),
    ("storage", 20),
    ("redis_health", 20),
    ("lease", 21),
    ("geo", 21),
    ("streams", 22),
    // 3, 4
    ("actors", 30),
    ("cluster", 40),
    // 5 the HTTP adapter and its error type
    ("error", 50),
    ("http", 51),
    // 6 wiring
    ("seed", 60),
    ("startup", 61),
];

fn rank(module: &str) -> Option<u32> {
    RANKS
        .iter()
        .find(|(name, _)| *name == module)
        .map(|(_, rank)| *rank)
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The `crate::<module>` paths on one line of code, comments cut off.
fn crate_paths(line: &str) -> Vec<&str> {
    let code = line.split("//").next().unwrap_or("");
    code.match_indices("crate::")
        .filter(|(at, _)| !code[..*at].ends_with(|c: char| c.is_alphanumeric() || c == '_'))
        .map(|(at, m)| {
            let rest = &code[at + m.len()..];
            let end = rest
                .find(|c: char| !(c.is_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            &rest[..end]
        })
        .collect()
}

#[test]
fn every_module_imports_only_layers_below_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut wrong = Vec::new();
    for file in files {
        let relative = file.strip_prefix(&src).expect("under src");
        let top = relative
            .components()
            .next()
            .and_then(|c| c.as_os_str().to_str())
            .map(|name| name.trim_end_matches(".rs"))
            .expect("a module name");
        if matches!(top, "lib" | "main") {
            continue; // the crate root and the binary sit above every layer
        }
        let own =
            rank(top).unwrap_or_else(|| panic!("{top}: not on the layer map (tests/layers.rs)"));
        let text = std::fs::read_to_string(&file).expect("read source");
        for (number, line) in text.lines().enumerate() {
            for used in crate_paths(line) {
                let Some(theirs) = rank(used) else { continue };
                if used != top && theirs >= own {
                    wrong.push(format!(
                        "{}:{}: {top} uses {used}",
                        relative.display(),
                        number + 1
                    ));
                }
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "imports against the layer map:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn the_server_library_never_uses_the_load_test_client() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    for file in files.iter().filter(|f| !f.ends_with("main.rs")) {
        let text = std::fs::read_to_string(file).expect("read source");
        assert!(
            !text.contains("ridelock_loadtest") && !text.contains("crate::loadtest"),
            "{} uses the load-test client",
            file.display()
        );
    }
}

#[test]
fn a_path_in_a_comment_is_not_an_import() {
    assert_eq!(
        crate_paths("use crate::domain::ids; // see crate::http"),
        ["domain"]
    );
    assert_eq!(
        crate_paths("let x = my_crate::http::y;"),
        Vec::<&str>::new()
    );
}
