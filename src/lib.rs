//! m365-connector: an auditable Microsoft 365 people connector.
//!
//! The pipeline has three stages, and state lives in the data directory (DESIGN.md):
//! 1. **extract** ([`extract`]): Graph JSON and report CSV land losslessly as Parquet under
//!    `raw/<run_id>/`, committed by a manifest written last.
//! 2. **transform**: SQL models in DuckDB turn one run into typed staging tables and people.
//! 3. **load**: people are exported with a manifest.
//!
//! [`sim`] is a faithful Graph simulator used by the demo, the tests and the benchmarks.

pub mod cli;
pub mod concealment;
pub mod config;
pub mod error;
pub mod extract;
pub mod graph;
pub mod land;
pub mod manifest;
pub mod output;
pub mod random;
pub mod sim;
pub mod streams;
mod summary;

use cli::{Cli, Command};
use error::{ExitStatus, Result};

/// Runs one command; the binary maps the result to an exit code.
pub async fn run(cli: Cli) -> Result<ExitStatus> {
    match cli.command {
        Command::Init => {
            print!("{}", config::TEMPLATE);
            Ok(ExitStatus::Success)
        }
        Command::Validate(arg) => {
            let cfg = config::Config::load(&arg.config)?;
            cfg.secret()?;
            println!(
                "{}: valid (connector {:?}, tenant {}, server {:?}, {})",
                arg.config.display(),
                cfg.connector.name,
                cfg.tenant.tenant_id,
                cfg.connector.server,
                if cfg.connector.active { "active" } else { "inactive" }
            );
            Ok(ExitStatus::Success)
        }
        Command::Extract(arg) => {
            let cfg = config::Config::load(&arg.config)?;
            let progress = output::Progress::new(cli.quiet);
            let started = std::time::Instant::now();
            let run = extract::extract(&cfg, &progress).await?;
            print!("{}", summary::extract(&run, started.elapsed()));
            Ok(if run.manifest.warnings.is_empty() {
                ExitStatus::Success
            } else {
                ExitStatus::SuccessWithWarnings
            })
        }
        Command::Sim(args) => {
            sim::run(args)
                .await
                .map_err(|e| error::Error::io("running the simulator", e))?;
            Ok(ExitStatus::Success)
        }
    }
}
