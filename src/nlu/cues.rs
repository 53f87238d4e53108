//! Speech-act cues: a few features of the wording that a mean-pooled sentence embedding hardly
//! sees, and that decide whether ops words ask the bot for anything. "don't restart api" and
//! "restart api" embed almost alike; a negation word, a command word in the past tense, a
//! what-if, or a colleague's name in front tell them apart. The classifier's head takes these
//! next to the embedding and learns their weights from the training rows (the catalogue's
//! examples and the near misses [`super::derive`] makes from them), so no rule here decides
//! alone. Catalogue-independent except for the command words, which come from the vocabulary.

use super::fuzzy::{words, Vocabulary};

/// Names the cues and their scale: part of the trained head's cache key, so a change here
/// trains the head again.
pub const VERSION: &str = "cues-v3 negation past_command past_time hypothetical addressed question other_operation report scales=1,1,1,1,1,1,2,2 last-window interjections show-verbs statements hedges polite-if done-nouns cue-lexicon plans parts-of-state progressive";

/// Every word the cues look for: ordinary words that the typo corrector must leave alone, or it
/// would "correct" them into the catalogue's words ("were" into "we're").
pub fn cue_words() -> impl Iterator<Item = &'static str> {
    [
        NEGATIONS,
        PAST_MARKERS,
        HYPOTHETICAL,
        OPENERS,
        OTHER_OPERATIONS,
        BEFORE_VERB,
        CHANGING,
        DECLINING,
        STATES,
        DONE,
        CLAUSE_STARTS,
        COMMON_COMMANDS,
        ASKING_VERBS,
    ]
    .into_iter()
    .flatten()
    .copied()
}

/// How many cue features [`features`] returns.
pub const COUNT: usize = 8;

/// The index of the addressed-to-someone-else cue.
pub const ADDRESSED: usize = 4;

/// How strongly a cue speaks next to the unit-length embedding.
const SCALES: [f32; COUNT] = [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 2.0, 2.0];

const NEGATIONS: &[&str] = &[
    "don't",
    "dont",
    "not",
    "never",
    "no",
    "nope",
    "skip",
    "shouldn't",
    "won't",
    "nobody",
    "without",
    "didn't",
    "isn't",
    "wasn't",
    "aren't",
    "doesn't",
    "cannot",
    "can't",
    "nah",
];

const PAST_MARKERS: &[&str] = &[
    "yesterday",
    "ago",
    "earlier",
    "already",
    "overnight",
    "was",
    "were",
    "had",
    "did",
    "happened",
    "went",
    "last",
    "previously",
    "before",
];

const HYPOTHETICAL: &[&str] = &[
    "would",
    "should",
    "if",
    "might",
    "whether",
    "theory",
    "hypothetically",
    "safe",
    "think",
    "worth",
    "wise",
    "risky",
];

/// Words that may open a message before a comma without being anyone's name.
const OPENERS: &[&str] = &[
    "ok",
    "okay",
    "so",
    "hey",
    "hi",
    "hello",
    "yo",
    "nope",
    "no",
    "yes",
    "yeah",
    "yep",
    "well",
    "please",
    "pls",
    "also",
    "btw",
    "fyi",
    "morning",
    "evening",
    "afternoon",
    "team",
    "all",
    "folks",
    "everyone",
    "um",
    "hmm",
    "right",
    "alright",
    "great",
    "thanks",
    "cool",
    "sorry",
    "quick",
    "urgent",
    "heads",
    "anyway",
    "actually",
    "ugh",
    "oh",
    "ah",
    "wait",
    "now",
    "today",
    "tonight",
    "guys",
    "people",
    "friends",
    "sure",
    "done",
    "fine",
    "again",
    "lol",
    "heya",
    "hiya",
    "howdy",
    "hallo",
    "heyo",
    "sup",
    "gm",
    "oi",
    "ahoy",
    "greetings",
    "thx",
    "ty",
    "cheers",
    "oops",
    "whoops",
    "argh",
    "welp",
    "meh",
    "wow",
    "whoa",
    "phew",
    "omg",
    "lmao",
    "erm",
    "nice",
    "bot",
];

/// An interjection made of one or two of the letters of "ahem", "oh", "umm", "err" ("ahh",
/// "hmmm", "ooh", "uhh"): a sound, not a name.
fn is_interjection(w: &str) -> bool {
    let mut letters: Vec<char> = w.chars().collect();
    letters.sort_unstable();
    letters.dedup();
    !w.is_empty() && letters.len() <= 2 && letters.iter().all(|c| "aehmoru".contains(*c))
}

/// The cue features of `text` (already typo-corrected): negation, a command word in the past
/// tense, a past time marker, a what-if, addressed to a person, a question mark, an operation
/// the catalogue does not name, a report (the first command word in the past tense).
pub fn features(text: &str, vocab: &Vocabulary, bot_name: &str) -> [f32; COUNT] {
    let ws = words(text);
    let negation = ws
        .iter()
        .enumerate()
        .any(|(i, w)| NEGATIONS.contains(&w.as_str()) && !hedge(&ws, i))
        || text.to_lowercase().contains("no need");
    let past_command = ws.iter().any(|w| is_past_of_command(w, vocab));
    // "last night" reports; "the last 45 minutes" is a window a request asks about
    let past_time = ws.iter().enumerate().any(|(i, w)| {
        PAST_MARKERS.contains(&w.as_str()) && !(w == "last" && i > 0 && ws[i - 1] == "the")
    });
    // "would you" and "could you" ask; "would it", "should we" wonder
    let hypothetical = wonders(text, &ws);
    let addressed = addressed_to_someone(text, vocab, bot_name);
    let question = text.trim_end().ends_with('?');
    let other = other_operation(&ws, vocab);
    let report = reports_a_command(&ws, vocab);
    [
        negation,
        past_command,
        past_time,
        hypothetical,
        addressed,
        question,
        other,
        report,
    ]
    .into_iter()
    .zip(SCALES)
    .map(|(b, scale)| if b { scale } else { 0.0 })
    .collect::<Vec<f32>>()
    .try_into()
    .unwrap_or([0.0; COUNT])
}

/// "restarted", "silenced", "rolled": a command word of some intent in the past tense.
fn is_past_of_command(w: &str, vocab: &Vocabulary) -> bool {
    let Some(stem) = w.strip_suffix("ed") else {
        return false;
    };
    // "stopped" -> "stop": a doubled last letter (compared as characters, never cut inside one)
    let mut last = stem.char_indices().rev();
    let undoubled = match (last.next(), last.next()) {
        (Some((i, a)), Some((_, b))) if a == b => &stem[..i],
        _ => stem,
    };
    [
        stem.to_string(),
        format!("{stem}e"),
        undoubled.to_string(),
        stem.strip_suffix('i')
            .map(|s| format!("{s}y"))
            .unwrap_or_default(),
    ]
    .iter()
    .any(|c| {
        !c.is_empty() && (vocab.keyword_owner(c).is_some() || COMMON_COMMANDS.contains(&c.as_str()))
    })
}

/// Operations teams ask for that a catalogue may well not have. A message whose request starts
/// with one of these, when the catalogue's own examples never use the word, asks for something
/// the bot cannot do ("resolve the payments incident", "purge the cdn cache"). Verbs that often
/// stand for a common intent in other words (promote, bump, update, reset, pause) are left out.
const OTHER_OPERATIONS: &[&str] = &[
    "drop",
    "purge",
    "flush",
    "truncate",
    "vacuum",
    "reindex",
    "fail",
    "failover",
    "resize",
    "delete",
    "rename",
    "migrate",
    "patch",
    "rotate",
    "archive",
    "snapshot",
    "encrypt",
    "wipe",
    "shard",
    "throttle",
    "block",
    "unblock",
    "enable",
    "disable",
    "renew",
    "add",
    "grant",
    "revoke",
    "compact",
    "rebalance",
    "evict",
    "clone",
    "provision",
    "decommission",
    "tune",
    "clear",
    "resolve",
    "close",
    "escalate",
    "unmute",
    "unsilence",
    "remove",
    "create",
    "reassign",
    "export",
    "drain",
    "cordon",
    "uncordon",
    "merge",
    "uninstall",
    "pin",
    "unpin",
    "lock",
    "unlock",
    "invite",
    "schedule",
    "reschedule",
    "transfer",
    "copy",
    "replicate",
    "redirect",
    "mirror",
    "tag",
];

/// Words that may come before the verb of a request ("ok can you please purge ...").
const BEFORE_VERB: &[&str] = &[
    "please", "pls", "plz", "can", "could", "would", "you", "u", "kindly", "go", "ahead", "and",
    "i", "need", "want", "to", "we", "let's", "lets", "just", "quickly", "first", "then",
];

/// The request's first word, past greetings and polite lead-ins ("ok can you please purge
/// ..." -> "purge").
fn request_word(ws: &[String]) -> Option<&str> {
    ws.iter()
        .find(|w| {
            !BEFORE_VERB.contains(&w.as_str())
                && !OPENERS.contains(&w.as_str())
                && !is_interjection(w)
        })
        .map(String::as_str)
}

/// The request's first word is an operation the catalogue's examples never name.
fn other_operation(ws: &[String], vocab: &Vocabulary) -> bool {
    request_word(ws).is_some_and(|w| OTHER_OPERATIONS.contains(&w) && !vocab.is_known(w))
}

/// Verbs that change something but that no intent is likely to mean unless its own examples
/// say so ("change the log level", "run the migrations", "raise the memory limit").
const CHANGING: &[&str] = &[
    "change",
    "run",
    "raise",
    "lower",
    "increase",
    "decrease",
    "install",
    "configure",
    "edit",
    "modify",
    "reset",
    "kill",
    "restore",
    "backup",
    "move",
    "update",
    "upgrade",
    "turn",
];

/// The operation the request opens with, when it is one that `intent_words` (the chosen
/// intent's own examples) never use: "create a staging copy of the database" is not a deploy,
/// even when another intent's examples say "create".
pub fn foreign_operation(text: &str, intent_words: &[String]) -> Option<String> {
    let ws = words(text);
    let w = request_word(&ws)?;
    ((OTHER_OPERATIONS.contains(&w) || CHANGING.contains(&w))
        && !intent_words.iter().any(|i| i == w))
    .then(|| w.to_string())
}

/// The first command word of the message is in the past tense: it reports what was done ("we
/// upgraded redis on monday", "redis in prod restarted itself") rather than asking; a request
/// that mentions a past action later ("roll back what we shipped") starts with its own verb.
fn reports_a_command(ws: &[String], vocab: &Vocabulary) -> bool {
    first_command_word(ws, vocab) == Some(Said::Past)
}

/// How a message's first command word is said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Said {
    /// "restart api"
    Asked,
    /// "we restarted api"
    Past,
    /// "don't restart api", "no need to ack 5120", "hold off on the rollback"
    Declined,
    /// "gonna restart spotify", "I'll deploy it after lunch": the speaker will do it
    Own,
}

/// Words that, shortly before a command word, turn the request down.
const DECLINING: &[&str] = &[
    "don't",
    "dont",
    "not",
    "never",
    "no",
    "skip",
    "without",
    "shouldn't",
    "won't",
    "avoid",
    "off",
    "cancel",
    "abort",
    "forget",
    "scratch",
    "ignore",
];

/// Verbs of state: "the billing service is held together with cron jobs", "tom has the pager".
const STATES: &[&str] = &[
    "is", "are", "was", "were", "has", "have", "had", "looks", "seems", "feels", "it's", "its",
    "that's", "there's", "we're", "i'm", "they're",
];

/// Verbs that say an operation is over ("the deploy to prod finished", "rollback of web
/// completed at 09:14", "the last three deploys all went smoothly").
const DONE: &[&str] = &[
    "finished",
    "completed",
    "complete",
    "done",
    "succeeded",
    "failed",
    "went",
    "happened",
    "worked",
    "passed",
    "landed",
    "resolved",
    "recovered",
    "expired",
    "ended",
    "broke",
    "crashed",
];

/// Words that start a clause of their own after a command word ("roll back the deploy that
/// just failed"): what follows them says nothing about the command word.
const CLAUSE_STARTS: &[&str] = &[
    "that", "which", "who", "when", "after", "since", "once", "until", "if", "as", "because",
    "cause", "so", "but", "and", "before", "while", "where",
];

/// A command word used as a noun, followed by a verb saying it is over: "deploy to prod
/// finished", "rollback of web completed" (`rest`: the words after the command word, up to six
/// of them, up to the start of another clause).
fn said_done(rest: &[String]) -> bool {
    rest.iter()
        .take(6)
        .take_while(|w| !CLAUSE_STARTS.contains(&w.as_str()))
        .any(|w| DONE.contains(&w.as_str()) || w.ends_with("-resolved"))
}

/// How the first command word of `ws` is said (`None`: it has none).
fn first_command_word(ws: &[String], vocab: &Vocabulary) -> Option<Said> {
    first_command_at(ws, vocab).map(|(_, said)| said)
}

/// The first command word of `ws`: where it is and how it is said.
fn first_command_at(ws: &[String], vocab: &Vocabulary) -> Option<(usize, Said)> {
    let is_command = |w: &str| vocab.keyword_owner(w).is_some() || COMMON_COMMANDS.contains(&w);
    for (i, w) in ws.iter().enumerate() {
        if is_past_of_command(w, vocab) {
            return Some((i, Said::Past));
        }
        // "alerts were firing", "the api was restarting all morning": going on in the past
        if i > 0 && matches!(ws[i - 1].as_str(), "was" | "were") {
            let stem = w.strip_suffix("ing").unwrap_or("");
            if !stem.is_empty()
                && (is_command(w) || is_command(stem) || is_command(&format!("{stem}e")))
            {
                return Some((i, Said::Past));
            }
        }
        let command = is_command(w);
        if !command && !ASKING_VERBS.contains(&w.as_str()) {
            continue;
        }
        let before = &ws[i.saturating_sub(4)..i];
        let declined = before.iter().any(|b| DECLINING.contains(&b.as_str()));
        if command && !declined && said_done(&ws[i + 1..]) {
            return Some((i, Said::Past));
        }
        if command && !declined && plans_to(before) {
            return Some((i, Said::Own));
        }
        match (command, declined) {
            (_, false) => return Some((i, Said::Asked)),
            (true, true) => return Some((i, Said::Declined)),
            // a declined asking verb ("I can't get in") says nothing: read on
            (false, true) => {}
        }
    }
    None
}

/// The words before a command word say the speaker will do it ("gonna restart spotify", "I'll
/// deploy it after lunch", "about to bounce the workers", "let me scale it").
fn plans_to(before: &[String]) -> bool {
    let n = before.len();
    let tail = &before[n.saturating_sub(3)..];
    tail.iter().enumerate().any(|(k, w)| {
        let next = tail.get(k + 1).map(String::as_str);
        matches!(w.as_str(), "gonna" | "i'll" | "we'll" | "lemme" | "ill")
            || (matches!(w.as_str(), "going" | "about") && next == Some("to"))
            || (w == "let" && next == Some("me"))
    })
}

/// The message's first command word is followed closely by "my" ("restart my laptop", "scale my
/// sourdough recipe"): what is acted on is the speaker's own, not a service.
pub fn on_own_things(text: &str, vocab: &Vocabulary) -> bool {
    let ws = words(text);
    first_command_at(&ws, vocab)
        .is_some_and(|(i, _)| ws.iter().skip(i + 1).take(2).any(|w| w == "my"))
}

/// A part asks when its first command word is asked for and no verb of state comes before it
/// ("tom has the pager now" says who has it).
fn part_asks(part: &str, vocab: &Vocabulary) -> bool {
    let ws = words(part);
    first_command_at(&ws, vocab).is_some_and(|(i, said)| {
        said == Said::Asked && !ws[..i].iter().any(|w| STATES.contains(&w.as_str()))
    })
}

/// No part of the message asks with a command word ("…, show me the deploy history"; "don't
/// restart api, restart web"), and it is not a question ("who deployed api today?" asks for
/// history).
fn asks_in_no_part(text: &str, parts: &[&str], vocab: &Vocabulary) -> bool {
    !is_question(text)
        && !text.contains('?')
        && !parts.iter().any(|p| is_question(p))
        && !parts.iter().any(|p| part_asks(p, vocab))
}

/// A report ("we upgraded redis on monday") or a request turned down ("please don't bounce the
/// workers"), and nothing that asks: the message's first command word is looked at once.
pub fn only_reports_or_declines(text: &str, parts: &[&str], vocab: &Vocabulary) -> bool {
    matches!(
        first_command_word(&words(text), vocab),
        Some(Said::Past | Said::Declined | Said::Own)
    ) && asks_in_no_part(text, parts, vocab)
}

/// A statement that asks for nothing: it says how things are ("the billing service is held
/// together with cron jobs"), with no command word, no question and no asking word anywhere; a
/// terse request has no such verb ("ram usage of the cache in prod"). A request that opens with
/// a verb the chosen intent's examples use (`intent_words`) asks, even when that verb is too
/// rare to be a command word ("raise a p1 for the db, lag is huge").
pub fn asks_for_nothing(text: &str, vocab: &Vocabulary, intent_words: &[String]) -> bool {
    const ASKING: &[&str] = &[
        "please", "pls", "plz", "can", "could", "would", "need", "want", "like", "let's", "lets",
        "mind",
    ];
    let ws = words(text);
    let has = |list: &[&str]| ws.iter().any(|w| list.contains(&w.as_str()));
    ws.len() >= 6
        && has(STATES)
        && !has(ASKING)
        && !text.contains('?')
        && !is_question(text)
        && first_command_word(&ws, vocab).is_none()
        && !request_word(&ws)
            .is_some_and(|w| is_verb_of_request(w) && intent_words.iter().any(|i| i == w))
}

/// A word known to open requests: a common ops command, or an operation that changes something.
fn is_verb_of_request(w: &str) -> bool {
    COMMON_COMMANDS.contains(&w) || CHANGING.contains(&w) || OTHER_OPERATIONS.contains(&w)
}

/// A what-if: "would", "if", "should we", "is it safe", "what happens" ("would you" and
/// "should you" ask instead).
fn wonders(text: &str, ws: &[String]) -> bool {
    ws.iter().enumerate().any(|(i, w)| {
        HYPOTHETICAL.contains(&w.as_str())
            && !(matches!(w.as_str(), "would" | "should")
                && ws.get(i + 1).is_some_and(|n| n == "you"))
            && !polite_if(ws, i)
    }) || text.to_lowercase().contains("what happens")
}

/// "if you can", "if you get a sec", "if possible": a polite condition on a request, not a
/// what-if.
fn polite_if(ws: &[String], i: usize) -> bool {
    let next = |k: usize| ws.get(i + k).map(String::as_str).unwrap_or("");
    ws[i] == "if"
        && (matches!(next(1), "possible" | "poss" | "that's" | "thats")
            || (matches!(next(1), "you" | "u")
                && matches!(
                    next(2),
                    "can"
                        | "could"
                        | "don't"
                        | "dont"
                        | "have"
                        | "get"
                        | "got"
                        | "would"
                        | "mind"
                        | "are"
                )))
}

/// "not urgent but ...", "no rush", "no worries": a hedge about the request, not a refusal.
fn hedge(ws: &[String], i: usize) -> bool {
    matches!(ws[i].as_str(), "not" | "no")
        && ws.get(i + 1).is_some_and(|n| {
            matches!(
                n.as_str(),
                "urgent"
                    | "sure"
                    | "important"
                    | "critical"
                    | "blocking"
                    | "rush"
                    | "hurry"
                    | "pressure"
                    | "worries"
                    | "problem"
                    | "big"
            )
        })
}

/// A question: it ends with a question mark or opens with a question word.
pub fn is_question(text: &str) -> bool {
    const OPENING: &[&str] = &[
        "what", "whats", "what's", "who", "whos", "who's", "when", "where", "which", "why", "how",
        "did", "has", "have", "was", "were", "is", "are", "do", "does", "any",
    ];
    text.trim_end().ends_with('?')
        || words(text)
            .first()
            .is_some_and(|w| OPENING.contains(&w.as_str()))
}

/// Verbs of ops requests in general, besides the catalogue's own command words.
const COMMON_COMMANDS: &[&str] = &[
    "restart",
    "deploy",
    "roll",
    "scale",
    "silence",
    "ack",
    "acknowledge",
    "open",
    "upgrade",
    "bounce",
    "kick",
    "revert",
    "mute",
    "page",
    "release",
    "ship",
    "push",
    "check",
    "flush",
    "migrate",
    "reboot",
];

/// Verbs that ask ("show me what shipped on friday", "take it down to 2") but are too common to
/// tell a report or a refusal ("we got paged", "I can't get in"): they only ever count as asking.
const ASKING_VERBS: &[&str] = &[
    "show", "list", "give", "fetch", "pull", "display", "set", "take", "bump", "get",
];

/// A message that opens with someone else's name: "@sam ...", "sam, ...", "priya pls ...".
fn addressed_to_someone(text: &str, vocab: &Vocabulary, bot_name: &str) -> bool {
    let t = text.trim_start();
    let lower = t.to_lowercase();
    let bot = bot_name.to_lowercase();
    let first = lower.split_whitespace().next().unwrap_or("");
    if let Some(name) = first.strip_prefix('@') {
        let name = name.trim_end_matches([',', ':']);
        return !name.is_empty() && name != bot;
    }
    // "hey sam, ..." / "hi priya ..."
    let mut toks = lower.split_whitespace();
    let mut head = toks.next().unwrap_or("");
    if matches!(head, "hey" | "hi" | "hello" | "yo" | "ok" | "so") {
        head = toks.next().unwrap_or("");
        if let Some(name) = head.strip_prefix('@') {
            let name = name.trim_end_matches([',', ':']);
            return !name.is_empty() && name != bot;
        }
    }
    let next = toks.next().unwrap_or("");
    let (word, comma) = match head.strip_suffix([',', ':']) {
        Some(w) => (w, true),
        None => (head, false),
    };
    if word.is_empty()
        || word == bot
        || !word.chars().all(|c| c.is_alphabetic())
        || OPENERS.contains(&word)
        || is_interjection(word)
        || vocab.is_known(word)
        || super::fuzzy::STOPWORDS.contains(&word)
    {
        return false;
    }
    comma
        || matches!(
            next,
            "pls" | "please" | "can" | "could" | "would" | "when" | "plz"
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The message's first command word is said `how`, and nothing in it asks.
    fn only(how: Said, text: &str, parts: &[&str], vocab: &Vocabulary) -> bool {
        first_command_word(&words(text), vocab) == Some(how)
            && only_reports_or_declines(text, parts, vocab)
    }

    fn vocab() -> Vocabulary {
        Vocabulary::build(
            &[
                vec![
                    "restart {service} in {env}".into(),
                    "bounce {service}".into(),
                    "restart the {service}".into(),
                ],
                vec![
                    "deploy {service} to {env}".into(),
                    "deploy {version}".into(),
                ],
            ],
            &["api".into(), "prod".into()],
        )
    }

    #[test]
    fn cues_of_near_misses() {
        let v = vocab();
        let f = |t: &str| features(t, &v, "opsbot").map(|x| x > 0.0);
        assert_eq!(f("restart api in prod"), [false; COUNT]);
        assert!(f("please don't restart api")[0]);
        assert!(f("we restarted api yesterday")[1]);
        assert!(f("we restarted api yesterday")[2]);
        assert!(f("we restarted api last night")[2]);
        assert!(!f("show api logs for the last 45 minutes")[2]);
        assert!(f("would restarting api break checkout?")[3]);
        assert!(!f("would you restart api")[3]);
        assert!(f("@sam could you restart api")[4]);
        assert!(f("sam, restart api when you can")[4]);
        assert!(f("priya pls restart the workers")[4]);
        assert!(!f("@opsbot restart api")[4]);
        assert!(!f("hey team, restart api")[4]);
        assert!(!f("api, restart it")[4]);
        // a sound or a greeting before the request is not a colleague's name
        assert!(!f("ahh can you restart api")[4]);
        assert!(!f("heya, restart api")[4]);
        assert!(!f("hmmm, restart api")[4]);
        assert!(f("emma, restart api")[4]);
        assert!(f("is api up?")[5]);
        // a hedge or a polite condition is neither a refusal nor a what-if
        assert!(!f("not urgent but could you restart api")[0]);
        assert!(!f("no rush, restart api when you can")[0]);
        assert!(f("not now, don't restart api")[0]);
        assert!(!f("restart api if you can")[3]);
        assert!(!f("restart api if possible")[3]);
        assert!(f("if we restart api will checkout break")[3]);
        // regression: a multi-byte letter before "ed" was cut inside the character
        assert_eq!(f("丸ed"), [false; COUNT]);
        assert!(f("we shipped api")[1]);
        // an operation the catalogue does not name, after any lead-in; never one it does
        assert!(f("purge the cdn cache")[6]);
        assert!(f("ok can you please resolve the api incident")[6]);
        assert!(!f("restart api")[6]);
        assert!(!f("what does purge mean")[6]);
        let named = Vocabulary::build(&[vec!["purge {service}".into()]], &[]);
        assert_eq!(features("purge api", &named, "opsbot")[6], 0.0);
        // an operation the chosen intent's examples never use
        let deploy_words: Vec<String> = vec!["deploy".into(), "ship".into(), "create".into()];
        assert_eq!(
            foreign_operation("ok can you change the log level of api", &deploy_words).as_deref(),
            Some("change")
        );
        assert_eq!(
            foreign_operation("please ship api to prod", &deploy_words),
            None
        );
        assert_eq!(
            foreign_operation("create a copy of the db", &deploy_words),
            None
        );
        assert_eq!(foreign_operation("what changed", &deploy_words), None);
        // a statement asks for nothing; a terse request, a question or a polite ask does
        assert!(asks_for_nothing(
            "the api service is held together with cron jobs",
            &v,
            &[]
        ));
        assert!(!asks_for_nothing(
            "memory usage of the api in prod",
            &v,
            &[]
        ));
        assert!(!asks_for_nothing("is the api service ok on prod", &v, &[]));
        assert!(!asks_for_nothing(
            "api is slow, could you restart it",
            &v,
            &[]
        ));
        assert!(!asks_for_nothing(
            "api has 6 pods, take it down to 2",
            &v,
            &[]
        ));
        // a rare verb that the chosen intent's examples open with still asks
        let raise = "raise a p1 for the database, replication lag is huge";
        assert!(asks_for_nothing(raise, &v, &[]));
        assert!(!asks_for_nothing(raise, &v, &["raise".to_string()]));
        // a report starts with a command word in the past; a request only mentions one later
        assert!(f("we restarted api on monday")[7]);
        assert!(f("api in prod restarted itself at 3am")[7]);
        assert!(!f("restart api, the one we deployed yesterday")[7]);
        assert!(!f("restart api")[7]);
        let parts = |t: &'static str| super::super::clauses(t);
        let declines = |t: &'static str| only(Said::Declined, t, &parts(t), &v);
        assert!(declines("please don't bounce the workers"));
        assert!(declines("no need to restart api, it recovered"));
        assert!(!declines("don't restart api, restart the workers instead"));
        assert!(!declines("restart api but don't touch prod"));
        assert!(!declines("should we not restart api?"));
        assert!(declines("cancel that restart, we found the issue"));
        let reports = |t: &'static str| only(Said::Past, t, &parts(t), &v);
        assert!(reports("we restarted api on monday, all good"));
        assert!(!reports("who restarted api today?"));
        // a command word as a noun, said to be over, reports too
        assert!(reports("deploy to prod finished, all green"));
        assert!(reports("the restart of api in prod completed at 09:14"));
        assert!(!reports("restart api, the deploy finished"));
        assert_eq!(
            first_command_word(&words("deploy api to prod once the build finished"), &v),
            Some(Said::Asked)
        );
        assert!(!reports("restart the api that just crashed"));
        assert!(!reports("we restarted api. did it help? its stuck again"));
        assert!(reports("the api was restarting all morning"));
        // the speaker will do it: said to the team, not asked of the bot
        assert!(only(
            Said::Own,
            "gonna restart spotify, the playlist froze",
            &parts("gonna restart spotify, the playlist froze"),
            &v
        ));
        assert!(only(
            Said::Own,
            "I'm going to restart api after lunch",
            &[],
            &v
        ));
        assert!(!only(
            Said::Own,
            "restart api, I'm going to lunch",
            &parts("restart api, I'm going to lunch"),
            &v
        ));
        // a part that states who has what does not ask
        assert!(reports(
            "we restarted api at 9, tom has the restart runbook now"
        ));
        assert!(on_own_things("need to restart my laptop", &v));
        assert!(!on_own_things("restart api for my team", &v));
        assert!(!reports(
            "we restarted api but it is still down. restart it again"
        ));
    }
}
