//! Configuration: `opsbot.toml` (serde) checked once at start-up into a typed [`Config`] that is
//! passed explicitly. Relative paths are relative to the configuration file. Secrets are never in
//! the file: it names environment variables that hold them.

use crate::actions::Runtime;
use crate::nlu::classify::Weights;
use crate::nlu::{Settings as NluSettings, Thresholds};
use serde::Deserialize;
use std::path::{Path, PathBuf};

pub const SCHEMA: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("{path}:{line}: {message}")]
    Invalid {
        path: String,
        line: usize,
        message: String,
    },
}

/// The top-level keys the core reads; every other top-level table is a section of an adapter or
/// source ([`Config::sections`]).
const CORE_KEYS: &[&str] = &[
    "schema",
    "intents",
    "state_dir",
    "audit_db",
    "bot",
    "actions",
    "nlu",
    "policy",
    "dialogs",
];

/// The core's part of the file (other top-level keys are checked against [`CORE_KEYS`] and the
/// sections, so unknown ones are still refused).
#[derive(Debug, Deserialize, Default)]
struct Raw {
    schema: Option<u32>,
    intents: Option<PathBuf>,
    state_dir: Option<PathBuf>,
    audit_db: Option<PathBuf>,
    #[serde(default)]
    bot: RawBot,
    #[serde(default)]
    actions: RawActions,
    #[serde(default)]
    nlu: RawNlu,
    #[serde(default)]
    policy: RawPolicy,
    #[serde(default)]
    dialogs: RawDialogs,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    #[serde(default)]
    default_roles: Vec<String>,
    #[serde(default)]
    users: std::collections::BTreeMap<String, Vec<String>>,
    #[serde(default)]
    channels: std::collections::BTreeMap<String, Vec<String>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawDialogs {
    confirm_timeout: Option<String>,
    rate_limit_per_minute: Option<u32>,
    still_running_after: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawNlu {
    enabled: Option<bool>,
    model: Option<PathBuf>,
    backend: Option<String>,
    precision: Option<String>,
    onnx_runtime: Option<PathBuf>,
    threads: Option<usize>,
    negatives: Option<PathBuf>,
    cache: Option<PathBuf>,
    #[serde(default)]
    thresholds: Thresholds,
    #[serde(default)]
    weights: Weights,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawBot {
    name: Option<String>,
    prefix: Option<String>,
    max_message_bytes: Option<usize>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawActions {
    env_allow: Option<Vec<String>>,
    output_limit: Option<usize>,
    #[serde(default)]
    secrets: Vec<String>,
}

/// Validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub intents_dir: PathBuf,
    pub state_dir: PathBuf,
    pub audit_db: PathBuf,
    pub bot_name: String,
    pub prefix: String,
    pub max_message_bytes: usize,
    pub runtime: Runtime,
    /// Environment variables whose values are redacted everywhere (besides each action's own).
    pub secrets: Vec<String>,
    /// Natural-language understanding; None when switched off (strict commands only).
    pub nlu: Option<NluSettings>,
    pub policy: crate::policy::Policy,
    pub dialogs: DialogSettings,
    /// The tables the core does not read (`[discord]`, ...), by name: each adapter or source
    /// validates its own with [`Config::section`].
    pub sections: std::collections::BTreeMap<String, toml::Value>,
    /// Where the configuration came from and its text, so that errors found later (in an
    /// adapter's section) still point at the file and line.
    origin: (String, String),
}

/// Dialog and execution limits.
#[derive(Debug, Clone)]
pub struct DialogSettings {
    /// How long a confirmation, approval or question stays open (per intent: `confirm_timeout`).
    pub confirm_timeout: std::time::Duration,
    /// Actions one user may start per minute.
    pub rate_limit_per_minute: u32,
    /// After this long an action counts as long-running: the adapter says so and goes on.
    pub still_running_after: std::time::Duration,
}

impl Config {
    /// Loads `path`, or `./opsbot.toml` when it exists, or the built-in defaults.
    pub fn load(path: Option<&Path>) -> Result<Config, Error> {
        match path {
            Some(p) => Self::from_file(p),
            None if Path::new("opsbot.toml").exists() => Self::from_file(Path::new("opsbot.toml")),
            None => Self::from_raw(Raw::default(), Path::new("."), "<defaults>", ""),
        }
    }

    pub fn from_file(path: &Path) -> Result<Config, Error> {
        let shown = path.display().to_string();
        let src = std::fs::read_to_string(path).map_err(|e| Error::Read {
            path: shown.clone(),
            reason: e.to_string(),
        })?;
        let raw: Raw = toml::from_str(&src).map_err(|e| Error::Invalid {
            path: shown.clone(),
            // the line the span starts on (counting newlines before it; `lines()` would be one
            // short when the span starts a line)
            line: e
                .span()
                .map(|s| src[..s.start].matches('\n').count() + 1)
                .unwrap_or(1),
            message: e.message().to_string(),
        })?;
        // every path is made absolute here: actions run in the intents directory, and a relative
        // state directory handed to them would name another folder there
        let base = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let base = std::path::absolute(base).map_err(|e| Error::Read {
            path: shown.clone(),
            reason: format!("cannot resolve its folder: {e}"),
        })?;
        // other top-level tables belong to adapters and sources; anything else is unknown
        let table: toml::Table = toml::from_str(&src).unwrap_or_default();
        let mut sections = std::collections::BTreeMap::new();
        for (k, v) in table {
            if CORE_KEYS.contains(&k.as_str()) {
                continue;
            }
            if !v.is_table() {
                return Err(Error::Invalid {
                    path: shown.clone(),
                    line: line_of_key(&src, &k),
                    message: format!(
                        "unknown field `{k}`, expected one of {}, or a table such as [discord]",
                        CORE_KEYS.join(", ")
                    ),
                });
            }
            sections.insert(k, v);
        }
        let mut config = Self::from_raw(raw, &base, &shown, &src)?;
        config.sections = sections;
        Ok(config)
    }

    fn from_raw(raw: Raw, base: &Path, shown: &str, src: &str) -> Result<Config, Error> {
        // every message names its key first ("nlu.threads must be ..."): point at that key
        let invalid = |message: String| Error::Invalid {
            path: shown.to_string(),
            line: line_of_key(src, &message),
            message,
        };
        if let Some(s) = raw.schema {
            if s != SCHEMA {
                return Err(invalid(format!(
                    "schema {s} is not supported; set schema = {SCHEMA}"
                )));
            }
        }
        let resolve = |p: Option<PathBuf>, default: &str| {
            let p = p.unwrap_or_else(|| PathBuf::from(default));
            if p.is_absolute() {
                p
            } else {
                base.join(p)
            }
        };
        let state_dir = resolve(raw.state_dir, ".opsbot");
        let audit_db = raw
            .audit_db
            .map(|p| if p.is_absolute() { p } else { base.join(p) })
            .unwrap_or_else(|| state_dir.join("audit.db"));
        let prefix = raw.bot.prefix.unwrap_or_else(|| "!".into());
        if prefix.is_empty()
            || prefix.len() > 4
            || prefix
                .chars()
                .any(|c| c.is_alphanumeric() || c.is_whitespace())
        {
            return Err(invalid(format!(
                "bot.prefix '{prefix}' must be 1-4 punctuation characters, such as \"!\""
            )));
        }
        let max_message_bytes = raw.bot.max_message_bytes.unwrap_or(4000);
        if !(100..=100_000).contains(&max_message_bytes) {
            return Err(invalid(
                "bot.max_message_bytes must be between 100 and 100000".into(),
            ));
        }
        let output_limit = raw.actions.output_limit.unwrap_or(16_000);
        if !(256..=1_000_000).contains(&output_limit) {
            return Err(invalid(
                "actions.output_limit must be between 256 and 1000000".into(),
            ));
        }
        for s in raw.actions.secrets.iter() {
            if let Ok(v) = std::env::var(s) {
                if v.len() < 4 {
                    return Err(invalid(format!(
                        "secret {s} is shorter than 4 characters; it could not be redacted safely"
                    )));
                }
            }
        }
        let t = raw.nlu.thresholds;
        let in_unit = |x: f32| (0.0..=1.0).contains(&x);
        if !(in_unit(t.accept) && in_unit(t.suggest) && in_unit(t.margin) && t.suggest <= t.accept)
        {
            return Err(invalid("nlu.thresholds: accept, suggest and margin must lie in 0..1, with suggest <= accept".into()));
        }
        let w = raw.nlu.weights;
        if !((0.0..=1.0).contains(&w.head) && w.knn_temperature > 0.0 && w.keyword_boost >= 0.0) {
            return Err(invalid(
                "nlu.weights: head must lie in 0..1, knn_temperature > 0, keyword_boost >= 0"
                    .into(),
            ));
        }
        // unset: as many threads as cores, at most 2 (measured 1.5x faster than 1 on 2 cores;
        // more were not measured)
        let threads = raw
            .nlu
            .threads
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get().min(2)));
        if !(1..=64).contains(&threads) {
            return Err(invalid("nlu.threads must be between 1 and 64".into()));
        }
        // read whatever the engine, so a wrong value is refused even where it would not be used
        let precision = {
            use crate::nlu::embed::Precision;
            match raw.nlu.precision.as_deref().unwrap_or("auto") {
                "auto" => Precision::fastest(),
                "fp32" => Precision::F32,
                "bf16" if Precision::Bf16.available() => Precision::Bf16,
                "bf16" => return Err(invalid(
                    "nlu.precision = \"bf16\" needs a processor with AVX-512 BF16, which this one lacks; use \"auto\" (the default) or \"fp32\"".into(),
                )),
                other => return Err(invalid(format!(
                    "nlu.precision '{other}' is not known; use \"auto\" (default: bf16 where the processor has AVX-512 BF16, else fp32), \"fp32\" or \"bf16\""
                ))),
            }
        };
        let backend = match raw.nlu.backend.as_deref().unwrap_or("builtin") {
            "builtin" => crate::nlu::embed::Backend::Builtin { precision },
            "candle" => {
                return Err(invalid(
                    "nlu.backend \"candle\" was replaced by \"builtin\", the default: the same vectors, faster and smaller (README, \"Speed\")".into(),
                ))
            }
            "hashing" => crate::nlu::embed::Backend::Hashing,
            #[cfg(feature = "rust-bert")]
            "rust-bert" => crate::nlu::embed::Backend::RustBert,
            #[cfg(not(feature = "rust-bert"))]
            "rust-bert" => {
                return Err(invalid(
                    "nlu.backend \"rust-bert\" is not in this build: build with `cargo build --release --features rust-bert` (needs libtorch 2.4, README \"Speed\")".into(),
                ))
            }
            "onnx" => {
                let runtime = raw
                    .nlu
                    .onnx_runtime
                    .map(|p| if p.is_absolute() { p } else { base.join(p) })
                    .or_else(|| std::env::var_os("ORT_DYLIB_PATH").map(PathBuf::from))
                    .ok_or_else(|| invalid("nlu.backend = \"onnx\" needs the ONNX Runtime library: set nlu.onnx_runtime (or ORT_DYLIB_PATH) to libonnxruntime.so, e.g. from `pip install onnxruntime==1.31.1`".into()))?;
                crate::nlu::embed::Backend::Onnx { runtime }
            }
            other => {
                return Err(invalid(format!(
                    "nlu.backend '{other}' is not known; use \"builtin\" (default), \"onnx\", \"rust-bert\" or \"hashing\" (no model, for tests)"
                )))
            }
        };
        let intents_dir = resolve(raw.intents, "intents");
        let bot_name = raw.bot.name.clone().unwrap_or_else(|| "opsbot".into());
        let nlu = raw.nlu.enabled.unwrap_or(true).then(|| NluSettings {
            bot_name: bot_name.clone(),
            model_dir: resolve(raw.nlu.model, "models/all-MiniLM-L6-v2"),
            backend,
            threads,
            cache_dir: Some(
                raw.nlu
                    .cache
                    .map(|p| if p.is_absolute() { p } else { base.join(p) })
                    .unwrap_or_else(|| state_dir.join("cache")),
            ),
            negatives_dir: raw
                .nlu
                .negatives
                .map(|p| if p.is_absolute() { p } else { base.join(p) })
                .unwrap_or_else(|| intents_dir.join("offtopic")),
            thresholds: t,
            weights: w,
        });
        let duration =
            |v: Option<String>, default: u64, what: &str| -> Result<std::time::Duration, Error> {
                match v {
                    None => Ok(std::time::Duration::from_secs(default)),
                    Some(s) => crate::catalog::values::parse_duration(&s)
                        .filter(|d| *d >= 1 && *d <= 86_400)
                        .map(std::time::Duration::from_secs)
                        .ok_or_else(|| {
                            invalid(format!(
                                "{what} '{s}' must be a duration between 1s and 1d, like \"120s\""
                            ))
                        }),
                }
            };
        let dialogs = DialogSettings {
            confirm_timeout: duration(raw.dialogs.confirm_timeout, 120, "dialogs.confirm_timeout")?,
            rate_limit_per_minute: raw.dialogs.rate_limit_per_minute.unwrap_or(20),
            still_running_after: duration(
                raw.dialogs.still_running_after,
                2,
                "dialogs.still_running_after",
            )?,
        };
        if dialogs.rate_limit_per_minute == 0 {
            return Err(invalid(
                "dialogs.rate_limit_per_minute must be at least 1".into(),
            ));
        }
        let secrets = raw.actions.secrets;
        let policy = crate::policy::Policy {
            users: raw.policy.users,
            default_roles: raw.policy.default_roles,
            channels: raw.policy.channels,
        };
        Ok(Config {
            policy,
            dialogs,
            nlu,
            intents_dir,
            runtime: Runtime {
                state_dir: state_dir.clone(),
                env_allow: raw.actions.env_allow.unwrap_or_else(|| {
                    vec!["PATH".into(), "HOME".into(), "LANG".into(), "TZ".into()]
                }),
                output_limit,
            },
            state_dir,
            audit_db,
            bot_name,
            prefix,
            max_message_bytes,
            secrets,
            sections: Default::default(),
            origin: (shown.to_string(), src.to_string()),
        })
    }

    /// The section `[name]` an adapter or source reads, if the file has it.
    pub fn section(&self, name: &str) -> Option<&toml::Value> {
        self.sections.get(name)
    }

    /// An error about `[name]`'s content, pointing at the file and line of the key the message
    /// starts with ("discord.api_base ..."), or of the table.
    pub fn section_error(&self, message: String) -> Error {
        Error::Invalid {
            path: self.origin.0.clone(),
            line: line_of_key(&self.origin.1, &message),
            message,
        }
    }

    /// An error about the `nth` (from 0) `[[header]]` table (`events.routes`), pointing at its
    /// header's line.
    pub fn table_error(&self, header: &str, nth: usize, message: String) -> Error {
        let line = self
            .origin
            .1
            .lines()
            .enumerate()
            .filter(|(_, l)| {
                l.trim()
                    .strip_prefix("[[")
                    .and_then(|r| r.split("]]").next())
                    .is_some_and(|h| h.trim() == header)
            })
            .nth(nth)
            .map(|(i, _)| i + 1)
            .unwrap_or_else(|| line_of_key(&self.origin.1, &message));
        Error::Invalid {
            path: self.origin.0.clone(),
            line,
            message,
        }
    }

    /// Refuses a section no adapter or source claimed (`known` are the names that are read).
    pub fn check_sections(&self, known: &[&str]) -> Result<(), Error> {
        match self.sections.keys().find(|k| !known.contains(&k.as_str())) {
            None => Ok(()),
            Some(k) => Err(self.section_error(format!(
                "{k}: unknown table [{k}]; the tables read are {}",
                CORE_KEYS[4..]
                    .iter()
                    .chain(known)
                    .map(|k| format!("[{k}]"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
        }
    }

    /// Adds secret names (an adapter's token variable) to those redacted everywhere; a value too
    /// short to redact safely is refused.
    pub fn add_secret(&mut self, name: &str) -> Result<(), Error> {
        if std::env::var(name).is_ok_and(|v| v.len() < 4) {
            return Err(self.section_error(format!(
                "secret {name} is shorter than 4 characters; it could not be redacted safely"
            )));
        }
        if !self.secrets.iter().any(|s| s == name) {
            self.secrets.push(name.to_string());
        }
        Ok(())
    }
}

/// The line of the key a message starts with ("nlu.threads must be ..." -> the `threads = ` line
/// inside `[nlu]`), or of its table, or 1.
fn line_of_key(src: &str, message: &str) -> usize {
    let key: String = message
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.'))
        .collect();
    let (table, name) = match key.rsplit_once('.') {
        Some((t, n)) => (t.to_string(), n.to_string()),
        None if message.starts_with("secret ") => ("actions".into(), "secrets".into()),
        None => (String::new(), key),
    };
    let mut current = String::new();
    let mut table_line = None;
    for (i, line) in src.lines().enumerate() {
        let t = line.trim();
        if let Some(h) = t.strip_prefix('[').and_then(|h| h.split(']').next()) {
            current = h.trim_matches(['[', ' ']).to_string();
            if current == table && table_line.is_none() {
                table_line = Some(i + 1);
            }
            continue;
        }
        let k = t.split('=').next().unwrap_or("").trim().trim_matches('"');
        if current == table && !name.is_empty() && k == name && t.contains('=') {
            return i + 1;
        }
    }
    table_line.unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    // regression (issue 13): an unknown key was reported a line early and every value error on
    // line 1
    #[test]
    fn errors_point_at_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let check = |src: &str, line: usize, what: &str| {
            let p = dir.path().join("opsbot.toml");
            std::fs::write(&p, src).unwrap();
            let e = Config::from_file(&p).unwrap_err().to_string();
            assert!(e.contains(&format!("opsbot.toml:{line}: ")), "{e}");
            assert!(e.contains(what), "{e}");
        };
        check(
            "schema = 1\n\n[bot]\nname = \"x\"\nnmae = \"y\"\n",
            5,
            "unknown field",
        );
        check(
            "schema = 1\n[bot]\nprefix = \"!\"\n\n[nlu]\n# threads\nthreads = 99\n",
            7,
            "nlu.threads must be",
        );
        check(
            "schema = 1\n[dialogs]\nconfirm_timeout = \"soon\"\n",
            3,
            "dialogs.confirm_timeout",
        );
        check("schema = 1\n[bot]\nprefix = \"go\"\n", 3, "bot.prefix");
        check("schema = 7\n", 1, "schema 7");
        check(
            "schema = 1\n[nlu]\nprecision = \"int4\"\n",
            3,
            "nlu.precision 'int4' is not known",
        );
        check(
            "schema = 1\n[nlu]\nbackend = \"hashing\"\nprecision = \"int4\"\n",
            4,
            "nlu.precision 'int4' is not known",
        );
    }

    #[test]
    fn the_builtin_engine_runs_the_fastest_precision_this_processor_has_unless_told() {
        use crate::nlu::embed::{Backend, Precision};
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("opsbot.toml");
        let backend = |precision: &str| {
            std::fs::write(&p, format!("schema = 1\n[nlu]\n{precision}\n")).unwrap();
            Config::from_file(&p).map(|c| c.nlu.unwrap().backend)
        };
        let builtin = |precision| Backend::Builtin { precision };
        assert_eq!(backend("").unwrap(), builtin(Precision::fastest()));
        assert_eq!(
            backend("precision = \"fp32\"").unwrap(),
            builtin(Precision::F32)
        );
        let bf16 = backend("precision = \"bf16\"");
        if Precision::Bf16.available() {
            assert_eq!(Precision::fastest(), Precision::Bf16);
            assert_eq!(bf16.unwrap(), builtin(Precision::Bf16));
        } else {
            assert!(bf16.unwrap_err().to_string().contains("AVX-512 BF16"));
        }
    }

    // regression (issue 13): with a relative --config path, actions (which run in the intents
    // directory) got a relative state directory and kept a second fleet there
    #[test]
    fn paths_are_absolute_even_from_a_relative_config_path() {
        let c = Config::from_file(Path::new("opsbot.toml")).unwrap();
        assert!(c.state_dir.is_absolute(), "{}", c.state_dir.display());
        assert!(c.intents_dir.is_absolute());
        assert!(c.audit_db.is_absolute());
        assert_eq!(
            c.state_dir,
            std::env::current_dir().unwrap().join(".opsbot")
        );
    }
}
