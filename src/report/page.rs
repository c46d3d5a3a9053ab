//! The report page: one HTML document with inline CSS (and a print stylesheet) and inline
//! SVG, no scripts, fonts or links to anything outside the file.
//!
//! The page is laid out by the templates in `templates/report/` ([`crate::html`], which
//! escapes every value unless a template marks it safe); this file turns the report queries
//! into what each section shows. The charts are drawn in `svg.rs` and inserted as markup.
//!
//! Every number shown comes from a report query and carries its source as
//! `data-metric="<query>.<key>.<column>"` (or `<query>.<column>` for one-row queries) and the
//! raw value as `data-value` ([`Num`], laid out by the `n` macro of
//! `templates/report/macros.html`), so tests and scripts can check the page against the SQL.

use serde::Serialize;

use crate::html::esc;

use super::svg::{self, Bar, Column, Marker};
use super::{Cell, ReportData, Table};

/// How a number is shown.
#[derive(Clone, Copy)]
enum Fmt {
    /// Grouped digits: 12,345.
    Int,
    /// One decimal and a percent sign.
    Pct,
    /// One decimal and " s".
    Secs,
}

/// Digits grouped by thousands, with a sign: -1234 → "-1,234".
fn group(n: i64) -> String {
    let digits = crate::human::thousands(n.unsigned_abs());
    if n < 0 { format!("-{digits}") } else { digits }
}

fn show(cell: &Cell, fmt: Fmt) -> String {
    match (cell, fmt) {
        (Cell::Null, _) => "–".to_string(),
        (Cell::Int(n), Fmt::Int) => group(*n),
        (Cell::Num(f), Fmt::Int) => group(f.round() as i64),
        (c, Fmt::Pct) => format!("{:.1}%", c.as_f64().unwrap_or(0.0)),
        (c, Fmt::Secs) => format!("{:.1} s", c.as_f64().unwrap_or(0.0)),
        (c, _) => c.text(),
    }
}

/// The raw value for `data-value`: the number as the query returned it, "" for NULL.
fn raw(cell: &Cell) -> String {
    match cell {
        Cell::Int(_) | Cell::Num(_) => cell.text(),
        _ => String::new(),
    }
}

/// A number as shown, with its source query and raw value.
#[derive(Serialize)]
struct Num {
    pub metric: String,
    pub value: String,
    pub text: String,
}

/// The number of query `q` at row `row`, column `col` (keyed: the row's first cell names it).
fn num(t: &Table, q: &str, keyed: bool, row: usize, col: &str, fmt: Fmt) -> Num {
    let cell = t.get(row, col);
    Num {
        metric: if keyed {
            format!("{q}.{}.{col}", t.rows[row][0].text())
        } else {
            format!("{q}.{col}")
        },
        value: raw(cell),
        text: show(cell, fmt),
    }
}

/// A keyed number (a table row's).
fn cell(t: &Table, q: &str, row: usize, col: &str, fmt: Fmt) -> Num {
    num(t, q, true, row, col, fmt)
}

/// A number as one element, for the markup a chart writes after its bar (the `n` macro of
/// `templates/report/macros.html` lays out the same element in the page's tables).
fn tagged(tag: &str, n: &Num) -> String {
    format!(
        r#"<{tag} class="n" data-metric="{}" data-value="{}">{}</{tag}>"#,
        esc(&n.metric),
        esc(&n.value),
        esc(&n.text)
    )
}

/// A `tspan` of a chart's value text.
fn tspan(t: &Table, q: &str, row: usize, col: &str, fmt: Fmt) -> String {
    tagged("tspan", &cell(t, q, row, col, fmt))
}

/// Text of a one-row query's column.
fn text(t: &Table, col: &str) -> String {
    t.get(0, col).text()
}

fn or_dash(s: String) -> String {
    if s.is_empty() { "–".into() } else { s }
}

/// What a section says instead of (or before) its figures (the `notice` macro lays it out).
#[derive(Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Notice {
    /// Plain text in a box of class info, warn or ok.
    Text { class: &'static str, text: String },
    /// The run's database has no figures for this section.
    NotRecorded { run_id: String },
    /// Report names are concealed: `what` is unknown.
    Concealed {
        what: &'static str,
        fix: &'static str,
    },
}

impl Notice {
    fn info(text: &str) -> Notice {
        Notice::Text {
            class: "info",
            text: text.to_string(),
        }
    }

    fn ok(text: &str) -> Notice {
        Notice::Text {
            class: "ok",
            text: text.to_string(),
        }
    }

    fn concealed(what: &'static str) -> Notice {
        Notice::Concealed {
            what,
            fix: crate::concealment::FIX,
        }
    }
}

fn transformed(d: &ReportData) -> bool {
    text(d.table("run"), "transform_status") == "succeeded"
}

/// Why a section has nothing to show, if so: the run was not transformed, or its figures
/// were never recorded (`empty_means_missing`: the query always has rows for a transformed
/// run).
fn unavailable(d: &ReportData, t: &Table, empty_means_missing: bool) -> Option<Notice> {
    if !transformed(d) {
        Some(Notice::info(
            "This run was not transformed: nothing to show here (the warnings say why).",
        ))
    } else if t.missing || (empty_means_missing && t.is_empty()) {
        Some(Notice::NotRecorded {
            run_id: d.run_id.clone(),
        })
    } else {
        None
    }
}

fn concealed(d: &ReportData) -> bool {
    text(d.table("run"), "concealed_names") == "true"
}

fn status_class(status: &str) -> &'static str {
    match status {
        "succeeded" => "ok",
        "failed" => "bad",
        _ => "busy",
    }
}

/// The whole page: what `templates/report/page.html` and its sections read.
#[derive(Serialize)]
struct Page {
    version: &'static str,
    title: String,
    run_id: String,
    header: Header,
    funnel: Funnel,
    licences: Licences,
    activity: Activity,
    office: Office,
    identity: Identity,
    warnings: Warnings,
    run: RunDetails,
    history: History,
}

/// The report page of `d` (an error only if a template is broken: a bug, which the unit tests
/// below would catch first).
pub fn page(d: &ReportData) -> Result<String, String> {
    let run = d.table("run");
    let page = Page {
        version: env!("CARGO_PKG_VERSION"),
        title: format!(
            "{} — run {} — Microsoft 365 import report",
            text(run, "connector"),
            d.run_id
        ),
        run_id: d.run_id.clone(),
        header: header(d),
        funnel: funnel(d),
        licences: licences(d),
        activity: activity(d),
        office: office(d),
        identity: identity(d),
        warnings: warnings(d),
        run: run_details(d),
        history: history(d),
    };
    crate::html::render("report/page.html", &page)
}

#[derive(Serialize)]
struct Header {
    connector: String,
    tenant_id: String,
    status_class: &'static str,
    status: String,
    started: String,
    finished: String,
    server: String,
    date_filter: DateFilter,
    period: String,
    extract: String,
    transform: String,
    load: String,
    /// The funnel's figures, when the run has them.
    kpis: Vec<Kpi>,
    warnings: usize,
}

#[derive(Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum DateFilter {
    Off {
        days: Num,
    },
    On {
        cutoff: String,
        days: Num,
        run_date: String,
    },
    Unknown,
}

#[derive(Serialize)]
struct Kpi {
    class: &'static str,
    label: &'static str,
    n: Num,
}

fn header(d: &ReportData) -> Header {
    let run = d.table("run");
    let status = text(run, "status");
    let f = d.table("funnel");
    let kpis = if f.is_empty() {
        Vec::new()
    } else {
        [
            ("fetched", "users fetched", "all"),
            ("kept", "exported as people", "kept"),
            ("filtered_out", "left out by the date filter", "out"),
            ("rejected", "rejected", "rej"),
        ]
        .into_iter()
        .map(|(col, label, class)| Kpi {
            class,
            label,
            n: num(f, "funnel", false, 0, col, Fmt::Int),
        })
        .collect()
    };
    Header {
        connector: text(run, "connector"),
        tenant_id: text(run, "tenant_id"),
        status_class: status_class(&status),
        started: text(run, "started_at"),
        finished: or_dash(text(run, "finished_at")),
        server: or_dash(text(run, "server")),
        date_filter: match run.get(0, "date_filter_days").as_i64() {
            Some(0) => DateFilter::Off {
                days: num(run, "run", false, 0, "date_filter_days", Fmt::Int),
            },
            Some(_) => DateFilter::On {
                cutoff: text(run, "date_filter_cutoff"),
                days: num(run, "run", false, 0, "date_filter_days", Fmt::Int),
                run_date: text(run, "run_date"),
            },
            None => DateFilter::Unknown,
        },
        period: period_text(run, d.table("activity")),
        extract: or_dash(text(run, "extract_status")),
        transform: or_dash(text(run, "transform_status")),
        load: or_dash(text(run, "load_status")),
        status,
        kpis,
        warnings: d.table("warnings").len(),
    }
}

fn period_text(run: &Table, activity: &Table) -> String {
    let (p, from, to) = (
        text(run, "report_period"),
        text(activity, "period_start"),
        text(activity, "period_end"),
    );
    if from.is_empty() {
        or_dash(p)
    } else {
        format!("{p}: {from} to {to} (activity on or after {from} counts as active)")
    }
}

#[derive(Serialize)]
struct Funnel {
    /// Set when the run was not transformed: nothing else is shown.
    untransformed: bool,
    chart: String,
    rejects_notice: Option<Notice>,
    rejects: Vec<RejectRow>,
    unmatched: Vec<UnmatchedRow>,
}

#[derive(Serialize)]
struct RejectRow {
    reason: String,
    people: Num,
    fix: String,
}

#[derive(Serialize)]
struct UnmatchedRow {
    reason: String,
    report_rows: Num,
    reports: Num,
    explanation: String,
}

fn funnel(d: &ReportData) -> Funnel {
    let f = d.table("funnel");
    if !transformed(d) || f.is_empty() || f.get(0, "fetched") == &Cell::Null {
        return Funnel {
            untransformed: true,
            chart: String::new(),
            rejects_notice: None,
            rejects: Vec::new(),
            unmatched: Vec::new(),
        };
    }
    let max = f.get(0, "fetched").as_f64().unwrap_or(0.0);
    let bars: Vec<Bar> = [
        ("fetched", "Users fetched from Graph", "all"),
        ("filtered_out", "Left out by the date filter", "out"),
        ("passed_filter", "Passed the date filter", "pass"),
        ("rejected", "Rejected (reasons below)", "rej"),
        ("kept", "Exported as people", "kept"),
    ]
    .iter()
    .map(|(col, label, class)| Bar {
        label: label.to_string(),
        segments: vec![(f.get(0, col).as_f64().unwrap_or(0.0), class)],
        value: tagged("tspan", &num(f, "funnel", false, 0, col, Fmt::Int)),
        title: format!("{label}: {}", show(f.get(0, col), Fmt::Int)),
    })
    .collect();
    let rejects = d.table("rejects");
    let rejects_notice = unavailable(d, rejects, false).or_else(|| {
        rejects
            .is_empty()
            .then(|| Notice::ok("No record was rejected."))
    });
    let unmatched = d.table("unmatched");
    Funnel {
        untransformed: false,
        chart: svg::hbars("The funnel of this run", &bars, max, None),
        rejects: if rejects_notice.is_some() {
            Vec::new()
        } else {
            (0..rejects.len())
                .map(|i| RejectRow {
                    reason: rejects.get(i, "reason").text(),
                    people: cell(rejects, "rejects", i, "people", Fmt::Int),
                    fix: rejects.get(i, "fix").text(),
                })
                .collect()
        },
        rejects_notice,
        unmatched: (0..unmatched.len())
            .map(|i| UnmatchedRow {
                reason: unmatched.get(i, "reason").text(),
                report_rows: cell(unmatched, "unmatched", i, "report_rows", Fmt::Int),
                reports: cell(unmatched, "unmatched", i, "reports", Fmt::Int),
                explanation: unmatched.get(i, "explanation").text(),
            })
            .collect(),
    }
}

#[derive(Serialize)]
struct Licences {
    notices: Vec<Notice>,
    rows: Vec<LicenceRow>,
}

#[derive(Serialize)]
struct LicenceRow {
    name: String,
    part: String,
    /// Shown as a badge unless the subscription is simply enabled.
    status: Option<String>,
    prepaid: Num,
    consumed: Num,
    available: Num,
    meter: String,
    used: Num,
    holders: Num,
    inactive: Num,
    disabled: Num,
}

fn licences(d: &ReportData) -> Licences {
    let t = d.table("licences");
    if let Some(n) = unavailable(d, t, false) {
        return Licences {
            notices: vec![n],
            rows: Vec::new(),
        };
    }
    if t.is_empty() {
        return Licences {
            notices: vec![Notice::info("The tenant has no subscribed licences.")],
            rows: Vec::new(),
        };
    }
    let notices = if concealed(d) {
        vec![Notice::concealed("Inactive licence holders are")]
    } else {
        Vec::new()
    };
    let rows = (0..t.len())
        .map(|i| {
            let status = t.get(i, "capability_status").text();
            let fraction = match (t.get(i, "consumed").as_f64(), t.get(i, "prepaid").as_f64()) {
                (Some(c), Some(p)) if p > 0.0 => Some(c / p),
                (Some(c), Some(_)) if c > 0.0 => Some(2.0),
                _ => None,
            };
            LicenceRow {
                name: t.get(i, "sku_name").text(),
                part: t.get(i, "sku_part_number").text(),
                status: (!status.is_empty() && status != "Enabled").then_some(status),
                prepaid: cell(t, "licences", i, "prepaid", Fmt::Int),
                consumed: cell(t, "licences", i, "consumed", Fmt::Int),
                available: cell(t, "licences", i, "available", Fmt::Int),
                meter: svg::meter(fraction),
                used: cell(t, "licences", i, "used_pct", Fmt::Pct),
                holders: cell(t, "licences", i, "assigned_users", Fmt::Int),
                inactive: cell(t, "licences", i, "inactive_users", Fmt::Int),
                disabled: cell(t, "licences", i, "disabled_users", Fmt::Int),
            }
        })
        .collect();
    Licences {
        notices,
        // A table is drawn once there are rows (the hint goes with it).
        rows,
    }
}

#[derive(Serialize)]
struct Activity {
    services_notices: Vec<Notice>,
    services_chart: String,
    /// The chart has no users (said after it).
    services_empty: bool,
    last_seen_notices: Vec<Notice>,
    last_seen: Option<LastSeen>,
}

#[derive(Serialize)]
struct LastSeen {
    /// None when nobody was seen at all (a notice says so).
    chart: Option<String>,
    rows: Vec<LastSeenRow>,
}

#[derive(Serialize)]
struct LastSeenRow {
    bucket: String,
    from: String,
    to: String,
    users: Num,
    kept: Num,
    out: Num,
}

fn activity(d: &ReportData) -> Activity {
    let concealed = concealed(d);
    let t = d.table("activity");
    let mut services_notices = Vec::new();
    let mut services_chart = String::new();
    let mut services_empty = false;
    match unavailable(d, t, true) {
        Some(n) => services_notices.push(n),
        None => {
            if concealed {
                services_notices.push(Notice::concealed("Activity per service is"));
            }
            let max = (0..t.len())
                .filter_map(|i| t.get(i, "users").as_f64())
                .fold(0.0, f64::max);
            let bars: Vec<Bar> = (0..t.len())
                .map(|i| {
                    let service = t.get(i, "service").text();
                    Bar {
                        title: format!(
                            "{service}: {} of {} users active",
                            show(t.get(i, "active_users"), Fmt::Int),
                            show(t.get(i, "users"), Fmt::Int)
                        ),
                        label: service,
                        segments: vec![(t.get(i, "active_users").as_f64().unwrap_or(0.0), "kept")],
                        value: format!(
                            "{} of {} ({})",
                            tspan(t, "activity", i, "active_users", Fmt::Int),
                            tspan(t, "activity", i, "users", Fmt::Int),
                            tspan(t, "activity", i, "active_pct", Fmt::Pct)
                        ),
                    }
                })
                .collect();
            services_chart = svg::hbars("Active users per service", &bars, max, None);
            services_empty = max == 0.0;
        }
    }
    let h = d.table("last_seen");
    let mut last_seen_notices = Vec::new();
    let last_seen = match unavailable(d, h, true) {
        Some(n) => {
            last_seen_notices.push(n);
            None
        }
        None => {
            if concealed {
                last_seen_notices.push(Notice::info(
                    "Report names are concealed: last-seen dates come from directory dates only (account creation, password change).",
                ));
            }
            Some(last_seen_chart(d, h))
        }
    };
    Activity {
        services_notices,
        services_chart,
        services_empty,
        last_seen_notices,
        last_seen,
    }
}

/// Histogram rows newest first; empty `later`/`unknown` buckets are left out of the chart.
fn last_seen_chart(d: &ReportData, h: &Table) -> LastSeen {
    let run = d.table("run");
    let cutoff = text(run, "date_filter_cutoff");
    let mut order: Vec<usize> = (0..h.len()).collect();
    order.reverse();
    // `unknown` is first in query order; show it last, under `earlier`.
    if let Some(pos) = order
        .iter()
        .position(|&i| h.get(i, "bucket").text() == "unknown")
    {
        let i = order.remove(pos);
        order.push(i);
    }
    order.retain(|&i| {
        let b = h.get(i, "bucket").text();
        !((b == "later" || b == "unknown") && h.get(i, "users").as_i64() == Some(0))
    });
    let max = order
        .iter()
        .filter_map(|&i| h.get(i, "users").as_f64())
        .fold(0.0, f64::max);
    let mut marker = None;
    let bars: Vec<Bar> = order
        .iter()
        .enumerate()
        .map(|(pos, &i)| {
            let bucket = h.get(i, "bucket").text();
            let (start, end) = (
                h.get(i, "bucket_start").text(),
                h.get(i, "bucket_end").text(),
            );
            let label = match bucket.as_str() {
                "earlier" => format!("before {}", next_day_text(&end)),
                "later" => format!("from {start} (after the run)"),
                "unknown" => "no date".to_string(),
                _ if h.get(i, "grain").text() == "month" => {
                    start.get(..7).unwrap_or(&start).to_string()
                }
                _ => format!("{start} – {}", end.get(5..).unwrap_or(&end)),
            };
            // The cutoff lies in this bucket: mark the line under it.
            let holds_cutoff = !cutoff.is_empty()
                && match bucket.as_str() {
                    "earlier" => cutoff.as_str() <= end.as_str(),
                    "later" | "unknown" => false,
                    _ => start.as_str() <= cutoff.as_str() && cutoff.as_str() <= end.as_str(),
                };
            if holds_cutoff && marker.is_none() {
                marker = Some(Marker {
                    after: pos,
                    label: format!("date-filter cutoff {cutoff}: older is left out"),
                });
            }
            let passed = h.get(i, "passed_filter").as_f64().unwrap_or(0.0);
            let out = h.get(i, "filtered_out").as_f64().unwrap_or(0.0);
            let mut value = tspan(h, "last_seen", i, "users", Fmt::Int);
            if passed > 0.0 && out > 0.0 {
                value = format!(
                    "{value} ({} kept, {} left out)",
                    tspan(h, "last_seen", i, "passed_filter", Fmt::Int),
                    tspan(h, "last_seen", i, "filtered_out", Fmt::Int),
                );
            }
            Bar {
                title: format!(
                    "{label}: {} users, {} kept, {} left out by the date filter",
                    show(h.get(i, "users"), Fmt::Int),
                    show(h.get(i, "passed_filter"), Fmt::Int),
                    show(h.get(i, "filtered_out"), Fmt::Int)
                ),
                label,
                segments: vec![(passed, "kept"), (out, "out")],
                value,
            }
        })
        .collect();
    LastSeen {
        chart: (max != 0.0)
            .then(|| svg::hbars("Users by last-seen date", &bars, max, marker.as_ref())),
        rows: (0..h.len())
            .map(|i| LastSeenRow {
                bucket: h.get(i, "bucket").text(),
                from: or_dash(h.get(i, "bucket_start").text()),
                to: or_dash(h.get(i, "bucket_end").text()),
                users: cell(h, "last_seen", i, "users", Fmt::Int),
                kept: cell(h, "last_seen", i, "passed_filter", Fmt::Int),
                out: cell(h, "last_seen", i, "filtered_out", Fmt::Int),
            })
            .collect(),
    }
}

/// "2026-08-23" → "2026-08-24" (the first day of the first bucket).
fn next_day_text(day: &str) -> String {
    chrono::NaiveDate::parse_from_str(day, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.succ_opt())
        .map(|d| d.to_string())
        .unwrap_or_else(|| day.to_string())
}

#[derive(Serialize)]
struct Office {
    notices: Vec<Notice>,
    /// None when a notice stands instead.
    charts: Option<OfficeCharts>,
}

#[derive(Serialize)]
struct OfficeCharts {
    activations: String,
    apps: String,
    platforms: String,
}

fn office(d: &ReportData) -> Office {
    let acts = d.table("activations");
    let apps = d.table("apps");
    let unavailable = unavailable(d, acts, true).or_else(|| unavailable(d, apps, true));
    if let Some(n) = unavailable {
        return Office {
            notices: vec![n],
            charts: None,
        };
    }
    if concealed(d) {
        return Office {
            notices: vec![Notice::concealed("Office activations and app usage are")],
            charts: None,
        };
    }
    let max = (0..acts.len())
        .filter_map(|i| acts.get(i, "users").as_f64())
        .fold(0.0, f64::max);
    let bars: Vec<Bar> = (0..acts.len())
        .map(|i| {
            let platform = acts.get(i, "platform").text();
            Bar {
                title: format!(
                    "{platform}: {} users, {} activations",
                    show(acts.get(i, "users"), Fmt::Int),
                    show(acts.get(i, "activations"), Fmt::Int)
                ),
                label: platform,
                segments: vec![(acts.get(i, "users").as_f64().unwrap_or(0.0), "all")],
                value: format!(
                    "{} users, {} activations",
                    tspan(acts, "activations", i, "users", Fmt::Int),
                    tspan(acts, "activations", i, "activations", Fmt::Int)
                ),
            }
        })
        .collect();
    let activations = svg::hbars("Office activations by platform", &bars, max, None);
    let max = (0..apps.len())
        .filter_map(|i| apps.get(i, "users").as_f64())
        .fold(0.0, f64::max);
    let chart = |kind: &str, caption: &str| {
        let bars: Vec<Bar> = (0..apps.len())
            .filter(|&i| apps.get(i, "kind").text() == kind)
            .map(|i| {
                let name = apps.get(i, "name").text();
                Bar {
                    title: format!("{name}: {} users", show(apps.get(i, "users"), Fmt::Int)),
                    label: if kind == "platform" {
                        format!("on {name}")
                    } else {
                        name
                    },
                    segments: vec![(apps.get(i, "users").as_f64().unwrap_or(0.0), "pass")],
                    value: tspan(apps, "apps", i, "users", Fmt::Int),
                }
            })
            .collect();
        svg::hbars(caption, &bars, max, None)
    };
    Office {
        notices: Vec::new(),
        charts: Some(OfficeCharts {
            activations,
            apps: chart("app", "Users per app"),
            platforms: chart("platform", "Users per platform"),
        }),
    }
}

#[derive(Serialize)]
struct Identity {
    notices: Vec<Notice>,
    rows: Vec<IdentityRow>,
}

#[derive(Serialize)]
struct Badge {
    /// The badge's CSS class ("" for the plain grey one).
    class: &'static str,
    label: &'static str,
}

#[derive(Serialize)]
struct Addresses {
    addresses: Num,
    users: Num,
}

#[derive(Serialize)]
struct IdentityRow {
    status: String,
    check: String,
    title: String,
    /// The badge: to fix, ok, not read (none for other statuses).
    badge: Option<Badge>,
    /// Shared addresses: how many, carried by how many people.
    addresses: Option<Addresses>,
    /// ", the first N" when more were found than listed.
    examples_shown: String,
    examples: Vec<String>,
    users: Num,
    of_users: Num,
    pct: Num,
    fix: String,
}

fn identity(d: &ReportData) -> Identity {
    let t = d.table("identity");
    if let Some(n) = unavailable(d, t, true) {
        return Identity {
            notices: vec![n],
            rows: Vec::new(),
        };
    }
    let rows = (0..t.len())
        .map(|i| {
            let status = t.get(i, "status").text();
            let badge = match status.as_str() {
                "finding" => Some(Badge {
                    class: "busy",
                    label: "to fix",
                }),
                "ok" => Some(Badge {
                    class: "ok",
                    label: "ok",
                }),
                "not_read" => Some(Badge {
                    class: "",
                    label: "not read",
                }),
                _ => None,
            };
            let examples: Vec<String> = t
                .get(i, "examples")
                .text()
                .lines()
                .filter(|l| !l.is_empty())
                .map(str::to_string)
                .collect();
            // Shared addresses list one address a line; the other checks one user.
            let listed = match t.get(i, "addresses") {
                Cell::Null => t.get(i, "users"),
                n => n,
            };
            let examples_shown = match listed.as_i64() {
                Some(n) if n > examples.len() as i64 => format!(", the first {}", examples.len()),
                _ => String::new(),
            };
            IdentityRow {
                check: t.get(i, "check_name").text(),
                title: t.get(i, "title").text(),
                badge,
                addresses: (t.get(i, "addresses") != &Cell::Null).then(|| Addresses {
                    addresses: cell(t, "identity", i, "addresses", Fmt::Int),
                    users: cell(t, "identity", i, "users", Fmt::Int),
                }),
                examples_shown,
                examples,
                users: cell(t, "identity", i, "users", Fmt::Int),
                of_users: cell(t, "identity", i, "of_users", Fmt::Int),
                pct: cell(t, "identity", i, "pct", Fmt::Pct),
                fix: t.get(i, "fix").text(),
                status,
            }
        })
        .collect();
    Identity {
        notices: Vec::new(),
        rows,
    }
}

#[derive(Serialize)]
struct Warnings {
    notice: Option<Notice>,
    rows: Vec<WarningRow>,
}

#[derive(Serialize)]
struct WarningRow {
    class: &'static str,
    code: String,
    message: String,
    fix: String,
}

fn warnings(d: &ReportData) -> Warnings {
    let t = d.table("warnings");
    let notice = if t.missing {
        Some(Notice::NotRecorded {
            run_id: d.run_id.clone(),
        })
    } else if t.is_empty() {
        Some(Notice::ok("No warnings: nothing to do."))
    } else {
        None
    };
    let rows = if notice.is_some() {
        Vec::new()
    } else {
        (0..t.len())
            .map(|i| {
                let code = t.get(i, "code").text();
                WarningRow {
                    class: if code == "run_failed" { "bad" } else { "warnc" },
                    message: t.get(i, "message").text(),
                    fix: t.get(i, "fix").text(),
                    code,
                }
            })
            .collect()
    };
    Warnings { notice, rows }
}

#[derive(Serialize)]
struct RunDetails {
    chart: String,
    requests: Num,
    retries: Num,
    throttled: Num,
    waited: Num,
    stalled: Num,
    stalled_seconds: Num,
    streams: Vec<StreamRow>,
}

#[derive(Serialize)]
struct StreamRow {
    stream: String,
    cells: [Num; 9],
}

fn run_details(d: &ReportData) -> RunDetails {
    let run = d.table("run");
    let stages = d.table("stages");
    let max = (0..stages.len())
        .filter_map(|i| stages.get(i, "seconds").as_f64())
        .fold(0.0, f64::max);
    let bars: Vec<Bar> = (0..stages.len())
        .map(|i| {
            let stage = stages.get(i, "stage").text();
            Bar {
                title: format!("{stage}: {}", show(stages.get(i, "seconds"), Fmt::Secs)),
                label: stage,
                segments: vec![(stages.get(i, "seconds").as_f64().unwrap_or(0.0), "all")],
                value: tspan(stages, "stages", i, "seconds", Fmt::Secs),
            }
        })
        .collect();
    let one = |col: &str, fmt: Fmt| num(run, "run", false, 0, col, fmt);
    let t = d.table("requests");
    RunDetails {
        chart: svg::hbars("Seconds per stage", &bars, max, None),
        requests: one("requests", Fmt::Int),
        retries: one("retries", Fmt::Int),
        throttled: one("throttled", Fmt::Int),
        waited: one("waited_seconds", Fmt::Secs),
        stalled: one("stalled", Fmt::Int),
        stalled_seconds: one("stalled_seconds", Fmt::Secs),
        streams: (0..t.len())
            .map(|i| {
                let c = |col: &str, fmt: Fmt| cell(t, "requests", i, col, fmt);
                StreamRow {
                    stream: t.get(i, "stream").text(),
                    cells: [
                        c("rows", Fmt::Int),
                        c("pages", Fmt::Int),
                        c("requests", Fmt::Int),
                        c("retries", Fmt::Int),
                        c("throttled", Fmt::Int),
                        c("waited_seconds", Fmt::Secs),
                        c("stalled", Fmt::Int),
                        c("stalled_seconds", Fmt::Secs),
                        c("duplicates", Fmt::Int),
                    ],
                }
            })
            .collect(),
    }
}

#[derive(Serialize)]
struct History {
    chart: String,
    rows: Vec<HistoryRow>,
}

#[derive(Serialize)]
struct HistoryRow {
    this_run: bool,
    run_id: String,
    started: String,
    status_class: &'static str,
    status: String,
    cells: [Num; 5],
}

fn history(d: &ReportData) -> History {
    let t = d.table("history");
    let max = (0..t.len())
        .filter_map(|i| t.get(i, "fetched").as_f64())
        .fold(0.0, f64::max);
    let cols: Vec<Column> = (0..t.len())
        .map(|i| {
            let run_id = t.get(i, "run_id").text();
            let status = t.get(i, "status").text();
            Column {
                // "2026-11-28 02:00" → "11-28 02:00", drawn as two lines.
                label: t
                    .get(i, "started_at")
                    .text()
                    .get(5..)
                    .unwrap_or("")
                    .to_string(),
                segments: vec![
                    (t.get(i, "kept").as_f64().unwrap_or(0.0), "kept"),
                    (t.get(i, "rejected").as_f64().unwrap_or(0.0), "rej"),
                    (t.get(i, "filtered_out").as_f64().unwrap_or(0.0), "out"),
                ],
                status: status_class(&status),
                current: t.get(i, "this_run").as_bool(),
                title: format!(
                    "{run_id} ({status}): {} fetched, {} kept",
                    show(t.get(i, "fetched"), Fmt::Int),
                    show(t.get(i, "kept"), Fmt::Int)
                ),
            }
        })
        .collect();
    History {
        chart: svg::strip("Recent runs", &cols, max),
        rows: (0..t.len())
            .map(|i| {
                let status = t.get(i, "status").text();
                let c = |col: &str| cell(t, "history", i, col, Fmt::Int);
                HistoryRow {
                    this_run: t.get(i, "this_run").as_bool(),
                    run_id: t.get(i, "run_id").text(),
                    started: t.get(i, "started_at").text(),
                    status_class: status_class(&status),
                    status,
                    cells: [
                        c("fetched"),
                        c("kept"),
                        c("filtered_out"),
                        c("rejected"),
                        c("warnings"),
                    ],
                }
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_examples_are_escaped_and_bounded_in_words() {
        let text = |v: &str| Cell::Text(v.into());
        let run = Table {
            columns: vec!["transform_status".into()],
            rows: vec![vec![text("succeeded")]],
            missing: false,
        };
        let cols = [
            "check_name",
            "status",
            "title",
            "users",
            "of_users",
            "pct",
            "addresses",
            "examples",
            "fix",
        ];
        let identity = Table {
            columns: cols.iter().map(|c| c.to_string()).collect(),
            rows: vec![
                vec![
                    text("shared_address"),
                    text("finding"),
                    text("Shared"),
                    Cell::Int(30),
                    Cell::Int(1000),
                    Cell::Num(3.0),
                    Cell::Int(12),
                    text("<x>@y: a@y, b@y\n'q'@y: c@y, d@y"),
                    text("remove it & more"),
                ],
                vec![
                    text("no_manager"),
                    text("not_read"),
                    text("No manager"),
                    Cell::Null,
                    Cell::Null,
                    Cell::Null,
                    Cell::Null,
                    text(""),
                    text("Not read by this run."),
                ],
            ],
            missing: false,
        };
        let d = ReportData {
            run_id: "r1".into(),
            tables: [("run", run), ("identity", identity)].into_iter().collect(),
        };
        let s = page(&d).unwrap();
        assert!(s.contains("<li>&lt;x&gt;@y: a@y, b@y</li><li>&#39;q&#39;@y: c@y, d@y</li>"));
        // Two of twelve addresses listed (not "of thirty people").
        assert!(s.contains("Examples, the first 2:"), "{s}");
        assert!(s.contains("remove it &amp; more"));
        assert!(s.contains(r#"data-metric="identity.shared_address.addresses" data-value="12""#));
        assert!(s.contains(
            r#"<td class="n" data-metric="identity.no_manager.users" data-value="">–</td>"#
        ));
        assert!(s.contains(r#"<span class="badge">not read</span>"#));
        assert!(!s.contains("<x>"));
    }

    #[test]
    fn numbers_show_grouped_with_their_source() {
        let t = Table {
            columns: vec!["k".into(), "v".into(), "p".into()],
            rows: vec![vec![
                Cell::Text("a\"b".into()),
                Cell::Int(-1234567),
                Cell::Null,
            ]],
            missing: false,
        };
        assert_eq!(
            tagged("td", &num(&t, "q", true, 0, "v", Fmt::Int)),
            r#"<td class="n" data-metric="q.a&quot;b.v" data-value="-1234567">-1,234,567</td>"#
        );
        assert_eq!(
            tagged("td", &num(&t, "q", false, 0, "p", Fmt::Pct)),
            r#"<td class="n" data-metric="q.p" data-value="">–</td>"#
        );
    }

    /// The charts' numbers (`tagged`, in Rust) and the tables' (the `n` macro) are one
    /// contract written twice: they must lay a number out byte for byte alike.
    #[test]
    fn the_macro_and_the_charts_write_a_number_alike() {
        let t = Table {
            columns: vec!["k".into(), "v".into()],
            rows: vec![vec![Cell::Text("<a&'b>".into()), Cell::Num(12.25)]],
            missing: false,
        };
        let n = num(&t, "q", true, 0, "v", Fmt::Pct);
        let by_macro = crate::html::render_str(
            r#"{% import "report/macros.html" as m %}{{ m.n("tspan", n) }}"#,
            &serde_json::json!({ "n": n }),
        )
        .unwrap();
        assert_eq!(by_macro, tagged("tspan", &n));
        assert!(
            by_macro.contains(r#"data-metric="q.&lt;a&amp;&#39;b&gt;.v""#),
            "{by_macro}"
        );
    }

    #[test]
    fn a_run_with_no_figures_still_renders_every_section() {
        let d = ReportData {
            run_id: "r<1>".into(),
            tables: Default::default(),
        };
        let s = page(&d).unwrap();
        for section in [
            "run", "funnel", "licences", "activity", "office", "identity", "warnings", "history",
        ] {
            assert!(
                s.contains(&format!(r#"data-section="{section}""#)),
                "{section}"
            );
        }
        assert!(s.contains("This run was not transformed"));
        assert!(s.contains("--run r&lt;1&gt;") && !s.contains("r<1>"));
        assert!(s.starts_with("<!DOCTYPE html>\n") && s.ends_with("</html>\n"));
    }
}
