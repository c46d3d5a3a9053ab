//! Stage 1, extract: Graph → raw Parquet under `raw/.partial-<run_id>/`, committed by
//! writing the manifest last and renaming the directory to `raw/<run_id>/`.
//!
//! Sign-in happens before anything touches the disk, so a wrong secret leaves nothing
//! behind. The users walk runs concurrently with the small streams and the eight reports;
//! each report is requested once (the 14 calls / 10 minutes budget). Any stream failing
//! fails the run: the partial directory is removed and earlier runs are untouched.

mod collection;
mod duplicates;
mod partitions;
mod report_stream;
pub mod resume;
mod run_manifest;
pub mod sign_ins;
pub mod users_delta;
mod users_walk;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use indicatif::ProgressBar;
use tokio::task::JoinSet;

use crate::concealment::Setting;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::graph::GraphClient;
use crate::manifest::{DeltaSync, RunManifest, StreamManifest, SyncKind, Warning};
use crate::output::Progress;
use crate::streams::{Report, Stream, users_path};
use resume::Resumed;
use users_delta::Start;

use collection::{land_collection, land_users_delta};
use report_stream::{land_report, report_settings};
use run_manifest::build_manifest;

/// A committed extract run.
#[derive(Debug, Clone)]
pub struct Extracted {
    pub run_id: String,
    pub dir: PathBuf,
    pub manifest: RunManifest,
}

/// A new run id: sortable UTC time plus a random suffix, e.g. `20261128T020000Z-7f3a`.
pub fn new_run_id(at: DateTime<Utc>) -> String {
    format!(
        "{}-{:04x}",
        at.format("%Y%m%dT%H%M%SZ"),
        crate::random::u64() as u16
    )
}

/// Runs the extract stage for `cfg` and commits the run. An extract interrupted earlier is
/// resumed (see [`resume`]): same run id, finished streams kept.
pub async fn extract(cfg: &Config, progress: &Progress) -> Result<Extracted> {
    let secret = cfg.secret()?;
    let client = Arc::new(GraphClient::new(cfg, secret)?);

    // The run is a row in the staging database from here on, so a refused sign-in is on
    // record too (nothing else is written before sign-in succeeds).
    let staging = crate::store::Staging::open(&cfg.pipeline.data_dir)?;
    let resumed = resume::prepare(cfg, &staging, Utc::now())?;
    let (run_id, started_at) = match &resumed {
        Some(r) => {
            tracing::info!(run_id = %r.run_id, streams_kept = r.done.len(), users_pages_kept = r.pages_kept(), "resuming an interrupted extract");
            (r.run_id.clone(), r.started_at)
        }
        None => {
            let now = Utc::now();
            let id = new_run_id(now);
            staging.begin_extract(cfg, &id, now)?;
            (id, now)
        }
    };
    // Incremental users: where the stored delta link lets this run continue.
    let users_plan = if cfg.pipeline.incremental {
        let stored = crate::store::delta_links::stored_link(&staging, &cfg.connector.name)?;
        Some(users_delta::plan(cfg, stored.as_ref()))
    } else {
        None
    };
    drop(staging);
    let outcome = ExtractRun {
        cfg,
        client,
        run_id: run_id.clone(),
        started_at,
        users_plan,
        progress,
    }
    .sign_in_land_and_commit(resumed)
    .await;
    let staging = crate::store::Staging::open(&cfg.pipeline.data_dir)?;
    match &outcome {
        Ok(run) => {
            staging.finish_extract(&run.manifest, (Utc::now() - started_at).as_seconds_f64())?
        }
        Err(e) => staging.fail(&run_id, crate::store::Stage::Extract, &e.to_string()),
    }
    outcome
}

/// One extract under way: what its steps share, in one value instead of a parameter list
/// each step passes on.
struct ExtractRun<'a> {
    cfg: &'a Config,
    client: Arc<GraphClient>,
    run_id: String,
    started_at: DateTime<Utc>,
    /// Incremental users: where the users walk starts (`None`: a plain `/users` walk).
    users_plan: Option<Start>,
    progress: &'a Progress,
}

impl ExtractRun<'_> {
    /// Signs in (and checks consent) before anything lands.
    async fn sign_in_land_and_commit(self, resumed: Option<Resumed>) -> Result<Extracted> {
        let login = self.progress.line("sign-in");
        login.set_message(format!("tenant {}", self.cfg.tenant.tenant_id));
        self.client.token().await?;
        self.client.check_roles().await?;
        login.finish_with_message("ok");
        crate::failpoint::hit("extract.signed_in");
        land_and_commit(self, resumed).await
    }
}

/// Lands every stream into a partial directory and commits it.
async fn land_and_commit(run: ExtractRun<'_>, resumed: Option<Resumed>) -> Result<Extracted> {
    let ExtractRun {
        cfg,
        started_at,
        ref client,
        ref run_id,
        ..
    } = run;
    let run_id = run_id.clone();
    let raw = crate::store::DataDir::new(&cfg.pipeline.data_dir).raw();
    crate::fs::create_private_dir(&raw)?;
    let partial = crate::store::DataDir::new(&cfg.pipeline.data_dir).partial_run(&run_id);
    let resumed = match resumed {
        Some(r) => r,
        None => {
            crate::fs::create_private_dir(&partial)?;
            resume::start(&partial, cfg, &run_id, started_at)?;
            Resumed::default()
        }
    };
    tracing::info!(run_id = %run_id, dir = %partial.display(), "extract started");

    let manifest = match resumed.manifest.clone() {
        // Killed between writing the manifest and renaming the directory: just commit.
        Some(m) => m,
        None => {
            let landed = land_streams(&run, &partial, &resumed).await;
            let (mut streams, setting) = match landed {
                Ok(v) => v,
                Err(e) => {
                    crate::fs::remove_partial(&partial);
                    return Err(e);
                }
            };
            let counted = {
                let (cfg, dir) = (cfg.clone(), partial.clone());
                tokio::task::spawn_blocking(move || {
                    let t = std::time::Instant::now();
                    let counted = duplicates::count_all(&cfg, &dir, &mut streams);
                    tracing::debug!(
                        seconds = t.elapsed().as_secs_f64(),
                        "repeated records counted"
                    );
                    counted.map(|()| streams)
                })
                .await
                .map_err(|e| Error::Internal(format!("counting repeated records: {e}")))
                .and_then(|r| r)
            };
            let streams = match counted {
                Ok(s) => s,
                Err(e) => {
                    crate::fs::remove_partial(&partial);
                    return Err(e);
                }
            };
            let mut m = build_manifest(cfg, client, &run_id, started_at, streams, setting);
            if !resumed.run_id.is_empty() {
                m.warnings.push(resumed_warning(&resumed));
            }
            m
        }
    };
    let dir = raw.join(&run_id);
    let commit = manifest
        .write(&partial)
        .map_err(|e| Error::io(format!("writing the manifest in {}", partial.display()), e))
        .and_then(|_| {
            crate::failpoint::hit("extract.manifest_written");
            resume::remove_markers(&partial)
        })
        .and_then(|_| {
            std::fs::rename(&partial, &dir)
                .and_then(|_| crate::fs::sync_dir(&raw))
                .map_err(|e| Error::io(format!("committing run {run_id} in {}", raw.display()), e))
        });
    if let Err(e) = commit {
        crate::fs::remove_partial(&partial);
        return Err(e);
    }
    crate::failpoint::hit("extract.committed");
    tracing::info!(run_id = %run_id, users = manifest.users(), "extract committed");
    Ok(Extracted {
        run_id,
        dir,
        manifest,
    })
}

/// Tells the admin the run continued an interrupted one.
fn resumed_warning(r: &Resumed) -> Warning {
    Warning {
        code: "resumed".into(),
        message: format!(
            "this run continued an extract interrupted earlier (started {} UTC): {} finished streams and {} users pages were kept, not fetched again",
            r.started_at.format("%Y-%m-%d %H:%M:%S"),
            r.done.len(),
            r.pages_kept()
        ),
        fix: "none needed; if the process was killed, see why (out of memory, a service stop or a reboot)".into(),
    }
}

type StreamResult = Result<(String, StreamManifest)>;

/// What every stream task of a run shares.
#[derive(Clone)]
struct StreamCtx {
    cfg: Arc<Config>,
    client: Arc<GraphClient>,
    /// The run's partial directory.
    dir: PathBuf,
    run_id: String,
    /// Becomes `true` when another stream failed.
    cancel: tokio::sync::watch::Receiver<bool>,
    /// Users pages per Parquet segment and checkpoint.
    segment_pages: u64,
    /// Turns to convert a downloaded report into Parquet and count its repeated rows (see
    /// [`REPORTS_CONVERTED_AT_ONCE`]).
    convert_slots: Arc<tokio::sync::Semaphore>,
}

/// Reports converted from CSV to Parquet at the same time. Downloads all run at once (their
/// waits overlap), but conversion is CPU work: one at a time leaves a core to the users walk,
/// which sets the pace of the run, and holds one report's buffers in memory, not eight.
const REPORTS_CONVERTED_AT_ONCE: usize = 1;

async fn land_streams(
    run: &ExtractRun<'_>,
    dir: &Path,
    resumed: &Resumed,
) -> Result<(BTreeMap<String, StreamManifest>, Setting)> {
    let ExtractRun {
        cfg,
        client,
        run_id,
        users_plan,
        progress,
        ..
    } = run;
    let mut tasks: JoinSet<StreamResult> = JoinSet::new();
    // One failing stream stops the others at their next await point. Tasks are never
    // aborted: their blocking Parquet writers must finish before the directory is removed.
    let (cancel, cancelled) = tokio::sync::watch::channel(false);
    // Streams an interrupted run of this id finished are taken as they are.
    let mut streams = resumed.done.clone();

    let users_url = client.v1(&users_path(cfg.pipeline.manager))?;
    let users_bar = progress.line(Stream::Users.name());
    let ctx = StreamCtx {
        cfg: Arc::new((*cfg).clone()),
        client: client.clone(),
        dir: dir.to_path_buf(),
        run_id: run_id.to_string(),
        cancel: cancelled,
        segment_pages: cfg.pipeline.checkpoint_pages,
        convert_slots: Arc::new(tokio::sync::Semaphore::new(REPORTS_CONVERTED_AT_ONCE)),
    };
    for (stream, first, bar) in [
        (Stream::Users, users_url, users_bar),
        (
            Stream::Organization,
            client.v1("/organization")?,
            ProgressBar::hidden(),
        ),
        (
            Stream::SubscribedSkus,
            client.v1("/subscribedSkus")?,
            ProgressBar::hidden(),
        ),
    ] {
        if let Some(done) = streams.get(stream.name()) {
            bar.finish_with_message(format!("{} (kept from the interrupted run)", done.rows));
            continue;
        }
        let from = resumed.checkpoints.get(stream.name()).cloned();
        let parallel = cfg.pipeline.users_concurrency as usize;
        match (&users_plan, stream) {
            // A full sync walks `/users` in parallel ranges after taking a delta link as of
            // now; a delta sync follows the stored link (its pages cannot be split).
            (Some(Start::Full { reason }), Stream::Users) if parallel > 1 => {
                tracing::info!(%reason, "users: full sync (parallel walk, then changes from a delta link taken first)");
                let sync = DeltaSync {
                    sync: Some(SyncKind::Full),
                    ..DeltaSync::default()
                };
                tasks.spawn(users_walk::land_users(
                    ctx.clone(),
                    parallel,
                    Some(sync),
                    from,
                    bar,
                ));
            }
            (Some(plan), Stream::Users) => {
                let full = client.v1(&users_delta::full_sync_path(cfg.pipeline.manager))?;
                tasks.spawn(land_users_delta(
                    ctx.clone(),
                    full,
                    plan.clone(),
                    from,
                    bar,
                    parallel,
                ));
            }
            (None, Stream::Users) if parallel > 1 => {
                tasks.spawn(users_walk::land_users(
                    ctx.clone(),
                    parallel,
                    None,
                    from,
                    bar,
                ));
            }
            _ => {
                tasks.spawn(land_collection(ctx.clone(), stream, first, from, bar));
            }
        }
    }
    let sign_ins_name = Stream::SignIns.name();
    if !streams.contains_key(sign_ins_name)
        && sign_ins::wanted(cfg.pipeline.sign_in_activity, client).await
    {
        tasks.spawn(sign_ins::land_sign_ins(
            ctx.clone(),
            resumed.checkpoints.get(sign_ins_name).cloned(),
            progress.line(sign_ins_name),
        ));
    }
    let reports_bar = progress.line("reports");
    let mut reports_done = Report::ALL
        .iter()
        .filter(|r| streams.contains_key(r.stream()))
        .count();
    reports_bar.set_message(format!("{reports_done}/{}", Report::ALL.len()));
    for report in Report::ALL {
        if streams.contains_key(report.stream()) {
            continue;
        }
        tasks.spawn(land_report(
            ctx.clone(),
            report,
            cfg.pipeline.report_period.clone(),
        ));
    }

    let setting = report_settings(client).await;
    while let Some(joined) = tasks.join_next().await {
        let result = joined.map_err(|e| Error::Internal(format!("an extract task failed: {e}")))?;
        match result {
            Ok((name, manifest)) => {
                if Report::from_stream(&name).is_some() {
                    reports_done += 1;
                    reports_bar.set_message(format!("{reports_done}/{}", Report::ALL.len()));
                }
                streams.insert(name, manifest);
            }
            Err(e) => {
                let _ = cancel.send(true);
                while tasks.join_next().await.is_some() {}
                return Err(e);
            }
        }
    }
    reports_bar.finish();
    Ok((streams, setting))
}

fn cancelled_error() -> Error {
    Error::Internal("stopped because another stream of the run failed".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn run_ids_sort_by_time() {
        let a = new_run_id(Utc.with_ymd_and_hms(2026, 11, 28, 2, 0, 0).unwrap());
        let b = new_run_id(Utc.with_ymd_and_hms(2026, 11, 28, 2, 0, 1).unwrap());
        assert!(a.starts_with("20261128T020000Z-") && a.len() == 21, "{a}");
        assert!(a < b);
    }
}
