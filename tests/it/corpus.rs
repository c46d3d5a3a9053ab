//! The hostile-input corpus (`tests/corpus/`): connector files, mapping files and Graph
//! responses an admin, a spreadsheet or a proxy could hand the connector. Every case drives
//! the real binary and compares what a user reads (exit code, stdout, stderr, and for
//! tolerated input what landed) with the snapshot `NAME.snap` next to the case: an
//! [insta](https://insta.rs) snapshot, a short header and then the text itself.
//!
//! - `config/NAME.toml`: `m365-connector validate -c NAME.toml` (`check` when the file starts
//!   with `# corpus: check`).
//! - `mapping/NAME.csv`: `m365-connector transform` with `[pipeline] mappings = "NAME.csv"`,
//!   on a data directory holding one transformed run; a refused mapping changes nothing.
//! - `graph/cases.toml`: one table row per Graph answer served by the simulator's override
//!   hook (`Simulator::set_override`), then `m365-connector extract` from a data directory
//!   that already holds one good run. A refused answer exits 1 and commits nothing; the
//!   earlier run's files and `runs` row stay byte-identical either way.
//!
//! Paths, ports, run ids, GUIDs and timings are replaced by placeholders (`<DIR>`, `<GRAPH>`,
//! `<RUN>`, `<GUID>`, `<T>`) before comparing. Every case is compared before the test fails,
//! with a diff for each that differs. After an intended change of a message, accept the new
//! snapshots with `cargo insta review` (cargo-insta; a failed run outside CI leaves
//! `NAME.snap.new` next to each) or rewrite them with
//! `INSTA_UPDATE=always cargo test --release --test it corpus`, and review the `git diff`. With
//! `CI` set nothing is written. A snapshot whose case is gone fails `corpus_snapshots_have_cases`.
//! No case may panic.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;

use m365_connector::cli::SqlFormat;
use m365_connector::commands::query::query;
use m365_connector::config::Config;
use m365_connector::sim::{Override, OverrideHost, SimOptions, Simulator};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::util::{TempDir, connector_file, files_under, sim_options};

const BIN: &str = env!("CARGO_BIN_EXE_m365-connector");
const SECRET: &str = "corpus-secret-value";

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus")
}

// ---- snapshots ------------------------------------------------------------------------

/// Compares outputs with the insta snapshots `NAME.snap` in one corpus folder, collecting
/// every difference before failing (insta's assertion alone stops at the first).
struct Snapshots {
    settings: insta::Settings,
    failures: Vec<String>,
}

impl Snapshots {
    fn new(dir: &Path) -> Snapshots {
        let mut settings = insta::Settings::clone_current();
        settings.set_snapshot_path(dir);
        settings.set_prepend_module_to_snapshot(false);
        settings.set_omit_expression(true);
        Snapshots {
            settings,
            failures: Vec::new(),
        }
    }

    /// Compares `actual` with `NAME.snap`; `input` (the case's file) is named in its header.
    fn check(&mut self, name: &str, input: &Path, actual: &str) {
        // insta compares without trailing blank space and with CRLF read as LF. No snapshot
        // holds either (each is text ending in one newline), so an output with them differs.
        if actual.contains("\r\n") || format!("{}\n", actual.trim_end()) != actual {
            self.failures.push(format!(
                "{name}: CRLF line ends, or blank space at the end other than one newline, which no snapshot holds: {actual:?}"
            ));
            return;
        }
        let mut settings = self.settings.clone();
        settings.set_input_file(input);
        let outcome =
            settings.bind(|| std::panic::catch_unwind(|| insta::assert_snapshot!(name, actual)));
        if let Err(panic) = outcome {
            self.failures.push(panic_message(panic.as_ref()));
        }
    }

    /// Fails on any difference (each one's diff is printed above).
    fn finish(self) {
        assert!(
            self.failures.is_empty(),
            "{} corpus case(s) differ from their snapshots:\n\n{}\n\n(each diff is printed above; accept intended changes with `cargo insta review` or INSTA_UPDATE=always)",
            self.failures.len(),
            self.failures.join("\n\n")
        );
    }
}

fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<String>()
        .cloned()
        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}

/// Every snapshot belongs to a case: `config/NAME.snap` to `NAME.toml`, `mapping/NAME.snap` to
/// `NAME.csv`, `graph/NAME.snap` to a row of `cases.toml`. (insta finds unreferenced snapshots
/// only under `cargo insta test --unreferenced=reject`; CI runs `cargo test`.)
#[test]
fn corpus_snapshots_have_cases() {
    let graph: GraphCases =
        toml::from_str(&std::fs::read_to_string(corpus().join("graph/cases.toml")).unwrap())
            .unwrap();
    let names = |folder: &str, ext: &str| -> Vec<String> {
        cases(&corpus().join(folder), ext)
            .into_iter()
            .map(|(name, _)| name)
            .collect()
    };
    let mut orphans = Vec::new();
    for (folder, case_names) in [
        ("config", names("config", "toml")),
        ("mapping", names("mapping", "csv")),
        ("graph", graph.case.into_iter().map(|c| c.name).collect()),
    ] {
        for (name, path) in cases(&corpus().join(folder), "snap") {
            if !case_names.contains(&name) {
                orphans.push(path.display().to_string());
            }
        }
    }
    assert!(
        orphans.is_empty(),
        "snapshots without a case (delete them, or run `cargo insta test --unreferenced=delete`):\n{}",
        orphans.join("\n")
    );
}

/// Cases in `dir` with extension `ext`, sorted by name.
fn cases(dir: &Path, ext: &str) -> Vec<(String, PathBuf)> {
    let mut out: Vec<(String, PathBuf)> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .map(|p| (p.file_stem().unwrap().to_string_lossy().into_owned(), p))
        .collect();
    out.sort();
    out
}

/// Replaces every `from` (longest first) by its placeholder, then run ids and timings, which
/// change from run to run.
fn normalise(text: &str, replacements: &[(String, &str)]) -> String {
    let mut reps: Vec<&(String, &str)> =
        replacements.iter().filter(|(f, _)| !f.is_empty()).collect();
    reps.sort_by_key(|(f, _)| std::cmp::Reverse(f.len()));
    let mut s = text.to_string();
    for (from, to) in reps {
        s = s.replace(from.as_str(), to);
    }
    let s = replace_tokens(&s, is_run_id, 21, "<RUN>");
    replace_seconds(&s)
}

fn is_run_id(b: &[u8]) -> bool {
    b.len() == 21
        && b[..8].iter().all(u8::is_ascii_digit)
        && b[8] == b'T'
        && b[9..15].iter().all(u8::is_ascii_digit)
        && &b[15..17] == b"Z-"
        && b[17..].iter().all(|c| c.is_ascii_hexdigit())
}

fn is_guid(b: &[u8]) -> bool {
    std::str::from_utf8(b).is_ok_and(m365_connector::config::is_guid)
}

/// Replaces every `len`-byte window for which `matches` holds (on ASCII boundaries).
fn replace_tokens(s: &str, matches: fn(&[u8]) -> bool, len: usize, to: &str) -> String {
    let b = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    let mut last = 0;
    while i + len <= b.len() {
        if s.is_char_boundary(i) && s.is_char_boundary(i + len) && matches(&b[i..i + len]) {
            out.push_str(&s[last..i]);
            out.push_str(to);
            i += len;
            last = i;
        } else {
            i += 1;
        }
    }
    out.push_str(&s[last..]);
    out
}

/// `0.3 s` → `<T> s`: durations differ on every run.
fn replace_seconds(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(pos) = rest.find(" s") {
        let head = &rest[..pos];
        let num_start = head
            .rfind(|c: char| !(c.is_ascii_digit() || c == '.'))
            .map_or(0, |i| i + 1);
        let num = &head[num_start..];
        if num.contains('.') && num.chars().next().is_some_and(|c| c.is_ascii_digit()) {
            out.push_str(&head[..num_start]);
            out.push_str("<T>");
        } else {
            out.push_str(head);
        }
        out.push_str(" s");
        rest = &rest[pos + 2..];
    }
    out.push_str(rest);
    out
}

// ---- running the binary ---------------------------------------------------------------

fn run(args: &[&str], cwd: &Path) -> Output {
    Command::new(BIN)
        .args(args)
        .current_dir(cwd)
        .env_remove("RUST_LOG")
        .env_remove("M365_CORPUS_UNSET")
        .env("M365_CORPUS_SECRET", SECRET)
        .env("CI", "1")
        .output()
        .unwrap()
}

async fn run_async(args: Vec<&'static str>, cwd: PathBuf) -> Output {
    tokio::task::spawn_blocking(move || run(&args, &cwd))
        .await
        .unwrap()
}

/// `$ command`, the exit code and both streams, as a snapshot shows them.
fn transcript(args: &[&str], out: &Output) -> String {
    let mut s = format!(
        "$ m365-connector {}\nexit {}\n",
        args.join(" "),
        out.status
            .code()
            .map_or("(killed by a signal)".to_string(), |c| c.to_string())
    );
    for (name, bytes) in [("stdout", &out.stdout), ("stderr", &out.stderr)] {
        if !bytes.is_empty() {
            s.push_str(&format!("{name}:\n{}", String::from_utf8_lossy(bytes)));
            if !s.ends_with('\n') {
                s.push('\n');
            }
        }
    }
    s
}

fn assert_no_panic(case: &str, out: &Output) {
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !all.contains("panicked") && !all.contains("RUST_BACKTRACE") && out.status.code().is_some(),
        "{case}: the binary panicked or crashed:\n{all}"
    );
}

fn write_secret(path: &Path, value: &str, mode: u32) {
    std::fs::write(path, value).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    #[cfg(not(unix))]
    let _ = mode;
}

// ---- config ----------------------------------------------------------------------------

/// Every `config/NAME.toml` through `validate`: exit 0, or exit 2 with `NAME.toml:LINE: key:
/// problem and fix`; through `check` (first line `# corpus: check`): the checklist with the
/// failing item and exit 1. Secrets are never echoed.
#[test]
fn corpus_config() {
    let dir = TempDir::new("corpus-config");
    write_secret(&dir.path().join("secret"), SECRET, 0o600);
    write_secret(&dir.path().join("secret-world-readable"), SECRET, 0o644);
    write_secret(&dir.path().join("secret-empty"), "", 0o600);
    let src = corpus().join("config");
    let mut snaps = Snapshots::new(&src);
    let all = cases(&src, "toml");
    assert!(all.len() >= 40, "only {} config cases", all.len());
    for (name, path) in all {
        let file = format!("{name}.toml");
        std::fs::copy(&path, dir.path().join(&file)).unwrap();
        let check = std::fs::read(&path)
            .unwrap()
            .starts_with(b"# corpus: check");
        let command = if check { "check" } else { "validate" };
        let args = [command, "-c", file.as_str()];
        let out = run(&args, dir.path());
        assert_no_panic(&name, &out);
        let text = transcript(&args, &out);
        let code = out.status.code();
        if check {
            assert_eq!(code, Some(1), "{name}: {text}");
            assert!(text.contains("[FAIL]"), "{name}: {text}");
        } else {
            assert!(matches!(code, Some(0) | Some(2)), "{name}: {text}");
        }
        if code == Some(2) {
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(
                stderr.starts_with(&format!("error: {file}")),
                "{name}: the message must name the file: {stderr}"
            );
        }
        for secret in ["Zq8~", SECRET] {
            assert!(
                !text.contains(secret),
                "{name}: a secret was echoed: {text}"
            );
        }
        let norm = normalise(&text, &[(dir.path().display().to_string(), "<DIR>")]);
        snaps.check(&name, &path, &norm);
    }
    snaps.finish();
}

// ---- shared Graph + data-directory setup -----------------------------------------------

/// The simulator's "today" is fixed so report rows (and so every count and size in a
/// snapshot) are the same every day.
fn corpus_sim_options() -> SimOptions {
    SimOptions {
        today: chrono::NaiveDate::from_ymd_opt(2026, 11, 28).unwrap(),
        ..sim_options(50, 6)
    }
}

/// Connector file for `sim` in `dir` (no date filter, so counts do not depend on today).
fn corpus_connector(dir: &Path, sim: &Simulator, pipeline_extra: &str) -> PathBuf {
    let path = connector_file(dir, sim, sim.options(), &sim.options().client_secret);
    // Unusable bodies are retried with backoff before the run fails: keep those waits short.
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("retry_base_ms = 20\n", "retry_base_ms = 1\n");
    let text = text.replace("[pipeline]\n", &format!("[pipeline]\n{pipeline_extra}"));
    std::fs::write(&path, format!("{text}[filter]\ndate_filter_days = 0\n")).unwrap();
    path
}

/// A data directory holding one extracted and transformed run.
struct Template {
    dir: TempDir,
    run_id: String,
    /// sha256 of every file under `data/raw/<run_id>/`.
    raw_files: BTreeMap<String, String>,
    /// The run's `runs` row as JSON.
    runs_row: String,
}

async fn template(tag: &str) -> Template {
    let dir = TempDir::new(tag);
    let sim = Simulator::start(corpus_sim_options()).await.unwrap();
    let path = corpus_connector(dir.path(), &sim, "");
    let cfg = Config::load(&path).unwrap();
    let progress = m365_connector::output::Progress::hidden();
    let run = m365_connector::extract::extract(&cfg, &progress)
        .await
        .unwrap();
    m365_connector::transform::transform(&cfg, None).unwrap();
    sim.shutdown().await;
    let data = dir.path().join("data");
    Template {
        raw_files: hashes(&data.join("raw").join(&run.run_id)),
        runs_row: runs_row(&data, &run.run_id),
        run_id: run.run_id,
        dir,
    }
}

fn hashes(dir: &Path) -> BTreeMap<String, String> {
    files_under(dir)
        .into_iter()
        .map(|f| {
            let rel = f.strip_prefix(dir).unwrap().display().to_string();
            let bytes = std::fs::read(&f).unwrap();
            (rel, m365_connector::digest::hex(&Sha256::digest(&bytes)))
        })
        .collect()
}

fn runs_row(data: &Path, run_id: &str) -> String {
    query(
        data,
        &format!("SELECT * FROM runs WHERE run_id = '{run_id}'"),
        SqlFormat::Json,
    )
    .unwrap()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let p = e.path();
        let target = to.join(e.file_name());
        if p.is_dir() {
            copy_dir(&p, &target);
        } else {
            std::fs::copy(&p, &target).unwrap();
        }
    }
}

/// Committed run directories and leftover `.partial-*` ones under `data/raw`.
fn raw_entries(data: &Path) -> (Vec<String>, Vec<String>) {
    let mut committed = Vec::new();
    let mut partial = Vec::new();
    if let Ok(entries) = std::fs::read_dir(data.join("raw")) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with(".partial-") {
                partial.push(name);
            } else if e.path().join("manifest.json").is_file() {
                committed.push(name);
            }
        }
    }
    committed.sort();
    (committed, partial)
}

/// The earlier run is exactly as it was: files and `runs` row.
fn assert_earlier_run_intact(case: &str, t: &Template, data: &Path) {
    assert_eq!(
        hashes(&data.join("raw").join(&t.run_id)),
        t.raw_files,
        "{case}: the earlier run's raw files changed"
    );
    assert_eq!(
        runs_row(data, &t.run_id),
        t.runs_row,
        "{case}: the earlier run's `runs` row changed"
    );
}

// ---- mapping ---------------------------------------------------------------------------

/// What a refused mapping must leave untouched.
fn staging_state(data: &Path) -> String {
    query(
        data,
        "SELECT (SELECT string_agg(run_id || ':' || status || ':' || coalesce(transform_status, '-') || ':' || coalesce(mapping_sha256, '-'), ',' ORDER BY run_id) FROM runs) AS runs,
                (SELECT count(*) FROM people) AS people,
                (SELECT string_agg(column_name, ',' ORDER BY column_index) FROM duckdb_columns() WHERE table_name = 'people') AS people_columns,
                (SELECT count(*) FROM run_steps) AS steps",
        SqlFormat::Csv,
    )
    .unwrap()
}

/// Every `mapping/NAME.csv` through `transform`: exit 0, or exit 2 with `NAME.csv:LINE:
/// problem and fix` and the staging database unchanged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corpus_mapping() {
    let t = template("corpus-mapping").await;
    let dir = t.dir.path();
    let data = dir.join("data");
    let src = corpus().join("mapping");
    let mut snaps = Snapshots::new(&src);
    let all = cases(&src, "csv");
    assert!(all.len() >= 30, "only {} mapping cases", all.len());
    let original = std::fs::read_to_string(dir.join("connector.toml")).unwrap();
    for (name, path) in all {
        let file = format!("{name}.csv");
        std::fs::copy(&path, dir.join(&file)).unwrap();
        std::fs::write(
            dir.join("connector.toml"),
            original.replace(
                "[pipeline]\n",
                &format!("[pipeline]\nmappings = \"{file}\"\n"),
            ),
        )
        .unwrap();
        let before = staging_state(&data);
        let args = vec!["-q", "transform", "-c", "connector.toml"];
        let out = run_async(args.clone(), dir.to_path_buf()).await;
        assert_no_panic(&name, &out);
        let text = transcript(&args, &out);
        match out.status.code() {
            Some(0) => {}
            Some(2) => {
                let stderr = String::from_utf8_lossy(&out.stderr);
                assert!(
                    stderr.starts_with(&format!("error: ./{file}:")),
                    "{name}: the message must start with the file and line: {stderr}"
                );
                assert!(stderr.lines().count() == 1, "{name}: one line: {stderr}");
                assert_eq!(
                    staging_state(&data),
                    before,
                    "{name}: a refused mapping changed the database"
                );
            }
            _ => panic!("{name}: unexpected exit: {text}"),
        }
        // A transform never touches the landed files (a successful one updates the run's row).
        assert_eq!(
            hashes(&data.join("raw").join(&t.run_id)),
            t.raw_files,
            "{name}: the run's raw files changed"
        );
        let mut norm = normalise(&text, &[(dir.display().to_string(), "<DIR>")]);
        if out.status.success() {
            let cols = query(
                &data,
                "SELECT column_name FROM duckdb_columns() WHERE table_name = 'people' ORDER BY column_index",
                SqlFormat::Csv,
            )
            .unwrap();
            norm.push_str(&format!("people columns:\n{cols}"));
        }
        snaps.check(&name, &path, &norm);
    }
    snaps.finish();
}

// ---- Graph responses -------------------------------------------------------------------

#[derive(Deserialize)]
struct GraphCases {
    case: Vec<GraphCase>,
}

/// One row of `graph/cases.toml`.
#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
struct GraphCase {
    name: String,
    /// What the case stands for (first line of the snapshot).
    what: String,
    /// A Graph path prefix whose answer is replaced, e.g. `/v1.0/users`.
    #[serde(default)]
    path: Option<String>,
    /// A report function: its call answers `302` to the download host, which serves `body`.
    #[serde(default)]
    report: Option<String>,
    #[serde(default = "default_status")]
    status: u16,
    #[serde(default)]
    content_type: Option<String>,
    #[serde(default)]
    headers: Vec<(String, String)>,
    #[serde(default)]
    body: Option<String>,
    #[serde(default)]
    body_file: Option<String>,
    /// A body too big to keep in the repository, built by [`generate`].
    #[serde(default)]
    body_gen: Option<String>,
    /// `fail`: exit 1, nothing committed. `ok`: exit 0 or 3, a new run committed.
    expect: String,
    /// After a committed extract, also run `transform`.
    #[serde(default)]
    transform: bool,
    /// Queries on the staging database after the commands; `{run}` is the new run id and
    /// `{raw}` its raw directory.
    #[serde(default)]
    queries: Vec<String>,
}

fn default_status() -> u16 {
    200
}

/// The 10 MB field: one user whose `displayName` is 10 MiB of mixed one- to four-byte UTF-8
/// and JSON escapes, between two ordinary users.
fn generate(name: &str, sim: &Simulator) -> Vec<u8> {
    match name {
        "users_10mb_field" => {
            let t = sim.tenant();
            let a = serde_json::to_string(&t.user(0)).unwrap();
            let c = serde_json::to_string(&t.user(1)).unwrap();
            let unit = "Ab\u{e9}\u{20ac}\u{1f600} \\\"\\n,";
            let mut big = String::with_capacity(10 * 1024 * 1024 + unit.len());
            while big.len() < 10 * 1024 * 1024 {
                big.push_str(unit);
            }
            format!(
                r#"{{"@odata.context":"{{graph}}/v1.0/$metadata#users","value":[{a},{{"id":"b0b0b0b0-0000-4000-8000-000000000010","userPrincipalName":"huge@contoso.com","accountEnabled":true,"displayName":"{big}"}},{c}]}}"#
            )
            .into_bytes()
        }
        other => panic!("unknown body_gen {other:?}"),
    }
}

/// `{graph}`, `{download}`, `{upn:N}` and `{id:N}` (user N of the simulated tenant). Works
/// on bytes: some bodies hold invalid UTF-8 on purpose.
fn fill(body: &[u8], sim: &Simulator) -> Vec<u8> {
    let t = sim.tenant();
    let mut out = Vec::with_capacity(body.len());
    let mut i = 0;
    while i < body.len() {
        if body[i] == b'{'
            && let Some(len) = body[i..].iter().take(32).position(|b| *b == b'}')
        {
            let token = std::str::from_utf8(&body[i + 1..i + len]).unwrap_or("");
            let value = match token.split_once(':') {
                None if token == "graph" => Some(sim.graph_url()),
                None if token == "download" => Some(sim.download_url()),
                Some(("upn", n)) => n
                    .parse()
                    .ok()
                    .map(|n| t.user(n)["userPrincipalName"].as_str().unwrap().to_string()),
                Some(("id", n)) => n
                    .parse()
                    .ok()
                    .map(|n| t.user(n)["id"].as_str().unwrap().to_string()),
                _ => None,
            };
            if let Some(v) = value {
                out.extend_from_slice(v.as_bytes());
                i += len + 1;
                continue;
            }
        }
        out.push(body[i]);
        i += 1;
    }
    out
}

fn install(case: &GraphCase, sim: &Simulator, body: bytes::Bytes) {
    match (&case.path, &case.report) {
        (Some(path), None) => sim.set_override(Override {
            host: OverrideHost::Graph,
            path_prefix: path.clone(),
            status: case.status,
            content_type: case.content_type.clone().or_else(|| {
                Some("application/json;odata.metadata=minimal;odata.streaming=true;IEEE754Compatible=false;charset=utf-8".into())
            }),
            headers: case
                .headers
                .iter()
                .map(|(k, v)| (k.clone(), String::from_utf8(fill(v.as_bytes(), sim)).unwrap()))
                .collect(),
            body,
            times: None,
        }),
        (None, Some(report)) => {
            let location = format!("{}/corpus/{}", sim.download_url(), case.name);
            sim.set_override(Override {
                host: OverrideHost::Graph,
                path_prefix: format!("/v1.0/reports/{report}"),
                status: 302,
                content_type: Some("text/plain".into()),
                headers: vec![("Location".into(), location)],
                body: bytes::Bytes::new(),
                times: None,
            });
            sim.set_override(Override {
                host: OverrideHost::Download,
                path_prefix: format!("/corpus/{}", case.name),
                status: case.status,
                content_type: case
                    .content_type
                    .clone()
                    .or_else(|| Some("application/octet-stream".into())),
                headers: Vec::new(),
                body,
                times: None,
            });
        }
        _ => panic!("{}: give exactly one of `path` and `report`", case.name),
    }
}

/// The `value` records of a JSON collection body, as the exact bytes sent.
fn sent_records(body: &[u8]) -> Option<Vec<Vec<u8>>> {
    #[derive(Deserialize)]
    struct Shape<'a> {
        #[serde(borrow)]
        value: Vec<&'a serde_json::value::RawValue>,
    }
    let body = body.strip_prefix(b"\xef\xbb\xbf").unwrap_or(body);
    let shape: Shape = serde_json::from_slice(body).ok()?;
    Some(
        shape
            .value
            .iter()
            .map(|v| v.get().as_bytes().to_vec())
            .collect(),
    )
}

/// Runs one Graph case from a copy of the template; returns its snapshot text.
async fn graph_case(case: GraphCase, t: Arc<Template>) -> (String, String) {
    let name = case.name.clone();
    let dir = TempDir::new(&format!("corpus-graph-{name}"));
    copy_dir(&t.dir.path().join("data"), &dir.path().join("data"));
    let data = dir.path().join("data");
    let sim = Simulator::start(corpus_sim_options()).await.unwrap();
    corpus_connector(dir.path(), &sim, "");
    let raw_body = match (&case.body, &case.body_file, &case.body_gen) {
        (Some(b), None, None) => b.clone().into_bytes(),
        (None, Some(f), None) => std::fs::read(corpus().join("graph").join(f)).unwrap(),
        (None, None, Some(g)) => generate(g, &sim),
        _ => panic!("{name}: give exactly one of body, body_file, body_gen"),
    };
    let body = bytes::Bytes::from(fill(&raw_body, &sim));
    install(&case, &sim, body.clone());

    let mut text = format!("# {}\n", case.what.trim());
    let args = vec!["-q", "extract", "-c", "connector.toml"];
    let out = run_async(args.clone(), dir.path().to_path_buf()).await;
    assert_no_panic(&name, &out);
    text.push_str(&replace_tokens(
        &transcript(&args, &out),
        is_guid,
        36,
        "<GUID>",
    ));
    let (committed, partial) = raw_entries(&data);
    assert!(partial.is_empty(), "{name}: left {partial:?} behind");
    assert_earlier_run_intact(&name, &t, &data);
    let new_runs: Vec<&String> = committed.iter().filter(|r| **r != t.run_id).collect();
    match case.expect.as_str() {
        "fail" => {
            assert_eq!(out.status.code(), Some(1), "{name}: {text}");
            assert!(
                new_runs.is_empty(),
                "{name}: a failed extract committed {new_runs:?}"
            );
            // The failure is on record with the message the admin saw.
            let stderr = String::from_utf8_lossy(&out.stderr);
            let failed = query(
                &data,
                &format!(
                    "SELECT status, extract_status, error FROM runs WHERE run_id <> '{}'",
                    t.run_id
                ),
                SqlFormat::Json,
            )
            .unwrap();
            let row: serde_json::Value = serde_json::from_str(failed.trim()).unwrap();
            assert_eq!(row["status"], "failed", "{name}: {failed}");
            assert_eq!(row["extract_status"], "failed", "{name}: {failed}");
            assert_eq!(
                row["error"].as_str().map(str::trim),
                stderr.trim().strip_prefix("error: "),
                "{name}: the recorded error differs from the printed one"
            );
        }
        "ok" => {
            assert!(
                matches!(out.status.code(), Some(0) | Some(3)),
                "{name}: {text}"
            );
            assert_eq!(new_runs.len(), 1, "{name}: {committed:?}");
        }
        other => panic!("{name}: expect must be ok or fail, not {other:?}"),
    }
    let new_run = new_runs.first().map(|r| r.to_string()).unwrap_or_default();
    let raw = data.join("raw").join(&new_run);

    // Tolerated JSON collections land every record byte for byte.
    if case.expect == "ok"
        && let (Some(path), Some(records)) = (&case.path, sent_records(&body))
    {
        let stream = match path.as_str() {
            "/v1.0/users" => "users",
            "/v1.0/organization" => "organization",
            "/v1.0/subscribedSkus" => "subscribed_skus",
            _ => "",
        };
        if !stream.is_empty() {
            let landed = query(
                &data,
                &format!(
                    "SELECT sha256(record) AS h FROM read_parquet('{}/{stream}*.parquet') ORDER BY _page, _row",
                    raw.display()
                ),
                SqlFormat::Csv,
            )
            .unwrap();
            let landed: Vec<&str> = landed.lines().skip(1).collect();
            let sent: Vec<String> = records
                .iter()
                .map(|r| m365_connector::digest::hex(&Sha256::digest(r)))
                .collect();
            assert_eq!(
                landed, sent,
                "{name}: the {stream} records did not land byte for byte"
            );
            text.push_str(&format!(
                "{stream}: {} records landed byte for byte\n",
                sent.len()
            ));
        }
    }
    if case.transform {
        assert_eq!(case.expect, "ok", "{name}: transform needs a committed run");
        let args = vec!["-q", "transform", "-c", "connector.toml"];
        let out = run_async(args.clone(), dir.path().to_path_buf()).await;
        assert_no_panic(&name, &out);
        text.push_str(&replace_tokens(
            &transcript(&args, &out),
            is_guid,
            36,
            "<GUID>",
        ));
        assert_eq!(out.status.code(), Some(0), "{name}: {text}");
        assert_earlier_run_intact(&name, &t, &data);
    }
    for q in &case.queries {
        let sql = q
            .replace("{run}", &new_run)
            .replace("{raw}", &raw.display().to_string());
        let result = query(&data, &sql, SqlFormat::Json).unwrap_or_else(|e| {
            let e: String = e.to_string().chars().take(400).collect();
            panic!("{name}: query {sql}: {e}")
        });
        text.push_str(&format!("> {}\n{result}", q.trim()));
    }
    let reps = [
        (dir.path().display().to_string(), "<DIR>"),
        (sim.graph_url(), "<GRAPH>"),
        (sim.download_url(), "<DOWNLOAD>"),
        (t.run_id.clone(), "<EARLIER_RUN>"),
    ];
    sim.shutdown().await;
    // Request ids differ on every call (masked in the transcripts above); ids in query results
    // are the tenant's and stay.
    (name, normalise(&text, &reps))
}

/// Every row of `graph/cases.toml`, four at a time (each with its own simulator and data
/// directory; much of a failing case is backoff between retries).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corpus_graph() {
    let src = corpus().join("graph");
    let table: GraphCases =
        toml::from_str(&std::fs::read_to_string(src.join("cases.toml")).unwrap()).unwrap();
    assert!(
        table.case.len() >= 30,
        "only {} Graph cases",
        table.case.len()
    );
    let mut names: Vec<&str> = table.case.iter().map(|c| c.name.as_str()).collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), table.case.len(), "duplicate case names");

    let t = Arc::new(template("corpus-graph").await);
    let limit = Arc::new(tokio::sync::Semaphore::new(4));
    let mut tasks = tokio::task::JoinSet::new();
    for case in table.case.iter().cloned() {
        let (t, limit) = (t.clone(), limit.clone());
        tasks.spawn(async move {
            let _permit = limit.acquire_owned().await.unwrap();
            graph_case(case, t).await
        });
    }
    let mut results = BTreeMap::new();
    let mut broken = Vec::new();
    while let Some(r) = tasks.join_next().await {
        match r {
            Ok((name, text)) => {
                results.insert(name, text);
            }
            // A failed expectation: reported with the others at the end.
            Err(e) if e.is_panic() => {
                let msg = panic_message(e.into_panic().as_ref());
                broken.push(msg.chars().take(3000).collect::<String>());
            }
            Err(e) => panic!("{e}"),
        }
    }
    let mut snaps = Snapshots::new(&src);
    for (name, text) in &results {
        snaps.check(name, &src.join("cases.toml"), text);
    }
    // A case that broke has no text: its snapshot stays as it is.
    snaps.failures.extend(broken);
    snaps.finish();
}
