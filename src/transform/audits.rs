//! Audits (`sql/audits/`): SELECTs over the finished models that return offending rows. An
//! error-level finding fails the transform ([`Error::AuditFailed`]), so a wrong export is
//! never committed; warning-level findings are returned for the run's warnings.

use crate::error::{Error, Result};

use super::catalogue::{AUDITS, Severity};
use super::mapping::Mapping;
use super::runner::Runner;

/// Runs every audit that applies to `mapping`; returns (audit, rows) of warning findings.
pub fn run_audits(runner: &Runner, mapping: &Mapping) -> Result<Vec<(String, u64)>> {
    let mut findings = Vec::new();
    for audit in AUDITS {
        if let Some(attribute) = audit.needs_attribute
            && !mapping.rows.iter().any(|r| r.target == attribute)
        {
            continue;
        }
        let rows = runner.count(
            &format!("SELECT count(*) FROM ({})", audit.sql),
            &format!("running audit sql/{}.sql", audit.name),
        )?;
        if rows == 0 {
            continue;
        }
        match audit.severity {
            Severity::Error => {
                return Err(Error::AuditFailed {
                    audit: audit.name.to_string(),
                    rows,
                });
            }
            Severity::Warning => findings.push((audit.name.to_string(), rows)),
        }
    }
    Ok(findings)
}
