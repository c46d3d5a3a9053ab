//! `GET /v1.0/users`: `$select`, `$top`, `$count`, opaque `$skiptoken` next links, and
//! pages written straight into a byte buffer.
//!
//! The skiptoken carries the whole query (offset, page size, selection, `$filter`), so a next
//! link must be followed verbatim: adding `$top` or `$select` to it is a 400, as the OData
//! rules say. A filtered page holds the next `$top` existing users at or after the offset
//! whose UPN matches, in the collection's own order (see `filter.rs`).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hyper::StatusCode;

use super::faults::Repeat;
use super::filter::{self, Filter, Matcher, Refusals};
use super::prng::mix;
use super::tenant::{DEFAULT_USER_PROPERTIES, PropertyKind, Tenant, UserRec, property_kind};
use crate::streams::USER_SELECT;

/// A parsed (or resumed) users query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsersQuery {
    pub offset: u64,
    pub top: u16,
    /// Canonical property names; `None` = Graph's default property set.
    pub select: Option<Vec<&'static str>>,
    pub count: bool,
    /// `$filter` on userPrincipalName; `None` serves every user.
    pub filter: Option<Filter>,
    /// `$expand=manager` (with or without a nested `$select`): each user carries `manager`
    /// (`@odata.type` and `id`) when it has one, and pages hold at most 100 users.
    pub expand_manager: bool,
}

/// Largest page with `$expand` (Graph's known issue: 100, whatever `$top` says).
pub const MAX_EXPANDED_TOP: u16 = 100;
/// Largest page with `signInActivity` selected (500 since 2025).
pub const MAX_SIGN_IN_TOP: u16 = 500;

/// Whether the user access is what `signInActivity` needs: the role, and a premium tenant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Access<'a> {
    pub roles: &'a [String],
    pub premium: bool,
}

pub use super::query_error::QueryError;
pub(crate) use super::query_error::bad;

const DEFAULT_TOP: u16 = 100;
pub(crate) const MAX_TOP: u16 = 999;

/// All names a skiptoken may refer to, by position.
pub(crate) fn selectable() -> impl Iterator<Item = &'static str> {
    USER_SELECT
        .iter()
        .chain(DEFAULT_USER_PROPERTIES)
        .copied()
        .chain(super::tenant::other_served_properties())
        .chain([SIGN_IN_ACTIVITY, MANAGER])
}

/// Parses the query string of a `/users` request (already split into decoded pairs).
/// `roles` decides what `signInActivity` answers; `eventual` is a `ConsistencyLevel: eventual`.
pub fn parse(
    pairs: &[(String, String)],
    access: Access<'_>,
    eventual: bool,
    refuse: Refusals,
) -> Result<UsersQuery, QueryError> {
    let mut seen: Vec<&str> = Vec::new();
    for (k, _) in pairs {
        if k.starts_with('$') {
            if seen.iter().any(|s| s.eq_ignore_ascii_case(k)) {
                return Err(bad(format!(
                    "Query option '{k}' was specified more than once, but it must be specified at most once."
                )));
            }
            seen.push(k);
        }
    }
    let get = |name: &str| {
        pairs
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    };

    if let Some(token) = get("$skiptoken") {
        if let Some(other) = seen.iter().find(|k| !k.eq_ignore_ascii_case("$skiptoken")) {
            return Err(bad(format!(
                "Query option '{other}' cannot be combined with $skiptoken: follow @odata.nextLink exactly as returned, without adding query options."
            )));
        }
        return decode_skiptoken(token).ok_or_else(|| QueryError {
            status: StatusCode::BAD_REQUEST,
            code: "Directory_ExpiredPageToken",
            message: "The specified page token value has expired and can no longer be included in your request."
                .to_string(),
        });
    }

    for k in &seen {
        let known = ["$select", "$top", "$count", "$filter", "$expand"]
            .iter()
            .any(|n| n.eq_ignore_ascii_case(k));
        if !known {
            let supported_by_graph = ["$orderby", "$search"]
                .iter()
                .any(|n| n.eq_ignore_ascii_case(k));
            return Err(if supported_by_graph {
                QueryError {
                    status: StatusCode::BAD_REQUEST,
                    code: "Request_UnsupportedQuery",
                    message: format!(
                        "The Graph simulator does not implement the query option '{k}'."
                    ),
                }
            } else {
                bad(format!(
                    "The query parameter '{k}' is not supported. Supported: $select, $top, $count, $filter, $orderby, $search, $expand."
                ))
            });
        }
    }

    let top = match get("$top") {
        None => DEFAULT_TOP,
        Some(raw) => match raw.trim().parse::<u64>() {
            Ok(n) if (1..=MAX_TOP as u64).contains(&n) => n as u16,
            _ => {
                return Err(bad(format!(
                    "Invalid page size specified: '{raw}'. Must be between 1 and 999 inclusive."
                )));
            }
        },
    };

    let count = match get("$count").map(|v| v.to_ascii_lowercase()) {
        None => false,
        Some(v) if v == "false" => false,
        Some(v) if v == "true" => {
            if !eventual {
                return Err(bad(
                    "$count is not currently supported without the header 'ConsistencyLevel: eventual'.",
                ));
            }
            true
        }
        Some(v) => {
            return Err(bad(format!(
                "Invalid value '{v}' for $count: expected true or false."
            )));
        }
    };

    let select = get("$select")
        .map(|l| parse_select_with(l, access))
        .transpose()?;
    let filter = get("$filter")
        .map(|f| filter::parse(f, refuse))
        .transpose()?;
    let expand_manager = match get("$expand") {
        None => false,
        Some(e) => parse_expand(e)?,
    };
    if expand_manager && (count || eventual) {
        // Advanced queries (ConsistencyLevel: eventual, $count) do not support $expand.
        return Err(QueryError {
            status: StatusCode::BAD_REQUEST,
            code: "Request_UnsupportedQuery",
            message: "Unsupported Query. $expand is not supported with advanced queries (ConsistencyLevel: eventual, $count, $search)."
                .to_string(),
        });
    }
    let mut top = top;
    if expand_manager {
        top = top.min(MAX_EXPANDED_TOP);
    }
    if select
        .as_ref()
        .is_some_and(|s| s.contains(&SIGN_IN_ACTIVITY))
    {
        top = top.min(MAX_SIGN_IN_TOP);
    }
    Ok(UsersQuery {
        offset: 0,
        top,
        select,
        count,
        filter,
        expand_manager,
    })
}

/// The canonical name of the sign-in activity property.
pub const SIGN_IN_ACTIVITY: &str = "signInActivity";

/// The manager relationship's name in a delta `$select` (its changes come as
/// `manager@delta`; `/users` expands it instead).
pub const MANAGER: &str = "manager";

/// `$expand` on `/users`: only `manager`, optionally with a nested `$select`; one item.
fn parse_expand(e: &str) -> Result<bool, QueryError> {
    // Top-level items: commas inside a nested `(...)` belong to its options.
    let (mut depth, mut items) = (0i32, vec![String::new()]);
    for c in e.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                items.push(String::new());
                continue;
            }
            _ => {}
        }
        if let Some(last) = items.last_mut() {
            last.push(c);
        }
    }
    if items.len() > 1 {
        return Err(bad(
            "The result of parsing $expand contained at least 2 items, but the maximum allowed is 1.",
        ));
    }
    let nav = items[0].split('(').next().unwrap_or_default().trim();
    if !nav.eq_ignore_ascii_case("manager") {
        return Err(bad(format!(
            "Could not find a navigation property named '{nav}' on type 'microsoft.graph.user'."
        )));
    }
    Ok(true)
}

/// Resolves a `$select` list to canonical property names, refusing what Graph refuses
/// (`signInActivity` only for a premium tenant and an app with AuditLog.Read.All).
pub(crate) fn parse_select_with(
    list: &str,
    access: Access<'_>,
) -> Result<Vec<&'static str>, QueryError> {
    let audit = access.roles.iter().any(|r| r == "AuditLog.Read.All");
    if audit && access.premium {
        let has = list
            .split(',')
            .any(|p| p.trim().eq_ignore_ascii_case(SIGN_IN_ACTIVITY));
        let rest: Vec<&str> = list
            .split(',')
            .filter(|p| !p.trim().eq_ignore_ascii_case(SIGN_IN_ACTIVITY))
            .collect();
        if has {
            let mut props = if rest.is_empty() {
                Vec::new()
            } else {
                parse_select(&rest.join(","), access.roles)?
            };
            props.push(SIGN_IN_ACTIVITY);
            return Ok(props);
        }
    }
    parse_select(list, access.roles)
}

/// Resolves a `$select` list to canonical property names, refusing what Graph refuses.
pub(crate) fn parse_select(list: &str, roles: &[String]) -> Result<Vec<&'static str>, QueryError> {
    let mut props: Vec<&'static str> = Vec::new();
    for item in list.split(',').map(str::trim) {
        if item.is_empty() {
            return Err(bad(format!(
                "Invalid $select: empty property name in '{list}'."
            )));
        }
        match property_kind(item) {
            PropertyKind::Served(p) => {
                if !props.contains(&p) {
                    props.push(p);
                }
            }
            PropertyKind::NotListable(_) => {
                return Err(QueryError {
                    status: StatusCode::NOT_IMPLEMENTED,
                    code: "NotImplemented",
                    message: "This operation target is not yet supported.".to_string(),
                });
            }
            PropertyKind::SignInActivity => {
                let audit = roles.iter().any(|r| r == "AuditLog.Read.All");
                return Err(if audit {
                    QueryError {
                        status: StatusCode::FORBIDDEN,
                        code: "Authentication_RequestFromNonPremiumTenantOrB2CTenant",
                        message: "Tenant is not a B2C tenant and doesn't have premium license"
                            .to_string(),
                    }
                } else {
                    QueryError {
                        status: StatusCode::FORBIDDEN,
                        code: "Authorization_RequestDenied",
                        message: "Insufficient privileges to complete the operation.".to_string(),
                    }
                });
            }
            PropertyKind::Unknown => {
                return Err(bad(format!(
                    "Could not find a property named '{item}' on type 'microsoft.graph.user'."
                )));
            }
        }
    }
    Ok(props)
}

pub(crate) fn checksum(bytes: &[u8]) -> u32 {
    let mut h = 0x5151_u64;
    for b in bytes {
        h = mix(h ^ *b as u64);
    }
    h as u32
}

/// Encodes the query as an opaque, checksummed token.
/// Version 1 is an unfiltered query; version 2 appends the filter (see [`Filter::encode`]);
/// versions 3 and 4 are 1 and 2 with the manager expanded.
pub fn encode_skiptoken(q: &UsersQuery) -> String {
    let version = if q.filter.is_some() { 2u8 } else { 1 } + if q.expand_manager { 2 } else { 0 };
    let mut b = vec![version];
    b.extend_from_slice(&q.offset.to_le_bytes());
    b.extend_from_slice(&q.top.to_le_bytes());
    match &q.select {
        None => b.push(255),
        Some(props) => {
            b.push(props.len().min(254) as u8);
            for p in props.iter().take(254) {
                b.push(selectable().position(|s| s == *p).unwrap_or(0) as u8);
            }
        }
    }
    if let Some(f) = &q.filter {
        f.encode(&mut b);
    }
    let c = checksum(&b);
    b.extend_from_slice(&c.to_le_bytes());
    URL_SAFE_NO_PAD.encode(b)
}

/// Decodes a token made by [`encode_skiptoken`]; `None` for anything else.
pub fn decode_skiptoken(token: &str) -> Option<UsersQuery> {
    let b = URL_SAFE_NO_PAD.decode(token.trim()).ok()?;
    let version = *b.first()?;
    if b.len() < 16 || !(1..=4).contains(&version) {
        return None;
    }
    let expand_manager = version > 2;
    let version = if expand_manager { version - 2 } else { version };
    let (body, sum) = b.split_at(b.len() - 4);
    if checksum(body).to_le_bytes() != sum {
        return None;
    }
    let offset = u64::from_le_bytes(body.get(1..9)?.try_into().ok()?);
    let top = u16::from_le_bytes(body.get(9..11)?.try_into().ok()?);
    let n = *body.get(11)?;
    let filter_at = if n == 255 { 12 } else { 12 + n as usize };
    let select = if n == 255 {
        None
    } else {
        let idx = body.get(12..filter_at)?;
        Some(
            idx.iter()
                .map(|i| selectable().nth(*i as usize))
                .collect::<Option<Vec<_>>>()?,
        )
    };
    let rest = body.get(filter_at..)?;
    let filter = match version {
        1 if rest.is_empty() => None,
        2 => Some(Filter::decode(rest)?),
        _ => return None,
    };
    if top == 0 || top > MAX_TOP {
        return None;
    }
    Some(UsersQuery {
        offset,
        top,
        select,
        count: false,
        filter,
        expand_manager,
    })
}

/// Writes one page of the tenant as of `epoch` (users that joined by then and were not
/// removed). `short` (0–99) makes the page hold only that percentage of `$top`. (The server
/// calls [`write_page_repeating`], which this is without repeats.)
#[cfg(test)]
pub fn write_page(
    tenant: &Tenant,
    q: &UsersQuery,
    epoch: u64,
    graph_url: &str,
    short: Option<u16>,
    out: &mut Vec<u8>,
) {
    write_page_repeating(tenant, q, None, epoch, graph_url, short, None, out);
}

/// Users that exist at `epoch` and match: a scan of every index (keys make it cheap).
pub fn count_matching(tenant: &Tenant, m: &Matcher, epoch: u64) -> u64 {
    (0..tenant.user_bound(epoch))
        .filter(|i| m.matches(*i) && tenant.exists_at(*i, epoch))
        .count() as u64
}

/// What the `repeat-users` faults added to a page.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Repeated {
    /// Users served again at the start of the page.
    pub users: u64,
    /// The copies differ from what was served before.
    pub changed: bool,
}

/// The suffix `repeat-users-changed` gives the repeated copies.
pub const CHANGED_SUFFIX: &str = " (updated)";

/// How far back a repeat looks for users that still exist.
const REPEAT_SCAN: u64 = 10_000;

/// As [`write_page`]; with `repeat` on a next page (offset > 0), the value array first holds
/// the `repeat.users` users just before the page's offset again: the previous page's last
/// users (its next link pointed here), or, after a page that held fewer, the ones before it.
/// They are byte-identical to how they were served (same epoch, same `$select`), or with
/// `repeat.changed` their `jobTitle` (when selected; a null one becomes "(updated)") or else
/// their `displayName` (when selected) ends in " (updated)"; with neither selected, the copy
/// cannot differ and is identical. The page's own users and its next link are unchanged.
///
/// With a filter, `matcher` (built for `q.filter`) picks the users: a page, its repeats and
/// `@odata.count` hold matching users only. Without one, `q.filter` is ignored.
#[allow(clippy::too_many_arguments)]
pub fn write_page_repeating(
    tenant: &Tenant,
    q: &UsersQuery,
    matcher: Option<&Matcher>,
    epoch: u64,
    graph_url: &str,
    short: Option<u16>,
    repeat: Option<Repeat>,
    out: &mut Vec<u8>,
) -> Repeated {
    let props: &[&'static str] = q.select.as_deref().unwrap_or(DEFAULT_USER_PROPERTIES);
    let bound = tenant.user_bound(epoch);
    let top = q.top as usize;
    let mut users = Vec::with_capacity(top);
    let wanted = |i: u64| matcher.is_none_or(|m| m.matches(i)) && tenant.exists_at(i, epoch);
    let mut end = q.offset.min(bound);
    while end < bound && users.len() < top {
        if wanted(end) {
            users.push(end);
        }
        end += 1;
    }
    if let Some(pct) = short.filter(|_| users.len() == top && end < bound) {
        let keep = top * pct.min(99) as usize / 100;
        if let Some(first_dropped) = users.get(keep) {
            end = *first_dropped;
            users.truncate(keep);
        }
    }
    let mut again = Vec::new();
    if let Some(r) = repeat.filter(|_| q.offset > 0) {
        let mut i = q.offset.min(bound);
        let floor = i.saturating_sub(REPEAT_SCAN);
        while i > floor && again.len() < r.users as usize {
            i -= 1;
            if wanted(i) {
                again.push(i);
            }
        }
        again.reverse();
    }
    let changed = repeat
        .filter(|r| r.changed && !again.is_empty())
        .and_then(|_| {
            ["jobTitle", "displayName"]
                .into_iter()
                .find(|p| props.contains(p))
        });

    out.extend_from_slice(
        b"{\"@odata.context\":\"https://graph.microsoft.com/v1.0/$metadata#users",
    );
    if let Some(sel) = &q.select {
        out.push(b'(');
        out.extend_from_slice(sel.join(",").as_bytes());
        out.push(b')');
    }
    out.push(b'"');
    if q.count && q.offset == 0 {
        let n = match matcher {
            Some(m) => count_matching(tenant, m, epoch),
            None => tenant.users_at(epoch),
        };
        out.extend_from_slice(format!(",\"@odata.count\":{n}").as_bytes());
    }
    if end < bound {
        let next = UsersQuery {
            offset: end,
            count: false,
            ..q.clone()
        };
        out.extend_from_slice(b",\"@odata.nextLink\":");
        let link = format!(
            "{graph_url}/v1.0/users?$skiptoken={}",
            encode_skiptoken(&next)
        );
        let _ = serde_json::to_writer(&mut *out, &link);
    }
    out.extend_from_slice(b",\"value\":[");
    let mut first = true;
    let mut write = |rec: &UserRec, out: &mut Vec<u8>| {
        if !first {
            out.push(b',');
        }
        first = false;
        out.push(b'{');
        for (n, p) in props.iter().enumerate() {
            if n > 0 {
                out.push(b',');
            }
            out.push(b'"');
            out.extend_from_slice(p.as_bytes());
            out.extend_from_slice(b"\":");
            rec.write_property(p, out);
        }
        if let Some(m) = rec.manager.as_ref().filter(|_| q.expand_manager) {
            out.extend_from_slice(b",\"manager\":{\"@odata.type\":");
            let _ = serde_json::to_writer(&mut *out, Tenant::manager_type(m));
            out.extend_from_slice(b",\"id\":");
            let _ = serde_json::to_writer(&mut *out, &tenant.manager_id(m));
            out.push(b'}');
        }
        out.push(b'}');
    };
    let mut repeated = 0;
    for i in &again {
        let Some(mut u) = tenant.record_at(*i, epoch) else {
            continue;
        };
        match changed {
            Some("jobTitle") => {
                u.job_title = Some(match u.job_title.take() {
                    Some(t) => format!("{t}{CHANGED_SUFFIX}"),
                    None => CHANGED_SUFFIX.trim_start().to_string(),
                })
            }
            Some(_) => u.display_name.push_str(CHANGED_SUFFIX),
            None => {}
        }
        write(&u, out);
        repeated += 1;
    }
    for i in &users {
        if let Some(u) = tenant.record_at(*i, epoch) {
            write(&u, out);
        }
    }
    out.extend_from_slice(b"]}");
    Repeated {
        users: repeated,
        changed: changed.is_some() && repeated > 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(q: &str) -> Vec<(String, String)> {
        super::super::request::parse_pairs(q, false).unwrap()
    }

    #[test]
    fn parses_select_and_top() {
        let q = parse(
            &pairs("$select=id,MAIL,assignedLicenses&$top=999"),
            Access::default(),
            false,
            Refusals::default(),
        )
        .unwrap();
        assert_eq!(q.top, 999);
        assert_eq!(q.select, Some(vec!["id", "mail", "assignedLicenses"]));
        let d = parse(&[], Access::default(), false, Refusals::default()).unwrap();
        assert_eq!((d.top, d.select), (100, None));
    }

    #[test]
    fn refuses_bad_queries() {
        let e = parse(
            &pairs("$top=1000"),
            Access::default(),
            false,
            Refusals::default(),
        )
        .unwrap_err();
        assert_eq!(
            e.message,
            "Invalid page size specified: '1000'. Must be between 1 and 999 inclusive."
        );
        assert_eq!(
            parse(
                &pairs("$top=0"),
                Access::default(),
                false,
                Refusals::default()
            )
            .unwrap_err()
            .status,
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            parse(
                &pairs("$top=abc"),
                Access::default(),
                false,
                Refusals::default()
            )
            .unwrap_err()
            .status,
            StatusCode::BAD_REQUEST
        );
        let e = parse(
            &pairs("$select=id,favouriteColour"),
            Access::default(),
            false,
            Refusals::default(),
        )
        .unwrap_err();
        assert!(e.message.contains("'favouriteColour'"), "{}", e.message);
        assert_eq!(
            parse(
                &pairs("$select=skills"),
                Access::default(),
                false,
                Refusals::default()
            )
            .unwrap_err()
            .status,
            StatusCode::NOT_IMPLEMENTED
        );
        assert_eq!(
            parse(
                &pairs("$select=signInActivity"),
                Access::default(),
                false,
                Refusals::default()
            )
            .unwrap_err()
            .status,
            StatusCode::FORBIDDEN
        );
        assert!(
            parse(
                &pairs("$count=true"),
                Access::default(),
                false,
                Refusals::default()
            )
            .is_err()
        );
        assert!(
            parse(
                &pairs("$count=true"),
                Access::default(),
                true,
                Refusals::default()
            )
            .unwrap()
            .count
        );
        assert!(
            parse(
                &pairs("$top=5&$top=6"),
                Access::default(),
                false,
                Refusals::default()
            )
            .is_err()
        );
    }

    #[test]
    fn expand_manager_caps_pages_at_100_and_refuses_advanced_queries() {
        let none = Refusals::default();
        let q = parse(
            &pairs("$expand=manager($select=id)&$top=999"),
            Access::default(),
            false,
            none,
        )
        .unwrap();
        assert!(q.expand_manager);
        assert_eq!(q.top, MAX_EXPANDED_TOP);
        let e = parse(
            &pairs("$expand=manager&$count=true"),
            Access::default(),
            true,
            none,
        )
        .unwrap_err();
        assert_eq!(e.code, "Request_UnsupportedQuery");
        assert!(parse(&pairs("$expand=manager"), Access::default(), true, none).is_err());
        let e = parse(
            &pairs("$expand=manager,memberOf"),
            Access::default(),
            false,
            none,
        )
        .unwrap_err();
        assert!(e.message.contains("at least 2 items"), "{}", e.message);
        assert!(
            parse(
                &pairs("$expand=directReports"),
                Access::default(),
                false,
                none
            )
            .is_err()
        );
        // The skiptoken keeps the expansion.
        let next = UsersQuery { offset: 100, ..q };
        assert_eq!(decode_skiptoken(&encode_skiptoken(&next)), Some(next));
    }

    #[test]
    fn sign_in_activity_needs_the_role_and_a_premium_tenant_and_pages_of_500() {
        let none = Refusals::default();
        let roles = vec!["AuditLog.Read.All".to_string()];
        let ask = "$select=id,signInActivity&$top=999";
        let premium = Access {
            roles: &roles,
            premium: true,
        };
        let q = parse(&pairs(ask), premium, false, none).unwrap();
        assert_eq!(q.top, MAX_SIGN_IN_TOP);
        assert_eq!(q.select, Some(vec!["id", SIGN_IN_ACTIVITY]));
        let e = parse(
            &pairs(ask),
            Access {
                roles: &roles,
                premium: false,
            },
            false,
            none,
        )
        .unwrap_err();
        assert_eq!(
            e.code,
            "Authentication_RequestFromNonPremiumTenantOrB2CTenant"
        );
        let e = parse(
            &pairs(ask),
            Access {
                roles: &[],
                premium: true,
            },
            false,
            none,
        )
        .unwrap_err();
        assert_eq!(e.code, "Authorization_RequestDenied");
    }

    #[test]
    fn skiptokens_round_trip_and_refuse_extra_options() {
        let q = UsersQuery {
            offset: 123_456,
            top: 999,
            select: Some(vec!["id", "displayName"]),
            count: false,
            filter: None,
            expand_manager: false,
        };
        let t = encode_skiptoken(&q);
        assert_eq!(decode_skiptoken(&t), Some(q.clone()));
        // A filter rides along in the token.
        let fq = UsersQuery {
            filter: Some(
                filter::parse(
                    "userPrincipalName ge 'a''' and startswith(userPrincipalName,'é')",
                    Refusals::default(),
                )
                .unwrap(),
            ),
            ..q.clone()
        };
        let ft = encode_skiptoken(&fq);
        assert_eq!(decode_skiptoken(&ft), Some(fq));
        let mut fb = URL_SAFE_NO_PAD.decode(&ft).unwrap();
        let last = fb.len() - 6;
        fb[last] ^= 1;
        assert_eq!(decode_skiptoken(&URL_SAFE_NO_PAD.encode(fb)), None);
        assert_eq!(
            parse(
                &pairs(&format!("$skiptoken={t}")),
                Access::default(),
                false,
                Refusals::default()
            )
            .unwrap(),
            q
        );
        let e = parse(
            &pairs(&format!("$skiptoken={t}&$top=999")),
            Access::default(),
            false,
            Refusals::default(),
        )
        .unwrap_err();
        assert!(e.message.contains("$top"));
        // Tampering is detected.
        let mut bytes = URL_SAFE_NO_PAD.decode(&t).unwrap();
        bytes[3] ^= 1;
        assert_eq!(decode_skiptoken(&URL_SAFE_NO_PAD.encode(bytes)), None);
        assert_eq!(decode_skiptoken("garbage!"), None);
        assert_eq!(decode_skiptoken(""), None);
    }

    #[test]
    fn pages_hold_exactly_the_selected_properties() {
        let t = Tenant {
            seed: 3,
            users: 250,
            today: chrono::NaiveDate::from_ymd_opt(2026, 1, 15).unwrap(),
            concealed: false,
        };
        let q = UsersQuery {
            offset: 200,
            top: 100,
            select: Some(vec!["mail", "displayName"]),
            count: false,
            filter: None,
            expand_manager: false,
        };
        let mut out = Vec::new();
        write_page(&t, &q, 0, "http://127.0.0.1:1", None, &mut out);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        let users = v["value"].as_array().unwrap();
        assert_eq!(users.len(), 50);
        assert!(v.get("@odata.nextLink").is_none());
        for u in users {
            let keys: Vec<_> = u.as_object().unwrap().keys().collect();
            assert_eq!(keys.len(), 2, "{keys:?}");
            assert!(u.get("id").is_none());
        }
        assert_eq!(
            v["@odata.context"],
            "https://graph.microsoft.com/v1.0/$metadata#users(mail,displayName)"
        );
        // The first page links on, with an absolute URL on the Graph host.
        let mut out = Vec::new();
        write_page(
            &t,
            &UsersQuery { offset: 0, ..q },
            0,
            "http://127.0.0.1:1",
            None,
            &mut out,
        );
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert!(
            v["@odata.nextLink"]
                .as_str()
                .unwrap()
                .starts_with("http://127.0.0.1:1/v1.0/users?$skiptoken=")
        );
    }
}
