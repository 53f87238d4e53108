//! Scripted conversations (tests/data/dialogs/*.conv) driven through `opsbot shell`.
//!
//! Script lines: `> text` is typed (in order, with `sleep SECONDS` pauses); `< text` must appear
//! in the output, after the previous `<` match; `! text` must appear nowhere; `once: text` exactly
//! once; `restart` ends the session and starts a new one on the same state; `config: line` is
//! added to opsbot.toml; `env: NAME=value` is set for the process; `audit: KIND STATUS` must be in
//! the audit log, `noaudit: KIND` must not. Lines starting with `#` are comments.

use crate::common::{bin, Home};
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

#[derive(Default)]
struct Script {
    sessions: Vec<Vec<Step>>,
    expect: Vec<String>,
    absent: Vec<String>,
    once: Vec<String>,
    config: Vec<String>,
    env: Vec<(String, String)>,
    audit: Vec<(String, String)>,
    noaudit: Vec<String>,
}

enum Step {
    Type(String),
    Sleep(f64),
}

fn parse(src: &str) -> Script {
    let mut s = Script {
        sessions: vec![vec![]],
        ..Default::default()
    };
    for line in src.lines() {
        let line = line.trim_end();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(t) = line.strip_prefix("> ") {
            s.sessions
                .last_mut()
                .unwrap()
                .push(Step::Type(t.to_string()));
        } else if let Some(t) = line.strip_prefix("< ") {
            s.expect.push(t.to_string());
        } else if let Some(t) = line.strip_prefix("! ") {
            s.absent.push(t.to_string());
        } else if let Some(t) = line.strip_prefix("once: ") {
            s.once.push(t.to_string());
        } else if let Some(t) = line.strip_prefix("sleep ") {
            s.sessions
                .last_mut()
                .unwrap()
                .push(Step::Sleep(t.parse().unwrap()));
        } else if line == "restart" {
            s.sessions.push(vec![]);
        } else if let Some(t) = line.strip_prefix("config: ") {
            s.config.push(t.to_string());
        } else if let Some(t) = line.strip_prefix("env: ") {
            let (k, v) = t.split_once('=').unwrap();
            s.env.push((k.to_string(), v.to_string()));
        } else if let Some(t) = line.strip_prefix("audit: ") {
            let (k, v) = t.split_once(' ').unwrap();
            s.audit.push((k.to_string(), v.to_string()));
        } else if let Some(t) = line.strip_prefix("noaudit: ") {
            s.noaudit.push(t.to_string());
        } else {
            panic!("unknown script line: {line}");
        }
    }
    s
}

/// Runs one session: types the lines (pausing where told), then closes the input.
fn session(home: &Home, steps: &[Step], env: &[(String, String)]) -> String {
    let mut cmd = Command::new(bin());
    cmd.arg("--config")
        .arg(home.config())
        .arg("shell")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    for step in steps {
        match step {
            Step::Type(t) => {
                stdin.write_all(format!("{t}\n").as_bytes()).unwrap();
                stdin.flush().unwrap();
                // give the shell time to take the line before the next one, as a person would
                std::thread::sleep(Duration::from_millis(150));
            }
            Step::Sleep(s) => std::thread::sleep(Duration::from_secs_f64(*s)),
        }
    }
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "shell failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn check(name: &str) {
    let src = std::fs::read_to_string(
        crate::common::repo()
            .join("tests/data/dialogs")
            .join(format!("{name}.conv")),
    )
    .unwrap();
    let script = parse(&src);
    let home = Home::with_config(&script.config.join("\n"));
    let output: String = script
        .sessions
        .iter()
        .map(|steps| session(&home, steps, &script.env))
        .collect::<Vec<_>>()
        .join("");
    let mut rest = output.as_str();
    for want in &script.expect {
        match rest.find(want.as_str()) {
            Some(i) => rest = &rest[i + want.len()..],
            None => panic!("{name}: expected {want:?} (in order) in:\n{output}"),
        }
    }
    for no in &script.absent {
        assert!(
            !output.contains(no.as_str()),
            "{name}: {no:?} must not appear in:\n{output}"
        );
    }
    for one in &script.once {
        assert_eq!(
            output.matches(one.as_str()).count(),
            1,
            "{name}: {one:?} must appear once in:\n{output}"
        );
    }
    let rows = home.audit();
    for (kind, status) in &script.audit {
        assert!(
            rows.iter()
                .any(|r| r["kind"] == kind.as_str() && r["status"] == status.as_str()),
            "{name}: no audit row {kind} {status} in {rows:#?}"
        );
    }
    for kind in &script.noaudit {
        assert!(
            !rows.iter().any(|r| r["kind"] == kind.as_str()),
            "{name}: unexpected audit row {kind} in {rows:#?}"
        );
    }
}

#[test]
fn confirm() {
    check("confirm");
}
#[test]
fn decline() {
    check("decline");
}
#[test]
fn expire() {
    check("expire");
}
#[test]
fn correct_a_parameter() {
    check("correct");
}
#[test]
fn did_you_mean_pick() {
    check("did-you-mean");
}
#[test]
fn a_command_instead_of_a_pick_closes_the_did_you_mean() {
    check("did-you-mean-superseded");
}
#[test]
fn missing_parameter_fill() {
    check("missing");
}
#[test]
fn approval_by_an_approver() {
    check("approve");
}
#[test]
fn self_approval_refused() {
    check("self-approval");
}
#[test]
fn denial_without_the_role() {
    check("denied");
}
#[test]
fn concurrent_deploy_refused() {
    check("concurrent");
}
#[test]
fn cancel_a_running_action() {
    check("cancel");
}
#[test]
fn restart_with_a_pending_approval() {
    check("restart");
}
#[test]
fn approval_routing() {
    check("approval-routing");
}
#[test]
fn expiry_is_not_extended_by_idle_answers() {
    check("expiry-fixed");
}
