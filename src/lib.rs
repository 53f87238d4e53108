//! opsbot: a ChatOps assistant. Chat adapters turn platform events into [`chat::ChatEvent`]s;
//! [`bot::Bot::handle`] understands them ([`nlu`]), runs the matching [`catalog`] intent's action
//! ([`actions`]) and records everything in the [`audit`] log.

pub mod actions;
pub mod adapters;
pub mod app;
pub mod audit;
pub mod bot;
pub mod catalog;
pub mod chat;
pub mod config;
pub mod dialog;
pub mod eval;
pub mod events;
pub mod learn;
pub mod nlu;
pub mod policy;
pub mod state;
pub mod timeline;
