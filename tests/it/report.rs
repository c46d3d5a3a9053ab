//! Run report: the page `run` writes is parsed back and every figure on it is compared with
//! the result of its query under sql/report/ (run the way `m365-connector sql` runs it);
//! concealed, empty and failed runs render; nothing outside the file is referenced; the
//! page's size does not grow with the tenant.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use m365_connector::cli::SqlFormat;
use m365_connector::commands::query::query;
use m365_connector::config::Config;
use m365_connector::load::ExportFormat;
use m365_connector::output::Progress;
use m365_connector::pipeline::{self, RunOutcome};
use m365_connector::report::{self, QUERIES};
use m365_connector::sim::{SimOptions, Simulator};

use crate::util::{TempDir, duck, lit, sim_options, sim_with_config};

const BIN: &str = env!("CARGO_BIN_EXE_m365-connector");

/// Every section the page must have (`data-section`), in page order.
const SECTIONS: &[&str] = &[
    "run", "funnel", "licences", "activity", "office", "identity", "warnings", "history",
];

fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

/// One tag of the page: its name, attributes (unescaped) and the text right after it.
#[derive(Debug)]
struct Tag {
    name: String,
    closing: bool,
    attrs: BTreeMap<String, String>,
    text: String,
}

/// A structural parse of the page (which the report writes well-formed: every attribute
/// double-quoted, every element closed or self-closed, no `<` in text). Panics on
/// anything else, so a broken page fails the test.
fn parse(html: &str) -> Vec<Tag> {
    const VOID: &[&str] = &["meta", "br", "hr", "img", "input", "link", "!doctype"];
    let mut tags = Vec::new();
    let mut stack: Vec<String> = Vec::new();
    let mut rest = html;
    while let Some(start) = rest.find('<') {
        rest = &rest[start + 1..];
        let end = rest.find('>').expect("an unterminated tag");
        let inner = &rest[..end];
        let after = &rest[end + 1..];
        let text = unescape(&after[..after.find('<').unwrap_or(after.len())]);
        rest = after;
        let closing = inner.starts_with('/');
        let self_closing = inner.ends_with('/');
        let body = inner.trim_start_matches('/').trim_end_matches('/');
        let name_end = body.find(|c: char| c.is_whitespace()).unwrap_or(body.len());
        let name = body[..name_end].to_ascii_lowercase();
        let mut attrs = BTreeMap::new();
        let mut a = body[name_end..].trim();
        while !a.is_empty() && name != "!doctype" {
            let eq = a
                .find('=')
                .unwrap_or_else(|| panic!("attribute without value in <{inner}>"));
            let key = a[..eq].trim().to_string();
            assert!(
                a[eq + 1..].starts_with('"'),
                "unquoted attribute {key} in <{inner}>"
            );
            let v = &a[eq + 2..];
            let close = v.find('"').unwrap();
            attrs.insert(key, unescape(&v[..close]));
            a = v[close + 1..].trim_start();
        }
        if closing {
            assert_eq!(
                stack.pop().as_deref(),
                Some(name.as_str()),
                "</{name}> closes something else"
            );
        } else if !self_closing && !VOID.contains(&name.as_str()) {
            stack.push(name.clone());
        }
        tags.push(Tag {
            name,
            closing,
            attrs,
            text,
        });
    }
    assert!(stack.is_empty(), "unclosed elements: {stack:?}");
    tags
}

/// `data-metric` → every (data-value, shown text) on the page.
fn metrics(tags: &[Tag]) -> BTreeMap<String, Vec<(String, String)>> {
    let mut out: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    for t in tags.iter().filter(|t| !t.closing) {
        if let Some(m) = t.attrs.get("data-metric") {
            let value = t.attrs.get("data-value").expect("data-value").clone();
            out.entry(m.clone())
                .or_default()
                .push((value, t.text.clone()));
        }
    }
    out
}

/// A query's result as `m365-connector sql --format csv` gives it: header, then rows; no
/// rows when a table it reads does not exist (a database no transform has written to).
fn sql_rows(cfg: &Config, run_id: &str, sql: &str) -> (Vec<String>, Vec<Vec<String>>) {
    let text = match query(
        &cfg.pipeline.data_dir,
        &format!("SET VARIABLE run_id = {}; {sql}", lit(run_id)),
        SqlFormat::Csv,
    ) {
        Ok(text) => text,
        Err(e) if e.to_string().contains("does not exist") => return (Vec::new(), Vec::new()),
        Err(e) => panic!("{e}"),
    };
    let mut r = csv::Reader::from_reader(text.as_bytes());
    let header = r.headers().unwrap().iter().map(str::to_string).collect();
    let rows = r
        .records()
        .map(|rec| rec.unwrap().iter().map(str::to_string).collect())
        .collect();
    (header, rows)
}

fn grouped(n: i64) -> String {
    let s = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 { format!("-{out}") } else { out }
}

/// Every number on the page equals its query's value, and every number the queries return
/// is on the page. Returns the number of figures checked.
fn check_figures(cfg: &Config, run_id: &str, html: &str) -> usize {
    let tags = parse(html);
    let on_page = metrics(&tags);
    let mut expected: BTreeMap<String, String> = BTreeMap::new();
    for q in QUERIES {
        let (header, rows) = sql_rows(cfg, run_id, q.sql);
        if !q.keyed {
            assert!(rows.len() <= 1, "{} returns one row", q.name);
        }
        for row in &rows {
            for (col, value) in header.iter().zip(row) {
                let metric = if q.keyed {
                    format!("{}.{}.{col}", q.name, row[0])
                } else {
                    format!("{}.{col}", q.name)
                };
                if q.keyed && col == &header[0] {
                    continue;
                }
                if value.parse::<f64>().is_ok() {
                    expected.insert(metric, value.clone());
                } else if value.is_empty() {
                    expected.insert(metric, String::new());
                }
            }
        }
    }
    for (metric, shown) in &on_page {
        let want = expected
            .get(metric)
            .unwrap_or_else(|| panic!("{metric} is on the page but no report query returns it"));
        for (value, text) in shown {
            if want.is_empty() {
                assert_eq!(value, "", "{metric} is NULL in SQL");
                assert_eq!(text, "–", "{metric}: NULL is shown as a dash");
                continue;
            }
            let (a, b): (f64, f64) = (value.parse().unwrap(), want.parse().unwrap());
            assert!(
                (a - b).abs() <= 1e-9 * b.abs().max(1.0),
                "{metric}: page {value}, SQL {want}"
            );
            if let Ok(n) = want.parse::<i64>() {
                assert_eq!(text, &grouped(n), "{metric} shown");
            }
        }
    }
    for (metric, want) in &expected {
        if !want.is_empty() {
            assert!(
                on_page.contains_key(metric),
                "{metric} = {want} (SQL) is not on the page"
            );
        }
    }
    for id in SECTIONS {
        assert!(
            tags.iter()
                .any(|t| t.attrs.get("data-section").map(String::as_str) == Some(*id)),
            "section {id} missing"
        );
    }
    on_page.values().map(Vec::len).sum()
}

/// Nothing outside the file is loaded or linked: no scripts, stylesheets, images, frames,
/// no `src`, no `href` but in-page anchors, no `url(` or `@import`, no http(s) URL at all.
fn assert_self_contained(html: &str) {
    for t in parse(html) {
        assert!(
            ![
                "script", "link", "img", "iframe", "object", "embed", "image", "use", "base"
            ]
            .contains(&t.name.as_str()),
            "<{}> in the page",
            t.name
        );
        for (k, v) in &t.attrs {
            assert!(
                k != "src" && k != "xlink:href" && !k.starts_with("on"),
                "{k}={v}"
            );
            if k == "href" {
                assert!(v.starts_with('#'), "href={v}");
            }
        }
    }
    let lower = html.to_ascii_lowercase();
    for bad in ["http://", "https://", "url(", "@import", "//cdn", "<script"] {
        assert!(!lower.contains(bad), "{bad} in the page");
    }
}

async fn run(
    opts: &SimOptions,
    tag: &str,
    extra: &str,
) -> (TempDir, Simulator, Config, RunOutcome) {
    let (dir, sim, cfg) = sim_with_config(opts, tag).await;
    let cfg = if extra.is_empty() {
        cfg
    } else {
        let path = dir.path().join("connector.toml");
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, format!("{text}{extra}\n")).unwrap();
        Config::load(&path).unwrap()
    };
    let outcome = pipeline::run(&cfg, &Progress::hidden(), &ExportFormat::ALL)
        .await
        .unwrap();
    (dir, sim, cfg, outcome)
}

fn read_report(outcome: &RunOutcome) -> String {
    let path = outcome.report.as_ref().expect("the run wrote its report");
    assert_eq!(path, &outcome.loaded.dir.join(report::REPORT_FILE));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the report is for its owner only");
    }
    std::fs::read_to_string(path).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_figure_on_the_page_equals_its_sql() {
    // Department required: people without one are rejected, so the rejects section has rows.
    let dir_mapping = TempDir::new("report-mapping");
    let mapping = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("mappings/microsoft365.csv"),
    )
    .unwrap()
    .replace(
        "User.Department,department,,,",
        "User.Department,department,,yes,",
    );
    let mapping_path = dir_mapping.path().join("mapping.csv");
    std::fs::write(&mapping_path, mapping).unwrap();
    let mut opts = sim_options(1_200, 81);
    opts.faults = "429=0.15,retry-after=decimal,retry-after-secs=0.05"
        .parse()
        .unwrap();
    // A TOML literal string: the path as it is.
    let (dir, _sim, cfg, outcome) = run(
        &opts,
        "report",
        &format!("mappings = '{}'", mapping_path.display()),
    )
    .await;
    let run_id = outcome.extracted.run_id.clone();
    let t = &outcome.transformed;
    assert!(t.rejected > 0 && t.filtered_out > 0 && t.kept > 0, "{t:?}");
    let html = read_report(&outcome);

    let checked = check_figures(&cfg, &run_id, &html);
    assert!(checked > 100, "only {checked} figures");
    assert_self_contained(&html);

    // The funnel is the transform's own count, and the page's warnings are the run's.
    let m = metrics(&parse(&html));
    let first = |k: &str| m[k][0].0.clone();
    assert_eq!(first("funnel.fetched"), t.users.to_string());
    assert_eq!(first("funnel.kept"), t.kept.to_string());
    assert_eq!(first("funnel.filtered_out"), t.filtered_out.to_string());
    assert_eq!(first("funnel.rejected"), t.rejected.to_string());
    let warnings: Vec<String> = parse(&html)
        .into_iter()
        .filter_map(|t| t.attrs.get("data-warning").cloned())
        .collect();
    let codes: Vec<String> = outcome.warnings().into_iter().map(|w| w.code).collect();
    assert_eq!(
        warnings, codes,
        "the page lists the run's warnings in order"
    );
    assert!(warnings.contains(&"throttled".to_string()), "{warnings:?}");
    assert!(warnings.contains(&"rejects".to_string()), "{warnings:?}");
    assert!(html.matches("<b>What to do:</b>").count() >= warnings.len());
    // Reject reasons, SKU names and the tenant are data: present, escaped.
    assert!(html.contains("missing required attribute: User.Department"));
    assert!(html.contains("Microsoft 365 E3"));
    assert!(html.contains("<title>Test tenant — run "));

    // The same figures from the command line: `sql` runs a report file as it is (newest
    // transformed run), `report` writes the page elsewhere or prints it.
    let c = dir.path().join("connector.toml").display().to_string();
    let funnel = QUERIES.iter().find(|q| q.name == "funnel").unwrap().sql;
    let out = Command::new(BIN)
        .args(["sql", "-c", &c, funnel, "--format", "csv"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).lines().nth(1).unwrap(),
        format!(
            "{},{},{},{},{}",
            t.users,
            t.filtered_out,
            t.users - t.filtered_out,
            t.rejected,
            t.kept
        )
    );
    let elsewhere = cfg.pipeline.data_dir.join("elsewhere.html");
    let out = Command::new(BIN)
        .args(["report", "-c", &c, "--run", &run_id, "-o"])
        .arg(&elsewhere)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains(&elsewhere.display().to_string()));
    let again = std::fs::read_to_string(&elsewhere).unwrap();
    check_figures(&cfg, &run_id, &again);
    let out = Command::new(BIN)
        .args(["report", "-c", &c, "-o", "-"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        again,
        "same run, same page"
    );
    let out = Command::new(BIN)
        .args(["report", "-c", &c, "--run", "20990101T000000Z-dead"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("20990101T000000Z-dead") && err.contains("m365-connector runs -c FILE"),
        "{err}"
    );

    // `run` writes the report of its run and names it in the summary; the history strip
    // then shows both runs.
    let out = Command::new(BIN)
        .args(["-q", "run", "-c", &c])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "warnings: {stdout}");
    let line = stdout
        .lines()
        .find(|l| l.trim_start().starts_with("report "))
        .unwrap_or_else(|| panic!("no report line in {stdout}"));
    let second = Path::new(line.trim_start().trim_start_matches("report").trim());
    let second_id = second
        .parent()
        .and_then(|p| p.file_name())
        .unwrap()
        .to_string_lossy()
        .into_owned();
    assert!(second_id > run_id);
    let html = std::fs::read_to_string(dir.path().join(second)).unwrap();
    check_figures(&cfg, &second_id, &html);
    let m = metrics(&parse(&html));
    assert!(m.contains_key(&format!("history.{run_id}.kept")));
    assert!(m.contains_key(&format!("history.{second_id}.kept")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concealed_empty_and_failed_runs_render() {
    // Concealed names: activity is unknown, and the sections say why and what to do.
    let mut opts = sim_options(400, 82);
    opts.concealed = true;
    let (_dir, _sim, cfg, outcome) = run(&opts, "report-concealed", "").await;
    assert!(outcome.transformed.concealed);
    let html = read_report(&outcome);
    check_figures(&cfg, &outcome.extracted.run_id, &html);
    assert_self_contained(&html);
    let m = metrics(&parse(&html));
    for key in [
        "activity.Exchange.active_users",
        "activity.Teams.active_users",
        "licences.05e9a617-0261-4cee-bb44-138d3ef5d965.inactive_users",
    ] {
        assert_eq!(m[key][0].0, "", "{key} is unknown when names are concealed");
    }
    assert!(
        !m.keys()
            .any(|k| k.starts_with("activations.") || k.starts_with("apps.")),
        "no chart of unknowns for Office usage"
    );
    let fix = m365_connector::concealment::FIX
        .replace('&', "&amp;")
        .replace('>', "&gt;")
        .replace('"', "&quot;");
    assert!(html.contains("Activity per service is unknown: usage reports conceal user names"));
    assert!(html.contains(&fix), "the fix is on the page");
    assert!(html.contains("data-warning=\"concealed_names\""));

    // A tenant without users: zeros, no division by zero, no chart of nothing.
    let (_dir, _sim, cfg, outcome) = run(&sim_options(0, 83), "report-empty", "").await;
    assert_eq!(outcome.transformed.users, 0);
    let html = read_report(&outcome);
    check_figures(&cfg, &outcome.extracted.run_id, &html);
    let m = metrics(&parse(&html));
    assert_eq!(m["funnel.fetched"][0], ("0".to_string(), "0".to_string()));
    assert_eq!(m["activity.Exchange.active_pct"][0].0, "");
    assert!(html.contains("This run has no users."));

    // A run refused for missing permissions: the page shows the error and its fix.
    let mut opts = sim_options(50, 84);
    opts.roles = vec!["Directory.Read.All".into()];
    let (dir, _sim, cfg) = sim_with_config(&opts, "report-failed").await;
    let err = pipeline::run(&cfg, &Progress::hidden(), &ExportFormat::ALL)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("Reports.Read.All"), "{err}");
    let failed = query(
        &cfg.pipeline.data_dir,
        "SELECT run_id FROM runs WHERE status = 'failed'",
        SqlFormat::Csv,
    )
    .unwrap();
    let failed_id = failed.lines().nth(1).expect("a failed run").to_string();
    let out = dir.path().join("failed.html");
    let w = tokio::task::spawn_blocking({
        let (cfg, id, out) = (cfg.clone(), failed_id.clone(), out.clone());
        move || report::write(&cfg, Some(&id), Some(&out)).unwrap()
    })
    .await
    .unwrap();
    assert_eq!(w.run_id, failed_id);
    let html = std::fs::read_to_string(&out).unwrap();
    check_figures(&cfg, &failed_id, &html);
    assert_self_contained(&html);
    assert!(html.contains("data-warning=\"run_failed\""));
    assert!(html.contains("Reports.Read.All"));
    assert!(html.contains("This run was not transformed"));
    // And without --run there is nothing transformed to report on: a clear error.
    let e = report::write(&cfg, None, Some(&out)).unwrap_err();
    assert!(e.to_string().contains("m365-connector runs -c FILE"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_does_not_grow_with_the_tenant() {
    let mut sizes = Vec::new();
    for (users, seed) in [(300u64, 85u64), (6_000, 85)] {
        let (_dir, _sim, _cfg, outcome) = run(&sim_options(users, seed), "report-size", "").await;
        sizes.push(read_report(&outcome).len());
    }
    // Every section is an aggregate of bounded size: 20x the users, a few digits more.
    assert!(sizes[1] < sizes[0] + 4 * 1024, "{sizes:?}");
    assert!(sizes[1] < 200 * 1024, "{sizes:?}");
}

/// The identity-hygiene rows of a page: `data-check` → the row's text (tags stripped) and
/// its figures (`users`, `of_users`, `addresses`, as `data-value`).
fn identity_rows(html: &str) -> BTreeMap<String, (String, BTreeMap<String, String>)> {
    let mut out: BTreeMap<String, (String, BTreeMap<String, String>)> = BTreeMap::new();
    let mut current: Option<String> = None;
    for t in parse(html) {
        if t.name == "tr" && t.closing {
            current = None;
            continue;
        }
        if t.name == "tr"
            && let Some(c) = t.attrs.get("data-check")
        {
            current = Some(c.clone());
        }
        let Some(c) = &current else { continue };
        let row = out.entry(c.clone()).or_default();
        row.0.push_str(&t.text);
        if let Some(m) = t.attrs.get("data-metric")
            && let Some(col) = m.strip_prefix(&format!("identity.{c}."))
        {
            row.1.insert(col.to_string(), t.attrs["data-value"].clone());
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_hygiene_counts_what_the_directory_holds() {
    // The default connector file reads neither managers nor sign-ins.
    let (_dir, _sim, cfg, outcome) = run(&sim_options(2_000, 86), "report-identity", "").await;
    let run_id = outcome.extracted.run_id.clone();
    let html = read_report(&outcome);
    check_figures(&cfg, &run_id, &html);
    let rows = identity_rows(&html);
    let order: Vec<&str> = rows.keys().map(String::as_str).collect();
    assert_eq!(order.len(), 9, "{order:?}");

    // Independently of the transform: the same facts from the landed Graph records.
    let m = &outcome.extracted.manifest;
    let files: Vec<String> = m.streams["users"]
        .files
        .iter()
        .map(|f| lit(&outcome.extracted.dir.join(&f.file).display().to_string()))
        .collect();
    let users = format!(
        "(SELECT DISTINCT json_extract_string(record, '$.id') AS id, record FROM read_parquet([{}]))",
        files.join(", ")
    );
    let shared = duck(&format!(
        "WITH u AS {users},
         a AS (
             SELECT id, lower(json_extract_string(record, '$.mail')) AS addr FROM u
             UNION SELECT id, lower(substr(x, 6)) FROM u, unnest(json_extract_string(record, '$.proxyAddresses[*]')) t(x)
                   WHERE lower(x) LIKE 'smtp:%'
             UNION SELECT id, lower(x) FROM u, unnest(json_extract_string(record, '$.otherMails[*]')) t(x)
         ),
         s AS (SELECT addr FROM a WHERE addr IS NOT NULL GROUP BY addr HAVING count(DISTINCT id) > 1)
         SELECT (SELECT count(*) FROM s)::VARCHAR,
                (SELECT count(DISTINCT id) FROM a SEMI JOIN s USING (addr))::VARCHAR,
                (SELECT count(*) FROM a WHERE addr = 'it-helpdesk@contoso.com')::VARCHAR"
    ));
    let (addresses, people, helpdesk) = (
        shared[0][0].clone().unwrap(),
        shared[0][1].clone().unwrap(),
        shared[0][2].clone().unwrap(),
    );
    let (text, figures) = &rows["shared_address"];
    assert_eq!(figures["addresses"], addresses, "{text}");
    assert_eq!(figures["users"], people, "{text}");
    // The planted helpdesk address, and at least one alias that is someone else's mail.
    let helpdesk: u64 = helpdesk.parse().unwrap();
    assert!(
        helpdesk >= 2,
        "the simulator plants it-helpdesk@contoso.com: {helpdesk}"
    );
    assert!(addresses.parse::<u64>().unwrap() >= 2, "{addresses}");
    assert!(
        text.contains("it-helpdesk@contoso.com: "),
        "the shared address is an example: {text}"
    );
    assert!(
        text.contains("remove it from everyone but its owner"),
        "{text}"
    );

    let sync = duck(&format!(
        "WITH u AS {users}, s AS (
             SELECT json_extract(record, '$.onPremisesSyncEnabled')::BOOLEAN AS enabled,
                    json_extract_string(record, '$.onPremisesLastSyncDateTime')::TIMESTAMP AS last
             FROM u)
         SELECT count(*) FILTER (WHERE enabled IS NULL)::VARCHAR,
                count(*) FILTER (WHERE enabled)::VARCHAR,
                count(*) FILTER (WHERE NOT enabled)::VARCHAR,
                count(*) FILTER (WHERE enabled AND last < DATE '{}' - INTERVAL 7 DAY)::VARCHAR
         FROM s",
        m.run_date.format("%Y-%m-%d")
    ));
    let want: Vec<String> = sync[0].iter().map(|c| c.clone().unwrap()).collect();
    for (check, want) in [
        "sync_cloud_only",
        "sync_synced",
        "sync_no_longer_synced",
        "stale_sync",
    ]
    .iter()
    .zip(&want)
    {
        assert_eq!(&rows[*check].1["users"], want, "{check}");
    }
    assert_eq!(
        rows["stale_sync"].1["of_users"], want[1],
        "stale among the synced"
    );
    let stale: u64 = want[3].parse().unwrap();
    let synced: u64 = want[1].parse().unwrap();
    assert!(
        stale > 0 && stale * 10 < synced,
        "about 3% of synced: {stale} of {synced}"
    );
    assert!(rows["stale_sync"].0.contains(": last sync "));

    // Managers and sign-ins were not read: no figure, and how to read them.
    for check in [
        "no_manager",
        "manager_org_contact",
        "manager_not_in_run_users",
        "no_recent_sign_in",
    ] {
        let (text, figures) = &rows[check];
        assert_eq!(figures["users"], "", "{check} is unknown, not zero");
        assert!(
            text.contains("not read") && text.contains("Not read by this run"),
            "{text}"
        );
    }
    assert!(rows["no_manager"].0.contains("[pipeline] manager = true"));
    let sign_ins = &rows["no_recent_sign_in"].0;
    for needed in [
        "[pipeline] sign_in_activity = \"auto\"",
        "AuditLog.Read.All",
        "Entra ID P1",
    ] {
        assert!(sign_ins.contains(needed), "{needed}: {sign_ins}");
    }

    // Examples stay bounded whatever the tenant: at most 10 a check.
    let sizes = query(
        &cfg.pipeline.data_dir,
        &format!(
            "SELECT check_name, len(examples) FROM identity_hygiene WHERE run_id = {} ORDER BY ord",
            lit(&run_id)
        ),
        SqlFormat::Csv,
    )
    .unwrap();
    for line in sizes.lines().skip(1) {
        let (check, n) = line.split_once(',').unwrap();
        let n: usize = n.parse().unwrap();
        assert!(n <= 10, "{check}: {n} examples");
        if check == "sync_no_longer_synced" {
            assert_eq!(n, 10, "hundreds of them, ten shown");
        }
    }
}

/// The model on a directory made by hand, with managers and sign-ins read: every boundary
/// the checks draw (prefixes, case, the cutoffs, one person carrying an address twice).
#[test]
fn identity_checks_draw_their_lines_where_they_say() {
    let sql = m365_connector::transform::MODELS
        .iter()
        .find(|m| m.name == "intermediate/int_identity_hygiene")
        .unwrap()
        .sql;
    let conn = duckdb::Connection::open_in_memory().unwrap();
    // run_date 2026-06-30; the date filter's cutoff 2026-05-31; stale before 2026-06-23.
    conn.execute_batch(
        "CREATE TABLE int_people (id VARCHAR, user_principal_name VARCHAR, mail VARCHAR,
            account_enabled BOOLEAN, on_premises_sync_enabled BOOLEAN,
            on_premises_last_sync_at TIMESTAMP, proxy_addresses VARCHAR[], other_mails VARCHAR[],
            manager_id VARCHAR, manager_unresolved VARCHAR, last_sign_in_date DATE);
         INSERT INTO int_people VALUES
         ('1', 'u1@x', 'A@x.com', true, true, '2026-06-29 23:00', ['SMTP:a@x.com', 'smtp:alias@x.com', 'SIP:shared@x.com'], [], '6', NULL, '2026-06-29'),
         ('2', 'u2@x', 'b@x.com', true, true, '2026-06-22 23:59', ['SMTP:b@x.com', 'X500:/o=shared@x.com', 'smtp:ALIAS@x.com'], ['b@x.com'], 'c1', 'org_contact', NULL),
         ('3', 'u3@x', NULL, false, false, '2025-01-01', [], ['shared@x.com'], 'gone', 'not_in_run_users', NULL),
         ('4', 'u4@x', NULL, true, NULL, NULL, ['SIP:shared@x.com'], ['helpdesk@x.com'], NULL, NULL, '2026-05-31'),
         ('5', 'u5@x', NULL, true, NULL, NULL, [], [' Helpdesk@X.com '], NULL, NULL, '2026-05-30'),
         ('6', 'u6@x', NULL, true, true, '2026-06-23 00:00', [], [], '1', NULL, '2026-06-30');
         INSERT INTO int_people SELECT 't' || lpad(i::VARCHAR, 2, '0'), 't' || lpad(i::VARCHAR, 2, '0') || '@x',
             NULL, true, NULL, NULL, [], ['team@x.com'], NULL, NULL, '2026-06-30' FROM range(1, 21) r(i);
         SET VARIABLE run_date = DATE '2026-06-30'; SET VARIABLE date_filter_days = 30;",
    )
    .unwrap();
    let rows = |vars: &str| -> BTreeMap<String, Vec<String>> {
        conn.execute_batch(vars).unwrap();
        let mut stmt = conn
            .prepare(&format!(
                "SELECT check_name, status, users::VARCHAR, of_users::VARCHAR, addresses::VARCHAR,
                        since::VARCHAR, array_to_string(examples, ' | ') FROM ({sql})"
            ))
            .unwrap();
        stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                (1..7)
                    .map(|i| r.get::<_, Option<String>>(i).map(Option::unwrap_or_default))
                    .collect::<duckdb::Result<Vec<String>>>()?,
            ))
        })
        .unwrap()
        .map(Result::unwrap)
        .collect()
    };
    let read = rows("SET VARIABLE managers_read = true; SET VARIABLE sign_ins_read = true;");
    let r = |check: &str| read[check][..5].to_vec();
    let v = |xs: &[&str]| xs.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    assert_eq!(r("no_manager"), v(&["finding", "22", "26", "", ""]));
    assert_eq!(r("manager_org_contact"), v(&["finding", "1", "4", "", ""]));
    assert_eq!(read["manager_org_contact"][5], "u2@x: manager c1");
    assert_eq!(
        r("manager_not_in_run_users"),
        v(&["finding", "1", "4", "", ""])
    );
    // Never signed in, or before the cutoff; the cutoff day itself is within; disabled
    // accounts are not counted.
    assert_eq!(
        r("no_recent_sign_in"),
        v(&["finding", "2", "25", "", "2026-05-31"])
    );
    assert_eq!(
        read["no_recent_sign_in"][5],
        "u2@x: never signed in | u5@x: last sign-in 2026-05-30"
    );
    // alias@x.com (smtp: in any case), helpdesk@x.com (trimmed, lower-cased), team@x.com;
    // not shared@x.com (SIP:/X500: are not mail) nor b@x.com (one person, twice).
    assert_eq!(r("shared_address"), v(&["finding", "24", "26", "3", ""]));
    assert_eq!(
        read["shared_address"][5],
        "team@x.com: t01@x, t02@x, t03@x, t04@x, t05@x (+15 more) | alias@x.com: u1@x, u2@x | helpdesk@x.com: u4@x, u5@x"
    );
    assert_eq!(r("sync_cloud_only"), v(&["info", "22", "26", "", ""]));
    assert_eq!(r("sync_synced"), v(&["info", "3", "26", "", ""]));
    assert_eq!(
        r("sync_no_longer_synced"),
        v(&["finding", "1", "26", "", ""])
    );
    // Synced at 2026-06-23 00:00 is within 7 days; a minute before is stale.
    assert_eq!(r("stale_sync"), v(&["finding", "1", "3", "", "2026-06-23"]));
    assert_eq!(read["stale_sync"][5], "u2@x: last sync 2026-06-22");
    assert_eq!(read["no_manager"][5].split(" | ").count(), 10, "bounded");

    // Not read: no figures, no examples; the other checks do not depend on it. Without a
    // date filter, sign-ins are checked over 90 days.
    let not_read = rows(
        "SET VARIABLE managers_read = false; SET VARIABLE sign_ins_read = false; SET VARIABLE date_filter_days = 0;",
    );
    for check in [
        "no_manager",
        "manager_org_contact",
        "manager_not_in_run_users",
        "no_recent_sign_in",
    ] {
        assert_eq!(
            not_read[check],
            v(&["not_read", "", "", "", "", ""]),
            "{check}"
        );
    }
    assert_eq!(not_read["shared_address"], read["shared_address"]);
    let ninety = rows("SET VARIABLE sign_ins_read = true;");
    assert_eq!(ninety["no_recent_sign_in"][4], "2026-04-01");
    assert_eq!(
        ninety["no_recent_sign_in"][1], "1",
        "only the never signed in"
    );
}
