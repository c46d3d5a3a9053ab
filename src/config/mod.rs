//! One connector's TOML file → one validated [`Config`] (DESIGN.md "Configuration").
//!
//! Every error names the file, the line and the key, and says how to fix it. The client
//! secret is never read from the file itself: only an env var name or a 0600 file path is,
//! and the value lives in [`Secret`], which refuses to print.
//!
//! This file holds what the rest of the crate sees: the validated types and [`Config::load`].
//! How a file becomes one is split by job, so each can be read (and audited) alone:
//! - `raw`: the TOML shape serde reads, with spans for line numbers;
//! - `validate`: raw → [`Config`], one check per key, each error with its fix;
//! - `toml_error`: what the toml crate rejects, explained without echoing values;
//! - `template`: the commented template `init` prints, also the source of "did you mean";
//! - `secret`: where the secret comes from, how it is read, why it never prints;
//! - `ca_bundle`: the extra trusted roots, read at validation and by the Graph client;
//! - `fingerprint`: [`Config::fingerprint`], the settings a resumable run depends on.

mod ca_bundle;
mod fingerprint;
mod raw;
mod secret;
mod template;
mod toml_error;
mod validate;

use std::path::{Path, PathBuf};

use chrono::NaiveTime;
use reqwest::Url;

pub use ca_bundle::load_ca_bundle;
pub use secret::{Secret, SecretSource};
pub use template::TEMPLATE;
pub use validate::{is_guid, is_loopback};

/// A configuration problem, located in the file (no line = the file as a whole).
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
    /// Users ranges walked at once (`userPrincipalName` partitions, see
    /// `extract/users_walk.rs`); 1 walks `/users` serially.
    pub users_concurrency: u64,
    /// Read every user's manager: `$expand=manager($select=id)` on `/users` (Graph caps
    /// those pages at 100 users, so 10× the requests) or `manager` in the delta `$select`.
    pub manager: bool,
    /// Whether to read `signInActivity` (AuditLog.Read.All + Entra ID P1/P2; 5 requests per
    /// 10 s): its own stream, `users_sign_in`.
    pub sign_in_activity: SignInActivity,
    /// DuckDB's memory limit for transform and load; beyond it DuckDB spills to
    /// `<data_dir>/.duckdb-tmp` instead of growing with the tenant.
    pub memory_limit_mib: u64,
}

/// `[pipeline] sign_in_activity`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SignInActivity {
    /// Read it when the token's `roles` hold AuditLog.Read.All; a tenant without Entra ID P1
    /// (403) is a warning.
    #[default]
    Auto,
    /// Always try (a token whose roles cannot be read, a role granted since sign-in); a
    /// refusal is a warning with the fix, not a failed run.
    On,
    /// Never read it: no request is made.
    Off,
}

impl SignInActivity {
    pub const NAMES: [&'static str; 3] = ["auto", "on", "off"];

    pub fn name(self) -> &'static str {
        match self {
            SignInActivity::Auto => "auto",
            SignInActivity::On => "on",
            SignInActivity::Off => "off",
        }
    }
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
}

/// The connector file every unit test of this module starts from, and its parser.
#[cfg(test)]
mod test_support {
    use std::path::Path;

    use super::{Config, ConfigError};

    pub(super) const GOOD: &str = r#"
[connector]
name = "Contoso"
[tenant]
tenant_id = "72f988bf-86f1-41af-91ab-2d7cd011db47"
client_id = "5d7e9f1a-2b3c-4d5e-8f9a-0b1c2d3e4f5a"
client_secret_env = "M365_TEST_SECRET_X"
"#;

    pub(super) fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(Path::new("/etc/m365/contoso.toml"), text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unreadable_text_and_empty_files_say_what_to_do() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
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
    }
}
