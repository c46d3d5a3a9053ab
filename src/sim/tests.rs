//! Tests of the generator and, in process over real sockets, of the HTTP contract.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use chrono::NaiveDate;
use reqwest::StatusCode;
use serde_json::Value;

use super::*;
use crate::streams::{Report, USER_SELECT};

fn today() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 3, 15).unwrap()
}

fn tenant(users: u64, seed: u64, concealed: bool) -> Tenant {
    Tenant {
        seed,
        users,
        today: today(),
        concealed,
    }
}

fn is_hex32(s: &str) -> bool {
    s.len() == 32
        && s.chars()
            .all(|c| c.is_ascii_digit() || ('A'..='F').contains(&c))
}

/// Parses a served CSV body the way a careful client would.
fn parse_csv(body: &[u8]) -> (Vec<String>, Vec<Vec<String>>) {
    assert!(body.starts_with(BOM), "body starts with a UTF-8 BOM");
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_reader(&body[BOM.len()..]);
    let header = rdr.headers().unwrap().iter().map(str::to_string).collect();
    let rows = rdr
        .records()
        .map(|r| r.unwrap().iter().map(str::to_string).collect())
        .collect();
    (header, rows)
}

// ---------------------------------------------------------------- generator

#[test]
fn same_seed_same_users_different_seed_different_users() {
    let a = tenant(50, 7, false);
    let b = tenant(50, 7, false);
    let c = tenant(50, 8, false);
    for i in 0..50 {
        assert_eq!(a.user(i), b.user(i));
    }
    let differing = (0..50).filter(|i| a.user(*i) != c.user(*i)).count();
    assert_eq!(differing, 50);
    for r in Report::ALL {
        assert_eq!(
            a.report_rows(r).collect::<Vec<_>>(),
            b.report_rows(r).collect::<Vec<_>>()
        );
        assert_ne!(
            a.report_rows(r).collect::<Vec<_>>(),
            c.report_rows(r).collect::<Vec<_>>()
        );
    }
}

#[test]
fn users_have_every_selected_property_and_unique_ids() {
    let t = tenant(2500, 1, false);
    let mut ids = HashSet::new();
    let mut upns = HashSet::new();
    for i in 0..t.users {
        let u = t.user(i);
        for p in USER_SELECT.iter().chain(DEFAULT_USER_PROPERTIES) {
            assert!(u.contains_key(*p), "user {i} lacks {p}");
        }
        assert!(ids.insert(u["id"].as_str().unwrap().to_string()));
        assert!(upns.insert(u["userPrincipalName"].as_str().unwrap().to_lowercase()));
        assert_eq!(u["id"].as_str().unwrap(), t.user_id(i));
    }
}

#[test]
fn a_huge_tenant_costs_no_memory() {
    // A trillion users: nothing is materialised, any user or report row is computed on demand.
    let t = tenant(1_000_000_000_000, 5, false);
    assert!(std::mem::size_of::<Tenant>() <= 64);
    let start = Instant::now();
    let last = t.user(t.users - 1);
    assert!(
        last["userPrincipalName"]
            .as_str()
            .unwrap()
            .contains("999999999999@")
    );
    let rows: Vec<_> = t
        .report_rows(Report::TeamsUserActivityUserDetail)
        .take(1000)
        .collect();
    assert_eq!(rows.len(), 1000);
    let mut page = Vec::new();
    let q = users::UsersQuery {
        offset: t.users - 999,
        top: 999,
        select: None,
        count: false,
        filter: None,
        expand_manager: false,
    };
    users::write_page(&t, &q, 0, "http://127.0.0.1:1", None, &mut page);
    let v: Value = serde_json::from_slice(&page).unwrap();
    assert_eq!(v["value"].as_array().unwrap().len(), 999);
    assert!(v.get("@odata.nextLink").is_none());
    assert!(start.elapsed() < Duration::from_secs(5));
}

#[test]
fn nasty_values_show_up_in_2500_users_and_in_the_reports() {
    let t = tenant(2500, 1, false);
    let users: Vec<_> = (0..t.users).map(|i| t.user(i)).collect();
    let names: Vec<&str> = users
        .iter()
        .map(|u| u["displayName"].as_str().unwrap())
        .collect();
    let has = |f: &dyn Fn(&str) -> bool| names.iter().any(|n| f(n));
    assert!(has(&|n| n.contains(',')), "comma");
    assert!(has(&|n| n.contains('"')), "quote");
    assert!(has(&|n| n.contains('\n') && !n.contains('\r')), "LF");
    assert!(has(&|n| n.contains("\r\n")), "CRLF");
    assert!(has(&|n| n.contains('\u{200d}')), "ZWJ emoji");
    assert!(
        has(&|n| n.chars().any(|c| ('\u{0600}'..='\u{06ff}').contains(&c))),
        "Arabic"
    );
    assert!(
        has(&|n| n.chars().any(|c| ('\u{0590}'..='\u{05ff}').contains(&c))),
        "Hebrew"
    );
    assert!(has(&|n| n.contains('\u{301}')), "combining accent");
    assert!(has(&|n| n.starts_with(' ') && n.ends_with(' ')), "padding");
    let long_titles = users
        .iter()
        .filter(|u| u["jobTitle"].as_str().is_some_and(|j| j.len() >= 1024))
        .count();
    assert!(long_titles > 0, "1-2 KB job titles");
    assert!(
        users.iter().any(|u| u["jobTitle"].is_null()),
        "null optional properties"
    );
    assert!(
        users
            .iter()
            .any(|u| u["businessPhones"] == serde_json::json!([])),
        "empty businessPhones"
    );
    let guests: Vec<_> = users.iter().filter(|u| u["userType"] == "Guest").collect();
    assert!(!guests.is_empty());
    for g in &guests {
        let upn = g["userPrincipalName"].as_str().unwrap();
        assert!(upn.contains("#EXT#@contoso.onmicrosoft.com"), "{upn}");
        assert!(
            !g["mail"]
                .as_str()
                .unwrap()
                .ends_with("contoso.onmicrosoft.com")
        );
    }
    assert!(
        users.iter().any(|u| u["accountEnabled"] == false),
        "disabled accounts"
    );
    assert!(
        users
            .iter()
            .any(|u| u["assignedLicenses"].as_array().unwrap().is_empty())
    );
    assert!(
        users
            .iter()
            .flat_map(|u| u["assignedLicenses"].as_array().unwrap().clone())
            .any(|l| l["skuId"] == "b05e124f-c7cc-45a0-a6aa-8cf78c946968"),
        "a skuId missing from subscribedSkus"
    );

    // The same nasty names in the reports' Display Name columns, and UPN case drift.
    let rows: Vec<_> = t.report_rows(Report::EmailActivityUserDetail).collect();
    let report_names: HashSet<&str> = rows.iter().map(|r| r[2].as_str()).collect();
    assert!(report_names.iter().any(|n| n.contains("\r\n")));
    assert!(report_names.iter().any(|n| n.contains('\u{200d}')));
    let upns: HashSet<String> = users
        .iter()
        .map(|u| u["userPrincipalName"].as_str().unwrap().to_string())
        .collect();
    let shouted = rows
        .iter()
        .filter(|r| !upns.contains(&r[1]) && upns.contains(&capitalised_like(&r[1], &upns)))
        .count();
    assert!(shouted > 0, "reports change the UPN's case for some users");
}

/// The /users spelling of a report UPN that differs only in case, if any.
fn capitalised_like(upn: &str, upns: &HashSet<String>) -> String {
    upns.iter()
        .find(|u| u.eq_ignore_ascii_case(upn))
        .cloned()
        .unwrap_or_default()
}

#[test]
fn reports_cover_most_users_plus_deleted_report_only_and_unknown_rows() {
    let t = tenant(2500, 2, false);
    let users: Vec<_> = (0..t.users).map(|i| t.user(i)).collect();
    let upns: HashSet<String> = users
        .iter()
        .map(|u| u["userPrincipalName"].as_str().unwrap().to_lowercase())
        .collect();
    let ids: HashSet<&str> = users.iter().map(|u| u["id"].as_str().unwrap()).collect();
    for r in Report::ALL {
        let header = t.report_header(r);
        assert_eq!(header, r.documented_columns());
        let col = |name: &str| header.iter().position(|h| h == name).unwrap();
        let upn_col = col(r.user_column());
        let rows: Vec<_> = t.report_rows(r).collect();
        assert!(
            rows.iter().all(|row| row.len() == header.len()),
            "{r}: ragged rows"
        );
        let in_users: HashSet<String> = rows
            .iter()
            .map(|row| row[upn_col].to_lowercase())
            .filter(|u| upns.contains(u))
            .collect();
        let share = in_users.len() as f64 / t.users as f64;
        assert!((0.80..=0.96).contains(&share), "{r}: {share}");
        let strangers = rows
            .iter()
            .filter(|row| !upns.contains(&row[upn_col].to_lowercase()))
            .count();
        assert!(strangers >= 3, "{r}: deleted / report-only / unknown rows");
        if r != Report::OneDriveUsageAccountDetail {
            let unknown: Vec<_> = rows
                .iter()
                .filter(|row| row[upn_col] == "(Unknown)")
                .collect();
            // Two (Unknown) subjects; in activations one may have two product rows.
            let expected = if r == Report::Office365ActivationsUserDetail {
                2..=4
            } else {
                2..=2
            };
            assert!(expected.contains(&unknown.len()), "{r}: {}", unknown.len());
            if let Some(d) = header.iter().position(|h| h == "Display Name") {
                assert!(unknown.iter().all(|row| row[d].is_empty()));
            }
        }
        if let Some(is_del) = header.iter().position(|h| h == "Is Deleted") {
            let deleted: Vec<_> = rows.iter().filter(|row| row[is_del] == "True").collect();
            assert!(!deleted.is_empty(), "{r}: deleted users");
            assert!(
                deleted
                    .iter()
                    .all(|row| !upns.contains(&row[upn_col].to_lowercase()))
            );
            if let Some(dd) = header.iter().position(|h| h == "Deleted Date") {
                assert!(
                    deleted
                        .iter()
                        .all(|row| NaiveDate::parse_from_str(&row[dd], "%Y-%m-%d").is_ok())
                );
            }
            assert!(
                rows.iter()
                    .all(|row| row[is_del] == "True" || row[is_del] == "False")
            );
        }
        assert!(
            rows.iter().all(|row| row[0] == "2026-03-13"),
            "{r}: refresh date is today - 2"
        );
    }
    // Activations: one row per product type, two for some users.
    let act: Vec<_> = t
        .report_rows(Report::Office365ActivationsUserDetail)
        .collect();
    let mut per_user = std::collections::HashMap::new();
    for row in &act {
        *per_user.entry(row[1].to_lowercase()).or_insert(0) += 1;
    }
    assert!(per_user.values().any(|n| *n == 2));
    // Teams User Id is the Graph id; OneDrive keys by owner and site.
    let teams: Vec<_> = t.report_rows(Report::TeamsUserActivityUserDetail).collect();
    assert!(
        teams
            .iter()
            .filter(|row| ids.contains(row[3].as_str()))
            .count()
            > 2000
    );
    for row in t.report_rows(Report::OneDriveUsageAccountDetail) {
        assert!(
            row[1].starts_with("https://contoso-my.sharepoint.com/personal/"),
            "{}",
            row[1]
        );
        assert!(row[9].contains('@'));
    }
}

#[test]
fn dates_spread_so_a_date_filter_has_work() {
    let t = tenant(2500, 3, false);
    let cutoff_30 = today() - chrono::Days::new(30);
    let created: Vec<NaiveDate> = (0..t.users)
        .map(|i| {
            let s = t.user(i)["createdDateTime"].as_str().unwrap().to_string();
            NaiveDate::parse_from_str(&s[..10], "%Y-%m-%d").unwrap()
        })
        .collect();
    assert!(created.iter().any(|d| *d >= cutoff_30));
    assert!(
        created
            .iter()
            .any(|d| *d < today() - chrono::Days::new(5 * 365))
    );
    let rows: Vec<_> = t.report_rows(Report::Office365ActiveUserDetail).collect();
    let exchange: Vec<Option<NaiveDate>> = rows
        .iter()
        .map(|r| NaiveDate::parse_from_str(&r[11], "%Y-%m-%d").ok())
        .collect();
    assert!(exchange.iter().any(Option::is_none), "never active");
    assert!(exchange.iter().flatten().any(|d| *d >= cutoff_30));
    assert!(exchange.iter().flatten().any(|d| *d < cutoff_30));
    assert!(
        exchange
            .iter()
            .flatten()
            .all(|d| *d >= today() - chrono::Days::new(220))
    );
}

#[test]
fn concealed_reports_hide_every_name() {
    let t = tenant(500, 4, true);
    for r in Report::ALL {
        let header = t.report_header(r);
        let name_cols: Vec<usize> = header
            .iter()
            .enumerate()
            .filter(|(_, h)| {
                matches!(
                    h.as_str(),
                    "User Principal Name"
                        | "Display Name"
                        | "User Id"
                        | "Site URL"
                        | "Owner Display Name"
                        | "Owner Principal Name"
                )
            })
            .map(|(i, _)| i)
            .collect();
        assert!(!name_cols.is_empty());
        for row in t.report_rows(r) {
            if row.contains(&"(Unknown)".to_string()) {
                continue;
            }
            for c in &name_cols {
                assert!(is_hex32(&row[*c]), "{r} {}: {:?}", header[*c], row[*c]);
                assert!(!row[*c].contains('@'));
            }
        }
    }
    // Deterministic from the real value: the same user hashes the same in two reports.
    let email: HashSet<String> = t
        .report_rows(Report::EmailActivityUserDetail)
        .map(|r| r[1].clone())
        .collect();
    let mailbox: HashSet<String> = t
        .report_rows(Report::MailboxUsageDetail)
        .map(|r| r[1].clone())
        .collect();
    assert!(email.intersection(&mailbox).count() > 300);
}

#[test]
fn csv_bodies_parse_back_to_exactly_the_rows() {
    let t = tenant(2500, 1, false);
    for r in Report::ALL {
        let body = CsvBody::new(t.report_header(r), t.report_rows(r)).collect_all();
        assert!(body.ends_with(b"\r\n\r\n"), "{r}: trailing blank line");
        let (header, rows) = parse_csv(&body);
        assert_eq!(header, t.report_header(r), "{r}");
        let expected: Vec<_> = t.report_rows(r).collect();
        assert_eq!(rows.len(), expected.len(), "{r}");
        assert_eq!(rows, expected, "{r}");
    }
}

#[test]
fn consumed_units_match_assigned_licenses() {
    let t = tenant(1000, 6, false);
    let consumed = t.consumed_units();
    let mut e3 = 0;
    for i in 0..t.users {
        let lic = t.user(i)["assignedLicenses"].clone();
        e3 += lic
            .as_array()
            .unwrap()
            .iter()
            .filter(|l| l["skuId"] == "05e9a617-0261-4cee-bb44-138d3ef5d965")
            .count();
    }
    assert_eq!(consumed[skus::SPE_E3] as usize, e3);
    assert!(e3 > 300);
}

#[test]
fn download_tokens_expire_after_five_minutes_and_resist_tampering() {
    let st = state::State::new(SimOptions::default(), "http://g".into(), "http://d".into());
    let now = chrono::Utc::now();
    let tok = download::mint(&st, Report::MailboxUsageDetail, 7, now);
    assert_eq!(
        download::open(&st, &tok, now),
        Ok((Report::MailboxUsageDetail, 7))
    );
    assert_eq!(
        download::open(&st, &tok, now + chrono::Duration::seconds(299)),
        Ok((Report::MailboxUsageDetail, 7))
    );
    assert_eq!(
        download::open(&st, &tok, now + chrono::Duration::seconds(301)),
        Err(download::TokenError::Expired)
    );
    let mut bad = tok.clone();
    bad.replace_range(5..6, if &tok[5..6] == "A" { "B" } else { "A" });
    assert_eq!(
        download::open(&st, &bad, now),
        Err(download::TokenError::Invalid)
    );
    // Another simulator instance does not accept it.
    let other = state::State::new(SimOptions::default(), "http://g".into(), "http://d".into());
    assert_eq!(
        download::open(&other, &tok, now),
        Err(download::TokenError::Invalid)
    );
}

// ---------------------------------------------------------------- over HTTP

/// A plain client: no `Accept-Encoding`, so bodies and their lengths are as served (the
/// gzip tests ask for compression themselves).
fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_gzip()
        .build()
        .unwrap()
}

async fn start(opts: SimOptions) -> Simulator {
    Simulator::start(SimOptions {
        today: today(),
        ..opts
    })
    .await
    .unwrap()
}

async fn token_response(
    c: &reqwest::Client,
    sim: &Simulator,
    tenant: &str,
    secret: &str,
) -> reqwest::Response {
    let o = sim.options();
    c.post(format!("{}/{tenant}/oauth2/v2.0/token", sim.login_url()))
        .form(&[
            ("client_id", o.client_id.as_str()),
            ("client_secret", secret),
            ("scope", "https://graph.microsoft.com/.default"),
            ("grant_type", "client_credentials"),
        ])
        .send()
        .await
        .unwrap()
}

async fn token(c: &reqwest::Client, sim: &Simulator) -> String {
    let resp = token_response(
        c,
        sim,
        &sim.options().tenant_id,
        &sim.options().client_secret,
    )
    .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["token_type"], "Bearer");
    assert_eq!(v["expires_in"], 3599);
    v["access_token"].as_str().unwrap().to_string()
}

async fn get(c: &reqwest::Client, url: &str, token: &str) -> reqwest::Response {
    c.get(url).bearer_auth(token).send().await.unwrap()
}

const SELECT: &str = "id,userPrincipalName,displayName,givenName,surname,mail,accountEnabled,userType,createdDateTime,department,jobTitle,officeLocation,companyName,employeeId,mobilePhone,businessPhones,city,country,state,usageLocation,onPremisesSyncEnabled,lastPasswordChangeDateTime,assignedLicenses";

/// Walks /users to the end; returns the ids seen and the number of pages.
async fn walk_users(
    c: &reqwest::Client,
    sim: &Simulator,
    tok: &str,
    top: u32,
) -> (Vec<String>, u32) {
    let mut url = format!("{}/v1.0/users?$select={SELECT}&$top={top}", sim.graph_url());
    let mut ids = Vec::new();
    let mut pages = 0;
    loop {
        let resp = get(c, &url, tok).await;
        assert_eq!(resp.status(), StatusCode::OK, "{url}");
        assert!(resp.headers().contains_key("request-id"));
        let v: Value = resp.json().await.unwrap();
        pages += 1;
        for u in v["value"].as_array().unwrap() {
            assert_eq!(
                u.as_object().unwrap().len(),
                23,
                "exactly the selected properties"
            );
            ids.push(u["id"].as_str().unwrap().to_string());
        }
        match v["@odata.nextLink"].as_str() {
            Some(next) => {
                assert!(next.starts_with(&sim.graph_url()), "{next}");
                url = next.to_string();
            }
            None => break,
        }
    }
    (ids, pages)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn walks_users_and_follows_a_report_to_the_download_host() {
    let sim = start(SimOptions {
        users: 2500,
        ..Default::default()
    })
    .await;
    let c = client();
    let tok = token(&c, &sim).await;
    let (ids, pages) = walk_users(&c, &sim, &tok, 999).await;
    assert_eq!(ids.len(), 2500);
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), 2500);
    assert_eq!(pages, 3);
    assert_eq!(ids[0], sim.tenant().user_id(0));

    let r = Report::TeamsUserActivityUserDetail;
    let resp = get(
        &c,
        &format!("{}/v1.0{}", sim.graph_url(), r.path("D30")),
        &tok,
    )
    .await;
    assert_eq!(resp.status(), StatusCode::FOUND);
    assert_eq!(resp.headers()["content-type"], "text/plain");
    let location = resp.headers()["location"].to_str().unwrap().to_string();
    assert!(
        location.starts_with(&format!("{}/data/download/", sim.download_url())),
        "{location}"
    );
    assert!(
        location.starts_with("http://localhost:"),
        "a different host name than 127.0.0.1"
    );
    let dl = c.get(&location).send().await.unwrap();
    assert_eq!(dl.status(), StatusCode::OK);
    assert_eq!(dl.headers()["content-type"], "application/octet-stream");
    let body = dl.bytes().await.unwrap();
    assert!(body.starts_with(b"\xEF\xBB\xBFReport Refresh Date,Tenant Display Name,"));
    let (header, rows) = parse_csv(&body);
    assert_eq!(header, r.documented_columns());
    assert_eq!(rows, sim.tenant().report_rows(r).collect::<Vec<_>>());

    // A forwarded bearer token is counted by the download host.
    let _ = c.get(&location).bearer_auth(&tok).send().await.unwrap();

    let stats = sim.stats();
    assert_eq!(stats.tokens_issued, 1);
    assert_eq!(stats.requests["token"], 1);
    assert_eq!(stats.requests["users"], 3);
    assert_eq!(stats.requests[r.stream()], 1);
    assert_eq!(stats.requests["download"], 2);
    assert_eq!(stats.download_authorization_headers, 1);
    assert_eq!(stats.total_requests, 1 + 3 + 1 + 2);
    assert_eq!(stats.status_429 + stats.resets + stats.truncated, 0);

    // The stats endpoint needs no auth and serves the same snapshot.
    let served: SimStats = c
        .get(format!("{}/_sim/stats", sim.graph_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let now = sim.stats();
    assert_eq!(served, now, "{served:?}\n{now:?}");
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_endpoint_errors_follow_entra() {
    let sim = start(SimOptions::default()).await;
    let c = client();
    let o = sim.options().clone();
    let check = |v: &Value, code: u64| {
        assert_eq!(v["error_codes"], serde_json::json!([code]));
        let d = v["error_description"].as_str().unwrap();
        assert!(d.starts_with(&format!("AADSTS{code}:")), "{d}");
        assert!(d.contains("Trace ID: ") && d.contains("Correlation ID: "));
        assert!(
            !d.contains("definitely-wrong"),
            "the secret is never echoed"
        );
        assert!(
            v["trace_id"].is_string()
                && v["correlation_id"].is_string()
                && v["timestamp"].is_string()
        );
    };
    let resp = token_response(&c, &sim, &o.tenant_id, "definitely-wrong").await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"], "invalid_client");
    check(&v, 7000215);

    let resp = token_response(
        &c,
        &sim,
        "11111111-2222-3333-4444-555555555555",
        &o.client_secret,
    )
    .await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    check(&resp.json().await.unwrap(), 90002);

    let resp = token_response(&c, &sim, "not_a_tenant", &o.client_secret).await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    check(&resp.json().await.unwrap(), 900023);

    let resp = token_response(&c, &sim, "contoso.onmicrosoft.com", &o.client_secret).await;
    assert_eq!(
        resp.status(),
        StatusCode::OK,
        "the tenant domain works as well as the GUID"
    );

    let resp = c
        .post(format!(
            "{}/{}/oauth2/v2.0/token",
            sim.login_url(),
            o.tenant_id
        ))
        .form(&[
            ("client_id", "wrong"),
            ("client_secret", "x"),
            ("scope", "a/.default"),
            ("grant_type", "client_credentials"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"], "unauthorized_client");

    // Garbage bodies are a 400, not a crash.
    let resp = c
        .post(format!(
            "{}/{}/oauth2/v2.0/token",
            sim.login_url(),
            o.tenant_id
        ))
        .body("%%%&&&=%zz")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);

    sim.set_faults("expired-secret".parse().unwrap());
    let resp = token_response(&c, &sim, &o.tenant_id, &o.client_secret).await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    check(&resp.json().await.unwrap(), 7000222);
    assert_eq!(sim.stats().tokens_issued, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graph_refuses_bad_tokens_roles_and_queries() {
    let sim = start(SimOptions::default()).await;
    let c = client();
    let g = sim.graph_url();

    let resp = c
        .get(format!("{g}/v1.0/users"))
        .header("client-request-id", "abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(resp.headers()["client-request-id"], "abc-123");
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["code"], "InvalidAuthenticationToken");
    assert_eq!(v["error"]["innerError"]["client-request-id"], "abc-123");
    assert!(v["error"]["innerError"]["request-id"].is_string());

    let resp = get(&c, &format!("{g}/v1.0/users"), "forged.token.here").await;
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["message"], "Access token validation failure.");

    let tok = token(&c, &sim).await;
    let v: Value = get(&c, &format!("{g}/v1.0/users?$top=1000"), &tok)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        v["error"]["message"],
        "Invalid page size specified: '1000'. Must be between 1 and 999 inclusive."
    );
    let resp = get(&c, &format!("{g}/v1.0/users?$select=id,shoeSize"), &tok).await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert!(resp.text().await.unwrap().contains("shoeSize"));
    assert_eq!(
        get(&c, &format!("{g}/v1.0/users?$select=skills"), &tok)
            .await
            .status(),
        StatusCode::NOT_IMPLEMENTED
    );
    assert_eq!(
        get(&c, &format!("{g}/v1.0/users?%zz"), &tok).await.status(),
        StatusCode::BAD_REQUEST
    );

    // Default property set without $select.
    let v: Value = get(&c, &format!("{g}/v1.0/users?$top=5"), &tok)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        v["@odata.context"],
        "https://graph.microsoft.com/v1.0/$metadata#users"
    );
    let keys: HashSet<&str> = v["value"][0]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys, DEFAULT_USER_PROPERTIES.iter().copied().collect());

    // A next link with re-appended options is refused; verbatim it works.
    let next = v["@odata.nextLink"].as_str().unwrap().to_string();
    assert_eq!(
        get(&c, &format!("{next}&$top=5"), &tok).await.status(),
        StatusCode::BAD_REQUEST
    );
    assert_eq!(get(&c, &next, &tok).await.status(), StatusCode::OK);

    // Reports: bad period, activations with a period.
    let bad = get(
        &c,
        &format!("{g}/v1.0/reports/getMailboxUsageDetail(period='D5')"),
        &tok,
    )
    .await;
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    let act = get(
        &c,
        &format!("{g}/v1.0/reports/getOffice365ActivationsUserDetail(period='D7')"),
        &tok,
    )
    .await;
    assert_eq!(act.status(), StatusCode::BAD_REQUEST);
    let act = get(
        &c,
        &format!("{g}/v1.0/reports/getOffice365ActivationsUserDetail"),
        &tok,
    )
    .await;
    assert_eq!(act.status(), StatusCode::FOUND);

    // reportSettings needs a permission the connector doesn't have.
    let rs = get(&c, &format!("{g}/v1.0/admin/reportSettings"), &tok).await;
    assert_eq!(rs.status(), StatusCode::FORBIDDEN);
    let v: Value = rs.json().await.unwrap();
    assert_eq!(v["error"]["code"], "Authorization_RequestDenied");

    let org: Value = get(&c, &format!("{g}/v1.0/organization"), &tok)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(org["value"][0]["id"], sim.options().tenant_id.as_str());
    let skus: Value = get(&c, &format!("{g}/v1.0/subscribedSkus"), &tok)
        .await
        .json()
        .await
        .unwrap();
    let list = skus["value"].as_array().unwrap();
    assert!((5..=8).contains(&list.len()));
    let visio = list
        .iter()
        .find(|s| s["skuPartNumber"] == "VISIOCLIENT")
        .unwrap();
    assert_eq!(visio["consumedUnits"], 0);
    let e3 = list
        .iter()
        .find(|s| s["skuPartNumber"] == "SPE_E3")
        .unwrap();
    assert_eq!(
        e3["consumedUnits"],
        sim.tenant().consumed_units()[skus::SPE_E3]
    );
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_consent_and_readable_report_settings() {
    let sim = start(SimOptions {
        roles: Vec::new(),
        report_settings_readable: true,
        concealed: true,
        ..Default::default()
    })
    .await;
    let c = client();
    let g = sim.graph_url();
    let tok = token(&c, &sim).await;
    let v: Value = get(&c, &format!("{g}/v1.0/users"), &tok)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["error"]["code"], "Authorization_RequestDenied");
    assert_eq!(
        v["error"]["message"],
        "Insufficient privileges to complete the operation."
    );
    let resp = get(
        &c,
        &format!("{g}/v1.0/reports/getMailboxUsageDetail(period='D7')"),
        &tok,
    )
    .await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["code"], "S2SUnauthorized");
    let v: Value = get(&c, &format!("{g}/v1.0/admin/reportSettings"), &tok)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["displayConcealedNames"], true);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_budget_is_14_calls_per_10_minutes() {
    let sim = start(SimOptions::default()).await;
    let c = client();
    let tok = token(&c, &sim).await;
    let url = format!(
        "{}/v1.0/reports/getEmailActivityUserDetail(period='D7')",
        sim.graph_url()
    );
    for _ in 0..14 {
        assert_eq!(get(&c, &url, &tok).await.status(), StatusCode::FOUND);
    }
    let resp = get(&c, &url, &tok).await;
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    let wait: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((590..=600).contains(&wait), "{wait}");
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["code"], "TooManyRequests");
    // Other reports have their own budget.
    let other = format!(
        "{}/v1.0/reports/getMailboxUsageDetail(period='D7')",
        sim.graph_url()
    );
    assert_eq!(get(&c, &other, &tok).await.status(), StatusCode::FOUND);
    assert_eq!(sim.stats().report_budget_429, 1);
    assert_eq!(sim.stats().status_429, 0);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injected_faults_look_like_the_real_thing() {
    let sim = start(SimOptions::default()).await;
    let c = client();
    let g = sim.graph_url();
    let tok = token(&c, &sim).await;
    let users = format!("{g}/v1.0/users?$top=50");

    sim.set_faults(
        "429=1,retry-after=decimal,retry-after-secs=2.128"
            .parse()
            .unwrap(),
    );
    let resp = get(&c, &users, &tok).await;
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(resp.headers()["retry-after"], "2.128");
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["innerError"]["status"], "429");

    sim.set_faults("503=1,retry-after=integer".parse().unwrap());
    let resp = get(&c, &users, &tok).await;
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(resp.headers()["retry-after"], "1");

    sim.set_faults("504=1,retry-after=absent".parse().unwrap());
    let resp = get(&c, &users, &tok).await;
    assert_eq!(resp.status(), StatusCode::GATEWAY_TIMEOUT);
    assert!(!resp.headers().contains_key("retry-after"));

    sim.set_faults("truncate=1".parse().unwrap());
    let resp = get(&c, &users, &tok).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let len: usize = resp.headers()["content-length"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let body = resp.bytes().await.unwrap();
    assert_eq!(body.len(), len);
    assert!(serde_json::from_slice::<Value>(&body).is_err());

    sim.set_faults("reset=1".parse().unwrap());
    let resp = get(&c, &users, &tok).await;
    assert_eq!(resp.status(), StatusCode::OK, "headers arrive");
    assert!(resp.bytes().await.is_err(), "then the connection drops");

    sim.set_faults("html200=1".parse().unwrap());
    let resp = get(&c, &users, &tok).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );

    sim.set_faults("slow=1,slow-ms=300".parse().unwrap());
    let t0 = Instant::now();
    assert_eq!(get(&c, &users, &tok).await.status(), StatusCode::OK);
    assert!(t0.elapsed() >= Duration::from_millis(300));

    // Token expiry: the 2nd request is a 401, the token stays dead, a new one works.
    sim.set_faults("token-expiry=2".parse().unwrap());
    let fresh = token(&c, &sim).await;
    let _ = get(&c, &users, &fresh).await;
    let resp = get(&c, &users, &fresh).await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(
        v["error"]["message"],
        "Access token has expired or is not yet valid."
    );
    assert_eq!(
        get(&c, &users, &fresh).await.status(),
        StatusCode::UNAUTHORIZED
    );
    sim.set_faults(Faults::default());
    let newer = token(&c, &sim).await;
    assert_eq!(get(&c, &users, &newer).await.status(), StatusCode::OK);

    // Downloads: expired and reset.
    let report = format!("{g}/v1.0/reports/getMailboxUsageDetail(period='D7')");
    let loc = get(&c, &report, &newer).await.headers()["location"]
        .to_str()
        .unwrap()
        .to_string();
    sim.set_faults("download-expired=1".parse().unwrap());
    assert_eq!(
        c.get(&loc).send().await.unwrap().status(),
        StatusCode::NOT_FOUND
    );
    sim.set_faults("reset=1".parse().unwrap());
    let resp = c.get(&loc).send().await.unwrap();
    assert!(resp.bytes().await.is_err());
    // A reset on the (body-less) 302 drops the connection before any response.
    assert!(c.get(&report).bearer_auth(&newer).send().await.is_err());
    sim.set_faults(Faults::default());
    assert_eq!(
        c.get(format!("{}/data/download/nonsense", sim.download_url()))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(c.get(&loc).send().await.unwrap().status(), StatusCode::OK);

    let s = sim.stats();
    assert_eq!(s.status_429, 1);
    assert_eq!(s.status_503, 1);
    assert_eq!(s.status_504, 1);
    assert_eq!(s.truncated, 1);
    assert_eq!(s.resets, 3);
    assert_eq!(s.html_200, 1);
    assert_eq!(s.slow, 1);
    assert_eq!(s.token_expired_401, 2);
    assert_eq!(s.download_expired, 1);
    assert_eq!(s.tokens_issued, 3);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_pages_still_reach_every_user() {
    let sim = start(SimOptions {
        users: 1234,
        faults: "short-page=0.5".parse().unwrap(),
        ..Default::default()
    })
    .await;
    let c = client();
    let tok = token(&c, &sim).await;
    let (ids, pages) = walk_users(&c, &sim, &tok, 100).await;
    assert_eq!(ids.len(), 1234);
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), 1234);
    assert!(pages > 13, "short pages mean more pages: {pages}");
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_100k_user_walk_is_quick() {
    let sim = start(SimOptions {
        users: 100_000,
        ..Default::default()
    })
    .await;
    let c = client();
    let tok = token(&c, &sim).await;
    let t0 = Instant::now();
    let (ids, pages) = walk_users(&c, &sim, &tok, 999).await;
    assert_eq!(ids.len(), 100_000);
    assert_eq!(pages, 101);
    assert!(t0.elapsed() < Duration::from_secs(60), "{:?}", t0.elapsed());
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_tokens_are_refused() {
    let sim = start(SimOptions {
        token_lifetime_secs: 1,
        ..Default::default()
    })
    .await;
    let c = client();
    let resp = token_response(
        &c,
        &sim,
        &sim.options().tenant_id,
        &sim.options().client_secret,
    )
    .await;
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["expires_in"], 1);
    let tok = v["access_token"].as_str().unwrap().to_string();
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let resp = get(&c, &format!("{}/v1.0/organization", sim.graph_url()), &tok).await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert!(resp.headers().contains_key("www-authenticate"));
    assert_eq!(sim.stats().token_expired_401, 1);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latency_is_added_to_every_response_but_stats() {
    let sim = start(SimOptions {
        latency_ms: 150,
        ..Default::default()
    })
    .await;
    let c = client();
    let t0 = Instant::now();
    let tok = token(&c, &sim).await;
    assert!(t0.elapsed() >= Duration::from_millis(150));
    let t1 = Instant::now();
    let _ = get(&c, &format!("{}/v1.0/organization", sim.graph_url()), &tok).await;
    assert!(t1.elapsed() >= Duration::from_millis(150));
    let t2 = Instant::now();
    let _ = c
        .get(format!("{}/_sim/stats", sim.graph_url()))
        .send()
        .await
        .unwrap();
    assert!(t2.elapsed() < Duration::from_millis(150));
    sim.shutdown().await;
}

/// Follows one delta round to its delta link; returns the items and the delta link.
async fn delta_round(c: &reqwest::Client, tok: &str, first: &str) -> (Vec<Value>, String) {
    let mut url = first.to_string();
    let mut items = Vec::new();
    loop {
        let resp = c
            .get(&url)
            .bearer_auth(tok)
            .header("Prefer", "odata.maxpagesize=500")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{url}");
        assert_eq!(
            resp.headers()["preference-applied"],
            "odata.maxpagesize=500"
        );
        let v: Value = resp.json().await.unwrap();
        let page = v["value"].as_array().unwrap();
        assert!(page.len() <= 500);
        items.extend(page.iter().cloned());
        if let Some(next) = v["@odata.nextLink"].as_str() {
            url = next.to_string();
            continue;
        }
        return (items, v["@odata.deltaLink"].as_str().unwrap().to_string());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delta_rounds_bring_changes_removals_and_a_410() {
    let sim = start(SimOptions {
        users: 2500,
        ..Default::default()
    })
    .await;
    let c = client();
    let tok = token(&c, &sim).await;
    let g = sim.graph_url();
    let first = format!("{g}/v1.0/users/delta?$select=id,displayName,jobTitle");
    let (initial, link) = delta_round(&c, &tok, &first).await;
    assert_eq!(initial.len(), 2500);
    assert!(initial.iter().all(|u| u.as_object().unwrap().len() == 3));
    assert!(link.starts_with(&format!("{g}/v1.0/users/delta?$deltatoken=")));

    let (changes, link2) = delta_round(&c, &tok, &link).await;
    let removed = changes
        .iter()
        .filter(|u| u.get("@removed").is_some())
        .count();
    let joined = changes
        .iter()
        .filter(|u| u.get("@removed").is_none())
        .filter(|u| !initial.iter().any(|i| i["id"] == u["id"]))
        .count();
    assert!(removed > 0, "{changes:?}");
    assert_eq!(joined, 5);
    assert!(changes.len() < 100);
    assert_ne!(link, link2);

    // An expired delta link is a 410 whose Location starts over.
    sim.set_faults("delta-expired=1".parse().unwrap());
    let resp = get(&c, &link2, &tok).await;
    assert_eq!(resp.status(), StatusCode::GONE);
    let restart = resp.headers()["location"].to_str().unwrap().to_string();
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["code"], "syncStateNotFound");
    sim.set_faults(Faults::default());
    assert_eq!(get(&c, &restart, &tok).await.status(), StatusCode::OK);
    // A delta token older than seven days is gone too.
    let old = encode_deltatoken(0, chrono::Utc::now().timestamp() - 8 * 86_400, &None);
    let resp = get(&c, &format!("{g}/v1.0/users/delta?$deltatoken={old}"), &tok).await;
    assert_eq!(resp.status(), StatusCode::GONE);
    assert_eq!(sim.stats().delta_gone_410, 2);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_requests_get_errors_not_crashes() {
    let sim = start(SimOptions::default()).await;
    let c = client();
    let g = sim.graph_url();
    let tok = token(&c, &sim).await;
    let paths = [
        "/v1.0/users?$select=",
        "/v1.0/users?$select=id,,mail",
        "/v1.0/users?$top=-1",
        "/v1.0/users?$top=99999999999999999999999",
        "/v1.0/users?$skiptoken=%FF%FE",
        "/v1.0/users?$skiptoken=AAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "/v1.0/users?$filter=accountEnabled%20eq%20false",
        "/v1.0/users?$count=maybe",
        "/v1.0/users/delta?$skiptoken=AAAA",
        "/v1.0/users/delta?$top=10",
        "/v1.0/reports/getMailboxUsageDetail(period=",
        "/v1.0/reports/getMailboxUsageDetail(date=2026-01-01)",
        "/v1.0/reports/getMailboxUsageDetail(period='D7')?$format=application/json",
        "/v1.0/reports/(",
        "/v1.0/%ZZ",
        "/v1.0/users/$count",
        "/v1.0",
        "/%C3%28",
        "/data/download/abc",
    ];
    for p in paths {
        let resp = get(&c, &format!("{g}{p}"), &tok).await;
        let status = resp.status();
        assert!(
            status.is_client_error() || status.is_server_error(),
            "{p}: {status}"
        );
        let body = resp.text().await.unwrap();
        let v: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{p}: {e}: {body}"));
        assert!(v["error"]["code"].is_string(), "{p}: {body}");
    }
    // A delta link that can't be decoded asks for a resync.
    let resp = get(&c, &format!("{g}/v1.0/users/delta?$deltatoken=!!"), &tok).await;
    assert_eq!(resp.status(), StatusCode::GONE);
    // The token endpoint refuses GET and empty posts with AADSTS errors.
    let tid = sim.options().tenant_id.clone();
    let resp = c
        .get(format!("{g}/{tid}/oauth2/v2.0/token"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error_codes"][0], 900561);
    let resp = c
        .post(format!("{g}/{tid}/oauth2/v2.0/token"))
        .send()
        .await
        .unwrap();
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error_codes"][0], 900144);
    // The server is still fine afterwards.
    assert_eq!(
        get(&c, &format!("{g}/v1.0/organization"), &tok)
            .await
            .status(),
        StatusCode::OK
    );
    sim.shutdown().await;
}

// ---------------------------------------------------------------- epochs

/// What a client that asked for `SELECT` should hold for user `i` at `epoch`.
fn selected_at(t: &Tenant, i: u64, epoch: u64) -> Option<Value> {
    let all = t.user_at(i, epoch)?;
    let selected: serde_json::Map<String, Value> = SELECT
        .split(',')
        .map(|p| (p.to_string(), all[p].clone()))
        .collect();
    Some(Value::Object(selected))
}

/// The tenant at `epoch` as `id -> selected properties`.
fn tenant_at(t: &Tenant, epoch: u64) -> std::collections::BTreeMap<String, Value> {
    (0..t.user_bound(epoch))
        .filter_map(|i| selected_at(t, i, epoch).map(|u| (t.user_id(i), u)))
        .collect()
}

/// Applies delta items in order: the last occurrence of an entity wins.
fn apply(state: &mut std::collections::BTreeMap<String, Value>, items: &[Value]) {
    for u in items {
        let id = u["id"].as_str().unwrap().to_string();
        if u.get("@removed").is_some() {
            state.remove(&id);
        } else {
            state.insert(id, u.clone());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_and_new_delta_syncs_serve_the_current_epoch() {
    let sim = start(SimOptions {
        users: 3000,
        ..Default::default()
    })
    .await;
    sim.set_epoch(2);
    assert_eq!(sim.epoch(), 2);
    let t = sim.tenant();
    let expected = tenant_at(&t, 2);
    assert!(expected.len() > 2900 && expected.len() != 3000);
    assert!(expected.len() > tenant_at(&t, 0).len() - 30, "joiners came");
    let c = client();
    let tok = token(&c, &sim).await;
    let g = sim.graph_url();

    // /users: removed users are gone, joiners are there, changed users show their change.
    let mut url = format!("{g}/v1.0/users?$select={SELECT}&$top=999");
    let mut served = std::collections::BTreeMap::new();
    loop {
        let v: Value = get(&c, &url, &tok).await.json().await.unwrap();
        for u in v["value"].as_array().unwrap() {
            served.insert(u["id"].as_str().unwrap().to_string(), u.clone());
        }
        match v["@odata.nextLink"].as_str() {
            Some(n) => url = n.to_string(),
            None => break,
        }
    }
    assert_eq!(served, expected);
    let count = c
        .get(format!("{g}/v1.0/users/$count"))
        .bearer_auth(&tok)
        .header("ConsistencyLevel", "eventual")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(count, expected.len().to_string());

    // A new delta sync starts from the same state; its link names epoch 2, so following it
    // while the tenant stays at 2 is an empty round.
    let first = format!("{g}/v1.0/users/delta?$select={SELECT}");
    let (initial, link) = delta_round(&c, &tok, &first).await;
    let mut state = std::collections::BTreeMap::new();
    apply(&mut state, &initial);
    assert_eq!(state, expected);
    let (none, again) = delta_round(&c, &tok, &link).await;
    assert!(none.is_empty(), "{none:?}");
    assert!(again.starts_with(&format!("{g}/v1.0/users/delta?$deltatoken=")));
    // `$deltatoken=latest` names the current epoch too.
    let v: Value = get(
        &c,
        &format!("{g}/v1.0/users/delta?$deltatoken=latest"),
        &tok,
    )
    .await
    .json()
    .await
    .unwrap();
    let latest = v["@odata.deltaLink"].as_str().unwrap().to_string();
    let (none, _) = delta_round(&c, &tok, &latest).await;
    assert!(none.is_empty());
    // Reports stay as of epoch 0: joiners have no rows.
    let joiner = t.user_at(t.users, 2).unwrap()["userPrincipalName"]
        .as_str()
        .unwrap()
        .to_lowercase();
    assert!(
        t.report_rows(Report::Office365ActiveUserDetail)
            .all(|row| row[1].to_lowercase() != joiner)
    );
    assert_eq!(sim.stats().delta_gone_410, 0);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delta_link_brings_every_round_since_with_replays() {
    let sim = start(SimOptions {
        users: 20_000,
        epoch: Some(0),
        ..Default::default()
    })
    .await;
    let t = sim.tenant();
    let c = client();
    let tok = token(&c, &sim).await;
    let g = sim.graph_url();
    let first = format!("{g}/v1.0/users/delta?$select={SELECT}");
    let (initial, link0) = delta_round(&c, &tok, &first).await;
    let mut state = std::collections::BTreeMap::new();
    apply(&mut state, &initial);
    assert_eq!(state, tenant_at(&t, 0));

    // Pinned at 0: nothing changed.
    let (none, _) = delta_round(&c, &tok, &link0).await;
    assert!(none.is_empty());

    // Three rounds at once: rounds 1, 2 and 3 one after another.
    sim.set_epoch(3);
    let (changes, link3) = delta_round(&c, &tok, &link0).await;
    let mut seen: std::collections::HashMap<&str, usize> = Default::default();
    for u in &changes {
        *seen.entry(u["id"].as_str().unwrap()).or_default() += 1;
    }
    let replays = seen.values().filter(|n| **n > 1).count();
    assert!(
        replays > 0,
        "an entity changed in several rounds comes again"
    );
    let reasons: HashSet<&str> = changes
        .iter()
        .filter_map(|u| u["@removed"]["reason"].as_str())
        .collect();
    assert_eq!(reasons, HashSet::from(["changed", "deleted"]));
    // About 200 changed, 40 removed and 40 joined per round.
    assert!(
        (3 * 200..3 * 400).contains(&changes.len()),
        "about 1% changed, 0.2% removed and 0.2% joined per round: {}",
        changes.len()
    );
    apply(&mut state, &changes);
    assert_eq!(
        state,
        tenant_at(&t, 3),
        "the last occurrence of each entity wins"
    );

    // Up to date again: an empty round; a link from an epoch the tenant never reached
    // (it was set back) is a 410 that asks for a full sync.
    let (none, _) = delta_round(&c, &tok, &link3).await;
    assert!(none.is_empty());
    sim.set_epoch(2);
    let resp = get(&c, &link3, &tok).await;
    assert_eq!(resp.status(), StatusCode::GONE);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["code"], "syncStateNotFound");
    assert_eq!(sim.stats().delta_gone_410, 1);
    sim.shutdown().await;
}

#[test]
fn a_free_running_epoch_moves_on_only_when_a_client_is_up_to_date() {
    let e = delta::Epoch::new(None);
    assert_eq!(e.catch_up(0), Some(1), "up to date: time passes");
    assert_eq!(e.catch_up(0), Some(1), "a retried link sees the same round");
    assert_eq!(e.catch_up(2), None, "a link from the future");
    let pinned = delta::Epoch::new(Some(4));
    assert_eq!(pinned.catch_up(4), Some(4));
    assert_eq!(pinned.catch_up(1), Some(4));
    pinned.set(delta::MAX_EPOCH + 5);
    assert_eq!(pinned.get(), delta::MAX_EPOCH);
}

// ---------------------------------------------------------------- newer faults

/// A report download URL (the report call's Location) for `r` over D7.
async fn download_location(c: &reqwest::Client, sim: &Simulator, tok: &str, r: Report) -> String {
    let resp = get(c, &format!("{}/v1.0{}", sim.graph_url(), r.path("D7")), tok).await;
    assert_eq!(resp.status(), StatusCode::FOUND);
    resp.headers()["location"].to_str().unwrap().to_string()
}

/// Cells a lenient reader finds in each record of a (possibly cut) CSV body.
fn record_lengths(body: &[u8]) -> Vec<usize> {
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(&body[BOM.len()..]);
    rdr.records().map(|r| r.unwrap().len()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cut_close_downloads_end_mid_record_with_a_clean_eof() {
    let sim = start(SimOptions {
        users: 400,
        ..Default::default()
    })
    .await;
    let c = client();
    let tok = token(&c, &sim).await;
    let r = Report::EmailActivityUserDetail;
    let loc = download_location(&c, &sim, &tok, r).await;
    let clean = c.get(&loc).send().await.unwrap().bytes().await.unwrap();
    let header_cells = r.documented_columns().len();

    sim.set_faults("cut-close=1".parse().unwrap());
    let (mut inside_quotes, mut mid_field) = (0, 0);
    for _ in 0..8 {
        let resp = c.get(&loc).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.version(), reqwest::Version::HTTP_10);
        assert_eq!(resp.headers()["connection"], "close");
        assert!(!resp.headers().contains_key("content-length"));
        assert!(!resp.headers().contains_key("transfer-encoding"));
        // The point of the fault: at the HTTP layer the body is complete.
        let body = resp.bytes().await.expect("a close-delimited body reads Ok");
        assert!(body.len() < clean.len());
        assert!(clean.starts_with(&body), "a prefix of the clean body");
        assert!(!body.ends_with(b"\r\n") && !body.ends_with(b"\n"));
        // Roughly half of the report.
        let half = clean.len() / 2;
        assert!(
            (half / 2..half * 3 / 2).contains(&body.len()),
            "{} of {}",
            body.len(),
            clean.len()
        );
        let cells = record_lengths(&body);
        assert_eq!(cells[0], header_cells);
        assert!(*cells.last().unwrap() < header_cells, "a partial record");
        if body.iter().filter(|b| **b == b'"').count() % 2 == 1 {
            inside_quotes += 1;
        } else {
            mid_field += 1;
        }
    }
    assert!(
        inside_quotes > 0 && mid_field > 0,
        "{inside_quotes} {mid_field}"
    );
    assert_eq!(sim.stats().cut_close, 8);

    // A tiny report is cut inside its first or second data record.
    let tiny = start(SimOptions {
        users: 3,
        faults: "cut-close=1".parse().unwrap(),
        ..Default::default()
    })
    .await;
    let tok = token(&c, &tiny).await;
    let loc = download_location(&c, &tiny, &tok, Report::MailboxUsageDetail).await;
    for _ in 0..4 {
        let body = c.get(&loc).send().await.unwrap().bytes().await.unwrap();
        let cells = record_lengths(&body);
        assert!(
            (2..=3).contains(&cells.len()),
            "header + 1st or 2nd: {cells:?}"
        );
        assert!(*cells.last().unwrap() < cells[0]);
    }
    tiny.shutdown().await;
    sim.shutdown().await;
}

/// What reqwest 0.12 makes of a body that ends before its Content-Length: a decode error
/// ("error decoding response body") caused by hyper's incomplete-body EOF.
fn assert_bad_length_error(err: &reqwest::Error) {
    assert!(err.is_decode(), "{err:?}");
    let hyper = std::error::Error::source(err)
        .and_then(|e| e.downcast_ref::<hyper::Error>())
        .expect("caused by hyper");
    assert!(format!("{hyper:?}").contains("IncompleteBody"), "{hyper:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_length_responses_promise_more_than_they_send() {
    let sim = start(SimOptions::default()).await;
    let c = client();
    let tok = token(&c, &sim).await;
    let users = format!("{}/v1.0/users?$top=50", sim.graph_url());
    let clean = get(&c, &users, &tok).await.bytes().await.unwrap();
    let loc = download_location(&c, &sim, &tok, Report::MailboxUsageDetail).await;
    let clean_csv = c.get(&loc).send().await.unwrap().bytes().await.unwrap();

    sim.set_faults("bad-length=1".parse().unwrap());
    let resp = get(&c, &users, &tok).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.content_length(), Some(clean.len() as u64 + 1000));
    let err = resp.bytes().await.expect_err("the body read fails");
    assert_bad_length_error(&err);

    let resp = c.get(&loc).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.content_length(), Some(clean_csv.len() as u64 + 1000));
    let err = resp.bytes().await.expect_err("the body read fails");
    assert_bad_length_error(&err);
    // Read chunk by chunk, every byte of the true body arrives before the error.
    let mut resp = c.get(&loc).send().await.unwrap();
    let mut got = Vec::new();
    let err = loop {
        match resp.chunk().await {
            Ok(Some(b)) => got.extend_from_slice(&b),
            Ok(None) => panic!("a clean end"),
            Err(e) => break e,
        }
    };
    assert_eq!(got, clean_csv);
    assert_bad_length_error(&err);
    assert_eq!(sim.stats().bad_length, 3);
    sim.shutdown().await;
}

/// One /users page: its raw user objects (as served, byte for byte) and its next link.
async fn raw_page(c: &reqwest::Client, url: &str, tok: &str) -> (Vec<String>, Option<String>) {
    #[derive(serde::Deserialize)]
    struct Page {
        value: Vec<Box<serde_json::value::RawValue>>,
        #[serde(rename = "@odata.nextLink")]
        next: Option<String>,
    }
    let resp = get(c, url, tok).await;
    assert_eq!(resp.status(), StatusCode::OK, "{url}");
    let p: Page = serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap();
    (
        p.value.iter().map(|v| v.get().to_string()).collect(),
        p.next,
    )
}

/// Every page of a /users walk from `first`.
async fn raw_walk(
    c: &reqwest::Client,
    first: &str,
    tok: &str,
) -> Vec<(Vec<String>, Option<String>)> {
    let mut pages = Vec::new();
    let mut url = Some(first.to_string());
    while let Some(u) = url {
        let page = raw_page(c, &u, tok).await;
        url = page.1.clone();
        pages.push(page);
    }
    pages
}

fn id_of(raw: &str) -> String {
    serde_json::from_str::<Value>(raw).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_users_start_the_next_page_and_none_go_missing() {
    let sim = start(SimOptions {
        users: 250,
        ..Default::default()
    })
    .await;
    let c = client();
    let tok = token(&c, &sim).await;
    let first = format!("{}/v1.0/users?$select={SELECT}&$top=100", sim.graph_url());
    let clean = raw_walk(&c, &first, &tok).await;
    assert_eq!(clean.len(), 3);
    let clean_ids: HashSet<String> = clean
        .iter()
        .flat_map(|p| p.0.iter().map(|u| id_of(u)))
        .collect();
    assert_eq!(clean_ids.len(), 250);

    sim.set_faults("repeat-users=1".parse().unwrap());
    let pages = raw_walk(&c, &first, &tok).await;
    assert_eq!(pages.len(), 3);
    assert_eq!(pages[0], clean[0], "the first page is never repeated into");
    let mut repeated = 0;
    for n in 1..3 {
        let (prev, page) = (&pages[n - 1].0, &pages[n]);
        let k = page.0.len() - clean[n].0.len();
        assert!((1..=3).contains(&k), "{k}");
        assert_eq!(
            &page.0[..k],
            &prev[prev.len() - k..],
            "byte-identical repeats"
        );
        assert_eq!(&page.0[k..], &clean[n].0[..], "all of its own users");
        assert_eq!(page.1, clean[n].1, "the same next link");
        repeated += k as u64;
    }
    let ids: Vec<String> = pages
        .iter()
        .flat_map(|p| p.0.iter().map(|u| id_of(u)))
        .collect();
    assert_eq!(ids.len() as u64, 250 + repeated);
    assert_eq!(ids.into_iter().collect::<HashSet<_>>(), clean_ids);
    let s = sim.stats();
    assert_eq!((s.repeat_users_pages, s.repeat_users), (2, repeated));
    assert_eq!(
        (s.repeat_users_changed_pages, s.repeat_users_changed),
        (0, 0)
    );

    // Changed copies: jobTitle when selected, else displayName, ends in " (updated)".
    sim.set_faults("repeat-users-changed=1".parse().unwrap());
    let mut changed = 0;
    for (select, prop) in [(SELECT, "jobTitle"), ("id,displayName,mail", "displayName")] {
        let first = format!("{}/v1.0/users?$select={select}&$top=100", sim.graph_url());
        let pages = raw_walk(&c, &first, &tok).await;
        for n in 1..pages.len() {
            let (prev, page) = (&pages[n - 1].0, &pages[n].0);
            let k = (1..=3)
                .rev()
                .find(|k| id_of(&page[0]) == id_of(&prev[prev.len() - k]))
                .unwrap();
            for j in 0..k {
                let old: Value = serde_json::from_str(&prev[prev.len() - k + j]).unwrap();
                let new: Value = serde_json::from_str(&page[j]).unwrap();
                assert_ne!(old, new);
                let mut patched = old.clone();
                patched[prop] = match old[prop].as_str() {
                    Some(v) => Value::String(format!("{v} (updated)")),
                    None => Value::String("(updated)".into()),
                };
                assert_eq!(new, patched, "only {prop} differs");
            }
            assert_eq!(id_of(&page[k]), id_of(&pages[n].0[k]));
            changed += k as u64;
        }
        let ids: HashSet<String> = pages
            .iter()
            .flat_map(|p| p.0.iter().map(|u| id_of(u)))
            .collect();
        assert_eq!(ids, clean_ids);
    }
    let s = sim.stats();
    assert_eq!(
        (s.repeat_users_changed_pages, s.repeat_users_changed),
        (4, changed)
    );
    assert_eq!(s.repeat_users_pages, 2, "unchanged");
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn downloads_redirect_in_a_chain_or_in_a_loop() {
    let sim = start(SimOptions::default()).await;
    let c = client();
    let tok = token(&c, &sim).await;
    let loc = download_location(&c, &sim, &tok, Report::TeamsUserActivityUserDetail).await;
    let clean = c.get(&loc).send().await.unwrap().bytes().await.unwrap();

    sim.set_faults("redirects=3".parse().unwrap());
    let mut url = loc.clone();
    let mut seen = HashSet::from([url.clone()]);
    for _ in 0..3 {
        let resp = c.get(&url).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::FOUND);
        let next = resp.headers()["location"].to_str().unwrap().to_string();
        assert!(
            next.starts_with(&format!("{}/data/download/", sim.download_url())),
            "{next}"
        );
        assert!(seen.insert(next.clone()), "each hop a distinct URL: {next}");
        url = next;
    }
    let resp = c.get(&url).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.bytes().await.unwrap(), clean);
    assert_eq!(sim.stats().redirect_hops, 3);
    // A client that follows redirects gets the CSV.
    let following = reqwest::Client::new();
    let body = following
        .get(&loc)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(body, clean);
    assert_eq!(sim.stats().redirect_hops, 6);

    sim.set_faults("redirect-loop=1".parse().unwrap());
    let resp = c.get(&loc).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::FOUND);
    assert_eq!(
        resp.headers()["location"].to_str().unwrap(),
        loc,
        "Location is the request URL"
    );
    let err = following.get(&loc).send().await.expect_err("a loop");
    assert!(err.is_redirect(), "{err:?}");
    let s = sim.stats();
    assert_eq!(
        s.redirect_loops,
        1 + 11,
        "reqwest gives up after 10 redirects"
    );
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trickled_bodies_outlast_a_deadline() {
    let sim = start(SimOptions {
        users: 300,
        ..Default::default()
    })
    .await;
    let c = client();
    let tok = token(&c, &sim).await;
    let users = format!("{}/v1.0/users?$select={SELECT}&$top=100", sim.graph_url());
    let org = format!("{}/v1.0/organization", sim.graph_url());
    let clean_org = get(&c, &org, &tok).await.bytes().await.unwrap();
    let loc = download_location(&c, &sim, &tok, Report::MailboxUsageDetail).await;

    sim.set_faults("trickle=1".parse().unwrap());
    let impatient = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_gzip()
        .timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    for url in [&users, &loc] {
        let t0 = Instant::now();
        let mut resp = impatient.get(url).bearer_auth(&tok).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "headers arrive at once");
        let first = resp.chunk().await.unwrap().unwrap();
        assert!(first.len() <= 256);
        assert!(t0.elapsed() < Duration::from_millis(500));
        let err = loop {
            match resp.chunk().await {
                Ok(Some(_)) => {}
                Ok(None) => panic!("{url}: finished within the deadline"),
                Err(e) => break e,
            }
        };
        assert!(err.is_timeout(), "{err:?}");
        let waited = t0.elapsed();
        assert!(
            waited >= Duration::from_millis(900) && waited < Duration::from_secs(3),
            "{waited:?}"
        );
    }
    // Faster settings: the body arrives whole, slowly, and keeps its Content-Length.
    sim.set_faults("trickle=1,trickle-ms=20,trickle-bytes=500".parse().unwrap());
    let t0 = Instant::now();
    let resp = get(&c, &org, &tok).await;
    assert_eq!(resp.content_length(), Some(clean_org.len() as u64));
    assert_eq!(resp.bytes().await.unwrap(), clean_org);
    let steps = (clean_org.len() - 256).div_ceil(500) as u32;
    assert!(
        t0.elapsed() >= Duration::from_millis(20) * steps,
        "{:?}",
        t0.elapsed()
    );
    assert_eq!(sim.stats().trickled, 3);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn html_downloads_are_a_sign_in_page() {
    let sim = start(SimOptions::default()).await;
    let c = client();
    let tok = token(&c, &sim).await;
    let loc = download_location(&c, &sim, &tok, Report::MailboxUsageDetail).await;
    sim.set_faults("html-download=1".parse().unwrap());
    // Graph JSON is not affected.
    let resp = get(&c, &format!("{}/v1.0/organization", sim.graph_url()), &tok).await;
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    let resp = c.get(&loc).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-type"], "text/html; charset=utf-8");
    let body = resp.text().await.unwrap();
    assert!(
        body.starts_with("<!DOCTYPE html><html><head><title>Sign in to continue</title>"),
        "{body}"
    );
    assert_eq!(sim.stats().html_download, 1);
    // The stats JSON names every new counter.
    let served: Value = c
        .get(format!("{}/_sim/stats", sim.graph_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for key in [
        "cut_close",
        "bad_length",
        "repeat_users_pages",
        "repeat_users",
        "repeat_users_changed_pages",
        "repeat_users_changed",
        "redirect_hops",
        "redirect_loops",
        "trickled",
        "html_download",
    ] {
        assert!(served[key].is_u64(), "{key}");
    }
    assert_eq!(served["html_download"], 1);
    sim.shutdown().await;
}

// ------------------------------------------------- partitioned walks, budget, gzip

#[test]
fn upn_at_is_the_records_upn_and_the_skewed_profile_is_skewed() {
    let plain = tenant(6000, 3, false);
    let skewed = plain.with_skewed_upns();
    for t in [plain, skewed] {
        for i in (0..6000).chain([123_456, 9_999_999]) {
            assert_eq!(t.upn_at(i), t.record(i).upn, "user {i}");
        }
    }
    assert!(!plain.skewed_upns() && skewed.skewed_upns());
    let firsts: Vec<u8> = (0..6000)
        .map(|i| skewed.upn_at(i).as_bytes()[0].to_ascii_lowercase())
        .collect();
    let share = |f: &dyn Fn(u8) -> bool| firsts.iter().filter(|c| f(**c)).count() as f64 / 6000.0;
    assert!((0.6..0.8).contains(&share(&|c| c == b'm')));
    assert!((0.03..0.07).contains(&share(&|c| c.is_ascii_digit())));
    assert!((0.01..0.03).contains(&share(&|c| c == b'_')));
    assert!((0.01..0.03).contains(&share(&|c| c == b'\'')));
    let upns: HashSet<String> = (0..6000).map(|i| skewed.upn_at(i).to_lowercase()).collect();
    assert_eq!(upns.len(), 6000);
    for i in 0..200 {
        let r = skewed.record(i);
        if !r.guest {
            assert_eq!(r.mail_nickname, r.upn.split('@').next().unwrap());
        } else {
            assert!(r.upn.ends_with("#EXT#@contoso.onmicrosoft.com"));
        }
    }
}

async fn get_q(
    c: &reqwest::Client,
    sim: &Simulator,
    tok: &str,
    query: &[(&str, &str)],
    eventual: bool,
) -> reqwest::Response {
    let mut r = c
        .get(format!("{}/v1.0/users", sim.graph_url()))
        .query(query)
        .bearer_auth(tok);
    if eventual {
        r = r.header("ConsistencyLevel", "eventual");
    }
    r.send().await.unwrap()
}

/// Walks one filtered range through its next links: (id, upn) in served order.
async fn walk_filter(
    c: &reqwest::Client,
    sim: &Simulator,
    tok: &str,
    filter: &str,
) -> Vec<(String, String)> {
    let q = [
        ("$filter", filter),
        ("$select", "id,userPrincipalName"),
        ("$top", "97"),
    ];
    let mut resp = get_q(c, sim, tok, &q, false).await;
    let mut out = Vec::new();
    loop {
        assert_eq!(resp.status(), StatusCode::OK, "{filter}");
        let v: Value = resp.json().await.unwrap();
        for u in v["value"].as_array().unwrap() {
            out.push((
                u["id"].as_str().unwrap().to_string(),
                u["userPrincipalName"].as_str().unwrap().to_string(),
            ));
        }
        match v["@odata.nextLink"].as_str() {
            Some(next) => resp = get(c, next, tok).await,
            None => return out,
        }
    }
}

fn lit(s: &str) -> String {
    s.replace('\'', "''")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn range_and_startswith_partitions_cover_every_user_exactly_once() {
    let sim = start(SimOptions {
        users: 3000,
        skewed_upns: true,
        epoch: Some(0),
        ..SimOptions::default()
    })
    .await;
    let c = client();
    let tok = token(&c, &sim).await;
    let t = sim.tenant();
    let all: Vec<String> = (0..t.users).map(|i| t.user_id(i)).collect();
    let lower: Vec<Vec<u8>> = (0..t.users)
        .map(|i| t.upn_at(i).to_ascii_lowercase().into_bytes())
        .collect();
    let expect = |f: &dyn Fn(&[u8]) -> bool| -> Vec<String> {
        (0..t.users as usize)
            .filter(|i| f(&lower[*i]))
            .map(|i| all[i].clone())
            .collect()
    };

    let digits_letters: Vec<String> = ('1'..='9')
        .chain('a'..='z')
        .map(|c| c.to_string())
        .collect();
    let two_letters: Vec<String> = ["ma", "me", "mi", "mo", "n", "s"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    for bounds in [digits_letters, two_letters] {
        let mut seen: Vec<String> = Vec::new();
        let n = bounds.len();
        for k in 0..=n {
            let (filter, lo, hi) = match k {
                0 => (
                    format!("userPrincipalName le '{}'", lit(&bounds[0])),
                    None,
                    Some(bounds[0].as_bytes()),
                ),
                k if k == n => (
                    format!("userPrincipalName ge '{}'", lit(&bounds[n - 1])),
                    Some(bounds[n - 1].as_bytes()),
                    None,
                ),
                k => (
                    format!(
                        "userPrincipalName ge '{}' and userPrincipalName le '{}'",
                        lit(&bounds[k - 1]),
                        lit(&bounds[k])
                    ),
                    Some(bounds[k - 1].as_bytes()),
                    Some(bounds[k].as_bytes()),
                ),
            };
            let got = walk_filter(&c, &sim, &tok, &filter).await;
            let want = expect(&|u| lo.is_none_or(|l| u >= l) && hi.is_none_or(|h| u <= h));
            let ids: Vec<String> = got.iter().map(|(id, _)| id.clone()).collect();
            // Exactly the users in range, in the collection's order (not UPN order).
            assert_eq!(ids, want, "{filter}");
            seen.extend(ids);
        }
        seen.sort();
        let mut everyone = all.clone();
        everyone.sort();
        assert_eq!(seen, everyone);
    }

    // startswith over every character a UPN may start with: each user exactly once.
    let chars = "0123456789abcdefghijklmnopqrstuvwxyz'.-_!#^~";
    let mut seen = Vec::new();
    for ch in chars.chars() {
        let filter = format!("startswith(userPrincipalName,'{}')", lit(&ch.to_string()));
        let got = walk_filter(&c, &sim, &tok, &filter).await;
        let want = expect(&|u| u.first() == Some(&(ch as u8)));
        let ids: Vec<String> = got.into_iter().map(|(id, _)| id).collect();
        assert_eq!(ids, want, "{filter}");
        seen.extend(ids);
    }
    assert_eq!(seen.len(), all.len());
    seen.sort();
    let mut everyone = all;
    everyone.sort();
    assert_eq!(seen, everyone);
    let s = sim.stats();
    assert_eq!(s.ranges, 36 + 7 + chars.len() as u64);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filtered_counts_and_refused_filters() {
    let sim = start(SimOptions {
        users: 1200,
        skewed_upns: true,
        epoch: Some(0),
        ..SimOptions::default()
    })
    .await;
    let c = client();
    let tok = token(&c, &sim).await;
    let f = "userPrincipalName ge 'm' and userPrincipalName le 'mi'";
    let served = walk_filter(&c, &sim, &tok, f).await.len() as u64;
    assert!(served > 100, "{served}");
    let q = [("$filter", f), ("$count", "true"), ("$top", "5")];
    let v: Value = get_q(&c, &sim, &tok, &q, true).await.json().await.unwrap();
    assert_eq!(v["@odata.count"], served);
    let resp = get_q(&c, &sim, &tok, &q, false).await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let resp = c
        .get(format!("{}/v1.0/users/$count", sim.graph_url()))
        .query(&[("$filter", f)])
        .bearer_auth(&tok)
        .header("ConsistencyLevel", "eventual")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.text().await.unwrap(), served.to_string());
    assert_eq!(sim.stats().count_requests, 2);
    let bad = get_q(&c, &sim, &tok, &[("$filter", "displayName ge 'a'")], false).await;
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    let v: Value = bad.json().await.unwrap();
    assert_eq!(v["error"]["code"], "Request_UnsupportedQuery");
    sim.shutdown().await;

    for (range, starts) in [(true, false), (false, true)] {
        let sim = start(SimOptions {
            users: 50,
            refuse_range_filter: range,
            refuse_startswith: starts,
            ..SimOptions::default()
        })
        .await;
        let tok = token(&c, &sim).await;
        let ge = get_q(
            &c,
            &sim,
            &tok,
            &[("$filter", "userPrincipalName ge 'a'")],
            false,
        )
        .await;
        let sw = get_q(
            &c,
            &sim,
            &tok,
            &[("$filter", "startswith(userPrincipalName,'a')")],
            false,
        )
        .await;
        let (refused, allowed) = if range { (ge, sw) } else { (sw, ge) };
        assert_eq!(allowed.status(), StatusCode::OK);
        assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
        let v: Value = refused.json().await.unwrap();
        assert_eq!(v["error"]["code"], "Request_UnsupportedQuery");
        assert_eq!(
            v["error"]["message"],
            "Unsupported or invalid query filter clause specified for property 'userPrincipalName' of resource 'User'."
        );
        sim.shutdown().await;
    }
}

fn gunzip(b: &[u8]) -> Vec<u8> {
    use std::io::Read;
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(b)
        .read_to_end(&mut out)
        .unwrap();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gzip_when_asked_and_identical_when_decoded() {
    let sim = start(SimOptions {
        users: 500,
        ..SimOptions::default()
    })
    .await;
    let c = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_gzip()
        .build()
        .unwrap();
    let tok = token(&c, &sim).await;
    let url = format!("{}/v1.0/users?$top=300", sim.graph_url());
    let plain = get(&c, &url, &tok).await;
    assert!(plain.headers().get("content-encoding").is_none());
    let plain: Value = plain.json().await.unwrap();
    let before = sim.stats();
    assert_eq!(before.bytes_raw, before.bytes_wire);
    let zipped = c
        .get(&url)
        .bearer_auth(&tok)
        .header("Accept-Encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(zipped.headers()["content-encoding"], "gzip");
    assert_eq!(zipped.headers()["vary"], "Accept-Encoding");
    let body = zipped.bytes().await.unwrap();
    let decoded: Value = serde_json::from_slice(&gunzip(&body)).unwrap();
    assert_eq!(decoded, plain);
    let after = sim.stats();
    let (raw, wire) = (
        after.bytes_raw - before.bytes_raw,
        after.bytes_wire - before.bytes_wire,
    );
    assert_eq!(wire, body.len() as u64);
    assert!(wire * 3 < raw, "{wire} vs {raw}");
    // Report CSVs too.
    let loc = download_location(&c, &sim, &tok, Report::MailboxUsageDetail).await;
    let csv = c.get(&loc).send().await.unwrap().bytes().await.unwrap();
    let loc = download_location(&c, &sim, &tok, Report::MailboxUsageDetail).await;
    let z = c
        .get(&loc)
        .header("Accept-Encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(z.headers()["content-encoding"], "gzip");
    let z = z.bytes().await.unwrap();
    assert!(z.len() < csv.len());
    assert_eq!(gunzip(&z), csv.to_vec());
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_resource_unit_bucket_throttles_and_recovers() {
    let sim = start(SimOptions {
        users: 100,
        ru_budget: Some(4),
        ru_window: Duration::from_secs(2),
        ..SimOptions::default()
    })
    .await;
    let c = client();
    let tok = token(&c, &sim).await;
    let url = format!("{}/v1.0/users?$top=50", sim.graph_url());
    for _ in 0..2 {
        let r = get(&c, &url, &tok).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()["x-ms-resource-unit"], "2");
    }
    let r = get(&c, &url, &tok).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    let wait: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&wait), "{wait}");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "TooManyRequests");
    let s = sim.stats();
    assert_eq!((s.ru_spent, s.ru_throttled), (4, 1));
    tokio::time::sleep(Duration::from_millis(wait * 1000 + 100)).await;
    let r = get(&c, &format!("{url}&$select=id"), &tok).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["x-ms-resource-unit"], "1");
    assert_eq!(sim.stats().ru_spent, 5);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_latest_delta_link_brings_what_a_full_round_link_would() {
    let sim = start(SimOptions {
        users: 1500,
        epoch: Some(2),
        ..SimOptions::default()
    })
    .await;
    let c = client();
    let tok = token(&c, &sim).await;
    let g = sim.graph_url();
    for sel in ["", "&$select=id,displayName"] {
        sim.set_epoch(2);
        let v: Value = get(
            &c,
            &format!("{g}/v1.0/users/delta?$deltatoken=latest{sel}"),
            &tok,
        )
        .await
        .json()
        .await
        .unwrap();
        assert_eq!(v["value"].as_array().unwrap().len(), 0);
        let latest = v["@odata.deltaLink"].as_str().unwrap().to_string();
        let (_, full) = delta_round(&c, &tok, &format!("{g}/v1.0/users/delta?{sel}")).await;
        sim.set_epoch(4);
        let (from_latest, _) = delta_round(&c, &tok, &latest).await;
        let (from_full, _) = delta_round(&c, &tok, &full).await;
        assert!(!from_latest.is_empty());
        assert_eq!(from_latest, from_full);
        if !sel.is_empty() {
            let upsert = from_latest
                .iter()
                .find(|u| u.get("@removed").is_none())
                .unwrap();
            assert_eq!(upsert.as_object().unwrap().len(), 2, "{upsert}");
        }
    }
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_epoch_moves_on_during_a_walk_once() {
    let sim = start(SimOptions {
        users: 1000,
        epoch: Some(0),
        advance_epoch_after_users_pages: Some(3),
        ..SimOptions::default()
    })
    .await;
    let c = client();
    let tok = token(&c, &sim).await;
    let (ids, pages) = walk_users(&c, &sim, &tok, 100).await;
    assert!(pages >= 10);
    assert_eq!(sim.epoch(), 1);
    // Joiners of epoch 1 (indexes past 1000) show up at the end of the walk.
    assert!(ids.contains(&sim.tenant().user_id(1000)));
    walk_users(&c, &sim, &tok, 100).await;
    assert_eq!(sim.epoch(), 1);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jitter_stays_within_its_bounds() {
    let opts = SimOptions {
        latency_ms: 40,
        jitter_ms: 25,
        ..SimOptions::default()
    };
    let s = state::State::new(opts.clone(), String::new(), String::new());
    let draws: Vec<u64> = (0..2000)
        .map(|_| s.next_latency().as_millis() as u64)
        .collect();
    assert!(draws.iter().all(|d| (15..=65).contains(d)));
    assert!(draws.contains(&15) && draws.contains(&65));
    let again = state::State::new(opts.clone(), String::new(), String::new());
    assert!(
        draws
            .iter()
            .all(|d| *d == again.next_latency().as_millis() as u64)
    );
    let clamp = state::State::new(
        SimOptions {
            latency_ms: 5,
            jitter_ms: 50,
            ..opts.clone()
        },
        String::new(),
        String::new(),
    );
    assert!((0..500).all(|_| clamp.next_latency() <= Duration::from_millis(55)));
    let sim = start(opts).await;
    let c = client();
    let tok = token(&c, &sim).await;
    for _ in 0..5 {
        let t0 = Instant::now();
        get(&c, &format!("{}/v1.0/organization", sim.graph_url()), &tok).await;
        let e = t0.elapsed();
        assert!(
            e >= Duration::from_millis(15) && e < Duration::from_millis(400),
            "{e:?}"
        );
    }
    sim.shutdown().await;
}
