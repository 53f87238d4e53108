//! Building the application from a configuration: catalogue, audit store, NLU and bot. Shared by
//! `main` and the tests so both start the bot the same way.

use crate::actions::Redactor;
use crate::audit::Audit;
use crate::bot::{Bot, Parts, Settings};
use crate::catalog;
use crate::catalog::Catalog;
use crate::config::Config;
use crate::dialog::store;
use crate::nlu::{training, Model, Nlu, Settings as NluSettings};
use anyhow::Context;
use std::sync::Arc;

/// The bot, with its model trained before it returns (a first start shows the training's
/// progress): for the shell, the tools and the tests.
pub fn build(config: &Config) -> anyhow::Result<Bot> {
    build_with(config, false)
}

/// The bot for `opsbot run` and `opsbot shell`: on a first start (texts to embed) it serves at
/// once, strict commands and help included, while the model learns the catalogue on a thread
/// of its own; plain language is answered with how far the learning got until the model takes
/// over. A warm start has its model before this returns, as with [`build`].
pub fn build_serving(config: &Config) -> anyhow::Result<Bot> {
    build_with(config, true)
}

fn build_with(config: &Config, learn_in_background: bool) -> anyhow::Result<Bot> {
    let catalog = Arc::new(catalog::load_dir(&config.intents_dir)?);
    let problems = config.policy.problems(&catalog);
    if !problems.is_empty() {
        anyhow::bail!("{}", problems.join("\n"));
    }
    std::fs::create_dir_all(&config.state_dir).with_context(|| {
        format!(
            "creating the state directory {}",
            config.state_dir.display()
        )
    })?;
    // every secret any action or preview may see is redacted everywhere; a value too short to
    // redact without shredding ordinary text is refused
    let secret_names: Vec<String> = config
        .secrets
        .iter()
        .chain(catalog.intents.iter().flat_map(|i| {
            i.action
                .secrets()
                .iter()
                .chain(i.preview.iter().flat_map(|p| p.secrets.iter()))
        }))
        .cloned()
        .collect();
    for name in &secret_names {
        if std::env::var(name).is_ok_and(|v| v.len() < 4) {
            anyhow::bail!(
                "secret {name} is shorter than 4 characters; it could not be redacted safely"
            );
        }
    }
    let redactor = Redactor::from_env(&secret_names);
    let audit = audit_log(config, redactor.clone())?;
    let nlu = match &config.nlu {
        None => Arc::new(Nlu::strict_only(config.prefix.clone())),
        Some(settings) if learn_in_background => {
            let nlu = Arc::new(Nlu::learning(config.prefix.clone()));
            let (learner, catalog, settings) = (nlu.clone(), catalog.clone(), settings.clone());
            // the learning thread says when it must embed (a first start), or how it ended
            enum Heard {
                Embedding,
                Ended(Result<(), String>),
            }
            let (tell, heard) = std::sync::mpsc::channel::<Heard>();
            std::thread::Builder::new()
                .name("opsbot-learning".into())
                .spawn(move || {
                    let serving = std::cell::Cell::new(false);
                    let model = train_observed(&catalog, &settings, &|done, total| {
                        learner.progress(done, total);
                        if done == 0 {
                            serving.set(true);
                            let _ = tell.send(Heard::Embedding);
                        }
                    });
                    let ended = model.as_ref().map(|_| ()).map_err(|e| format!("{e:#}"));
                    if let (true, Err(e)) = (serving.get(), &ended) {
                        // the bot serves already: this is where its failure is told
                        tracing::error!(error = %e, "the language model could not learn the catalogue; only strict commands work");
                    }
                    learner.learned(model);
                    let _ = tell.send(Heard::Ended(ended));
                })
                .context("starting the model's learning thread")?;
            // a start that finds every text embedded has its model in a moment (at most the head
            // to train again): it waits, and answers exactly as a blocking start would, failing
            // as one would (a missing model, say); one that must embed serves now and learns on
            match heard.recv() {
                Ok(Heard::Embedding) => tracing::info!(
                    "the model is learning the catalogue (a first start); strict commands work meanwhile"
                ),
                Ok(Heard::Ended(Err(e))) => anyhow::bail!("{e}"),
                Ok(Heard::Ended(Ok(()))) => {}
                Err(_) => anyhow::bail!("the model's learning thread ended without a word"),
            }
            nlu
        }
        Some(settings) => Arc::new(Nlu::with_model(
            config.prefix.clone(),
            train(&catalog, settings)?,
        )),
    };
    let dialogs = store::Store::open(&config.state_dir.join("dialogs.db"))
        .with_context(|| format!("opening the dialog store in {}", config.state_dir.display()))?;
    let coordination =
        crate::state::sqlite::Coordinator::open(&config.state_dir.join("coordination.db"))
            .with_context(|| {
                format!(
                    "opening the coordination store in {}",
                    config.state_dir.display()
                )
            })?;
    // The first bot on a state directory holds its lock for life. Only the holder settles what
    // a killed predecessor left: it stops the actions still running and gives their requests an
    // `interrupted` outcome. A second process on the same directory (`opsbot shell` beside
    // `opsbot run`) must not take the first one's running actions for orphans.
    let instance = std::fs::File::create(config.state_dir.join("opsbot.lock"))
        .and_then(|f| f.try_lock().map(|_| f).map_err(std::io::Error::other));
    let first = match &instance {
        Ok(_) => true,
        Err(e) => {
            tracing::warn!(error = %e, "another opsbot runs on this state directory; it settles what a killed run left");
            false
        }
    };
    let reaped = if first {
        crate::actions::exec::reap_orphans(&config.state_dir)
    } else {
        Default::default()
    };
    let bot = Bot::new(Parts {
        catalog,
        nlu,
        // the one place where the state's home is chosen
        audit,
        dialogs: Box::new(dialogs),
        coordination: Box::new(coordination),
        policy: config.policy.clone(),
        runtime: config.runtime.clone(),
        redactor,
        settings: Settings {
            name: config.bot_name.clone(),
            max_message_bytes: config.max_message_bytes,
            dialogs: config.dialogs.clone(),
        },
    });
    if first {
        let interrupted = bot
            .settle_interrupted(&reaped)
            .context("recording interrupted actions in the audit log")?;
        if interrupted > 0 {
            tracing::warn!(interrupted, "actions of a previous run were interrupted");
        }
        // held (and released by the kernel) for as long as this process lives
        if let Ok(f) = instance {
            std::mem::forget(f);
        }
    }
    Ok(bot)
}

/// Loads the embedding model and trains the classifier on the catalogue and the negatives.
pub fn train(catalog: &Catalog, settings: &NluSettings) -> anyhow::Result<Model> {
    train_observed(catalog, settings, &|_, _| {})
}

/// [`train`], telling `observe` how many texts are embedded of how many.
pub fn train_observed(
    catalog: &Catalog,
    settings: &NluSettings,
    observe: &dyn Fn(usize, usize),
) -> anyhow::Result<Model> {
    let negatives = training::read_negatives(&settings.negatives_dir).with_context(|| {
        format!(
            "reading off-topic negatives in {}",
            settings.negatives_dir.display()
        )
    })?;
    let set = training::from_catalog(catalog, &negatives);
    // a first start embeds thousands of texts: show how far it got (a bar on a terminal, a log
    // line at the start and end otherwise); a warm start finds them cached and shows nothing
    let bar = std::sync::OnceLock::<indicatif::ProgressBar>::new();
    let progress = |done: usize, total: usize| {
        let b = bar.get_or_init(|| {
            tracing::info!(
                texts = total,
                "training the classifier: embedding the examples"
            );
            let b = indicatif::ProgressBar::new(total as u64);
            b.set_style(
                indicatif::ProgressStyle::with_template(
                    "training the classifier {bar:30} {pos}/{len} texts, {per_sec}, {eta} left",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            b
        });
        b.set_position(done as u64);
        observe(done, total);
        if done == total {
            b.finish_and_clear();
            tracing::info!(texts = total, "embedded the training texts");
        }
    };
    Model::train_with(settings, &set, true, &progress).with_context(|| {
        format!(
            "loading the language model from {}",
            settings.model_dir.display()
        )
    })
}

/// The one expiry ticker, for every adapter: every second, for each platform whose adapter has
/// registered its outbox, the dialogs whose time ran out are closed (their buttons disabled)
/// and announced where they were asked, along with anything else the bot owes that platform
/// (actions a previous run left unfinished). Started once by the application; runs until the
/// task is dropped or aborted.
pub fn spawn_expiry_ticker(
    bot: Arc<Bot>,
    outboxes: Arc<crate::chat::Outboxes>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            // a platform's questions expire once its adapter has registered its outbox
            for outbox in outboxes.all() {
                deliver_due(&bot, outbox.as_ref()).await;
            }
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        }
    })
}

/// An adapter that connects: its outbox is registered (the ticker serves it from now on) and
/// what the bot already owes its platform is delivered at once (questions that expired while it
/// was away, actions a previous run left unfinished), before the adapter reads any input.
pub async fn connect(
    bot: &Bot,
    outboxes: &crate::chat::Outboxes,
    outbox: Arc<dyn crate::chat::Outbox>,
) {
    outboxes.register(outbox.clone());
    deliver_due(bot, outbox.as_ref()).await;
}

/// One pass of the ticker for one platform.
async fn deliver_due(bot: &Bot, outbox: &dyn crate::chat::Outbox) {
    for e in bot.expire_due(outbox.platform()).await {
        if !e.dialog.is_empty() {
            outbox.close_question(&e.dialog, "→ expired").await;
        }
        outbox.send(&e.conversation, &e.reply).await;
    }
}

/// The audit log (chosen here, once, for the bot and for the commands that read it):
/// `audit_db` in SQLite, redacted with `redactor` on the way in.
pub fn audit_log(
    config: &Config,
    redactor: crate::actions::Redactor,
) -> anyhow::Result<Arc<dyn crate::state::AuditLog>> {
    let audit = Audit::open(&config.audit_db, redactor)
        .with_context(|| format!("opening the audit log {}", config.audit_db.display()))?;
    Ok(Arc::new(audit))
}

/// Where adapters keep the messages that show open questions (chosen here, once, for every
/// adapter): `<state_dir>/messages.db`.
pub fn message_map(config: &Config) -> anyhow::Result<Arc<dyn crate::state::MessageMap>> {
    let path = config.state_dir.join("messages.db");
    let map = crate::state::sqlite::Messages::open(&path)
        .with_context(|| format!("opening the message map {}", path.display()))?;
    Ok(Arc::new(map))
}

/// The events hub of `[events]`, over the bot's catalogue and audit log, with its state in
/// `<state_dir>/events.db`; it posts through whatever adapters register in `outboxes`.
pub fn events(
    config: &Config,
    settings: crate::events::settings::Settings,
    bot: &Bot,
    outboxes: Arc<crate::chat::Outboxes>,
) -> anyhow::Result<crate::events::Hub> {
    // the one place where the events state's home is chosen
    let store = crate::state::sqlite::Events::open(&config.state_dir.join("events.db"))?;
    Ok(crate::events::Hub::new(
        settings,
        bot.shared_catalog(),
        config.prefix.clone(),
        bot.audit_log(),
        Box::new(store),
        outboxes,
    ))
}

/// Starts `[events]`: binds the listener (a taken port stops the start here), serves it, and
/// announces the bot's finished actions. The address it listens on (port 0 picks a free one),
/// the hub, and a handle that ends when the listener does.
pub async fn start_events(
    config: &Config,
    settings: crate::events::settings::Settings,
    bot: &Bot,
    outboxes: Arc<crate::chat::Outboxes>,
) -> anyhow::Result<(
    std::net::SocketAddr,
    Arc<crate::events::Hub>,
    tokio::task::JoinHandle<anyhow::Result<()>>,
)> {
    let hub = Arc::new(events(config, settings, bot, outboxes)?);
    let addr = hub.settings().listen;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("events: cannot listen on {addr}"))?;
    let mut finished = bot.finished();
    let announcer = hub.clone();
    tokio::spawn(async move {
        loop {
            match finished.recv().await {
                Ok(f) => announcer.announce(&f).await,
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(
                        missed = n,
                        "announcements fell behind; some were not posted"
                    )
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
            }
        }
    });
    let bound = listener.local_addr()?;
    let serving = tokio::spawn(crate::events::http::serve_on(hub.clone(), listener));
    Ok((bound, hub, serving))
}
