//! The run manifest of an extract: streams, request counts, concealment and the warnings
//! an admin should read.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use super::users_delta;
use crate::concealment::{self, Setting};
use crate::config::Config;
use crate::graph::{CallCounts, GraphClient};
use crate::manifest::{Concealment, RunManifest, StreamManifest, Warning};
use crate::streams::{Report, Stream};

use super::report_stream::count;

pub(super) fn build_manifest(
    cfg: &Config,
    client: &GraphClient,
    run_id: &str,
    started_at: DateTime<Utc>,
    streams: BTreeMap<String, StreamManifest>,
    setting: Setting,
) -> RunManifest {
    let concealed_reports: Vec<String> = streams
        .iter()
        .filter(|(_, s)| s.names.is_some_and(|n| n.is_concealed()))
        .map(|(name, _)| name.clone())
        .collect();
    let concealment = Concealment {
        setting,
        concealed_reports,
    };
    let mut warnings = Vec::new();
    if concealment.concealed() {
        let which = if concealment.concealed_reports.is_empty() {
            "the report settings say so".to_string()
        } else {
            format!("seen in {}", concealment.concealed_reports.join(", "))
        };
        warnings.push(Warning {
            code: "concealed_names".into(),
            message: format!(
                "usage reports conceal user names ({which}): report rows cannot be joined to users, so activity-based attributes stay empty and the date filter uses directory dates only"
            ),
            fix: concealment::FIX.into(),
        });
    }
    for (name, s) in &streams {
        warnings.extend(s.unavailable.clone());
        if name == Stream::Users.name() {
            warnings.extend(users_delta::warnings(s));
            warnings.extend(super::users_walk::warnings(s));
        }
        let Some(report) = Report::from_stream(name) else {
            continue;
        };
        let missing: Vec<&str> = report
            .documented_columns()
            .iter()
            .filter(|c| !s.columns.is_empty() && !s.columns.iter().any(|h| h == *c))
            .copied()
            .collect();
        if !missing.is_empty() {
            warnings.push(Warning {
                code: "report_columns_missing".into(),
                message: format!("the {name} report lacks documented columns: {}", missing.join(", ")),
                fix: "none needed: the missing values are treated as empty; report it if attributes you rely on come from them".into(),
            });
        }
        if s.invalid_utf8_cells > 0 || s.ragged_rows > 0 {
            let mut what = Vec::new();
            if s.invalid_utf8_cells > 0 {
                what.push(format!(
                    "{} not UTF-8 (landed with U+FFFD in place of the bad bytes)",
                    count(s.invalid_utf8_cells, "cell was", "cells were")
                ));
            }
            if s.ragged_rows > 0 {
                what.push(format!(
                    "{} more or fewer cells than the header (missing cells are empty, surplus cells kept in _extra)",
                    count(s.ragged_rows, "row had", "rows had")
                ));
            }
            warnings.push(Warning {
                code: "report_repaired".into(),
                message: format!("the {name} report needed repairs: {}", what.join("; ")),
                fix: "nothing to fix here: the download was proven complete (README, \"Complete downloads\"), so these rows are as Microsoft generated them; missing cells are landed empty and surplus cells kept in `_extra` of the raw Parquet, where they can be checked if an attribute looks wrong".into(),
            });
        }
        if s.columns.is_empty() && s.rows == 0 {
            warnings.push(Warning {
                code: "report_empty".into(),
                message: format!("the {name} report was empty (no header)"),
                fix: "usage data can lag 24–48 hours; if it stays empty, check the tenant's reports in the admin center".into(),
            });
        }
    }
    for (name, s) in &streams {
        if let Some(w) = duplicates_warning(name, &s.duplicates) {
            warnings.push(w);
        }
    }
    let counts: Vec<CallCounts> = streams.values().map(|s| s.calls).collect();
    let login = client.login_stats.snapshot();
    let sum = |f: fn(&CallCounts) -> u64| counts.iter().map(f).sum::<u64>() + f(&login);
    // Streams wait side by side: the run's waiting is the union of their waits, not the sum.
    let waited_ms = client.waited().as_millis() as u64;
    if waited_ms > 0 {
        warnings.push(Warning {
            code: "throttled".into(),
            message: format!(
                "Graph throttled or failed transiently: the run waited {:.1} s in total ({} retries)",
                waited_ms as f64 / 1000.0,
                sum(|c| c.retries)
            ),
            fix: "none needed; schedule runs at night or at weekends to meet less throttling".into(),
        });
    }
    let stalled = sum(|c| c.stalled);
    if stalled > 0 {
        warnings.push(Warning {
            code: "stalled".into(),
            message: format!(
                "{} cut at their deadline and retried (no answer in time, or a body still trickling in), {:.1} s lost; this is not throttling",
                count(stalled, "request was", "requests were"),
                sum(|c| c.stalled_ms) as f64 / 1000.0
            ),
            fix: "check the link and any proxy between this machine and Microsoft (bandwidth, TLS inspection, buffering); [pipeline] request_timeout_seconds and download_timeout_seconds bound each request".into(),
        });
    }
    RunManifest {
        format: 1,
        run_id: run_id.to_string(),
        connector: cfg.connector.name.clone(),
        server: cfg.connector.server.clone(),
        tenant_id: cfg.tenant.tenant_id.clone(),
        started_at,
        finished_at: Utc::now(),
        run_date: started_at.date_naive(),
        report_period: cfg.pipeline.report_period.clone(),
        date_filter_days: cfg.date_filter_days,
        requests: sum(|c| c.requests),
        retries: sum(|c| c.retries),
        throttled: sum(|c| c.throttled),
        waited_ms,
        stalled,
        stalled_ms: sum(|c| c.stalled_ms),
        login,
        streams,
        concealment,
        warnings,
    }
}

/// What an admin reads about records Graph listed more than once.
fn duplicates_warning(stream: &str, d: &crate::manifest::Duplicates) -> Option<Warning> {
    if d.is_empty() {
        return None;
    }
    let users = stream == Stream::Users.name();
    let (_, what) = Stream::from_name(stream).map_or(("row", "rows"), |s| s.record_words());
    let mut message = format!(
        "the {stream} stream held {} of {what} listed earlier in it; each counts once (the latest copy)",
        count(d.copies, "extra copy", "extra copies"),
    );
    if d.changed > 0 {
        let shown: Vec<String> = d
            .examples
            .iter()
            .map(|k| {
                if users && k.first_page != k.last_page {
                    format!("{} (pages {} and {})", k.key, k.first_page, k.last_page)
                } else if users {
                    format!(
                        "{} (page {}, rows {} and {})",
                        k.key, k.first_page, k.first_row, k.last_row
                    )
                } else {
                    format!("{} (rows {} and {})", k.key, k.first_row, k.last_row)
                }
            })
            .collect();
        message.push_str(&format!(
            "; {} had copies that differ, the later one was used: {}{}",
            {
                let (one, many) =
                    Stream::from_name(stream).map_or(("row", "rows"), |s| s.record_words());
                count(d.changed, one, many)
            },
            shown.join(", "),
            if d.changed as usize > shown.len() {
                ", ..."
            } else {
                ""
            }
        ));
    }
    Some(Warning {
        code: "duplicate_records".into(),
        message,
        fix: "none needed: Graph pages are eventually consistent and may repeat a record; nobody is dropped for it. Every copy stays in the raw Parquet (`_page`, `_row`) for audit".into(),
    })
}
