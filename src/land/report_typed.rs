//! A report's typed columns: the cells the models compute with (dates, counts, yes/no) as
//! typed Arrow columns, and the user's join key, landed beside the text cells (which stay as
//! served: the file is lossless). Parsing them once while the CSV lands is cheaper than
//! casting eight million-row reports on every transform.
//!
//! A typed column is named after its header with the kind in brackets
//! (`Last Activity Date [date]`); the key columns are [`USER_KEY_COLUMN`] and
//! [`USER_CONCEALED_COLUMN`]. Values are those of the SQL macros in `sql/meta/002_macros.sql`
//! (`m365_date`, `m365_int`, `m365_bool`, `m365_user_key`, `m365_is_concealed`), which
//! [`typed_projection_sql`] uses to give a run landed before typed landing the same columns.

use std::sync::Arc;

use arrow::array::{ArrayRef, BooleanBuilder, Date32Builder, Int64Builder, StringBuilder};
use arrow::datatypes::{DataType, Field};
use chrono::format::{Item, Numeric, Pad, Parsed};

use crate::streams::{Cell, Report};

/// The lower-cased user name a row joins users by; NULL when empty or concealed.
pub const USER_KEY_COLUMN: &str = "_user_key";
/// Whether the user name is concealed (a 32-hex hash or a `<PII:` token); NULL when empty.
pub const USER_CONCEALED_COLUMN: &str = "_user_concealed";

/// The name of `header`'s typed column.
pub fn typed_name(header: &str, cell: Cell) -> String {
    format!("{header} [{}]", cell.name())
}

/// Whether a header would take a name the typed columns use (the reader renames it).
pub fn is_reserved(name: &str) -> bool {
    name == USER_KEY_COLUMN
        || name == USER_CONCEALED_COLUMN
        || [Cell::Date, Cell::Int, Cell::Bool]
            .iter()
            .any(|c| name.ends_with(&format!(" [{}]", c.name())))
}

/// The typed columns of one landed report: which header cell each is parsed from.
pub struct TypedColumns {
    /// (index of the header column, kind), in file order after the key columns.
    typed: Vec<(usize, Cell)>,
    /// Index of the user column in the header, when the file has it.
    user: Option<usize>,
}

impl TypedColumns {
    /// The typed columns `report` declares that `header` has.
    pub fn new(report: Report, header: &[String]) -> TypedColumns {
        let typed = report
            .typed_columns()
            .iter()
            .filter_map(|(name, cell)| header.iter().position(|h| h == name).map(|i| (i, *cell)))
            .collect();
        let user = header.iter().position(|h| h == report.user_column());
        TypedColumns { typed, user }
    }

    /// Their Arrow fields, in file order.
    pub fn fields(&self, header: &[String]) -> Vec<Field> {
        let mut fields = vec![
            Field::new(USER_KEY_COLUMN, DataType::Utf8, true),
            Field::new(USER_CONCEALED_COLUMN, DataType::Boolean, true),
        ];
        fields.extend(self.typed.iter().map(|(i, cell)| {
            let ty = match cell {
                Cell::Date => DataType::Date32,
                Cell::Int => DataType::Int64,
                Cell::Bool => DataType::Boolean,
            };
            Field::new(typed_name(&header[*i], *cell), ty, true)
        }));
        fields
    }

    /// Builders for a batch, kept across batches.
    pub fn builders(&self) -> TypedBuilders {
        TypedBuilders {
            key: StringBuilder::new(),
            concealed: BooleanBuilder::new(),
            cells: self
                .typed
                .iter()
                .map(|(_, cell)| match cell {
                    Cell::Date => Builder::Date(Date32Builder::new()),
                    Cell::Int => Builder::Int(Int64Builder::new()),
                    Cell::Bool => Builder::Bool(BooleanBuilder::new()),
                })
                .collect(),
            lower: String::new(),
        }
    }

    /// Appends one row, given its header cells (`None` for a cell the row lacks).
    pub fn append<'a>(&self, b: &mut TypedBuilders, cell: impl Fn(usize) -> Option<&'a str>) {
        let user = self.user.and_then(&cell);
        let concealed = user.and_then(is_concealed);
        b.concealed.append_option(concealed);
        match (user.and_then(text), concealed) {
            (Some(name), Some(false)) => {
                b.lower.clear();
                if name.is_ascii() {
                    b.lower.push_str(name);
                    b.lower.make_ascii_lowercase();
                } else {
                    b.lower.push_str(&name.to_lowercase());
                }
                b.key.append_value(&b.lower);
            }
            _ => b.key.append_null(),
        }
        for ((i, _), builder) in self.typed.iter().zip(&mut b.cells) {
            let v = cell(*i);
            match builder {
                Builder::Date(d) => d.append_option(v.and_then(date)),
                Builder::Int(n) => n.append_option(v.and_then(int)),
                Builder::Bool(x) => x.append_option(v.and_then(boolean)),
            }
        }
    }
}

/// One batch's typed values.
pub struct TypedBuilders {
    key: StringBuilder,
    concealed: BooleanBuilder,
    cells: Vec<Builder>,
    /// Scratch for lower-casing; reused.
    lower: String,
}

enum Builder {
    Date(Date32Builder),
    Int(Int64Builder),
    Bool(BooleanBuilder),
}

impl TypedBuilders {
    /// The batch's columns in [`TypedColumns::fields`] order; the builders start empty again.
    pub fn finish(&mut self) -> Vec<ArrayRef> {
        let mut out: Vec<ArrayRef> = vec![
            Arc::new(self.key.finish()),
            Arc::new(self.concealed.finish()),
        ];
        out.extend(self.cells.iter_mut().map(|b| -> ArrayRef {
            match b {
                Builder::Date(d) => Arc::new(d.finish()),
                Builder::Int(n) => Arc::new(n.finish()),
                Builder::Bool(x) => Arc::new(x.finish()),
            }
        }));
        out
    }
}

/// `m365_text`: DuckDB's `trim` removes spaces only; empty is no value.
fn text(v: &str) -> Option<&str> {
    Some(v.trim_matches(' ')).filter(|t| !t.is_empty())
}

/// `m365_is_concealed`.
fn is_concealed(v: &str) -> Option<bool> {
    let t = v.trim_matches(' ');
    Some((t.len() == 32 && t.bytes().all(|b| b.is_ascii_hexdigit())) || t.starts_with("<PII:"))
}

/// `%Y-%m-%d` as chrono's parsed items (what `StrftimeItems::new("%Y-%m-%d")` yields; a test
/// checks it), so a date cell is parsed exactly as `NaiveDate::parse_from_str` would, without
/// reading the format string again for each date cell (that was 3 % of a 100 k-user
/// extract's CPU).
const DATE_ITEMS: [Item<'static>; 5] = [
    Item::Numeric(Numeric::Year, Pad::Zero),
    Item::Literal("-"),
    Item::Numeric(Numeric::Month, Pad::Zero),
    Item::Literal("-"),
    Item::Numeric(Numeric::Day, Pad::Zero),
];

/// `m365_date`: `YYYY-MM-DD`, days since the epoch.
fn date(v: &str) -> Option<i32> {
    let mut parsed = Parsed::new();
    chrono::format::parse(&mut parsed, text(v)?, DATE_ITEMS.iter()).ok()?;
    let d = parsed.to_naive_date().ok()?;
    let epoch = chrono::NaiveDate::from_ymd_opt(1970, 1, 1)?;
    i32::try_from((d - epoch).num_days()).ok()
}

/// `m365_int`: a whole number (a leading `+` allowed).
fn int(v: &str) -> Option<i64> {
    text(v)?.parse().ok()
}

/// `m365_bool`: true/yes, false/no, any case.
fn boolean(v: &str) -> Option<bool> {
    let t = v.trim_matches(' ');
    if t.eq_ignore_ascii_case("true") || t.eq_ignore_ascii_case("yes") {
        Some(true)
    } else if t.eq_ignore_ascii_case("false") || t.eq_ignore_ascii_case("no") {
        Some(false)
    } else {
        None
    }
}

/// For a report landed before typed landing: `, expr AS "typed column"`… computing every
/// typed column `report` declares with the SQL macros, from the text columns `present`
/// (a declared header the file lacks gives NULL).
pub fn typed_projection_sql(report: Report, present: &[String]) -> String {
    let q = crate::sql::quote_ident;
    let has = |c: &str| present.iter().any(|p| p == c);
    let user = report.user_column();
    let mut out = if has(user) {
        format!(
            ", m365_user_key({u}) AS {}, m365_is_concealed({u}) AS {}",
            q(USER_KEY_COLUMN),
            q(USER_CONCEALED_COLUMN),
            u = q(user)
        )
    } else {
        format!(
            ", NULL::VARCHAR AS {}, NULL::BOOLEAN AS {}",
            q(USER_KEY_COLUMN),
            q(USER_CONCEALED_COLUMN)
        )
    };
    for (name, cell) in report.typed_columns() {
        let target = q(&typed_name(name, *cell));
        if has(name) {
            out.push_str(&format!(", m365_{}({}) AS {target}", cell.name(), q(name)));
        } else {
            out.push_str(&format!(", NULL::{} AS {target}", cell.sql_type()));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn date_items_are_the_format_strings() {
        let items: Vec<Item> = chrono::format::StrftimeItems::new("%Y-%m-%d").collect();
        assert_eq!(items, DATE_ITEMS);
        for v in [
            "2026-11-26",
            "2026-1-5",
            "+2026-11-26",
            "02026-11-26",
            "2026-02-30",
            "x",
        ] {
            assert_eq!(
                date(v),
                chrono::NaiveDate::parse_from_str(v, "%Y-%m-%d")
                    .ok()
                    .map(
                        |d| (d - chrono::NaiveDate::from_ymd_opt(1970, 1, 1).unwrap()).num_days()
                            as i32
                    ),
                "{v}"
            );
        }
    }

    #[test]
    fn cells_parse_as_the_sql_macros_do() {
        assert_eq!(date(" 2026-11-26 "), Some(20_783));
        assert_eq!(date("26/11/2026"), None);
        assert_eq!(date(""), None);
        assert_eq!(int(" 42 "), Some(42));
        assert_eq!(int("+7"), Some(7));
        assert_eq!(int("x"), None);
        assert_eq!(boolean("Yes"), Some(true));
        assert_eq!(boolean(" FALSE "), Some(false));
        assert_eq!(boolean("maybe"), None);
        assert_eq!(is_concealed("0123456789ABCDEF0123456789abcdef"), Some(true));
        assert_eq!(is_concealed("<PII:H1>"), Some(true));
        assert_eq!(is_concealed("a@x.com"), Some(false));
    }

    #[test]
    fn the_key_is_the_lower_cased_unconcealed_name() {
        let header: Vec<String> = ["User Principal Name", "Last Activity Date", "Is Deleted"]
            .map(String::from)
            .to_vec();
        let t = TypedColumns::new(Report::EmailActivityUserDetail, &header);
        let mut b = t.builders();
        let rows = [
            [Some(" Ann@X.com "), Some("2026-11-01"), Some("False")],
            [Some("0123456789ABCDEF0123456789abcdef"), None, Some("True")],
            [Some("  "), Some("bad"), None],
            [Some("Ärla@x.com"), None, None],
        ];
        for r in &rows {
            t.append(&mut b, |i| r[i]);
        }
        let cols = b.finish();
        let key = cols[0]
            .as_any()
            .downcast_ref::<arrow::array::StringArray>()
            .unwrap();
        use arrow::array::Array;
        assert_eq!(key.value(0), "ann@x.com");
        assert!(key.is_null(1) && key.is_null(2));
        assert_eq!(key.value(3), "ärla@x.com");
        assert_eq!(t.fields(&header).len(), cols.len());
        let names: Vec<String> = t.fields(&header).iter().map(|f| f.name().clone()).collect();
        assert!(names.contains(&"Last Activity Date [date]".to_string()));
        assert!(is_reserved("Last Activity Date [date]") && !is_reserved("Last Activity Date"));
    }
}
