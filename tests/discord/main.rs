//! End-to-end tests of the Discord adapter: `opsbot run` (the product's own start-up path, with
//! the real serenity client) against a test double of Discord on 127.0.0.1.

#[allow(dead_code)]
#[path = "../common/mod.rs"]
mod common;
mod double;

use common::Home;
use double::{Call, Double, Person, APP_ID, BOT_ID, CHANNEL, GUILD, TOKEN};
use serde_json::{json, Value};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const SRE: u64 = 700;
const RELEASE_MANAGERS: u64 = 701;

fn alice() -> Person {
    Person::new(100_000_000_000_000_001, "alice", &[SRE])
}
fn bob() -> Person {
    Person::new(100_000_000_000_000_002, "bob", &[RELEASE_MANAGERS])
}
fn mallory() -> Person {
    Person::new(100_000_000_000_000_003, "mallory", &[])
}

/// `opsbot run` against the double; killed when dropped (its log is printed on failure).
struct Running {
    child: Child,
    log: std::path::PathBuf,
    home: Home,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "--- opsbot log ---\n{}",
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
        }
    }
}

impl Running {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Kills opsbot (no clean shutdown) and starts it again on the same state.
    fn restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.child = run_opsbot(&self.home, &self.log);
    }
}

fn discord_config(d: &Double, extra: &str) -> String {
    format!(
        "[discord]\ntoken_env = \"OPSBOT_TEST_DISCORD_TOKEN\"\napi_base = \"{}\"\nguilds = [\"{GUILD}\"]\n{extra}\n[discord.roles]\n\"{SRE}\" = [\"deployer\"]\n\"Release Managers\" = [\"admin\"]\n",
        d.base
    )
}

fn spawn(home: Home) -> Running {
    let log = home.dir.path().join("opsbot.log");
    let child = run_opsbot(&home, &log);
    Running { child, log, home }
}

/// `opsbot run` with `home`'s config, its log appended to `log`.
fn run_opsbot(home: &Home, log: &std::path::Path) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    Command::new(common::bin())
        .arg("--config")
        .arg(home.config())
        .arg("run")
        .env("OPSBOT_TEST_DISCORD_TOKEN", TOKEN)
        .env("OPSBOT_LOG", "info,serenity=warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap()
}

/// A double and opsbot connected to it, with `extra` lines in `[discord]` and `config` appended.
async fn start(discord_extra: &str, config: &str) -> (Double, Running) {
    let d = Double::start().await;
    let home = Home::with_config(&format!("{config}\n{}", discord_config(&d, discord_extra)));
    let bot = spawn(home);
    d.wait_ready(1, 60).await;
    // the commands are registered right after READY; wait for it so tests start from quiet
    d.wait_call(0, 30, |c| {
        c.method == "PUT" && c.path.ends_with("/commands")
    })
    .await;
    (d, bot)
}

/// Nothing the bot sent broke Discord's limits or deadlines.
fn assert_within_limits(d: &Double) {
    let v = d.violations();
    assert!(v.is_empty(), "Discord would have refused: {v:#?}");
}

fn is_post(c: &Call) -> bool {
    c.method == "POST" && c.path == format!("/channels/{CHANNEL}/messages")
}

fn reaction(c: &Call, method: &str, emoji: &str) -> bool {
    c.method == method && c.path.contains("/reactions/") && c.path.contains(&urlencode(emoji))
}

fn urlencode(s: &str) -> String {
    s.bytes().map(|b| format!("%{b:02X}")).collect()
}

/// The custom ids of the buttons on a posted message.
fn buttons(body: &Value) -> Vec<String> {
    body["components"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|row| row["components"].as_array().cloned().unwrap_or_default())
        .filter_map(|b| b["custom_id"].as_str().map(str::to_string))
        .collect()
}

/// `who` mentions the bot with `text`; returns the question it posts (a message with buttons).
async fn question(d: &Double, who: &Person, text: &str) -> Call {
    let n = d.calls().len();
    d.say(who, &format!("<@{BOT_ID}> {text}"), true);
    d.wait_call(n, 20, |c| is_post(c) && !buttons(&c.body).is_empty())
        .await
}

/// Waits for the bot to close the question shown in message `message` (after call `skip`): the
/// message edited to say `note`, with every button disabled.
async fn closed(d: &Double, skip: usize, message: &str, note: &str) {
    let edit = d
        .wait_call(skip, 20, |c| {
            c.method == "PATCH" && c.path == format!("/channels/{CHANNEL}/messages/{message}")
        })
        .await;
    assert!(
        edit.body["content"].as_str().unwrap().contains(note),
        "{}",
        edit.body
    );
    let buttons: Vec<Value> = edit.body["components"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|row| row["components"].as_array().cloned().unwrap_or_default())
        .collect();
    assert!(
        !buttons.is_empty() && buttons.iter().all(|b| b["disabled"] == true),
        "{}",
        edit.body
    );
}

/// The bot's response to slash command `token` (filled in after deferring), after call `skip`.
async fn response(d: &Double, skip: usize, token: &str) -> Call {
    d.wait_call(skip, 20, |c| {
        c.method == "PATCH" && c.path == format!("/webhooks/{APP_ID}/{token}/messages/@original")
    })
    .await
}

/// The custom id of the button of a posted question that answers `choice`.
fn button(call: &Call, choice: &str) -> String {
    buttons(&call.body)
        .into_iter()
        .find(|i| i.ends_with(&format!(":{choice}")))
        .unwrap_or_else(|| panic!("no {choice} button on {}", call.body))
}

/// Waits for the bot to post, after call `skip`, a result that says "done".
async fn done(d: &Double, skip: usize) -> Call {
    d.wait_call(skip, 30, |c| {
        is_post(c) && c.body["content"].as_str().unwrap_or("").contains("done")
    })
    .await
}

/// The message the double stored for a POST (the newest one with this content).
fn posted_id(d: &Double, call: &Call) -> String {
    d.find_message(call.body["content"].as_str().unwrap())
}

/// The bot's answer (callback) to the interaction with `token`, once it arrives.
async fn reply_to(d: &Double, token: &str) -> Call {
    d.wait_call(0, 10, |c| {
        c.method == "POST" && c.path.ends_with(&format!("/{token}/callback"))
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mention_gets_a_reply_and_progress_reactions() {
    let (d, bot) = start("", "").await;
    // slash commands were registered for the configured guild, typed from the catalogue
    let put = d
        .wait_call(0, 5, |c| c.method == "PUT" && c.path.ends_with("/commands"))
        .await;
    assert_eq!(
        put.path,
        format!("/applications/{APP_ID}/guilds/{GUILD}/commands")
    );
    let cmds = put.body.as_array().unwrap();
    let deploy = cmds.iter().find(|c| c["name"] == "deploy").unwrap();
    let service = deploy["options"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["name"] == "service")
        .unwrap();
    assert_eq!(service["required"], true);
    assert!(service["choices"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["value"] == "api"));
    assert!(cmds.iter().any(|c| c["name"] == "alerts-ack"));
    assert!(cmds.iter().any(|c| c["name"] == "help"));

    // ambient chatter and other bots are ignored
    let n = d.calls().len();
    d.say(
        &alice(),
        "I restarted my laptop, the deploy yesterday went well",
        false,
    );
    let mut other_bot = Person::new(555, "otherbot", &[]);
    other_bot.bot = true;
    d.say(&other_bot, "<@900000000000000001> !status api", true);

    // a mention in plain language is understood and answered, with reactions for progress
    let msg = d.say(
        &alice(),
        &format!("<@{BOT_ID}> how is api doing in production?"),
        true,
    );
    let reply = d.wait_call(n, 20, is_post).await;
    let content = reply.body["content"].as_str().unwrap();
    assert!(content.contains("api"), "{content}");
    assert!(
        content.contains("```"),
        "command output goes in a code block: {content}"
    );
    assert_eq!(
        reply.body["message_reference"]["message_id"],
        msg.to_string()
    );
    assert_eq!(reply.body["allowed_mentions"]["parse"], json!([]));
    d.wait_call(n, 10, |c| reaction(c, "DELETE", "⏳")).await;
    d.wait_call(n, 10, |c| reaction(c, "PUT", "✅")).await;
    let calls = d.calls();
    assert!(calls.iter().skip(n).any(|c| reaction(c, "PUT", "⏳")));
    // regression (issue 13): the same MESSAGE_CREATE again (a gateway resume can replay it) is
    // handled once
    d.redeliver_last();
    // exactly one reply: the chatter, the other bot and the replay got nothing
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(d.calls().iter().skip(n).filter(|c| is_post(c)).count(), 1);
    // every call carried the bot token
    assert!(d
        .calls()
        .iter()
        .all(|c| c.authorization == format!("Bot {TOKEN}")));

    // the principal is the immutable Discord id, and the audit saw the request
    let audit = bot.home.audit();
    let row = audit.iter().find(|r| r["intent"] == "status").unwrap();
    assert_eq!(
        audit
            .iter()
            .filter(|r| r["intent"] == "status" && r["kind"] == "request")
            .count(),
        1
    );
    assert_eq!(row["user_id"], format!("discord:{}", alice().id));
    assert_eq!(row["conversation"], format!("discord:{CHANNEL}"));
    assert_within_limits(&d);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confirm_button_runs_and_a_stranger_is_refused() {
    let (d, bot) = start("", "").await;
    let ask = question(&d, &alice(), "!deploy api staging 2.4.1").await;
    let ids = buttons(&ask.body);
    assert_eq!(ids.len(), 2, "{}", ask.body);
    let confirm = ids
        .iter()
        .find(|i| i.ends_with(":confirm"))
        .unwrap()
        .clone();
    let message = posted_id(&d, &ask);

    // mallory may not press alice's button: a private refusal, nothing runs
    let token = d.press(&mallory(), &message, &confirm);
    let refusal = reply_to(&d, &token).await;
    assert_eq!(refusal.body["type"], 4);
    assert_eq!(
        refusal.body["data"]["flags"], 64,
        "the refusal is ephemeral"
    );
    assert!(refusal.body["data"]["content"]
        .as_str()
        .unwrap()
        .contains("only alice"));
    let ran = |bot: &Running| {
        bot.home
            .audit()
            .iter()
            .any(|r| r["intent"] == "deploy" && r["kind"] == "outcome")
    };
    assert!(!ran(&bot), "nothing ran");

    // alice presses it: the message is updated (buttons disabled), then the result is posted
    let m = d.calls().len();
    let token = d.press(&alice(), &message, &confirm);
    let update = reply_to(&d, &token).await;
    assert_eq!(update.body["type"], 7);
    let disabled: Vec<bool> = update.body["data"]["components"][0]["components"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["disabled"] == true)
        .collect();
    assert_eq!(disabled, vec![true, true]);
    let done = done(&d, m).await;
    assert!(done.body["content"].as_str().unwrap().contains("deploy"));
    let fleet = bot.home.fleet().expect("the deploy ran");
    assert_eq!(
        fleet["services"]["api"]["staging"]["version"], "2.4.1",
        "{fleet}"
    );

    // pressing again changes nothing: the question is closed
    let token = d.press(&alice(), &message, &confirm);
    let again = reply_to(&d, &token).await;
    assert_eq!(again.body["data"]["flags"], 64);
    assert!(again.body["data"]["content"]
        .as_str()
        .unwrap()
        .contains("no longer open"));
    assert_within_limits(&d);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dangerous_action_needs_a_second_person() {
    let (d, bot) = start("", "").await;
    // something to roll back to
    let n = d.calls().len();
    let ask = question(&d, &alice(), "!deploy api production 2.5.0").await;
    let confirm = button(&ask, "confirm");
    d.press(&alice(), &posted_id(&d, &ask), &confirm);
    done(&d, n).await;

    let ask = question(&d, &alice(), "roll back api in production").await;
    let approve = button(&ask, "approve");
    let message = posted_id(&d, &ask);

    // the requester cannot approve their own request
    let token = d.press(&alice(), &message, &approve);
    let refusal = reply_to(&d, &token).await;
    assert_eq!(refusal.body["data"]["flags"], 64);
    assert!(refusal.body["data"]["content"]
        .as_str()
        .unwrap()
        .contains("your own request"));
    // someone without an approver role cannot either
    let token = d.press(&mallory(), &message, &approve);
    assert_eq!(reply_to(&d, &token).await.body["data"]["flags"], 64);

    // bob holds "Release Managers", mapped by name to admin, an approver role
    let m = d.calls().len();
    let token = d.press(&bob(), &message, &approve);
    assert_eq!(reply_to(&d, &token).await.body["type"], 7);
    d.wait_call(m, 30, |c| {
        is_post(c)
            && c.body["content"]
                .as_str()
                .unwrap_or("")
                .contains("rollback")
    })
    .await;
    let audit = bot.home.audit();
    let run = audit
        .iter()
        .find(|r| r["intent"] == "rollback" && r["kind"] == "request")
        .expect("the rollback was audited before it ran");
    assert_eq!(run["user_id"], format!("discord:{}", alice().id));
    assert!(
        audit.iter().any(|r| r["intent"] == "rollback"
            && r.to_string().contains(&format!("discord:{}", bob().id))),
        "the approver is recorded: {audit:?}"
    );
    assert_within_limits(&d);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slash_commands_run_like_strict_commands() {
    let (d, bot) = start("", "").await;
    let n = d.calls().len();
    let token = d.slash(
        &alice(),
        "status",
        json!([{"name": "service", "type": 3, "value": "api"}]),
    );
    // deferred at once, then the deferred response is filled in
    assert_eq!(reply_to(&d, &token).await.body["type"], 5);
    let filled = response(&d, n, &token).await;
    assert!(
        filled.body["content"].as_str().unwrap().contains("api"),
        "{}",
        filled.body
    );

    // a change via slash command gets its confirmation buttons on the response
    let n = d.calls().len();
    let token = d.slash(
        &alice(),
        "scale",
        json!([{"name": "service", "type": 3, "value": "worker"},
               {"name": "env", "type": 3, "value": "staging"},
               {"name": "replicas", "type": 4, "value": 3}]),
    );
    let ask = response(&d, n, &token).await;
    let confirm = button(&ask, "confirm");
    let message = d.find_message(ask.body["content"].as_str().unwrap());
    d.press(&alice(), &message, &confirm);
    done(&d, n).await;
    let fleet = bot.home.fleet().unwrap();
    assert_eq!(
        fleet["services"]["worker"]["staging"]["replicas"], 3,
        "{fleet}"
    );

    // entity values can be completed as they are typed
    let token = d.autocomplete(
        &alice(),
        "deploy",
        json!([{"name": "service", "type": 3, "value": "pay", "focused": true}]),
    );
    let done = reply_to(&d, &token).await;
    assert_eq!(done.body["type"], 8);
    assert_eq!(
        done.body["data"]["choices"][0]["value"], "payments",
        "{}",
        done.body
    );

    // help, with a topic
    let n = d.calls().len();
    let token = d.slash(
        &mallory(),
        "help",
        json!([{"name": "topic", "type": 3, "value": "deploy"}]),
    );
    let help = response(&d, n, &token).await;
    assert!(
        help.body["content"]
            .as_str()
            .unwrap()
            .contains("usage: !deploy"),
        "{}",
        help.body
    );

    // a value the catalogue refuses is refused, visibly, and nothing runs
    let n = d.calls().len();
    let token = d.slash(&alice(), "deploy", json!([{"name": "service", "type": 3, "value": "api; rm -rf /"}, {"name": "env", "type": 3, "value": "staging"}]));
    let refused = response(&d, n, &token).await;
    assert!(
        refused.body["content"]
            .as_str()
            .unwrap()
            .contains("service"),
        "{}",
        refused.body
    );
    assert!(buttons(&refused.body).is_empty());
    assert_within_limits(&d);
}

/// An intent whose output is far over Discord's 2,000 characters.
const DUMP: &str = r#"schema = 1
name = "dump"
description = "print a long listing"
syntax = "dump"
risk = "read"
roles = ["viewer", "deployer"]
examples = ["dump everything", "print the long listing", "show me the whole dump", "full listing please",
  "dump it all out", "give me the full dump", "list it all", "the complete listing", "dump the numbers",
  "print everything you have", "long listing now", "the whole thing please"]

[action]
type = "exec"
argv = ["seq", "1", "1500"]
timeout = "10s"
"#;

/// An intent whose parameter has more values than Discord offers as choices.
const PING: &str = r#"schema = 1
name = "ping"
description = "check that a machine answers"
syntax = "ping <host>"
risk = "read"
roles = ["viewer", "deployer"]
examples = ["ping {host}", "is {host} up", "check {host}", "can you reach {host}", "ping the box {host}",
  "is {host} alive", "does {host} answer", "reach out to {host}", "test {host}", "probe {host}",
  "knock on {host}", "say hi to {host}"]

[[params]]
name = "host"
type = "entity"
entity = "host"
required = true
description = "the machine"

[action]
type = "exec"
argv = ["echo", "pong from {host}"]
timeout = "10s"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_output_arrives_as_an_attachment() {
    let d = Double::start().await;
    let dir = tempfile::tempdir().unwrap();
    common::copy_intents(&dir.path().join("intents"));
    std::fs::write(dir.path().join("intents/dump.toml"), DUMP).unwrap();
    std::fs::write(dir.path().join("intents/ping.toml"), PING).unwrap();
    let hosts: Vec<String> = (1..=30)
        .map(|i| format!("{{ value = \"host{i:02}\" }}"))
        .collect();
    let mut entities = std::fs::read_to_string(dir.path().join("intents/entities.toml")).unwrap();
    entities.push_str(&format!(
        "\n[[entity]]\nname = \"host\"\ndescription = \"a machine\"\nvalues = [{}]\n",
        hosts.join(", ")
    ));
    std::fs::write(dir.path().join("intents/entities.toml"), entities).unwrap();
    let config = format!(
        "schema = 1\nintents = \"intents\"\nstate_dir = \"state\"\n[nlu]\nenabled = false\n{}",
        discord_config(&d, "")
    );
    std::fs::write(dir.path().join("opsbot.toml"), config).unwrap();
    let _bot = spawn(Home { dir });
    d.wait_ready(1, 60).await;
    let n = d.calls().len();
    d.say(&alice(), &format!("<@{BOT_ID}> !dump"), true);
    let reply = d.wait_call(n, 20, is_post).await;
    let content = reply.body["content"].as_str().unwrap();
    assert!(content.chars().count() <= 2000, "{}", content.len());
    assert!(content.contains("attached"), "{content}");
    assert_eq!(reply.files.len(), 1, "{reply:?}");
    let (name, text) = &reply.files[0];
    assert_eq!(name, "output.txt");
    assert!(
        text.lines().any(|l| l.trim() == "1500"),
        "the whole output is attached"
    );

    // an entity with more values than Discord's 25 choices is offered by autocomplete
    let put = d
        .wait_call(0, 5, |c| c.method == "PUT" && c.path.ends_with("/commands"))
        .await;
    let ping = put
        .body
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "ping")
        .unwrap()
        .clone();
    assert_eq!(ping["options"][0]["autocomplete"], true, "{ping}");
    assert!(ping["options"][0]
        .get("choices")
        .is_none_or(|c| c.as_array().unwrap().is_empty()));
    let token = d.autocomplete(
        &alice(),
        "ping",
        json!([{"name": "host", "type": 3, "value": "host2", "focused": true}]),
    );
    let done = reply_to(&d, &token).await;
    let offered: Vec<&str> = done.body["data"]["choices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["value"].as_str().unwrap())
        .collect();
    assert_eq!(offered.len(), 10, "{offered:?}");
    assert!(offered.iter().all(|v| v.starts_with("host2")));

    // long output of a slash command is attached to its response too
    let n = d.calls().len();
    let token = d.slash(&alice(), "dump", json!([]));
    let filled = response(&d, n, &token).await;
    assert_eq!(filled.files.len(), 1, "{filled:?}");
    assert!(filled.body["content"].as_str().unwrap().chars().count() <= 2000);
    assert_within_limits(&d);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forced_reconnect_changes_nothing() {
    let (d, bot) = start("", "").await;
    let ask = question(&d, &alice(), "!restart worker staging").await;
    let confirm = button(&ask, "confirm");
    let message = posted_id(&d, &ask);

    d.drop_connection();
    d.wait_ready(2, 60).await;
    // READY again: no second registration, no second expiry ticker, the question still open
    tokio::time::sleep(Duration::from_millis(500)).await;
    let puts = d
        .calls()
        .iter()
        .filter(|c| c.method == "PUT" && c.path.ends_with("/commands"))
        .count();
    assert_eq!(puts, 1);
    let m = d.calls().len();
    d.press(&alice(), &message, &confirm);
    done(&d, m).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let posts = d.calls().iter().skip(m).filter(|c| is_post(c)).count();
    assert_eq!(posts, 1, "one result, not one per connection");
    let restarts = bot
        .home
        .audit()
        .iter()
        .filter(|r| r["intent"] == "restart" && r["kind"] == "outcome")
        .count();
    assert_eq!(restarts, 1);
    assert!(d.identifies() >= 2);
    assert_within_limits(&d);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_question_says_so_and_disables_its_buttons() {
    let (d, bot) = start("", "[dialogs]\nconfirm_timeout = \"1s\"").await;
    let n = d.calls().len();
    let ask = question(&d, &alice(), "!restart api staging").await;
    let message = posted_id(&d, &ask);
    closed(&d, n, &message, "expired").await;
    d.wait_call(n, 10, |c| {
        is_post(c) && c.body["content"].as_str().unwrap_or("").contains("expired")
    })
    .await;
    // a late press is refused privately and runs nothing
    let confirm = button(&ask, "confirm");
    let token = d.press(&alice(), &message, &confirm);
    assert_eq!(reply_to(&d, &token).await.body["data"]["flags"], 64);
    assert!(!bot
        .home
        .audit()
        .iter()
        .any(|r| r["intent"] == "restart" && r["kind"] == "outcome"));
    assert_within_limits(&d);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_discord_outage_loses_no_audit_record() {
    let (d, bot) = start("", "").await;
    d.fail_posts(true);
    let n = d.calls().len();
    d.say(
        &alice(),
        &format!("<@{BOT_ID}> !status api production"),
        true,
    );
    d.wait_call(n, 20, is_post).await;
    // the reply could not be delivered (after its retries); the request and its outcome are on
    // record regardless, and the message is marked as failed
    d.wait_call(n, 20, |c| reaction(c, "PUT", "❌")).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !bot.log().contains("could not send a reply to Discord") {
        assert!(
            std::time::Instant::now() < deadline,
            "no log line for the failure"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let audit = bot.home.audit();
    let kinds: Vec<&str> = audit
        .iter()
        .filter(|r| r["intent"] == "status")
        .map(|r| r["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, vec!["request", "outcome"]);
    // and the bot keeps working once Discord is back
    d.fail_posts(false);
    let n = d.calls().len();
    d.say(
        &alice(),
        &format!("<@{BOT_ID}> !status api production"),
        true,
    );
    let reply = d.wait_call(n, 20, is_post).await;
    assert!(reply.body["content"].as_str().unwrap().contains("api"));
    assert_within_limits(&d);
}

// regression (issue 13): a single 429 or 500 from Discord lost the reply for good, and the
// message still got ✅
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_reply_is_retried_and_delivered() {
    let (d, _bot) = start("", "").await;
    for rate_limited in [true, false] {
        d.fail_next_posts(1, rate_limited);
        let n = d.calls().len();
        d.say(
            &alice(),
            &format!("<@{BOT_ID}> !status api production"),
            true,
        );
        d.wait_call(n, 20, |c| reaction(c, "PUT", "✅")).await;
        let posts: Vec<Call> = d.calls().into_iter().skip(n).filter(is_post).collect();
        assert_eq!(posts.len(), 2, "one refused post, then the retry");
        assert!(!d.calls().iter().skip(n).any(|c| reaction(c, "PUT", "❌")));
    }
}

#[test]
fn run_refuses_to_start_without_a_token_or_with_a_bad_base_url() {
    let home = Home::with_config(
        "[discord]\ntoken_env = \"OPSBOT_TEST_NO_SUCH_TOKEN\"\napi_base = \"http://127.0.0.1:9\"\n",
    );
    let (ok, _, err) = home.opsbot(&["run"], b"");
    assert!(!ok);
    assert!(err.contains("OPSBOT_TEST_NO_SUCH_TOKEN"), "{err}");
    let home = Home::with_config("[discord]\napi_base = \"http://127.0.0.1:9/api\"\n");
    let (ok, _, err) = home.opsbot(&["run"], b"");
    assert!(!ok);
    assert!(err.contains("discord.api_base"), "{err}");
    let home = Home::with_config("[discord]\ntoken = \"abc\"\n");
    let (ok, _, err) = home.opsbot(&["run"], b"");
    assert!(!ok);
    assert!(err.contains("token"), "{err}");
    let home = Home::new();
    let (ok, _, err) = home.opsbot(&["run"], b"");
    assert!(!ok);
    assert!(err.contains("[discord]"), "{err}");
}

/// A post to `channel`.
fn post_to(c: &Call, channel: u64) -> bool {
    c.method == "POST" && c.path == format!("/channels/{channel}/messages")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn addressing_prefix_direct_messages_other_servers_and_bare_answers() {
    // in a direct message there are no server roles: alice's come from her user id
    let users = format!(
        "[policy.users]\n\"discord:{}\" = [\"viewer\"]\n",
        alice().id
    );
    let (d, bot) = start("", &users).await;
    // a strict command needs no mention
    let n = d.calls().len();
    d.say(&alice(), "!status api production", false);
    let reply = d.wait_call(n, 20, is_post).await;
    assert!(reply.body["content"].as_str().unwrap().contains("api"));

    // a direct message is addressed to the bot
    let dm = 123_456;
    let n = d.calls().len();
    d.say_in(&alice(), "how is api doing in production?", false, dm, None);
    let reply = d.wait_call(n, 20, |c| post_to(c, dm)).await;
    assert!(
        reply.body["content"].as_str().unwrap().contains("```"),
        "{}",
        reply.body
    );

    // regression (issue 13): with `guilds` set, a direct message from someone in none of those
    // servers is ignored
    d.not_a_member(&mallory());
    let n = d.calls().len();
    d.say_in(&mallory(), "!status api production", false, 654_321, None);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        !d.calls().iter().skip(n).any(|c| post_to(c, 654_321)),
        "a direct message from a non-member was answered"
    );

    // a server that is not configured is ignored, mention or not
    let n = d.calls().len();
    d.say_in(
        &alice(),
        &format!("<@{BOT_ID}> !status api"),
        true,
        4242,
        Some(4243),
    );

    // a bare "yes" answers the speaker's own open question without a mention; "ok" to a
    // colleague and someone else's "yes" do not
    let ask = question(&d, &alice(), "!restart worker staging").await;
    let m = d.calls().len();
    d.say(&alice(), "ok", false);
    d.say(&mallory(), "yes", false);
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(
        !d.calls().iter().skip(m).any(|c| c.method == "POST"),
        "nothing answered: {:?}",
        d.calls()
            .iter()
            .skip(m)
            .map(|c| &c.path)
            .collect::<Vec<_>>()
    );
    let question = posted_id(&d, &ask);
    d.say(&alice(), "yes", false);
    // the typed answer closed the question: its buttons are disabled
    closed(&d, m, &question, "answered").await;
    done(&d, m).await;
    assert!(
        !d.calls()
            .iter()
            .skip(n)
            .any(|c| c.path.contains("/channels/4242/")),
        "the other server got nothing"
    );
    let restarts = bot
        .home
        .audit()
        .iter()
        .filter(|r| r["intent"] == "restart" && r["kind"] == "outcome")
        .count();
    assert_eq!(restarts, 1);
    assert_within_limits(&d);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_button_never_answers_a_newer_question() {
    let (d, bot) = start("", "").await;
    let first = question(&d, &alice(), "deploy api 2.4.1 to staging").await;
    let old_confirm = button(&first, "confirm");
    let old_message = posted_id(&d, &first);
    // a correction asks again, with new buttons
    let m = d.calls().len();
    let second = question(&d, &alice(), "no, dev").await;
    assert!(
        second.body["content"].as_str().unwrap().contains("dev"),
        "{}",
        second.body
    );
    let new_confirm = button(&second, "confirm");
    assert_ne!(old_confirm, new_confirm);
    // the old button is refused
    let token = d.press(&alice(), &old_message, &old_confirm);
    assert_eq!(reply_to(&d, &token).await.body["data"]["flags"], 64);
    // a press forged from another channel finds nothing there
    let second_message = posted_id(&d, &second);
    let token = d.press_in(&alice(), &second_message, &new_confirm, 31337);
    assert_eq!(reply_to(&d, &token).await.body["data"]["flags"], 64);
    assert!(!bot
        .home
        .audit()
        .iter()
        .any(|r| r["intent"] == "deploy" && r["kind"] == "outcome"));
    // the new one works, for the corrected environment
    d.press(&alice(), &second_message, &new_confirm);
    done(&d, m).await;
    let fleet = bot.home.fleet().unwrap();
    assert_eq!(
        fleet["services"]["api"]["dev"]["version"], "2.4.1",
        "{fleet}"
    );
    assert_ne!(fleet["services"]["api"]["staging"]["version"], "2.4.1");
    assert_within_limits(&d);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_restart_open_questions_still_work_and_still_close() {
    let (d, mut bot) = start("", "[dialogs]\nconfirm_timeout = \"6s\"").await;
    let first = question(&d, &alice(), "!restart api staging").await;
    let first_message = posted_id(&d, &first);
    let second = question(&d, &bob(), "!scale worker dev 3").await;
    let n = d.calls().len();
    bot.restart();
    d.wait_ready(2, 60).await;
    // a question asked before the restart can still be answered with its button
    d.press(&bob(), &posted_id(&d, &second), &button(&second, "confirm"));
    done(&d, n).await;
    // and one left to expire still gets its buttons disabled, by the new process
    closed(&d, n, &first_message, "expired").await;
    let audit = bot.home.audit();
    assert!(!audit
        .iter()
        .any(|r| r["intent"] == "restart" && r["kind"] == "outcome"));
    assert!(audit
        .iter()
        .any(|r| r["intent"] == "scale" && r["kind"] == "outcome"));
    assert_within_limits(&d);
}

// regression (issue 13): an approval re-checked the requester's roles as they were when they
// asked; alice loses her SRE role (deployer) before bob approves, so nothing runs
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approval_checks_the_requesters_current_roles() {
    let (d, bot) = start("", "").await;
    let ask = question(&d, &alice(), "!rollback api production").await;
    let approve = button(&ask, "approve");
    let message = posted_id(&d, &ask);
    d.set_member_roles(&alice(), &[]);
    let m = d.calls().len();
    let token = d.press(&bob(), &message, &approve);
    assert_eq!(reply_to(&d, &token).await.body["type"], 7);
    let refusal = d
        .wait_call(m, 30, |c| {
            is_post(c)
                && c.body["content"]
                    .as_str()
                    .unwrap_or("")
                    .contains("you need one of the roles")
        })
        .await;
    assert!(refusal.body["content"]
        .as_str()
        .unwrap()
        .contains("rollback"));
    let audit = bot.home.audit();
    assert!(!audit
        .iter()
        .any(|r| r["intent"] == "rollback" && r["kind"] == "request"));
    assert!(audit
        .iter()
        .any(|r| r["intent"] == "rollback" && r["kind"] == "denied"));
    assert_within_limits(&d);
}

/// Users and messages in the load test; OPSBOT_LOAD_MESSAGES raises the count (the issue's
/// figure is 1,000: `OPSBOT_LOAD_MESSAGES=1000 cargo test --release --test discord load`).
fn load_messages() -> usize {
    std::env::var("OPSBOT_LOAD_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200)
}

// issue 13: under a load of many users, every addressed message is answered exactly once and no
// read is refused as busy (reads lock nothing)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_load_of_reads_from_many_users_is_answered_once_each() {
    const USERS: u64 = 50;
    let total = load_messages();
    let (d, bot) = start("", "").await;
    let people: Vec<Person> = (0..USERS)
        .map(|i| Person::new(700_000 + i, "user", &[SRE]))
        .collect();
    let channel = |i: u64| 880_000 + i;
    let n = d.calls().len();
    let mut sent = std::collections::BTreeMap::new();
    let reads = [
        "!status api production",
        "!oncall sre",
        "!logs web staging",
        "!alerts list",
        "!status payments",
    ];
    for k in 0..total {
        let i = (k as u64) % USERS;
        let text = reads[k % reads.len()];
        let id = d.say_in(&people[i as usize], text, false, channel(i), Some(GUILD));
        sent.insert(id.to_string(), channel(i));
        if k % 50 == 49 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    // wait until every message has its one reply
    let deadline = std::time::Instant::now() + Duration::from_secs(60 + total as u64 / 5);
    loop {
        let answered = d
            .calls()
            .iter()
            .skip(n)
            .filter(|c| c.method == "POST" && c.path.ends_with("/messages"))
            .count();
        if answered >= total {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{answered} of {total} messages answered"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut replies: std::collections::BTreeMap<String, usize> = Default::default();
    for c in d.calls().iter().skip(n) {
        if c.method == "POST" && c.path.ends_with("/messages") {
            let to = c.body["message_reference"]["message_id"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            assert_eq!(
                c.path,
                format!("/channels/{}/messages", sent.get(&to).copied().unwrap_or(0)),
                "a reply went to the wrong channel"
            );
            *replies.entry(to).or_default() += 1;
        }
    }
    assert_eq!(replies.len(), total, "every message answered");
    assert!(replies.values().all(|&k| k == 1), "answered exactly once");
    let audit = bot.home.audit();
    assert!(
        !audit.iter().any(|r| r["status"] == "busy"),
        "a read was refused as busy"
    );
    assert!(
        !audit.iter().any(|r| r["status"] == "rate_limited"),
        "a read was rate-limited"
    );
    assert_within_limits(&d);
}

/// Events end to end: a real Alertmanager sends to `opsbot run`'s listener; the alert appears
/// in the routed channel with the on-call role pinged and action buttons; a Silence press is
/// alice's own request (confirmed, run, audited); the resolve edits the same message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alert_from_alertmanager_is_posted_silenced_by_a_press_and_resolved_in_place() {
    const AM_TOKEN: &str = "alertmanager-token-for-tests";
    std::env::set_var("OPSBOT_TEST_AM_TOKEN", AM_TOKEN);
    let port = common::free_port();
    let events = format!(
        "[events]\nlisten = \"127.0.0.1:{port}\"\n[events.sources.alertmanager]\ntoken_env = \"OPSBOT_TEST_AM_TOKEN\"\n[[events.routes]]\nsource = \"alertmanager\"\nto = [\"discord:{CHANNEL}\"]\nmention = \"{SRE}\"\n"
    );
    let (d, bot) = start("", &events).await;
    let Some(am) = common::Alertmanager::start(
        &format!("http://127.0.0.1:{port}/hooks/alertmanager"),
        AM_TOKEN,
    ) else {
        return;
    };
    let labels = json!({"alertname": "HighErrorRate", "service": "api", "env": "production",
        "severity": "critical"});
    let n = d.calls().len();
    am.alert(labels.clone(), "5xx above 5% on api", false).await;
    let posted = d
        .wait_call(n, 30, |c| {
            is_post(c) && c.body["content"].as_str().unwrap_or("").contains("FIRING")
        })
        .await;
    let content = posted.body["content"].as_str().unwrap();
    assert!(content.starts_with(&format!("<@&{SRE}> ")), "{content}");
    assert!(content.contains("5xx above 5% on api"), "{content}");
    // the on-call role may be pinged, nobody else
    assert_eq!(
        posted.body["allowed_mentions"]["roles"],
        json!([SRE.to_string()])
    );
    let ids = buttons(&posted.body);
    let silence = "opsbot-run:!alerts silence api 1h";
    assert!(ids.iter().any(|i| i == silence), "{ids:?}");
    let message = posted_id(&d, &posted);

    // alice presses Silence 1h: acknowledged at once, then asked to confirm like typed text
    let m = d.calls().len();
    let token = d.press(&alice(), &message, silence);
    assert_eq!(reply_to(&d, &token).await.body["type"], 6);
    let ask = d
        .wait_call(m, 20, |c| is_post(c) && !buttons(&c.body).is_empty())
        .await;
    assert!(
        ask.body["content"]
            .as_str()
            .unwrap()
            .contains("alerts silence service=api duration=1h"),
        "{}",
        ask.body
    );
    let m = d.calls().len();
    d.press(&alice(), &posted_id(&d, &ask), &button(&ask, "confirm"));
    done(&d, m).await;
    let audit = bot.home.audit();
    let silenced = audit
        .iter()
        .find(|r| r["intent"] == "alerts.silence" && r["kind"] == "outcome")
        .expect("the silence ran and is audited");
    assert_eq!(silenced["user_id"], format!("discord:{}", alice().id));

    // the resolve edits the same message: resolved, no buttons, no ping
    let m = d.calls().len();
    am.alert(labels, "5xx above 5% on api", true).await;
    let edit = d
        .wait_call(m, 30, |c| {
            c.method == "PATCH" && c.path == format!("/channels/{CHANNEL}/messages/{message}")
        })
        .await;
    let content = edit.body["content"].as_str().unwrap();
    assert!(
        content.contains("RESOLVED") && !content.contains("<@&"),
        "{content}"
    );
    assert!(buttons(&edit.body).is_empty(), "{}", edit.body);
    let fates: Vec<String> = bot
        .home
        .audit()
        .iter()
        .filter(|r| r["kind"] == "event")
        .map(|r| r["status"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(fates, ["posted", "edited"]);
    assert_within_limits(&d);
}
