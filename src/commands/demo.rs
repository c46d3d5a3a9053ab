//! `demo`: the whole pipeline against the built-in simulator, with nothing but cargo.
//! Writes its connector file under `data/demo/` and keeps its data there, so a second demo
//! adds a second run to the same staging database.

use std::path::{Path, PathBuf};

use crate::config::Config;
use crate::error::{Error, Result};
use crate::load::ExportFormat;
use crate::output::Progress;
use crate::pipeline::{self, RunOutcome};
use crate::sim::{SimOptions, Simulator};

/// What the demo ran and where its files are.
pub struct Demo {
    pub config_path: PathBuf,
    pub outcome: RunOutcome,
}

/// Starts a simulator with `users` users, writes `dir/connector.toml`, runs the pipeline.
pub async fn demo(dir: &Path, users: u64, progress: &Progress) -> Result<Demo> {
    crate::fs::create_private_dir(dir)?;
    let opts = SimOptions {
        users,
        seed: 2026,
        ..SimOptions::default()
    };
    let sim = Simulator::start(opts.clone())
        .await
        .map_err(|e| Error::io("starting the built-in Graph simulator on 127.0.0.1", e))?;
    let secret_path = dir.join("secret");
    write_private(&secret_path, opts.client_secret.as_bytes())?;
    let config_path = dir.join("connector.toml");
    let text = format!(
        r#"# Demo connector written by `m365-connector demo`: it talks to the built-in simulator.
[connector]
name = "Demo tenant (simulated)"
server = "cloud"

[tenant]
tenant_id = "{tenant}"
client_id = "{client}"
client_secret_file = "secret"
login_url = "{login}"
graph_url = "{graph}"

[filter]
date_filter_days = 30

[pipeline]
data_dir = "."
"#,
        tenant = opts.tenant_id,
        client = opts.client_id,
        login = sim.login_url(),
        graph = sim.graph_url(),
    );
    std::fs::write(&config_path, text)
        .map_err(|e| Error::io(format!("writing {}", config_path.display()), e))?;
    let cfg = Config::load(&config_path)?;
    let outcome = pipeline::run(&cfg, progress, &ExportFormat::ALL).await;
    sim.shutdown().await;
    Ok(Demo {
        config_path,
        outcome: outcome?,
    })
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    std::fs::write(path, bytes).map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| Error::io(format!("protecting {}", path.display()), e))?;
    }
    Ok(())
}
