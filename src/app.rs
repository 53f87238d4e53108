//! Building the application from a configuration: catalogue, audit store, NLU and bot. Shared by
//! `main` and the tests so both start the bot the same way.

use crate::actions::Redactor;
use crate::audit::Audit;
use crate::bot::{Bot, Settings};
use crate::catalog;
use crate::config::Config;
use crate::nlu::Nlu;
use anyhow::Context;
use std::sync::Arc;

pub fn build(config: &Config) -> anyhow::Result<Bot> {
    let catalog = catalog::load_dir(&config.intents_dir)?;
    std::fs::create_dir_all(&config.state_dir).with_context(|| {
        format!(
            "creating the state directory {}",
            config.state_dir.display()
        )
    })?;
    let secret_names: Vec<String> = config
        .secrets
        .iter()
        .chain(catalog.intents.iter().flat_map(|i| i.action.secrets()))
        .cloned()
        .collect();
    let redactor = Redactor::from_env(&secret_names);
    let audit = Audit::open(&config.audit_db, redactor.clone())
        .with_context(|| format!("opening the audit log {}", config.audit_db.display()))?;
    Ok(Bot {
        catalog: Arc::new(catalog),
        nlu: Nlu::new(config.prefix.clone()),
        audit,
        runtime: config.runtime.clone(),
        redactor,
        settings: Settings {
            max_message_bytes: config.max_message_bytes,
        },
    })
}
