//! The real binary: exit codes and messages a user reads (secrets: transport.rs).

use std::path::Path;
use std::process::{Command, Output};

use m365_connector::sim::Simulator;

use crate::util::{TempDir, connector_file, sim_options, text};

const BIN: &str = env!("CARGO_BIN_EXE_m365-connector");

fn run(args: &[&str], cwd: &Path, env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args).current_dir(cwd).env_remove("RUST_LOG");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

async fn run_async(
    args: Vec<String>,
    cwd: std::path::PathBuf,
    env: Vec<(String, String)>,
) -> Output {
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        run(&args, &cwd, &env)
    })
    .await
    .unwrap()
}

#[test]
fn init_template_validates() {
    let dir = TempDir::new("init");
    let out = run(&["init"], dir.path(), &[]);
    assert!(out.status.success());
    std::fs::write(dir.path().join("c.toml"), &out.stdout).unwrap();
    let out = run(
        &["validate", "-c", "c.toml"],
        dir.path(),
        &[("M365_CLIENT_SECRET", "x")],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("valid"));
}

#[test]
fn bad_config_exits_2_naming_file_line_and_key() {
    let dir = TempDir::new("badcfg");
    let cases = [
        (
            "[connector]\nname = \"x\"\ncolor = 1\n",
            "c.toml:3: connector.color: unknown key in [connector]",
        ),
        (
            "[connector]\nname = \"x\"\n[tenant]\ntenant_id = \"72f988bf-86f1-41af-91ab-2d7cd011db47\"\nclient_id = \"nope\"\nclient_secret_env = \"S\"\n",
            "c.toml:5: tenant.client_id: \"nope\" is not a GUID",
        ),
        (
            "[connector]\nname = \"x\"\n[tenant]\ntenant_id = \"72f988bf-86f1-41af-91ab-2d7cd011db47\"\nclient_id = \"72f988bf-86f1-41af-91ab-2d7cd011db47\"\nclient_secret = \"hunter2-inline\"\n",
            "c.toml:6: tenant.client_secret: a secret written in the connector file is refused",
        ),
        (
            "[connector]\nname = \"x\"\n[tenant]\ntenant_id = \"72f988bf-86f1-41af-91ab-2d7cd011db47\"\nclient_id = \"72f988bf-86f1-41af-91ab-2d7cd011db47\"\nclient_secret_env = \"M365_IT_UNSET_SECRET\"\n",
            "c.toml:6: tenant.client_secret_env: the environment variable M365_IT_UNSET_SECRET is not set",
        ),
    ];
    for (toml, expected) in cases {
        std::fs::write(dir.path().join("c.toml"), toml).unwrap();
        let out = run(&["validate", "-c", "c.toml"], dir.path(), &[]);
        let t = text(&out);
        assert_eq!(out.status.code(), Some(2), "{t}");
        assert!(t.starts_with("error: c.toml:"), "{t}");
        assert!(t.contains(expected), "expected {expected:?} in {t}");
        assert!(!t.contains("hunter2"), "inline secret echoed: {t}");
    }
}

#[test]
fn missing_config_file_says_how_to_make_one() {
    let dir = TempDir::new("nocfg");
    let out = run(&["extract", "-c", "nope.toml"], dir.path(), &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out).contains("m365-connector init > nope.toml"),
        "{}",
        text(&out)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_secret_exits_1_with_advice_and_writes_nothing() {
    let opts = sim_options(100, 1);
    let sim = Simulator::start(opts.clone()).await.unwrap();
    let dir = TempDir::new("wrongsecret");
    connector_file(dir.path(), &sim, &opts, "b4c9f2d1-this-is-the-secret-ID");
    let out = run_async(
        vec!["extract".into(), "-c".into(), "connector.toml".into()],
        dir.path().to_path_buf(),
        vec![],
    )
    .await;
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(t.contains("AADSTS7000215"), "{t}");
    assert!(t.contains("NOT its *Secret ID*"), "{t}");
    assert!(
        !t.contains("b4c9f2d1-this-is-the-secret-ID"),
        "secret echoed: {t}"
    );
    // Nothing landed; the refused sign-in is on record in the staging database.
    assert!(!dir.path().join("data/raw").exists(), "something landed");
    let runs = run(
        &[
            "sql",
            "-c",
            "connector.toml",
            "--format",
            "csv",
            "SELECT status, extract_status, error LIKE '%AADSTS7000215%' AS aadsts FROM runs",
        ],
        dir.path(),
        &[],
    );
    assert_eq!(
        String::from_utf8_lossy(&runs.stdout),
        "status,extract_status,aadsts\nfailed,failed,true\n"
    );
}

/// A Graph host that refuses connections is retried, visibly (a warning per try saying when
/// the run gives up), for `unreachable_seconds` at most (within `max_wait_seconds`); then
/// the run fails naming the host, the refusal and the fix, and commits nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_graph_is_reported_while_retrying_then_fails() {
    let opts = sim_options(100, 1);
    let sim = Simulator::start(opts.clone()).await.unwrap();
    let dir = TempDir::new("unreachable");
    let cfg = connector_file(dir.path(), &sim, &opts, &opts.client_secret);
    sim.shutdown().await; // its port now refuses connections
    let text_of = std::fs::read_to_string(&cfg).unwrap();
    assert!(text_of.contains("max_wait_seconds = 120"), "{text_of}");
    let text_of = text_of.replace("max_wait_seconds = 120", "max_wait_seconds = 3");
    std::fs::write(&cfg, text_of).unwrap();
    let out = run_async(
        vec!["extract".into(), "-c".into(), "connector.toml".into()],
        dir.path().to_path_buf(),
        vec![],
    )
    .await;
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(
        t.contains("cannot reach the host"),
        "no word while retrying: {t}"
    );
    assert!(t.contains("127.0.0.1 refused the connection"), "{t}");
    assert!(t.contains("firewall"), "no fix: {t}");
    assert!(
        !dir.path()
            .join("data/raw")
            .read_dir()
            .is_ok_and(|mut d| d.next().is_some()),
        "something landed: {t}"
    );
}
