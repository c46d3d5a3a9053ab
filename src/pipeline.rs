//! `run`: extract + transform + load as one audited run, with one summary at the end.

use std::path::PathBuf;
use std::time::Instant;

use crate::config::Config;
use crate::error::{Error, ExitStatus, Result};
use crate::extract::{Extracted, extract};
use crate::load::{ExportFormat, Loaded, load};
use crate::manifest::Warning;
use crate::output::Progress;
use crate::store::Staging;
use crate::transform::{Transformed, transform};

/// Everything one run did.
#[derive(Debug, Clone)]
pub struct RunOutcome {
    pub extracted: Extracted,
    pub transformed: Transformed,
    pub loaded: Loaded,
    pub extract_seconds: f64,
    /// Where the run report was written, or why it could not be (a warning, never a failure).
    pub report: std::result::Result<PathBuf, String>,
    /// The run's warnings as recorded in the staging database.
    pub recorded_warnings: Vec<Warning>,
}

impl RunOutcome {
    /// Warnings of the run: those recorded with it (`run_warnings`, also in its report), and
    /// the report's own failure.
    pub fn warnings(&self) -> Vec<Warning> {
        let mut w = self.recorded_warnings.clone();
        if let Err(e) = &self.report {
            w.push(Warning {
                code: "report_failed".into(),
                message: format!("the run succeeded, but its report could not be written: {e}"),
                fix: format!(
                    "write it again with: m365-connector report -c FILE --run {}",
                    self.extracted.run_id
                ),
            });
        }
        w
    }

    /// 0 when clean, 3 when the admin should read the warnings.
    pub fn exit_status(&self) -> ExitStatus {
        if self.warnings().is_empty() {
            ExitStatus::Success
        } else {
            ExitStatus::SuccessWithWarnings
        }
    }
}

/// Runs the three stages for `cfg`.
pub async fn run(
    cfg: &Config,
    progress: &Progress,
    formats: &[ExportFormat],
) -> Result<RunOutcome> {
    let t = Instant::now();
    let extracted = extract(cfg, progress).await?;
    let extract_seconds = t.elapsed().as_secs_f64();
    let (c, id, f) = (cfg.clone(), extracted.run_id.clone(), formats.to_vec());
    let (transformed, loaded, report, recorded_warnings) =
        tokio::task::spawn_blocking(move || -> Result<(Transformed, Loaded, _, _)> {
            let transformed = transform(&c, Some(&id))?;
            let loaded = load(&c, Some(&id), &f)?;
            let report = crate::report::write(&c, Some(&id), None)
                .map(|w| w.path)
                .map_err(|e| e.to_string());
            let warnings = Staging::open_read_only(&c.pipeline.data_dir)?.warnings(&id)?;
            Ok((transformed, loaded, report, warnings))
        })
        .await
        .map_err(|e| Error::Internal(format!("the transform task failed: {e}")))??;
    Ok(RunOutcome {
        extracted,
        transformed,
        loaded,
        extract_seconds,
        report,
        recorded_warnings,
    })
}
