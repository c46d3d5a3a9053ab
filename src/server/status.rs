//! `status`: the connector folder as a table on the terminal (the status page's CLI twin).

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};

use crate::config::Config;
use crate::error::{Error, Result};

/// One row of `status`.
#[derive(Debug, Clone)]
pub struct StatusRow {
    pub file: String,
    pub connector: String,
    pub server: String,
    pub active: bool,
    pub schedule: String,
    pub last_run: String,
    pub next_run: String,
}

/// The `status` table for every connector file in `dir`.
pub fn status(dir: &Path, now: DateTime<Utc>) -> Result<String> {
    let mut rows = Vec::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(format!("reading {}", dir.display()), e))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().and_then(|e| e.to_str()) == Some("toml"))
        .collect();
    files.sort();
    for path in files {
        let file = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        match Config::load(&path) {
            Err(e) => rows.push(StatusRow {
                file,
                connector: "(invalid file)".into(),
                server: String::new(),
                active: false,
                schedule: String::new(),
                last_run: e.to_string(),
                next_run: String::new(),
            }),
            Ok(cfg) => {
                let last = last_run_summary(&cfg).unwrap_or_else(|| "never".into());
                let next = if cfg.connector.active {
                    cfg.schedule
                        .plan
                        .next_after(now)
                        .format("%Y-%m-%d %H:%M UTC")
                        .to_string()
                } else {
                    "(inactive)".into()
                };
                rows.push(StatusRow {
                    file,
                    connector: cfg.connector.name.clone(),
                    server: cfg.connector.server.clone(),
                    active: cfg.connector.active,
                    schedule: cfg.schedule.plan.describe(),
                    last_run: last,
                    next_run: next,
                });
            }
        }
    }
    Ok(render_status(&rows))
}

fn last_run_summary(cfg: &Config) -> Option<String> {
    // Read-only: status never applies DDL or takes the write lock from a running extract.
    let staging = crate::store::Staging::open_read_only(&cfg.pipeline.data_dir).ok()?;
    staging
        .conn
        .query_row(
            "SELECT status || ' ' || strftime(started_at, '%Y-%m-%d %H:%M') || ' UTC, ' || coalesce(users_fetched, 0) || ' fetched, '
                    || coalesce(people_kept, 0) || ' kept'
             FROM runs WHERE connector = ? ORDER BY started_at DESC LIMIT 1",
            duckdb::params![cfg.connector.name],
            |r| r.get::<_, String>(0),
        )
        .ok()
}

fn render_status(rows: &[StatusRow]) -> String {
    let header = [
        "file",
        "connector",
        "server",
        "active",
        "schedule",
        "last run",
        "next run",
    ];
    let cells: Vec<[String; 7]> = rows
        .iter()
        .map(|r| {
            [
                r.file.clone(),
                r.connector.clone(),
                r.server.clone(),
                if r.active { "yes".into() } else { "no".into() },
                r.schedule.clone(),
                r.last_run.clone(),
                r.next_run.clone(),
            ]
        })
        .collect();
    let mut widths = header.map(|h| h.chars().count());
    for c in &cells {
        for (i, v) in c.iter().enumerate() {
            widths[i] = widths[i].max(v.chars().count());
        }
    }
    let line = |vals: &[String]| {
        vals.iter()
            .enumerate()
            .map(|(i, v)| format!("{v:<w$}", w = widths[i]))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    let mut out = line(&header.map(String::from));
    out.push('\n');
    for c in &cells {
        out.push_str(&line(c));
        out.push('\n');
    }
    out
}
