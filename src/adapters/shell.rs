//! The terminal adapter: a REPL on stdin/stdout for trying the bot and for scripted tests. Every
//! line is addressed to the bot (as in a direct message). `/as USER [ROLE...]` switches who is
//! speaking, so multi-person flows can be scripted; `/quit` ends the session. Works the same
//! when piped; a prompt is shown only on a terminal.

use super::{ChatEvent, ConversationId, Principal, Reply, UserId};
use crate::bot::Bot;
use std::io::IsTerminal;
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
    SwitchUser { user: String, roles: Vec<String> },
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

/// Runs the REPL until end of input or `/quit`.
pub async fn run(bot: &Bot, user: &str, roles: Vec<String>) -> std::io::Result<()> {
    let interactive = std::io::stdin().is_terminal();
    let mut principal = principal(user, roles);
    let conversation = ConversationId("shell:local".into());
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let mut out = tokio::io::stdout();
    if interactive {
        out.write_all(format!("opsbot: talking to you as {}; {}help lists commands, /as USER [ROLE...] switches user, /quit ends\n", principal.id, bot.nlu.prefix()).as_bytes()).await?;
    }
    loop {
        if interactive {
            out.write_all(format!("{}> ", principal.display_name).as_bytes())
                .await?;
            out.flush().await?;
        }
        let Some(line) = lines.next_line().await? else {
            break;
        };
        let replies = match classify_line(&line) {
            Line::Empty => continue,
            Line::Quit => break,
            Line::Usage(u) => vec![Reply::Error(u)],
            Line::SwitchUser { user, roles } => {
                principal = self::principal(&user, roles);
                let roles = if principal.roles.is_empty() {
                    "no roles".to_string()
                } else {
                    format!("roles {}", principal.roles.join(", "))
                };
                vec![Reply::Text(format!(
                    "now speaking as {} ({roles})",
                    principal.id
                ))]
            }
            Line::Message(text) => {
                bot.handle(&ChatEvent {
                    conversation: conversation.clone(),
                    principal: principal.clone(),
                    text,
                })
                .await
            }
        };
        for r in replies {
            out.write_all(r.to_plain().as_bytes()).await?;
            out.write_all(b"\n").await?;
        }
        out.flush().await?;
    }
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
