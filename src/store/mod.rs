//! What the connector keeps on disk: the data directory's layout (`data_dir.rs`), the staging
//! database and its typed errors (`db.rs`), and the run tables' one writer (`runs.rs`).

pub mod data_dir;
#[cfg(feature = "store")]
pub mod db;
#[cfg(feature = "store")]
pub mod delta_links;
#[cfg(feature = "store")]
pub mod runs;

pub use data_dir::DataDir;
#[cfg(feature = "store")]
pub use db::{DbErrorKind, META_SQL, Staging, db_error};
#[cfg(feature = "store")]
pub use runs::{Stage, Status};
