//! The run's warnings, worded once: the extract's (from its manifest), then what the
//! transform found. Persisted with the run (`run_warnings`), from where `run`'s summary and
//! the run report select them.

use crate::manifest::{RunManifest, Warning};

/// The warnings of a transformed run, in the order an admin reads them.
pub fn run_warnings(
    manifest: &RunManifest,
    audit_findings: &[(String, u64)],
    rejected: u64,
) -> Vec<Warning> {
    let mut w = manifest.warnings.clone();
    for (audit, rows) in audit_findings {
        w.push(Warning {
            code: audit.rsplit('/').next().unwrap_or(audit).to_string(),
            message: format!("{rows} findings of sql/{audit}.sql"),
            fix: format!("query them: m365-connector sql -c FILE \"$(cat sql/{audit}.sql)\""),
        });
    }
    if rejected > 0 {
        w.push(Warning {
            code: "rejects".into(),
            message: format!(
                "{rejected} people were rejected (missing required attributes or duplicate keys)"
            ),
            fix: "see them with: m365-connector sql -c FILE \"SELECT * FROM rejects\"".into(),
        });
    }
    w
}
