//! The append-only audit log in SQLite (WAL). A request is written before its action starts and
//! the outcome after it, as two rows, so a crash or kill mid-action leaves the request on record.
//! Triggers refuse UPDATE and DELETE. Every text field is redacted here, on the way in, so no
//! writer can forget to.

use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;
use std::path::Path;
use std::sync::Mutex;

use crate::actions::Redactor;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("audit database: {0}")]
    Db(#[from] rusqlite::Error),
    #[error("cannot create the audit directory {path}: {reason}")]
    Dir { path: String, reason: String },
}

/// What kind of row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A request about to be carried out.
    Request,
    /// What became of a request.
    Outcome,
    /// A message refused before anything ran (not understood, invalid, too long).
    Rejected,
    /// A request refused by access control.
    Denied,
    /// A dialog step (confirmed, approved, cancelled, expired).
    Dialog,
    /// Something a system reported (an alert, a deploy), or a source's refused request.
    Event,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Request => "request",
            Kind::Outcome => "outcome",
            Kind::Rejected => "rejected",
            Kind::Denied => "denied",
            Kind::Dialog => "dialog",
            Kind::Event => "event",
        }
    }
}

/// One row to append.
#[derive(Debug, Clone, Default)]
pub struct Entry<'a> {
    pub request_id: &'a str,
    pub platform: &'a str,
    pub conversation: &'a str,
    pub user_id: &'a str,
    pub user_name: &'a str,
    pub text: &'a str,
    pub source: &'a str,
    pub intent: &'a str,
    pub params: Option<String>,
    pub status: &'a str,
    pub exit_code: Option<i32>,
    pub duration_ms: Option<u64>,
    pub detail: &'a str,
}

/// A stored row.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub seq: i64,
    pub ts: String,
    pub kind: String,
    pub request_id: String,
    pub platform: String,
    pub conversation: String,
    pub user_id: String,
    pub user_name: String,
    pub text: String,
    pub source: String,
    pub intent: String,
    pub params: Option<serde_json::Value>,
    pub status: String,
    pub exit_code: Option<i32>,
    pub duration_ms: Option<i64>,
    pub detail: String,
}

/// Longest text stored per field; longer text is cut and marked.
const FIELD_LIMIT: usize = 2000;

pub struct Audit {
    conn: Mutex<Connection>,
    redactor: Redactor,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    ts TEXT NOT NULL,
    kind TEXT NOT NULL,
    request_id TEXT NOT NULL,
    platform TEXT NOT NULL,
    conversation TEXT NOT NULL,
    user_id TEXT NOT NULL,
    user_name TEXT NOT NULL,
    text TEXT NOT NULL,
    source TEXT NOT NULL,
    intent TEXT NOT NULL,
    params TEXT,
    status TEXT NOT NULL,
    exit_code INTEGER,
    duration_ms INTEGER,
    detail TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_request ON audit(request_id);
CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
";

fn clip(s: &str) -> String {
    if s.len() <= FIELD_LIMIT {
        return s.to_string();
    }
    let mut end = FIELD_LIMIT;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… [{} bytes in all]", &s[..end], s.len())
}

impl Audit {
    pub fn open(path: &Path, redactor: Redactor) -> Result<Self, Error> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| Error::Dir {
                path: dir.display().to_string(),
                reason: e.to_string(),
            })?;
        }
        let conn = crate::state::sqlite::open_db(path, SCHEMA)?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        Ok(Audit {
            conn: Mutex::new(conn),
            redactor,
        })
    }

    /// Appends one row; returns its sequence number.
    pub fn append(&self, kind: Kind, e: &Entry) -> Result<i64, Error> {
        let clip = |s: &str| clip(&self.redactor.redact(s));
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let ts = humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string();
        conn.execute(
            "INSERT INTO audit (ts, kind, request_id, platform, conversation, user_id, user_name, text, source, intent, params, status, exit_code, duration_ms, detail)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
            params![
                ts,
                kind.as_str(),
                e.request_id,
                clip(e.platform),
                clip(e.conversation),
                clip(e.user_id),
                clip(e.user_name),
                clip(e.text),
                e.source,
                clip(e.intent),
                e.params.as_deref().map(clip),

                e.status,
                e.exit_code,
                e.duration_ms.map(|d| d as i64),
                clip(e.detail),
            ],
        )?;
        Ok(conn.last_insert_rowid())
    }

    /// The newest `limit` rows, oldest first.
    pub fn recent(&self, limit: usize) -> Result<Vec<Row>, Error> {
        self.select(
            "FROM (SELECT * FROM audit ORDER BY seq DESC LIMIT ?1) ORDER BY seq",
            [limit as i64],
        )
    }

    /// Every row, oldest first.
    pub fn all(&self) -> Result<Vec<Row>, Error> {
        self.select("FROM audit ORDER BY seq", [])
    }

    /// The rows written from `since` to `until` (the log's own RFC 3339 stamps), oldest first.
    pub fn between(&self, since: &str, until: &str) -> Result<Vec<Row>, Error> {
        self.select(
            "FROM audit WHERE ts >= ?1 AND ts <= ?2 ORDER BY seq",
            [since, until],
        )
    }

    /// Requests that started and have no outcome: the bot stopped while they ran.
    pub fn unfinished(&self) -> Result<Vec<Row>, Error> {
        self.select(
            "FROM audit a WHERE kind = 'request' AND NOT EXISTS
                 (SELECT 1 FROM audit o WHERE o.kind = 'outcome' AND o.request_id = a.request_id)
             ORDER BY seq",
            [],
        )
    }

    fn select(&self, from: &str, args: impl rusqlite::Params) -> Result<Vec<Row>, Error> {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let mut stmt = conn.prepare(&format!(
            "SELECT seq, ts, kind, request_id, platform, conversation, user_id, user_name, text, source, intent, params, status, exit_code, duration_ms, detail {from}"
        ))?;
        let rows = stmt
            .query_map(args, |r| {
                let params: Option<String> = r.get(11)?;
                Ok(Row {
                    seq: r.get(0)?,
                    ts: r.get(1)?,
                    kind: r.get(2)?,
                    request_id: r.get(3)?,
                    platform: r.get(4)?,
                    conversation: r.get(5)?,
                    user_id: r.get(6)?,
                    user_name: r.get(7)?,
                    text: r.get(8)?,
                    source: r.get(9)?,
                    intent: r.get(10)?,
                    params: params.and_then(|p| serde_json::from_str(&p).ok()),
                    status: r.get(12)?,
                    exit_code: r.get(13)?,
                    duration_ms: r.get(14)?,
                    detail: r.get(15)?,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// Number of rows, for checks and tests.
    pub fn count(&self) -> Result<i64, Error> {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        Ok(conn
            .query_row("SELECT COUNT(*) FROM audit", [], |r| r.get(0))
            .optional()?
            .unwrap_or(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn append_only() {
        let dir = tempfile::tempdir().unwrap();
        let a = Audit::open(&dir.path().join("a.db"), Redactor::default()).unwrap();
        a.append(
            Kind::Request,
            &Entry {
                request_id: "r1",
                text: "!status",
                status: "started",
                ..Default::default()
            },
        )
        .unwrap();
        let conn = a.conn.lock().unwrap();
        let err = conn.execute("UPDATE audit SET text = 'x'", []).unwrap_err();
        assert!(err.to_string().contains("append-only"), "{err}");
        let err = conn.execute("DELETE FROM audit", []).unwrap_err();
        assert!(err.to_string().contains("append-only"), "{err}");
        drop(conn);
        assert_eq!(a.recent(10).unwrap()[0].text, "!status");
    }

    #[test]
    fn long_text_is_clipped_and_marked() {
        let dir = tempfile::tempdir().unwrap();
        let a = Audit::open(&dir.path().join("a.db"), Redactor::default()).unwrap();
        let long = "x".repeat(100_000);
        a.append(
            Kind::Rejected,
            &Entry {
                request_id: "r",
                text: &long,
                ..Default::default()
            },
        )
        .unwrap();
        let row = &a.recent(1).unwrap()[0];
        assert!(row.text.len() < 2100 && row.text.ends_with("[100000 bytes in all]"));
    }
}
