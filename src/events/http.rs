//! The HTTP listener of `[events]` (axum): the sources' webhooks, `/healthz` and `/metrics`.
//! A request is checked (credentials, size, shape) and queued; one worker hands the queue to the
//! [`Hub`] in arrival order, so a group's notifications are applied in the order they came. A
//! full queue answers 503 (memory stays bounded under a flood); every refusal is audited.

use super::sources::{self, Refusal};
use super::{Event, Hub};
use crate::events::settings::Auth;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::Router;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use tokio::sync::mpsc;

/// The process's Prometheus recorder: installed on first use, shared by every listener.
pub fn prometheus() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets(&[
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                10.0, 30.0,
            ])
            .expect("fixed, non-empty buckets");
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!(
                "another metrics recorder was installed first; /metrics shows only what it renders"
            );
        }
        handle
    })
}

/// What a webhook delivered: an event to queue, or an answer with none (a ping, a delivery seen
/// before, a kind of event that is not shown).
enum Delivery {
    Event(Box<Event>),
    Answer(StatusCode, String),
}

type Check = Box<dyn Fn(&HeaderMap, &[u8]) -> Result<(), Refusal> + Send + Sync>;
type Parse = Box<dyn Fn(&Hub, &HeaderMap, &[u8]) -> Result<Delivery, Refusal> + Send + Sync>;

/// One configured webhook source: its name in audit rows, its credentials check (with the
/// secret read from the environment once, at start) and its payload reader.
struct Receiver {
    source: String,
    check: Check,
    parse: Parse,
}

/// The configured sources, by their path under `/hooks/`. A new kind of source is one reader in
/// `sources.rs` and one line here.
fn receivers(settings: &super::settings::Settings) -> std::collections::HashMap<String, Receiver> {
    let mut r = std::collections::HashMap::new();
    if let Some(auth) = &settings.alertmanager {
        r.insert("alertmanager".into(), alertmanager(auth));
    }
    if let Some(env) = &settings.github {
        r.insert("github".into(), github(env));
    }
    for (name, g) in &settings.generic {
        r.insert(format!("generic/{name}"), generic(name, g));
    }
    r
}

#[derive(Clone)]
struct Shared {
    hub: Arc<Hub>,
    queue: mpsc::Sender<Event>,
    receivers: Arc<std::collections::HashMap<String, Receiver>>,
}

fn env_secret(name: &str) -> Option<String> {
    let v = std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    if v.is_none() {
        tracing::warn!(
            variable = name,
            "an events source's secret is not set: its requests are all refused"
        );
    }
    v
}

/// The listener's routes and the worker that drains its queue (spawned on the current runtime).
pub fn router(hub: Arc<Hub>) -> Router {
    let settings = hub.settings().clone();
    let receivers = receivers(&settings);
    let (tx, mut rx) = mpsc::channel::<Event>(settings.queue);
    let worker_hub = hub.clone();
    tokio::spawn(async move {
        while let Some(ev) = rx.recv().await {
            let started = std::time::Instant::now();
            worker_hub.ingest(ev).await;
            metrics::histogram!("opsbot_event_seconds").record(started.elapsed().as_secs_f64());
        }
    });
    let digest_hub = hub.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(settings.digest_every);
        tick.tick().await;
        loop {
            tick.tick().await;
            digest_hub.flush_digests().await;
        }
    });
    prometheus();
    let shared = Shared {
        hub,
        queue: tx,
        receivers: Arc::new(receivers),
    };
    Router::new()
        .route("/hooks/{*path}", post(hook))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/metrics", get(|| async { prometheus().render() }))
        .layer(DefaultBodyLimit::max(settings.max_body_bytes))
        .with_state(shared)
}

/// Serves on a bound listener (`app::start_events` binds `[events] listen`; tests bind port 0).
pub async fn serve_on(hub: Arc<Hub>, listener: tokio::net::TcpListener) -> anyhow::Result<()> {
    tracing::info!(address = %listener.local_addr()?, "events listener up");
    axum::serve(
        listener,
        router(hub).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .await?;
    Ok(())
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

fn check(auth: &Auth, secret: Option<&str>, h: &HeaderMap, body: &[u8]) -> Result<(), Refusal> {
    match auth {
        Auth::Bearer(_) => sources::check_bearer(header(h, "authorization"), secret),
        Auth::Hmac(_) => sources::check_hmac(header(h, "x-opsbot-signature-256"), secret, body),
    }
}

type Answer = (StatusCode, String);

impl Shared {
    fn refuse(&self, source: &str, peer: SocketAddr, r: Refusal) -> Answer {
        self.hub.refused(source, &peer.to_string(), &r.to_string());
        let code = match r {
            Refusal::Unauthorized => StatusCode::UNAUTHORIZED,
            Refusal::Malformed(_) => StatusCode::BAD_REQUEST,
        };
        // credentials are never explained to the caller; the audit row says more
        let text = match r {
            Refusal::Malformed(m) => format!("malformed payload: {m}\n"),
            _ => "unauthorized\n".into(),
        };
        (code, text)
    }

    fn enqueue(&self, source: &str, peer: SocketAddr, ev: Event) -> Answer {
        match self.queue.try_send(ev) {
            Ok(()) => (StatusCode::ACCEPTED, "queued\n".into()),
            Err(_) => {
                self.hub
                    .refused(source, &peer.to_string(), "the event queue is full");
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "busy: the event queue is full, retry later\n".into(),
                )
            }
        }
    }
}

/// The answer for a path under `/hooks/` that no configured source has. It names the source
/// asked for ("generic:ci") only when the path is a plain name: nothing else the caller sent is
/// echoed.
fn not_configured(path: &str) -> Answer {
    let plain = path.len() <= 64
        && path
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '-' | '_'));
    if !plain {
        return (StatusCode::NOT_FOUND, String::new());
    }
    (
        StatusCode::NOT_FOUND,
        format!(
            "no source {} is configured in [events.sources]\n",
            path.replace('/', ":")
        ),
    )
}

/// Every webhook: the source its path names checks the credentials, then reads the payload.
async fn hook(
    State(s): State<Shared>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(path): Path<String>,
    h: HeaderMap,
    body: Bytes,
) -> Answer {
    let Some(r) = s.receivers.get(&path) else {
        return not_configured(&path);
    };
    if let Err(e) = (r.check)(&h, &body) {
        return s.refuse(&r.source, peer, e);
    }
    match (r.parse)(&s.hub, &h, &body) {
        Ok(Delivery::Event(ev)) => s.enqueue(&r.source, peer, *ev),
        Ok(Delivery::Answer(code, text)) => (code, text),
        Err(e) => s.refuse(&r.source, peer, e),
    }
}

/// Alertmanager's webhook, with a bearer token or an HMAC signature.
fn alertmanager(auth: &Auth) -> Receiver {
    let (auth, secret) = (auth.clone(), env_secret(auth.env()));
    Receiver {
        source: "alertmanager".into(),
        check: Box::new(move |h, body| check(&auth, secret.as_deref(), h, body)),
        parse: Box::new(|_, _, body| {
            sources::alertmanager(body).map(|ev| Delivery::Event(Box::new(ev)))
        }),
    }
}

/// GitHub's webhook, signed with its own header; each delivery is handled once.
fn github(env: &str) -> Receiver {
    let secret = env_secret(env);
    Receiver {
        source: "github".into(),
        check: Box::new(move |h, body| {
            sources::check_hmac(header(h, "x-hub-signature-256"), secret.as_deref(), body)
        }),
        parse: Box::new(|hub, h, body| {
            let kind = header(h, "x-github-event").unwrap_or("");
            if kind == "ping" {
                return Ok(Delivery::Answer(StatusCode::OK, "pong\n".into()));
            }
            if let Some(id) = header(h, "x-github-delivery") {
                if !hub.first_delivery("github", id) {
                    return Ok(Delivery::Answer(StatusCode::OK, "already handled\n".into()));
                }
            }
            Ok(match sources::github(kind, body)? {
                Some(ev) => Delivery::Event(Box::new(ev)),
                None => Delivery::Answer(StatusCode::OK, format!("ignored: {kind} is not shown\n")),
            })
        }),
    }
}

/// A generic JSON webhook, read by its `[events.sources.generic.<name>]` template.
fn generic(name: &str, g: &super::settings::Generic) -> Receiver {
    let (auth, secret) = (g.auth.clone(), env_secret(g.auth.env()));
    let (name, g) = (name.to_string(), g.clone());
    Receiver {
        source: format!("generic:{name}"),
        check: Box::new(move |h, body| check(&auth, secret.as_deref(), h, body)),
        parse: Box::new(move |_, _, body| {
            sources::generic(&name, &g, body).map(|ev| Delivery::Event(Box::new(ev)))
        }),
    }
}
