//! One connector's TOML file → one validated [`Config`] (DESIGN.md "Configuration").
//!
//! Every error names the file, the line and the key, and says how to fix it. The client
//! secret is never read from the file itself: only an env var name or a 0600 file path is,
//! and the value lives in [`Secret`], which refuses to print.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use chrono::NaiveTime;
use reqwest::Url;
use serde::Deserialize;
use toml::Spanned;

use crate::streams::REPORT_PERIODS;

/// A configuration problem, located in the file (line 0 = the file as a whole).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{}: {key}: {message}", file.display(), line.map(|l| format!(":{l}")).unwrap_or_default())]
pub struct ConfigError {
    pub file: PathBuf,
    pub line: Option<usize>,
    /// `section.key`, e.g. `tenant.client_id`.
    pub key: String,
    /// What is wrong and what to do about it.
    pub message: String,
}

/// The client secret's value. Debug and Display print `[redacted]`, so it cannot leak
/// through a log line, an error or a panic message by accident.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
    /// The only way to read the value; grep for it to audit every use.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Microsoft cloud whose login and Graph hosts the connector talks to (graph-api.md §1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cloud {
    Global,
    UsGov,
    UsGovDod,
    China,
}

impl Cloud {
    const NAMES: &'static [&'static str] = &["global", "usgov", "usgov-dod", "china"];

    fn parse(s: &str) -> Option<Cloud> {
        match s {
            "global" => Some(Cloud::Global),
            "usgov" => Some(Cloud::UsGov),
            "usgov-dod" => Some(Cloud::UsGovDod),
            "china" => Some(Cloud::China),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Cloud::Global => "global",
            Cloud::UsGov => "usgov",
            Cloud::UsGovDod => "usgov-dod",
            Cloud::China => "china",
        }
    }

    /// Login host root for the cloud.
    pub fn login_root(self) -> &'static str {
        match self {
            Cloud::Global => "https://login.microsoftonline.com",
            Cloud::UsGov | Cloud::UsGovDod => "https://login.microsoftonline.us",
            Cloud::China => "https://login.chinacloudapi.cn",
        }
    }

    /// Graph host root for the cloud (also the resource of the `.default` scope).
    pub fn graph_root(self) -> &'static str {
        match self {
            Cloud::Global => "https://graph.microsoft.com",
            Cloud::UsGov => "https://graph.microsoft.us",
            Cloud::UsGovDod => "https://dod-graph.microsoft.us",
            Cloud::China => "https://microsoftgraph.chinacloudapi.cn",
        }
    }
}

/// Where the secret value comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    Env { var: String, line: usize },
    File { path: PathBuf, line: usize },
}

#[derive(Debug, Clone)]
pub struct ConnectorSection {
    pub name: String,
    pub server: String,
    pub active: bool,
}

#[derive(Debug, Clone)]
pub struct TenantSection {
    pub tenant_id: String,
    pub client_id: String,
    pub secret: SecretSource,
    pub cloud: Cloud,
    /// Login host root (override or the cloud's), without path.
    pub login_url: Url,
    /// Graph host root (override or the cloud's), without `/v1.0`.
    pub graph_url: Url,
    /// The `.default` scope: always the cloud's Graph resource, even with overrides.
    pub scope: String,
    /// Extra trusted roots (PEM) on top of the platform's, for TLS-inspecting proxies.
    pub ca_bundle: Option<PathBuf>,
}

#[derive(Debug, Clone)]
pub struct ScheduleSection {
    pub repeats: String,
    pub start_time: NaiveTime,
    pub timezone: String,
    /// The validated schedule: computes next run times.
    pub plan: crate::schedule::Schedule,
}

#[derive(Debug, Clone)]
pub struct PipelineSection {
    pub data_dir: PathBuf,
    pub mappings: Option<PathBuf>,
    pub sql_dir: Option<PathBuf>,
    pub report_period: String,
    pub incremental: bool,
    /// Cap on the total time spent waiting for throttling and backoff in one run.
    pub max_wait_seconds: u64,
    /// Total deadline of one Graph or token request (headers and body): a trickling body is
    /// cut there and counted as a stall, whatever the per-read timeouts.
    pub request_timeout_seconds: u64,
    /// Total deadline of one report download (a million-user report is hundreds of MB).
    pub download_timeout_seconds: u64,
    /// How long a host that does not resolve, refuses connections or presents a certificate
    /// that does not verify is retried before the run fails with the fix (instead of using
    /// up `max_wait_seconds`).
    pub unreachable_seconds: u64,
    /// First backoff step when Graph gives no Retry-After; doubles per retry, with jitter.
    pub retry_base_ms: u64,
    /// Users pages per Parquet segment: an interrupted extract resumes after the last one.
    pub checkpoint_pages: u64,
    /// DuckDB's memory limit for transform and load; beyond it DuckDB spills to
    /// `<data_dir>/.duckdb-tmp` instead of growing with the tenant.
    pub memory_limit_mib: u64,
}

/// `[pipeline] memory_limit_mib` when unset. With `int_people` built in parts a million users
/// transform in 43 s and ~650 MiB; 1024 was no faster, 256 takes 68 s and ~380 MiB.
pub const DEFAULT_MEMORY_LIMIT_MIB: u64 = 512;
/// Below this DuckDB cannot hold the hash tables of even a small tenant's joins.
pub const MIN_MEMORY_LIMIT_MIB: u64 = 256;

/// A validated connector configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub path: PathBuf,
    pub connector: ConnectorSection,
    pub tenant: TenantSection,
    pub date_filter_days: u32,
    pub schedule: ScheduleSection,
    pub action_credentials: String,
    pub pipeline: PipelineSection,
}

// ---- raw TOML shape ------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    connector: RawConnector,
    tenant: RawTenant,
    #[serde(default)]
    filter: RawFilter,
    #[serde(default)]
    schedule: RawSchedule,
    #[serde(default)]
    action_credentials: RawActionCredentials,
    #[serde(default)]
    pipeline: RawPipeline,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConnector {
    name: Spanned<String>,
    #[serde(default)]
    server: Option<Spanned<String>>,
    #[serde(default)]
    active: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTenant {
    tenant_id: Spanned<String>,
    client_id: Spanned<String>,
    #[serde(default)]
    client_secret_env: Option<Spanned<String>>,
    #[serde(default)]
    client_secret_file: Option<Spanned<String>>,
    /// Only here to refuse it with a useful message; its value is never read or echoed.
    #[serde(default)]
    client_secret: Option<Spanned<toml::Value>>,
    #[serde(default)]
    cloud: Option<Spanned<String>>,
    #[serde(default)]
    login_url: Option<Spanned<String>>,
    #[serde(default)]
    graph_url: Option<Spanned<String>>,
    #[serde(default)]
    ca_bundle: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawFilter {
    #[serde(default)]
    date_filter_days: Option<Spanned<i64>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawSchedule {
    #[serde(default)]
    repeats: Option<Spanned<String>>,
    #[serde(default)]
    start_time: Option<Spanned<String>>,
    #[serde(default)]
    timezone: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawActionCredentials {
    #[serde(default)]
    name: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawPipeline {
    #[serde(default)]
    data_dir: Option<String>,
    #[serde(default)]
    mappings: Option<String>,
    #[serde(default)]
    sql_dir: Option<String>,
    #[serde(default)]
    report_period: Option<Spanned<String>>,
    #[serde(default)]
    incremental: Option<bool>,
    #[serde(default)]
    max_wait_seconds: Option<Spanned<i64>>,
    #[serde(default)]
    request_timeout_seconds: Option<Spanned<i64>>,
    #[serde(default)]
    download_timeout_seconds: Option<Spanned<i64>>,
    #[serde(default)]
    unreachable_seconds: Option<Spanned<i64>>,
    #[serde(default)]
    retry_base_ms: Option<Spanned<i64>>,
    #[serde(default)]
    checkpoint_pages: Option<Spanned<i64>>,
    #[serde(default)]
    memory_limit_mib: Option<Spanned<i64>>,
}

// ---- loading ---------------------------------------------------------------------------

impl Config {
    /// Reads and validates a connector file. Does not read the secret (see [`Config::secret`]).
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let bytes = std::fs::read(path).map_err(|e| ConfigError {
            file: path.to_path_buf(),
            line: None,
            key: "(file)".into(),
            message: if e.kind() == std::io::ErrorKind::NotFound {
                format!(
                    "cannot read the connector file: {e}. Create one with `m365-connector init > {}`.",
                    path.display()
                )
            } else {
                format!("cannot read the connector file: {e}")
            },
        })?;
        let text = std::str::from_utf8(&bytes).map_err(|e| {
            let valid = &bytes[..e.valid_up_to()];
            ConfigError {
                file: path.to_path_buf(),
                line: Some(valid.iter().filter(|b| **b == b'\n').count() + 1),
                key: "(file)".into(),
                message: format!(
                    "the file is not UTF-8 text (byte 0x{:02x}): save it as UTF-8 (in Notepad: Save as > Encoding: UTF-8)",
                    bytes[e.valid_up_to()]
                ),
            }
        })?;
        Config::parse(path, text)
    }

    /// Validates connector TOML `text` as if read from `path` (relative paths resolve
    /// against the file's folder).
    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        let ctx = Ctx { path, text };
        let meaningful = text
            .lines()
            .map(|l| l.trim().trim_start_matches('\u{feff}'))
            .any(|l| !l.is_empty() && !l.starts_with('#'));
        if !meaningful {
            return Err(ConfigError {
                file: path.to_path_buf(),
                line: None,
                key: "(file)".into(),
                message: format!(
                    "the file is empty: start from the commented template, `m365-connector init > {}`",
                    path.display()
                ),
            });
        }
        let raw: RawConfig = toml::from_str(text).map_err(|e| ctx.toml_error(&e))?;
        let base = path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        let base = if base.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            base
        };

        // [connector]
        let name = raw.connector.name.get_ref().trim().to_string();
        if name.is_empty() {
            return Err(ctx.err(
                raw.connector.name.span(),
                "connector.name",
                "is empty: give the connector a name admins will recognise, e.g. \"Contoso M365\"",
            ));
        }
        let server = match &raw.connector.server {
            Some(s) if s.get_ref().trim().is_empty() => {
                return Err(ctx.err(
                    s.span(),
                    "connector.server",
                    "is empty: use \"cloud\" or the name of the on-premises connector server",
                ));
            }
            Some(s) => s.get_ref().trim().to_string(),
            None => "cloud".to_string(),
        };
        let connector = ConnectorSection {
            name,
            server,
            active: raw.connector.active.unwrap_or(true),
        };

        let tenant = ctx.tenant(raw.tenant, &base)?;

        // [filter]
        let date_filter_days = match raw.filter.date_filter_days {
            None => 30,
            Some(d) => {
                let v = *d.get_ref();
                if !(0..=36_500).contains(&v) {
                    return Err(ctx.err(
                        d.span(),
                        "filter.date_filter_days",
                        &format!(
                            "{v} is out of range: use a number of days from 0 (no filter) to 36500"
                        ),
                    ));
                }
                v as u32
            }
        };

        // [schedule]
        let repeats = match &raw.schedule.repeats {
            Some(r) if r.get_ref().trim().is_empty() => {
                return Err(ctx.err(
                    r.span(),
                    "schedule.repeats",
                    "is empty: use e.g. \"hourly\", \"every 6 hours\", \"daily\", \"weekly on mon,thu\" or \"monthly on 1\"",
                ));
            }
            Some(r) => r.get_ref().trim().to_string(),
            None => "daily".to_string(),
        };
        let start_time = match &raw.schedule.start_time {
            None => NaiveTime::from_hms_opt(2, 0, 0).expect("valid time"),
            Some(t) => NaiveTime::parse_from_str(t.get_ref().trim(), "%H:%M").map_err(|_| {
                ctx.err(
                    t.span(),
                    "schedule.start_time",
                    &format!(
                        "{:?} is not a time of day: use 24-hour HH:MM, e.g. \"02:00\"",
                        t.get_ref()
                    ),
                )
            })?,
        };
        let timezone = match &raw.schedule.timezone {
            Some(t) if t.get_ref().trim().is_empty() => {
                return Err(ctx.err(
                    t.span(),
                    "schedule.timezone",
                    "is empty: use an IANA time zone name such as \"UTC\" or \"Europe/Amsterdam\"",
                ));
            }
            Some(t) => t.get_ref().trim().to_string(),
            None => "UTC".to_string(),
        };
        // Parsed once here for an error at the `repeats` line; after that only the time zone
        // can make `Schedule::new` fail.
        repeats.parse::<crate::schedule::Repeats>().map_err(|e| {
            let span = raw
                .schedule
                .repeats
                .as_ref()
                .map(|r| r.span())
                .unwrap_or(0..0);
            ctx.err(span, "schedule.repeats", &e.message)
        })?;
        let plan =
            crate::schedule::Schedule::new(&repeats, start_time, &timezone).map_err(|e| {
                let span = raw
                    .schedule
                    .timezone
                    .as_ref()
                    .map(|t| t.span())
                    .unwrap_or(0..0);
                ctx.err(span, "schedule.timezone", &e.message)
            })?;
        let schedule = ScheduleSection {
            repeats,
            start_time,
            timezone,
            plan,
        };

        let pipeline = ctx.pipeline(raw.pipeline, &base)?;

        Ok(Config {
            path: path.to_path_buf(),
            connector,
            tenant,
            date_filter_days,
            schedule,
            action_credentials: raw.action_credentials.name.unwrap_or_default(),
            pipeline,
        })
    }

    /// Reads the client secret from its env var or 0600 file.
    pub fn secret(&self) -> Result<Secret, ConfigError> {
        match &self.tenant.secret {
            SecretSource::Env { var, line } => match std::env::var(var) {
                Ok(v) if !v.trim().is_empty() => Ok(Secret::new(v.trim().to_string())),
                Ok(_) => Err(self.err_at(
                    *line,
                    "tenant.client_secret_env",
                    &format!(
                        "the environment variable {var} is empty: set it to the client secret's Value (Entra admin center > App registrations > your app > Certificates & secrets)"
                    ),
                )),
                Err(_) => Err(self.err_at(
                    *line,
                    "tenant.client_secret_env",
                    &format!(
                        "the environment variable {var} is not set: export {var}=<client secret value> (the secret's Value, not its Secret ID), or use client_secret_file"
                    ),
                )),
            },
            SecretSource::File { path, line } => {
                check_secret_file_mode(path).map_err(|m| {
                    self.err_at(*line, "tenant.client_secret_file", &m)
                })?;
                let v = std::fs::read_to_string(path).map_err(|e| {
                    self.err_at(*line, "tenant.client_secret_file", &unreadable_secret_file(path, &e))
                })?;
                let v = v.trim();
                if v.is_empty() {
                    return Err(self.err_at(
                        *line,
                        "tenant.client_secret_file",
                        &format!("{} is empty: write the client secret's Value into it", path.display()),
                    ));
                }
                Ok(Secret::new(v.to_string()))
            }
        }
    }

    /// The raw-landing root: `<data_dir>/raw`.
    pub fn raw_dir(&self) -> PathBuf {
        crate::store::DataDir::new(&self.pipeline.data_dir).raw()
    }

    fn err_at(&self, line: usize, key: &str, message: &str) -> ConfigError {
        ConfigError {
            file: self.path.clone(),
            line: Some(line),
            key: key.into(),
            message: message.into(),
        }
    }
}

/// The certificates of a PEM bundle (`tenant.ca_bundle`); the error says what to fix.
pub fn load_ca_bundle(path: &Path) -> Result<Vec<reqwest::Certificate>, String> {
    let pem = std::fs::read(path).map_err(|e| {
        format!(
            "cannot read the CA bundle {}: {e}; point it at a PEM file with your proxy's root certificate",
            path.display()
        )
    })?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
        format!(
            "{} is not a PEM certificate bundle ({e}); export the root certificate as Base-64 (PEM), \"-----BEGIN CERTIFICATE-----\"",
            path.display()
        )
    })?;
    if certs.is_empty() {
        return Err(format!(
            "{} holds no certificate; export the root certificate as Base-64 (PEM), \"-----BEGIN CERTIFICATE-----\"",
            path.display()
        ));
    }
    Ok(certs)
}

/// Why the secret file cannot be read, and what to do.
fn unreadable_secret_file(path: &Path, e: &std::io::Error) -> String {
    let fix = if e.kind() == std::io::ErrorKind::NotFound {
        "create it holding only the client secret's Value (then `chmod 600` it), or fix the path: a relative path starts at the connector file's folder"
    } else {
        "make it a file the connector's user can read (mode 0600, owned by that user)"
    };
    format!("cannot read {}: {e}: {fix}", path.display())
}

#[cfg(unix)]
fn check_secret_file_mode(path: &Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path).map_err(|e| unreadable_secret_file(path, &e))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(format!(
            "{} is readable by others (mode {mode:03o}): run `chmod 600 {}` so only its owner can read the secret",
            path.display(),
            path.display()
        ));
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_secret_file_mode(_path: &Path) -> Result<(), String> {
    Ok(())
}

/// A parse in progress: the file and its text, to turn byte spans into line numbers.
struct Ctx<'a> {
    path: &'a Path,
    text: &'a str,
}

impl Ctx<'_> {
    fn line_of(&self, span: Range<usize>) -> usize {
        let end = span.start.min(self.text.len());
        self.text[..end].bytes().filter(|b| *b == b'\n').count() + 1
    }

    fn err(&self, span: Range<usize>, key: &str, message: &str) -> ConfigError {
        ConfigError {
            file: self.path.to_path_buf(),
            line: Some(self.line_of(span)),
            key: key.into(),
            message: message.into(),
        }
    }

    /// Turns a TOML/serde error into ours. Built from the message and span only: the
    /// toml crate's Display quotes the offending source line, which could hold a secret.
    fn toml_error(&self, e: &toml::de::Error) -> ConfigError {
        const TEMPLATE_HINT: &str = "`m365-connector init` prints every valid key with comments";
        let line = e.span().map(|s| self.line_of(s));
        let msg = e.message().trim().replace('\n', "; ");
        let text_of = |l: usize| self.text.lines().nth(l.checked_sub(1)?);
        // The section a line belongs to: the nearest `[section]` header at or above it.
        let section = line.and_then(|l| {
            (1..=l)
                .rev()
                .filter_map(|n| text_of(n).and_then(table_header))
                .next()
        });
        // `key = value` on the line, qualified by its section.
        let line_key = line
            .and_then(text_of)
            .filter(|l| table_header(l).is_none())
            .and_then(|l| l.split_once('='))
            .map(|(k, _)| k.trim().trim_matches('"').to_string())
            .filter(|k| is_bare_key(k));
        let qualified = |k: &str| match &section {
            Some(s) => format!("{s}.{k}"),
            None => k.to_string(),
        };
        // A top-level name is a section: an unknown `[table]` or a missing one.
        let is_section = |f: &str| {
            TEMPLATE
                .lines()
                .any(|l| table_header(l).as_deref() == Some(f))
        };
        let (key, message) = if let Some(field) = backticked(&msg, "unknown field `") {
            let expected = backticked_all(msg.split_once("expected").map_or("", |x| x.1));
            let top_level = line.and_then(text_of).and_then(table_header).as_deref()
                == Some(field.as_str())
                || expected.iter().any(|e| is_section(e));
            let is_header = line.and_then(text_of).and_then(table_header).is_some();
            let message = match section.as_ref().filter(|_| !top_level) {
                None if !is_header && template_section_of(&field).is_some() => {
                    let home = template_section_of(&field).unwrap_or_default();
                    format!(
                        "`{field}` is outside any section: it belongs in [{home}]; move it under the [{home}] header"
                    )
                }
                None => {
                    let hint = crate::mapping::nearest(&field, expected.iter().map(String::as_str))
                        .map(|n| format!("did you mean [{n}]? "))
                        .unwrap_or_default();
                    format!(
                        "unknown section [{field}]: {hint}the sections are {}; {TEMPLATE_HINT}",
                        expected
                            .iter()
                            .map(|e| format!("[{e}]"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                }
                Some(sec) => match template_section_of(&field).filter(|t| t != sec) {
                    Some(home) => format!(
                        "`{field}` belongs in [{home}], not in [{sec}]: move the line under [{home}]"
                    ),
                    None => {
                        let hint =
                            crate::mapping::nearest(&field, expected.iter().map(String::as_str))
                                .map(|n| format!("did you mean `{n}`? "))
                                .unwrap_or_default();
                        format!(
                            "unknown key in [{sec}]: {hint}[{sec}] takes {}; remove or rename it ({TEMPLATE_HINT})",
                            expected.join(", ")
                        )
                    }
                },
            };
            let key = if top_level {
                field.clone()
            } else {
                qualified(&field)
            };
            (key, message)
        } else if let Some(field) = backticked(&msg, "missing field `") {
            match section.as_ref().filter(|_| !is_section(&field)) {
                // The span of a missing key is its table, i.e. the section header.
                Some(sec) => {
                    let example = template_line(sec, &field)
                        .map(|l| format!(", e.g. {l}"))
                        .unwrap_or_default();
                    (
                        format!("{sec}.{field}"),
                        format!(
                            "missing key in [{sec}]: add it{example} (`m365-connector init` prints a template)"
                        ),
                    )
                }
                None => {
                    return ConfigError {
                        file: self.path.to_path_buf(),
                        line: None,
                        key: field.clone(),
                        message: format!(
                            "the [{field}] section is missing: add it (`m365-connector init` prints a template with every section)"
                        ),
                    };
                }
            }
        } else if let Some(rest) = msg.strip_prefix("invalid type: ") {
            let found = rest.split([',', ' ']).next().unwrap_or("");
            let expected = msg.split(", expected ").nth(1).unwrap_or("another type");
            let want = match expected {
                e if e.starts_with('i') || e.starts_with('u') || e.contains("integer") => {
                    "a whole number without quotes, e.g. 30"
                }
                e if e.contains("bool") => "true or false, without quotes",
                e if e.contains("string") => "text in double quotes",
                e => e,
            };
            let found = match found {
                "string" => "text in quotes",
                "integer" => "a number",
                "floating" => "a decimal number",
                "boolean" => "true/false",
                "map" => "a table",
                "sequence" => "an array",
                other => other,
            };
            // serde quotes the value it saw; only its kind is shown.
            (
                line_key
                    .as_deref()
                    .map(qualified)
                    .unwrap_or_else(|| "(file)".into()),
                format!("wrong type: expected {want}, found {found}"),
            )
        } else {
            let hint = if msg.contains("duplicate key") {
                "keep one of them".to_string()
            } else if msg.contains("invalid basic string") {
                "close the string with \" on the same line; control characters are not allowed in strings".to_string()
            } else if self.text.trim_start().starts_with('{') {
                "this looks like JSON: connector files are TOML; `m365-connector init` prints a template".to_string()
            } else {
                "the file must be valid TOML (https://toml.io)".to_string()
            };
            let key = line_key
                .as_deref()
                .map(qualified)
                .or_else(|| line.and_then(text_of).and_then(table_header))
                .unwrap_or_else(|| "(file)".into());
            (key, format!("{msg}: {hint}"))
        };
        ConfigError {
            file: self.path.to_path_buf(),
            line,
            key,
            message,
        }
    }

    fn tenant(&self, raw: RawTenant, base: &Path) -> Result<TenantSection, ConfigError> {
        if let Some(inline) = &raw.client_secret {
            return Err(self.err(
                inline.span(),
                "tenant.client_secret",
                "a secret written in the connector file is refused (files get copied, committed and backed up). Remove this line and set client_secret_env = \"M365_CLIENT_SECRET\" (then export M365_CLIENT_SECRET=<value>) or client_secret_file = \"/etc/m365/secret\" (mode 0600)",
            ));
        }
        let tenant_id = raw.tenant_id.get_ref().trim().to_string();
        if matches!(
            tenant_id.to_ascii_lowercase().as_str(),
            "common" | "organizations" | "consumers"
        ) {
            return Err(self.err(
                raw.tenant_id.span(),
                "tenant.tenant_id",
                "common, organizations and consumers are multi-tenant endpoints; client credentials need your tenant: use the Directory (tenant) ID GUID from Entra admin center > Overview",
            ));
        }
        if !is_guid(&tenant_id) && !is_domain(&tenant_id) {
            return Err(self.err(
                raw.tenant_id.span(),
                "tenant.tenant_id",
                &format!(
                    "{tenant_id:?} is neither a GUID nor a domain: copy the Directory (tenant) ID from Entra admin center > Overview (e.g. 72f988bf-86f1-41af-91ab-2d7cd011db47) or use a verified domain such as contoso.onmicrosoft.com"
                ),
            ));
        }
        let client_id = raw.client_id.get_ref().trim().to_string();
        if !is_guid(&client_id) {
            return Err(self.err(
                raw.client_id.span(),
                "tenant.client_id",
                &format!(
                    "{client_id:?} is not a GUID: copy the Application (client) ID from Entra admin center > App registrations > your app > Overview"
                ),
            ));
        }
        let secret = match (&raw.client_secret_env, &raw.client_secret_file) {
            (Some(_), Some(f)) => {
                return Err(self.err(
                    f.span(),
                    "tenant.client_secret_file",
                    "both client_secret_env and client_secret_file are set: keep exactly one",
                ));
            }
            (Some(e), None) => {
                let var = e.get_ref().trim();
                if var.is_empty() || !var.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                    return Err(self.err(
                        e.span(),
                        "tenant.client_secret_env",
                        "must be the NAME of an environment variable (letters, digits, _), e.g. \"M365_CLIENT_SECRET\", not the secret itself",
                    ));
                }
                SecretSource::Env {
                    var: var.to_string(),
                    line: self.line_of(e.span()),
                }
            }
            (None, Some(f)) => {
                let p = f.get_ref().trim();
                if p.is_empty() {
                    return Err(self.err(
                        f.span(),
                        "tenant.client_secret_file",
                        "is empty: give the path of a file (mode 0600) holding the secret value",
                    ));
                }
                SecretSource::File {
                    path: base.join(p),
                    line: self.line_of(f.span()),
                }
            }
            (None, None) => {
                return Err(self.err(
                    raw.client_id.span(),
                    "tenant.client_secret_env",
                    "no client secret source: add client_secret_env = \"M365_CLIENT_SECRET\" or client_secret_file = \"/path/to/secret\" to [tenant]",
                ));
            }
        };
        let cloud = match &raw.cloud {
            None => Cloud::Global,
            Some(c) => Cloud::parse(c.get_ref().trim()).ok_or_else(|| {
                self.err(
                    c.span(),
                    "tenant.cloud",
                    &format!(
                        "{:?} is not a known cloud: use one of {}",
                        c.get_ref(),
                        Cloud::NAMES.join(", ")
                    ),
                )
            })?,
        };
        let login_url = self.root_url(
            raw.login_url.as_ref(),
            "tenant.login_url",
            cloud.login_root(),
        )?;
        let graph_url = self.root_url(
            raw.graph_url.as_ref(),
            "tenant.graph_url",
            cloud.graph_root(),
        )?;
        let ca_bundle = match &raw.ca_bundle {
            None => None,
            Some(p) => {
                let path = base.join(p.get_ref());
                load_ca_bundle(&path).map_err(|m| self.err(p.span(), "tenant.ca_bundle", &m))?;
                Some(path)
            }
        };
        Ok(TenantSection {
            tenant_id,
            client_id,
            secret,
            cloud,
            login_url,
            graph_url,
            scope: format!("{}/.default", cloud.graph_root()),
            ca_bundle,
        })
    }

    fn root_url(
        &self,
        raw: Option<&Spanned<String>>,
        key: &str,
        default: &str,
    ) -> Result<Url, ConfigError> {
        let Some(raw) = raw else {
            return Ok(Url::parse(default).expect("built-in URL"));
        };
        let text = raw.get_ref().trim().trim_end_matches('/');
        let url = Url::parse(text).map_err(|e| {
            self.err(
                raw.span(),
                key,
                &format!(
                    "{text:?} is not a URL ({e}): use a root such as https://graph.microsoft.com"
                ),
            )
        })?;
        match url.scheme() {
            "https" => {}
            "http" if is_loopback(&url) => {}
            "http" => {
                return Err(self.err(
                    raw.span(),
                    key,
                    "plain http is only allowed to loopback (127.0.0.1, ::1, localhost); use https",
                ));
            }
            other => {
                return Err(self.err(
                    raw.span(),
                    key,
                    &format!("scheme {other:?} is not supported: use https"),
                ));
            }
        }
        if url.host_str().is_none() || url.path() != "/" || url.query().is_some() {
            return Err(self.err(
                raw.span(),
                key,
                "must be a host root without path or query, e.g. https://graph.microsoft.com (no /v1.0)",
            ));
        }
        Ok(url)
    }

    fn pipeline(&self, raw: RawPipeline, base: &Path) -> Result<PipelineSection, ConfigError> {
        let report_period = match &raw.report_period {
            None => "D30".to_string(),
            Some(p) => {
                let v = p.get_ref().trim().to_ascii_uppercase();
                if !REPORT_PERIODS.contains(&v.as_str()) {
                    return Err(self.err(
                        p.span(),
                        "pipeline.report_period",
                        &format!(
                            "{:?} is not a report period: use one of {}",
                            p.get_ref(),
                            REPORT_PERIODS.join(", ")
                        ),
                    ));
                }
                v
            }
        };
        let positive = |v: &Option<Spanned<i64>>, key: &str, default: u64, max: i64| match v {
            None => Ok(default),
            Some(s) if (1..=max).contains(s.get_ref()) => Ok(*s.get_ref() as u64),
            Some(s) => Err(self.err(
                s.span(),
                key,
                &format!(
                    "{} is out of range: use a whole number from 1 to {max}",
                    s.get_ref()
                ),
            )),
        };
        Ok(PipelineSection {
            // `data_dir = "."` means the file's own folder (no `./` in every path shown).
            data_dir: match raw.data_dir.as_deref().unwrap_or("data") {
                "." | "./" => base.to_path_buf(),
                d => base.join(d),
            },
            mappings: raw.mappings.map(|m| base.join(m)),
            sql_dir: raw.sql_dir.map(|m| base.join(m)),
            report_period,
            incremental: raw.incremental.unwrap_or(false),
            max_wait_seconds: positive(
                &raw.max_wait_seconds,
                "pipeline.max_wait_seconds",
                900,
                86_400,
            )?,
            request_timeout_seconds: positive(
                &raw.request_timeout_seconds,
                "pipeline.request_timeout_seconds",
                120,
                3_600,
            )?,
            download_timeout_seconds: positive(
                &raw.download_timeout_seconds,
                "pipeline.download_timeout_seconds",
                900,
                86_400,
            )?,
            unreachable_seconds: positive(
                &raw.unreachable_seconds,
                "pipeline.unreachable_seconds",
                60,
                86_400,
            )?,
            retry_base_ms: positive(&raw.retry_base_ms, "pipeline.retry_base_ms", 500, 60_000)?,
            checkpoint_pages: positive(
                &raw.checkpoint_pages,
                "pipeline.checkpoint_pages",
                50,
                100_000,
            )?,
            memory_limit_mib: match &raw.memory_limit_mib {
                None => DEFAULT_MEMORY_LIMIT_MIB,
                Some(s) if (MIN_MEMORY_LIMIT_MIB as i64..=1_048_576).contains(s.get_ref()) => {
                    *s.get_ref() as u64
                }
                Some(s) => {
                    return Err(self.err(
                        s.span(),
                        "pipeline.memory_limit_mib",
                        &format!(
                            "{} is out of range: use a whole number of MiB from {MIN_MEMORY_LIMIT_MIB} to 1048576 (default {DEFAULT_MEMORY_LIMIT_MIB})",
                            s.get_ref()
                        ),
                    ));
                }
            },
        })
    }
}

/// True for hosts plain http may reach: loopback IPs and `localhost`.
pub fn is_loopback(url: &Url) -> bool {
    match url.host_str() {
        Some(h) if h.eq_ignore_ascii_case("localhost") => true,
        Some(h) => h
            .trim_matches(['[', ']'])
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback()),
        None => false,
    }
}

/// `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`, hex digits.
pub fn is_guid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// A DNS name with at least one dot, e.g. `contoso.onmicrosoft.com`.
fn is_domain(s: &str) -> bool {
    s.len() <= 253
        && s.contains('.')
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// `[section]` on a line (comments and spaces aside); `None` for any other line.
fn table_header(line: &str) -> Option<String> {
    let l = line.split('#').next().unwrap_or("").trim();
    let name = l.strip_prefix('[')?.strip_suffix(']')?.trim();
    (!name.starts_with('[') && is_bare_key(name)).then(|| name.to_string())
}

/// A TOML bare key (letters, digits, `_`, `-`), short enough to be a key.
fn is_bare_key(k: &str) -> bool {
    !k.is_empty()
        && k.len() <= 64
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// The text between the first `prefix` and the next backtick.
fn backticked(msg: &str, prefix: &str) -> Option<String> {
    let rest = &msg[msg.find(prefix)? + prefix.len()..];
    Some(rest[..rest.find('`')?].to_string())
}

/// Every `name` between backticks, in order.
fn backticked_all(s: &str) -> Vec<String> {
    s.split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

/// The section of [`TEMPLATE`] that documents `key` (also as a commented-out line).
fn template_section_of(key: &str) -> Option<String> {
    let mut section = None;
    for line in TEMPLATE.lines() {
        if let Some(s) = table_header(line) {
            section = Some(s);
        } else if template_key(line) == Some(key) {
            return section;
        }
    }
    None
}

/// The template's `key = value` line for `key` in `section`, without its comment.
fn template_line(section: &str, key: &str) -> Option<String> {
    let mut current = None;
    for line in TEMPLATE.lines() {
        if let Some(s) = table_header(line) {
            current = Some(s);
        } else if current.as_deref() == Some(section) && template_key(line) == Some(key) {
            let l = line.trim_start_matches(['#', ' ']);
            let value = l.split_once('=')?.1.split(" #").next()?.trim();
            return Some(format!("{key} = {value}"));
        }
    }
    None
}

/// The key of a template line `key = value` or `# key = value`.
fn template_key(line: &str) -> Option<&str> {
    let l = line.trim_start_matches(['#', ' ']);
    let (k, _) = l.split_once(" = ")?;
    is_bare_key(k.trim()).then(|| k.trim())
}

/// The commented template printed by `m365-connector init`.
pub const TEMPLATE: &str = r#"# m365-connector: one file per connector. Every key is shown with its default.
# Relative paths are relative to this file's folder. Unknown keys are errors.

[connector]
name = "Contoso M365"       # the name admins see in `status` and in exports
server = "cloud"            # "cloud", or the name of the on-premises connector server that runs it
active = true               # inactive connectors are never run by `serve`

[tenant]
# Entra admin center > Overview > Directory (tenant) ID, or a verified domain.
tenant_id = "00000000-0000-0000-0000-000000000000"
# Entra admin center > App registrations > your app > Overview > Application (client) ID.
client_id = "00000000-0000-0000-0000-000000000000"
# The client secret's Value (not its Secret ID) is read from an environment variable...
client_secret_env = "M365_CLIENT_SECRET"
# ...or from a file only its owner can read (chmod 600). Use exactly one of the two.
# client_secret_file = "/etc/m365-connector/contoso.secret"
cloud = "global"            # global | usgov | usgov-dod | china
# Overrides of the cloud's hosts, e.g. for the built-in simulator (`m365-connector sim`).
# Roots only (no /v1.0); plain http only to loopback.
# login_url = "http://127.0.0.1:8400"
# graph_url = "http://127.0.0.1:8400"
# Behind a TLS-inspecting proxy: its root certificate (PEM), trusted besides the platform's.
# HTTPS_PROXY / NO_PROXY in the environment choose the proxy.
# ca_bundle = "/etc/m365-connector/proxy-root.pem"

[filter]
# Keep only users who checked in or otherwise changed within this many days; 0 = keep all.
date_filter_days = 30

[schedule]
repeats = "daily"           # "hourly", "every 6 hours", "daily", "weekly on mon,thu", "monthly on 1"
start_time = "02:00"        # 24-hour HH:MM in `timezone`; nights and weekends are kindest
timezone = "UTC"            # IANA name, e.g. "Europe/Amsterdam"

[action_credentials]
# Reference to the (more privileged) credentials the platform uses for People actions.
# Stored with the connector, never used to read Graph.
name = ""

[pipeline]
data_dir = "data"           # raw Parquet, staging.duckdb and exports live here
# mappings = "mappings/microsoft365.csv"   # default: the built-in mapping
# sql_dir = "sql"                          # default: the built-in SQL models
report_period = "D30"       # usage-report period: D7 | D30 | D90 | D180
incremental = false         # true: users via /users/delta; later runs fetch only the changes
max_wait_seconds = 900      # cap on total throttling/backoff waits in one run
request_timeout_seconds = 120 # total deadline per Graph request; a body still arriving then is a stall
download_timeout_seconds = 900 # total deadline per report download
unreachable_seconds = 60    # a host that does not resolve, refuses or fails TLS: fail after this long
retry_base_ms = 500         # first backoff step when Graph sends no Retry-After
checkpoint_pages = 50       # users pages per checkpoint: a killed extract resumes after it
memory_limit_mib = 512      # DuckDB memory for transform/load; beyond it, spill to data_dir/.duckdb-tmp
"#;

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[connector]
name = "Contoso"
[tenant]
tenant_id = "72f988bf-86f1-41af-91ab-2d7cd011db47"
client_id = "5d7e9f1a-2b3c-4d5e-8f9a-0b1c2d3e4f5a"
client_secret_env = "M365_TEST_SECRET_X"
"#;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(Path::new("/etc/m365/contoso.toml"), text)
    }

    #[test]
    fn template_parses_with_defaults() {
        let c = parse(TEMPLATE).expect("template is valid");
        assert_eq!(c.connector.server, "cloud");
        assert_eq!(c.date_filter_days, 30);
        assert_eq!(c.tenant.graph_url.as_str(), "https://graph.microsoft.com/");
        assert_eq!(c.tenant.scope, "https://graph.microsoft.com/.default");
        assert_eq!(c.pipeline.data_dir, PathBuf::from("/etc/m365/data"));
    }

    #[test]
    fn unknown_key_names_line_and_key() {
        let e = parse(&format!("{GOOD}colour = \"blue\"\n")).unwrap_err();
        assert_eq!(e.line, Some(8));
        assert_eq!(e.key, "tenant.colour");
        assert!(e.message.starts_with("unknown key in [tenant]: "), "{e}");
        assert!(
            e.to_string()
                .starts_with("/etc/m365/contoso.toml:8: tenant.colour:"),
            "{e}"
        );
        // A typo gets a suggestion, a key in the wrong section its home, a table its name.
        let e = parse(&format!("{GOOD}client_secret_enb = \"X\"\n")).unwrap_err();
        assert!(
            e.message.contains("did you mean `client_secret_env`?"),
            "{e}"
        );
        let e = parse(&format!("{GOOD}[pipeline]\ndate_filter_days = 3\n")).unwrap_err();
        assert_eq!(
            (e.key.as_str(), e.line),
            ("pipeline.date_filter_days", Some(9))
        );
        assert!(e.message.contains("belongs in [filter]"), "{e}");
        let e = parse(&format!("{GOOD}[filters]\ndate_filter_days = 3\n")).unwrap_err();
        assert_eq!((e.key.as_str(), e.line), ("filters", Some(8)));
        assert!(e.message.contains("did you mean [filter]?"), "{e}");
        let e = parse(&format!("date_filter_days = 3\n{GOOD}")).unwrap_err();
        assert!(e.message.contains("outside any section"), "{e}");
    }

    #[test]
    fn unreadable_text_and_empty_files_say_what_to_do() {
        let dir = std::env::temp_dir().join(format!("m365-cfg-{}", crate::random::u64()));
        std::fs::create_dir_all(&dir).unwrap();
        let latin1 = dir.join("latin1.toml");
        std::fs::write(&latin1, b"[connector]\nname = \"Caf\xe9\"\n").unwrap();
        let e = Config::load(&latin1).unwrap_err();
        assert_eq!(e.line, Some(2));
        assert!(
            e.message.contains("not UTF-8") && e.message.contains("0xe9"),
            "{e}"
        );
        let empty = dir.join("empty.toml");
        std::fs::write(&empty, "# nothing yet\n\n").unwrap();
        let e = Config::load(&empty).unwrap_err();
        assert!(e.message.contains("m365-connector init >"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn inline_secret_refused_without_echoing_it() {
        let text = GOOD.replace(
            "client_secret_env = \"M365_TEST_SECRET_X\"",
            "client_secret = \"s3cr3t~value\"",
        );
        let e = parse(&text).unwrap_err();
        assert_eq!(e.key, "tenant.client_secret");
        assert_eq!(e.line, Some(7));
        assert!(e.message.contains("client_secret_env"));
        assert!(!format!("{e} {e:?}").contains("s3cr3t"));
    }

    #[test]
    fn bad_guid_names_key() {
        let e = parse(&GOOD.replace("5d7e9f1a-2b3c", "5d7e9f1a-2b3")).unwrap_err();
        assert_eq!(e.key, "tenant.client_id");
        assert_eq!(e.line, Some(6));
        let e = parse(&GOOD.replace("72f988bf-86f1-41af-91ab-2d7cd011db47", "not a tenant"))
            .unwrap_err();
        assert_eq!(e.key, "tenant.tenant_id");
    }

    #[test]
    fn domain_tenant_accepted() {
        let c = parse(&GOOD.replace(
            "72f988bf-86f1-41af-91ab-2d7cd011db47",
            "contoso.onmicrosoft.com",
        ))
        .unwrap();
        assert_eq!(c.tenant.tenant_id, "contoso.onmicrosoft.com");
    }

    #[test]
    fn missing_secret_env_is_clear() {
        let c = parse(&GOOD.replace("M365_TEST_SECRET_X", "M365_SURELY_UNSET_VAR_123")).unwrap();
        let e = c.secret().unwrap_err();
        assert_eq!(e.line, Some(7));
        assert!(
            e.message.contains("M365_SURELY_UNSET_VAR_123 is not set"),
            "{e}"
        );
    }

    #[test]
    fn secret_never_prints() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s} {s:?}"), "[redacted] Secret([redacted])");
    }

    #[test]
    fn http_only_to_loopback() {
        let ok = format!("{GOOD}graph_url = \"http://127.0.0.1:8400\"\n");
        assert_eq!(parse(&ok).unwrap().tenant.graph_url.port(), Some(8400));
        let bad = format!("{GOOD}graph_url = \"http://graph.example.com\"\n");
        let e = parse(&bad).unwrap_err();
        assert_eq!(e.key, "tenant.graph_url");
        assert!(e.message.contains("loopback"));
        let path = format!("{GOOD}graph_url = \"https://graph.microsoft.com/v1.0\"\n");
        assert!(parse(&path).unwrap_err().message.contains("no /v1.0"));
    }

    #[test]
    fn wrong_type_does_not_echo_value() {
        let e = parse(&GOOD.replace("name = \"Contoso\"", "name = 42")).unwrap_err();
        assert_eq!((e.key.as_str(), e.line), ("connector.name", Some(3)));
        assert_eq!(
            e.message,
            "wrong type: expected text in double quotes, found a number"
        );
        let e = parse(&format!("{GOOD}[filter]\ndate_filter_days = \"s3cr3t\"\n")).unwrap_err();
        assert!(e.message.contains("a whole number without quotes"), "{e}");
        assert!(!e.to_string().contains("s3cr3t"), "{e}");
    }

    #[test]
    fn bad_start_time_and_period() {
        let e = parse(&format!("{GOOD}[schedule]\nstart_time = \"25:00\"\n")).unwrap_err();
        assert_eq!((e.key.as_str(), e.line), ("schedule.start_time", Some(9)));
        let e = parse(&format!("{GOOD}[pipeline]\nreport_period = \"D31\"\n")).unwrap_err();
        assert_eq!(e.key, "pipeline.report_period");
        let e = parse(&format!(
            "{GOOD}[schedule]\nrepeats = \"weekly on mnday\"\n"
        ))
        .unwrap_err();
        assert_eq!((e.key.as_str(), e.line), ("schedule.repeats", Some(9)));
        assert!(e.message.contains("mnday"), "{e}");
        let e = parse(&format!(
            "{GOOD}[schedule]\ntimezone = \"Europe/Amsterdm\"\n"
        ))
        .unwrap_err();
        assert_eq!((e.key.as_str(), e.line), ("schedule.timezone", Some(9)));
        assert!(e.message.contains("Europe/Amsterdam"), "{e}");
    }

    #[test]
    fn missing_section_and_key_are_named() {
        let e = parse("[connector]\nname = \"x\"\n").unwrap_err();
        assert_eq!((e.key.as_str(), e.line), ("tenant", None));
        assert!(e.message.contains("the [tenant] section is missing"), "{e}");
        let e = parse(&GOOD.replace("client_id = \"5d7e9f1a-2b3c-4d5e-8f9a-0b1c2d3e4f5a\"\n", ""))
            .unwrap_err();
        assert_eq!((e.key.as_str(), e.line), ("tenant.client_id", Some(4)));
        assert!(e.message.contains("e.g. client_id = \""), "{e}");
    }

    #[test]
    fn multi_tenant_endpoints_are_explained() {
        let e = parse(&GOOD.replace("72f988bf-86f1-41af-91ab-2d7cd011db47", "organizations"))
            .unwrap_err();
        assert!(e.message.contains("multi-tenant endpoints"), "{e}");
    }
}
