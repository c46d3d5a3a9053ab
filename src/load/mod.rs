//! Stage 3, load: a transformed run's `people` exported to `out/<run_id>/` as JSON Lines,
//! CSV (RFC 4180) and Parquet, plus `manifest.json`.
//!
//! This file is the stage: which run, where the files go, how they are committed and
//! recorded. The files themselves come from one read of the people (`write.rs`), formatted as
//! text in Rust (`text.rs`) and hashed as they are written (`hashed_file.rs`).
//!
//! Files are written into `out/.tmp-<run_id>-<nonce>/` and the directory is renamed into
//! place when complete, so a crash never leaves a half export. Rows are sorted by
//! `User.ExternalId` and the manifest holds no wall-clock time, so exporting the same run
//! twice gives identical bytes; when the export happened is recorded in the `exports` table.

mod hashed_file;
mod text;
mod write;

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Instant;

use duckdb::params;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::Config;
use crate::error::{Error, Result};
use crate::store::runs::ExportRow;
use crate::store::{Staging, db_error};

/// An export format.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum ExportFormat {
    Jsonl,
    Csv,
    Parquet,
}

impl ExportFormat {
    pub const ALL: [ExportFormat; 3] = [
        ExportFormat::Jsonl,
        ExportFormat::Csv,
        ExportFormat::Parquet,
    ];

    pub fn file_name(self) -> &'static str {
        match self {
            ExportFormat::Jsonl => "people.jsonl",
            ExportFormat::Csv => "people.csv",
            ExportFormat::Parquet => "people.parquet",
        }
    }
}

/// One exported file in the export manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportFile {
    pub file: String,
    pub format: ExportFormat,
    pub rows: u64,
    pub bytes: u64,
    pub sha256: String,
}

/// `out/<run_id>/manifest.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportManifest {
    pub format: u32,
    pub connector: String,
    pub tenant_id: String,
    pub run_id: String,
    /// The extract run the people come from (same as `run_id`; kept for consumers that merge).
    pub extract_run_id: String,
    pub extracted_at: String,
    pub people: u64,
    pub attributes: Vec<String>,
    pub mapping_sha256: Option<String>,
    pub sql_sha256: Option<String>,
    pub files: Vec<ExportFile>,
}

/// A finished export.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub run_id: String,
    pub dir: PathBuf,
    pub manifest: ExportManifest,
    pub seconds: f64,
}

/// Exports `run_id` (default: the newest transformed run) in `formats`.
pub fn load(cfg: &Config, run_id: Option<&str>, formats: &[ExportFormat]) -> Result<Loaded> {
    let started = Instant::now();
    let staging = Staging::open(&cfg.pipeline.data_dir)?;
    staging.limit_memory(cfg.pipeline.memory_limit_mib)?;
    // One DuckDB thread per query: the Parquet COPY and the read for the text files run at
    // once on their own connections, which is the two cores. An order-preserving COPY on two
    // threads buffered whole batches per thread (a million people's JSON did not fit
    // 512 MiB), and the Parquet's bytes are those of the one-thread COPY it has always been.
    staging
        .conn
        .execute_batch("SET threads = 1")
        .map_err(|e| db_error(&staging.path, "setting up the export", e))?;
    let run = pick_transformed_run(&staging, run_id)?;
    let result = export(cfg, &staging, &run, formats);
    match result {
        Ok(mut loaded) => {
            loaded.seconds = started.elapsed().as_secs_f64();
            record(&staging, &loaded)?;
            Ok(loaded)
        }
        Err(e) => {
            staging.fail(&run.run_id, crate::store::Stage::Load, &e.to_string());
            Err(e)
        }
    }
}

/// What the `runs` table says about the run being exported.
struct RunRow {
    run_id: String,
    connector: String,
    tenant_id: String,
    started_at: String,
    mapping_sha256: Option<String>,
    sql_sha256: Option<String>,
}

fn pick_transformed_run(staging: &Staging, wanted: Option<&str>) -> Result<RunRow> {
    let sql = "SELECT run_id, connector, coalesce(tenant_id, ''), strftime(started_at, '%Y-%m-%dT%H:%M:%SZ'),
                      mapping_sha256, sql_sha256
               FROM runs WHERE transform_status = 'succeeded' AND (? IS NULL OR run_id = ?)
               ORDER BY run_id DESC LIMIT 1";
    let row = staging.conn.query_row(sql, params![wanted, wanted], |r| {
        Ok(RunRow {
            run_id: r.get(0)?,
            connector: r.get(1)?,
            tenant_id: r.get(2)?,
            started_at: r.get(3)?,
            mapping_sha256: r.get(4)?,
            sql_sha256: r.get(5)?,
        })
    });
    match row {
        Ok(r) => Ok(r),
        Err(duckdb::Error::QueryReturnedNoRows) => Err(Error::Usage(match wanted {
            Some(id) => format!(
                "run {id:?} has not been transformed: run `m365-connector transform --run {id}` first"
            ),
            None => {
                "no transformed run yet: run `m365-connector transform` (or `run`) first".into()
            }
        })),
        Err(e) => Err(db_error(&staging.path, "finding the run to export", e)),
    }
}

fn export(
    cfg: &Config,
    staging: &Staging,
    run: &RunRow,
    formats: &[ExportFormat],
) -> Result<Loaded> {
    let data = crate::store::DataDir::new(&cfg.pipeline.data_dir);
    let out = data.out();
    crate::fs::create_private_dir(&out)?;
    remove_stale_temp_dirs(&out);
    let tmp = data.export_temp(&run.run_id, crate::random::u64() as u32);
    crate::fs::create_private_dir(&tmp)?;
    let written = write_files(staging, run, &tmp, formats);
    let manifest = match written {
        Ok(m) => m,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(e);
        }
    };
    let dir = out.join(&run.run_id);
    commit_dir(&tmp, &dir).map_err(|e| {
        let _ = std::fs::remove_dir_all(&tmp);
        Error::io(format!("moving the export into {}", dir.display()), e)
    })?;
    Ok(Loaded {
        run_id: run.run_id.clone(),
        dir,
        manifest,
        seconds: 0.0,
    })
}

fn write_files(
    staging: &Staging,
    run: &RunRow,
    tmp: &Path,
    formats: &[ExportFormat],
) -> Result<ExportManifest> {
    let columns: Vec<(String, String)> = staging
        .columns("people")?
        .into_iter()
        .filter(|(n, _)| n != "_run_id")
        .collect();
    let mut formats = formats.to_vec();
    formats.sort();
    formats.dedup();
    let written = write::write_files(&write::Export {
        staging,
        run_id: &run.run_id,
        columns: &columns,
        source: [
            ("connector", &run.connector),
            ("tenant_id", &run.tenant_id),
            ("run_id", &run.run_id),
            ("extracted_at", &run.started_at),
        ],
        dir: tmp,
        formats: &formats,
    })?;
    let files = written
        .written
        .into_iter()
        .map(|(format, w)| ExportFile {
            file: format.file_name().to_string(),
            format,
            rows: written.people,
            bytes: w.bytes,
            sha256: w.sha256,
        })
        .collect();
    let manifest = ExportManifest {
        format: 1,
        connector: run.connector.clone(),
        tenant_id: run.tenant_id.clone(),
        run_id: run.run_id.clone(),
        extract_run_id: run.run_id.clone(),
        extracted_at: run.started_at.clone(),
        people: written.people,
        attributes: columns.iter().map(|(n, _)| n.clone()).collect(),
        mapping_sha256: run.mapping_sha256.clone(),
        sql_sha256: run.sql_sha256.clone(),
        files,
    };
    let mpath = tmp.join("manifest.json");
    let mut json =
        serde_json::to_vec_pretty(&manifest).map_err(|e| Error::Internal(e.to_string()))?;
    json.push(b'\n');
    std::fs::write(&mpath, json)
        .map_err(|e| Error::io(format!("writing {}", mpath.display()), e))?;
    sync_file(&mpath)?;
    Ok(manifest)
}

fn sync_file(path: &Path) -> Result<()> {
    File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(|e| Error::io(format!("syncing {}", path.display()), e))
}

/// Byte count and sha256 of a file, streamed.
pub fn hash_file(path: &Path) -> Result<(u64, String)> {
    let mut f =
        File::open(path).map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = f
            .read(&mut buf)
            .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        total += n as u64;
    }
    Ok((total, crate::digest::hex(&h.finalize())))
}

/// Puts the finished export in place; an earlier export of the same run is replaced.
fn commit_dir(tmp: &Path, dir: &Path) -> std::io::Result<()> {
    let old = if dir.exists() {
        let parent = dir.parent().unwrap_or(Path::new("."));
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let old = parent.join(format!(".old-{name}-{:08x}", crate::random::u64() as u32));
        std::fs::rename(dir, &old)?;
        crate::failpoint::hit("load.swapping");
        Some(old)
    } else {
        None
    };
    crate::failpoint::hit("load.before_rename");
    std::fs::rename(tmp, dir)?;
    if let Some(parent) = dir.parent() {
        File::open(parent)?.sync_all()?;
    }
    if let Some(old) = old {
        std::fs::remove_dir_all(old)?;
    }
    Ok(())
}

/// Leftovers of an interrupted load (`.tmp-*`, `.old-*`) are never used; remove them.
fn remove_stale_temp_dirs(out: &Path) {
    let Ok(entries) = std::fs::read_dir(out) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if crate::store::DataDir::is_export_leftover(&name) {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

fn record(staging: &Staging, loaded: &Loaded) -> Result<()> {
    let formats: Vec<String> = loaded
        .manifest
        .files
        .iter()
        .map(|f| format!("{:?}", f.format).to_lowercase())
        .collect();
    let rows: Vec<ExportRow> = loaded
        .manifest
        .files
        .iter()
        .zip(&formats)
        .map(|(f, format)| ExportRow {
            file: &f.file,
            format,
            rows: f.rows,
            bytes: f.bytes,
            sha256: &f.sha256,
        })
        .collect();
    staging.record_load(&loaded.run_id, &loaded.dir, &rows, loaded.seconds)
}
