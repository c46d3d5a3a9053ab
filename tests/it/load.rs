//! Load stage and one-command runs: exports agree with each other and with `people`,
//! are byte-identical when repeated, and never half-written; `run` and `demo` end to end.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use m365_connector::cli::SqlFormat;
use m365_connector::commands::query::query;
use m365_connector::config::Config;
use m365_connector::load::{ExportFormat, ExportManifest, load};
use m365_connector::output::Progress;
use m365_connector::pipeline;
use m365_connector::sim::Simulator;
use serde_json::Value;

use crate::util::{TempDir, connector_file, duck, leftovers, lit, sim_options, sim_with_config};

const BIN: &str = env!("CARGO_BIN_EXE_m365-connector");

fn sha256_hex(path: &Path) -> String {
    m365_connector::load::hash_file(path).unwrap().1
}

/// The JSON value as the CSV export must show it.
fn csv_text(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::Array(a) => a.iter().map(csv_text).collect::<Vec<_>>().join(";"),
        Value::Object(_) => v.to_string(),
    }
}

fn check_export(dir: &Path, cfg: &Config, run_id: &str) -> ExportManifest {
    let manifest: ExportManifest =
        serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest.run_id, run_id);
    for f in &manifest.files {
        let path = dir.join(&f.file);
        assert_eq!(sha256_hex(&path), f.sha256, "{}", f.file);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), f.bytes);
        assert_eq!(f.rows, manifest.people);
    }
    // JSON Lines: one object per person, attribute keys in mapping order, then _source.
    let text = std::fs::read_to_string(dir.join("people.jsonl")).unwrap();
    let jsonl: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(jsonl.len() as u64, manifest.people);
    for (line, p) in text.lines().zip(&jsonl) {
        let mut keys: Vec<&str> = manifest.attributes.iter().map(String::as_str).collect();
        keys.push("_source");
        assert_eq!(
            p.as_object().unwrap().len(),
            keys.len(),
            "every attribute present, nulls included"
        );
        let positions: Vec<usize> = keys
            .iter()
            .map(|k| {
                line.find(&format!("\"{k}\":"))
                    .unwrap_or_else(|| panic!("{k} missing in {line}"))
            })
            .collect();
        assert!(
            positions.windows(2).all(|w| w[0] < w[1]),
            "keys out of order: {line}"
        );
        assert_eq!(p["_source"]["run_id"], run_id);
        assert_eq!(p["_source"]["tenant_id"].as_str().unwrap().len(), 36);
    }
    let ids: Vec<String> = jsonl
        .iter()
        .map(|p| p["User.ExternalId"].as_str().unwrap().to_string())
        .collect();
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(ids, sorted, "rows sorted by User.ExternalId");

    // CSV: RFC 4180 (CRLF), same rows and values as the JSON Lines.
    let bytes = std::fs::read(dir.join("people.csv")).unwrap();
    assert!(bytes.windows(2).any(|w| w == b"\r\n"));
    let mut reader = csv::Reader::from_reader(bytes.as_slice());
    let header: Vec<String> = reader
        .headers()
        .unwrap()
        .iter()
        .map(str::to_string)
        .collect();
    assert_eq!(header, manifest.attributes);
    let mut n = 0;
    for (rec, p) in reader.records().zip(&jsonl) {
        let rec = rec.unwrap();
        for (i, attr) in header.iter().enumerate() {
            assert_eq!(
                rec[i],
                csv_text(&p[attr]),
                "{} {attr}",
                p["User.ExternalId"]
            );
        }
        n += 1;
    }
    assert_eq!(n, jsonl.len());

    // Parquet: typed, same rows and values.
    let pq = duck(&format!(
        "SELECT to_json(p)::VARCHAR FROM read_parquet({}) p",
        lit(&dir.join("people.parquet").display().to_string())
    ));
    assert_eq!(pq.len(), jsonl.len());
    for (row, p) in pq.iter().zip(&jsonl) {
        let v: Value = serde_json::from_str(row[0].as_deref().unwrap()).unwrap();
        for attr in &manifest.attributes {
            // A `datetime` attribute is a typed TIMESTAMP in Parquet (DuckDB's JSON writes it
            // as "YYYY-MM-DD HH:MM:SS"); JSON Lines and CSV carry RFC 3339 text.
            let want = match p[attr].as_str() {
                Some(t) if t.len() == 20 && t.as_bytes()[10] == b'T' && t.ends_with('Z') => {
                    Value::String(t[..19].replace('T', " "))
                }
                _ => p[attr].clone(),
            };
            assert_eq!(v[attr], want, "parquet {attr}");
        }
    }
    // And the staging table holds the same people.
    let in_db = query(
        &cfg.pipeline.data_dir,
        &format!("SELECT \"User.ExternalId\" FROM people WHERE _run_id = '{run_id}' ORDER BY 1"),
        SqlFormat::Csv,
    )
    .unwrap();
    let db_ids: Vec<&str> = in_db.lines().skip(1).collect();
    assert_eq!(db_ids, ids.iter().map(String::as_str).collect::<Vec<_>>());
    manifest
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_exports_agree_and_load_is_repeatable() {
    let opts = sim_options(1_500, 44);
    let (_dir, _sim, cfg) = sim_with_config(&opts, "run").await;
    let outcome = pipeline::run(&cfg, &Progress::hidden(), &ExportFormat::ALL)
        .await
        .unwrap();
    let run_id = outcome.extracted.run_id.clone();
    assert!(outcome.transformed.kept > 0);
    let m = check_export(&outcome.loaded.dir, &cfg, &run_id);
    assert_eq!(m.people, outcome.transformed.kept);

    // Loading again gives identical bytes.
    let before: BTreeMap<String, Vec<u8>> = [
        "people.jsonl",
        "people.csv",
        "people.parquet",
        "manifest.json",
    ]
    .iter()
    .map(|f| {
        (
            f.to_string(),
            std::fs::read(outcome.loaded.dir.join(f)).unwrap(),
        )
    })
    .collect();
    let again = tokio::task::spawn_blocking({
        let cfg = cfg.clone();
        let id = run_id.clone();
        move || load(&cfg, Some(&id), &ExportFormat::ALL).unwrap()
    })
    .await
    .unwrap();
    for (f, bytes) in &before {
        assert_eq!(
            &std::fs::read(again.dir.join(f)).unwrap(),
            bytes,
            "{f} changed"
        );
    }
    let exports = query(
        &cfg.pipeline.data_dir,
        "SELECT count(*) FROM exports",
        SqlFormat::Csv,
    )
    .unwrap();
    assert_eq!(exports.lines().nth(1), Some("3"));
    let status = query(
        &cfg.pipeline.data_dir,
        &format!("SELECT status, load_status FROM runs WHERE run_id = '{run_id}'"),
        SqlFormat::Csv,
    )
    .unwrap();
    assert_eq!(status.lines().nth(1), Some("succeeded,succeeded"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_load_never_leaves_a_half_export() {
    let opts = sim_options(4_000, 45);
    let dir = TempDir::new("killload");
    let sim = Simulator::start(opts.clone()).await.unwrap();
    let cfg_path = connector_file(dir.path(), &sim, &opts, &opts.client_secret);
    let cfg = Config::load(&cfg_path).unwrap();
    let outcome = pipeline::run(&cfg, &Progress::hidden(), &ExportFormat::ALL)
        .await
        .unwrap();
    let run_id = outcome.extracted.run_id.clone();
    let out = outcome.loaded.dir.clone();
    std::fs::remove_dir_all(&out).unwrap();
    let cfg_arg = cfg_path.display().to_string();
    let mut completed_once = false;
    for delay_ms in [0u64, 5, 15, 30, 60, 100, 160, 250] {
        let mut child = Command::new(BIN)
            .args(["-q", "load", "-c", &cfg_arg, "--run", &run_id])
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        let _ = child.kill();
        let status = child.wait().unwrap();
        completed_once |= status.success();
        // Either no export directory, or a complete one.
        if out.exists() {
            check_export(&out, &cfg, &run_id);
        }
    }
    let _ = completed_once;
    // The next load succeeds and cleans up what killed loads left.
    let done = Command::new(BIN)
        .args(["-q", "load", "-c", &cfg_arg, "--run", &run_id])
        .output()
        .unwrap();
    assert!(
        done.status.success(),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
    check_export(&out, &cfg, &run_id);
    let left = leftovers(out.parent().unwrap());
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn demo_runs_offline_twice() {
    let dir = TempDir::new("demo");
    for round in 1..=2 {
        let out = Command::new(BIN)
            .args(["demo", "--users", "400"])
            .current_dir(dir.path())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let expected = if stdout.contains("warnings:") { 3 } else { 0 };
        assert_eq!(
            out.status.code(),
            Some(expected),
            "round {round}: {stdout}{stderr}"
        );
        assert!(stdout.contains("users fetched           400"), "{stdout}");
        assert!(stdout.contains("kept (exported)"));
        assert!(
            stdout.contains("m365-connector sql -c data/demo/connector.toml")
                || stdout.contains("-- sql -c data/demo/connector.toml"),
            "{stdout}"
        );
        assert!(
            stdout.contains("duckdb data/demo/staging.duckdb"),
            "{stdout}"
        );
    }
    let runs = Command::new(BIN)
        .args(["runs", "-c", "data/demo/connector.toml"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&runs.stdout);
    assert!(runs.status.success());
    assert_eq!(
        text.matches("succeeded").count(),
        2 * 3,
        "two runs, three stage columns each: {text}"
    );
}
