//! `serve`: the connector server with its status page, stopped by SIGTERM (or Ctrl-C) and
//! told to re-read its folder by SIGHUP. The server itself is `crate::server`.

use std::net::SocketAddr;
use std::sync::Arc;

use crate::error::Result;
use crate::server::{Request, RunEvent, ServeOptions, Server, SystemClock, systemd, web};

/// `serve`'s settings beyond the scheduler's.
pub struct Serve {
    pub options: ServeOptions,
    /// Where the status page listens; `None` for no page.
    pub listen: Option<SocketAddr>,
    /// The environment variable holding the page's access token.
    pub access_token_env: Option<String>,
}

/// Runs the server until a signal stops it (or, with `--once`, after one pass); returns the
/// runs it started.
pub async fn serve(serve: Serve) -> Result<Vec<RunEvent>> {
    let mut server = Server::new(serve.options.clone(), Arc::new(SystemClock));
    let listener = match serve.listen {
        Some(addr) if !serve.options.once => Some(
            web::bind(
                addr,
                serve.access_token_env.as_deref(),
                server.board(),
                server.requests(),
            )
            .await?,
        ),
        _ => None,
    };
    let (stop_web, web_stopped) = tokio::sync::oneshot::channel::<()>();
    let web = listener.map(|l| {
        tracing::info!(url = %format!("http://{}/", l.addr), "status page listening");
        tokio::spawn(l.serve(async move {
            let _ = web_stopped.await;
        }))
    });
    let rescans = rescan_on_sighup(server.requests());
    let result = server
        .run(async {
            super::shutdown_signal().await;
            systemd::stopping();
        })
        .await;
    rescans.abort();
    let _ = stop_web.send(());
    if let Some(web) = web {
        match web.await {
            Ok(Err(e)) => tracing::error!(error = %e, "the status page stopped"),
            Err(e) => tracing::error!(error = %e, "the status page stopped"),
            Ok(Ok(())) => {}
        }
    }
    result?;
    let events = server.events.lock().map(|e| e.clone()).unwrap_or_default();
    Ok(events)
}

/// SIGHUP asks the scheduler to re-read the folder now (it also does every 30 s).
fn rescan_on_sighup(requests: tokio::sync::mpsc::Sender<Request>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let Ok(mut hup) = signal(SignalKind::hangup()) else {
                return;
            };
            while hup.recv().await.is_some() {
                systemd::reloading();
                if requests.send(Request::Rescan).await.is_err() {
                    return;
                }
                systemd::ready();
            }
        }
        #[cfg(not(unix))]
        drop(requests);
    })
}
