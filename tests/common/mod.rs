//! Shared helpers: a throw-away opsbot home (config, state, audit) and a way to drive
//! `opsbot shell` as a process with piped input.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_opsbot"))
}

/// A temporary opsbot installation using the repository's intent pack.
pub struct Home {
    pub dir: tempfile::TempDir,
}

impl Home {
    pub fn new() -> Home {
        Self::with_config("")
    }

    /// `extra` is appended to the generated opsbot.toml (it may add tables, not [nlu]).
    pub fn with_config(extra: &str) -> Home {
        warm_cache();
        let dir = tempfile::tempdir().unwrap();
        let cfg = format!(
            "schema = 1\nintents = {:?}\nstate_dir = \"state\"\naudit_db = \"state/audit.db\"\n[nlu]\nmodel = {:?}\ncache = {:?}\n{extra}\n",
            repo().join("intents").display().to_string(),
            repo().join("models/all-MiniLM-L6-v2").display().to_string(),
            cache_dir().display().to_string(),
        );
        std::fs::write(dir.path().join("opsbot.toml"), cfg).unwrap();
        Home { dir }
    }

    pub fn config(&self) -> PathBuf {
        self.dir.path().join("opsbot.toml")
    }

    pub fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// Runs `opsbot <args>` with this home's config; returns (exit ok, stdout, stderr).
    pub fn opsbot(&self, args: &[&str], stdin: &[u8]) -> (bool, String, String) {
        run(
            Command::new(bin())
                .arg("--config")
                .arg(self.config())
                .args(args),
            stdin,
        )
    }

    /// Pipes `input` into `opsbot shell` and returns what it printed.
    pub fn shell(&self, input: &str) -> String {
        let (ok, out, err) = self.opsbot(
            &["shell", "--user", "alice", "--role", "admin"],
            input.as_bytes(),
        );
        assert!(ok, "opsbot shell failed:\n{err}");
        out
    }

    /// The audit rows, oldest first.
    pub fn audit(&self) -> Vec<serde_json::Value> {
        let (ok, out, err) = self.opsbot(&["audit", "--json", "--limit", "1000"], b"");
        assert!(ok, "opsbot audit failed:\n{err}");
        out.lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// The demo fleet's state file, if any action created it.
    pub fn fleet(&self) -> Option<serde_json::Value> {
        let p = self.state().join("fleet.json");
        std::fs::read_to_string(p)
            .ok()
            .map(|s| serde_json::from_str(&s).unwrap())
    }
}

/// The embedding and classifier cache shared by every test (kept under target/).
pub fn cache_dir() -> PathBuf {
    repo().join("target/test-cache")
}

/// Trains the default pack's classifier once per test run, in this process, so that the many
/// `opsbot` processes the tests start all find a warm cache instead of racing to fill it.
pub fn warm_cache() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let catalog = opsbot::catalog::load_dir(&repo().join("intents")).unwrap();
        let config = opsbot::config::Config::from_file(&repo().join("opsbot.toml")).unwrap();
        let mut settings = config.nlu.unwrap();
        settings.cache_dir = Some(cache_dir());
        opsbot::app::train(&catalog, &settings).unwrap();
    });
}

pub fn run(cmd: &mut Command, stdin: &[u8]) -> (bool, String, String) {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    let data = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&data);
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Copies the repository's intent pack into `dest` (to break a copy on purpose).
pub fn copy_intents(dest: &Path) {
    copy_dir(&repo().join("intents"), dest);
}

fn copy_dir(src: &Path, dest: &Path) {
    std::fs::create_dir_all(dest).unwrap();
    for e in std::fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        let to = dest.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to);
        } else {
            std::fs::copy(e.path(), &to).unwrap();
        }
    }
}

/// A free port on 127.0.0.1 (bound and released; a race with another process is unlikely).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A real Alertmanager (Debian's `prometheus-alertmanager`, installed by `.ci/run`) on
/// 127.0.0.1, with one webhook receiver pointing at opsbot and short group timings. Killed when
/// dropped.
pub struct Alertmanager {
    child: std::process::Child,
    pub base: String,
    _dir: tempfile::TempDir,
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const ALERTMANAGER: &str = "/usr/bin/prometheus-alertmanager";

impl Alertmanager {
    /// Started and ready; `None` when it is not installed and `OPSBOT_REQUIRE_ALERTMANAGER` is
    /// not set (CI sets it, so there a missing Alertmanager fails the test).
    pub fn start(webhook: &str, token: &str) -> Option<Alertmanager> {
        if !Path::new(ALERTMANAGER).exists() {
            assert!(
                std::env::var_os("OPSBOT_REQUIRE_ALERTMANAGER").is_none(),
                "{ALERTMANAGER} is missing (apt-get install prometheus-alertmanager)"
            );
            eprintln!("skipped: {ALERTMANAGER} is not installed");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let config = format!(
            "route:\n  receiver: opsbot\n  group_by: ['alertname', 'service']\n  group_wait: 1s\n  group_interval: 1s\n  repeat_interval: 1h\nreceivers:\n  - name: opsbot\n    webhook_configs:\n      - url: {webhook}\n        send_resolved: true\n        http_config:\n          authorization:\n            type: Bearer\n            credentials: {token}\n"
        );
        std::fs::write(dir.path().join("am.yml"), config).unwrap();
        let port = free_port();
        let log = std::fs::File::create(dir.path().join("am.log")).unwrap();
        let child = Command::new(ALERTMANAGER)
            .arg(format!(
                "--config.file={}",
                dir.path().join("am.yml").display()
            ))
            .arg(format!(
                "--storage.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--cluster.listen-address=")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let am = Alertmanager {
            child,
            base: format!("http://127.0.0.1:{port}"),
            _dir: dir,
        };
        for _ in 0..300 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Some(am);
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!(
            "Alertmanager did not start: {}",
            std::fs::read_to_string(am._dir.path().join("am.log")).unwrap_or_default()
        );
    }

    /// Sends one alert through Alertmanager's API: firing, or resolved (ended a second ago).
    pub async fn alert(&self, labels: serde_json::Value, summary: &str, resolved: bool) {
        let mut a = serde_json::json!({"labels": labels, "annotations": {"summary": summary}});
        if resolved {
            let ended = std::time::SystemTime::now() - std::time::Duration::from_secs(1);
            a["endsAt"] = serde_json::json!(humantime::format_rfc3339_seconds(ended).to_string());
        }
        let r = reqwest::Client::new()
            .post(format!("{}/api/v2/alerts", self.base))
            .json(&serde_json::json!([a]))
            .send()
            .await
            .unwrap();
        assert!(
            r.status().is_success(),
            "Alertmanager refused the alert: {}",
            r.status()
        );
    }
}
