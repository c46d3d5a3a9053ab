//! What the connector keeps on disk. Today: the data directory's layout (`data_dir.rs`).
//! The staging database (`staging.rs`) moves here next (ARCHITECTURE.md, "Where we are going").

pub mod data_dir;

pub use data_dir::DataDir;
