//! Command-line surface (clap derive). Doc comments here are the `--help` text.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// Microsoft 365 people connector: Graph → Parquet → DuckDB → Neurons-ready records.
///
/// Quick start: `m365-connector sim` in one terminal, then `m365-connector extract -c
/// connector.toml` with the config it prints. `m365-connector init` prints a commented
/// template of every connector option.
#[derive(Debug, Parser)]
#[command(name = "m365-connector", version, propagate_version = true)]
pub struct Cli {
    /// Only errors on stderr; no progress display.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// More log detail on stderr (-v info, -vv debug). RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print a commented connector file with every option and its default.
    Init,
    /// Stage 1: sign in, read users, organization, licences and the 8 usage reports, and
    /// land them as Parquet under <data_dir>/raw/<run_id>/ (committed with a manifest).
    Extract(ConfigArg),
    /// Check a connector file without contacting Microsoft (syntax, keys, ids, secret source).
    Validate(ConfigArg),
    /// Run the built-in Graph simulator (login, Graph and a report download host) on loopback.
    Sim(crate::sim::SimArgs),
}

#[derive(Debug, clap::Args)]
pub struct ConfigArg {
    /// The connector file (TOML); `m365-connector init` prints a template.
    #[arg(short, long, value_name = "FILE")]
    pub config: PathBuf,
}
