//! `$filter` on `userPrincipalName` for `GET /users`, the part of Graph's grammar a
//! partitioned walk needs: `userPrincipalName ge 'x'`, `userPrincipalName le 'x'`,
//! `startswith(userPrincipalName,'x')`, and conjunctions of them with `and`.
//!
//! Names are case-insensitive, literals are OData strings (`''` is a quote), whitespace is
//! free. Comparisons ignore ASCII case as Graph's do: the lowercased UPN bytes against the
//! lowercased literal, in byte order. Results keep the collection's order (tenant index,
//! like Graph's object-id order), never UPN order.
//!
//! A million-user range walk scans every index, so the decision must be cheap: [`UpnKeys`]
//! holds each user's first four lowercased UPN bytes as a big-endian `u32` (4 MB per million
//! users), which decides any comparison with a literal of up to four bytes; only longer
//! literals with an equal prefix generate the full UPN.
//!
//! The parser reads untrusted input: it works on bytes, slices only at ASCII delimiters,
//! bounds the number of clauses and the literal length, and never panics.

use std::sync::{Arc, RwLock};

use hyper::StatusCode;

use super::query_error::QueryError;
use super::tenant::Tenant;

/// Most clauses a filter may hold, and the longest literal (bytes): keeps skiptokens short.
pub const MAX_CLAUSES: usize = 8;
pub const MAX_LITERAL: usize = 256;

/// One condition on the lowercased UPN. Literals are stored lowercased.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Clause {
    Ge(Vec<u8>),
    Le(Vec<u8>),
    StartsWith(Vec<u8>),
}

/// A conjunction of clauses (at least one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter(pub Vec<Clause>);

/// What a server refuses (`SimOptions::refuse_range_filter` / `refuse_startswith`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Refusals {
    pub range: bool,
    pub startswith: bool,
}

fn unsupported(message: impl Into<String>) -> QueryError {
    QueryError {
        status: StatusCode::BAD_REQUEST,
        code: "Request_UnsupportedQuery",
        message: message.into(),
    }
}

fn invalid(message: impl Into<String>) -> QueryError {
    QueryError {
        status: StatusCode::BAD_REQUEST,
        code: "BadRequest",
        message: message.into(),
    }
}

/// Graph's refusal of a clause it does not serve on userPrincipalName.
pub const REFUSED_CLAUSE: &str = "Unsupported or invalid query filter clause specified for property 'userPrincipalName' of resource 'User'.";

const SUPPORTED: &str = "The Graph simulator supports $filter on userPrincipalName only: ge, le, startswith(userPrincipalName,'x') and 'and' of those.";

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Ident(Vec<u8>),
    Str(Vec<u8>),
    Open,
    Close,
    Comma,
    Other(u8),
}

fn tokens(s: &[u8]) -> Result<Vec<Tok>, QueryError> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < s.len() {
        let b = s[i];
        match b {
            b' ' | b'\t' | b'\r' | b'\n' => i += 1,
            b'(' | b')' | b',' => {
                out.push(match b {
                    b'(' => Tok::Open,
                    b')' => Tok::Close,
                    _ => Tok::Comma,
                });
                i += 1;
            }
            b'\'' => {
                let mut lit = Vec::new();
                i += 1;
                loop {
                    match s.get(i) {
                        None => return Err(invalid("Unterminated string literal in $filter.")),
                        Some(b'\'') if s.get(i + 1) == Some(&b'\'') => {
                            lit.push(b'\'');
                            i += 2;
                        }
                        Some(b'\'') => {
                            i += 1;
                            break;
                        }
                        Some(c) => {
                            lit.push(*c);
                            i += 1;
                        }
                    }
                    if lit.len() > MAX_LITERAL {
                        return Err(invalid(format!(
                            "A $filter string literal is longer than {MAX_LITERAL} bytes."
                        )));
                    }
                }
                out.push(Tok::Str(lit));
            }
            c if c.is_ascii_alphabetic() || c == b'_' || c == b'$' => {
                let start = i;
                while s.get(i).is_some_and(|c| {
                    c.is_ascii_alphanumeric()
                        || *c == b'_'
                        || *c == b'$'
                        || *c == b'.'
                        || *c == b'/'
                }) {
                    i += 1;
                }
                out.push(Tok::Ident(s[start..i].to_vec()));
            }
            c => {
                out.push(Tok::Other(c));
                i += 1;
            }
        }
        if out.len() > MAX_CLAUSES * 8 {
            return Err(unsupported(format!(
                "$filter is too long: at most {MAX_CLAUSES} clauses joined with 'and'."
            )));
        }
    }
    Ok(out)
}

fn is(tok: Option<&Tok>, word: &str) -> bool {
    matches!(tok, Some(Tok::Ident(w)) if w.eq_ignore_ascii_case(word.as_bytes()))
}

fn show(tok: Option<&Tok>) -> String {
    match tok {
        None => "the end".to_string(),
        Some(Tok::Ident(w)) => format!("'{}'", String::from_utf8_lossy(w)),
        Some(Tok::Str(_)) => "a string literal".to_string(),
        Some(Tok::Open) => "'('".to_string(),
        Some(Tok::Close) => "')'".to_string(),
        Some(Tok::Comma) => "','".to_string(),
        Some(Tok::Other(c)) => format!("'{}'", char::from(*c).escape_default()),
    }
}

fn property(tok: Option<&Tok>) -> Result<(), QueryError> {
    match tok {
        Some(Tok::Ident(w)) if w.eq_ignore_ascii_case(b"userPrincipalName") => Ok(()),
        Some(Tok::Ident(w)) => Err(unsupported(format!(
            "Filtering on '{}' is not implemented. {SUPPORTED}",
            String::from_utf8_lossy(w)
        ))),
        other => Err(invalid(format!(
            "Syntax error in $filter: expected a property name, found {}.",
            show(other)
        ))),
    }
}

fn literal(tok: Option<&Tok>) -> Result<Vec<u8>, QueryError> {
    match tok {
        Some(Tok::Str(s)) => Ok(s.to_ascii_lowercase()),
        other => Err(invalid(format!(
            "Syntax error in $filter: expected a string literal such as 'a', found {}.",
            show(other)
        ))),
    }
}

/// Parses a `$filter` value. Refused clause kinds answer Graph's 400.
pub fn parse(s: &str, refuse: Refusals) -> Result<Filter, QueryError> {
    let toks = tokens(s.as_bytes())?;
    let mut clauses = Vec::new();
    let mut at = 0;
    loop {
        let t = |k: usize| toks.get(at + k);
        let clause = if is(t(0), "startswith") && t(1) == Some(&Tok::Open) {
            property(t(2))?;
            if t(3) != Some(&Tok::Comma) {
                return Err(invalid(format!(
                    "Syntax error in $filter: expected ',' after the property, found {}.",
                    show(t(3))
                )));
            }
            let lit = literal(t(4))?;
            if t(5) != Some(&Tok::Close) {
                return Err(invalid(format!(
                    "Syntax error in $filter: expected ')', found {}.",
                    show(t(5))
                )));
            }
            if refuse.startswith {
                return Err(unsupported(REFUSED_CLAUSE));
            }
            at += 6;
            Clause::StartsWith(lit)
        } else if matches!(t(0), Some(Tok::Ident(_))) && t(1) == Some(&Tok::Open) {
            return Err(unsupported(format!(
                "The function {} is not implemented. {SUPPORTED}",
                show(t(0))
            )));
        } else {
            property(t(0))?;
            let ge = is(t(1), "ge");
            if !ge && !is(t(1), "le") {
                return Err(unsupported(format!(
                    "The operator {} is not implemented. {SUPPORTED}",
                    show(t(1))
                )));
            }
            let lit = literal(t(2))?;
            if refuse.range {
                return Err(unsupported(REFUSED_CLAUSE));
            }
            at += 3;
            if ge { Clause::Ge(lit) } else { Clause::Le(lit) }
        };
        clauses.push(clause);
        if clauses.len() > MAX_CLAUSES {
            return Err(unsupported(format!(
                "$filter is too long: at most {MAX_CLAUSES} clauses joined with 'and'."
            )));
        }
        match toks.get(at) {
            None => break,
            Some(t) if is(Some(t), "and") => at += 1,
            Some(t) if is(Some(t), "or") || is(Some(t), "not") => {
                return Err(unsupported(format!(
                    "'{}' is not implemented. {SUPPORTED}",
                    show(Some(t)).trim_matches('\'')
                )));
            }
            other => {
                return Err(invalid(format!(
                    "Syntax error in $filter: expected 'and' or the end, found {}.",
                    show(other)
                )));
            }
        }
    }
    Ok(Filter(clauses))
}

impl Filter {
    /// Whether a (lowercased) UPN matches: exact, for the fallback and for tests.
    pub fn matches_upn(&self, lower: &[u8]) -> bool {
        self.0.iter().all(|c| match c {
            Clause::Ge(l) => lower >= l.as_slice(),
            Clause::Le(l) => lower <= l.as_slice(),
            Clause::StartsWith(l) => lower.starts_with(l),
        })
    }

    /// Appends the filter to a skiptoken: clause count, then (kind, length u16, bytes).
    pub fn encode(&self, b: &mut Vec<u8>) {
        b.push(self.0.len() as u8);
        for c in &self.0 {
            let (kind, lit) = match c {
                Clause::Ge(l) => (0u8, l),
                Clause::Le(l) => (1, l),
                Clause::StartsWith(l) => (2, l),
            };
            b.push(kind);
            b.extend_from_slice(&(lit.len() as u16).to_le_bytes());
            b.extend_from_slice(lit);
        }
    }

    /// Reads what [`Filter::encode`] wrote; `None` unless `b` holds exactly one filter.
    pub fn decode(b: &[u8]) -> Option<Filter> {
        let n = *b.first()? as usize;
        if n == 0 || n > MAX_CLAUSES {
            return None;
        }
        let mut at = 1;
        let mut clauses = Vec::with_capacity(n);
        for _ in 0..n {
            let kind = *b.get(at)?;
            let len = u16::from_le_bytes(b.get(at + 1..at + 3)?.try_into().ok()?) as usize;
            if len > MAX_LITERAL {
                return None;
            }
            let lit = b.get(at + 3..at + 3 + len)?.to_vec();
            at += 3 + len;
            clauses.push(match kind {
                0 => Clause::Ge(lit),
                1 => Clause::Le(lit),
                2 => Clause::StartsWith(lit),
                _ => return None,
            });
        }
        (at == b.len()).then_some(Filter(clauses))
    }
}

/// The key of a UPN: its first four lowercased bytes, zero padded, big-endian (so `u32`
/// order is byte order).
pub fn key_of(upn: &[u8]) -> u32 {
    let mut k = [0u8; 4];
    for (d, s) in k.iter_mut().zip(upn) {
        *d = s.to_ascii_lowercase();
    }
    u32::from_be_bytes(k)
}

/// A clause as the key sees it: `prefix` is the literal's first `n` (≤ 4) bytes packed like
/// a key, `shift` drops the key's other bytes, `short` says the literal has at most four
/// bytes, and `at_sign` that it contains '@' (a UPN has exactly one, so without one it never
/// equals the literal).
struct KeyClause {
    prefix: u32,
    shift: u32,
    short: bool,
    at_sign: bool,
    has_nul: bool,
}

impl KeyClause {
    fn new(lit: &[u8]) -> KeyClause {
        let n = lit.len().min(4);
        let mut k = [0u8; 4];
        k[..n].copy_from_slice(&lit[..n]);
        KeyClause {
            prefix: u32::from_be_bytes(k)
                .checked_shr(8 * (4 - n) as u32)
                .unwrap_or(0),
            shift: 8 * (4 - n) as u32,
            short: lit.len() <= 4,
            at_sign: lit.contains(&b'@'),
            has_nul: lit.contains(&0),
        }
    }
}

/// A filter ready to test user indexes: decided from keys where possible.
pub struct Matcher<'a> {
    filter: &'a Filter,
    keys: Arc<Vec<u32>>,
    clauses: Vec<KeyClause>,
    tenant: &'a Tenant,
}

impl<'a> Matcher<'a> {
    pub fn new(filter: &'a Filter, keys: Arc<Vec<u32>>, tenant: &'a Tenant) -> Matcher<'a> {
        let clauses = filter
            .0
            .iter()
            .map(|c| match c {
                Clause::Ge(l) | Clause::Le(l) | Clause::StartsWith(l) => KeyClause::new(l),
            })
            .collect();
        Matcher {
            filter,
            keys,
            clauses,
            tenant,
        }
    }

    /// Whether user `i`'s UPN matches (existence at an epoch is the caller's business).
    pub fn matches(&self, i: u64) -> bool {
        let key = usize::try_from(i)
            .ok()
            .and_then(|i| self.keys.get(i).copied());
        let Some(key) = key else {
            return self.exact(i);
        };
        // A zero byte in the key is padding: the UPN is shorter than four bytes.
        let padded = key.to_be_bytes().contains(&0);
        let mut undecided = false;
        for (c, kc) in self.filter.0.iter().zip(&self.clauses) {
            let head = key.checked_shr(kc.shift).unwrap_or(0);
            let decided = if head != kc.prefix {
                // The UPN differs from the literal within the literal's first four bytes,
                // so byte order there decides (a padding zero sorts first, as a shorter
                // string does).
                let less = head < kc.prefix;
                Some(match c {
                    Clause::Ge(_) => !less,
                    Clause::Le(_) => less,
                    Clause::StartsWith(_) => false,
                })
            } else if kc.short && !padded && !kc.has_nul {
                // The UPN starts with the whole literal; it is longer than it unless equal,
                // and equal is impossible without an '@' in the literal.
                match c {
                    Clause::StartsWith(_) | Clause::Ge(_) => Some(true),
                    Clause::Le(_) if !kc.at_sign => Some(false),
                    Clause::Le(_) => None,
                }
            } else {
                None
            };
            match decided {
                Some(false) => return false,
                Some(true) => {}
                None => undecided = true,
            }
        }
        !undecided || self.exact(i)
    }

    fn exact(&self, i: u64) -> bool {
        let upn = self.tenant.upn_at(i).into_bytes().to_ascii_lowercase();
        self.filter.matches_upn(&upn)
    }
}

/// Every user's [`key_of`] its UPN, for indexes below the largest bound asked so far; built
/// on first use and extended when joiners raise the bound (a UPN depends on the index only).
#[derive(Default)]
pub struct UpnKeys {
    keys: RwLock<Arc<Vec<u32>>>,
}

impl UpnKeys {
    /// Keys for at least `0..bound` of `tenant`.
    pub fn get(&self, tenant: &Tenant, bound: u64) -> Arc<Vec<u32>> {
        let want = usize::try_from(bound).unwrap_or(usize::MAX);
        {
            let k = self.keys.read().unwrap_or_else(|e| e.into_inner());
            if k.len() >= want {
                return k.clone();
            }
        }
        let mut k = self.keys.write().unwrap_or_else(|e| e.into_inner());
        if k.len() < want {
            let mut v = Vec::with_capacity(want);
            v.extend_from_slice(&k);
            for i in v.len()..want {
                v.push(key_of(tenant.upn_at(i as u64).as_bytes()));
            }
            *k = Arc::new(v);
        }
        k.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(s: &str) -> Result<Filter, QueryError> {
        parse(s, Refusals::default())
    }

    #[test]
    fn parses_the_partition_grammar() {
        assert_eq!(
            f("userPrincipalName ge 'B' and USERPRINCIPALNAME le 'c'").unwrap(),
            Filter(vec![Clause::Ge(b"b".to_vec()), Clause::Le(b"c".to_vec())])
        );
        assert_eq!(
            f("  StartsWith( userPrincipalName ,'O''Br' )  ").unwrap(),
            Filter(vec![Clause::StartsWith(b"o'br".to_vec())])
        );
        assert_eq!(
            f("startswith(userPrincipalName,'')").unwrap(),
            Filter(vec![Clause::StartsWith(Vec::new())])
        );
        for bad in [
            "",
            "userPrincipalName",
            "userPrincipalName eq 'a'",
            "userPrincipalName gt 'a'",
            "displayName ge 'a'",
            "userPrincipalName ge 'a' or userPrincipalName le 'b'",
            "userPrincipalName ge 'a",
            "userPrincipalName ge a",
            "endswith(userPrincipalName,'a')",
            "startswith(userPrincipalName 'a')",
            "startswith(userPrincipalName,'a'",
            "userPrincipalName ge 'a' and",
            "userPrincipalName ge 'a' userPrincipalName le 'b'",
            "(userPrincipalName ge 'a')",
            "userPrincipalName ge 'é\u{1F600}' and ü",
            "'",
            "''''",
            ",,,((()))",
        ] {
            let e = f(bad).unwrap_err();
            assert_eq!(e.status, StatusCode::BAD_REQUEST, "{bad}");
        }
        assert!(
            f("userPrincipalName ge 'a' and "
                .repeat(9)
                .trim_end_matches(" and "))
            .is_err()
        );
        assert!(f(&format!("userPrincipalName ge '{}'", "x".repeat(300))).is_err());
        let refuse = Refusals {
            range: true,
            startswith: false,
        };
        assert_eq!(
            parse("userPrincipalName le 'a'", refuse)
                .unwrap_err()
                .message,
            REFUSED_CLAUSE
        );
        assert!(parse("startswith(userPrincipalName,'a')", refuse).is_ok());
        let refuse = Refusals {
            range: false,
            startswith: true,
        };
        assert_eq!(
            parse("startswith(userPrincipalName,'a')", refuse)
                .unwrap_err()
                .code,
            "Request_UnsupportedQuery"
        );
    }

    #[test]
    fn filters_round_trip_through_bytes() {
        let x = f("userPrincipalName ge 'a''b' and startswith(userPrincipalName,'é')").unwrap();
        let mut b = Vec::new();
        x.encode(&mut b);
        assert_eq!(Filter::decode(&b), Some(x));
        assert_eq!(Filter::decode(&b[..b.len() - 1]), None);
        assert_eq!(Filter::decode(&[]), None);
        assert_eq!(Filter::decode(&[1, 9, 0, 0]), None);
    }

    #[test]
    fn keys_decide_exactly_as_the_full_comparison() {
        let t = Tenant {
            seed: 4,
            users: 3000,
            today: chrono::NaiveDate::from_ymd_opt(2026, 1, 15).unwrap(),
            concealed: false,
        };
        for t in [t, t.with_skewed_upns()] {
            let keys = UpnKeys::default().get(&t, t.users);
            let lits = [
                "",
                "a",
                "m",
                "me",
                "meg",
                "mega",
                "megan",
                "megan.",
                "z",
                "0",
                "9",
                "_",
                "'",
                "~",
                "con",
                "conf",
                "conf.room",
                "a@",
                "\u{0}",
                "m\u{0}",
                "ü",
                "{",
            ];
            let mut filters = Vec::new();
            for l in lits {
                let q = l.replace('\'', "''");
                filters.push(format!("userPrincipalName ge '{q}'"));
                filters.push(format!("userPrincipalName le '{q}'"));
                filters.push(format!("startswith(userPrincipalName,'{q}')"));
            }
            filters.push("userPrincipalName ge 'ma' and userPrincipalName le 'mi'".into());
            for s in &filters {
                let flt = f(s).unwrap();
                let m = Matcher::new(&flt, keys.clone(), &t);
                for i in 0..t.users {
                    let upn = t.upn_at(i).to_ascii_lowercase();
                    assert_eq!(m.matches(i), flt.matches_upn(upn.as_bytes()), "{s} {upn}");
                }
            }
        }
    }
}
