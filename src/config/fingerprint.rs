//! The connector fingerprint: a sha256 of exactly the settings that shape a run.
//!
//! Every run row records it, and an interrupted extract resumes only under the fingerprint
//! it started with (extract/resume.rs): a changed setting starts afresh. So it hashes an explicit
//! JSON document ([`Fingerprinted`]) named after the connector file's keys, not Rust's
//! `Debug` output: renaming a Rust field, or reformatting the file (comments, key order,
//! lines), does not discard resumable runs, and changing a setting does. The secret's value
//! is never in [`Config`]; only where it comes from is fingerprinted.

use std::borrow::Cow;
use std::path::Path;

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::{
    Config, ConnectorSection, PipelineSection, ScheduleSection, SecretSource, TenantSection,
};

impl Config {
    /// sha256 (hex) of the settings that shape a run; see the module comment.
    pub fn fingerprint(&self) -> String {
        crate::digest::hex(&Sha256::digest(fingerprinted_json(self).as_bytes()))
    }
}

/// The text that is hashed: [`Fingerprinted`] as compact JSON.
fn fingerprinted_json(cfg: &Config) -> String {
    serde_json::to_string(&Fingerprinted::of(cfg))
        .expect("strings, numbers and booleans always serialise")
}

/// What a run depends on, section by section, named as in the connector file (the names are
/// spelled out so that renaming a Rust field changes nothing). A new setting that shapes a run
/// belongs here, and in the pinned text of the test below.
#[derive(Serialize)]
struct Fingerprinted<'a> {
    #[serde(rename = "connector")]
    connector: Connector<'a>,
    #[serde(rename = "tenant")]
    tenant: Tenant<'a>,
    #[serde(rename = "filter")]
    filter: Filter,
    #[serde(rename = "schedule")]
    schedule: Schedule<'a>,
    #[serde(rename = "action_credentials")]
    action_credentials: ActionCredentials<'a>,
    #[serde(rename = "pipeline")]
    pipeline: Pipeline<'a>,
}

#[derive(Serialize)]
struct Connector<'a> {
    #[serde(rename = "name")]
    name: &'a str,
    #[serde(rename = "server")]
    server: &'a str,
    #[serde(rename = "active")]
    active: bool,
}

/// The tenant and how to reach it. Of the secret only its source: the variable's name or
/// the file's path (the value is not in [`Config`]; rotating it keeps the fingerprint).
#[derive(Serialize)]
struct Tenant<'a> {
    #[serde(rename = "tenant_id")]
    tenant_id: &'a str,
    #[serde(rename = "client_id")]
    client_id: &'a str,
    #[serde(rename = "client_secret_env")]
    client_secret_env: Option<&'a str>,
    #[serde(rename = "client_secret_file")]
    client_secret_file: Option<Cow<'a, str>>,
    #[serde(rename = "cloud")]
    cloud: &'static str,
    /// The hosts in use: the override, or the cloud's.
    #[serde(rename = "login_url")]
    login_url: &'a str,
    #[serde(rename = "graph_url")]
    graph_url: &'a str,
    #[serde(rename = "scope")]
    scope: &'a str,
    #[serde(rename = "ca_bundle")]
    ca_bundle: Option<Cow<'a, str>>,
}

#[derive(Serialize)]
struct Filter {
    #[serde(rename = "date_filter_days")]
    date_filter_days: u32,
}

#[derive(Serialize)]
struct Schedule<'a> {
    #[serde(rename = "repeats")]
    repeats: &'a str,
    /// `HH:MM`, as written in the file.
    #[serde(rename = "start_time")]
    start_time: String,
    #[serde(rename = "timezone")]
    timezone: &'a str,
}

#[derive(Serialize)]
struct ActionCredentials<'a> {
    #[serde(rename = "name")]
    name: &'a str,
}

/// Paths as resolved (relative ones against the connector file's folder).
#[derive(Serialize)]
struct Pipeline<'a> {
    #[serde(rename = "data_dir")]
    data_dir: Cow<'a, str>,
    #[serde(rename = "mappings")]
    mappings: Option<Cow<'a, str>>,
    #[serde(rename = "sql_dir")]
    sql_dir: Option<Cow<'a, str>>,
    #[serde(rename = "report_period")]
    report_period: &'a str,
    #[serde(rename = "incremental")]
    incremental: bool,
    #[serde(rename = "max_wait_seconds")]
    max_wait_seconds: u64,
    #[serde(rename = "request_timeout_seconds")]
    request_timeout_seconds: u64,
    #[serde(rename = "download_timeout_seconds")]
    download_timeout_seconds: u64,
    #[serde(rename = "unreachable_seconds")]
    unreachable_seconds: u64,
    #[serde(rename = "retry_base_ms")]
    retry_base_ms: u64,
    #[serde(rename = "checkpoint_pages")]
    checkpoint_pages: u64,
    #[serde(rename = "memory_limit_mib")]
    memory_limit_mib: u64,
    /// What the users walk fetches. Left out at its default so the fingerprints of
    /// connectors written before the setting existed did not change.
    #[serde(rename = "manager", skip_serializing_if = "std::ops::Not::not")]
    manager: bool,
    #[serde(rename = "sign_in_activity", skip_serializing_if = "is_auto")]
    sign_in_activity: &'static str,
}

fn is_auto(v: &&str) -> bool {
    *v == "auto"
}

/// A path as text; a path that is not UTF-8 is hashed lossily (still a setting like any).
fn text(path: &Path) -> Cow<'_, str> {
    path.to_string_lossy()
}

impl<'a> Fingerprinted<'a> {
    /// Every field of [`Config`] is named here (no `..`), so a new one does not compile until
    /// it is either fingerprinted or left out on purpose, with the reason.
    fn of(cfg: &'a Config) -> Fingerprinted<'a> {
        let Config {
            // Where the file is, not what it says: a copy elsewhere is the same connector.
            path: _,
            connector,
            tenant,
            date_filter_days,
            schedule,
            action_credentials,
            pipeline,
        } = cfg;
        let ConnectorSection {
            name,
            server,
            active,
        } = connector;
        let TenantSection {
            tenant_id,
            client_id,
            secret,
            cloud,
            login_url,
            graph_url,
            scope,
            ca_bundle,
        } = tenant;
        // The line a source is on is only for error messages.
        let (client_secret_env, client_secret_file) = match secret {
            SecretSource::Env { var, line: _ } => (Some(var.as_str()), None),
            SecretSource::File { path, line: _ } => (None, Some(text(path))),
        };
        let ScheduleSection {
            repeats,
            start_time,
            timezone,
            // Computed from the three above.
            plan: _,
        } = schedule;
        let PipelineSection {
            data_dir,
            mappings,
            sql_dir,
            report_period,
            incremental,
            max_wait_seconds,
            request_timeout_seconds,
            download_timeout_seconds,
            unreachable_seconds,
            retry_base_ms,
            checkpoint_pages,
            // How many ranges are walked at once, not what is fetched: a resumed walk keeps
            // the ranges its checkpoint stores whatever this says.
            users_concurrency: _,
            memory_limit_mib,
            manager,
            sign_in_activity,
        } = pipeline;
        Fingerprinted {
            connector: Connector {
                name,
                server,
                active: *active,
            },
            tenant: Tenant {
                tenant_id,
                client_id,
                client_secret_env,
                client_secret_file,
                cloud: cloud.name(),
                login_url: login_url.as_str(),
                graph_url: graph_url.as_str(),
                scope,
                ca_bundle: ca_bundle.as_deref().map(text),
            },
            filter: Filter {
                date_filter_days: *date_filter_days,
            },
            schedule: Schedule {
                repeats,
                start_time: start_time.format("%H:%M").to_string(),
                timezone,
            },
            action_credentials: ActionCredentials {
                name: action_credentials,
            },
            pipeline: Pipeline {
                data_dir: text(data_dir),
                mappings: mappings.as_deref().map(text),
                sql_dir: sql_dir.as_deref().map(text),
                report_period,
                incremental: *incremental,
                max_wait_seconds: *max_wait_seconds,
                request_timeout_seconds: *request_timeout_seconds,
                download_timeout_seconds: *download_timeout_seconds,
                unreachable_seconds: *unreachable_seconds,
                retry_base_ms: *retry_base_ms,
                checkpoint_pages: *checkpoint_pages,
                memory_limit_mib: *memory_limit_mib,
                manager: *manager,
                sign_in_activity: sign_in_activity.name(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{GOOD, parse};
    use super::*;

    /// The exact text hashed for [`GOOD`]. It changes only when a setting is added, removed
    /// or renamed in the fingerprint, never because a Rust field or its Debug output did.
    const GOOD_FINGERPRINTED: &str = concat!(
        r#"{"connector":{"name":"Contoso","server":"cloud","active":true},"#,
        r#""tenant":{"tenant_id":"72f988bf-86f1-41af-91ab-2d7cd011db47","#,
        r#""client_id":"5d7e9f1a-2b3c-4d5e-8f9a-0b1c2d3e4f5a","#,
        r#""client_secret_env":"M365_TEST_SECRET_X","client_secret_file":null,"#,
        r#""cloud":"global","login_url":"https://login.microsoftonline.com/","#,
        r#""graph_url":"https://graph.microsoft.com/","#,
        r#""scope":"https://graph.microsoft.com/.default","ca_bundle":null},"#,
        r#""filter":{"date_filter_days":30},"#,
        r#""schedule":{"repeats":"daily","start_time":"02:00","timezone":"UTC"},"#,
        r#""action_credentials":{"name":""},"#,
        r#""pipeline":{"data_dir":"/etc/m365/data","mappings":null,"sql_dir":null,"#,
        r#""report_period":"D30","incremental":false,"max_wait_seconds":900,"#,
        r#""request_timeout_seconds":120,"download_timeout_seconds":900,"#,
        r#""unreachable_seconds":60,"retry_base_ms":500,"checkpoint_pages":50,"#,
        r#""memory_limit_mib":512}}"#,
    );

    #[test]
    fn fingerprinted_text_is_pinned() {
        let c = parse(GOOD).unwrap();
        assert_eq!(
            fingerprinted_json(&c),
            GOOD_FINGERPRINTED,
            "the fingerprinted settings changed: every connector's interrupted extract would \
             start afresh once instead of resuming. If a setting was added, removed or renamed \
             on purpose, update GOOD_FINGERPRINTED; if only a Rust name changed, keep the \
             #[serde(rename)] as it was"
        );
        assert_eq!(
            c.fingerprint(),
            crate::digest::hex(&Sha256::digest(GOOD_FINGERPRINTED.as_bytes()))
        );
    }

    #[test]
    fn fingerprint_follows_settings_not_layout() {
        let good = parse(GOOD).unwrap().fingerprint();
        // A changed value in any fingerprinted section is another fingerprint.
        for changed in [
            GOOD.replace("\"Contoso\"", "\"Fabrikam\""),
            GOOD.replace("M365_TEST_SECRET_X", "M365_OTHER_SECRET"),
            format!("{GOOD}cloud = \"usgov\"\n"),
            format!("{GOOD}graph_url = \"http://127.0.0.1:8400\"\n"),
            format!("{GOOD}[filter]\ndate_filter_days = 7\n"),
            format!("{GOOD}[schedule]\nstart_time = \"03:00\"\n"),
            format!("{GOOD}[action_credentials]\nname = \"people-writer\"\n"),
            format!("{GOOD}[pipeline]\nmemory_limit_mib = 1024\n"),
            format!("{GOOD}[pipeline]\nincremental = true\n"),
            format!("{GOOD}[pipeline]\nmanager = true\n"),
            format!("{GOOD}[pipeline]\nsign_in_activity = \"off\"\n"),
        ] {
            assert_ne!(parse(&changed).unwrap().fingerprint(), good, "{changed}");
        }
        // Comments, blank lines, key order and defaults written out are not settings.
        for same in [
            format!("# Contoso's connector\n\n{GOOD}"),
            GOOD.replace(
                "client_id = \"5d7e9f1a-2b3c-4d5e-8f9a-0b1c2d3e4f5a\"\nclient_secret_env = \"M365_TEST_SECRET_X\"",
                "client_secret_env = \"M365_TEST_SECRET_X\"\nclient_id = \"5d7e9f1a-2b3c-4d5e-8f9a-0b1c2d3e4f5a\"",
            ),
            format!("{GOOD}cloud = \"global\"\n[filter]\ndate_filter_days = 30\n"),
        ] {
            assert_ne!(same, GOOD);
            assert_eq!(parse(&same).unwrap().fingerprint(), good, "{same}");
        }
    }

    #[test]
    fn secret_value_is_not_fingerprinted() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("client.secret");
        let write_secret = |value: &str| {
            std::fs::write(&secret, value).unwrap();
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
            }
        };
        let text = GOOD.replace(
            "client_secret_env = \"M365_TEST_SECRET_X\"",
            "client_secret_file = \"client.secret\"",
        );
        let load = || Config::parse(&dir.path().join("contoso.toml"), &text).unwrap();
        write_secret("s3cr3t~value");
        let c = load();
        assert_eq!(c.secret().unwrap().expose(), "s3cr3t~value");
        let json = fingerprinted_json(&c);
        assert!(!json.contains("s3cr3t"), "{json}");
        assert!(json.contains(r#""client_secret_file":""#), "{json}");
        // Rotating the secret is not a change of settings.
        write_secret("rotated~value");
        assert_eq!(load().fingerprint(), c.fingerprint());
    }
}
