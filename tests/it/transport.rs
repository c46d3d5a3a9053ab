//! Secrets and transport: the secret and tokens reach no file, table, export, log or error;
//! everything written is owner-only; the standard proxy variables and a custom CA bundle work.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use m365_connector::sim::{SimOptions, Simulator};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::util::{TempDir, binary, connector_file, files_under, sim_options, text};

/// Places a secret or a token could surface, and how often each did.
struct Scan<'a> {
    needles: Vec<&'a [u8]>,
    places: usize,
    found: Vec<String>,
}

impl<'a> Scan<'a> {
    fn new(secret: &'a str) -> Self {
        // `eyJ` opens every JWT (base64 of `{"`): any token, whole or cut, starts with it.
        Scan {
            needles: vec![secret.as_bytes(), b"eyJ"],
            places: 0,
            found: Vec::new(),
        }
    }
    fn bytes(&mut self, place: &str, b: &[u8]) {
        self.places += 1;
        for n in &self.needles {
            if b.windows(n.len()).any(|w| w == *n) {
                self.found
                    .push(format!("{} in {place}", String::from_utf8_lossy(n)));
            }
        }
    }
    /// A Parquet file's values and metadata, decoded: its compressed bytes hold `eyJ` by
    /// chance now and then (3 bytes), and say nothing about what is inside.
    fn parquet(&mut self, file: &Path) {
        let c = duckdb::Connection::open_in_memory().unwrap();
        let path = crate::util::lit(&file.display().to_string());
        for n in self.needles.clone() {
            self.places += 1;
            let needle = crate::util::lit(&String::from_utf8_lossy(n));
            let hits: i64 = c
                .query_row(
                    &format!(
                        "SELECT (SELECT count(*) FROM read_parquet({path}) t WHERE contains(t::VARCHAR, {needle}))
                              + (SELECT count(*) FROM parquet_kv_metadata({path}) WHERE contains(key::VARCHAR || value::VARCHAR, {needle}))"
                    ),
                    [],
                    |r| r.get(0),
                )
                .unwrap();
            if hits > 0 {
                self.found.push(format!(
                    "{} in {}",
                    String::from_utf8_lossy(n),
                    file.display()
                ));
            }
        }
    }
    /// Every text value of every table: DuckDB compresses strings on disk, so a byte scan
    /// of the database file alone proves nothing.
    fn database(&mut self, db: &Path) {
        let c = duckdb::Connection::open_in_memory().unwrap();
        c.execute_batch(&format!("ATTACH '{}' AS s (READ_ONLY)", db.display()))
            .unwrap();
        let mut stmt = c
            .prepare(
                "SELECT table_name, column_name FROM duckdb_columns()
                  WHERE database_name = 's' AND data_type = 'VARCHAR'",
            )
            .unwrap();
        let cols: Vec<(String, String)> = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert!(cols.len() > 20, "{cols:?}");
        for (table, col) in cols {
            for n in self.needles.clone() {
                let needle = String::from_utf8_lossy(n).replace('\'', "''");
                let hits: i64 = c
                    .query_row(
                        &format!(
                            "SELECT count(*) FROM s.\"{table}\" WHERE contains(\"{}\", '{needle}')",
                            col.replace('"', "\"\"")
                        ),
                        [],
                        |r| r.get(0),
                    )
                    .unwrap();
                self.places += 1;
                if hits > 0 {
                    self.found.push(format!("{needle} in {table}.{col}"));
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_secret_and_tokens_reach_no_file_table_export_log_or_error() {
    let mut opts = sim_options(1_200, 8);
    opts.client_secret = "Zq8~s3cr3t.VALUE-that_must-not.leak".into();
    opts.faults = "429=0.1,token-expiry=4,retry-after-secs=0.05"
        .parse()
        .unwrap();
    let sim = Simulator::start(opts.clone()).await.unwrap();
    let dir = TempDir::new("secrets");
    connector_file(dir.path(), &sim, &opts, &opts.client_secret);
    let mut scan = Scan::new(&opts.client_secret);

    // A whole run at the most verbose level, tokens expiring under it.
    let (out, _) = binary(
        &["-vv", "run", "-c", "connector.toml"],
        dir.path(),
        &[("RUST_LOG", "trace")],
    )
    .await;
    let log = text(&out);
    assert_eq!(out.status.code(), Some(3), "{log}");
    assert!(log.lines().count() > 20, "verbose logs expected: {log}");
    assert!(
        sim.stats().tokens_issued >= 2,
        "tokens expired and were renewed"
    );
    scan.bytes("the run's output and logs", log.as_bytes());

    // Failures: a token Graph refuses (no consent) and a wrong secret.
    let no_roles = SimOptions {
        roles: Vec::new(),
        ..opts.clone()
    };
    let sim2 = Simulator::start(no_roles.clone()).await.unwrap();
    let dir2 = TempDir::new("secrets-fail");
    connector_file(dir2.path(), &sim2, &no_roles, &no_roles.client_secret);
    let (out, _) = binary(&["-vv", "run", "-c", "connector.toml"], dir2.path(), &[]).await;
    assert_eq!(out.status.code(), Some(1));
    scan.bytes("the error of a run without consent", text(&out).as_bytes());
    let wrong = "Wr0ng~secret.VALUE-also-never-echoed";
    connector_file(dir2.path(), &sim2, &no_roles, wrong);
    let (out, _) = binary(&["run", "-c", "connector.toml"], dir2.path(), &[]).await;
    assert_eq!(out.status.code(), Some(1));
    let t = text(&out);
    assert!(t.contains("AADSTS7000215"), "{t}");
    assert!(!t.contains(wrong), "the wrong secret was echoed: {t}");
    scan.bytes("the error of a wrong secret", t.as_bytes());

    // Every file written: raw Parquet, manifests, the database, exports, reports.
    let data = dir.path().join("data");
    let files = files_under(&data);
    assert!(
        files.iter().any(|f| f.ends_with("people.jsonl")),
        "{files:?}"
    );
    for f in &files {
        if f.extension().is_some_and(|e| e == "parquet") {
            scan.parquet(f);
        } else {
            scan.bytes(&f.display().to_string(), &std::fs::read(f).unwrap());
        }
    }
    scan.database(&data.join("staging.duckdb"));
    assert!(scan.places > 100, "only {} places scanned", scan.places);
    // For the record (`--nocapture`).
    eprintln!(
        "secret scan: {} places (logs, errors, {} files, every text column), {} occurrences",
        scan.places,
        files.len(),
        scan.found.len()
    );
    assert!(
        scan.found.is_empty(),
        "secret or token found: {:?}",
        scan.found
    );
    // The bearer token never went to the download host.
    assert_eq!(sim.stats().download_authorization_headers, 0);
    sim.shutdown().await;
    sim2.shutdown().await;
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn everything_written_is_readable_by_its_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let opts = sim_options(300, 9);
    let sim = Simulator::start(opts.clone()).await.unwrap();
    let dir = TempDir::new("modes");
    connector_file(dir.path(), &sim, &opts, &opts.client_secret);
    let (out, _) = binary(&["-q", "run", "-c", "connector.toml"], dir.path(), &[]).await;
    assert!(out.status.success(), "{}", text(&out));
    let data = dir.path().join("data");
    let mut dirs = vec![data.clone()];
    let mut seen = 0;
    while let Some(d) = dirs.pop() {
        let mode = std::fs::metadata(&d).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "{} is {mode:o}", d.display());
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                dirs.push(p);
            } else {
                let mode = e.metadata().unwrap().permissions().mode() & 0o777;
                assert_eq!(mode & 0o077, 0, "{} is {mode:o}", p.display());
                seen += 1;
            }
        }
    }
    assert!(seen >= 15, "only {seen} files");
    sim.shutdown().await;
}

/// A plain-HTTP forward proxy on loopback that counts the requests it forwards. Each
/// connection carries one request (`Connection: close` is forced), so counting is exact.
async fn forward_proxy() -> (u16, Arc<AtomicU64>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(AtomicU64::new(0));
    let counter = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            let counter = counter.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if client.read(&mut byte).await.unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(byte[0]);
                }
                let head = String::from_utf8_lossy(&head).into_owned();
                let mut lines = head.split("\r\n");
                let request_line = lines.next().unwrap_or_default().to_string();
                // `GET http://127.0.0.1:1234/path HTTP/1.1`: absolute form, as proxies get.
                let target = request_line.split(' ').nth(1).unwrap_or_default();
                let Some(rest) = target.strip_prefix("http://") else {
                    return;
                };
                let authority = rest.split('/').next().unwrap_or_default().to_string();
                let Ok(mut upstream) = tokio::net::TcpStream::connect(&authority).await else {
                    return;
                };
                counter.fetch_add(1, Ordering::SeqCst);
                let mut out = format!("{request_line}\r\n");
                for l in lines.filter(|l| !l.is_empty()) {
                    if !l.to_ascii_lowercase().starts_with("connection:") {
                        out.push_str(l);
                        out.push_str("\r\n");
                    }
                }
                out.push_str("Connection: close\r\n\r\n");
                if upstream.write_all(out.as_bytes()).await.is_err() {
                    return;
                }
                let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
            });
        }
    });
    (port, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_standard_proxy_variables_route_requests_through_the_proxy() {
    let opts = sim_options(300, 10);
    let sim = Simulator::start(opts.clone()).await.unwrap();
    let dir = TempDir::new("proxy");
    connector_file(dir.path(), &sim, &opts, &opts.client_secret);
    let (port, seen) = forward_proxy().await;
    let proxy = format!("http://127.0.0.1:{port}");

    let (out, _) = binary(
        &["-q", "extract", "-c", "connector.toml"],
        dir.path(),
        &[("HTTP_PROXY", &proxy)],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out));
    let through_proxy = seen.load(Ordering::SeqCst);
    let served = sim.stats().total_requests;
    // A request the client had queued on a connection the proxy closed is sent again, so
    // the proxy may count more than were served, never fewer.
    assert!(
        served > 10 && through_proxy >= served,
        "every request the simulator served came through the proxy: {through_proxy} < {served}"
    );

    // NO_PROXY exempts a host: nothing more goes through the proxy.
    let (out, _) = binary(
        &["-q", "extract", "-c", "connector.toml"],
        dir.path(),
        &[("HTTP_PROXY", &proxy), ("NO_PROXY", "127.0.0.1,localhost")],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(seen.load(Ordering::SeqCst), through_proxy);
    assert!(sim.stats().total_requests > served);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_custom_ca_bundle_is_loaded_or_refused_with_the_line_and_the_fix() {
    let opts = sim_options(100, 11);
    let sim = Simulator::start(opts.clone()).await.unwrap();
    let dir = TempDir::new("ca");
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let path = connector_file(dir.path(), &sim, &opts, &opts.client_secret);
    let base = std::fs::read_to_string(&path).unwrap();
    let with_bundle = |file: &str| {
        base.replace(
            "[pipeline]",
            &format!(
                "ca_bundle = \"{}\"\n[pipeline]",
                fixtures.join(file).display()
            ),
        )
    };

    std::fs::write(&path, with_bundle("proxy-root.pem")).unwrap();
    let (out, _) = binary(&["-q", "extract", "-c", "connector.toml"], dir.path(), &[]).await;
    assert!(out.status.success(), "{}", text(&out));

    std::fs::write(&path, with_bundle("not-a-cert.pem")).unwrap();
    let (out, _) = binary(&["validate", "-c", "connector.toml"], dir.path(), &[]).await;
    assert_eq!(out.status.code(), Some(2));
    let t = text(&out);
    assert!(
        t.contains("connector.toml:9: tenant.ca_bundle:")
            && t.contains("not-a-cert.pem holds no certificate")
            && t.contains("Base-64 (PEM)"),
        "{t}"
    );
    std::fs::write(&path, with_bundle("missing.pem")).unwrap();
    let (out, _) = binary(&["validate", "-c", "connector.toml"], dir.path(), &[]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out).contains("cannot read the CA bundle"),
        "{}",
        text(&out)
    );
    sim.shutdown().await;
}
