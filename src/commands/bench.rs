//! `m365-connector bench`: the whole pipeline against a simulator in its own process, each
//! stage in its own process too, so wall time and peak RSS are the connector's alone.
//!
//! Not a test: it prints figures (users/s per stage, requests against the minimum a full run
//! needs, bytes, throttle waits, peak RSS) for the README and the issue notes.

use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::cli::BenchArgs;
use crate::error::{Error, Result};
use crate::manifest::{RunManifest, committed_runs};
use crate::sim::{SimOptions, SimStats};
use crate::streams::users_page_size;

/// One stage as a measured child process.
#[derive(Debug, Clone, Copy)]
struct Measured {
    seconds: f64,
    /// Peak resident set size in KiB (0 where the platform can't tell).
    max_rss_kib: u64,
}

/// Runs the benchmark and returns its report.
pub fn bench(args: &BenchArgs) -> Result<String> {
    let exe = std::env::current_exe().map_err(|e| Error::io("finding this executable", e))?;
    // Without --dir: a fresh owner-only folder under the temp dir, removed when it drops.
    let temporary;
    let dir = match &args.dir {
        Some(d) => {
            crate::fs::create_private_dir(d)?;
            d.as_path()
        }
        None => {
            temporary = tempfile::Builder::new()
                .prefix(&format!("m365-bench-{}-", args.users))
                .tempdir()
                .map_err(|e| Error::io("creating a temporary folder", e))?;
            temporary.path()
        }
    };
    bench_in(&exe, dir, args)
}

fn bench_in(exe: &Path, dir: &Path, args: &BenchArgs) -> Result<String> {
    let (port, download_port) = (free_port()?, free_port()?);
    let opts = SimOptions::default();
    let mut sim = Command::new(exe)
        .args(["-q", "sim", "--users", &args.users.to_string()])
        .args(["--latency-ms", &args.latency_ms.to_string()])
        .args(["--jitter-ms", &args.jitter_ms.to_string()])
        .args(["--port", &port.to_string()])
        .args(["--download-port", &download_port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| Error::io("starting the simulator", e))?;
    let outcome = (|| {
        wait_for_port(port)?;
        let config = write_connector(dir, &opts, port, args.concurrency, args.manager)?;
        let mut stages = Vec::new();
        let all = ["extract", "transform", "load"];
        for stage in all.into_iter().take(if args.extract_only { 1 } else { 3 }) {
            let m = run_stage(exe, stage, &config)?;
            stages.push((stage, m));
        }
        let sim_stats = sim_stats(port)?;
        let sim_rss = peak_rss_of(&sim);
        report(dir, args, &stages, &sim_stats, sim_rss)
    })();
    let _ = sim.kill();
    let _ = sim.wait();
    outcome
}

fn free_port() -> Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| Error::io("finding a free port", e))?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(|e| Error::io("finding a free port", e))
}

fn wait_for_port(port: u16) -> Result<()> {
    for _ in 0..200 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    Err(Error::Internal(format!(
        "the simulator did not start listening on 127.0.0.1:{port}"
    )))
}

fn write_connector(
    dir: &Path,
    opts: &SimOptions,
    port: u16,
    concurrency: u64,
    manager: bool,
) -> Result<PathBuf> {
    let secret = dir.join("secret");
    write_private(&secret, opts.client_secret.as_bytes())?;
    let text = format!(
        "[connector]\nname = \"bench\"\n[tenant]\ntenant_id = \"{}\"\nclient_id = \"{}\"\nclient_secret_file = \"secret\"\nlogin_url = \"http://127.0.0.1:{port}\"\ngraph_url = \"http://127.0.0.1:{port}\"\n[filter]\ndate_filter_days = 30\n[pipeline]\ndata_dir = \"data\"\nusers_concurrency = {concurrency}\nmanager = {manager}\n",
        opts.tenant_id, opts.client_id
    );
    let path = dir.join("connector.toml");
    write_private(&path, text.as_bytes())?;
    Ok(path)
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    o.open(path)
        .and_then(|mut f| f.write_all(bytes))
        .map_err(|e| Error::io(format!("writing {}", path.display()), e))
}

fn run_stage(exe: &Path, stage: &str, config: &Path) -> Result<Measured> {
    let started = Instant::now();
    let child = Command::new(exe)
        .args(["-q", stage, "-c"])
        .arg(config)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::io(format!("starting {stage}"), e))?;
    let (code, max_rss_kib, stderr) = wait_measured(child)?;
    let seconds = started.elapsed().as_secs_f64();
    // 3 is "succeeded with warnings" (e.g. throttling waits): still a measured run.
    if !matches!(code, Some(0) | Some(3)) {
        return Err(Error::Internal(format!(
            "bench: {stage} exited {code:?}: {}",
            stderr.trim()
        )));
    }
    Ok(Measured {
        seconds,
        max_rss_kib,
    })
}

/// Waits for `child` and returns its exit code, its peak RSS (KiB) and its stderr.
#[cfg(unix)]
fn wait_measured(mut child: Child) -> Result<(Option<i32>, u64, String)> {
    use std::io::Read;
    let mut stderr = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut stderr);
    }
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: rusage is plain data; wait4 fills it for our own child, which std has not
    // reaped (we never called wait on `child`).
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    if r < 0 {
        return Err(Error::io(
            "waiting for a stage",
            std::io::Error::last_os_error(),
        ));
    }
    let code = libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status));
    // Linux reports ru_maxrss in KiB.
    Ok((code, usage.ru_maxrss.max(0) as u64, stderr))
}

#[cfg(not(unix))]
fn wait_measured(child: Child) -> Result<(Option<i32>, u64, String)> {
    let out = child
        .wait_with_output()
        .map_err(|e| Error::io("waiting for a stage", e))?;
    Ok((
        out.status.code(),
        0,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

/// The simulator's peak RSS in KiB, from /proc (Linux), while it still runs.
fn peak_rss_of(child: &Child) -> u64 {
    let status =
        std::fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn sim_stats(port: u16) -> Result<SimStats> {
    use std::io::Read;
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))
        .map_err(|e| Error::io("reading the simulator's stats", e))?;
    s.write_all(b"GET /_sim/stats HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .map_err(|e| Error::io("reading the simulator's stats", e))?;
    let mut text = String::new();
    s.read_to_string(&mut text)
        .map_err(|e| Error::io("reading the simulator's stats", e))?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    serde_json::from_str(body)
        .map_err(|e| Error::Internal(format!("the simulator's stats are not JSON: {e}")))
}

fn mib(kib: u64) -> String {
    format!("{:.0} MiB", kib as f64 / 1024.0)
}

fn report(
    dir: &Path,
    args: &BenchArgs,
    stages: &[(&str, Measured)],
    sim: &SimStats,
    sim_rss_kib: u64,
) -> Result<String> {
    let data = dir.join("data");
    let raw = crate::store::DataDir::new(&data).raw();
    let runs = committed_runs(&raw).map_err(|e| Error::io("reading runs", e))?;
    let run = runs
        .last()
        .ok_or_else(|| Error::Internal("bench: no committed run".into()))?;
    let m = RunManifest::read(&raw.join(run)).map_err(|e| Error::io("reading the manifest", e))?;
    let users = m.users();
    let pages = m
        .streams
        .get(crate::streams::Stream::Users.name())
        .map_or(0, |s| s.pages);
    let landed: u64 = m
        .streams
        .values()
        .flat_map(|s| &s.files)
        .map(|f| f.bytes)
        .sum();
    let downloaded: u64 = m.streams.values().filter_map(|s| s.downloaded_bytes).sum();
    let downloads = sim.requests.get("download").copied().unwrap_or(0);
    let graph_requests = sim.total_requests - downloads;
    let users_stream = m.streams.get(crate::streams::Stream::Users.name());
    let users_requests = users_stream.map_or(0, |s| s.calls.requests);
    let walk = users_stream.and_then(|s| s.partitions.clone());
    let ranges = walk.as_ref().map_or(1, |w| w.ranges);
    let serial_pages = args
        .users
        .max(1)
        .div_ceil(u64::from(users_page_size(args.manager)));
    // The users walk's formula: one probe, the pages, and the wasted first page of every
    // range split again (a serial walk: the pages alone).
    let splits = walk.as_ref().map_or(0, |w| w.splits);
    let formula = if walk.is_some() {
        1 + pages + splits
    } else {
        pages
    };
    // A clean full run: the users walk, organization, subscribedSkus, reportSettings, the 8
    // report calls and one token.
    let minimum = formula + 1 + 1 + 1 + 8 + 1;
    let mut out = format!(
        "bench: {} users, simulator latency {} ms ± {} ms, users_concurrency {}, manager {}, run {run}\n\n",
        args.users, args.latency_ms, args.jitter_ms, args.concurrency, args.manager
    );
    out.push_str("| stage | seconds | users/s | peak RSS |\n|---|---:|---:|---:|\n");
    for (stage, s) in stages {
        out.push_str(&format!(
            "| {stage} | {:.2} | {:.0} | {} |\n",
            s.seconds,
            users as f64 / s.seconds.max(1e-9),
            mib(s.max_rss_kib)
        ));
    }
    let total: f64 = stages.iter().map(|(_, s)| s.seconds).sum();
    out.push_str(&format!(
        "| total | {total:.2} | {:.0} | |\n\n",
        users as f64 / total.max(1e-9)
    ));
    let how = walk.as_ref().map_or("one serial walk".to_string(), |w| {
        format!(
            "{} {} ({} split again), $count {}, {} distinct",
            w.ranges,
            w.strategy.words(),
            w.splits,
            w.count.map_or("-".into(), |c| c.to_string()),
            w.distinct
        )
    });
    out.push_str(&format!(
        "users landed: {users} in {pages} pages over {how}\nusers requests: {users_requests} (formula: 1 probe + {pages} pages + {splits} split ranges' first pages = {formula})\nrequests to login + Graph: {graph_requests} (a clean run: {minimum} = the users formula + organization + subscribedSkus + reportSettings + 8 reports + 1 token); report downloads: {downloads}\nretries: {}, throttled: {}, throttle/backoff waits: {:.1} s\nidentity resource units spent: {} ({} requests refused by the RU budget)\nbytes on the wire: {:.1} MiB of {:.1} MiB decoded ({:.0} %), counted by the simulator (Graph and downloads)\nbytes: {:.1} MiB of report CSV downloaded, {:.1} MiB of Parquet landed\nsimulator (separate process): peak RSS {}\n",
        m.retries,
        m.throttled,
        m.waited_ms as f64 / 1000.0,
        sim.ru_spent,
        sim.ru_throttled,
        sim.bytes_wire as f64 / 1048576.0,
        sim.bytes_raw as f64 / 1048576.0,
        100.0 * sim.bytes_wire as f64 / (sim.bytes_raw as f64).max(1.0),
        downloaded as f64 / 1048576.0,
        landed as f64 / 1048576.0,
        mib(sim_rss_kib),
    ));
    if args.latency_ms > 0 {
        let l = args.latency_ms as f64 / 1000.0;
        let serial = serial_pages as f64 * l;
        let ideal = serial / args.concurrency.max(1) as f64;
        let walked = pages as f64 * l / args.concurrency.max(1) as f64;
        let wall = stages[0].1.seconds;
        out.push_str(&format!(
            "serial floor ({serial_pages} pages x {} ms): {serial:.1} s; extract wall {wall:.1} s: {:.1}x faster\nideal at {} at once: {ideal:.1} s ({:.2}x of it); this walk's {pages} pages ÷ {}: {walked:.1} s ({:.2}x of it); {ranges} ranges\n",
            args.latency_ms,
            serial / wall.max(1e-9),
            args.concurrency,
            wall / ideal.max(1e-9),
            args.concurrency,
            wall / walked.max(1e-9),
        ));
    }
    Ok(out)
}
