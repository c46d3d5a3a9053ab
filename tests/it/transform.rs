//! Transform stage: people equal an independent computation of the DESIGN.md rule from the
//! simulator's generator, values byte-exact, re-runs identical.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::NaiveDate;
use m365_connector::cli::SqlFormat;
use m365_connector::commands::query::query;
use m365_connector::config::Config;
use m365_connector::extract::{Extracted, extract};
use m365_connector::output::Progress;
use m365_connector::sim::Tenant;
use m365_connector::sim::{SimOptions, Simulator};
use m365_connector::streams::Report;
use m365_connector::transform::transform;
use serde_json::Value;

use crate::util::{TempDir, connector_file, sim_options};

struct Setup {
    dir: TempDir,
    sim: Simulator,
    opts: SimOptions,
    cfg_path: std::path::PathBuf,
    run: Extracted,
}

async fn setup(opts: SimOptions, tag: &str) -> Setup {
    let dir = TempDir::new(tag);
    let sim = Simulator::start(opts.clone()).await.unwrap();
    let cfg_path = connector_file(dir.path(), &sim, &opts, &opts.client_secret);
    let cfg = Config::load(&cfg_path).unwrap();
    let run = extract(&cfg, &Progress::hidden()).await.unwrap();
    Setup {
        dir,
        sim,
        opts,
        cfg_path,
        run,
    }
}

/// The connector file with extra `[filter]`/`[pipeline]` lines appended.
fn config_with(s: &Setup, filter_days: u32, extra_pipeline: &str) -> Config {
    let text = std::fs::read_to_string(&s.cfg_path).unwrap();
    let text = text.replace("[pipeline]\n", &format!("[pipeline]\n{extra_pipeline}\n"));
    let text = format!("{text}[filter]\ndate_filter_days = {filter_days}\n");
    let path = s.dir.path().join("connector-variant.toml");
    std::fs::write(&path, text).unwrap();
    Config::load(&path).unwrap()
}

fn people(cfg: &Config, run_id: &str) -> BTreeMap<String, Value> {
    let out = query(
        &cfg.pipeline.data_dir,
        &format!("SELECT * EXCLUDE (_run_id) FROM people WHERE _run_id = '{run_id}'"),
        SqlFormat::Json,
    )
    .unwrap();
    out.lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            (v["User.ExternalId"].as_str().unwrap().to_string(), v)
        })
        .collect()
}

fn date(s: &str) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(s.get(..10)?, "%Y-%m-%d").ok()
}

/// last_seen_date per user id, computed from the generator with the DESIGN.md rule.
fn expected_last_seen(t: &Tenant, concealed: bool) -> HashMap<String, Option<NaiveDate>> {
    let users: Vec<serde_json::Map<String, Value>> = (0..t.users).map(|i| t.user(i)).collect();
    let mut by_upn: HashMap<String, usize> = HashMap::new();
    let mut by_id: HashMap<String, usize> = HashMap::new();
    let mut seen: Vec<Option<NaiveDate>> = Vec::new();
    for (i, u) in users.iter().enumerate() {
        by_upn.insert(u["userPrincipalName"].as_str().unwrap().to_lowercase(), i);
        by_id.insert(u["id"].as_str().unwrap().to_lowercase(), i);
        let d = ["createdDateTime", "lastPasswordChangeDateTime"]
            .iter()
            .filter_map(|k| u.get(*k).and_then(Value::as_str).and_then(date))
            .max();
        seen.push(d);
    }
    if !concealed {
        for r in Report::ALL {
            let header = t.report_header(r);
            let col = |name: &str| header.iter().position(|h| h == name);
            let user_col = col(r.user_column()).unwrap();
            let deleted = col("Is Deleted");
            let id_col = (r == Report::TeamsUserActivityUserDetail)
                .then(|| col("User Id"))
                .flatten();
            let date_cols: Vec<usize> = header
                .iter()
                .enumerate()
                .filter(|(_, h)| {
                    h.ends_with("Last Activity Date") || h.ends_with("License Assign Date")
                })
                .map(|(i, _)| i)
                .collect();
            for row in t.report_rows(r) {
                if deleted.is_some_and(|d| row[d] == "True") {
                    continue;
                }
                let mut targets = BTreeSet::new();
                if let Some(&i) = by_upn.get(&row[user_col].trim().to_lowercase()) {
                    targets.insert(i);
                }
                if let Some(&i) = id_col.and_then(|c| by_id.get(&row[c].trim().to_lowercase())) {
                    targets.insert(i);
                }
                let d = date_cols.iter().filter_map(|c| date(&row[*c])).max();
                for i in targets {
                    seen[i] = seen[i].max(d);
                }
            }
        }
    }
    users
        .iter()
        .zip(seen)
        .map(|(u, d)| (u["id"].as_str().unwrap().to_string(), d))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn people_equal_the_date_filter_rule_at_the_exact_cutoff() {
    let s = setup(sim_options(2_000, 31), "cutoff").await;
    let tenant = Tenant {
        seed: s.opts.seed,
        users: s.opts.users,
        today: s.opts.today,
        concealed: false,
    };
    let seen = expected_last_seen(&tenant, false);
    let run_date = s.run.manifest.run_date;
    // A cutoff with a user exactly on it and one the day before.
    let dates: BTreeSet<NaiveDate> = seen.values().flatten().copied().collect();
    let cutoff = dates
        .iter()
        .rev()
        .find(|d| {
            **d < run_date - chrono::Days::new(3) && dates.contains(&(**d - chrono::Days::new(1)))
        })
        .copied()
        .expect("the generator spreads dates enough");
    let days = (run_date - cutoff).num_days() as u32;
    let cfg = config_with(&s, days, "");
    let t = transform(&cfg, None).unwrap();

    let expected: BTreeSet<String> = seen
        .iter()
        .filter(|(_, d)| d.is_some_and(|d| d >= cutoff))
        .map(|(id, _)| id.clone())
        .collect();
    let got = people(&cfg, &t.run_id);
    let got_ids: BTreeSet<String> = got.keys().cloned().collect();
    assert_eq!(
        got_ids, expected,
        "people differ from the DESIGN.md rule (cutoff {cutoff})"
    );
    assert!(
        seen.values().any(|d| *d == Some(cutoff)),
        "nobody on the cutoff day"
    );
    assert!(
        seen.values()
            .any(|d| *d == Some(cutoff - chrono::Days::new(1))),
        "nobody the day before"
    );
    for (id, d) in &seen {
        if *d == Some(cutoff) {
            assert!(got.contains_key(id), "{id} on the cutoff day was dropped");
        }
        if *d == Some(cutoff - chrono::Days::new(1)) {
            assert!(
                !got.contains_key(id),
                "{id} the day before the cutoff was kept"
            );
        }
    }
    assert_eq!(t.kept as usize, expected.len());
    assert_eq!(t.filtered_out as usize, 2_000 - expected.len());
    assert_eq!(t.rejected, 0);

    // Every default attribute equals its source, byte for byte.
    let users: HashMap<String, serde_json::Map<String, Value>> = (0..tenant.users)
        .map(|i| {
            let u = tenant.user(i);
            (u["id"].as_str().unwrap().to_string(), u)
        })
        .collect();
    let mut friendly = false;
    for (id, p) in &got {
        let u = &users[id];
        for (target, source) in [
            ("User.UserPrincipalName", "userPrincipalName"),
            ("User.Email", "mail"),
            ("User.FirstName", "givenName"),
            ("User.LastName", "surname"),
            ("User.JobTitle", "jobTitle"),
            ("User.Department", "department"),
            ("User.OfficeLocation", "officeLocation"),
            ("User.CompanyName", "companyName"),
            ("User.EmployeeId", "employeeId"),
            ("User.MobilePhone", "mobilePhone"),
            ("User.City", "city"),
            ("User.State", "state"),
            ("User.Country", "country"),
            ("User.UsageLocation", "usageLocation"),
            ("User.UserType", "userType"),
            ("User.AccountEnabled", "accountEnabled"),
        ] {
            let want = u.get(source).cloned().unwrap_or(Value::Null);
            assert_eq!(
                p.get(target).cloned().unwrap_or(Value::Null),
                want,
                "{id} {target}"
            );
        }
        let name = |k: &str| u.get(k).and_then(Value::as_str).filter(|s| !s.is_empty());
        let full = name("displayName").map(str::to_string).or_else(|| {
            let parts: Vec<&str> = [name("givenName"), name("surname")]
                .into_iter()
                .flatten()
                .collect();
            (!parts.is_empty()).then(|| parts.join(" "))
        });
        assert_eq!(
            p["User.FullName"].as_str(),
            full.as_deref(),
            "{id} FullName"
        );
        assert_eq!(p["User.BusinessPhone"], u["businessPhones"], "{id} phones");
        assert_eq!(
            p["User.CreatedDate"].as_str(),
            u["createdDateTime"].as_str().and_then(|s| s.get(..10)),
            "{id} CreatedDate"
        );
        assert_eq!(
            p["User.LastSeenDate"].as_str().and_then(date),
            seen[id],
            "{id} LastSeenDate"
        );
        let licences = p["User.Licenses"].as_array().unwrap();
        assert_eq!(
            licences.len(),
            u["assignedLicenses"].as_array().unwrap().len(),
            "{id}"
        );
        friendly |= licences
            .iter()
            .any(|l| l == "Microsoft 365 E3" || l == "Office 365 E3");
    }
    assert!(friendly, "no friendly licence name");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transform_twice_is_identical_and_never_calls_graph() {
    let s = setup(sim_options(800, 8), "rerun").await;
    let cfg = Config::load(&s.cfg_path).unwrap();
    let before = s.sim.stats().total_requests;
    let a = transform(&cfg, None).unwrap();
    let b = transform(&cfg, Some(&s.run.run_id)).unwrap();
    assert_eq!(a.people_sha256, b.people_sha256);
    assert_eq!(a.people_sha256.len(), 64);
    assert_eq!(a.kept, b.kept);
    assert!(a.kept > 0);
    assert_eq!(
        s.sim.stats().total_requests,
        before,
        "transform made Graph requests"
    );
    // Exactly one copy of the run's people is stored.
    let n = query(
        &cfg.pipeline.data_dir,
        &format!(
            "SELECT count(*) AS n FROM people WHERE _run_id = '{}'",
            a.run_id
        ),
        SqlFormat::Csv,
    )
    .unwrap();
    assert_eq!(n.lines().nth(1).unwrap(), a.kept.to_string());
    // Reports rows for deleted accounts and report-only users are explained, not dropped.
    assert!(
        a.unmatched
            .iter()
            .any(|(_, reason, n, _)| reason == "deleted account" && *n > 0),
        "{:?}",
        a.unmatched
    );
    assert!(
        a.unmatched
            .iter()
            .any(|(_, reason, n, _)| reason == "not in directory" && *n > 0),
        "{:?}",
        a.unmatched
    );
    let runs = query(
        &cfg.pipeline.data_dir,
        m365_connector::commands::query::RUNS_SQL,
        SqlFormat::Csv,
    )
    .unwrap();
    assert!(
        runs.contains(&a.run_id) && runs.contains("succeeded"),
        "{runs}"
    );
}

// Hostile mapping files (unknown columns and transforms, duplicate targets, injection in
// every column, bad encodings, ...) are cases of the corpus: tests/corpus/mapping/, run by
// corpus::corpus_mapping with the exact message of each and the database unchanged.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concealed_runs_never_import_hashed_names() {
    let mut opts = sim_options(500, 17);
    opts.concealed = true;
    let s = setup(opts, "concealed-t").await;
    let cfg = config_with(&s, 0, "");
    let t = transform(&cfg, None).unwrap();
    assert!(t.concealed);
    let got = people(&cfg, &t.run_id);
    assert_eq!(got.len(), 500, "date filter 0 keeps every directory user");
    for p in got.values() {
        for attr in [
            "User.LastActivityDate",
            "User.ExchangeLastActivityDate",
            "User.TeamsLastActivityDate",
            "User.OfficeActivationsWindows",
        ] {
            assert!(
                p[attr].is_null(),
                "{attr} should be empty in a concealed run: {p}"
            );
        }
        let upn = p["User.UserPrincipalName"].as_str().unwrap();
        assert!(upn.contains('@'), "a hashed name became a person: {upn}");
    }
    assert!(
        t.unmatched
            .iter()
            .all(|(_, reason, _, _)| reason == "concealed name"),
        "{:?}",
        t.unmatched
    );
    // With a filter, only directory dates count.
    let tenant = Tenant {
        seed: s.opts.seed,
        users: s.opts.users,
        today: s.opts.today,
        concealed: true,
    };
    let seen = expected_last_seen(&tenant, true);
    let cfg = config_with(&s, 60, "");
    let t = transform(&cfg, None).unwrap();
    let cutoff = s.run.manifest.run_date - chrono::Days::new(60);
    let expected = seen
        .values()
        .filter(|d| d.is_some_and(|d| d >= cutoff))
        .count();
    assert_eq!(t.kept as usize, expected);
    let runs = query(
        &cfg.pipeline.data_dir,
        "SELECT warnings FROM runs",
        SqlFormat::Csv,
    )
    .unwrap();
    assert!(runs.contains("concealed_names"), "{runs}");
}

/// `[pipeline] memory_limit_mib` at its minimum changes where DuckDB keeps data, never the
/// result; and the streamed people hash is the SQL definition (JSON lines in key order).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_memory_limit_gives_the_same_people_and_hash() {
    let s = setup(sim_options(3_000, 11), "memlimit").await;
    let roomy = transform(&Config::load(&s.cfg_path).unwrap(), None).unwrap();
    let tight_cfg = config_with(
        &s,
        30,
        &format!(
            "memory_limit_mib = {}",
            m365_connector::config::MIN_MEMORY_LIMIT_MIB
        ),
    );
    let roomy_30 = transform(&config_with(&s, 30, ""), None).unwrap();
    let tight = transform(&tight_cfg, None).unwrap();
    assert_eq!(tight.people_sha256, roomy_30.people_sha256);
    assert_eq!(tight.kept, roomy_30.kept);
    assert!(tight.kept > 0 && tight.kept <= roomy.kept);
    assert!(
        s.dir.path().join("data/.duckdb-tmp").is_dir(),
        "no spill directory next to the database"
    );
    let by_sql = query(
        &tight_cfg.pipeline.data_dir,
        &format!(
            "SELECT coalesce(sha256(string_agg(to_json(p)::VARCHAR, chr(10) ORDER BY p.\"User.ExternalId\")), '') AS h
             FROM (SELECT * EXCLUDE (_run_id) FROM people WHERE _run_id = '{}') p",
            tight.run_id
        ),
        SqlFormat::Csv,
    )
    .unwrap();
    assert_eq!(by_sql.lines().nth(1), Some(tight.people_sha256.as_str()));
}

/// `int_people` built in parts (as a large tenant's is, to fit `memory_limit_mib`) holds every
/// user once and gives the same people as one part.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn int_people_in_parts_equals_one_part() {
    let s = setup(sim_options(2_500, 12), "parts").await;
    let cfg = Config::load(&s.cfg_path).unwrap();
    let whole = transform(&cfg, None).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_m365-connector"))
        .args(["-q", "transform", "-c"])
        .arg(&s.cfg_path)
        .env(m365_connector::transform::PARTS_ENV, "7")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", crate::util::text(&out));
    let facts = query(
        &cfg.pipeline.data_dir,
        &format!(
            "SELECT (SELECT count(*) FROM int_people) AS users,
                    (SELECT count(DISTINCT id) FROM int_people) AS ids,
                    (SELECT coalesce(sha256(string_agg(to_json(p)::VARCHAR, chr(10) ORDER BY p.\"User.ExternalId\")), '')
                     FROM (SELECT * EXCLUDE (_run_id) FROM people WHERE _run_id = '{}') p) AS people",
            whole.run_id
        ),
        SqlFormat::Csv,
    )
    .unwrap();
    assert_eq!(
        facts.lines().nth(1),
        Some(format!("2500,2500,{}", whole.people_sha256).as_str()),
        "{facts}"
    );
}

/// The people hash and the exports read people in stored order only after checking it: with
/// models that store people unsorted (a custom `sql_dir` whose `out_people` has no ORDER BY),
/// they sort instead and give the same hash and the same bytes, the Parquet (written while the
/// order is checked, then again) included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn people_stored_out_of_key_order_are_hashed_and_exported_sorted() {
    use m365_connector::load::{ExportFormat, load};
    let s = setup(sim_options(1_500, 13), "unsorted").await;
    let cfg = config_with(&s, 30, "");
    let sorted = transform(&cfg, None).unwrap();
    let export = |cfg: &Config| {
        let loaded = load(cfg, None, &ExportFormat::ALL).unwrap();
        let files = ["people.jsonl", "people.csv", "people.parquet"];
        for (f, m) in files.iter().zip(&loaded.manifest.files) {
            assert_eq!(&m.file, f);
            assert_eq!(
                m.sha256,
                m365_connector::load::hash_file(&loaded.dir.join(f))
                    .unwrap()
                    .1
            );
        }
        files.map(|f| std::fs::read(loaded.dir.join(f)).unwrap())
    };
    let expected = export(&cfg);

    let sql = s.dir.path().join("sql");
    for entry in m365_connector::transform::MODELS {
        let file = sql.join(format!("{}.sql", entry.name));
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        let text = entry.sql.replace("ORDER BY \"User.ExternalId\"", "");
        std::fs::write(file, text).unwrap();
    }
    let unsorted_cfg = config_with(
        &s,
        30,
        &format!("sql_dir = {:?}", sql.display().to_string()),
    );
    let unsorted = transform(&unsorted_cfg, None).unwrap();
    let stored = query(
        &cfg.pipeline.data_dir,
        &format!(
            "SELECT \"User.ExternalId\" FROM people WHERE _run_id = '{}'",
            unsorted.run_id
        ),
        SqlFormat::Csv,
    )
    .unwrap();
    let keys: Vec<&str> = stored.lines().skip(1).collect();
    assert!(
        keys.windows(2).any(|w| w[0] > w[1]),
        "people came out sorted anyway: the test would not reach the fallback"
    );
    assert_eq!(unsorted.people_sha256, sorted.people_sha256);
    assert_eq!(export(&unsorted_cfg), expected);
}

/// A run landed before typed landing (users as lineage + `record` only, reports as their text
/// cells only) still transforms, to the same people and hash as the same run landed typed:
/// `raw_views.rs` computes the typed columns from the text for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_landed_before_typed_landing_transforms_to_the_same_people() {
    use crate::util::{duck, lit};
    let s = setup(sim_options(1_200, 14), "legacy").await;
    let cfg = config_with(&s, 30, "");
    let typed = transform(&cfg, None).unwrap();

    let run_dir = cfg.pipeline.data_dir.join("raw").join(&s.run.run_id);
    let mut rewritten = 0;
    for entry in std::fs::read_dir(&run_dir).unwrap().flatten() {
        let path = entry.path();
        if path.extension().and_then(|e| e.to_str()) != Some("parquet") {
            continue;
        }
        let file = lit(&path.display().to_string());
        let columns: Vec<String> = duck(&format!(
            "SELECT column_name FROM (DESCRIBE SELECT * FROM read_parquet({file}))"
        ))
        .into_iter()
        .filter_map(|r| r[0].clone())
        .collect();
        let keep: Vec<String> = if columns.iter().any(|c| c == "record") {
            [
                "_run_id",
                "_stream",
                "_page",
                "_row",
                "_extracted_at",
                "record",
            ]
            .map(String::from)
            .to_vec()
        } else {
            columns
                .iter()
                .filter(|c| {
                    !(c.ends_with(" [date]")
                        || c.ends_with(" [int]")
                        || c.ends_with(" [bool]")
                        || c.as_str() == "_user_key"
                        || c.as_str() == "_user_concealed")
                })
                .cloned()
                .collect()
        };
        if columns.len() == keep.len() {
            continue;
        }
        let select: Vec<String> = keep
            .iter()
            .map(|c| format!("\"{}\"", c.replace('"', "\"\"")))
            .collect();
        let tmp = path.with_extension("old");
        duckdb::Connection::open_in_memory()
            .unwrap()
            .execute_batch(&format!(
                "COPY (SELECT {} FROM read_parquet({file})) TO {} (FORMAT parquet)",
                select.join(", "),
                lit(&tmp.display().to_string())
            ))
            .unwrap();
        std::fs::rename(&tmp, &path).unwrap();
        rewritten += 1;
    }
    assert!(
        rewritten >= 9,
        "users and the eight reports had typed columns: {rewritten}"
    );
    let users = run_dir.join("users-00001.parquet");
    let users_columns = duck(&format!(
        "SELECT count(*)::VARCHAR FROM (DESCRIBE SELECT * FROM read_parquet({}))",
        lit(&users.display().to_string())
    ));
    assert_eq!(
        users_columns[0][0].as_deref(),
        Some("6"),
        "users kept lineage + record only"
    );

    let legacy = transform(&cfg, Some(&s.run.run_id)).unwrap();
    assert_eq!(legacy.people_sha256, typed.people_sha256);
    assert_eq!(legacy.kept, typed.kept);
    assert_eq!(legacy.unmatched, typed.unmatched);
}
