//! Slot extraction from plain language: given the intent, find its parameters in the text and
//! normalise them as the catalogue does. Each word is claimed by at most one parameter, in a fixed
//! order (alert ids, versions, durations, numbers, entities, then free text), so a word that names
//! one parameter's value is never taken for another's.

use super::fuzzy::{close_enough, STOPWORDS};
use crate::catalog::{values, Catalog, Intent, ParamKind, Params, Value, ValueError};

/// What was found for one intent.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Extraction {
    pub params: Params,
    /// Values that were recognisably meant for a parameter but are not valid (e.g. 500 replicas).
    pub invalid: Vec<ValueError>,
}

#[derive(Debug, Clone)]
struct Tok {
    /// Lower-case word with surrounding punctuation removed.
    norm: String,
    /// As written.
    raw: String,
}

fn tokenize(text: &str) -> Vec<Tok> {
    text.split_whitespace()
        .flat_map(|w| {
            // "api," -> "api"; "prod." -> "prod"; keep '#', inner dots and dashes
            let raw = w.trim_matches(|c: char| !(c.is_alphanumeric() || c == '#'));
            // "staging/prod" or "api:" -> separate words
            raw.split(['/', ',', ';', ':', '(', ')', '"', '!', '?'])
                .filter(|s| !s.is_empty())
                .map(|s| s.to_string())
                .collect::<Vec<_>>()
        })
        .map(|raw| {
            let raw = raw.trim_end_matches(['.', '-']).to_string();
            Tok {
                norm: raw.to_lowercase(),
                raw,
            }
        })
        .filter(|t| !t.norm.is_empty())
        .collect()
}

/// Words before a number that make it a count ("to 5", "at 3").
const COUNT_BEFORE: &[&str] = &["to", "x", "=", "at"];
/// Words after a number that make it a count ("5 replicas").
const COUNT_AFTER: &[&str] = &[
    "replicas",
    "replica",
    "instances",
    "instance",
    "pods",
    "pod",
    "nodes",
    "copies",
    "x",
];

/// "502s", "404s": an HTTP status in the plural, not a duration of seconds.
fn http_statuses(t: &str) -> bool {
    t.strip_suffix('s')
        .and_then(|n| n.parse::<u16>().ok())
        .is_some_and(|n| (100..=599).contains(&n) && t.len() == 4)
}

/// Words before a duration that make a bare "300s" one ("last 300s", "for 300s").
const DURATION_CUES: &[&str] = &["last", "past", "since", "for", "over", "in", "within"];

/// Extracts `intent`'s parameters from `text`. Defaults are not filled here.
pub fn extract(catalog: &Catalog, intent: &Intent, text: &str) -> Extraction {
    let toks = tokenize(text);
    let mut claimed = vec![false; toks.len()];
    let mut out = Extraction::default();
    let has = |pred: fn(&ParamKind) -> bool| intent.params.iter().find(|p| pred(&p.kind));

    // alert ids: "#4821", "alert 4821"; a bare number only when the intent takes nothing else
    if let Some(p) = has(|k| matches!(k, ParamKind::Alert)) {
        let is_id = |i: usize| values::parse_alert(&toks[i].norm).is_some();
        let after_alert = |i: usize| {
            i >= 1
                && (toks[i - 1].norm.starts_with("alert")
                    || (toks[i - 1].norm == "id"
                        && i >= 2
                        && toks[i - 2].norm.starts_with("alert")))
        };
        // "3 alerts firing, ack 4410": a number before a plural noun counts things
        let counts_things = |i: usize| {
            toks.get(i + 1).is_some_and(|t| {
                t.norm.len() > 3
                    && t.norm.ends_with('s')
                    && t.norm.chars().all(|c| c.is_ascii_alphabetic())
                    && !matches!(t.norm.as_str(), "thanks" | "thx" | "pls" | "plus" | "yes")
            })
        };
        let idx = (0..toks.len())
            .find(|&i| toks[i].norm.starts_with('#') && is_id(i))
            .or_else(|| (0..toks.len()).find(|&i| after_alert(i) && is_id(i)))
            .or_else(|| (0..toks.len()).find(|&i| is_id(i) && !counts_things(i)))
            .or_else(|| (0..toks.len()).find(|&i| is_id(i)));
        if let Some(i) = idx {
            claimed[i] = true;
            push(catalog, &mut out, p, &toks[i].norm);
        }
    }
    // versions: "v2.4.1", "2.4.1", "3.0.0-rc.1", a git sha
    if let Some(p) = has(|k| matches!(k, ParamKind::Version)) {
        let is_version = |t: &Tok| {
            let looks = t.norm.contains('.')
                || t.norm.starts_with('v')
                || t.norm.chars().any(|c| c.is_ascii_digit());
            looks && values::parse_version(&t.norm).is_some() && !t.norm.starts_with('#')
        };
        if let Some(i) = (0..toks.len()).find(|&i| !claimed[i] && is_version(&toks[i])) {
            claimed[i] = true;
            push(catalog, &mut out, p, &toks[i].norm);
        }
    }
    // durations: the longest run of up to five words that reads as one
    if let Some(p) = has(|k| matches!(k, ParamKind::Duration { .. })) {
        // "the last day", "past hour": one of the unit
        let read = |s: &str| {
            values::parse_duration(s).or_else(|| {
                s.strip_prefix("last ")
                    .or_else(|| s.strip_prefix("past "))
                    .and_then(|u| values::parse_duration(&format!("a {u}")))
            })
        };
        // "seeing 502s" is a status code, unless a duration cue comes before it
        let mut skip = claimed.clone();
        for i in 0..toks.len() {
            let cued = i > 0 && DURATION_CUES.contains(&toks[i - 1].norm.as_str());
            if http_statuses(&toks[i].norm) && !cued {
                skip[i] = true;
            }
        }
        // "every 5 minutes" is how often, not how long: left out unless nothing else reads
        let mut how_often = skip.clone();
        for i in 1..toks.len() {
            if matches!(toks[i - 1].norm.as_str(), "every" | "each") {
                how_often[i..(i + 3).min(toks.len())]
                    .iter_mut()
                    .for_each(|c| *c = true);
            }
        }
        let run = find_run(&toks, &how_often, 5, |s| read(s).is_some())
            .or_else(|| find_run(&toks, &skip, 5, |s| read(s).is_some()));
        if let Some((i, n)) = run {
            let s = read(&join(&toks[i..i + n]))
                .map(|secs| format!("{secs}s"))
                .unwrap_or_default();
            claimed[i..i + n].iter_mut().for_each(|c| *c = true);
            push(catalog, &mut out, p, &s);
        }
    }
    // whole numbers: prefer one after a cue ("to 5", "5 replicas"), else the last one
    if let Some(p) = has(|k| matches!(k, ParamKind::Integer { .. })) {
        let numbers: Vec<(usize, usize)> = (0..toks.len())
            .filter_map(|i| {
                [2, 1].into_iter().find_map(|n| {
                    let ok = i + n <= toks.len() && !claimed[i..i + n].iter().any(|c| *c);
                    let s = if ok {
                        join(&toks[i..i + n])
                    } else {
                        return None;
                    };
                    let is_word_a = n == 1 && matches!(s.as_str(), "a" | "an");
                    (!is_word_a && values::parse_integer(&s).is_some() && !s.contains('.'))
                        .then_some((i, n))
                })
            })
            .collect();
        // a range ("from 2 to 6") names its target last, so the last cued number wins; a number
        // after "from" is where it starts; "to 20" names a target more surely than "5 pods" or
        // "at 5" ("scale api to 20, it's at 5 now"; "scale auth to 3, it runs on 2 nodes")
        let cue = |&(i, n): &(usize, usize)| {
            let before = i.checked_sub(1).map(|j| toks[j].norm.as_str());
            let after = toks.get(i + n).map(|t| t.norm.as_str());
            if before == Some("from") {
                0
            } else if before.is_some_and(|b| COUNT_BEFORE.contains(&b) && b != "at") {
                3
            } else if after.is_some_and(|a| COUNT_AFTER.contains(&a)) {
                2
            } else {
                u8::from(before == Some("at"))
            }
        };
        let cued = (1..=3)
            .rev()
            .find_map(|level| numbers.iter().rev().find(|x| cue(x) == level));
        if let Some(&(i, n)) = cued.or(numbers.last()) {
            let s = join(&toks[i..i + n]);
            claimed[i..i + n].iter_mut().for_each(|c| *c = true);
            push(catalog, &mut out, p, &s);
        }
    }
    // entities: exact surface forms (longest first), then single words with a small typo
    for p in &intent.params {
        let ParamKind::Entity(ent) = &p.kind else {
            continue;
        };
        let Some(entity) = catalog.entity(ent) else {
            continue;
        };
        let mut best: Option<(usize, usize, String)> = None;
        'search: for n in [3, 2, 1] {
            for i in 0..toks.len().saturating_sub(n - 1) {
                if claimed[i..i + n].iter().any(|c| *c) {
                    continue;
                }
                let s = join(&toks[i..i + n]);
                if let Some(v) = entity.lookup(&s).or_else(|| entity.lookup(&compact(&s))) {
                    best = Some((i, n, v.to_string()));
                    break 'search;
                }
            }
        }
        if best.is_none() {
            best = (0..toks.len())
                .filter(|&i| !claimed[i] && !STOPWORDS.contains(&toks[i].norm.as_str()))
                .find_map(|i| {
                    entity
                        .surface_forms()
                        .find(|(form, _)| {
                            !form.contains(' ') && close_enough(&toks[i].norm, &form.to_lowercase())
                        })
                        .map(|(_, v)| (i, 1, v.to_string()))
                });
        }
        if let Some((i, n, v)) = best {
            claimed[i..i + n].iter_mut().for_each(|c| *c = true);
            out.params.insert(p.name.clone(), Value::Entity(v));
        }
    }
    // free text: after a colon if there is one, else the words no other parameter or the
    // intent's own phrasing claimed
    for p in &intent.params {
        let ParamKind::Text { max_len } = p.kind else {
            continue;
        };
        let phrasing = intent_words(intent);
        let after_colon = text
            .split_once(':')
            .map(|(_, rest)| rest.trim())
            .filter(|r| !r.is_empty());
        let candidate = match after_colon {
            Some(rest) => rest.to_string(),
            None => {
                let kept: Vec<&str> = toks
                    .iter()
                    .enumerate()
                    .filter(|(i, t)| {
                        !claimed[*i]
                            && !phrasing.contains(&t.norm)
                            && !STOPWORDS.contains(&t.norm.as_str())
                    })
                    .map(|(_, t)| t.raw.as_str())
                    .collect();
                kept.join(" ")
            }
        };
        if !candidate.is_empty() {
            let mut c = candidate;
            if c.chars().count() > max_len {
                c = c.chars().take(max_len).collect();
            }
            push(catalog, &mut out, p, &c);
        }
    }
    out
}

/// Words of the intent's own examples (outside placeholders), used to tell its phrasing from the
/// free-text content of a message.
pub(crate) fn intent_words(intent: &Intent) -> Vec<String> {
    let mut w = example_words(intent);
    w.extend(
        [
            "runbook",
            "runbooks",
            "playbook",
            "incident",
            "procedure",
            "docs",
            "doc",
            "guide",
            "open",
            "declare",
            "raise",
            "start",
            "new",
        ]
        .map(String::from),
    );
    w.sort();
    w.dedup();
    w
}

/// The words of an intent's own examples and of its name: the operations it is asked for with.
pub(crate) fn example_words(intent: &Intent) -> Vec<String> {
    let mut w: Vec<String> = intent
        .examples
        .iter()
        .flat_map(|e| super::fuzzy::words(&strip_placeholders(e)))
        .chain(intent.id.0.split('.').map(str::to_string))
        .collect();
    w.sort();
    w.dedup();
    w
}

pub(crate) fn strip_placeholders(s: &str) -> String {
    let mut out = String::new();
    let mut depth = 0;
    for c in s.chars() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            _ if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out
}

fn push(catalog: &Catalog, out: &mut Extraction, p: &crate::catalog::Param, raw: &str) {
    match catalog.parse_value(p, raw) {
        Ok(v) => {
            out.params.insert(p.name.clone(), v);
        }
        Err(e) => out.invalid.push(e),
    }
}

/// "sev-2", "sev 2" -> "sev2": a letter part and a number part written apart.
fn compact(s: &str) -> String {
    let parts: Vec<&str> = s.split([' ', '-']).filter(|p| !p.is_empty()).collect();
    match parts.as_slice() {
        [a, n]
            if a.chars().all(|c| c.is_ascii_alphabetic())
                && n.chars().all(|c| c.is_ascii_digit()) =>
        {
            format!("{a}{n}")
        }
        _ => s.to_string(),
    }
}

fn join(toks: &[Tok]) -> String {
    toks.iter()
        .map(|t| t.norm.as_str())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The longest run (at most `max` words, none claimed) whose text satisfies `ok`; leftmost first.
fn find_run(
    toks: &[Tok],
    claimed: &[bool],
    max: usize,
    ok: impl Fn(&str) -> bool,
) -> Option<(usize, usize)> {
    for n in (1..=max).rev() {
        for i in 0..toks.len().saturating_sub(n - 1) {
            if !claimed[i..i + n].iter().any(|c| *c) && ok(&join(&toks[i..i + n])) {
                return Some((i, n));
            }
        }
    }
    None
}
