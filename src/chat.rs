//! The core's own vocabulary for chat: who speaks ([`Principal`], with an immutable [`UserId`]),
//! where ([`ConversationId`]), what they said ([`ChatEvent`]), which messages are addressed to the
//! bot ([`addressed`]), and what it says back ([`Reply`]). Platform-neutral: adapters translate
//! their platform's events into these and render replies back; the core knows no platform.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, RwLock};

/// Platform-qualified, immutable user id (`discord:80351110224678912`, `shell:alice`). Never a
/// display name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UserId(pub String);

/// Platform-qualified conversation id (`discord:<channel id>`, `shell:local`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConversationId(pub String);

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for ConversationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl ConversationId {
    /// The platform part (`discord`, `shell`).
    pub fn platform(&self) -> &str {
        self.0.split_once(':').map(|(p, _)| p).unwrap_or(&self.0)
    }
}

/// Who sent a message: the immutable id decides; the display name is for humans only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub id: UserId,
    pub display_name: String,
    /// Platform roles the adapter could see (mapped to opsbot roles by the policy).
    pub roles: Vec<String>,
}

/// One addressed message, platform-neutral.
#[derive(Debug, Clone)]
pub struct ChatEvent {
    pub conversation: ConversationId,
    pub principal: Principal,
    pub text: String,
}

/// How a message reached the bot, as the adapter saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Addressing {
    /// A direct (private) message to the bot.
    pub direct: bool,
    /// The platform says the message mentions the bot (the mention itself already removed).
    pub mentioned: bool,
}

/// The text to hand to the core if the message is addressed to the bot (a direct message, a
/// mention, the bot's name as first word, or the strict-command prefix); `None` for ambient
/// chatter, which the core never sees. The bot's name is removed ("opsbot, restart api" ->
/// "restart api").
pub fn addressed(text: &str, bot_name: &str, prefix: &str, how: Addressing) -> Option<String> {
    let t = text.trim();
    for lead in [format!("@{bot_name}"), bot_name.to_string()] {
        // compared on the original text, so that case folding never moves a byte boundary
        let Some(head) = t.get(..lead.len()) else {
            continue;
        };
        if !head.eq_ignore_ascii_case(&lead) {
            continue;
        }
        let rest = &t[lead.len()..];
        if rest.is_empty()
            || rest.starts_with(|c: char| c.is_whitespace() || matches!(c, ',' | ':' | '!' | '?'))
        {
            let body = rest
                .trim_start_matches(|c: char| c.is_whitespace() || matches!(c, ',' | ':'))
                .trim();
            return Some(body.to_string());
        }
    }
    if how.direct || how.mentioned || t.starts_with(prefix) {
        return Some(t.to_string());
    }
    None
}

/// What the bot says back; adapters choose how to show each kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// Plain text.
    Text(String),
    /// The result of an action: a one-line summary and the command output (a code block on chat
    /// platforms).
    Output {
        summary: String,
        body: String,
        ok: bool,
    },
    /// A refusal or a failure, short and free of internals.
    Error(String),
    /// A question with choices (value, label): adapters with buttons render them, bound to
    /// `dialog` (the request id) so a press answers this question only; text answers work
    /// everywhere.
    Ask {
        dialog: String,
        text: String,
        choices: Vec<(String, String)>,
    },
    /// Something a system reported (an alert group, a deploy), posted unasked. `mention` is who
    /// the route wants notified (a platform mention, e.g. a Discord role id); each action is a
    /// button (label, strict command line): a press is the presser's own request for that line,
    /// exactly as if typed.
    Notice {
        text: String,
        mention: Option<String>,
        actions: Vec<(String, String)>,
    },
}

impl Reply {
    /// A plain-text rendering, used by the terminal and in tests.
    pub fn to_plain(&self) -> String {
        match self {
            Reply::Text(t) | Reply::Ask { text: t, .. } => t.clone(),
            Reply::Error(t) => format!("error: {t}"),
            Reply::Notice { text, actions, .. } if actions.is_empty() => text.clone(),
            Reply::Notice { text, actions, .. } => {
                let acts: Vec<String> = actions
                    .iter()
                    .map(|(label, line)| format!("{label}: {line}"))
                    .collect();
                format!("{text}\n  actions: {}", acts.join(" | "))
            }
            Reply::Output { summary, body, .. } if body.trim().is_empty() => summary.clone(),
            Reply::Output { summary, body, .. } => {
                let indented: Vec<String> =
                    body.trim_end().lines().map(|l| format!("  {l}")).collect();
                format!("{summary}\n{}", indented.join("\n"))
            }
        }
    }
}

/// A future an [`Outbox`] returns (boxed, so the trait stays object-safe).
pub type Sending<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// A message the bot posted, as its platform can find it again to edit it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Posted {
    pub conversation: ConversationId,
    /// The platform's message id (empty where messages cannot be edited, as in the terminal).
    pub id: String,
}

/// The push path: how the core posts a message that answers nothing (an expiry notice now;
/// alerts next) and edits it later. Each adapter implements it for its platform and registers it
/// in the application's [`Outboxes`]; the application runs the one expiry ticker over them
/// (`app::spawn_expiry_ticker`).
pub trait Outbox: Send + Sync {
    /// The platform it posts to (`discord`, `shell`): conversations named `<platform>:...`.
    fn platform(&self) -> &str;
    /// Posts `reply` in `to`; `None` when it could not be delivered (logged by the adapter).
    fn send<'a>(&'a self, to: &'a ConversationId, reply: &'a Reply) -> Sending<'a, Option<Posted>>;
    /// Replaces what `posted` shows; `false` when it could not.
    fn edit<'a>(&'a self, posted: &'a Posted, reply: &'a Reply) -> Sending<'a, bool>;
    /// Question `question` closed without an answer: its buttons, where it has any, are
    /// disabled with `note`.
    fn close_question<'a>(&'a self, question: &'a str, note: &'a str) -> Sending<'a, ()>;
}

/// The adapters' outboxes by platform, filled as adapters connect.
#[derive(Default)]
pub struct Outboxes(RwLock<HashMap<String, Arc<dyn Outbox>>>);

impl Outboxes {
    pub fn register(&self, outbox: Arc<dyn Outbox>) {
        self.0
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(outbox.platform().to_string(), outbox);
    }
    /// Forgets the outbox of `platform` (an adapter that stops).
    pub fn unregister(&self, platform: &str) {
        self.0
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(platform);
    }
    pub fn get(&self, platform: &str) -> Option<Arc<dyn Outbox>> {
        self.0
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(platform)
            .cloned()
    }
    /// Every registered outbox, at this moment.
    pub fn all(&self) -> Vec<Arc<dyn Outbox>> {
        self.0
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_addressed_messages_pass() {
        let room = Addressing {
            direct: false,
            mentioned: false,
        };
        let dm = Addressing {
            direct: true,
            mentioned: false,
        };
        assert_eq!(
            addressed("I restarted my laptop", "opsbot", "!", room),
            None
        );
        assert_eq!(
            addressed("opsbot, restart the workers in prod", "opsbot", "!", room).as_deref(),
            Some("restart the workers in prod")
        );
        assert_eq!(
            addressed("OpsBot: status", "opsbot", "!", room).as_deref(),
            Some("status")
        );
        assert_eq!(
            addressed("@opsbot deploy api", "opsbot", "!", room).as_deref(),
            Some("deploy api")
        );
        assert_eq!(addressed("opsbotics is a word", "opsbot", "!", room), None);
        // regression: case folding changed byte lengths and sliced inside a character
        assert_eq!(
            addressed("opsbot ẞẞ", "opsbot", "!", room).as_deref(),
            Some("ẞẞ")
        );
        assert_eq!(addressed("İİİİİİİİ", "opsbot", "!", room), None);
        assert_eq!(
            addressed("!status api", "opsbot", "!", room).as_deref(),
            Some("!status api")
        );
        assert_eq!(
            addressed("restart api", "opsbot", "!", dm).as_deref(),
            Some("restart api")
        );
        assert_eq!(
            addressed(
                "restart api",
                "opsbot",
                "!",
                Addressing {
                    direct: false,
                    mentioned: true
                }
            )
            .as_deref(),
            Some("restart api")
        );
    }
}
