//! Incremental sync (`[pipeline] incremental = true`): after the simulator's tenant moves on
//! (users changed, removed with both reasons, joined), an incremental run exports exactly the
//! people a full run exports at the same tenant state; a delta link Graph refuses falls back
//! to a full sync with a warning; a delta run costs a few percent of a full run's requests.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use m365_connector::config::Config;
use m365_connector::failpoint;
use m365_connector::load::ExportFormat;
use m365_connector::manifest::{StreamManifest, SyncKind};
use m365_connector::output::Progress;
use m365_connector::pipeline::{self, RunOutcome};
use m365_connector::sim::{Faults, SimOptions, Simulator};

use crate::util::{TempDir, assert_same_people, connector_file, sim_options};

/// A connector for `sim` in its own data directory, incremental or not.
fn connector(dir: &TempDir, sim: &Simulator, opts: &SimOptions, incremental: bool) -> Config {
    let path = connector_file(dir.path(), sim, opts, &opts.client_secret);
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str(&format!("incremental = {incremental}\n"));
    std::fs::write(&path, text).unwrap();
    Config::load(&path).unwrap()
}

async fn run(cfg: &Config) -> RunOutcome {
    pipeline::run(cfg, &Progress::hidden(), &[ExportFormat::Jsonl])
        .await
        .unwrap_or_else(|e| panic!("run failed: {e}"))
}

fn people(o: &RunOutcome) -> String {
    std::fs::read_to_string(o.loaded.dir.join("people.jsonl")).unwrap()
}

fn users(o: &RunOutcome) -> &StreamManifest {
    &o.extracted.manifest.streams["users"]
}

fn warned(o: &RunOutcome, code: &str) -> bool {
    o.warnings().iter().any(|w| w.code == code)
}

/// The rows of a query on a connector's staging database, every value as text.
fn query(cfg: &Config, sql: &str) -> Vec<Vec<Option<String>>> {
    let conn = duckdb::Connection::open(cfg.pipeline.data_dir.join("staging.duckdb")).unwrap();
    let mut stmt = conn
        .prepare(&format!("SELECT COLUMNS(*)::VARCHAR FROM ({sql})"))
        .unwrap();
    let mut rows = stmt.query([]).unwrap();
    let mut out = Vec::new();
    while let Some(row) = rows.next().unwrap() {
        let n = row.as_ref().column_count();
        out.push(
            (0..n)
                .map(|i| row.get::<_, Option<String>>(i).unwrap())
                .collect(),
        );
    }
    out
}

/// Requests the simulator counted for one endpoint family.
fn requests(sim: &Simulator, family: &str) -> u64 {
    sim.stats().requests.get(family).copied().unwrap_or(0)
}

/// The simulator's tenant is pinned at epoch 0 until a test moves it.
fn pinned(users: u64, seed: u64) -> SimOptions {
    SimOptions {
        epoch: Some(0),
        ..sim_options(users, seed)
    }
}

/// A full (non-incremental) run against the tenant as it is now, in a fresh data directory.
async fn full_people(sim: &Simulator, opts: &SimOptions) -> String {
    let dir = TempDir::new("incremental-full");
    let cfg = connector(&dir, sim, opts, false);
    people(&run(&cfg).await)
}

fn assert_file_absent(dir: &Path, needle: &str) {
    for f in crate::util::files_under(dir) {
        let is_text = f
            .extension()
            .is_some_and(|e| e == "json" || e == "jsonl" || e == "html" || e == "csv");
        if is_text {
            let text = std::fs::read_to_string(&f).unwrap_or_default();
            if f.file_name().unwrap() != "manifest.json" || !f.starts_with(dir.join("raw")) {
                assert!(
                    !text.contains(needle),
                    "{} holds the delta link",
                    f.display()
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incremental_runs_export_what_full_runs_export_after_mutations() {
    let opts = pinned(3_000, 21);
    let sim = Simulator::start(opts.clone()).await.unwrap();
    let dir = TempDir::new("incremental");
    let cfg = connector(&dir, &sim, &opts, true);

    // First run: a delta link as of now ($deltatoken=latest), then every user through the
    // parallel /users walk; later runs continue from the link.
    let first = run(&cfg).await;
    assert_eq!(users(&first).delta.sync, Some(SyncKind::Full));
    assert!(users(&first).delta.delta_link.is_some());
    assert_eq!(
        requests(&sim, "users_delta"),
        1,
        "a full sync asks /users/delta for its latest link only"
    );
    assert!(requests(&sim, "users") > 1, "a full sync walks /users");
    let at0 = full_people(&sim, &opts).await;
    assert_same_people(&people(&first), &at0, "epoch 0");

    // One round of changes.
    sim.set_epoch(1);
    let second = run(&cfg).await;
    let s = users(&second);
    assert_eq!(s.delta.sync, Some(SyncKind::Delta));
    assert_eq!(
        s.delta.delta_from.as_deref(),
        Some(first.extracted.run_id.as_str())
    );
    assert!(s.rows > 0 && s.rows < 100, "{} changes", s.rows);
    let at1 = full_people(&sim, &opts).await;
    assert_ne!(at0, at1, "the tenant changed");
    assert_same_people(&people(&second), &at1, "epoch 1, one round");

    // Two rounds at once: entities changed in both come twice (replays).
    sim.set_epoch(3);
    let third = run(&cfg).await;
    assert_eq!(users(&third).delta.sync, Some(SyncKind::Delta));
    assert_same_people(
        &people(&third),
        &full_people(&sim, &opts).await,
        "epoch 3, two rounds",
    );

    // Nothing changed: an empty delta, the same people again.
    let fourth = run(&cfg).await;
    assert_eq!(users(&fourth).rows, 0);
    assert_same_people(&people(&fourth), &people(&third), "no change");
    assert!(!warned(&fourth, "delta_resync") && !warned(&fourth, "delta_link_missing"));

    // The link is stored per connector with the run whose users the snapshot holds.
    let stored = query(&cfg, "SELECT run_id, link IS NOT NULL FROM delta_links");
    assert_eq!(
        stored,
        vec![vec![
            Some(fourth.extracted.run_id.clone()),
            Some("true".into())
        ]]
    );
    let syncs = query(
        &cfg,
        "SELECT sync, count(*) FROM run_users_sync GROUP BY ALL ORDER BY ALL",
    );
    assert_eq!(
        syncs,
        vec![
            vec![Some("delta".into()), Some("3".into())],
            vec![Some("full".into()), Some("1".into())]
        ]
    );
    // Transforming an older run again rebuilds the snapshot from the raw runs it continues
    // (full sync, then changes), gives that run's people again, and takes the snapshot and
    // the link back with it: the next run fetches everything since, and converges.
    let again = m365_connector::transform::transform(&cfg, Some(&second.extracted.run_id)).unwrap();
    assert_eq!(again.people_sha256, second.transformed.people_sha256);
    let replayed = query(
        &cfg,
        &format!(
            "SELECT replayed_runs FROM run_users_sync WHERE run_id = '{}'",
            second.extracted.run_id
        ),
    );
    assert_eq!(
        replayed[0][0].as_deref(),
        Some(format!("[{}]", first.extracted.run_id).as_str())
    );
    let fifth = run(&cfg).await;
    assert_eq!(
        users(&fifth).delta.delta_from.as_deref(),
        Some(second.extracted.run_id.as_str())
    );
    assert_same_people(
        &people(&fifth),
        &people(&third),
        "after an older run was transformed again",
    );

    // The delta link is a credential of sorts: only the raw manifest and the database hold it.
    let link = users(&fifth).delta.delta_link.clone().unwrap();
    let token = link.split("$deltatoken=").nth(1).unwrap();
    assert_file_absent(&cfg.pipeline.data_dir, token);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_delta_link_falls_back_to_a_full_sync() {
    let opts = pinned(2_000, 22);
    let sim = Simulator::start(opts.clone()).await.unwrap();
    let dir = TempDir::new("incremental-resync");
    let cfg = connector(&dir, &sim, &opts, true);
    let first = run(&cfg).await;
    assert_eq!(users(&first).delta.sync, Some(SyncKind::Full));

    // The delta link expired (410 Gone, syncStateNotFound): a full sync in the same run.
    sim.set_epoch(1);
    sim.set_faults("delta-expired=1".parse::<Faults>().unwrap());
    let resynced = run(&cfg).await;
    sim.set_faults(Faults::default());
    assert!(sim.stats().delta_gone_410 >= 1);
    let s = users(&resynced);
    assert_eq!(s.delta.sync, Some(SyncKind::Full));
    let reason = s.delta.resync.clone().unwrap_or_default();
    assert!(
        reason.contains("410") && reason.contains("syncStateNotFound"),
        "{reason}"
    );
    assert!(
        !reason.contains("deltatoken"),
        "the link is not in the reason: {reason}"
    );
    assert!(warned(&resynced, "delta_resync"));
    assert!(
        s.partitions.is_some(),
        "the resync walked /users in parallel after a latest delta link"
    );
    assert_same_people(
        &people(&resynced),
        &full_people(&sim, &opts).await,
        "resync at epoch 1",
    );

    // The next run continues incrementally from the resync's link.
    sim.set_epoch(2);
    let next = run(&cfg).await;
    assert_eq!(users(&next).delta.sync, Some(SyncKind::Delta));
    assert_eq!(
        users(&next).delta.delta_from.as_deref(),
        Some(resynced.extracted.run_id.as_str())
    );
    assert!(!warned(&next, "delta_resync"));
    assert_same_people(
        &people(&next),
        &full_people(&sim, &opts).await,
        "delta after resync",
    );

    // A link Graph no longer knows (the tenant was restored to an earlier state) is refused too.
    sim.set_epoch(1);
    let restored = run(&cfg).await;
    assert!(warned(&restored, "delta_resync"));
    assert_eq!(users(&restored).delta.sync, Some(SyncKind::Full));
    assert_same_people(
        &people(&restored),
        &full_people(&sim, &opts).await,
        "restored tenant",
    );
    sim.shutdown().await;
}

/// 50,000 users: a full sync is 51 pages of 999; a round changes about 1% of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delta_run_makes_a_few_percent_of_a_full_runs_requests() {
    let opts = pinned(50_000, 23);
    let sim = Simulator::start(opts.clone()).await.unwrap();
    let dir = TempDir::new("incremental-requests");
    let cfg = connector(&dir, &sim, &opts, true);
    run(&cfg).await;

    sim.set_epoch(1);
    let before = requests(&sim, "users_delta");
    let delta_run = run(&cfg).await;
    let delta = requests(&sim, "users_delta") - before;
    let changed = users(&delta_run).rows;

    // A full run of the same tenant state, for its requests and its people.
    let full_dir = TempDir::new("incremental-requests-full");
    let full_cfg = connector(&full_dir, &sim, &opts, false);
    let before = requests(&sim, "users");
    let full_run = run(&full_cfg).await;
    let full = requests(&sim, "users") - before;
    eprintln!(
        "incremental: a full run made {full} users requests, a delta run ({changed} changes of 50,000 users) {delta}"
    );
    assert!(full >= 51, "{full}");
    assert!(
        delta * 100 <= full * 5,
        "a delta run made {delta} users requests, a full run {full}"
    );
    assert!((300..1_500).contains(&changed), "{changed}");

    // Removed users are tombstones, with both reasons.
    let run_id = delta_run.extracted.run_id.clone();
    let reasons = query(
        &cfg,
        &format!(
            "SELECT reason, count(*) FROM users_tombstones WHERE run_id = '{run_id}' GROUP BY ALL ORDER BY ALL"
        ),
    );
    let names: Vec<_> = reasons.iter().map(|r| r[0].clone().unwrap()).collect();
    assert_eq!(names, ["changed", "deleted"], "{reasons:?}");
    let snapshot = query(
        &cfg,
        "SELECT count(*) FROM users_current WHERE connector = 'Test tenant'",
    );
    assert_eq!(
        snapshot[0][0].as_deref().unwrap().parse::<u64>().unwrap(),
        delta_run.transformed.users
    );

    assert_same_people(
        &people(&delta_run),
        &people(&full_run),
        "50,000 users, epoch 1",
    );
    sim.shutdown().await;
}

const BIN: &str = env!("CARGO_BIN_EXE_m365-connector");

/// The real binary, stopped at a failpoint and SIGKILLed there.
fn kill_at(cfg: &Path, spec: &str) {
    let mut child = Command::new(BIN)
        .args(["-q", "run", "-c"])
        .arg(cfg)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .env(failpoint::ENV, spec)
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let reached = BufReader::new(stderr)
        .lines()
        .map_while(Result::ok)
        .any(|l| l.contains(failpoint::REACHED));
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(reached, "failpoint {spec} was never reached");
}

/// A delta walk killed after two checkpointed pages resumes after them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_delta_walk_resumes_from_its_checkpoint() {
    let opts = pinned(4_000, 24);
    let sim = Simulator::start(opts.clone()).await.unwrap();
    let dir = TempDir::new("incremental-crash");
    let cfg = connector(&dir, &sim, &opts, true);
    let mut text = std::fs::read_to_string(&cfg.path).unwrap();
    text = text.replace(
        "request_timeout_seconds = 5",
        "request_timeout_seconds = 120",
    );
    text.push_str("checkpoint_pages = 1\n");
    std::fs::write(&cfg.path, text).unwrap();
    let cfg = Config::load(&cfg.path).unwrap();
    let first = run(&cfg).await;

    // 100 rounds of changes: several thousand entries, six delta pages of 999.
    sim.set_epoch(100);
    let before = requests(&sim, "users_delta");
    kill_at(&cfg.path, "extract.checkpoint@2");
    let killed = requests(&sim, "users_delta") - before;
    assert!(killed >= 2, "{killed}");

    let before = requests(&sim, "users_delta");
    let resumed = run(&cfg).await;
    let fetched = requests(&sim, "users_delta") - before;
    let s = users(&resumed);
    assert_eq!(s.delta.sync, Some(SyncKind::Delta));
    assert_eq!(
        s.delta.delta_from.as_deref(),
        Some(first.extracted.run_id.as_str())
    );
    assert!(s.pages >= 5, "{} pages", s.pages);
    assert!(warned(&resumed, "resumed"));
    eprintln!(
        "incremental: a delta walk of {} pages killed after {killed} requests; the resumed run made {fetched}",
        s.pages
    );
    assert!(
        fetched <= s.pages - 2 + 1,
        "the two checkpointed pages were not fetched again: {fetched} requests for {} pages",
        s.pages
    );
    assert_same_people(
        &people(&resumed),
        &full_people(&sim, &opts).await,
        "resumed delta walk",
    );
    sim.shutdown().await;
}
