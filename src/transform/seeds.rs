//! Seeds: reference data shipped with the connector and loaded as tables before the models
//! run. Today one: Microsoft's SKU names (`mappings/sku_names.csv`) as `ref_sku_names`.

use duckdb::params;

use crate::error::{Error, Result};
use crate::store::{Staging, db_error};

/// The friendly SKU names shipped with the connector.
pub const SKU_NAMES: &str = include_str!("../../mappings/sku_names.csv");

/// Parses the SKU name list (Microsoft's "product names and service plan identifiers"
/// layout); returns (sku_id, part number, friendly name), one per SKU.
pub fn parse_sku_names(text: &str) -> Result<Vec<(String, String, String)>> {
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let headers = reader
        .headers()
        .map_err(|e| Error::Usage(format!("mappings/sku_names.csv: {e}")))?
        .clone();
    let idx = |name: &str| {
        headers
            .iter()
            .position(|h| h.trim_start_matches('\u{feff}') == name)
            .ok_or_else(|| {
                Error::Usage(format!(
                    "mappings/sku_names.csv:1: the header lacks {name:?}"
                ))
            })
    };
    let (name_i, part_i, guid_i) = (
        idx("Product_Display_Name")?,
        idx("String_Id")?,
        idx("GUID")?,
    );
    let mut out: Vec<(String, String, String)> = Vec::new();
    for rec in reader.records() {
        let rec = rec.map_err(|e| Error::Usage(format!("mappings/sku_names.csv: {e}")))?;
        let guid = rec.get(guid_i).unwrap_or("").trim().to_ascii_lowercase();
        if !crate::config::is_guid(&guid) {
            let line = rec.position().map(|p| p.line()).unwrap_or(0);
            return Err(Error::Usage(format!(
                "mappings/sku_names.csv:{line}: GUID {guid:?} is not a GUID"
            )));
        }
        if out.iter().any(|(g, _, _)| *g == guid) {
            continue; // one row per service plan in Microsoft's file: keep the first
        }
        out.push((
            guid,
            rec.get(part_i).unwrap_or("").trim().to_string(),
            rec.get(name_i).unwrap_or("").trim().to_string(),
        ));
    }
    Ok(out)
}

/// Loads the SKU names as `ref_sku_names`, replacing the last run's (the list ships with
/// the binary, so a new version's list wins).
pub fn load_sku_names(staging: &Staging, names: &[(String, String, String)]) -> Result<()> {
    let conn = &staging.conn;
    let fail = |e| db_error(&staging.path, "loading ref_sku_names", e);
    // Rebuilt every transform, like a model: appended to a scratch table, then made the table.
    conn.execute_batch(
        "CREATE OR REPLACE TEMP TABLE _sku_names_in (sku_id VARCHAR, sku_part_number VARCHAR, friendly_name VARCHAR)",
    )
    .map_err(fail)?;
    let mut app = conn.appender("_sku_names_in").map_err(fail)?;
    for (g, p, n) in names {
        app.append_row(params![g, p, n]).map_err(fail)?;
    }
    app.flush().map_err(fail)?;
    drop(app);
    conn.execute_batch(
        "CREATE OR REPLACE TABLE ref_sku_names AS SELECT * FROM _sku_names_in; DROP TABLE _sku_names_in;",
    )
    .map_err(fail)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_sku_names_parse() {
        let names = parse_sku_names(SKU_NAMES).unwrap();
        assert!(names.len() >= 25);
        let e3 = names
            .iter()
            .find(|(g, _, _)| g == "05e9a617-0261-4cee-bb44-138d3ef5d965")
            .unwrap();
        assert_eq!(
            (e3.1.as_str(), e3.2.as_str()),
            ("SPE_E3", "Microsoft 365 E3")
        );
    }
}
