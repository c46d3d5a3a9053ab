//! Raw TOML ([`RawConfig`]) → a validated [`Config`]: every value checked, defaults filled
//! in, relative paths resolved against the connector file's folder.
//!
//! One function per section, checked in file order so the first error is the first in the
//! file; each error names the line and the key and says what a valid value looks like.
//! Errors of the TOML itself are in `toml_error`.

use std::ops::Range;
use std::path::{Path, PathBuf};

use chrono::NaiveTime;
use reqwest::Url;
use toml::Spanned;

use super::raw::{RawConfig, RawConnector, RawFilter, RawPipeline, RawSchedule, RawTenant};
use super::{
    Cloud, Config, ConfigError, ConnectorSection, DEFAULT_MEMORY_LIMIT_MIB, MIN_MEMORY_LIMIT_MIB,
    PipelineSection, ScheduleSection, SecretSource, SignInActivity, TenantSection, load_ca_bundle,
};
use crate::streams::REPORT_PERIODS;

impl Config {
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
        Ok(Config {
            path: path.to_path_buf(),
            connector: ctx.connector(raw.connector)?,
            tenant: ctx.tenant(raw.tenant, &base)?,
            date_filter_days: ctx.date_filter_days(raw.filter)?,
            schedule: ctx.schedule(raw.schedule)?,
            action_credentials: raw.action_credentials.name.unwrap_or_default(),
            pipeline: ctx.pipeline(raw.pipeline, &base)?,
        })
    }
}

/// A parse in progress: the file and its text, to turn byte spans into line numbers.
pub(super) struct Ctx<'a> {
    pub(super) path: &'a Path,
    pub(super) text: &'a str,
}

impl Ctx<'_> {
    pub(super) fn line_of(&self, span: Range<usize>) -> usize {
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

    fn connector(&self, raw: RawConnector) -> Result<ConnectorSection, ConfigError> {
        let name = raw.name.get_ref().trim().to_string();
        if name.is_empty() {
            return Err(self.err(
                raw.name.span(),
                "connector.name",
                "is empty: give the connector a name admins will recognise, e.g. \"Contoso M365\"",
            ));
        }
        let server = match &raw.server {
            Some(s) if s.get_ref().trim().is_empty() => {
                return Err(self.err(
                    s.span(),
                    "connector.server",
                    "is empty: use \"cloud\" or the name of the on-premises connector server",
                ));
            }
            Some(s) => s.get_ref().trim().to_string(),
            None => "cloud".to_string(),
        };
        Ok(ConnectorSection {
            name,
            server,
            active: raw.active.unwrap_or(true),
        })
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
        let secret = self.secret_source(&raw, base)?;
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

    /// Where the secret comes from: exactly one of `client_secret_env` (a variable's NAME)
    /// and `client_secret_file` (relative to the connector file's folder).
    fn secret_source(&self, raw: &RawTenant, base: &Path) -> Result<SecretSource, ConfigError> {
        match (&raw.client_secret_env, &raw.client_secret_file) {
            (Some(_), Some(f)) => Err(self.err(
                f.span(),
                "tenant.client_secret_file",
                "both client_secret_env and client_secret_file are set: keep exactly one",
            )),
            (Some(e), None) => {
                let var = e.get_ref().trim();
                if var.is_empty() || !var.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                    return Err(self.err(
                        e.span(),
                        "tenant.client_secret_env",
                        "must be the NAME of an environment variable (letters, digits, _), e.g. \"M365_CLIENT_SECRET\", not the secret itself",
                    ));
                }
                Ok(SecretSource::Env {
                    var: var.to_string(),
                    line: self.line_of(e.span()),
                })
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
                Ok(SecretSource::File {
                    path: base.join(p),
                    line: self.line_of(f.span()),
                })
            }
            (None, None) => Err(self.err(
                raw.client_id.span(),
                "tenant.client_secret_env",
                "no client secret source: add client_secret_env = \"M365_CLIENT_SECRET\" or client_secret_file = \"/path/to/secret\" to [tenant]",
            )),
        }
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

    /// `[filter] date_filter_days`: 0 (no filter) to 100 years.
    fn date_filter_days(&self, raw: RawFilter) -> Result<u32, ConfigError> {
        match raw.date_filter_days {
            None => Ok(30),
            Some(d) => {
                let v = *d.get_ref();
                if !(0..=36_500).contains(&v) {
                    return Err(self.err(
                        d.span(),
                        "filter.date_filter_days",
                        &format!(
                            "{v} is out of range: use a number of days from 0 (no filter) to 36500"
                        ),
                    ));
                }
                Ok(v as u32)
            }
        }
    }

    fn schedule(&self, raw: RawSchedule) -> Result<ScheduleSection, ConfigError> {
        let repeats = match &raw.repeats {
            Some(r) if r.get_ref().trim().is_empty() => {
                return Err(self.err(
                    r.span(),
                    "schedule.repeats",
                    "is empty: use e.g. \"hourly\", \"every 6 hours\", \"daily\", \"weekly on mon,thu\" or \"monthly on 1\"",
                ));
            }
            Some(r) => r.get_ref().trim().to_string(),
            None => "daily".to_string(),
        };
        let start_time = match &raw.start_time {
            None => NaiveTime::from_hms_opt(2, 0, 0).expect("valid time"),
            Some(t) => NaiveTime::parse_from_str(t.get_ref().trim(), "%H:%M").map_err(|_| {
                self.err(
                    t.span(),
                    "schedule.start_time",
                    &format!(
                        "{:?} is not a time of day: use 24-hour HH:MM, e.g. \"02:00\"",
                        t.get_ref()
                    ),
                )
            })?,
        };
        let timezone = match &raw.timezone {
            Some(t) if t.get_ref().trim().is_empty() => {
                return Err(self.err(
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
            let span = raw.repeats.as_ref().map(|r| r.span()).unwrap_or(0..0);
            self.err(span, "schedule.repeats", &e.message)
        })?;
        let plan =
            crate::schedule::Schedule::new(&repeats, start_time, &timezone).map_err(|e| {
                let span = raw.timezone.as_ref().map(|t| t.span()).unwrap_or(0..0);
                self.err(span, "schedule.timezone", &e.message)
            })?;
        Ok(ScheduleSection {
            repeats,
            start_time,
            timezone,
            plan,
        })
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
            users_concurrency: positive(
                &raw.users_concurrency,
                "pipeline.users_concurrency",
                16,
                64,
            )?,
            manager: raw.manager.unwrap_or(false),
            sign_in_activity: match &raw.sign_in_activity {
                None => SignInActivity::Auto,
                Some(v) => match v.get_ref().trim().to_ascii_lowercase().as_str() {
                    "auto" => SignInActivity::Auto,
                    "on" => SignInActivity::On,
                    "off" => SignInActivity::Off,
                    _ => {
                        return Err(self.err(
                            v.span(),
                            "pipeline.sign_in_activity",
                            &format!(
                                "{:?} is not a choice: use \"auto\" (read it when the app holds AuditLog.Read.All), \"on\" or \"off\"",
                                v.get_ref()
                            ),
                        ));
                    }
                },
            },
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

#[cfg(test)]
mod tests {
    use super::super::test_support::{GOOD, parse};

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
    fn multi_tenant_endpoints_are_explained() {
        let e = parse(&GOOD.replace("72f988bf-86f1-41af-91ab-2d7cd011db47", "organizations"))
            .unwrap_err();
        assert!(e.message.contains("multi-tenant endpoints"), "{e}");
    }
}
