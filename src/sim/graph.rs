//! The `graph.microsoft.com/v1.0` endpoints: authentication, roles, faults, and the
//! users / organization / subscribedSkus / reportSettings / reports resources.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::header::{AUTHORIZATION, HeaderValue, LOCATION};
use hyper::{Method, Request, StatusCode};
use serde_json::json;

use super::budget::{self, Modifiers};
use super::delta::{self, DeltaError, DeltaRequest};
use super::download;
use super::faults::{Decision, Failure, Target};
use super::filter::{self, Matcher, Refusals};
use super::overrides::OverrideHost;
use super::request::{parse_pairs, percent_decode};
use super::respond::{self, Ctx, Resp};
use super::skus::SKUS;
use super::state::{State, add, bump};
use super::tenant::{MAIL_DOMAIN, TENANT_DISPLAY_NAME, TENANT_DOMAIN};
use super::token::{self, Claims, Invalid};
use super::users;
use crate::streams::{REPORT_PERIODS, Report};

/// A Graph resource this simulator serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Resource {
    Users,
    UsersCount,
    UsersDelta,
    Organization,
    SubscribedSkus,
    ReportSettings,
    Report(Report),
    /// `/v1.0/reports/<unknown or malformed>`
    BadReport,
    Unknown,
}

impl Resource {
    fn family(self) -> &'static str {
        match self {
            Resource::Users | Resource::UsersCount => "users",
            Resource::UsersDelta => "users_delta",
            Resource::Organization => "organization",
            Resource::SubscribedSkus => "subscribed_skus",
            Resource::ReportSettings => "report_settings",
            Resource::Report(r) => r.stream(),
            Resource::BadReport => "reports",
            Resource::Unknown => "other",
        }
    }
}

fn route(path: &str) -> Resource {
    let p = path.trim_end_matches('/');
    let lower = p.to_ascii_lowercase();
    match lower.as_str() {
        "/v1.0/users" => Resource::Users,
        "/v1.0/users/$count" => Resource::UsersCount,
        "/v1.0/users/delta" => Resource::UsersDelta,
        "/v1.0/organization" => Resource::Organization,
        "/v1.0/subscribedskus" => Resource::SubscribedSkus,
        "/v1.0/admin/reportsettings" => Resource::ReportSettings,
        _ if lower.starts_with("/v1.0/reports/") => {
            let name = &p["/v1.0/reports/".len()..];
            let name = name.split('(').next().unwrap_or(name);
            Report::ALL
                .into_iter()
                .find(|r| r.function().eq_ignore_ascii_case(name))
                .map_or(Resource::BadReport, Resource::Report)
        }
        _ => Resource::Unknown,
    }
}

const DIRECTORY_READ: &[&str] = &["Directory.Read.All", "Directory.ReadWrite.All"];

fn has_any(claims: &Claims, extra: &[&str]) -> bool {
    claims
        .roles
        .iter()
        .any(|r| DIRECTORY_READ.contains(&r.as_str()) || extra.contains(&r.as_str()))
}

/// Handles one request below `/v1.0`. Identity calls that were charged resource units say
/// how many in `x-ms-resource-unit`, as Graph does.
pub async fn handle(state: &Arc<State>, req: Request<Incoming>, ctx: Ctx) -> io::Result<Resp> {
    let mut ru = None;
    let mut answer = serve(state, req, ctx, &mut ru).await;
    if let (Ok(resp), Some(cost)) = (&mut answer, ru) {
        resp.headers_mut()
            .insert("x-ms-resource-unit", HeaderValue::from(cost));
    }
    answer
}

/// Takes `cost` resource units from the identity budget, or answers Graph's 429.
fn charge(state: &State, ctx: &Ctx, cost: u64, ru: &mut Option<u64>) -> Result<(), Box<Resp>> {
    match state.budget.charge(cost) {
        Ok(()) => {
            add(&state.stats.ru_spent, cost);
            *ru = Some(cost);
            Ok(())
        }
        Err(secs) => {
            bump(&state.stats.ru_throttled);
            Err(Box::new(respond::too_many_requests(
                ctx,
                Some(secs.to_string()),
            )))
        }
    }
}

/// The cost modifiers of a request's raw query (for resources that take no real query).
fn modifiers(pairs: &[(String, String)]) -> Modifiers {
    let get = |name: &str| {
        pairs
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    };
    Modifiers {
        select: get("$select").is_some(),
        expand: get("$expand").is_some(),
        small_top: get("$top")
            .and_then(|t| t.trim().parse::<u64>().ok())
            .is_some_and(|t| t < 20),
    }
}

fn refusals(state: &State) -> Refusals {
    Refusals {
        range: state.opts.refuse_range_filter,
        startswith: state.opts.refuse_startswith,
    }
}

async fn serve(
    state: &Arc<State>,
    req: Request<Incoming>,
    ctx: Ctx,
    ru: &mut Option<u64>,
) -> io::Result<Resp> {
    let Some(path) = percent_decode(req.uri().path(), false) else {
        state.stats.request("other");
        return Ok(respond::graph_error(
            &ctx,
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "The request URL is malformed.",
        ));
    };
    let resource = route(&path);
    state.stats.request(resource.family());

    let claims = match authenticate(state, &req, &ctx) {
        Ok(c) => c,
        Err(resp) => return Ok(*resp),
    };
    if let Some(o) = state.overrides.take(OverrideHost::Graph, &path) {
        return Ok(o.response(&ctx));
    }
    if req.method() != Method::GET {
        return Ok(respond::graph_error(
            &ctx,
            StatusCode::METHOD_NOT_ALLOWED,
            "Request_BadRequest",
            "Specified HTTP method is not allowed for the request target.",
        ));
    }
    let pairs = match parse_pairs(req.uri().query().unwrap_or(""), true) {
        Ok(p) => p,
        Err(e) => {
            return Ok(respond::graph_error(
                &ctx,
                StatusCode::BAD_REQUEST,
                "BadRequest",
                &e,
            ));
        }
    };
    let denied = || {
        respond::graph_error(
            &ctx,
            StatusCode::FORBIDDEN,
            "Authorization_RequestDenied",
            "Insufficient privileges to complete the operation.",
        )
    };

    match resource {
        Resource::Users | Resource::UsersCount => {
            if !has_any(&claims, &["User.Read.All", "User.ReadWrite.All"]) {
                return Ok(denied());
            }
            let eventual = req
                .headers()
                .get("consistencylevel")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.trim().eq_ignore_ascii_case("eventual"));
            if resource == Resource::UsersCount {
                return Ok(users_count(state, &ctx, eventual, &pairs, ru).await);
            }
            let access = users::Access {
                roles: &claims.roles,
                premium: state.opts.premium,
            };
            let q = match users::parse(&pairs, access, eventual, refusals(state)) {
                Ok(q) => q,
                Err(e) => {
                    // A refused sign-in activity request counts as one too.
                    let asked = pairs.iter().any(|(k, v)| {
                        k.eq_ignore_ascii_case("$select")
                            && v.split(',')
                                .any(|p| p.trim().eq_ignore_ascii_case(users::SIGN_IN_ACTIVITY))
                    });
                    if asked {
                        bump(&state.stats.sign_in_requests);
                    }
                    return Ok(respond::graph_error(&ctx, e.status, e.code, &e.message));
                }
            };
            // Listing sign-in activity draws on the identity-reports limit, not only RU.
            let sign_ins = q
                .select
                .as_ref()
                .is_some_and(|s| s.contains(&users::SIGN_IN_ACTIVITY));
            if sign_ins {
                bump(&state.stats.sign_in_requests);
                if let Err(wait) = state.admit_sign_in_call() {
                    bump(&state.stats.sign_in_throttled);
                    let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
                    return Ok(respond::too_many_requests(&ctx, Some(secs.to_string())));
                }
            }
            let cost = budget::cost(
                2,
                Modifiers {
                    select: q.select.is_some(),
                    expand: q.expand_manager,
                    small_top: q.top < 20,
                },
            );
            if let Err(resp) = charge(state, &ctx, cost, ru) {
                return Ok(*resp);
            }
            if q.expand_manager {
                bump(&state.stats.expanded_pages);
            }
            let Some((d, early)) = pre_faults(state, &ctx, Target::GraphJson).await else {
                return Err(reset_error());
            };
            if let Some(resp) = early {
                return Ok(resp);
            }
            let fresh = !pairs
                .iter()
                .any(|(k, _)| k.eq_ignore_ascii_case("$skiptoken"));
            if fresh && q.filter.is_some() {
                bump(&state.stats.ranges);
            }
            if q.count {
                bump(&state.stats.count_requests);
            }
            let mut out = Vec::with_capacity(64 + q.top as usize * 700);
            let epoch = state.epoch.get();
            let keys = match &q.filter {
                Some(_) => Some(upn_keys(state, epoch).await?),
                None => None,
            };
            let matcher = q
                .filter
                .as_ref()
                .zip(keys)
                .map(|(f, k)| Matcher::new(f, k, &state.tenant));
            // Repeats only on a page that is otherwise served whole (if slowly).
            let repeat = d
                .repeat
                .filter(|_| matches!(d.failure, None | Some(Failure::Trickle)));
            let repeated = users::write_page_repeating(
                &state.tenant,
                &q,
                matcher.as_ref(),
                epoch,
                &state.graph_url,
                d.short_page,
                repeat,
                &mut out,
            );
            state.users_page_served();
            if repeated.users > 0 {
                let s = &state.stats;
                if repeated.changed {
                    bump(&s.repeat_users_changed_pages);
                    add(&s.repeat_users_changed, repeated.users);
                } else {
                    bump(&s.repeat_users_pages);
                    add(&s.repeat_users, repeated.users);
                }
            }
            Ok(finish_json(state, &ctx, d, out))
        }
        Resource::UsersDelta => {
            if !has_any(&claims, &["User.Read.All", "User.ReadWrite.All"]) {
                return Ok(denied());
            }
            let prefer = req.headers().get("prefer").and_then(|v| v.to_str().ok());
            users_delta(state, &ctx, &pairs, &claims, prefer, ru).await
        }
        Resource::Organization => {
            if !has_any(
                &claims,
                &["Organization.Read.All", "Organization.ReadWrite.All"],
            ) {
                return Ok(denied());
            }
            if let Err(resp) = charge(state, &ctx, budget::cost(1, modifiers(&pairs)), ru) {
                return Ok(*resp);
            }
            json_resource(state, &ctx, || organization(state)).await
        }
        Resource::SubscribedSkus => {
            if !has_any(
                &claims,
                &["Organization.Read.All", "Organization.ReadWrite.All"],
            ) {
                return Ok(denied());
            }
            if let Err(resp) = charge(state, &ctx, budget::cost(3, modifiers(&pairs)), ru) {
                return Ok(*resp);
            }
            let tenant = state.tenant;
            let consumed = state
                .consumed_units
                .get_or_init(|| async move {
                    tokio::task::spawn_blocking(move || tenant.consumed_units())
                        .await
                        .unwrap_or_default()
                })
                .await
                .clone();
            json_resource(state, &ctx, || subscribed_skus(state, &consumed)).await
        }
        Resource::ReportSettings => {
            let readable = state.opts.report_settings_readable
                || claims
                    .roles
                    .iter()
                    .any(|r| r == "ReportSettings.Read.All" || r == "ReportSettings.ReadWrite.All");
            if !readable {
                return Ok(denied());
            }
            json_resource(state, &ctx, || {
                json!({
                    "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#admin/reportSettings/$entity",
                    "displayConcealedNames": state.opts.concealed,
                })
            })
            .await
        }
        Resource::Report(r) => report(state, &ctx, r, &path, &pairs, &claims).await,
        Resource::BadReport | Resource::Unknown => {
            let segment = path
                .trim_start_matches("/v1.0/")
                .trim_start_matches("reports/");
            Ok(respond::graph_error(
                &ctx,
                StatusCode::BAD_REQUEST,
                "BadRequest",
                &format!("Resource not found for the segment '{segment}'."),
            ))
        }
    }
}

fn reset_error() -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionReset, "simulated connection reset")
}

/// Checks the bearer token; on failure returns the 401 to send.
fn authenticate(state: &State, req: &Request<Incoming>, ctx: &Ctx) -> Result<Claims, Box<Resp>> {
    let header = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let bearer = header
        .strip_prefix("Bearer ")
        .or_else(|| header.strip_prefix("bearer "))
        .map(str::trim)
        .unwrap_or("");
    if bearer.is_empty() {
        return Err(Box::new(respond::unauthorized(
            ctx,
            "Access token is empty.",
        )));
    }
    let expired = || {
        bump(&state.stats.token_expired_401);
        respond::unauthorized(ctx, "Access token has expired or is not yet valid.")
    };
    let claims = match token::decode(bearer, &state.opts.tenant_id, ctx.now.timestamp()) {
        Ok(c) => c,
        Err(Invalid::Expired) => return Err(Box::new(expired())),
        Err(Invalid::Malformed) => {
            return Err(Box::new(respond::unauthorized(
                ctx,
                "Access token validation failure.",
            )));
        }
    };
    match state.token_status(&claims.jti) {
        None => {
            return Err(Box::new(respond::unauthorized(
                ctx,
                "Access token validation failure.",
            )));
        }
        Some(true) => return Err(Box::new(expired())),
        Some(false) => {}
    }
    if state.token_expiry_hits(state.faults().token_expiry_every) {
        state.revoke_token(&claims.jti);
        return Err(Box::new(expired()));
    }
    Ok(claims)
}

/// Rolls the dice, sleeps if slow, and answers injected status failures. Returns `None` when
/// the connection must be dropped before any response (a reset on a body-less response).
async fn pre_faults(state: &State, ctx: &Ctx, target: Target) -> Option<(Decision, Option<Resp>)> {
    let (f, d) = state.decide(target);
    if d.slow {
        bump(&state.stats.slow);
        tokio::time::sleep(Duration::from_millis(f.slow_ms)).await;
    }
    match d.failure {
        Some(Failure::Reset) if target == Target::ReportRedirect => {
            bump(&state.stats.resets);
            None
        }
        Some(failure) => Some((d, respond::status_failure(state, &f, failure, ctx))),
        None => Some((d, None)),
    }
}

/// Applies the faults that spoil a good JSON response.
fn finish_json(state: &State, ctx: &Ctx, d: Decision, body: Vec<u8>) -> Resp {
    match d.failure {
        Some(Failure::Html200) => {
            bump(&state.stats.html_200);
            respond::html_200(ctx)
        }
        Some(Failure::Truncate) => {
            bump(&state.stats.truncated);
            respond::truncated(ctx, StatusCode::OK, body)
        }
        Some(Failure::Reset) => {
            bump(&state.stats.resets);
            let cut = body.len() / 2;
            respond::reset(respond::json_response(ctx, StatusCode::OK, body), cut)
        }
        Some(Failure::BadLength) => {
            bump(&state.stats.bad_length);
            let len = body.len() as u64;
            respond::bad_length(respond::json_response(ctx, StatusCode::OK, body), len)
        }
        Some(Failure::Trickle) => {
            bump(&state.stats.trickled);
            respond::trickle(
                respond::json_response(ctx, StatusCode::OK, body),
                &state.faults(),
            )
        }
        _ => respond::json_response(ctx, StatusCode::OK, body),
    }
}

/// `GET /users/delta`: rounds of changes; a 410 when the delta link has expired.
async fn users_delta(
    state: &State,
    ctx: &Ctx,
    pairs: &[(String, String)],
    claims: &Claims,
    prefer: Option<&str>,
    ru: &mut Option<u64>,
) -> io::Result<Resp> {
    let now = ctx.now.timestamp();
    let req = match delta::parse(pairs, &claims.roles, now) {
        Ok(r) => r,
        Err(DeltaError::Query(e)) => {
            return Ok(respond::graph_error(ctx, e.status, e.code, &e.message));
        }
        Err(DeltaError::Gone) => return Ok(resync_required(state, ctx)),
    };
    let select = match &req {
        DeltaRequest::Initial { select }
        | DeltaRequest::Link { select, .. }
        | DeltaRequest::Latest { select } => select.is_some(),
        DeltaRequest::Page(p) => p.select.is_some(),
    };
    let m = Modifiers {
        select,
        ..Modifiers::default()
    };
    if let Err(resp) = charge(state, ctx, budget::cost(2, m), ru) {
        return Ok(*resp);
    }
    let via_delta_link = matches!(req, DeltaRequest::Link { .. });
    let target = if via_delta_link {
        Target::DeltaLink
    } else {
        Target::GraphJson
    };
    let Some((d, early)) = pre_faults(state, ctx, target).await else {
        return Err(reset_error());
    };
    if let Some(resp) = early {
        return Ok(resp);
    }
    if d.failure == Some(Failure::DeltaExpired) {
        return Ok(resync_required(state, ctx));
    }
    // Resolved only now, so a request answered by an injected fault never moves the tenant.
    let req = match req.resolve(&state.epoch) {
        Ok(p) => p,
        Err(_) => return Ok(resync_required(state, ctx)),
    };
    let asked = delta::preferred_page_size(prefer);
    let page = asked.unwrap_or(delta::DEFAULT_DELTA_PAGE);
    let mut out = Vec::with_capacity(64 + page as usize * 700);
    delta::write_page(&state.tenant, &req, page, &state.graph_url, now, &mut out);
    let mut resp = finish_json(state, ctx, d, out);
    if let Some(n) =
        asked.and_then(|n| HeaderValue::from_str(&format!("odata.maxpagesize={n}")).ok())
    {
        resp.headers_mut().insert("preference-applied", n);
    }
    Ok(resp)
}

/// `410 Gone`: the delta token is no longer valid; the Location restarts with an empty token.
fn resync_required(state: &State, ctx: &Ctx) -> Resp {
    bump(&state.stats.delta_gone_410);
    let mut resp = respond::graph_error(
        ctx,
        StatusCode::GONE,
        "syncStateNotFound",
        "The delta token has expired or is not valid. Restart synchronization with a full delta request (no token).",
    );
    let location = format!("{}/v1.0/users/delta?$deltatoken=", state.graph_url);
    if let Ok(v) = HeaderValue::from_str(&location) {
        resp.headers_mut().insert(LOCATION, v);
    }
    resp
}

async fn json_resource(
    state: &State,
    ctx: &Ctx,
    make: impl FnOnce() -> serde_json::Value,
) -> io::Result<Resp> {
    let Some((d, early)) = pre_faults(state, ctx, Target::GraphJson).await else {
        return Err(reset_error());
    };
    if let Some(resp) = early {
        return Ok(resp);
    }
    Ok(finish_json(
        state,
        ctx,
        d,
        serde_json::to_vec(&make()).unwrap_or_default(),
    ))
}

/// The UPN key index covering the tenant at `epoch`, built off the runtime's threads the
/// first time (a million UPNs take a moment).
async fn upn_keys(state: &Arc<State>, epoch: u64) -> io::Result<Arc<Vec<u32>>> {
    let st = Arc::clone(state);
    let bound = state.tenant.user_bound(epoch);
    tokio::task::spawn_blocking(move || st.upn_keys.get(&st.tenant, bound))
        .await
        .map_err(io::Error::other)
}

/// `GET /users/$count[?$filter=...]`: a plain-text number, only with
/// `ConsistencyLevel: eventual`.
async fn users_count(
    state: &Arc<State>,
    ctx: &Ctx,
    eventual: bool,
    pairs: &[(String, String)],
    ru: &mut Option<u64>,
) -> Resp {
    if !eventual {
        return respond::graph_error(
            ctx,
            StatusCode::BAD_REQUEST,
            "Request_BadRequest",
            "$count is not currently supported without the header 'ConsistencyLevel: eventual'.",
        );
    }
    let filter = pairs
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("$filter"))
        .map(|(_, v)| filter::parse(v, refusals(state)))
        .transpose();
    let filter = match filter {
        Ok(f) => f,
        Err(e) => return respond::graph_error(ctx, e.status, e.code, &e.message),
    };
    if let Err(resp) = charge(state, ctx, budget::cost(1, modifiers(pairs)), ru) {
        return *resp;
    }
    bump(&state.stats.count_requests);
    let epoch = state.epoch.get();
    let n = match &filter {
        None => state.tenant.users_at(epoch),
        Some(f) => match upn_keys(state, epoch).await {
            Ok(keys) => {
                users::count_matching(&state.tenant, &Matcher::new(f, keys, &state.tenant), epoch)
            }
            Err(_) => {
                return respond::graph_error(
                    ctx,
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "UnknownError",
                    "The UPN index could not be built.",
                );
            }
        },
    };
    respond::graph_response(
        ctx,
        StatusCode::OK,
        "text/plain",
        respond::full(n.to_string()),
    )
}

fn organization(state: &State) -> serde_json::Value {
    let id = &state.opts.tenant_id;
    json!({
        "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#organization",
        "value": [{
            "id": id,
            "deletedDateTime": null,
            "businessPhones": ["+1 425 555 0100"],
            "city": "Redmond",
            "country": null,
            "countryLetterCode": "US",
            "createdDateTime": "2016-04-11T09:30:06Z",
            "defaultUsageLocation": "US",
            "displayName": TENANT_DISPLAY_NAME,
            "marketingNotificationEmails": [],
            "onPremisesLastSyncDateTime": null,
            "onPremisesSyncEnabled": true,
            "partnerTenantType": null,
            "postalCode": "98052",
            "preferredLanguage": "en",
            "securityComplianceNotificationMails": [],
            "securityComplianceNotificationPhones": [],
            "state": "WA",
            "street": "One Microsoft Way",
            "technicalNotificationMails": [format!("admin@{MAIL_DOMAIN}")],
            "tenantType": "AAD",
            "directorySizeQuota": {"used": state.tenant.users + 50, "total": state.tenant.users.max(50_000) * 2},
            "assignedPlans": [{
                "assignedDateTime": "2016-04-11T09:36:57Z",
                "capabilityStatus": "Enabled",
                "service": "exchange",
                "servicePlanId": "efb87545-963c-4e0d-99df-69c6916d9eb0"
            }],
            "provisionedPlans": [{"capabilityStatus": "Enabled", "provisioningStatus": "Success", "service": "exchange"}],
            "privacyProfile": null,
            "verifiedDomains": [
                {
                    "capabilities": "Email, OfficeCommunicationsOnline",
                    "isDefault": false,
                    "isInitial": true,
                    "name": TENANT_DOMAIN,
                    "type": "Managed"
                },
                {
                    "capabilities": "Email, OfficeCommunicationsOnline",
                    "isDefault": true,
                    "isInitial": false,
                    "name": MAIL_DOMAIN,
                    "type": "Managed"
                }
            ]
        }]
    })
}

fn subscribed_skus(state: &State, consumed: &[u64]) -> serde_json::Value {
    let tid = &state.opts.tenant_id;
    let value: Vec<_> = SKUS
        .iter()
        .enumerate()
        .filter(|(_, s)| s.subscribed)
        .map(|(n, s)| {
            let used = consumed.get(n).copied().unwrap_or(0);
            let free = matches!(s.part_number, "POWER_BI_STANDARD" | "FLOW_FREE");
            let enabled = if free {
                1_000_000
            } else if used == 0 {
                5
            } else {
                used.div_ceil(25) * 25 + 25
            };
            let warning = if s.capability_status == "Warning" {
                enabled
            } else {
                0
            };
            json!({
                "accountName": TENANT_DISPLAY_NAME,
                "accountId": tid,
                "appliesTo": "User",
                "capabilityStatus": s.capability_status,
                "consumedUnits": used,
                "id": format!("{tid}_{}", s.sku_id),
                "prepaidUnits": {
                    "enabled": if warning > 0 { 0 } else { enabled },
                    "lockedOut": 0,
                    "suspended": 0,
                    "warning": warning
                },
                "servicePlans": s.plans.iter().map(|(id, name)| json!({
                    "servicePlanId": id,
                    "servicePlanName": name,
                    "provisioningStatus": "Success",
                    "appliesTo": "User"
                })).collect::<Vec<_>>(),
                "skuId": s.sku_id,
                "skuPartNumber": s.part_number,
                "subscriptionIds": [state.tenant_guid(n as u64)],
            })
        })
        .collect();
    json!({"@odata.context": "https://graph.microsoft.com/v1.0/$metadata#subscribedSkus", "value": value})
}

/// Parses `getX(period='D7')` / `getOffice365ActivationsUserDetail`; the period in days.
fn report_period(r: Report, path: &str) -> Result<u32, String> {
    let name_and_args = path.trim_end_matches('/').rsplit('/').next().unwrap_or("");
    let args = name_and_args.split_once('(').map(|(_, a)| a);
    match (r.takes_period(), args) {
        (false, None) => Ok(0),
        (false, Some(_)) => Err(format!(
            "{} takes no parameters: call /v1.0/reports/{} without (period=...).",
            r.function(),
            r.function()
        )),
        (true, None) => Err(format!(
            "{} requires a parameter: use {}(period='D7'), D30, D90 or D180.",
            r.function(),
            r.function()
        )),
        (true, Some(a)) => {
            let inner = a
                .strip_suffix(')')
                .ok_or_else(|| format!("Unterminated parameter list in '{name_and_args}'."))?;
            let Some((key, value)) = inner.split_once('=') else {
                return Err(format!(
                    "Invalid parameter '{inner}': expected period='D7'."
                ));
            };
            if key.trim() == "date" {
                return Err("The Graph simulator serves reports by period only; use (period='D7'), D30, D90 or D180.".into());
            }
            if key.trim() != "period" {
                return Err(format!(
                    "Unknown parameter '{}' for {}.",
                    key.trim(),
                    r.function()
                ));
            }
            let v = value.trim();
            let quoted = v.strip_prefix('\'').and_then(|v| v.strip_suffix('\''));
            match quoted {
                Some(p) if REPORT_PERIODS.contains(&p) => Ok(p[1..].parse().unwrap_or(30)),
                _ => Err(format!(
                    "Invalid value {v} for parameter 'period'. Supported values: 'D7', 'D30', 'D90', 'D180'."
                )),
            }
        }
    }
}

async fn report(
    state: &State,
    ctx: &Ctx,
    r: Report,
    path: &str,
    pairs: &[(String, String)],
    claims: &Claims,
) -> io::Result<Resp> {
    if !claims.roles.iter().any(|x| x == "Reports.Read.All") {
        return Ok(respond::graph_error(
            ctx,
            StatusCode::FORBIDDEN,
            "S2SUnauthorized",
            "Invalid scope claims/roles.",
        ));
    }
    let period = match report_period(r, path) {
        Ok(p) => p,
        Err(msg) => {
            return Ok(respond::graph_error(
                ctx,
                StatusCode::BAD_REQUEST,
                "BadRequest",
                &msg,
            ));
        }
    };
    for (k, v) in pairs {
        let csv_format = k.eq_ignore_ascii_case("$format") && v.eq_ignore_ascii_case("text/csv");
        if !csv_format {
            return Ok(respond::graph_error(
                ctx,
                StatusCode::BAD_REQUEST,
                "BadRequest",
                &format!(
                    "Query option '{k}={v}' is not supported for this report by the simulator (only $format=text/csv)."
                ),
            ));
        }
    }
    if let Err(wait) = state.admit_report_call(r) {
        bump(&state.stats.report_budget_429);
        let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        return Ok(respond::too_many_requests(
            ctx,
            Some(secs.max(1).to_string()),
        ));
    }
    let Some((_d, early)) = pre_faults(state, ctx, Target::ReportRedirect).await else {
        return Err(reset_error());
    };
    if let Some(resp) = early {
        return Ok(resp);
    }
    let location = format!(
        "{}/data/download/{}",
        state.download_url,
        download::mint(state, r, period, ctx.now)
    );
    let mut resp = respond::graph_response(ctx, StatusCode::FOUND, "text/plain", respond::empty());
    if let Ok(v) = HeaderValue::from_str(&location) {
        resp.headers_mut().insert(LOCATION, v);
    }
    resp.headers_mut().remove("odata-version");
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_paths_to_families() {
        assert_eq!(route("/v1.0/users"), Resource::Users);
        assert_eq!(route("/v1.0/subscribedSkus"), Resource::SubscribedSkus);
        assert_eq!(
            route("/v1.0/reports/getTeamsUserActivityUserDetail(period='D30')"),
            Resource::Report(Report::TeamsUserActivityUserDetail)
        );
        assert_eq!(
            route("/v1.0/reports/getNothing(period='D30')"),
            Resource::BadReport
        );
        assert_eq!(route("/v1.0/groups"), Resource::Unknown);
    }

    #[test]
    fn report_periods() {
        let teams = Report::TeamsUserActivityUserDetail;
        let act = Report::Office365ActivationsUserDetail;
        assert_eq!(
            report_period(
                teams,
                "/v1.0/reports/getTeamsUserActivityUserDetail(period='D7')"
            ),
            Ok(7)
        );
        assert_eq!(
            report_period(
                teams,
                "/v1.0/reports/getTeamsUserActivityUserDetail(period='D180')"
            ),
            Ok(180)
        );
        assert!(
            report_period(
                teams,
                "/v1.0/reports/getTeamsUserActivityUserDetail(period='D5')"
            )
            .is_err()
        );
        assert!(
            report_period(
                teams,
                "/v1.0/reports/getTeamsUserActivityUserDetail(period=D7)"
            )
            .is_err()
        );
        assert!(report_period(teams, "/v1.0/reports/getTeamsUserActivityUserDetail").is_err());
        assert_eq!(
            report_period(act, "/v1.0/reports/getOffice365ActivationsUserDetail"),
            Ok(0)
        );
        assert!(
            report_period(
                act,
                "/v1.0/reports/getOffice365ActivationsUserDetail(period='D7')"
            )
            .is_err()
        );
    }
}
