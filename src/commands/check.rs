//! `check -c FILE`: the pre-flight checklist an admin runs before the first run. Each line
//! passes or fails with the fix; later checks are skipped when an earlier one they need
//! failed. It reads as little as possible: `$top=1` users and one usage report (each report
//! API allows only 14 calls per 10 minutes).

use std::fmt::Write;
use std::path::Path;

use crate::concealment::{self, Setting, Tally};
use crate::config::Config;
use crate::error::ExitStatus;
use crate::graph::auth::{REQUIRED_ROLES, missing_roles};
use crate::graph::paging::Page;
use crate::graph::{CallStats, GraphClient, reports};
use crate::land::report_csv::ReportReader;
use crate::streams::Report;

/// One line of the checklist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    pub status: Status,
    pub name: &'static str,
    pub detail: String,
    pub fix: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Pass,
    /// Worth knowing, does not block a run (e.g. concealed names).
    Warn,
    Fail,
    /// Not tried because something it needs failed.
    Skip,
}

impl Status {
    fn label(self) -> &'static str {
        match self {
            Status::Pass => "[pass]",
            Status::Warn => "[warn]",
            Status::Fail => "[FAIL]",
            Status::Skip => "[skip]",
        }
    }
}

/// Pages of a walk of `users` at `page` a page, and the seconds they take at 1.5 s a page
/// with `slots` requests at once (Graph's observed page time, graph-perf.md §1).
fn walk_cost(users: u64, page: u32, slots: u64) -> (u64, f64) {
    let pages = users.div_ceil(u64::from(page)).max(1);
    (pages, pages.div_ceil(slots.max(1)) as f64 * 1.5)
}

/// The manager and sign-in activity lines: whether they are read, whether Graph serves them
/// here, and what they cost for this tenant's size (from `$count`).
async fn people_attributes(
    list: &mut Checklist,
    client: &GraphClient,
    cfg: &Config,
    stats: &CallStats,
) {
    use crate::config::SignInActivity;
    use crate::extract::sign_ins;
    use crate::graph::Headers;
    use crate::graph::rate_limit::{SIGN_IN_REQUESTS, SIGN_IN_WINDOW};
    use crate::streams::{SIGN_IN_PAGE_SIZE, USERS_EXPANDED_PAGE_SIZE, USERS_PAGE_SIZE};

    let counted = Headers {
        eventual: true,
        ..Headers::default()
    };
    let users = match client.v1("/users?$select=id&$top=1&$count=true") {
        Ok(url) => client
            .get_graph_with(&url, stats, "the users count", counted, |r| {
                Page::parse(r.body, r.ids)
            })
            .await
            .ok()
            .and_then(|p| p.count),
        Err(_) => None,
    };
    let n = users.unwrap_or(0);
    let size = users.map_or("this tenant".to_string(), |n| {
        format!("{} users", crate::human::thousands(n))
    });
    let slots = cfg.pipeline.users_concurrency;
    let (plain, plain_s) = walk_cost(n, USERS_PAGE_SIZE, slots);
    let (expanded, expanded_s) = walk_cost(n, USERS_EXPANDED_PAGE_SIZE, slots);
    let cost = format!(
        "Graph caps /users pages with $expand=manager at 100 users: {size} is {expanded} requests instead of {plain} (about {expanded_s:.0} s instead of {plain_s:.0} s at 1.5 s a page, {slots} at once)"
    );
    if cfg.pipeline.manager {
        list.push(Status::Pass, "manager", format!("read. {cost}"), None);
    } else {
        list.push(
            Status::Pass,
            "manager",
            format!("not read ([pipeline] manager = false). {cost}"),
            Some("set [pipeline] manager = true to export User.Manager, User.ManagerEmail and User.ManagerId".into()),
        );
    }

    let pages = n.div_ceil(u64::from(SIGN_IN_PAGE_SIZE)).max(1) + 1;
    let floor =
        (pages.saturating_sub(1) / SIGN_IN_REQUESTS as u64) as f64 * SIGN_IN_WINDOW.as_secs_f64();
    let sign_in_cost = format!(
        "{size} is {pages} requests at Graph's limit of {SIGN_IN_REQUESTS} per {} s: at least {:.1} min beside the users walk",
        SIGN_IN_WINDOW.as_secs(),
        floor / 60.0
    );
    let held =
        matches!(client.granted_roles().await, Ok(Some(r)) if sign_ins::holds_audit_role(&r));
    let setting = cfg.pipeline.sign_in_activity;
    let grant = "grant the app the application permission AuditLog.Read.All with admin consent (Entra admin center > App registrations > API permissions)";
    if setting == SignInActivity::Off {
        list.push(
            Status::Pass,
            "sign-in activity",
            format!("not read (sign_in_activity = \"off\"). {sign_in_cost}"),
            None,
        );
        return;
    }
    if setting == SignInActivity::Auto && !held {
        list.push(
            Status::Pass,
            "sign-in activity",
            format!("not read: the app lacks AuditLog.Read.All (sign_in_activity = \"auto\"). {sign_in_cost}"),
            Some(format!("to read last sign-in dates (User.LastSignInDate, and the date filter), {grant}; the tenant needs Entra ID P1 or P2")),
        );
        return;
    }
    match sign_ins::probe(client, stats).await {
        Ok(()) => list.push(
            Status::Pass,
            "sign-in activity",
            format!("available. {sign_in_cost}"),
            None,
        ),
        Err(crate::graph::GraphError::Api {
            status: 403,
            code,
            message,
            ..
        }) => list.push(
            Status::Warn,
            "sign-in activity",
            format!("refused by Graph (403 {code}): runs go on without sign-in dates"),
            Some(sign_ins::refusal(&code, &message).fix),
        ),
        Err(e) => list.push(Status::Warn, "sign-in activity", e.to_string(), None),
    }
}

/// The outcome of `check`.
#[derive(Debug, Clone)]
pub struct Checklist {
    pub items: Vec<Item>,
}

impl Checklist {
    fn push(
        &mut self,
        status: Status,
        name: &'static str,
        detail: impl Into<String>,
        fix: Option<String>,
    ) {
        self.items.push(Item {
            status,
            name,
            detail: detail.into(),
            fix,
        });
    }

    fn skip_rest(&mut self, names: &[&'static str]) {
        for n in names {
            self.push(Status::Skip, n, "needs the checks above", None);
        }
    }

    /// 1 when any required check failed, 3 with warnings only, else 0.
    pub fn exit_status(&self) -> ExitStatus {
        if self.items.iter().any(|i| i.status == Status::Fail) {
            ExitStatus::Failure
        } else if self.items.iter().any(|i| i.status == Status::Warn) {
            ExitStatus::SuccessWithWarnings
        } else {
            ExitStatus::Success
        }
    }

    /// The checklist as printed.
    pub fn render(&self) -> String {
        let mut s = String::new();
        for i in &self.items {
            let _ = writeln!(s, "{} {:<22} {}", i.status.label(), i.name, i.detail);
            if let Some(fix) = &i.fix {
                for (n, line) in fix.lines().enumerate() {
                    let _ = writeln!(
                        s,
                        "       {:<22} {}{line}",
                        "",
                        if n == 0 { "fix: " } else { "     " }
                    );
                }
            }
        }
        let failed = self
            .items
            .iter()
            .filter(|i| i.status == Status::Fail)
            .count();
        let _ = writeln!(
            s,
            "{}",
            if failed == 0 {
                "ready: `m365-connector run -c FILE` will work".to_string()
            } else {
                format!("{failed} check(s) failed: fix them and run `check` again")
            }
        );
        s
    }
}

const AFTER_LOGIN: &[&str] = &[
    "permissions",
    "users",
    "organization",
    "licences",
    "usage report",
    "name concealment",
];

/// The user-name cells of a downloaded report: rows, and how many are concealed, unknown or
/// empty.
fn tally_users(dest: &Path, report: Report) -> Tally {
    let mut t = Tally::default();
    if let Ok(mut reader) = ReportReader::open(dest) {
        let col = reader
            .header()
            .iter()
            .position(|h| h == report.user_column());
        let mut batch = reader.batch();
        while let Ok(n) = reader.read_into(&mut batch, 4096) {
            if n == 0 {
                break;
            }
            let columns = batch.finish();
            for r in 0..columns.len() {
                t.add(col.and_then(|i| columns.cell(i, r)));
            }
        }
    }
    t
}

/// Runs the checklist for the connector file at `path`.
pub async fn check(path: &Path) -> Checklist {
    let mut list = Checklist { items: Vec::new() };
    let cfg = match Config::load(path) {
        Ok(c) => {
            list.push(
                Status::Pass,
                "connector file",
                format!(
                    "{} ({:?}, server {:?}, {})",
                    path.display(),
                    c.connector.name,
                    c.connector.server,
                    c.schedule.plan.describe()
                ),
                None,
            );
            c
        }
        Err(e) => {
            list.push(
                Status::Fail,
                "connector file",
                e.to_string(),
                Some("edit the file; `m365-connector init` prints a commented template".into()),
            );
            list.skip_rest(&["client secret", "sign-in"]);
            list.skip_rest(AFTER_LOGIN);
            return list;
        }
    };
    let secret = match cfg.secret() {
        Ok(s) => {
            let source = match &cfg.tenant.secret {
                crate::config::SecretSource::Env { var, .. } => {
                    format!("from environment variable {var}")
                }
                crate::config::SecretSource::File { path, .. } => {
                    format!("from {} (owner-only)", path.display())
                }
            };
            list.push(Status::Pass, "client secret", source, None);
            s
        }
        Err(e) => {
            list.push(Status::Fail, "client secret", e.message.clone(), None);
            list.skip_rest(&["sign-in"]);
            list.skip_rest(AFTER_LOGIN);
            return list;
        }
    };
    // Quick verdicts: an unreachable host is named within seconds, not after max_wait_seconds.
    let client = match GraphClient::preflight(&cfg, secret) {
        Ok(c) => c,
        Err(e) => {
            list.push(Status::Fail, "sign-in", e.to_string(), None);
            list.skip_rest(AFTER_LOGIN);
            return list;
        }
    };
    if let Err(e) = client.token().await {
        list.push(
            Status::Fail,
            "sign-in",
            format!(
                "{} tenant {} in the {} cloud: {e}",
                cfg.tenant.login_url,
                cfg.tenant.tenant_id,
                cfg.tenant.cloud.name()
            ),
            None,
        );
        list.skip_rest(AFTER_LOGIN);
        return list;
    }
    list.push(
        Status::Pass,
        "sign-in",
        format!(
            "token from {} for tenant {}",
            cfg.tenant.login_url, cfg.tenant.tenant_id
        ),
        None,
    );

    match client.granted_roles().await {
        Ok(Some(roles)) => {
            let missing = missing_roles(&roles);
            if missing.is_empty() {
                list.push(
                    Status::Pass,
                    "permissions",
                    format!("roles: {}", roles.join(", ")),
                    None,
                );
            } else {
                list.push(
                    Status::Fail,
                    "permissions",
                    format!("the token lacks {} (granted: {})", missing.join(", "), if roles.is_empty() { "none".to_string() } else { roles.join(", ") }),
                    Some(format!(
                        "Entra admin center > App registrations > your app > API permissions: add the Microsoft Graph *application* permissions {} and click \"Grant admin consent\".\nUser.Read is a delegated permission: it does nothing for app-only access.",
                        REQUIRED_ROLES.join(", ")
                    )),
                );
            }
        }
        Ok(None) => list.push(
            Status::Warn,
            "permissions",
            "the token is not a readable JWT; Graph's answers below tell",
            None,
        ),
        Err(e) => list.push(Status::Fail, "permissions", e.to_string(), None),
    }

    let stats = CallStats::default();
    let (c, st) = (&client, &stats);
    let graph_check = move |path: &'static str| async move {
        let url = c.v1(path)?;
        c.get_graph(&url, st, path, |r| Page::parse(r.body, r.ids))
            .await
    };
    match graph_check("/users?$select=id,userPrincipalName&$top=1").await {
        Ok(p) => list.push(
            Status::Pass,
            "users",
            format!("readable ({} on the first page of $top=1)", p.len()),
            None,
        ),
        Err(e) => list.push(Status::Fail, "users", e.to_string(), None),
    }
    people_attributes(&mut list, &client, &cfg, &stats).await;
    match graph_check("/organization").await {
        Ok(p) => {
            let name = (!p.is_empty())
                .then(|| serde_json::from_slice::<serde_json::Value>(p.record(0)).ok())
                .flatten()
                .and_then(|v| {
                    v.get("displayName")
                        .and_then(|n| n.as_str())
                        .map(str::to_string)
                })
                .unwrap_or_default();
            list.push(Status::Pass, "organization", format!("{name:?}"), None)
        }
        Err(e) => list.push(Status::Fail, "organization", e.to_string(), None),
    }
    match graph_check("/subscribedSkus").await {
        Ok(p) => list.push(
            Status::Pass,
            "licences",
            format!("{} subscribed SKUs", p.len()),
            None,
        ),
        Err(e) => list.push(Status::Fail, "licences", e.to_string(), None),
    }

    // One report only: the smallest window, and it also shows whether names are concealed.
    // It holds the tenant's user names: it lands in a fresh owner-only folder, removed when
    // `dir` drops (also when the check is cancelled mid-download).
    let report = Report::Office365ActiveUserDetail;
    let mut tally = None;
    let downloaded = match tempfile::Builder::new().prefix("m365-check-").tempdir() {
        Ok(dir) => {
            let dest = dir.path().join("report.csv");
            reports::download_report(&client, report, "D7", &dest, &stats)
                .await
                .map(|bytes| (bytes, tally_users(&dest, report)))
                .map_err(|e| e.to_string())
        }
        Err(e) => Err(format!("creating a temporary folder for the report: {e}")),
    };
    match downloaded {
        Ok((bytes, t)) => {
            let rows = t.rows;
            list.push(
                Status::Pass,
                "usage report",
                format!("{} (D7): {rows} rows, {bytes} bytes; 1 of the 14 calls per 10 minutes this report allows", report.function()),
                None,
            );
            tally = Some(t);
        }
        Err(e) => list.push(Status::Fail, "usage report", e, None),
    }

    let setting = match client.v1("/admin/reportSettings") {
        Ok(url) => client
            .get_graph(&url, &stats, "report settings", |r| {
                Ok::<_, (String, _)>(concealment::parse_report_settings(&r.body))
            })
            .await
            .unwrap_or(Setting::Unknown),
        Err(_) => Setting::Unknown,
    };
    let detected = tally.map(|t| t.is_concealed());
    let (status, detail) = match (setting, detected) {
        (Setting::On, _) | (_, Some(true)) => (
            Status::Warn,
            "ON: report names are concealed; activity cannot be matched to people".to_string(),
        ),
        (Setting::Off, _) => (Status::Pass, "off (report settings)".to_string()),
        (Setting::Unknown, Some(false)) => (
            Status::Pass,
            "off (names in the report are readable)".to_string(),
        ),
        (Setting::Unknown, None) => (
            Status::Warn,
            "unknown (the report could not be read)".to_string(),
        ),
    };
    let fix = (status == Status::Warn).then(|| concealment::FIX.to_string());
    list.push(status, "name concealment", detail, fix);
    list
}
