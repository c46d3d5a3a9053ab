//! Concealed user names in usage reports (on by default since 2021-09-01). Concealed rows
//! carry 32-hex hashes, `<PII:…>` tokens or `(Unknown)` instead of UPNs; they can never be
//! joined to users, and the admin must be told how to switch the setting off.

use serde::{Deserialize, Serialize};

/// The exact admin-center steps, quoted in warnings and in `check`.
pub const FIX: &str = "In the Microsoft 365 admin center go to Settings > Org settings > Services > Reports, clear \"Display concealed user, group, and site names in all reports\", save, wait a few minutes, and run again.";

/// True for a value that hides a user name: a 32-hex hash (no `@`) or a `<PII:` token.
pub fn is_concealed_name(value: &str) -> bool {
    let v = value.trim();
    (v.len() == 32 && v.bytes().all(|b| b.is_ascii_hexdigit())) || v.starts_with("<PII:")
}

/// `(Unknown)`: a user the report could not name (new users, or concealment).
pub fn is_unknown_name(value: &str) -> bool {
    value.trim().eq_ignore_ascii_case("(Unknown)")
}

/// Counts of user-name cells in one report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tally {
    pub rows: u64,
    pub concealed: u64,
    pub unknown: u64,
    pub empty: u64,
}

impl Tally {
    pub fn add(&mut self, name: Option<&str>) {
        self.rows += 1;
        match name.map(str::trim) {
            None | Some("") => self.empty += 1,
            Some(v) if is_concealed_name(v) => self.concealed += 1,
            Some(v) if is_unknown_name(v) => self.unknown += 1,
            Some(_) => {}
        }
    }

    /// Concealed when most named rows hide the name (hashes, PII tokens or `(Unknown)`),
    /// and at least one is a hash/token or nearly all are `(Unknown)`.
    pub fn is_concealed(&self) -> bool {
        let named = self.rows - self.empty;
        let hidden = self.concealed + self.unknown;
        named > 0 && hidden * 2 > named && (self.concealed > 0 || self.unknown * 10 >= named * 9)
    }
}

/// What `/admin/reportSettings` said: `Unknown` when the app may not read it (403), which
/// is the normal case (ReportSettings.Read.All is not in the connector's permission set).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Setting {
    On,
    Off,
    Unknown,
}

/// Parses both the documented (`{"value":{...}}`) and the real flat shape.
pub fn parse_report_settings(body: &[u8]) -> Setting {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) else {
        return Setting::Unknown;
    };
    let flag = v
        .get("displayConcealedNames")
        .or_else(|| v.get("value").and_then(|x| x.get("displayConcealedNames")));
    match flag.and_then(|f| f.as_bool()) {
        Some(true) => Setting::On,
        Some(false) => Setting::Off,
        None => Setting::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_hashes_tokens_and_unknown() {
        assert!(is_concealed_name("77E5979DD60BA6EAA53E814DBEEEFA5F"));
        assert!(is_concealed_name("<PII:H105(se/njcX9qwMG=)>@domain.com"));
        assert!(!is_concealed_name("adele@contoso.com"));
        assert!(!is_concealed_name("77E5979DD60BA6EAA53E814DBEEEFA5"));
        assert!(is_unknown_name(" (Unknown) "));
    }

    #[test]
    fn verdicts() {
        let mut t = Tally::default();
        for _ in 0..90 {
            t.add(Some("22C5B5A0E3BB38EA4BB5B8CCEEEEA51D"));
        }
        for _ in 0..10 {
            t.add(Some("(Unknown)"));
        }
        assert!(t.is_concealed());
        let mut t = Tally::default();
        for _ in 0..98 {
            t.add(Some("a@contoso.com"));
        }
        t.add(Some("(Unknown)"));
        t.add(None);
        assert!(!t.is_concealed());
        assert!(!Tally::default().is_concealed());
    }

    #[test]
    fn settings_shapes() {
        assert_eq!(
            parse_report_settings(br#"{"displayConcealedNames":true}"#),
            Setting::On
        );
        assert_eq!(
            parse_report_settings(br##"{"value":{"@odata.type":"#microsoft.graph.adminReportSettings","displayConcealedNames":false}}"##),
            Setting::Off
        );
        assert_eq!(parse_report_settings(b"<html>"), Setting::Unknown);
    }
}
