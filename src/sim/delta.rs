//! `GET /v1.0/users/delta`: a tenant that changes from one epoch to the next.
//!
//! Epoch 0 is the tenant as generated. Each epoch moves it on: about 1% of users change (job
//! title, department, office), 0.2% are removed (`@removed` with reason `changed`, soft, or
//! `deleted`, hard), and `users/500` (at least one) join. Like everything else, an epoch is a
//! pure function of (seed, index, epoch): nothing is stored, and what a link leads to is
//! encoded in the link itself.
//!
//! The simulator has a *current* epoch ([`Epoch`]): `/users` and the first round of a delta
//! sync (no token) serve the tenant as of it, and that round's last page carries an
//! `@odata.deltaLink` whose `$deltatoken` names it. Following a delta link that names epoch
//! `a` older than the current one `c` serves the change rounds `a+1..=c` one after another
//! (an entity changed in several rounds comes several times, as Graph's replays do: the last
//! occurrence wins) and ends with a delta link naming `c`. A link naming `c` itself gets an
//! empty round when the epoch is pinned (`Simulator::set_epoch`); otherwise the tenant moves
//! on by one epoch first, as if time had passed between two syncs (the default, so a client
//! polling a free-running simulator sees changes). Delta tokens older than seven days, tokens
//! naming an epoch after the current one, and the `delta-expired` fault answer `410 Gone`:
//! the client must sync in full again.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::NaiveTime;
use hyper::StatusCode;
use serde_json::{Map, Value};

use super::names;
use super::prng::{Rng, mix, salt};
use super::tenant::{DEFAULT_USER_PROPERTIES, Tenant, UserRec};
use super::users::{MANAGER, MAX_TOP, QueryError, bad, checksum, parse_select, selectable};

/// Users per delta page unless the client asks otherwise with `Prefer: odata.maxpagesize`.
pub const DEFAULT_DELTA_PAGE: u16 = 200;
/// Delta tokens of directory objects expire after seven days (graph-api.md §2).
pub const DELTA_TOKEN_TTL_SECS: i64 = 7 * 24 * 3600;
/// Rounds cost O(epoch) per user; past this many a delta link is answered 410 (resync).
pub const MAX_EPOCH: u64 = 1000;

const P_CHANGE: f64 = 0.01;
const P_REMOVE: f64 = 0.002;
const SALT_CHANGE: u64 = salt("delta-change");
const SALT_REMOVE: u64 = salt("delta-remove");

/// One entry of a delta round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeltaItem {
    /// User `i` is new or changed: served with its properties as of the round's epoch.
    Upsert(u64),
    /// User `i` was removed: `reason` is `changed` (soft-deleted) or `deleted` (hard).
    Removed(u64, &'static str),
}

/// The simulator's current epoch: what `/users` serves and where delta links lead.
#[derive(Debug, Default)]
pub struct Epoch {
    current: AtomicU64,
    /// Set by `Simulator::set_epoch`: the tenant stays put until set again.
    pinned: AtomicBool,
}

impl Epoch {
    /// A clock at `start` (pinned there), or free-running from 0 with `None`.
    pub fn new(start: Option<u64>) -> Epoch {
        Epoch {
            current: AtomicU64::new(start.unwrap_or(0).min(MAX_EPOCH)),
            pinned: AtomicBool::new(start.is_some()),
        }
    }

    pub fn get(&self) -> u64 {
        self.current.load(Ordering::SeqCst)
    }

    /// Moves the tenant to `epoch` (at most [`MAX_EPOCH`]) and keeps it there.
    pub fn set(&self, epoch: u64) {
        self.pinned.store(true, Ordering::SeqCst);
        self.current.store(epoch.min(MAX_EPOCH), Ordering::SeqCst);
    }

    /// The epoch a delta link naming `from` leads to, or `None` if `from` is after the
    /// current epoch (the sync state is unknown: 410). A free-running tenant moves on by one
    /// epoch when the client is up to date.
    pub fn catch_up(&self, from: u64) -> Option<u64> {
        loop {
            let cur = self.get();
            if from > cur {
                return None;
            }
            if from < cur || self.pinned.load(Ordering::SeqCst) || cur >= MAX_EPOCH {
                return Some(cur);
            }
            if self
                .current
                .compare_exchange(cur, cur + 1, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
            {
                return Some(cur + 1);
            }
        }
    }
}

impl Tenant {
    /// Users who join in each delta round.
    pub fn joiners_per_epoch(&self) -> u64 {
        (self.users / 500).max(1)
    }

    /// One past the highest user index that exists at `epoch`.
    pub fn user_bound(&self, epoch: u64) -> u64 {
        self.users
            .saturating_add(epoch.saturating_mul(self.joiners_per_epoch()))
    }

    /// The epoch user `i` joined (0 for the original users).
    pub(crate) fn born(&self, i: u64) -> u64 {
        if i < self.users {
            0
        } else {
            (i - self.users) / self.joiners_per_epoch() + 1
        }
    }

    pub(crate) fn changed_in(&self, i: u64, epoch: u64) -> bool {
        epoch > 0 && Rng::new(self.seed, i, SALT_CHANGE ^ mix(epoch)).chance(P_CHANGE)
    }

    fn removed_in(&self, i: u64, epoch: u64) -> Option<&'static str> {
        let mut r = Rng::new(self.seed, i, SALT_REMOVE ^ mix(epoch));
        (epoch > 0 && r.chance(P_REMOVE)).then(|| if r.chance(0.8) { "changed" } else { "deleted" })
    }

    fn removed_by(&self, i: u64, epoch: u64) -> bool {
        (self.born(i) + 1..=epoch).any(|k| self.removed_in(i, k).is_some())
    }

    /// Whether user `i` exists at `epoch` (joined by then, not removed).
    pub fn exists_at(&self, i: u64, epoch: u64) -> bool {
        self.born(i) <= epoch && !self.removed_by(i, epoch)
    }

    /// Users that exist at `epoch` (a scan: O(users × epoch), for `$count`).
    pub fn users_at(&self, epoch: u64) -> u64 {
        if epoch == 0 {
            return self.users;
        }
        (0..self.user_bound(epoch))
            .filter(|i| self.exists_at(*i, epoch))
            .count() as u64
    }
    /// User `i` as of `epoch`, or `None` if it doesn't exist (yet, or any more).
    pub(crate) fn record_at(&self, i: u64, epoch: u64) -> Option<UserRec> {
        let born = self.born(i);
        if !self.exists_at(i, epoch) {
            return None;
        }
        let mut rec = self.record(i);
        if born > 0 {
            // Joiners are new: created (and their password set) today.
            let created = self
                .today
                .and_time(NaiveTime::from_hms_opt(9, 0, 0).unwrap_or_default())
                + chrono::Duration::minutes(born as i64);
            rec.created = created;
            rec.last_password_change = created;
        }
        if let Some(k) = (born + 1..=epoch).rev().find(|k| self.changed_in(i, *k)) {
            let mut r = Rng::new(self.seed, i, SALT_CHANGE ^ mix(k) ^ 1);
            let rank = *r.pick(&["Senior", "Lead", "Principal", "Acting"]);
            rec.job_title = Some(format!("{rank} {}", r.pick(names::JOB_TITLES)));
            rec.department = Some(*r.pick(names::DEPARTMENTS));
            rec.office_location = Some(*r.pick(names::OFFICES));
        }
        rec.manager = self.manager_at(i, epoch);
        Some(rec)
    }

    /// User `i` as of `epoch`: what `/users` serves while the current epoch is `epoch`.
    pub fn user_at(&self, i: u64, epoch: u64) -> Option<Map<String, Value>> {
        self.record_at(i, epoch).map(|r| r.to_map())
    }

    /// The entries of delta round `epoch`: round 0 is the full initial sync; round `e > 0`
    /// holds the changes from epoch `e - 1` to `e`, in user order.
    pub fn delta_round(&self, epoch: u64) -> impl Iterator<Item = DeltaItem> + Send + use<> {
        let t = *self;
        (0..t.user_bound(epoch)).filter_map(move |i| t.delta_item(i, epoch))
    }

    fn delta_item(&self, i: u64, epoch: u64) -> Option<DeltaItem> {
        let born = self.born(i);
        if epoch == 0 {
            return (born == 0).then_some(DeltaItem::Upsert(i));
        }
        if born == epoch {
            return Some(DeltaItem::Upsert(i));
        }
        if born > epoch || self.removed_by(i, epoch - 1) {
            return None;
        }
        if let Some(reason) = self.removed_in(i, epoch) {
            return Some(DeltaItem::Removed(i, reason));
        }
        self.changed_in(i, epoch).then_some(DeltaItem::Upsert(i))
    }
}

/// What a delta request asks for, as parsed (before the current epoch is known).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeltaRequest {
    /// No token: the first round of a sync, the whole tenant as of the current epoch.
    Initial { select: Option<Vec<&'static str>> },
    /// A `$skiptoken` page of a round in progress.
    Page(DeltaPage),
    /// A delta link naming the completed `epoch`: the changes since.
    Link {
        epoch: u64,
        select: Option<Vec<&'static str>>,
    },
    /// `$deltatoken=latest`: no data, just a delta link.
    Latest { select: Option<Vec<&'static str>> },
}

/// One page of a round, resolved: a full sync of epoch `target` (`full`), or the change
/// rounds `round..=target`, scanning users of `round` from `offset`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeltaPage {
    pub full: bool,
    pub round: u64,
    pub target: u64,
    pub offset: u64,
    pub select: Option<Vec<&'static str>>,
    /// Arrived through a delta link (so the `delta-expired` fault may hit it).
    pub via_delta_link: bool,
}

/// Why a delta request was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeltaError {
    Query(QueryError),
    /// The delta token expired: `410 Gone`, resync in full.
    Gone,
}

impl From<QueryError> for DeltaError {
    fn from(e: QueryError) -> Self {
        DeltaError::Query(e)
    }
}

impl DeltaRequest {
    /// The page to serve, given the simulator's epoch (a delta link may move it on).
    pub fn resolve(self, epoch: &Epoch) -> Result<DeltaPage, DeltaError> {
        let page = |full, round, target, select, via_delta_link| DeltaPage {
            full,
            round,
            target,
            offset: 0,
            select,
            via_delta_link,
        };
        match self {
            DeltaRequest::Initial { select } => {
                let now = epoch.get();
                Ok(page(true, now, now, select, false))
            }
            DeltaRequest::Page(p) => Ok(p),
            DeltaRequest::Link {
                epoch: from,
                select,
            } => {
                let target = epoch.catch_up(from).ok_or(DeltaError::Gone)?;
                // `round > target` when nothing changed: an empty round, then the link.
                Ok(page(false, from + 1, target, select, true))
            }
            // Only a delta link naming the current epoch: no round to serve.
            DeltaRequest::Latest { select } => {
                let now = epoch.get();
                Ok(page(false, now + 1, now, select, false))
            }
        }
    }
}

const SKIP: u8 = 2;
const DELTA: u8 = 3;

fn push_select(b: &mut Vec<u8>, select: &Option<Vec<&'static str>>) {
    match select {
        None => b.push(255),
        Some(props) => {
            b.push(props.len().min(254) as u8);
            for p in props.iter().take(254) {
                b.push(selectable().position(|s| s == *p).unwrap_or(0) as u8);
            }
        }
    }
}

fn read_select(b: &[u8]) -> Option<Option<Vec<&'static str>>> {
    let n = *b.first()?;
    if n == 255 {
        return (b.len() == 1).then_some(None);
    }
    let idx = b.get(1..)?;
    if idx.len() != n as usize {
        return None;
    }
    idx.iter()
        .map(|i| selectable().nth(*i as usize))
        .collect::<Option<Vec<_>>>()
        .map(Some)
}

fn seal(mut b: Vec<u8>) -> String {
    let c = checksum(&b);
    b.extend_from_slice(&c.to_le_bytes());
    URL_SAFE_NO_PAD.encode(b)
}

fn unseal(token: &str, kind: u8) -> Option<Vec<u8>> {
    let b = URL_SAFE_NO_PAD.decode(token.trim()).ok()?;
    if b.len() < 22 || b[0] != kind {
        return None;
    }
    let (body, sum) = b.split_at(b.len() - 4);
    (checksum(body).to_le_bytes() == sum).then(|| body.to_vec())
}

/// `$skiptoken` of a delta page: full or changes, round, scan offset, target, selection.
pub fn encode_skiptoken(p: &DeltaPage) -> String {
    let mut b = vec![SKIP];
    b.extend_from_slice(&p.round.to_le_bytes());
    b.extend_from_slice(&p.offset.to_le_bytes());
    b.extend_from_slice(&p.target.to_le_bytes());
    b.push(p.full as u8);
    push_select(&mut b, &p.select);
    seal(b)
}

fn decode_skiptoken(t: &str) -> Option<DeltaPage> {
    let b = unseal(t, SKIP)?;
    let (round, offset, target) = (u64_at(&b, 1)?, u64_at(&b, 9)?, u64_at(&b, 17)?);
    let full = match *b.get(25)? {
        0 => false,
        1 => true,
        _ => return None,
    };
    let select = read_select(b.get(26..)?)?;
    let sane = target <= MAX_EPOCH
        && if full {
            round == target
        } else {
            round <= target
        };
    sane.then_some(DeltaPage {
        full,
        round,
        target,
        offset,
        select,
        via_delta_link: false,
    })
}

/// `$deltatoken` naming the completed `epoch`, issued at `issued` (unix seconds).
pub fn encode_deltatoken(epoch: u64, issued: i64, select: &Option<Vec<&'static str>>) -> String {
    let mut b = vec![DELTA];
    b.extend_from_slice(&epoch.to_le_bytes());
    b.extend_from_slice(&issued.to_le_bytes());
    push_select(&mut b, select);
    seal(b)
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

fn expired_token() -> QueryError {
    QueryError {
        status: StatusCode::BAD_REQUEST,
        code: "Directory_ExpiredPageToken",
        message: "The specified page token value has expired and can no longer be included in your request."
            .to_string(),
    }
}

/// Parses a delta request's query (decoded pairs). `now` is unix seconds.
pub fn parse(
    pairs: &[(String, String)],
    roles: &[String],
    now: i64,
) -> Result<DeltaRequest, DeltaError> {
    let options: Vec<&str> = pairs
        .iter()
        .map(|(k, _)| k.as_str())
        .filter(|k| k.starts_with('$'))
        .collect();
    for (n, k) in options.iter().enumerate() {
        if options[..n].iter().any(|o| o.eq_ignore_ascii_case(k)) {
            return Err(bad(format!(
                "Query option '{k}' was specified more than once, but it must be specified at most once."
            ))
            .into());
        }
    }
    let get = |name: &str| {
        pairs
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    };
    let only = |token: &str| -> Result<(), DeltaError> {
        match options.iter().find(|k| !k.eq_ignore_ascii_case(token)) {
            Some(other) => Err(bad(format!(
                "Query option '{other}' cannot be combined with {token}: follow the link exactly as returned."
            ))
            .into()),
            None => Ok(()),
        }
    };

    if let Some(t) = get("$skiptoken") {
        only("$skiptoken")?;
        return Ok(DeltaRequest::Page(
            decode_skiptoken(t).ok_or_else(expired_token)?,
        ));
    }
    match get("$deltatoken") {
        Some(t) if t.eq_ignore_ascii_case("latest") => {
            let select = get("$select")
                .map(|l| parse_delta_select(l, roles))
                .transpose()?;
            return Ok(DeltaRequest::Latest { select });
        }
        // An empty token (the Location of a 410) means: start over.
        Some(t) if !t.trim().is_empty() => {
            only("$deltatoken")?;
            let b = unseal(t, DELTA).ok_or(DeltaError::Gone)?;
            let epoch = u64_at(&b, 1).ok_or(DeltaError::Gone)?;
            let issued = u64_at(&b, 9).ok_or(DeltaError::Gone)? as i64;
            let select = read_select(b.get(17..).unwrap_or(&[])).ok_or(DeltaError::Gone)?;
            if now.saturating_sub(issued) > DELTA_TOKEN_TTL_SECS || epoch >= MAX_EPOCH {
                return Err(DeltaError::Gone);
            }
            return Ok(DeltaRequest::Link { epoch, select });
        }
        _ => {}
    }
    for k in &options {
        let known = ["$select", "$deltatoken"]
            .iter()
            .any(|n| n.eq_ignore_ascii_case(k));
        if !known {
            return Err(DeltaError::Query(QueryError {
                status: StatusCode::BAD_REQUEST,
                code: "Request_UnsupportedQuery",
                message: format!(
                    "Unsupported query option '{k}' for users delta: only $select (and $filter on id, which the simulator does not implement) may start a round."
                ),
            }));
        }
    }
    let select = get("$select")
        .map(|l| parse_delta_select(l, roles))
        .transpose()?;
    Ok(DeltaRequest::Initial { select })
}

/// A delta `$select`: the user's properties, and the `manager` relationship, whose changes
/// come as `manager@delta` (delta takes no `$expand`).
fn parse_delta_select(list: &str, roles: &[String]) -> Result<Vec<&'static str>, QueryError> {
    let is_manager = |p: &str| p.trim().eq_ignore_ascii_case(MANAGER);
    let rest: Vec<&str> = list.split(',').filter(|p| !is_manager(p)).collect();
    let mut props = if rest.is_empty() {
        Vec::new()
    } else {
        parse_select(&rest.join(","), roles)?
    };
    if list.split(',').any(is_manager) {
        props.push(MANAGER);
    }
    Ok(props)
}

/// The page size a `Prefer: odata.maxpagesize=N` header asks for, if valid.
pub fn preferred_page_size(prefer: Option<&str>) -> Option<u16> {
    prefer?.split(',').find_map(|p| {
        let (k, v) = p.split_once('=')?;
        if !k.trim().eq_ignore_ascii_case("odata.maxpagesize") {
            return None;
        }
        v.trim()
            .parse::<u16>()
            .ok()
            .filter(|n| (1..=MAX_TOP).contains(n))
    })
}

fn context(out: &mut Vec<u8>, select: &Option<Vec<&'static str>>) {
    out.extend_from_slice(
        b"{\"@odata.context\":\"https://graph.microsoft.com/v1.0/$metadata#users",
    );
    if let Some(sel) = select {
        out.push(b'(');
        out.extend_from_slice(sel.join(",").as_bytes());
        out.push(b')');
    }
    out.push(b'"');
}

fn link(out: &mut Vec<u8>, name: &str, url: &str) {
    out.extend_from_slice(format!(",\"{name}\":").as_bytes());
    let _ = serde_json::to_writer(&mut *out, url);
}

/// The items of one page (each with the epoch it is served as of) and where the next page
/// starts: `None` when the round is complete.
fn collect(
    tenant: &Tenant,
    p: &DeltaPage,
    size: u16,
) -> (Vec<(DeltaItem, u64)>, Option<DeltaPage>) {
    let size = size as usize;
    let mut items = Vec::with_capacity(size);
    let (mut round, mut i) = (p.round, p.offset);
    if p.full {
        let bound = tenant.user_bound(round);
        while i < bound && items.len() < size {
            if tenant.exists_at(i, round) {
                items.push((DeltaItem::Upsert(i), round));
            }
            i += 1;
        }
        if i >= bound {
            return (items, None);
        }
    } else {
        while round <= p.target && items.len() < size {
            let bound = tenant.user_bound(round);
            while i < bound && items.len() < size {
                if let Some(item) = tenant.delta_item(i, round) {
                    items.push((item, round));
                }
                i += 1;
            }
            if i >= bound {
                round += 1;
                i = 0;
            }
        }
        if round > p.target {
            return (items, None);
        }
    }
    let next = DeltaPage {
        round,
        offset: i,
        via_delta_link: false,
        ..p.clone()
    };
    (items, Some(next))
}

/// Writes page `p` (at most `size` items); `now` stamps new delta tokens.
pub fn write_page(
    tenant: &Tenant,
    p: &DeltaPage,
    size: u16,
    graph_url: &str,
    now: i64,
    out: &mut Vec<u8>,
) {
    let base = format!("{graph_url}/v1.0/users/delta");
    let props: &[&'static str] = p.select.as_deref().unwrap_or(DEFAULT_USER_PROPERTIES);
    let (items, next) = collect(tenant, p, size);
    context(out, &p.select);
    match &next {
        Some(n) => link(
            out,
            "@odata.nextLink",
            &format!("{base}?$skiptoken={}", encode_skiptoken(n)),
        ),
        None => link(
            out,
            "@odata.deltaLink",
            &format!(
                "{base}?$deltatoken={}",
                encode_deltatoken(p.target, now, &p.select)
            ),
        ),
    }
    out.extend_from_slice(b",\"value\":[");
    let p_full = p.full;
    for (n, (item, epoch)) in items.iter().enumerate() {
        if n > 0 {
            out.push(b',');
        }
        match *item {
            DeltaItem::Removed(u, reason) => {
                out.extend_from_slice(b"{\"@odata.type\":\"#microsoft.graph.user\",\"id\":");
                let _ = serde_json::to_writer(&mut *out, &tenant.user_id(u));
                out.extend_from_slice(
                    format!(",\"@removed\":{{\"reason\":\"{reason}\"}}}}").as_bytes(),
                );
            }
            DeltaItem::Upsert(u) => {
                let Some(rec) = tenant.record_at(u, *epoch) else {
                    out.extend_from_slice(b"{}");
                    continue;
                };
                // Delta always identifies the object, selected or not.
                out.extend_from_slice(b"{\"id\":");
                rec.write_property("id", out);
                for p in props.iter().filter(|p| **p != "id") {
                    if *p == MANAGER {
                        write_manager_delta(tenant, u, *epoch, p_full, out);
                        continue;
                    }
                    out.extend_from_slice(format!(",\"{p}\":").as_bytes());
                    rec.write_property(p, out);
                }
                out.push(b'}');
            }
        }
    }
    out.extend_from_slice(b"]}");
}
/// `manager@delta` of user `u` in the round of `epoch`: its manager in a full round or when it
/// joined; in a change round only when the manager changed (a manager taken away is an
/// `@removed` entry). Otherwise nothing: the client keeps the manager it had.
fn write_manager_delta(tenant: &Tenant, u: u64, epoch: u64, full: bool, out: &mut Vec<u8>) {
    let now = tenant.manager_at(u, epoch);
    let entry = |m: &super::directory::Manager, removed: bool, out: &mut Vec<u8>| {
        out.extend_from_slice(b"{\"@odata.type\":");
        let _ = serde_json::to_writer(&mut *out, Tenant::manager_type(m));
        out.extend_from_slice(b",\"id\":");
        let _ = serde_json::to_writer(&mut *out, &tenant.manager_id(m));
        if removed {
            out.extend_from_slice(b",\"@removed\":{\"reason\":\"deleted\"}");
        }
        out.push(b'}');
    };
    if full || tenant.born(u) == epoch {
        if let Some(m) = &now {
            out.extend_from_slice(b",\"manager@delta\":[");
            entry(m, false, out);
            out.push(b']');
        }
        return;
    }
    let before = tenant.manager_at(u, epoch.saturating_sub(1));
    if before == now {
        return;
    }
    out.extend_from_slice(b",\"manager@delta\":[");
    match (&now, &before) {
        (Some(m), _) => entry(m, false, out),
        (None, Some(old)) => entry(old, true, out),
        (None, None) => {}
    }
    out.push(b']');
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;

    fn t() -> Tenant {
        Tenant {
            seed: 11,
            users: 5000,
            today: NaiveDate::from_ymd_opt(2026, 3, 15).unwrap(),
            concealed: false,
        }
    }

    #[test]
    fn rounds_change_remove_and_add_users() {
        let t = t();
        let initial: Vec<_> = t.delta_round(0).collect();
        assert_eq!(initial.len(), 5000);
        assert_eq!(
            t.user_at(42, 0),
            Some(t.user(42)),
            "epoch 0 is what /users serves"
        );

        let r1: Vec<_> = t.delta_round(1).collect();
        let removed: Vec<_> = r1
            .iter()
            .filter(|i| matches!(i, DeltaItem::Removed(..)))
            .collect();
        let joined: Vec<_> = r1
            .iter()
            .filter(|i| matches!(i, DeltaItem::Upsert(u) if *u >= 5000))
            .collect();
        let changed: Vec<_> = r1
            .iter()
            .filter(|i| matches!(i, DeltaItem::Upsert(u) if *u < 5000))
            .collect();
        assert_eq!(joined.len(), 10);
        assert!((20..=90).contains(&changed.len()), "{}", changed.len());
        assert!(
            !removed.is_empty() && removed.len() < 30,
            "{}",
            removed.len()
        );
        for item in &r1 {
            match *item {
                DeltaItem::Removed(u, reason) => {
                    assert!(t.user_at(u, 0).is_some() && t.user_at(u, 1).is_none());
                    assert!(reason == "changed" || reason == "deleted");
                }
                DeltaItem::Upsert(u) if u < 5000 => assert_ne!(t.user_at(u, 0), t.user_at(u, 1)),
                DeltaItem::Upsert(u) => {
                    assert!(t.user_at(u, 0).is_none() && t.user_at(u, 1).is_some())
                }
            }
        }
        // Removed users stay removed in later rounds.
        let gone: Vec<u64> = removed
            .iter()
            .map(|i| {
                if let DeltaItem::Removed(u, _) = i {
                    *u
                } else {
                    0
                }
            })
            .collect();
        assert!(gone.iter().all(|u| t.user_at(*u, 3).is_none()));
        assert!(t.delta_round(2).all(
            |i| !matches!(i, DeltaItem::Removed(u, _) | DeltaItem::Upsert(u) if gone.contains(&u))
        ));
    }

    #[test]
    fn replaying_the_rounds_reconstructs_the_epoch() {
        let t = Tenant { users: 800, ..t() };
        let mut state: std::collections::BTreeMap<u64, Map<String, Value>> = Default::default();
        for e in 0..=4 {
            for item in t.delta_round(e) {
                match item {
                    DeltaItem::Upsert(u) => {
                        state.insert(u, t.user_at(u, e).unwrap());
                    }
                    DeltaItem::Removed(u, _) => {
                        state.remove(&u);
                    }
                }
            }
        }
        let truth: std::collections::BTreeMap<u64, Map<String, Value>> = (0..t.user_bound(4))
            .filter_map(|u| t.user_at(u, 4).map(|m| (u, m)))
            .collect();
        assert_eq!(state, truth);
    }

    #[test]
    fn tokens_round_trip_and_expire() {
        let sel = Some(vec!["id", "displayName"]);
        let pairs = |q: String| super::super::request::parse_pairs(&q, false).unwrap();
        let now = 1_800_000_000;
        let page = DeltaPage {
            full: false,
            round: 3,
            target: 5,
            offset: 1234,
            select: sel.clone(),
            via_delta_link: false,
        };
        let skip = encode_skiptoken(&page);
        assert_eq!(
            parse(&pairs(format!("$skiptoken={skip}")), &[], now),
            Ok(DeltaRequest::Page(page.clone()))
        );
        let delta = encode_deltatoken(3, now - 100, &sel);
        assert_eq!(
            parse(&pairs(format!("$deltatoken={delta}")), &[], now),
            Ok(DeltaRequest::Link {
                epoch: 3,
                select: sel.clone(),
            })
        );
        let old = encode_deltatoken(3, now - DELTA_TOKEN_TTL_SECS - 1, &sel);
        assert_eq!(
            parse(&pairs(format!("$deltatoken={old}")), &[], now),
            Err(DeltaError::Gone)
        );
        assert_eq!(
            parse(&pairs("$deltatoken=bogus".into()), &[], now),
            Err(DeltaError::Gone)
        );
        assert!(matches!(
            parse(&pairs(format!("$deltatoken={delta}&$select=id")), &[], now),
            Err(DeltaError::Query(_))
        ));
        assert!(matches!(
            parse(&pairs("$top=5".into()), &[], now),
            Err(DeltaError::Query(_))
        ));
        assert_eq!(
            parse(&pairs("$deltatoken=".into()), &[], now),
            Ok(DeltaRequest::Initial { select: None })
        );
        // A users skiptoken is not a delta skiptoken.
        let users_token = super::super::users::encode_skiptoken(&super::super::users::UsersQuery {
            offset: 0,
            top: 10,
            select: None,
            count: false,
            filter: None,
            expand_manager: false,
        });
        assert!(parse(&pairs(format!("$skiptoken={users_token}")), &[], now).is_err());
        assert_eq!(preferred_page_size(Some("odata.maxpagesize=50")), Some(50));
        assert_eq!(
            preferred_page_size(Some("return=minimal, odata.maxpagesize=5000")),
            None
        );
    }
}
