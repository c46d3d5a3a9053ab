//! One-screen summaries printed at the end of a command.

use std::fmt::Write;
use std::time::Duration;

use crate::extract::Extracted;
use crate::human::thousands;
use crate::load::Loaded;
use crate::pipeline::RunOutcome;
use crate::streams::Report;
use crate::transform::Transformed;

/// The end-of-extract summary.
pub fn extract(run: &Extracted, took: Duration) -> String {
    let m = &run.manifest;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "extract committed run {} in {:.1} s",
        run.run_id,
        took.as_secs_f64()
    );
    for name in crate::streams::Stream::COLLECTIONS.map(|s| s.name()) {
        if let Some(st) = m.streams.get(name) {
            let _ = writeln!(
                s,
                "  {name:<34} {:>10} rows  {:>5} pages",
                thousands(st.rows),
                st.pages
            );
        }
    }
    for r in Report::ALL {
        if let Some(st) = m.streams.get(r.stream()) {
            let _ = writeln!(
                s,
                "  {:<34} {:>10} rows  {:>8} KiB",
                r.stream(),
                thousands(st.rows),
                thousands(st.downloaded_bytes.unwrap_or(0) / 1024)
            );
        }
    }
    let _ = writeln!(
        s,
        "  requests {}, retries {}, throttled {}, waited {:.1} s, stalled {} ({:.1} s lost)",
        m.requests,
        m.retries,
        m.throttled,
        m.waited_ms as f64 / 1000.0,
        m.stalled,
        m.stalled_ms as f64 / 1000.0
    );
    let _ = writeln!(s, "  raw files: {}", run.dir.display());
    if !m.warnings.is_empty() {
        let _ = writeln!(s, "warnings:");
        for w in &m.warnings {
            let _ = writeln!(s, "  - {}: {}\n    fix: {}", w.code, w.message, w.fix);
        }
    }
    s
}

/// Report rows that became no person, summed per reason: (reason, rows, reports, why).
fn unmatched_by_reason(t: &Transformed) -> Vec<(String, u64, usize, String)> {
    let mut out: Vec<(String, u64, usize, String)> = Vec::new();
    for (_, reason, rows, why) in &t.unmatched {
        match out.iter_mut().find(|(r, ..)| r == reason) {
            Some(e) => {
                e.1 += rows;
                e.2 += 1;
            }
            None => out.push((reason.clone(), *rows, 1, why.clone())),
        }
    }
    out
}

/// The end-of-transform summary.
pub fn transform(t: &Transformed) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "transform of run {} in {:.1} s", t.run_id, t.seconds);
    let _ = writeln!(s, "  users            {:>10}", thousands(t.users));
    let _ = writeln!(s, "  kept (people)    {:>10}", thousands(t.kept));
    let _ = writeln!(
        s,
        "  filtered out     {:>10}  (date filter)",
        thousands(t.filtered_out)
    );
    let _ = writeln!(
        s,
        "  rejected         {:>10}  (see the rejects table)",
        thousands(t.rejected)
    );
    if t.concealed {
        let _ = writeln!(
            s,
            "  report names are concealed: activity attributes are empty and the date filter used directory dates only"
        );
        let _ = writeln!(s, "    fix: {}", crate::concealment::FIX);
    }
    for (reason, rows, reports, why) in unmatched_by_reason(t) {
        let _ = writeln!(
            s,
            "  not joined       {:>10}  report rows in {reports} reports: {reason} ({why})",
            thousands(rows)
        );
    }
    for (audit, rows) in &t.audit_findings {
        let _ = writeln!(
            s,
            "  warning: sql/{audit}.sql found {} rows",
            thousands(*rows)
        );
    }
    s
}

/// The end-of-load summary.
pub fn load(l: &Loaded) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "exported {} people of run {} in {:.1} s to {}",
        thousands(l.manifest.people),
        l.run_id,
        l.seconds,
        l.dir.display()
    );
    for f in &l.manifest.files {
        let _ = writeln!(
            s,
            "  {:<16} {:>12} bytes  sha256 {}",
            f.file,
            thousands(f.bytes),
            &f.sha256[..16]
        );
    }
    s
}

/// The end-of-run summary: what was fetched, kept, left out and why, and where it went.
pub fn run(o: &RunOutcome) -> String {
    let t = &o.transformed;
    let m = &o.extracted.manifest;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "run {} of {:?} ({})",
        o.extracted.run_id, m.connector, m.tenant_id
    );
    let _ = writeln!(s, "  users fetched    {:>10}", thousands(t.users));
    let _ = writeln!(s, "  kept (exported)  {:>10}", thousands(t.kept));
    let _ = writeln!(
        s,
        "  filtered out     {:>10}  (no sign of life within {} days)",
        thousands(t.filtered_out),
        t.date_filter_days
    );
    let _ = writeln!(s, "  rejected         {:>10}", thousands(t.rejected));
    for (reason, rows, reports, _) in unmatched_by_reason(t) {
        let _ = writeln!(
            s,
            "  not joined       {:>10}  report rows in {reports} reports: {reason}",
            thousands(rows)
        );
    }
    let _ = writeln!(
        s,
        "  time             extract {:.1} s, transform {:.1} s, load {:.1} s; {} requests, {} retries, waited {:.1} s",
        o.extract_seconds,
        t.seconds,
        o.loaded.seconds,
        m.requests,
        m.retries,
        m.waited_ms as f64 / 1000.0
    );
    let _ = writeln!(s, "  raw data         {}", o.extracted.dir.display());
    let _ = writeln!(s, "  exports          {}", o.loaded.dir.display());
    if let Ok(report) = &o.report {
        let _ = writeln!(s, "  report           {}", report.display());
    }
    let warnings = o.warnings();
    if !warnings.is_empty() {
        let _ = writeln!(s, "warnings:");
        for w in warnings {
            let _ = writeln!(s, "  - {}: {}\n    fix: {}", w.code, w.message, w.fix);
        }
    }
    s
}

/// Two queries to paste after the demo.
pub fn demo_queries(config: &std::path::Path) -> String {
    let c = config.display();
    let db = config
        .parent()
        .map(|p| p.join(crate::store::data_dir::DB_FILE))
        .unwrap_or_default();
    format!(
        "\ntry:\n  cargo run --release -- sql -c {c} \"SELECT \\\"User.FullName\\\", \\\"User.Licenses\\\", \\\"User.LastActivityDate\\\" FROM people ORDER BY \\\"User.LastActivityDate\\\" DESC NULLS LAST LIMIT 5\"\n  duckdb {} \"SELECT run_id, status, users_fetched, people_kept, filtered_out FROM runs\"   # the duckdb CLI, if installed\n",
        db.display()
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn groups_digits() {
        assert_eq!(super::thousands(0), "0");
        assert_eq!(super::thousands(999), "999");
        assert_eq!(super::thousands(1000), "1,000");
        assert_eq!(super::thousands(1234567), "1,234,567");
    }
}
