//! The intent catalogue: what the bot can do. Owns the typed model of intents, parameters,
//! entities and actions, turning raw strings into validated [`Value`]s, and loading the catalogue
//! from TOML files (see [`load`]). It does not parse chat messages (that is `nlu`) nor run anything
//! (that is `actions`).

pub mod load;
pub mod values;

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

pub use load::{load_dir, LoadError, Problem};
pub use values::Value;

/// Validated, normalised parameters of one request, by parameter name.
pub type Params = BTreeMap<String, Value>;

/// Name of an intent (`deploy`, `alerts.ack`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct IntentId(pub String);

impl fmt::Display for IntentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Risk {
    Read,
    Change,
    Dangerous,
}

impl fmt::Display for Risk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Risk::Read => "read",
            Risk::Change => "change",
            Risk::Dangerous => "dangerous",
        })
    }
}

#[derive(Debug, Clone)]
pub struct EntityValue {
    pub value: String,
    pub synonyms: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Entity {
    pub name: String,
    pub description: String,
    pub values: Vec<EntityValue>,
}

impl Entity {
    /// Exact (case-insensitive) match on a canonical value or a synonym.
    pub fn lookup(&self, raw: &str) -> Option<&str> {
        let raw = raw.trim();
        self.values
            .iter()
            .find(|v| {
                v.value.eq_ignore_ascii_case(raw)
                    || v.synonyms.iter().any(|s| s.eq_ignore_ascii_case(raw))
            })
            .map(|v| v.value.as_str())
    }

    /// Every surface form (canonical values and synonyms) with its canonical value.
    pub fn surface_forms(&self) -> impl Iterator<Item = (&str, &str)> {
        self.values.iter().flat_map(|v| {
            std::iter::once((v.value.as_str(), v.value.as_str())).chain(
                v.synonyms
                    .iter()
                    .map(move |s| (s.as_str(), v.value.as_str())),
            )
        })
    }

    pub fn canonical_values(&self) -> Vec<&str> {
        self.values.iter().map(|v| v.value.as_str()).collect()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum ParamKind {
    Entity(String),
    Integer { min: i64, max: i64 },
    Duration { min: u64, max: u64 },
    Version,
    Alert,
    Text { max_len: usize },
}

impl ParamKind {
    pub fn describe(&self) -> String {
        match self {
            ParamKind::Entity(e) => format!("a {e}"),
            ParamKind::Integer { min, max } => format!("a whole number from {min} to {max}"),
            ParamKind::Duration { .. } => "a duration such as 15m, 2h or 1d".into(),
            ParamKind::Version => "a version such as 2.4.1 or a git sha".into(),
            ParamKind::Alert => "an alert id such as 4821".into(),
            ParamKind::Text { max_len } => format!("text of at most {max_len} characters"),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Param {
    pub name: String,
    pub kind: ParamKind,
    pub required: bool,
    pub default: Option<Value>,
    pub description: String,
}

/// A string with `{param}` placeholders (and, in HTTP headers, `${SECRET}` references).
#[derive(Debug, Clone, PartialEq)]
pub struct Template(pub String);

impl Template {
    /// Names of the `{param}` placeholders, in order.
    pub fn placeholders(&self) -> Vec<&str> {
        let s = self.0.as_str();
        let mut out = Vec::new();
        let mut i = 0;
        while let Some(open) = s[i..].find('{') {
            let start = i + open;
            if start > 0 && s.as_bytes()[start - 1] == b'$' {
                i = start + 1;
                continue;
            }
            match s[start..].find('}') {
                Some(close) => {
                    out.push(&s[start + 1..start + close]);
                    i = start + close + 1;
                }
                None => break,
            }
        }
        out
    }

    /// Substitutes every placeholder with `render(value)`; `None` when a placeholder has no value.
    pub fn render(&self, params: &Params, render: impl Fn(&Value) -> String) -> Option<String> {
        let mut out = self.0.clone();
        for name in self.placeholders() {
            let v = params.get(name)?;
            out = out.replace(&format!("{{{name}}}"), &render(v));
        }
        Some(out)
    }

    /// The single placeholder when the template is exactly `{name}`.
    pub fn whole_placeholder(&self) -> Option<&str> {
        let s = self.0.as_str();
        let inner = s.strip_prefix('{')?.strip_suffix('}')?;
        (!inner.contains(['{', '}'])).then_some(inner)
    }
}

#[derive(Debug, Clone)]
pub struct ExecSpec {
    /// argv[0] is resolved at load time; the rest are templates.
    pub program: PathBuf,
    pub args: Vec<Template>,
    pub workdir: PathBuf,
    pub timeout: Duration,
    /// Environment variables passed through from opsbot's own environment.
    pub env: Vec<String>,
    /// Environment variables holding secrets: passed through, and their values redacted.
    pub secrets: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct HttpSpec {
    pub method: String,
    pub url: Template,
    pub headers: Vec<(String, Template)>,
    pub body: Option<serde_json::Value>,
    pub expect_status: Vec<u16>,
    pub timeout: Duration,
    pub secrets: Vec<String>,
}

#[derive(Debug, Clone)]
pub enum Action {
    Exec(ExecSpec),
    Http(HttpSpec),
    /// Built in: the audit log's chronology of the last `since` (an incident timeline).
    Timeline,
}

impl Action {
    pub fn secrets(&self) -> &[String] {
        match self {
            Action::Exec(e) => &e.secrets,
            Action::Http(h) => &h.secrets,
            Action::Timeline => &[],
        }
    }
}

#[derive(Debug, Clone)]
pub struct Intent {
    pub id: IntentId,
    pub description: String,
    pub syntax: String,
    /// Parameters in positional order.
    pub params: Vec<Param>,
    pub examples: Vec<String>,
    pub risk: Risk,
    pub roles: Vec<String>,
    pub approvers: Vec<String>,
    pub confirm_timeout: Option<Duration>,
    pub action: Action,
    /// A read-only probe whose first output line describes the current state ("now 2.4.0,
    /// 2 replicas"), shown in confirmation previews.
    pub preview: Option<ExecSpec>,
    pub file: PathBuf,
}

impl Intent {
    pub fn param(&self, name: &str) -> Option<&Param> {
        self.params.iter().find(|p| p.name == name)
    }

    /// `!deploy <service> <env> [version]`
    pub fn usage(&self, prefix: &str) -> String {
        format!("{prefix}{}", self.syntax)
    }
}

#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum ValueError {
    #[error("{param} {reason}")]
    Invalid { param: String, reason: String },
    #[error("unknown {entity} '{raw}' (expected one of: {expected})")]
    UnknownEntity {
        entity: String,
        raw: String,
        expected: String,
    },
}

/// The whole, validated catalogue.
#[derive(Debug, Clone)]
pub struct Catalog {
    pub intents: Vec<Intent>,
    pub entities: BTreeMap<String, Entity>,
    pub dir: PathBuf,
}

impl Catalog {
    pub fn intent(&self, name: &str) -> Option<&Intent> {
        self.intents
            .iter()
            .find(|i| i.id.0.eq_ignore_ascii_case(name))
    }

    pub fn entity(&self, name: &str) -> Option<&Entity> {
        self.entities.get(name)
    }

    /// Validates and normalises one raw value for `param`.
    pub fn parse_value(&self, param: &Param, raw: &str) -> Result<Value, ValueError> {
        let invalid = |reason: String| ValueError::Invalid {
            param: param.name.clone(),
            reason,
        };
        let raw = raw.trim();
        if let ParamKind::Text { max_len } = param.kind {
            return values::parse_text(raw, max_len)
                .map(Value::Text)
                .map_err(invalid);
        }
        values::check_common(raw, values::MAX_TOKEN_LEN).map_err(invalid)?;
        match &param.kind {
            ParamKind::Entity(name) => {
                let entity = self
                    .entity(name)
                    .ok_or_else(|| invalid(format!("refers to unknown entity '{name}'")))?;
                entity
                    .lookup(raw)
                    .map(|v| Value::Entity(v.to_string()))
                    .ok_or_else(|| ValueError::UnknownEntity {
                        entity: name.clone(),
                        raw: raw.to_string(),
                        expected: entity.canonical_values().join(", "),
                    })
            }
            ParamKind::Integer { min, max } => {
                let n = values::parse_integer(raw)
                    .ok_or_else(|| invalid(format!("must be a whole number, got '{raw}'")))?;
                if n < *min || n > *max {
                    return Err(invalid(format!("must be between {min} and {max}, got {n}")));
                }
                Ok(Value::Integer(n))
            }
            ParamKind::Duration { min, max } => {
                let s = values::parse_duration(raw).ok_or_else(|| {
                    invalid(format!(
                        "must be a duration such as 15m, 2h or 1d, got '{raw}'"
                    ))
                })?;
                if s < *min || s > *max {
                    return Err(invalid(format!(
                        "must be between {} and {}, got {}",
                        values::format_duration(*min),
                        values::format_duration(*max),
                        values::format_duration(s)
                    )));
                }
                Ok(Value::Duration(s))
            }
            ParamKind::Version => values::parse_version(raw)
                .map(Value::Version)
                .ok_or_else(|| {
                    invalid(format!(
                        "must be a version such as 2.4.1 or a git sha, got '{raw}'"
                    ))
                }),
            ParamKind::Alert => values::parse_alert(raw)
                .map(Value::Alert)
                .ok_or_else(|| invalid(format!("must be an alert id such as 4821, got '{raw}'"))),
            ParamKind::Text { .. } => unreachable!("handled above"),
        }
    }

    /// Fills defaults and reports the first missing required parameter, in positional order.
    pub fn complete(&self, intent: &Intent, params: &mut Params) -> Result<(), String> {
        for p in &intent.params {
            if !params.contains_key(&p.name) {
                if let Some(d) = &p.default {
                    params.insert(p.name.clone(), d.clone());
                } else if p.required {
                    return Err(p.name.clone());
                }
            }
        }
        Ok(())
    }
}
