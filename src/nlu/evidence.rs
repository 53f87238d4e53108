//! Evidence from the words of a message, added to the classifier's scores: the catalogue's
//! command words it contains (typo-corrected), and the parameters of each leading intent that it
//! names. A request that names none of its intent's required targets is less likely meant.

use super::classify::{Scores, Weights};
use super::fuzzy::Vocabulary;
use super::slots::{self, Extraction};
use crate::catalog::{Catalog, Intent, ParamKind, Params};
use std::collections::HashMap;

/// Each command word of a class in `words` multiplies that class's odds (two count at most).
pub fn command_words(scores: &mut Scores, vocab: &Vocabulary, words: &[String], weights: &Weights) {
    let hits = vocab.keyword_hits(words, scores.intents.len());
    for (i, h) in hits.into_iter().enumerate() {
        if h > 0 {
            scores.scale(i, (weights.keyword_boost * h.min(2) as f32).exp());
        }
    }
}

/// For the three best-ranked of `classes` that are catalogue intents: lowers one whose required
/// targets (entities such as the service) `text` names none of, and raises one by the typed
/// parameters it names (two count at most). A value of an entity that no other intent takes
/// ("sev-1" of incident.open, "p99" of metrics) speaks for its intent like a command word. The
/// extractions made on the way, by class.
pub fn named_parameters(
    scores: &mut Scores,
    catalog: &Catalog,
    classes: &[String],
    text: &str,
    weights: &Weights,
) -> HashMap<usize, Extraction> {
    let mut extractions = HashMap::new();
    let top: Vec<usize> = scores
        .ranked()
        .into_iter()
        .take(3)
        .map(|(i, _)| i)
        .collect();
    for i in top {
        let Some(intent) = catalog.intent(&classes[i]) else {
            continue;
        };
        let ex = slots::extract(catalog, intent, text);
        if names_no_target(intent, &ex.params) {
            scores.scale(i, weights.missing_target);
        }
        let typed = intent
            .params
            .iter()
            .filter(|p| {
                !matches!(p.kind, ParamKind::Text { .. }) && ex.params.contains_key(&p.name)
            })
            .count();
        let own = intent
            .params
            .iter()
            .filter(|p| ex.params.contains_key(&p.name) && only_this_takes(catalog, &p.kind))
            .count();
        if typed > 0 {
            let boost = weights.slot_boost * typed.min(2) as f32
                + weights.keyword_boost * own.min(1) as f32;
            scores.scale(i, boost.exp());
        }
        extractions.insert(i, ex);
    }
    extractions
}

/// Whether `intent` needs a target (a required entity such as the service) and `found` names
/// none of them.
pub fn names_no_target(intent: &Intent, found: &Params) -> bool {
    let mut targets = intent
        .params
        .iter()
        .filter(|p| p.required && matches!(p.kind, ParamKind::Entity(_)))
        .peekable();
    targets.peek().is_some() && !targets.any(|p| found.contains_key(&p.name))
}

/// Whether `kind` is an entity that only one intent of the catalogue takes.
fn only_this_takes(catalog: &Catalog, kind: &ParamKind) -> bool {
    let ParamKind::Entity(name) = kind else {
        return false;
    };
    let takers = catalog
        .intents
        .iter()
        .filter(|i| {
            i.params
                .iter()
                .any(|p| matches!(&p.kind, ParamKind::Entity(e) if e == name))
        })
        .count();
    takers == 1
}
