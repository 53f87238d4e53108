//! The SQLite implementations of the [`super`] traits: the dialog store
//! (`<state_dir>/dialogs.db`), the audit log (WAL, append-only by trigger) and the events
//! hub's groups and delivery ids (`<state_dir>/events.db`) and the messages that show open
//! questions (`<state_dir>/messages.db`), and the coordination of every process on the state
//! directory (`<state_dir>/coordination.db`).

use super::{
    AuditLog, Claim, Coordination, DialogStore, EventStore, MessageMap, ShownMessage, Start,
};
use crate::audit::{Audit, Entry, Kind, Row};
use crate::dialog::store::{Store, Stored};
use crate::dialog::Pending;
use anyhow::Context;
use rusqlite::{params, Connection, OptionalExtension};
use std::sync::Mutex;

impl DialogStore for Store {
    fn put(&self, conversation: &str, pending: &Pending, expires_at: u64) -> anyhow::Result<bool> {
        Store::put(self, conversation, pending, expires_at).map_err(Into::into)
    }
    fn peek(&self, conversation: &str, owner: &str) -> anyhow::Result<Option<Stored>> {
        Store::peek(self, conversation, owner).map_err(Into::into)
    }
    fn take(&self, conversation: &str, owner: &str) -> anyhow::Result<Option<Stored>> {
        Store::take(self, conversation, owner).map_err(Into::into)
    }
    fn find(&self, conversation: &str, question: &str) -> anyhow::Result<Option<Stored>> {
        Store::find(self, conversation, question).map_err(Into::into)
    }
    fn take_dialog(
        &self,
        conversation: &str,
        owner: &str,
        question: &str,
    ) -> anyhow::Result<Option<Stored>> {
        Store::take_dialog(self, conversation, owner, question).map_err(Into::into)
    }
    fn take_expired(&self, now: u64, platform: &str) -> anyhow::Result<Vec<Stored>> {
        Store::take_expired(self, now, platform).map_err(Into::into)
    }
}

impl AuditLog for Audit {
    fn append(&self, kind: Kind, entry: &Entry) -> anyhow::Result<i64> {
        Audit::append(self, kind, entry).map_err(Into::into)
    }
    fn unfinished(&self) -> anyhow::Result<Vec<Row>> {
        Audit::unfinished(self).map_err(Into::into)
    }
    fn between(&self, since: &str, until: &str) -> anyhow::Result<Vec<Row>> {
        Audit::between(self, since, until).map_err(Into::into)
    }
    fn recent(&self, limit: usize) -> anyhow::Result<Vec<Row>> {
        Audit::recent(self, limit).map_err(Into::into)
    }
    fn all(&self) -> anyhow::Result<Vec<Row>> {
        Audit::all(self).map_err(Into::into)
    }
}

/// Opens (or creates) a SQLite file the way every store of opsbot does: WAL, so readers never
/// wait for the writer; a 5 s busy timeout, for the other processes on the state directory;
/// then `schema` (its `CREATE ... IF NOT EXISTS` statements).
pub fn open_db(path: &std::path::Path, schema: &str) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.execute_batch(schema)?;
    Ok(conn)
}

/// Alert groups and delivery ids in SQLite.
pub struct Events {
    conn: Mutex<Connection>,
}

impl Events {
    pub fn open(path: &std::path::Path) -> anyhow::Result<Events> {
        let conn = open_db(
            path,
            "CREATE TABLE IF NOT EXISTS event_groups (
                 key TEXT PRIMARY KEY, state TEXT NOT NULL, updated INTEGER NOT NULL);
             CREATE TABLE IF NOT EXISTS event_deliveries (
                 source TEXT NOT NULL, id TEXT NOT NULL, seen INTEGER NOT NULL,
                 PRIMARY KEY (source, id));",
        )
        .with_context(|| format!("opening {}", path.display()))?;
        Ok(Events {
            conn: Mutex::new(conn),
        })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn unix_now() -> i64 {
    crate::dialog::store::now() as i64
}

/// Delivery ids are kept this long (GitHub retries within hours, not weeks).
const DELIVERIES_KEPT_SECS: i64 = 7 * 24 * 3600;

impl EventStore for Events {
    fn group(&self, key: &str) -> anyhow::Result<Option<crate::events::GroupState>> {
        let state: Option<String> = self
            .conn()
            .query_row(
                "SELECT state FROM event_groups WHERE key = ?1",
                [key],
                |r| r.get(0),
            )
            .optional()?;
        state
            .map(|s| serde_json::from_str(&s).context("a stored alert group is unreadable"))
            .transpose()
    }

    fn put_group(&self, key: &str, state: &crate::events::GroupState) -> anyhow::Result<()> {
        self.conn().execute(
            "INSERT INTO event_groups (key, state, updated) VALUES (?1, ?2, ?3)
             ON CONFLICT(key) DO UPDATE SET state = excluded.state, updated = excluded.updated",
            params![key, serde_json::to_string(state)?, unix_now()],
        )?;
        Ok(())
    }

    fn first_delivery(&self, source: &str, id: &str) -> anyhow::Result<bool> {
        let conn = self.conn();
        let now = unix_now();
        conn.execute(
            "DELETE FROM event_deliveries WHERE seen < ?1",
            [now - DELIVERIES_KEPT_SECS],
        )?;
        Ok(conn.execute(
            "INSERT OR IGNORE INTO event_deliveries (source, id, seen) VALUES (?1, ?2, ?3)",
            params![source, id, now],
        )? == 1)
    }
}

/// How long a question's message is remembered.
const SHOWN_KEPT_SECS: i64 = 24 * 3600;

/// [`MessageMap`] in SQLite.
pub struct Messages {
    conn: Mutex<Connection>,
}

impl Messages {
    pub fn open(path: &std::path::Path) -> anyhow::Result<Messages> {
        let conn = open_db(
            path,
            "CREATE TABLE IF NOT EXISTS shown (
                platform TEXT NOT NULL,
                question TEXT NOT NULL,
                place TEXT NOT NULL,
                message TEXT NOT NULL,
                body TEXT NOT NULL,
                at INTEGER NOT NULL,
                PRIMARY KEY (platform, question)
            );
            CREATE INDEX IF NOT EXISTS shown_place ON shown (platform, place);",
        )
        .with_context(|| format!("opening {}", path.display()))?;
        Ok(Messages {
            conn: Mutex::new(conn),
        })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl MessageMap for Messages {
    fn put(&self, platform: &str, question: &str, shown: &ShownMessage) -> anyhow::Result<()> {
        let now = crate::dialog::store::now() as i64;
        let conn = self.conn();
        conn.execute("DELETE FROM shown WHERE at < ?1", [now - SHOWN_KEPT_SECS])?;
        conn.execute(
            "INSERT OR REPLACE INTO shown VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                platform,
                question,
                shown.place,
                shown.message,
                shown.body,
                now
            ],
        )?;
        Ok(())
    }

    fn take(&self, platform: &str, question: &str) -> anyhow::Result<Option<ShownMessage>> {
        Ok(self
            .conn()
            .query_row(
                "DELETE FROM shown WHERE platform = ?1 AND question = ?2
                 RETURNING place, message, body",
                [platform, question],
                |r| {
                    Ok(ShownMessage {
                        place: r.get(0)?,
                        message: r.get(1)?,
                        body: r.get(2)?,
                    })
                },
            )
            .optional()?)
    }

    fn questions_in(&self, platform: &str, place: &str) -> anyhow::Result<Vec<String>> {
        let conn = self.conn();
        let mut st =
            conn.prepare("SELECT question FROM shown WHERE platform = ?1 AND place = ?2")?;
        let rows = st.query_map([platform, place], |r| r.get::<_, String>(0))?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }
}

/// How long a claim lives without its process renewing it. A process that dies holding a target
/// frees it this long after its last renewal.
const LEASE_MS: i64 = 10_000;
/// How often a process renews its claims' leases.
const RENEW_MS: i64 = 2_000;
/// How often a process looks for cancellations of its claims asked by another process.
const POLL: std::time::Duration = std::time::Duration::from_millis(200);

fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// [`Coordination`] in a SQLite file, shared by every opsbot process on the state directory
/// (`<state_dir>/coordination.db`): `opsbot run` and an `opsbot shell` beside it see each
/// other's locks, rate limits and running actions, and either can stop an action the other
/// runs. A claim is a row with a lease that its process renews while the action runs, so the
/// targets of a process that dies are free again within [`LEASE_MS`]. A cancellation is a flag on
/// the row; the process that runs the action sees it within [`POLL`] and fires the runner's
/// receiver. Every check-and-register is one immediate transaction.
pub struct Coordinator {
    shared: std::sync::Arc<Shared>,
}

struct Shared {
    conn: Mutex<Connection>,
    /// This process's instance: the owner of the claims it starts.
    me: String,
    /// The claims this process holds, from `start` to `finish`, with their runner's stop
    /// signal until it is sent (once). Their leases are renewed while they are held, a
    /// cancelled one's too, until its action has ended.
    held: Mutex<Held>,
}

type Held = std::collections::HashMap<String, Option<tokio::sync::oneshot::Sender<()>>>;

impl Shared {
    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn held(&self) -> std::sync::MutexGuard<'_, Held> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Tells the runner of `id` to stop, if this process runs it and has not told it yet.
    fn tell(&self, id: &str) {
        if let Some(tx) = self.held().get_mut(id).and_then(Option::take) {
            let _ = tx.send(());
        }
    }

    /// One tick of the background work: renews this process's leases when due, tells its
    /// runners of the cancellations other processes asked for, and stops an action whose claim
    /// was lost (its lease ran out while this process stalled, and another took it).
    fn tick(&self, last_renewal: &mut i64) -> anyhow::Result<()> {
        if self.held().is_empty() {
            return Ok(());
        }
        let now = unix_ms();
        // the connection is held to the end, as `start` holds it until its claim is in `held`:
        // a claim is never seen in one and not yet in the other
        let conn = self.conn();
        if now - *last_renewal >= RENEW_MS {
            conn.execute(
                "UPDATE running SET lease_until = ?1 WHERE owner = ?2",
                params![now + LEASE_MS, self.me],
            )?;
            *last_renewal = now;
        }
        // this process's claims as the store has them: id, and whether a stop was asked
        let mut st = conn.prepare_cached("SELECT id, cancel FROM running WHERE owner = ?1")?;
        let rows = st.query_map([&self.me], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? == 1)))?;
        let stored: std::collections::HashMap<String, bool> = rows.collect::<Result<_, _>>()?;
        let mut held = self.held();
        held.retain(|id, runner| {
            let asked = stored.get(id).copied();
            if asked.is_none() {
                // gone while its action runs: nothing guards its target any more
                tracing::error!(request = %id, "the action's target lock was lost (its lease ran out); stopping the action");
            }
            if asked != Some(false) {
                if let Some(tx) = runner.take() {
                    let _ = tx.send(());
                }
            }
            asked.is_some()
        });
        Ok(())
    }

    /// Counts one more event of `key` in `bucket` inside the caller's transaction, unless
    /// `per_minute` happened in the last minute.
    fn count(
        tx: &rusqlite::Transaction<'_>,
        bucket: &str,
        key: &str,
        per_minute: u32,
        now: i64,
    ) -> anyhow::Result<bool> {
        tx.execute("DELETE FROM rate WHERE at <= ?1", [now - 60_000])?;
        let n: i64 = tx.query_row(
            "SELECT COUNT(*) FROM rate WHERE bucket = ?1 AND key = ?2",
            [bucket, key],
            |r| r.get(0),
        )?;
        if n >= i64::from(per_minute) {
            return Ok(false);
        }
        tx.execute(
            "INSERT INTO rate (bucket, key, at) VALUES (?1, ?2, ?3)",
            params![bucket, key, now],
        )?;
        Ok(true)
    }
}

fn claim_of(r: &rusqlite::Row<'_>) -> rusqlite::Result<Claim> {
    Ok(Claim {
        id: r.get(0)?,
        requester: r.get(1)?,
        conversation: r.get(2)?,
        intent: r.get(3)?,
        target: r.get(4)?,
        what: r.get(5)?,
    })
}

/// The columns [`claim_of`] reads, in its order.
const CLAIM: &str = "id, requester, conversation, intent, target, what";

impl Coordinator {
    pub fn open(path: &std::path::Path) -> anyhow::Result<Coordinator> {
        let conn = open_db(
            path,
            "CREATE TABLE IF NOT EXISTS running (
                id TEXT PRIMARY KEY,
                requester TEXT NOT NULL,
                conversation TEXT NOT NULL,
                intent TEXT NOT NULL,
                target TEXT,
                what TEXT NOT NULL,
                owner TEXT NOT NULL,
                started INTEGER NOT NULL,
                lease_until INTEGER NOT NULL,
                cancel INTEGER NOT NULL DEFAULT 0
            );
            CREATE TABLE IF NOT EXISTS rate (bucket TEXT NOT NULL, key TEXT NOT NULL, at INTEGER NOT NULL);
            CREATE INDEX IF NOT EXISTS rate_key ON rate (bucket, key, at);",
        )
        .with_context(|| format!("opening {}", path.display()))?;
        let shared = std::sync::Arc::new(Shared {
            conn: Mutex::new(conn),
            me: format!("{}-{:016x}", std::process::id(), rand::random::<u64>()),
            held: Mutex::default(),
        });
        // the background work ends with the last handle on the coordinator
        let weak = std::sync::Arc::downgrade(&shared);
        std::thread::Builder::new()
            .name("opsbot-leases".into())
            .spawn(move || {
                let mut last_renewal = unix_ms();
                loop {
                    std::thread::sleep(POLL);
                    let Some(shared) = weak.upgrade() else { break };
                    if let Err(e) = shared.tick(&mut last_renewal) {
                        tracing::error!(error = %e, "coordination: renewing leases failed");
                    }
                }
            })
            .context("starting the coordination's lease thread")?;
        Ok(Coordinator { shared })
    }
}

impl Drop for Coordinator {
    fn drop(&mut self) {
        // this process's actions end with it: their targets are free at once
        let _ = self
            .shared
            .conn()
            .execute("DELETE FROM running WHERE owner = ?1", [&self.shared.me]);
    }
}

impl Coordination for Coordinator {
    fn start(&self, claim: Claim, per_minute: u32) -> anyhow::Result<Start> {
        let s = &self.shared;
        let mut conn = s.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let now = unix_ms();
        tx.execute("DELETE FROM running WHERE lease_until < ?1", [now])?;
        if let Some(t) = &claim.target {
            let holder = {
                let mut st = tx.prepare(&format!(
                    "SELECT {CLAIM} FROM running WHERE target IS NOT NULL ORDER BY started"
                ))?;
                let claims = st.query_map([], claim_of)?;
                claims
                    .collect::<Result<Vec<_>, _>>()?
                    .into_iter()
                    .find(|c| c.target.as_ref().is_some_and(|o| super::overlaps(o, t)))
            };
            if let Some(holder) = holder {
                return Ok(Start::Busy(holder));
            }
        }
        // the rate limit counts actions that start, so it is checked last
        if !Shared::count(&tx, super::ACTIONS, &claim.requester, per_minute, now)? {
            tx.commit()?;
            return Ok(Start::RateLimited);
        }
        tx.execute(
            "INSERT INTO running (id, requester, conversation, intent, target, what, owner, started, lease_until)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            params![
                claim.id,
                claim.requester,
                claim.conversation,
                claim.intent,
                claim.target,
                claim.what,
                s.me,
                now,
                now + LEASE_MS
            ],
        )?;
        tx.commit()?;
        let (runner_tx, rx) = tokio::sync::oneshot::channel();
        // still under the connection's lock (see `Shared::tick`)
        s.held().insert(claim.id, Some(runner_tx));
        Ok(Start::Started(rx))
    }

    fn finish(&self, id: &str) -> anyhow::Result<()> {
        self.shared.held().remove(id);
        self.shared
            .conn()
            .execute("DELETE FROM running WHERE id = ?1", [id])?;
        Ok(())
    }

    fn running_in(&self, conversation: &str) -> anyhow::Result<Vec<Claim>> {
        let conn = self.shared.conn();
        let mut st = conn.prepare_cached(&format!(
            "SELECT {CLAIM} FROM running WHERE conversation = ?1 AND lease_until >= ?2
             ORDER BY started DESC, rowid DESC"
        ))?;
        let claims = st.query_map(params![conversation, unix_ms()], claim_of)?;
        Ok(claims.collect::<Result<_, _>>()?)
    }

    fn cancel(&self, id: &str) -> anyhow::Result<Option<bool>> {
        let s = &self.shared;
        let now = unix_ms();
        let asked = s.conn().execute(
            "UPDATE running SET cancel = 1 WHERE id = ?1 AND cancel = 0 AND lease_until >= ?2",
            params![id, now],
        )?;
        if asked == 0 {
            let running: Option<i64> = s
                .conn()
                .query_row(
                    "SELECT cancel FROM running WHERE id = ?1 AND lease_until >= ?2",
                    params![id, now],
                    |r| r.get(0),
                )
                .optional()?;
            return Ok(running.map(|_| false));
        }
        // a runner of this process hears it now; another process's within its next poll
        s.tell(id);
        Ok(Some(true))
    }

    fn admit(&self, bucket: &str, key: &str, per_minute: u32) -> anyhow::Result<bool> {
        let mut conn = self.shared.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let admitted = Shared::count(&tx, bucket, key, per_minute, unix_ms())?;
        tx.commit()?;
        Ok(admitted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shown_message_is_kept_per_platform_and_taken_once() {
        let dir = tempfile::tempdir().unwrap();
        let m = Messages::open(&dir.path().join("messages.db")).unwrap();
        let shown = ShownMessage {
            place: "42".into(),
            message: "7".into(),
            body: "{}".into(),
        };
        m.put("discord", "q1", &shown).unwrap();
        m.put("slack", "q1", &shown).unwrap();
        assert_eq!(m.questions_in("discord", "42").unwrap(), ["q1"]);
        assert!(m.questions_in("discord", "43").unwrap().is_empty());
        assert_eq!(m.take("discord", "q1").unwrap(), Some(shown.clone()));
        assert_eq!(m.take("discord", "q1").unwrap(), None, "taken once");
        // another platform's entry of the same question id is its own
        assert_eq!(m.take("slack", "q1").unwrap(), Some(shown));
        // kept across a reopen (a restart)
        m.put(
            "discord",
            "q2",
            &ShownMessage {
                place: "1".into(),
                message: "2".into(),
                body: "x".into(),
            },
        )
        .unwrap();
        drop(m);
        let m = Messages::open(&dir.path().join("messages.db")).unwrap();
        assert_eq!(m.questions_in("discord", "1").unwrap(), ["q2"]);
    }

    fn claim(id: &str, requester: &str, target: Option<&str>) -> Claim {
        Claim {
            id: id.into(),
            requester: requester.into(),
            conversation: "shell:local".into(),
            intent: "restart".into(),
            target: target.map(Into::into),
            what: format!("job {id}"),
        }
    }

    #[test]
    fn two_processes_on_one_state_directory_share_locks_limits_and_cancellation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("coordination.db");
        let (run, shell) = (
            Coordinator::open(&path).unwrap(),
            Coordinator::open(&path).unwrap(),
        );
        let Start::Started(mut rx) = run
            .start(claim("a", "u1", Some("api/production")), 3)
            .unwrap()
        else {
            panic!("the first claim starts")
        };
        match shell.start(claim("b", "u2", Some("api/*")), 3).unwrap() {
            Start::Busy(holder) => {
                assert_eq!((holder.id.as_str(), holder.what.as_str()), ("a", "job a"))
            }
            other => panic!("the other process must see the lock, got {other:?}"),
        }
        assert_eq!(shell.running_in("shell:local").unwrap().len(), 1);
        // the rate limit counts the user's actions in both processes
        assert!(matches!(
            shell.start(claim("c", "u1", None), 3).unwrap(),
            Start::Started(_)
        ));
        assert!(matches!(
            run.start(claim("d", "u1", None), 3).unwrap(),
            Start::Started(_)
        ));
        assert!(matches!(
            shell.start(claim("e", "u1", None), 3).unwrap(),
            Start::RateLimited
        ));
        // a stop asked in one process reaches the runner in the other within its poll
        assert_eq!(shell.cancel("a").unwrap(), Some(true));
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while rx.try_recv().is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "the runner never heard the stop"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert_eq!(run.cancel("a").unwrap(), Some(false), "asked before");
        run.finish("a").unwrap();
        assert_eq!(shell.cancel("a").unwrap(), None, "no longer running");
        assert!(matches!(
            shell
                .start(claim("f", "u2", Some("api/production")), 3)
                .unwrap(),
            Start::Started(_)
        ));
        // a process that ends frees its targets at once
        drop(shell);
        assert!(matches!(
            run.start(claim("g", "u2", Some("api/production")), 3)
                .unwrap(),
            Start::Started(_)
        ));
    }

    #[test]
    fn the_target_of_a_process_that_died_is_free_when_its_lease_ran_out() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("coordination.db");
        let c = Coordinator::open(&path).unwrap();
        // a claim of a process that stopped renewing: one lapsed lease, one still current
        let conn = Connection::open(&path).unwrap();
        for (id, target, lease) in [
            ("old", "api/production", -1),
            ("live", "web/production", LEASE_MS),
        ] {
            conn.execute(
                "INSERT INTO running (id, requester, conversation, intent, target, what, owner, started, lease_until)
                 VALUES (?1, 'u9', 'shell:local', 'restart', ?2, 'x', 'gone-1', ?3, ?4)",
                params![id, target, unix_ms(), unix_ms() + lease],
            )
            .unwrap();
        }
        assert!(matches!(
            c.start(claim("a", "u1", Some("api/production")), 5)
                .unwrap(),
            Start::Started(_)
        ));
        assert!(matches!(
            c.start(claim("b", "u1", Some("web/production")), 5)
                .unwrap(),
            Start::Busy(_)
        ));
        assert_eq!(c.cancel("old").unwrap(), None);
    }

    #[test]
    fn a_cancelled_claim_keeps_its_lease_and_a_lost_one_stops_its_action() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("coordination.db");
        let c = Coordinator::open(&path).unwrap();
        let Start::Started(_stopping) = c
            .start(claim("a", "u1", Some("api/production")), 5)
            .unwrap()
        else {
            panic!()
        };
        let Start::Started(mut lost) = c
            .start(claim("b", "u1", Some("web/production")), 5)
            .unwrap()
        else {
            panic!()
        };
        assert_eq!(c.cancel("a").unwrap(), Some(true));
        let conn = Connection::open(&path).unwrap();
        let lease = |id: &str| -> Option<i64> {
            conn.query_row("SELECT lease_until FROM running WHERE id = ?1", [id], |r| {
                r.get(0)
            })
            .optional()
            .unwrap()
        };
        let first = lease("a").unwrap();
        // another process took b's target after b's lease lapsed
        conn.execute("DELETE FROM running WHERE id = 'b'", [])
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(8);
        let (mut renewed, mut stopped) = (false, false);
        while !(renewed && stopped) {
            renewed |= lease("a").unwrap() > first;
            stopped |= lost.try_recv().is_ok();
            assert!(
                std::time::Instant::now() < deadline,
                "a's lease was not renewed or b's runner was not stopped"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        // a, cancelled but still ending, holds its target
        assert!(matches!(
            c.start(claim("c", "u2", Some("api/production")), 5)
                .unwrap(),
            Start::Busy(_)
        ));
    }
}
