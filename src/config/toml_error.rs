//! What the toml crate rejects (bad syntax, unknown or missing keys, wrong types), turned
//! into a [`ConfigError`] that names the key and says what to do.
//!
//! Built from the toml error's message and span only, never from its Display: that quotes
//! the offending source line, which could hold a secret. For the same reason a wrong type
//! is reported by its kind ("a number"), not its value. Suggestions come from the template:
//! the section a misplaced key belongs in, the nearest valid name, an example line.

use std::path::Path;

use super::ConfigError;
use super::template::{
    is_bare_key, is_template_section, table_header, template_line, template_section_of,
};
use super::validate::Ctx;

const TEMPLATE_HINT: &str = "`m365-connector init` prints every valid key with comments";

impl Ctx<'_> {
    /// Turns a TOML/serde error into ours (see the module comment for what it never shows).
    pub(super) fn toml_error(&self, e: &toml::de::Error) -> ConfigError {
        let msg = e.message().trim().replace('\n', "; ");
        let at = Site::new(self.text, e.span().map(|s| self.line_of(s)));
        let (key, message) = if let Some(field) = backticked(&msg, "unknown field `") {
            unknown_field(&at, &field, &msg)
        } else if let Some(field) = backticked(&msg, "missing field `") {
            // The span of a missing key is its table, i.e. the section header.
            let section = at.section.as_deref();
            match section.filter(|_| !is_template_section(&field)) {
                Some(sec) => missing_key(sec, &field),
                None => return missing_section(self.path, &field),
            }
        } else if let Some(rest) = msg.strip_prefix("invalid type: ") {
            let found = rest.split([',', ' ']).next().unwrap_or("");
            let expected = msg.split(", expected ").nth(1).unwrap_or("another type");
            wrong_type(&at, found, expected)
        } else {
            syntax_error(&at, &msg)
        };
        ConfigError {
            file: self.path.to_path_buf(),
            line: at.line,
            key,
            message,
        }
    }
}

/// Where in the user's file a toml error points: its line, that line's section and key.
struct Site<'a> {
    text: &'a str,
    line: Option<usize>,
    /// The section the line belongs to: the nearest `[section]` header at or above it.
    section: Option<String>,
    /// The `key` of a `key = value` line (a bare key; not on a header line).
    key: Option<String>,
}

impl<'a> Site<'a> {
    fn new(text: &'a str, line: Option<usize>) -> Site<'a> {
        let text_of = |l: usize| text.lines().nth(l.checked_sub(1)?);
        let section = line.and_then(|l| {
            (1..=l)
                .rev()
                .filter_map(|n| text_of(n).and_then(table_header))
                .next()
        });
        let key = line
            .and_then(text_of)
            .filter(|l| table_header(l).is_none())
            .and_then(|l| l.split_once('='))
            .map(|(k, _)| k.trim().trim_matches('"').to_string())
            .filter(|k| is_bare_key(k));
        Site {
            text,
            line,
            section,
            key,
        }
    }

    /// The `[section]` header on the error's line, if that line is one.
    fn header(&self) -> Option<String> {
        let l = self.line?.checked_sub(1)?;
        self.text.lines().nth(l).and_then(table_header)
    }

    /// `k` qualified by the line's section: `section.k`.
    fn qualified(&self, k: &str) -> String {
        match &self.section {
            Some(s) => format!("{s}.{k}"),
            None => k.to_string(),
        }
    }

    /// The line's key, qualified, for errors about its value; `None` off a `key = value` line.
    fn qualified_key(&self) -> Option<String> {
        self.key.as_deref().map(|k| self.qualified(k))
    }
}

/// `field` is not a key of its section (or not a section): says where it belongs, or the
/// nearest valid name and the valid ones.
fn unknown_field(at: &Site, field: &str, msg: &str) -> (String, String) {
    let expected = backticked_all(msg.split_once("expected").map_or("", |x| x.1));
    // A top-level name is a section: an unknown `[table]`.
    let top_level =
        at.header().as_deref() == Some(field) || expected.iter().any(|e| is_template_section(e));
    let is_header = at.header().is_some();
    let message = match at.section.as_ref().filter(|_| !top_level) {
        None if !is_header && template_section_of(field).is_some() => {
            let home = template_section_of(field).unwrap_or_default();
            format!(
                "`{field}` is outside any section: it belongs in [{home}]; move it under the [{home}] header"
            )
        }
        None => unknown_section(field, &expected),
        Some(sec) => match template_section_of(field).filter(|t| t != sec) {
            Some(home) => format!(
                "`{field}` belongs in [{home}], not in [{sec}]: move the line under [{home}]"
            ),
            None => unknown_key(sec, field, &expected),
        },
    };
    let key = if top_level {
        field.to_string()
    } else {
        at.qualified(field)
    };
    (key, message)
}

/// `[field]` is no section: the nearest one, and the list.
fn unknown_section(field: &str, sections: &[String]) -> String {
    let hint = crate::human::nearest(field, sections.iter().map(String::as_str))
        .map(|n| format!("did you mean [{n}]? "))
        .unwrap_or_default();
    format!(
        "unknown section [{field}]: {hint}the sections are {}; {TEMPLATE_HINT}",
        sections
            .iter()
            .map(|e| format!("[{e}]"))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// `field` is no key of `[sec]` nor of any other section: the nearest key, and the list.
fn unknown_key(sec: &str, field: &str, keys: &[String]) -> String {
    let hint = crate::human::nearest(field, keys.iter().map(String::as_str))
        .map(|n| format!("did you mean `{n}`? "))
        .unwrap_or_default();
    format!(
        "unknown key in [{sec}]: {hint}[{sec}] takes {}; remove or rename it ({TEMPLATE_HINT})",
        keys.join(", ")
    )
}

/// A required key is missing from `[sec]`: the template's line for it as an example.
fn missing_key(sec: &str, field: &str) -> (String, String) {
    let example = template_line(sec, field)
        .map(|l| format!(", e.g. {l}"))
        .unwrap_or_default();
    (
        format!("{sec}.{field}"),
        format!(
            "missing key in [{sec}]: add it{example} (`m365-connector init` prints a template)"
        ),
    )
}

/// A required section is missing: an error about the file as a whole (no line).
fn missing_section(path: &Path, field: &str) -> ConfigError {
    ConfigError {
        file: path.to_path_buf(),
        line: None,
        key: field.to_string(),
        message: format!(
            "the [{field}] section is missing: add it (`m365-connector init` prints a template with every section)"
        ),
    }
}

/// A value of the wrong type, in words an admin knows. serde quotes the value it saw; only
/// its kind is shown.
fn wrong_type(at: &Site, found: &str, expected: &str) -> (String, String) {
    let want = match expected {
        e if e.starts_with('i') || e.starts_with('u') || e.contains("integer") => {
            "a whole number without quotes, e.g. 30"
        }
        e if e.contains("bool") => "true or false, without quotes",
        e if e.contains("string") => "text in double quotes",
        e => e,
    };
    let found = match found {
        "string" => "text in quotes",
        "integer" => "a number",
        "floating" => "a decimal number",
        "boolean" => "true/false",
        "map" => "a table",
        "sequence" => "an array",
        other => other,
    };
    (
        at.qualified_key().unwrap_or_else(|| "(file)".into()),
        format!("wrong type: expected {want}, found {found}"),
    )
}

/// Anything else: not valid TOML. The toml crate's message, with the likely fix.
fn syntax_error(at: &Site, msg: &str) -> (String, String) {
    let hint = if msg.contains("duplicate key") {
        "keep one of them"
    } else if msg.contains("invalid basic string") {
        "close the string with \" on the same line; control characters are not allowed in strings"
    } else if at.text.trim_start().starts_with('{') {
        "this looks like JSON: connector files are TOML; `m365-connector init` prints a template"
    } else {
        "the file must be valid TOML (https://toml.io)"
    };
    let key = at
        .qualified_key()
        .or_else(|| at.header())
        .unwrap_or_else(|| "(file)".into());
    (key, format!("{msg}: {hint}"))
}

/// The text between the first `prefix` and the next backtick.
fn backticked(msg: &str, prefix: &str) -> Option<String> {
    let rest = &msg[msg.find(prefix)? + prefix.len()..];
    Some(rest[..rest.find('`')?].to_string())
}

/// Every `name` between backticks, in order.
fn backticked_all(s: &str) -> Vec<String> {
    s.split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{GOOD, parse};

    #[test]
    fn unknown_key_names_line_and_key() {
        let e = parse(&format!("{GOOD}colour = \"blue\"\n")).unwrap_err();
        assert_eq!(e.line, Some(8));
        assert_eq!(e.key, "tenant.colour");
        assert!(e.message.starts_with("unknown key in [tenant]: "), "{e}");
        assert!(
            e.to_string()
                .starts_with("/etc/m365/contoso.toml:8: tenant.colour:"),
            "{e}"
        );
        // A typo gets a suggestion, a key in the wrong section its home, a table its name.
        let e = parse(&format!("{GOOD}client_secret_enb = \"X\"\n")).unwrap_err();
        assert!(
            e.message.contains("did you mean `client_secret_env`?"),
            "{e}"
        );
        let e = parse(&format!("{GOOD}[pipeline]\ndate_filter_days = 3\n")).unwrap_err();
        assert_eq!(
            (e.key.as_str(), e.line),
            ("pipeline.date_filter_days", Some(9))
        );
        assert!(e.message.contains("belongs in [filter]"), "{e}");
        let e = parse(&format!("{GOOD}[filters]\ndate_filter_days = 3\n")).unwrap_err();
        assert_eq!((e.key.as_str(), e.line), ("filters", Some(8)));
        assert!(e.message.contains("did you mean [filter]?"), "{e}");
        let e = parse(&format!("date_filter_days = 3\n{GOOD}")).unwrap_err();
        assert!(e.message.contains("outside any section"), "{e}");
    }

    #[test]
    fn wrong_type_does_not_echo_value() {
        let e = parse(&GOOD.replace("name = \"Contoso\"", "name = 42")).unwrap_err();
        assert_eq!((e.key.as_str(), e.line), ("connector.name", Some(3)));
        assert_eq!(
            e.message,
            "wrong type: expected text in double quotes, found a number"
        );
        let e = parse(&format!("{GOOD}[filter]\ndate_filter_days = \"s3cr3t\"\n")).unwrap_err();
        assert!(e.message.contains("a whole number without quotes"), "{e}");
        assert!(!e.to_string().contains("s3cr3t"), "{e}");
    }

    #[test]
    fn missing_section_and_key_are_named() {
        let e = parse("[connector]\nname = \"x\"\n").unwrap_err();
        assert_eq!((e.key.as_str(), e.line), ("tenant", None));
        assert!(e.message.contains("the [tenant] section is missing"), "{e}");
        let e = parse(&GOOD.replace("client_id = \"5d7e9f1a-2b3c-4d5e-8f9a-0b1c2d3e4f5a\"\n", ""))
            .unwrap_err();
        assert_eq!((e.key.as_str(), e.line), ("tenant.client_id", Some(4)));
        assert!(e.message.contains("e.g. client_id = \""), "{e}");
    }
}
