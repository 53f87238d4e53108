//! `Bot::handle`: the only orchestrator and the only place that carries out effects. It takes one
//! addressed [`ChatEvent`]; if the speaker has a pending dialog the message answers it (nothing is
//! classified), otherwise it is understood (`nlu`), checked (`policy`) and handed to the dialog
//! state machine (`dialog`). Effects are carried out here: replies, audit rows, stored dialogs,
//! and actions, which are authorized again, rate-limited, locked per target and audited before
//! they start. Adapters render the replies; they never decide anything.

use crate::actions::{self, Redactor, Runtime};
use crate::audit::{Entry, Kind};
use crate::catalog::{Catalog, Intent, ParamKind, Params, Value};
use crate::chat::{ChatEvent, ConversationId, Principal, Reply, UserId};
use crate::config::DialogSettings;
use crate::dialog::{self, store, Actor, Effect, Input, Pending, Request};
use crate::nlu::{slots, Analysis, Decision, Nlu, HELP};
use crate::policy::Policy;
use crate::state::{AuditLog, Claim, Coordination, DialogStore, Start};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Settings the bot needs from the configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The bot's name (people address it by name).
    pub name: String,
    pub max_message_bytes: usize,
    pub dialogs: DialogSettings,
}

pub struct Bot {
    catalog: Arc<Catalog>,
    nlu: Arc<Nlu>,
    audit: Arc<dyn AuditLog>,
    dialogs: Box<dyn DialogStore>,
    policy: Policy,
    runtime: Runtime,
    redactor: Redactor,
    settings: Settings,
    /// Target locks, rate limits and the running actions (chosen by `app::build`).
    coordination: Box<dyn Coordination>,
    /// When an approval last closed without running, by conversation: a bare typed "approve"
    /// soon after may be meant for the one that closed, so it must name its reference.
    withdrawn: Mutex<HashMap<String, Instant>>,
    /// Each platform's source of current roles ([`CurrentRoles`]), by platform name.
    current_roles: Mutex<HashMap<String, Arc<dyn CurrentRoles>>>,
    /// Announcements owed from start-up (actions a previous run left unfinished), by
    /// conversation; handed out by [`Bot::expire_due`] to the adapter of their platform.
    owed: Mutex<Vec<(ConversationId, String)>>,
    /// Every finished action, for whoever listens (the events hub announces changes).
    finished: tokio::sync::broadcast::Sender<Finished>,
}

/// An action that finished (or could not start), as announced: who, what, where, the result.
#[derive(Debug, Clone)]
pub struct Finished {
    pub request_id: String,
    pub intent: String,
    pub risk: crate::catalog::Risk,
    /// The action as a strict command with its values (`deploy service=api env=prod ...`).
    pub what: String,
    pub requester: String,
    pub requester_name: String,
    pub conversation: String,
    /// The outcome's status (`succeeded`, `failed`, `timed_out`, `cancelled`, `error`).
    pub status: String,
    /// Who confirmed or approved it, when someone did.
    pub by: String,
}

/// Characters that make text read differently from what it is: bidi controls and invisible
/// format characters (a zero-width joiner inside an emoji sequence excepted), and compatibility
/// look-alikes of `.` and `/` (a fullwidth solidus, a one-dot leader) that a later
/// normalisation could turn into a path. The ellipsis `…` is common in chat and harmless: it is
/// read as three dots by the value checks, which refuse `..` segments anyway.
pub fn deceptive_characters(text: &str) -> Option<String> {
    use unicode_normalization::UnicodeNormalization;
    let chars: Vec<char> = text.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        // format characters, line and paragraph separators, invisible fillers and tag characters
        let format_char = matches!(c as u32,
            0x00AD | 0x034F | 0x061C | 0x115F | 0x1160 | 0x180E | 0x200B..=0x200F
            | 0x2028..=0x202E | 0x2060..=0x2064 | 0x2066..=0x206F | 0x3164 | 0xFEFF | 0xFFA0
            | 0xFFF9..=0xFFFB | 0xE0000..=0xE007F);
        if format_char {
            let emoji = |j: Option<usize>| {
                j.and_then(|j| chars.get(j))
                    .is_some_and(|n| (*n as u32) >= 0x2000 && !n.is_alphanumeric())
            };
            if c == '\u{200D}' && emoji(i.checked_sub(1)) && emoji(Some(i + 1)) {
                continue;
            }
            return Some(format!(
                "message contains an invisible or direction-changing character (U+{:04X})",
                c as u32
            ));
        }
        if !c.is_ascii() && c != '…' {
            // NFKC folds the fullwidth and small forms; these slashes it leaves as they are
            let folded: String = match c {
                '\u{2215}' | '\u{2044}' | '\u{29F8}' | '\u{2571}' | '\u{FF0F}' => "/".into(),
                '\u{29F9}' | '\u{2572}' | '\u{FF3C}' => "\\".into(),
                _ => std::iter::once(c).nfkc().collect(),
            };
            if folded.contains(['.', '/', '\\']) {
                return Some(format!(
                    "message contains '{c}' (U+{:04X}), a look-alike of '{folded}'",
                    c as u32
                ));
            }
        }
    }
    None
}

/// Tells which platform roles (mapped to opsbot roles) a user holds now: an adapter's member
/// look-up. Used before an approved request runs, since its requester's roles may have changed
/// since they asked. `None` when it cannot tell (the request then does not run).
pub trait CurrentRoles: Send + Sync {
    fn current<'a>(
        &'a self,
        user: &'a UserId,
        conversation: &'a ConversationId,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Option<Vec<String>>> + Send + 'a>>;
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

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A question taken out of the store by [`Bot::claim`], to be answered.
pub struct Claimed(store::Stored);

/// A dialog whose time ran out, announced in its conversation.
#[derive(Debug, Clone)]
pub struct Expired {
    pub conversation: ConversationId,
    /// The question's id ([`Request::question_id`]; adapters disable its buttons).
    pub dialog: String,
    pub reply: Reply,
}

/// What a [`Bot`] is made of, assembled by `app::build`.
pub struct Parts {
    pub catalog: Arc<Catalog>,
    pub nlu: Arc<Nlu>,
    /// Where the audit rows go (chosen by `app::build`).
    pub audit: Arc<dyn AuditLog>,
    /// Where pending dialogs are kept (chosen by `app::build`).
    pub dialogs: Box<dyn DialogStore>,
    /// Who holds which target, rate limits, running actions (chosen by `app::build`).
    pub coordination: Box<dyn Coordination>,
    pub policy: Policy,
    pub runtime: Runtime,
    pub redactor: Redactor,
    pub settings: Settings,
}

/// The audit row's common part for a message.
struct Origin<'a> {
    request_id: String,
    ev: &'a ChatEvent,
}

impl Bot {
    pub fn new(parts: Parts) -> Self {
        let Parts {
            catalog,
            nlu,
            audit,
            dialogs,
            coordination,
            policy,
            runtime,
            redactor,
            settings,
        } = parts;
        Bot {
            catalog,
            nlu,
            audit,
            dialogs,
            policy,
            runtime,
            redactor,
            settings,
            coordination,
            withdrawn: Mutex::default(),
            current_roles: Mutex::default(),
            owed: Mutex::default(),
            finished: tokio::sync::broadcast::channel(256).0,
        }
    }

    /// Every action that finishes from now on (a slow listener misses the oldest, never
    /// blocks the bot).
    pub fn finished(&self) -> tokio::sync::broadcast::Receiver<Finished> {
        self.finished.subscribe()
    }

    /// The intent catalogue (adapters build slash commands and choices from it).
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// The same catalogue, shared (the events hub builds its buttons from it).
    pub fn shared_catalog(&self) -> Arc<Catalog> {
        self.catalog.clone()
    }

    /// The audit log the bot writes to, shared (events are recorded in the same log).
    pub fn audit_log(&self) -> Arc<dyn AuditLog> {
        self.audit.clone()
    }

    /// The strict-command prefix ("!").
    pub fn prefix(&self) -> &str {
        self.nlu.prefix()
    }

    /// The bot's name, by which people address it.
    pub fn name(&self) -> &str {
        &self.settings.name
    }

    /// After this long a running action is announced as still running.
    pub fn still_running_after(&self) -> Duration {
        self.settings.dialogs.still_running_after
    }

    /// Registers how `platform` tells a user's current roles.
    pub fn set_current_roles(&self, platform: &str, source: Arc<dyn CurrentRoles>) {
        lock(&self.current_roles).insert(platform.to_string(), source);
    }

    /// The requester's roles now, for a request someone else approved: asked of their platform;
    /// fail closed (`Err`, audited) when it cannot tell.
    async fn requester_roles_now(&self, req: &Request) -> Result<Vec<String>, Vec<Reply>> {
        let user = UserId(req.requester.clone());
        let conversation = ConversationId(req.conversation.clone());
        let source = lock(&self.current_roles)
            .get(conversation.platform())
            .cloned();
        let roles = match source {
            Some(s) => s.current(&user, &conversation).await,
            None => None,
        };
        roles.ok_or_else(|| {
            let msg = format!(
                "couldn't confirm the roles {} holds now, so nothing was run (ref {})",
                req.requester_name, req.id
            );
            self.audit_req(Kind::Denied, req, "roles_unknown", &msg, None, None);
            vec![Reply::Error(msg)]
        })
    }

    /// At start-up: every request that a previous run started and never finished gets an
    /// `interrupted` outcome, and its conversation is told (on the next [`Bot::expire_due`] of
    /// its platform). `reaped` says which were killed at start-up and which another live opsbot runs.
    pub fn settle_interrupted(&self, reaped: &actions::exec::Reaped) -> anyhow::Result<usize> {
        // a request another live opsbot still runs is not interrupted
        let rows: Vec<_> = self
            .audit
            .unfinished()?
            .into_iter()
            .filter(|r| !reaped.live.contains(&r.request_id))
            .collect();
        for r in &rows {
            let killed = reaped.killed.contains(&r.request_id);
            let detail = if killed {
                "opsbot stopped while this ran; what was left of it was killed at start-up"
            } else {
                "opsbot stopped while this ran; its end is unknown"
            };
            self.audit.append(
                Kind::Outcome,
                &Entry {
                    request_id: &r.request_id,
                    platform: &r.platform,
                    conversation: &r.conversation,
                    user_id: &r.user_id,
                    user_name: &r.user_name,
                    intent: &r.intent,
                    params: r.params.as_ref().map(|p| p.to_string()),
                    status: "interrupted",
                    detail,
                    ..Default::default()
                },
            )?;
            // an action whose leftovers were just killed is over: its target is free now, not
            // when its lease runs out (any other claim lapses with its dead holder's lease; a
            // live opsbot's is never touched)
            if killed {
                self.release(&r.request_id);
            }
            let what = r.detail.split(';').next().unwrap_or(&r.intent);
            lock(&self.owed).push((
                ConversationId(r.conversation.clone()),
                format!(
                    "{what} was interrupted: opsbot stopped while it ran; check its state before running it again (ref {})",
                    r.request_id
                ),
            ));
        }
        Ok(rows.len())
    }

    /// Handles one addressed message. Every reply is redacted on the way out.
    pub async fn handle(&self, ev: &ChatEvent) -> Vec<Reply> {
        metrics::counter!("opsbot_messages_total", "platform" => ev.conversation.platform().to_string())
            .increment(1);
        let started = Instant::now();
        let replies = self.handle_inner(ev).await;
        metrics::histogram!("opsbot_handle_seconds").record(started.elapsed().as_secs_f64());
        replies.into_iter().map(|r| self.redact_reply(r)).collect()
    }

    /// A button press: takes question `question` (a [`Request::question_id`]) out of the
    /// store if the speaker may press `choice` on it, so exactly one press wins. A confirmation,
    /// question or choice is answered by its requester only; an approval by another person with
    /// an approver role (the requester may still withdraw it with `deny`). `Err` is the refusal
    /// to show to the presser alone. Fast (one SQLite read and delete), so an adapter can claim
    /// before it acknowledges the press, then carry it out with [`Bot::answer_claimed`].
    pub fn claim(&self, ev: &ChatEvent, question: &str, choice: &str) -> Result<Claimed, String> {
        let claimed = self.try_claim(ev, question, choice);
        if let Err(reason) = &claimed {
            // every refused press is audited, like a refused message
            let row = Entry {
                request_id: question,
                platform: ev.conversation.platform(),
                conversation: &ev.conversation.0,
                user_id: &ev.principal.id.0,
                user_name: &ev.principal.display_name,
                text: &format!("[button {choice}]"),
                source: "button",
                status: "refused_press",
                detail: reason,
                ..Default::default()
            };
            if let Err(e) = self.audit.append(Kind::Denied, &row) {
                tracing::error!(error = %e, "could not audit a refused button press");
            }
        }
        claimed
    }

    fn try_claim(&self, ev: &ChatEvent, question: &str, choice: &str) -> Result<Claimed, String> {
        let store_failed = |e: anyhow::Error| {
            tracing::error!(error = %e, "dialog store failed");
            "couldn't read the pending question; nothing was run".to_string()
        };
        let stored = self
            .dialogs
            .find(&ev.conversation.0, question)
            .map_err(store_failed)?
            .ok_or_else(|| "that question is no longer open".to_string())?;
        if stored.expired() {
            return Err("that question has expired; nothing was run".into());
        }
        if !stored.pending.offers(choice) {
            return Err("that button does not belong to this question".into());
        }
        self.may_answer(&ev.principal, &stored.pending, choice == "deny")?;
        match self
            .dialogs
            .take_dialog(&ev.conversation.0, &stored.owner, question)
        {
            Ok(Some(s)) => Ok(Claimed(s)),
            Ok(None) => Err("that question is no longer open".into()),
            Err(e) => Err(store_failed(e)),
        }
    }

    /// Carries out a claimed button press, like a typed answer.
    pub async fn answer_claimed(
        &self,
        ev: &ChatEvent,
        claimed: Claimed,
        choice: &str,
    ) -> Vec<Reply> {
        let replies = self
            .answer(ev, claimed.0, Input::Button(choice.to_string()))
            .await;
        replies.into_iter().map(|r| self.redact_reply(r)).collect()
    }

    /// Is question `question` ([`Request::question_id`]) still open here? A store failure
    /// counts as open (its buttons stay; a press is checked again anyway).
    pub fn question_open(&self, conversation: &ConversationId, question: &str) -> bool {
        match self.dialogs.find(&conversation.0, question) {
            Ok(found) => found.is_some_and(|s| !s.expired()),
            Err(_) => true,
        }
    }

    /// Should a message that is not addressed to the bot still reach it? Only a bare answer word
    /// ([`dialog::is_bare_answer`]) from someone with a question open here, or an approval
    /// word while an approval waits here.
    pub fn expects_answer(&self, conversation: &ConversationId, user: &UserId, text: &str) -> bool {
        if !dialog::is_bare_answer(dialog::named_approval(text).0) {
            return false;
        }
        let open = |owner: &str| {
            self.dialogs
                .peek(&conversation.0, owner)
                .ok()
                .flatten()
                .filter(|s| !s.expired())
        };
        open(&user.0).is_some()
            || open(store::ANYONE).is_some_and(|a| {
                dialog::answers_approval(text, a.pending.request().requester == user.0)
            })
    }

    fn redact_reply(&self, r: Reply) -> Reply {
        let red = |s: String| self.redactor.redact(&s);
        match r {
            Reply::Text(t) => Reply::Text(red(t)),
            Reply::Error(t) => Reply::Error(red(t)),
            Reply::Ask {
                dialog,
                text,
                choices,
            } => Reply::Ask {
                dialog,
                text: red(text),
                // (value, label): a did-you-mean label quotes the message's values
                choices: choices
                    .into_iter()
                    .map(|(value, label)| (value, red(label)))
                    .collect(),
            },
            Reply::Notice {
                text,
                mention,
                actions,
            } => Reply::Notice {
                text: red(text),
                mention,
                actions,
            },
            Reply::Output { summary, body, ok } => Reply::Output {
                summary: red(summary),
                body: red(body),
                ok,
            },
        }
    }

    /// The message pipeline: screen it, route it to an open question (or a cancel), understand
    /// it, then decide and perform. Each stage either hands on or answers.
    async fn handle_inner(&self, ev: &ChatEvent) -> Vec<Reply> {
        let origin = Origin {
            request_id: new_ref(),
            ev,
        };
        if let Err(refusal) = self.screen(&origin) {
            return refusal;
        }
        if let Some(replies) = self.route(&origin).await {
            return replies;
        }
        match self.understand(&origin).await {
            Ok(analysis) => self.decide(&origin, analysis).await,
            Err(refusal) => refusal,
        }
    }

    /// Screen: refuses (and audits) a message too long, or with control, invisible or
    /// look-alike characters, before anything reads it.
    fn screen(&self, origin: &Origin) -> Result<(), Vec<Reply>> {
        let text = &origin.ev.text;
        let reason = if text.len() > self.settings.max_message_bytes {
            format!(
                "message too long ({} bytes; the limit is {})",
                text.len(),
                self.settings.max_message_bytes
            )
        } else if text.chars().any(|c| c.is_control() && c != '\t') {
            "message contains control characters; nothing was run".to_string()
        } else if let Some(reason) = deceptive_characters(text) {
            format!("{reason}; nothing was run")
        } else {
            return Ok(());
        };
        Err(self.reject(origin, "", &reason))
    }

    /// Route: a message that answers an open question goes to it (nothing is classified), and
    /// "cancel" goes to a running action.
    async fn route(&self, origin: &Origin<'_>) -> Option<Vec<Reply>> {
        let ev = origin.ev;
        if let Some(replies) = self.answer_pending(ev, Input::Text(ev.text.clone())).await {
            return Some(replies);
        }
        self.cancel_running(origin)
    }

    /// Understand: strict syntax, fuzzy correction, the model and slots, on a blocking thread
    /// (the model stays off the async workers). A parser error is refused and audited.
    async fn understand(&self, origin: &Origin<'_>) -> Result<Analysis, Vec<Reply>> {
        let (nlu, catalog) = (self.nlu.clone(), self.catalog.clone());
        let message = origin.ev.text.replace('…', "...");
        let analysis =
            match tokio::task::spawn_blocking(move || nlu.analyze(&catalog, &message)).await {
                Ok(a) => a,
                Err(e) => {
                    tracing::error!(request = %origin.request_id, error = %e, "the parser failed");
                    let reason = format!(
                        "something went wrong understanding that (ref {})",
                        origin.request_id
                    );
                    return Err(self.reject(origin, "", &reason));
                }
            };
        match &analysis.error {
            Some(err) => Err(self.reject(origin, analysis.source.as_str(), err)),
            None => Ok(analysis),
        }
    }

    /// Decide and perform: a reject says so with the closest commands, a suggest asks which,
    /// help answers, and an accepted request starts its dialog (authorized, previewed,
    /// confirmed or approved, then run).
    async fn decide(&self, origin: &Origin<'_>, analysis: Analysis) -> Vec<Reply> {
        let (ev, source) = (origin.ev, analysis.source.as_str());
        metrics::counter!("opsbot_decisions_total", "kind" => format!("{:?}", analysis.decision).to_lowercase())
            .increment(1);
        metrics::histogram!("opsbot_understand_seconds").record(analysis.elapsed_us as f64 / 1e6);
        match analysis.decision {
            Decision::Reject => {
                let reason = self.not_understood(&analysis);
                self.reject(origin, source, &reason)
            }
            Decision::Suggest => self.suggest(origin, &analysis).await,
            Decision::Accept => {
                let name = analysis.intent.as_deref().unwrap_or_default();
                if name == HELP {
                    let topic = analysis.slots.get("topic").map(|v| v.to_string());
                    return vec![Reply::Text(self.help(
                        &ev.principal,
                        &ev.conversation,
                        topic.as_deref(),
                    ))];
                }
                let Some(intent) = self.catalog.intent(name) else {
                    return self.reject(origin, source, "unknown command");
                };
                if !analysis.invalid.is_empty() {
                    let reason = format!(
                        "{}\nusage: {}",
                        analysis.invalid.join("; "),
                        intent.usage(self.nlu.prefix())
                    );
                    return self.reject(origin, source, &reason);
                }
                let mut req = self.request(origin, intent, source);
                req.set_params(&analysis.slots);
                self.start(ev, req).await
            }
        }
    }

    fn request(&self, origin: &Origin, intent: &Intent, source: &str) -> Request {
        Request {
            id: origin.request_id.clone(),
            intent: intent.id.0.clone(),
            params: Default::default(),
            requester: origin.ev.principal.id.0.clone(),
            requester_name: origin.ev.principal.display_name.clone(),
            requester_roles: origin.ev.principal.roles.clone(),
            conversation: origin.ev.conversation.0.clone(),
            text: origin.ev.text.clone(),
            source: source.to_string(),
            asked: 0,
        }
    }

    /// A new (or picked, or completed) request: authorize, then let the dialog decide.
    async fn start(&self, ev: &ChatEvent, req: Request) -> Vec<Reply> {
        let Some(intent) = self.catalog.intent(&req.intent) else {
            return vec![Reply::Error("unknown command".into())];
        };
        if let Err(refusal) = self.authorize(&req, intent) {
            return refusal;
        }
        let preview = self.preview(intent, &req).await;
        let ctx = dialog::Ctx {
            catalog: &self.catalog,
            prefix: self.nlu.prefix(),
        };
        let (next, effects) = dialog::begin(dialog::Understood::Request { req, preview }, &ctx);
        self.apply(ev, next, effects, None).await
    }

    /// The current state the action can tell, for the confirmation text.
    async fn preview(&self, intent: &Intent, req: &Request) -> Option<String> {
        let spec = intent.preview.as_ref()?;
        if intent.risk == crate::catalog::Risk::Read {
            return None;
        }
        let mut params = req.typed(&self.catalog)?;
        // only a complete request is previewed: a dropped argv element must never shift the rest
        self.catalog.complete(intent, &mut params).ok()?;
        // probes run programs too: they are rate-limited like actions, and one whose audit row
        // cannot be written does not run
        // not known (a coordination error) counts as over the limit
        if !self
            .coordination
            .admit(
                crate::state::PROBES,
                &req.requester,
                self.settings.dialogs.rate_limit_per_minute,
            )
            .unwrap_or(false)
        {
            self.audit_req(Kind::Denied, req, "probe_rate_limited", "too many state probes in the last minute; confirmation shown without the current state", None, None);
            return None;
        }
        if let Err(e) = self.write_req(
            Kind::Dialog,
            req,
            "preview",
            "read-only state probe for the confirmation",
            None,
            None,
        ) {
            tracing::error!(request = %req.id, error = %e, "could not audit a state probe; it was not run");
            return None;
        }
        let action = crate::catalog::Action::Exec(spec.clone());
        let ctx = actions::Context {
            request_id: req.id.clone(),
            user_id: req.requester.clone(),
        };
        match actions::execute(&action, &params, &self.runtime, &ctx, &self.redactor, None).await {
            Ok(o) if o.status == actions::Status::Succeeded => o
                .output
                .lines()
                .next()
                .map(|l| l.trim().chars().take(200).collect()),
            _ => None,
        }
    }

    /// Frees the target of action `rid`, which ended. A failure is logged: the action is over
    /// either way, and a shared store lets a claim lapse.
    fn release(&self, rid: &str) {
        if let Err(e) = self.coordination.finish(rid) {
            tracing::error!(request = %rid, error = %e, "could not free the action's target");
        }
    }

    /// Stores an open question until `expires`, redacted like everything else that is kept on
    /// disk (its texts and values, and every candidate's). `Ok(false)`: another question is
    /// already waiting in that conversation.
    fn keep(&self, p: &mut Pending, expires: u64) -> anyhow::Result<bool> {
        let redact = |r: &mut Request| {
            r.text = self.redactor.redact(&r.text);
            for v in r.params.values_mut() {
                *v = self.redactor.redact(v);
            }
        };
        redact(p.request_mut());
        if let Pending::Choose { candidates, .. } = p {
            candidates.iter_mut().for_each(redact);
        }
        self.dialogs.put(&p.request().conversation, p, expires)
    }

    /// Carries out a dialog's effects; stores the next pending state. `deadline` keeps the
    /// expiry of a dialog that is stored back unchanged (an answer that decided nothing does not
    /// buy it more time).
    fn apply<'a>(
        &'a self,
        ev: &'a ChatEvent,
        next: Option<Pending>,
        effects: Vec<Effect>,
        deadline: Option<(String, u64)>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Vec<Reply>> + Send + 'a>> {
        Box::pin(async move {
            let mut replies = Vec::new();
            if let Some(mut p) = next {
                let rid = p.request().id.clone();
                let expires = match deadline {
                    Some((id, at)) if id == rid => at,
                    _ => {
                        let timeout = self
                            .catalog
                            .intent(&p.request().intent)
                            .and_then(|i| i.confirm_timeout)
                            .unwrap_or(self.settings.dialogs.confirm_timeout);
                        store::now() + timeout.as_secs()
                    }
                };
                match self.keep(&mut p, expires) {
                    Ok(true) => {}
                    Ok(false) => {
                        let req = p.request().clone();
                        self.audit_req(
                            Kind::Dialog,
                            &req,
                            "refused_busy",
                            "another approval is waiting in this conversation",
                            None,
                            None,
                        );
                        return vec![Reply::Error(format!("another approval is already waiting here; ask again once it is answered or expired (ref {rid}); nothing was run"))];
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "could not store a dialog");
                        return vec![Reply::Error(format!(
                            "couldn't keep track of that question, so nothing will run (ref {rid})"
                        ))];
                    }
                }
            }
            for e in effects {
                match e {
                    Effect::Say(t) => replies.push(Reply::Text(t)),
                    Effect::Ask {
                        dialog,
                        text,
                        choices,
                    } => replies.push(Reply::Ask {
                        dialog,
                        text,
                        choices,
                    }),
                    Effect::Audit {
                        req,
                        status,
                        detail,
                    } => self.audit_req(Kind::Dialog, &req, status, &detail, None, None),
                    Effect::Begin(req) => replies.extend(self.start(ev, req).await),
                    Effect::Run {
                        mut req,
                        confirmed_by,
                        approved_by,
                    } => {
                        // the requester answering now: check the roles they hold now, not the
                        // ones they held when asking
                        if ev.principal.id.0 == req.requester {
                            req.requester_roles = ev.principal.roles.clone();
                        } else {
                            // approved by someone else: the requester's roles may have changed
                            // since they asked; ask their platform, and run nothing if it
                            // cannot tell
                            match self.requester_roles_now(&req).await {
                                Ok(roles) => req.requester_roles = roles,
                                Err(refusal) => {
                                    replies.extend(refusal);
                                    continue;
                                }
                            }
                        }
                        replies.extend(self.run(req, confirmed_by, approved_by).await)
                    }
                }
            }
            replies
        })
    }

    /// If the speaker has a pending dialog, the input answers it. A pending approval (which
    /// anyone may answer) takes only approve / deny words, and the requester's own yes / no;
    /// other messages pass it by. Approval words go to an approval first.
    async fn answer_pending(&self, ev: &ChatEvent, input: Input) -> Option<Vec<Reply>> {
        let conv = &ev.conversation.0;
        let me = ev.principal.id.0.as_str();
        let text = match &input {
            Input::Text(t) | Input::Button(t) => t.as_str(),
            Input::Timeout => "",
        };
        let fail = |e: anyhow::Error| {
            tracing::error!(error = %e, "dialog store failed");
            Some(vec![Reply::Error(
                "couldn't read the pending question; nothing was run".into(),
            )])
        };
        let approval = match self.dialogs.peek(conv, store::ANYONE) {
            Ok(a) => {
                a.filter(|a| dialog::answers_approval(text, a.pending.request().requester == me))
            }
            Err(e) => return fail(e),
        };
        if let (Input::Text(_), Some(a)) = (&input, &approval) {
            if let Some(refusal) = self.unbound_approval(ev, a, text) {
                return Some(refusal);
            }
        }
        // a strict command is a new request, never an answer to one's own question
        let own = !text.trim_start().starts_with(self.nlu.prefix());
        if !own {
            // ...and after a did-you-mean it is the speaker's own choice: the question closes,
            // so that their next words are not taken for a pick from it
            match self.dialogs.peek(conv, me) {
                Ok(Some(s)) if matches!(s.pending, Pending::Choose { .. }) => {
                    let req = s.pending.request().clone();
                    if let Ok(Some(_)) = self.dialogs.take_dialog(conv, me, &req.question_id()) {
                        self.audit_req(
                            Kind::Dialog,
                            &req,
                            "superseded",
                            "its requester sent a command instead",
                            None,
                            None,
                        );
                    }
                }
                Ok(_) => {}
                Err(e) => return fail(e),
            }
        }
        let own_first = !dialog::answers_approval(text, false);
        let mut order = vec![];
        if own && own_first {
            order.push(me);
        }
        if approval.is_some() {
            order.push(store::ANYONE);
        }
        if own && !own_first {
            order.push(me);
        }
        // the approval taken is the one checked above (by its question id), never one stored in
        // its place meanwhile
        let approval_question = approval.as_ref().map(|a| a.pending.request().question_id());
        let mut taken = None;
        for owner in order {
            let took = match (&approval_question, owner == store::ANYONE) {
                (Some(q), true) => self.dialogs.take_dialog(conv, owner, q),
                _ => self.dialogs.take(conv, owner),
            };
            match took {
                Ok(Some(s)) => {
                    taken = Some(s);
                    break;
                }
                Ok(None) => {}
                Err(e) => return fail(e),
            }
        }
        let stored = taken?;
        Some(self.answer(ev, stored, input).await)
    }

    /// A typed approval is bound to the request it approves: "approve 5c1e0a92" must name the
    /// waiting one, and a bare "approve" is refused (with the reference to use) while another
    /// approval closed here in the last two minutes, since the approver may have read that one.
    /// Buttons are bound to their question already. The refusal is audited.
    fn unbound_approval(
        &self,
        ev: &ChatEvent,
        a: &store::Stored,
        text: &str,
    ) -> Option<Vec<Reply>> {
        let req = a.pending.request();
        if req.requester == ev.principal.id.0 || !dialog::is_approve(text) {
            return None;
        }
        let what = self
            .catalog
            .intent(&req.intent)
            .and_then(|i| req.typed(&self.catalog).map(|p| dialog::describe(i, &p)))
            .unwrap_or_else(|| req.intent.clone());
        let (_, named) = dialog::named_approval(text);
        let reason = match named {
            Some(r) if r.eq_ignore_ascii_case(&req.id) => return None,
            Some(r) => format!(
                "approval {r} is not waiting here; the one waiting is {what} (ref {}): reply \"approve {}\" to approve it",
                req.id, req.id
            ),
            None => {
                let recent = lock(&self.withdrawn)
                    .get(&a.conversation)
                    .is_some_and(|t| t.elapsed() < Duration::from_secs(120));
                if !recent {
                    return None;
                }
                format!(
                    "another approval closed here a moment ago; to approve {what} (ref {}), reply \"approve {}\"",
                    req.id, req.id
                )
            }
        };
        self.audit_req(
            Kind::Denied,
            req,
            "approval_unbound",
            &format!("{}: {reason}", ev.principal.id),
            None,
            None,
        );
        Some(vec![Reply::Error(reason)])
    }

    /// Steps a dialog taken from the store with one input and carries out the effects. An
    /// expired dialog only says so: the answer was meant for it, so it is not handled as a new
    /// message.
    async fn answer(&self, ev: &ChatEvent, stored: store::Stored, input: Input) -> Vec<Reply> {
        let ctx = dialog::Ctx {
            catalog: &self.catalog,
            prefix: self.nlu.prefix(),
        };
        // a dialog whose time ran out only says so, whatever the input (an answer was meant
        // for it, so it is not handled as a new message either)
        let input = if stored.expired() {
            Input::Timeout
        } else {
            input
        };
        let actor = match input {
            Input::Timeout => self.actor(ev, None),
            _ => self.actor(ev, Some(&stored.pending)),
        };
        let deadline = Some((stored.pending.request().id.clone(), stored.expires_at));
        let was_approval = matches!(stored.pending, Pending::Approve { .. });
        let (next, effects) = dialog::step(stored.pending, input, &actor, &ctx);
        // any approval that closes (run, denied, withdrawn or expired) makes a bare typed
        // "approve" ambiguous for a while
        if was_approval && next.is_none() {
            lock(&self.withdrawn).insert(stored.conversation.clone(), Instant::now());
        }
        self.apply(ev, next, effects, deadline).await
    }

    /// Who may answer an open question: the one rule for typed answers and button presses. Its
    /// requester answers a confirmation, a question or a choice, and may withdraw an approval
    /// request (`withdraw`: deny / no); anyone else answers only an approval, and only as an
    /// approver the policy names for that intent (never of their own request). Typed answers
    /// reach only the speaker's own dialog or an approval (the store keys them by owner), and
    /// the dialog machine hears this rule's answer for an approval as [`Actor::may_approve`].
    fn may_answer(&self, who: &Principal, pending: &Pending, withdraw: bool) -> Result<(), String> {
        let req = pending.request();
        let own = req.requester == who.id.0;
        match pending {
            Pending::Approve { .. } if own && withdraw => Ok(()),
            Pending::Approve { .. } => {
                let intent = self
                    .catalog
                    .intent(&req.intent)
                    .ok_or_else(|| "that command no longer exists".to_string())?;
                self.policy
                    .may_approve(who, &req.requester, intent)
                    .map_err(|d| d.to_string())
            }
            _ if own => Ok(()),
            _ => Err(format!(
                "only {} can answer this question",
                req.requester_name
            )),
        }
    }

    /// The person answering, with what [`Bot::may_answer`] says of their approving `pending`.
    fn actor(&self, ev: &ChatEvent, pending: Option<&Pending>) -> Actor {
        let may_approve = match pending {
            Some(p @ Pending::Approve { .. }) => self.may_answer(&ev.principal, p, false),
            _ => Err("nothing to approve".into()),
        };
        Actor {
            id: ev.principal.id.0.clone(),
            name: ev.principal.display_name.clone(),
            may_approve,
        }
    }

    /// Dialogs of one platform (`shell`, `discord`) whose time ran out: announced (per
    /// conversation) and audited.
    pub async fn expire_due(&self, platform: &str) -> Vec<Expired> {
        let expired = match self.dialogs.take_expired(store::now(), platform) {
            Ok(e) => e,
            Err(e) => {
                tracing::error!(error = %e, "dialog store failed");
                return vec![];
            }
        };
        let mut out = Vec::new();
        lock(&self.owed).retain(|(conversation, text)| {
            if conversation.platform() != platform {
                return true;
            }
            out.push(Expired {
                conversation: conversation.clone(),
                dialog: String::new(),
                reply: Reply::Text(text.clone()),
            });
            false
        });
        // expiry goes through the same interpreter as any answer: the timeout is the input, and
        // "opsbot" the one who gives it
        for s in expired {
            let conversation = ConversationId(s.conversation.clone());
            let dialog = s.pending.request().question_id();
            let ev = ChatEvent {
                conversation: conversation.clone(),
                principal: Principal {
                    id: UserId("opsbot".into()),
                    display_name: "opsbot".into(),
                    roles: vec![],
                },
                text: String::new(),
            };
            for reply in self.answer(&ev, s, Input::Timeout).await {
                out.push(Expired {
                    conversation: conversation.clone(),
                    dialog: dialog.clone(),
                    reply: self.redact_reply(reply),
                });
            }
        }
        out
    }

    /// `cancel` (or `!cancel`) while an action of this conversation runs: its requester or an
    /// approver may stop it.
    fn cancel_running(&self, origin: &Origin) -> Option<Vec<Reply>> {
        let ev = origin.ev;
        let t = ev.text.trim().to_lowercase();
        let prefix = self.nlu.prefix();
        if !(t == "cancel"
            || t == "stop"
            || t == format!("{prefix}cancel")
            || t == format!("{prefix}stop"))
        {
            return None;
        }
        let conv = &ev.conversation.0;
        let here = match self.coordination.running_in(conv) {
            Ok(here) => here,
            Err(e) => {
                tracing::error!(error = %e, "coordination failed");
                return Some(vec![Reply::Error(
                    "couldn't read which actions are running; nothing was stopped".into(),
                )]);
            }
        };
        // the newest one the person may stop (their own, or one they may approve): what they
        // most likely mean
        let mine = here.iter().find(|r| {
            r.requester == ev.principal.id.0
                || self.catalog.intent(&r.intent).is_some_and(|i| {
                    self.policy
                        .may_approve(&ev.principal, &r.requester, i)
                        .is_ok()
                })
        });
        match mine {
            Some(r) => {
                let sent = match self.coordination.cancel(&r.id) {
                    Ok(asked) => asked == Some(true),
                    Err(e) => {
                        tracing::error!(request = %r.id, error = %e, "coordination failed");
                        return Some(vec![Reply::Error(format!(
                            "couldn't ask {} to stop (ref {}); try again",
                            r.what, r.id
                        ))]);
                    }
                };
                let (id, what) = (r.id.clone(), r.what.clone());
                let row = Entry {
                    request_id: &id,
                    platform: ev.conversation.platform(),
                    conversation: conv,
                    user_id: &ev.principal.id.0,
                    user_name: &ev.principal.display_name,
                    text: &ev.text,
                    source: "dialog",
                    intent: "",
                    params: None,
                    status: "cancel_requested",
                    exit_code: None,
                    duration_ms: None,
                    detail: &what,
                };
                if let Err(e) = self.audit.append(Kind::Dialog, &row) {
                    tracing::error!(error = %e, "could not audit a cancel");
                }
                Some(vec![Reply::Text(if sent {
                    format!("cancelling {what} (ref {id})")
                } else {
                    format!("{what} (ref {id}) is already stopping")
                })])
            }
            None if !here.is_empty() => Some(self.reject(
                origin,
                "dialog",
                "you can only cancel your own actions (or ones you may approve)",
            )),
            None => Some(vec![Reply::Text("nothing to cancel".into())]),
        }
    }

    /// A did-you-mean: the readings (the classifier's best and its alternatives, each with the
    /// values the message gives for it) go to the dialog, which asks which was meant. The
    /// message is audited as suggested, with the commands offered.
    async fn suggest(&self, origin: &Origin<'_>, a: &Analysis) -> Vec<Reply> {
        let mut names: Vec<&str> = a.intent.iter().map(String::as_str).collect();
        names.extend(a.alternatives.iter().map(|x| x.intent.as_str()));
        let readings: Vec<Request> = names
            .into_iter()
            .filter(|n| *n != HELP)
            .filter_map(|name| self.catalog.intent(name))
            .take(dialog::MAX_READINGS)
            .map(|intent| {
                let params = if Some(intent.id.0.as_str()) == a.intent.as_deref() {
                    a.slots.clone()
                } else {
                    slots::extract(&self.catalog, intent, &origin.ev.text).params
                };
                let mut req = self.request(origin, intent, a.source.as_str());
                req.set_params(&params);
                req
            })
            .collect();
        if readings.is_empty() {
            return self.reject(origin, a.source.as_str(), &self.not_understood(a));
        }
        let ctx = dialog::Ctx {
            catalog: &self.catalog,
            prefix: self.nlu.prefix(),
        };
        let (next, effects) = dialog::begin(dialog::Understood::Readings(readings), &ctx);
        let offered: Vec<&str> = effects
            .iter()
            .flat_map(|e| match e {
                Effect::Ask { choices, .. } => choices.iter().map(|(_, c)| c.as_str()).collect(),
                _ => vec![],
            })
            .collect();
        let row = Entry {
            text: &origin.ev.text,
            source: a.source.as_str(),
            status: "suggested",
            detail: &offered.join("; "),
            ..self.entry(origin)
        };
        if let Err(e) = self.audit.append(Kind::Rejected, &row) {
            tracing::error!(error = %e, "could not audit a suggestion");
        }
        self.apply(origin.ev, next, effects, None).await
    }

    fn entry<'a>(&self, origin: &'a Origin) -> Entry<'a> {
        let ev = origin.ev;
        Entry {
            request_id: &origin.request_id,
            platform: ev.conversation.platform(),
            conversation: &ev.conversation.0,
            user_id: &ev.principal.id.0,
            user_name: &ev.principal.display_name,
            ..Default::default()
        }
    }

    fn reject(&self, origin: &Origin, source: &str, reason: &str) -> Vec<Reply> {
        let text = visible(&origin.ev.text);
        let row = Entry {
            text: &text,
            source,
            status: "rejected",
            detail: reason,
            ..self.entry(origin)
        };
        if let Err(e) = self.audit.append(Kind::Rejected, &row) {
            tracing::error!(request = %origin.request_id, error = %e, "could not audit a rejected message");
        }
        vec![Reply::Error(reason.to_string())]
    }

    fn audit_req(
        &self,
        kind: Kind,
        req: &Request,
        status: &str,
        detail: &str,
        exit_code: Option<i32>,
        duration_ms: Option<u64>,
    ) {
        if let Err(e) = self.write_req(kind, req, status, detail, exit_code, duration_ms) {
            tracing::error!(request = %req.id, error = %e, "could not write an audit row");
        }
    }

    /// One audit row about `req`.
    fn write_req(
        &self,
        kind: Kind,
        req: &Request,
        status: &str,
        detail: &str,
        exit_code: Option<i32>,
        duration_ms: Option<u64>,
    ) -> anyhow::Result<i64> {
        let conv = ConversationId(req.conversation.clone());
        let row = Entry {
            request_id: &req.id,
            platform: conv.platform(),
            conversation: &req.conversation,
            user_id: &req.requester,
            user_name: &req.requester_name,
            text: &req.text,
            source: &req.source,
            intent: &req.intent,
            // typed values (durations in seconds, numbers as numbers) wherever they validate
            params: match req.typed(&self.catalog) {
                Some(typed) => serde_json::to_string(&typed).ok(),
                None => serde_json::to_string(&req.params).ok(),
            },
            status,
            exit_code,
            duration_ms,
            detail,
        };
        self.audit.append(kind, &row)
    }

    /// Checks again, then audits and runs the action, and audits the outcome.
    async fn run(
        &self,
        req: Request,
        confirmed_by: Option<String>,
        approved_by: Option<String>,
    ) -> Vec<Reply> {
        let rid = req.id.clone();
        let Some(intent) = self.catalog.intent(&req.intent) else {
            return vec![Reply::Error("unknown command".into())];
        };
        // validated again from the stored text, then completed with defaults
        let Some(mut params) = req.typed(&self.catalog) else {
            self.audit_req(
                Kind::Rejected,
                &req,
                "rejected",
                "a stored value failed validation",
                None,
                None,
            );
            return vec![Reply::Error(format!(
                "a value of {} is no longer valid; nothing was run (ref {rid})",
                intent.id
            ))];
        };
        if let Err(missing) = self.catalog.complete(intent, &mut params) {
            let msg = format!("{} needs {missing}; nothing was run", intent.id);
            self.audit_req(Kind::Rejected, &req, "rejected", &msg, None, None);
            return vec![Reply::Error(msg)];
        }
        // authorization again, right before execution
        if let Err(refusal) = self.authorize(&req, intent) {
            return refusal;
        }
        let what = dialog::describe(intent, &params);
        let target = target_of(intent, &params);
        let claim = Claim {
            id: rid.clone(),
            requester: req.requester.clone(),
            conversation: req.conversation.clone(),
            intent: intent.id.0.clone(),
            target,
            what: what.clone(),
        };
        let started = match self
            .coordination
            .start(claim, self.settings.dialogs.rate_limit_per_minute)
        {
            Ok(Start::Started(rx)) => Ok(rx),
            Ok(Start::Busy(holder)) => Err(("busy", format!("{} is already running for the same target (started by {}, ref {}); try again when it is done", holder.what, holder.requester, holder.id))),
            Ok(Start::RateLimited) => Err((
                "rate_limited",
                format!(
                    "you have started {} actions in the last minute; wait a moment",
                    self.settings.dialogs.rate_limit_per_minute
                ),
            )),
            Err(e) => {
                tracing::error!(request = %rid, error = %e, "coordination failed; action not run");
                Err((
                    "coordination_failed",
                    "couldn't check what else is running, so nothing was run".to_string(),
                ))
            }
        };
        let rx = match started {
            Ok(rx) => rx,
            Err((status, msg)) => {
                self.audit_req(Kind::Denied, &req, status, &msg, None, None);
                return vec![Reply::Error(msg)];
            }
        };
        let mut who = Vec::new();
        if let Some(c) = &confirmed_by {
            who.push(format!("confirmed by {c}"));
        }
        if let Some(a) = &approved_by {
            who.push(format!("approved by {a}"));
        }
        let detail = if who.is_empty() {
            what.clone()
        } else {
            format!("{what}; {}", who.join(", "))
        };
        let mut audited = req.clone();
        audited.set_params(&params);
        if let Err(e) = self.write_req(Kind::Request, &audited, "started", &detail, None, None) {
            self.release(&rid);
            tracing::error!(request = %rid, error = %e, "audit write failed; action not run");
            return vec![Reply::Error(format!(
                "couldn't record the request, so nothing was run (ref {rid})"
            ))];
        }
        tracing::info!(request = %rid, user = %req.requester, action = %self.redactor.redact(&what), "running");
        let ctx = actions::Context {
            request_id: rid.clone(),
            user_id: req.requester.clone(),
        };
        let result = match intent.action {
            crate::catalog::Action::Timeline => Ok(self.timeline(&params)),
            _ => {
                actions::execute(
                    &intent.action,
                    &params,
                    &self.runtime,
                    &ctx,
                    &self.redactor,
                    Some(rx),
                )
                .await
            }
        };
        self.release(&rid);
        let (reply, status, exit_code, duration_ms, detail) = match result {
            Ok(o) => {
                let secs = o.duration.as_secs_f64();
                let summary = match o.status {
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
                    actions::Status::Cancelled => {
                        format!("{what}: cancelled after {secs:.1}s (ref {rid})")
                    }
                };
                let mut body = o.output.clone();
                if o.truncated {
                    body.push_str("\n… (output cut)");
                }
                let status = serde_json::to_value(o.status)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default();
                (
                    Reply::Output {
                        summary,
                        body,
                        ok: o.status == actions::Status::Succeeded,
                    },
                    status,
                    o.exit_code,
                    Some(o.duration.as_millis() as u64),
                    o.output,
                )
            }
            Err(e) => {
                let detail = e.to_string();
                tracing::error!(request = %rid, error = %self.redactor.redact(&detail), "action error");
                // a reason the operator can act on, without internals: which program would not
                // start (a path from the catalogue), or which secret is missing
                let why = match &e {
                    actions::Error::Spawn { program, reason } => {
                        let kind = if reason.contains("No such file") {
                            "was not found"
                        } else if reason.contains("ermission denied") {
                            "is not executable"
                        } else {
                            "could not be started"
                        };
                        format!(": the program {program} {kind}")
                    }
                    actions::Error::MissingSecret { name } => format!(": secret {name} is not set"),
                    _ => String::new(),
                };
                (
                    Reply::Error(format!("couldn't run {}{why} (ref {rid})", intent.id)),
                    "error".to_string(),
                    None,
                    None,
                    detail,
                )
            }
        };
        self.audit_req(
            Kind::Outcome,
            &audited,
            &status,
            &detail,
            exit_code,
            duration_ms,
        );
        metrics::counter!("opsbot_actions_total", "intent" => intent.id.0.clone(), "outcome" => status.clone())
            .increment(1);
        let _ = self.finished.send(Finished {
            request_id: rid.clone(),
            intent: intent.id.0.clone(),
            risk: intent.risk,
            what: self.redactor.redact(&what),
            requester: req.requester.clone(),
            requester_name: req.requester_name.clone(),
            conversation: req.conversation.clone(),
            status,
            by: who.join(", "),
        });
        vec![reply]
    }

    /// The built-in timeline: the audit log's chronology of the last `since` (an hour when not
    /// given), every conversation, as markdown.
    fn timeline(&self, params: &Params) -> actions::Outcome {
        let started = Instant::now();
        let since = match params.get("since") {
            Some(Value::Duration(secs)) => Duration::from_secs(*secs),
            _ => crate::timeline::DEFAULT_SINCE,
        };
        let until = std::time::SystemTime::now();
        let from = until.checked_sub(since).unwrap_or(std::time::UNIX_EPOCH);
        let rows = self.audit.between(
            &crate::timeline::stamp(from),
            &crate::timeline::stamp(until),
        );
        let (status, output) = match rows {
            Ok(rows) => (
                actions::Status::Succeeded,
                crate::timeline::render(&rows, from, until, None),
            ),
            Err(e) => (
                actions::Status::Failed,
                format!("the audit log could not be read: {e}"),
            ),
        };
        actions::Outcome {
            status,
            exit_code: None,
            duration: started.elapsed(),
            output: self.redactor.redact(&output),
            truncated: false,
        }
    }

    /// The policy's decision for the requester as recorded in `req`; a denial is audited and
    /// becomes the reply.
    fn authorize(&self, req: &Request, intent: &Intent) -> Result<(), Vec<Reply>> {
        let conversation = ConversationId(req.conversation.clone());
        self.policy
            .authorize(&principal_of(req), intent, &conversation)
            .map_err(|denial| {
                self.audit_req(Kind::Denied, req, "denied", &denial.to_string(), None, None);
                vec![Reply::Error(denial.to_string())]
            })
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

    /// `!help` lists the commands the asker may run here; `!help deploy` explains one.
    pub fn help(
        &self,
        who: &Principal,
        conversation: &ConversationId,
        topic: Option<&str>,
    ) -> String {
        let prefix = self.nlu.prefix();
        match topic.map(|t| t.trim_start_matches(prefix)) {
            None => {
                let visible = self
                    .policy
                    .visible(who, &self.catalog.intents, conversation);
                let mut out = String::from("commands you can run here:\n");
                for i in &visible {
                    out.push_str(&format!("  {:<44} {}\n", i.usage(prefix), i.description));
                }
                out.push_str(&format!(
                    "  {:<44} explain one command\n",
                    format!("{prefix}help [command]")
                ));
                if visible.len() < self.catalog.intents.len() {
                    out.push_str(&format!(
                        "({} more need roles you do not hold)\n",
                        self.catalog.intents.len() - visible.len()
                    ));
                }
                out.trim_end().to_string()
            }
            Some(name) => match self
                .catalog
                .intent(name)
                .or_else(|| self.catalog.intent(&name.replace(' ', ".")))
            {
                None => {
                    let near = crate::nlu::strict::closest_command(&self.catalog, name)
                        .map(|i| format!("; did you mean {}?", i.id))
                        .unwrap_or_default();
                    format!("no command '{name}'{near}")
                }
                Some(i) => {
                    let mut out = format!(
                        "{}: {}\nusage: {}\nrisk: {}; roles: {}\n",
                        i.id,
                        i.description,
                        i.usage(prefix),
                        i.risk,
                        i.roles.join(", ")
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
}

/// The requester as recorded in the request (id and the roles the adapter saw).
fn principal_of(req: &Request) -> Principal {
    Principal {
        id: UserId(req.requester.clone()),
        display_name: req.requester_name.clone(),
        roles: req.requester_roles.clone(),
    }
}

/// What a change locks while it runs: the (service, env) it touches, whatever the intent, so a
/// scale never runs beside a deploy of the same service and environment; an intent that names
/// neither locks its own name and values. Reads lock nothing (`None`).
fn target_of(intent: &Intent, params: &Params) -> Option<String> {
    if intent.risk == crate::catalog::Risk::Read {
        return None;
    }
    let get = |k: &str| params.get(k).map(|v| v.to_string());
    match (get("service"), get("env")) {
        (None, None) => {
            let values: Vec<String> = params
                .iter()
                .filter(|(k, _)| {
                    intent
                        .param(k)
                        .is_some_and(|p| !matches!(p.kind, ParamKind::Text { .. }))
                })
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            Some(format!("{}/{}", intent.id, values.join("/")))
        }
        (service, env) => Some(format!(
            "{}/{}",
            service.unwrap_or_else(|| "*".into()),
            env.unwrap_or_else(|| "*".into())
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // regression (issue 13): the lock was per intent (a scale ran beside a deploy of the same
    // service and environment), and reads were locked too
    #[test]
    fn changes_lock_service_and_env_and_reads_lock_nothing() {
        let catalog = crate::catalog::load_dir(std::path::Path::new("intents")).unwrap();
        let params = |pairs: &[(&str, &str)]| -> Params {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), Value::Entity(v.to_string())))
                .collect()
        };
        let api_staging = params(&[("service", "api"), ("env", "staging")]);
        let t = |intent: &str, p: &Params| target_of(catalog.intent(intent).unwrap(), p);
        let deploy = t("deploy", &api_staging);
        assert!(deploy.is_some());
        for other in ["scale", "restart", "rollback"] {
            assert_eq!(t(other, &api_staging), deploy, "{other}");
        }
        assert_ne!(
            t(
                "deploy",
                &params(&[("service", "api"), ("env", "production")])
            ),
            deploy
        );
        // a change that names no environment conflicts with any environment of its service
        let api_any = t("alerts.silence", &params(&[("service", "api")])).unwrap();
        assert!(crate::state::overlaps(&api_any, deploy.as_deref().unwrap()));
        assert!(!crate::state::overlaps("web/*", deploy.as_deref().unwrap()));
        for read in ["status", "logs", "oncall", "metrics"] {
            assert_eq!(t(read, &api_staging), None, "{read}");
        }
    }

    // regression (issue 13): bidi controls, zero-width characters and look-alikes of `../` and
    // `/` passed as free text
    #[test]
    fn deceptive_characters_are_refused() {
        for bad in [
            "!incident open sev2 api \u{202E}txt.exe",
            "restart api\u{200B} in prod",
            "!runbook api \u{FF0E}\u{FF0E}\u{FF0F}etc",
            "!runbook api \u{2024}\u{2024}/etc",
            "logs for api\u{2215}web",
            "\u{FEFF}status",
            "!incident open sev2 api ok\u{2028}approved by admin",
            "restart api\u{E0041} in prod",
        ] {
            assert!(deceptive_characters(bad).is_some(), "{bad:?}");
        }
        for good in [
            "restart api in prod",
            "wait… is staging down?",
            "deploy web 👍",
            "nice work 👨\u{200D}💻",
            "déployer l'api en prod",
        ] {
            assert_eq!(deceptive_characters(good), None, "{good:?}");
        }
    }
}
