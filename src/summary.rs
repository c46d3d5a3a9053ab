//! One-screen summaries printed at the end of a command.

use std::fmt::Write;
use std::time::Duration;

use crate::extract::Extracted;
use crate::streams::Report;

/// Digits grouped by thousands: 1234567 → "1,234,567".
pub fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The end-of-extract summary.
pub fn extract(run: &Extracted, took: Duration) -> String {
    let m = &run.manifest;
    let mut s = String::new();
    let _ = writeln!(s, "extract committed run {} in {:.1} s", run.run_id, took.as_secs_f64());
    for name in ["users", "organization", "subscribed_skus"] {
        if let Some(st) = m.streams.get(name) {
            let _ = writeln!(s, "  {name:<34} {:>10} rows  {:>5} pages", thousands(st.rows), st.pages);
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
        "  requests {}, retries {}, throttled {}, waited {:.1} s",
        m.requests,
        m.retries,
        m.throttled,
        m.waited_ms as f64 / 1000.0
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
