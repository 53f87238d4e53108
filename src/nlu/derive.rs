//! Training rows derived from any catalogue, so that the protection against near misses is not
//! hand-made for the default pack only. From each intent's imperative examples (placeholders
//! filled) it derives off-topic rows that use the same words without asking the bot to act:
//! negated ("don't restart api in prod"), reported in the past ("we restarted api in prod last
//! night"), hypothetical ("what happens if we restart api in prod?"), addressed to a person
//! ("@sam could you restart api in prod when you get a sec"), and the same target with an
//! operation the catalogue does not have ("purge api in prod"). It also derives help rows that
//! name a command ("help restart", "how does restart work"): help with a topic is help.
//! Pure text generation, deterministic for a given catalogue; nothing here trains or embeds.

use super::fuzzy::{words, Vocabulary};
use crate::catalog::{Catalog, Intent, ParamKind};
use rand::seq::SliceRandom;
use rand::Rng;

/// Why a derived row is off-topic (also the categories `eval` reports).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Twist {
    Negated,
    Past,
    Hypothetical,
    Addressed,
    Unsupported,
}

/// Polite or filler lead-ins stripped before looking for the command verb.
const LEAD_INS: &[&str] = &[
    "please",
    "pls",
    "plz",
    "can you",
    "could you",
    "would you",
    "can u",
    "kindly",
    "ok",
    "okay",
    "go ahead and",
    "i need you to",
    "i want you to",
    "let's",
    "lets",
    "quickly",
    "now",
];

/// First words that make an example a question or a statement rather than an imperative.
const NOT_VERBS: &[&str] = &[
    "what",
    "what's",
    "whats",
    "how",
    "how's",
    "hows",
    "is",
    "are",
    "was",
    "were",
    "which",
    "who",
    "who's",
    "whos",
    "where",
    "where's",
    "when",
    "why",
    "any",
    "the",
    "a",
    "an",
    "my",
    "our",
    "its",
    "it's",
    "i",
    "i'm",
    "i've",
    "we",
    "we've",
    "there",
    "has",
    "have",
    "did",
    "does",
    "do",
    "no",
    "sup",
    "current",
    "recent",
    "previous",
    "new",
    "back",
    "rolling",
    "acking",
    "status",
    "alerts",
    "logs",
    "metrics",
    "incident",
    "fleet",
    "overview",
    "docs",
    "steps",
    "oncall",
    "on-call",
    "deploys",
    "runbook",
    "playbook",
    "dashboard",
    "log",
    "release",
];

/// Colleagues' names for rows addressed to a person.
const PEOPLE: &[&str] = &[
    "sam", "priya", "alex", "jo", "maria", "chen", "tom", "fatima", "lee", "noor",
];

/// Ops operations that a catalogue may not have, most with a target after them.
const OPERATIONS: &[&str] = &[
    "drop",
    "purge",
    "flush",
    "truncate",
    "vacuum",
    "reindex",
    "fail over",
    "resize the disk of",
    "delete",
    "rename",
    "migrate",
    "patch",
    "upgrade the kernel on",
    "bump the log level on",
    "rotate the credentials of",
    "change the dns for",
    "open a firewall port for",
    "raise the memory limit of",
    "archive",
    "snapshot",
    "back up",
    "encrypt",
    "wipe",
    "shard",
    "throttle",
    "block traffic to",
    "enable debug mode on",
    "turn on the feature flag for",
    "renew the certificate of",
    "add an index to",
    "grant sam access to",
    "revoke access to",
    "compact",
    "rebalance",
    "evict the keys of",
    "clone",
    "provision a new node for",
    "decommission",
    "tune the connection pool of",
    "clear the queue of",
    "resolve",
    "close",
    "escalate",
    "unmute",
    "unsilence",
    "remove",
    "add me to",
    "take me off",
    "create a copy of",
    "run the migrations on",
    "enable autoscaling for",
    "change the config of",
    "set up alerting for",
    "write a postmortem for",
    "reassign",
    "export",
    "rename the channel for",
];

/// Past tense of the verbs that start commands; others follow the spelling rules.
const IRREGULAR: &[(&str, &str)] = &[
    ("give", "gave"),
    ("take", "took"),
    ("run", "ran"),
    ("get", "got"),
    ("put", "put"),
    ("set", "set"),
    ("shut", "shut"),
    ("bring", "brought"),
    ("tell", "told"),
    ("find", "found"),
    ("make", "made"),
    ("send", "sent"),
    ("spin", "spun"),
    ("do", "did"),
    ("go", "went"),
    ("begin", "began"),
    ("see", "saw"),
    ("show", "showed"),
    ("stop", "stopped"),
    ("ship", "shipped"),
    ("drop", "dropped"),
    ("grab", "grabbed"),
    ("plot", "plotted"),
    ("quiet", "quieted"),
    ("mute", "muted"),
    ("file", "filed"),
];

fn past(verb: &str) -> String {
    if let Some((_, p)) = IRREGULAR.iter().find(|(v, _)| *v == verb) {
        return p.to_string();
    }
    let b = verb.as_bytes();
    if verb.ends_with('e') {
        format!("{verb}d")
    } else if verb.ends_with('y') && b.len() > 1 && !b"aeiou".contains(&b[b.len() - 2]) {
        format!("{}ied", &verb[..verb.len() - 1])
    } else {
        format!("{verb}ed")
    }
}

/// The command phrase of an example: lead-ins and a trailing "please" removed, `None` unless it
/// starts with a verb.
pub fn command_phrase(text: &str) -> Option<String> {
    let mut t = text.trim().trim_end_matches(['?', '!', '.']).to_lowercase();
    loop {
        let before = t.len();
        for l in LEAD_INS {
            if let Some(rest) = t.strip_prefix(l) {
                if rest.starts_with([' ', ',']) {
                    t = rest.trim_start_matches([' ', ',']).to_string();
                }
            }
        }
        if t.len() == before {
            break;
        }
    }
    for tail in [" please", " pls", ", please", " for me"] {
        if let Some(rest) = t.strip_suffix(tail) {
            t = rest.to_string();
        }
    }
    let first = t.split_whitespace().next()?;
    let verb_like = first.chars().all(|c| c.is_ascii_alphabetic());
    (verb_like && !NOT_VERBS.contains(&first) && t.split_whitespace().count() >= 2).then_some(t)
}

/// The phrase with its verb in the past tense ("restart api" -> "restarted api").
fn in_past(phrase: &str) -> String {
    match phrase.split_once(' ') {
        Some((v, rest)) => format!("{} {rest}", past(v)),
        None => past(phrase),
    }
}

/// One off-topic row of kind `twist` for a command phrase.
pub fn twist(phrase: &str, twist: Twist, rng: &mut impl Rng) -> String {
    let who = PEOPLE.choose(rng).unwrap();
    let pick = |rng: &mut dyn rand::RngCore, forms: &[&str]| -> String {
        forms[rng.gen_range(0..forms.len())].to_string()
    };
    match twist {
        Twist::Negated => pick(
            rng,
            &[
                "don't {p}",
                "please don't {p}",
                "do not {p}",
                "no need to {p}",
                "let's not {p} yet",
                "we shouldn't {p}",
                "hold off, don't {p} today",
                "never {p} without asking the team",
                "nobody {p} until the freeze is over",
                "no, don't {p}, it's fine",
                "I said don't {p}",
                "stop asking me to {p}",
            ],
        )
        .replace("{p}", phrase),
        Twist::Past => pick(
            rng,
            &[
                "we {p} yesterday",
                "I already {p} an hour ago",
                "someone {p} last night",
                "{w} {p} this morning",
                "fyi I {p} before lunch",
                "we {p} twice last week",
                "the on-call {p} on sunday",
                "just so you know, {w} {p} earlier",
            ],
        )
        .replace("{p}", &in_past(phrase))
        .replace("{w}", who),
        Twist::Hypothetical => pick(
            rng,
            &[
                "what happens if we {p}?",
                "would it break anything if we {p}?",
                "should we {p}?",
                "is it safe to {p}?",
                "if I {p} would checkout still work?",
                "what if we {p} during peak?",
                "do you think we should {p}",
                "is it a good idea to {p} on a friday?",
            ],
        )
        .replace("{p}", phrase),
        Twist::Addressed => pick(
            rng,
            &[
                "@{w} could you {p} when you get a sec",
                "{w}, can you {p} after lunch?",
                "@{w} pls {p}",
                "hey {w} would you mind if you {p} later",
                "{w} can you {p} once the meeting is over",
                "@{w} when you're back, {p}",
            ],
        )
        .replace("{p}", phrase)
        .replace("{w}", who),
        Twist::Unsupported => phrase.to_string(),
    }
}

/// A filled copy of an example: every placeholder replaced by a sampled value of its parameter.
pub type Fill<'a> = dyn FnMut(&Intent, &str) -> String + 'a;

/// Off-topic rows derived from the catalogue's examples; `fill` fills one example.
pub fn negatives(
    catalog: &Catalog,
    vocab: &Vocabulary,
    fill: &mut Fill,
    rng: &mut impl Rng,
) -> Vec<(String, Twist)> {
    let mut out = Vec::new();
    let kinds = [
        Twist::Negated,
        Twist::Past,
        Twist::Hypothetical,
        Twist::Addressed,
    ];
    // "api in prod is stuck, restart it" starts with a value, not a verb
    let values: std::collections::BTreeSet<String> = catalog
        .entities
        .values()
        .flat_map(|e| e.surface_forms().map(|(f, _)| f.to_lowercase()))
        .collect();
    for intent in &catalog.intents {
        for ex in &intent.examples {
            let Some(phrase) = command_phrase(&fill(intent, ex)) else {
                continue;
            };
            if values.iter().any(|v| phrase.starts_with(&format!("{v} "))) {
                continue;
            }
            for k in kinds {
                out.push((twist(&phrase, k, rng), k));
            }
        }
        // the same targets with operations the catalogue does not have: only operations whose
        // verb no example uses and none of whose words is a command word of any intent (so
        // "restore" stays a rollback's word and "raise" an incident's)
        let mut targets = targets(catalog, intent, rng);
        // and what the intent's name calls a thing: "the payments incident", "the api logs"
        if let Some(noun) = thing_named(intent) {
            let service = targets.first().cloned().unwrap_or_default();
            let service = service
                .trim_start_matches("the ")
                .split(' ')
                .next()
                .unwrap_or("");
            targets.push(format!("the {service} {noun}").replace("  ", " "));
            targets.push(format!("the current {noun}"));
        }
        let ops: Vec<&&str> = OPERATIONS
            .iter()
            .filter(|op| {
                let ws = words(op);
                !vocab.is_known(&ws[0]) && ws.iter().all(|w| vocab.keyword_owner(w).is_none())
            })
            .collect();
        for t in targets {
            if let Some(op) = ops.choose(rng) {
                out.push((format!("{op} {t}"), Twist::Unsupported));
            }
        }
    }
    out
}

/// The thing an intent's name calls by a noun: the first part of a dotted name ("incident" of
/// "incident.open"), or the whole name of a read intent ("logs").
fn thing_named(intent: &Intent) -> Option<String> {
    match intent.id.0.split_once('.') {
        Some((noun, _)) => Some(noun.to_string()),
        None if intent.risk == crate::catalog::Risk::Read => Some(intent.id.0.clone()),
        None => None,
    }
}

/// A few target phrases of an intent's entity parameters ("api in prod", "the staging payments").
fn targets(catalog: &Catalog, intent: &Intent, rng: &mut impl Rng) -> Vec<String> {
    let forms = |p: &crate::catalog::Param| -> Vec<String> {
        match &p.kind {
            ParamKind::Entity(e) => catalog
                .entity(e)
                .map(|e| e.surface_forms().map(|(f, _)| f.to_string()).collect())
                .unwrap_or_default(),
            _ => vec![],
        }
    };
    let entity_params: Vec<Vec<String>> = intent
        .params
        .iter()
        .map(forms)
        .filter(|f| !f.is_empty())
        .collect();
    let Some(first) = entity_params.first() else {
        return vec![];
    };
    (0..10)
        .map(|i| {
            let a = first.choose(rng).unwrap().clone();
            match entity_params.get(1) {
                Some(second) if i % 2 == 0 => {
                    format!("the {a} in {}", second.choose(rng).unwrap())
                }
                Some(second) => format!("{} {a}", second.choose(rng).unwrap()),
                None => format!("the {a}"),
            }
        })
        .collect()
}

/// Help rows that name a command: "help restart", "how does deploying work here".
pub fn help_rows(catalog: &Catalog, rng: &mut impl Rng) -> Vec<String> {
    const FORMS: &[&str] = &[
        "help {t}",
        "{t} help",
        "how does {t} work",
        "what does the {t} command do",
        "explain {t} to me",
        "how do I use {t}",
        "usage of {t}",
        "what are the options for {t}",
        "how does the {t} command work here",
        "docs for {t}?",
        "what parameters does {t} take",
    ];
    let mut out = Vec::new();
    for intent in &catalog.intents {
        let topic = intent.id.0.replace('.', " ");
        for _ in 0..3 {
            out.push(FORMS.choose(rng).unwrap().replace("{t}", &topic));
        }
    }
    out
}

/// The intent a help message asks about: an intent's name ("alerts.silence" matches "silence"
/// and "silencing"), or `None`.
pub fn help_topic(catalog: &Catalog, text: &str) -> Option<String> {
    let ws = words(text);
    let stem = |w: &str| -> String {
        let w = w.trim_end_matches('s');
        for suf in ["ing", "ed", "e"] {
            if let Some(s) = w.strip_suffix(suf) {
                if s.len() >= 3 {
                    return s.to_string();
                }
            }
        }
        w.to_string()
    };
    let stems: Vec<String> = ws.iter().map(|w| stem(w)).collect();
    let parts_of = |intent: &Intent| -> Vec<String> { intent.id.0.split('.').map(stem).collect() };
    // how many intents' names have each part ("alerts" three, "incident" one)
    let mut owners: std::collections::HashMap<String, usize> = Default::default();
    for intent in &catalog.intents {
        for p in parts_of(intent) {
            *owners.entry(p).or_default() += 1;
        }
    }
    let mut best: Option<(usize, &Intent)> = None;
    for intent in &catalog.intents {
        let parts = parts_of(intent);
        let hits = parts.iter().filter(|p| stems.contains(p)).count();
        // a dotted name matches by all its parts, by a distinctive last part ("silence", not
        // "list" or "open"), or by a part no other intent's name has ("the incident command")
        let generic = |p: &str| matches!(p, "list" | "open" | "show" | "history" | "get");
        let last = parts
            .last()
            .is_some_and(|p| stems.contains(p) && !generic(p));
        let own = parts
            .iter()
            .any(|p| stems.contains(p) && owners.get(p) == Some(&1) && !generic(p));
        if (last || own || hits == parts.len()) && best.is_none_or(|(h, _)| hits > h) {
            best = Some((hits, intent));
        }
    }
    best.map(|(_, i)| i.id.0.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn command_phrases_start_with_a_verb() {
        assert_eq!(
            command_phrase("can you restart api in prod please").as_deref(),
            Some("restart api in prod")
        );
        assert_eq!(
            command_phrase("Please, bounce the workers!").as_deref(),
            Some("bounce the workers")
        );
        assert_eq!(command_phrase("what's up with api"), None);
        assert_eq!(command_phrase("restart"), None);
    }

    #[test]
    fn past_tense() {
        for (v, p) in [
            ("restart", "restarted"),
            ("scale", "scaled"),
            ("deploy", "deployed"),
            ("roll", "rolled"),
            ("give", "gave"),
            ("ship", "shipped"),
            ("copy", "copied"),
        ] {
            assert_eq!(past(v), p);
        }
    }

    #[test]
    fn twists_keep_the_target() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        for k in [
            Twist::Negated,
            Twist::Past,
            Twist::Hypothetical,
            Twist::Addressed,
        ] {
            let t = twist("restart api in prod", k, &mut rng);
            assert!(t.contains("api in prod"), "{t}");
            assert_ne!(t, "restart api in prod");
        }
    }
}
