//! The run's warnings, worded once: the extract's (from its manifest), then what the
//! transform found. Persisted with the run (`run_warnings`), from where `run`'s summary and
//! the run report select them.

use crate::manifest::{RunManifest, Warning};

/// People whose manager Graph named but the run could not resolve to one of its users.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UnresolvedManagers {
    /// No user of the run has the manager's id (deleted, or not returned).
    pub not_in_run_users: u64,
    /// The manager is an organizational contact.
    pub org_contacts: u64,
}

/// The warnings of a transformed run, in the order an admin reads them.
pub fn run_warnings(
    manifest: &RunManifest,
    audit_findings: &[(String, u64)],
    rejected: u64,
    managers: UnresolvedManagers,
) -> Vec<Warning> {
    let mut w = manifest.warnings.clone();
    for (audit, rows) in audit_findings {
        w.push(Warning {
            code: audit.rsplit('/').next().unwrap_or(audit).to_string(),
            message: format!("{rows} findings of sql/{audit}.sql"),
            fix: format!("query them: m365-connector sql -c FILE \"$(cat sql/{audit}.sql)\""),
        });
    }
    let UnresolvedManagers {
        not_in_run_users,
        org_contacts,
    } = managers;
    if not_in_run_users + org_contacts > 0 {
        w.push(Warning {
            code: "managers_unresolved".into(),
            message: format!(
                "{} people have a manager that is not a user of this run ({not_in_run_users} not among the users Graph returned, e.g. deleted; {org_contacts} organizational contacts); they are exported with User.ManagerId and no manager name",
                not_in_run_users + org_contacts
            ),
            fix: "fix the manager in Entra ID (or on-premises AD for synced users) if it is wrong; list them with: m365-connector sql -c FILE \"SELECT user_principal_name, manager_id, manager_unresolved FROM int_people WHERE manager_unresolved IS NOT NULL\"".into(),
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
