//! The run manifest `raw/<run_id>/manifest.json`: written last, it is what makes a landed
//! run real. It lists every file with rows, bytes and sha256, plus request counts, waits
//! and warnings, so a run can be audited without the staging database.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::concealment::{Setting, Tally};
use crate::graph::CallCounts;
use crate::land::LandedFile;

pub const MANIFEST_FILE: &str = "manifest.json";

/// A problem the run survived, with what to do about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Warning {
    /// Stable identifier, e.g. `concealed_names`.
    pub code: String,
    pub message: String,
    pub fix: String,
}

/// One stream of a run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamManifest {
    pub files: Vec<LandedFile>,
    pub rows: u64,
    pub pages: u64,
    pub calls: CallCounts,
    /// Reports only: CSV bytes downloaded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub downloaded_bytes: Option<u64>,
    /// Reports only: how the user-name column looked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub names: Option<Tally>,
    /// Reports only: CSV header as served (after BOM stripping).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub columns: Vec<String>,
    /// Reports only: cells that were not UTF-8 (landed with U+FFFD in their place).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub invalid_utf8_cells: u64,
    /// Reports only: rows with more or fewer cells than the header.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub ragged_rows: u64,
    /// Users with `[pipeline] incremental`: how they were synced, and from where.
    #[serde(default, flatten)]
    pub delta: DeltaSync,
    /// Records listed more than once (users by `id`, report rows by `Report::key_columns`). Landed as sent;
    /// staging keeps the latest page's copy of each.
    #[serde(default, skip_serializing_if = "Duplicates::is_empty")]
    pub duplicates: Duplicates,
    /// Users only: the walk asked Graph for every user's manager (`[pipeline] manager`:
    /// `$expand=manager` on `/users`, `manager` in the delta `$select`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub managers: bool,
    /// An optional stream Graph would not serve (sign-in activity without AuditLog.Read.All
    /// or Entra ID P1): landed empty, and this warning says why and what to do.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unavailable: Option<Warning>,
    /// Users walked in parallel partitions: how, and whether every user came.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partitions: Option<PartitionedWalk>,
    /// `duplicates` is final (counted as the stream landed, or known to be none): the
    /// extract's count before commit skips it. Not kept: a resumed run counts again.
    #[serde(skip)]
    pub duplicates_counted: bool,
}

/// How the users collection was partitioned for a parallel walk.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// `userPrincipalName ge/le` ranges with bounds from a sample.
    #[default]
    Ranges,
    /// `startswith(userPrincipalName, c)` for every allowed first character.
    StartsWith,
    /// One walk of the whole collection.
    Serial,
}

impl Strategy {
    pub fn words(self) -> &'static str {
        match self {
            Strategy::Ranges => "userPrincipalName ranges (ge/le)",
            Strategy::StartsWith => "startswith(userPrincipalName) partitions",
            Strategy::Serial => "one serial walk",
        }
    }
}

/// The manifest's account of a partitioned users walk.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionedWalk {
    pub strategy: Strategy,
    /// Partitions walked (a split range counts as its pieces).
    pub ranges: u64,
    /// Ranges split again because their `$count` was larger than planned.
    pub splits: u64,
    /// Graph's `$count` of users before the walk (eventually consistent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
    /// Distinct user ids landed.
    pub distinct: u64,
    /// Records dropped because another partition had landed the same id.
    pub overlap_dropped: u64,
    /// Why a strategy was given up for the next one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fallbacks: Vec<String>,
}

impl StreamManifest {
    /// `read_parquet([...])` over this stream's files in `dir` (the run's raw folder), in
    /// landing order: how every reader of a landed stream names it in SQL.
    pub fn parquet_source(&self, dir: &Path) -> String {
        let files: Vec<String> = self
            .files
            .iter()
            .map(|f| crate::sql::quote_literal(&dir.join(&f.file).display().to_string()))
            .collect();
        format!("read_parquet([{}])", files.join(", "))
    }
}

/// Repeated records of one stream (see `extract/duplicates.rs`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Duplicates {
    /// Extra copies beyond the first of each key (all are landed; one per key is used).
    pub copies: u64,
    /// Keys whose copies were not byte-identical: the latest page's copy is used.
    pub changed: u64,
    /// The first few such keys, with where their first and last copies were.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub examples: Vec<DuplicateKey>,
}

impl Duplicates {
    pub fn is_empty(&self) -> bool {
        self.copies == 0
    }
}

/// A key whose copies differed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DuplicateKey {
    /// The user id (users) or the report's user name column.
    pub key: String,
    pub first_page: u64,
    pub last_page: u64,
    pub first_row: u64,
    pub last_row: u64,
}

/// How an incremental users stream was fetched from `/users/delta` (absent otherwise, and
/// then the transform reads the stream as it always did).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeltaSync {
    /// `full`: every user (a first sync or a resync); `delta`: the changes since the run in
    /// `delta_from`, with `@removed` entries for users that were deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync: Option<SyncKind>,
    /// Delta syncs: the run whose users snapshot these changes apply to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delta_from: Option<String>,
    /// The `@odata.deltaLink` the walk ended with: where the next run continues once this one
    /// is transformed. A credential of sorts: never logged (files are owner-only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delta_link: Option<String>,
    /// Why the stored delta link was not used although there was one (Graph refused it):
    /// the run synced in full instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resync: Option<String>,
}

/// How an incremental users stream was fetched (`sync` in the manifest, `run_users_sync.sync`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SyncKind {
    /// Every user, from `/users/delta?$select=…` (a first sync or a resync).
    Full,
    /// The changes since an earlier run, from its delta link.
    Delta,
}

impl SyncKind {
    pub const fn name(self) -> &'static str {
        match self {
            SyncKind::Full => "full",
            SyncKind::Delta => "delta",
        }
    }
}

impl std::fmt::Display for SyncKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Concealment as seen by this run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Concealment {
    /// `/admin/reportSettings` (usually `unknown`: it needs ReportSettings.Read.All).
    pub setting: Setting,
    /// Reports whose user names were found concealed.
    pub concealed_reports: Vec<String>,
}

impl Concealment {
    /// Whether report names must be treated as concealed for this run.
    pub fn concealed(&self) -> bool {
        self.setting == Setting::On || !self.concealed_reports.is_empty()
    }
}

/// Everything about one extract run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunManifest {
    pub format: u32,
    pub run_id: String,
    pub connector: String,
    pub server: String,
    pub tenant_id: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    /// UTC date the extract started: the date filter's reference day.
    pub run_date: NaiveDate,
    pub report_period: String,
    pub date_filter_days: u32,
    pub streams: BTreeMap<String, StreamManifest>,
    pub login: CallCounts,
    pub requests: u64,
    pub retries: u64,
    pub throttled: u64,
    pub waited_ms: u64,
    /// Requests cut at their deadline (see [`crate::graph::CallCounts::stalled`]).
    #[serde(default)]
    pub stalled: u64,
    #[serde(default)]
    pub stalled_ms: u64,
    pub concealment: Concealment,
    pub warnings: Vec<Warning>,
}

impl RunManifest {
    /// Whether the run read each user's manager (an incremental run: its users' walk did).
    pub fn managers_read(&self) -> bool {
        self.streams
            .get(crate::streams::Stream::Users.name())
            .is_some_and(|s| s.managers)
    }

    /// Whether the run read sign-in activity (the optional `users_sign_in` stream landed).
    pub fn sign_ins_read(&self) -> bool {
        self.streams
            .get(crate::streams::Stream::SignIns.name())
            .is_some_and(|s| !s.files.is_empty())
    }

    /// Writes `manifest.json` into `dir` atomically (temp file, fsync, rename).
    pub fn write(&self, dir: &Path) -> std::io::Result<PathBuf> {
        let path = dir.join(MANIFEST_FILE);
        write_json_atomic(&path, self)?;
        Ok(path)
    }

    /// Reads a committed run's manifest.
    pub fn read(dir: &Path) -> std::io::Result<RunManifest> {
        let path = dir.join(MANIFEST_FILE);
        let bytes = std::fs::read(&path)?;
        serde_json::from_slice(&bytes).map_err(|e| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{}: not a run manifest: {e}", path.display()),
            )
        })
    }

    /// Users landed.
    pub fn users(&self) -> u64 {
        self.streams
            .get(crate::streams::Stream::Users.name())
            .map(|s| s.rows)
            .unwrap_or(0)
    }
}

/// Writes `value` as pretty JSON to `path` so that a crash leaves the old file or the new
/// one, never a torn one: a temp file next to it, fsync, rename.
pub fn write_json_atomic(path: &Path, value: &impl Serialize) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let json = serde_json::to_vec_pretty(value).map_err(std::io::Error::other)?;
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(&json)?;
    f.write_all(b"\n")?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// Committed runs under `raw_dir`, oldest first (run ids sort by time). In-progress
/// `.partial-*` directories and directories without a manifest are not runs.
pub fn committed_runs(raw_dir: &Path) -> std::io::Result<Vec<String>> {
    let mut runs = Vec::new();
    let entries = match std::fs::read_dir(raw_dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(runs),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || !entry.path().join(MANIFEST_FILE).is_file() {
            continue;
        }
        runs.push(name);
    }
    runs.sort();
    Ok(runs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sync_kinds_are_written_as_before() {
        for (kind, text) in [(SyncKind::Full, "full"), (SyncKind::Delta, "delta")] {
            let d = DeltaSync {
                sync: Some(kind),
                ..DeltaSync::default()
            };
            let json = serde_json::to_string(&d).unwrap();
            assert_eq!(json, format!("{{\"sync\":\"{text}\"}}"));
            assert_eq!(serde_json::from_str::<DeltaSync>(&json).unwrap(), d);
            assert_eq!(kind.name(), text);
        }
        assert!(serde_json::from_str::<DeltaSync>("{\"sync\":\"weekly\"}").is_err());
    }
}
