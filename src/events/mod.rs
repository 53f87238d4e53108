//! Events into chat: what monitoring, CI and other systems report, routed to conversations,
//! grouped so nobody drowns, and made actionable. The second flow of the architecture: a
//! source's request is checked and parsed ([`sources`], behind the HTTP listener in [`http`]),
//! the [`Hub`] routes it (first matching `[[events.routes]]`), folds an alert group into one
//! message that is edited as alerts fire and resolve, holds back what exceeds a conversation's
//! rate limit for the periodic digest, and posts through the adapters' [`Outbox`]es. Buttons on
//! the message are strict command lines: a press is a request by the presser and goes through
//! `Bot::handle` like typed text. Every event leaves one audit row.

pub mod http;
pub mod settings;
pub mod sources;

use crate::audit::{Entry, Kind};
use crate::catalog::{Catalog, Params};
use crate::chat::{ConversationId, Outboxes, Posted, Reply};
use crate::state::{AuditLog, EventStore};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use serde::{Deserialize, Serialize};
use settings::{ActionSpec, Route, Settings};
use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};

/// Whether an alert (or a whole group) is firing or resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Firing,
    Resolved,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Firing => "firing",
            Status::Resolved => "resolved",
        }
    }
}

/// One alert of a group.
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    pub fingerprint: String,
    pub status: Status,
    pub summary: String,
    pub starts_at: String,
    pub url: String,
}

/// An Alertmanager group: every notification for `key` updates one message.
#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    pub key: String,
    pub status: Status,
    pub alerts: Vec<Alert>,
}

/// Something a system reported, source-neutral.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// `alertmanager`, `github`, `generic:<name>`.
    pub source: String,
    /// `alert`, `push`, `pull_request`, `workflow_run`, `deployment_status`, `release`, `event`.
    pub kind: String,
    pub title: String,
    pub text: String,
    pub severity: Option<String>,
    /// What routes match and action parameters are filled from (service, env, severity,
    /// alertname, repository, branch, ...).
    pub labels: BTreeMap<String, String>,
    pub url: Option<String>,
    /// A failed deploy (offers Rollback).
    pub failed: bool,
    pub group: Option<Group>,
}

/// What is remembered of an alert group between notifications (stored, so a restart keeps
/// editing the same message).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct GroupState {
    /// fingerprint -> the alert as last seen.
    pub alerts: BTreeMap<String, AlertState>,
    /// conversation -> the message that shows the group there.
    pub posted: BTreeMap<String, String>,
    /// Resolved: the message says so and stops changing.
    pub closed: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AlertState {
    pub status: Status,
    pub summary: String,
    /// When its status changed (unix seconds), within the flap window.
    pub changes: Vec<u64>,
}

/// The most alerts a group's state keeps (the oldest resolved ones go first).
const MAX_ALERTS: usize = 200;
/// Alerts listed in one message; the rest are counted.
const SHOWN_ALERTS: usize = 10;
/// Distinct titles a digest lists; the rest are counted.
const DIGEST_TITLES: usize = 10;

#[derive(Default)]
struct Digest {
    count: usize,
    titles: BTreeMap<String, usize>,
    other: usize,
}

/// What became of an event (the audit row's status and a metrics label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// Posted as a new message.
    Posted,
    /// An existing group message edited.
    Edited,
    /// Nothing new (same alerts, same states).
    Duplicate,
    /// Over a conversation's rate limit: in the next digest.
    Held,
    /// No route matched and there is no default.
    Unrouted,
    /// No adapter could take it (not connected, or the platform refused).
    Undelivered,
}

impl Fate {
    pub fn as_str(self) -> &'static str {
        match self {
            Fate::Posted => "posted",
            Fate::Edited => "edited",
            Fate::Duplicate => "duplicate",
            Fate::Held => "held",
            Fate::Unrouted => "unrouted",
            Fate::Undelivered => "undelivered",
        }
    }
}

pub struct Hub {
    settings: Settings,
    catalog: Arc<Catalog>,
    prefix: String,
    audit: Arc<dyn AuditLog>,
    store: Box<dyn EventStore>,
    outboxes: Arc<Outboxes>,
    limiter: DefaultKeyedRateLimiter<String>,
    digests: Mutex<BTreeMap<String, Digest>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The buttons an event gets when its route names none.
fn default_actions(ev: &Event) -> Vec<ActionSpec> {
    let spec = |label: &str, intent: &str, params: &[(&str, &str)]| ActionSpec {
        label: label.into(),
        intent: intent.into(),
        params: params
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    };
    match (&ev.group, ev.failed) {
        (Some(_), _) => vec![
            spec("Ack", "alerts.ack", &[("alert", "{alert_id}")]),
            spec(
                "Silence 1h",
                "alerts.silence",
                &[("service", "{service}"), ("duration", "1h")],
            ),
            spec(
                "Runbook",
                "runbook",
                &[("service", "{service}"), ("topic", "{alertname}")],
            ),
            spec(
                "Logs",
                "logs",
                &[("service", "{service}"), ("env", "{env}")],
            ),
        ],
        (None, true) => vec![spec(
            "Rollback",
            "rollback",
            &[("service", "{service}"), ("env", "{env}")],
        )],
        _ => vec![],
    }
}

/// `{label}` placeholders filled from the labels; `None` when one is missing.
fn fill(template: &str, labels: &BTreeMap<String, String>) -> Option<String> {
    let mut out = String::new();
    let mut rest = template;
    while let Some(i) = rest.find('{') {
        out.push_str(&rest[..i]);
        let (name, after) = rest[i + 1..].split_once('}')?;
        out.push_str(labels.get(name).filter(|v| !v.is_empty())?);
        rest = after;
    }
    out.push_str(rest);
    Some(out)
}

fn severity_mark(s: Option<&str>) -> &'static str {
    match s.map(|s| s.to_ascii_lowercase()).as_deref() {
        Some("critical" | "page" | "error" | "sev1" | "p1") => "🔴",
        Some("warning" | "warn" | "sev2" | "p2") => "🟠",
        Some(_) => "🔵",
        None => "•",
    }
}

impl Hub {
    pub fn new(
        settings: Settings,
        catalog: Arc<Catalog>,
        prefix: String,
        audit: Arc<dyn AuditLog>,
        store: Box<dyn EventStore>,
        outboxes: Arc<Outboxes>,
    ) -> Hub {
        let per_minute = NonZeroU32::new(settings.rate_limit).unwrap_or(NonZeroU32::MIN);
        Hub {
            limiter: RateLimiter::keyed(Quota::per_minute(per_minute)),
            settings,
            catalog,
            prefix,
            audit,
            store,
            outboxes,
            digests: Mutex::default(),
        }
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The first route whose conditions all hold; the default conversations otherwise.
    fn route(&self, ev: &Event) -> Option<Route> {
        let hit = self.settings.routes.iter().find(|r| {
            r.source.as_ref().is_none_or(|s| *s == ev.source)
                && r.kind.as_ref().is_none_or(|k| *k == ev.kind)
                && r.labels.iter().all(|(k, want)| {
                    ev.labels
                        .get(k)
                        .is_some_and(|v| want.iter().any(|w| w == v))
                })
        });
        match hit {
            Some(r) => Some(r.clone()),
            None if !self.settings.default.is_empty() => Some(Route {
                source: None,
                kind: None,
                labels: BTreeMap::new(),
                to: self.settings.default.clone(),
                mention: None,
                actions: None,
            }),
            None => None,
        }
    }

    /// The buttons: each spec whose parameters can all be filled from the labels and are valid
    /// for its intent, as (label, strict command line).
    fn actions(&self, ev: &Event, route: &Route) -> Vec<(String, String)> {
        let specs = route.actions.clone().unwrap_or_else(|| default_actions(ev));
        specs
            .iter()
            .filter_map(|spec| {
                let intent = self.catalog.intent(&spec.intent)?;
                let mut params = Params::new();
                for (name, template) in &spec.params {
                    let param = intent.params.iter().find(|p| &p.name == name)?;
                    let raw = fill(template, &ev.labels)?;
                    params.insert(name.clone(), self.catalog.parse_value(param, &raw).ok()?);
                }
                // a required parameter the spec cannot give would only make a question
                if intent
                    .params
                    .iter()
                    .any(|p| p.required && !params.contains_key(&p.name))
                {
                    return None;
                }
                Some((
                    spec.label.clone(),
                    crate::dialog::strict_line(intent, &params, &self.prefix),
                ))
            })
            .collect()
    }

    fn audit(&self, id: &str, ev: &Event, to: &[ConversationId], fate: &str, detail: &str) {
        let conversations: Vec<&str> = to.iter().map(|c| c.0.as_str()).collect();
        let row = Entry {
            request_id: id,
            platform: "events",
            conversation: &conversations.join(","),
            user_id: &format!("source:{}", ev.source),
            user_name: &ev.source,
            text: &match &ev.group {
                Some(g) => format!("{}: {}", ev.title, g.status.as_str()),
                None => ev.title.clone(),
            },
            source: &ev.source,
            intent: &ev.kind,
            params: serde_json::to_string(&ev.labels).ok(),
            status: fate,
            detail,
            ..Default::default()
        };
        if let Err(e) = self.audit.append(Kind::Event, &row) {
            tracing::error!(error = %e, "could not audit an event");
        }
    }

    /// A request a source sent that was refused (bad credentials, malformed, queue full).
    pub fn refused(&self, source: &str, peer: &str, reason: &str) {
        metrics::counter!("opsbot_events_refused_total", "source" => source.to_string())
            .increment(1);
        let row = Entry {
            request_id: &crate::bot::new_ref(),
            platform: "events",
            user_id: &format!("source:{source}"),
            user_name: peer,
            source,
            status: "refused",
            detail: reason,
            ..Default::default()
        };
        if let Err(e) = self.audit.append(Kind::Event, &row) {
            tracing::error!(error = %e, "could not audit a refused event");
        }
    }

    /// Whether a source's delivery id is new (GitHub retries a delivery under the same id).
    pub fn first_delivery(&self, source: &str, id: &str) -> bool {
        self.store.first_delivery(source, id).unwrap_or_else(|e| {
            tracing::error!(error = %e, "event store: delivery ids");
            true
        })
    }

    /// Routes, groups and posts one event; audited whatever becomes of it.
    pub async fn ingest(&self, ev: Event) -> Fate {
        metrics::counter!("opsbot_events_received_total", "source" => ev.source.clone())
            .increment(1);
        let id = crate::bot::new_ref();
        let fate = match self.route(&ev) {
            None => {
                self.audit(&id, &ev, &[], Fate::Unrouted.as_str(), "no route matched");
                Fate::Unrouted
            }
            Some(route) => {
                metrics::counter!("opsbot_events_routed_total").increment(1);
                let (fate, detail) = match &ev.group {
                    Some(g) => self.update_group(&ev, g, &route).await,
                    None => {
                        let reply = self.render(&ev, None, &route);
                        let fate = self
                            .post(&ev, &route.to, &reply, &mut BTreeMap::new())
                            .await;
                        (fate, String::new())
                    }
                };
                self.audit(&id, &ev, &route.to, fate.as_str(), &detail);
                fate
            }
        };
        match fate {
            Fate::Edited | Fate::Duplicate => {
                metrics::counter!("opsbot_events_grouped_total").increment(1)
            }
            Fate::Held => metrics::counter!("opsbot_events_suppressed_total").increment(1),
            _ => {}
        }
        fate
    }

    /// Posts `reply` where no message shows it yet (rate-limited; what is held goes into the
    /// digest), edits it where one does. `posted` is updated with new message ids.
    async fn post(
        &self,
        ev: &Event,
        to: &[ConversationId],
        reply: &Reply,
        posted: &mut BTreeMap<String, String>,
    ) -> Fate {
        let mut fates = vec![];
        for conv in to {
            let Some(outbox) = self.outboxes.get(conv.platform()) else {
                tracing::warn!(conversation = %conv, "no adapter for this conversation is connected; event not delivered");
                fates.push(Fate::Undelivered);
                continue;
            };
            if let Some(id) = posted.get(&conv.0) {
                let p = Posted {
                    conversation: conv.clone(),
                    id: id.clone(),
                };
                if !id.is_empty() && outbox.edit(&p, reply).await {
                    fates.push(Fate::Edited);
                    continue;
                }
                if id.is_empty() {
                    // a platform without edits (the terminal) shows each change as it comes
                    outbox.send(conv, reply).await;
                    fates.push(Fate::Edited);
                    continue;
                }
            }
            if self.limiter.check_key(&conv.0).is_err() {
                let mut d = lock(&self.digests);
                let d = d.entry(conv.0.clone()).or_default();
                d.count += 1;
                if d.titles.len() < DIGEST_TITLES || d.titles.contains_key(&ev.title) {
                    *d.titles.entry(ev.title.clone()).or_default() += 1;
                } else {
                    d.other += 1;
                }
                fates.push(Fate::Held);
                continue;
            }
            match outbox.send(conv, reply).await {
                Some(p) => {
                    posted.insert(conv.0.clone(), p.id);
                    fates.push(Fate::Posted);
                }
                None => fates.push(Fate::Undelivered),
            }
        }
        // the best thing that happened anywhere names the event's fate
        [Fate::Posted, Fate::Edited, Fate::Held, Fate::Undelivered]
            .into_iter()
            .find(|f| fates.contains(f))
            .unwrap_or(Fate::Undelivered)
    }

    async fn update_group(&self, ev: &Event, g: &Group, route: &Route) -> (Fate, String) {
        let now = crate::dialog::store::now();
        let window = self.settings.flap_window.as_secs();
        let mut st = match self.store.group(&g.key) {
            Ok(s) => s.unwrap_or_default(),
            Err(e) => {
                tracing::error!(error = %e, "event store: reading a group; treated as new");
                GroupState::default()
            }
        };
        let mut changed = st.posted.is_empty();
        for a in &g.alerts {
            match st.alerts.get_mut(&a.fingerprint) {
                Some(s) if s.status == a.status => {}
                Some(s) => {
                    s.status = a.status;
                    s.changes.push(now);
                    changed = true;
                }
                None => {
                    st.alerts.insert(
                        a.fingerprint.clone(),
                        AlertState {
                            status: a.status,
                            summary: a.summary.clone(),
                            changes: vec![now],
                        },
                    );
                    changed = true;
                }
            }
        }
        for s in st.alerts.values_mut() {
            s.changes.retain(|t| now.saturating_sub(*t) <= window);
        }
        if st.alerts.len() > MAX_ALERTS {
            let resolved: Vec<String> = st
                .alerts
                .iter()
                .filter(|(_, s)| s.status == Status::Resolved)
                .map(|(k, _)| k.clone())
                .take(st.alerts.len() - MAX_ALERTS)
                .collect();
            for k in resolved {
                st.alerts.remove(&k);
            }
        }
        let flapping = st
            .alerts
            .values()
            .any(|s| s.changes.len() >= self.settings.flap_changes);
        if st.closed && g.status == Status::Firing && !flapping {
            // a new incident for the same group: a new message, showing this incident's alerts
            // (their change history is kept, for flapping)
            st.posted.clear();
            st.alerts
                .retain(|fp, _| g.alerts.iter().any(|a| &a.fingerprint == fp));
            changed = true;
        }
        if !changed {
            return (Fate::Duplicate, g.key.clone());
        }
        st.closed = g.status == Status::Resolved;
        let reply = self.render(ev, Some(&st), route);
        let fate = self.post(ev, &route.to, &reply, &mut st.posted).await;
        if let Err(e) = self.store.put_group(&g.key, &st) {
            tracing::error!(error = %e, "event store: keeping a group's message");
        }
        (fate, g.key.clone())
    }

    /// The message for an event; for a group, its alerts as they stand.
    fn render(&self, ev: &Event, st: Option<&GroupState>, route: &Route) -> Reply {
        let mut lines = vec![];
        let mut open = true;
        match st {
            Some(st) => {
                let firing = st
                    .alerts
                    .values()
                    .filter(|a| a.status == Status::Firing)
                    .count();
                let flapping = |a: &AlertState| a.changes.len() >= self.settings.flap_changes;
                open = !st.closed;
                let head = if st.closed {
                    "✅ RESOLVED".to_string()
                } else if st.alerts.values().any(flapping) {
                    format!("🔁 FLAPPING · {firing} firing")
                } else {
                    format!("🔥 FIRING · {firing} alert(s)")
                };
                lines.push(format!(
                    "{} {head} · {}{}",
                    severity_mark(ev.severity.as_deref()),
                    ev.title,
                    ev.severity
                        .as_deref()
                        .map(|s| format!(" · {s}"))
                        .unwrap_or_default()
                ));
                let mut alerts: Vec<&AlertState> = st.alerts.values().collect();
                alerts.sort_by_key(|a| (a.status == Status::Resolved, a.summary.clone()));
                for a in alerts.iter().take(SHOWN_ALERTS) {
                    let mark = match a.status {
                        Status::Firing if flapping(a) => "🔁",
                        Status::Firing => "🔥",
                        Status::Resolved => "✅",
                    };
                    lines.push(format!("{mark} {}", a.summary));
                }
                if alerts.len() > SHOWN_ALERTS {
                    lines.push(format!("… and {} more", alerts.len() - SHOWN_ALERTS));
                }
            }
            None => {
                lines.push(format!(
                    "{} {}",
                    severity_mark(ev.severity.as_deref()),
                    ev.title
                ));
            }
        }
        if !ev.text.trim().is_empty() {
            lines.push(ev.text.trim().to_string());
        }
        if let Some(u) = &ev.url {
            lines.push(u.clone());
        }
        let actions = if open {
            self.actions(ev, route)
        } else {
            vec![]
        };
        Reply::Notice {
            text: lines.join("\n"),
            mention: route.mention.clone().filter(|_| open),
            actions,
        }
    }

    /// Posts the outcome of one of the bot's own actions to `[events.announce]`, when its risk
    /// is one announced (not rate-limited: changes are few, and each must be seen).
    pub async fn announce(&self, f: &crate::bot::Finished) {
        let Some(a) = &self.settings.announce else {
            return;
        };
        if !a.risks.contains(&f.risk) {
            return;
        }
        let mark = if f.status == "succeeded" {
            "✅"
        } else {
            "❌"
        };
        let by = if f.by.is_empty() {
            String::new()
        } else {
            format!("; {}", f.by)
        };
        let text = format!(
            "📣 {mark} {} ran `{}` in {}: {}{by} (ref {})",
            f.requester_name, f.what, f.conversation, f.status, f.request_id
        );
        for conv in &a.to {
            match self.outboxes.get(conv.platform()) {
                Some(o) => {
                    o.send(conv, &Reply::Text(text.clone())).await;
                }
                None => {
                    tracing::warn!(conversation = %conv, "no adapter for the announce conversation is connected")
                }
            }
        }
    }

    /// Posts each conversation's digest of what its rate limit held back, and empties it.
    pub async fn flush_digests(&self) {
        let due: Vec<(String, Digest)> = std::mem::take(&mut *lock(&self.digests))
            .into_iter()
            .collect();
        for (conv, d) in due {
            let mut text = format!(
                "📋 {} event(s) held back by the rate limit (at most {} new messages a minute here):",
                d.count, self.settings.rate_limit
            );
            for (title, n) in &d.titles {
                text.push_str(&format!("\n• {title} ×{n}"));
            }
            if d.other > 0 {
                text.push_str(&format!("\n• {} other event(s)", d.other));
            }
            let conv = ConversationId(conv);
            if let Some(outbox) = self.outboxes.get(conv.platform()) {
                outbox.send(&conv, &Reply::Text(text)).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_fill_from_labels_or_not_at_all() {
        let labels = BTreeMap::from([
            ("service".to_string(), "api".to_string()),
            ("env".to_string(), String::new()),
        ]);
        assert_eq!(fill("{service}", &labels).as_deref(), Some("api"));
        assert_eq!(
            fill("svc-{service}-x", &labels).as_deref(),
            Some("svc-api-x")
        );
        assert_eq!(fill("1h", &labels).as_deref(), Some("1h"));
        assert_eq!(fill("{env}", &labels), None);
        assert_eq!(fill("{team}", &labels), None);
        assert_eq!(fill("{service", &labels), None);
    }
}
