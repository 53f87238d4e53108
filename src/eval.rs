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
    /// What kind of row it is ("negation", "chatty", ...), for per-category figures.
    pub category: Option<String>,
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
            if !matches!(k.as_str(), "text" | "intent" | "slots" | "category") {
                return Err(bad(format!(
                    "unknown key '{k}' (expected text, intent, slots, category)"
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
        let category = match obj.get("category") {
            None | Some(J::Null) => None,
            Some(J::String(c)) if !c.is_empty() => Some(c.clone()),
            Some(_) => return Err(bad("\"category\" must be a non-empty string".into())),
        };
        rows.push(Row {
            text,
            intent,
            slots,
            category,
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

/// Figures for the rows of one category.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Category {
    pub rows: usize,
    /// In-scope rows: accepted with the gold intent; off-topic rows: rejected outright.
    pub accuracy: f64,
    /// Off-topic rows accepted as a command (0 for in-scope categories).
    pub false_accepts: f64,
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
    /// Off-topic rows answered with a did-you-mean: neither rejected nor accepted.
    pub oos_suggest_rate: f64,
    /// Expected calibration error of the top intent's confidence (10 bins; a row counts as
    /// right when its top intent is the gold one, never for off-topic rows).
    pub expected_calibration_error: f64,
    pub slot_precision: f64,
    pub slot_recall: f64,
    pub frame_accuracy: f64,
    pub latency_p50_us: u64,
    pub latency_p99_us: u64,
    pub thresholds: Thresholds,
    pub per_intent: BTreeMap<String, PerIntent>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub per_category: BTreeMap<String, Category>,
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
    let mut cats: BTreeMap<String, (usize, usize, usize)> = BTreeMap::new(); // rows, right, fa
    let mut oos_sug = 0;
    let mut bins = [(0usize, 0f64, 0usize); 10]; // rows, confidence sum, right
    for (r, p) in rows.iter().zip(preds) {
        let d = decide(p);
        let bin = ((p.confidence.clamp(0.0, 1.0) * 10.0) as usize).min(9);
        bins[bin].0 += 1;
        bins[bin].1 += p.confidence as f64;
        bins[bin].2 += (r.intent.is_some() && p.top == r.intent) as usize;
        if let Some(c) = &r.category {
            let e = cats.entry(c.clone()).or_default();
            e.0 += 1;
            match &r.intent {
                None => {
                    e.1 += (d == Decision::Reject) as usize;
                    e.2 += (d == Decision::Accept) as usize;
                }
                Some(gold) => {
                    e.1 += (d == Decision::Accept && p.top.as_ref() == Some(gold)) as usize;
                }
            }
        }
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
                oos_sug += (d == Decision::Suggest) as usize;
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
        oos_suggest_rate: ratio(oos_sug, oos),
        expected_calibration_error: bins
            .iter()
            .filter(|b| b.0 > 0)
            .map(|&(n, conf, right)| {
                (n as f64 / rows.len().max(1) as f64) * (conf / n as f64 - ratio(right, n)).abs()
            })
            .sum(),
        slot_precision: ratio(slot_tp, slot_pred),
        slot_recall: ratio(slot_tp, slot_gold),
        frame_accuracy: ratio(frame_ok, frames),
        latency_p50_us: pct(0.5),
        latency_p99_us: pct(0.99),
        thresholds: t.unwrap_or(used),
        per_intent,
        per_category: cats
            .into_iter()
            .map(|(k, (n, right, fa))| {
                (
                    k,
                    Category {
                        rows: n,
                        accuracy: ratio(right, n),
                        false_accepts: ratio(fa, n),
                    },
                )
            })
            .collect(),
    }
}

/// What is wrong with one prediction, or `None` when it is right: the decision and intent, then
/// each slot that is missing, wrong or extra (free text only where the gold row names it).
pub fn row_error(catalog: &Catalog, r: &Row, p: &Prediction) -> Option<String> {
    let got = if p.decision == Decision::Reject {
        None
    } else {
        p.top.as_deref()
    };
    let right_intent =
        got == r.intent.as_deref() && (r.intent.is_none() || p.decision == Decision::Accept);
    let mut slot_errors = Vec::new();
    if let (true, Some(gold), Some(gold_slots)) = (right_intent, &r.intent, &r.slots) {
        let texts = text_params(catalog, gold);
        for (k, v) in gold_slots {
            match p.slots.get(k) {
                None => slot_errors.push(format!("missing {k}={v}")),
                Some(g) if g != v => slot_errors.push(format!("wrong {k}={g} (gold {v})")),
                _ => {}
            }
        }
        for (k, v) in &p.slots {
            if !gold_slots.contains_key(k) && !texts.contains(k) {
                slot_errors.push(format!("extra {k}={v}"));
            }
        }
    }
    if right_intent && slot_errors.is_empty() {
        return None;
    }
    Some(format!(
        "{:?} [{}] gold={} got={}:{:?} ({:.2} vs {:.2}){}",
        r.text,
        r.category.as_deref().unwrap_or("-"),
        r.intent.as_deref().unwrap_or("-"),
        p.top.as_deref().unwrap_or("-"),
        p.decision,
        p.confidence,
        p.runner_up,
        if slot_errors.is_empty() {
            String::new()
        } else {
            format!(" slots: {}", slot_errors.join(", "))
        }
    ))
}

/// The trade-off between in-scope accuracy and off-topic recall over a grid of accept thresholds
/// and margins. The suggest threshold stays as configured (capped at accept), so a suggest on an
/// off-topic row counts as in [`score`]: neither rejected nor accepted.
pub fn sweep(
    catalog: &Catalog,
    rows: &[Row],
    preds: &[Prediction],
    margin_steps: &[f32],
    used: Thresholds,
) -> Vec<Report> {
    let mut out = Vec::new();
    for &margin in margin_steps {
        for step in 2..=19 {
            let accept = step as f32 * 0.05;
            let t = Thresholds {
                accept,
                margin,
                suggest: used.suggest.min(accept),
            };
            out.push(score(catalog, rows, preds, Some(t), t));
        }
    }
    out
}

/// Checks that every gold intent in `rows` exists (in the catalogue, or is `help`), and puts
/// each typed gold value in the canonical form its parameter's parser gives.
pub fn check_intents(catalog: &Catalog, rows: &mut [Row]) -> Result<(), String> {
    for (i, r) in rows.iter_mut().enumerate() {
        let Some(name) = &r.intent else { continue };
        if name == HELP {
            continue;
        }
        let Some(intent) = catalog.intent(name) else {
            return Err(format!("row {}: unknown intent '{name}'", i + 1));
        };
        // a gold value written as people write it ("v2.4.1", "prod") is compared in the
        // canonical form the parser gives ("2.4.1", "production"); free text stays as written
        for (k, v) in r.slots.iter_mut().flatten() {
            let (Some(p), J::String(raw)) = (intent.param(k), &*v) else {
                continue;
            };
            if matches!(p.kind, crate::catalog::ParamKind::Text { .. }) {
                continue;
            }
            let value = catalog
                .parse_value(p, raw)
                .map_err(|e| format!("row {}: gold {k} '{raw}': {e}", i + 1))?;
            *v = value.to_json();
        }
    }
    Ok(())
}
