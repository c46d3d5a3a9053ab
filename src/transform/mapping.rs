//! The mapping CSV (`mappings/microsoft365.csv`): `int_people` columns → target attributes,
//! compiled into one DuckDB SELECT. The format is documented in `mappings/README.md`.
//!
//! Compilation is two-phase: [`Mapping::parse`] checks the file on its own before any SQL
//! runs; [`Mapping::compile`] checks every source against the real columns of `int_people`
//! and renders the SELECT. Identifiers are always quoted and sources must be plain column
//! names, so no cell can inject SQL. Every error names `file:line`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::human::nearest;
use crate::sql::{quote_ident, quote_literal};

/// Built-in default mapping, used when `[pipeline] mappings` is not set.
pub const DEFAULT_MAPPING: &str = include_str!("../../mappings/microsoft365.csv");
/// The name shown in errors for the built-in mapping.
pub const DEFAULT_MAPPING_NAME: &str = "mappings/microsoft365.csv (built-in)";

/// A mapping problem at `file:line`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}:{line}: {message}", file.display())]
pub struct MappingError {
    pub file: PathBuf,
    pub line: usize,
    pub message: String,
}

/// A transform from the allow-list, applied left to right.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transform {
    Trim,
    Lower,
    Upper,
    Date,
    Datetime,
    Bool,
    Int,
    List,
    Join,
}

impl Transform {
    pub const NAMES: &'static [&'static str] = &[
        "trim", "lower", "upper", "date", "datetime", "bool", "int", "list", "join",
    ];

    fn parse(s: &str) -> Option<Transform> {
        Some(match s {
            "trim" => Transform::Trim,
            "lower" => Transform::Lower,
            "upper" => Transform::Upper,
            "date" => Transform::Date,
            "datetime" => Transform::Datetime,
            "bool" => Transform::Bool,
            "int" => Transform::Int,
            "list" => Transform::List,
            "join" => Transform::Join,
            _ => return None,
        })
    }
}

/// One row of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MappingRow {
    pub line: usize,
    pub target: String,
    /// Alternatives (`|`, first non-empty wins), each a list of columns joined by `+`.
    pub source: Vec<Vec<String>>,
    pub transforms: Vec<Transform>,
    pub required: bool,
}

/// A parsed mapping file.
#[derive(Debug, Clone)]
pub struct Mapping {
    pub file: PathBuf,
    pub rows: Vec<MappingRow>,
    /// sha256 of the file's bytes, recorded with every run.
    pub sha256: String,
}

/// The header a mapping file must start with (`transform`, `required` and `description`
/// may be left out).
pub const HEADER: &[&str] = &["target", "source", "transform", "required", "description"];
const KEY_TARGET: &str = "User.ExternalId";

impl Mapping {
    /// Reads the configured mapping file, or the built-in default.
    pub fn load(path: Option<&Path>) -> Result<Mapping, MappingError> {
        match path {
            None => Mapping::parse(Path::new(DEFAULT_MAPPING_NAME), DEFAULT_MAPPING.as_bytes()),
            Some(p) => {
                let bytes = std::fs::read(p).map_err(|e| MappingError {
                    file: p.to_path_buf(),
                    line: 0,
                    message: format!("cannot read the mapping file: {e}; fix [pipeline] mappings or remove it to use the built-in mapping"),
                })?;
                Mapping::parse(p, &bytes)
            }
        }
    }

    /// Parses and checks a mapping file on its own (no database needed).
    pub fn parse(file: &Path, bytes: &[u8]) -> Result<Mapping, MappingError> {
        let err = |line: usize, message: String| MappingError {
            file: file.to_path_buf(),
            line,
            message,
        };
        let sha256 = crate::digest::hex(&Sha256::digest(bytes));
        let text = std::str::from_utf8(bytes).map_err(|e| {
            err(
                line_of_offset(bytes, e.valid_up_to()),
                "the file is not UTF-8: save it as \"CSV UTF-8\"".into(),
            )
        })?;
        // Excel's "CSV UTF-8" starts with a BOM; it is not part of the header.
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        if text.trim().is_empty() {
            return Err(err(
                1,
                format!(
                    "the mapping file is empty: it needs the header {} and one row per target attribute",
                    HEADER.join(",")
                ),
            ));
        }
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .from_reader(text.as_bytes());
        let mut records = reader.records();
        let header = match records.next() {
            Some(Ok(h)) => h,
            Some(Err(e)) => {
                let line = record_line(text, e.position());
                return Err(err(line, format!("not valid CSV: {e}")));
            }
            None => return Err(err(1, "the mapping file is empty".into())),
        };
        let header_line = record_line(text, header.position());
        let names: Vec<String> = header
            .iter()
            .map(|h| h.trim().to_ascii_lowercase())
            .collect();
        if names.len() == 1 && (names[0].contains(';') || names[0].contains('\t')) {
            return Err(err(header_line, "the header has one column: the file seems to use ';' or tabs as separator; save it comma-separated (CSV UTF-8)".into()));
        }
        if !names.iter().any(|n| HEADER.contains(&n.as_str())) {
            return Err(err(
                1,
                format!(
                    "line 1 must be the header {}, but it starts with {}: add the header line (or fix its spelling)",
                    HEADER.join(","),
                    shown(header.get(0).unwrap_or(""))
                ),
            ));
        }
        let mut col = HashMap::new();
        for (i, n) in names.iter().enumerate() {
            if !HEADER.contains(&n.as_str()) {
                return Err(err(
                    header_line,
                    format!(
                        "unknown header column {}: the header is {}",
                        shown(n),
                        HEADER.join(",")
                    ),
                ));
            }
            if col.insert(n.clone(), i).is_some() {
                return Err(err(
                    header_line,
                    format!("header column {n:?} appears twice"),
                ));
            }
        }
        for needed in ["target", "source"] {
            if !col.contains_key(needed) {
                return Err(err(
                    header_line,
                    format!(
                        "the header lacks the {needed:?} column: it must be {}",
                        HEADER.join(",")
                    ),
                ));
            }
        }
        let mut rows: Vec<MappingRow> = Vec::new();
        let mut seen: HashMap<String, usize> = HashMap::new();
        for rec in records {
            let rec = rec.map_err(|e| {
                let line = record_line(text, e.position());
                err(line, format!("not valid CSV: {e}"))
            })?;
            let line = record_line(text, rec.position());
            if rec.iter().all(|f| f.trim().is_empty()) {
                continue;
            }
            if rec.len() > names.len() {
                return Err(err(
                    line,
                    format!(
                        "{} fields but the header has {}: quote cells that contain commas",
                        rec.len(),
                        names.len()
                    ),
                ));
            }
            let cell = |name: &str| col.get(name).and_then(|i| rec.get(*i)).unwrap_or("").trim();
            for name in ["target", "source", "transform", "required"] {
                let breaks = cell(name).matches('\n').count();
                if breaks > 0 || cell(name).contains('\r') {
                    return Err(err(
                        line,
                        format!(
                            "the {name} cell runs over {} lines: a `\"` is probably not closed; close the quote or remove the line break",
                            breaks + 1
                        ),
                    ));
                }
            }
            let target = cell("target");
            check_target(target).map_err(|m| err(line, m))?;
            if let Some(prev) = seen.insert(target.to_ascii_lowercase(), line) {
                return Err(err(
                    line,
                    format!(
                        "duplicate target {} (first on line {prev}): a target appears once; compose several sources in one row with `+` or `|`",
                        shown(target)
                    ),
                ));
            }
            let source = parse_source(cell("source")).map_err(|m| err(line, m))?;
            let transforms = parse_transforms(cell("transform")).map_err(|m| err(line, m))?;
            let required = match cell("required").to_ascii_lowercase().as_str() {
                "" | "no" | "false" | "n" => false,
                "yes" | "true" | "y" => true,
                other => {
                    return Err(err(
                        line,
                        format!(
                            "required: {} is not yes/no: write yes or no (empty means no)",
                            shown(other)
                        ),
                    ));
                }
            };
            rows.push(MappingRow {
                line,
                target: target.to_string(),
                source,
                transforms,
                required,
            });
        }
        if rows.is_empty() {
            return Err(err(
                header_line + 1,
                format!(
                    "the mapping has a header but no rows: add one row per target attribute, starting with `{KEY_TARGET},id,,yes,`"
                ),
            ));
        }
        if !rows.iter().any(|r| r.target == KEY_TARGET) {
            return Err(err(
                header_line,
                format!(
                    "no row maps {KEY_TARGET}: every person needs a key; add `{KEY_TARGET},id,,yes,`"
                ),
            ));
        }
        Ok(Mapping {
            file: file.to_path_buf(),
            rows,
            sha256,
        })
    }

    /// Checks sources and transforms against `int_people`'s columns (name, DuckDB type) and
    /// renders the SELECT that produces `int_people_mapped`.
    pub fn compile(&self, columns: &[(String, String)]) -> Result<String, MappingError> {
        let by_name: HashMap<String, (&str, &str)> = columns
            .iter()
            .map(|(n, t)| (n.to_ascii_lowercase(), (n.as_str(), t.as_str())))
            .collect();
        let mut select = Vec::with_capacity(self.rows.len() + 2);
        let mut required = Vec::new();
        for row in &self.rows {
            let err = |message: String| MappingError {
                file: self.file.clone(),
                line: row.line,
                message,
            };
            let mut alternatives = Vec::new();
            for alt in &row.source {
                let mut parts = Vec::new();
                for name in alt {
                    let Some((real, ty)) = by_name.get(&name.to_ascii_lowercase()) else {
                        let hint = nearest(name, columns.iter().map(|(n, _)| n.as_str()))
                            .map(|n| format!("; did you mean {n:?}?"))
                            .unwrap_or_default();
                        return Err(err(format!(
                            "unknown column {} in source{hint} (columns of int_people are listed in mappings/README.md)",
                            shown(name)
                        )));
                    };
                    parts.push(((*real).to_string(), (*ty).to_string()));
                }
                alternatives.push(parts);
            }
            let (mut expr, mut is_list) = source_sql(&alternatives).map_err(err)?;
            for t in &row.transforms {
                (expr, is_list) = apply(*t, expr, is_list).map_err(&err)?;
            }
            select.push(format!("{expr} AS {}", quote_ident(&row.target)));
            if row.required {
                required.push(format!(
                    "CASE WHEN {} IS NULL THEN {} END",
                    quote_ident(&row.target),
                    quote_literal(&row.target)
                ));
            }
        }
        let missing = if required.is_empty() {
            "[]::VARCHAR[]".to_string()
        } else {
            format!(
                "list_filter([{}], lambda x: x IS NOT NULL)",
                required.join(", ")
            )
        };
        Ok(format!(
            "SELECT *, {missing} AS _missing_required FROM (\n    SELECT\n        {},\n        _row AS _source_row\n    FROM int_people\n    WHERE kept_by_date_filter\n)",
            select.join(",\n        ")
        ))
    }
}

fn check_target(t: &str) -> Result<(), String> {
    if t.is_empty() {
        return Err("target is empty: name the attribute, e.g. User.FullName".into());
    }
    if t.chars().count() > 128 {
        return Err(format!(
            "target {} is longer than 128 characters: targets are attribute names such as User.FullName",
            shown(t)
        ));
    }
    if let Some(c) = t.chars().find(|c| c.is_control()) {
        return Err(format!(
            "target {} contains the control character U+{:04X}: delete it (targets are attribute names such as User.FullName)",
            shown(t),
            c as u32
        ));
    }
    if t.starts_with('_') {
        return Err(format!(
            "target {} starts with '_': those names are reserved for lineage columns; rename the target",
            shown(t)
        ));
    }
    Ok(())
}

fn is_ident(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && s.len() <= 64
}

fn parse_source(s: &str) -> Result<Vec<Vec<String>>, String> {
    if s.is_empty() {
        return Err("source is empty: name an int_people column, e.g. display_name".into());
    }
    let mut alternatives = Vec::new();
    for alt in s.split('|') {
        let mut parts = Vec::new();
        for part in alt.split('+') {
            let p = part.trim();
            if !is_ident(p) {
                return Err(format!(
                    "source {} is not a column name: use int_people column names, `a + b` to join with a space, `a | b` for the first non-empty",
                    shown(p)
                ));
            }
            parts.push(p.to_string());
        }
        alternatives.push(parts);
    }
    Ok(alternatives)
}

fn parse_transforms(s: &str) -> Result<Vec<Transform>, String> {
    s.split([';', ' '])
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(|t| {
            Transform::parse(&t.to_ascii_lowercase()).ok_or_else(|| {
                let name = t.split('(').next().unwrap_or(t).trim().to_ascii_lowercase();
                if t.contains('(') && Transform::parse(&name).is_some() {
                    format!(
                        "transform `{name}` takes no arguments (found {}): write `{name}`; date and datetime read ISO 8601 text (YYYY-MM-DD, YYYY-MM-DDTHH:MM:SSZ)",
                        shown(t)
                    )
                } else {
                    format!(
                        "unknown transform {}: use {} (several: `trim;lower`)",
                        shown(t),
                        Transform::NAMES.join(", ")
                    )
                }
            })
        })
        .collect()
}

fn is_list_type(ty: &str) -> bool {
    ty.ends_with("[]")
}

/// SQL for the source cell; returns (expression, is_list).
fn source_sql(alternatives: &[Vec<(String, String)>]) -> Result<(String, bool), String> {
    let mut exprs = Vec::new();
    let mut list = None;
    for alt in alternatives {
        let (expr, is_list) = if alt.len() == 1 {
            let (name, ty) = &alt[0];
            (quote_ident(name), is_list_type(ty))
        } else {
            if let Some((n, _)) = alt.iter().find(|(_, t)| is_list_type(t)) {
                return Err(format!(
                    "column {n:?} is a list and cannot be joined with `+`: map it in a row of its own, with the transform `join` for text"
                ));
            }
            let parts: Vec<String> = alt
                .iter()
                .map(|(n, _)| format!("nullif(CAST({} AS VARCHAR), '')", quote_ident(n)))
                .collect();
            (
                format!("nullif(concat_ws(' ', {}), '')", parts.join(", ")),
                false,
            )
        };
        if *list.get_or_insert(is_list) != is_list {
            return Err(
                "alternatives mix list and single-value columns: use only list columns or only single-value columns in one source"
                    .into(),
            );
        }
        exprs.push(expr);
    }
    let is_list = list.unwrap_or(false);
    if exprs.len() == 1 {
        return Ok((exprs.remove(0), is_list));
    }
    let alts: Vec<String> = exprs
        .iter()
        .map(|e| {
            if is_list {
                format!("nullif({e}, [])")
            } else {
                format!("nullif(CAST({e} AS VARCHAR), '')")
            }
        })
        .collect();
    Ok((format!("coalesce({})", alts.join(", ")), is_list))
}

fn apply(t: Transform, e: String, is_list: bool) -> Result<(String, bool), String> {
    let scalar = |f: &str| -> Result<(String, bool), String> {
        if is_list {
            Err(format!(
                "transform `{f}` needs a single value but the source is a list; add `join` first"
            ))
        } else {
            Ok((format!("{f}(CAST({e} AS VARCHAR))"), false))
        }
    };
    match t {
        Transform::Trim => scalar("trim"),
        Transform::Lower => scalar("lower"),
        Transform::Upper => scalar("upper"),
        Transform::Date | Transform::Datetime | Transform::Bool | Transform::Int => {
            if is_list {
                return Err(
                    "a type transform needs a single value but the source is a list; add `join` first"
                        .into(),
                );
            }
            let ty = match t {
                Transform::Date => "DATE",
                Transform::Datetime => "TIMESTAMP",
                Transform::Bool => "BOOLEAN",
                _ => "BIGINT",
            };
            Ok((format!("TRY_CAST({e} AS {ty})"), false))
        }
        Transform::List => Ok(if is_list {
            (format!("coalesce({e}, []::VARCHAR[])"), true)
        } else {
            (
                format!("CASE WHEN {e} IS NULL THEN []::VARCHAR[] ELSE [CAST({e} AS VARCHAR)] END"),
                true,
            )
        }),
        Transform::Join => {
            if !is_list {
                return Err("transform `join` needs a list source (e.g. licenses)".into());
            }
            Ok((format!("nullif(array_to_string({e}, '; '), '')"), false))
        }
    }
}

/// A cell quoted for a message: escaped (control characters visible) and cut to 60
/// characters, so a runaway cell cannot flood the terminal.
fn shown(s: &str) -> String {
    let n = s.chars().count();
    if n <= 60 {
        format!("{s:?}")
    } else {
        let head: String = s.chars().take(60).collect();
        format!("{:?} ({n} characters)", format!("{head}…"))
    }
}

/// The 1-based line of byte `offset`; a line ends with CRLF, LF or a lone CR (the csv
/// reader ends a record on each of them).
fn line_of_offset(bytes: &[u8], offset: usize) -> usize {
    let before = &bytes[..offset.min(bytes.len())];
    let lone_cr = before
        .iter()
        .enumerate()
        .filter(|&(i, b)| *b == b'\r' && bytes.get(i + 1) != Some(&b'\n'))
        .count();
    before.iter().filter(|b| **b == b'\n').count() + lone_cr + 1
}

/// The line a record starts on. Not `Position::line`: the csv reader sets a record's
/// position where the previous record ended, before the line break and any blank lines it
/// then skips, so in a CRLF file (Excel on Windows) or after a blank line that line is too
/// early. The byte offset is exact; the line is counted from it, past those breaks.
fn record_line(text: &str, pos: Option<&csv::Position>) -> usize {
    let bytes = text.as_bytes();
    let mut start = pos.map_or(0, |p| p.byte() as usize).min(bytes.len());
    while matches!(bytes.get(start), Some(b'\r' | b'\n')) {
        start += 1;
    }
    line_of_offset(bytes, start)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Mapping, MappingError> {
        Mapping::parse(Path::new("m.csv"), text.as_bytes())
    }

    fn cols() -> Vec<(String, String)> {
        [
            ("id", "VARCHAR"),
            ("display_name", "VARCHAR"),
            ("given_name", "VARCHAR"),
            ("surname", "VARCHAR"),
            ("licenses", "VARCHAR[]"),
            ("created_at", "TIMESTAMP"),
        ]
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
    }

    #[test]
    fn default_mapping_parses() {
        let m = Mapping::load(None).unwrap();
        assert!(m.rows.len() >= 20);
        assert_eq!(m.rows[0].target, "User.ExternalId");
        assert_eq!(m.rows[0].line, 2);
    }

    #[test]
    fn composition_and_transforms_compile() {
        let m = parse("target,source,transform,required\nUser.ExternalId,id,,yes\nUser.FullName,display_name | given_name + surname,trim\nUser.Licenses,licenses,join\nUser.CreatedDate,created_at,date\n").unwrap();
        let sql = m.compile(&cols()).unwrap();
        assert!(sql.contains("coalesce(nullif(CAST(\"display_name\" AS VARCHAR), ''), nullif(CAST(nullif(concat_ws(' ', nullif(CAST(\"given_name\" AS VARCHAR), ''), nullif(CAST(\"surname\" AS VARCHAR), '')), '') AS VARCHAR), ''))"), "{sql}");
        assert!(sql.contains("AS \"User.FullName\""));
        assert!(sql.contains("CASE WHEN \"User.ExternalId\" IS NULL THEN 'User.ExternalId' END"));
    }

    #[test]
    fn errors_name_the_line() {
        let cases = [
            ("", 1, "empty"),
            ("target;source\nUser.ExternalId;id\n", 1, "';' or tabs"),
            (
                "target,source\nUser.ExternalId,id\nUser.X,a,b,c,d,e\n",
                3,
                "6 fields",
            ),
            (
                "target,source,transform\nUser.ExternalId,id,shout\n",
                2,
                "unknown transform \"shout\"",
            ),
            (
                "target,source\nUser.ExternalId,id\nuser.externalid,id\n",
                3,
                "duplicate target",
            ),
            (
                "target,source\nUser.A,id\n",
                1,
                "no row maps User.ExternalId",
            ),
            (
                "target,source\nUser.ExternalId,\"id\"\"); DROP TABLE runs; --\"\n",
                2,
                "is not a column name",
            ),
            ("target,source,colour\n", 1, "unknown header column"),
            ("target,source\n", 2, "no rows"),
            (
                "target,source,required\nUser.ExternalId,id,maybe\n",
                2,
                "not yes/no",
            ),
        ];
        for (text, line, needle) in cases {
            let e = parse(text).unwrap_err();
            assert_eq!(e.line, line, "{text:?}: {e}");
            assert!(e.message.contains(needle), "{text:?}: {e}");
            assert!(e.to_string().starts_with(&format!("m.csv:{line}: ")));
        }
    }

    #[test]
    fn hostile_cells_are_explained_briefly() {
        let long = "m".repeat(5000);
        let e = parse(&format!(
            "target,source\nUser.ExternalId,id\nUser.Email,{long}\n"
        ))
        .unwrap_err();
        assert!(e.message.len() < 300, "{e}");
        assert!(e.message.contains("(5000 characters)"), "{e}");
        let e = parse("target,source\nUser.ExternalId,id\nUser.Bell\u{7},mail\n").unwrap_err();
        assert!(e.message.contains("U+0007"), "{e}");
        let e = parse("target,source\nUser.ExternalId,\"id\nUser.City,city\n").unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.message.contains("not closed"), "{e}");
        let e = parse("target,source,transform\nUser.ExternalId,id,date(%d/%m/%Y)\n").unwrap_err();
        assert!(e.message.contains("`date` takes no arguments"), "{e}");
        let e = parse("User.ExternalId,id\n").unwrap_err();
        assert!(e.message.starts_with("line 1 must be the header"), "{e}");
    }

    #[test]
    fn unknown_column_suggests_nearest() {
        let m = parse("target,source\nUser.ExternalId,id\nUser.FullName,dispaly_name\n").unwrap();
        let e = m.compile(&cols()).unwrap_err();
        assert_eq!(e.line, 3);
        assert!(e.message.contains("did you mean \"display_name\""), "{e}");
    }

    #[test]
    fn hostile_targets_are_quoted() {
        let m = parse(
            "target,source\nUser.ExternalId,id\n\"x\"\" FROM runs; DROP TABLE runs; --\",id\n",
        )
        .unwrap();
        let sql = m.compile(&cols()).unwrap();
        assert!(
            sql.contains("AS \"x\"\" FROM runs; DROP TABLE runs; --\""),
            "{sql}"
        );
    }

    /// Found by fuzzing (fuzz/fuzz_targets/mapping.rs): the csv reader's record line is
    /// where the previous record ended, so in a CRLF file (Excel on Windows) or after blank
    /// lines, errors named a line too early; the first row of a CRLF file was "line 1".
    #[test]
    fn lines_are_right_with_crlf_blank_lines_and_lone_cr() {
        for (text, line) in [
            ("target,source\r\nUser.ExternalId,id\r\nUser.X,nope!\r\n", 3),
            ("target,source\n\n\nUser.ExternalId,id\n\nUser.X,nope!\n", 6),
            (
                "\r\n\r\ntarget,source\r\nUser.ExternalId,id\r\n\"User.\r\nX\",id\r\n",
                5,
            ),
            ("target,source\rUser.ExternalId,id\rUser.X,nope!\r", 3),
            ("\u{feff}target,source\r\nUser.X,id\r\n", 1),
            ("\n\ntarget,source,colour\n", 3),
            ("\r\ntarget,source\r\n", 3),
        ] {
            let e = parse(text).unwrap_err();
            assert_eq!(e.line, line, "{text:?}: {e}");
        }
        let m = parse("target,source\r\n\r\nUser.ExternalId,id\r\n").unwrap();
        assert_eq!(m.rows[0].line, 3);
    }

    #[test]
    fn bom_is_tolerated() {
        let m = parse("\u{feff}target,source\nUser.ExternalId,id\n").unwrap();
        assert_eq!(m.rows.len(), 1);
    }

    #[test]
    fn nearest_names() {
        let c = ["display_name", "given_name", "surname"];
        assert_eq!(
            nearest("displayName", c.iter().copied()),
            Some("display_name")
        );
        assert_eq!(nearest("zzzzzz", c.iter().copied()), None);
    }
}
