//! The connector lock: one run of a connector at a time, whoever starts it (a schedule, Run
//! now, `run` from a shell, a second server).

use std::fs::File;
use std::path::Path;

use crate::error::{Error, Result};

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
