//! The file system as the data directory needs it: private directories, durable renames,
//! and removing what an interrupted run left.

use std::path::Path;

use crate::error::{Error, Result};

/// Removes an uncommitted run directory. A file a cancelled download was still creating can
/// make one attempt fail with "directory not empty", so it is retried briefly.
pub fn remove_partial(dir: &Path) {
    for _ in 0..20 {
        match std::fs::remove_dir_all(dir) {
            Ok(()) => return,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(50)),
        }
    }
    tracing::warn!(dir = %dir.display(), "could not remove the uncommitted run directory; it is never used and can be deleted");
}

/// Creates a directory (and parents) readable by its owner only.
pub fn create_private_dir(path: &Path) -> Result<()> {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        b.mode(0o700);
    }
    b.create(path)
        .map_err(|e| Error::io(format!("creating {}", path.display()), e))
}

/// Makes a rename inside `dir` durable (directories can be opened and synced on Unix).
#[cfg(unix)]
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(not(unix))]
pub fn sync_dir(_dir: &Path) -> std::io::Result<()> {
    Ok(())
}
