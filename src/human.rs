//! Text for people: numbers as they read them in summaries and reports, and the "did you
//! mean" suggestion for a misspelt name (config keys, mapping columns).

/// Digits grouped by thousands: 1234567 → "1,234,567".
pub fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The candidate closest to `name` (case and `_` ignored), if reasonably close.
pub fn nearest<'a>(name: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let norm = |s: &str| s.to_ascii_lowercase().replace('_', "");
    let n = norm(name);
    candidates
        .map(|c| (strsim::levenshtein(&n, &norm(c)), c))
        .filter(|(d, c)| *d <= (c.len().max(name.len()) / 3).max(2))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}
