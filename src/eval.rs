//! `opsbot eval`: accuracy, off-topic rejection, slot and frame accuracy and latency of the
//! parser over a labelled JSONL file, and the threshold trade-off (`--sweep`). The definitions
//! are those in README.md ("Accuracy").

use crate::catalog::{Catalog, ParamKind};
use crate::nlu::{Analysis, Decision, Nlu, Thresholds, HELP};
use serde::Serialize;
use serde_json::{Map, Value as J};
use std::collections::BTreeMap;
use std::path::Path;

/// One labelled row.
#[derive(Debug, Clone)]
pub struct Row {
    pub text: String,
    pub intent: Option<String>,
    pub slots: Option<Map<String, J>>,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("{path}:{line}: {reason}")]
    Line {
        path: String,
        line: usize,
        reason: String,
    },
}

/// Reads a JSONL file of `{"text", "intent" (string or null), "slots" (optional object)}` rows;
/// the first malformed line is reported with its number. Blank lines are skipped.
pub fn read_rows(path: &Path) -> Result<Vec<Row>, Error> {
    let shown = path.display().to_string();
    let src = std::fs::read_to_string(path).map_err(|e| Error::Read {
        path: shown.clone(),
        reason: e.to_string(),
    })?;
    let mut rows = Vec::new();
    for (i, line) in src.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let bad = |reason: String| Error::Line {
            path: shown.clone(),
            line: i + 1,
            reason,
        };
        let v: J = serde_json::from_str(line).map_err(|e| bad(format!("not valid JSON: {e}")))?;
        let obj = v
            .as_object()
            .ok_or_else(|| bad("expected a JSON object".into()))?;
        for k in obj.keys() {
            if !matches!(k.as_str(), "text" | "intent" | "slots") {
                return Err(bad(format!(
                    "unknown key '{k}' (expected text, intent, slots)"
                )));
            }
        }
        let text = obj
            .get("text")
            .and_then(J::as_str)
            .ok_or_else(|| bad("\"text\" must be a string".into()))?
            .to_string();
        let intent = match obj.get("intent") {
            Some(J::String(s)) if !s.is_empty() => Some(s.clone()),
            Some(J::Null) => None,
            _ => return Err(bad("\"intent\" must be an intent name or null".into())),
        };
        let slots = match obj.get("slots") {
            None | Some(J::Null) => None,
            Some(J::Object(m)) => Some(m.clone()),
            Some(_) => return Err(bad("\"slots\" must be an object".into())),
        };
        rows.push(Row {
            text,
            intent,
            slots,
        });
    }
    if rows.is_empty() {
        return Err(Error::Line {
            path: shown,
            line: 0,
            reason: "no rows".into(),
        });
    }
    Ok(rows)
}

#[derive(Debug, Clone, Serialize)]
pub struct PerIntent {
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    pub support: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub rows: usize,
    pub in_scope: usize,
    pub out_of_scope: usize,
    pub in_scope_accuracy: f64,
    pub top1_accuracy: f64,
    pub oos_recall: f64,
    pub oos_false_accept_rate: f64,
    pub slot_precision: f64,
    pub slot_recall: f64,
    pub frame_accuracy: f64,
    pub latency_p50_us: u64,
    pub latency_p99_us: u64,
    pub thresholds: Thresholds,
    pub per_intent: BTreeMap<String, PerIntent>,
}

/// What was predicted for one row, kept so thresholds can be swept without re-running the model.
#[derive(Debug, Clone)]
pub struct Prediction {
    pub top: Option<String>,
    pub confidence: f32,
    pub runner_up: f32,
    pub decision: Decision,
    pub slots: Map<String, J>,
    pub elapsed_us: u64,
}

pub fn predict(nlu: &Nlu, catalog: &Catalog, rows: &[Row]) -> Vec<Prediction> {
    rows.iter()
        .map(|r| {
            let a: Analysis = nlu.analyze(catalog, &r.text);
            // the top-ranked intent even when rejected (for top-1 accuracy)
            let top = a.intent.clone().or_else(|| ranked_top(&a));
            let runner_up = if a.intent.is_some() {
                a.alternatives.first().map(|x| x.confidence).unwrap_or(0.0)
            } else {
                a.alternatives.get(1).map(|x| x.confidence).unwrap_or(0.0)
            };
            let slots = match serde_json::to_value(&a.slots) {
                Ok(J::Object(m)) => m,
                _ => Map::new(),
            };
            Prediction {
                top,
                confidence: a.confidence,
                runner_up,
                decision: a.decision,
                slots,
                elapsed_us: a.elapsed_us,
            }
        })
        .collect()
}

/// On a reject the analysis names no intent; its best-ranked one is the first alternative.
fn ranked_top(a: &Analysis) -> Option<String> {
    a.alternatives
        .first()
        .filter(|_| a.source == crate::nlu::Source::Nlu)
        .map(|x| x.intent.clone())
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

/// Text parameters of `intent` (compared only where the gold row names them).
fn text_params(catalog: &Catalog, intent: &str) -> Vec<String> {
    catalog
        .intent(intent)
        .map(|i| {
            i.params
                .iter()
                .filter(|p| matches!(p.kind, ParamKind::Text { .. }))
                .map(|p| p.name.clone())
                .collect()
        })
        .unwrap_or_default()
}

/// Scores predictions against rows, re-deciding with `t` when given.
pub fn score(
    catalog: &Catalog,
    rows: &[Row],
    preds: &[Prediction],
    t: Option<Thresholds>,
    used: Thresholds,
) -> Report {
    let decide = |p: &Prediction| match (t, p.decision, &p.top) {
        (Some(t), _, Some(_)) if p.confidence < 1.0 => t.decide(p.confidence, p.runner_up),
        (_, d, _) => d,
    };
    let (mut in_scope, mut oos, mut acc, mut top1, mut oos_rej, mut oos_acc) = (0, 0, 0, 0, 0, 0);
    let (mut slot_tp, mut slot_pred, mut slot_gold, mut frames, mut frame_ok) = (0, 0, 0, 0, 0);
    let mut per: BTreeMap<String, (usize, usize, usize)> = BTreeMap::new(); // tp, predicted, gold
    for (r, p) in rows.iter().zip(preds) {
        let d = decide(p);
        let accepted = if d == Decision::Accept {
            p.top.clone()
        } else {
            None
        };
        if let Some(a) = &accepted {
            per.entry(a.clone()).or_default().1 += 1;
        }
        match &r.intent {
            None => {
                oos += 1;
                oos_rej += (d == Decision::Reject) as usize;
                oos_acc += (d == Decision::Accept) as usize;
            }
            Some(gold) => {
                in_scope += 1;
                per.entry(gold.clone()).or_default().2 += 1;
                top1 += (p.top.as_ref() == Some(gold)) as usize;
                let correct = accepted.as_ref() == Some(gold);
                acc += correct as usize;
                if correct {
                    per.entry(gold.clone()).or_default().0 += 1;
                }
                if let Some(gold_slots) = &r.slots {
                    frames += 1;
                    if correct {
                        let texts = text_params(catalog, gold);
                        let pred: Map<String, J> = p
                            .slots
                            .iter()
                            .filter(|(k, _)| !texts.contains(k) || gold_slots.contains_key(*k))
                            .map(|(k, v)| (k.clone(), v.clone()))
                            .collect();
                        let tp = pred
                            .iter()
                            .filter(|(k, v)| gold_slots.get(*k) == Some(v))
                            .count();
                        slot_tp += tp;
                        slot_pred += pred.len();
                        slot_gold += gold_slots.len();
                        frame_ok += (tp == pred.len() && tp == gold_slots.len()) as usize;
                    }
                }
            }
        }
    }
    let mut lat: Vec<u64> = preds.iter().map(|p| p.elapsed_us).collect();
    lat.sort_unstable();
    let pct = |q: f64| {
        lat.get(((lat.len() as f64 - 1.0) * q).round() as usize)
            .copied()
            .unwrap_or(0)
    };
    let per_intent = per
        .into_iter()
        .filter(|(_, (_, _, g))| *g > 0)
        .map(|(k, (tp, pr, g))| {
            let (p, r) = (ratio(tp, pr), ratio(tp, g));
            let f1 = if p + r > 0.0 {
                2.0 * p * r / (p + r)
            } else {
                0.0
            };
            (
                k,
                PerIntent {
                    precision: p,
                    recall: r,
                    f1,
                    support: g,
                },
            )
        })
        .collect();
    Report {
        rows: rows.len(),
        in_scope,
        out_of_scope: oos,
        in_scope_accuracy: ratio(acc, in_scope),
        top1_accuracy: ratio(top1, in_scope),
        oos_recall: ratio(oos_rej, oos),
        oos_false_accept_rate: ratio(oos_acc, oos),
        slot_precision: ratio(slot_tp, slot_pred),
        slot_recall: ratio(slot_tp, slot_gold),
        frame_accuracy: ratio(frame_ok, frames),
        latency_p50_us: pct(0.5),
        latency_p99_us: pct(0.99),
        thresholds: t.unwrap_or(used),
        per_intent,
    }
}

/// The trade-off between in-scope accuracy and off-topic recall over a grid of thresholds
/// (suggest = accept here, so everything not accepted is rejected).
pub fn sweep(
    catalog: &Catalog,
    rows: &[Row],
    preds: &[Prediction],
    margin_steps: &[f32],
) -> Vec<Report> {
    let mut out = Vec::new();
    for &margin in margin_steps {
        for step in 2..=19 {
            let accept = step as f32 * 0.05;
            let t = Thresholds {
                accept,
                margin,
                suggest: accept,
            };
            out.push(score(catalog, rows, preds, Some(t), t));
        }
    }
    out
}

/// Checks that every gold intent in `rows` exists (in the catalogue, or is `help`).
pub fn check_intents(catalog: &Catalog, rows: &[Row]) -> Result<(), String> {
    for (i, r) in rows.iter().enumerate() {
        if let Some(name) = &r.intent {
            if name != HELP && catalog.intent(name).is_none() {
                return Err(format!("row {}: unknown intent '{name}'", i + 1));
            }
        }
    }
    Ok(())
}
