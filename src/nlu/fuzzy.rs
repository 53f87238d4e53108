//! Typo-tolerant word matching with `strsim`: the cheap path that runs before the transformer.
//! It corrects misspelt words against the catalogue's own vocabulary ("restrat" -> "restart",
//! "prdo" -> "prod"), and counts command words that point at one intent, a second signal for the
//! classifier. It never decides alone.

use crate::catalog::values;
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// How far a word may be from a vocabulary word and still match it.
pub fn close_enough(word: &str, target: &str) -> bool {
    if word == target {
        return true;
    }
    let (wl, tl) = (word.chars().count(), target.chars().count());
    if wl < 3 || tl < 4 || wl.abs_diff(tl) > 1 {
        return false;
    }
    // typos rarely spare neither of the first two letters: the first letter must match, or the
    // first two be swapped
    let (a, b) = (word.as_bytes(), target.as_bytes());
    if a[0] != b[0] && !(a[0] == b[1] && a[1] == b[0]) {
        return false;
    }
    let d = strsim::osa_distance(word, target);
    match tl {
        // four letters: only a swap of two neighbours ("prdo" -> "prod"), never a different letter
        // ("like" is not "live")
        4 => d == 1 && wl == 4 && sorted(word) == sorted(target),
        5..=9 => d == 1,
        // two edits only in long words ("saying" must not become "staging")
        _ => d <= 2,
    }
}

fn sorted(s: &str) -> Vec<char> {
    let mut v: Vec<char> = s.chars().collect();
    v.sort_unstable();
    v
}

/// Lower-case words of a text, split at anything that is not a letter, digit or one of `#.-_`
/// inside a word; trailing dots and dashes are dropped.
pub fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !(c.is_alphanumeric() || matches!(c, '#' | '.' | '-' | '_' | '\'')))
        .map(|w| {
            w.trim_matches(|c| matches!(c, '.' | '-' | '\'' | '_'))
                .to_lowercase()
        })
        .filter(|w| !w.is_empty())
        .collect()
}

/// Words too common to mean anything about an intent.
pub const STOPWORDS: &[&str] = &[
    "a", "an", "the", "to", "in", "on", "of", "for", "and", "or", "is", "it", "its", "it's", "me",
    "my", "i", "we", "our", "us", "you", "your", "can", "could", "would", "will", "please", "pls",
    "plz", "hey", "hi", "hello", "with", "at", "from", "by", "be", "do", "does", "did", "this",
    "that", "these", "those", "there", "what", "what's", "whats", "how", "who", "which", "when",
    "now", "just", "some", "any", "all", "up", "out", "so", "are", "was", "were", "have", "has",
    "had", "get", "give", "let", "let's", "lets", "need", "want", "go", "ahead", "quick",
    "quickly", "again", "then", "too", "also", "one", "again", "about", "into", "over",
];

/// The vocabulary of a catalogue, for typo correction, and each intent's command words.
#[derive(Debug, Default)]
pub struct Vocabulary {
    /// Every known word (examples, entity forms, intent names).
    known: BTreeSet<String>,
    /// Known words by length, for quick candidate lookup.
    by_len: HashMap<usize, Vec<String>>,
    /// Words that point at one intent: word -> intent index.
    keywords: HashMap<String, usize>,
    /// Ordinary words that are never corrected, though the catalogue does not use them ("were"
    /// is not a misspelt "we're").
    ordinary: BTreeSet<String>,
}

impl Vocabulary {
    /// `examples[i]` are intent i's example texts (placeholders removed); `extra` are other known
    /// words (entity forms).
    pub fn build(examples: &[Vec<String>], extra: &[String]) -> Self {
        let mut known = BTreeSet::new();
        let mut owners: BTreeMap<String, BTreeSet<usize>> = BTreeMap::new();
        let mut counts: BTreeMap<(String, usize), usize> = BTreeMap::new();
        for (i, exs) in examples.iter().enumerate() {
            for e in exs {
                for w in words(e) {
                    if w.starts_with('{') {
                        continue;
                    }
                    known.insert(w.clone());
                    if w.len() >= 4
                        && !STOPWORDS.contains(&w.as_str())
                        && w.chars().all(|c| c.is_alphabetic())
                    {
                        owners.entry(w.clone()).or_default().insert(i);
                        *counts.entry((w, i)).or_default() += 1;
                    }
                }
            }
        }
        for x in extra {
            for w in words(x) {
                known.insert(w);
            }
        }
        // a keyword belongs to exactly one intent and appears in at least two of its examples
        let keywords = owners
            .into_iter()
            .filter(|(_, o)| o.len() == 1)
            .filter_map(|(w, o)| {
                let i = *o.iter().next()?;
                (counts[&(w.clone(), i)] >= 2).then_some((w, i))
            })
            .collect();
        let mut by_len: HashMap<usize, Vec<String>> = HashMap::new();
        for w in &known {
            by_len.entry(w.chars().count()).or_default().push(w.clone());
        }
        Vocabulary {
            known,
            by_len,
            keywords,
            ordinary: BTreeSet::new(),
        }
    }

    /// The same vocabulary, leaving `words` alone when it corrects typos. They do not become
    /// known words: "purge" stays a word the catalogue never uses.
    pub fn protecting<'a>(mut self, words: impl IntoIterator<Item = &'a str>) -> Self {
        self.ordinary.extend(words.into_iter().map(str::to_string));
        self
    }

    /// The intent whose command word `w` is, if any.
    pub fn keyword_owner(&self, w: &str) -> Option<usize> {
        self.keywords.get(w).copied()
    }

    pub fn is_known(&self, w: &str) -> bool {
        self.known.contains(w)
    }

    /// Whether `w` is a known word with an inflection ending ("upgraded", "scaling", "pods"):
    /// such a word is not a typo, and "correcting" it would erase its tense or number.
    fn inflects_known(&self, w: &str) -> bool {
        ["ed", "d", "ing", "s", "es"].iter().any(|end| {
            w.strip_suffix(end).is_some_and(|stem| {
                stem.len() >= 3
                    && (self.known.contains(stem)
                        || self.known.contains(&format!("{stem}e"))
                        // doubled final consonant: "stopped" -> "stop"
                        || stem
                            .strip_suffix(|c: char| stem.ends_with(&format!("{c}{c}")))
                            .is_some_and(|single| self.known.contains(single)))
            })
        })
    }

    /// Whether a known word is `w` inflected ("change" when only "changes" is known): `w` is a
    /// word of its own, and "correcting" it would add a tense or a number it does not have.
    fn is_base_of_known(&self, w: &str) -> bool {
        ["s", "es", "ed", "d", "ing"]
            .iter()
            .any(|end| self.known.contains(&format!("{w}{end}")))
            || w.strip_suffix('e')
                .is_some_and(|stem| self.known.contains(&format!("{stem}ing")))
    }

    /// The known word a misspelt word stands for, if exactly one is close enough.
    pub fn correct(&self, w: &str) -> Option<&str> {
        if w.chars().count() < 3
            || self.known.contains(w)
            || !w.chars().all(|c| c.is_alphabetic())
            || self.inflects_known(w)
            || self.is_base_of_known(w)
            || self.ordinary.contains(w)
            || values::number_word(w).is_some()
            || values::duration_unit(w).is_some()
        {
            // a number or a unit of time is never a typo ("three" is not "there")
            return None;
        }
        let n = w.chars().count();
        let mut found: Option<&str> = None;
        for len in n.saturating_sub(1)..=n + 1 {
            for cand in self.by_len.get(&len).into_iter().flatten() {
                if w.as_bytes()[0] != cand.as_bytes()[0] && w.as_bytes()[0] != cand.as_bytes()[1] {
                    continue; // cheap first-letter filter before the edit distance
                }
                if close_enough(w, cand) {
                    match found {
                        Some(f) if f != cand => {
                            // two candidates at the same distance: prefer the nearer one, or give up
                            let (df, dc) =
                                (strsim::osa_distance(w, f), strsim::osa_distance(w, cand));
                            if dc < df {
                                found = Some(cand);
                            } else if dc == df {
                                return None;
                            }
                        }
                        _ => found = Some(cand),
                    }
                }
            }
        }
        found
    }

    /// The text with misspelt words replaced by the known words they stand for, and how many
    /// were replaced.
    pub fn correct_text(&self, text: &str) -> (String, usize) {
        let mut fixed = 0;
        let out: Vec<String> = text
            .split_whitespace()
            .map(|tok| {
                let core: String = tok
                    .trim_matches(|c: char| !c.is_alphanumeric())
                    .to_lowercase();
                match self.correct(&core) {
                    Some(k) => {
                        fixed += 1;
                        tok.to_lowercase().replacen(&core, k, 1)
                    }
                    None => tok.to_string(),
                }
            })
            .collect();
        (out.join(" "), fixed)
    }

    /// Counts of command words per intent in `words` (already corrected).
    pub fn keyword_hits(&self, words: &[String], n_intents: usize) -> Vec<u32> {
        let mut hits = vec![0; n_intents];
        for w in words {
            if let Some(&i) = self.keywords.get(w) {
                hits[i] += 1;
            }
        }
        hits
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typos_match_and_near_words_do_not() {
        for (w, t) in [
            ("restrat", "restart"),
            ("deplyo", "deploy"),
            ("stauts", "status"),
            ("prdo", "prod"),
            ("stgae", "stage"),
            ("wrokers", "workers"),
            ("serach", "search"),
        ] {
            assert!(close_enough(w, t), "{w} ~ {t}");
        }
        for (w, t) in [
            ("like", "live"),
            ("stg", "stage"),
            ("dev", "devs"),
            ("logs", "blogs"),
            ("deploy", "employ"),
            ("saying", "staging"),
        ] {
            assert!(!close_enough(w, t), "{w} !~ {t}");
        }
    }

    #[test]
    fn correction_uses_the_vocabulary() {
        let v = Vocabulary::build(
            &[
                vec![
                    "restart {service} in {env}".into(),
                    "bounce the {service}".into(),
                ],
                vec!["deploy {service} to {env}".into()],
            ],
            &[
                "prod".into(),
                "workers".into(),
                "changes".into(),
                "there".into(),
            ],
        );
        assert_eq!(
            v.correct_text("restrat the wrokers in prdo"),
            ("restart the workers in prod".to_string(), 3)
        );
        assert_eq!(v.correct("hello"), None);
        // an inflected known word keeps its ending: the tense is what tells a report from a request
        for w in ["restarted", "deployed", "deploying", "bounced", "bounces"] {
            assert_eq!(v.correct(w), None, "{w}");
        }
        assert_eq!(v.correct("deplyo"), Some("deploy"));
        // nor does a word whose inflection is known ("change" is not "changes"), a number word
        // ("three" is not "there") or a unit of time
        for w in ["change", "three", "hours"] {
            assert_eq!(v.correct(w), None, "{w}");
        }
        // an ordinary word it is told to protect is left alone, and does not become known
        assert_eq!(v.correct("restat"), Some("restart"));
        let v = v.protecting(["restat"]);
        assert_eq!(v.correct("restat"), None);
        assert!(!v.is_known("restat"));
        // regression: punctuation-only tokens became empty words and panicked the corrector
        assert_eq!(v.correct_text("-- ?? !"), ("-- ?? !".to_string(), 0));
        assert_eq!(v.correct(""), None);
    }

    #[test]
    fn splitting_words() {
        assert_eq!(
            words("Ship web v2.4.1 to live, now!"),
            ["ship", "web", "v2.4.1", "to", "live", "now"]
        );
        assert_eq!(words("ack #4821."), ["ack", "#4821"]);
    }
}
