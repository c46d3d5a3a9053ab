//! `/metrics`: the board in the Prometheus text format (the `prometheus` crate's encoder).
//!
//! Every figure comes from the connectors' `runs` tables as the board last read them, so a
//! scrape equals what `m365-connector runs` shows, and costs no database access. Counters
//! are totals over the database's history: a restart of the server does not reset them.

use prometheus::{Encoder, GaugeVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder};

use crate::server::board::Snapshot;

/// The metrics, in the text format; its content type is [`CONTENT_TYPE`].
pub fn render(
    snapshot: &Snapshot,
    heartbeat_age_seconds: Option<f64>,
) -> Result<String, prometheus::Error> {
    let registry = Registry::new();
    let labels = ["connector"];
    let counter =
        |name: &str, help: &str, labels: &[&str]| -> Result<IntCounterVec, prometheus::Error> {
            let c = IntCounterVec::new(Opts::new(name, help), labels)?;
            registry.register(Box::new(c.clone()))?;
            Ok(c)
        };
    let gauge = |name: &str, help: &str| -> Result<GaugeVec, prometheus::Error> {
        let g = GaugeVec::new(Opts::new(name, help), &labels)?;
        registry.register(Box::new(g.clone()))?;
        Ok(g)
    };
    let runs = counter(
        "m365_connector_runs_total",
        "Runs recorded in the connector's staging database, by status (running, succeeded, failed).",
        &["connector", "status"],
    )?;
    let requests = counter(
        "m365_connector_graph_requests_total",
        "Microsoft Graph requests made by the connector's runs.",
        &labels,
    )?;
    let throttled = counter(
        "m365_connector_graph_throttled_total",
        "Graph answers that throttled the connector's runs (429 and 503 with Retry-After).",
        &labels,
    )?;
    let waited = gauge(
        "m365_connector_graph_throttle_wait_seconds_total",
        "Seconds the connector's runs waited because Graph throttled them.",
    )?;
    let last_success = gauge(
        "m365_connector_last_success_timestamp_seconds",
        "When the connector's newest successful run started (Unix time).",
    )?;
    let duration = gauge(
        "m365_connector_last_run_duration_seconds",
        "How long the connector's newest finished run took.",
    )?;
    let exported = gauge(
        "m365_connector_last_users_exported",
        "People exported by the connector's newest successful run.",
    )?;
    let fetched = gauge(
        "m365_connector_last_users_fetched",
        "Users fetched by the connector's newest successful run.",
    )?;
    let warnings = gauge(
        "m365_connector_last_run_warnings",
        "Warnings of the connector's newest run (each with its fix on the status page).",
    )?;
    let last_failed = gauge(
        "m365_connector_last_run_failed",
        "1 when the connector's newest finished run failed, else 0.",
    )?;
    let running = gauge(
        "m365_connector_running",
        "1 while a run of the connector is in progress in this server.",
    )?;
    let info = IntGaugeVec::new(
        Opts::new(
            "m365_connector_info",
            "One per connector file of the folder: whether this server hosts it and it is active.",
        ),
        &["connector", "server", "hosted", "active"],
    )?;
    registry.register(Box::new(info.clone()))?;
    let bad = IntGaugeVec::new(
        Opts::new(
            "m365_connector_bad_files",
            "Connector files of the folder that do not parse (the status page names the line).",
        ),
        &[],
    )?;
    registry.register(Box::new(bad.clone()))?;
    let beat = GaugeVec::new(
        Opts::new(
            "m365_connector_scheduler_heartbeat_age_seconds",
            "Seconds since the scheduler loop last turned (it turns at least every 30 s).",
        ),
        &[],
    )?;
    registry.register(Box::new(beat.clone()))?;

    bad.with_label_values(&[] as &[&str])
        .set(snapshot.bad_files.len() as i64);
    if let Some(age) = heartbeat_age_seconds {
        beat.with_label_values(&[] as &[&str]).set(age);
    }
    for c in &snapshot.connectors {
        let name = c.name.as_str();
        info.with_label_values(&[
            name,
            c.server.as_str(),
            if c.hosted { "true" } else { "false" },
            if c.active { "true" } else { "false" },
        ])
        .set(1);
        let h = &c.history;
        for (status, n) in &h.by_status {
            runs.with_label_values(&[name, status.as_str()]).inc_by(*n);
        }
        requests.with_label_values(&[name]).inc_by(h.requests);
        throttled.with_label_values(&[name]).inc_by(h.throttled);
        waited
            .with_label_values(&[name])
            .set(h.waited_ms as f64 / 1000.0);
        running
            .with_label_values(&[name])
            .set(if c.running_since.is_some() { 1.0 } else { 0.0 });
        if let Some(ok) = h.last_success() {
            last_success
                .with_label_values(&[name])
                .set(ok.started_at.timestamp_millis() as f64 / 1000.0);
            if let Some(kept) = ok.people_kept {
                exported.with_label_values(&[name]).set(kept as f64);
            }
            if let Some(n) = ok.users_fetched {
                fetched.with_label_values(&[name]).set(n as f64);
            }
        }
        if let Some(last) = h.runs.iter().find(|r| r.status != "running") {
            if let Some(s) = last.seconds() {
                duration.with_label_values(&[name]).set(s);
            }
            last_failed
                .with_label_values(&[name])
                .set(if last.status == "failed" { 1.0 } else { 0.0 });
        }
        if let Some(last) = h.last() {
            warnings
                .with_label_values(&[name])
                .set(last.warnings as f64);
        }
    }
    let mut out = Vec::new();
    TextEncoder::new().encode(&registry.gather(), &mut out)?;
    String::from_utf8(out).map_err(|e| prometheus::Error::Msg(e.to_string()))
}

/// The text format's content type.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
