//! `[events]` in opsbot.toml: where the listener binds, which sources it takes and how each one
//! proves who it is, and the routes that send events to conversations. Read and checked here;
//! every error names the key it is about, so it points at the file and line.

use crate::catalog::Catalog;
use crate::chat::ConversationId;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::Duration;

/// The table's name in opsbot.toml.
pub const SECTION: &str = "events";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    listen: Option<String>,
    max_body_bytes: Option<usize>,
    rate_limit: Option<u32>,
    digest_every: Option<String>,
    flap_window: Option<String>,
    flap_changes: Option<usize>,
    queue: Option<usize>,
    #[serde(default)]
    default: Vec<String>,
    #[serde(default)]
    sources: RawSources,
    #[serde(default)]
    routes: Vec<RawRoute>,
    announce: Option<RawAnnounce>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAnnounce {
    to: Vec<String>,
    risks: Option<Vec<String>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawSources {
    alertmanager: Option<RawAuth>,
    github: Option<RawGithub>,
    #[serde(default)]
    generic: BTreeMap<String, RawGeneric>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAuth {
    token_env: Option<String>,
    hmac_env: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGithub {
    secret_env: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGeneric {
    token_env: Option<String>,
    hmac_env: Option<String>,
    title: String,
    text: Option<String>,
    severity: Option<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    source: Option<String>,
    kind: Option<String>,
    repository: Option<String>,
    branch: Option<String>,
    #[serde(default)]
    labels: BTreeMap<String, StringOrList>,
    to: Vec<String>,
    mention: Option<String>,
    actions: Option<Vec<RawAction>>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum StringOrList {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAction {
    label: String,
    intent: String,
    #[serde(default)]
    params: BTreeMap<String, String>,
}

/// How a source proves a request is its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Auth {
    /// `Authorization: Bearer <token>`, the token in this environment variable.
    Bearer(String),
    /// `X-Opsbot-Signature-256: sha256=<hex HMAC-SHA256 of the body>` (GitHub's scheme under
    /// GitHub's own header), the key in this environment variable.
    Hmac(String),
}

impl Auth {
    pub fn env(&self) -> &str {
        match self {
            Auth::Bearer(e) | Auth::Hmac(e) => e,
        }
    }
}

/// A generic JSON source: JSON pointers (RFC 6901, `/alert/title`) to the fields of an event.
#[derive(Debug, Clone)]
pub struct Generic {
    pub auth: Auth,
    pub title: String,
    pub text: Option<String>,
    pub severity: Option<String>,
    pub labels: BTreeMap<String, String>,
}

/// A button on an event's message: an intent with parameters filled from the event's labels
/// (`{service}`, `{alertname}`, ...). A press is a request by the presser, like typing it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionSpec {
    pub label: String,
    pub intent: String,
    pub params: BTreeMap<String, String>,
}

/// One `[[events.routes]]`: what it matches (all given conditions must hold) and where it sends.
#[derive(Debug, Clone)]
pub struct Route {
    pub source: Option<String>,
    pub kind: Option<String>,
    /// label -> accepted values (`repository` and `branch` are labels too).
    pub labels: BTreeMap<String, Vec<String>>,
    pub to: Vec<ConversationId>,
    /// Who to notify with the message (a platform mention, e.g. a Discord role id).
    pub mention: Option<String>,
    /// Buttons; `None` gives the defaults (alerts: Ack, Silence 1h, Runbook, Logs; a failed
    /// deploy: Rollback).
    pub actions: Option<Vec<ActionSpec>>,
}

/// The validated `[events]` table.
#[derive(Debug, Clone)]
pub struct Settings {
    pub listen: std::net::SocketAddr,
    pub max_body_bytes: usize,
    /// New messages per conversation per minute; the rest go into the digest.
    pub rate_limit: u32,
    pub digest_every: Duration,
    /// An alert that changes state `flap_changes` times within `flap_window` is flapping.
    pub flap_window: Duration,
    pub flap_changes: usize,
    /// Events waiting to be processed; a full queue answers 503.
    pub queue: usize,
    pub alertmanager: Option<Auth>,
    /// The environment variable with GitHub's webhook secret.
    pub github: Option<String>,
    pub generic: BTreeMap<String, Generic>,
    pub routes: Vec<Route>,
    /// Where events no route matches go (empty: nowhere, audited as `unrouted`).
    pub default: Vec<ConversationId>,
    /// `[events.announce]`: where the outcome of the bot's own actions of these risks is posted,
    /// whatever conversation they ran in.
    pub announce: Option<Announce>,
}

#[derive(Debug, Clone)]
pub struct Announce {
    pub to: Vec<ConversationId>,
    pub risks: Vec<crate::catalog::Risk>,
}

fn duration(key: &str, v: Option<String>, default: &str) -> Result<Duration, String> {
    let s = v.unwrap_or_else(|| default.to_string());
    humantime::parse_duration(&s)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| format!("events.{key}: '{s}' is not a duration (like 30s, 5m, 1h)"))
}

/// Every conversation of a list (`to`, `default`), or the first that is not one.
fn conversations(key: &str, list: &[String]) -> Result<Vec<ConversationId>, String> {
    list.iter().map(|s| conversation(key, s)).collect()
}

/// `discord:<id>` or `shell` (the terminal's one conversation).
pub fn conversation(key: &str, s: &str) -> Result<ConversationId, String> {
    if s == "shell" || s == "shell:local" {
        return Ok(ConversationId("shell:local".into()));
    }
    match s.split_once(':') {
        Some((p, id))
            if !p.is_empty()
                && p.chars().all(|c| c.is_ascii_lowercase())
                && !id.is_empty()
                && id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) =>
        {
            Ok(ConversationId(s.to_string()))
        }
        _ => Err(format!(
            "events.{key}: '{s}' is not a conversation (`discord:<channel id>` or `shell`)"
        )),
    }
}

fn auth(key: &str, token: Option<String>, hmac: Option<String>) -> Result<Auth, String> {
    match (token, hmac) {
        (Some(t), None) => Ok(Auth::Bearer(t)),
        (None, Some(h)) => Ok(Auth::Hmac(h)),
        _ => Err(format!(
            "events.{key}: give exactly one of token_env (a bearer token) or hmac_env (an HMAC key)"
        )),
    }
}

/// Placeholders `{name}` in an action's parameter template.
fn placeholders(t: &str) -> impl Iterator<Item = &str> {
    t.split('{')
        .skip(1)
        .filter_map(|s| s.split_once('}').map(|(n, _)| n))
}

impl Settings {
    /// Reads the `[events]` table. The error is its message and, when it is about one route,
    /// that route's index (the caller points at its `[[events.routes]]` line).
    pub fn from_section(section: &toml::Value) -> Result<Settings, (String, Option<usize>)> {
        let r: Raw = section
            .clone()
            .try_into()
            .map_err(|e: toml::de::Error| (format!("events: {}", e.message().trim()), None))?;
        let plain = |m: String| (m, None);
        let listen = r.listen.unwrap_or_else(|| "127.0.0.1:9100".into());
        let listen = listen.parse().map_err(|_| {
            plain(format!(
                "events.listen: '{listen}' is not an address and port (like 127.0.0.1:9100)"
            ))
        })?;
        let mut generic = BTreeMap::new();
        for (name, g) in r.sources.generic {
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return Err(plain(format!(
                    "events.sources.generic: '{name}' is not a source name (letters, digits, - and _)"
                )));
            }
            let auth = auth("sources.generic", g.token_env, g.hmac_env).map_err(plain)?;
            for p in std::iter::once(&g.title)
                .chain(&g.text)
                .chain(&g.severity)
                .chain(g.labels.values())
            {
                if !p.starts_with('/') {
                    return Err(plain(format!(
                        "events.sources.generic: '{p}' in source {name} is not a JSON pointer (like /alert/title)"
                    )));
                }
            }
            generic.insert(
                name,
                Generic {
                    auth,
                    title: g.title,
                    text: g.text,
                    severity: g.severity,
                    labels: g.labels,
                },
            );
        }
        let alertmanager = match r.sources.alertmanager {
            None => None,
            Some(a) => Some(auth("sources.alertmanager", a.token_env, a.hmac_env).map_err(plain)?),
        };
        let mut routes = vec![];
        for (i, raw) in r.routes.into_iter().enumerate() {
            let at = |m: String| (m, Some(i));
            if raw.to.is_empty() {
                return Err(at(
                    "events.routes: a route needs at least one conversation in `to`".into(),
                ));
            }
            let to = conversations("routes", &raw.to).map_err(at)?;
            if let Some(s) = &raw.source {
                let known = s == "alertmanager"
                    || s == "github"
                    || s.strip_prefix("generic:")
                        .is_some_and(|n| generic.contains_key(n));
                if !known {
                    return Err(at(format!(
                        "events.routes: source '{s}' is not configured (alertmanager, github, or generic:<name> of [events.sources.generic])"
                    )));
                }
            }
            let mut labels: BTreeMap<String, Vec<String>> = raw
                .labels
                .into_iter()
                .map(|(k, v)| {
                    let v = match v {
                        StringOrList::One(s) => vec![s],
                        StringOrList::Many(l) => l,
                    };
                    (k, v)
                })
                .collect();
            if let Some(r) = raw.repository {
                labels.insert("repository".into(), vec![r]);
            }
            if let Some(b) = raw.branch {
                labels.insert("branch".into(), vec![b]);
            }
            let actions = raw.actions.map(|a| {
                a.into_iter()
                    .map(|a| ActionSpec {
                        label: a.label,
                        intent: a.intent,
                        params: a.params,
                    })
                    .collect()
            });
            routes.push(Route {
                source: raw.source,
                kind: raw.kind,
                labels,
                to,
                mention: raw.mention,
                actions,
            });
        }
        let default = conversations("default", &r.default).map_err(plain)?;
        let rate_limit = r.rate_limit.unwrap_or(10);
        if rate_limit == 0 {
            return Err(plain(
                "events.rate_limit: must be at least 1 (new messages per conversation per minute)"
                    .into(),
            ));
        }
        let flap_changes = r.flap_changes.unwrap_or(4);
        if flap_changes < 2 {
            return Err(plain("events.flap_changes: must be at least 2".into()));
        }
        let announce = match r.announce {
            None => None,
            Some(a) => {
                let to = conversations("announce.to", &a.to).map_err(plain)?;
                if to.is_empty() {
                    return Err(plain(
                        "events.announce.to: name at least one conversation".into(),
                    ));
                }
                let risks = a
                    .risks
                    .unwrap_or_else(|| vec!["change".into(), "dangerous".into()])
                    .iter()
                    .map(|r| match r.as_str() {
                        "read" => Ok(crate::catalog::Risk::Read),
                        "change" => Ok(crate::catalog::Risk::Change),
                        "dangerous" => Ok(crate::catalog::Risk::Dangerous),
                        other => Err(plain(format!(
                            "events.announce.risks: '{other}' is not a risk (read, change, dangerous)"
                        ))),
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                Some(Announce { to, risks })
            }
        };
        Ok(Settings {
            announce,
            listen,
            max_body_bytes: r.max_body_bytes.unwrap_or(1 << 20).clamp(1024, 64 << 20),
            rate_limit,
            digest_every: duration("digest_every", r.digest_every, "1m").map_err(plain)?,
            flap_window: duration("flap_window", r.flap_window, "1h").map_err(plain)?,
            flap_changes,
            queue: r.queue.unwrap_or(10_000).max(1),
            alertmanager,
            github: r.sources.github.map(|g| g.secret_env),
            generic,
            routes,
            default,
        })
    }

    /// Problems of the routes against the catalogue: an action naming an unknown intent or
    /// parameter. (route index, message).
    pub fn problems(&self, catalog: &Catalog) -> Vec<(usize, String)> {
        let mut out = vec![];
        for (i, r) in self.routes.iter().enumerate() {
            for a in r.actions.iter().flatten() {
                let Some(intent) = catalog.intent(&a.intent) else {
                    out.push((
                        i,
                        format!(
                            "events.routes: action '{}' names the intent '{}', which the catalogue does not have",
                            a.label, a.intent
                        ),
                    ));
                    continue;
                };
                for (k, t) in &a.params {
                    if !intent.params.iter().any(|p| &p.name == k) {
                        out.push((
                            i,
                            format!(
                                "events.routes: action '{}': {} has no parameter '{k}'",
                                a.label, a.intent
                            ),
                        ));
                    }
                    if placeholders(t).any(|n| n.is_empty()) {
                        out.push((
                            i,
                            format!(
                                "events.routes: action '{}': '{t}' has an empty {{}}",
                                a.label
                            ),
                        ));
                    }
                }
            }
        }
        out
    }

    /// The environment variables holding the sources' secrets (redacted everywhere).
    pub fn secret_envs(&self) -> Vec<String> {
        self.alertmanager
            .iter()
            .map(|a| a.env().to_string())
            .chain(self.github.clone())
            .chain(self.generic.values().map(|g| g.auth.env().to_string()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(src: &str) -> Result<Settings, (String, Option<usize>)> {
        let v: toml::Value = toml::from_str(src).unwrap();
        Settings::from_section(&v)
    }

    #[test]
    fn a_full_table_reads() {
        let s = parse(
            r#"
listen = "127.0.0.1:9200"
default = ["shell"]
[sources.alertmanager]
token_env = "AM_TOKEN"
[sources.github]
secret_env = "GH_SECRET"
[sources.generic.ci]
hmac_env = "CI_KEY"
title = "/title"
labels = { service = "/svc" }
[[routes]]
source = "alertmanager"
labels = { severity = ["critical", "warning"] }
to = ["discord:123"]
mention = "456"
[[routes]]
source = "github"
repository = "acme/api"
to = ["shell"]
actions = [{ label = "Logs", intent = "logs", params = { service = "{service}" } }]
"#,
        )
        .unwrap();
        assert_eq!(s.listen.port(), 9200);
        assert_eq!(s.alertmanager, Some(Auth::Bearer("AM_TOKEN".into())));
        assert_eq!(s.generic["ci"].auth, Auth::Hmac("CI_KEY".into()));
        assert_eq!(s.routes[0].labels["severity"], vec!["critical", "warning"]);
        assert_eq!(s.routes[1].labels["repository"], vec!["acme/api"]);
        assert_eq!(s.routes[1].to[0].0, "shell:local");
        assert_eq!(s.default[0].0, "shell:local");
        assert_eq!(
            s.secret_envs(),
            vec!["AM_TOKEN".to_string(), "GH_SECRET".into(), "CI_KEY".into()]
        );
    }

    #[test]
    fn mistakes_are_named() {
        let err = |src: &str| parse(src).unwrap_err();
        assert!(err("listen = \"nowhere\"").0.starts_with("events.listen"));
        assert!(err("[sources.alertmanager]\n").0.contains("exactly one of"));
        let (m, at) = err("[[routes]]\nto = [\"slack\"]\n");
        assert!(m.contains("is not a conversation"), "{m}");
        assert_eq!(at, Some(0));
        let (m, at) = err(
            "[[routes]]\nto = [\"shell\"]\n[[routes]]\nsource = \"jenkins\"\nto = [\"shell\"]\n",
        );
        assert!(m.contains("source 'jenkins'"), "{m}");
        assert_eq!(at, Some(1));
        assert!(err("bogus = 1").0.contains("unknown field"));
        assert!(err("rate_limit = 0").0.starts_with("events.rate_limit"));
    }
}
