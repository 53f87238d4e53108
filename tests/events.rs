//! Events in-process: the listener on a free port, a `Bot` with the model-free embedder, and a
//! recording outbox in place of a chat platform. Real HTTP requests, signed and forged.

use opsbot::chat::Outboxes;
use opsbot::chat::{ChatEvent, ConversationId, Outbox, Posted, Principal, Reply, Sending, UserId};
use opsbot::events::sources::sign;
use opsbot::events::{Fate, Hub};
use std::sync::{Arc, Mutex};

/// What the recording outbox saw: ("send" | "edit", message id, reply).
type Seen = Arc<Mutex<Vec<(String, String, Reply)>>>;

struct Recorder {
    seen: Seen,
}

impl Outbox for Recorder {
    fn platform(&self) -> &str {
        "rec"
    }
    fn send<'a>(&'a self, to: &'a ConversationId, reply: &'a Reply) -> Sending<'a, Option<Posted>> {
        Box::pin(async move {
            let mut seen = self.seen.lock().unwrap();
            let id = format!("m{}", seen.len() + 1);
            seen.push(("send".into(), id.clone(), reply.clone()));
            Some(Posted {
                conversation: to.clone(),
                id,
            })
        })
    }
    fn edit<'a>(&'a self, posted: &'a Posted, reply: &'a Reply) -> Sending<'a, bool> {
        Box::pin(async move {
            self.seen
                .lock()
                .unwrap()
                .push(("edit".into(), posted.id.clone(), reply.clone()));
            true
        })
    }
    fn close_question<'a>(&'a self, _q: &'a str, _n: &'a str) -> Sending<'a, ()> {
        Box::pin(async {})
    }
}

struct Harness {
    dir: tempfile::TempDir,
    bot: Arc<opsbot::bot::Bot>,
    hub: Arc<Hub>,
    seen: Seen,
    base: String,
    rt: tokio::runtime::Runtime,
    http: reqwest::Client,
}

const AM_TOKEN: &str = "am-token-for-tests";
const GH_SECRET: &str = "gh-secret-for-tests";

impl Harness {
    fn new(events: &str) -> Harness {
        Harness::with_intents(events, &crate::common::repo().join("intents"))
    }

    fn with_intents(events: &str, intents: &std::path::Path) -> Harness {
        // the secrets the sources prove themselves with (set before the hub reads them)
        std::env::set_var("OPSBOT_TEST_AM_TOKEN", AM_TOKEN);
        std::env::set_var("OPSBOT_TEST_GH_SECRET", GH_SECRET);
        let dir = tempfile::tempdir().unwrap();
        let cfg = format!(
            "schema = 1\nintents = {:?}\nstate_dir = \"state\"\naudit_db = \"state/audit.db\"\n[nlu]\nbackend = \"hashing\"\ncache = {:?}\n{events}\n",
            intents.display().to_string(),
            crate::common::cache_dir().display().to_string(),
        );
        let path = dir.path().join("opsbot.toml");
        std::fs::write(&path, cfg).unwrap();
        let config = opsbot::config::Config::from_file(&path).unwrap();
        let settings =
            opsbot::events::settings::Settings::from_section(config.section("events").unwrap())
                .unwrap();
        let bot = Arc::new(opsbot::app::build(&config).unwrap());
        let outboxes = Arc::new(Outboxes::default());
        let seen: Seen = Arc::default();
        outboxes.register(Arc::new(Recorder { seen: seen.clone() }));
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        // the application's own start: listener, worker, digests and announcements
        let (addr, hub, _) = rt
            .block_on(opsbot::app::start_events(&config, settings, &bot, outboxes))
            .unwrap();
        let base = format!("http://{addr}");
        Harness {
            dir,
            bot,
            hub,
            seen,
            base,
            rt,
            http: reqwest::Client::new(),
        }
    }

    /// `user` (with `roles`) says `text` in `conversation`; the replies as plain text.
    fn say(&self, conversation: &str, user: &str, roles: &[&str], text: &str) -> String {
        let ev = ChatEvent {
            conversation: ConversationId(conversation.into()),
            principal: Principal {
                id: UserId(format!("rec:{user}")),
                display_name: user.into(),
                roles: roles.iter().map(|r| r.to_string()).collect(),
            },
            text: text.into(),
        };
        self.rt
            .block_on(self.bot.handle(&ev))
            .iter()
            .map(|r| r.to_plain())
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn post(&self, path: &str, headers: &[(&str, &str)], body: &str) -> (u16, String) {
        self.rt.block_on(async {
            let mut r = self
                .http
                .post(format!("{}{path}", self.base))
                .body(body.to_string());
            for (k, v) in headers {
                r = r.header(*k, *v);
            }
            let resp = r.send().await.unwrap();
            (resp.status().as_u16(), resp.text().await.unwrap())
        })
    }

    fn get(&self, path: &str) -> (u16, String) {
        self.rt.block_on(async {
            let resp = self
                .http
                .get(format!("{}{path}", self.base))
                .send()
                .await
                .unwrap();
            (resp.status().as_u16(), resp.text().await.unwrap())
        })
    }

    fn alert(&self, body: &str) -> (u16, String) {
        self.post(
            "/hooks/alertmanager",
            &[("authorization", &format!("Bearer {AM_TOKEN}"))],
            body,
        )
    }

    /// Waits until the outbox has seen `n` calls (the worker drains the queue behind the 202).
    fn wait_seen(&self, n: usize) -> Vec<(String, String, Reply)> {
        for _ in 0..200 {
            if self.seen.lock().unwrap().len() >= n {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        self.seen.lock().unwrap().clone()
    }

    /// (status, detail) of the audit's event rows, oldest first.
    fn events_audited(&self) -> Vec<(String, String)> {
        let audit =
            opsbot::audit::Audit::open(&self.dir.path().join("state/audit.db"), Default::default())
                .unwrap();
        audit
            .all()
            .unwrap()
            .into_iter()
            .filter(|r| r.kind == "event")
            .map(|r| (r.status, r.detail))
            .collect()
    }

    /// Waits until `n` event rows are in the audit log.
    fn wait_audited(&self, n: usize) -> Vec<(String, String)> {
        for _ in 0..200 {
            if self.events_audited().len() >= n {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        self.events_audited()
    }
}

const EVENTS: &str = r#"
[events]
listen = "127.0.0.1:0"
max_body_bytes = 65536
rate_limit = 5
[events.sources.alertmanager]
token_env = "OPSBOT_TEST_AM_TOKEN"
[events.sources.github]
secret_env = "OPSBOT_TEST_GH_SECRET"
[[events.routes]]
source = "alertmanager"
to = ["rec:ops"]
mention = "4242"
[[events.routes]]
source = "github"
to = ["rec:devops"]
"#;

fn am(group: &str, status: &str, alerts: &[(&str, &str)]) -> String {
    let alerts: Vec<String> = alerts
        .iter()
        .map(|(fp, st)| {
            format!(
                r#"{{"status":"{st}","labels":{{"alertname":"HighErrorRate","service":"api","env":"production","instance":"{fp}"}},
                "annotations":{{"summary":"5xx above 5% on {fp}"}},"startsAt":"2026-12-03T10:00:00Z",
                "endsAt":"0001-01-01T00:00:00Z","generatorURL":"","fingerprint":"{fp}"}}"#
            )
        })
        .collect();
    format!(
        r#"{{"version":"4","groupKey":"{group}","status":"{status}","receiver":"opsbot",
        "groupLabels":{{"alertname":"HighErrorRate"}},
        "commonLabels":{{"alertname":"HighErrorRate","service":"api","env":"production","severity":"critical"}},
        "commonAnnotations":{{}},"externalURL":"http://am.local","truncatedAlerts":0,
        "alerts":[{}]}}"#,
        alerts.join(",")
    )
}

fn notice(r: &Reply) -> (String, Option<String>, Vec<(String, String)>) {
    match r {
        Reply::Notice {
            text,
            mention,
            actions,
        } => (text.clone(), mention.clone(), actions.clone()),
        other => panic!("not a notice: {other:?}"),
    }
}

#[test]
fn an_alert_group_is_one_message_edited_as_it_changes_and_closed_when_resolved() {
    let h = Harness::new(EVENTS);
    let (code, _) = h.alert(&am("g1", "firing", &[("a1", "firing")]));
    assert_eq!(code, 202);
    let seen = h.wait_seen(1);
    assert_eq!(seen[0].0, "send");
    let (text, mention, actions) = notice(&seen[0].2);
    assert!(
        text.contains("FIRING") && text.contains("HighErrorRate"),
        "{text}"
    );
    assert!(text.contains("5xx above 5% on a1"), "{text}");
    assert_eq!(mention.as_deref(), Some("4242"));
    // the buttons are strict commands with the alert's labels, each valid for its intent; Ack
    // needs a numeric alert id, which these alerts do not carry, so it is left out
    let labels: Vec<&str> = actions.iter().map(|(l, _)| l.as_str()).collect();
    assert_eq!(labels, ["Silence 1h", "Runbook", "Logs"]);
    assert!(actions.contains(&("Silence 1h".into(), "!alerts silence api 1h".into())));
    assert!(actions.contains(&("Logs".into(), "!logs api production".into())));

    // the same notification again changes nothing
    h.alert(&am("g1", "firing", &[("a1", "firing")]));
    // a second alert joins the group: the same message is edited
    h.alert(&am("g1", "firing", &[("a1", "firing"), ("a2", "firing")]));
    let seen = h.wait_seen(2);
    assert_eq!((seen[1].0.as_str(), seen[1].1.as_str()), ("edit", "m1"));
    assert!(notice(&seen[1].2).0.contains("2 alert(s)"));
    // resolved: the same message says so, loses its buttons and its ping
    h.alert(&am(
        "g1",
        "resolved",
        &[("a1", "resolved"), ("a2", "resolved")],
    ));
    let seen = h.wait_seen(3);
    assert_eq!((seen[2].0.as_str(), seen[2].1.as_str()), ("edit", "m1"));
    let (text, mention, actions) = notice(&seen[2].2);
    assert!(text.contains("RESOLVED"), "{text}");
    assert!(actions.is_empty() && mention.is_none());
    // and stays closed: a repeat of the resolve is a duplicate
    h.alert(&am(
        "g1",
        "resolved",
        &[("a1", "resolved"), ("a2", "resolved")],
    ));
    let audited = h.wait_audited(5);
    let fates: Vec<&str> = audited.iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(
        fates,
        ["posted", "duplicate", "edited", "edited", "duplicate"]
    );
    assert_eq!(h.seen.lock().unwrap().len(), 3);
    assert!(audited.iter().all(|(_, d)| d == "g1"));
}

#[test]
fn a_restart_keeps_editing_the_same_message() {
    let h = Harness::new(EVENTS);
    h.alert(&am("g-restart", "firing", &[("a1", "firing")]));
    h.wait_audited(1);
    // a new hub on the same state directory (the bot restarted) edits message m1
    let config = opsbot::config::Config::from_file(&h.dir.path().join("opsbot.toml")).unwrap();
    let settings =
        opsbot::events::settings::Settings::from_section(config.section("events").unwrap())
            .unwrap();
    let outboxes = Arc::new(Outboxes::default());
    outboxes.register(Arc::new(Recorder {
        seen: h.seen.clone(),
    }));
    let again = opsbot::app::events(&config, settings, &h.bot, outboxes).unwrap();
    let resolved = opsbot::events::sources::alertmanager(
        am("g-restart", "resolved", &[("a1", "resolved")]).as_bytes(),
    )
    .unwrap();
    assert_eq!(h.rt.block_on(again.ingest(resolved)), Fate::Edited);
    let seen = h.wait_seen(2);
    assert_eq!((seen[1].0.as_str(), seen[1].1.as_str()), ("edit", "m1"));
}

#[test]
fn a_flapping_alert_stays_in_one_message_marked_as_flapping() {
    let h = Harness::new(EVENTS);
    let mut n = 0;
    for (i, status) in ["firing", "resolved", "firing", "resolved", "firing"]
        .iter()
        .enumerate()
    {
        h.alert(&am("g-flap", status, &[("f1", status)]));
        n = i + 1;
        h.wait_seen(n);
    }
    let seen = h.wait_seen(n);
    let sends = seen.iter().filter(|(k, _, _)| k == "send").count();
    let last = notice(&seen.last().unwrap().2).0;
    assert!(last.contains("FLAPPING"), "{last}");
    // the first refire after the resolve is a new incident; from then on it flaps in place
    assert!(sends <= 2, "{seen:?}");
}

#[test]
fn a_flood_is_held_to_the_rate_limit_and_summarised_in_a_digest() {
    let h = Harness::new(EVENTS);
    for i in 0..30 {
        let (code, _) = h.alert(&am(&format!("flood-{i}"), "firing", &[("x", "firing")]));
        assert_eq!(code, 202);
    }
    let audited = h.wait_audited(30);
    let posted = audited.iter().filter(|(s, _)| s == "posted").count();
    let held = audited.iter().filter(|(s, _)| s == "held").count();
    assert_eq!((posted, held), (5, 25), "{audited:?}");
    h.rt.block_on(h.hub.flush_digests());
    let seen = h.wait_seen(6);
    let Reply::Text(digest) = &seen[5].2 else {
        panic!("{:?}", seen[5])
    };
    assert!(digest.contains("25 event(s) held back"), "{digest}");
    assert!(digest.contains("HighErrorRate ×25"), "{digest}");
    // the digest is emptied once posted
    h.rt.block_on(h.hub.flush_digests());
    assert_eq!(h.seen.lock().unwrap().len(), 6);
}

#[test]
fn forged_or_malformed_requests_are_refused_and_audited() {
    let h = Harness::new(EVENTS);
    let body = am("g-x", "firing", &[("a1", "firing")]);
    let (code, text) = h.post(
        "/hooks/alertmanager",
        &[("authorization", "Bearer wrong-token")],
        &body,
    );
    assert_eq!((code, text.as_str()), (401, "unauthorized\n"));
    assert_eq!(h.post("/hooks/alertmanager", &[], &body).0, 401);
    let (code, text) = h.alert(&body.replace("\"4\"", "\"3\""));
    assert_eq!(code, 400, "{text}");
    assert!(text.contains("version"), "{text}");
    // bodies are capped
    let huge = format!("{{\"pad\":\"{}\"}}", "x".repeat(100_000));
    assert_eq!(h.alert(&huge).0, 413);
    // an unconfigured source is not there at all
    assert_eq!(h.post("/hooks/generic/ci", &[], "{}").0, 404);
    let refused = h.wait_audited(3);
    assert_eq!(
        refused.iter().filter(|(s, _)| s == "refused").count(),
        3,
        "{refused:?}"
    );
    assert!(h.seen.lock().unwrap().is_empty());
}

#[test]
fn github_deliveries_are_verified_handled_once_and_a_failed_deploy_offers_rollback() {
    let h = Harness::new(EVENTS);
    let body = r#"{"deployment_status":{"state":"failure","log_url":"https://ci.local/run/9"},
        "deployment":{"environment":"production","ref":"v2.4.1"},
        "repository":{"full_name":"acme/payments"},"sender":{"login":"ana"}}"#;
    let sig = sign(GH_SECRET, body.as_bytes());
    let headers = [
        ("x-github-event", "deployment_status"),
        ("x-github-delivery", "d-1"),
        ("x-hub-signature-256", sig.as_str()),
    ];
    assert_eq!(h.post("/hooks/github", &headers, body).0, 202);
    let seen = h.wait_seen(1);
    let (text, _, actions) = notice(&seen[0].2);
    assert!(
        text.contains("deploy of v2.4.1 to production: failure"),
        "{text}"
    );
    assert_eq!(
        actions,
        vec![(
            "Rollback".to_string(),
            "!rollback payments production".to_string()
        )]
    );
    // GitHub redelivers under the same id: handled once
    let (code, text) = h.post("/hooks/github", &headers, body);
    assert_eq!((code, text.as_str()), (200, "already handled\n"));
    // a forged signature (another key) and a tampered body are refused
    let forged = sign("not-the-secret", body.as_bytes());
    let bad = [
        ("x-github-event", "deployment_status"),
        ("x-github-delivery", "d-2"),
        ("x-hub-signature-256", forged.as_str()),
    ];
    assert_eq!(h.post("/hooks/github", &bad, body).0, 401);
    let tampered = body.replace("failure", "success");
    assert_eq!(h.post("/hooks/github", &headers, &tampered).0, 401);
    let (code, _) = h.post(
        "/hooks/github",
        &[
            ("x-github-event", "ping"),
            ("x-hub-signature-256", sig.as_str()),
        ],
        body,
    );
    assert_eq!(code, 200);
    let audited = h.wait_audited(3);
    assert_eq!(
        audited.iter().map(|(s, _)| s.as_str()).collect::<Vec<_>>(),
        ["posted", "refused", "refused"]
    );
    assert_eq!(h.seen.lock().unwrap().len(), 1);
}

#[test]
fn a_button_is_the_pressers_own_request() {
    let h = Harness::new(EVENTS);
    h.alert(&am("g-press", "firing", &[("a1", "firing")]));
    let seen = h.wait_seen(1);
    let (_, _, actions) = notice(&seen[0].2);
    let silence = &actions.iter().find(|(l, _)| l == "Silence 1h").unwrap().1;
    let press = |user: &str, roles: &[&str]| h.say("rec:ops", user, roles, silence);
    // a viewer may not silence: the policy decides, as for typed text
    let refused = press("val", &["viewer"]);
    assert!(refused.contains("you need one of the roles"), "{refused}");
    // an operator is asked to confirm the change, like any typed change
    let asked = press("olga", &["operator"]);
    assert!(
        asked.contains("alerts silence service=api duration=1h? yes / no"),
        "{asked}"
    );
}

#[test]
fn health_and_metrics_are_served() {
    let h = Harness::new(EVENTS);
    assert_eq!(h.get("/healthz"), (200, "ok\n".to_string()));
    h.alert(&am("g-metrics", "firing", &[("a1", "firing")]));
    h.wait_audited(1);
    let (code, text) = h.get("/metrics");
    assert_eq!(code, 200);
    assert!(
        text.contains("opsbot_events_received_total{source=\"alertmanager\"}"),
        "{text}"
    );
}

#[test]
fn a_hub_without_the_adapter_connected_records_the_event_undelivered() {
    let h = Harness::new(&EVENTS.replace("to = [\"rec:ops\"]", "to = [\"discord:1\"]"));
    h.alert(&am("g-nowhere", "firing", &[("a1", "firing")]));
    let audited = h.wait_audited(1);
    assert_eq!(audited[0].0, Fate::Undelivered.as_str());
}

#[test]
fn a_real_alertmanager_delivers_a_group_then_its_resolve_to_the_same_message() {
    let h = Harness::new(EVENTS);
    let Some(am) =
        crate::common::Alertmanager::start(&format!("{}/hooks/alertmanager", h.base), AM_TOKEN)
    else {
        return;
    };
    let labels = serde_json::json!({"alertname": "DiskFull", "service": "postgres",
        "env": "production", "severity": "warning"});
    let sent = std::time::Instant::now();
    h.rt.block_on(am.alert(labels.clone(), "disk 95% full on db-1", false));
    let seen = h.wait_seen(1);
    assert!(!seen.is_empty(), "Alertmanager delivered nothing");
    eprintln!("firing alert shown after {:?}", sent.elapsed());
    let (text, _, actions) = notice(&seen[0].2);
    assert!(
        text.contains("FIRING") && text.contains("disk 95% full on db-1"),
        "{text}"
    );
    assert!(actions.contains(&("Silence 1h".into(), "!alerts silence postgres 1h".into())));
    h.rt.block_on(am.alert(labels, "disk 95% full on db-1", true));
    let mut resolved = None;
    for _ in 0..100 {
        let seen = h.wait_seen(2);
        if let Some(last) = seen
            .iter()
            .skip(1)
            .find(|(_, _, r)| notice(r).0.contains("RESOLVED"))
        {
            resolved = Some(last.clone());
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let (how, id, _) = resolved.expect("the resolve arrived");
    assert_eq!((how.as_str(), id.as_str()), ("edit", "m1"));
    // the hub audits an edit once the outbox has made it, so the row may trail the edit a little
    let mut audited = h.events_audited();
    for _ in 0..200 {
        if audited.iter().any(|(s, _)| s == "edited") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
        audited = h.events_audited();
    }
    assert!(audited.iter().any(|(s, _)| s == "posted"), "{audited:?}");
    assert!(audited.iter().any(|(s, _)| s == "edited"), "{audited:?}");
}

#[test]
fn the_bots_own_changes_are_announced_wherever_they_ran() {
    let h = Harness::new(&format!(
        "{EVENTS}\n[events.announce]\nto = [\"rec:announce\"]\n"
    ));
    let say = |text: &str| h.say("rec:elsewhere", "dora", &["deployer"], text);
    // a read is not announced; a change is, once it has run
    say("!status api staging");
    say("!restart api staging");
    say("yes");
    let seen = h.wait_seen(1);
    assert_eq!(seen.len(), 1, "{seen:?}");
    let Reply::Text(text) = &seen[0].2 else {
        panic!("{seen:?}")
    };
    assert!(
        text.contains("dora ran `restart service=api env=staging`"),
        "{text}"
    );
    assert!(text.contains("in rec:elsewhere: succeeded"), "{text}");
    assert!(text.contains("confirmed by rec:dora"), "{text}");
}

#[test]
fn the_timeline_tells_the_incident_in_order_in_chat_and_on_the_command_line() {
    // the timeline intent ships in intents/optional/: a team copies it into its pack
    let pack = tempfile::tempdir().unwrap();
    crate::common::copy_intents(pack.path());
    std::fs::copy(
        crate::common::repo().join("intents/optional/timeline.toml"),
        pack.path().join("timeline.toml"),
    )
    .unwrap();
    let h = Harness::with_intents(EVENTS, pack.path());
    h.alert(&am("g-tl", "firing", &[("a1", "firing")]));
    h.wait_audited(1);
    let say = |user: &str, roles: &[&str], text: &str| h.say("rec:ops", user, roles, text);
    say("olga", &["operator"], "!restart api staging");
    say("olga", &["operator"], "yes");
    let md = say("val", &["viewer"], "!timeline 1h");
    let rows: Vec<&str> = md
        .lines()
        .filter(|l| l.trim_start().starts_with("| 20"))
        .collect();
    let at = |needle: &str| {
        rows.iter()
            .position(|r| r.contains(needle))
            .unwrap_or_else(|| panic!("no {needle:?} in {md}"))
    };
    assert!(md.contains("# Timeline"), "{md}");
    assert!(at("HighErrorRate: firing") < at("started restart service=api env=staging"));
    assert!(at("started restart") < at("restart succeeded"));
    // the same from the command line, as markdown on stdout
    let out = std::process::Command::new(crate::common::bin())
        .arg("--config")
        .arg(h.dir.path().join("opsbot.toml"))
        .args(["timeline", "--since", "10m", "--conversation", "rec:ops"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("HighErrorRate: firing") && text.contains("restart succeeded"),
        "{text}"
    );
    let bad = std::process::Command::new(crate::common::bin())
        .arg("--config")
        .arg(h.dir.path().join("opsbot.toml"))
        .args(["timeline", "--since", "last tuesday"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--since"));
}

#[test]
fn check_names_the_route_and_its_line() {
    let home = crate::common::Home::new();
    let config = home.config();
    let base = std::fs::read_to_string(&config).unwrap();
    // an action naming an intent the catalogue does not have, in the second route
    std::fs::write(
        &config,
        format!(
            "{base}\n[events]\n[[events.routes]]\nto = [\"shell\"]\n[[events.routes]]\nsource = \"alertmanager\"\nto = [\"shell\"]\nactions = [{{ label = \"Page\", intent = \"pager.page\" }}]\n[events.sources.alertmanager]\ntoken_env = \"OPSBOT_TEST_AM_TOKEN\"\n"
        ),
    )
    .unwrap();
    let route_line = base.lines().count() + 5;
    let (ok, out, _) = home.opsbot(&["check"], b"");
    assert!(!ok, "{out}");
    assert!(out.contains("the intent 'pager.page'"), "{out}");
    assert!(
        out.contains(&format!(":{route_line}")),
        "line {route_line}: {out}"
    );
    // a conversation that is not one is refused at start, with its line
    std::fs::write(
        &config,
        format!("{base}\n[events]\n[[events.routes]]\nto = [\"#ops\"]\n"),
    )
    .unwrap();
    let (ok, _, err) = home.opsbot(&["check"], b"");
    assert!(!ok);
    assert!(err.contains("is not a conversation"), "{err}");
    assert!(
        err.contains(&format!(":{}", base.lines().count() + 3)),
        "{err}"
    );
}

#[test]
fn the_shell_shows_routed_events_as_they_come() {
    use std::io::{BufRead, Write};
    std::env::set_var("OPSBOT_TEST_AM_TOKEN", AM_TOKEN);
    let port = crate::common::free_port();
    let home = crate::common::Home::with_config(&format!(
        "[events]\nlisten = \"127.0.0.1:{port}\"\n[events.sources.alertmanager]\ntoken_env = \"OPSBOT_TEST_AM_TOKEN\"\n[[events.routes]]\nto = [\"shell\"]\n"
    ));
    let mut shell = std::process::Command::new(crate::common::bin())
        .arg("--config")
        .arg(home.config())
        .args(["shell", "--role", "operator"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}/hooks/alertmanager");
    let body = am("g-shell", "firing", &[("s1", "firing")]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    // the listener is up once the shell has started
    let mut code = 0;
    for _ in 0..600 {
        code = rt.block_on(async {
            reqwest::Client::new()
                .post(&url)
                .bearer_auth(AM_TOKEN)
                .body(body.clone())
                .send()
                .await
                .map(|r| r.status().as_u16())
                .unwrap_or(0)
        });
        if code != 0 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(code, 202);
    let mut out = std::io::BufReader::new(shell.stdout.take().unwrap());
    let mut seen = String::new();
    while !seen.contains("actions:") {
        let mut line = String::new();
        if out.read_line(&mut line).unwrap() == 0 {
            break;
        }
        seen.push_str(&line);
    }
    // typing the button's line works like pressing it
    let mut stdin = shell.stdin.take().unwrap();
    stdin.write_all(b"!alerts silence api 1h\nno\n").unwrap();
    drop(stdin);
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut out, &mut rest).unwrap();
    shell.wait().unwrap();
    assert!(
        seen.contains("FIRING") && seen.contains("5xx above 5% on s1"),
        "{seen}"
    );
    assert!(
        seen.contains("Silence 1h: !alerts silence api 1h"),
        "{seen}"
    );
    assert!(
        rest.contains("alerts silence service=api duration=1h? yes / no"),
        "{rest}"
    );
}
