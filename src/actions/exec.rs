//! Process actions: argv only, never a shell. Each argv element is a template whose placeholders
//! are replaced by validated values, so a value is always exactly one argument. The process gets a
//! cleared environment (allow-list only), its own process group (so a timeout or cancel kills
//! everything it started), no stdin, and capped output.

use super::{redacted_excerpt, Context, Error, Outcome, Redactor, Runtime, Status};
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
                // no allocation between fork and exec: a raw OS error
                return Err(std::io::Error::from_raw_os_error(nix::libc::ESRCH));
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
    // a program just written may still be open for writing in a child another thread is
    // forking at this moment ("text file busy"): that passes within milliseconds, so try again
    let mut attempts = 0;
    let mut child = loop {
        match cmd.spawn() {
            Err(e) if e.kind() == std::io::ErrorKind::ExecutableFileBusy && attempts < 20 => {
                attempts += 1;
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
            other => {
                break other.map_err(|e| Error::Spawn {
                    program: spec.program.display().to_string(),
                    reason: e.to_string(),
                })?
            }
        }
    };
    let pgid = child.id().map(|id| id as i32);
    let mut record = pgid.map(|g| Record::new(&rt.state_dir, &ctx.request_id, g));
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
    // the action ended (or was stopped) under supervision: its record can go without a kill
    if let Some(r) = record.as_mut() {
        r.supervised_end = true;
    }
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
    let (out, tr_out) = redacted_excerpt(&stdout, t1, redactor, limit);
    let (err, tr_err) = redacted_excerpt(&stderr, t2, redactor, limit);
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

/// The process group of a running action, kept in `<state_dir>/running/` while it runs, with
/// the opsbot process that started it, so that a later start can tell an orphan (its opsbot is
/// gone) from the action of another live opsbot on the same state directory. Dropped without a
/// supervised end (the future was dropped: opsbot is stopping), it kills the group first.
struct Record {
    path: Option<std::path::PathBuf>,
    pgid: i32,
    supervised_end: bool,
}

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
        let me = std::process::id() as i32;
        let written = std::fs::create_dir_all(&dir).and_then(|_| {
            std::fs::write(
                &path,
                format!(
                    "{pgid} {} {me} {}\n",
                    start_time(pgid).unwrap_or(0),
                    start_time(me).unwrap_or(0)
                ),
            )
        });
        let path = match written {
            Ok(()) => Some(path),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "could not record a running action");
                None
            }
        };
        Record {
            path,
            pgid,
            supervised_end: false,
        }
    }
}

impl Drop for Record {
    fn drop(&mut self) {
        if !self.supervised_end {
            kill_group(Some(self.pgid));
        }
        if let Some(p) = &self.path {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// Field `n` of /proc/PID/stat, counted from 1 as proc(5) does (3 the state, 5 the process
/// group, 22 the start time).
fn stat_field(pid: i32, n: usize) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // the command name (field 2) may hold spaces and parentheses: count from the last ')'
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(n - 3).map(str::to_string)
}

/// When process `pid` started (clock ticks since boot).
fn start_time(pid: i32) -> Option<u64> {
    stat_field(pid, 22)?.parse().ok()
}

/// Is process `pid` the one that started at `started`?
fn alive(pid: i32, started: u64) -> bool {
    pid > 0 && start_time(pid) == Some(started)
}

/// What start-up found in `<state_dir>/running/`.
#[derive(Debug, Default)]
pub struct Reaped {
    /// Requests whose left-over processes were killed (their opsbot is gone).
    pub killed: Vec<String>,
    /// Requests still run by another live opsbot on the same state directory.
    pub live: Vec<String>,
}

/// At start-up: kills what actions of a dead opsbot left running (a bot killed with SIGKILL
/// cannot stop them) and says which requests that was. Records of a live opsbot are left alone.
/// A leader that still runs is killed with its group only if it is the process recorded (same
/// start time); when the leader is gone, only the members that carry the request's id in their
/// environment (`OPSBOT_REQUEST_ID`) are killed, never a group that a reused pid now leads.
pub fn reap_orphans(state_dir: &std::path::Path) -> Reaped {
    let dir = state_dir.join("running");
    let mut out = Reaped::default();
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return out;
    };
    for e in entries.flatten() {
        let path = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        let request = name
            .rsplit_once('-')
            .map(|(id, _)| id.to_string())
            .unwrap_or_default();
        let content = std::fs::read_to_string(&path).unwrap_or_default();
        let nums: Vec<u64> = content
            .split_whitespace()
            .filter_map(|n| n.parse().ok())
            .collect();
        let [pgid, started, owner, owner_started] = nums[..] else {
            let _ = std::fs::remove_file(&path);
            continue;
        };
        let (pgid, owner) = (pgid as i32, owner as i32);
        if alive(owner, owner_started) {
            out.live.push(request);
            continue;
        }
        if pgid > 1 {
            if alive(pgid, started) {
                kill_group(Some(pgid));
            } else {
                kill_members(pgid, &request);
            }
            tracing::warn!(pgid, request = %request, "killed an action left running by a previous run");
        }
        out.killed.push(request);
        let _ = std::fs::remove_file(&path);
    }
    out
}

/// Kills the processes of group `pgid` whose environment carries `OPSBOT_REQUEST_ID=request`.
fn kill_members(pgid: i32, request: &str) {
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return;
    };
    let tag = format!("OPSBOT_REQUEST_ID={request}");
    for p in procs.flatten() {
        let Some(pid) = p.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
            continue;
        };
        let in_group = stat_field(pid, 5).and_then(|g| g.parse::<i32>().ok()) == Some(pgid);
        let ours = std::fs::read(p.path().join("environ"))
            .map(|env| env.split(|b| *b == 0).any(|v| v == tag.as_bytes()))
            .unwrap_or(false);
        if in_group && ours {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
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
