//! The status page, a connector's runs, the login form: what each shows, as values the
//! templates (`templates/server/*.html`, laid out by [`crate::html`]) read. Times are shown in
//! the connector's time zone and in UTC; nothing here reads a database (the board has it all).

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::Serialize;

use crate::server::board::{Card, RunRow, Snapshot};

/// A page from its template (`templates/server/`) and what it shows.
pub fn render(template: &str, page: &impl Serialize) -> Result<String, String> {
    crate::html::render(&format!("server/{template}"), page)
}

/// Runs on one page of a connector's history.
pub const RUNS_PER_PAGE: usize = 50;

/// Runs drawn in a connector's sparkline.
const SPARK_RUNS: usize = 20;

#[derive(Serialize)]
pub struct StatusPage {
    pub refresh: Option<Refresh>,
    pub server: String,
    pub scanned: String,
    pub rows: Vec<Row>,
    pub bad_files: Vec<BadFileRow>,
    pub csrf: String,
    pub logged_in: bool,
}

#[derive(Serialize)]
pub struct ConnectorPage {
    pub refresh: Option<Refresh>,
    pub row: Row,
    pub runs: Vec<RunView>,
    pub page: usize,
    pub pages: usize,
    pub total: usize,
    pub notice: Option<Notice>,
    pub csrf: String,
    pub logged_in: bool,
}

#[derive(Serialize)]
pub struct LoginPage {
    pub csrf: String,
    pub failed: bool,
    pub logged_in: bool,
}

#[derive(Serialize)]
pub struct MessagePage {
    pub title: String,
    pub message: String,
    pub logged_in: bool,
}

/// Seconds between reloads of a page that shows a run in progress, so an admin who pressed
/// Run now sees it finish without a script (a `<meta http-equiv="refresh">`). Idle pages do
/// not reload: nothing on them changes until the next scheduled run.
const REFRESH_SECONDS: u32 = 10;

/// A page's reload while something on it runs: after `seconds`, `url` (the page itself,
/// without a one-time notice such as `?asked=started`).
#[derive(Serialize)]
pub struct Refresh {
    pub seconds: u32,
    pub url: String,
}

fn refresh_while(running: bool, url: &str) -> Option<Refresh> {
    running.then(|| Refresh {
        seconds: REFRESH_SECONDS,
        url: url.to_string(),
    })
}

/// What Run now said, shown on the connector's page it redirects to.
#[derive(Serialize)]
pub struct Notice {
    pub ok: bool,
    pub text: String,
}

#[derive(Serialize)]
pub struct BadFileRow {
    pub file: String,
    pub error: String,
}

/// One connector on the status page (and atop its own page).
#[derive(Serialize)]
pub struct Row {
    pub name: String,
    pub href: String,
    pub file: String,
    pub server: String,
    /// ok, failed, running, inactive, elsewhere, never: the CSS class and the test's hook.
    pub state: &'static str,
    pub state_text: String,
    pub active: bool,
    pub hosted: bool,
    pub can_run: bool,
    pub schedule: String,
    pub next_local: String,
    pub next_utc: String,
    pub running_since: Option<String>,
    pub last: Option<RunView>,
    pub warnings: Vec<WarningView>,
    pub read_error: Option<String>,
    pub spark: Vec<Bar>,
    pub spark_width: usize,
}

#[derive(Serialize)]
pub struct RunView {
    pub run_id: String,
    pub status: String,
    pub started_local: String,
    pub started_utc: String,
    pub duration: String,
    pub fetched: String,
    pub kept: String,
    pub rejected: String,
    pub requests: String,
    pub warnings: u64,
    pub error: Option<String>,
    pub report_href: String,
}

#[derive(Serialize)]
pub struct WarningView {
    pub code: String,
    pub message: String,
    pub fix: String,
}

/// One bar of the sparkline: its height is the run's duration against the longest shown.
#[derive(Serialize)]
pub struct Bar {
    pub x: usize,
    pub y: f64,
    pub h: f64,
    pub class: &'static str,
    pub title: String,
}

pub fn status_page(s: &Snapshot, csrf: &str, logged_in: bool) -> StatusPage {
    StatusPage {
        refresh: refresh_while(s.connectors.iter().any(|c| c.running_since.is_some()), "/"),
        server: s.server.clone(),
        scanned: s.scanned_at.map(utc).unwrap_or_else(|| "not yet".into()),
        rows: s.connectors.iter().map(row).collect(),
        bad_files: s
            .bad_files
            .iter()
            .map(|b| BadFileRow {
                file: b.file.clone(),
                error: b.error.clone(),
            })
            .collect(),
        csrf: csrf.to_string(),
        logged_in,
    }
}

pub fn connector_page(
    card: &Card,
    page: usize,
    notice: Option<Notice>,
    csrf: &str,
    logged_in: bool,
) -> ConnectorPage {
    let total = card.history.runs.len();
    let pages = total.div_ceil(RUNS_PER_PAGE).max(1);
    let page = page.clamp(1, pages);
    let runs = card
        .history
        .runs
        .iter()
        .skip((page - 1) * RUNS_PER_PAGE)
        .take(RUNS_PER_PAGE)
        .map(|r| run_view(card, r))
        .collect();
    let row = row(card);
    ConnectorPage {
        refresh: refresh_while(card.running_since.is_some(), &row.href),
        row,
        runs,
        page,
        pages,
        total,
        notice,
        csrf: csrf.to_string(),
        logged_in,
    }
}

fn row(c: &Card) -> Row {
    let last = c.history.last();
    let (state, state_text) = if let Some(since) = c.running_since {
        ("running", format!("running since {}", utc(since)))
    } else if !c.hosted {
        ("elsewhere", format!("hosted by server {:?}", c.server))
    } else if !c.active {
        ("inactive", "inactive (active = false)".to_string())
    } else {
        match last.map(|r| r.status.as_str()) {
            None => ("never", "never run".to_string()),
            Some("succeeded") => ("ok", "last run succeeded".to_string()),
            Some("failed") => ("failed", "last run failed".to_string()),
            Some(other) => ("other", format!("last run {other}")),
        }
    };
    let (next_local, next_utc) = match c.next_run {
        Some(t) => (local(t, c.time_zone), utc(t)),
        None if !c.hosted => ("on its own server".into(), String::new()),
        None if !c.active => ("never (inactive)".into(), String::new()),
        None => ("none scheduled".into(), String::new()),
    };
    let (spark, spark_width) = sparkline(&c.history.runs);
    Row {
        name: c.name.clone(),
        href: format!("/connectors/{}", path_segment(&c.name)),
        file: c.file.clone(),
        server: c.server.clone(),
        state,
        state_text,
        active: c.active,
        hosted: c.hosted,
        can_run: c.hosted && c.active && c.running_since.is_none(),
        schedule: c.schedule.clone(),
        next_local,
        next_utc,
        running_since: c.running_since.map(utc),
        last: last.map(|r| run_view(c, r)),
        warnings: c
            .history
            .last_warnings
            .iter()
            .map(|w| WarningView {
                code: w.code.clone(),
                message: w.message.clone(),
                fix: w.fix.clone(),
            })
            .collect(),
        read_error: c.history.read_error.clone(),
        spark,
        spark_width,
    }
}

fn run_view(c: &Card, r: &RunRow) -> RunView {
    let n = |v: Option<i64>| {
        v.map(|v| crate::human::thousands(v.max(0) as u64))
            .unwrap_or_else(|| "–".into())
    };
    RunView {
        run_id: r.run_id.clone(),
        status: r.status.clone(),
        started_local: local(r.started_at, c.time_zone),
        started_utc: utc(r.started_at),
        duration: r.seconds().map(duration).unwrap_or_else(|| "–".into()),
        fetched: n(r.users_fetched),
        kept: n(r.people_kept),
        rejected: n(r.rejected),
        requests: n(r.requests),
        warnings: r.warnings,
        error: r.error.clone(),
        report_href: format!(
            "/connectors/{}/runs/{}/report",
            path_segment(&c.name),
            path_segment(&r.run_id)
        ),
    }
}

fn sparkline(runs: &[RunRow]) -> (Vec<Bar>, usize) {
    let shown: Vec<&RunRow> = runs.iter().take(SPARK_RUNS).rev().collect();
    let longest = shown
        .iter()
        .filter_map(|r| r.seconds())
        .fold(0.0f64, f64::max)
        .max(1.0);
    let bars = shown
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let h = r
                .seconds()
                .map(|s| 4.0 + 16.0 * s / longest)
                .unwrap_or(20.0);
            Bar {
                x: i * 8,
                y: 22.0 - h,
                h,
                class: match r.status.as_str() {
                    "succeeded" => "ok",
                    "failed" => "failed",
                    _ => "running",
                },
                title: format!(
                    "{} {} {}",
                    utc(r.started_at),
                    r.status,
                    r.seconds().map(duration).unwrap_or_default()
                ),
            }
        })
        .collect();
    (bars, (shown.len() * 8).max(8))
}

fn utc(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M UTC").to_string()
}

fn local(t: DateTime<Utc>, tz: Tz) -> String {
    t.with_timezone(&tz).format("%Y-%m-%d %H:%M %Z").to_string()
}

/// A name as one URL path segment: unreserved characters kept, every other byte escaped.
pub fn path_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A run's length as people read it: 0.8 s, 42 s, 3 min 12 s, 1 h 05 min.
fn duration(seconds: f64) -> String {
    let s = seconds.max(0.0);
    if s < 10.0 {
        format!("{s:.1} s")
    } else if s < 60.0 {
        format!("{s:.0} s")
    } else if s < 3600.0 {
        let s = s.round() as u64;
        format!("{} min {:02} s", s / 60, s % 60)
    } else {
        let m = (s / 60.0).round() as u64;
        format!("{} h {:02} min", m / 60, m % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_escape_what_they_show() {
        let html = render(
            "message.html",
            &MessagePage {
                title: "<t>".into(),
                message: "a <b>&</b> 'c'".into(),
                logged_in: false,
            },
        )
        .unwrap();
        assert!(
            html.contains("a &lt;b&gt;&amp;&lt;") && !html.contains("<b>&</b>"),
            "{html}"
        );
    }

    #[test]
    fn durations_and_path_segments() {
        assert_eq!(duration(0.84), "0.8 s");
        assert_eq!(duration(42.4), "42 s");
        assert_eq!(duration(192.0), "3 min 12 s");
        assert_eq!(duration(3900.0), "1 h 05 min");
        assert_eq!(path_segment("hr-eu"), "hr-eu");
        assert_eq!(path_segment("a b/ü"), "a%20b%2F%C3%BC");
    }
}
