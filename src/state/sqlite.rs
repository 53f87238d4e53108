//! The SQLite implementations of the [`super`] traits: the dialog store
//! (`<state_dir>/dialogs.db`), the audit log (WAL, append-only by trigger) and the events
//! hub's groups and delivery ids (`<state_dir>/events.db`) and the messages that show open
//! questions (`<state_dir>/messages.db`).

use super::{AuditLog, DialogStore, EventStore, MessageMap, ShownMessage};
use crate::audit::{Audit, Entry, Kind, Row};
use crate::dialog::store::{Error as StoreError, Store, Stored};
use crate::dialog::Pending;
use anyhow::Context;
use rusqlite::{params, Connection, OptionalExtension};
use std::sync::Mutex;

impl DialogStore for Store {
    fn put(
        &self,
        conversation: &str,
        pending: &Pending,
        expires_at: u64,
    ) -> Result<bool, StoreError> {
        Store::put(self, conversation, pending, expires_at)
    }
    fn peek(&self, conversation: &str, owner: &str) -> Result<Option<Stored>, StoreError> {
        Store::peek(self, conversation, owner)
    }
    fn take(&self, conversation: &str, owner: &str) -> Result<Option<Stored>, StoreError> {
        Store::take(self, conversation, owner)
    }
    fn find(&self, conversation: &str, question: &str) -> Result<Option<Stored>, StoreError> {
        Store::find(self, conversation, question)
    }
    fn take_dialog(
        &self,
        conversation: &str,
        owner: &str,
        question: &str,
    ) -> Result<Option<Stored>, StoreError> {
        Store::take_dialog(self, conversation, owner, question)
    }
    fn take_expired(&self, now: u64, platform: &str) -> Result<Vec<Stored>, StoreError> {
        Store::take_expired(self, now, platform)
    }
}

impl AuditLog for Audit {
    fn append(&self, kind: Kind, entry: &Entry) -> Result<i64, crate::audit::Error> {
        Audit::append(self, kind, entry)
    }
    fn unfinished(&self) -> Result<Vec<Row>, crate::audit::Error> {
        Audit::unfinished(self)
    }
    fn between(&self, since: &str, until: &str) -> Result<Vec<Row>, crate::audit::Error> {
        Audit::between(self, since, until)
    }
    fn recent(&self, limit: usize) -> Result<Vec<Row>, crate::audit::Error> {
        Audit::recent(self, limit)
    }
    fn all(&self) -> Result<Vec<Row>, crate::audit::Error> {
        Audit::all(self)
    }
}

/// Alert groups and delivery ids in SQLite.
pub struct Events {
    conn: Mutex<Connection>,
}

impl Events {
    pub fn open(path: &std::path::Path) -> anyhow::Result<Events> {
        let conn = Connection::open(path).with_context(|| format!("opening {}", path.display()))?;
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA busy_timeout = 5000;
             CREATE TABLE IF NOT EXISTS event_groups (
                 key TEXT PRIMARY KEY, state TEXT NOT NULL, updated INTEGER NOT NULL);
             CREATE TABLE IF NOT EXISTS event_deliveries (
                 source TEXT NOT NULL, id TEXT NOT NULL, seen INTEGER NOT NULL,
                 PRIMARY KEY (source, id));",
        )?;
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
        let conn = Connection::open(path).with_context(|| format!("opening {}", path.display()))?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.execute_batch(
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
        )?;
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
}
