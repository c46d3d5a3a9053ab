//! SQL text built by Rust: the only place names and values are quoted into it.

/// `"name"` with embedded quotes doubled: safe for any text.
pub fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// `'text'` with embedded quotes doubled.
pub fn quote_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}
