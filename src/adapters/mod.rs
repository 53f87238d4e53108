//! The seam between chat platforms and the core. An adapter turns a platform event into a
//! [`ChatEvent`] (only for messages addressed to the bot) and renders [`Reply`] values back in the
//! platform's idiom. No platform type crosses this line; no core logic lives in an adapter.

pub mod discord;
pub mod shell;

pub use crate::chat::{addressed, Addressing, ChatEvent, ConversationId, Principal, Reply, UserId};

use crate::bot::Bot;
use crate::chat::Outboxes;
use crate::config::Config;
use crate::state::MessageMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// A chat platform that `opsbot run` connects to. (The shell is a command of its own.)
pub trait Adapter: Send {
    /// Serves the platform until its connection ends for good: messages in through
    /// [`Bot::handle`], its [`crate::chat::Outbox`] registered with `outboxes` for what the core
    /// posts unasked, the messages that show open questions kept in `messages`.
    fn run(
        self: Box<Self>,
        bot: Arc<Bot>,
        messages: Arc<dyn MessageMap>,
        outboxes: Arc<Outboxes>,
    ) -> Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send>>;
}

/// Reads a platform's own section of the configuration (`None` when there is none), adding the
/// secrets it reads to the ones redacted everywhere.
type Configure = fn(&mut Config) -> anyhow::Result<Option<Box<dyn Adapter>>>;

/// The platforms `opsbot run` knows, by the configuration section that turns each on. A new
/// platform is one module and one line here.
const PLATFORMS: &[(&str, Configure)] = &[(discord::SECTION, discord::configure)];

/// The configuration sections the adapters read.
pub fn sections() -> impl Iterator<Item = &'static str> {
    PLATFORMS.iter().map(|(section, _)| *section)
}

/// The adapters the configuration turns on.
pub fn configured(config: &mut Config) -> anyhow::Result<Vec<Box<dyn Adapter>>> {
    let mut out = Vec::new();
    for (_, configure) in PLATFORMS {
        out.extend(configure(config)?);
    }
    Ok(out)
}
