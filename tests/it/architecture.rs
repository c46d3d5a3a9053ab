//! The rules of ARCHITECTURE.md that a machine can check, checked on the source tree:
//! the stages never import each other, only the command layer sees the command line, only
//! `store/runs.rs` writes the run tables, only `sql/meta/` declares tables, and every SQL file
//! under `sql/` is in a catalogue that runs it (a new file never silently does nothing).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// The three stages: a file of one may not name another (`crate::<stage>`).
const STAGES: [&str; 3] = ["extract", "transform", "load"];

/// Every `.rs` file under `dir`, or `dir` itself when it is a file.
fn rust_files(path: &Path) -> Vec<PathBuf> {
    if path.is_file() {
        return vec![path.to_path_buf()];
    }
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(path) else {
        return out;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(rust_files(&p));
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
    out.sort();
    out
}

/// The files of a module: `src/<name>/**` or `src/<name>.rs`.
fn module_files(src: &Path, name: &str) -> Vec<PathBuf> {
    let mut files = rust_files(&src.join(name));
    files.extend(rust_files(&src.join(format!("{name}.rs"))));
    files
}

/// Lines of `file` (comments left out) that name module `target` of the crate:
/// `crate::target` anywhere, or `use crate::{.., target, ..}`.
fn mentions(file: &Path, target: &str) -> Vec<String> {
    let text = std::fs::read_to_string(file).unwrap();
    let path = format!("crate::{target}");
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim_start().starts_with("//"))
        .filter(|(_, l)| {
            let named = l.match_indices(&path).any(|(i, _)| {
                !l[i + path.len()..].starts_with(|c: char| c.is_alphanumeric() || c == '_')
            });
            let grouped = l.contains("use crate::{")
                && l.split(['{', '}', ',', ' ']).any(|w| w.trim() == target);
            named || grouped
        })
        .map(|(i, l)| format!("{}:{}: {}", file.display(), i + 1, l.trim()))
        .collect()
}

/// Violations of "a stage never imports another stage" in the tree at `src`.
fn stage_imports(src: &Path) -> Vec<String> {
    let mut found = Vec::new();
    for stage in STAGES {
        for file in module_files(src, stage) {
            for other in STAGES.iter().filter(|o| **o != stage) {
                found.extend(mentions(&file, other));
            }
        }
    }
    found
}

/// Violations of "only `commands/` (and the binary's entry) sees the command line".
fn cli_imports(src: &Path) -> Vec<String> {
    rust_files(src)
        .into_iter()
        .filter(|f| {
            let rel = f.strip_prefix(src).unwrap();
            !(rel.starts_with("commands")
                || rel == Path::new("cli.rs")
                || rel == Path::new("main.rs")
                || rel == Path::new("lib.rs"))
        })
        .flat_map(|f| mentions(&f, "cli"))
        .collect()
}

#[test]
fn stages_never_import_each_other() {
    let found = stage_imports(&Path::new(ROOT).join("src"));
    assert!(
        found.is_empty(),
        "a stage imports another stage (ARCHITECTURE.md, \"Invariants\"); move the shared part \
         to store/, land/, manifest.rs, fs.rs or sql.rs:\n{}",
        found.join("\n")
    );
}

#[test]
fn only_the_commands_see_the_command_line() {
    let found = cli_imports(&Path::new(ROOT).join("src"));
    assert!(
        found.is_empty(),
        "code below commands/ imports cli (ARCHITECTURE.md, \"Invariants\"); pass it typed \
         values instead:\n{}",
        found.join("\n")
    );
}

/// The run tables, declared in sql/meta/001_runs.sql, 005_history.sql and 006_run_warnings.sql.
const RUN_TABLES: [&str; 6] = [
    "runs",
    "run_streams",
    "landed_files",
    "run_steps",
    "exports",
    "run_warnings",
];

/// The file allowed to write them.
const RUN_TABLES_WRITER: &str = "store/runs.rs";

/// SQL words of a Rust file (comments left out), upper-cased keywords kept apart from
/// punctuation, each with its line: enough to find `UPDATE runs` or `CREATE TABLE x (`
/// however the statement is wrapped over lines.
fn sql_words(file: &Path) -> Vec<(usize, String)> {
    let text = std::fs::read_to_string(file).unwrap();
    let mut words = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim_start().starts_with("//") {
            continue;
        }
        let spaced = line
            .replace('(', " ( ")
            .replace('"', " ")
            .replace(',', " , ");
        for w in spaced.split_whitespace() {
            let w = w.trim_matches(|c: char| !(c.is_alphanumeric() || c == '_' || c == '('));
            if !w.is_empty() {
                words.push((i + 1, w.to_string()));
            }
        }
    }
    words
}

/// Files under `src` (the simulator aside: it has no database) other than `allowed`.
fn database_files(src: &Path, allowed: &[&str]) -> Vec<PathBuf> {
    rust_files(src)
        .into_iter()
        .filter(|f| {
            let rel = f.strip_prefix(src).unwrap();
            !rel.starts_with("sim") && !allowed.iter().any(|a| rel == Path::new(a))
        })
        .collect()
}

/// Violations of "only store/runs.rs writes the run tables".
fn run_table_writes(src: &Path) -> Vec<String> {
    let mut found = Vec::new();
    for file in database_files(src, &[RUN_TABLES_WRITER]) {
        let words = sql_words(&file);
        for (k, (line, w)) in words.iter().enumerate() {
            let up = w.to_ascii_uppercase();
            // The word after INTO (INSERT [OR REPLACE] INTO), UPDATE or DELETE FROM.
            let target = match up.as_str() {
                "INTO" if k > 0 => words.get(k + 1),
                "UPDATE" => words.get(k + 1),
                "FROM" if k > 0 && words[k - 1].1.eq_ignore_ascii_case("DELETE") => {
                    words.get(k + 1)
                }
                _ => None,
            };
            if let Some((_, t)) = target
                && RUN_TABLES.contains(&t.as_str())
            {
                found.push(format!("{}:{line}: {up} {t}", file.display()));
            }
        }
    }
    found
}

/// Violations of "only sql/meta/ declares tables": a `CREATE [OR REPLACE] TABLE [IF NOT
/// EXISTS] name (` with its column list, or an `ALTER TABLE`, in Rust. Tables made from a
/// query (models, seeds, `people` from `out_people`) and TEMP scratch tables are not
/// declarations.
fn table_declarations(src: &Path) -> Vec<String> {
    let mut found = Vec::new();
    for file in database_files(src, &[]) {
        let words = sql_words(&file);
        let up: Vec<String> = words.iter().map(|(_, w)| w.to_ascii_uppercase()).collect();
        for k in 0..up.len() {
            let line = words[k].0;
            if up[k] == "ALTER" && up.get(k + 1).is_some_and(|w| w == "TABLE") {
                found.push(format!("{}:{line}: ALTER TABLE", file.display()));
            }
            if up[k] != "CREATE" {
                continue;
            }
            let mut j = k + 1;
            if up.get(j).is_some_and(|w| w == "OR") && up.get(j + 1).is_some_and(|w| w == "REPLACE")
            {
                j += 2;
            }
            if up.get(j).is_some_and(|w| w == "TEMP" || w == "TEMPORARY") {
                continue;
            }
            if up.get(j).is_none_or(|w| w != "TABLE") {
                continue;
            }
            j += 1;
            if up.get(j).is_some_and(|w| w == "IF") {
                j += 3;
            }
            if up.get(j + 1).is_some_and(|w| w == "(") {
                found.push(format!(
                    "{}:{line}: CREATE TABLE {} (",
                    file.display(),
                    words[j].1
                ));
            }
        }
    }
    found
}

#[test]
fn only_store_runs_writes_the_run_tables() {
    let found = run_table_writes(&Path::new(ROOT).join("src"));
    assert!(
        found.is_empty(),
        "the run tables are written outside {RUN_TABLES_WRITER} (ARCHITECTURE.md, \"Invariants\"); \
         add a method there instead:\n{}",
        found.join("\n")
    );
}

#[test]
fn only_sql_meta_declares_tables() {
    let found = table_declarations(&Path::new(ROOT).join("src"));
    assert!(
        found.is_empty(),
        "a table is declared (or altered) in Rust (ARCHITECTURE.md, \"Invariants\"); declare \
         it in a sql/meta/ file instead:\n{}",
        found.join("\n")
    );
}

/// The rules can fail: a tree where a stage imports another, or a stage reads the command
/// line, is caught (with the line named).
#[test]
fn the_rules_catch_a_violation() {
    let dir = crate::util::TempDir::new("arch");
    let src = dir.path().join("src");
    std::fs::create_dir_all(src.join("extract")).unwrap();
    std::fs::write(
        src.join("extract/mod.rs"),
        "// crate::transform in a comment is fine\nuse crate::{fs, transform};\n",
    )
    .unwrap();
    std::fs::write(
        src.join("load.rs"),
        "use crate::extract::Extracted;\nuse crate::cli::SqlFormat;\nuse crate::loader;\n",
    )
    .unwrap();
    std::fs::write(src.join("transform.rs"), "use crate::transforms::x;\n").unwrap();
    let stages = stage_imports(&src);
    assert_eq!(stages.len(), 2, "{stages:?}");
    assert!(stages[0].contains("extract/mod.rs:2"), "{stages:?}");
    assert!(stages[1].contains("load.rs:1"), "{stages:?}");
    let cli = cli_imports(&src);
    assert_eq!(cli.len(), 1, "{cli:?}");
    assert!(cli[0].contains("load.rs:2"), "{cli:?}");

    std::fs::create_dir_all(src.join("store")).unwrap();
    std::fs::write(
        src.join("store/runs.rs"),
        "const A: &str = \"UPDATE runs SET status = ?\";\n",
    )
    .unwrap();
    std::fs::write(
        src.join("report.rs"),
        "const Q: &str = \"SELECT * FROM runs\";\n\
         // UPDATE runs in a comment is fine\n\
         const W: &str = \"INSERT OR REPLACE INTO\n    run_steps VALUES (?)\";\n\
         const D: &str = \"DELETE FROM exports WHERE x\";\n\
         const E: &str = \"CREATE TABLE IF NOT EXISTS exports2 (run_id VARCHAR)\";\n\
         const F: &str = \"CREATE OR REPLACE TEMP TABLE scratch (a INT)\";\n\
         const G: &str = \"CREATE OR REPLACE TABLE people AS SELECT 1\";\n\
         const H: &str = \"ALTER TABLE runs ADD COLUMN x INT\";\n",
    )
    .unwrap();
    let writes = run_table_writes(&src);
    assert_eq!(writes.len(), 2, "{writes:?}");
    assert!(
        writes[0].contains("report.rs:3: INTO run_steps"),
        "{writes:?}"
    );
    assert!(
        writes[1].contains("report.rs:5: FROM exports"),
        "{writes:?}"
    );
    let declared = table_declarations(&src);
    assert_eq!(declared.len(), 2, "{declared:?}");
    assert!(
        declared[0].contains("report.rs:6: CREATE TABLE exports2"),
        "{declared:?}"
    );
    assert!(
        declared[1].contains("report.rs:9: ALTER TABLE"),
        "{declared:?}"
    );
}

/// Every `.sql` file under `sql/`, relative to it (`staging/stg_graph__users.sql`).
fn sql_files() -> BTreeSet<String> {
    fn walk(dir: &Path, root: &Path, out: &mut BTreeSet<String>) {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, root, out);
            } else if p.extension().is_some_and(|x| x == "sql") {
                out.insert(p.strip_prefix(root).unwrap().display().to_string());
            }
        }
    }
    let root = Path::new(ROOT).join("sql");
    let mut out = BTreeSet::new();
    walk(&root, &root, &mut out);
    out
}

/// The SQL files the catalogues run: models and audits (transform), the report queries,
/// and the staging database's DDL.
fn catalogued() -> BTreeSet<String> {
    use m365_connector::{report, store, transform};
    let mut out = BTreeSet::new();
    for m in transform::MODELS {
        out.insert(format!("{}.sql", m.name));
    }
    for a in transform::AUDITS {
        out.insert(format!("{}.sql", a.name));
    }
    for q in report::QUERIES {
        out.insert(format!("report/report_{}.sql", q.name));
    }
    for (name, _) in store::META_SQL {
        out.insert(name.to_string());
    }
    out
}

#[test]
fn every_sql_file_is_in_a_catalogue_and_every_entry_has_its_file() {
    let files = sql_files();
    let listed = catalogued();
    let never_run: Vec<_> = files.difference(&listed).collect();
    let missing: Vec<_> = listed.difference(&files).collect();
    assert!(
        never_run.is_empty(),
        "SQL files no catalogue runs (add them to transform::MODELS/AUDITS, report::QUERIES \
         or store::META_SQL): {never_run:?}"
    );
    assert!(
        missing.is_empty(),
        "catalogue entries without their file under sql/: {missing:?}"
    );
    assert!(files.len() >= 30, "the walk found too few files: {files:?}");
}
