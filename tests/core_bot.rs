//! The core in-process: a `Bot` assembled by `app::build` with the model-free hashing embedder,
//! driven through `Bot::handle` directly. No binary, no model: each test runs in milliseconds
//! (plus the demo backend's own start-up where an action runs).

use opsbot::bot::Bot;
use opsbot::chat::{ChatEvent, ConversationId, Principal, UserId};
use std::sync::Arc;

struct Harness {
    dir: tempfile::TempDir,
    bot: Arc<Bot>,
    rt: tokio::runtime::Runtime,
}

impl Harness {
    /// A bot on the default pack; `extra` is appended to its opsbot.toml.
    fn new(extra: &str) -> Harness {
        let (dir, config) = Harness::config(extra);
        Harness::with_bot(dir, opsbot::app::build(&config).unwrap())
    }

    /// The configuration of a bot on the default pack, in a directory of its own.
    fn config(extra: &str) -> (tempfile::TempDir, opsbot::config::Config) {
        let dir = tempfile::tempdir().unwrap();
        let cfg = format!(
            "schema = 1\nintents = {:?}\nstate_dir = \"state\"\naudit_db = \"state/audit.db\"\n[nlu]\nbackend = \"hashing\"\ncache = {:?}\n{extra}\n",
            crate::common::repo().join("intents").display().to_string(),
            // shared, so the head trained on the hashed pack once serves every test
            crate::common::cache_dir().display().to_string(),
        );
        let path = dir.path().join("opsbot.toml");
        std::fs::write(&path, cfg).unwrap();
        let config = opsbot::config::Config::from_file(&path).unwrap();
        (dir, config)
    }

    fn with_bot(dir: tempfile::TempDir, bot: Bot) -> Harness {
        let bot = Arc::new(bot);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        Harness { dir, bot, rt }
    }

    /// `user` (with `roles`) says `text` in the one conversation; the replies as plain text.
    fn say(&self, user: &str, roles: &[&str], text: &str) -> String {
        let ev = ChatEvent {
            conversation: ConversationId("test:room".into()),
            principal: Principal {
                id: UserId(format!("test:{user}")),
                display_name: user.into(),
                roles: roles.iter().map(|r| r.to_string()).collect(),
            },
            text: text.into(),
        };
        let replies = self.rt.block_on(self.bot.handle(&ev));
        replies
            .iter()
            .map(|r| r.to_plain())
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// (kind, status) of every audit row, oldest first.
    fn audit(&self) -> Vec<(String, String)> {
        let audit =
            opsbot::audit::Audit::open(&self.dir.path().join("state/audit.db"), Default::default())
                .unwrap();
        audit
            .all()
            .unwrap()
            .into_iter()
            .map(|r| (r.kind, r.status))
            .collect()
    }
}

fn has(rows: &[(String, String)], kind: &str, status: &str) -> bool {
    rows.iter().any(|(k, s)| k == kind && s == status)
}

#[test]
fn a_change_is_confirmed_by_its_requester_only_then_runs_audited_first() {
    let h = Harness::new("");
    let ask = h.say("alice", &["deployer"], "!deploy api staging 2.4.1");
    assert!(
        ask.contains("deploy service=api env=staging version=2.4.1"),
        "{ask}"
    );
    assert!(ask.contains("yes / no"), "{ask}");
    // someone else's "yes" is not an answer to alice's question
    let other = h.say("bob", &["deployer"], "yes");
    assert!(!other.contains("deployed"), "{other}");
    let done = h.say("alice", &["deployer"], "yes");
    assert!(done.contains("deployed api 2.4.1 to staging"), "{done}");
    let rows = h.audit();
    let request = rows.iter().position(|r| r.0 == "request").unwrap();
    let outcome = rows.iter().position(|r| r.0 == "outcome").unwrap();
    assert!(request < outcome, "{rows:?}");
}

#[test]
fn roles_and_channels_fail_closed_and_are_audited() {
    let h = Harness::new("[policy.channels]\nrestart = [\"test:ops\"]\n");
    let no_role = h.say("mallory", &[], "!deploy api staging");
    assert!(no_role.contains("you need one of the roles"), "{no_role}");
    let wrong_room = h.say("alice", &["operator"], "!restart api staging");
    assert!(
        wrong_room.contains("restart may not run in this channel"),
        "{wrong_room}"
    );
    assert_eq!(
        h.audit().iter().filter(|r| r.0 == "denied").count(),
        2,
        "{:?}",
        h.audit()
    );
}

#[test]
fn the_rate_limit_holds_and_is_audited() {
    let h = Harness::new("[dialogs]\nrate_limit_per_minute = 2\n");
    for _ in 0..2 {
        let ok = h.say("alice", &["viewer"], "!oncall sre");
        assert!(ok.contains("oncall"), "{ok}");
    }
    let refused = h.say("alice", &["viewer"], "!oncall sre");
    assert!(refused.contains("wait a moment"), "{refused}");
    assert!(has(&h.audit(), "denied", "rate_limited"));
}

#[test]
fn refused_messages_run_nothing_and_are_audited() {
    let h = Harness::new("");
    for text in [
        "!deploy api staging \u{202E}1.2.3",
        "restart api\u{200B} in prod",
        "!runbook api \u{FF0E}\u{FF0E}\u{FF0F}etc",
        "!deploy api; rm -rf / staging",
    ] {
        let out = h.say("alice", &["admin"], text);
        assert!(out.starts_with("error:"), "{text:?}: {out}");
    }
    let rows = h.audit();
    assert!(!rows.iter().any(|r| r.0 == "request"), "{rows:?}");
    assert_eq!(
        rows.iter().filter(|r| r.0 == "rejected").count(),
        4,
        "{rows:?}"
    );
}

// regression: a did-you-mean was stored in dialogs.db without redaction, so a secret in the
// message sat on disk until the question expired
#[test]
fn a_did_you_mean_is_kept_on_disk_redacted() {
    std::env::set_var("OPSBOT_TEST_DIDYOUMEAN_SECRET", "hunter4-on-disk");
    // every plain-language message becomes a did-you-mean
    let h = Harness::new(
        "[nlu.thresholds]\naccept = 1.0\nmargin = 1.0\nsuggest = 0.0\n[actions]\nsecrets = [\"OPSBOT_TEST_DIDYOUMEAN_SECRET\"]\n",
    );
    let out = h.say(
        "alice",
        &["operator"],
        "restart api in staging, the token hunter4-on-disk leaked",
    );
    assert!(out.contains("did you mean"), "{out}");
    assert!(!out.contains("hunter4-on-disk"), "{out}");
    let mut kept = Vec::new();
    for f in std::fs::read_dir(h.dir.path().join("state")).unwrap() {
        kept.extend(std::fs::read(f.unwrap().path()).unwrap());
    }
    assert!(
        kept.windows(3).any(|w| w == b"api"),
        "the question is not on disk where it was looked for"
    );
    let secret = b"hunter4-on-disk";
    assert!(!kept.windows(secret.len()).any(|w| w == secret));
}

#[test]
fn while_the_model_learns_strict_commands_work_and_plain_language_hears_how_far_it_got() {
    let (_dir, config) = Harness::config("");
    let catalog = opsbot::catalog::load_dir(&config.intents_dir).unwrap();
    let nlu = opsbot::nlu::Nlu::learning("!");
    let strict = nlu.analyze(&catalog, "!status api");
    assert_eq!(strict.intent.as_deref(), Some("status"));
    assert!(strict.error.is_none());
    nlu.progress(1200, 5000);
    let plain = nlu.analyze(&catalog, "how is the api doing");
    assert!(
        plain.intent.is_none(),
        "nothing is guessed without the model"
    );
    let said = plain.error.unwrap();
    assert!(
        said.contains("still learning the catalogue (1200 of 5000 examples read)")
            && said.contains("strict commands work now (!help)"),
        "{said}"
    );
    // the model takes over
    let model = opsbot::app::train(&catalog, config.nlu.as_ref().unwrap()).unwrap();
    nlu.learned(Ok(model));
    let plain = nlu.analyze(&catalog, "restart the api in staging");
    assert_eq!(plain.intent.as_deref(), Some("restart"), "{plain:?}");
    // a failed learning says why, and strict commands still work
    let failed = opsbot::nlu::Nlu::learning("!");
    failed.learned(Err(anyhow::anyhow!("model.safetensors is missing")));
    let said = failed.analyze(&catalog, "restart api").error.unwrap();
    assert!(
        said.contains("could not start (model.safetensors is missing)"),
        "{said}"
    );
    assert_eq!(
        failed.analyze(&catalog, "!status").intent.as_deref(),
        Some("status")
    );
}

#[test]
fn a_serving_bot_answers_at_once_and_understands_once_its_model_has_learned() {
    let (dir, config) = Harness::config("");
    let h = Harness::with_bot(dir, opsbot::app::build_serving(&config).unwrap());
    let help = h.say("alice", &["admin"], "!help");
    assert!(
        help.contains("commands you can run here") && help.contains("!status"),
        "{help}"
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let said = h.say("alice", &["admin"], "show me the status of the api");
        if !said.contains("still learning") {
            assert!(said.contains("api"), "{said}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the model never took over: {said}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}
