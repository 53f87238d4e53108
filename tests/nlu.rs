//! The natural-language path: slot tables, classification through the binary, the held-out
//! evaluation with thresholds that fail the build on regression, and malformed eval files.

use crate::common::{repo, Home};
use opsbot::catalog::{load_dir, Catalog, Value};
use opsbot::nlu::{slots, Decision, Nlu};
use std::sync::OnceLock;

/// One trained parser for the whole test binary (training costs seconds; the embedding cache is
/// kept under target/ so later runs start warm).
fn nlu() -> &'static (Catalog, Nlu) {
    static NLU: OnceLock<(Catalog, Nlu)> = OnceLock::new();
    NLU.get_or_init(|| {
        let catalog = load_dir(&repo().join("intents")).unwrap();
        let config = opsbot::config::Config::from_file(&repo().join("opsbot.toml")).unwrap();
        let mut settings = config.nlu.unwrap();
        settings.cache_dir = Some(crate::common::cache_dir());
        crate::common::warm_cache();
        let model = opsbot::app::train(&catalog, &settings).unwrap();
        (catalog, Nlu::with_model("!", model))
    })
}

fn slots_of(intent: &str, text: &str) -> Vec<(String, Value)> {
    let (catalog, _) = nlu();
    let ex = slots::extract(catalog, catalog.intent(intent).unwrap(), text);
    ex.params.into_iter().collect()
}

fn check_slots(intent: &str, text: &str, want: &[(&str, Value)]) {
    let got = slots_of(intent, text);
    let want: Vec<(String, Value)> = want
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    let mut want_sorted = want.clone();
    want_sorted.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(got, want_sorted, "{intent}: {text}");
}

fn e(s: &str) -> Value {
    Value::Entity(s.into())
}

#[test]
fn slot_table() {
    use Value::*;
    check_slots(
        "restart",
        "the workers are stuck, kick them in prod",
        &[("service", e("worker")), ("env", e("production"))],
    );
    check_slots(
        "deploy",
        "ship web v2.4.1 to live",
        &[
            ("service", e("web")),
            ("env", e("production")),
            ("version", Version("2.4.1".into())),
        ],
    );
    check_slots(
        "deploy",
        "deplyo the billing service 3.0.0-rc.1 to stg",
        &[
            ("service", e("payments")),
            ("env", e("staging")),
            ("version", Version("3.0.0-rc.1".into())),
        ],
    );
    check_slots(
        "deploy",
        "push a1b2c3d of search to preprod",
        &[
            ("service", e("search")),
            ("env", e("staging")),
            ("version", Version("a1b2c3d".into())),
        ],
    );
    check_slots(
        "restart",
        "restrat the wrokers in prdo",
        &[("service", e("worker")), ("env", e("production"))],
    );
    check_slots(
        "scale",
        "scale the background jobs in staging to twenty",
        &[
            ("service", e("worker")),
            ("env", e("staging")),
            ("replicas", Integer(20)),
        ],
    );
    check_slots(
        "scale",
        "give api 3 more... no, set api to 12 replicas in dev",
        &[
            ("service", e("api")),
            ("env", e("dev")),
            ("replicas", Integer(12)),
        ],
    );
    check_slots(
        "scale",
        "scale web to 500 in prod",
        &[("service", e("web")), ("env", e("production"))],
    );
    check_slots(
        "alerts.silence",
        "mute cache alerts for half an hour",
        &[("service", e("redis")), ("duration", Duration(1800))],
    );
    check_slots(
        "alerts.silence",
        "silence payments for 90 minutes",
        &[("service", e("payments")), ("duration", Duration(5400))],
    );
    check_slots(
        "alerts.silence",
        "shut up the db alerts for a day",
        &[("service", e("postgres")), ("duration", Duration(86_400))],
    );
    check_slots(
        "alerts.silence",
        "snooze search for an hour",
        &[("service", e("search")), ("duration", Duration(3600))],
    );
    check_slots(
        "logs",
        "api logs in prod for the last 2h",
        &[
            ("service", e("api")),
            ("env", e("production")),
            ("since", Duration(7200)),
        ],
    );
    check_slots(
        "logs",
        "what did the db log in the last day",
        &[("service", e("postgres")), ("since", Duration(86_400))],
    );
    check_slots(
        "alerts.ack",
        "ack #4821",
        &[("alert", Alert("4821".into()))],
    );
    check_slots(
        "alerts.ack",
        "acknowledge alert 4821 please",
        &[("alert", Alert("4821".into()))],
    );
    check_slots(
        "oncall",
        "who is on call for frontend",
        &[("team", e("frontend"))],
    );
    check_slots(
        "status",
        "how is the frontend doing in prod",
        &[("service", e("web")), ("env", e("production"))],
    );
    check_slots(
        "metrics",
        "p99 of the login service on staging",
        &[
            ("service", e("auth")),
            ("metric", e("latency")),
            ("env", e("staging")),
        ],
    );
    check_slots(
        "incident.open",
        "open a p1 incident for payments in prod: checkout is failing",
        &[
            ("severity", e("sev1")),
            ("service", e("payments")),
            ("env", e("production")),
            ("title", Text("checkout is failing".into())),
        ],
    );
    check_slots(
        "runbook",
        "runbook for disk full on postgres",
        &[
            ("service", e("postgres")),
            ("topic", Text("disk full".into())),
        ],
    );
    // words that name a value of one parameter are not taken for another
    check_slots(
        "deploy",
        "deploy 2.4.1 of api to staging",
        &[
            ("service", e("api")),
            ("env", e("staging")),
            ("version", Version("2.4.1".into())),
        ],
    );
    check_slots(
        "status",
        "what's it like on staging",
        &[("env", e("staging"))],
    );
    // regression (issue 9): a range names its target last
    check_slots(
        "scale",
        "scale web from 2 to 6 replicas in prod",
        &[
            ("service", e("web")),
            ("env", e("production")),
            ("replicas", Integer(6)),
        ],
    );
    // the target count, not the current one; how long, not how often
    check_slots(
        "scale",
        "scale api on staging to 20 (it's at 5 now)",
        &[
            ("service", e("api")),
            ("env", e("staging")),
            ("replicas", Integer(20)),
        ],
    );
    check_slots(
        "scale",
        "scale auth in staging to 3, it's at 1 right now and on 2 nodes",
        &[
            ("service", e("auth")),
            ("env", e("staging")),
            ("replicas", Integer(3)),
        ],
    );
    check_slots(
        "alerts.ack",
        "3 alerts firing on api in prod, ack 4410",
        &[("alert", Alert("4410".into()))],
    );
    check_slots(
        "logs",
        "show auth logs in production for the past three hours",
        &[
            ("service", e("auth")),
            ("env", e("production")),
            ("since", Duration(10800)),
        ],
    );
    check_slots(
        "alerts.silence",
        "redis pages every 5 min and we know why, silence redis alerts for an hour",
        &[("service", e("redis")), ("duration", Duration(3600))],
    );
    // regression (issue 9): "502s" is a status code, not 502 seconds
    check_slots(
        "logs",
        "seeing 502s on web, show the logs",
        &[("service", e("web"))],
    );
    check_slots(
        "logs",
        "web logs for the last 300s",
        &[("service", e("web")), ("since", Duration(300))],
    );
    for text in [
        "open a sev-2 incident for payments: checkout failing",
        "open a sev 2 incident for payments: checkout failing",
        "open a P2 incident for payments: checkout failing",
    ] {
        let got = slots_of("incident.open", text);
        assert!(
            got.contains(&("severity".to_string(), e("sev2"))),
            "{text}: {got:?}"
        );
    }
}

#[test]
fn out_of_range_values_are_reported_not_dropped_silently() {
    let (catalog, _) = nlu();
    let ex = slots::extract(
        catalog,
        catalog.intent("scale").unwrap(),
        "scale web to 500 in prod",
    );
    assert!(
        ex.invalid.iter().any(|e| e
            .to_string()
            .contains("replicas must be between 0 and 100, got 500")),
        "{:?}",
        ex.invalid
    );
}

#[test]
fn plain_language_decisions() {
    let (catalog, nlu) = nlu();
    let cases = [
        (
            "the workers are stuck, kick them in prod",
            Some("restart"),
            Decision::Accept,
        ),
        ("ship web v2.4.1 to live", Some("deploy"), Decision::Accept),
        ("who is on call for sre", Some("oncall"), Decision::Accept),
        ("what's the weather like in paris", None, Decision::Reject),
        ("I restarted my laptop", None, Decision::Reject),
        ("don't deploy on fridays lol", None, Decision::Reject),
        ("!deploy api staging", Some("deploy"), Decision::Accept),
        ("help scale", Some("help"), Decision::Accept),
        (
            "what does the silence command do",
            Some("help"),
            Decision::Accept,
        ),
    ];
    for (text, intent, decision) in cases {
        let a = nlu.analyze(catalog, text);
        assert_eq!(
            (a.intent.as_deref(), a.decision),
            (intent, decision),
            "{text}: {a:?}"
        );
    }
    // the near misses of issue 9: ops words that ask the bot for nothing are never taken as a
    // command (a did-you-mean runs nothing either)
    for text in [
        "please don't bounce the workers",
        "drop the staging database",
        "bump the log level on auth to debug",
        "would scaling web to 0 break checkout?",
        "@sam could you restart payments when you get a sec",
    ] {
        let a = nlu.analyze(catalog, text);
        assert_ne!(a.decision, Decision::Accept, "{text}: {a:?}");
    }
    for (text, topic) in [
        ("help scale", "scale"),
        ("what does the silence command do", "alerts.silence"),
        ("how does scaling work here", "scale"),
        // a part of a dotted name that no other intent's name has names it
        ("explain the incident command to me", "incident.open"),
    ] {
        let a = nlu.analyze(catalog, text);
        assert_eq!(
            a.slots.get("topic"),
            Some(&Value::Text(topic.into())),
            "{text}: {a:?}"
        );
    }
    let strict = nlu.analyze(catalog, "!deploy api staging");
    assert_eq!(strict.confidence, 1.0);
    assert_eq!(strict.source, opsbot::nlu::Source::Strict);
}

#[test]
fn classify_prints_the_documented_json() {
    let home = Home::new();
    let (ok, out, err) = home.opsbot(&["classify", "--json", "ship web v2.4.1 to live"], b"");
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    for key in [
        "text",
        "intent",
        "confidence",
        "decision",
        "slots",
        "alternatives",
        "source",
        "elapsed_us",
    ] {
        assert!(v.get(key).is_some(), "missing {key} in {out}");
    }
    assert_eq!(v["intent"], "deploy");
    assert_eq!(v["decision"], "accept");
    assert_eq!(v["source"], "nlu");
    assert_eq!(
        v["slots"],
        serde_json::json!({"service": "web", "env": "production", "version": "2.4.1"})
    );
    assert!(v["alternatives"].as_array().unwrap().len() <= 3);
}

/// The held-out files (tests/data/ops_eval.jsonl, and tests/data/chat_eval.jsonl with its hard
/// negatives by category) were written without looking at the training examples and are never
/// used to write them or to choose thresholds (those come from ops_val.jsonl and chat_val.jsonl).
/// The bounds are the figures measured when they were last changed, less a little noise, so a
/// regression fails the build; the targets are higher (README, "Accuracy").
#[test]
fn held_out_evaluation_meets_the_targets() {
    let home = Home::new();
    let run = |file: &str| -> serde_json::Value {
        let data = repo().join(file);
        let (ok, out, err) =
            home.opsbot(&["eval", "--json", "--data", data.to_str().unwrap()], b"");
        assert!(ok, "{err}");
        serde_json::from_str(out.trim()).unwrap()
    };
    let ops = run("tests/data/ops_eval.jsonl");
    assert!(ops["rows"].as_u64().unwrap() >= 250);
    let f = |r: &serde_json::Value, k: &str| r[k].as_f64().unwrap();
    assert!(f(&ops, "in_scope_accuracy") >= 0.95, "{ops}");
    assert!(f(&ops, "oos_false_accept_rate") <= 0.01, "{ops}");
    assert!(f(&ops, "frame_accuracy") >= 0.93, "{ops}");
    // (file, in-scope at least, false accepts at most, frame at least, per hard-negative
    // category at most): the figures in the README less a row or two of noise
    for (file, in_scope, fa, frame, per_category) in [
        ("tests/data/chat_eval.jsonl", 0.92, 0.03, 0.90, 0.08),
        ("tests/data/probe_eval.jsonl", 0.91, 0.06, 0.88, 0.15),
        ("tests/data/field_eval.jsonl", 0.86, 0.10, 0.75, 0.20),
        ("tests/data/crew_eval.jsonl", 0.75, 0.07, 0.63, 0.20),
    ] {
        let r = run(file);
        assert!(r["rows"].as_u64().unwrap() >= 200, "{file}");
        assert!(f(&r, "in_scope_accuracy") >= in_scope, "{file}: {r}");
        assert!(f(&r, "oos_false_accept_rate") <= fa, "{file}: {r}");
        assert!(f(&r, "frame_accuracy") >= frame, "{file}: {r}");
        for category in [
            "negation",
            "unsupported",
            "past",
            "hypothetical",
            "about_bot",
            "addressed",
        ] {
            let c = &r["per_category"][category];
            assert!(c["rows"].as_u64().unwrap() >= 15, "{file} {category}: {c}");
            assert!(
                c["false_accepts"].as_f64().unwrap() <= per_category,
                "{file} {category}: {c}"
            );
        }
    }
}

#[test]
fn malformed_eval_files_are_rejected_with_the_line_number() {
    let home = Home::new();
    let cases = [
        (
            "{\"text\": \"hi\", \"intent\": null}\n{\"text\": \"x\", \"intent\": \n",
            ":2: not valid JSON",
        ),
        (
            "{\"text\": \"hi\", \"intent\": null}\n\n[1, 2]\n",
            ":3: expected a JSON object",
        ),
        (
            "{\"text\": 5, \"intent\": null}\n",
            ":1: \"text\" must be a string",
        ),
        (
            "{\"text\": \"hi\", \"intent\": 3}\n",
            ":1: \"intent\" must be an intent name or null",
        ),
        (
            "{\"text\": \"hi\", \"intent\": null, \"slot\": {}}\n",
            ":1: unknown key 'slot'",
        ),
        (
            "{\"text\": \"hi\", \"intent\": null, \"slots\": [1]}\n",
            ":1: \"slots\" must be an object",
        ),
        ("", ":0: no rows"),
    ];
    for (content, want) in cases {
        let f = home.dir.path().join("bad.jsonl");
        std::fs::write(&f, content).unwrap();
        let (ok, _, err) = home.opsbot(&["eval", "--data", f.to_str().unwrap()], b"");
        assert!(!ok, "{content:?} was accepted");
        assert!(
            err.contains(&format!("bad.jsonl{want}")),
            "{content:?}: {err}"
        );
    }
    let f = home.dir.path().join("unknown.jsonl");
    std::fs::write(&f, "{\"text\": \"hi\", \"intent\": \"frobnicate\"}\n").unwrap();
    let (ok, _, err) = home.opsbot(&["eval", "--data", f.to_str().unwrap()], b"");
    assert!(
        !ok && err.contains("row 1: unknown intent 'frobnicate'"),
        "{err}"
    );
    // a gold value its parameter's type cannot read is the file's mistake, named
    std::fs::write(
        &f,
        "{\"text\": \"ship it\", \"intent\": \"deploy\", \"slots\": {\"version\": \"1.x!\"}}\n",
    )
    .unwrap();
    let (ok, _, err) = home.opsbot(&["eval", "--data", f.to_str().unwrap()], b"");
    assert!(!ok && err.contains("row 1: gold version '1.x!'"), "{err}");
}
