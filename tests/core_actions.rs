//! Actions against real processes and a real local HTTP listener.

use opsbot::actions::{execute, Context, Redactor, Runtime, Status};
use opsbot::catalog::{Action, ExecSpec, HttpSpec, Params, Template, Value};
use std::time::{Duration, Instant};

fn rt(dir: &std::path::Path) -> Runtime {
    Runtime {
        state_dir: dir.to_path_buf(),
        env_allow: vec!["PATH".into()],
        output_limit: 1000,
    }
}

fn script(dir: &std::path::Path, body: &str) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let p = dir.join("action.sh");
    std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p
}

fn exec(program: std::path::PathBuf, args: &[&str], timeout: Duration) -> Action {
    Action::Exec(ExecSpec {
        workdir: program.parent().unwrap().to_path_buf(),
        program,
        args: args.iter().map(|a| Template(a.to_string())).collect(),
        timeout,
        env: vec![],
        secrets: vec![],
    })
}

/// Runs `action` with `params` in `dir`, as an anonymous request with no secrets and no cancel.
fn run(
    action: &Action,
    params: &Params,
    dir: &std::path::Path,
) -> Result<opsbot::actions::Outcome, opsbot::actions::Error> {
    block(execute(
        action,
        params,
        &rt(dir),
        &Context::default(),
        &Redactor::default(),
        None,
    ))
}

fn block<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

#[test]
fn values_are_whole_argv_elements_and_absent_optionals_are_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let prog = script(
        dir.path(),
        "for a in \"$@\"; do printf '[%s]\\n' \"$a\"; done",
    );
    let action = exec(
        prog,
        &["--title={title}", "{service}", "--version={version}"],
        Duration::from_secs(5),
    );
    let mut params = Params::new();
    params.insert("title".into(), Value::Text("a b; rm -rf / $(x) `y`".into()));
    params.insert("service".into(), Value::Entity("api".into()));
    let out = run(&action, &params, dir.path()).unwrap();
    assert_eq!(out.status, Status::Succeeded);
    assert_eq!(out.output, "[--title=a b; rm -rf / $(x) `y`]\n[api]\n");
}

#[test]
fn environment_is_cleared_to_the_allow_list() {
    let dir = tempfile::tempdir().unwrap();
    let prog = script(dir.path(), "env | sort");
    std::env::set_var("OPSBOT_TEST_LEAK", "should-not-pass");
    let out = block(execute(
        &exec(prog, &[], Duration::from_secs(5)),
        &Params::new(),
        &rt(dir.path()),
        &Context {
            request_id: "r1".into(),
            user_id: "shell:a".into(),
        },
        &Redactor::default(),
        None,
    ))
    .unwrap();
    assert!(!out.output.contains("OPSBOT_TEST_LEAK"), "{}", out.output);
    assert!(
        out.output.contains("OPSBOT_REQUEST_ID=r1")
            && out.output.contains("OPSBOT_USER=shell:a")
            && out.output.contains("PATH="),
        "{}",
        out.output
    );
}

#[test]
fn timeout_kills_the_whole_process_group() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("grandchild.pid");
    let prog = script(
        dir.path(),
        &format!("sleep 30 & echo $! > {}\nsleep 30", marker.display()),
    );
    let started = Instant::now();
    let out = run(
        &exec(prog, &[], Duration::from_secs(1)),
        &Params::new(),
        dir.path(),
    )
    .unwrap();
    assert_eq!(out.status, Status::TimedOut);
    assert!(started.elapsed() < Duration::from_secs(10));
    let pid: i32 = std::fs::read_to_string(&marker)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    // the background grandchild is gone too (kill -0 fails, or it is a zombie awaiting its reaper)
    let alive = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| !s.contains(") Z"))
        .unwrap_or(false);
    assert!(!alive, "grandchild {pid} survived the timeout");
}

#[test]
fn cancel_kills_a_running_action() {
    let dir = tempfile::tempdir().unwrap();
    let prog = script(dir.path(), "sleep 30");
    let (tx, rx) = tokio::sync::oneshot::channel();
    let out = block(async {
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let _ = tx.send(());
        });
        execute(
            &exec(prog, &[], Duration::from_secs(20)),
            &Params::new(),
            &rt(dir.path()),
            &Context::default(),
            &Redactor::default(),
            Some(rx),
        )
        .await
    })
    .unwrap();
    assert_eq!(out.status, Status::Cancelled);
    assert!(out.duration < Duration::from_secs(5));
}

#[test]
fn output_is_capped() {
    let dir = tempfile::tempdir().unwrap();
    let prog = script(dir.path(), "yes abcdefgh | head -c 1000000");
    let out = run(
        &exec(prog, &[], Duration::from_secs(10)),
        &Params::new(),
        dir.path(),
    )
    .unwrap();
    assert_eq!(out.status, Status::Succeeded);
    assert!(out.truncated);
    assert!(out.output.len() <= 1000);
}

#[test]
fn a_missing_program_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let err = run(
        &exec(dir.path().join("nope"), &[], Duration::from_secs(1)),
        &Params::new(),
        dir.path(),
    )
    .unwrap_err();
    assert!(err.to_string().starts_with("could not start"), "{err}");
}

#[test]
fn http_action_encodes_values_types_the_body_and_sends_secrets() {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut req = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let n = s.read(&mut buf).unwrap();
            req.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&req);
            if let Some(i) = text.find("\r\n\r\n") {
                let len: usize = text
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length: ")
                            .map(|v| v.trim().parse().unwrap())
                    })
                    .unwrap_or(0);
                if req.len() >= i + 4 + len {
                    break;
                }
            }
        }
        s.write_all(b"HTTP/1.1 202 Accepted\r\ncontent-length: 11\r\nconnection: close\r\n\r\nqueued ok\r\n").unwrap();
        String::from_utf8_lossy(&req).into_owned()
    });
    std::env::set_var("OPSBOT_TEST_HTTP_TOKEN", "tok-123456");
    let action = Action::Http(HttpSpec {
        method: "POST".into(),
        url: Template(format!(
            "http://127.0.0.1:{port}/silence/{{service}}?note={{note}}"
        )),
        headers: vec![(
            "authorization".into(),
            Template("Bearer ${OPSBOT_TEST_HTTP_TOKEN}".into()),
        )],
        body: Some(
            serde_json::json!({"service": "{service}", "seconds": "{duration}", "comment": "by opsbot: {note}", "absent": "{version}"}),
        ),
        expect_status: vec![202],
        timeout: Duration::from_secs(5),
        secrets: vec!["OPSBOT_TEST_HTTP_TOKEN".into()],
    });
    let mut params = Params::new();
    params.insert("service".into(), Value::Entity("api".into()));
    params.insert("duration".into(), Value::Duration(7200));
    params.insert("note".into(), Value::Text("a&b c/../x".into()));
    let redactor = Redactor::from_env(&["OPSBOT_TEST_HTTP_TOKEN".to_string()]);
    let out = block(execute(
        &action,
        &params,
        &rt(std::path::Path::new("/tmp")),
        &Context::default(),
        &redactor,
        None,
    ))
    .unwrap();
    let req = server.join().unwrap();
    assert_eq!(out.status, Status::Succeeded, "{req}");
    assert_eq!(out.exit_code, Some(202));
    assert!(
        req.starts_with("POST /silence/api?note=a%26b+c%2F..%2Fx HTTP/1.1"),
        "{req}"
    );
    assert!(
        req.to_ascii_lowercase()
            .contains("authorization: bearer tok-123456"),
        "{req}"
    );
    let body: serde_json::Value =
        serde_json::from_str(req.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    assert_eq!(
        body,
        serde_json::json!({"service": "api", "seconds": 7200, "comment": "by opsbot: a&b c/../x"})
    );
}

#[test]
fn http_action_to_a_dead_backend_is_a_clear_error() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port(); // closed again at once
    let action = Action::Http(HttpSpec {
        method: "GET".into(),
        url: Template(format!("http://127.0.0.1:{port}/x")),
        headers: vec![],
        body: None,
        expect_status: vec![200],
        timeout: Duration::from_secs(2),
        secrets: vec![],
    });
    let err = run(&action, &Params::new(), std::path::Path::new("/tmp")).unwrap_err();
    assert!(err.to_string().starts_with("http request failed"), "{err}");
}

/// A one-shot HTTP server on 127.0.0.1 that answers the first request with `response` and
/// returns what it received (or `None` if nobody came within `wait`).
fn one_shot(response: Vec<u8>, wait: Duration) -> (u16, std::thread::JoinHandle<Option<String>>) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    listener.set_nonblocking(true).unwrap();
    let handle = std::thread::spawn(move || {
        let deadline = Instant::now() + wait;
        let mut s = loop {
            match listener.accept() {
                Ok((s, _)) => break s,
                Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                Err(_) => return None,
            }
        };
        s.set_nonblocking(false).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = [0u8; 8192];
        let n = s.read(&mut buf).unwrap_or(0);
        let _ = s.write_all(&response);
        Some(String::from_utf8_lossy(&buf[..n]).into_owned())
    });
    (port, handle)
}

fn http_get(url: String, secret_header: bool) -> Action {
    Action::Http(HttpSpec {
        method: "GET".into(),
        url: Template(url),
        headers: if secret_header {
            vec![(
                "x-api-key".into(),
                Template("${OPSBOT_TEST_REDIRECT_KEY}".into()),
            )]
        } else {
            vec![]
        },
        body: None,
        expect_status: vec![200],
        timeout: Duration::from_secs(5),
        secrets: if secret_header {
            vec!["OPSBOT_TEST_REDIRECT_KEY".into()]
        } else {
            vec![]
        },
    })
}

// regression (issue 13): a redirect to another host received the ${SECRET} headers
#[test]
fn http_redirects_off_the_configured_origin_are_not_followed() {
    std::env::set_var("OPSBOT_TEST_REDIRECT_KEY", "key-abcdef");
    let (other, elsewhere) = one_shot(
        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok".to_vec(),
        Duration::from_secs(2),
    );
    let (port, origin) = one_shot(
        format!("HTTP/1.1 302 Found\r\nlocation: http://127.0.0.1:{other}/steal\r\ncontent-length: 0\r\nconnection: close\r\n\r\n").into_bytes(),
        Duration::from_secs(5),
    );
    let out = run(
        &http_get(format!("http://127.0.0.1:{port}/x"), true),
        &Params::new(),
        std::path::Path::new("/tmp"),
    )
    .unwrap();
    assert!(origin.join().unwrap().unwrap().contains("key-abcdef"));
    assert_eq!(elsewhere.join().unwrap(), None, "the redirect was followed");
    assert_eq!(out.status, Status::Failed);
    assert_eq!(out.exit_code, Some(302));
}

// regression (issue 13): a 300 MB response body was read whole into memory
#[test]
fn http_bodies_are_read_with_a_cap() {
    let size = 64 * 1024 * 1024;
    let mut response =
        format!("HTTP/1.1 200 OK\r\ncontent-length: {size}\r\nconnection: close\r\n\r\n")
            .into_bytes();
    response.extend(std::iter::repeat_n(b'x', size));
    let (port, server) = one_shot(response, Duration::from_secs(5));
    let started = Instant::now();
    let out = run(
        &http_get(format!("http://127.0.0.1:{port}/big"), false),
        &Params::new(),
        std::path::Path::new("/tmp"),
    )
    .unwrap();
    assert_eq!(out.status, Status::Succeeded);
    assert!(out.truncated);
    assert!(out.output.len() <= 1000, "{}", out.output.len());
    assert!(started.elapsed() < Duration::from_secs(5));
    drop(server);
}

// regression (issue 13): the demo backend crashed with a traceback on a fleet.json that parses
// but lacks `services`
#[test]
fn the_demo_backend_names_a_broken_fleet_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("fleet.json"), "{\"schema\": 1}").unwrap();
    let out = std::process::Command::new(crate::common::repo().join("intents/backend/opsbot-demo"))
        .args(["status", "--service=api"])
        .env("OPSBOT_STATE_DIR", dir.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(!err.contains("Traceback"), "{err}");
    assert!(err.contains("lacks a valid 'services'"), "{err}");
}

// regression (issue 13): an action whose program cannot start gave no reason in chat
#[test]
fn a_program_that_cannot_start_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("not-executable");
    std::fs::write(&p, "#!/bin/sh\necho hi\n").unwrap();
    let err = run(
        &exec(p.clone(), &[], Duration::from_secs(5)),
        &Params::new(),
        dir.path(),
    )
    .unwrap_err();
    assert!(matches!(err, opsbot::actions::Error::Spawn { .. }), "{err}");
    assert!(err.to_string().contains("ermission denied"), "{err}");
}
