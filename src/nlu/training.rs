//! Training data for the classifier: the catalogue's example utterances with their placeholders
//! filled by sampled values (so the model learns from sentences that look like real messages),
//! the built-in help intent, and off-topic negatives; or, for benchmarks, a labelled JSONL file.

use super::fuzzy::Vocabulary;
use super::{derive, HELP};
use crate::catalog::{Catalog, Param, ParamKind};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use std::path::Path;

/// Labelled training text: `label` is a class index, or `None` for off-topic.
#[derive(Debug, Clone, Default)]
pub struct TrainingSet {
    /// Class names (intents), indexed by label.
    pub classes: Vec<String>,
    pub texts: Vec<String>,
    pub labels: Vec<Option<usize>>,
    /// Raw example templates per class, for the fuzzy vocabulary.
    pub phrasing: Vec<Vec<String>>,
    /// Extra known words (entity forms).
    pub extra_words: Vec<String>,
}

impl TrainingSet {
    /// The fuzzy vocabulary of these classes' phrasing: typo correction and command words,
    /// without any model.
    pub fn vocabulary(&self) -> Vocabulary {
        Vocabulary::build(&self.phrasing, &self.extra_words).protecting(super::cues::cue_words())
    }
}

/// How many filled variants each example template yields.
pub const FILLS: usize = 3;

/// Example utterances of the built-in `help` intent.
pub const HELP_EXAMPLES: &[&str] = &[
    "help",
    "what can you do",
    "what commands do you know",
    "list the commands",
    "how do I use you",
    "show me what you can do",
    "what are your commands",
    "I need help with the bot",
    "usage please",
    "which actions are available",
    "what can I ask you",
    "how does this bot work",
    "show the command list",
    "help me, what do you support",
    "what do you do",
    "how can you help me",
    "commands?",
    "what are my options here",
    "help please",
    "show help",
    "tell me what you can do",
    "can you help me",
    "what are you able to do",
    "bot, what can I ask for",
    "how do I talk to you",
    "any docs for this bot?",
];

const VERSIONS: &[&str] = &[
    "2.4.1",
    "v2.4.1",
    "3.0.0",
    "v1.12.3",
    "2.5.0-rc.1",
    "1.9",
    "a1b2c3d",
    "v0.8.14",
    "4.2.0",
    "10.1.7",
];
const DURATIONS: &[&str] = &[
    "15m",
    "2h",
    "30 minutes",
    "an hour",
    "half an hour",
    "a day",
    "90 minutes",
    "1h",
    "10 minutes",
    "45m",
    "2 hours",
    "3d",
];
const TOPICS: &[&str] = &[
    "high latency",
    "disk full",
    "database failover",
    "cache flush",
    "rotating credentials",
    "a stuck queue",
    "certificate expiry",
    "memory leak",
    "checkout errors",
    "login failures",
    "slow search results",
    "replication lag",
];

fn sample_value(catalog: &Catalog, p: &Param, rng: &mut impl Rng) -> String {
    match &p.kind {
        ParamKind::Entity(e) => {
            let forms: Vec<&str> = catalog
                .entity(e)
                .map(|e| e.surface_forms().map(|(f, _)| f).collect())
                .unwrap_or_default();
            forms.choose(rng).copied().unwrap_or("x").to_string()
        }
        ParamKind::Integer { min, max } => {
            let n = rng.gen_range(*min..=(*max).min(*min + 20));
            const WORDS: [&str; 11] = [
                "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
                "ten",
            ];
            if rng.gen_bool(0.3) && (0..=10).contains(&n) {
                WORDS[n as usize].to_string()
            } else {
                n.to_string()
            }
        }
        ParamKind::Duration { .. } => DURATIONS.choose(rng).unwrap().to_string(),
        ParamKind::Version => VERSIONS.choose(rng).unwrap().to_string(),
        ParamKind::Alert => {
            let id = rng.gen_range(1000..9999);
            if rng.gen_bool(0.5) {
                format!("#{id}")
            } else {
                id.to_string()
            }
        }
        ParamKind::Text { .. } => TOPICS.choose(rng).unwrap().to_string(),
    }
}

/// Reads every `*.txt` in `dir`: one message a line, `#` starts a comment line.
pub fn read_negatives(dir: &Path) -> std::io::Result<Vec<String>> {
    let mut files: Vec<_> = match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "txt"))
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    files.sort();
    let mut out = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f)?;
        out.extend(
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(str::to_string),
        );
    }
    Ok(out)
}

/// One example with each placeholder filled by a sampled value of its parameter.
fn fill(
    catalog: &Catalog,
    intent: &crate::catalog::Intent,
    ex: &str,
    rng: &mut impl Rng,
) -> String {
    let template = crate::catalog::Template(ex.to_string());
    let mut text = ex.to_string();
    for ph in template.placeholders() {
        if let Some(p) = intent.param(ph) {
            text = text.replacen(&format!("{{{ph}}}"), &sample_value(catalog, p, rng), 1);
        }
    }
    text
}

/// The training set for a catalogue: classes are its intents (in catalogue order) then `help`.
/// Besides the examples and the given negatives it holds the rows [`derive`] makes from the
/// catalogue: near-miss negatives and help rows that name a command.
pub fn from_catalog(catalog: &Catalog, negatives: &[String]) -> TrainingSet {
    let mut set = TrainingSet::default();
    let mut rng = rand::rngs::StdRng::seed_from_u64(42);
    for (ci, intent) in catalog.intents.iter().enumerate() {
        set.classes.push(intent.id.0.clone());
        set.phrasing.push(intent.examples.clone());
        for ex in &intent.examples {
            for _ in 0..FILLS {
                set.texts.push(fill(catalog, intent, ex, &mut rng));
                set.labels.push(Some(ci));
            }
        }
    }
    let help = set.classes.len();
    set.classes.push(HELP.into());
    set.phrasing
        .push(HELP_EXAMPLES.iter().map(|s| s.to_string()).collect());
    let mut derive_rng = rand::rngs::StdRng::seed_from_u64(43);
    let help_rows = derive::help_rows(catalog, &mut derive_rng);
    for h in HELP_EXAMPLES.iter().map(|s| s.to_string()).chain(help_rows) {
        set.texts.push(h);
        set.labels.push(Some(help));
    }
    set.extra_words = catalog
        .entities
        .values()
        .flat_map(|e| e.surface_forms().map(|(f, _)| f.to_string()))
        .collect();
    let vocab = set.vocabulary();
    let mut fill_rng = rand::rngs::StdRng::seed_from_u64(44);
    let mut filler =
        |intent: &crate::catalog::Intent, ex: &str| fill(catalog, intent, ex, &mut fill_rng);
    let derived = derive::negatives(catalog, &vocab, &mut filler, &mut derive_rng);
    for n in negatives
        .iter()
        .cloned()
        .chain(derived.into_iter().map(|(t, _)| t))
    {
        set.texts.push(n);
        set.labels.push(None);
    }
    set
}

/// A training set from labelled rows (`intent` None = off-topic), classes in order of appearance.
pub fn from_rows<'a>(rows: impl IntoIterator<Item = (&'a str, Option<&'a str>)>) -> TrainingSet {
    let mut set = TrainingSet::default();
    let mut index = std::collections::HashMap::new();
    for (text, intent) in rows {
        let label = intent.map(|name| {
            *index.entry(name.to_string()).or_insert_with(|| {
                set.classes.push(name.to_string());
                set.phrasing.push(Vec::new());
                set.classes.len() - 1
            })
        });
        if let Some(l) = label {
            set.phrasing[l].push(text.to_string());
        }
        set.texts.push(text.to_string());
        set.labels.push(label);
    }
    set
}
