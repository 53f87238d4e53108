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
    let limit = rt.output_limit;
    // keep a margin past the limit, so that a secret straddling the cut is redacted whole before
    // the text is cut
    let keep = limit + REDACTION_MARGIN;
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
