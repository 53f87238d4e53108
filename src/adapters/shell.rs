//! The terminal adapter: a REPL on stdin/stdout for trying the bot and for scripted tests. Every
//! line is addressed to the bot (as in a direct message). `/as USER [ROLE...]` switches who is
//! speaking, so multi-person flows can be scripted; `/quit` ends the session. Works the same
//! when piped; a prompt is shown only on a terminal. `/wait` waits for running actions.

use super::{ChatEvent, ConversationId, Principal, Reply, UserId};
use crate::bot::Bot;
use crate::chat::{Outbox, Posted, Sending};
use std::io::IsTerminal;
use std::sync::Arc;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// A principal for the terminal: ids are `shell:<name>`.
pub fn principal(user: &str, roles: Vec<String>) -> Principal {
    Principal {
        id: UserId(format!("shell:{user}")),
        display_name: user.to_string(),
        roles,
    }
}

/// What a line of input means to the terminal adapter itself.
#[derive(Debug, PartialEq)]
pub enum Line {
    Empty,
    Quit,
    SwitchUser {
        user: String,
        roles: Vec<String>,
    },
    /// `/wait`: wait for every running action (for scripts).
    Wait,
    Message(String),
    Usage(String),
}

pub fn classify_line(line: &str) -> Line {
    let t = line.trim_end_matches(['\r', '\n']);
    if t.trim().is_empty() {
        return Line::Empty;
    }
    let trimmed = t.trim();
    if trimmed == "/quit" || trimmed == "/exit" {
        return Line::Quit;
    }
    if trimmed == "/wait" {
        return Line::Wait;
    }
    if let Some(rest) = trimmed.strip_prefix("/as") {
        if rest.is_empty() || rest.starts_with(char::is_whitespace) {
            let mut words = rest.split_whitespace();
            return match words.next() {
                Some(user)
                    if user
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
                        && user.len() <= 64 =>
                {
                    Line::SwitchUser {
                        user: user.to_string(),
                        roles: words.map(str::to_string).collect(),
                    }
                }
                _ => Line::Usage(
                    "usage: /as USER [ROLE...] (user: letters, digits, '_', '-', '.')".into(),
                ),
            };
        }
    }
    Line::Message(t.to_string())
}

/// Sends replies, as plain text, to the printer task.
fn say(tx: &tokio::sync::mpsc::UnboundedSender<String>, replies: impl IntoIterator<Item = Reply>) {
    for r in replies {
        let _ = tx.send(format!("{}\n", r.to_plain()));
    }
}

/// The roles each terminal user was last given (`--role`, `/as`): what they hold now.
#[derive(Default)]
struct Roles(std::sync::Mutex<std::collections::HashMap<String, Vec<String>>>);

impl Roles {
    fn set(&self, p: &Principal) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(p.id.0.clone(), p.roles.clone());
    }
}

impl crate::bot::CurrentRoles for Roles {
    fn current<'a>(
        &'a self,
        user: &'a super::UserId,
        _conversation: &'a super::ConversationId,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Option<Vec<String>>> + Send + 'a>> {
        let roles = self
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&user.0)
            .cloned();
        Box::pin(async move { roles })
    }
}

/// The terminal's [`Outbox`]: what the bot says unasked is printed like any reply.
struct Printer {
    out: tokio::sync::mpsc::UnboundedSender<String>,
}

impl Outbox for Printer {
    fn platform(&self) -> &str {
        "shell"
    }

    fn send<'a>(&'a self, to: &'a ConversationId, reply: &'a Reply) -> Sending<'a, Option<Posted>> {
        say(&self.out, std::iter::once(reply.clone()));
        let posted = Posted {
            conversation: to.clone(),
            id: String::new(),
        };
        Box::pin(async move { Some(posted) })
    }

    fn edit<'a>(&'a self, _posted: &'a Posted, reply: &'a Reply) -> Sending<'a, bool> {
        // a terminal cannot change what it printed: the new text follows
        say(&self.out, std::iter::once(reply.clone()));
        Box::pin(async { true })
    }

    fn close_question<'a>(&'a self, _question: &'a str, _note: &'a str) -> Sending<'a, ()> {
        Box::pin(async {})
    }
}

/// Runs the REPL until end of input or `/quit`. Each message is handled while the next line
/// waits; an action still running after `dialogs.still_running_after` is announced and left to
/// finish in the background, so `cancel` (or another user's message) can get through. At the end
/// of input the shell waits for every running action. Expired dialogs are announced as they
/// expire (and those that expired while opsbot was down, at start).
pub async fn run(
    bot: Arc<Bot>,
    user: &str,
    roles: Vec<String>,
    outboxes: Arc<crate::chat::Outboxes>,
) -> std::io::Result<()> {
    let interactive = std::io::stdin().is_terminal();
    let mut principal = principal(user, roles);
    let current = Arc::new(Roles::default());
    current.set(&principal);
    bot.set_current_roles("shell", current.clone());
    let conversation = ConversationId("shell:local".into());
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let (out_tx, mut out_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let printer = tokio::spawn(async move {
        let mut out = tokio::io::stdout();
        while let Some(text) = out_rx.recv().await {
            let _ = out.write_all(text.as_bytes()).await;
            let _ = out.flush().await;
        }
    });
    // expiry notices come through the push path, like anything the bot says unasked
    let printer_box = Arc::new(Printer {
        out: out_tx.clone(),
    });
    crate::app::connect(&bot, &outboxes, printer_box).await;
    if interactive {
        let _ = out_tx.send(format!(
            "opsbot: talking to you as {}; {}help lists commands, /as USER [ROLE...] switches user, /quit ends\n",
            principal.id,
            bot.prefix()
        ));
    }
    let mut background = tokio::task::JoinSet::new();
    let still_running_after = bot.still_running_after();
    let bot_name = bot.name().to_string();
    loop {
        if interactive {
            let _ = out_tx.send(format!("{}> ", principal.display_name));
        }
        let Some(line) = lines.next_line().await? else {
            break;
        };
        match classify_line(&line) {
            Line::Empty => continue,
            Line::Quit => break,
            Line::Wait => while background.join_next().await.is_some() {},
            Line::Usage(u) => say(&out_tx, vec![Reply::Error(u)]),
            Line::SwitchUser { user, roles } => {
                principal = self::principal(&user, roles);
                current.set(&principal);
                let roles = if principal.roles.is_empty() {
                    "no roles".to_string()
                } else {
                    format!("roles {}", principal.roles.join(", "))
                };
                say(
                    &out_tx,
                    vec![Reply::Text(format!(
                        "now speaking as {} ({roles})",
                        principal.id
                    ))],
                );
            }
            Line::Message(text) => {
                // the terminal is a direct conversation: every line is addressed to the bot
                let how = super::Addressing {
                    direct: true,
                    mentioned: false,
                };
                let Some(text) = super::addressed(&text, &bot_name, bot.prefix(), how) else {
                    continue;
                };
                let ev = ChatEvent {
                    conversation: conversation.clone(),
                    principal: principal.clone(),
                    text,
                };
                let (bot, tx) = (bot.clone(), out_tx.clone());
                let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
                background.spawn(async move {
                    say(&tx, bot.handle(&ev).await);
                    let _ = done_tx.send(());
                });
                if tokio::time::timeout(still_running_after, done_rx)
                    .await
                    .is_err()
                {
                    say(&out_tx, vec![Reply::Text("still working on that; I'll report when it is done (\"cancel\" stops it)".into())]);
                }
            }
        }
    }
    while background.join_next().await.is_some() {}
    // the printer ends when every sender is gone, the registered outbox's among them
    outboxes.unregister("shell");
    drop(out_tx);
    let _ = printer.await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines() {
        assert_eq!(classify_line("  "), Line::Empty);
        assert_eq!(classify_line("/quit"), Line::Quit);
        assert_eq!(
            classify_line("/as bob deployer admin"),
            Line::SwitchUser {
                user: "bob".into(),
                roles: vec!["deployer".into(), "admin".into()]
            }
        );
        assert!(matches!(classify_line("/as"), Line::Usage(_)));
        assert!(matches!(classify_line("/as b@d"), Line::Usage(_)));
        assert_eq!(
            classify_line("/ascii art"),
            Line::Message("/ascii art".into())
        );
        assert_eq!(classify_line("!status"), Line::Message("!status".into()));
    }
}
