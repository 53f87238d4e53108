//! `Bot::handle`: the only orchestrator and the only place that carries out effects. It takes one
//! addressed [`ChatEvent`], understands it (via `nlu`), records the request in the audit log
//! before anything runs, runs the action (via `actions`), records the outcome and returns the
//! replies. Adapters render the replies; they never decide anything.

use crate::actions::{self, Redactor, Runtime};
use crate::adapters::{ChatEvent, Reply};
use crate::audit::{Audit, Entry, Kind};
use crate::catalog::{Catalog, Intent, ParamKind, Params, Risk, Value};
use crate::nlu::{Analysis, Decision, Nlu, Source, HELP};
use std::sync::Arc;

/// Settings the bot needs from the configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    pub max_message_bytes: usize,
}

pub struct Bot {
    pub catalog: Arc<Catalog>,
    pub nlu: Arc<Nlu>,
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

        let analysis = {
            let (nlu, catalog, message) = (self.nlu.clone(), self.catalog.clone(), ev.text.clone());
            match tokio::task::spawn_blocking(move || nlu.analyze(&catalog, &message)).await {
                Ok(a) => a,
                Err(e) => {
                    tracing::error!(request = %request_id, error = %e, "the parser failed");
                    return self.reject(
                        &base,
                        &text,
                        "",
                        &format!("something went wrong understanding that (ref {request_id})"),
                    );
                }
            }
        };
        let source = analysis.source.as_str();
        let prefix = self.nlu.prefix();
        if let Some(err) = &analysis.error {
            return self.reject(&base, &text, source, err);
        }
        match analysis.decision {
            Decision::Reject => {
                let reason = self.not_understood(&analysis);
                self.reject(&base, &text, source, &reason)
            }
            Decision::Suggest => {
                let reason = self.did_you_mean(&analysis);
                self.reject(&base, &text, source, &reason)
            }
            Decision::Accept => {
                let name = analysis.intent.as_deref().unwrap_or_default();
                if name == HELP {
                    let topic = analysis.slots.get("topic").map(|v| v.to_string());
                    return vec![Reply::Text(self.help(topic.as_deref()))];
                }
                let Some(intent) = self.catalog.intent(name) else {
                    return self.reject(&base, &text, source, "unknown command");
                };
                if !analysis.invalid.is_empty() {
                    let reason = format!(
                        "{}\nusage: {}",
                        analysis.invalid.join("; "),
                        intent.usage(prefix)
                    );
                    return self.reject(&base, &text, source, &reason);
                }
                if !analysis.missing.is_empty() {
                    let reason = format!(
                        "{} needs {}\nusage: {}",
                        intent.id,
                        self.describe_missing(intent, &analysis.missing),
                        intent.usage(prefix)
                    );
                    return self.reject(&base, &text, source, &reason);
                }
                if analysis.source == Source::Nlu && intent.risk != Risk::Read {
                    // plain language never changes anything without an explicit confirmation
                    let line = strict_line(intent, &analysis.slots, prefix);
                    let reason = format!("I understood: {}. It changes things, so confirm by sending exactly:\n{line}", describe(intent, &analysis.slots));
                    return self.reject(&base, &text, source, &reason);
                }
                let mut params = analysis.slots.clone();
                if let Err(missing) = self.catalog.complete(intent, &mut params) {
                    return self.reject(
                        &base,
                        &text,
                        source,
                        &format!("{} needs {missing}", intent.id),
                    );
                }
                self.run(&base, &text, source, intent, &params).await
            }
        }
    }

    fn describe_missing(&self, intent: &Intent, missing: &[String]) -> String {
        missing
            .iter()
            .map(|m| match intent.param(m).map(|p| &p.kind) {
                Some(ParamKind::Entity(e)) => format!(
                    "{m} ({})",
                    self.catalog
                        .entity(e)
                        .map(|e| e.canonical_values().join(", "))
                        .unwrap_or_default()
                ),
                Some(k) => format!("{m} ({})", k.describe()),
                None => m.clone(),
            })
            .collect::<Vec<_>>()
            .join(" and ")
    }

    /// The reply to a message that matched nothing well enough.
    fn not_understood(&self, a: &Analysis) -> String {
        let prefix = self.nlu.prefix();
        let closest: Vec<String> = a
            .alternatives
            .iter()
            .take(2)
            .filter_map(|alt| {
                self.catalog
                    .intent(&alt.intent)
                    .map(|i| format!("  {}", i.usage(prefix)))
            })
            .collect();
        let mut s = String::from("sorry, I didn't understand that, so I did nothing");
        if !closest.is_empty() {
            s.push_str(&format!("\nclosest commands:\n{}", closest.join("\n")));
        }
        s.push_str(&format!("\n{prefix}help lists everything I can do"));
        s
    }

    /// Up to three candidates, each with the strict command that would run it.
    fn did_you_mean(&self, a: &Analysis) -> String {
        let prefix = self.nlu.prefix();
        let mut lines = Vec::new();
        let mut names: Vec<&str> = a.intent.iter().map(String::as_str).collect();
        names.extend(a.alternatives.iter().map(|x| x.intent.as_str()));
        for name in names.into_iter().take(3) {
            if name == HELP {
                lines.push(format!("{}. {prefix}help", lines.len() + 1));
            } else if let Some(i) = self.catalog.intent(name) {
                let params = if Some(name) == a.intent.as_deref() {
                    a.slots.clone()
                } else {
                    Params::new()
                };
                let line = if params.is_empty() {
                    i.usage(prefix)
                } else {
                    strict_line(i, &params, prefix)
                };
                lines.push(format!("{}. {line}  ({})", lines.len() + 1, i.description));
            }
        }
        format!(
            "not sure what you meant; did you mean:\n{}",
            lines.join("\n")
        )
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

/// The strict command that runs `intent` with `params`: positional while the syntax order
/// allows, `name=value` after a gap, values with spaces quoted.
pub fn strict_line(intent: &Intent, params: &Params, prefix: &str) -> String {
    let mut s = format!("{prefix}{}", intent.id.0.replace('.', " "));
    let mut gap = false;
    for p in &intent.params {
        match params.get(&p.name) {
            None => gap = true,
            Some(v) => {
                let raw = match v {
                    Value::Duration(_) => v.to_string(),
                    other => other.as_arg(),
                };
                let val = if raw.contains(char::is_whitespace) {
                    format!("\"{raw}\"")
                } else {
                    raw
                };
                if gap {
                    s.push_str(&format!(" {}={val}", p.name));
                } else {
                    s.push_str(&format!(" {val}"));
                }
            }
        }
    }
    s
}
