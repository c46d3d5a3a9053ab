//! The model catalogue: every SQL file transform runs, in run order, with what the runner
//! must know about each declared here (not sniffed from names or SQL text). A unit test
//! checks the catalogue against the files under `sql/` both ways, and each flag against the
//! SQL it describes.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// One model: a SQL file with one SELECT, which the runner makes a view or a table named
/// after the file.
#[derive(Debug)]
pub struct Model {
    /// Path under `sql/` without `.sql` (`staging/stg_graph__users`).
    pub name: &'static str,
    pub sql: &'static str,
    /// Built in parts of users (`m365_in_part`), so its memory does not grow with the tenant.
    pub partitioned: bool,
    /// The compiled mapping CSV runs as `mapping/int_people_mapped` right before this model.
    pub after_mapping: bool,
    /// A view (dbt's default for staging): it costs nothing until read and stores nothing.
    /// Only what is read more than once, or must outlive the run, is a table.
    pub view: bool,
}

/// What an audit's findings mean.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// The export would be wrong: the transform fails and commits nothing.
    Error,
    /// Worth an admin's look: the run succeeds with a warning.
    Warning,
}

/// One audit: a SELECT returning offending rows; zero rows pass.
#[derive(Debug)]
pub struct Audit {
    pub name: &'static str,
    pub sql: &'static str,
    pub severity: Severity,
    /// Runs only when the mapping produces this target attribute.
    pub needs_attribute: Option<&'static str>,
}

const fn model(name: &'static str, sql: &'static str) -> Model {
    Model {
        name,
        sql,
        partitioned: false,
        after_mapping: false,
        view: false,
    }
}

const fn view(name: &'static str, sql: &'static str) -> Model {
    Model {
        view: true,
        ..model(name, sql)
    }
}

/// The models, in the order they run.
pub const MODELS: &[Model] = &[
    view(
        "staging/stg_graph__users",
        include_str!("../../sql/staging/stg_graph__users.sql"),
    ),
    view(
        "staging/stg_graph__user_sign_ins",
        include_str!("../../sql/staging/stg_graph__user_sign_ins.sql"),
    ),
    view(
        "staging/stg_graph__organization",
        include_str!("../../sql/staging/stg_graph__organization.sql"),
    ),
    view(
        "staging/stg_graph__subscribed_skus",
        include_str!("../../sql/staging/stg_graph__subscribed_skus.sql"),
    ),
    view(
        "staging/stg_reports__office365_active_user_detail",
        include_str!("../../sql/staging/stg_reports__office365_active_user_detail.sql"),
    ),
    view(
        "staging/stg_reports__office365_activations_user_detail",
        include_str!("../../sql/staging/stg_reports__office365_activations_user_detail.sql"),
    ),
    view(
        "staging/stg_reports__m365_app_user_detail",
        include_str!("../../sql/staging/stg_reports__m365_app_user_detail.sql"),
    ),
    view(
        "staging/stg_reports__mailbox_usage_detail",
        include_str!("../../sql/staging/stg_reports__mailbox_usage_detail.sql"),
    ),
    view(
        "staging/stg_reports__email_activity_user_detail",
        include_str!("../../sql/staging/stg_reports__email_activity_user_detail.sql"),
    ),
    view(
        "staging/stg_reports__onedrive_usage_account_detail",
        include_str!("../../sql/staging/stg_reports__onedrive_usage_account_detail.sql"),
    ),
    view(
        "staging/stg_reports__sharepoint_activity_user_detail",
        include_str!("../../sql/staging/stg_reports__sharepoint_activity_user_detail.sql"),
    ),
    view(
        "staging/stg_reports__teams_user_activity_user_detail",
        include_str!("../../sql/staging/stg_reports__teams_user_activity_user_detail.sql"),
    ),
    model(
        "intermediate/int_managers",
        include_str!("../../sql/intermediate/int_managers.sql"),
    ),
    Model {
        partitioned: true,
        ..model(
            "intermediate/int_people",
            include_str!("../../sql/intermediate/int_people.sql"),
        )
    },
    model(
        "intermediate/int_report_rows_unmatched",
        include_str!("../../sql/intermediate/int_report_rows_unmatched.sql"),
    ),
    model(
        "intermediate/int_report_period",
        include_str!("../../sql/intermediate/int_report_period.sql"),
    ),
    model(
        "intermediate/int_license_counts",
        include_str!("../../sql/intermediate/int_license_counts.sql"),
    ),
    model(
        "intermediate/int_usage_by_service",
        include_str!("../../sql/intermediate/int_usage_by_service.sql"),
    ),
    model(
        "intermediate/int_last_seen_histogram",
        include_str!("../../sql/intermediate/int_last_seen_histogram.sql"),
    ),
    model(
        "intermediate/int_office_usage",
        include_str!("../../sql/intermediate/int_office_usage.sql"),
    ),
    model(
        "intermediate/int_identity_hygiene",
        include_str!("../../sql/intermediate/int_identity_hygiene.sql"),
    ),
    Model {
        after_mapping: true,
        ..view(
            "marts/out_people_checked",
            include_str!("../../sql/marts/out_people_checked.sql"),
        )
    },
    // Read once, by persisting: the run's `people` rows are its one materialisation.
    view(
        "marts/out_people",
        include_str!("../../sql/marts/out_people.sql"),
    ),
    model(
        "marts/out_rejects",
        include_str!("../../sql/marts/out_rejects.sql"),
    ),
];

/// The audits, run after the models.
pub const AUDITS: &[Audit] = &[
    Audit {
        name: "audits/assert_people__unique_external_id",
        sql: include_str!("../../sql/audits/assert_people__unique_external_id.sql"),
        severity: Severity::Error,
        needs_attribute: None,
    },
    Audit {
        name: "audits/assert_people__required_present",
        sql: include_str!("../../sql/audits/assert_people__required_present.sql"),
        severity: Severity::Error,
        needs_attribute: None,
    },
    Audit {
        name: "audits/assert_people__shared_email",
        sql: include_str!("../../sql/audits/assert_people__shared_email.sql"),
        severity: Severity::Warning,
        needs_attribute: Some("User.Email"),
    },
];

/// A model as this run executes it: built in, or the same file under `[pipeline] sql_dir`.
#[derive(Debug)]
pub struct LoadedModel {
    pub model: &'static Model,
    pub sql: String,
}

/// The models to run: built in, or the same file names under `sql_dir`.
pub fn load_models(sql_dir: Option<&Path>) -> Result<Vec<LoadedModel>> {
    MODELS
        .iter()
        .map(|model| {
            let sql = match sql_dir {
                None => model.sql.to_string(),
                Some(dir) => {
                    let path: PathBuf = dir.join(format!("{}.sql", model.name));
                    std::fs::read_to_string(&path)
                        .map_err(|e| Error::Usage(format!("{}: {e}: [pipeline] sql_dir must hold every model file (copy sql/ from the repository)", path.display())))?
                }
            };
            Ok(LoadedModel { model, sql })
        })
        .collect()
}

/// sha256 over every model's name and text, in run order.
pub fn sql_sha256(models: &[LoadedModel]) -> String {
    let mut h = Sha256::new();
    for m in models {
        h.update(m.model.name.as_bytes());
        h.update([0]);
        h.update(m.sql.as_bytes());
        h.update([0]);
    }
    crate::digest::hex(&h.finalize())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    /// The folders whose files are transform's (sql/meta/ and sql/report/ have their own
    /// catalogues, checked by tests/it/architecture.rs).
    const FOLDERS: &[&str] = &["staging", "intermediate", "marts", "audits"];

    #[test]
    fn every_sql_file_is_catalogued_and_every_entry_has_its_file() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("sql");
        let mut files = BTreeSet::new();
        for folder in FOLDERS {
            for e in std::fs::read_dir(root.join(folder)).unwrap().flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if let Some(stem) = name.strip_suffix(".sql") {
                    files.insert(format!("{folder}/{stem}"));
                }
            }
        }
        let listed: BTreeSet<String> = MODELS
            .iter()
            .map(|m| m.name)
            .chain(AUDITS.iter().map(|a| a.name))
            .map(String::from)
            .collect();
        let never_run: Vec<_> = files.difference(&listed).collect();
        let missing: Vec<_> = listed.difference(&files).collect();
        assert!(
            never_run.is_empty(),
            "SQL files the catalogue never runs (add them to MODELS or AUDITS): {never_run:?}"
        );
        assert!(
            missing.is_empty(),
            "catalogue entries without their file under sql/: {missing:?}"
        );
        assert!(files.len() >= 20, "too few files found: {files:?}");
        // The embedded text is the file's.
        for m in MODELS {
            let text = std::fs::read_to_string(root.join(format!("{}.sql", m.name))).unwrap();
            assert_eq!(text, m.sql, "{}", m.name);
        }
    }

    #[test]
    fn the_flags_match_the_sql_they_describe() {
        for m in MODELS {
            assert_eq!(
                m.partitioned,
                m.sql.contains("m365_in_part"),
                "{}: `partitioned` must be set exactly when the model filters by m365_in_part",
                m.name
            );
        }
        assert_eq!(MODELS.iter().filter(|m| m.after_mapping).count(), 1);
        for a in AUDITS {
            if let Some(attribute) = a.needs_attribute {
                assert!(a.sql.contains(&format!("\"{attribute}\"")), "{}", a.name);
            }
        }
    }

    #[test]
    fn every_model_is_one_select() {
        let texts = MODELS.iter().map(|m| (m.name, m.sql));
        for (name, sql) in texts.chain(AUDITS.iter().map(|a| (a.name, a.sql))) {
            let body: String = sql
                .lines()
                .filter(|l| !l.trim_start().starts_with("--"))
                .collect::<Vec<_>>()
                .join("\n");
            let first = body
                .split_whitespace()
                .next()
                .unwrap_or("")
                .to_ascii_uppercase();
            assert!(
                first == "SELECT" || first == "WITH",
                "{name} starts with {first}"
            );
            // Semicolons inside string literals are text, not statement ends.
            let code: String = body.split('\'').step_by(2).collect();
            assert!(
                !code.trim_end().trim_end_matches(';').contains(';'),
                "{name} has several statements"
            );
        }
    }
}
