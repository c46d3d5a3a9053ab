//! Extract stage against the simulator: exact landing, lossless values, faults, secrets.

use std::collections::BTreeSet;
use std::path::Path;

use m365_connector::config::Config;
use m365_connector::extract::{Extracted, extract};
use m365_connector::output::Progress;
use m365_connector::sim::Tenant;
use m365_connector::sim::{Faults, SimOptions, Simulator};
use m365_connector::streams::{Report, USER_SELECT};

use crate::util::{TempDir, connector_file, duck, leftovers, lit, sim_options, sim_with_config};

async fn run_extract(opts: SimOptions, tag: &str) -> (TempDir, Simulator, Extracted) {
    let dir = TempDir::new(tag);
    let sim = Simulator::start(opts.clone()).await.unwrap();
    let cfg_path = connector_file(dir.path(), &sim, &opts, &opts.client_secret);
    let cfg = Config::load(&cfg_path).unwrap();
    let run = extract(&cfg, &Progress::hidden()).await.unwrap();
    (dir, sim, run)
}

/// The stream's files as the manifest lists them (a stream may land in several segments).
fn parquet(run: &Extracted, stream: &str) -> String {
    let files: Vec<String> = run.manifest.streams[stream]
        .files
        .iter()
        .map(|f| lit(&run.dir.join(&f.file).display().to_string()))
        .collect();
    format!("[{}]", files.join(", "))
}

/// Users as (id, raw record) sorted by id.
fn landed_users(run: &Extracted) -> Vec<(String, String)> {
    duck(&format!(
        "SELECT json_extract_string(record, '$.id'), record FROM read_parquet({}) ORDER BY 1",
        parquet(run, "users")
    ))
    .into_iter()
    .map(|r| (r[0].clone().unwrap(), r[1].clone().unwrap()))
    .collect()
}

/// A report's rows in landing order, cells by the served header.
fn landed_report(run: &Extracted, report: Report, header: &[String]) -> Vec<Vec<Option<String>>> {
    let cols: Vec<String> = header
        .iter()
        .map(|h| format!("\"{}\"", h.replace('"', "\"\"")))
        .collect();
    duck(&format!(
        "SELECT {} FROM read_parquet({}) ORDER BY _row",
        cols.join(", "),
        parquet(run, report.stream())
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lands_exactly_the_simulators_users_with_select_honoured() {
    let opts = sim_options(2_500, 7);
    let (_dir, sim, run) = run_extract(opts.clone(), "users").await;

    let tenant = Tenant {
        seed: opts.seed,
        users: opts.users,
        today: opts.today,
        concealed: false,
    };
    let expected: BTreeSet<String> = (0..opts.users)
        .map(|i| tenant.user(i)["id"].as_str().unwrap().to_string())
        .collect();
    let landed = landed_users(&run);
    assert_eq!(landed.len(), 2_500);
    let ids: BTreeSet<String> = landed.iter().map(|(id, _)| id.clone()).collect();
    assert_eq!(ids, expected, "landed ids differ from the simulator's");

    // $select honoured: exactly the selected properties, nothing else.
    let select: BTreeSet<&str> = USER_SELECT.iter().copied().collect();
    for (_, record) in landed.iter().take(200) {
        let v: serde_json::Value = serde_json::from_str(record).unwrap();
        let keys: BTreeSet<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys, select);
    }

    // The manifest lists what landed, and the run is committed.
    let m = &run.manifest;
    assert_eq!(m.users(), 2_500);
    assert_eq!(m.streams["users"].pages, 3);
    assert!(run.dir.join("manifest.json").is_file());
    assert_eq!(m.streams.len(), 3 + Report::ALL.len());
    for (name, s) in &m.streams {
        let f = &s.files[0];
        let bytes = std::fs::read(run.dir.join(&f.file)).unwrap();
        assert_eq!(f.bytes, bytes.len() as u64, "{name}");
        assert_eq!(f.sha256.len(), 64);
    }
    // Each report requested exactly once; the download host never saw a token.
    let stats = sim.stats();
    for r in Report::ALL {
        assert_eq!(stats.requests.get(r.stream()).copied(), Some(1), "{r}");
    }
    assert_eq!(stats.download_authorization_headers, 0);
    assert_eq!(
        stats.tokens_issued, 1,
        "the token is cached for the whole run"
    );
    // No partial directory is left behind.
    let raw = run.dir.parent().unwrap();
    let left = leftovers(raw);
    assert!(left.is_empty(), "{left:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_rows_round_trip_byte_exact() {
    let opts = sim_options(600, 11);
    let (_dir, _sim, run) = run_extract(opts.clone(), "nasty").await;
    let tenant = Tenant {
        seed: opts.seed,
        users: opts.users,
        today: opts.today,
        concealed: false,
    };
    for report in Report::ALL {
        let header = tenant.report_header(report);
        assert_eq!(
            run.manifest.streams[report.stream()].columns,
            header,
            "{report}"
        );
        let expected: Vec<Vec<Option<String>>> = tenant
            .report_rows(report)
            .map(|row| row.into_iter().map(Some).collect())
            .collect();
        let landed = landed_report(&run, report, &header);
        assert_eq!(landed.len(), expected.len(), "{report}: row count");
        for (i, (got, want)) in landed.iter().zip(&expected).enumerate() {
            assert_eq!(got, want, "{report}: row {i}");
        }
    }
    // The nasty values are really there (commas, quotes, newlines, emoji, RTL).
    let names: Vec<String> = tenant
        .report_rows(Report::Office365ActiveUserDetail)
        .map(|r| r[2].clone())
        .collect();
    for needle in [",", "\"", "\n"] {
        assert!(
            names.iter().any(|n| n.contains(needle)),
            "no display name with {needle:?}"
        );
    }
    assert!(
        names.iter().any(|n| n.chars().any(|c| c as u32 > 0x1F000)),
        "no emoji"
    );
    assert!(
        names
            .iter()
            .any(|n| n.chars().any(|c| ('\u{0590}'..='\u{06FF}').contains(&c))),
        "no RTL"
    );
    assert!(!run.manifest.concealment.concealed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_give_the_same_landed_rows_as_a_clean_run() {
    let clean = sim_options(2_500, 21);
    let (_d1, _s1, clean_run) = run_extract(clean.clone(), "clean").await;

    let mut faulty = clean.clone();
    faulty.faults =
        "429=0.1,503=0.05,reset=0.05,token-expiry=6,retry-after=mixed,retry-after-secs=0.05"
            .parse::<Faults>()
            .unwrap();
    let (_d2, sim, faulty_run) = run_extract(faulty, "faulty").await;

    assert_eq!(landed_users(&clean_run), landed_users(&faulty_run));
    let tenant = Tenant {
        seed: clean.seed,
        users: clean.users,
        today: clean.today,
        concealed: false,
    };
    for report in Report::ALL {
        let header = tenant.report_header(report);
        assert_eq!(
            landed_report(&clean_run, report, &header),
            landed_report(&faulty_run, report, &header),
            "{report}"
        );
    }
    let stats = sim.stats();
    let injected = stats.status_429 + stats.status_503 + stats.resets + stats.token_expired_401;
    assert!(injected > 0, "no fault was injected: {stats:?}");
    assert!(faulty_run.manifest.retries > 0);
    assert!(
        stats.tokens_issued > 1,
        "token expiry should force a fresh token"
    );
    assert_eq!(stats.download_authorization_headers, 0);
    assert!(
        faulty_run
            .manifest
            .warnings
            .iter()
            .any(|w| w.code == "throttled")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concealed_reports_are_detected_with_the_admin_fix() {
    let mut opts = sim_options(300, 5);
    opts.concealed = true;
    let (_dir, _sim, run) = run_extract(opts, "concealed").await;
    let c = &run.manifest.concealment;
    assert!(c.concealed());
    assert!(
        c.concealed_reports
            .contains(&"office365_active_user_detail".to_string())
    );
    let w = run
        .manifest
        .warnings
        .iter()
        .find(|w| w.code == "concealed_names")
        .unwrap();
    assert!(
        w.fix
            .contains("Settings > Org settings > Services > Reports")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_consent_fails_before_landing_anything() {
    let mut opts = sim_options(50, 3);
    opts.roles = vec!["Directory.Read.All".into()];
    let (dir, _sim, cfg) = sim_with_config(&opts, "roles").await;
    let err = extract(&cfg, &Progress::hidden())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("Reports.Read.All") && err.contains("Grant admin consent"),
        "{err}"
    );
    assert!(!dir.path().join("data/raw").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_stream_commits_nothing_and_keeps_earlier_runs() {
    let opts = sim_options(200, 9);
    let (dir, sim, cfg) = sim_with_config(&opts, "fail").await;
    let first = extract(&cfg, &Progress::hidden()).await.unwrap();
    // Every JSON page is now an HTML error page with status 200.
    sim.set_faults("html200=1.0".parse().unwrap());
    let err = extract(&cfg, &Progress::hidden())
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("HTML page"), "{err}");
    let raw = dir.path().join("data/raw");
    let entries: Vec<String> = std::fs::read_dir(&raw)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        entries,
        vec![first.run_id.clone()],
        "only the first run remains"
    );
    assert!(first.dir.join("manifest.json").is_file());
    assert_eq!(
        m365_connector::manifest::committed_runs(&raw).unwrap(),
        vec![first.run_id]
    );
}

/// Plain DuckDB reads every run with the documented layout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_duckdb_reads_the_raw_layout() {
    let opts = sim_options(1_200, 13);
    let (dir, _sim, _run) = run_extract(opts, "layout").await;
    let glob = dir.path().join("data/raw/*/users*.parquet");
    let rows = duck(&format!(
        "SELECT count(*)::VARCHAR FROM {}",
        lit(&glob.display().to_string())
    ));
    assert_eq!(rows[0][0].as_deref(), Some("1200"));
    assert!(Path::new(&dir.path().join("data/raw")).is_dir());
}
