//! Understanding an addressed message. Strict command syntax first (exact, confidence 1.0); other
//! text goes through the cheap fuzzy matcher (typo correction, command words), the transformer
//! classifier and slot extraction, and comes out as one [`Analysis`]: the ranked intents with a
//! calibrated confidence, the decision (accept / suggest / reject) and the typed parameters.
//! Parsing only: nothing here runs or authorizes anything.

pub mod classify;
pub mod cues;
pub mod derive;
pub mod embed;
pub mod evidence;
pub mod fuzzy;
pub mod slots;
pub mod strict;
pub mod training;

use crate::catalog::{Catalog, Params, Value};
use classify::{Classifier, Weights};
use embed::{Backend, Cached, Embedder};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Instant;

/// The built-in intent that lists commands.
pub const HELP: &str = "help";

/// How a message was understood.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    Strict,
    Nlu,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Strict => "strict",
            Source::Nlu => "nlu",
        }
    }
}

/// What to do with a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    Accept,
    Suggest,
    Reject,
}

/// Confidence thresholds; the defaults were chosen on validation data (README, "Accuracy").
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Thresholds {
    /// Accept at or above this confidence...
    pub accept: f32,
    /// ...when the runner-up is at least this far behind; otherwise suggest.
    pub margin: f32,
    /// Suggest at or above this; reject below.
    pub suggest: f32,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            accept: 0.4,
            margin: 0.1,
            suggest: 0.25,
        }
    }
}

impl Thresholds {
    pub fn decide(&self, confidence: f32, runner_up: f32) -> Decision {
        if confidence >= self.accept && confidence - runner_up >= self.margin {
            Decision::Accept
        } else if confidence >= self.suggest {
            Decision::Suggest
        } else {
            Decision::Reject
        }
    }
}

/// The full result of understanding one message.
#[derive(Debug, Clone, Serialize)]
pub struct Analysis {
    pub text: String,
    /// The best intent (null when rejected).
    pub intent: Option<String>,
    pub confidence: f32,
    pub decision: Decision,
    pub slots: Params,
    /// Required parameters the message did not give.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub missing: Vec<String>,
    /// Values recognisably meant for a parameter but invalid (e.g. "scale web to 500").
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub invalid: Vec<String>,
    /// The next-best intents, best first.
    pub alternatives: Vec<Alternative>,
    pub source: Source,
    pub elapsed_us: u64,
    /// Why a strict command was refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Analysis {
    /// Nothing understood yet: the starting point of both parsers.
    fn rejected(text: &str, source: Source) -> Analysis {
        Analysis {
            text: text.to_string(),
            intent: None,
            confidence: 0.0,
            decision: Decision::Reject,
            slots: Params::new(),
            missing: vec![],
            invalid: vec![],
            alternatives: vec![],
            source,
            elapsed_us: 0,
            error: None,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Alternative {
    pub intent: String,
    pub confidence: f32,
}

/// NLU settings from the configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The bot's name: a message that opens with another name is addressed to someone else.
    pub bot_name: String,
    /// Directory with config.json, tokenizer.json and model.safetensors.
    pub model_dir: PathBuf,
    /// The engine that runs the model.
    pub backend: Backend,
    pub threads: usize,
    /// Where embeddings and trained heads are cached (None: no disk cache).
    pub cache_dir: Option<PathBuf>,
    /// Directory of off-topic negatives (`*.txt`, one message a line).
    pub negatives_dir: PathBuf,
    pub thresholds: Thresholds,
    pub weights: Weights,
}

/// The trained natural-language side.
pub struct Model {
    pub embedder: Cached<Box<dyn Embedder>>,
    pub classifier: Classifier,
    /// Typo correction and command words, from the classes' phrasing (no model needed).
    pub vocab: fuzzy::Vocabulary,
    pub thresholds: Thresholds,
    /// True when the classes are the catalogue's intents (so slots and risk apply).
    pub catalog_classes: bool,
    pub bot_name: String,
}

/// The classifier's input for one text: its embedding followed by its speech-act cues.
fn features(v: &[f32], cues: [f32; cues::COUNT]) -> Vec<f32> {
    let mut x = Vec::with_capacity(v.len() + cues::COUNT);
    x.extend_from_slice(v);
    x.extend_from_slice(&cues);
    x
}

/// The sentences and clauses of a message of more than one ("morning all. before I forget:
/// show the api logs" -> three), the last four at most; empty for a message of one clause.
pub fn clauses(text: &str) -> Vec<&str> {
    let parts: Vec<&str> = text
        .split(['.', '!', '?', ';', ':', ',', '—', '\n'])
        .map(|p| p.trim().trim_start_matches(['-', ' ']))
        .filter(|p| p.split_whitespace().count() >= 2)
        .collect();
    if parts.len() < 2 {
        return vec![];
    }
    parts[parts.len().saturating_sub(4)..].to_vec()
}

impl Model {
    /// Loads the embedding model and trains on `set`.
    pub fn train(
        settings: &Settings,
        set: &training::TrainingSet,
        catalog_classes: bool,
    ) -> Result<Model, embed::Error> {
        Self::train_with(settings, set, catalog_classes, &|_, _| {})
    }

    /// [`Model::train`], telling `progress(done, total)` while it embeds texts that are not
    /// cached yet (the slow part of a first start).
    pub fn train_with(
        settings: &Settings,
        set: &training::TrainingSet,
        catalog_classes: bool,
        progress: &dyn Fn(usize, usize),
    ) -> Result<Model, embed::Error> {
        let embedder = Cached::new(
            embed::load(&settings.model_dir, &settings.backend, settings.threads)?,
            settings.cache_dir.as_deref(),
        );
        let vectors = embedder.embed_many_with(&set.texts, 32, progress)?;
        let vocab = set.vocabulary();
        let vectors = vectors
            .iter()
            .zip(&set.texts)
            .map(|(v, t)| features(v, cues::features(t, &vocab, &settings.bot_name)))
            .collect();
        let classifier = Classifier::train(
            set,
            vectors,
            embedder.model_id(),
            settings.cache_dir.as_deref(),
            settings.weights,
        );
        Ok(Model {
            embedder,
            classifier,
            vocab,
            thresholds: settings.thresholds,
            catalog_classes,
            bot_name: settings.bot_name.clone(),
        })
    }
}

/// The message parser.
pub struct Nlu {
    prefix: String,
    /// The trained model: set at once, or once it has learned the catalogue in the background.
    model: std::sync::OnceLock<Model>,
    /// Why there is no model (yet): what plain language is answered meanwhile.
    without: std::sync::Mutex<Without>,
    /// Texts embedded so far and in all while the model learns in the background.
    progress: [std::sync::atomic::AtomicUsize; 2],
}

enum Without {
    /// Plain language is switched off in the configuration.
    Off,
    /// A first start: the model is learning the catalogue.
    Learning,
    /// Learning failed: why.
    Failed(String),
}

impl Nlu {
    fn new(prefix: String, without: Without) -> Self {
        Nlu {
            prefix,
            model: std::sync::OnceLock::new(),
            without: std::sync::Mutex::new(without),
            progress: Default::default(),
        }
    }

    /// Strict syntax only (no model): for tools that need no natural language.
    pub fn strict_only(prefix: impl Into<String>) -> Self {
        Self::new(prefix.into(), Without::Off)
    }

    pub fn with_model(prefix: impl Into<String>, model: Model) -> Self {
        let nlu = Self::new(prefix.into(), Without::Off);
        let _ = nlu.model.set(model);
        nlu
    }

    /// A parser whose model is still learning the catalogue: strict commands work from the
    /// start; plain language is answered with how far the learning got until
    /// [`Nlu::learned`] hands the model over.
    pub fn learning(prefix: impl Into<String>) -> Self {
        Self::new(prefix.into(), Without::Learning)
    }

    /// How far the learning got (`done` of `total` texts embedded).
    pub fn progress(&self, done: usize, total: usize) {
        use std::sync::atomic::Ordering::Relaxed;
        self.progress[0].store(done, Relaxed);
        self.progress[1].store(total, Relaxed);
    }

    /// The end of the learning: the model takes over plain language, or the failure is what
    /// plain language is answered with from now on.
    pub fn learned(&self, model: anyhow::Result<Model>) {
        match model {
            Ok(m) => {
                let _ = self.model.set(m);
            }
            Err(e) => {
                *self.without.lock().unwrap_or_else(|p| p.into_inner()) =
                    Without::Failed(format!("{e:#}"));
            }
        }
    }

    /// What plain language is answered while there is no model.
    fn without_model(&self) -> String {
        let help = format!("{}help", self.prefix);
        match &*self.without.lock().unwrap_or_else(|p| p.into_inner()) {
            Without::Off => format!(
                "plain-language understanding is switched off; use strict commands ({help})"
            ),
            Without::Learning => {
                use std::sync::atomic::Ordering::Relaxed;
                let (done, total) = (self.progress[0].load(Relaxed), self.progress[1].load(Relaxed));
                let got = if total > 0 {
                    format!(" ({} of {total} examples read)", done.min(total))
                } else {
                    String::new()
                };
                format!("I'm still learning the catalogue{got}, which a first start does once; strict commands work now ({help})")
            }
            Without::Failed(why) => format!(
                "plain-language understanding could not start ({why}); strict commands work ({help})"
            ),
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    pub fn model(&self) -> Option<&Model> {
        self.model.get()
    }

    /// Understands `text` against `catalog`.
    pub fn analyze(&self, catalog: &Catalog, text: &str) -> Analysis {
        let started = Instant::now();
        let text = text.trim();
        let mut a = match text.strip_prefix(self.prefix.as_str()) {
            Some(body) => self.analyze_strict(catalog, text, body),
            None => self.analyze_nlu(catalog, text),
        };
        a.elapsed_us = started.elapsed().as_micros() as u64;
        a
    }

    fn analyze_strict(&self, catalog: &Catalog, text: &str, body: &str) -> Analysis {
        let mut a = Analysis::rejected(text, Source::Strict);
        match strict::parse(catalog, body, &self.prefix) {
            Ok(strict::Strict::Help { topic }) => {
                a.intent = Some(HELP.into());
                if let Some(t) = topic {
                    a.slots.insert("topic".into(), Value::Text(t));
                }
            }
            Ok(strict::Strict::Command { intent, params }) => {
                a.intent = Some(intent.id.0.clone());
                a.slots = params;
            }
            Err(e) => {
                a.error = Some(e.to_string());
                return a;
            }
        }
        a.confidence = 1.0;
        a.decision = Decision::Accept;
        a
    }

    fn analyze_nlu(&self, catalog: &Catalog, text: &str) -> Analysis {
        let mut a = Analysis::rejected(text, Source::Nlu);
        let Some(model) = self.model.get() else {
            a.error = Some(self.without_model());
            return a;
        };
        if !text.chars().any(char::is_alphanumeric) {
            return a;
        }
        let clf = &model.classifier;
        // cheap path first: correct typos against the catalogue's own words
        let vocab = &model.vocab;
        let (corrected, _) = vocab.correct_text(text);
        // the whole message, and each clause of a longer one: a request after a greeting or some
        // context is judged on its own, with the cues of its own words (and of the whole message
        // for who it is addressed to)
        let parts = clauses(&corrected);
        let texts: Vec<&str> = std::iter::once(corrected.as_str())
            .chain(parts.iter().copied())
            .collect();
        let vectors = match model.embedder.embed(&texts) {
            Ok(v) => v,
            Err(e) => {
                tracing::error!(error = %e, "embedding failed");
                a.error = Some(
                    "the language model failed on this message; strict commands still work".into(),
                );
                return a;
            }
        };
        let whole_cues = cues::features(&corrected, vocab, &model.bot_name);
        let mut scores = None::<classify::Scores>;
        for (i, (v, t)) in vectors.iter().zip(&texts).enumerate() {
            let mut c = if i == 0 {
                whole_cues
            } else {
                cues::features(t, vocab, &model.bot_name)
            };
            c[cues::ADDRESSED] = whole_cues[cues::ADDRESSED];
            let mut s = clf.scores(&features(v, c));
            evidence::command_words(&mut s, vocab, &fuzzy::words(t), &clf.weights);
            let best = |s: &classify::Scores| s.intents.iter().copied().fold(0.0, f32::max);
            if scores.as_ref().is_none_or(|old| best(&s) > best(old)) {
                scores = Some(s);
            }
        }
        let Some(mut scores) = scores else {
            return a;
        };
        let mut extractions = if model.catalog_classes {
            evidence::named_parameters(&mut scores, catalog, &clf.classes, &corrected, &clf.weights)
        } else {
            Default::default()
        };
        let ranked = scores.ranked();
        let (best, confidence) = ranked[0];
        let runner_up = ranked.get(1).map(|r| r.1).unwrap_or(0.0);
        a.confidence = confidence;
        a.decision = model.thresholds.decide(confidence, runner_up);
        // In a team channel much of what is said is said to the team. A message that reports
        // what was done ("we upgraded redis on monday"), turns a request down ("please don't
        // bounce the workers"), states how things are with no request in it, opens with an
        // operation the chosen intent's examples never use ("change the log level of auth") or
        // acts on the speaker's own thing while the intent's target goes unnamed ("restart my
        // laptop") is never run on the model's word alone: at most it is offered as a
        // did-you-mean. A one-to-one assistant's classes (`eval --train`) keep the model's
        // decision.
        let on_own_things = || {
            let Some(intent) = catalog.intent(&clf.classes[best]) else {
                return false;
            };
            if !cues::on_own_things(&corrected, vocab) {
                return false;
            }
            let extracted;
            let ex = match extractions.get(&best) {
                Some(ex) => ex,
                None => {
                    extracted = slots::extract(catalog, intent, &corrected);
                    &extracted
                }
            };
            evidence::names_no_target(intent, &ex.params)
        };
        let said_to_the_team = || {
            let own = catalog
                .intent(&clf.classes[best])
                .map(slots::example_words)
                .unwrap_or_default();
            cues::only_reports_or_declines(&corrected, &parts, vocab)
                || cues::asks_for_nothing(&corrected, vocab, &own)
                || (!own.is_empty() && cues::foreign_operation(&corrected, &own).is_some())
                || on_own_things()
        };
        if a.decision == Decision::Accept && model.catalog_classes && said_to_the_team() {
            a.decision = Decision::Suggest;
        }
        // on a reject no intent is chosen, so the alternatives start with the best-ranked one
        let skip = usize::from(a.decision != Decision::Reject);
        a.alternatives = ranked
            .iter()
            .skip(skip)
            .take(3)
            .map(|&(i, c)| Alternative {
                intent: clf.classes[i].clone(),
                confidence: c,
            })
            .collect();
        if a.decision == Decision::Reject {
            return a;
        }
        a.intent = Some(clf.classes[best].clone());
        if clf.classes[best] == HELP {
            if let Some(t) = derive::help_topic(catalog, &corrected) {
                a.slots.insert("topic".into(), Value::Text(t));
            }
        }
        if let Some(intent) = catalog.intent(&clf.classes[best]) {
            let ex = extractions
                .remove(&best)
                .unwrap_or_else(|| slots::extract(catalog, intent, &corrected));
            a.slots = ex.params;
            a.invalid = ex.invalid.iter().map(|e| e.to_string()).collect();
            // slots hold what the message said; defaults are filled when the action runs
            a.missing = intent
                .params
                .iter()
                .filter(|p| p.required && !a.slots.contains_key(&p.name))
                .map(|p| p.name.clone())
                .collect();
        }
        a
    }
}
