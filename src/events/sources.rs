//! What each source sends, turned into [`Event`]s, and how each proves who it is. Pure: no I/O,
//! so every payload shape and every forged request is tested without a server.

use super::settings::Generic;
use super::{Alert, Event, Group, Status};
use hmac::{Hmac, Mac};
use serde::Deserialize;
use serde_json::Value;
use sha2::Sha256;
use std::collections::BTreeMap;
use subtle::ConstantTimeEq;

/// Why a request was refused (the HTTP layer maps each to its status code).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Refusal {
    #[error("missing or wrong credentials")]
    Unauthorized,
    #[error("malformed payload: {0}")]
    Malformed(String),
}

/// A bearer token, compared in constant time. An unset or empty secret refuses everything.
pub fn check_bearer(header: Option<&str>, secret: Option<&str>) -> Result<(), Refusal> {
    let secret = secret
        .filter(|s| !s.is_empty())
        .ok_or(Refusal::Unauthorized)?;
    let given = header
        .and_then(|h| h.strip_prefix("Bearer "))
        .ok_or(Refusal::Unauthorized)?;
    if bool::from(given.trim().as_bytes().ct_eq(secret.as_bytes())) {
        Ok(())
    } else {
        Err(Refusal::Unauthorized)
    }
}

/// `sha256=<hex>` of HMAC-SHA256(key, body), checked in constant time (GitHub's
/// `X-Hub-Signature-256`, and generic sources' `X-Opsbot-Signature-256`).
pub fn check_hmac(header: Option<&str>, key: Option<&str>, body: &[u8]) -> Result<(), Refusal> {
    let key = key.filter(|s| !s.is_empty()).ok_or(Refusal::Unauthorized)?;
    let sig = header
        .and_then(|h| h.strip_prefix("sha256="))
        .and_then(|h| hex::decode(h.trim()).ok())
        .ok_or(Refusal::Unauthorized)?;
    let mut mac =
        Hmac::<Sha256>::new_from_slice(key.as_bytes()).map_err(|_| Refusal::Unauthorized)?;
    mac.update(body);
    mac.verify_slice(&sig).map_err(|_| Refusal::Unauthorized)
}

/// The signature header value for `body` under `key` (for tests and for senders).
pub fn sign(key: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).expect("any key length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AmPayload {
    version: String,
    group_key: String,
    status: String,
    #[serde(default)]
    common_labels: BTreeMap<String, String>,
    #[serde(default)]
    group_labels: BTreeMap<String, String>,
    #[serde(default)]
    common_annotations: BTreeMap<String, String>,
    #[serde(default)]
    external_url: String,
    #[serde(default)]
    truncated_alerts: u64,
    alerts: Vec<AmAlert>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AmAlert {
    status: String,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
    #[serde(default)]
    starts_at: String,
    #[serde(default)]
    generator_url: String,
    fingerprint: String,
}

fn status(s: &str) -> Result<Status, Refusal> {
    match s {
        "firing" => Ok(Status::Firing),
        "resolved" => Ok(Status::Resolved),
        other => Err(Refusal::Malformed(format!("unknown status '{other}'"))),
    }
}

/// An Alertmanager webhook (payload version 4): one event for the whole group.
pub fn alertmanager(body: &[u8]) -> Result<Event, Refusal> {
    let p: AmPayload =
        serde_json::from_slice(body).map_err(|e| Refusal::Malformed(e.to_string()))?;
    if p.version != "4" {
        return Err(Refusal::Malformed(format!(
            "payload version '{}', expected '4'",
            p.version
        )));
    }
    if p.alerts.is_empty() {
        return Err(Refusal::Malformed("no alerts".into()));
    }
    let mut labels = p.group_labels.clone();
    labels.extend(p.common_labels.clone());
    let alerts = p
        .alerts
        .into_iter()
        .map(|a| {
            Ok(Alert {
                fingerprint: a.fingerprint,
                status: status(&a.status)?,
                summary: a
                    .annotations
                    .get("summary")
                    .or_else(|| a.annotations.get("description"))
                    .cloned()
                    .unwrap_or_else(|| {
                        a.labels
                            .iter()
                            .filter(|(k, _)| k.as_str() != "alertname")
                            .map(|(k, v)| format!("{k}={v}"))
                            .collect::<Vec<_>>()
                            .join(" ")
                    }),
                starts_at: a.starts_at,
                url: a.generator_url,
            })
        })
        .collect::<Result<Vec<_>, Refusal>>()?;
    let name = labels
        .get("alertname")
        .cloned()
        .unwrap_or_else(|| "alerts".into());
    let mut text = p
        .common_annotations
        .get("summary")
        .cloned()
        .unwrap_or_default();
    if p.truncated_alerts > 0 {
        text.push_str(&format!(" ({} more alerts not sent)", p.truncated_alerts));
    }
    Ok(Event {
        source: "alertmanager".into(),
        kind: "alert".into(),
        title: name,
        text,
        severity: labels.get("severity").cloned(),
        url: (!p.external_url.is_empty()).then_some(p.external_url),
        failed: false,
        group: Some(Group {
            key: p.group_key,
            status: status(&p.status)?,
            alerts,
        }),
        labels,
    })
}

fn s<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

/// A GitHub webhook: `Ok(None)` for an event kind or action opsbot does not show.
pub fn github(kind: &str, body: &[u8]) -> Result<Option<Event>, Refusal> {
    let v: Value = serde_json::from_slice(body).map_err(|e| Refusal::Malformed(e.to_string()))?;
    let repo = s(&v, "/repository/full_name").to_string();
    if repo.is_empty() && kind != "ping" {
        return Err(Refusal::Malformed("no repository.full_name".into()));
    }
    let mut labels = BTreeMap::from([("repository".to_string(), repo.clone())]);
    if let Some((_, name)) = repo.split_once('/') {
        labels.insert("service".into(), name.to_lowercase());
    }
    let sender = s(&v, "/sender/login").to_string();
    if !sender.is_empty() {
        labels.insert("sender".into(), sender.clone());
    }
    let mut failed = false;
    let (title, text, url, branch) = match kind {
        "push" => {
            let branch = s(&v, "/ref").trim_start_matches("refs/heads/").to_string();
            let n = v
                .pointer("/commits")
                .and_then(Value::as_array)
                .map_or(0, |c| c.len());
            let head = s(&v, "/head_commit/message").lines().next().unwrap_or("");
            (
                format!(
                    "{repo}: {n} commit(s) pushed to {branch} by {}",
                    s(&v, "/pusher/name")
                ),
                head.to_string(),
                s(&v, "/compare").to_string(),
                branch,
            )
        }
        "pull_request" => {
            let action = s(&v, "/action");
            let action = if action == "closed"
                && v.pointer("/pull_request/merged").and_then(Value::as_bool) == Some(true)
            {
                "merged"
            } else {
                action
            };
            if !matches!(
                action,
                "opened" | "reopened" | "closed" | "merged" | "ready_for_review"
            ) {
                return Ok(None);
            }
            (
                format!(
                    "{repo}: pull request #{} {action} by {}",
                    v.pointer("/number").and_then(Value::as_u64).unwrap_or(0),
                    s(&v, "/pull_request/user/login")
                ),
                s(&v, "/pull_request/title").to_string(),
                s(&v, "/pull_request/html_url").to_string(),
                s(&v, "/pull_request/base/ref").to_string(),
            )
        }
        "workflow_run" => {
            if s(&v, "/action") != "completed" {
                return Ok(None);
            }
            let conclusion = s(&v, "/workflow_run/conclusion");
            let name = s(&v, "/workflow_run/name");
            failed = matches!(conclusion, "failure" | "timed_out")
                && name.to_lowercase().contains("deploy");
            labels.insert("conclusion".into(), conclusion.to_string());
            (
                format!("{repo}: workflow {name} {conclusion}"),
                s(&v, "/workflow_run/display_title").to_string(),
                s(&v, "/workflow_run/html_url").to_string(),
                s(&v, "/workflow_run/head_branch").to_string(),
            )
        }
        "deployment_status" => {
            let state = s(&v, "/deployment_status/state");
            if !matches!(state, "success" | "failure" | "error") {
                return Ok(None);
            }
            failed = state != "success";
            let env = s(&v, "/deployment/environment").to_string();
            labels.insert("env".into(), env.clone());
            labels.insert("conclusion".into(), state.to_string());
            let url = [
                "/deployment_status/log_url",
                "/deployment_status/target_url",
            ]
            .iter()
            .map(|p| s(&v, p))
            .find(|u| !u.is_empty())
            .unwrap_or("")
            .to_string();
            (
                format!(
                    "{repo}: deploy of {} to {env}: {state}",
                    s(&v, "/deployment/ref")
                ),
                s(&v, "/deployment_status/description").to_string(),
                url,
                s(&v, "/deployment/ref").to_string(),
            )
        }
        "release" => {
            if s(&v, "/action") != "published" {
                return Ok(None);
            }
            (
                format!("{repo}: release {} published", s(&v, "/release/tag_name")),
                s(&v, "/release/name").to_string(),
                s(&v, "/release/html_url").to_string(),
                s(&v, "/release/target_commitish").to_string(),
            )
        }
        _ => return Ok(None),
    };
    if !branch.is_empty() {
        labels.insert("branch".into(), branch);
    }
    Ok(Some(Event {
        source: "github".into(),
        kind: kind.to_string(),
        severity: failed.then(|| "error".to_string()),
        title,
        text,
        url: (!url.is_empty()).then_some(url),
        failed,
        group: None,
        labels,
    }))
}

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Any JSON, read through the source's pointers; the title is required.
pub fn generic(name: &str, g: &Generic, body: &[u8]) -> Result<Event, Refusal> {
    let v: Value = serde_json::from_slice(body).map_err(|e| Refusal::Malformed(e.to_string()))?;
    let get = |p: &str| v.pointer(p).and_then(scalar);
    let title = get(&g.title)
        .filter(|t| !t.trim().is_empty())
        .ok_or_else(|| Refusal::Malformed(format!("no title at {}", g.title)))?;
    let labels = g
        .labels
        .iter()
        .filter_map(|(k, p)| get(p).map(|x| (k.clone(), x)))
        .collect();
    Ok(Event {
        source: format!("generic:{name}"),
        kind: "event".into(),
        title,
        text: g.text.as_deref().and_then(get).unwrap_or_default(),
        severity: g.severity.as_deref().and_then(get),
        url: None,
        failed: false,
        group: None,
        labels,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_tokens_compare_whole_and_fail_closed() {
        assert_eq!(check_bearer(Some("Bearer s3cret"), Some("s3cret")), Ok(()));
        for (h, s) in [
            (Some("Bearer s3cre"), Some("s3cret")),
            (Some("Bearer s3cretX"), Some("s3cret")),
            (Some("s3cret"), Some("s3cret")),
            (None, Some("s3cret")),
            (Some("Bearer "), Some("")),
            (Some("Bearer x"), None),
        ] {
            assert_eq!(
                check_bearer(h, s),
                Err(Refusal::Unauthorized),
                "{h:?} {s:?}"
            );
        }
    }

    #[test]
    fn signatures_verify_and_forgeries_do_not() {
        let body = br#"{"zen":"hi"}"#;
        let sig = sign("k3y!", body);
        assert_eq!(check_hmac(Some(&sig), Some("k3y!"), body), Ok(()));
        assert!(check_hmac(Some(&sig), Some("other"), body).is_err());
        assert!(check_hmac(Some(&sig), Some("k3y!"), br#"{"zen":"ho"}"#).is_err());
        assert!(check_hmac(Some("sha256=zz"), Some("k3y!"), body).is_err());
        assert!(check_hmac(None, Some("k3y!"), body).is_err());
        assert!(check_hmac(Some(&sig), None, body).is_err());
        // a known vector: HMAC-SHA256("key", "The quick brown fox jumps over the lazy dog")
        assert_eq!(
            sign("key", b"The quick brown fox jumps over the lazy dog"),
            "sha256=f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8"
        );
    }

    #[test]
    fn an_alertmanager_group_becomes_one_event() {
        let body = br#"{"version":"4","groupKey":"{}:{alertname=\"HighErrorRate\"}","status":"firing",
          "receiver":"opsbot","groupLabels":{"alertname":"HighErrorRate"},
          "commonLabels":{"alertname":"HighErrorRate","service":"api","severity":"critical"},
          "commonAnnotations":{},"externalURL":"http://am:9093","truncatedAlerts":2,
          "alerts":[{"status":"firing","labels":{"alertname":"HighErrorRate","service":"api","instance":"a"},
            "annotations":{"summary":"5xx above 5% on api-a"},"startsAt":"2026-12-03T10:00:00Z",
            "endsAt":"0001-01-01T00:00:00Z","generatorURL":"http://prom/graph","fingerprint":"0a1b2c"},
           {"status":"resolved","labels":{"alertname":"HighErrorRate","service":"api","instance":"b"},
            "annotations":{},"startsAt":"2026-12-03T10:00:00Z","endsAt":"2026-12-03T10:05:00Z",
            "generatorURL":"","fingerprint":"3d4e5f"}]}"#;
        let e = alertmanager(body).unwrap();
        assert_eq!(e.title, "HighErrorRate");
        assert_eq!(e.severity.as_deref(), Some("critical"));
        assert_eq!(e.labels["service"], "api");
        let g = e.group.unwrap();
        assert_eq!(g.status, Status::Firing);
        assert_eq!(g.alerts.len(), 2);
        assert_eq!(g.alerts[0].summary, "5xx above 5% on api-a");
        assert_eq!(g.alerts[1].summary, "instance=b service=api");
        assert_eq!(g.alerts[1].status, Status::Resolved);
        assert!(e.text.contains("2 more alerts"));
        for bad in [
            &br#"{"version":"3","groupKey":"k","status":"firing","alerts":[{"status":"firing","fingerprint":"a"}]}"#[..],
            br#"{"version":"4","groupKey":"k","status":"firing","alerts":[]}"#,
            br#"{"version":"4","groupKey":"k","status":"burning","alerts":[{"status":"firing","fingerprint":"a"}]}"#,
            br#"not json"#,
        ] {
            assert!(matches!(alertmanager(bad), Err(Refusal::Malformed(_))));
        }
    }

    #[test]
    fn github_events_read_and_a_failed_deploy_is_marked() {
        let body = br#"{"deployment_status":{"state":"failure","log_url":"https://ci/1","description":"helm failed"},
          "deployment":{"environment":"production","ref":"v2.4.1"},
          "repository":{"full_name":"acme/Payments"},"sender":{"login":"ana"}}"#;
        let e = github("deployment_status", body).unwrap().unwrap();
        assert!(e.failed);
        assert_eq!(e.labels["service"], "payments");
        assert_eq!(e.labels["env"], "production");
        assert_eq!(
            e.title,
            "acme/Payments: deploy of v2.4.1 to production: failure"
        );
        let push = br#"{"ref":"refs/heads/main","repository":{"full_name":"acme/api"},"pusher":{"name":"bo"},
          "commits":[{},{}],"head_commit":{"message":"fix retries\n\nlong text"},"compare":"https://x"}"#;
        let e = github("push", push).unwrap().unwrap();
        assert_eq!(e.labels["branch"], "main");
        assert_eq!(e.text, "fix retries");
        assert!(!e.failed);
        let queued =
            br#"{"action":"requested","workflow_run":{},"repository":{"full_name":"a/b"}}"#;
        assert_eq!(github("workflow_run", queued).unwrap(), None);
        assert_eq!(github("star", push).unwrap(), None);
        assert!(github("push", b"{}").is_err());
    }

    #[test]
    fn generic_sources_follow_their_pointers() {
        let g = Generic {
            auth: super::super::settings::Auth::Bearer("X".into()),
            title: "/t".into(),
            text: Some("/d/msg".into()),
            severity: Some("/level".into()),
            labels: BTreeMap::from([("service".into(), "/svc".into()), ("n".into(), "/n".into())]),
        };
        let e = generic(
            "ci",
            &g,
            br#"{"t":"build 7 failed","d":{"msg":"tests"},"level":"error","svc":"api","n":7}"#,
        )
        .unwrap();
        assert_eq!(e.source, "generic:ci");
        assert_eq!(e.text, "tests");
        assert_eq!(e.labels["n"], "7");
        assert!(generic("ci", &g, br#"{"d":{}}"#).is_err());
    }
}
