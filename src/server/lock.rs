//! The connector lock: one run of a connector at a time, whoever starts it (a schedule, Run
//! now, `run` from a shell, a second server).

use std::fs::File;
use std::path::Path;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::load::ExportFormat;
use crate::output::Progress;

use super::scheduler::Outcome;

/// Runs one connector while holding the lock in its data directory.
pub async fn run_locked(cfg: &Config) -> Outcome {
    let _lock = match ConnectorLock::acquire(&cfg.pipeline.data_dir) {
        Ok(Some(l)) => l,
        Ok(None) => return Outcome::Locked,
        Err(e) => return Outcome::Failed(e.to_string()),
    };
    match crate::pipeline::run(cfg, &Progress::hidden(), &ExportFormat::ALL).await {
        Ok(o) => Outcome::Succeeded {
            run_id: o.extracted.run_id,
            kept: o.transformed.kept,
        },
        Err(e) => Outcome::Failed(e.to_string()),
    }
}

/// An exclusive lock on `<data_dir>/.lock`, released when dropped (or when the process dies).
pub struct ConnectorLock {
    _file: File,
}

impl ConnectorLock {
    /// `Ok(None)` when another run holds it.
    pub fn acquire(data_dir: &Path) -> Result<Option<ConnectorLock>> {
        crate::fs::create_private_dir(data_dir)?;
        let path = crate::store::DataDir::new(data_dir).lock();
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
        match file.try_lock() {
            Ok(()) => Ok(Some(ConnectorLock { _file: file })),
            Err(std::fs::TryLockError::WouldBlock) => Ok(None),
            Err(std::fs::TryLockError::Error(e)) => {
                Err(Error::io(format!("locking {}", path.display()), e))
            }
        }
    }
}
