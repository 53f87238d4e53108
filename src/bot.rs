//! `Bot::handle`: the only orchestrator and the only place that carries out effects. It takes one
//! addressed [`ChatEvent`], understands it (via `nlu`), records the request in the audit log
//! before anything runs, runs the action (via `actions`), records the outcome and returns the
//! replies. Adapters render the replies; they never decide anything.

use crate::actions::{self, Redactor, Runtime};
use crate::adapters::{ChatEvent, Reply};
use crate::audit::{Audit, Entry, Kind};
use crate::catalog::{Catalog, Intent, ParamKind, Params};
use crate::nlu::{Nlu, Source, Understanding};
use std::sync::Arc;

/// Settings the bot needs from the configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    pub max_message_bytes: usize,
}

pub struct Bot {
    pub catalog: Arc<Catalog>,
    pub nlu: Nlu,
    pub audit: Audit,
    pub runtime: Runtime,
    pub redactor: Redactor,
    pub settings: Settings,
}

/// A short reference id shown in chat and stored in the audit log.
pub fn new_ref() -> String {
    format!("{:08x}", rand::random::<u32>())
}

/// Control characters made visible, so the audit log stays readable and exact.
fn visible(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() && c != '\n' && c != '\t' {
                format!("\\u{{{:x}}}", c as u32)
            } else {
                c.to_string()
            }
        })
        .collect()
}

fn params_json(params: &Params) -> String {
    serde_json::to_string(params).unwrap_or_default()
}

/// `deploy service=api env=staging version=2.4.1`
pub fn describe(intent: &Intent, params: &Params) -> String {
    let mut s = intent.id.0.clone();
    for p in &intent.params {
        if let Some(v) = params.get(&p.name) {
            s.push_str(&format!(" {}={}", p.name, quote_if_needed(&v.to_string())));
        }
    }
    s
}

fn quote_if_needed(s: &str) -> String {
    if s.contains(char::is_whitespace) || s.is_empty() {
        format!("\"{s}\"")
    } else {
        s.to_string()
    }
}

impl Bot {
    /// Handles one addressed message. Every reply is redacted on the way out.
    pub async fn handle(&self, ev: &ChatEvent) -> Vec<Reply> {
        let replies = self.handle_inner(ev).await;
        replies.into_iter().map(|r| self.redact_reply(r)).collect()
    }

    fn redact_reply(&self, r: Reply) -> Reply {
        let red = |s: String| self.redactor.redact(&s);
        match r {
            Reply::Text(t) => Reply::Text(red(t)),
            Reply::Error(t) => Reply::Error(red(t)),
            Reply::Output { summary, body, ok } => Reply::Output {
                summary: red(summary),
                body: red(body),
                ok,
            },
        }
    }

    async fn handle_inner(&self, ev: &ChatEvent) -> Vec<Reply> {
        let request_id = new_ref();
        let text = ev.text.clone();
        let base = Entry {
            request_id: &request_id,
            platform: ev.conversation.platform(),
            conversation: &ev.conversation.0,
            user_id: &ev.principal.id.0,
            user_name: &ev.principal.display_name,
            ..Default::default()
        };

        if ev.text.len() > self.settings.max_message_bytes {
            let reason = format!(
                "message too long ({} bytes; the limit is {})",
                ev.text.len(),
                self.settings.max_message_bytes
            );
            return self.reject(&base, &visible(&text), "", &reason);
        }
        if ev.text.chars().any(|c| c.is_control() && c != '\t') {
            return self.reject(
                &base,
                &visible(&text),
                "",
                "message contains control characters; nothing was run",
            );
        }

        match self.nlu.parse(&self.catalog, &ev.text) {
            Understanding::Help { topic } => vec![Reply::Text(self.help(topic.as_deref()))],
            Understanding::NotUnderstood { reason, source } => {
                self.reject(&base, &text, source_str(&source), &reason)
            }
            Understanding::Command {
                intent,
                params,
                source,
                ..
            } => {
                let Some(intent) = self.catalog.intent(&intent.0) else {
                    return self.reject(&base, &text, source_str(&source), "unknown command");
                };
                self.run(&base, &text, source_str(&source), intent, &params)
                    .await
            }
        }
    }

    fn reject(&self, base: &Entry, text: &str, source: &str, reason: &str) -> Vec<Reply> {
        let row = Entry {
            text,
            source,
            status: "rejected",
            detail: reason,
            ..base.clone()
        };
        if let Err(e) = self.audit.append(Kind::Rejected, &row) {
            tracing::error!(request = base.request_id, error = %e, "could not audit a rejected message");
        }
        vec![Reply::Error(reason.to_string())]
    }

    /// Audits the request, runs the action, audits the outcome.
    async fn run(
        &self,
        base: &Entry<'_>,
        text: &str,
        source: &str,
        intent: &Intent,
        params: &Params,
    ) -> Vec<Reply> {
        let rid = base.request_id;
        let what = describe(intent, params);
        let pjson = params_json(params);
        let request = Entry {
            text,
            source,
            intent: &intent.id.0,
            params: Some(pjson.clone()),
            status: "started",
            detail: &what,
            ..base.clone()
        };
        if let Err(e) = self.audit.append(Kind::Request, &request) {
            tracing::error!(request = rid, error = %e, "audit write failed; action not run");
            return vec![Reply::Error(format!(
                "couldn't record the request, so nothing was run (ref {rid})"
            ))];
        }
        tracing::info!(request = rid, user = %base.user_id, action = %what, "running");
        let ctx = actions::Context {
            request_id: rid.to_string(),
            user_id: base.user_id.to_string(),
        };
        let result = actions::execute(
            &intent.action,
            params,
            &self.runtime,
            &ctx,
            &self.redactor,
            None,
        )
        .await;
        let (reply, status, exit_code, duration_ms, detail) = match result {
            Ok(o) => {
                let status = o.status;
                let ok = status == actions::Status::Succeeded;
                let secs = o.duration.as_secs_f64();
                let summary = match status {
                    actions::Status::Succeeded => format!("{what}: done in {secs:.1}s (ref {rid})"),
                    actions::Status::Failed => format!(
                        "{what}: failed{} after {secs:.1}s (ref {rid})",
                        o.exit_code
                            .map(|c| format!(" with exit code {c}"))
                            .unwrap_or_default()
                    ),
                    actions::Status::TimedOut => {
                        format!("{what}: timed out after {secs:.0}s and was stopped (ref {rid})")
                    }
                    actions::Status::Cancelled => format!("{what}: cancelled (ref {rid})"),
                };
                let mut body = o.output.clone();
                if o.truncated {
                    body.push_str("\n… (output cut)");
                }
                let status_str = serde_json::to_value(status)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default();
                (
                    Reply::Output { summary, body, ok },
                    status_str,
                    o.exit_code,
                    Some(o.duration.as_millis() as u64),
                    o.output,
                )
            }
            Err(e) => {
                let detail = e.to_string();
                tracing::error!(request = rid, error = %self.redactor.redact(&detail), "action error");
                (
                    Reply::Error(format!("couldn't run {} (ref {rid})", intent.id)),
                    "error".to_string(),
                    None,
                    None,
                    detail,
                )
            }
        };
        let outcome = Entry {
            text: "",
            source,
            intent: &intent.id.0,
            params: Some(pjson),
            status: &status,
            exit_code,
            duration_ms,
            detail: &detail,
            ..base.clone()
        };
        if let Err(e) = self.audit.append(Kind::Outcome, &outcome) {
            tracing::error!(request = rid, error = %e, "could not audit the outcome");
        }
        vec![reply]
    }

    /// `!help` lists every command; `!help deploy` explains one.
    pub fn help(&self, topic: Option<&str>) -> String {
        let prefix = self.nlu.prefix();
        match topic.map(|t| t.trim_start_matches(prefix)) {
            None => {
                let mut out = String::from("commands:\n");
                for i in &self.catalog.intents {
                    out.push_str(&format!("  {:<44} {}\n", i.usage(prefix), i.description));
                }
                out.push_str(&format!(
                    "  {:<44} explain one command\n",
                    format!("{prefix}help [command]")
                ));
                out.trim_end().to_string()
            }
            Some(name) => match self.catalog.intent(name) {
                None => {
                    let near = crate::nlu::strict::closest_command(&self.catalog, name)
                        .map(|i| format!("; did you mean {}?", i.id))
                        .unwrap_or_default();
                    format!("no command '{name}'{near}")
                }
                Some(i) => {
                    let mut out = format!(
                        "{}: {}\nusage: {}\nrisk: {}\n",
                        i.id,
                        i.description,
                        i.usage(prefix),
                        i.risk
                    );
                    for p in &i.params {
                        let kind = match &p.kind {
                            ParamKind::Entity(e) => self
                                .catalog
                                .entity(e)
                                .map(|e| format!("one of {}", e.canonical_values().join(", ")))
                                .unwrap_or_default(),
                            other => other.describe(),
                        };
                        let dflt = p
                            .default
                            .as_ref()
                            .map(|d| format!(", default {d}"))
                            .unwrap_or_default();
                        out.push_str(&format!(
                            "  {} ({}): {kind}{dflt}\n",
                            p.name,
                            if p.required { "required" } else { "optional" }
                        ));
                    }
                    out.push_str("for example:\n");
                    for e in i.examples.iter().take(3) {
                        out.push_str(&format!("  {e}\n"));
                    }
                    out.trim_end().to_string()
                }
            },
        }
    }

    /// Exposed for adapters that show a reference id without handling a message.
    pub fn audit(&self) -> &Audit {
        &self.audit
    }
}

fn source_str(s: &Source) -> &'static str {
    match s {
        Source::Strict => "strict",
        Source::Nlu => "nlu",
    }
}
