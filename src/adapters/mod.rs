//! The seam between chat platforms and the core. An adapter turns a platform event into a
//! [`ChatEvent`] (only for messages addressed to the bot) and renders [`Reply`] values back in the
//! platform's idiom. No platform type crosses this line; no core logic lives in an adapter.

pub mod discord;
pub mod shell;

pub use crate::chat::{addressed, Addressing, ChatEvent, ConversationId, Principal, Reply, UserId};
