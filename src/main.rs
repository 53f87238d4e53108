//! The `opsbot` command line: `shell`, `run`, `check`, `audit`.

use anyhow::Context;
use clap::{Parser, Subcommand};
use opsbot::{actions::Redactor, adapters, app, audit::Audit, catalog, config::Config};
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
    /// Show the newest audit records
    Audit {
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// One JSON object per line
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("OPSBOT_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let config = Config::load(cli.config.as_deref())?;
    match cli.command {
        Command::Check { intents } => {
            let dir = intents.unwrap_or(config.intents_dir.clone());
            match catalog::load_dir(&dir) {
                Ok(c) => {
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
        Command::Audit { limit, json } => {
            let audit = Audit::open(&config.audit_db, Redactor::from_env(&config.secrets))
                .with_context(|| format!("opening {}", config.audit_db.display()))?;
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
            let bot = app::build(&config)?;
            runtime()?.block_on(adapters::shell::run(&bot, &user, roles))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Run => {
            anyhow::bail!("no chat adapter is configured; the Discord adapter is not built yet, use `opsbot shell` meanwhile")
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}
