//! The users stream's typed columns: one Arrow column per `$select` property (and the
//! manager), parsed in Rust while pages land, beside the lossless `record` text. Staging then
//! reads columns instead of parsing a million JSON texts on every transform
//! (`sql/staging/stg_graph__users.sql`).
//!
//! This file owns the list of typed columns both ways: [`columns`] for the landers, and
//! [`json_projection_sql`] for records that have no typed columns (runs landed before typed
//! landing, and the incremental users snapshot, which stores records), so both read alike.
//!
//! Values convert as DuckDB's `json_transform` did: a value of an unexpected JSON type never
//! fails the run. Text columns take strings as they are and any other value as its JSON text;
//! booleans take `true`/`false` (also as strings); timestamps take ISO 8601 text (UTC, an
//! offset applied), otherwise NULL; lists take arrays (items that are not strings as their
//! JSON text), otherwise NULL. The record keeps exactly what Graph sent.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanBuilder, ListBuilder, StringBuilder, TimestampMicrosecondBuilder,
};
use arrow::datatypes::{DataType, Field, TimeUnit};
use serde::Deserialize;
use serde_json::value::RawValue;

/// How a property is typed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Text,
    Bool,
    /// UTC, without a zone in the file (DuckDB reads it as `TIMESTAMP`).
    Timestamp,
    TextList,
    /// `assignedLicenses`: the list of `skuId`s.
    SkuIds,
    /// An object kept as its JSON text (`manager`, `manager@delta`): small, and only read
    /// when the walk asked for managers.
    Json,
}

/// The typed columns, in file order: (column name, Graph property, kind). Column names are
/// the Graph property names, except `assignedLicenses`, which lands as its SKU ids.
pub const COLUMNS: &[(&str, Kind)] = &[
    ("id", Kind::Text),
    ("userPrincipalName", Kind::Text),
    ("displayName", Kind::Text),
    ("givenName", Kind::Text),
    ("surname", Kind::Text),
    ("mail", Kind::Text),
    ("accountEnabled", Kind::Bool),
    ("userType", Kind::Text),
    ("createdDateTime", Kind::Timestamp),
    ("department", Kind::Text),
    ("jobTitle", Kind::Text),
    ("officeLocation", Kind::Text),
    ("companyName", Kind::Text),
    ("employeeId", Kind::Text),
    ("mobilePhone", Kind::Text),
    ("businessPhones", Kind::TextList),
    ("city", Kind::Text),
    ("country", Kind::Text),
    ("state", Kind::Text),
    ("usageLocation", Kind::Text),
    ("onPremisesSyncEnabled", Kind::Bool),
    ("lastPasswordChangeDateTime", Kind::Timestamp),
    ("assignedLicenses", Kind::SkuIds),
    ("onPremisesSamAccountName", Kind::Text),
    ("onPremisesDistinguishedName", Kind::Text),
    ("onPremisesImmutableId", Kind::Text),
    ("onPremisesDomainName", Kind::Text),
    ("onPremisesLastSyncDateTime", Kind::Timestamp),
    ("proxyAddresses", Kind::TextList),
    ("otherMails", Kind::TextList),
    ("employeeType", Kind::Text),
    ("employeeHireDate", Kind::Timestamp),
    ("externalUserState", Kind::Text),
    ("creationType", Kind::Text),
    ("preferredLanguage", Kind::Text),
    ("manager", Kind::Json),
    ("manager@delta", Kind::Json),
];

/// The column a run landed with typed users has (and a run landed before does not).
pub const MARKER_COLUMN: &str = "userPrincipalName";

/// The typed columns' Arrow fields, all nullable.
pub fn fields() -> Vec<Field> {
    COLUMNS
        .iter()
        .map(|(name, kind)| Field::new(*name, data_type(*kind), true))
        .collect()
}

fn data_type(kind: Kind) -> DataType {
    let list = || DataType::List(Arc::new(Field::new("item", DataType::Utf8, true)));
    match kind {
        Kind::Text | Kind::Json => DataType::Utf8,
        Kind::Bool => DataType::Boolean,
        Kind::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, None),
        Kind::TextList | Kind::SkuIds => list(),
    }
}

/// The properties of one record that have typed columns, borrowed from the page's text.
/// Unknown properties are skipped without being parsed.
#[derive(Deserialize, Default)]
struct Fields<'a> {
    #[serde(borrow, default)]
    id: Option<&'a RawValue>,
    #[serde(borrow, default, rename = "userPrincipalName")]
    user_principal_name: Option<&'a RawValue>,
    #[serde(borrow, default, rename = "displayName")]
    display_name: Option<&'a RawValue>,
    #[serde(borrow, default, rename = "givenName")]
    given_name: Option<&'a RawValue>,
    #[serde(borrow, default)]
    surname: Option<&'a RawValue>,
    #[serde(borrow, default)]
    mail: Option<&'a RawValue>,
    #[serde(borrow, default, rename = "accountEnabled")]
    account_enabled: Option<&'a RawValue>,
    #[serde(borrow, default, rename = "userType")]
    user_type: Option<&'a RawValue>,
    #[serde(borrow, default, rename = "createdDateTime")]
    created: Option<&'a RawValue>,
    #[serde(borrow, default)]
    department: Option<&'a RawValue>,
    #[serde(borrow, default, rename = "jobTitle")]
    job_title: Option<&'a RawValue>,
    #[serde(borrow, default, rename = "officeLocation")]
    office_location: Option<&'a RawValue>,
    #[serde(borrow, default, rename = "companyName")]
    company_name: Option<&'a RawValue>,
    #[serde(borrow, default, rename = "employeeId")]
    employee_id: Option<&'a RawValue>,
    #[serde(borrow, default, rename = "mobilePhone")]
    mobile_phone: Option<&'a RawValue>,
    #[serde(borrow, default, rename = "businessPhones")]
    business_phones: Option<&'a RawValue>,
    #[serde(borrow, default)]
    city: Option<&'a RawValue>,
    #[serde(borrow, default)]
    country: Option<&'a RawValue>,
    #[serde(borrow, default)]
    state: Option<&'a RawValue>,
    #[serde(borrow, default, rename = "usageLocation")]
    usage_location: Option<&'a RawValue>,
    #[serde(borrow, default, rename = "onPremisesSyncEnabled")]
    sync_enabled: Option<&'a RawValue>,
    #[serde(borrow, default, rename = "lastPasswordChangeDateTime")]
    password_changed: Option<&'a RawValue>,
    #[serde(borrow, default, rename = "assignedLicenses")]
    licenses: Option<&'a RawValue>,
    #[serde(borrow, default, rename = "onPremisesSamAccountName")]
    sam_account_name: Option<&'a RawValue>,
    #[serde(borrow, default, rename = "onPremisesDistinguishedName")]
    distinguished_name: Option<&'a RawValue>,
    #[serde(borrow, default, rename = "onPremisesImmutableId")]
    immutable_id: Option<&'a RawValue>,
    #[serde(borrow, default, rename = "onPremisesDomainName")]
    domain_name: Option<&'a RawValue>,
    #[serde(borrow, default, rename = "onPremisesLastSyncDateTime")]
    last_sync: Option<&'a RawValue>,
    #[serde(borrow, default, rename = "proxyAddresses")]
    proxy_addresses: Option<&'a RawValue>,
    #[serde(borrow, default, rename = "otherMails")]
    other_mails: Option<&'a RawValue>,
    #[serde(borrow, default, rename = "employeeType")]
    employee_type: Option<&'a RawValue>,
    #[serde(borrow, default, rename = "employeeHireDate")]
    hire_date: Option<&'a RawValue>,
    #[serde(borrow, default, rename = "externalUserState")]
    external_user_state: Option<&'a RawValue>,
    #[serde(borrow, default, rename = "creationType")]
    creation_type: Option<&'a RawValue>,
    #[serde(borrow, default, rename = "preferredLanguage")]
    preferred_language: Option<&'a RawValue>,
    #[serde(borrow, default)]
    manager: Option<&'a RawValue>,
    #[serde(borrow, default, rename = "manager@delta")]
    manager_delta: Option<&'a RawValue>,
}

impl<'a> Fields<'a> {
    /// Parses a record; a record the fast path refuses (a property given twice, say) is read
    /// as a map, the last copy winning; a record that is not an object has no values.
    fn parse(record: &'a str) -> Fields<'a> {
        // serde would also read a struct from an array; a record is an object or nothing.
        if !record.trim_start().starts_with('{') {
            return Fields::default();
        }
        if let Ok(f) = serde_json::from_str::<Fields>(record) {
            return f;
        }
        let Ok(map) = serde_json::from_str::<BTreeMap<String, &'a RawValue>>(record) else {
            return Fields::default();
        };
        let mut f = Fields::default();
        for (i, (name, _)) in COLUMNS.iter().enumerate() {
            *f.slot(i) = map.get(*name).copied();
        }
        f
    }

    /// The value of column `i` of [`COLUMNS`].
    fn slot(&mut self, i: usize) -> &mut Option<&'a RawValue> {
        match i {
            0 => &mut self.id,
            1 => &mut self.user_principal_name,
            2 => &mut self.display_name,
            3 => &mut self.given_name,
            4 => &mut self.surname,
            5 => &mut self.mail,
            6 => &mut self.account_enabled,
            7 => &mut self.user_type,
            8 => &mut self.created,
            9 => &mut self.department,
            10 => &mut self.job_title,
            11 => &mut self.office_location,
            12 => &mut self.company_name,
            13 => &mut self.employee_id,
            14 => &mut self.mobile_phone,
            15 => &mut self.business_phones,
            16 => &mut self.city,
            17 => &mut self.country,
            18 => &mut self.state,
            19 => &mut self.usage_location,
            20 => &mut self.sync_enabled,
            21 => &mut self.password_changed,
            22 => &mut self.licenses,
            23 => &mut self.sam_account_name,
            24 => &mut self.distinguished_name,
            25 => &mut self.immutable_id,
            26 => &mut self.domain_name,
            27 => &mut self.last_sync,
            28 => &mut self.proxy_addresses,
            29 => &mut self.other_mails,
            30 => &mut self.employee_type,
            31 => &mut self.hire_date,
            32 => &mut self.external_user_state,
            33 => &mut self.creation_type,
            34 => &mut self.preferred_language,
            35 => &mut self.manager,
            _ => &mut self.manager_delta,
        }
    }
}

/// One builder per typed column, kept across pages (`finish` empties them, keeping their
/// buffers).
pub struct TypedBuilders {
    builders: Vec<Builder>,
    /// Scratch for a string with escapes; reused.
    text: String,
}

enum Builder {
    Text(StringBuilder),
    Bool(BooleanBuilder),
    Timestamp(TimestampMicrosecondBuilder),
    List(ListBuilder<StringBuilder>),
}

impl Default for TypedBuilders {
    fn default() -> Self {
        TypedBuilders::new()
    }
}

impl TypedBuilders {
    pub fn new() -> TypedBuilders {
        let builders = COLUMNS
            .iter()
            .map(|(_, kind)| match kind {
                Kind::Text | Kind::Json => Builder::Text(StringBuilder::new()),
                Kind::Bool => Builder::Bool(BooleanBuilder::new()),
                Kind::Timestamp => Builder::Timestamp(TimestampMicrosecondBuilder::new()),
                Kind::TextList | Kind::SkuIds => {
                    Builder::List(ListBuilder::new(StringBuilder::new()))
                }
            })
            .collect();
        TypedBuilders {
            builders,
            text: String::new(),
        }
    }

    /// Appends one record's values (all NULL for a record that is not a JSON object).
    pub fn append(&mut self, record: &str) {
        let mut fields = Fields::parse(record);
        for (i, (_, kind)) in COLUMNS.iter().enumerate() {
            let value = *fields.slot(i);
            let value = value.filter(|v| v.get() != "null");
            match (&mut self.builders[i], kind) {
                (Builder::Text(b), Kind::Json) => b.append_option(value.map(RawValue::get)),
                (Builder::Text(b), _) => match value {
                    Some(v) => b.append_value(text_of(v, &mut self.text)),
                    None => b.append_null(),
                },
                (Builder::Bool(b), _) => b.append_option(value.and_then(bool_of)),
                (Builder::Timestamp(b), _) => {
                    b.append_option(value.and_then(|v| timestamp_of(text_of(v, &mut self.text))))
                }
                (Builder::List(b), Kind::SkuIds) => append_sku_ids(b, value, &mut self.text),
                (Builder::List(b), _) => append_list(b, value, &mut self.text),
            }
        }
    }

    /// The columns of the records appended since the last call, in [`COLUMNS`] order.
    pub fn finish(&mut self) -> Vec<ArrayRef> {
        self.builders
            .iter_mut()
            .map(|b| -> ArrayRef {
                match b {
                    Builder::Text(b) => Arc::new(b.finish()),
                    Builder::Bool(b) => Arc::new(b.finish()),
                    Builder::Timestamp(b) => Arc::new(b.finish()),
                    Builder::List(b) => Arc::new(b.finish()),
                }
            })
            .collect()
    }
}

/// A JSON value as text: a string's content (unescaped only when it has escapes), any other
/// value as its JSON text.
fn text_of<'v>(v: &'v RawValue, scratch: &'v mut String) -> &'v str {
    let raw = v.get();
    match raw.strip_prefix('"').and_then(|s| s.strip_suffix('"')) {
        Some(inner) if !inner.contains('\\') => inner,
        Some(_) => match serde_json::from_str::<String>(raw) {
            Ok(s) => {
                *scratch = s;
                scratch.as_str()
            }
            Err(_) => raw,
        },
        None => raw,
    }
}

fn bool_of(v: &RawValue) -> Option<bool> {
    match v.get().trim_matches('"').to_ascii_lowercase().as_str() {
        "true" | "yes" | "1" => Some(true),
        "false" | "no" | "0" => Some(false),
        _ => None,
    }
}

/// Microseconds since the epoch of an ISO 8601 text as Graph writes it
/// (`2014-01-01T00:00:00Z`; an offset is applied; a date alone is midnight; a zoneless time
/// is taken as UTC), NULL otherwise.
fn timestamp_of(text: &str) -> Option<i64> {
    let t = text.trim();
    if t.is_empty() {
        return None;
    }
    if let Ok(dt) = chrono::DateTime::parse_from_rfc3339(t) {
        return Some(dt.naive_utc().and_utc().timestamp_micros());
    }
    for format in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"] {
        if let Ok(dt) = chrono::NaiveDateTime::parse_from_str(t, format) {
            return Some(dt.and_utc().timestamp_micros());
        }
    }
    chrono::NaiveDate::parse_from_str(t, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|dt| dt.and_utc().timestamp_micros())
}

fn append_list(b: &mut ListBuilder<StringBuilder>, value: Option<&RawValue>, scratch: &mut String) {
    match value.and_then(|v| serde_json::from_str::<Vec<&RawValue>>(v.get()).ok()) {
        Some(items) => {
            for item in items {
                if item.get() == "null" {
                    b.values().append_null();
                } else {
                    b.values().append_value(text_of(item, scratch));
                }
            }
            b.append(true);
        }
        None => b.append(false),
    }
}

fn append_sku_ids(
    b: &mut ListBuilder<StringBuilder>,
    value: Option<&RawValue>,
    scratch: &mut String,
) {
    #[derive(Deserialize)]
    struct Licence<'a> {
        #[serde(borrow, default, rename = "skuId")]
        sku_id: Option<&'a RawValue>,
    }
    match value.and_then(|v| serde_json::from_str::<Vec<Option<Licence>>>(v.get()).ok()) {
        Some(items) => {
            for item in items {
                match item.and_then(|l| l.sku_id).filter(|s| s.get() != "null") {
                    Some(s) => b.values().append_value(text_of(s, scratch)),
                    None => b.values().append_null(),
                }
            }
            b.append(true);
        }
        None => b.append(false),
    }
}

/// For records without typed columns: a SELECT list (`, expr AS "column"`…) computing every
/// typed column from `record` with `json_transform`, the same values the landers write.
pub fn json_projection_sql(record: &str) -> String {
    let mut shape = Vec::new();
    let mut exprs = String::new();
    for (name, kind) in COLUMNS {
        let key = crate::sql::quote_ident(name);
        let json_type = match kind {
            Kind::Text | Kind::Timestamp => r#""VARCHAR""#,
            Kind::Bool => r#""BOOLEAN""#,
            Kind::TextList => r#"["VARCHAR"]"#,
            Kind::SkuIds => r#"[{"skuId": "VARCHAR"}]"#,
            Kind::Json => r#""JSON""#,
        };
        shape.push(format!("{}: {json_type}", serde_json::Value::from(*name)));
        let v = format!("_typed.{key}");
        let expr = match kind {
            Kind::Timestamp => format!("m365_ts({v})"),
            Kind::SkuIds => format!("list_transform({v}, lambda l: l.skuId)"),
            Kind::Json => format!("CAST({v} AS VARCHAR)"),
            _ => v,
        };
        exprs.push_str(&format!(", {expr} AS {key}"));
    }
    format!(
        "{exprs} FROM (SELECT *, json_transform({record}, {}) AS _typed",
        crate::sql::quote_literal(&format!("{{{}}}", shape.join(", ")))
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, BooleanArray, ListArray, StringArray, TimestampMicrosecondArray};

    fn column<'a, T: 'static>(cols: &'a [ArrayRef], name: &str) -> &'a T {
        let i = COLUMNS.iter().position(|(n, _)| *n == name).unwrap();
        cols[i].as_any().downcast_ref::<T>().unwrap()
    }

    #[test]
    fn columns_cover_the_select_and_the_slots() {
        for p in crate::streams::USER_SELECT {
            assert!(
                COLUMNS.iter().any(|(n, _)| n == p),
                "{p} has no typed column"
            );
        }
        // Every slot is distinct: parsing a record with all properties fills each column.
        let mut f = Fields::default();
        let ptrs: std::collections::BTreeSet<usize> = (0..COLUMNS.len())
            .map(|i| f.slot(i) as *mut _ as usize)
            .collect();
        assert_eq!(ptrs.len(), COLUMNS.len());
    }

    #[test]
    fn each_slot_is_its_columns_property() {
        // A record whose every property holds its own name, as text: each text column must
        // read back its own name, so `Fields::slot` and `COLUMNS` cannot drift apart.
        let record: serde_json::Map<String, serde_json::Value> = COLUMNS
            .iter()
            .map(|(n, _)| (n.to_string(), serde_json::Value::from(*n)))
            .collect();
        let text = serde_json::Value::Object(record).to_string();
        let mut f = Fields::parse(&text);
        for (i, (name, _)) in COLUMNS.iter().enumerate() {
            let v = f.slot(i).map(RawValue::get).unwrap_or("null");
            assert_eq!(v, serde_json::Value::from(*name).to_string(), "slot {i}");
        }
    }

    #[test]
    fn values_convert_leniently_and_lists_keep_order() {
        let mut b = TypedBuilders::new();
        b.append(r#"{"id":"1","userPrincipalName":"A\u00e9@x.com","accountEnabled":"yes","createdDateTime":"2014-01-01T02:00:00+02:00","businessPhones":["1",2,null],"assignedLicenses":[{"skuId":"s1"},{"skuId":"s2"}],"mail":123,"proxyAddresses":"SMTP:a@x","manager":{"id":"m"}}"#);
        b.append(r#"{"id":"2","id":"3","employeeHireDate":"2020-05-01","accountEnabled":false,"createdDateTime":"never"}"#);
        b.append("[1,2]");
        let cols = b.finish();
        let text = |n| column::<StringArray>(&cols, n);
        assert_eq!(text("id").value(0), "1");
        assert_eq!(text("id").value(1), "3", "the last copy of a property wins");
        assert!(
            text("id").is_null(2),
            "a record that is not an object has no values"
        );
        assert_eq!(text("userPrincipalName").value(0), "Aé@x.com");
        assert_eq!(text("mail").value(0), "123");
        assert_eq!(text("manager").value(0), r#"{"id":"m"}"#);
        assert!(text("manager").is_null(1));
        let enabled = column::<BooleanArray>(&cols, "accountEnabled");
        assert!(enabled.value(0) && !enabled.value(1));
        let created = column::<TimestampMicrosecondArray>(&cols, "createdDateTime");
        assert_eq!(
            created.value(0),
            1_388_534_400_000_000,
            "the offset is applied"
        );
        assert!(created.is_null(1));
        let hired = column::<TimestampMicrosecondArray>(&cols, "employeeHireDate");
        assert_eq!(hired.value(1), 1_588_291_200_000_000);
        let phones = column::<ListArray>(&cols, "businessPhones");
        let first = phones.value(0);
        let first = first.as_any().downcast_ref::<StringArray>().unwrap();
        assert_eq!(
            (first.value(0), first.value(1), first.is_null(2)),
            ("1", "2", true)
        );
        assert!(phones.is_null(1));
        let skus = column::<ListArray>(&cols, "assignedLicenses").value(0);
        let skus = skus.as_any().downcast_ref::<StringArray>().unwrap();
        assert_eq!((skus.value(0), skus.value(1)), ("s1", "s2"));
        assert!(
            column::<ListArray>(&cols, "proxyAddresses").is_null(0),
            "a string is no list"
        );
        // Builders are empty again after finish.
        b.append(r#"{"id":"9"}"#);
        let again = b.finish();
        assert_eq!(again[0].len(), 1);
    }
}
