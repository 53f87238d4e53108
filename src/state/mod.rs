//! The bot's state behind traits, so that where it lives is chosen in one place
//! (`app::build`) and the bot never names a database: pending dialogs ([`DialogStore`]) and the
//! audit log ([`AuditLog`]). The SQLite implementations are in [`sqlite`]; a shared database for
//! several replicas is another implementation of the same traits, not a change to the bot.
//! The events hub keeps its alert groups' messages and the delivery ids it has seen behind
//! [`EventStore`]. Target locks, rate limits and the registry of running actions are
//! [`Coordination`], shared by [`sqlite::Coordinator`] among the processes on one state
//! directory with leases. The messages that show an open question's
//! buttons, for any adapter, are a [`MessageMap`]. Every trait answers `anyhow::Result`: what
//! failed is the implementation's own business, and the bot only needs to know that it failed
//! (it refuses, fail closed).

pub mod sqlite;

use crate::audit::{Entry, Kind, Row};
use crate::dialog::store::Stored;
use crate::dialog::Pending;

/// Pending dialogs: at most one per (conversation, owner), found by owner or by question id,
/// taken out exactly once.
pub trait DialogStore: Send + Sync {
    /// Keeps `pending` until `expires_at` (unix seconds); `false` when an approval already waits
    /// in the conversation (one at a time).
    fn put(&self, conversation: &str, pending: &Pending, expires_at: u64) -> anyhow::Result<bool>;
    /// The dialog `owner` has open here, left in place.
    fn peek(&self, conversation: &str, owner: &str) -> anyhow::Result<Option<Stored>>;
    /// The dialog `owner` has open here, taken out.
    fn take(&self, conversation: &str, owner: &str) -> anyhow::Result<Option<Stored>>;
    /// The dialog whose question id is `question`, left in place.
    fn find(&self, conversation: &str, question: &str) -> anyhow::Result<Option<Stored>>;
    /// The dialog of `owner` whose question id is `question`, taken out (one press wins).
    fn take_dialog(
        &self,
        conversation: &str,
        owner: &str,
        question: &str,
    ) -> anyhow::Result<Option<Stored>>;
    /// Every dialog of `platform` whose time ran out by `now`, taken out.
    fn take_expired(&self, now: u64, platform: &str) -> anyhow::Result<Vec<Stored>>;
}

/// The append-only audit log.
pub trait AuditLog: Send + Sync {
    /// Appends one row (redacted on the way in); its sequence number.
    fn append(&self, kind: Kind, entry: &Entry) -> anyhow::Result<i64>;
    /// Requests that started and have no outcome.
    fn unfinished(&self) -> anyhow::Result<Vec<Row>>;
    /// The rows from `since` to `until` (RFC 3339 stamps), oldest first (for the timeline).
    fn between(&self, since: &str, until: &str) -> anyhow::Result<Vec<Row>>;
    /// The newest `limit` rows, oldest first (`opsbot audit`).
    fn recent(&self, limit: usize) -> anyhow::Result<Vec<Row>>;
    /// Every row, oldest first (learning from use reads the whole history).
    fn all(&self) -> anyhow::Result<Vec<Row>>;
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

/// Whether two lock targets ("service/env", "*" matching anything) touch the same thing.
pub fn overlaps(a: &str, b: &str) -> bool {
    let (pa, pb): (Vec<&str>, Vec<&str>) = (a.split('/').collect(), b.split('/').collect());
    pa.len() == pb.len()
        && pa
            .iter()
            .zip(&pb)
            .all(|(x, y)| x == y || *x == "*" || *y == "*")
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

/// The contract every [`Coordination`] keeps, run against each implementation.
#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Each implementation, with the directory it keeps its files in (dropped after it).
    fn implementations() -> Vec<(Box<dyn Coordination>, tempfile::TempDir)> {
        let dir = tempfile::tempdir().unwrap();
        let shared = sqlite::Coordinator::open(&dir.path().join("coordination.db")).unwrap();
        vec![(Box::new(shared), dir)]
    }

    fn claim(id: &str, conv: &str, target: Option<&str>) -> Claim {
        Claim {
            id: id.into(),
            requester: "u1".into(),
            conversation: conv.into(),
            intent: "restart".into(),
            target: target.map(Into::into),
            what: format!("job {id}"),
        }
    }

    #[test]
    fn an_overlapping_target_is_busy_until_the_holder_finishes() {
        for (c, _dir) in implementations() {
            let c = c.as_ref();
            assert!(matches!(
                c.start(claim("a", "c1", Some("api/production")), 10)
                    .unwrap(),
                Start::Started(_)
            ));
            match c.start(claim("b", "c1", Some("*/production")), 10).unwrap() {
                Start::Busy(holder) => assert_eq!(holder.id, "a"),
                _ => panic!("a wildcard over a held target must be busy"),
            }
            // another environment and a read (no target) are free
            assert!(matches!(
                c.start(claim("c", "c1", Some("api/staging")), 10).unwrap(),
                Start::Started(_)
            ));
            assert!(matches!(
                c.start(claim("d", "c1", None), 10).unwrap(),
                Start::Started(_)
            ));
            c.finish("a").unwrap();
            assert!(matches!(
                c.start(claim("e", "c1", Some("api/production")), 10)
                    .unwrap(),
                Start::Started(_)
            ));
        }
    }

    #[test]
    fn the_rate_limit_counts_only_actions_that_start() {
        for (c, _dir) in implementations() {
            let c = c.as_ref();
            assert!(matches!(
                c.start(claim("a", "c1", Some("x/y")), 2).unwrap(),
                Start::Started(_)
            ));
            // busy: not counted
            assert!(matches!(
                c.start(claim("b", "c1", Some("x/y")), 2).unwrap(),
                Start::Busy(_)
            ));
            assert!(matches!(
                c.start(claim("c", "c1", None), 2).unwrap(),
                Start::Started(_)
            ));
            assert!(matches!(
                c.start(claim("d", "c1", None), 2).unwrap(),
                Start::RateLimited
            ));
            // another bucket has its own count
            assert!(c.admit("probes", "u1", 2).unwrap());
        }
    }

    #[test]
    fn cancel_reaches_the_runner_once_and_lists_are_newest_first() {
        for (c, _dir) in implementations() {
            let c = c.as_ref();
            let Start::Started(mut rx) = c.start(claim("a", "c1", None), 10).unwrap() else {
                panic!()
            };
            std::thread::sleep(Duration::from_millis(2));
            let _b = c.start(claim("b", "c1", None), 10).unwrap();
            let _x = c.start(claim("x", "c2", None), 10).unwrap();
            let ids: Vec<String> = c
                .running_in("c1")
                .unwrap()
                .into_iter()
                .map(|k| k.id)
                .collect();
            assert_eq!(ids, ["b", "a"]);
            assert_eq!(c.cancel("a").unwrap(), Some(true));
            assert!(rx.try_recv().is_ok());
            assert_eq!(c.cancel("a").unwrap(), Some(false), "asked twice");
            assert_eq!(c.cancel("gone").unwrap(), None);
        }
    }
}
