//! The `opsbot` command line: `shell`, `run`, `check`, `audit`.

use anyhow::Context;
use clap::{Parser, Subcommand};
use opsbot::nlu::{training, Model, Nlu};
use opsbot::{actions::Redactor, adapters, app, catalog, config::Config, eval};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "opsbot",
    version,
    about = "A ChatOps assistant: plain language or strict commands in, audited ops actions out"
)]
struct Cli {
    /// Configuration file (default: ./opsbot.toml if present, else built-in defaults)
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Talk to the bot in the terminal (works with piped input too)
    Shell {
        /// Your user id in this session
        #[arg(long, default_value = "local")]
        user: String,
        /// A role you hold (repeatable)
        #[arg(long = "role")]
        roles: Vec<String>,
    },
    /// Start the chat adapters named in the configuration
    Run,
    /// Validate the intent catalogue and report every problem with file and line
    Check {
        /// Intent directory (default: the configured one)
        #[arg(long)]
        intents: Option<PathBuf>,
    },
    /// Show how a message is understood (nothing is run)
    Classify {
        /// The message
        text: String,
        #[arg(long)]
        json: bool,
    },
    /// Measure the parser on a labelled JSONL file
    Eval {
        /// Rows of {"text", "intent" (or null for off-topic), "slots" (optional)}
        #[arg(long)]
        data: PathBuf,
        /// Train on this JSONL instead of the catalogue (intent -> examples, null -> off-topic)
        #[arg(long)]
        train: Option<PathBuf>,
        #[arg(long)]
        json: bool,
        /// Print in-scope accuracy vs off-topic recall over a range of thresholds
        #[arg(long)]
        sweep: bool,
        /// Override the accept threshold
        #[arg(long)]
        accept: Option<f32>,
        /// Override the suggest threshold
        #[arg(long)]
        suggest: Option<f32>,
        /// Override the margin to the runner-up
        #[arg(long)]
        margin: Option<f32>,
        /// Also list the rows the parser got wrong
        #[arg(long)]
        errors: bool,
    },
    /// Train the classifier on the catalogue now (a first start does it too), with progress
    Train,
    /// Review candidate examples learned from use: list them, or accept / drop some by id
    Examples {
        #[command(subcommand)]
        action: Option<ExamplesAction>,
    },
    /// Print the chronology of events, requests, approvals and outcomes as markdown (a postmortem)
    Timeline {
        /// From when: a time (2026-12-03T10:00:00Z) or a duration ago (2h)
        #[arg(long)]
        since: String,
        /// Until when (default: now)
        #[arg(long)]
        until: Option<String>,
        /// Only this conversation (discord:<channel id>, shell:local)
        #[arg(long)]
        conversation: Option<String>,
    },
    /// Show the newest audit records
    Audit {
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// One JSON object per line
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum ExamplesAction {
    /// List the candidates not reviewed yet (the default)
    List {
        #[arg(long)]
        json: bool,
    },
    /// Write these candidates into their intents' files; the next start trains on them
    Accept { ids: Vec<String> },
    /// Never offer these candidates again
    Drop { ids: Vec<String> },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // a long-running adapter logs what it does; one-off commands only their troubles
    let default_level = match cli.command {
        Command::Run => "info,serenity=warn",
        _ => "warn",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("OPSBOT_LOG")
                .unwrap_or_else(|_| default_level.into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let mut config = Config::load(cli.config.as_deref())?;
    // the adapters read their own sections of the configuration (`adapters::PLATFORMS`)
    let platforms = adapters::configured(&mut config)?;
    // the events listener reads its own section too
    let events = match config.section(opsbot::events::settings::SECTION) {
        None => None,
        Some(s) => {
            let e = opsbot::events::settings::Settings::from_section(s).map_err(|(m, route)| {
                match route {
                    Some(i) => config.table_error("events.routes", i, m),
                    None => config.section_error(m),
                }
            })?;
            for name in e.secret_envs() {
                config.add_secret(&name)?;
            }
            Some(e)
        }
    };
    let sections: Vec<&str> = adapters::sections()
        .chain([opsbot::events::settings::SECTION])
        .collect();
    config.check_sections(&sections)?;
    match cli.command {
        Command::Check { intents } => {
            let dir = intents.unwrap_or(config.intents_dir.clone());
            let loaded = catalog::load_dir(&dir).map(|c| {
                let mut problems = config.policy.problems(&c);
                for (i, p) in events.iter().flat_map(|e| e.problems(&c)) {
                    problems.push(config.table_error("events.routes", i, p).to_string());
                }
                (c, problems)
            });
            match loaded {
                Ok((_, problems)) if !problems.is_empty() => {
                    for p in &problems {
                        println!("{p}");
                    }
                    println!("{} problem(s) found", problems.len());
                    Ok(ExitCode::FAILURE)
                }
                Ok((c, _)) => {
                    println!(
                        "{}: {} intents, {} entities, all valid",
                        dir.display(),
                        c.intents.len(),
                        c.entities.len()
                    );
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    for p in &e.problems {
                        println!("{p}");
                    }
                    println!("{} problem(s) found", e.problems.len());
                    Ok(ExitCode::FAILURE)
                }
            }
        }
        Command::Train => {
            let settings = config
                .nlu
                .clone()
                .context("the NLU is switched off in the configuration ([nlu] enabled = false)")?;
            let catalog = catalog::load_dir(&config.intents_dir)?;
            let started = std::time::Instant::now();
            let model = app::train(&catalog, &settings)?;
            println!(
                "trained on {} intents and help in {:.1}s; cached in {}",
                catalog.intents.len(),
                started.elapsed().as_secs_f64(),
                settings
                    .cache_dir
                    .as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_else(|| "(no cache)".into())
            );
            drop(model);
            Ok(ExitCode::SUCCESS)
        }
        Command::Examples { action } => {
            let audit = open_audit(&config)?;
            let reviews = opsbot::learn::Reviews::open(&config.state_dir)?;
            match action.unwrap_or(ExamplesAction::List { json: false }) {
                ExamplesAction::List { json } => {
                    let pending = opsbot::learn::pending(audit.as_ref(), &reviews)?;
                    for c in &pending {
                        if json {
                            println!("{}", serde_json::to_string(c)?);
                        } else {
                            println!(
                                "{}  {:<16} {:<9} {:?}  ({} at {})",
                                c.id, c.intent, c.how, c.text, c.user, c.ts
                            );
                        }
                    }
                    if !json {
                        println!(
                            "{} candidate(s); `opsbot examples accept ID` adds one to its intent, `opsbot examples drop ID` forgets it",
                            pending.len()
                        );
                    }
                    Ok(ExitCode::SUCCESS)
                }
                ExamplesAction::Accept { ids } | ExamplesAction::Drop { ids } if ids.is_empty() => {
                    anyhow::bail!("name at least one candidate id (see `opsbot examples`)")
                }
                ExamplesAction::Accept { ids } => {
                    for id in ids {
                        let c = opsbot::learn::accept(
                            audit.as_ref(),
                            &reviews,
                            &config.intents_dir,
                            &id,
                        )?;
                        println!("added {:?} to the examples of {}", c.text, c.intent);
                    }
                    println!("the next start trains on them");
                    Ok(ExitCode::SUCCESS)
                }
                ExamplesAction::Drop { ids } => {
                    for id in ids {
                        let c = opsbot::learn::drop(audit.as_ref(), &reviews, &id)?;
                        println!("dropped {:?} ({})", c.text, c.intent);
                    }
                    Ok(ExitCode::SUCCESS)
                }
            }
        }
        Command::Timeline {
            since,
            until,
            conversation,
        } => {
            let now = std::time::SystemTime::now();
            let since = opsbot::timeline::parse_when(&since, now)
                .map_err(|e| anyhow::anyhow!("--since: {e}"))?;
            let until = match until {
                Some(u) => opsbot::timeline::parse_when(&u, now)
                    .map_err(|e| anyhow::anyhow!("--until: {e}"))?,
                None => now,
            };
            if until < since {
                anyhow::bail!("--until is before --since");
            }
            let audit = open_audit(&config)?;
            let rows = audit.between(
                &opsbot::timeline::stamp(since),
                &opsbot::timeline::stamp(until),
            )?;
            print!(
                "{}",
                opsbot::timeline::render(&rows, since, until, conversation.as_deref())
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Audit { limit, json } => {
            let audit = open_audit(&config)?;
            for row in audit.recent(limit)? {
                if json {
                    println!("{}", serde_json::to_string(&row)?);
                } else {
                    let params = row
                        .params
                        .as_ref()
                        .map(|p| p.to_string())
                        .unwrap_or_default();
                    let code = row
                        .exit_code
                        .map(|c| format!(" exit={c}"))
                        .unwrap_or_default();
                    println!(
                        "{} {} {:<8} {} {} {} {} {}{} {}",
                        row.ts,
                        row.request_id,
                        row.kind,
                        row.user_id,
                        row.intent,
                        params,
                        row.status,
                        row.text,
                        code,
                        row.detail.lines().next().unwrap_or("")
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Shell { user, roles } => {
            let bot = std::sync::Arc::new(app::build_serving(&config)?);
            let outboxes = std::sync::Arc::new(opsbot::chat::Outboxes::default());
            runtime()?.block_on(async {
                let _ticker = app::spawn_expiry_ticker(bot.clone(), outboxes.clone());
                // events routed to `shell` show here too, for local use
                if let Some(e) = events {
                    app::start_events(&config, e, &bot, outboxes.clone()).await?;
                }
                adapters::shell::run(bot, &user, roles, outboxes).await?;
                anyhow::Ok(())
            })?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Classify { text, json } => {
            let catalog = catalog::load_dir(&config.intents_dir)?;
            let nlu = nlu_for(&config, &catalog)?;
            let a = nlu.analyze(&catalog, &text);
            if json {
                println!("{}", serde_json::to_string(&a)?);
            } else {
                println!(
                    "{:?} {} (confidence {:.2}, {}, {} us)",
                    a.decision,
                    a.intent.as_deref().unwrap_or("-"),
                    a.confidence,
                    a.source.as_str(),
                    a.elapsed_us
                );
                for (k, v) in &a.slots {
                    println!("  {k} = {v}");
                }
                for m in &a.missing {
                    println!("  missing {m}");
                }
                for alt in &a.alternatives {
                    println!("  alternative {} ({:.2})", alt.intent, alt.confidence);
                }
                if let Some(e) = &a.error {
                    println!("  error: {e}");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Eval {
            data,
            train,
            json,
            sweep,
            accept,
            suggest,
            margin,
            errors,
        } => {
            let mut rows = eval::read_rows(&data)?;
            let mut settings = config
                .nlu
                .clone()
                .context("the NLU is switched off in the configuration ([nlu] enabled = false)")?;
            let t = &mut settings.thresholds;
            t.accept = accept.unwrap_or(t.accept);
            t.suggest = suggest.unwrap_or(t.suggest.min(t.accept));
            t.margin = margin.unwrap_or(t.margin);
            let (catalog, nlu) = match &train {
                Some(path) => {
                    let train_rows = eval::read_rows(path)?;
                    let set = training::from_rows(
                        train_rows
                            .iter()
                            .map(|r| (r.text.as_str(), r.intent.as_deref())),
                    );
                    let empty = catalog::Catalog {
                        intents: vec![],
                        entities: Default::default(),
                        dir: PathBuf::new(),
                    };
                    let model = Model::train(&settings, &set, false)
                        .context("training on the --train rows")?;
                    (empty, Nlu::with_model(config.prefix.clone(), model))
                }
                None => {
                    let catalog = catalog::load_dir(&config.intents_dir)?;
                    eval::check_intents(&catalog, &mut rows)
                        .map_err(|e| anyhow::anyhow!("{}: {e}", data.display()))?;
                    let model = app::train(&catalog, &settings)?;
                    (
                        catalog.clone(),
                        Nlu::with_model(config.prefix.clone(), model),
                    )
                }
            };
            let preds = eval::predict(&nlu, &catalog, &rows);
            if sweep {
                println!(
                    "{:>6} {:>6} {:>10} {:>10} {:>10}",
                    "accept", "margin", "in_scope", "oos_recall", "oos_fa"
                );
                for r in eval::sweep(
                    &catalog,
                    &rows,
                    &preds,
                    &[0.0, 0.1, 0.2],
                    settings.thresholds,
                ) {
                    println!(
                        "{:>6.2} {:>6.2} {:>10.4} {:>10.4} {:>10.4}",
                        r.thresholds.accept,
                        r.thresholds.margin,
                        r.in_scope_accuracy,
                        r.oos_recall,
                        r.oos_false_accept_rate
                    );
                }
                return Ok(ExitCode::SUCCESS);
            }
            let report = eval::score(&catalog, &rows, &preds, None, settings.thresholds);
            if errors {
                for (r, p) in rows.iter().zip(&preds) {
                    if let Some(line) = eval::row_error(&catalog, r, p) {
                        println!("{line}");
                    }
                }
            }
            if json {
                println!("{}", serde_json::to_string(&report)?);
            } else {
                println!(
                    "rows {} (in scope {}, off-topic {})",
                    report.rows, report.in_scope, report.out_of_scope
                );
                println!("in-scope accuracy   {:.4}", report.in_scope_accuracy);
                println!("top-1 accuracy      {:.4}", report.top1_accuracy);
                println!("off-topic recall    {:.4}", report.oos_recall);
                println!("off-topic accepted  {:.4}", report.oos_false_accept_rate);
                println!("slot precision      {:.4}", report.slot_precision);
                println!("slot recall         {:.4}", report.slot_recall);
                println!("frame accuracy      {:.4}", report.frame_accuracy);
                println!(
                    "latency p50 / p99   {} / {} us",
                    report.latency_p50_us, report.latency_p99_us
                );
                println!(
                    "thresholds          accept {} margin {} suggest {}",
                    report.thresholds.accept, report.thresholds.margin, report.thresholds.suggest
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Run => {
            if platforms.is_empty() && events.is_none() {
                anyhow::bail!("nothing to run: add a [discord] table (README, \"Discord\") or an [events] table (README, \"Events\") to the configuration, or talk to the bot with `opsbot shell`")
            }
            let bot = std::sync::Arc::new(app::build_serving(&config)?);
            let outboxes = std::sync::Arc::new(opsbot::chat::Outboxes::default());
            runtime()?.block_on(async {
                let _ticker = app::spawn_expiry_ticker(bot.clone(), outboxes.clone());
                // every adapter and the events listener side by side; the first to end for
                // good ends the bot
                let mut serving = tokio::task::JoinSet::new();
                if let Some(e) = events {
                    let listener = app::start_events(&config, e, &bot, outboxes.clone())
                        .await?
                        .2;
                    serving.spawn(async move { listener.await? });
                }
                if !platforms.is_empty() {
                    let messages = app::message_map(&config)?;
                    for platform in platforms {
                        serving.spawn(platform.run(
                            bot.clone(),
                            messages.clone(),
                            outboxes.clone(),
                        ));
                    }
                }
                match serving.join_next().await {
                    Some(ended) => ended?,
                    None => Ok(()),
                }
            })?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The audit log, for the commands that read it (redacting with the configured secrets).
fn open_audit(config: &Config) -> anyhow::Result<std::sync::Arc<dyn opsbot::state::AuditLog>> {
    app::audit_log(config, Redactor::from_env(&config.secrets))
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}

fn nlu_for(config: &Config, catalog: &catalog::Catalog) -> anyhow::Result<Nlu> {
    Ok(match &config.nlu {
        None => Nlu::strict_only(config.prefix.clone()),
        Some(s) => Nlu::with_model(config.prefix.clone(), app::train(catalog, s)?),
    })
}
