//! The connector server with a virtual clock: schedules, inactive and foreign connectors,
//! failure isolation, bad files, and the per-connector lock.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use chrono::{DateTime, TimeZone, Utc};
use m365_connector::server::{ConnectorLock, ManualClock, Outcome, ServeOptions, Server};
use m365_connector::sim::{SimOptions, Simulator};

use m365_connector::manifest::committed_runs;

use crate::util::{TempDir, sim_options};

const BIN: &str = env!("CARGO_BIN_EXE_m365-connector");

pub(crate) fn write_connector(
    dir: &Path,
    file: &str,
    sim: &Simulator,
    opts: &SimOptions,
    extra: &str,
    schedule: &str,
    secret: &str,
) {
    let secret_file = format!("{file}.secret");
    std::fs::write(dir.join(&secret_file), secret).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            dir.join(&secret_file),
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();
    }
    let text = format!(
        "[connector]\nname = \"{file}\"\n{extra}\n[tenant]\ntenant_id = \"{}\"\nclient_id = \"{}\"\nclient_secret_file = \"{secret_file}\"\nlogin_url = \"{}\"\ngraph_url = \"{}\"\n[schedule]\n{schedule}\n[pipeline]\ndata_dir = \"{file}-data\"\nretry_base_ms = 10\n",
        opts.tenant_id,
        opts.client_id,
        sim.login_url(),
        sim.graph_url()
    );
    std::fs::write(dir.join(format!("{file}.toml")), text).unwrap();
}

fn at(d: u32, h: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2027, 1, d, h, 0, 0).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_runs_each_active_connector_at_its_instants() {
    let opts = sim_options(150, 12);
    let sim = Simulator::start(opts.clone()).await.unwrap();
    let dir = TempDir::new("serve");
    let d = dir.path();
    let secret = opts.client_secret.as_str();
    write_connector(
        d,
        "daily",
        &sim,
        &opts,
        "",
        "repeats = \"daily\"\nstart_time = \"02:00\"",
        secret,
    );
    write_connector(
        d,
        "sixhourly",
        &sim,
        &opts,
        "",
        "repeats = \"every 6 hours\"\nstart_time = \"01:00\"",
        secret,
    );
    write_connector(
        d,
        "inactive",
        &sim,
        &opts,
        "active = false",
        "repeats = \"hourly\"",
        secret,
    );
    write_connector(
        d,
        "onprem",
        &sim,
        &opts,
        "server = \"onprem-1\"",
        "repeats = \"hourly\"",
        secret,
    );
    write_connector(
        d,
        "failing",
        &sim,
        &opts,
        "",
        "repeats = \"daily\"\nstart_time = \"03:00\"",
        "not-the-secret",
    );
    std::fs::write(d.join("broken.toml"), "[connector\nname = ").unwrap();

    let clock = Arc::new(ManualClock::new(at(1, 0), at(2, 12)));
    let mut server = Server::new(
        ServeOptions {
            dir: d.to_path_buf(),
            server: "cloud".into(),
            once: false,
            rescan_seconds: 3600,
            grace_seconds: 30,
        },
        clock,
    );
    server.run(std::future::pending::<()>()).await.unwrap();
    let events = server.events.lock().unwrap().clone();
    let runs_of = |name: &str| -> Vec<DateTime<Utc>> {
        events
            .iter()
            .filter(|e| e.connector == name)
            .map(|e| e.at)
            .collect()
    };

    assert_eq!(runs_of("daily"), vec![at(1, 2), at(2, 2)]);
    assert_eq!(
        runs_of("sixhourly"),
        vec![at(1, 1), at(1, 7), at(1, 13), at(1, 19), at(2, 1), at(2, 7)]
    );
    assert!(runs_of("inactive").is_empty(), "an inactive connector ran");
    assert!(
        runs_of("onprem").is_empty(),
        "another server's connector ran"
    );
    assert_eq!(runs_of("failing"), vec![at(1, 3), at(2, 3)]);
    for e in &events {
        match (e.connector.as_str(), &e.outcome) {
            ("failing", Outcome::Failed(msg)) => assert!(msg.contains("AADSTS7000215"), "{msg}"),
            ("failing", o) => panic!("the failing connector did not fail: {o:?}"),
            (_, Outcome::Succeeded { kept, .. }) => assert!(*kept > 0),
            (name, o) => panic!("{name}: {o:?}"),
        }
    }
    // Each run is recorded in its own staging database.
    let runs = Command::new(BIN)
        .args([
            "sql",
            "-c",
            "sixhourly.toml",
            "--format",
            "csv",
            "SELECT count(*) AS n FROM runs WHERE status = 'succeeded'",
        ])
        .current_dir(d)
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&runs.stdout), "n\n6\n");
    let status = Command::new(BIN)
        .args(["status", "--connectors", "."])
        .current_dir(d)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(status.status.success());
    for needle in [
        "every 6 hours",
        "daily at 02:00 UTC",
        "(inactive)",
        "onprem-1",
        "(invalid file)",
        "failed",
    ] {
        assert!(text.contains(needle), "{needle:?} missing in\n{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_lock_stops_a_second_server() {
    let opts = sim_options(100, 13);
    let sim = Simulator::start(opts.clone()).await.unwrap();
    let dir = TempDir::new("serve-lock");
    let d = dir.path();
    write_connector(
        d,
        "locked",
        &sim,
        &opts,
        "",
        "repeats = \"hourly\"",
        &opts.client_secret,
    );
    write_connector(
        d,
        "free",
        &sim,
        &opts,
        "",
        "repeats = \"hourly\"",
        &opts.client_secret,
    );

    // Another server is running "locked" right now: it holds the lock in its data directory.
    let held = ConnectorLock::acquire(&d.join("locked-data"))
        .unwrap()
        .expect("lock is free");
    assert!(
        ConnectorLock::acquire(&d.join("locked-data"))
            .unwrap()
            .is_none()
    );

    // A second server process (cron style) runs what is due, but not the locked connector.
    let out = tokio::task::spawn_blocking({
        let d = d.to_path_buf();
        move || {
            Command::new(BIN)
                .args(["-v", "serve", "--once", "--connectors", "."])
                .current_dir(d)
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert!(
        log.contains("another run of this connector holds its lock"),
        "{log}"
    );
    assert!(
        d.join("free-data/staging.duckdb").is_file(),
        "the free connector did not run"
    );
    assert!(
        !d.join("locked-data/staging.duckdb").exists(),
        "the locked connector ran"
    );

    drop(held);
    let out = Command::new(BIN)
        .args(["serve", "--once", "--connectors", "."])
        .current_dir(d)
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(
        d.join("locked-data/staging.duckdb").is_file(),
        "released lock, yet no run"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_a_running_extract_without_committing_it() {
    let mut opts = sim_options(3_000, 14);
    // Slow pages, so the extract is still running when the signal comes.
    opts.latency_ms = 400;
    let sim = Simulator::start(opts.clone()).await.unwrap();
    let dir = TempDir::new("serve-term");
    let d = dir.path().to_path_buf();
    write_connector(
        &d,
        "slow",
        &sim,
        &opts,
        "",
        "repeats = \"hourly\"",
        &opts.client_secret,
    );
    // A connector that has never run is due at once under `--once`; here the long-running
    // server must see it as due, so give it a last run two hours ago.
    std::fs::create_dir_all(d.join("slow-data")).unwrap();
    {
        let staging = m365_connector::store::Staging::open(&d.join("slow-data")).unwrap();
        staging
            .conn
            .execute_batch(
                "INSERT INTO runs (run_id, connector, status, started_at) VALUES ('20000101T000000Z-0000', 'slow', 'succeeded', now()::TIMESTAMP - INTERVAL 2 HOUR)",
            )
            .unwrap();
    }
    let child = Command::new(BIN)
        .args([
            "-v",
            "serve",
            "--connectors",
            ".",
            "--listen",
            "none",
            "--grace-seconds",
            "0",
        ])
        .current_dir(&d)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the extract has begun landing.
    let raw = d.join("slow-data/raw");
    let mut started = false;
    for _ in 0..100 {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        let partial = std::fs::read_dir(&raw)
            .map(|e| {
                e.flatten().any(|e| {
                    e.file_name().to_string_lossy().starts_with(".partial-")
                        && e.path().join("resume.json").is_file()
                })
            })
            .unwrap_or(false);
        if partial {
            started = true;
            break;
        }
    }
    assert!(started, "the extract never started");
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert!(log.contains("shutting down"), "{log}");
    // Nothing committed; the partial extract is kept for the next run to resume, as after
    // a kill (its resume state is there); the run is marked as interrupted.
    let left: Vec<String> = std::fs::read_dir(&raw)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left.len(), 1, "{left:?}");
    assert!(left[0].starts_with(".partial-"), "{left:?}");
    assert!(raw.join(&left[0]).join("resume.json").is_file(), "{left:?}");
    assert!(committed_runs(&raw).unwrap().is_empty());
    let runs = Command::new(BIN)
        .args([
            "sql",
            "-c",
            "slow.toml",
            "--format",
            "csv",
            "SELECT status, error FROM runs WHERE run_id <> '20000101T000000Z-0000'",
        ])
        .current_dir(&d)
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&runs.stdout),
        "status,error\nfailed,interrupted: the server shut down; the next run resumes its partial extract\n"
    );
}
