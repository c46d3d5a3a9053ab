//! m365-connector: an auditable Microsoft 365 people connector.
//!
//! The pipeline has three stages, and state lives in the data directory (DESIGN.md):
//! 1. **extract** ([`extract`]): Graph JSON and report CSV land losslessly as Parquet under
//!    `raw/<run_id>/`, committed by a manifest written last.
//! 2. **transform**: SQL models in DuckDB turn one run into typed staging tables and people.
//! 3. **load**: people are exported with a manifest.
//!
//! [`sim`] is a faithful Graph simulator used by the demo, the tests and the benchmarks.

// Errors carry the URL, Graph's request id and the fix as text; they are built once per
// failed request, never in a hot loop, so their size does not matter and boxing every
// variant would only make matching on them clumsier.
#![allow(clippy::result_large_err)]

#[cfg(feature = "store")]
pub mod commands;
pub mod concealment;
pub mod config;
pub mod digest;
pub mod error;
pub mod fs;
pub mod graph;
pub mod human;
pub mod land;
pub mod manifest;
pub mod output;
pub mod random;
pub mod schedule;
#[cfg(feature = "sim")]
pub mod sim;
pub mod sql;
pub mod store;
pub mod streams;

// Everything that needs the staging database (DuckDB), behind the default-on `store` feature
// (Cargo.toml): without it the crate is the parsers, config, Graph client and simulator, which
// is what the fuzz targets link (fuzz/, README "Fuzzing").
#[cfg(feature = "store")]
pub mod cli;
#[cfg(feature = "store")]
pub mod extract;
pub mod failpoint;
#[cfg(feature = "store")]
pub mod html;
#[cfg(feature = "store")]
pub mod load;
#[cfg(feature = "store")]
pub mod pipeline;
#[cfg(feature = "store")]
pub mod report;
#[cfg(feature = "store")]
pub mod server;
// Always built for its mapping compiler (transform/mapping.rs); the rest needs `store`.
pub mod transform;
/// The mapping compiler's old path (config and the fuzz targets name it).
pub use transform::mapping;

#[cfg(feature = "store")]
pub use commands::run;
