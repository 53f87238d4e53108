//! The bot's state behind traits, so that where it lives is chosen in one place
//! (`app::build`) and the bot never names a database: pending dialogs ([`DialogStore`]) and the
//! audit log ([`AuditLog`]). The SQLite implementations are in [`sqlite`]; a shared database for
//! several replicas is another implementation of the same traits, not a change to the bot.
//! The events hub keeps its alert groups' messages and the delivery ids it has seen behind
//! [`EventStore`]. Target locks, rate limits and the registry of running actions are
//! [`Coordination`] (in process: [`memory::Local`]). The messages that show an open question's
//! buttons, for any adapter, are a [`MessageMap`].

pub mod memory;
pub mod sqlite;

use crate::audit::{Entry, Kind, Row};
use crate::dialog::store::{Error as StoreError, Stored};
use crate::dialog::Pending;

/// Pending dialogs: at most one per (conversation, owner), found by owner or by question id,
/// taken out exactly once.
pub trait DialogStore: Send + Sync {
    /// Keeps `pending` until `expires_at` (unix seconds); `false` when an approval already waits
    /// in the conversation (one at a time).
    fn put(
        &self,
        conversation: &str,
        pending: &Pending,
        expires_at: u64,
    ) -> Result<bool, StoreError>;
    /// The dialog `owner` has open here, left in place.
    fn peek(&self, conversation: &str, owner: &str) -> Result<Option<Stored>, StoreError>;
    /// The dialog `owner` has open here, taken out.
    fn take(&self, conversation: &str, owner: &str) -> Result<Option<Stored>, StoreError>;
    /// The dialog whose question id is `question`, left in place.
    fn find(&self, conversation: &str, question: &str) -> Result<Option<Stored>, StoreError>;
    /// The dialog of `owner` whose question id is `question`, taken out (one press wins).
    fn take_dialog(
        &self,
        conversation: &str,
        owner: &str,
        question: &str,
    ) -> Result<Option<Stored>, StoreError>;
    /// Every dialog of `platform` whose time ran out by `now`, taken out.
    fn take_expired(&self, now: u64, platform: &str) -> Result<Vec<Stored>, StoreError>;
}

/// The append-only audit log.
pub trait AuditLog: Send + Sync {
    /// Appends one row (redacted on the way in); its sequence number.
    fn append(&self, kind: Kind, entry: &Entry) -> Result<i64, crate::audit::Error>;
    /// Requests that started and have no outcome.
    fn unfinished(&self) -> Result<Vec<Row>, crate::audit::Error>;
    /// The rows from `since` to `until` (RFC 3339 stamps), oldest first (for the timeline).
    fn between(&self, since: &str, until: &str) -> Result<Vec<Row>, crate::audit::Error>;
    /// The newest `limit` rows, oldest first (`opsbot audit`).
    fn recent(&self, limit: usize) -> Result<Vec<Row>, crate::audit::Error>;
    /// Every row, oldest first (learning from use reads the whole history).
    fn all(&self) -> Result<Vec<Row>, crate::audit::Error>;
}

/// What the events hub remembers: each alert group's state and message ids, and the delivery
/// ids of sources that retry (so a delivery is handled once).
pub trait EventStore: Send + Sync {
    fn group(&self, key: &str) -> anyhow::Result<Option<crate::events::GroupState>>;
    fn put_group(&self, key: &str, state: &crate::events::GroupState) -> anyhow::Result<()>;
    /// `true` the first time `(source, id)` is seen.
    fn first_delivery(&self, source: &str, id: &str) -> anyhow::Result<bool>;
}

/// An action that is running, as the coordination knows it.
#[derive(Debug, Clone)]
pub struct Claim {
    /// The request's reference.
    pub id: String,
    pub requester: String,
    pub conversation: String,
    pub intent: String,
    /// What it locks ("service/env", "*" for any); `None` for a read, which locks nothing.
    pub target: Option<String>,
    /// How it is described to people ("restart api in production").
    pub what: String,
}

/// The answer to [`Coordination::start`].
#[derive(Debug)]
pub enum Start {
    /// Registered and counted; the receiver fires when someone asks the action to stop.
    Started(tokio::sync::oneshot::Receiver<()>),
    /// A running action holds an overlapping target.
    Busy(Claim),
    /// The requester already started their allowance of actions in the last minute.
    RateLimited,
}

/// The rate-limit bucket of actions that start ([`Coordination::start`] counts in it).
pub const ACTIONS: &str = "actions";
/// The rate-limit bucket of the read-only state probes shown in confirmations.
pub const PROBES: &str = "probes";

/// What several handlers (and later several replicas) must agree on: who holds a target, how
/// many actions a user started in the last minute, which actions run and how to stop them.
/// An error means "not known": the caller refuses (fail closed).
pub trait Coordination: Send + Sync {
    /// In one step: refuses when a running action holds an overlapping target or the requester
    /// started `per_minute` actions in the last minute; otherwise registers `claim` and counts it.
    fn start(&self, claim: Claim, per_minute: u32) -> anyhow::Result<Start>;
    /// The action `id` ended: its target is free.
    fn finish(&self, id: &str) -> anyhow::Result<()>;
    /// The running actions of `conversation`, newest first.
    fn running_in(&self, conversation: &str) -> anyhow::Result<Vec<Claim>>;
    /// Asks `id` to stop: `Some(true)` asked now, `Some(false)` asked before, `None` not running.
    fn cancel(&self, id: &str) -> anyhow::Result<Option<bool>>;
    /// Counts one more event of `key` in `bucket` if fewer than `per_minute` happened in the
    /// last minute (state probes use it; actions are counted by [`Coordination::start`]).
    fn admit(&self, bucket: &str, key: &str, per_minute: u32) -> anyhow::Result<bool>;
}

/// A message an adapter sent that shows an open question's buttons, so they can be disabled
/// when the question closes (after a restart too). Its ids and body are the adapter's own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShownMessage {
    /// The platform's id of the place it was posted (a Discord channel id).
    pub place: String,
    /// The platform's id of the message.
    pub message: String,
    /// What the adapter needs to redraw it (for Discord: its text and components as JSON).
    pub body: String,
}

/// The messages that show open questions, by platform and question id. Entries older than a
/// day are forgotten (their questions closed long ago).
pub trait MessageMap: Send + Sync {
    fn put(&self, platform: &str, question: &str, shown: &ShownMessage) -> anyhow::Result<()>;
    /// The message of `question`, taken out.
    fn take(&self, platform: &str, question: &str) -> anyhow::Result<Option<ShownMessage>>;
    /// The questions with a message in `place`.
    fn questions_in(&self, platform: &str, place: &str) -> anyhow::Result<Vec<String>>;
}
