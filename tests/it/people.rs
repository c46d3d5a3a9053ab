//! People attributes asset teams match and reclaim on (issue 16): the directory attributes
//! equal Graph's values, managers resolve from the run's own users (dangling ones counted,
//! never dropped), sign-in activity is read only when the app may, feeds the date filter, and
//! keeps under Graph's 5-requests-per-10-s budget; an incremental run with managers changing
//! equals a full run.

use std::collections::BTreeMap;

use m365_connector::cli::SqlFormat;
use m365_connector::commands::query::query;
use m365_connector::config::Config;
use m365_connector::manifest::SyncKind;
use m365_connector::pipeline::RunOutcome;
use m365_connector::sim::{DEFAULT_ROLES, Manager, SimOptions, Simulator};
use serde_json::Value;

use crate::util::{TempDir, assert_same_people, connector_file_with, run_jsonl};

fn config(dir: &TempDir, sim: &Simulator, opts: &SimOptions, tweaks: &[(&str, &str)]) -> Config {
    Config::load(&connector_file_with(dir.path(), sim, opts, tweaks)).unwrap()
}

async fn run(cfg: &Config) -> RunOutcome {
    run_jsonl(cfg)
        .await
        .unwrap_or_else(|e| panic!("run failed: {e}"))
}

/// Rows of `sql` over the staging database, as JSON objects.
fn rows(cfg: &Config, sql: &str) -> Vec<serde_json::Map<String, Value>> {
    query(&cfg.pipeline.data_dir, sql, SqlFormat::Json)
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| match serde_json::from_str(l).unwrap() {
            Value::Object(m) => m,
            other => panic!("not an object: {other}"),
        })
        .collect()
}

fn with_audit_role(mut opts: SimOptions) -> SimOptions {
    opts.roles = DEFAULT_ROLES
        .iter()
        .map(|r| (*r).to_string())
        .chain(["AuditLog.Read.All".to_string()])
        .collect();
    opts
}

const DIRECTORY: &[(&str, &str)] = &[
    ("onPremisesSamAccountName", "on_premises_sam_account_name"),
    (
        "onPremisesDistinguishedName",
        "on_premises_distinguished_name",
    ),
    ("onPremisesImmutableId", "on_premises_immutable_id"),
    ("onPremisesDomainName", "on_premises_domain_name"),
    ("onPremisesLastSyncDateTime", "on_premises_last_sync_at"),
    ("proxyAddresses", "proxy_addresses"),
    ("otherMails", "other_mails"),
    ("employeeType", "employee_type"),
    ("employeeHireDate", "employee_hire_at"),
    ("externalUserState", "external_user_state"),
    ("creationType", "creation_type"),
    ("preferredLanguage", "preferred_language"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn directory_attributes_and_managers_equal_graphs_values() {
    let opts = SimOptions {
        users: 1_200,
        seed: 161,
        epoch: Some(0),
        ..SimOptions::default()
    };
    let sim = Simulator::start(opts.clone()).await.unwrap();
    let dir = TempDir::new("people-directory");
    let cfg = config(&dir, &sim, &opts, &[("manager", "true")]);
    let o = run(&cfg).await;
    let stats = sim.stats();
    // `auto` without AuditLog.Read.All: no sign-in request at all.
    assert_eq!(stats.sign_in_requests, 0, "{stats:?}");
    assert!(!o.extracted.manifest.streams.contains_key("users_sign_in"));
    // Graph caps expanded pages at 100: at least 12 pages for 1,200 users.
    assert!(stats.expanded_pages >= 12, "{stats:?}");
    assert!(o.extracted.manifest.streams["users"].managers);

    let ts = |c: &str| format!("strftime({c}, '%Y-%m-%dT%H:%M:%SZ') AS {c}");
    let cols: Vec<String> = DIRECTORY
        .iter()
        .map(|(_, c)| match *c {
            "on_premises_last_sync_at" | "employee_hire_at" => ts(c),
            _ => c.to_string(),
        })
        .collect();
    let got: BTreeMap<String, serde_json::Map<String, Value>> = rows(
        &cfg,
        &format!(
            "SELECT id, {}, manager_id, manager_user_principal_name, manager_mail, manager_unresolved FROM int_people",
            cols.join(", ")
        ),
    )
    .into_iter()
    .map(|r| (r["id"].as_str().unwrap().to_string(), r))
    .collect();
    assert_eq!(got.len(), 1_200, "nobody is dropped");

    let t = sim.tenant();
    let (mut resolved, mut dangling, mut contacts, mut aliases, mut synced) = (0, 0, 0, 0, 0);
    for i in 0..t.users {
        let graph = t.user(i);
        let id = graph["id"].as_str().unwrap();
        let row = &got[id];
        for (prop, col) in DIRECTORY {
            // A JSON null from Graph is an absent key in the JSON lines DuckDB writes.
            let want = &graph[*prop];
            let have = row.get(*col).unwrap_or(&Value::Null);
            let empty_list = want.as_array().is_some_and(Vec::is_empty);
            assert!(
                have == want || (empty_list && have.is_null()),
                "user {i} {prop}: Graph {want}, int_people {have}"
            );
        }
        aliases += graph["proxyAddresses"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a.as_str().unwrap().starts_with("smtp:"))
            .count();
        synced += usize::from(!graph["onPremisesImmutableId"].is_null());
        let field = |k: &str| row.get(k).and_then(Value::as_str);
        match t.manager_at(i, 0) {
            None => assert_eq!(field("manager_id"), None, "user {i}"),
            Some(Manager::User(k)) => {
                let m = t.user(k);
                assert_eq!(field("manager_id"), m["id"].as_str(), "user {i}");
                assert_eq!(
                    field("manager_user_principal_name"),
                    m["userPrincipalName"].as_str()
                );
                assert_eq!(field("manager_mail"), m["mail"].as_str());
                assert_eq!(field("manager_unresolved"), None);
                resolved += 1;
            }
            Some(Manager::Gone(gid)) => {
                assert_eq!(field("manager_id"), Some(gid.as_str()));
                assert_eq!(field("manager_unresolved"), Some("not_in_run_users"));
                dangling += 1;
            }
            Some(Manager::Contact(cid)) => {
                assert_eq!(field("manager_id"), Some(cid.as_str()));
                assert_eq!(field("manager_unresolved"), Some("org_contact"));
                contacts += 1;
            }
        }
    }
    assert!(
        resolved > 900 && dangling > 3 && contacts > 0,
        "{resolved} {dangling} {contacts}"
    );
    assert!(aliases > 1_000 && synced > 400, "{aliases} {synced}");
    // The dangling references are counted, with their reasons, in the run's warnings.
    let w = o
        .warnings()
        .into_iter()
        .find(|w| w.code == "managers_unresolved")
        .expect("a managers_unresolved warning");
    assert!(
        w.message
            .starts_with(&format!("{} people", dangling + contacts))
            && w.message.contains(&format!("{dangling} not among"))
            && w.message.contains(&format!("{contacts} organizational")),
        "{}",
        w.message
    );
    // And exported: the default mapping's manager attributes.
    let exported = rows(
        &cfg,
        "SELECT count(*) FILTER (WHERE \"User.Manager\" IS NOT NULL) AS named, count(*) FILTER (WHERE \"User.ManagerId\" IS NOT NULL) AS ids FROM people",
    );
    assert!(exported[0]["ids"].as_i64() > exported[0]["named"].as_i64());
    sim.shutdown().await;
}

/// Transforms the last run again (no request) with `date_filter_days = days`: is `id` kept?
fn kept(cfg_dir: &TempDir, sim: &Simulator, opts: &SimOptions, days: i64, id: &str) -> bool {
    let path = connector_file_with(cfg_dir.path(), sim, opts, &[]);
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str(&format!("[filter]\ndate_filter_days = {days}\n"));
    std::fs::write(&path, text).unwrap();
    let cfg = Config::load(&path).unwrap();
    m365_connector::transform::transform(&cfg, None).unwrap();
    let r = rows(
        &cfg,
        &format!("SELECT kept_by_date_filter AS k FROM int_people WHERE id = '{id}'"),
    );
    r[0]["k"].as_bool().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_activity_with_the_role_is_read_and_feeds_the_date_filter() {
    let opts = with_audit_role(SimOptions {
        users: 1_500,
        seed: 162,
        epoch: Some(0),
        ..SimOptions::default()
    });
    let sim = Simulator::start(opts.clone()).await.unwrap();
    let dir = TempDir::new("people-sign-in");
    let cfg = config(&dir, &sim, &opts, &[]);
    let o = run(&cfg).await;
    let stats = sim.stats();
    // A probe, then 3 pages of 500: each under the budget, none throttled.
    assert_eq!(
        (stats.sign_in_requests, stats.sign_in_throttled),
        (4, 0),
        "{stats:?}"
    );
    assert_eq!(o.extracted.manifest.streams["users_sign_in"].rows, 1_500);

    // Every user's sign-in date is the latest of Graph's three (the year 1 is "never").
    let t = sim.tenant();
    let got: BTreeMap<String, Option<String>> = rows(
        &cfg,
        "SELECT id, strftime(last_sign_in_date, '%Y-%m-%d') AS d,
                strftime(greatest(created_date, CAST(last_password_change_at AS DATE),
                                  last_activity_date, latest_license_assign_date), '%Y-%m-%d') AS other
         FROM int_people",
    )
    .into_iter()
    .map(|r| {
        let d = r.get("d").and_then(Value::as_str).map(str::to_string);
        let other = r.get("other").and_then(Value::as_str).unwrap_or("").to_string();
        (r["id"].as_str().unwrap().to_string(), d.map(|d| format!("{d}|{other}")))
    })
    .collect();
    let mut only_sign_in = None;
    for i in 0..t.users {
        let id = t.user_id(i);
        let want = t.sign_ins_of(i).and_then(|s| {
            [s.last, s.last_non_interactive, s.last_successful]
                .into_iter()
                .flatten()
                .max()
                .map(|d| d.date().format("%Y-%m-%d").to_string())
        });
        let have = got[&id]
            .as_ref()
            .map(|s| s.split('|').next().unwrap().to_string());
        assert_eq!(have, want, "user {i}");
        if let Some(pair) = &got[&id] {
            let (d, other) = pair.split_once('|').unwrap();
            // A user whose sign-in is at least 3 days newer than any other date it has.
            let newer = chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d").unwrap()
                > chrono::NaiveDate::parse_from_str(other, "%Y-%m-%d").unwrap()
                    + chrono::Days::new(2);
            if newer && only_sign_in.is_none() {
                only_sign_in = Some((id.clone(), d.to_string()));
            }
        }
    }
    let (id, d) = only_sign_in.expect("a user whose latest date is a sign-in");
    let sign_in = chrono::NaiveDate::parse_from_str(&d, "%Y-%m-%d").unwrap();
    let days = (o.extracted.manifest.run_date - sign_in).num_days();
    assert!(days > 0);
    // The cutoff on the sign-in date keeps the user; a day later drops it.
    assert!(
        kept(&dir, &sim, &opts, days, &id),
        "cutoff on the sign-in date"
    );
    assert!(
        !kept(&dir, &sim, &opts, days - 1, &id),
        "cutoff a day after the sign-in"
    );
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_without_entra_id_p1_is_a_warning_with_the_fix_not_a_failed_run() {
    let opts = SimOptions {
        premium: false,
        ..with_audit_role(SimOptions {
            users: 300,
            seed: 163,
            ..SimOptions::default()
        })
    };
    let sim = Simulator::start(opts.clone()).await.unwrap();
    let dir = TempDir::new("people-no-p1");
    let cfg = config(&dir, &sim, &opts, &[]);
    let o = run(&cfg).await;
    let w = o
        .warnings()
        .into_iter()
        .find(|w| w.code == "sign_in_activity_unavailable")
        .expect("a sign_in_activity_unavailable warning");
    assert!(
        w.message.contains("P1") && w.fix.contains("sign_in_activity"),
        "{w:?}"
    );
    // One probe, no walk; the people are exported all the same.
    assert_eq!(sim.stats().sign_in_requests, 1);
    assert!(o.transformed.users == 300);
    sim.shutdown().await;
}

/// About 85 s: 41 requests at 5 per 10 s, which is the point.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rate_limiter_keeps_a_20000_user_walk_under_the_sign_in_budget() {
    let opts = with_audit_role(SimOptions {
        users: 20_000,
        seed: 164,
        epoch: Some(0),
        ..SimOptions::default()
    });
    let sim = Simulator::start(opts.clone()).await.unwrap();
    let dir = TempDir::new("people-sign-in-budget");
    let cfg = config(&dir, &sim, &opts, &[("request_timeout_seconds", "60")]);
    let o = run(&cfg).await;
    let stats = sim.stats();
    assert_eq!(
        stats.sign_in_throttled, 0,
        "the simulator answered 429: {stats:?}"
    );
    assert_eq!(
        stats.sign_in_requests, 41,
        "a probe and 40 pages of 500: {stats:?}"
    );
    assert_eq!(o.extracted.manifest.streams["users_sign_in"].rows, 20_000);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incremental_equals_full_with_managers_changing_between_runs() {
    let opts = SimOptions {
        users: 3_000,
        seed: 165,
        epoch: Some(0),
        ..SimOptions::default()
    };
    let sim = Simulator::start(opts.clone()).await.unwrap();
    let t = sim.tenant();
    let moved: Vec<u64> = (0..t.users)
        .filter(|i| t.exists_at(*i, 4) && t.manager_at(*i, 0) != t.manager_at(*i, 4))
        .collect();
    assert!(
        moved.len() > 10,
        "the simulator moves managers: {}",
        moved.len()
    );
    let dir = TempDir::new("people-incremental");
    let tweaks = [("manager", "true"), ("incremental", "true")];
    let cfg = config(&dir, &sim, &opts, &tweaks);
    let first = run(&cfg).await;
    assert_eq!(
        first.extracted.manifest.streams["users"].delta.sync,
        Some(SyncKind::Full)
    );
    sim.set_epoch(4);
    let second = run(&cfg).await;
    let users = &second.extracted.manifest.streams["users"];
    assert_eq!(users.delta.sync, Some(SyncKind::Delta));
    assert!(users.managers);
    // Managers that changed arrived as manager@delta; the others were kept from the snapshot.
    let ids: BTreeMap<String, Option<String>> = rows(&cfg, "SELECT id, manager_id FROM int_people")
        .into_iter()
        .map(|r| {
            (
                r["id"].as_str().unwrap().to_string(),
                r.get("manager_id")
                    .and_then(Value::as_str)
                    .map(str::to_string),
            )
        })
        .collect();
    for i in (0..t.users).filter(|i| t.exists_at(*i, 4)) {
        let want = t.manager_at(i, 4).map(|m| t.manager_id(&m));
        assert_eq!(ids[&t.user_id(i)], want, "user {i}");
    }
    let full_dir = TempDir::new("people-incremental-full");
    let full = run(&config(&full_dir, &sim, &opts, &[("manager", "true")])).await;
    assert_same_people(
        &std::fs::read_to_string(second.loaded.dir.join("people.jsonl")).unwrap(),
        &std::fs::read_to_string(full.loaded.dir.join("people.jsonl")).unwrap(),
        "incremental with managers changing",
    );
    sim.shutdown().await;
}
