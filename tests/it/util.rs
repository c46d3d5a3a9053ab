//! Shared test scaffolding: temp dirs, simulator + connector file, the real binary, runs
//! and their people, Parquet reading.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use m365_connector::config::Config;
use m365_connector::error::Error;
use m365_connector::load::ExportFormat;
use m365_connector::output::Progress;
use m365_connector::pipeline::{self, RunOutcome};
use m365_connector::sim::{SimOptions, Simulator};

pub const BIN: &str = env!("CARGO_BIN_EXE_m365-connector");

/// A fresh temp directory, `m365-it-<tag>-<random suffix>` under the system's temp dir,
/// removed on drop.
pub struct TempDir(tempfile::TempDir);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        TempDir(
            tempfile::Builder::new()
                .prefix(&format!("m365-it-{tag}-"))
                .tempdir()
                .unwrap(),
        )
    }
    pub fn path(&self) -> &Path {
        self.0.path()
    }
}

/// Writes a connector file for `sim` into `dir` (secret in a 0600 file) and returns its path.
pub fn connector_file(dir: &Path, sim: &Simulator, opts: &SimOptions, secret: &str) -> PathBuf {
    let secret_path = dir.join("secret");
    std::fs::write(&secret_path, secret).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&secret_path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let text = format!(
        r#"[connector]
name = "Test tenant"
[tenant]
tenant_id = "{tenant}"
client_id = "{client}"
client_secret_file = "secret"
login_url = "{login}"
graph_url = "{graph}"
[pipeline]
data_dir = "data"
retry_base_ms = 20
max_wait_seconds = 120
request_timeout_seconds = 5
"#,
        tenant = opts.tenant_id,
        client = opts.client_id,
        login = sim.login_url(),
        graph = sim.graph_url(),
    );
    let path = dir.join("connector.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// [`connector_file`] with `[pipeline]` settings replaced (or added) by `tweaks`.
pub fn connector_file_with(
    dir: &Path,
    sim: &Simulator,
    opts: &SimOptions,
    tweaks: &[(&str, &str)],
) -> PathBuf {
    let path = connector_file(dir, sim, opts, &opts.client_secret);
    let mut text = std::fs::read_to_string(&path).unwrap();
    for (key, value) in tweaks {
        let line = text
            .lines()
            .find(|l| l.starts_with(&format!("{key} =")))
            .map(str::to_string);
        match line {
            Some(l) => text = text.replace(&l, &format!("{key} = {value}")),
            None => text.push_str(&format!("{key} = {value}\n")),
        }
    }
    std::fs::write(&path, text).unwrap();
    path
}

/// A whole run (extract, transform, load) exporting JSON Lines only.
pub async fn run_jsonl(cfg: &Config) -> Result<RunOutcome, Error> {
    pipeline::run(cfg, &Progress::hidden(), &[ExportFormat::Jsonl]).await
}

/// The exported people of a run, as JSON Lines text.
pub fn people(o: &RunOutcome) -> String {
    std::fs::read_to_string(o.loaded.dir.join("people.jsonl")).unwrap()
}

/// The people of a run without faults of the tenant (`users`, `seed`): what a faulted run
/// of the same tenant must export.
pub async fn clean_people(users: u64, seed: u64) -> String {
    let opts = sim_options(users, seed);
    let dir = TempDir::new("clean");
    let sim = Simulator::start(opts.clone()).await.unwrap();
    let cfg = Config::load(&connector_file_with(dir.path(), &sim, &opts, &[])).unwrap();
    let o = run_jsonl(&cfg).await.unwrap();
    sim.shutdown().await;
    people(&o)
}

/// A loopback port nothing listens on (now): bound, read and released.
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// The real binary, run off the async runtime (the simulator serves on it meanwhile), with
/// no proxy, log filter or colour variables but those in `env`; with how long it took.
pub async fn binary(args: &[&str], dir: &Path, env: &[(&str, &str)]) -> (Output, Duration) {
    let mut cmd = std::process::Command::new(BIN);
    cmd.args(args).current_dir(dir);
    for var in [
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "NO_PROXY",
        "http_proxy",
        "https_proxy",
        "all_proxy",
        "no_proxy",
        "RUST_LOG",
        "NO_COLOR",
    ] {
        cmd.env_remove(var);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let started = Instant::now();
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    (out, started.elapsed())
}

/// A temp dir, a running simulator and a loaded connector file pointing at it.
pub async fn sim_with_config(
    opts: &SimOptions,
    tag: &str,
) -> (TempDir, Simulator, m365_connector::config::Config) {
    let dir = TempDir::new(tag);
    let sim = Simulator::start(opts.clone()).await.unwrap();
    let path = connector_file(dir.path(), &sim, opts, &opts.client_secret);
    let cfg = m365_connector::config::Config::load(&path).unwrap();
    (dir, sim, cfg)
}

/// Simulator options for a small tenant.
pub fn sim_options(users: u64, seed: u64) -> SimOptions {
    SimOptions {
        users,
        seed,
        ..SimOptions::default()
    }
}

/// All files below `dir`, recursively.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// Runs a query on a fresh in-memory DuckDB and returns every row as strings (NULL → None).
pub fn duck(sql: &str) -> Vec<Vec<Option<String>>> {
    let conn = duckdb::Connection::open_in_memory().unwrap();
    let mut stmt = conn.prepare(sql).unwrap();
    let mut rows = stmt.query([]).unwrap();
    let mut out = Vec::new();
    while let Some(row) = rows.next().unwrap() {
        let n = row.as_ref().column_count();
        let mut r = Vec::with_capacity(n);
        for i in 0..n {
            let v: Option<String> = row.get(i).unwrap();
            r.push(v);
        }
        out.push(r);
    }
    out
}

/// SQL string literal.
pub fn lit(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// A person without `_source` (its run id and extraction time differ between any two runs).
fn without_source(line: &str) -> String {
    let mut v: serde_json::Value = serde_json::from_str(line).unwrap();
    v.as_object_mut().unwrap().remove("_source");
    v.to_string()
}

/// Fails with the first differing person, not two whole exports.
pub fn assert_same_people(got: &str, expected: &str, what: &str) {
    let g: Vec<String> = got.lines().map(without_source).collect();
    let e: Vec<String> = expected.lines().map(without_source).collect();
    if g == e {
        return;
    }
    let i = g
        .iter()
        .zip(&e)
        .position(|(a, b)| a != b)
        .unwrap_or(g.len().min(e.len()));
    panic!(
        "{what}: people differ from a clean run's ({} vs {} lines); first difference at line {}:\n got: {}\nwant: {}",
        g.len(),
        e.len(),
        i + 1,
        g.get(i).map_or("(none)", String::as_str),
        e.get(i).map_or("(none)", String::as_str)
    );
}

/// A finished process's stdout and stderr as one text, for messages and leak scans.
pub fn text(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Names of the hidden entries of `dir` (`.partial-*`, `.tmp-*`, `.old-*`): what an interrupted
/// or failed stage would leave behind. A missing directory has none.
pub fn leftovers(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect()
}
