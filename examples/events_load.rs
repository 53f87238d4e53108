//! Load on the events listener: N signed webhook requests over real HTTP from concurrent
//! clients, each a new Alertmanager group, delivered to a counting outbox. Prints events/s from
//! the first request to the last delivery, the webhook-to-outbox latency (p50, p99, max), and
//! the peak RSS. Then a flood past the rate limit: what is posted, held, and audited.
//!
//! cargo run --release --example events_load -- [EVENTS] [CLIENTS] [RATE]
//!
//! RATE (events/s, default unlimited) paces the clients: without it they send as fast as the
//! listener accepts, the queue fills, and the latency measured is mostly waiting in the queue.

use opsbot::chat::Outboxes;
use opsbot::chat::{ConversationId, Outbox, Posted, Reply, Sending};
use opsbot::events::{settings::Settings, Hub};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

const TOKEN: &str = "load-test-token";

/// Records when each message arrived, by its first line.
struct Counting {
    arrived: Mutex<HashMap<String, Instant>>,
    notify: tokio::sync::Notify,
}

impl Outbox for Counting {
    fn platform(&self) -> &str {
        "load"
    }
    fn send<'a>(&'a self, to: &'a ConversationId, reply: &'a Reply) -> Sending<'a, Option<Posted>> {
        Box::pin(async move {
            let key = reply.to_plain().lines().next().unwrap_or("").to_string();
            let mut a = self.arrived.lock().unwrap();
            a.insert(key, Instant::now());
            let id = a.len().to_string();
            self.notify.notify_one();
            Some(Posted {
                conversation: to.clone(),
                id,
            })
        })
    }
    fn edit<'a>(&'a self, _p: &'a Posted, _r: &'a Reply) -> Sending<'a, bool> {
        Box::pin(async { true })
    }
    fn close_question<'a>(&'a self, _q: &'a str, _n: &'a str) -> Sending<'a, ()> {
        Box::pin(async {})
    }
}

fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

fn body(name: &str) -> String {
    format!(
        r#"{{"version":"4","groupKey":"{name}","status":"firing","receiver":"opsbot",
        "groupLabels":{{"alertname":"{name}"}},"commonLabels":{{"alertname":"{name}","service":"api","severity":"warning"}},
        "commonAnnotations":{{}},"externalURL":"","truncatedAlerts":0,
        "alerts":[{{"status":"firing","labels":{{"alertname":"{name}"}},"annotations":{{"summary":"load"}},
        "startsAt":"2026-12-03T10:00:00Z","endsAt":"0001-01-01T00:00:00Z","generatorURL":"","fingerprint":"{name}"}}]}}"#
    )
}

async fn hub(dir: &std::path::Path, rate_limit: u32) -> (Arc<Hub>, Arc<Counting>, String) {
    std::env::set_var("OPSBOT_LOAD_TOKEN", TOKEN);
    let section: toml::Value = toml::from_str(&format!(
        "listen = \"127.0.0.1:0\"\nrate_limit = {rate_limit}\nqueue = 100000\n[sources.alertmanager]\ntoken_env = \"OPSBOT_LOAD_TOKEN\"\n[[routes]]\nto = [\"load:room\"]\n"
    ))
    .unwrap();
    let settings = Settings::from_section(&section).unwrap();
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let catalog = Arc::new(opsbot::catalog::load_dir(&root.join("intents")).unwrap());
    let audit = opsbot::audit::Audit::open(&dir.join("audit.db"), Default::default()).unwrap();
    let store = opsbot::state::sqlite::Events::open(&dir.join("events.db")).unwrap();
    let counting = Arc::new(Counting {
        arrived: Mutex::default(),
        notify: tokio::sync::Notify::new(),
    });
    let outboxes = Arc::new(Outboxes::default());
    outboxes.register(counting.clone());
    let hub = Arc::new(Hub::new(
        settings,
        catalog,
        "!".into(),
        Arc::new(audit),
        Box::new(store),
        outboxes,
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "http://{}/hooks/alertmanager",
        listener.local_addr().unwrap()
    );
    tokio::spawn(opsbot::events::http::serve_on(hub.clone(), listener));
    (hub, counting, url)
}

/// Sends `n` events from `clients` concurrent clients; the send time of each.
async fn send(
    url: &str,
    prefix: &str,
    n: usize,
    clients: usize,
    rate: Option<f64>,
) -> HashMap<String, Instant> {
    let start = Instant::now();
    let http = reqwest::Client::new();
    let sent = Arc::new(Mutex::new(HashMap::new()));
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = vec![];
    for _ in 0..clients {
        let (http, url, sent, next, prefix) = (
            http.clone(),
            url.to_string(),
            sent.clone(),
            next.clone(),
            prefix.to_string(),
        );
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                if i >= n {
                    break;
                }
                if let Some(r) = rate {
                    let due = start + std::time::Duration::from_secs_f64(i as f64 / r);
                    tokio::time::sleep_until(due.into()).await;
                }
                let name = format!("{prefix}{i}");
                sent.lock().unwrap().insert(name.clone(), Instant::now());
                let r = http
                    .post(&url)
                    .bearer_auth(TOKEN)
                    .body(body(&name))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status().as_u16(), 202, "{}", r.text().await.unwrap());
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    Arc::try_unwrap(sent).unwrap().into_inner().unwrap()
}

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let n = args.first().copied().unwrap_or(5000);
    let clients = args.get(1).copied().unwrap_or(16);
    let rate = args.get(2).map(|r| *r as f64);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        // throughput and latency: no rate limit in the way, every event posted
        let (_hub, counting, url) = hub(dir.path(), 1_000_000).await;
        let rss_before = peak_rss_mb();
        let started = Instant::now();
        let sent = send(&url, "load-", n, clients, rate).await;
        while counting.arrived.lock().unwrap().len() < n {
            counting.notify.notified().await;
        }
        let secs = started.elapsed().as_secs_f64();
        // the first line reads "<severity> 🔥 FIRING · 1 alert(s) · <name> · warning"
        let arrived: HashMap<String, Instant> = counting
            .arrived
            .lock()
            .unwrap()
            .iter()
            .filter_map(|(k, t)| Some((k.split(" · ").nth(2)?.to_string(), *t)))
            .collect();
        let mut lat: Vec<f64> = sent
            .iter()
            .filter_map(|(name, t)| {
                Some(arrived.get(name)?.duration_since(*t).as_secs_f64() * 1000.0)
            })
            .collect();
        lat.sort_by(|a, b| a.total_cmp(b));
        let pct = |p: f64| lat[((lat.len() as f64 - 1.0) * p).round() as usize];
        println!(
            "{n} events from {clients} clients (rate {}): {:.0} events/s; webhook to outbox p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({} matched); peak RSS {:.0} MB (before {:.0} MB)",
            rate.map_or("unlimited".to_string(), |r| format!("{r}/s")),
            n as f64 / secs,
            pct(0.5),
            pct(0.99),
            lat.last().copied().unwrap_or(0.0),
            lat.len(),
            peak_rss_mb(),
            rss_before
        );

        // a flood past the rate limit (10 a minute): 10 posted, the rest held, all audited
        let dir = tempfile::tempdir().unwrap();
        let (hub, counting, url) = hub(dir.path(), 10).await;
        let started = Instant::now();
        send(&url, "flood-", n, clients, None).await;
        let audit = opsbot::audit::Audit::open(&dir.path().join("audit.db"), Default::default())
            .unwrap();
        while (audit.count().unwrap() as usize) < n {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        let secs = started.elapsed().as_secs_f64();
        let posted = counting.arrived.lock().unwrap().len();
        hub.flush_digests().await;
        println!(
            "flood of {n}: all {} audited in {secs:.1} s ({:.0} events/s); posted {posted}, digest posted {}; peak RSS {:.0} MB",
            audit.count().unwrap(),
            n as f64 / secs,
            counting.arrived.lock().unwrap().len() - posted,
            peak_rss_mb()
        );
    });
}
