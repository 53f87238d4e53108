//! The SQLite implementations of the [`super`] traits: the dialog store
//! (`<state_dir>/dialogs.db`) and the audit log (WAL, append-only by trigger).

use super::{AuditLog, DialogStore};
use crate::audit::{Audit, Entry, Kind, Row};
use crate::dialog::store::{Error as StoreError, Store, Stored};
use crate::dialog::Pending;

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
}
