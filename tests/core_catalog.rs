//! `opsbot check` and the catalogue loader: every problem named with file and line.

use crate::common::{copy_intents, Home};
use std::fs;

fn check(dir: &std::path::Path) -> (bool, String) {
    let home = Home::new();
    let (ok, out, _) = home.opsbot(&["check", "--intents", dir.to_str().unwrap()], b"");
    (ok, out)
}

#[test]
fn the_default_pack_is_valid() {
    let (ok, out) = check(&crate::common::repo().join("intents"));
    assert!(ok, "{out}");
    assert!(out.contains("14 intents, 5 entities, all valid"), "{out}");
}

/// The line of the replaced text in the pristine file.
const AT: usize = usize::MAX;
/// Any line.
const ANY: usize = 0;

/// (file, find, replace with, expected message, expected line: a number, AT or ANY)
#[test]
fn broken_files_are_reported_with_file_and_line() {
    let cases = [
        (
            "deploy.toml",
            "risk = \"change\"",
            "risk = \"chnage\"",
            "unknown risk level 'chnage'",
            AT,
        ),
        (
            "deploy.toml",
            "entity = \"env\"",
            "entity = \"environment\"",
            "refers to unknown entity 'environment'",
            AT,
        ),
        (
            "deploy.toml",
            "\"deploy {service} to {env}\",",
            "\"deploy {service} to {envv}\",",
            "uses {envv}, which is not a parameter",
            AT,
        ),
        (
            "deploy.toml",
            "name = \"deploy\"",
            "name = \"status\"",
            "lives in a file of another name",
            AT,
        ),
        (
            "deploy.toml",
            "[action]",
            "[nothing]",
            "invalid intent file",
            AT,
        ),
        (
            "deploy.toml",
            "schema = 1",
            "schema = 7",
            "schema 7 is not supported",
            AT,
        ),
        (
            "deploy.toml",
            "examples = [",
            "examples = [[",
            "invalid intent file: invalid array; expected `]`",
            ANY,
        ),
        (
            "scale.toml",
            "max = 100",
            "max = -1",
            "needs bounds with min <= max",
            ANY,
        ),
        (
            "logs.toml",
            "default = \"15m\"",
            "default = \"soon\"",
            "bad default for parameter 'since'",
            ANY,
        ),
        (
            "entities.toml",
            "{ value = \"redis\", synonyms = [\"cache\"] },",
            "{ value = \"redis\", synonyms = [\"db\"] },",
            "'db' names both 'postgres' and 'redis'",
            AT,
        ),
    ];
    for (file, from, to, message, line) in cases {
        let tmp = tempfile::tempdir().unwrap();
        copy_intents(tmp.path());
        let path = tmp.path().join(file);
        let src = fs::read_to_string(&path).unwrap();
        assert!(src.contains(from), "{file} has no {from:?}");
        let line = if line == AT {
            src[..src.find(from).unwrap()].matches('\n').count() + 1
        } else {
            line
        };
        fs::write(&path, src.replacen(from, to, 1)).unwrap();
        let (ok, out) = check(tmp.path());
        assert!(!ok, "{file} {to:?} passed:\n{out}");
        assert!(
            out.contains(message),
            "{file} {to:?}: expected {message:?} in\n{out}"
        );
        let shown = path.canonicalize().unwrap().display().to_string();
        let located = out.lines().any(|l| {
            l.starts_with(&shown)
                && l.contains(message)
                && (line == ANY || l.starts_with(&format!("{shown}:{line}:")))
        });
        assert!(located, "{file} {to:?}: expected {shown}:{line}: in\n{out}");
        assert!(out.contains("fix: "), "{out}");
    }
}

#[test]
fn every_problem_is_reported_not_just_the_first() {
    let tmp = tempfile::tempdir().unwrap();
    copy_intents(tmp.path());
    for (file, from, to) in [
        ("deploy.toml", "risk = \"change\"", "risk = \"huge\""),
        ("restart.toml", "type = \"entity\"", "type = \"enity\""),
    ] {
        let p = tmp.path().join(file);
        let s = fs::read_to_string(&p).unwrap().replacen(from, to, 1);
        fs::write(p, s).unwrap();
    }
    let (ok, out) = check(tmp.path());
    assert!(!ok);
    assert!(
        out.contains("unknown risk level 'huge'") && out.contains("unknown type 'enity'"),
        "{out}"
    );
    assert!(out.contains("2 problem(s) found"), "{out}");
}

#[test]
fn the_bot_refuses_to_start_on_an_invalid_catalogue() {
    let tmp = tempfile::tempdir().unwrap();
    copy_intents(tmp.path());
    fs::write(tmp.path().join("broken.toml"), "this is = = not toml").unwrap();
    let cfg = tmp.path().join("opsbot.toml");
    fs::write(
        &cfg,
        format!(
            "intents = {:?}\nstate_dir = {:?}\n",
            tmp.path().display().to_string(),
            tmp.path().join("state").display().to_string()
        ),
    )
    .unwrap();
    let (ok, out, err) = crate::common::run(
        std::process::Command::new(crate::common::bin()).args([
            "--config",
            cfg.to_str().unwrap(),
            "shell",
        ]),
        b"!status\n",
    );
    assert!(!ok);
    assert!(out.is_empty(), "{out}");
    assert!(err.contains("broken.toml:1: invalid intent file"), "{err}");
}

// regression (issue 13): an example with thousands of placeholders that are not parameters gave
// one problem per placeholder, each quoting the whole example (output grew with the square)
#[test]
fn a_flood_of_bad_placeholders_is_reported_briefly() {
    let dir = tempfile::tempdir().unwrap();
    copy_intents(dir.path());
    let path = dir.path().join("status.toml");
    let flood: String = (0..20_000).map(|i| format!("{{x{}}} ", i % 3000)).collect();
    let src = fs::read_to_string(&path).unwrap().replacen(
        "examples = [",
        &format!("examples = [\n  \"{flood}\","),
        1,
    );
    fs::write(&path, src).unwrap();
    let started = std::time::Instant::now();
    let (ok, out) = check(dir.path());
    assert!(!ok);
    assert!(started.elapsed() < std::time::Duration::from_secs(20));
    assert!(out.len() < 20_000, "{} bytes of output", out.len());
    assert!(out.contains("the rest are not shown"), "{out}");
    assert!(out.contains("…"), "{out}");
}

// regression (issue 13): a control character in a TOML comment gave a problem with no reason
#[test]
fn a_control_character_in_a_comment_is_named() {
    let dir = tempfile::tempdir().unwrap();
    copy_intents(dir.path());
    let path = dir.path().join("status.toml");
    let src = fs::read_to_string(&path).unwrap().replacen(
        "schema = 1",
        "# a comment with a bell \u{7} in it\nschema = 1",
        1,
    );
    fs::write(&path, src).unwrap();
    let (ok, out) = check(dir.path());
    assert!(!ok);
    assert!(out.contains("status.toml:1: invalid"), "{out}");
    assert!(!out.contains("invalid intent file: \n"), "{out}");
    assert!(out.contains("U+0007") || out.contains("control"), "{out}");
}
