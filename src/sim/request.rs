//! Lenient, panic-free parsing of query strings and form bodies.
//!
//! Anything a client sends must end in a JSON error at worst, never a panic, so decoding
//! reports failures instead of assuming well-formed input.

/// Decodes `%XX` escapes (and `+` as space when `plus_is_space`). `None` if the result is
/// not UTF-8 or an escape is malformed.
pub fn percent_decode(s: &str, plus_is_space: bool) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes.get(i + 1..i + 3)?;
                let hex = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// Splits `a=1&b=2` into decoded pairs. A malformed pair is an error naming it.
pub fn parse_pairs(s: &str, plus_is_space: bool) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for part in s.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = part.split_once('=').unwrap_or((part, ""));
        let key = percent_decode(k, plus_is_space)
            .ok_or_else(|| format!("malformed parameter '{part}'"))?;
        let value = percent_decode(v, plus_is_space)
            .ok_or_else(|| format!("malformed parameter '{part}'"))?;
        out.push((key, value));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_and_rejects() {
        assert_eq!(percent_decode("a%20b+c", true).as_deref(), Some("a b c"));
        assert_eq!(percent_decode("a+b", false).as_deref(), Some("a+b"));
        assert_eq!(percent_decode("%E2%9C%93", false).as_deref(), Some("✓"));
        assert_eq!(percent_decode("%zz", false), None);
        assert_eq!(percent_decode("%4", false), None);
        assert_eq!(percent_decode("%ff", false), None);
        let pairs = parse_pairs("$select=id,mail&$top=5&&flag", false).unwrap();
        assert_eq!(pairs.len(), 3);
        assert_eq!(pairs[2], ("flag".to_string(), String::new()));
        assert!(parse_pairs("a=%", false).unwrap_err().contains("a=%"));
    }
}
