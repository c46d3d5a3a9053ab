//! The mapping compiler on arbitrary bytes (an admin edits the mapping CSV by hand).
//!
//! Never panics; a refused file is an error naming `file:line` with a line inside the file;
//! an accepted one maps `User.ExternalId`, once per target; CRLF line ends give the same
//! answer and lines as LF. Each accepted mapping is compiled
//! twice: against `int_people`'s real columns (unknown names exercise the suggestions) and
//! against a column list holding every source it names. A compiled SELECT is lexed, and
//! outside quotes it holds only the compiler's own keywords and punctuation: every column
//! and target is a quoted identifier (or, for a required target, a quoted literal), so no
//! cell can add SQL.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use m365_connector::mapping::{Mapping, MappingError};

const FILE: &str = "fuzz.csv";

/// `int_people`'s columns, as listed in mappings/README.md; `[]` marks the lists.
const INT_PEOPLE: &str = "id user_principal_name upn_key display_name given_name surname mail \
    account_enabled user_type created_at created_date department job_title office_location \
    company_name employee_id mobile_phone business_phones[] city state country usage_location \
    on_premises_sync_enabled last_password_change_at assigned_sku_ids[] licenses[] \
    license_part_numbers[] last_activity_date exchange_last_activity_date \
    onedrive_last_activity_date sharepoint_last_activity_date teams_last_activity_date \
    yammer_last_activity_date skype_last_activity_date apps_last_activity_date \
    mailbox_last_activity_date email_last_activity_date latest_license_assign_date \
    has_exchange_license has_onedrive_license has_sharepoint_license has_teams_license \
    report_assigned_products report_refresh_date office_last_activated_date \
    office_activations_windows office_activations_mac office_activations_mobile \
    office_activated_products[] apps_last_activation_date apps_used_windows apps_used_mac \
    apps_used_mobile apps_used_web apps_used_count mailbox_storage_used_bytes \
    mailbox_item_count mailbox_has_archive email_send_count email_receive_count \
    email_read_count onedrive_storage_used_bytes onedrive_file_count \
    sharepoint_viewed_or_edited_file_count sharepoint_visited_page_count \
    teams_chat_message_count teams_private_chat_message_count teams_call_count \
    teams_meeting_count last_seen_date kept_by_date_filter";

/// Words the compiler itself writes into the SELECT.
const KEYWORDS: &[&str] = &[
    "SELECT",
    "AS",
    "FROM",
    "WHERE",
    "CAST",
    "TRY_CAST",
    "VARCHAR",
    "DATE",
    "TIMESTAMP",
    "BOOLEAN",
    "BIGINT",
    "CASE",
    "WHEN",
    "IS",
    "NOT",
    "NULL",
    "THEN",
    "ELSE",
    "END",
    "nullif",
    "coalesce",
    "concat_ws",
    "trim",
    "lower",
    "upper",
    "array_to_string",
    "list_filter",
    "lambda",
    "x",
    "int_people",
    "kept_by_date_filter",
    "_row",
    "_source_row",
    "_missing_required",
];

/// Literals the compiler itself writes.
const LITERALS: &[&str] = &["", " ", "; "];

fn columns(spec: impl Iterator<Item = String>) -> Vec<(String, String)> {
    spec.map(|c| match c.strip_suffix("[]") {
        Some(name) => (name.to_string(), "VARCHAR[]".to_string()),
        None => (c, "VARCHAR".to_string()),
    })
    .collect()
}

fn check_error(e: &MappingError, lines: usize) {
    assert!(!e.message.is_empty(), "an error without a message");
    assert!(
        (1..=lines + 1).contains(&e.line),
        "line {} outside a {lines}-line file: {e}",
        e.line
    );
    assert!(e.to_string().starts_with(&format!("{FILE}:{}: ", e.line)));
}

/// Checks the SELECT outside quotes: only known words and punctuation; every quoted
/// identifier a column or a target, every literal the compiler's own or a target.
fn check_sql(sql: &str, cols: &[(String, String)], m: &Mapping) {
    let is_col = |s: &str| cols.iter().any(|(c, _)| c == s);
    let is_target = |s: &str| m.rows.iter().any(|r| r.target == s);
    let mut chars = sql.chars().peekable();
    let mut depth = 0i64;
    while let Some(c) = chars.next() {
        match c {
            '"' | '\'' => {
                let mut text = String::new();
                loop {
                    match chars.next() {
                        Some(q) if q == c => {
                            if chars.peek() == Some(&c) {
                                chars.next();
                                text.push(c);
                            } else {
                                break;
                            }
                        }
                        Some(other) => text.push(other),
                        None => panic!("unterminated {c} in {sql}"),
                    }
                }
                if c == '"' {
                    assert!(is_col(&text) || is_target(&text), "identifier {text:?}");
                } else {
                    assert!(
                        LITERALS.contains(&text.as_str()) || is_target(&text),
                        "literal {text:?}"
                    );
                }
            }
            '(' | '[' => depth += 1,
            ')' | ']' => {
                depth -= 1;
                assert!(depth >= 0, "unbalanced brackets in {sql}");
            }
            c if c.is_ascii_alphabetic() || c == '_' => {
                let mut word = String::from(c);
                while let Some(&n) = chars.peek() {
                    if n.is_ascii_alphanumeric() || n == '_' {
                        word.push(n);
                        chars.next();
                    } else {
                        break;
                    }
                }
                assert!(
                    KEYWORDS.contains(&word.as_str()),
                    "bare word {word:?} in {sql}"
                );
            }
            c if c.is_whitespace() || matches!(c, ',' | '*' | ':') => {}
            other => panic!("unexpected {other:?} in {sql}"),
        }
    }
    assert_eq!(depth, 0, "unbalanced brackets in {sql}");
}

fuzz_target!(|data: &[u8]| {
    // Lines end with CRLF, LF or a lone CR, as the csv reader ends records.
    let lone_cr = data
        .windows(2)
        .filter(|w| w[0] == b'\r' && w[1] != b'\n')
        .count()
        + usize::from(data.last() == Some(&b'\r'));
    let lines = data.iter().filter(|b| **b == b'\n').count() + lone_cr + 1;
    let parsed = Mapping::parse(Path::new(FILE), data);
    // The same file saved with CRLF (Excel on Windows) is accepted or refused alike, with
    // the same lines: a cell's text only differs inside quotes, and no check depends on it.
    if !data.contains(&b'\r') {
        let crlf: Vec<u8> = data
            .iter()
            .flat_map(|&b| {
                if b == b'\n' {
                    vec![b'\r', b'\n']
                } else {
                    vec![b]
                }
            })
            .collect();
        let lines_of = |r: &Result<Mapping, MappingError>| match r {
            Ok(m) => Ok(m.rows.iter().map(|r| r.line).collect::<Vec<_>>()),
            Err(e) => Err(e.line),
        };
        let other = Mapping::parse(Path::new(FILE), &crlf);
        assert_eq!(
            lines_of(&parsed),
            lines_of(&other),
            "CRLF changed the lines"
        );
    }
    let m = match parsed {
        Ok(m) => m,
        Err(e) => return check_error(&e, lines),
    };
    assert!(m.rows.iter().any(|r| r.target == "User.ExternalId"));
    for (i, r) in m.rows.iter().enumerate() {
        assert!(
            (2..=lines).contains(&r.line),
            "row line {} of {lines}",
            r.line
        );
        assert!(!r.source.is_empty() && r.source.iter().all(|alt| !alt.is_empty()));
        let t = r.target.to_ascii_lowercase();
        assert!(
            m.rows[..i]
                .iter()
                .all(|p| p.target.to_ascii_lowercase() != t),
            "duplicate target {t:?}"
        );
    }

    let real = columns(INT_PEOPLE.split_whitespace().map(str::to_string));
    // Every source exists; a name's length decides whether it is a list.
    let named = columns(
        m.rows
            .iter()
            .flat_map(|r| r.source.iter().flatten())
            .map(|s| {
                if s.len() % 4 == 0 {
                    format!("{s}[]")
                } else {
                    s.clone()
                }
            }),
    );
    for cols in [real, named] {
        match m.compile(&cols) {
            Ok(sql) => check_sql(&sql, &cols, &m),
            Err(e) => {
                check_error(&e, lines);
                assert!(
                    m.rows.iter().any(|r| r.line == e.line),
                    "error off a row: {e}"
                );
            }
        }
    }
});
