//! Learning from use, with a person in the loop. The audit log already says when the bot
//! misunderstood someone and what they meant: a did-you-mean whose candidate they picked, or a
//! message it did not understand followed, within two minutes, by a request of the same person in
//! the same conversation that then ran. Each such pair (text, intent) is a candidate example.
//! `opsbot examples` lists the candidates; an admin accepts or drops each one. Accepting writes the
//! text into the intent's TOML file (checked by the catalogue loader, and put back if the file no
//! longer loads), so the next start trains on it. Nothing is learned without that review; the
//! decisions are kept in `<state_dir>/examples.db`.

use crate::audit::Row;
use crate::state::AuditLog;
use rusqlite::{params, Connection};
use sha2::{Digest, Sha256};
use std::path::Path;

/// How long after a refusal a request still counts as its rephrasing.
const REPHRASE_WINDOW_SECS: u64 = 120;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("audit log: {0}")]
    Audit(#[from] anyhow::Error),
    #[error("review store: {0}")]
    Db(#[from] rusqlite::Error),
    #[error("no candidate example with id {0}")]
    Unknown(String),
    #[error("{path}: {reason}")]
    File { path: String, reason: String },
    #[error("adding the example broke the catalogue, so {path} was put back: {problems}")]
    Invalid { path: String, problems: String },
}

/// A candidate example.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Candidate {
    /// Stable id: a hash of text and intent.
    pub id: String,
    pub text: String,
    pub intent: String,
    /// "picked" (from a did-you-mean) or "rephrased" (a request that ran after a refusal).
    pub how: &'static str,
    pub user: String,
    pub ts: String,
}

fn id_of(text: &str, intent: &str) -> String {
    let mut h = Sha256::new();
    h.update(text.trim().to_lowercase().as_bytes());
    h.update([0]);
    h.update(intent.as_bytes());
    hex::encode(&h.finalize()[..5])
}

fn seconds(ts: &str) -> Option<u64> {
    humantime::parse_rfc3339_weak(ts.trim_end_matches('Z'))
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_secs())
}

/// The candidates the audit rows show, oldest first, each (text, intent) once.
pub fn candidates(rows: &[Row]) -> Vec<Candidate> {
    let mut out: Vec<Candidate> = Vec::new();
    let mut push = |text: &str, intent: &str, how: &'static str, r: &Row| {
        let text = text.trim();
        if text.is_empty() || intent.is_empty() {
            return;
        }
        let id = id_of(text, intent);
        if out.iter().all(|c| c.id != id) {
            out.push(Candidate {
                id,
                text: text.to_string(),
                intent: intent.to_string(),
                how,
                user: r.user_id.clone(),
                ts: r.ts.clone(),
            });
        }
    };
    for (i, r) in rows.iter().enumerate() {
        // a did-you-mean answered with a candidate: the dialog row names the picked intent
        if r.kind == "dialog" && r.status == "picked" && r.source == "nlu" {
            push(&r.text, &r.intent, "picked", r);
        }
        // a plain-language message not understood, then a request of the same person in the
        // same conversation that ran
        if r.kind == "rejected" && r.source == "nlu" && !r.text.starts_with('!') {
            let Some(at) = seconds(&r.ts) else { continue };
            let next = rows[i + 1..]
                .iter()
                .filter(|n| n.user_id == r.user_id && n.conversation == r.conversation)
                .take_while(|n| seconds(&n.ts).is_some_and(|t| t <= at + REPHRASE_WINDOW_SECS))
                .find(|n| n.kind == "request" || n.kind == "rejected");
            // the request must have been made after the refusal (not one that was waiting for a
            // confirmation or an approval, and ran now)
            let made_after = |n: &Row| {
                rows[..=i]
                    .iter()
                    .all(|earlier| earlier.request_id != n.request_id)
            };
            if let Some(n) =
                next.filter(|n| n.kind == "request" && n.status == "started" && made_after(n))
            {
                push(&r.text, &n.intent, "rephrased", r);
            }
        }
    }
    out
}

/// The review decisions, in `<state_dir>/examples.db`.
pub struct Reviews {
    conn: Connection,
}

impl Reviews {
    pub fn open(state_dir: &Path) -> Result<Reviews, Error> {
        std::fs::create_dir_all(state_dir).map_err(|e| Error::File {
            path: state_dir.display().to_string(),
            reason: e.to_string(),
        })?;
        let conn = crate::state::sqlite::open_db(
            &state_dir.join("examples.db"),
            "CREATE TABLE IF NOT EXISTS reviewed (
                id TEXT PRIMARY KEY, text TEXT NOT NULL, intent TEXT NOT NULL,
                decision TEXT NOT NULL, ts INTEGER NOT NULL)",
        )?;
        Ok(Reviews { conn })
    }

    fn decided(&self, id: &str) -> Result<bool, Error> {
        Ok(self
            .conn
            .query_row("SELECT 1 FROM reviewed WHERE id = ?1", [id], |_| Ok(()))
            .map(|_| true)
            .or_else(|e| match e {
                rusqlite::Error::QueryReturnedNoRows => Ok(false),
                e => Err(e),
            })?)
    }

    fn record(&self, c: &Candidate, decision: &str) -> Result<(), Error> {
        self.conn.execute(
            "INSERT OR REPLACE INTO reviewed (id, text, intent, decision, ts) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![c.id, c.text, c.intent, decision, crate::dialog::store::now() as i64],
        )?;
        Ok(())
    }
}

/// Candidates not reviewed yet.
pub fn pending(audit: &dyn AuditLog, reviews: &Reviews) -> Result<Vec<Candidate>, Error> {
    let mut out = Vec::new();
    for c in candidates(&audit.all()?) {
        if !reviews.decided(&c.id)? {
            out.push(c);
        }
    }
    Ok(out)
}

fn find(audit: &dyn AuditLog, reviews: &Reviews, id: &str) -> Result<Candidate, Error> {
    pending(audit, reviews)?
        .into_iter()
        .find(|c| c.id == id)
        .ok_or_else(|| Error::Unknown(id.to_string()))
}

/// Drops candidate `id`: it is never offered again.
pub fn drop(audit: &dyn AuditLog, reviews: &Reviews, id: &str) -> Result<Candidate, Error> {
    let c = find(audit, reviews, id)?;
    reviews.record(&c, "dropped")?;
    Ok(c)
}

/// Accepts candidate `id`: appends it to the examples of its intent's file in `intents_dir`. If
/// the catalogue no longer loads, the file is put back and nothing is recorded.
pub fn accept(
    audit: &dyn AuditLog,
    reviews: &Reviews,
    intents_dir: &Path,
    id: &str,
) -> Result<Candidate, Error> {
    let c = find(audit, reviews, id)?;
    // the file that declares the intent (usually, but not necessarily, named after it)
    let path = crate::catalog::load_dir(intents_dir)
        .ok()
        .and_then(|cat| cat.intent(&c.intent).map(|i| i.file.clone()))
        .unwrap_or_else(|| intents_dir.join(format!("{}.toml", c.intent)));
    let shown = path.display().to_string();
    let file_err = |reason: String| Error::File {
        path: shown.clone(),
        reason,
    };
    let original = std::fs::read_to_string(&path).map_err(|e| file_err(e.to_string()))?;
    let mut doc: toml_edit::DocumentMut = original
        .parse()
        .map_err(|e: toml_edit::TomlError| file_err(e.to_string()))?;
    let examples = doc
        .get_mut("examples")
        .and_then(|e| e.as_array_mut())
        .ok_or_else(|| file_err("has no examples array".into()))?;
    // placeholders in learned text would be read as parameters: keep braces out
    let text = c.text.replace(['{', '}'], "");
    examples.push(text.as_str());
    // keep the file's one-example-a-line layout
    if let Some(last) = examples.iter_mut().last() {
        last.decor_mut().set_prefix("\n  ");
    }
    examples.set_trailing("\n");
    examples.set_trailing_comma(true);
    std::fs::write(&path, doc.to_string()).map_err(|e| file_err(e.to_string()))?;
    if let Err(e) = crate::catalog::load_dir(intents_dir) {
        let _ = std::fs::write(&path, original);
        let problems: Vec<String> = e.problems.iter().map(|p| p.to_string()).collect();
        return Err(Error::Invalid {
            path: shown,
            problems: problems.join("; "),
        });
    }
    reviews.record(&c, "accepted")?;
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(kind: &str, ts: &str, text: &str, intent: &str, status: &str, source: &str) -> Row {
        Row {
            seq: 0,
            ts: ts.into(),
            kind: kind.into(),
            request_id: format!("r{ts}"),
            platform: "shell".into(),
            conversation: "shell:local".into(),
            user_id: "shell:alice".into(),
            user_name: "alice".into(),
            text: text.into(),
            source: source.into(),
            intent: intent.into(),
            params: None,
            status: status.into(),
            exit_code: None,
            duration_ms: None,
            detail: String::new(),
        }
    }

    #[test]
    fn picks_and_rephrasings_become_candidates() {
        let rows = vec![
            row(
                "rejected",
                "2026-12-02T10:00:00.000Z",
                "kick the wrkrs in prod",
                "",
                "rejected",
                "nlu",
            ),
            row(
                "request",
                "2026-12-02T10:00:30.000Z",
                "restart worker production",
                "restart",
                "started",
                "nlu",
            ),
            row(
                "dialog",
                "2026-12-02T10:05:00.000Z",
                "shush api an hour",
                "alerts.silence",
                "picked",
                "nlu",
            ),
            // too late to count as a rephrasing
            row(
                "rejected",
                "2026-12-02T11:00:00.000Z",
                "make web go",
                "",
                "rejected",
                "nlu",
            ),
            row(
                "request",
                "2026-12-02T11:05:00.000Z",
                "!deploy web staging",
                "deploy",
                "started",
                "strict",
            ),
        ];
        let c = candidates(&rows);
        let pairs: Vec<(&str, &str, &str)> = c
            .iter()
            .map(|c| (c.text.as_str(), c.intent.as_str(), c.how))
            .collect();
        assert_eq!(
            pairs,
            [
                ("kick the wrkrs in prod", "restart", "rephrased"),
                ("shush api an hour", "alerts.silence", "picked"),
            ]
        );
    }
}
