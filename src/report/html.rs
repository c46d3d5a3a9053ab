//! The report page: one HTML document with inline CSS (and a print stylesheet) and inline
//! SVG, no scripts, fonts or links to anything outside the file.
//!
//! Every number shown comes from a report query and carries its source as
//! `data-metric="<query>.<key>.<column>"` (or `<query>.<column>` for one-row queries) and the
//! raw value as `data-value`, so tests and scripts can check the page against the SQL. Every
//! value from data (names, SKU names, error texts) goes through [`esc`].

use super::escape::esc;
use std::fmt::Write;

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

/// A number from query `q` (row `row`, column `col`) as an element `tag` with its source.
fn num(tag: &str, t: &Table, q: &str, keyed: bool, row: usize, col: &str, fmt: Fmt) -> String {
    let cell = t.get(row, col);
    let metric = if keyed {
        format!("{q}.{}.{col}", t.rows[row][0].text())
    } else {
        format!("{q}.{col}")
    };
    format!(
        r#"<{tag} class="n" data-metric="{}" data-value="{}">{}</{tag}>"#,
        esc(&metric),
        raw(cell),
        esc(&show(cell, fmt))
    )
}

/// A table cell holding a number.
fn td(t: &Table, q: &str, row: usize, col: &str, fmt: Fmt) -> String {
    num("td", t, q, true, row, col, fmt)
}

/// Text of a one-row query's column.
fn text(t: &Table, col: &str) -> String {
    t.get(0, col).text()
}

fn notice(s: &mut String, class: &str, html: &str) {
    let _ = write!(s, r#"<p class="notice {class}">{html}</p>"#);
}

/// What a section says when the run's database has no figures for it.
fn not_recorded(s: &mut String, d: &ReportData) {
    notice(
        s,
        "info",
        &format!(
            "Not recorded for this run: it was transformed before the report existed, or not at all. Transform it again with <code>m365-connector transform -c FILE --run {}</code>, then <code>m365-connector report -c FILE --run {}</code>.",
            esc(&d.run_id),
            esc(&d.run_id)
        ),
    );
}

fn concealed_notice(s: &mut String, what: &str) {
    notice(
        s,
        "warn",
        &format!(
            "<b>{} unknown: usage reports conceal user names</b>, so no report row could be matched to a user. <b>What to do:</b> {}",
            esc(what),
            esc(crate::concealment::FIX)
        ),
    );
}

/// The whole page.
pub fn page(d: &ReportData) -> String {
    let mut s = String::with_capacity(64 * 1024);
    let run = d.table("run");
    let title = format!(
        "{} — run {} — Microsoft 365 import report",
        text(run, "connector"),
        d.run_id
    );
    let _ = write!(
        s,
        r#"<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="m365-connector {}">
<title>{}</title>
<style>{CSS}</style>
</head>
<body>
"#,
        env!("CARGO_PKG_VERSION"),
        esc(&title)
    );
    header(&mut s, d);
    s.push_str(
        r##"<nav><a href="#funnel">Imported</a> <a href="#licences">Licences</a> <a href="#activity">Activity</a> <a href="#office">Office</a> <a href="#identity">Identity</a> <a href="#warnings">Warnings</a> <a href="#run">Run</a> <a href="#history">History</a></nav>
<main>
"##,
    );
    funnel(&mut s, d);
    licences(&mut s, d);
    activity(&mut s, d);
    office(&mut s, d);
    identity(&mut s, d);
    warnings(&mut s, d);
    run_details(&mut s, d);
    history(&mut s, d);
    footer(&mut s, d);
    s.push_str("</main>\n</body>\n</html>\n");
    s
}

fn status_class(status: &str) -> &'static str {
    match status {
        "succeeded" => "ok",
        "failed" => "bad",
        _ => "busy",
    }
}

fn header(s: &mut String, d: &ReportData) {
    let run = d.table("run");
    let status = text(run, "status");
    let _ = write!(
        s,
        r#"<header data-section="run">
<h1>Microsoft 365 import report</h1>
<p class="sub"><b>{}</b> · tenant <code>{}</code> · run <code>{}</code> <span class="badge {}">{}</span></p>
<dl class="facts">
<dt>Started</dt><dd>{}</dd>
<dt>Finished</dt><dd>{}</dd>
<dt>Server</dt><dd>{}</dd>
<dt>Date filter</dt><dd>{}</dd>
<dt>Report period</dt><dd>{}</dd>
<dt>Stages</dt><dd>extract {}, transform {}, load {}</dd>
</dl>
"#,
        esc(&text(run, "connector")),
        esc(&text(run, "tenant_id")),
        esc(&d.run_id),
        status_class(&status),
        esc(&status),
        esc(&text(run, "started_at")),
        esc(&or_dash(text(run, "finished_at"))),
        esc(&or_dash(text(run, "server"))),
        date_filter_text(run),
        esc(&period_text(run, d.table("activity"))),
        esc(&or_dash(text(run, "extract_status"))),
        esc(&or_dash(text(run, "transform_status"))),
        esc(&or_dash(text(run, "load_status"))),
    );
    let f = d.table("funnel");
    if !f.is_empty() {
        s.push_str(r#"<div class="kpis">"#);
        for (col, label, class) in [
            ("fetched", "users fetched", "all"),
            ("kept", "exported as people", "kept"),
            ("filtered_out", "left out by the date filter", "out"),
            ("rejected", "rejected", "rej"),
        ] {
            let _ = write!(
                s,
                r#"<div class="kpi {class}">{}<span>{label}</span></div>"#,
                num("b", f, "funnel", false, 0, col, Fmt::Int)
            );
        }
        let w = d.table("warnings").len();
        let _ = write!(
            s,
            r##"<div class="kpi {}"><b>{w}</b><span><a href="#warnings">warning{} to read</a></span></div>"##,
            if w > 0 { "warnc" } else { "ok" },
            if w == 1 { "" } else { "s" }
        );
        s.push_str("</div>\n");
    }
    s.push_str("</header>\n");
}

fn or_dash(s: String) -> String {
    if s.is_empty() { "–".into() } else { s }
}

fn date_filter_text(run: &Table) -> String {
    match run.get(0, "date_filter_days").as_i64() {
        Some(0) => format!(
            "off ({} days): every user is kept",
            num("span", run, "run", false, 0, "date_filter_days", Fmt::Int)
        ),
        Some(_) => format!(
            "users last seen on or after <b>{}</b> are kept ({} days before the run date {})",
            esc(&text(run, "date_filter_cutoff")),
            num("span", run, "run", false, 0, "date_filter_days", Fmt::Int),
            esc(&text(run, "run_date"))
        ),
        None => "–".to_string(),
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

fn section_start(s: &mut String, id: &str, title: &str, intro: &str) {
    let _ = write!(
        s,
        r#"<section id="{id}" data-section="{id}">
<h2>{title}</h2>
<p class="intro">{intro}</p>
"#
    );
}

fn transformed(d: &ReportData) -> bool {
    text(d.table("run"), "transform_status") == "succeeded"
}

/// Says why a section has nothing to show, if so: the run was not transformed, or its
/// figures were never recorded (`empty_means_missing`: the query always has rows for a
/// transformed run).
fn unavailable(s: &mut String, d: &ReportData, t: &Table, empty_means_missing: bool) -> bool {
    if !transformed(d) {
        notice(
            s,
            "info",
            "This run was not transformed: nothing to show here (the warnings say why).",
        );
        true
    } else if t.missing || (empty_means_missing && t.is_empty()) {
        not_recorded(s, d);
        true
    } else {
        false
    }
}

fn funnel(s: &mut String, d: &ReportData) {
    section_start(
        s,
        "funnel",
        "Who was imported, and who was left out",
        "Every user Graph returned, the users the date filter left out (no sign of life since the cutoff), the records rejected for another reason, and the people exported.",
    );
    let f = d.table("funnel");
    if !transformed(d) || f.is_empty() || f.get(0, "fetched") == &Cell::Null {
        notice(
            s,
            "info",
            "This run was not transformed, so nobody was imported. The warnings below say why.",
        );
        s.push_str("</section>\n");
        return;
    }
    let max = f.get(0, "fetched").as_f64().unwrap_or(0.0);
    let rows = [
        ("fetched", "Users fetched from Graph", "all"),
        ("filtered_out", "Left out by the date filter", "out"),
        ("passed_filter", "Passed the date filter", "pass"),
        ("rejected", "Rejected (reasons below)", "rej"),
        ("kept", "Exported as people", "kept"),
    ];
    let bars: Vec<Bar> = rows
        .iter()
        .map(|(col, label, class)| Bar {
            label: label.to_string(),
            segments: vec![(f.get(0, col).as_f64().unwrap_or(0.0), class)],
            value: num("tspan", f, "funnel", false, 0, col, Fmt::Int),
            title: format!("{label}: {}", show(f.get(0, col), Fmt::Int)),
        })
        .collect();
    s.push_str(&svg::hbars("The funnel of this run", &bars, max, None));

    let rejects = d.table("rejects");
    s.push_str("<h3>Rejected records</h3>\n");
    let rejects_unavailable = unavailable(s, d, rejects, false);
    if rejects_unavailable {
        // Said why.
    } else if rejects.is_empty() {
        notice(s, "ok", "No record was rejected.");
    } else {
        s.push_str(
            "<table><thead><tr><th>Reason</th><th class=\"r\">People</th><th>What to do</th></tr></thead><tbody>\n",
        );
        for i in 0..rejects.len() {
            let _ = writeln!(
                s,
                "<tr><td>{}</td>{}<td>{}</td></tr>",
                esc(&rejects.get(i, "reason").text()),
                td(rejects, "rejects", i, "people", Fmt::Int),
                esc(&rejects.get(i, "fix").text())
            );
        }
        s.push_str("</tbody></table>\n");
    }

    let unmatched = d.table("unmatched");
    if !unmatched.is_empty() {
        s.push_str("<h3>Usage-report rows that match no user</h3>\n<p class=\"intro\">Never people themselves: they are counted so nothing is dropped silently.</p>\n");
        s.push_str("<table><thead><tr><th>Reason</th><th class=\"r\">Report rows</th><th class=\"r\">Reports</th><th>Why</th></tr></thead><tbody>\n");
        for i in 0..unmatched.len() {
            let _ = writeln!(
                s,
                "<tr><td>{}</td>{}{}<td>{}</td></tr>",
                esc(&unmatched.get(i, "reason").text()),
                td(unmatched, "unmatched", i, "report_rows", Fmt::Int),
                td(unmatched, "unmatched", i, "reports", Fmt::Int),
                esc(&unmatched.get(i, "explanation").text())
            );
        }
        s.push_str("</tbody></table>\n");
    }
    s.push_str("</section>\n");
}

fn licences(s: &mut String, d: &ReportData) {
    section_start(
        s,
        "licences",
        "Licences",
        "Prepaid and consumed units per subscription, the users of this run holding each, and the holders it could be reclaimed from: <b>inactive</b> (enabled, no activity in any service in the report period, not created or licensed within it) and <b>disabled</b> accounts.",
    );
    let t = d.table("licences");
    let licences_unavailable = unavailable(s, d, t, false);
    if licences_unavailable {
        // Said why.
    } else if t.is_empty() {
        notice(s, "info", "The tenant has no subscribed licences.");
    } else {
        if text(d.table("run"), "concealed_names") == "true" {
            concealed_notice(s, "Inactive licence holders are");
        }
        s.push_str("<table class=\"lic\"><thead><tr><th>Licence</th><th class=\"r\">Prepaid</th><th class=\"r\">Consumed</th><th class=\"r\">Available</th><th>Used</th><th class=\"r\">Holders</th><th class=\"r\">Inactive</th><th class=\"r\">Disabled</th></tr></thead><tbody>\n");
        for i in 0..t.len() {
            let status = t.get(i, "capability_status").text();
            let badge = if status.is_empty() || status == "Enabled" {
                String::new()
            } else {
                format!(r#" <span class="badge busy">{}</span>"#, esc(&status))
            };
            let fraction = match (t.get(i, "consumed").as_f64(), t.get(i, "prepaid").as_f64()) {
                (Some(c), Some(p)) if p > 0.0 => Some(c / p),
                (Some(c), Some(_)) if c > 0.0 => Some(2.0),
                _ => None,
            };
            let _ = writeln!(
                s,
                r#"<tr><td><b>{}</b>{badge}<br><small>{}</small></td>{}{}{}<td class="meter">{} {}</td>{}{}{}</tr>"#,
                esc(&t.get(i, "sku_name").text()),
                esc(&t.get(i, "sku_part_number").text()),
                td(t, "licences", i, "prepaid", Fmt::Int),
                td(t, "licences", i, "consumed", Fmt::Int),
                td(t, "licences", i, "available", Fmt::Int),
                svg::meter(fraction),
                num("span", t, "licences", true, i, "used_pct", Fmt::Pct),
                td(t, "licences", i, "assigned_users", Fmt::Int),
                td(t, "licences", i, "inactive_users", Fmt::Int),
                td(t, "licences", i, "disabled_users", Fmt::Int),
            );
        }
        s.push_str("</tbody></table>\n<p class=\"hint\"><b>What to do:</b> remove the licence from inactive and disabled holders in the Microsoft 365 admin center (Users &gt; Active users &gt; Licenses and apps), or lower the subscription's quantity at renewal. A negative <i>Available</i> means more units are assigned than paid for.</p>\n");
    }
    s.push_str("</section>\n");
}

fn activity(s: &mut String, d: &ReportData) {
    section_start(
        s,
        "activity",
        "Activity",
        "Users with activity in each service within the report period, and when users were last seen: the date the date filter decides on.",
    );
    let run = d.table("run");
    let concealed = text(run, "concealed_names") == "true";
    let t = d.table("activity");
    s.push_str("<h3>Active users per service</h3>\n");
    if !unavailable(s, d, t, true) {
        if concealed {
            concealed_notice(s, "Activity per service is");
        }
        let max = (0..t.len())
            .filter_map(|i| t.get(i, "users").as_f64())
            .fold(0.0, f64::max);
        let bars: Vec<Bar> = (0..t.len())
            .map(|i| {
                let service = t.get(i, "service").text();
                let value = format!(
                    "{} of {} ({})",
                    num("tspan", t, "activity", true, i, "active_users", Fmt::Int),
                    num("tspan", t, "activity", true, i, "users", Fmt::Int),
                    num("tspan", t, "activity", true, i, "active_pct", Fmt::Pct)
                );
                Bar {
                    title: format!(
                        "{service}: {} of {} users active",
                        show(t.get(i, "active_users"), Fmt::Int),
                        show(t.get(i, "users"), Fmt::Int)
                    ),
                    label: service,
                    segments: vec![(t.get(i, "active_users").as_f64().unwrap_or(0.0), "kept")],
                    value,
                }
            })
            .collect();
        s.push_str(&svg::hbars("Active users per service", &bars, max, None));
        if max == 0.0 {
            notice(s, "info", "This run has no users.");
        }
    }

    s.push_str("<h3>Last seen</h3>\n<p class=\"intro\">Users by the week or month of their <code>last_seen_date</code>: the latest of account creation, password change and every usage report's activity and licence-assignment dates. Green bars passed the date filter, amber ones were left out.</p>\n");
    let h = d.table("last_seen");
    if !unavailable(s, d, h, true) {
        if concealed {
            notice(
                s,
                "info",
                "Report names are concealed: last-seen dates come from directory dates only (account creation, password change).",
            );
        }
        last_seen_chart(s, d, h);
    }
    s.push_str("</section>\n");
}

/// Histogram rows newest first; empty `later`/`unknown` buckets are left out of the chart.
fn last_seen_chart(s: &mut String, d: &ReportData, h: &Table) {
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
            let mut value = num("tspan", h, "last_seen", true, i, "users", Fmt::Int);
            if passed > 0.0 && out > 0.0 {
                let _ = write!(
                    value,
                    " ({} kept, {} left out)",
                    num("tspan", h, "last_seen", true, i, "passed_filter", Fmt::Int),
                    num("tspan", h, "last_seen", true, i, "filtered_out", Fmt::Int),
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
    if max == 0.0 {
        notice(s, "info", "This run has no users.");
    } else {
        s.push_str(&svg::hbars(
            "Users by last-seen date",
            &bars,
            max,
            marker.as_ref(),
        ));
        s.push_str(r#"<p class="legend"><span class="sw kept"></span> kept by the date filter <span class="sw out"></span> left out by the date filter</p>"#);
    }
    s.push_str("<details><summary>Figures</summary><table><thead><tr><th>Bucket</th><th>From</th><th>To</th><th class=\"r\">Users</th><th class=\"r\">Kept</th><th class=\"r\">Left out</th></tr></thead><tbody>\n");
    for i in 0..h.len() {
        let _ = writeln!(
            s,
            "<tr><td>{}</td><td>{}</td><td>{}</td>{}{}{}</tr>",
            esc(&h.get(i, "bucket").text()),
            esc(&or_dash(h.get(i, "bucket_start").text())),
            esc(&or_dash(h.get(i, "bucket_end").text())),
            td(h, "last_seen", i, "users", Fmt::Int),
            td(h, "last_seen", i, "passed_filter", Fmt::Int),
            td(h, "last_seen", i, "filtered_out", Fmt::Int),
        );
    }
    s.push_str("</tbody></table></details>\n");
}

/// "2026-08-23" → "2026-08-24" (the first day of the first bucket).
fn next_day_text(day: &str) -> String {
    chrono::NaiveDate::parse_from_str(day, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.succ_opt())
        .map(|d| d.to_string())
        .unwrap_or_else(|| day.to_string())
}

fn office(s: &mut String, d: &ReportData) {
    section_start(
        s,
        "office",
        "Office activations and app usage",
        "Users with Office activated per platform (and the activations counted), and users of each Microsoft 365 app and platform within the report period.",
    );
    let concealed = text(d.table("run"), "concealed_names") == "true";
    let acts = d.table("activations");
    let apps = d.table("apps");
    if unavailable(s, d, acts, true) || unavailable(s, d, apps, true) {
        s.push_str("</section>\n");
        return;
    }
    if concealed {
        concealed_notice(s, "Office activations and app usage are");
        s.push_str("</section>\n");
        return;
    }
    s.push_str("<h3>Activations by platform</h3>\n");
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
                    num("tspan", acts, "activations", true, i, "users", Fmt::Int),
                    num(
                        "tspan",
                        acts,
                        "activations",
                        true,
                        i,
                        "activations",
                        Fmt::Int
                    )
                ),
            }
        })
        .collect();
    s.push_str(&svg::hbars(
        "Office activations by platform",
        &bars,
        max,
        None,
    ));

    s.push_str("<h3>App usage</h3>\n");
    let max = (0..apps.len())
        .filter_map(|i| apps.get(i, "users").as_f64())
        .fold(0.0, f64::max);
    for (kind, caption) in [("app", "Users per app"), ("platform", "Users per platform")] {
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
                    value: num("tspan", apps, "apps", true, i, "users", Fmt::Int),
                }
            })
            .collect();
        s.push_str(&svg::hbars(caption, &bars, max, None));
    }
    s.push_str("</section>\n");
}

fn identity(s: &mut String, d: &ReportData) {
    section_start(
        s,
        "identity",
        "Identity hygiene",
        "Directory problems to fix in Entra ID, over every user Graph returned for this run (exported or not): people without a manager or with one that is not a user, enabled accounts nobody signs in to, email addresses several people carry, and accounts directory sync no longer keeps up to date.",
    );
    let t = d.table("identity");
    if !unavailable(s, d, t, true) {
        s.push_str("<table class=\"identity\"><thead><tr><th>Check</th><th class=\"r\">People</th><th class=\"r\">Of</th><th class=\"r\">Share</th><th>What to do</th></tr></thead><tbody>\n");
        for i in 0..t.len() {
            let status = t.get(i, "status").text();
            let badge = match status.as_str() {
                "finding" => r#" <span class="badge busy">to fix</span>"#,
                "ok" => r#" <span class="badge ok">ok</span>"#,
                "not_read" => r#" <span class="badge">not read</span>"#,
                _ => "",
            };
            let mut what = format!("<b>{}</b>{badge}", esc(&t.get(i, "title").text()));
            if t.get(i, "addresses") != &Cell::Null {
                let _ = write!(
                    what,
                    "<br>{} addresses, carried by {} people",
                    num("span", t, "identity", true, i, "addresses", Fmt::Int),
                    num("span", t, "identity", true, i, "users", Fmt::Int)
                );
            }
            let examples = t.get(i, "examples").text();
            let lines: Vec<&str> = examples.lines().filter(|l| !l.is_empty()).collect();
            if !lines.is_empty() {
                // Shared addresses list one address a line; the other checks one user.
                let listed = match t.get(i, "addresses") {
                    Cell::Null => t.get(i, "users"),
                    n => n,
                };
                let shown = match listed.as_i64() {
                    Some(n) if n > lines.len() as i64 => format!(", the first {}", lines.len()),
                    _ => String::new(),
                };
                let _ = write!(
                    what,
                    "<br><small>Examples{shown}:</small><ul class=\"examples\">"
                );
                for l in lines {
                    let _ = write!(what, "<li>{}</li>", esc(l));
                }
                what.push_str("</ul>");
            }
            let _ = writeln!(
                s,
                r#"<tr class="{}" data-check="{}"><td>{what}</td>{}{}{}<td>{}</td></tr>"#,
                esc(&status),
                esc(&t.get(i, "check_name").text()),
                td(t, "identity", i, "users", Fmt::Int),
                td(t, "identity", i, "of_users", Fmt::Int),
                td(t, "identity", i, "pct", Fmt::Pct),
                esc(&t.get(i, "fix").text()),
            );
        }
        s.push_str("</tbody></table>\n<p class=\"hint\"><i>Of</i> is the users each check looked at: all of them, the enabled ones (sign-ins), those with a manager (unresolved managers) or the synced ones (stale sync). Examples are the first 10 at most; <code>m365-connector sql -c FILE \"$(cat sql/report/report_identity.sql)\"</code> gives the same figures.</p>\n");
    }
    s.push_str("</section>\n");
}

fn warnings(s: &mut String, d: &ReportData) {
    section_start(
        s,
        "warnings",
        "Warnings and what to do",
        "Problems the run survived (or the one that stopped it), each with its fix.",
    );
    let t = d.table("warnings");
    if t.missing {
        not_recorded(s, d);
    } else if t.is_empty() {
        notice(s, "ok", "No warnings: nothing to do.");
    } else {
        s.push_str("<ul class=\"warnings\">\n");
        for i in 0..t.len() {
            let code = t.get(i, "code").text();
            let class = if code == "run_failed" { "bad" } else { "warnc" };
            let _ = writeln!(
                s,
                r#"<li class="{class}" data-warning="{}"><code>{}</code> {}<br><b>What to do:</b> {}</li>"#,
                esc(&code),
                esc(&code),
                esc(&t.get(i, "message").text()),
                esc(&t.get(i, "fix").text())
            );
        }
        s.push_str("</ul>\n");
    }
    s.push_str("</section>\n");
}

fn run_details(s: &mut String, d: &ReportData) {
    section_start(
        s,
        "run",
        "Timings and requests",
        "Seconds per stage, and the Microsoft Graph requests the extract sent.",
    );
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
                value: num("tspan", stages, "stages", true, i, "seconds", Fmt::Secs),
            }
        })
        .collect();
    s.push_str(&svg::hbars("Seconds per stage", &bars, max, None));
    let _ = writeln!(
        s,
        "<p>{} requests in total (sign-in included), {} retries, {} throttling responses, {} spent waiting on them; {} requests stalled (cut at their deadline, not throttling), {} lost to them.</p>",
        num("b", run, "run", false, 0, "requests", Fmt::Int),
        num("b", run, "run", false, 0, "retries", Fmt::Int),
        num("b", run, "run", false, 0, "throttled", Fmt::Int),
        num("b", run, "run", false, 0, "waited_seconds", Fmt::Secs),
        num("b", run, "run", false, 0, "stalled", Fmt::Int),
        num("b", run, "run", false, 0, "stalled_seconds", Fmt::Secs),
    );
    let t = d.table("requests");
    if !t.is_empty() {
        s.push_str("<table><thead><tr><th>Stream</th><th class=\"r\">Rows</th><th class=\"r\">Pages</th><th class=\"r\">Requests</th><th class=\"r\">Retries</th><th class=\"r\">Throttled</th><th class=\"r\">Waited</th><th class=\"r\">Stalled</th><th class=\"r\">Time lost to stalls</th><th class=\"r\">Repeated records</th></tr></thead><tbody>\n");
        for i in 0..t.len() {
            let _ = writeln!(
                s,
                "<tr><td>{}</td>{}{}{}{}{}{}{}{}{}</tr>",
                esc(&t.get(i, "stream").text()),
                td(t, "requests", i, "rows", Fmt::Int),
                td(t, "requests", i, "pages", Fmt::Int),
                td(t, "requests", i, "requests", Fmt::Int),
                td(t, "requests", i, "retries", Fmt::Int),
                td(t, "requests", i, "throttled", Fmt::Int),
                td(t, "requests", i, "waited_seconds", Fmt::Secs),
                td(t, "requests", i, "stalled", Fmt::Int),
                td(t, "requests", i, "stalled_seconds", Fmt::Secs),
                td(t, "requests", i, "duplicates", Fmt::Int),
            );
        }
        s.push_str("</tbody></table>\n");
    }
    s.push_str("</section>\n");
}

fn history(s: &mut String, d: &ReportData) {
    section_start(
        s,
        "history",
        "Recent runs",
        "The last runs up to this one, oldest first: people exported (green), rejected (red) and left out by the date filter (amber); the dot is the run's status.",
    );
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
    s.push_str(&svg::strip("Recent runs", &cols, max));
    s.push_str("<table><thead><tr><th>Run</th><th>Started</th><th>Status</th><th class=\"r\">Fetched</th><th class=\"r\">Kept</th><th class=\"r\">Filtered out</th><th class=\"r\">Rejected</th><th class=\"r\">Warnings</th></tr></thead><tbody>\n");
    for i in 0..t.len() {
        let status = t.get(i, "status").text();
        let _ = writeln!(
            s,
            r#"<tr{}><td><code>{}</code></td><td>{}</td><td><span class="badge {}">{}</span></td>{}{}{}{}{}</tr>"#,
            if t.get(i, "this_run").as_bool() {
                r#" class="this""#
            } else {
                ""
            },
            esc(&t.get(i, "run_id").text()),
            esc(&t.get(i, "started_at").text()),
            status_class(&status),
            esc(&status),
            td(t, "history", i, "fetched", Fmt::Int),
            td(t, "history", i, "kept", Fmt::Int),
            td(t, "history", i, "filtered_out", Fmt::Int),
            td(t, "history", i, "rejected", Fmt::Int),
            td(t, "history", i, "warnings", Fmt::Int),
        );
    }
    s.push_str("</tbody></table>\n</section>\n");
}

fn footer(s: &mut String, d: &ReportData) {
    let id = esc(&d.run_id);
    let _ = write!(
        s,
        r#"<footer>
<p>Every figure on this page is the result of a query in <code>sql/report/</code> on the staging database, for example
<code>m365-connector sql -c FILE "SET VARIABLE run_id = '{id}'; $(cat sql/report/report_funnel.sql)"</code>.
Render this page again with <code>m365-connector report -c FILE --run {id}</code>.</p>
</footer>
"#
    );
}

/// Inline styles: screen, then print (no navigation, no page breaks inside a chart or
/// table row, colours kept so the bars still read).
const CSS: &str = r#"
:root{--all:#4a6fa5;--pass:#6b9bd1;--kept:#2e8540;--out:#d9a21b;--rej:#c0392b;--ink:#1d2433;--mute:#5b6475;--line:#d8dde6;--track:#eef1f5}
*{box-sizing:border-box}
body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;color:var(--ink);background:#fff}
header,main{max-width:980px;margin:0 auto;padding:0 20px}
header{padding-top:18px}
h1{font-size:22px;margin:0 0 4px}
h2{font-size:18px;margin:28px 0 4px;padding-top:8px;border-top:2px solid var(--line)}
h3{font-size:15px;margin:18px 0 6px}
.sub{margin:0 0 10px;color:var(--mute)}
code{font:12px ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;background:var(--track);padding:1px 4px;border-radius:3px;word-break:break-all}
.facts{display:grid;grid-template-columns:max-content 1fr;gap:2px 14px;margin:0 0 12px}
.facts dt{color:var(--mute)}.facts dd{margin:0}
.kpis{display:flex;flex-wrap:wrap;gap:10px;margin:8px 0 4px}
.kpi{flex:1 1 150px;border:1px solid var(--line);border-left:6px solid var(--all);border-radius:6px;padding:8px 12px}
.kpi b{display:block;font-size:24px}.kpi span{color:var(--mute)}
.kpi.kept{border-left-color:var(--kept)}.kpi.out{border-left-color:var(--out)}.kpi.rej{border-left-color:var(--rej)}.kpi.warnc{border-left-color:var(--out)}.kpi.ok{border-left-color:var(--kept)}
nav{position:sticky;top:0;background:#fff;border-bottom:1px solid var(--line);padding:6px 20px;text-align:center;z-index:1}
nav a{margin:0 8px;color:var(--all);text-decoration:none}
.intro,.hint,.legend{color:var(--mute);margin:2px 0 8px}
.badge{display:inline-block;padding:0 8px;border-radius:10px;font-size:12px;color:#fff;background:var(--mute)}
.badge.ok{background:var(--kept)}.badge.bad{background:var(--rej)}.badge.busy{background:var(--out)}
.notice{border-left:5px solid var(--all);background:#f3f6fb;padding:8px 12px;margin:8px 0}
.notice.warn{border-color:var(--out);background:#fdf7e7}.notice.ok{border-color:var(--kept);background:#eff8f1}
table{border-collapse:collapse;width:100%;margin:6px 0 10px;font-size:.93em}
th,td{text-align:left;padding:4px 6px;border-bottom:1px solid var(--line);vertical-align:top}
th{color:var(--mute);font-weight:600}
.r,td.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
tr.this td{background:#f3f6fb;font-weight:600}
td.meter{white-space:nowrap}
td code{white-space:nowrap;word-break:normal}
.meter .track{fill:var(--track)}.meter .used{fill:var(--all)}.meter .over{fill:var(--rej)}
svg.chart{display:block;max-width:100%;height:auto;margin:6px 0}
svg.strip{width:auto}
svg text{font:12px system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;fill:var(--ink)}
svg .label{fill:var(--ink)}svg .value{fill:var(--ink)}
svg .track{fill:var(--track)}svg .all{fill:var(--all)}svg .pass{fill:var(--pass)}svg .kept{fill:var(--kept)}svg .out{fill:var(--out)}svg .rej{fill:var(--rej)}
svg .ok{fill:var(--kept)}svg .bad{fill:var(--rej)}svg .busy{fill:var(--out)}
svg .current{fill:none;stroke:var(--ink);stroke-dasharray:3 2}
svg .cutoff{stroke:var(--rej);stroke-width:1.5;stroke-dasharray:6 3}svg .cutoff-label{fill:var(--rej);font-size:11px}
svg .tick{fill:var(--mute);font-size:11px}
.legend .sw{display:inline-block;width:12px;height:12px;margin:0 4px 0 10px;vertical-align:-1px}
.sw.kept{background:var(--kept)}.sw.out{background:var(--out)}
ul.warnings{list-style:none;padding:0}
ul.warnings li{border-left:5px solid var(--out);background:#fdf7e7;padding:8px 12px;margin:0 0 8px}
ul.warnings li.bad{border-color:var(--rej);background:#fbeeed}
ul.examples{margin:4px 0 0;padding-left:18px;font-size:12px;color:var(--mute);overflow-wrap:anywhere}
tr.finding>td:first-child{border-left:4px solid var(--out)}
details{margin:4px 0 10px}summary{cursor:pointer;color:var(--all)}
footer{color:var(--mute);font-size:12px;margin:30px 0 40px;border-top:1px solid var(--line);padding-top:8px}
@media print{
  @page{margin:14mm}
  body{font-size:11px}
  nav{display:none}
  header,main{max-width:none;padding:0}
  *{-webkit-print-color-adjust:exact;print-color-adjust:exact}
  svg,tr,li,.kpis,.notice{break-inside:avoid}
  h2,h3{break-after:avoid}
  details>summary{display:none}
  a{color:inherit;text-decoration:none}
}
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_quotes() {
        assert_eq!(
            esc(r#"<a href='x'>"&"</a>"#),
            "&lt;a href=&#39;x&#39;&gt;&quot;&amp;&quot;&lt;/a&gt;"
        );
    }

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
        let mut s = String::new();
        super::identity(&mut s, &d);
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
            num("td", &t, "q", true, 0, "v", Fmt::Int),
            r#"<td class="n" data-metric="q.a&quot;b.v" data-value="-1234567">-1,234,567</td>"#
        );
        assert_eq!(
            num("td", &t, "q", false, 0, "p", Fmt::Pct),
            r#"<td class="n" data-metric="q.p" data-value="">–</td>"#
        );
    }
}
