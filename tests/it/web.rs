//! The status page as an admin uses it: the real `serve` binary hosting three connectors
//! against the simulator (one succeeding, one with a wrong secret, one inactive), read by a
//! real browser and by plain HTTP: states and fixes, Run now, reports, `/metrics` against
//! the `runs` tables, CSRF and origin checks, the access token, no secret anywhere, and page
//! loads during a run that change nothing.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use m365_connector::sim::{SimOptions, Simulator};
use m365_connector::store::Staging;

use crate::serve::write_connector;
use crate::util::{BIN, TempDir, binary, free_port, sim_options};

/// The wrong secret of the failing connector: never to be shown either.
const WRONG_SECRET: &str = "wrong-secret-value-0000000000";

/// Three connectors in `d`, run once by `serve --once` so two have a run to show.
async fn three_connectors(d: &Path, sim: &Simulator, opts: &SimOptions) {
    let daily = "repeats = \"daily\"\nstart_time = \"03:00\"\ntimezone = \"Europe/Amsterdam\"";
    write_connector(d, "good", sim, opts, "", daily, &opts.client_secret);
    write_connector(d, "badsecret", sim, opts, "", daily, WRONG_SECRET);
    write_connector(
        d,
        "off",
        sim,
        opts,
        "active = false",
        daily,
        &opts.client_secret,
    );
    std::fs::write(d.join("broken.toml"), "[connector]\nname = \n").unwrap();
    let (out, _) = binary(&["-v", "serve", "--once", "--connectors", "."], d, &[]).await;
    let log = crate::util::text(&out);
    assert!(log.contains("AADSTS7000215"), "{log}");
    assert!(d.join("good-data/out").is_dir(), "{log}");
}

/// A `serve` process with its status page on a loopback port, its log collected.
struct Served {
    child: Child,
    url: String,
    log: Arc<Mutex<String>>,
}

impl Served {
    fn start(d: &Path, args: &[&str], env: &[(&str, &str)]) -> Served {
        let mut cmd = Command::new(BIN);
        cmd.args(["-v", "serve", "--connectors", "."])
            .args(args)
            .current_dir(d)
            .env_remove("RUST_LOG")
            .env_remove("HTTP_PROXY")
            .env_remove("HTTPS_PROXY")
            .stderr(Stdio::piped());
        if !args.contains(&"--listen") {
            cmd.args(["--listen", "127.0.0.1:0"]);
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        let sink = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(at) = line.find("url=http://") {
                    let url = line[at + 4..].split_whitespace().next().unwrap_or("");
                    let _ = tx.send(url.trim_end_matches('/').to_string());
                }
                let mut l = sink.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
        });
        let url = rx
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| {
                panic!(
                    "serve never said where it listens:\n{}",
                    log.lock().unwrap()
                )
            });
        // Ready once the folder is read: before that the page lists nothing yet.
        let started = Instant::now();
        loop {
            let ready = status_of(&url, "/readyz") == Some(200);
            if ready {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "never ready:\n{}",
                log.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Served { child, url, log }
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// SIGTERM, and the exit status.
    fn stop(mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let status = self.child.wait().unwrap();
        std::thread::sleep(Duration::from_millis(100));
        status
    }
}

/// The status code of a plain GET, over std's TCP (no runtime needed while the server starts).
fn status_of(url: &str, path: &str) -> Option<u16> {
    use std::io::{Read, Write};
    let host = url.strip_prefix("http://")?;
    let mut tcp = std::net::TcpStream::connect(host).ok()?;
    write!(
        tcp,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut head = [0u8; 12];
    tcp.read_exact(&mut head).ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
        .unwrap()
}

/// The CSRF token of a page's forms.
fn csrf_of(html: &str) -> String {
    let at = html
        .find("name=\"csrf\" value=\"")
        .expect("a form with a csrf token")
        + 19;
    html[at..].split('"').next().unwrap().to_string()
}

/// Waits until the connector's page lists `runs` finished runs; returns that page.
async fn wait_for_runs(http: &reqwest::Client, url: &str, name: &str, runs: usize) -> String {
    let started = Instant::now();
    loop {
        let page = http
            .get(format!("{url}/connectors/{name}"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let finished = page.matches("data-status=\"succeeded\"").count()
            + page.matches("data-status=\"failed\"").count();
        if finished >= runs && !page.contains("data-state=\"running\"") {
            return page;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "{name} never showed {runs} finished runs:\n{page}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Runs by status and the sum of requests, as the connector's `runs` table has them.
fn runs_table(data_dir: &Path) -> (Vec<(String, u64)>, u64) {
    let s = Staging::open_read_only(data_dir).unwrap();
    let mut stmt = s
        .conn
        .prepare("SELECT status, count(*) FROM runs GROUP BY status ORDER BY status")
        .unwrap();
    let by = stmt
        .query_map([], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64))
        })
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let requests: i64 = s
        .conn
        .query_row(
            "SELECT coalesce(sum(requests), 0)::BIGINT FROM runs",
            [],
            |r| r.get(0),
        )
        .unwrap();
    (by, requests as u64)
}

fn assert_no_secret(what: &str, text: &str, secrets: &[&str]) {
    for s in secrets {
        assert!(
            !text.contains(s),
            "{what} contains a secret or token ({s:?})"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_metrics_and_run_now_over_http() {
    let opts = sim_options(120, 41);
    let sim = Simulator::start(opts.clone()).await.unwrap();
    let dir = TempDir::new("web");
    let d = dir.path();
    three_connectors(d, &sim, &opts).await;
    let served = Served::start(d, &[], &[]);
    let http = client();
    let url = served.url.clone();
    let mut bodies = Vec::new();

    let page = http.get(format!("{url}/")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let page = page.text().await.unwrap();
    for (name, state) in [("good", "ok"), ("badsecret", "failed"), ("off", "inactive")] {
        assert!(
            page.contains(&format!("data-connector=\"{name}\" data-state=\"{state}\"")),
            "{name} is not shown as {state}:\n{page}"
        );
    }
    assert!(page.contains("AADSTS7000215"), "{page}");
    assert!(
        page.contains("the client secret is wrong"),
        "the fix is not shown:\n{page}"
    );
    assert!(page.contains("data-bad-file=\"broken.toml\""), "{page}");
    assert!(
        page.contains("broken.toml:2"),
        "the bad file's line is not named:\n{page}"
    );
    assert!(
        page.contains("Europe/Amsterdam") || page.contains("CET") || page.contains("CEST"),
        "{page}"
    );
    bodies.push(page.clone());

    // Run now refuses a POST without the page's token, or from another origin.
    let csrf = csrf_of(&page);
    let run = format!("{url}/connectors/good/run");
    let r = http.post(&run).send().await.unwrap();
    assert_eq!(r.status(), 403);
    bodies.push(r.text().await.unwrap());
    let r = http
        .post(&run)
        .form(&[("csrf", "0000")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = http
        .post(&run)
        .header("origin", "http://evil.example")
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = http
        .post(format!("{url}/connectors/off/run"))
        .header("origin", &url)
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert!(
        r.headers()["location"]
            .to_str()
            .unwrap()
            .ends_with("asked=inactive")
    );
    // Only the refused POSTs so far: still one run of good.
    assert_eq!(
        runs_table(&d.join("good-data")).0,
        vec![("succeeded".to_string(), 1)]
    );
    let r = http
        .post(&run)
        .header("origin", &url)
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/connectors/good?asked=started");
    let page = wait_for_runs(&http, &url, "good", 2).await;
    bodies.push(page.clone());
    let newest = page
        .split("data-run=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_string();
    let report = http
        .get(format!("{url}/connectors/good/runs/{newest}/report"))
        .send()
        .await
        .unwrap();
    assert_eq!(report.status(), 200);
    let report = report.text().await.unwrap();
    assert!(
        report.contains(&newest) && report.contains("data-metric"),
        "{report}"
    );
    bodies.push(report);
    let r = http
        .get(format!("{url}/connectors/good/runs/..%2F..%2Fetc/report"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);

    // /metrics parses as Prometheus text, and its counts are the runs tables'.
    let r = http.get(format!("{url}/metrics")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    let text = r.text().await.unwrap();
    bodies.push(text.clone());
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap();
    let sample = |metric: &str, labels: &[(&str, &str)]| -> Option<f64> {
        scrape
            .samples
            .iter()
            .find(|s| s.metric == metric && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .map(|s| match s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => v,
                _ => f64::NAN,
            })
    };
    for name in ["good", "badsecret"] {
        let (by_status, requests) = runs_table(&d.join(format!("{name}-data")));
        assert!(!by_status.is_empty());
        for (status, n) in by_status {
            assert_eq!(
                sample(
                    "m365_connector_runs_total",
                    &[("connector", name), ("status", &status)]
                ),
                Some(n as f64),
                "{name} {status}:\n{text}"
            );
        }
        assert_eq!(
            sample(
                "m365_connector_graph_requests_total",
                &[("connector", name)]
            ),
            Some(requests as f64),
            "{text}"
        );
    }
    assert_eq!(
        sample(
            "m365_connector_last_run_failed",
            &[("connector", "badsecret")]
        ),
        Some(1.0)
    );
    assert_eq!(
        sample("m365_connector_last_run_failed", &[("connector", "good")]),
        Some(0.0)
    );
    assert!(
        sample(
            "m365_connector_last_users_exported",
            &[("connector", "good")]
        )
        .unwrap()
            > 0.0
    );
    assert_eq!(sample("m365_connector_bad_files", &[]), Some(1.0));
    assert_eq!(
        sample("m365_connector_runs_total", &[("connector", "off")]),
        None
    );

    for path in ["/healthz", "/readyz"] {
        let r = http.get(format!("{url}{path}")).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
    }
    assert_eq!(
        http.get(format!("{url}/nowhere"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );

    let status = served.stop_keep_log();
    let log = status.1;
    assert!(status.0.success(), "{log}");
    assert!(
        log.contains("method=POST path=/connectors/good/run status=303"),
        "{log}"
    );
    assert!(log.contains("method=GET path=/metrics status=200"), "{log}");
    let secrets = [opts.client_secret.as_str(), WRONG_SECRET, &csrf];
    for b in &bodies {
        assert_no_secret("a response", b, &secrets[..2]);
    }
    assert_no_secret("the server's log", &log, &secrets);
}

impl Served {
    /// As [`Served::stop`], with the log written until the process ended.
    fn stop_keep_log(self) -> (std::process::ExitStatus, String) {
        let log = Arc::clone(&self.log);
        let status = self.stop();
        let text = log.lock().unwrap().clone();
        (status, text)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beyond_loopback_the_page_needs_the_access_token() {
    let opts = sim_options(50, 42);
    let sim = Simulator::start(opts.clone()).await.unwrap();
    let dir = TempDir::new("web-token");
    let d = dir.path();
    let daily = "repeats = \"daily\"";
    write_connector(d, "good", &sim, &opts, "", daily, &opts.client_secret);

    let (out, _) = binary(
        &["serve", "--connectors", ".", "--listen", "0.0.0.0:0"],
        d,
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(2), "{}", crate::util::text(&out));
    assert!(
        crate::util::text(&out).contains("--access-token-env"),
        "{}",
        crate::util::text(&out)
    );

    let token = "t0ken-for-the-status-page-5c1f9e";
    let port = free_port();
    let listen = format!("0.0.0.0:{port}");
    let served = Served::start(
        d,
        &[
            "--listen",
            &listen,
            "--access-token-env",
            "M365_TEST_PAGE_TOKEN",
        ],
        &[("M365_TEST_PAGE_TOKEN", token)],
    );
    let url = format!("http://127.0.0.1:{port}");
    let http = client();
    let r = http.get(format!("{url}/")).send().await.unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/login");
    assert_eq!(
        http.get(format!("{url}/metrics"))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    let wrong = http
        .get(format!("{url}/metrics"))
        .bearer_auth("nope")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let ok = http
        .get(format!("{url}/metrics"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    // Health checks are open: a load balancer has no token, and they reveal nothing.
    assert_eq!(
        http.get(format!("{url}/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    let login = http
        .get(format!("{url}/login"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let csrf = csrf_of(&login);
    let bad = http
        .post(format!("{url}/login"))
        .form(&[("csrf", csrf.as_str()), ("token", "guess")])
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 401);
    let r = http
        .post(format!("{url}/login"))
        .form(&[("csrf", csrf.as_str()), ("token", token)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    assert!(!cookie.contains(token), "{cookie}");
    let session = cookie.split(';').next().unwrap().to_string();
    let page = http
        .get(format!("{url}/"))
        .header("cookie", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let page = page.text().await.unwrap();
    assert!(page.contains("data-connector=\"good\""), "{page}");
    assert_no_secret("the page", &page, &[token, &opts.client_secret]);
    let (status, log) = served.stop_keep_log();
    assert!(status.success(), "{log}");
    assert_no_secret("the server's log", &log, &[token, &opts.client_secret]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_page_loads_during_a_run_change_nothing() {
    let mut opts = sim_options(1_500, 43);
    // Slow enough pages that the run is still going while the pages load.
    opts.latency_ms = 150;
    let sim = Simulator::start(opts.clone()).await.unwrap();
    let dir = TempDir::new("web-load");
    let d = dir.path();
    write_connector(
        d,
        "busy",
        &sim,
        &opts,
        "",
        "repeats = \"daily\"",
        &opts.client_secret,
    );
    let (out, _) = binary(&["serve", "--once", "--connectors", "."], d, &[]).await;
    assert!(out.status.success(), "{}", crate::util::text(&out));
    let served = Served::start(d, &[], &[]);
    let http = client();
    let url = served.url.clone();
    let page = http
        .get(format!("{url}/"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let csrf = csrf_of(&page);
    let r = http
        .post(format!("{url}/connectors/busy/run"))
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["location"], "/connectors/busy?asked=started");
    let mut loads = tokio::task::JoinSet::new();
    for i in 0..200 {
        let http = http.clone();
        let target = match i % 4 {
            0 => format!("{url}/"),
            1 => format!("{url}/connectors/busy"),
            2 => format!("{url}/metrics"),
            _ => format!("{url}/healthz"),
        };
        loads.spawn(async move {
            let r = http.get(&target).send().await.unwrap();
            (target, r.status().as_u16(), r.text().await.unwrap())
        });
    }
    let mut running_seen = 0;
    while let Some(done) = loads.join_next().await {
        let (target, status, body) = done.unwrap();
        assert_eq!(status, 200, "{target}: {body}");
        let running = body.contains("data-state=\"running\"");
        running_seen += usize::from(running);
        // A page showing the run reloads itself until it is over; an idle one does not.
        let reloads = body.contains("<meta http-equiv=\"refresh\" content=\"10; url=");
        assert_eq!(running, reloads, "{target}: {body}");
    }
    assert!(running_seen > 0, "no page load happened during the run");
    // A second Run now while it runs is refused as busy.
    let r = http
        .post(format!("{url}/connectors/busy/run"))
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    let busy = r.headers()["location"].to_str().unwrap().to_string();
    wait_for_runs(&http, &url, "busy", 2).await;
    let (status, log) = served.stop_keep_log();
    assert!(status.success(), "{log}");
    assert!(
        busy.ends_with("asked=busy") || busy.ends_with("asked=started"),
        "{busy}"
    );

    // The run made under load exported what the run before it did.
    let exports = exports_of(&d.join("busy-data/out"));
    assert!(exports.len() >= 2, "{exports:?}");
    let files = |m: &serde_json::Value| -> Vec<(String, String)> {
        m["files"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["format"] != "jsonl")
            .map(|f| {
                (
                    f["file"].as_str().unwrap().to_string(),
                    f["sha256"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    assert_eq!(files(&exports[0]), files(&exports[1]), "{exports:?}");
}

/// The export manifests under `out/`, oldest first.
fn exports_of(out: &Path) -> Vec<serde_json::Value> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(out)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("manifest.json").is_file())
        .collect();
    dirs.sort();
    dirs.iter()
        .map(|p| serde_json::from_slice(&std::fs::read(p.join("manifest.json")).unwrap()).unwrap())
        .collect()
}

/// A WebDriver session with chromedriver (W3C protocol, JSON over loopback HTTP).
struct Browser {
    http: reqwest::Client,
    session: String,
}

/// The key of an element reference in WebDriver answers.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

impl Browser {
    async fn start(driver: &str) -> Result<Browser, String> {
        let http = client();
        let caps = serde_json::json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--window-size=1280,1000", "--no-proxy-server"]
            }
        }}});
        let v: serde_json::Value = http
            .post(format!("{driver}/session"))
            .json(&caps)
            .send()
            .await
            .map_err(|e| e.to_string())?
            .json()
            .await
            .map_err(|e| e.to_string())?;
        let session = v["value"]["sessionId"]
            .as_str()
            .ok_or_else(|| format!("no session: {v}"))?
            .to_string();
        Ok(Browser {
            http,
            session: format!("{driver}/session/{session}"),
        })
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<serde_json::Value, String> {
        let mut r = self.http.request(method, format!("{}{path}", self.session));
        if let Some(b) = body {
            r = r.json(&b);
        }
        let v: serde_json::Value = r
            .send()
            .await
            .map_err(|e| e.to_string())?
            .json()
            .await
            .map_err(|e| e.to_string())?;
        if v["value"].get("error").is_some() {
            return Err(format!("{path}: {}", v["value"]));
        }
        Ok(v["value"].clone())
    }

    async fn goto(&self, url: &str) -> Result<(), String> {
        self.call(
            reqwest::Method::POST,
            "/url",
            Some(serde_json::json!({"url": url})),
        )
        .await
        .map(drop)
    }

    async fn find_all(&self, css: &str) -> Result<Vec<String>, String> {
        let v = self
            .call(
                reqwest::Method::POST,
                "/elements",
                Some(serde_json::json!({"using": "css selector", "value": css})),
            )
            .await?;
        Ok(v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|e| e[ELEMENT].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default())
    }

    async fn find(&self, css: &str) -> Result<String, String> {
        self.find_all(css)
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| format!("no element {css}"))
    }

    async fn attr(&self, element: &str, name: &str) -> Result<Option<String>, String> {
        let v = self
            .call(
                reqwest::Method::GET,
                &format!("/element/{element}/attribute/{name}"),
                None,
            )
            .await?;
        Ok(v.as_str().map(str::to_string))
    }

    async fn text(&self, element: &str) -> Result<String, String> {
        let v = self
            .call(
                reqwest::Method::GET,
                &format!("/element/{element}/text"),
                None,
            )
            .await?;
        Ok(v.as_str().unwrap_or_default().to_string())
    }

    async fn click(&self, element: &str) -> Result<(), String> {
        self.call(
            reqwest::Method::POST,
            &format!("/element/{element}/click"),
            Some(serde_json::json!({})),
        )
        .await
        .map(drop)
    }

    async fn source(&self) -> Result<String, String> {
        let v = self.call(reqwest::Method::GET, "/source", None).await?;
        Ok(v.as_str().unwrap_or_default().to_string())
    }

    async fn screenshot(&self) -> Result<Vec<u8>, String> {
        use base64::Engine;
        let v = self.call(reqwest::Method::GET, "/screenshot", None).await?;
        base64::engine::general_purpose::STANDARD
            .decode(v.as_str().unwrap_or_default())
            .map_err(|e| e.to_string())
    }

    async fn close(&self) {
        let _ = self.call(reqwest::Method::DELETE, "", None).await;
    }
}

/// The acceptance test: Debian's chromium, headless through chromedriver, sees each state and
/// the fix, clicks Run now, sees the new run appear, opens its report; a screenshot is kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_sees_each_state_runs_one_now_and_opens_its_report() {
    let driver_bin = ["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"]
        .into_iter()
        .find(|p| Path::new(p).is_file())
        .expect("chromedriver is not installed: `apt-get install chromium chromium-driver` (.ci/run installs them)");
    let opts = sim_options(120, 44);
    let sim = Simulator::start(opts.clone()).await.unwrap();
    let dir = TempDir::new("web-browser");
    let d = dir.path();
    three_connectors(d, &sim, &opts).await;
    let served = Served::start(d, &[], &[]);
    let port = free_port();
    let mut driver = Command::new(driver_bin)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let driver_url = format!("http://127.0.0.1:{port}");
    let started = Instant::now();
    let browser = loop {
        match Browser::start(&driver_url).await {
            Ok(b) => break b,
            Err(_) if started.elapsed() < Duration::from_secs(30) => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("chromedriver did not start a browser: {e}"),
        }
    };
    let result = browse(&browser, &served.url, d).await;
    browser.close().await;
    let _ = driver.kill();
    let _ = driver.wait();
    let shot = result.unwrap_or_else(|e| panic!("{e}\nserver log:\n{}", served.log()));
    println!("status page screenshot: {}", shot.display());
    let (status, log) = served.stop_keep_log();
    assert!(status.success(), "{log}");
}

/// What the admin does in the browser; the screenshot's path.
async fn browse(c: &Browser, url: &str, d: &Path) -> Result<PathBuf, String> {
    c.goto(&format!("{url}/")).await?;
    for (name, state) in [("good", "ok"), ("badsecret", "failed"), ("off", "inactive")] {
        let row = c.find(&format!("tr[data-connector=\"{name}\"]")).await?;
        let shown = c.attr(&row, "data-state").await?;
        if shown.as_deref() != Some(state) {
            return Err(format!("{name} shows {shown:?}, not {state}"));
        }
        if name == "badsecret" {
            let text = c.text(&row).await?;
            if !text.contains("AADSTS7000215") || !text.contains("the client secret is wrong") {
                return Err(format!("the wrong secret's fix is not shown: {text}"));
            }
        }
    }
    let before = std::fs::read_dir(d.join("good-data/out"))
        .map_err(|e| e.to_string())?
        .count();
    let button = c.find("tr[data-connector=\"good\"] button").await?;
    c.click(&button).await?;
    let text = c.text(&c.find("#notice").await?).await?;
    if !text.contains("started") {
        return Err(format!("Run now said: {text}"));
    }
    let started = Instant::now();
    let newest = loop {
        c.goto(&format!("{url}/connectors/good")).await?;
        let rows = c
            .find_all("#runs tbody tr[data-status=\"succeeded\"]")
            .await?;
        if rows.len() >= 2 {
            break c.attr(&rows[0], "data-run").await?.unwrap_or_default();
        }
        if started.elapsed() > Duration::from_secs(120) {
            return Err("the new run never appeared".into());
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    let after = std::fs::read_dir(d.join("good-data/out"))
        .map_err(|e| e.to_string())?
        .count();
    if after <= before {
        return Err(format!("no new export for the new run {newest}"));
    }
    let link = c.find("#runs tbody tr:first-child a").await?;
    c.click(&link).await?;
    let source = c.source().await?;
    if !source.contains(&newest) || !source.contains("data-metric") {
        return Err(format!(
            "the report of {newest} did not open: {}",
            &source[..source.len().min(500)]
        ));
    }
    c.goto(&format!("{url}/")).await?;
    let png = c.screenshot().await?;
    let kept = tempfile::Builder::new()
        .prefix("m365-it-status-page-")
        .tempdir()
        .map_err(|e| e.to_string())?
        .keep();
    let path = kept.join("status-page.png");
    std::fs::write(&path, png).map_err(|e| e.to_string())?;
    Ok(path)
}
