//! The status page's HTTP server (axum): `/`, `/connectors/NAME`, a run's report, Run now,
//! `/metrics`, `/healthz`, `/readyz`, and the login form when a token is required.
//!
//! It runs in the server's process beside the scheduler and reads only the board
//! (`board.rs`); Run now is a request to the scheduler, which queues it like a scheduled run.
//! Every response is logged with method, path, status and time; queries, headers and form
//! bodies (where a token travels) never are.

pub mod access;
pub mod metrics;
pub mod pages;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::extract::rejection::FormRejection;
use axum::extract::{Form, Path, Query, Request as HttpRequest, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use tokio::sync::{mpsc, oneshot};

use self::access::Access;
use self::pages::{MessagePage, Notice};
use super::board::Board;
use super::scheduler::{Request, RunNow};
use crate::error::{Error, Result};

/// Where the page listens unless told otherwise.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8765";

/// What every handler shares.
#[derive(Clone)]
struct App {
    board: Arc<Board>,
    requests: mpsc::Sender<Request>,
    access: Arc<Access>,
}

/// A bound listener, ready to serve.
pub struct Listener {
    listener: tokio::net::TcpListener,
    app: App,
    pub addr: SocketAddr,
}

/// Binds `addr` (checking its access rules first, so a bad setting fails before anything runs).
pub async fn bind(
    addr: SocketAddr,
    token_env: Option<&str>,
    board: Arc<Board>,
    requests: mpsc::Sender<Request>,
) -> Result<Listener> {
    let access = Access::for_listener(addr, token_env)?;
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
        Error::Usage(format!(
            "cannot listen on {addr} for the status page: {e}; choose another address with --listen ADDR:PORT, or --listen none"
        ))
    })?;
    let addr = listener
        .local_addr()
        .map_err(|e| Error::io(format!("reading the address of {addr}"), e))?;
    Ok(Listener {
        listener,
        addr,
        app: App {
            board,
            requests,
            access: Arc::new(access),
        },
    })
}

impl Listener {
    /// Serves until `shutdown` resolves; requests in flight then finish.
    pub async fn serve(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Result<()> {
        let addr = self.addr;
        axum::serve(self.listener, router(self.app))
            .with_graceful_shutdown(shutdown)
            .await
            .map_err(|e| Error::io(format!("serving the status page on {addr}"), e))
    }
}

fn router(app: App) -> Router {
    let pages = Router::new()
        .route("/", get(status))
        .route("/connectors/{name}", get(connector))
        .route("/connectors/{name}/run", post(run_now))
        .route("/connectors/{name}/runs/{run_id}/report", get(report))
        .route("/metrics", get(metrics))
        .route("/logout", post(log_out))
        .route_layer(middleware::from_fn_with_state(app.clone(), require_access));
    Router::new()
        .merge(pages)
        .route("/login", get(login_form).post(log_in))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .fallback(not_found)
        .layer(middleware::from_fn(log_and_harden))
        .with_state(app)
}

/// The request log line, and headers that keep the pages to themselves: no scripts, no
/// frames, nothing fetched from elsewhere.
async fn log_and_harden(request: HttpRequest, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let mut response = next.run(request).await;
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; img-src data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    tracing::info!(
        target: "m365_connector::server::http",
        %method,
        path = %path,
        status = response.status().as_u16(),
        ms = format!("{:.1}", started.elapsed().as_secs_f64() * 1000.0),
        "request"
    );
    response
}

/// Pages need the token when one is required: scripts get 401, browsers the login form.
async fn require_access(State(app): State<App>, request: HttpRequest, next: Next) -> Response {
    if app.access.allows(request.headers()) {
        return next.run(request).await;
    }
    if request.uri().path() == "/metrics" || request.headers().contains_key(header::AUTHORIZATION) {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            "an access token is required: Authorization: Bearer TOKEN\n",
        )
            .into_response();
    }
    Redirect::to("/login").into_response()
}

fn render(template: &str, page: &impl serde::Serialize) -> Response {
    match pages::render(template, page) {
        Ok(html) => Html(html).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "rendering a page");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the page could not be rendered; the server's log says why\n",
            )
                .into_response()
        }
    }
}

fn message(status: StatusCode, title: &str, text: &str, app: &App) -> Response {
    let mut r = render(
        "message.html",
        &MessagePage {
            title: title.to_string(),
            message: text.to_string(),
            logged_in: app.access.required(),
        },
    );
    *r.status_mut() = status;
    r
}

async fn status(State(app): State<App>) -> Response {
    let snapshot = app.board.snapshot();
    render(
        "status.html",
        &pages::status_page(&snapshot, app.access.csrf(), app.access.required()),
    )
}

#[derive(Deserialize)]
struct ConnectorQuery {
    page: Option<usize>,
    asked: Option<String>,
}

async fn connector(
    State(app): State<App>,
    Path(name): Path<String>,
    Query(q): Query<ConnectorQuery>,
) -> Response {
    let snapshot = app.board.snapshot();
    let Some(card) = snapshot.connector(&name) else {
        return message(
            StatusCode::NOT_FOUND,
            "No such connector",
            &format!("No connector file of this folder is named {name:?}."),
            &app,
        );
    };
    let notice = q.asked.as_deref().map(|a| notice(a, &name));
    render(
        "connector.html",
        &pages::connector_page(
            card,
            q.page.unwrap_or(1),
            notice,
            app.access.csrf(),
            app.access.required(),
        ),
    )
}

/// The words for what Run now said (carried in the redirect as `?asked=`).
fn notice(asked: &str, name: &str) -> Notice {
    let (ok, text) = match asked {
        "started" => (
            true,
            format!(
                "A run of {name} started. Reload this page to follow it; it appears in the runs below when it ends."
            ),
        ),
        "busy" => (
            false,
            format!(
                "{name} is running already: a connector never runs twice at once. Its run appears below when it ends."
            ),
        ),
        "inactive" => (
            false,
            format!(
                "{name} is inactive (active = false in its file), so the server does not run it."
            ),
        ),
        "elsewhere" => (
            false,
            format!("{name} is hosted by another connector server; run it there."),
        ),
        "stopping" => (
            false,
            "The server is shutting down and starts no runs.".to_string(),
        ),
        _ => (false, format!("{name} could not be started.")),
    };
    Notice { ok, text }
}

#[derive(Deserialize)]
struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

async fn run_now(
    State(app): State<App>,
    Path(name): Path<String>,
    headers: HeaderMap,
    form: std::result::Result<Form<CsrfForm>, FormRejection>,
) -> Response {
    let csrf = form.map(|Form(f)| f.csrf).unwrap_or_default();
    if let Err(why) = app.access.may_post(&headers, &csrf) {
        return message(StatusCode::FORBIDDEN, "Refused", why, &app);
    }
    let (reply, answer) = oneshot::channel();
    let asked = if app
        .requests
        .send(Request::RunNow {
            connector: name.clone(),
            reply,
        })
        .await
        .is_err()
    {
        RunNow::Stopping
    } else {
        answer.await.unwrap_or(RunNow::Stopping)
    };
    let word = match asked {
        RunNow::Started => "started",
        RunNow::Busy => "busy",
        RunNow::Inactive => "inactive",
        RunNow::NotHosted => "elsewhere",
        RunNow::Stopping => "stopping",
        RunNow::Unknown => {
            return message(
                StatusCode::NOT_FOUND,
                "No such connector",
                &format!("No connector file of this folder is named {name:?}."),
                &app,
            );
        }
    };
    Redirect::to(&format!(
        "/connectors/{}?asked={word}",
        pages::path_segment(&name)
    ))
    .into_response()
}

/// A run's HTML report: the file `run` wrote beside its export, or, for a run without one
/// (it failed before its report), rendered now from its staging database.
async fn report(State(app): State<App>, Path((name, run_id)): Path<(String, String)>) -> Response {
    let snapshot = app.board.snapshot();
    let Some(card) = snapshot.connector(&name) else {
        return message(
            StatusCode::NOT_FOUND,
            "No such connector",
            &format!("No connector file of this folder is named {name:?}."),
            &app,
        );
    };
    // Only runs the board lists: the id then names a folder of this connector, nothing else.
    if !card.history.runs.iter().any(|r| r.run_id == run_id) {
        return message(
            StatusCode::NOT_FOUND,
            "No such run",
            &format!("{name} has no run {run_id:?}."),
            &app,
        );
    }
    let file = crate::store::DataDir::new(&card.data_dir)
        .export(&run_id)
        .join(crate::report::REPORT_FILE);
    if let Ok(bytes) = tokio::fs::read(&file).await {
        return (
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            Body::from(bytes),
        )
            .into_response();
    }
    if card.running_since.is_some() {
        return message(
            StatusCode::SERVICE_UNAVAILABLE,
            "Running",
            &format!("{name} is running; this report can be rendered once the run ends."),
            &app,
        );
    }
    let cfg = Arc::clone(&card.config);
    let rendered =
        tokio::task::spawn_blocking(move || crate::report::render_run(&cfg, Some(&run_id))).await;
    match rendered {
        Ok(Ok(r)) => Html(r.html).into_response(),
        Ok(Err(e)) => message(
            StatusCode::INTERNAL_SERVER_ERROR,
            "No report",
            &e.to_string(),
            &app,
        ),
        Err(_) => message(
            StatusCode::INTERNAL_SERVER_ERROR,
            "No report",
            "rendering the report stopped unexpectedly",
            &app,
        ),
    }
}

async fn metrics(State(app): State<App>) -> Response {
    let age = app
        .board
        .last_beat()
        .map(|t| (chrono::Utc::now() - t).num_milliseconds() as f64 / 1000.0);
    match metrics::render(&app.board.snapshot(), age) {
        Ok(text) => ([(header::CONTENT_TYPE, metrics::CONTENT_TYPE)], text).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "encoding the metrics");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the metrics could not be encoded\n",
            )
                .into_response()
        }
    }
}

/// Alive while the scheduler loop turns: it wakes at least every rescan interval (30 s).
async fn healthz(State(app): State<App>) -> Response {
    match app.board.last_beat() {
        Some(t) if (chrono::Utc::now() - t).num_seconds() <= HEALTHY_BEAT_SECONDS => {
            (StatusCode::OK, "ok\n").into_response()
        }
        Some(t) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "the scheduler loop last turned at {t}, more than {HEALTHY_BEAT_SECONDS} s ago\n"
            ),
        )
            .into_response(),
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            "the scheduler has not started yet\n",
        )
            .into_response(),
    }
}

/// A heartbeat older than this means the loop is stuck (it turns at least every 30 s).
const HEALTHY_BEAT_SECONDS: i64 = 90;

/// Ready once the folder was read and the page listens; not while shutting down.
async fn readyz(State(app): State<App>) -> Response {
    if app.board.is_ready() {
        (StatusCode::OK, "ready\n").into_response()
    } else if app.board.is_stopping() {
        (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "starting\n").into_response()
    }
}

async fn login_form(State(app): State<App>) -> Response {
    if !app.access.required() {
        return Redirect::to("/").into_response();
    }
    render(
        "login.html",
        &pages::LoginPage {
            csrf: app.access.csrf().to_string(),
            failed: false,
            logged_in: false,
        },
    )
}

#[derive(Deserialize)]
struct LoginForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    token: String,
}

async fn log_in(
    State(app): State<App>,
    headers: HeaderMap,
    form: std::result::Result<Form<LoginForm>, FormRejection>,
) -> Response {
    let Ok(Form(form)) = form else {
        return message(
            StatusCode::BAD_REQUEST,
            "Refused",
            "the login form was not sent",
            &app,
        );
    };
    if let Err(why) = app.access.may_post(&headers, &form.csrf) {
        return message(StatusCode::FORBIDDEN, "Refused", why, &app);
    }
    match app.access.log_in(&form.token) {
        Some(session) => (
            [(header::SET_COOKIE, access::session_cookie(&session))],
            Redirect::to("/"),
        )
            .into_response(),
        None => {
            tracing::warn!("a login with a wrong access token");
            let mut r = render(
                "login.html",
                &pages::LoginPage {
                    csrf: app.access.csrf().to_string(),
                    failed: true,
                    logged_in: false,
                },
            );
            *r.status_mut() = StatusCode::UNAUTHORIZED;
            r
        }
    }
}

async fn log_out(
    State(app): State<App>,
    headers: HeaderMap,
    form: std::result::Result<Form<CsrfForm>, FormRejection>,
) -> Response {
    let csrf = form.map(|Form(f)| f.csrf).unwrap_or_default();
    if let Err(why) = app.access.may_post(&headers, &csrf) {
        return message(StatusCode::FORBIDDEN, "Refused", why, &app);
    }
    app.access.log_out(&headers);
    (
        [(header::SET_COOKIE, access::cleared_cookie())],
        Redirect::to("/login"),
    )
        .into_response()
}

async fn not_found(State(app): State<App>) -> Response {
    message(
        StatusCode::NOT_FOUND,
        "Not found",
        "There is no such page on this server.",
        &app,
    )
}
