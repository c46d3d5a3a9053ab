//! Crash safety: the real binary is SIGKILLed at named points of extract, transform and load
//! (failpoints, `src/failpoint.rs`) and at arbitrary moments; `run` afterwards must complete,
//! resume what was durable, and export exactly what a clean run exports.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use m365_connector::failpoint;
use m365_connector::sim::{SimOptions, Simulator};

use crate::util::{TempDir, assert_same_people, connector_file, leftovers, sim_options};

const BIN: &str = env!("CARGO_BIN_EXE_m365-connector");

/// 4,000 users: walked in parallel as 5 ranges of one page each (after one probe page),
/// each page its own checkpointed segment.
const USERS: u64 = 4_000;
const USERS_PAGES: u64 = 5;
/// Users requests of a whole walk: the probe and the pages.
const WALK: u64 = USERS_PAGES + 1;

fn options() -> SimOptions {
    sim_options(USERS, 61)
}

/// A connector file with one users page per checkpoint.
fn setup(dir: &Path, sim: &Simulator, opts: &SimOptions) -> PathBuf {
    let path = connector_file(dir, sim, opts, &opts.client_secret);
    // A generous timeout: a request retried after a timeout on a loaded machine would be
    // counted as a page fetched again.
    let mut text = std::fs::read_to_string(&path).unwrap().replace(
        "request_timeout_seconds = 5",
        "request_timeout_seconds = 120",
    );
    text.push_str("checkpoint_pages = 1\n");
    std::fs::write(&path, text).unwrap();
    path
}

fn spawn_run(cfg: &Path, failpoint_spec: Option<&str>) -> Child {
    let mut cmd = Command::new(BIN);
    cmd.args(["-q", "run", "-c"])
        .arg(cfg)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .env_remove(failpoint::ENV);
    if let Some(f) = failpoint_spec {
        cmd.env(failpoint::ENV, f);
    }
    cmd.spawn().unwrap()
}

/// Runs until the failpoint is reached, then SIGKILLs the process.
fn kill_at(cfg: &Path, spec: &str) {
    let mut child = spawn_run(cfg, Some(spec));
    let stderr = child.stderr.take().unwrap();
    let mut seen = String::new();
    let mut reached = false;
    for line in BufReader::new(stderr).lines() {
        let Ok(line) = line else { break };
        if line.contains(failpoint::REACHED) {
            reached = true;
            break;
        }
        seen.push_str(&line);
        seen.push('\n');
    }
    child.kill().unwrap(); // SIGKILL on Unix
    child.wait().unwrap();
    assert!(
        reached,
        "failpoint {spec} was never reached; stderr:\n{seen}"
    );
}

/// A run to its end; it must succeed (exit 0, or 3 with warnings).
fn run_to_end(cfg: &Path) -> String {
    let out = Command::new(BIN)
        .args(["-q", "run", "-c"])
        .arg(cfg)
        .env_remove(failpoint::ENV)
        .output()
        .unwrap();
    let code = out.status.code();
    assert!(
        matches!(code, Some(0) | Some(3)),
        "run after a kill exited {code:?}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The newest export's people.jsonl.
fn latest_people(data: &Path) -> (String, String) {
    let out = data.join("out");
    let mut runs: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.'))
        .collect();
    runs.sort();
    let run = runs.pop().expect("an export");
    let text = std::fs::read_to_string(out.join(&run).join("people.jsonl")).unwrap();
    (run, text)
}

fn staging(data: &Path) -> duckdb::Connection {
    let c = duckdb::Connection::open_in_memory().unwrap();
    c.execute_batch(&format!(
        "ATTACH '{}' AS s (READ_ONLY); USE s;",
        data.join("staging.duckdb").display()
    ))
    .unwrap();
    c
}

fn count(c: &duckdb::Connection, sql: &str) -> i64 {
    c.query_row(sql, [], |r| r.get(0)).unwrap()
}

/// What every state after a kill and a completed run must satisfy.
fn check_invariants(data: &Path) {
    let c = staging(data);
    // People of a run are only ever kept by a transform that committed.
    assert_eq!(
        count(
            &c,
            "SELECT count(*) FROM people p JOIN runs r ON p._run_id = r.run_id
              WHERE r.transform_status IS DISTINCT FROM 'succeeded'"
        ),
        0
    );
    // No extract is left `running` once a run has completed.
    assert_eq!(
        count(
            &c,
            "SELECT count(*) FROM runs WHERE extract_status = 'running'"
        ),
        0
    );
    // Nothing uncommitted is left behind.
    let left = leftovers(&data.join("raw"));
    assert!(left.is_empty(), "{left:?}");
}

/// People exported by a run that was never interrupted.
async fn clean_people() -> String {
    let opts = options();
    let dir = TempDir::new("crash-clean");
    let sim = Simulator::start(opts.clone()).await.unwrap();
    let cfg = setup(dir.path(), &sim, &opts);
    let people = tokio::task::spawn_blocking(move || {
        run_to_end(&cfg);
        latest_people(&dir.path().join("data")).1
    })
    .await
    .unwrap();
    assert_eq!(
        sim.stats().requests.get("users").copied(),
        Some(WALK),
        "a clean run's users walk: the probe and {USERS_PAGES} pages"
    );
    people
}

/// Kill points, and how many users pages the run after the kill may fetch at most.
const KILL_POINTS: &[(&str, u64)] = &[
    ("extract.signed_in", WALK),
    ("extract.page@1", WALK),
    ("extract.checkpoint@1", USERS_PAGES - 1),
    ("extract.checkpoint@3", USERS_PAGES - 3),
    ("extract.page@4", WALK),
    ("extract.stream_done@1", WALK),
    ("extract.stream_done@6", WALK),
    ("extract.stream_done@11", 0),
    ("extract.manifest_written", 0),
    // Committed but not yet recorded: the run is recorded, and the next run extracts anew.
    ("extract.committed", WALK),
    ("transform.model@1", WALK),
    // The last table model (staging and marts are views and run nothing).
    ("transform.model@10", WALK),
    ("transform.before_commit", WALK),
    ("load.before_rename", WALK),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_at_every_failpoint_a_rerun_resumes_and_exports_what_a_clean_run_does() {
    let expected = clean_people().await;
    assert!(expected.lines().count() > 100, "the clean run kept people");
    for &(spec, max_users_pages) in KILL_POINTS {
        let opts = options();
        let dir = TempDir::new("crash");
        let sim = Simulator::start(opts.clone()).await.unwrap();
        let cfg = setup(dir.path(), &sim, &opts);
        let data = dir.path().join("data");
        let before = {
            let (cfg, spec) = (cfg.clone(), spec.to_string());
            tokio::task::spawn_blocking(move || kill_at(&cfg, &spec))
                .await
                .unwrap();
            sim.stats()
        };
        let killed_run = std::fs::read_dir(data.join("raw"))
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .max();
        let cfg2 = cfg.clone();
        tokio::task::spawn_blocking(move || run_to_end(&cfg2))
            .await
            .unwrap();
        let after = sim.stats();
        let users_pages = after.requests.get("users").copied().unwrap_or(0)
            - before.requests.get("users").copied().unwrap_or(0);
        assert!(
            users_pages <= max_users_pages,
            "{spec}: the run after the kill fetched {users_pages} users pages, at most {max_users_pages} expected"
        );
        let (run, people) = latest_people(&data);
        assert_same_people(&people, &expected, spec);
        if spec.starts_with("extract.")
            && !matches!(spec, "extract.signed_in" | "extract.committed")
        {
            // The interrupted run was continued under its own id, not replaced.
            let killed = killed_run.clone().unwrap();
            assert_eq!(
                killed.trim_start_matches(".partial-"),
                run,
                "{spec}: the resumed run keeps its id"
            );
        }
        if spec == "extract.committed" {
            // The killed run was recorded from its manifest, not lost.
            let killed = killed_run.clone().unwrap();
            let c = staging(&data);
            assert_eq!(
                count(
                    &c,
                    &format!(
                        "SELECT count(*) FROM runs WHERE run_id = '{killed}' AND extract_status = 'succeeded'"
                    )
                ),
                1
            );
        }
        check_invariants(&data);
        sim.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_at_arbitrary_moments_again_and_again_the_next_run_completes() {
    let expected = clean_people().await;
    let opts = SimOptions {
        latency_ms: 20,
        ..options()
    };
    let dir = TempDir::new("crash-random");
    let sim = Simulator::start(opts.clone()).await.unwrap();
    let cfg = setup(dir.path(), &sim, &opts);
    let data = dir.path().join("data");
    let delays = [40u64, 90, 150, 220, 300, 380, 470, 600, 750, 900];
    let cfg2 = cfg.clone();
    tokio::task::spawn_blocking(move || {
        for ms in delays {
            let mut child = spawn_run(&cfg2, None);
            std::thread::sleep(Duration::from_millis(ms));
            child.kill().unwrap();
            child.wait().unwrap();
        }
        run_to_end(&cfg2);
    })
    .await
    .unwrap();
    let (_, people) = latest_people(&data);
    assert_same_people(&people, &expected, "after arbitrary kills");
    check_invariants(&data);
    let c = staging(&data);
    assert!(
        count(&c, "SELECT count(*) FROM runs WHERE status = 'succeeded'") >= 1,
        "the final run is recorded as succeeded"
    );
    sim.shutdown().await;
}
