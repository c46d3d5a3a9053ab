//! The commented template `m365-connector init` prints, and what error messages read from it.
//!
//! The template is the one list of every section and key with its default and its comment.
//! Error messages look keys up in it (which section a misplaced key belongs in, an example
//! line for a missing one), so a new key documented here is also explained there.

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
users_concurrency = 16      # userPrincipalName ranges walked at once (1 = one serial /users walk)
manager = false             # read each user's manager: Graph caps those /users pages at 100 users, 10x the requests
sign_in_activity = "auto"   # auto | on | off: last sign-in dates; needs AuditLog.Read.All + Entra ID P1, 5 requests per 10 s
memory_limit_mib = 512      # DuckDB memory for transform/load; beyond it, spill to data_dir/.duckdb-tmp
"#;

/// The section of [`TEMPLATE`] that documents `key` (also as a commented-out line).
pub(super) fn template_section_of(key: &str) -> Option<String> {
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
pub(super) fn template_line(section: &str, key: &str) -> Option<String> {
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

/// True if `name` is one of the template's `[section]`s.
pub(super) fn is_template_section(name: &str) -> bool {
    TEMPLATE
        .lines()
        .any(|l| table_header(l).as_deref() == Some(name))
}

// ---- reading TOML lines (the template's and the user's file, for error messages) --------

/// `[section]` on a line (comments and spaces aside); `None` for any other line.
pub(super) fn table_header(line: &str) -> Option<String> {
    let l = line.split('#').next().unwrap_or("").trim();
    let name = l.strip_prefix('[')?.strip_suffix(']')?.trim();
    (!name.starts_with('[') && is_bare_key(name)).then(|| name.to_string())
}

/// A TOML bare key (letters, digits, `_`, `-`), short enough to be a key.
pub(super) fn is_bare_key(k: &str) -> bool {
    !k.is_empty()
        && k.len() <= 64
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::super::test_support::parse;
    use super::*;

    #[test]
    fn template_parses_with_defaults() {
        let c = parse(TEMPLATE).expect("template is valid");
        assert_eq!(c.connector.server, "cloud");
        assert_eq!(c.date_filter_days, 30);
        assert_eq!(c.tenant.graph_url.as_str(), "https://graph.microsoft.com/");
        assert_eq!(c.tenant.scope, "https://graph.microsoft.com/.default");
        assert_eq!(c.pipeline.data_dir, PathBuf::from("/etc/m365/data"));
    }
}
