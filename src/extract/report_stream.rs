//! Usage reports: download, read by header name, land as Parquet; plus the report settings
//! that say whether names are concealed.

use chrono::Utc;

use super::resume;
use crate::concealment::{self, Setting, Tally};
use crate::error::{Error, Result};
use crate::graph::{CallStats, GraphClient, reports};
use crate::land::report_csv::ReportReader;
use crate::land::{CsvLander, Lineage};
use crate::manifest::{DeltaSync, StreamManifest};
use crate::streams::Report;

use super::{StreamCtx, StreamResult, cancelled_error};

/// Rows per Parquet batch when converting a report CSV.
const CSV_BATCH_ROWS: usize = 2_048;

/// Downloads one report and lands it, noting how its user names look.
pub(super) async fn land_report(ctx: StreamCtx, report: Report, period: String) -> StreamResult {
    let StreamCtx {
        cfg,
        client,
        dir,
        run_id,
        mut cancel,
        convert_slots,
        ..
    } = ctx;
    let stats = CallStats::default();
    let csv_path = dir.join(format!("{}.csv.download", report.stream()));
    let downloaded = tokio::select! {
        d = reports::download_report(&client, report, &period, &csv_path, &stats) => d?,
        _ = cancel.wait_for(|c| *c) => return Err(cancelled_error()),
    };
    let at = Utc::now();
    tracing::debug!(report = %report, bytes = downloaded, "report downloaded");
    let lineage = Lineage {
        run_id,
        stream: report.stream().to_string(),
    };
    let marker_dir = dir.clone();
    let _turn = tokio::select! {
        turn = convert_slots.acquire_owned() => turn
            .map_err(|e| Error::Internal(format!("waiting to convert the {report} report: {e}")))?,
        _ = cancel.wait_for(|c| *c) => return Err(cancelled_error()),
    };
    let (file, names, columns, invalid, ragged) =
        tokio::task::spawn_blocking(move || -> Result<_> {
            let ctx = |e| {
                Error::io(
                    format!("reading the {report} report {}", csv_path.display()),
                    e,
                )
            };
            // The download was proven complete and a report (its header has documented
            // columns) before it was written: see graph::reports::download_report.
            let mut reader = ReportReader::open(&csv_path).map_err(ctx)?;
            let header: Vec<String> = if reader.header().is_empty() {
                report
                    .documented_columns()
                    .iter()
                    .map(|c| c.to_string())
                    .collect()
            } else {
                reader.header().to_vec()
            };
            let user_col = header.iter().position(|h| h == report.user_column());
            let mut lander = CsvLander::create(&dir, report.stream(), &header, lineage)?;
            let mut names = Tally::default();
            // One batch, its buffers reused for every CSV_BATCH_ROWS rows.
            let mut batch = reader.batch();
            while reader.read_into(&mut batch, CSV_BATCH_ROWS).map_err(ctx)? > 0 {
                let columns = batch.finish();
                for r in 0..columns.len() {
                    names.add(user_col.and_then(|i| columns.cell(i, r)));
                }
                lander.write_batch(at, columns)?;
            }
            let file = lander.finish()?;
            std::fs::remove_file(&csv_path).map_err(ctx)?;
            Ok((
                file,
                names,
                reader.header().to_vec(),
                reader.invalid_utf8_cells,
                reader.ragged_rows,
            ))
        })
        .await
        .map_err(|e| Error::Internal(format!("landing the {report} report failed: {e}")))??;
    tracing::debug!(report = %report, rows = file.rows, "report landed");
    if invalid > 0 || ragged > 0 {
        tracing::warn!(report = %report, invalid_utf8_cells = invalid, ragged_rows = ragged, "report CSV needed repairs");
    }
    let mut manifest = StreamManifest {
        rows: file.rows,
        files: vec![file],
        pages: 1,
        calls: stats.snapshot(),
        downloaded_bytes: Some(downloaded),
        names: Some(names),
        columns,
        invalid_utf8_cells: invalid,
        ragged_rows: ragged,
        delta: DeltaSync::default(),
        duplicates: Default::default(),
        partitions: None,
        duplicates_counted: false,
        managers: false,
        unavailable: None,
    };
    // Counted now, in the same turn, while the users walk goes on.
    let manifest = tokio::task::spawn_blocking(move || {
        let dir = marker_dir.clone();
        super::duplicates::count_one(&cfg, &dir, report.stream(), &mut manifest)
            .map(|()| (manifest, dir))
    })
    .await
    .map_err(|e| Error::Internal(format!("counting the {report} report's rows failed: {e}")))?;
    let (manifest, marker_dir) = manifest?;
    drop(_turn);
    resume::mark_done(&marker_dir, report.stream(), &manifest)?;
    Ok((report.stream().to_string(), manifest))
}

/// `1 row had` / `3 rows had`.
pub(super) fn count(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// `GET /admin/reportSettings`: a 403 (the usual answer, as the app lacks
/// ReportSettings.Read.All) or any other failure just means "unknown".
pub(super) async fn report_settings(client: &GraphClient) -> Setting {
    let Ok(url) = client.v1("/admin/reportSettings") else {
        return Setting::Unknown;
    };
    let stats = CallStats::default();
    match client
        .get_graph(&url, &stats, "report settings", |r| {
            Ok::<_, (String, _)>(concealment::parse_report_settings(&r.body))
        })
        .await
    {
        Ok(s) => s,
        Err(e) => {
            tracing::debug!(error = %e, "report settings not readable; concealment is detected from the reports");
            Setting::Unknown
        }
    }
}
