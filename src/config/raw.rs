//! The connector file's shape as serde reads it: every section and key, nothing validated.
//!
//! Kept apart from validation so the accepted keys can be read at a glance. Values the
//! checks may reject are [`Spanned`], so the error can name their line; unknown keys are
//! refused (`deny_unknown_fields`), never silently ignored.

use serde::Deserialize;
use toml::Spanned;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    pub(super) connector: RawConnector,
    pub(super) tenant: RawTenant,
    #[serde(default)]
    pub(super) filter: RawFilter,
    #[serde(default)]
    pub(super) schedule: RawSchedule,
    #[serde(default)]
    pub(super) action_credentials: RawActionCredentials,
    #[serde(default)]
    pub(super) pipeline: RawPipeline,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConnector {
    pub(super) name: Spanned<String>,
    #[serde(default)]
    pub(super) server: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) active: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTenant {
    pub(super) tenant_id: Spanned<String>,
    pub(super) client_id: Spanned<String>,
    #[serde(default)]
    pub(super) client_secret_env: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) client_secret_file: Option<Spanned<String>>,
    /// Only here to refuse it with a useful message; its value is never read or echoed.
    #[serde(default)]
    pub(super) client_secret: Option<Spanned<toml::Value>>,
    #[serde(default)]
    pub(super) cloud: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) login_url: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) graph_url: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) ca_bundle: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFilter {
    #[serde(default)]
    pub(super) date_filter_days: Option<Spanned<i64>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSchedule {
    #[serde(default)]
    pub(super) repeats: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) start_time: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) timezone: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawActionCredentials {
    #[serde(default)]
    pub(super) name: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPipeline {
    #[serde(default)]
    pub(super) data_dir: Option<String>,
    #[serde(default)]
    pub(super) mappings: Option<String>,
    #[serde(default)]
    pub(super) sql_dir: Option<String>,
    #[serde(default)]
    pub(super) report_period: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) incremental: Option<bool>,
    #[serde(default)]
    pub(super) max_wait_seconds: Option<Spanned<i64>>,
    #[serde(default)]
    pub(super) request_timeout_seconds: Option<Spanned<i64>>,
    #[serde(default)]
    pub(super) download_timeout_seconds: Option<Spanned<i64>>,
    #[serde(default)]
    pub(super) unreachable_seconds: Option<Spanned<i64>>,
    #[serde(default)]
    pub(super) retry_base_ms: Option<Spanned<i64>>,
    #[serde(default)]
    pub(super) checkpoint_pages: Option<Spanned<i64>>,
    #[serde(default)]
    pub(super) users_concurrency: Option<Spanned<i64>>,
    #[serde(default)]
    pub(super) manager: Option<bool>,
    #[serde(default)]
    pub(super) sign_in_activity: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) memory_limit_mib: Option<Spanned<i64>>,
}
