//! Access control, fail closed. Roles come from the principal (adapters map platform roles to
//! opsbot roles) and from `[policy.users]` (immutable user ids); `default_roles` apply to
//! everyone. An intent runs only for holders of one of its roles, and only in its allowed
//! channels when `[policy.channels]` restricts it. Decides and returns values; never acts.

use crate::catalog::Intent;
use crate::chat::{ConversationId, Principal};
use std::collections::{BTreeMap, BTreeSet};

#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// user id -> roles
    pub users: BTreeMap<String, Vec<String>>,
    /// roles everyone holds
    pub default_roles: Vec<String>,
    /// intent -> conversations where it may run (absent: anywhere)
    pub channels: BTreeMap<String, Vec<String>>,
}

/// Why a request was refused, in words fit for the chat (no internals).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denial {
    #[error("you need one of the roles {needed} to run {intent}")]
    Role { intent: String, needed: String },
    #[error("{intent} may not run in this channel")]
    Channel { intent: String },
    #[error("you need one of the roles {needed} to approve {intent}")]
    Approver { intent: String, needed: String },
    #[error(
        "you cannot approve your own request; another person with one of the roles {needed} must"
    )]
    SelfApproval { needed: String },
}

impl Policy {
    /// Problems of the policy against the catalogue: a `[policy.channels]` key that names no
    /// intent would silently drop its restriction, so each one is an error (fail closed).
    pub fn problems(&self, catalog: &crate::catalog::Catalog) -> Vec<String> {
        self.channels
            .keys()
            .filter(|name| catalog.intent(name).is_none())
            .map(|name| {
                let normal = name.trim().to_lowercase().replace(' ', ".");
                let hint = match catalog.intent(&normal) {
                    Some(i) => format!("; intent names are written exactly, here '{}'", i.id),
                    None => crate::nlu::strict::closest_command(catalog, &normal)
                        .map(|i| format!("; did you mean '{}'?", i.id))
                        .unwrap_or_default(),
                };
                format!("[policy.channels]: '{name}' is not an intent of the catalogue{hint}")
            })
            .collect()
    }

    /// Every role `p` holds.
    pub fn roles_of(&self, p: &Principal) -> BTreeSet<String> {
        let mut roles: BTreeSet<String> = p.roles.iter().cloned().collect();
        roles.extend(self.default_roles.iter().cloned());
        if let Some(r) = self.users.get(&p.id.0) {
            roles.extend(r.iter().cloned());
        }
        roles
    }

    /// May `p` run `intent` in `conversation`? Checked when a request is made and again right
    /// before it runs.
    pub fn authorize(
        &self,
        p: &Principal,
        intent: &Intent,
        conversation: &ConversationId,
    ) -> Result<(), Denial> {
        // intent names compare as everywhere else: without regard to case
        let restricted = self
            .channels
            .iter()
            .filter(|(name, _)| intent.id.0.eq_ignore_ascii_case(name))
            .map(|(_, allowed)| allowed);
        for allowed in restricted {
            if !allowed.iter().any(|c| c == &conversation.0) {
                return Err(Denial::Channel {
                    intent: intent.id.0.clone(),
                });
            }
        }
        let roles = self.roles_of(p);
        if intent.roles.iter().any(|r| roles.contains(r)) {
            Ok(())
        } else {
            Err(Denial::Role {
                intent: intent.id.0.clone(),
                needed: intent.roles.join(", "),
            })
        }
    }

    /// May `p` approve `intent` requested by `requester`?
    pub fn may_approve(
        &self,
        p: &Principal,
        requester: &str,
        intent: &Intent,
    ) -> Result<(), Denial> {
        let needed = intent.approvers.join(", ");
        if p.id.0 == requester {
            return Err(Denial::SelfApproval { needed });
        }
        let roles = self.roles_of(p);
        if !intent.approvers.is_empty() && intent.approvers.iter().any(|r| roles.contains(r)) {
            Ok(())
        } else {
            Err(Denial::Approver {
                intent: intent.id.0.clone(),
                needed,
            })
        }
    }

    /// The intents `p` may run here (for `!help`).
    pub fn visible<'c>(
        &self,
        p: &Principal,
        intents: &'c [Intent],
        conversation: &ConversationId,
    ) -> Vec<&'c Intent> {
        intents
            .iter()
            .filter(|i| self.authorize(p, i, conversation).is_ok())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::UserId;

    fn who(id: &str, roles: &[&str]) -> Principal {
        Principal {
            id: UserId(id.into()),
            display_name: "Admin Person".into(),
            roles: roles.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn display_names_grant_nothing() {
        let p = Policy {
            users: [("shell:admin".to_string(), vec!["admin".to_string()])].into(),
            ..Default::default()
        };
        // the display name says admin; only the id counts
        assert!(p.roles_of(&who("shell:mallory", &[])).is_empty());
        assert!(p.roles_of(&who("shell:admin", &[])).contains("admin"));
    }
}
