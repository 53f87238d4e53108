//! Criterion benchmarks of the events path: an Alertmanager payload parsed, routed, folded into
//! its group, audited and handed to an outbox (`Hub::ingest`, SQLite on disk), for a new group
//! and for a repeat that is a duplicate; and the parse and signature check alone. Run with
//! `cargo bench --bench events`; the listener under HTTP load is `examples/events_load.rs`.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use opsbot::chat::Outboxes;
use opsbot::chat::{ConversationId, Outbox, Posted, Reply, Sending};
use opsbot::events::{settings::Settings, sources, Hub};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Counts what it is given and posts nowhere.
struct Null(AtomicUsize);

impl Outbox for Null {
    fn platform(&self) -> &str {
        "null"
    }
    fn send<'a>(&'a self, to: &'a ConversationId, _r: &'a Reply) -> Sending<'a, Option<Posted>> {
        let id = self.0.fetch_add(1, Ordering::Relaxed).to_string();
        Box::pin(async move {
            Some(Posted {
                conversation: to.clone(),
                id,
            })
        })
    }
    fn edit<'a>(&'a self, _p: &'a Posted, _r: &'a Reply) -> Sending<'a, bool> {
        self.0.fetch_add(1, Ordering::Relaxed);
        Box::pin(async { true })
    }
    fn close_question<'a>(&'a self, _q: &'a str, _n: &'a str) -> Sending<'a, ()> {
        Box::pin(async {})
    }
}

fn payload(group: &str) -> String {
    format!(
        r#"{{"version":"4","groupKey":"{group}","status":"firing","receiver":"opsbot",
        "groupLabels":{{"alertname":"HighErrorRate"}},"commonLabels":{{"alertname":"HighErrorRate","service":"api","env":"production","severity":"critical"}},
        "commonAnnotations":{{}},"externalURL":"","truncatedAlerts":0,
        "alerts":[{{"status":"firing","labels":{{"alertname":"HighErrorRate","instance":"a"}},"annotations":{{"summary":"5xx above 5%"}},
        "startsAt":"2026-12-03T10:00:00Z","endsAt":"0001-01-01T00:00:00Z","generatorURL":"","fingerprint":"a1"}}]}}"#
    )
}

fn bench(c: &mut Criterion) {
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    let section: toml::Value =
        toml::from_str("rate_limit = 1000000\n[[routes]]\nto = [\"null:room\"]\n").unwrap();
    let catalog = Arc::new(opsbot::catalog::load_dir(&root.join("intents")).unwrap());
    let audit =
        opsbot::audit::Audit::open(&dir.path().join("audit.db"), Default::default()).unwrap();
    let store = opsbot::state::sqlite::Events::open(&dir.path().join("events.db")).unwrap();
    let outboxes = Arc::new(Outboxes::default());
    outboxes.register(Arc::new(Null(AtomicUsize::new(0))));
    let hub = Hub::new(
        Settings::from_section(&section).unwrap(),
        catalog,
        "!".into(),
        Arc::new(audit),
        Box::new(store),
        outboxes,
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();

    let mut g = c.benchmark_group("events");
    g.throughput(Throughput::Elements(1));
    let body = payload("bench-parse");
    g.bench_function("parse_alertmanager", |b| {
        b.iter(|| sources::alertmanager(black_box(body.as_bytes())).unwrap())
    });
    let sig = sources::sign("bench-key", body.as_bytes());
    g.bench_function("check_signature", |b| {
        b.iter(|| sources::check_hmac(Some(&sig), Some("bench-key"), black_box(body.as_bytes())))
    });
    let mut n = 0u64;
    g.bench_function("ingest_new_group", |b| {
        b.iter(|| {
            n += 1;
            let ev = sources::alertmanager(payload(&format!("g{n}")).as_bytes()).unwrap();
            rt.block_on(hub.ingest(ev))
        })
    });
    let repeat = payload("the-same-group");
    rt.block_on(hub.ingest(sources::alertmanager(repeat.as_bytes()).unwrap()));
    g.bench_function("ingest_duplicate", |b| {
        b.iter(|| {
            let ev = sources::alertmanager(repeat.as_bytes()).unwrap();
            rt.block_on(hub.ingest(ev))
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
