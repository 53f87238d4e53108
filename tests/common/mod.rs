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
