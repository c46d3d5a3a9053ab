//! Command-line surface (clap derive). Doc comments here are the `--help` text.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// Microsoft 365 people connector: Graph → Parquet → DuckDB → Neurons-ready records.
///
/// Quick start: `m365-connector sim` in one terminal, then `m365-connector extract -c
/// connector.toml` with the config it prints. `m365-connector init` prints a commented
/// template of every connector option.
#[derive(Debug, Parser)]
#[command(name = "m365-connector", version, propagate_version = true)]
pub struct Cli {
    /// Only errors on stderr; no progress display.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// More log detail on stderr (-v info, -vv debug). RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Log line format on stderr: `text` for people (colour only on a terminal; NO_COLOR
    /// turns it off), `json` for log shippers (one JSON object per line).
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true, env = "M365_LOG_FORMAT")]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

/// How log lines are written (`--log-format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print a commented connector file with every option and its default.
    Init,
    /// Stage 1: sign in, read users, organization, licences and the 8 usage reports, and
    /// land them as Parquet under <data_dir>/raw/<run_id>/ (committed with a manifest).
    Extract(ConfigArg),
    /// Stage 2: turn a committed run into typed staging tables, `int_people` and the mapped,
    /// date-filtered `people` (and `rejects`) in <data_dir>/staging.duckdb. Never calls Graph.
    Transform(RunArg),
    /// Stage 3: export a transformed run's people to <data_dir>/out/<run_id>/ (JSON Lines, CSV,
    /// Parquet and manifest.json), written aside and moved into place when complete.
    Load(LoadArgs),
    /// Extract + transform + load as one audited run, with a summary at the end.
    /// Exit codes: 0 success, 3 success with warnings, 1 failure, 2 bad input.
    Run(LoadArgs),
    /// The whole pipeline against the built-in simulator (offline; data under data/demo/).
    #[cfg(feature = "sim")]
    Demo(DemoArgs),
    /// The connector server: runs every active connector in DIR on its schedule (re-reads the
    /// folder on every wake; SIGTERM/Ctrl-C stops it cleanly).
    Serve(ServeArgs),
    /// One table of the connectors in DIR: server, active, schedule, last run, next run.
    Status(ConnectorsArg),
    /// List the runs recorded in the staging database: status, counts, warnings, durations.
    Runs(ConfigArg),
    /// Write a run's report: one self-contained HTML page (no scripts, no external files) with
    /// who was imported and why others were left out, licences, activity, Office usage,
    /// identity hygiene, warnings with their fixes, timings and recent runs. `run` writes it
    /// automatically.
    Report(ReportArgs),
    /// Query the staging database (read-only), e.g. `sql -c FILE "SELECT count(*) FROM people"`.
    Sql(SqlArgs),
    /// Pre-flight checklist: connector file, secret, sign-in, admin consent (roles), one
    /// minimal call per endpoint family, and report name concealment. Exit 1 if any fails.
    Check(ConfigArg),
    /// Check a connector file without contacting Microsoft (syntax, keys, ids, secret source).
    Validate(ConfigArg),
    /// Run the built-in Graph simulator (login, Graph and a report download host) on loopback.
    #[cfg(feature = "sim")]
    Sim(crate::sim::SimArgs),
    /// Benchmark: a simulator and each stage in their own processes; prints users/s per stage,
    /// requests against the minimum, bytes, throttle waits and peak RSS. Not a test.
    #[cfg(feature = "sim")]
    Bench(BenchArgs),
}

#[derive(Debug, clap::Args)]
pub struct ConfigArg {
    /// The connector file (TOML); `m365-connector init` prints a template.
    #[arg(short, long, value_name = "FILE")]
    pub config: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct RunArg {
    /// The connector file (TOML).
    #[arg(short, long, value_name = "FILE")]
    pub config: PathBuf,
    /// The run to use (default: the newest committed run).
    #[arg(long, value_name = "RUN_ID")]
    pub run: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    /// The connector file (TOML).
    #[arg(short, long, value_name = "FILE")]
    pub config: PathBuf,
    /// The run to report on (default: the newest transformed run; `runs` lists them).
    #[arg(long, value_name = "RUN_ID")]
    pub run: Option<String>,
    /// Where to write the page (default: <data_dir>/out/<run_id>/report.html; `-` prints it).
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct SqlArgs {
    /// The connector file (TOML).
    #[arg(short, long, value_name = "FILE")]
    pub config: PathBuf,
    /// The query; tables: runs, run_streams, landed_files, run_steps, people, rejects,
    /// report_rows_unmatched, license_counts, usage_by_service, last_seen_histogram,
    /// office_usage, identity_hygiene, stg_*, int_people, out_*. Several statements may precede the last one
    /// (e.g. `SET VARIABLE run_id = '…';` before a report query of sql/report/). A query may
    /// start with a `--` comment, as the files under sql/ do.
    #[arg(allow_hyphen_values = true)]
    pub query: String,
    /// Output format.
    #[arg(long, value_enum, default_value_t = SqlFormat::Table)]
    pub format: SqlFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SqlFormat {
    Table,
    Csv,
    Json,
}

#[derive(Debug, clap::Args)]
pub struct LoadArgs {
    /// The connector file (TOML).
    #[arg(short, long, value_name = "FILE")]
    pub config: PathBuf,
    /// The run to export (default: the newest transformed run; ignored by `run`).
    #[arg(long, value_name = "RUN_ID")]
    pub run: Option<String>,
    /// Export formats, comma-separated.
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = crate::load::ExportFormat::ALL)]
    pub format: Vec<crate::load::ExportFormat>,
}

impl LoadArgs {
    pub fn formats(&self) -> Vec<crate::load::ExportFormat> {
        self.format.clone()
    }
}

#[cfg(feature = "sim")]
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Size of the simulated tenant.
    #[arg(long, default_value_t = 3000)]
    pub users: u64,
}

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Folder of connector files (*.toml).
    #[arg(long, value_name = "DIR")]
    pub connectors: PathBuf,
    /// Only connectors whose `server` is this name ("cloud" or an on-premises server's name).
    #[arg(long, default_value = "cloud")]
    pub server: String,
    /// Run whatever is due now, then exit (for cron or Task Scheduler; no status page).
    #[arg(long)]
    pub once: bool,
    /// Where the status page, /metrics and /healthz listen (ADDR:PORT), or `none`. Any
    /// address but loopback needs --access-token-env.
    #[arg(long, value_name = "ADDR:PORT|none", default_value = "127.0.0.1:8765")]
    pub listen: Listen,
    /// Environment variable holding the status page's access token (a bearer token, or
    /// typed into its login form); required to listen beyond loopback.
    #[arg(long, value_name = "NAME")]
    pub access_token_env: Option<String>,
    /// On SIGTERM, seconds running connectors may take to finish before they are stopped
    /// (a stopped extract resumes from its checkpoints on the next run).
    #[arg(long, value_name = "SECONDS", default_value_t = 30)]
    pub grace_seconds: u64,
}

/// `serve --listen`: an address, or `none` for no status page.
#[derive(Debug, Clone, Copy)]
pub struct Listen(Option<std::net::SocketAddr>);

impl Listen {
    pub fn address(self) -> Option<std::net::SocketAddr> {
        self.0
    }
}

impl std::str::FromStr for Listen {
    type Err = String;
    fn from_str(s: &str) -> Result<Listen, String> {
        if s.eq_ignore_ascii_case("none") || s.eq_ignore_ascii_case("off") {
            return Ok(Listen(None));
        }
        s.parse().map(|a| Listen(Some(a))).map_err(|_| {
            format!("{s:?} is not an address and port: give e.g. 127.0.0.1:8765, [::1]:8765, 0.0.0.0:8765 (with --access-token-env), or none")
        })
    }
}

#[derive(Debug, clap::Args)]
pub struct ConnectorsArg {
    /// Folder of connector files (*.toml).
    #[arg(long, value_name = "DIR")]
    pub connectors: PathBuf,
}

/// `bench` options.
#[cfg(feature = "sim")]
#[derive(clap::Args, Debug, Clone)]
pub struct BenchArgs {
    /// Users in the simulated tenant.
    #[arg(long, default_value_t = 100_000)]
    pub users: u64,
    /// Milliseconds the simulator takes to answer each request (real Graph answers a
    /// 999-user page in 1,000–3,500).
    #[arg(long, value_name = "MS", default_value_t = 0)]
    pub latency_ms: u64,
    /// Each response's time varies by up to this much either way.
    #[arg(long, value_name = "MS", default_value_t = 0)]
    pub jitter_ms: u64,
    /// `[pipeline] users_concurrency` of the benchmarked connector (1 = one serial walk).
    #[arg(long, value_name = "C", default_value_t = 16)]
    pub concurrency: u64,
    /// Measure the extract only (transform and load do not depend on latency).
    #[arg(long)]
    pub extract_only: bool,
    /// `[pipeline] manager = true`: the users walk expands each user's manager (pages of 100).
    #[arg(long)]
    pub manager: bool,
    /// Where the connector file and data go (default: a fresh folder under the temp dir,
    /// removed afterwards).
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}
