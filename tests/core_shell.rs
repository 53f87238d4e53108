//! `opsbot shell` driven as a process: replies, audit rows and the demo fleet's state.

use crate::common::Home;

#[test]
fn deploy_then_status_shows_the_new_version() {
    let home = Home::new();
    let out = home.shell("!deploy api staging 2.4.1\nyes\n!status api staging\n");
    assert!(
        out.contains("deployed api 2.4.1 to staging (was 2.4.0)"),
        "{out}"
    );
    let status = out
        .split("status service=api env=staging")
        .nth(1)
        .expect("status reply");
    assert!(
        status
            .lines()
            .any(|l| l.contains("api") && l.contains("staging") && l.contains("2.4.1")),
        "{out}"
    );
    // the state persisted between runs
    let again = home.shell("!status api staging\n");
    assert!(again.contains("2.4.1"), "{again}");
    let fleet = home.fleet().expect("fleet state");
    assert!(fleet.to_string().contains("2.4.1"));
}

#[test]
fn request_is_audited_before_the_outcome() {
    let home = Home::new();
    home.shell("!deploy api prod v2.5.0\nyes\n");
    let rows: Vec<_> = home
        .audit()
        .into_iter()
        .filter(|r| r["kind"] != "dialog")
        .collect();
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(rows[0]["kind"], "request");
    assert_eq!(rows[1]["kind"], "outcome");
    assert_eq!(rows[0]["request_id"], rows[1]["request_id"]);
    assert_eq!(rows[0]["user_id"], "shell:alice");
    assert_eq!(rows[0]["text"], "!deploy api prod v2.5.0");
    assert_eq!(
        rows[0]["params"],
        serde_json::json!({"service": "api", "env": "production", "version": "2.5.0"})
    );
    assert_eq!(rows[1]["status"], "succeeded");
    assert_eq!(rows[1]["exit_code"], 0);
    assert!(rows[0]["seq"].as_i64() < rows[1]["seq"].as_i64());
}

#[test]
fn named_and_quoted_values_and_synonyms() {
    let home = Home::new();
    let out = home.shell("!scale service=worker env=\"live\" replicas=twenty\ny\n!alerts silence billing 2h\nyes\n!logs api since=\"30 minutes\"\n");
    assert!(
        out.contains("scale service=worker env=production replicas=20: done"),
        "{out}"
    );
    assert!(
        out.contains("alerts silence service=payments duration=2h: done"),
        "{out}"
    );
    assert!(
        out.contains("logs service=api env=production since=30m: done"),
        "{out}"
    );
    let rows = home.audit();
    let silence = rows
        .iter()
        .find(|r| r["intent"] == "alerts.silence" && r["kind"] == "request")
        .unwrap();
    assert_eq!(silence["params"]["duration"], 7200);
}

#[test]
fn help_lists_commands_and_explains_one() {
    let home = Home::new();
    let out = home.shell("!help\n!help deploy\n!help deplyo\n");
    for cmd in [
        "!deploy <service> <env> [version]",
        "!alerts ack <alert>",
        "!status [service] [env]",
        "!help [command]",
    ] {
        assert!(out.contains(cmd), "missing {cmd}:\n{out}");
    }
    assert!(
        out.contains("usage: !deploy <service> <env> [version]"),
        "{out}"
    );
    assert!(
        out.contains("env (required): one of production, staging, dev"),
        "{out}"
    );
    assert!(
        out.contains("no command 'deplyo'; did you mean deploy?"),
        "{out}"
    );
}

#[test]
fn prefix_is_configurable() {
    let home = Home::with_config("[bot]\nprefix = \"/\"\n");
    let out = home.shell("/status api dev\n!status api dev\n/deplyo api\n");
    assert!(out.contains("status service=api env=dev: done"), "{out}");
    assert!(
        out.contains("unknown command 'deplyo'; did you mean /deploy <service> <env> [version]?"),
        "{out}"
    );
    // with another prefix, "!status api dev" is plain language (read-only, so it runs)
    let sources: Vec<_> = home
        .audit()
        .iter()
        .filter(|r| r["kind"] != "outcome")
        .map(|r| r["source"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(sources, ["strict", "nlu", "strict"]);
}

#[test]
fn as_switches_the_principal() {
    let home = Home::new();
    let out = home.shell("/as bob operator\n!oncall sre\n");
    assert!(
        out.contains("now speaking as shell:bob (roles operator)"),
        "{out}"
    );
    let rows = home.audit();
    assert_eq!(rows[0]["user_id"], "shell:bob");
}

/// Each hostile or malformed input: refused with a clear message, nothing executed, audited.
#[test]
fn bad_input_is_rejected_audited_and_never_executed() {
    let long = format!("!status {}", "a".repeat(100_000));
    let cases: Vec<(String, &str)> = vec![
        ("!deploy api \"prod; rm -rf /\"".into(), "unknown env 'prod; rm -rf /'"),
        ("!deploy api staging `reboot`".into(), "version must be a version"),
        ("!deploy api staging $(touch /tmp/pwned)".into(), "version must be a version"),
        ("!deploy api staging --force".into(), "version must be a version"),
        ("!deploy -rf staging".into(), "unknown service '-rf'"),
        ("!runbook ../../etc/passwd".into(), "topic must not contain '../'"),
        ("!runbook --help".into(), "topic must not start with '-'"),
        ("!deploy api stagnig".into(), "unknown env 'stagnig' (expected one of: production, staging, dev); did you mean 'staging'?"),
        ("!deploy api staging\u{0} 1.0.0".into(), "control characters"),
        ("!status api\u{1b}[31m".into(), "control characters"),
        (long, "message too long (100008 bytes; the limit is 4000)"),
        ("!deploy api \"staging".into(), "unbalanced quotes"),
        ("!scale api dev 101".into(), "replicas must be between 0 and 100, got 101"),
        ("!deploy api".into(), "missing env"),
        ("!restart api dev extra".into(), "too many values: 'extra' is left over"),
        ("!frobnicate".into(), "unknown command 'frobnicate'"),
    ];
    for (input, expected) in cases {
        let home = Home::new();
        let out = home.shell(&format!("{input}\n"));
        assert!(
            out.starts_with("error: "),
            "{input:?} was not refused:\n{out}"
        );
        assert!(
            out.contains(expected),
            "{input:?}: expected {expected:?} in:\n{out}"
        );
        let rows = home.audit();
        assert_eq!(rows.len(), 1, "{input:?}: {rows:?}");
        assert_eq!(rows[0]["kind"], "rejected", "{input:?}");
        assert!(
            rows[0]["detail"]
                .as_str()
                .unwrap()
                .contains(expected.split(';').next().unwrap()),
            "{input:?}: {rows:?}"
        );
        assert!(home.fleet().is_none(), "{input:?} ran an action");
    }
}

#[test]
fn audited_text_is_bounded_and_control_characters_visible() {
    let home = Home::new();
    home.shell(&format!(
        "!status {}\n!status a\u{7}b\n",
        "x".repeat(100_000)
    ));
    let rows = home.audit();
    assert!(rows[0]["text"].as_str().unwrap().len() < 2200);
    assert!(rows[0]["text"]
        .as_str()
        .unwrap()
        .ends_with("[100008 bytes in all]"));
    assert_eq!(rows[1]["text"], "!status a\\u{7}b");
}

#[test]
fn a_failing_action_reports_its_exit_code() {
    let home = Home::new();
    let out = home.shell("!alerts ack 1\nyes\n");
    assert!(
        out.contains("alerts ack alert=1: failed with exit code 1"),
        "{out}"
    );
    assert!(out.contains("no alert #1"), "{out}");
    let rows = home.audit();
    let outcome = rows.iter().find(|r| r["kind"] == "outcome").unwrap();
    assert_eq!(outcome["status"], "failed");
    assert_eq!(outcome["exit_code"], 1);
}

#[test]
fn secrets_are_redacted_from_replies_and_audit() {
    let home = Home::with_config("[actions]\nsecrets = [\"OPSBOT_TEST_SECRET\"]\n");
    let (ok, out, _) = crate::common::run(
        std::process::Command::new(crate::common::bin())
            .env("OPSBOT_TEST_SECRET", "hunter2-sekrit")
            .args([
                "--config",
                home.config().to_str().unwrap(),
                "shell",
                "--role",
                "admin",
            ]),
        b"!runbook hunter2-sekrit\n!incident open the token hunter2-sekrit leaked\nyes\n",
    );
    assert!(ok);
    assert!(!out.contains("hunter2-sekrit"), "{out}");
    assert!(out.contains("[redacted]"), "{out}");
    let dump = serde_json::to_string(&home.audit()).unwrap();
    assert!(!dump.contains("hunter2-sekrit"), "{dump}");
}

// regression (issue 13): kill -9 of the bot mid-action left an orphan that outlived its timeout,
// and nothing recorded the request's end
#[test]
fn kill_9_mid_action_leaves_no_orphan_and_an_interrupted_outcome() {
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;
    let home = home_with_own_intents();
    let intents = home.dir.path().join("intents");
    // restart runs a script that starts a long child, then marks that it finished
    let slow = intents.join("backend/slow");
    std::fs::write(
        &slow,
        "#!/bin/sh\nsleep 30 &\nwait\ntouch \"$OPSBOT_STATE_DIR/finished\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&slow, std::fs::Permissions::from_mode(0o755)).unwrap();
    let restart = intents.join("restart.toml");
    let toml = std::fs::read_to_string(&restart).unwrap().replace(
        "argv = [\"./backend/opsbot-demo\", \"restart\", \"--service={service}\", \"--env={env}\"]\ntimeout = \"30s\"",
        "argv = [\"./backend/slow\", \"{service}\", \"{env}\"]\ntimeout = \"60s\"",
    );
    assert!(toml.contains("./backend/slow"));
    std::fs::write(&restart, toml).unwrap();

    let mut bot = std::process::Command::new(crate::common::bin())
        .args([
            "--config",
            home.config().to_str().unwrap(),
            "shell",
            "--user",
            "alice",
            "--role",
            "admin",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = bot.stdin.take().unwrap();
    stdin.write_all(b"!restart api staging\nyes\n").unwrap();
    let running = home.state().join("running");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    // the record of the slow action (the preview probe before it leaves one for a moment too)
    let pgid: i32 = loop {
        let found = std::fs::read_dir(&running)
            .into_iter()
            .flatten()
            .flatten()
            .find_map(|e| {
                let pgid: i32 = std::fs::read_to_string(e.path())
                    .ok()?
                    .split_whitespace()
                    .next()?
                    .parse()
                    .ok()?;
                let cmd = std::fs::read(format!("/proc/{pgid}/cmdline")).ok()?;
                String::from_utf8_lossy(&cmd)
                    .contains("backend/slow")
                    .then_some(pgid)
            });
        if let Some(pgid) = found {
            break pgid;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the action never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    std::thread::sleep(std::time::Duration::from_millis(300));
    // a second opsbot on the same state directory leaves the first one's action alone, and
    // sees its lock: the same target is refused there, naming who holds it
    let (ok, out, err) = home.opsbot(
        &["shell", "--user", "bob", "--role", "admin"],
        b"!restart api staging\nyes\n",
    );
    assert!(ok, "{err}");
    assert!(
        out.contains("is already running for the same target (started by shell:alice"),
        "{out}"
    );
    assert!(
        std::fs::read_dir(&running).unwrap().count() > 0,
        "the second process took a live action for an orphan"
    );
    assert!(!home.audit().iter().any(|r| r["kind"] == "outcome"));
    bot.kill().unwrap(); // SIGKILL
    bot.wait().unwrap();
    drop(stdin);
    // a live (not zombie) process in the action's group
    let alive = || {
        std::fs::read_dir("/proc").unwrap().flatten().any(|e| {
            let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
                return false;
            };
            let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
                return false;
            };
            let fields: Vec<&str> = rest.split_whitespace().collect();
            fields.first() != Some(&"Z") && fields.get(2) == Some(&pgid.to_string().as_str())
        })
    };
    assert!(alive(), "the action's sleeping child should still be there");
    // the start-up of the next run kills what is left of the group
    let (ok, out, err) = home.opsbot(&["shell", "--user", "alice"], b"");
    assert!(ok, "{err}");
    assert!(
        out.contains("restart service=api env=staging was interrupted"),
        "{out}"
    );
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert!(!alive(), "the action's process group outlived the bot");
    assert!(!home.state().join("finished").exists());
    let rows = home.audit();
    let outcome = rows
        .iter()
        .find(|r| r["kind"] == "outcome" && r["intent"] == "restart")
        .expect("an outcome for the interrupted request");
    assert_eq!(outcome["status"], "interrupted", "{outcome}");
    // and only once: a later start finds nothing left to settle
    let (ok, _, _) = home.opsbot(&["shell", "--user", "alice"], b"");
    assert!(ok);
    let outcomes = home
        .audit()
        .iter()
        .filter(|r| r["kind"] == "outcome")
        .count();
    assert_eq!(outcomes, 1);
    // and its target was freed then, not when the dead process's lease ran out
    let (ok, out, err) = home.opsbot(
        &["shell", "--user", "bob", "--role", "admin"],
        b"!scale api staging 2\nyes\n",
    );
    assert!(ok, "{err}");
    assert!(out.contains("done"), "{out}");
}

// regression (issue 13): a misspelt or differently cased intent in [policy.channels] silently
// dropped the restriction
#[test]
fn policy_channels_fail_closed() {
    let home = Home::with_config("[policy.channels]\nrollbak = [\"shell:ops\"]\n");
    let (ok, out, _) = home.opsbot(&["check"], b"");
    assert!(!ok, "{out}");
    assert!(
        out.contains("'rollbak' is not an intent of the catalogue; did you mean 'rollback'?"),
        "{out}"
    );
    let (ok, _, err) = home.opsbot(&["shell"], b"!status\n");
    assert!(!ok);
    assert!(err.contains("'rollbak' is not an intent"), "{err}");
    // a name in another case is the same intent, and its restriction holds
    let home = Home::with_config("[policy.channels]\nDeploy = [\"shell:ops\"]\n");
    let (ok, out, _) = home.opsbot(&["check"], b"");
    assert!(ok, "{out}");
    let out = home.shell("!deploy api staging 2.4.1\n");
    assert!(out.contains("deploy may not run in this channel"), "{out}");
}

/// A home whose config points at its own copy of the intent pack (for tests that change it).
fn home_with_own_intents() -> Home {
    let home = Home::new();
    crate::common::copy_intents(&home.dir.path().join("intents"));
    let cfg = std::fs::read_to_string(home.config()).unwrap().replace(
        &format!(
            "intents = {:?}",
            crate::common::repo().join("intents").display().to_string()
        ),
        "intents = \"intents\"",
    );
    std::fs::write(home.config(), cfg).unwrap();
    home
}

// issue 9: a refused message followed by a request that ran becomes a candidate example, which
// an admin accepts into the intent's file (or drops); nothing is learned without that review
#[test]
fn examples_are_learned_from_use_only_after_review() {
    let home = home_with_own_intents();
    home.shell(
        "make the frontend go brrr\n!status web staging\nzap the queue thing\n!status worker\n",
    );
    let (ok, out, err) = home.opsbot(&["examples", "list", "--json"], b"");
    assert!(ok, "{err}");
    let found: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(found.len(), 2, "{out}");
    assert_eq!(found[0]["text"], "make the frontend go brrr");
    assert_eq!(found[0]["intent"], "status");
    assert_eq!(found[0]["how"], "rephrased");
    let status = home.dir.path().join("intents/status.toml");
    let before = std::fs::read_to_string(&status).unwrap();
    assert!(!before.contains("brrr"));
    let id = |i: usize| found[i]["id"].as_str().unwrap().to_string();
    let (ok, out, err) = home.opsbot(&["examples", "accept", &id(0)], b"");
    assert!(ok, "{err}");
    assert!(
        out.contains("added \"make the frontend go brrr\" to the examples of status"),
        "{out}"
    );
    let (ok, _, err) = home.opsbot(&["examples", "drop", &id(1)], b"");
    assert!(ok, "{err}");
    let after = std::fs::read_to_string(&status).unwrap();
    assert!(
        after.contains("  \"make the frontend go brrr\",\n]"),
        "{after}"
    );
    let (ok, out, _) = home.opsbot(&["check"], b"");
    assert!(ok, "{out}");
    // reviewed candidates are not offered again; an unknown id is a clear error
    let (ok, out, _) = home.opsbot(&["examples"], b"");
    assert!(ok);
    assert!(out.contains("0 candidate(s)"), "{out}");
    let (ok, _, err) = home.opsbot(&["examples", "accept", "ffff"], b"");
    assert!(!ok);
    assert!(err.contains("no candidate example with id ffff"), "{err}");
}
