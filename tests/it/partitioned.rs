//! The partitioned users walk (`[pipeline] users_concurrency`): skewed UPNs land exactly the
//! simulator's users, each once, also under 429s and resets; a killed walk resumes without
//! fetching a committed page again; Graph refusing the range filter falls back (startswith,
//! then serial) with a warning; an incremental first sync through `$deltatoken=latest` and a
//! parallel walk, with the tenant changing during the walk, then a delta run, exports what a
//! full run exports at that state.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use m365_connector::config::Config;
use m365_connector::failpoint;
use m365_connector::load::ExportFormat;
use m365_connector::manifest::{PartitionedWalk, RunManifest, Strategy, SyncKind};
use m365_connector::output::Progress;
use m365_connector::pipeline::{self, RunOutcome};
use m365_connector::sim::{Faults, SimOptions, Simulator};

use crate::util::{TempDir, assert_same_people, connector_file_with, duck};

fn skewed(users: u64, seed: u64) -> SimOptions {
    SimOptions {
        users,
        seed,
        skewed_upns: true,
        epoch: Some(0),
        ..SimOptions::default()
    }
}

fn config(dir: &TempDir, sim: &Simulator, opts: &SimOptions, tweaks: &[(&str, &str)]) -> Config {
    Config::load(&connector_file_with(dir.path(), sim, opts, tweaks)).unwrap()
}

async fn run(cfg: &Config) -> RunOutcome {
    pipeline::run(cfg, &Progress::hidden(), &[ExportFormat::Jsonl])
        .await
        .unwrap_or_else(|e| panic!("run failed: {e}"))
}

fn walk(m: &RunManifest) -> PartitionedWalk {
    m.streams["users"]
        .partitions
        .clone()
        .expect("a partitioned walk")
}

/// Every landed users record's id, with how many times it landed.
fn landed_ids(run_dir: &Path, m: &RunManifest) -> BTreeMap<String, u64> {
    let src = m.streams["users"].parquet_source(run_dir);
    duck(&format!(
        "SELECT json_extract_string(record, '$.id') AS id, count(*)::VARCHAR FROM {src} GROUP BY 1"
    ))
    .into_iter()
    .map(|r| {
        (
            r[0].clone().unwrap_or_default(),
            r[1].clone().unwrap().parse().unwrap(),
        )
    })
    .collect()
}

/// The ids a serial walk of the same simulator lands: the simulator's users.
async fn serial_ids(sim: &Simulator, opts: &SimOptions) -> BTreeMap<String, u64> {
    let dir = TempDir::new("partitioned-serial");
    let cfg = config(&dir, sim, opts, &[("users_concurrency", "1")]);
    let o = run(&cfg).await;
    assert!(o.extracted.manifest.streams["users"].partitions.is_none());
    landed_ids(&o.extracted.dir, &o.extracted.manifest)
}

async fn lands_every_user_once(users: u64, faults: Option<&str>) {
    let opts = skewed(users, 71);
    let sim = Simulator::start(opts.clone()).await.unwrap();
    let expected = serial_ids(&sim, &opts).await;
    assert_eq!(
        expected.len() as u64,
        users,
        "the serial walk lands every user"
    );
    if let Some(spec) = faults {
        sim.set_faults(spec.parse::<Faults>().unwrap());
    }
    let before = sim.stats();
    let dir = TempDir::new("partitioned");
    let cfg = config(&dir, &sim, &opts, &[("users_concurrency", "8")]);
    let o = run(&cfg).await;
    let m = &o.extracted.manifest;
    let got = landed_ids(&o.extracted.dir, m);
    let w = walk(m);
    assert_eq!(w.strategy, Strategy::Ranges, "{w:?}");
    assert!(w.ranges >= 3, "{w:?}");
    assert_eq!(w.distinct, users, "{w:?}");
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>(),
        "the partitioned walk lands exactly the simulator's users"
    );
    if faults.is_none() {
        // Without repeat faults every user lands once (Graph's own repeats would land as
        // sent, and are counted as duplicates).
        let twice: Vec<_> = got.iter().filter(|(_, n)| **n > 1).collect();
        assert!(twice.is_empty(), "landed more than once: {twice:?}");
    }
    let stats = sim.stats();
    assert!(stats.ranges - before.ranges >= w.ranges, "{stats:?}");
    if faults.is_some() {
        assert!(
            stats.status_429 > before.status_429 && stats.resets > before.resets,
            "the faults happened: {stats:?}"
        );
        // Graph repeating users inside a range: every copy lands (lossless) and is counted.
        let repeated = stats.repeat_users - before.repeat_users;
        assert!(repeated > 0, "{stats:?}");
        // (A page cut by a reset is fetched again, so fewer copies land than were served.)
        let copies = m.streams["users"].duplicates.copies;
        assert!(copies > 0 && copies <= repeated, "{copies} of {repeated}");
        assert_eq!(got.values().sum::<u64>(), users + copies);
    }
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_walk_of_skewed_upns_lands_every_user_once() {
    lands_every_user_once(2_500, None).await;
    lands_every_user_once(25_000, None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_walk_under_429s_and_resets_still_lands_every_user() {
    lands_every_user_once(
        25_000,
        Some("429=0.1,reset=0.1,retry-after-secs=0.05,repeat-users=0.2"),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_range_filter_falls_back_to_startswith_then_to_one_walk() {
    for (refuse_startswith, strategy) in [(false, Strategy::StartsWith), (true, Strategy::Serial)] {
        let opts = SimOptions {
            refuse_range_filter: true,
            refuse_startswith,
            ..skewed(3_000, 72)
        };
        let sim = Simulator::start(opts.clone()).await.unwrap();
        let expected = serial_ids(&sim, &opts).await;
        let dir = TempDir::new("partitioned-fallback");
        let cfg = config(&dir, &sim, &opts, &[]);
        let o = run(&cfg).await;
        let m = &o.extracted.manifest;
        let w = walk(m);
        assert_eq!(w.strategy, strategy, "{w:?}");
        assert_eq!(
            landed_ids(&o.extracted.dir, m).keys().collect::<Vec<_>>(),
            expected.keys().collect::<Vec<_>>()
        );
        let warning = o
            .warnings()
            .into_iter()
            .find(|w| w.code == "users_partition_fallback")
            .expect("a fallback warning");
        assert!(
            warning
                .message
                .contains("Unsupported or invalid query filter"),
            "{}",
            warning.message
        );
        assert!(
            warning.message.contains(strategy.words()),
            "{}",
            warning.message
        );
        sim.shutdown().await;
    }
}

/// Runs the real binary until the `nth` users checkpoint, then SIGKILLs it.
fn kill_at_checkpoint(cfg: &Path, nth: u32) {
    let mut child = Command::new(crate::util::BIN)
        .args(["-q", "run", "-c"])
        .arg(cfg)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .env(failpoint::ENV, format!("extract.checkpoint@{nth}"))
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let reached = BufReader::new(stderr)
        .lines()
        .map_while(|l| l.ok())
        .any(|l| l.contains(failpoint::REACHED));
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(reached, "the checkpoint failpoint was never reached");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_partitioned_walk_resumes_without_fetching_a_committed_page_again() {
    let opts = skewed(20_000, 73);
    let sim = Simulator::start(opts.clone()).await.unwrap();
    let expected = serial_ids(&sim, &opts).await;
    let dir = TempDir::new("partitioned-kill");
    let path = connector_file_with(
        dir.path(),
        &sim,
        &opts,
        &[
            ("checkpoint_pages", "1"),
            ("users_concurrency", "4"),
            ("request_timeout_seconds", "120"),
        ],
    );
    kill_at_checkpoint(&path, 6);
    // What the killed run committed: its checkpoint's pages.
    let partial = std::fs::read_dir(dir.path().join("data/raw"))
        .unwrap()
        .flatten()
        .find(|e| e.file_name().to_string_lossy().starts_with(".partial-"))
        .expect("the killed run left its partial directory")
        .path();
    let checkpoint: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(partial.join("users.checkpoint.json")).unwrap(),
    )
    .unwrap();
    let committed = checkpoint["pages"].as_u64().unwrap();
    assert!(committed >= 6, "{checkpoint}");
    assert!(
        checkpoint["walk"]["parts"].as_array().unwrap().len() >= 4,
        "{checkpoint}"
    );
    // A request the killed process sent just before it died may still be in the
    // simulator's socket: wait until its count settles, or that page would be charged to
    // the resumed run.
    let mut before = sim.stats().requests.get("users").copied().unwrap_or(0);
    loop {
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        let now = sim.stats().requests.get("users").copied().unwrap_or(0);
        if now == before {
            break;
        }
        before = now;
    }
    let o = run(&Config::load(&path).unwrap()).await;
    let after = sim.stats().requests.get("users").copied().unwrap_or(0);
    let m = &o.extracted.manifest;
    assert!(o.warnings().iter().any(|w| w.code == "resumed"));
    let users = &m.streams["users"];
    let pages = users.pages;
    // Besides the pages the checkpoint lacked, a range started only after the resume may
    // be split again (its first page then set aside), and a request may be retried.
    let slack = users.partitions.as_ref().map_or(0, |w| w.splits) + users.calls.retries;
    let fetched = after - before;
    assert!(
        fetched >= pages - committed && fetched <= pages - committed + slack,
        "the resumed run fetched {fetched} users pages: only those its checkpoint did not hold ({pages} in all, {committed} committed, {slack} splits and retries)"
    );
    assert_eq!(
        landed_ids(&o.extracted.dir, m).keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>()
    );
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_incremental_first_sync_through_latest_and_a_parallel_walk_equals_a_full_run() {
    // The tenant moves on by one epoch after the 6th users page: during the walk.
    let opts = SimOptions {
        advance_epoch_after_users_pages: Some(6),
        ..skewed(8_000, 74)
    };
    let sim = Simulator::start(opts.clone()).await.unwrap();
    let dir = TempDir::new("partitioned-incremental");
    let cfg = config(
        &dir,
        &sim,
        &opts,
        &[("incremental", "true"), ("users_concurrency", "4")],
    );
    let first = run(&cfg).await;
    let users = &first.extracted.manifest.streams["users"];
    assert_eq!(users.delta.sync, Some(SyncKind::Full));
    assert!(
        users
            .partitions
            .as_ref()
            .is_some_and(|w| w.strategy == Strategy::Ranges)
    );
    let link = users.delta.delta_link.clone().expect("a delta link");
    assert!(
        link.contains("deltatoken"),
        "a delta link taken before the walk"
    );
    let epoch_moved = sim
        .stats()
        .requests
        .get("users_delta")
        .copied()
        .unwrap_or(0);
    assert_eq!(
        epoch_moved, 1,
        "one request for the latest link, no 200-a-page walk"
    );

    let second = run(&cfg).await;
    assert_eq!(
        second.extracted.manifest.streams["users"].delta.sync,
        Some(SyncKind::Delta)
    );
    // A full run against the tenant as it is now.
    let full_dir = TempDir::new("partitioned-incremental-full");
    let full = run(&config(&full_dir, &sim, &opts, &[])).await;
    assert_same_people(
        &std::fs::read_to_string(second.loaded.dir.join("people.jsonl")).unwrap(),
        &std::fs::read_to_string(full.loaded.dir.join("people.jsonl")).unwrap(),
        "incremental after a walk the tenant changed under",
    );
    sim.shutdown().await;
}
