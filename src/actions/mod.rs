//! Running an intent's action: an argv process ([`exec`]) or an HTTP call ([`http`]). The only
//! module that starts processes or makes outbound calls for actions. Parameters arrive already
//! validated and typed; this module substitutes them as whole argv elements (never through a
//! shell), bounds time and output, and redacts secrets from everything it returns.

pub mod exec;
pub mod http;
pub mod redact;

use crate::catalog::{Action, Params};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

pub use redact::Redactor;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("could not start {program}: {reason}")]
    Spawn { program: String, reason: String },
    #[error("timed out after {}s", .after.as_secs())]
    Timeout { after: Duration },
    #[error("secret {name} is not set in the environment")]
    MissingSecret { name: String },
    #[error("http request failed: {0}")]
    Http(String),
    #[error("could not build the request: {0}")]
    Template(String),
    #[error("a built-in action is carried out by the bot, not here")]
    Builtin,
}

/// Settings every action shares, from the configuration.
#[derive(Debug, Clone)]
pub struct Runtime {
    /// Passed to processes as OPSBOT_STATE_DIR.
    pub state_dir: PathBuf,
    /// Environment variables every exec action may see (in addition to its own list).
    pub env_allow: Vec<String>,
    /// Bytes kept of stdout and of stderr (each).
    pub output_limit: usize,
}

/// Who asked, for the process environment.
#[derive(Debug, Clone, Default)]
pub struct Context {
    pub request_id: String,
    pub user_id: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Succeeded,
    Failed,
    TimedOut,
    Cancelled,
}

/// The result of one action, redacted.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub status: Status,
    pub exit_code: Option<i32>,
    pub duration: Duration,
    /// Combined output excerpt (stdout, then stderr), capped and redacted.
    pub output: String,
    pub truncated: bool,
}

/// Runs `action` with `params`. Every string in the outcome is redacted with `redactor`.
pub async fn execute(
    action: &Action,
    params: &Params,
    rt: &Runtime,
    ctx: &Context,
    redactor: &Redactor,
    cancel: Option<tokio::sync::oneshot::Receiver<()>>,
) -> Result<Outcome, Error> {
    let env = secret_env(action.secrets())?;
    match action {
        Action::Exec(spec) => exec::run(spec, params, rt, ctx, &env, redactor, cancel).await,
        Action::Timeline => Err(Error::Builtin),
        Action::Http(spec) => {
            let started = std::time::Instant::now();
            let cancelled = async {
                match cancel {
                    Some(rx) => {
                        let _ = rx.await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                r = http::run(spec, params, rt, &env, redactor) => r,
                _ = cancelled => Ok(Outcome { status: Status::Cancelled, exit_code: None, duration: started.elapsed(), output: String::new(), truncated: false }),
            }
        }
    }
}

/// Values of the action's secrets, read from the environment; a missing one is an error before
/// anything runs.
fn secret_env(names: &[String]) -> Result<BTreeMap<String, String>, Error> {
    names
        .iter()
        .map(|n| {
            std::env::var(n)
                .map(|v| (n.clone(), v))
                .map_err(|_| Error::MissingSecret { name: n.clone() })
        })
        .collect()
}

/// Output as it may be shown: redacted, then cut to `limit`. When the raw bytes were themselves
/// cut (`raw_cut`), their tail may hold the head of a secret that the cut split, which no
/// redaction can recognise: as many bytes as the longest secret form are dropped from the end
/// first. The flag says whether anything was left out.
pub(crate) fn redacted_excerpt(
    raw: &[u8],
    raw_cut: bool,
    redactor: &Redactor,
    limit: usize,
) -> (String, bool) {
    let mut text = redactor.redact(&String::from_utf8_lossy(raw));
    if raw_cut {
        let mut end = text.len().saturating_sub(redactor.longest());
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    let (out, cut) = excerpt(text.as_bytes(), limit);
    (out, cut || raw_cut)
}

/// Keeps at most `limit` bytes of `bytes`, cut on a character boundary.
pub(crate) fn excerpt(bytes: &[u8], limit: usize) -> (String, bool) {
    let text = String::from_utf8_lossy(bytes);
    if text.len() <= limit {
        return (text.into_owned(), false);
    }
    let mut end = limit;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    (text[..end].to_string(), true)
}

#[cfg(test)]
mod tests {
    use super::*;

    // regression (review): redaction shrinks the text, so a secret cut in two at the raw limit
    // moved back under the shown limit and its head was printed
    #[test]
    fn a_secret_cut_at_the_raw_limit_is_never_shown_in_part() {
        let secret = "0123456789abcdefghijklmnopqrstuvwxyzABCD";
        std::env::set_var("OPSBOT_TEST_EXCERPT_SECRET", secret);
        let r = Redactor::from_env(&["OPSBOT_TEST_EXCERPT_SECRET".to_string()]);
        let mut raw = format!("token={secret}\n").repeat(40).into_bytes();
        raw.extend_from_slice(format!("token={}", &secret[..20]).as_bytes());
        let (shown, cut) = redacted_excerpt(&raw, true, &r, 600);
        assert!(cut);
        assert!(!shown.contains("0123456789"), "{shown}");
        assert!(shown.contains("[redacted]"));
    }
}
