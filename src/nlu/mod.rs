//! Understanding an addressed message: strict command syntax first (exact, confidence 1.0); other
//! text goes to the natural-language path. Owns parsing only; it never runs or authorizes anything.

pub mod embed;
pub mod strict;

use crate::catalog::{Catalog, IntentId, Params};
use serde::Serialize;

/// How a message was understood.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    Strict,
    Nlu,
}

/// What to do with a parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    Accept,
    Suggest,
    Reject,
}

/// The result of understanding one message.
#[derive(Debug, Clone, PartialEq)]
pub enum Understanding {
    /// `help` (optionally about one command).
    Help { topic: Option<String> },
    /// A complete, validated command.
    Command {
        intent: IntentId,
        params: Params,
        source: Source,
        confidence: f32,
    },
    /// Not understood; `reason` says why, in words fit for the chat.
    NotUnderstood { reason: String, source: Source },
}

/// The message parser. Strict syntax is handled here; natural language arrives with the NLU work.
pub struct Nlu {
    prefix: String,
}

impl Nlu {
    pub fn new(prefix: impl Into<String>) -> Self {
        Nlu {
            prefix: prefix.into(),
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    pub fn parse(&self, catalog: &Catalog, text: &str) -> Understanding {
        let text = text.trim();
        if let Some(body) = text.strip_prefix(self.prefix.as_str()) {
            return match strict::parse(catalog, body, &self.prefix) {
                Ok(strict::Strict::Help { topic }) => Understanding::Help { topic },
                Ok(strict::Strict::Command { intent, params }) => Understanding::Command {
                    intent: intent.id.clone(),
                    params,
                    source: Source::Strict,
                    confidence: 1.0,
                },
                Err(e) => Understanding::NotUnderstood {
                    reason: e.to_string(),
                    source: Source::Strict,
                },
            };
        }
        Understanding::NotUnderstood {
            reason: format!(
                "I only understand strict commands so far; try {}help",
                self.prefix
            ),
            source: Source::Nlu,
        }
    }
}
