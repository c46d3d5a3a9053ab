//! Stage 2, transform: one committed run's raw Parquet → typed staging tables → `int_people`
//! (joins, licences, last_seen_date, the date filter) → the mapped people → `people` and
//! `rejects` for that run. Never calls Graph: a transform can be re-run at will and gives
//! identical content.
//!
//! - `run.rs`: the transaction and the order of its phases (start here).
//! - `catalogue.rs`: every model and audit, in run order, with what the runner must know.
//! - `runner.rs`: a model's SELECT becomes its table (in parts when it must), timed.
//! - `raw_views.rs`: the run's Parquet as `raw_<stream>` views.
//! - `users_snapshot.rs`: an incremental connector's users snapshot, brought to the run.
//! - `seeds.rs`: reference data shipped with the connector (SKU names).
//! - `mapping.rs`: the mapping CSV compiled to a SELECT (builds without `store`: the config
//!   check and the fuzz targets use it).
//! - `audits.rs`: checks over the finished models; `persist.rs`: what is kept across runs;
//!   `warnings.rs`: the run's warnings, worded once and kept with it.
//!
//! Run parameters are typed variables (`SET VARIABLE`), never spliced user text. Everything
//! happens in one transaction: a failure leaves the database as it was.

pub mod mapping;

#[cfg(feature = "store")]
mod audits;
#[cfg(feature = "store")]
pub mod catalogue;
#[cfg(feature = "store")]
mod persist;
#[cfg(feature = "store")]
mod raw_views;
#[cfg(feature = "store")]
mod run;
#[cfg(feature = "store")]
mod runner;
#[cfg(feature = "store")]
pub mod seeds;
#[cfg(feature = "store")]
mod users_snapshot;
#[cfg(feature = "store")]
mod warnings;

#[cfg(feature = "store")]
pub use catalogue::{AUDITS, MODELS};
#[cfg(feature = "store")]
pub use run::{Transformed, transform};
#[cfg(feature = "store")]
pub use runner::PARTS_ENV;
