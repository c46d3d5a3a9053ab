//! `userPrincipalName` partitions of the users collection, for a walk in parallel.
//!
//! Directory paging is strictly sequential (no `$skip`), so parallelism comes from disjoint
//! `$filter`s. A [`Part`] is a range of UPNs; a list of parts covers **every possible string
//! by construction**, whatever order Graph compares in: the first part is open below
//! (`le 'b1'`), the middle ones are closed (`ge 'bi' and le 'bi+1'`), the last is open above
//! (`ge 'bn'`), and consecutive parts share their bound. Bounds are drawn only from `0-9a-z`,
//! the characters on whose order ordinal and case-insensitive comparisons agree, so the bounds
//! are increasing in Graph's order too and no UPN falls between two parts. A UPN equal to a
//! bound would be in two parts (UPNs contain `@`, bounds never do); the walk deduplicates by
//! `id` anyway (a user renamed across a bound during the walk).
//!
//! Bounds are chosen from a sample: the first page of a filtered query is in Graph's own
//! order (object id), unrelated to the UPN, so its UPNs sample the range evenly.

use serde::{Deserialize, Serialize};

use crate::manifest::Strategy;

/// One partition of the users collection.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Part {
    /// The whole collection (no filter): the serial walk, and the probe.
    All,
    /// UPNs from `lo` (inclusive; `None`: open) to `hi` (inclusive; `None`: open).
    Range {
        lo: Option<String>,
        hi: Option<String>,
    },
    /// UPNs that start with `prefix` (case-insensitive): the fallback when Graph refuses
    /// `ge`/`le` on the UPN.
    StartsWith { prefix: String },
}

/// Characters a UPN may start with (Entra ID: `A-Z a-z 0-9 ' . - _ ! # ^ ~`), as the
/// `startswith` fallback needs them: letters once, as Graph compares case-insensitively.
pub const UPN_FIRST_CHARS: &str = "0123456789abcdefghijklmnopqrstuvwxyz'.-_!#^~";

/// Longest bound drawn from a sample: long enough to split any real skew, short enough to
/// stay an index prefix.
const MAX_BOUND_LEN: usize = 4;

impl Part {
    /// The `$filter` expression, or `None` for the whole collection.
    pub fn filter(&self) -> Option<String> {
        let lit = |s: &str| format!("'{}'", s.replace('\'', "''"));
        match self {
            Part::All | Part::Range { lo: None, hi: None } => None,
            Part::Range {
                lo: None,
                hi: Some(h),
            } => Some(format!("userPrincipalName le {}", lit(h))),
            Part::Range {
                lo: Some(l),
                hi: None,
            } => Some(format!("userPrincipalName ge {}", lit(l))),
            Part::Range {
                lo: Some(l),
                hi: Some(h),
            } => Some(format!(
                "userPrincipalName ge {} and userPrincipalName le {}",
                lit(l),
                lit(h)
            )),
            Part::StartsWith { prefix } => {
                Some(format!("startswith(userPrincipalName,{})", lit(prefix)))
            }
        }
    }

    /// The part in words, for logs and the manifest.
    pub fn label(&self) -> String {
        match self {
            Part::All => "all users".into(),
            Part::Range { lo, hi } => format!(
                "[{} … {}]",
                lo.as_deref().unwrap_or("−∞"),
                hi.as_deref().unwrap_or("+∞")
            ),
            Part::StartsWith { prefix } => format!("{prefix}…"),
        }
    }

    /// Splits this range into about `pieces` ranges at quantiles of `sample` (UPNs seen in
    /// it). The pieces cover exactly this range (its bounds are kept at the ends). Fewer
    /// pieces come back when the sample cannot tell more bounds apart; `None` when it cannot
    /// split at all (or for a part that is not a range).
    pub fn split(&self, sample: &[&str], pieces: usize) -> Option<Vec<Part>> {
        let (lo, hi) = match self {
            Part::All => (None, None),
            Part::Range { lo, hi } => (lo.clone(), hi.clone()),
            Part::StartsWith { .. } => return None,
        };
        let mut keys: Vec<String> = sample.iter().map(|u| u.to_ascii_lowercase()).collect();
        keys.sort();
        let mut bounds: Vec<String> = Vec::new();
        for i in 1..pieces.max(1) {
            let Some(b) = keys.get(i * keys.len() / pieces).and_then(|k| bound_of(k)) else {
                continue;
            };
            let inside = lo.as_ref().is_none_or(|l| b > *l) && hi.as_ref().is_none_or(|h| b < *h);
            if inside && bounds.last().is_none_or(|last| b > *last) {
                bounds.push(b);
            }
        }
        if bounds.is_empty() {
            return None;
        }
        Some(chain(lo, &bounds, hi))
    }
}

/// The ranges `[lo … b1]`, `[b1 … b2]`, …, `[bn … hi]`: consecutive parts share a bound.
pub fn chain(lo: Option<String>, bounds: &[String], hi: Option<String>) -> Vec<Part> {
    let mut edges: Vec<Option<String>> = vec![lo];
    edges.extend(bounds.iter().cloned().map(Some));
    edges.push(hi);
    edges
        .windows(2)
        .map(|w| Part::Range {
            lo: w[0].clone(),
            hi: w[1].clone(),
        })
        .collect()
}

/// The `startswith` partitions: one per character a UPN may start with.
pub fn starts_with_parts() -> Vec<Part> {
    UPN_FIRST_CHARS
        .chars()
        .map(|c| Part::StartsWith {
            prefix: c.to_string(),
        })
        .collect()
}

/// The bound a sample key (a lower-cased UPN) stands for: its first characters from
/// `0-9a-z`, at most [`MAX_BOUND_LEN`] of them; `None` when it starts with another character.
/// The bound is at or below the key, so the key's UPN lands above it.
fn bound_of(key: &str) -> Option<String> {
    let b: String = key
        .chars()
        .take_while(|c| c.is_ascii_digit() || c.is_ascii_lowercase())
        .take(MAX_BOUND_LEN)
        .collect();
    (!b.is_empty()).then_some(b)
}

/// The state of one partition, as the writer has landed it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartState {
    pub part: Part,
    /// The link to continue from; `None` before the first page and after the last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
    #[serde(default)]
    pub pages: u64,
    #[serde(default)]
    pub done: bool,
    /// Replaced by finer ranges before any of its pages landed.
    #[serde(default)]
    pub split: bool,
    #[serde(default)]
    pub depth: u8,
}

impl PartState {
    pub(super) fn new(part: Part, depth: u8) -> PartState {
        PartState {
            part,
            next: None,
            pages: 0,
            done: false,
            split: false,
            depth,
        }
    }
}

/// The walk's plan and progress, saved in the users checkpoint.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WalkState {
    pub strategy: Strategy,
    pub parts: Vec<PartState>,
    /// The probe's `@odata.count`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
    /// Users per range the plan aimed at (a range's `$count` above it splits it again).
    #[serde(default)]
    pub target_users: u64,
    /// Why an earlier strategy was given up, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fallbacks: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A way of comparing UPNs: the text each is compared as.
    type Order = fn(&str) -> String;

    /// Every order Graph might compare UPNs in, as far as the bounds are concerned.
    fn orders() -> Vec<(&'static str, Order)> {
        vec![
            ("ordinal", |s| s.to_string()),
            ("lower", |s| s.to_ascii_lowercase()),
            ("upper", |s| s.to_ascii_uppercase()),
        ]
    }

    fn contains(p: &Part, upn: &str, key: fn(&str) -> String) -> bool {
        let u = key(upn);
        match p {
            Part::All => true,
            Part::Range { lo, hi } => {
                lo.as_ref().is_none_or(|l| u >= key(l)) && hi.as_ref().is_none_or(|h| u <= key(h))
            }
            Part::StartsWith { prefix } => u.starts_with(&key(prefix)),
        }
    }

    fn upns() -> Vec<String> {
        let mut v = Vec::new();
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let chars: Vec<char> = "AZaz09'.-_!#^~mMjJ".chars().collect();
        for i in 0..5000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let len = 1 + (x % 6) as usize;
            let local: String = (0..len)
                .map(|k| chars[((x >> (k * 5)) % chars.len() as u64) as usize])
                .collect();
            v.push(format!("{local}{i}@contoso.com"));
            v.push(format!("{local}_ext.com#EXT#@contoso.onmicrosoft.com"));
        }
        v
    }

    #[test]
    fn ranges_cover_every_upn_in_every_order() {
        let sample: Vec<String> = upns().into_iter().step_by(7).take(999).collect();
        let refs: Vec<&str> = sample.iter().map(String::as_str).collect();
        let parts = Part::All.split(&refs, 20).unwrap();
        assert!(parts.len() >= 10, "{parts:?}");
        for (name, key) in orders() {
            for u in upns() {
                let n = parts.iter().filter(|p| contains(p, &u, key)).count();
                assert!(n >= 1, "{u} is in no part under {name}: {parts:?}");
                assert!(n <= 2, "{u} is in {n} parts under {name}");
            }
        }
    }

    #[test]
    fn a_split_range_keeps_its_bounds_and_splits_inside_them() {
        let r = Part::Range {
            lo: Some("m".into()),
            hi: Some("n".into()),
        };
        let sample: Vec<String> = (0..999).map(|i| format!("M{}x{i}@c.com", i % 26)).collect();
        let refs: Vec<&str> = sample.iter().map(String::as_str).collect();
        let parts = r.split(&refs, 8).unwrap();
        assert!(parts.len() >= 4, "{parts:?}");
        match (parts.first(), parts.last()) {
            (Some(Part::Range { lo, .. }), Some(Part::Range { hi, .. })) => {
                assert_eq!((lo.as_deref(), hi.as_deref()), (Some("m"), Some("n")));
            }
            other => panic!("{other:?}"),
        }
        for w in parts.windows(2) {
            match (&w[0], &w[1]) {
                (Part::Range { hi: Some(a), .. }, Part::Range { lo: Some(b), .. }) => {
                    assert_eq!(a, b);
                    assert!(
                        a.chars()
                            .all(|c| c.is_ascii_digit() || c.is_ascii_lowercase())
                    );
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn a_sample_without_usable_bounds_does_not_split() {
        let sample = ["_a@x", "_b@x", "'c@x"];
        assert_eq!(Part::All.split(&sample, 4), None);
        assert_eq!(Part::All.split(&[], 4), None);
    }

    #[test]
    fn filters_are_odata() {
        let r = chain(None, &["b".into(), "c".into()], None);
        let f: Vec<_> = r.iter().map(|p| p.filter().unwrap()).collect();
        assert_eq!(
            f,
            [
                "userPrincipalName le 'b'",
                "userPrincipalName ge 'b' and userPrincipalName le 'c'",
                "userPrincipalName ge 'c'",
            ]
        );
        assert_eq!(
            Part::StartsWith { prefix: "'".into() }.filter().unwrap(),
            "startswith(userPrincipalName,'''')"
        );
        assert_eq!(Part::All.filter(), None);
    }

    #[test]
    fn starts_with_parts_cover_every_allowed_first_character() {
        let parts = starts_with_parts();
        for c in "AZaz09'.-_!#^~".chars() {
            let u = format!("{c}x@contoso.com");
            let n = parts
                .iter()
                .filter(|p| contains(p, &u, |s| s.to_ascii_lowercase()))
                .count();
            assert_eq!(n, 1, "{u}");
        }
    }
}
