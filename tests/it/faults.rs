//! The fault matrix: each fault Graph and the network produce, injected by the simulator over
//! loopback. Every run either exports exactly what a clean run exports, or fails clearly with
//! nothing committed; waiting is capped by `[pipeline] max_wait_seconds`.

use std::path::Path;
use std::time::Duration;

use m365_connector::config::Config;
use m365_connector::error::Error;
use m365_connector::manifest::committed_runs;
use m365_connector::pipeline::RunOutcome;
use m365_connector::sim::{Faults, SimOptions, Simulator};

use crate::util::{
    TempDir, assert_same_people, clean_people, connector_file_with, leftovers, people, run_jsonl,
    sim_options,
};

/// Three users pages: enough JSON responses for every fault to hit some.
const USERS: u64 = 2_500;

/// A connector for `sim`, with `[pipeline]` settings replaced by `tweaks`.
fn config(dir: &Path, sim: &Simulator, opts: &SimOptions, tweaks: &[(&str, &str)]) -> Config {
    Config::load(&connector_file_with(dir, sim, opts, tweaks)).unwrap()
}

async fn run(cfg: &Config) -> Result<RunOutcome, Error> {
    run_jsonl(cfg).await
}

/// People of a run without faults.
async fn clean(seed: u64) -> String {
    clean_people(USERS, seed).await
}

/// Nothing of a failed run is committed: no new raw run, no new export, and `runs` says failed.
fn assert_nothing_committed(data: &Path, runs_before: usize, case: &str) {
    let runs = committed_runs(&data.join("raw")).unwrap();
    assert_eq!(
        runs.len(),
        runs_before,
        "{case}: a failed run committed data"
    );
    let left = leftovers(&data.join("raw"));
    assert!(left.is_empty(), "{case}: {left:?}");
}

/// One fault spec, on several seeds: the same people as a clean run, every time.
async fn survives(case: &str, spec: &str, tweaks: &[(&str, &str)]) {
    let mut injected = 0;
    for seed in [3u64, 4] {
        let expected = clean(seed).await;
        let opts = SimOptions {
            faults: spec.parse::<Faults>().unwrap(),
            ..sim_options(USERS, seed)
        };
        let dir = TempDir::new("fault");
        let sim = Simulator::start(opts.clone()).await.unwrap();
        let cfg = config(dir.path(), &sim, &opts, tweaks);
        let outcome = run(&cfg).await;
        let stats = sim.stats();
        let o = outcome.unwrap_or_else(|e| panic!("{case} (seed {seed}) failed: {e}"));
        assert_same_people(&people(&o), &expected, &format!("{case} seed {seed}"));
        injected += stats.status_429
            + stats.status_503
            + stats.status_504
            + stats.resets
            + stats.truncated
            + stats.slow
            + stats.token_expired_401;
        sim.shutdown().await;
    }
    // For the record (`--nocapture`): how many faults this case survived.
    eprintln!("fault matrix: {case}: {injected} faults injected and survived");
    assert!(injected > 0, "{case}: no fault was injected");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_with_every_retry_after_form_gives_the_clean_output() {
    for mode in ["integer", "decimal", "http-date", "absent"] {
        let spec = format!("429=0.15,retry-after={mode},retry-after-secs=0.05");
        survives(&format!("429 retry-after={mode}"), &spec, &[]).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unavailable_gateway_timeout_and_resets_give_the_clean_output() {
    survives("503", "503=0.2,retry-after-secs=0.05", &[]).await;
    survives("504", "504=0.2,retry-after-secs=0.05", &[]).await;
    survives("reset mid-body", "reset=0.2", &[]).await;
    survives("truncated JSON", "truncate=0.3", &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_responses_and_token_expiry_give_the_clean_output() {
    survives(
        "slow beyond the request timeout",
        "slow=0.1,slow-ms=2500",
        &[("request_timeout_seconds", "1")],
    )
    .await;
    survives("token expiry mid-walk", "token-expiry=3", &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_download_url_is_requested_again_or_fails_cleanly() {
    let expected = clean(5).await;
    for (p, seed) in [(0.3, 5u64), (0.6, 5), (1.0, 5)] {
        let opts = SimOptions {
            faults: format!("download-expired={p}").parse().unwrap(),
            ..sim_options(USERS, seed)
        };
        let dir = TempDir::new("fault-download");
        let sim = Simulator::start(opts.clone()).await.unwrap();
        let cfg = config(dir.path(), &sim, &opts, &[]);
        match run(&cfg).await {
            Ok(o) => {
                assert!(p < 1.0, "every download expired, yet the run succeeded");
                assert!(sim.stats().download_expired > 0, "p={p}: no URL expired");
                assert_same_people(&people(&o), &expected, &format!("download-expired={p}"));
            }
            Err(e) => {
                let text = e.to_string();
                assert!(
                    text.contains("expired") && text.contains("fix:"),
                    "download-expired={p}: {text}"
                );
                assert_nothing_committed(&cfg.pipeline.data_dir, 0, "download-expired");
            }
        }
        sim.shutdown().await;
    }
}

/// A run right after another finds every report's budget used up (one call per report per
/// 20 s here; Microsoft's is 14 per 10 minutes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exhausted_report_budget_is_waited_for_or_the_run_stops_clearly() {
    let opts = SimOptions {
        report_budget: 1,
        report_window: Duration::from_secs(20),
        ..sim_options(USERS, 6)
    };
    let dir = TempDir::new("fault-budget");
    let sim = Simulator::start(opts.clone()).await.unwrap();
    let cfg = config(dir.path(), &sim, &opts, &[]);
    let first = run(&cfg).await.unwrap();

    // Beyond the wait cap: a clear failure, nothing committed, the earlier run intact.
    let capped = config(dir.path(), &sim, &opts, &[("max_wait_seconds", "1")]);
    let runs_before =
        committed_runs(&m365_connector::store::DataDir::new(&capped.pipeline.data_dir).raw())
            .unwrap()
            .len();
    let err = run(&capped).await.unwrap_err().to_string();
    assert!(
        err.contains("14 calls per report per 10 minutes") && err.contains("nothing was committed"),
        "{err}"
    );
    let refused = sim.stats().report_budget_429;
    assert!(
        (1..=8).contains(&refused),
        "the run stopped at the first refusal instead of calling again: {refused}"
    );
    assert_nothing_committed(&capped.pipeline.data_dir, runs_before, "budget exhausted");
    assert_eq!(
        std::fs::read_to_string(first.loaded.dir.join("people.jsonl")).unwrap(),
        people(&first),
        "the earlier export is intact"
    );

    // Within the cap: the run waits for the budget (never calling before Retry-After) and
    // exports what the first run did.
    let cfg = config(dir.path(), &sim, &opts, &[]);
    let second = run(&cfg).await.unwrap();
    assert_same_people(&people(&second), &people(&first), "budget waited for");
    let again = sim.stats().report_budget_429 - refused;
    assert!(again <= 8, "at most one refusal per report: {again}");
    if again > 0 {
        assert!(
            second.warnings().iter().any(|w| w.code == "throttled"),
            "the wait is reported"
        );
    }
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn total_waiting_is_capped_by_config() {
    let opts = SimOptions {
        faults: "503=1.0,retry-after=decimal,retry-after-secs=0.4"
            .parse()
            .unwrap(),
        ..sim_options(200, 7)
    };
    let dir = TempDir::new("fault-cap");
    let sim = Simulator::start(opts.clone()).await.unwrap();
    let cfg = config(dir.path(), &sim, &opts, &[("max_wait_seconds", "2")]);
    let err = run(&cfg).await.unwrap_err();
    let text = err.to_string();
    assert!(text.contains("would pass the cap of 2 s"), "{text}");
    assert!(text.contains("fix: run again later"), "{text}");
    // The run waited at most the cap: 0.4 s per retry, so at most 5 retries per request.
    let (requests, streams) = (sim.stats().total_requests, 12);
    assert!(requests <= 1 + streams * 6, "{requests} requests");
    assert_nothing_committed(&cfg.pipeline.data_dir, 0, "wait cap");
    sim.shutdown().await;
}
