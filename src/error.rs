//! The crate's error type and the exit codes a scheduler can act on.

use crate::config::ConfigError;
use crate::graph::GraphError;
use crate::land::LandError;

/// Exit codes (documented in the README).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ExitStatus {
    /// Everything worked.
    Success = 0,
    /// The command failed; nothing was committed.
    Failure = 1,
    /// Bad command line or connector file: fix the input, retrying will not help.
    Usage = 2,
    /// It worked, but with warnings an admin should read (e.g. concealed report names).
    SuccessWithWarnings = 3,
}

/// Anything that can stop a command.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Graph(#[from] GraphError),
    #[error(transparent)]
    Land(#[from] LandError),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// A bad argument or an impossible request, with the fix in the text.
    #[error("{0}")]
    Usage(String),
    /// Another process is running the same connector.
    #[error("{0}")]
    Busy(String),
    /// The staging database failed while `doing` something; the hint follows the kind of
    /// failure (out of memory, locked, disk full, permission), see `store::db`.
    #[cfg(feature = "store")]
    #[error("{doing} in {}: {source}{hint}", path.display())]
    Store {
        doing: String,
        path: std::path::PathBuf,
        #[source]
        source: duckdb::Error,
        /// The fix for this kind of failure (`store::DbErrorKind::hint`), `""` when none.
        hint: &'static str,
    },
    /// An audit (`sql/audits/`) found rows that would make the export wrong; nothing of the
    /// transform was committed.
    #[error(
        "audit sql/{audit}.sql found {rows} offending rows: the export would be wrong, so nothing was committed; query it with `m365-connector sql` to see them"
    )]
    AuditFailed { audit: String, rows: u64 },
    /// An internal task failed (a bug, or the run was cancelled).
    #[error("{0}")]
    Internal(String),
}

impl Error {
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Error {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    /// The exit code for this failure.
    pub fn exit_status(&self) -> ExitStatus {
        match self {
            Error::Config(_) | Error::Usage(_) => ExitStatus::Usage,
            _ => ExitStatus::Failure,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
