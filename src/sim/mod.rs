//! The built-in Microsoft Graph simulator: a faithful stand-in for login.microsoftonline.com,
//! graph.microsoft.com and the report download host, for `demo`, tests and benchmarks.
//!
//! - One listener (`graph_url`, on 127.0.0.1) serves the token endpoint and Graph `/v1.0`;
//!   a second (`download_url`, named `localhost`, so a *different host*) serves report CSVs.
//! - The tenant ([`Tenant`]) is a pure function of (seed, index, today): generated page by
//!   page, so a million users cost no memory. Nasty values (commas, quotes, newlines, emoji,
//!   RTL text, guests with `#EXT#`, UPN case drift) are there on purpose.
//! - Fault injection ([`Faults`]) is deterministic per seed and request order and can be
//!   changed while running; `GET /_sim/stats` (no auth) shows what was served.
//!
//! The HTTP contract copied here is `shared/reference/graph-api.md`.

mod budget;
mod csv_body;
mod delta;
mod directory;
mod download;
mod faults;
mod filter;
mod graph;
mod gzip;
mod identity;
mod login;
mod names;
mod overrides;
mod prng;
mod query_error;
mod request;
mod respond;
mod server;
mod skus;
mod state;
mod tenant;
mod token;
mod users;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use csv_body::{BOM, CsvBody, write_record};
pub use delta::{DeltaItem, MAX_EPOCH, encode_deltatoken};
pub use directory::{Manager, SHARED_OTHER_MAIL, SignIns};
pub use faults::{FaultSpecError, Faults, RetryAfterMode};
pub use names::conceal;
pub use overrides::{Override, OverrideHost};
pub use tenant::{DEFAULT_USER_PROPERTIES, MAIL_DOMAIN, TENANT_DOMAIN, Tenant};

use server::Host;
use state::State;

/// Roles an admin-consented connector app holds (graph-api.md §0).
pub const DEFAULT_ROLES: &[&str] = &[
    "Directory.Read.All",
    "Organization.Read.All",
    "Reports.Read.All",
];

/// How to run a simulator.
#[derive(Debug, Clone)]
pub struct SimOptions {
    /// Tenant size.
    pub users: u64,
    /// Seeds the tenant and the fault dice.
    pub seed: u64,
    /// Reports conceal names (32-hex UPN and display name), as tenants do by default.
    pub concealed: bool,
    pub faults: Faults,
    /// Response time of every login, Graph and download request: the answer is prepared
    /// meanwhile and sent when it is over (or when ready, if preparing takes longer).
    pub latency_ms: u64,
    /// Each request's response time is `latency_ms` plus a uniform draw in
    /// `[-jitter_ms, +jitter_ms]` (never below 0), deterministic per seed and request order.
    pub jitter_ms: u64,
    /// `ge`/`le` on userPrincipalName are refused (400), so a client must fall back to
    /// `startswith` partitions.
    pub refuse_range_filter: bool,
    /// `startswith(userPrincipalName, ...)` is refused (400), so a client must walk serially.
    pub refuse_startswith: bool,
    /// UPN local parts are skewed for tests of partition balance (see
    /// [`Tenant::with_skewed_upns`]); off leaves the tenant byte for byte as it was.
    pub skewed_upns: bool,
    /// Once this many `/users` pages (filtered or not) have been served, the tenant moves on
    /// by one epoch and stays there (as [`Simulator::set_epoch`] does), once: a tenant that
    /// changes during a full walk.
    pub advance_epoch_after_users_pages: Option<u64>,
    /// Capacity of the identity resource-unit bucket per app and tenant (graph-perf.md §4);
    /// `None` picks Graph's by tenant size (3,500 under 50 users, 5,000 to 500, else 8,000).
    pub ru_budget: Option<u64>,
    /// The bucket refills its whole capacity over this long (Graph: 10 s).
    pub ru_window: std::time::Duration,
    /// The accepted tenant GUID; the verified domains `contoso.onmicrosoft.com` and
    /// `contoso.com` are accepted too.
    pub tenant_id: String,
    pub client_id: String,
    pub client_secret: String,
    /// `expires_in` of issued tokens.
    pub token_lifetime_secs: u64,
    /// The `roles` claim of issued tokens (omitted when empty, as without admin consent).
    pub roles: Vec<String>,
    /// Whether `GET /v1.0/admin/reportSettings` answers (it needs ReportSettings.Read.All,
    /// which the connector's permission set lacks, so by default it is a 403).
    pub report_settings_readable: bool,
    /// The tenant holds an Entra ID P1/P2 licence: `signInActivity` is served to an app
    /// holding AuditLog.Read.All (without it: 403 `Authentication_RequestFromNonPremiumTenantOrB2CTenant`).
    pub premium: bool,
    /// `/users` requests selecting `signInActivity` accepted per `sign_in_window` before
    /// answering 429 (Graph's identity-reports limit: 5 per 10 s per app and tenant).
    pub sign_in_budget: usize,
    pub sign_in_window: std::time::Duration,
    /// The simulator's "today"; reports are refreshed as of today - 2.
    pub today: chrono::NaiveDate,
    /// Calls each report API accepts per `report_window` before answering 429 with the
    /// real wait (Microsoft: 14 per 10 minutes); smaller in tests of an exhausted budget.
    pub report_budget: usize,
    pub report_window: std::time::Duration,
    /// The tenant's epoch (see `delta.rs`): `Some(e)` serves the tenant as of epoch `e` and
    /// keeps it there until [`Simulator::set_epoch`]; `None` (the default) starts at 0 and
    /// moves on by one epoch whenever a client follows a delta link that is up to date.
    pub epoch: Option<u64>,
    /// 0 = an ephemeral port.
    pub graph_port: u16,
    pub download_port: u16,
}

impl Default for SimOptions {
    fn default() -> Self {
        SimOptions {
            users: 100,
            seed: 1,
            concealed: false,
            faults: Faults::default(),
            latency_ms: 0,
            jitter_ms: 0,
            refuse_range_filter: false,
            refuse_startswith: false,
            skewed_upns: false,
            advance_epoch_after_users_pages: None,
            ru_budget: None,
            ru_window: std::time::Duration::from_secs(10),
            tenant_id: "8f6e2c3a-1b4d-4e5f-9a7b-0c1d2e3f4a5b".to_string(),
            client_id: "5d7e9f1a-2b3c-4d5e-8f9a-0b1c2d3e4f5a".to_string(),
            client_secret: "sim-secret-value".to_string(),
            token_lifetime_secs: 3599,
            roles: DEFAULT_ROLES.iter().map(|r| (*r).to_string()).collect(),
            report_settings_readable: false,
            premium: true,
            sign_in_budget: state::SIGN_IN_BUDGET,
            sign_in_window: state::SIGN_IN_WINDOW,
            today: chrono::Utc::now().date_naive(),
            report_budget: state::REPORT_BUDGET,
            report_window: state::REPORT_WINDOW,
            epoch: None,
            graph_port: 0,
            download_port: 0,
        }
    }
}

/// What the simulator has served so far (`GET /_sim/stats`).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct SimStats {
    /// Requests by endpoint family: `token`, `users`, `users_delta`, `organization`, `subscribed_skus`,
    /// `report_settings`, each report's stream name (the Graph call), `reports` (an unknown
    /// report function), `download`, and `other` (any other path).
    pub requests: BTreeMap<String, u64>,
    pub total_requests: u64,
    pub tokens_issued: u64,
    /// Injected 429s (the report budget's are in `report_budget_429`).
    pub status_429: u64,
    pub status_503: u64,
    pub status_504: u64,
    pub resets: u64,
    pub truncated: u64,
    pub slow: u64,
    /// 401s for expired tokens: real expiry, and the `token-expiry` fault.
    pub token_expired_401: u64,
    /// `Authorization` headers sent to the download host; a good client sends none.
    pub download_authorization_headers: u64,
    /// 429s because a report API got more than 14 calls in 10 minutes.
    pub report_budget_429: u64,
    /// JSON responses replaced by an HTML page with status 200.
    pub html_200: u64,
    /// Valid download URLs answered 404 by the `download-expired` fault.
    pub download_expired: u64,
    /// `/users/delta` links answered 410 Gone (expired token or the `delta-expired` fault).
    pub delta_gone_410: u64,
    /// Downloads sent close-delimited and cut inside a record (`cut-close`).
    pub cut_close: u64,
    /// Responses whose Content-Length promised more than was sent (`bad-length`).
    pub bad_length: u64,
    /// `/users` pages that began with users of the previous page again, byte-identical
    /// (`repeat-users`), and how many users were repeated on them.
    pub repeat_users_pages: u64,
    pub repeat_users: u64,
    /// `/users` pages that began with changed copies of users of the previous page
    /// (`repeat-users-changed`), and how many users were repeated on them.
    pub repeat_users_changed_pages: u64,
    pub repeat_users_changed: u64,
    /// `302` hops served before a download (`redirects=N`): N per download.
    pub redirect_hops: u64,
    /// Downloads answered with a `302` to their own URL (`redirect-loop`).
    pub redirect_loops: u64,
    /// Responses whose body was sent a few bytes at a time (`trickle`).
    pub trickled: u64,
    /// Downloads answered with a proxy's HTML sign-in page (`html-download`).
    pub html_download: u64,
    /// Report rows served a second time, right after the first (`repeat-rows`).
    pub repeat_rows: u64,
    /// Filtered `/users` requests without a skiptoken: range walks started.
    pub ranges: u64,
    /// `$count` requests served: `/users?$count=true` first pages and `/users/$count`.
    pub count_requests: u64,
    /// Identity resource units charged (graph-perf.md §4), and requests answered 429
    /// because the bucket was empty (they cost nothing).
    pub ru_spent: u64,
    pub ru_throttled: u64,
    /// Body bytes of Graph and download responses before compression, and as sent.
    pub bytes_raw: u64,
    pub bytes_wire: u64,
    /// `/users` requests selecting `signInActivity`, and those answered 429 by its budget.
    pub sign_in_requests: u64,
    pub sign_in_throttled: u64,
    /// `/users` pages served with `$expand=manager`.
    pub expanded_pages: u64,
}

/// A running simulator. Dropping it stops the listeners too; `shutdown` also waits for them.
pub struct Simulator {
    state: Arc<State>,
    graph_addr: SocketAddr,
    download_port: u16,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Simulator {
    /// Binds both listeners on 127.0.0.1 and starts serving.
    pub async fn start(opts: SimOptions) -> io::Result<Simulator> {
        let graph = TcpListener::bind(("127.0.0.1", opts.graph_port)).await?;
        let graph_addr = graph.local_addr()?;
        let download = TcpListener::bind(("127.0.0.1", opts.download_port)).await?;
        let download_port = download.local_addr()?.port();
        // `localhost` may resolve to ::1 first; listen there too when we can, so clients
        // don't pay for a refused connection. Not fatal if IPv6 is unavailable.
        let download_v6 = TcpListener::bind(("::1", download_port)).await.ok();

        let graph_url = format!("http://127.0.0.1:{}", graph_addr.port());
        let download_url = format!("http://localhost:{download_port}");
        let state = Arc::new(State::new(opts, graph_url, download_url));
        let (stop, rx) = watch::channel(false);
        let mut downloads = vec![download];
        downloads.extend(download_v6);
        let tasks = vec![
            tokio::spawn(server::serve(graph, state.clone(), Host::Graph, rx.clone())),
            server::serve_in_background(downloads, state.clone(), Host::Download, rx)?,
        ];
        Ok(Simulator {
            state,
            graph_addr,
            download_port,
            stop,
            tasks,
        })
    }

    /// `http://127.0.0.1:PORT`: the Graph root (no `/v1.0`), which also serves login.
    pub fn graph_url(&self) -> String {
        self.state.graph_url.clone()
    }

    /// Same as [`Simulator::graph_url`]: the token endpoint lives on the same listener.
    pub fn login_url(&self) -> String {
        self.graph_url()
    }

    /// `http://localhost:PORT2`: the report download host, a different host name.
    pub fn download_url(&self) -> String {
        self.state.download_url.clone()
    }

    /// The listening address of the Graph/login listener.
    pub fn graph_addr(&self) -> SocketAddr {
        self.graph_addr
    }

    /// The port of the download listener.
    pub fn download_port(&self) -> u16 {
        self.download_port
    }

    /// The options the simulator runs with (faults as at start).
    pub fn options(&self) -> &SimOptions {
        &self.state.opts
    }

    /// The synthetic tenant being served, to compute expected data in tests.
    pub fn tenant(&self) -> Tenant {
        self.state.tenant
    }

    pub fn stats(&self) -> SimStats {
        self.state.stats.snapshot()
    }

    /// Moves the tenant to `epoch` (users changed, removed and joined in rounds 1..=epoch;
    /// at most 1000) and keeps it there: `/users` and new delta syncs serve it, and a delta
    /// link naming an older epoch brings every round since. Reports stay as of epoch 0.
    pub fn set_epoch(&self, epoch: u64) {
        self.state.epoch.set(epoch);
    }

    /// The tenant's current epoch.
    pub fn epoch(&self) -> u64 {
        self.state.epoch.get()
    }

    /// Changes fault injection while running; applies to the next request.
    pub fn set_faults(&self, f: Faults) {
        self.state.set_faults(f);
    }

    /// Serves `o` instead of the simulated response for matching requests (hostile-input
    /// tests; see [`Override`]). Overrides added earlier take precedence.
    pub fn set_override(&self, o: Override) {
        self.state.overrides.push(o);
    }

    /// Removes every override.
    pub fn clear_overrides(&self) {
        self.state.overrides.clear();
    }

    /// Stops accepting, drops open connections and waits for the listeners to finish.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        for t in std::mem::take(&mut self.tasks) {
            let _ = t.await;
        }
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// `m365-connector sim`: the simulator on its own, for trying things out.
#[derive(clap::Args, Debug, Clone)]
pub struct SimArgs {
    /// Users in the synthetic tenant (generated on the fly: a million cost no memory).
    #[arg(long, default_value_t = 1000)]
    pub users: u64,
    /// Seed of the tenant and of fault injection: same seed, same data.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Conceal user names in reports (32-hex), as tenants do by default since 2021.
    #[arg(long)]
    pub concealed: bool,
    /// Fault injection, e.g. "429=0.1,503=0.05,504=0.01,reset=0.02,truncate=0.01,slow=0.01,
    /// slow-ms=2000,token-expiry=50,retry-after=mixed,retry-after-secs=0.2,expired-secret,
    /// html200=0.01,download-expired=0.1,short-page=0.1,delta-expired=0.05,cut-close=0.05,
    /// bad-length=0.01,repeat-users=0.1,repeat-users-changed=0.05,redirects=2,
    /// redirect-loop=0.01,trickle=0.01,trickle-ms=200,trickle-bytes=16,html-download=0.01".
    #[arg(long, value_name = "SPEC")]
    pub faults: Option<Faults>,
    /// Response time in milliseconds of every request (the answer is prepared during it).
    #[arg(long, value_name = "L", default_value_t = 0)]
    pub latency_ms: u64,
    /// Up to this many milliseconds more or less than --latency-ms, uniform per request.
    #[arg(long, value_name = "J", default_value_t = 0)]
    pub jitter_ms: u64,
    /// Skew UPN first letters (70% 'm', some digits, '_' and quotes) to test partitioning.
    #[arg(long)]
    pub skewed_upns: bool,
    /// Port of the login + Graph listener (0 = any free port).
    #[arg(long, value_name = "P", default_value_t = 8400)]
    pub port: u16,
    /// Port of the report download listener (0 = any free port).
    #[arg(long, value_name = "P", default_value_t = 8401)]
    pub download_port: u16,
    /// Lifetime of issued access tokens, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 3599)]
    pub token_lifetime: u64,
    /// Roles in issued tokens, comma-separated; "none" simulates missing admin consent.
    #[arg(
        long,
        value_name = "LIST",
        default_value = "Directory.Read.All,Organization.Read.All,Reports.Read.All"
    )]
    pub roles: String,
    /// Let the app read /admin/reportSettings (as if it held ReportSettings.Read.All).
    #[arg(long)]
    pub report_settings_readable: bool,
}

impl SimArgs {
    /// The options these arguments describe.
    pub fn options(&self) -> SimOptions {
        let roles = if self.roles.trim().eq_ignore_ascii_case("none") {
            Vec::new()
        } else {
            self.roles
                .split(',')
                .map(str::trim)
                .filter(|r| !r.is_empty())
                .map(str::to_string)
                .collect()
        };
        SimOptions {
            users: self.users,
            seed: self.seed,
            concealed: self.concealed,
            faults: self.faults.clone().unwrap_or_default(),
            latency_ms: self.latency_ms,
            jitter_ms: self.jitter_ms,
            skewed_upns: self.skewed_upns,
            token_lifetime_secs: self.token_lifetime,
            roles,
            report_settings_readable: self.report_settings_readable,
            graph_port: self.port,
            download_port: self.download_port,
            ..SimOptions::default()
        }
    }
}

/// The block `sim` prints on start: where to point a connector, and how.
pub fn banner(sim: &Simulator) -> String {
    let o = sim.options();
    let g = sim.graph_url();
    format!(
        "Microsoft Graph simulator: {users} users, seed {seed}, names {concealed}, faults: {faults}\n\
         \n  login + graph   {g}\n  report download {d}\n  tenant id       {tid}\n  client id       {cid}\n  \
         client secret   export M365_CLIENT_SECRET={secret}\n  stats           {g}/_sim/stats\n\
         \nconnector.toml:\n\
         [connector]\n\
         name = \"Simulated Contoso\"\n\
         \n\
         [tenant]\n\
         tenant_id = \"{tid}\"\n\
         client_id = \"{cid}\"\n\
         client_secret_env = \"M365_CLIENT_SECRET\"\n\
         login_url = \"{g}\"\n\
         graph_url = \"{g}\"\n\
         \nPress Ctrl-C to stop.\n",
        users = o.users,
        seed = o.seed,
        concealed = if o.concealed { "concealed" } else { "shown" },
        faults = o.faults,
        d = sim.download_url(),
        tid = o.tenant_id,
        cid = o.client_id,
        secret = o.client_secret,
    )
}

/// Runs the simulator until Ctrl-C, printing where it listens and a config snippet.
pub async fn run(args: SimArgs) -> io::Result<()> {
    let sim = Simulator::start(args.options()).await?;
    print!("{}", banner(&sim));
    tokio::signal::ctrl_c().await?;
    let stats = sim.stats();
    sim.shutdown().await;
    println!(
        "\nstopped after {} requests ({} tokens issued)",
        stats.total_requests, stats.tokens_issued
    );
    Ok(())
}
