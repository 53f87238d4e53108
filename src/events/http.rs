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

/// The sources' secrets, read from the environment once at start.
struct Secrets {
    alertmanager: Option<(Auth, Option<String>)>,
    github: Option<Option<String>>,
    generic: std::collections::BTreeMap<String, Option<String>>,
}

#[derive(Clone)]
struct Shared {
    hub: Arc<Hub>,
    queue: mpsc::Sender<Event>,
    secrets: Arc<Secrets>,
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
    let secrets = Secrets {
        alertmanager: settings
            .alertmanager
            .clone()
            .map(|a| (a.clone(), env_secret(a.env()))),
        github: settings.github.as_deref().map(env_secret),
        generic: settings
            .generic
            .iter()
            .map(|(n, g)| (n.clone(), env_secret(g.auth.env())))
            .collect(),
    };
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
        secrets: Arc::new(secrets),
    };
    Router::new()
        .route("/hooks/alertmanager", post(alertmanager))
        .route("/hooks/github", post(github))
        .route("/hooks/generic/{name}", post(generic))
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

fn not_configured(source: &str) -> Answer {
    (
        StatusCode::NOT_FOUND,
        format!("no source {source} is configured in [events.sources]\n"),
    )
}

async fn alertmanager(
    State(s): State<Shared>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    h: HeaderMap,
    body: Bytes,
) -> Answer {
    let Some((auth, secret)) = &s.secrets.alertmanager else {
        return not_configured("alertmanager");
    };
    if let Err(r) = check(auth, secret.as_deref(), &h, &body) {
        return s.refuse("alertmanager", peer, r);
    }
    match sources::alertmanager(&body) {
        Ok(ev) => s.enqueue("alertmanager", peer, ev),
        Err(r) => s.refuse("alertmanager", peer, r),
    }
}

async fn github(
    State(s): State<Shared>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    h: HeaderMap,
    body: Bytes,
) -> Answer {
    let Some(secret) = &s.secrets.github else {
        return not_configured("github");
    };
    if let Err(r) = sources::check_hmac(header(&h, "x-hub-signature-256"), secret.as_deref(), &body)
    {
        return s.refuse("github", peer, r);
    }
    let kind = header(&h, "x-github-event").unwrap_or("").to_string();
    if kind == "ping" {
        return (StatusCode::OK, "pong\n".into());
    }
    if let Some(id) = header(&h, "x-github-delivery") {
        if !s.hub.first_delivery("github", id) {
            return (StatusCode::OK, "already handled\n".into());
        }
    }
    match sources::github(&kind, &body) {
        Ok(Some(ev)) => s.enqueue("github", peer, ev),
        Ok(None) => (StatusCode::OK, format!("ignored: {kind} is not shown\n")),
        Err(r) => s.refuse("github", peer, r),
    }
}

async fn generic(
    State(s): State<Shared>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(name): Path<String>,
    h: HeaderMap,
    body: Bytes,
) -> Answer {
    let (Some(g), Some(secret)) = (
        s.hub.settings().generic.get(&name).cloned(),
        s.secrets.generic.get(&name),
    ) else {
        return not_configured(&format!("generic:{name}"));
    };
    let source = format!("generic:{name}");
    if let Err(r) = check(&g.auth, secret.as_deref(), &h, &body) {
        return s.refuse(&source, peer, r);
    }
    match sources::generic(&name, &g, &body) {
        Ok(ev) => s.enqueue(&source, peer, ev),
        Err(r) => s.refuse(&source, peer, r),
    }
}
