//! The commands a user runs, one file per family, and the dispatch from the parsed command
//! line to them. Nothing below `commands/` parses arguments: it gets typed values.

#[cfg(feature = "sim")]
pub mod bench;
pub mod check;
#[cfg(feature = "sim")]
pub mod demo;
pub mod query;
pub mod serve;
pub mod summary;

use crate::cli::{self, Cli, Command};
use crate::error::{self, ExitStatus, Result};
#[cfg(feature = "sim")]
use crate::sim;
use crate::{config, extract, load, output, pipeline, report, transform};

/// The connector's lock for a command that extracts: two extracts in one data directory
/// would each take the other's partial run for an interrupted one.
fn lock_data_dir(cfg: &config::Config) -> Result<crate::server::ConnectorLock> {
    crate::server::ConnectorLock::acquire(&cfg.pipeline.data_dir)?.ok_or_else(|| {
        error::Error::Busy(format!(
            "another m365-connector is running this connector (it holds {}); wait for it to finish, or stop it",
            crate::store::DataDir::new(&cfg.pipeline.data_dir).lock().display()
        ))
    })
}

/// Runs one command; the binary maps the result to an exit code.
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
        #[cfg(feature = "sim")]
        Command::Demo(args) => {
            let progress = output::Progress::new(cli.quiet);
            let dir = std::path::Path::new("data/demo");
            let demo = demo::demo(dir, args.users, &progress).await?;
            print!("{}", summary::run(&demo.outcome));
            print!("{}", summary::demo_queries(&demo.config_path));
            Ok(demo.outcome.exit_status())
        }
        Command::Serve(args) => {
            let mut options = crate::server::ServeOptions::new(args.connectors, args.server);
            options.once = args.once;
            options.grace_seconds = args.grace_seconds;
            let events = serve::serve(serve::Serve {
                options,
                listen: args.listen.address(),
                access_token_env: args.access_token_env,
            })
            .await?;
            let failed = events
                .iter()
                .any(|e| matches!(e.outcome, crate::server::Outcome::Failed(_)));
            Ok(if failed {
                ExitStatus::Failure
            } else {
                ExitStatus::Success
            })
        }
        Command::Status(arg) => {
            print!(
                "{}",
                crate::server::status(&arg.connectors, chrono::Utc::now())?
            );
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
        #[cfg(feature = "sim")]
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
        #[cfg(feature = "sim")]
        Command::Sim(args) => {
            sim::run(args)
                .await
                .map_err(|e| error::Error::io("running the simulator", e))?;
            Ok(ExitStatus::Success)
        }
    }
}

/// Resolves on Ctrl-C or SIGTERM.
pub(crate) async fn shutdown_signal() {
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
