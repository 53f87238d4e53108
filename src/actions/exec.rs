//! Process actions: argv only, never a shell. Each argv element is a template whose placeholders
//! are replaced by validated values, so a value is always exactly one argument. The process gets a
//! cleared environment (allow-list only), its own process group (so a timeout or cancel kills
//! everything it started), no stdin, and capped output.

use super::{excerpt, Context, Error, Outcome, Redactor, Runtime, Status};
use crate::catalog::{ExecSpec, Params};
use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::Instant;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Command;

/// Bytes read past the output limit so that redaction sees a secret whole.
const REDACTION_MARGIN: usize = 512;

/// The argv an action would run with `params`: elements whose placeholders have no value are left
/// out (optional parameters without a default).
pub fn argv(spec: &ExecSpec, params: &Params) -> Vec<String> {
    spec.args
        .iter()
        .filter_map(|t| t.render(params, |v| v.as_arg()))
        .collect()
}

pub async fn run(
    spec: &ExecSpec,
    params: &Params,
    rt: &Runtime,
    ctx: &Context,
    secrets: &BTreeMap<String, String>,
    redactor: &Redactor,
    cancel: Option<tokio::sync::oneshot::Receiver<()>>,
) -> Result<Outcome, Error> {
    let args = argv(spec, params);
    let mut cmd = Command::new(&spec.program);
    cmd.args(&args)
        .current_dir(&spec.workdir)
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    // the action dies with the bot: if opsbot is killed (even with SIGKILL) the kernel kills
    // the action's leader, and start-up kills what is left of its group ([`reap_orphans`])
    let parent = nix::unistd::getpid();
    // SAFETY: only async-signal-safe calls (prctl, getppid) between fork and exec
    unsafe {
        cmd.pre_exec(move || {
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)?;
            if nix::unistd::getppid() != parent {
                return Err(std::io::Error::other(
                    "opsbot exited while starting the action",
                ));
            }
            Ok(())
        });
    }
    for name in rt.env_allow.iter().chain(&spec.env) {
        if let Ok(v) = std::env::var(name) {
            cmd.env(name, v);
        }
    }
    cmd.envs(secrets);
    cmd.env("OPSBOT_STATE_DIR", &rt.state_dir)
        .env("OPSBOT_REQUEST_ID", &ctx.request_id)
        .env("OPSBOT_USER", &ctx.user_id);

    let started = Instant::now();
    let mut child = cmd.spawn().map_err(|e| Error::Spawn {
        program: spec.program.display().to_string(),
        reason: e.to_string(),
    })?;
    let pgid = child.id().map(|id| id as i32);
    let _record = pgid.map(|g| Record::new(&rt.state_dir, &ctx.request_id, g));
    let limit = rt.output_limit;
    // keep a margin past the limit, so that a secret straddling the cut is redacted whole before
    // the text is cut
    let keep = limit + REDACTION_MARGIN.max(redactor.longest());
    let out_task = tokio::spawn(read_capped(child.stdout.take(), keep));
    let err_task = tokio::spawn(read_capped(child.stderr.take(), keep));

    let cancelled = async {
        match cancel {
            Some(rx) => {
                let _ = rx.await;
            }
            None => std::future::pending::<()>().await,
        }
    };
    let (status, exit_code) = tokio::select! {
        res = tokio::time::timeout(spec.timeout, child.wait()) => match res {
            Ok(Ok(st)) => (if st.success() { Status::Succeeded } else { Status::Failed }, st.code()),
            Ok(Err(e)) => return Err(Error::Spawn { program: spec.program.display().to_string(), reason: e.to_string() }),
            Err(_) => {
                kill_group(pgid);
                let _ = child.wait().await;
                (Status::TimedOut, None)
            }
        },
        _ = cancelled => {
            kill_group(pgid);
            let _ = child.wait().await;
            (Status::Cancelled, None)
        }
    };
    // a grandchild that escaped the group could keep a pipe open: do not wait on it forever
    let grace = std::time::Duration::from_secs(2);
    let (stdout, t1) = tokio::time::timeout(grace, out_task)
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default();
    let (stderr, t2) = tokio::time::timeout(grace, err_task)
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default();
    let (out, tr_out) = excerpt(
        redactor
            .redact(&String::from_utf8_lossy(&stdout))
            .as_bytes(),
        limit,
    );
    let (err, tr_err) = excerpt(
        redactor
            .redact(&String::from_utf8_lossy(&stderr))
            .as_bytes(),
        limit,
    );
    let mut output = out;
    if !err.trim().is_empty() {
        if !output.is_empty() && !output.ends_with('\n') {
            output.push('\n');
        }
        output.push_str(&err);
    }
    Ok(Outcome {
        status,
        exit_code,
        duration: started.elapsed(),
        output,
        truncated: t1 || t2 || tr_out || tr_err,
    })
}

/// The process group of a running action, kept in `<state_dir>/running/` while it runs (removed
/// when it ends), so a restarted bot can kill what a killed one left behind.
struct Record(Option<std::path::PathBuf>);

impl Record {
    fn new(state_dir: &std::path::Path, request_id: &str, pgid: i32) -> Record {
        let dir = state_dir.join("running");
        let name: String = request_id
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
            .collect();
        let path = dir.join(format!(
            "{}-{pgid}",
            if name.is_empty() { "x" } else { &name }
        ));
        let written = std::fs::create_dir_all(&dir).and_then(|_| {
            std::fs::write(&path, format!("{pgid} {}\n", start_time(pgid).unwrap_or(0)))
        });
        match written {
            Ok(()) => Record(Some(path)),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "could not record a running action");
                Record(None)
            }
        }
    }
}

impl Drop for Record {
    fn drop(&mut self) {
        if let Some(p) = &self.0 {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// When process `pid` started (clock ticks since boot, /proc/PID/stat field 22).
fn start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // the command name may hold spaces and parentheses: count from the last ')'
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// At start-up: kills the process groups that actions of a previous run left behind (a bot killed
/// with SIGKILL cannot stop them) and returns the request ids they belonged to. A group whose
/// leader's pid now names another process (a different start time) is left alone.
pub fn reap_orphans(state_dir: &std::path::Path) -> Vec<String> {
    let dir = state_dir.join("running");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return vec![];
    };
    let mut reaped = Vec::new();
    for e in entries.flatten() {
        let path = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        let content = std::fs::read_to_string(&path).unwrap_or_default();
        let mut it = content.split_whitespace();
        let (Some(Ok(pgid)), Some(Ok(started))) = (
            it.next().map(str::parse::<i32>),
            it.next().map(str::parse::<u64>),
        ) else {
            let _ = std::fs::remove_file(&path);
            continue;
        };
        let same = match start_time(pgid) {
            Some(now) => now == started,
            // the leader is gone; members of its group may remain, and a pid still in use as a
            // group id is not given to a new process
            None => true,
        };
        if same && pgid > 1 {
            kill_group(Some(pgid));
            tracing::warn!(pgid, "killed an action left running by a previous run");
        }
        if let Some((id, _)) = name.rsplit_once('-') {
            reaped.push(id.to_string());
        }
        let _ = std::fs::remove_file(&path);
    }
    reaped
}

fn kill_group(pgid: Option<i32>) {
    if let Some(pgid) = pgid {
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(pgid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

/// Reads everything (so the writer never blocks on a full pipe) but keeps only `limit` bytes.
async fn read_capped<R: AsyncRead + Unpin>(reader: Option<R>, limit: usize) -> (Vec<u8>, bool) {
    let Some(mut reader) = reader else {
        return (Vec::new(), false);
    };
    let mut kept = Vec::new();
    let mut truncated = false;
    let mut buf = [0u8; 8192];
    loop {
        match reader.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let room = limit.saturating_sub(kept.len());
                kept.extend_from_slice(&buf[..n.min(room)]);
                truncated |= n > room;
            }
        }
    }
    (kept, truncated)
}
