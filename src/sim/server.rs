//! The two listeners (login + Graph on one port, report downloads on another) and request
//! dispatch.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::request::percent_decode;
use super::respond::{self, Ctx, Resp};
use super::state::State;
use super::{download, graph, gzip, login};

/// Which listener a connection arrived on.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Host {
    Graph,
    Download,
}

/// Serves `listeners` on one thread of their own at a lower CPU priority. Generating a
/// million-row report CSV is heavy; on Microsoft's side it runs on other machines than the
/// Graph API. Here, sharing a small machine with the connector, it must not slow the Graph
/// host's answers, or benchmarks would measure the simulator instead of the client.
pub fn serve_in_background(
    listeners: Vec<TcpListener>,
    state: Arc<State>,
    host: Host,
    shutdown: watch::Receiver<bool>,
) -> io::Result<tokio::task::JoinHandle<()>> {
    let listeners = listeners
        .into_iter()
        .map(|l| l.into_std())
        .collect::<io::Result<Vec<_>>>()?;
    let (done, finished) = tokio::sync::oneshot::channel::<()>();
    std::thread::Builder::new()
        .name("sim-download".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(error = %e, "simulator: no runtime for the download host");
                    return;
                }
            };
            lower_priority();
            runtime.block_on(async move {
                let mut serving = Vec::new();
                for l in listeners {
                    match TcpListener::from_std(l) {
                        Ok(l) => serving.push(tokio::spawn(serve(
                            l,
                            state.clone(),
                            host,
                            shutdown.clone(),
                        ))),
                        Err(e) => tracing::warn!(error = %e, "simulator: download listener lost"),
                    }
                }
                for s in serving {
                    let _ = s.await;
                }
            });
            drop(done);
        })?;
    Ok(tokio::spawn(async move {
        let _ = finished.await;
    }))
}

/// Lowers the calling thread's scheduling priority (nice +10) on Linux.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: plain syscalls on the calling thread's own id; no memory is shared.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        let now = libc::getpriority(libc::PRIO_PROCESS, tid);
        libc::setpriority(libc::PRIO_PROCESS, tid, now + 10);
    }
}

/// Accepts connections until `shutdown` flips; each connection is served on its own task
/// and dropped (closing the socket) at shutdown.
pub async fn serve(
    listener: TcpListener,
    state: Arc<State>,
    host: Host,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            _ = shutdown.changed() => break,
            a = listener.accept() => a,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                // E.g. out of file descriptors: back off instead of spinning.
                tracing::warn!(error = %e, "simulator accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let state = state.clone();
        let mut stop = shutdown.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req: Request<Incoming>| {
                let state = state.clone();
                let (method, path) = (req.method().clone(), req.uri().path().to_string());
                async move {
                    let result = dispatch(state, host, req).await;
                    // Paths only: queries and bodies (which hold the secret) are never logged.
                    match &result {
                        Ok(resp) => {
                            tracing::debug!(?host, %method, %path, status = resp.status().as_u16(), "sim request")
                        }
                        Err(e) => {
                            tracing::debug!(?host, %method, %path, error = %e, "sim request dropped")
                        }
                    }
                    result
                }
            });
            let conn = http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), svc);
            tokio::select! {
                _ = conn => {}
                _ = stop.changed() => {}
            }
        });
    }
}

fn context(state: &State, req: &Request<Incoming>) -> Ctx {
    Ctx {
        request_id: state.new_guid(),
        client_request_id: req
            .headers()
            .get("client-request-id")
            .and_then(|v| v.to_str().ok())
            .map(|s| s.chars().take(128).collect()),
        now: chrono::Utc::now(),
    }
}

/// Routes one request. An `Err` makes hyper drop the connection without a response (used
/// for simulated resets).
async fn dispatch(state: Arc<State>, host: Host, req: Request<Incoming>) -> io::Result<Resp> {
    let path = req.uri().path().to_string();
    if host == Host::Graph && path == "/_sim/stats" {
        let body = serde_json::to_vec_pretty(&state.stats.snapshot()).unwrap_or_default();
        let ctx = context(&state, &req);
        return Ok(respond::graph_response(
            &ctx,
            StatusCode::OK,
            "application/json",
            respond::full(body),
        ));
    }
    // `latency_ms` is the service's response time: the answer is prepared meanwhile and sent
    // when it is over (or when ready, if preparing took longer), as a real service's own work
    // is part of its round trip. The client's share of a round trip is then what it adds.
    let started = tokio::time::Instant::now();
    let gzip = req
        .headers()
        .get_all(hyper::header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(gzip::accepts_gzip);
    let answer = route(&state, host, &path, req).await;
    let latency = state.next_latency();
    tokio::time::sleep_until(started + latency).await;
    answer.map(|resp| gzip::meter(&state, resp, gzip))
}

/// The answer to one request, before any simulated latency.
async fn route(
    state: &Arc<State>,
    host: Host,
    path: &str,
    req: Request<Incoming>,
) -> io::Result<Resp> {
    let ctx = context(state, &req);
    match host {
        Host::Download => download::handle(state, req, ctx).await,
        Host::Graph => {
            if let Some(tenant) = login::token_path_tenant(path) {
                let tenant = percent_decode(tenant, false).unwrap_or_else(|| tenant.to_string());
                return login::handle(state, req, tenant, ctx).await;
            }
            if path == "/v1.0" || path.starts_with("/v1.0/") {
                return graph::handle(state, req, ctx).await;
            }
            state.stats.request("other");
            let msg = if path.starts_with("/beta/") {
                "The Graph simulator serves v1.0 only.".to_string()
            } else {
                format!(
                    "No endpoint at '{path}'. Graph calls start with /v1.0/, token requests are POST /{{tenant}}/oauth2/v2.0/token."
                )
            };
            Ok(respond::graph_error(
                &ctx,
                StatusCode::NOT_FOUND,
                "Request_ResourceNotFound",
                &msg,
            ))
        }
    }
}
