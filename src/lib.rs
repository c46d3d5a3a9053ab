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

pub mod check;
pub mod concealment;
pub mod config;
pub mod error;
pub mod fs;
pub mod graph;
pub mod human;
pub mod land;
pub mod manifest;
pub mod mapping;
pub mod output;
pub mod random;
pub mod schedule;
pub mod sim;
pub mod streams;

// Everything that needs the staging database (DuckDB), behind the default-on `store` feature
// (Cargo.toml): without it the crate is the parsers, config, Graph client and simulator, which
// is what the fuzz targets link (fuzz/, README "Fuzzing").
#[cfg(feature = "store")]
pub mod bench;
#[cfg(feature = "store")]
pub mod cli;
#[cfg(feature = "store")]
pub mod demo;
#[cfg(feature = "store")]
pub mod extract;
pub mod failpoint;
#[cfg(feature = "store")]
pub mod incremental;
#[cfg(feature = "store")]
pub mod load;
#[cfg(feature = "store")]
pub mod pipeline;
#[cfg(feature = "store")]
pub mod query;
#[cfg(feature = "store")]
pub mod report;
#[cfg(feature = "store")]
pub mod resume;
#[cfg(feature = "store")]
pub mod serve;
#[cfg(feature = "store")]
pub mod staging;
#[cfg(feature = "store")]
mod summary;
#[cfg(feature = "store")]
pub mod transform;

#[cfg(feature = "store")]
use cli::{Cli, Command};
#[cfg(feature = "store")]
use error::{ExitStatus, Result};

/// The connector's lock for a command that extracts: two extracts in one data directory
/// would each take the other's partial run for an interrupted one.
#[cfg(feature = "store")]
fn lock_data_dir(cfg: &config::Config) -> Result<serve::ConnectorLock> {
    serve::ConnectorLock::acquire(&cfg.pipeline.data_dir)?.ok_or_else(|| {
        error::Error::Busy(format!(
            "another m365-connector is running this connector (it holds {}); wait for it to finish, or stop it",
            cfg.pipeline.data_dir.join(".lock").display()
        ))
    })
}

/// Runs one command; the binary maps the result to an exit code.
#[cfg(feature = "store")]
pub async fn run(cli: Cli) -> Result<ExitStatus> {
    match cli.command {
        Command::Init => {
            print!("{}", config::TEMPLATE);
            Ok(ExitStatus::Success)
        }
        Command::Check(arg) => {
            let list = check::check(&arg.config).await;
            print!("{}", list.render());
            Ok(list.exit_status())
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
                if cfg.connector.active {
                    "active"
                } else {
                    "inactive"
                }
            );
            Ok(ExitStatus::Success)
        }
        Command::Extract(arg) => {
            let cfg = config::Config::load(&arg.config)?;
            let _lock = lock_data_dir(&cfg)?;
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
        Command::Transform(arg) => {
            let cfg = config::Config::load(&arg.config)?;
            let t = transform::transform(&cfg, arg.run.as_deref())?;
            print!("{}", summary::transform(&t));
            Ok(ExitStatus::Success)
        }
        Command::Load(args) => {
            let cfg = config::Config::load(&args.config)?;
            let loaded = load::load(&cfg, args.run.as_deref(), &args.formats())?;
            print!("{}", summary::load(&loaded));
            Ok(ExitStatus::Success)
        }
        Command::Run(args) => {
            let cfg = config::Config::load(&args.config)?;
            let _lock = lock_data_dir(&cfg)?;
            let progress = output::Progress::new(cli.quiet);
            let outcome = pipeline::run(&cfg, &progress, &args.formats()).await?;
            print!("{}", summary::run(&outcome));
            Ok(outcome.exit_status())
        }
        Command::Demo(args) => {
            let progress = output::Progress::new(cli.quiet);
            let dir = std::path::Path::new("data/demo");
            let demo = demo::demo(dir, args.users, &progress).await?;
            print!("{}", summary::run(&demo.outcome));
            print!("{}", summary::demo_queries(&demo.config_path));
            Ok(demo.outcome.exit_status())
        }
        Command::Serve(args) => {
            let opts = serve::ServeOptions {
                dir: args.connectors,
                server: args.server,
                once: args.once,
                rescan_seconds: 30,
            };
            let mut server = serve::Server::new(opts, std::sync::Arc::new(serve::SystemClock));
            server.run(shutdown_signal()).await?;
            let events = server.events.lock().map(|e| e.clone()).unwrap_or_default();
            let failed = events
                .iter()
                .any(|e| matches!(e.outcome, serve::Outcome::Failed(_)));
            Ok(if failed {
                ExitStatus::Failure
            } else {
                ExitStatus::Success
            })
        }
        Command::Status(arg) => {
            print!("{}", serve::status(&arg.connectors, chrono::Utc::now())?);
            Ok(ExitStatus::Success)
        }
        Command::Report(args) => {
            let cfg = config::Config::load(&args.config)?;
            if args.output.as_deref() == Some(std::path::Path::new("-")) {
                print!("{}", report::render_run(&cfg, args.run.as_deref())?.html);
            } else {
                let w = report::write(&cfg, args.run.as_deref(), args.output.as_deref())?;
                println!(
                    "report of run {} written to {} ({} KiB in {:.2} s); open it in any browser",
                    w.run_id,
                    w.path.display(),
                    w.bytes.div_ceil(1024),
                    w.seconds
                );
            }
            Ok(ExitStatus::Success)
        }
        Command::Bench(args) => {
            let report = tokio::task::spawn_blocking(move || bench::bench(&args))
                .await
                .map_err(|e| error::Error::Internal(format!("the benchmark failed: {e}")))??;
            print!("{report}");
            Ok(ExitStatus::Success)
        }
        Command::Runs(arg) => {
            let cfg = config::Config::load(&arg.config)?;
            print!(
                "{}",
                query::query(
                    &cfg.pipeline.data_dir,
                    query::RUNS_SQL,
                    cli::SqlFormat::Table
                )?
            );
            Ok(ExitStatus::Success)
        }
        Command::Sql(args) => {
            let cfg = config::Config::load(&args.config)?;
            print!(
                "{}",
                query::query(&cfg.pipeline.data_dir, &args.query, args.format)?
            );
            Ok(ExitStatus::Success)
        }
        Command::Sim(args) => {
            sim::run(args)
                .await
                .map_err(|e| error::Error::io("running the simulator", e))?;
            Ok(ExitStatus::Success)
        }
    }
}

/// Resolves on Ctrl-C or SIGTERM.
#[cfg(feature = "store")]
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
