//! Pending dialogs in SQLite, one row per conversation and owner, with an expiry. `take` removes
//! and returns a row in one statement, so a pending approval is carried out at most once, even
//! across a restart or by two bot processes sharing the store.

use super::Pending;
use rusqlite::{params, Connection, OptionalExtension};
use std::path::Path;
use std::sync::Mutex;

/// The columns every query returns, in the order [`decode`] takes them.
const ROW: &str = "conversation, owner, expires_at, state";

/// SQL for a stored dialog's open question id (`<request id>-<asked>`).
const QUESTION: &str =
    "json_extract(state, '$.req.id') || '-' || IFNULL(json_extract(state, '$.req.asked'), 0)";

/// Owner of dialogs any member of the conversation may answer (approvals).
pub const ANYONE: &str = "*";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("dialog store: {0}")]
    Db(#[from] rusqlite::Error),
    #[error("dialog store: a stored dialog is unreadable: {0}")]
    Corrupt(String),
}

/// A stored dialog.
#[derive(Debug, Clone)]
pub struct Stored {
    pub conversation: String,
    pub owner: String,
    pub expires_at: u64,
    pub pending: Pending,
}

impl Stored {
    /// Has its time run out?
    pub fn expired(&self) -> bool {
        self.expires_at <= now()
    }
}

fn decode(
    conversation: String,
    owner: String,
    expires_at: i64,
    state: &str,
) -> Result<Stored, Error> {
    let pending = serde_json::from_str(state).map_err(|e| Error::Corrupt(e.to_string()))?;
    Ok(Stored {
        conversation,
        owner,
        expires_at: expires_at as u64,
        pending,
    })
}

pub struct Store {
    conn: Mutex<Connection>,
}

/// Seconds since the Unix epoch.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Store {
    pub fn open(path: &Path) -> Result<Self, Error> {
        if let Some(d) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            let _ = std::fs::create_dir_all(d);
        }
        let conn = crate::state::sqlite::open_db(
            path,
            "CREATE TABLE IF NOT EXISTS pending (
                conversation TEXT NOT NULL,
                owner TEXT NOT NULL,
                expires_at INTEGER NOT NULL,
                state TEXT NOT NULL,
                PRIMARY KEY (conversation, owner)
            );",
        )?;
        Ok(Store {
            conn: Mutex::new(conn),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Stores the dialog of `conversation` and its owner. A person's own dialog replaces their
    /// previous one; an approval (owned by anyone) replaces only itself, so one dangerous request
    /// can never silently take another's place. Returns false when another approval is waiting.
    pub fn put(
        &self,
        conversation: &str,
        pending: &Pending,
        expires_at: u64,
    ) -> Result<bool, Error> {
        let state = serde_json::to_string(pending).map_err(|e| Error::Corrupt(e.to_string()))?;
        let changed = self.lock().execute(
            "INSERT INTO pending (conversation, owner, expires_at, state) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (conversation, owner) DO UPDATE SET expires_at = excluded.expires_at, state = excluded.state
             WHERE pending.owner <> ?5 OR json_extract(pending.state, '$.req.id') = json_extract(excluded.state, '$.req.id')",
            params![conversation, pending.owner(), expires_at as i64, state, ANYONE],
        )?;
        Ok(changed > 0)
    }

    /// The dialog of `conversation` and `owner`, left in place.
    pub fn peek(&self, conversation: &str, owner: &str) -> Result<Option<Stored>, Error> {
        self.one(
            &format!("SELECT {ROW} FROM pending WHERE conversation = ?1 AND owner = ?2"),
            params![conversation, owner],
        )
    }

    /// Removes and returns the dialog of `conversation` and `owner`, if any.
    pub fn take(&self, conversation: &str, owner: &str) -> Result<Option<Stored>, Error> {
        self.one(
            &format!("DELETE FROM pending WHERE conversation = ?1 AND owner = ?2 RETURNING {ROW}"),
            params![conversation, owner],
        )
    }

    /// The dialog of `conversation` whose open question is `question` (a
    /// [`super::Request::question_id`]), whoever owns it, left in place.
    pub fn find(&self, conversation: &str, question: &str) -> Result<Option<Stored>, Error> {
        self.one(
            &format!("SELECT {ROW} FROM pending WHERE conversation = ?1 AND {QUESTION} = ?2"),
            params![conversation, question],
        )
    }

    /// Removes and returns the dialog of `conversation` and `owner` if its open question is
    /// still `question` (a button answers the question it was shown with, never a newer one).
    pub fn take_dialog(
        &self,
        conversation: &str,
        owner: &str,
        question: &str,
    ) -> Result<Option<Stored>, Error> {
        self.one(
            &format!(
                "DELETE FROM pending WHERE conversation = ?1 AND owner = ?2 AND {QUESTION} = ?3
                 RETURNING {ROW}"
            ),
            params![conversation, owner, question],
        )
    }

    /// Runs `sql`, which yields [`ROW`] for at most one row, and decodes the row.
    fn one(&self, sql: &str, args: &[&dyn rusqlite::ToSql]) -> Result<Option<Stored>, Error> {
        let row: Option<(String, String, i64, String)> = self
            .lock()
            .query_row(sql, args, |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })
            .optional()?;
        row.map(|(conversation, owner, expires_at, state)| {
            decode(conversation, owner, expires_at, &state)
        })
        .transpose()
    }

    /// Removes and returns every dialog of `platform` (`shell`, `discord`) that expired at or
    /// before `now`.
    pub fn take_expired(&self, now: u64, platform: &str) -> Result<Vec<Stored>, Error> {
        let rows: Vec<(String, String, i64, String)> = {
            let conn = self.lock();
            let mut stmt = conn.prepare(&format!(
                "DELETE FROM pending WHERE expires_at <= ?1
                 AND substr(conversation, 1, length(?2) + 1) = ?2 || ':' RETURNING {ROW}"
            ))?;
            let rows = stmt
                .query_map(params![now as i64, platform], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
                })?
                .collect::<Result<Vec<_>, _>>()?;
            rows
        };
        rows.into_iter()
            .map(|(conversation, owner, expires_at, state)| {
                decode(conversation, owner, expires_at, &state)
            })
            .collect()
    }
}
