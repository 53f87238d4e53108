//! Dialogs: confirmation, approval, did-you-mean and missing parameters, as a pure state machine.
//! [`begin`] decides what an understood request needs; [`step`] takes the pending state and one
//! input (text, button choice or timeout) and returns the next state and the effects to carry out.
//! Nothing here runs, audits or authorizes: `bot` carries out the effects, `policy` decides who
//! may. Pending states are persisted by [`store`], so a restart neither loses nor repeats one.

pub mod store;

use crate::catalog::{Catalog, Intent, ParamKind, Params, Risk, Value};
use crate::nlu::fuzzy::close_enough;
use crate::nlu::slots;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A request as it travels through a dialog. Parameters are kept as text and validated again by
/// the catalogue whenever they are used, so a stored dialog can never smuggle in a value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Request {
    pub id: String,
    pub intent: String,
    pub params: BTreeMap<String, String>,
    /// Immutable user id of the requester.
    pub requester: String,
    pub requester_name: String,
    /// Roles the adapter saw on the requester (checked again before running).
    #[serde(default)]
    pub requester_roles: Vec<String>,
    pub conversation: String,
    pub text: String,
    pub source: String,
    /// How many questions this request has been asked (a correction asks again): buttons name
    /// the question they were shown with, so an old button never answers a newer question.
    #[serde(default)]
    pub asked: u32,
}

impl Request {
    /// The id of the question now open for this request (`<request id>-<asked>`).
    pub fn question_id(&self) -> String {
        format!("{}-{}", self.id, self.asked)
    }

    /// The parameters validated again by the catalogue; None if any no longer validates.
    pub fn typed(&self, catalog: &Catalog) -> Option<Params> {
        let intent = catalog.intent(&self.intent)?;
        let mut out = Params::new();
        for (k, v) in &self.params {
            let p = intent.param(k)?;
            out.insert(k.clone(), catalog.parse_value(p, v).ok()?);
        }
        Some(out)
    }

    /// "deploy service=api env=staging", when the intent exists and the values still validate.
    pub fn describe(&self, catalog: &Catalog) -> Option<String> {
        Some(describe(
            catalog.intent(&self.intent)?,
            &self.typed(catalog)?,
        ))
    }

    pub fn set_params(&mut self, params: &Params) {
        self.params = params
            .iter()
            .map(|(k, v)| (k.clone(), v.to_string()))
            .collect();
    }
}

/// A dialog waiting for an answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Pending {
    /// A change: the requester confirms (or corrects a value).
    Confirm { req: Request, preview: String },
    /// A dangerous action: another person with an approver role approves.
    Approve { req: Request, preview: String },
    /// Did you mean: the requester picks one of the candidates.
    Choose {
        req: Request,
        candidates: Vec<Request>,
    },
    /// A required parameter is missing: ask for it.
    Fill {
        req: Request,
        missing: String,
        tries: u8,
    },
}

impl Pending {
    pub fn request(&self) -> &Request {
        match self {
            Pending::Confirm { req, .. }
            | Pending::Approve { req, .. }
            | Pending::Choose { req, .. }
            | Pending::Fill { req, .. } => req,
        }
    }

    pub fn request_mut(&mut self) -> &mut Request {
        match self {
            Pending::Confirm { req, .. }
            | Pending::Approve { req, .. }
            | Pending::Choose { req, .. }
            | Pending::Fill { req, .. } => req,
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Pending::Confirm { .. } => "confirmation",
            Pending::Approve { .. } => "approval",
            Pending::Choose { .. } => "choice",
            Pending::Fill { .. } => "question",
        }
    }

    /// Is `choice` one of the buttons this question offers (see [`begin`] and the did-you-mean
    /// list)? A question asked in words (a missing value) offers none.
    pub fn offers(&self, choice: &str) -> bool {
        match self {
            Pending::Confirm { .. } => matches!(choice, CONFIRM | CANCEL),
            Pending::Approve { .. } => matches!(choice, APPROVE_BUTTON | DENY_BUTTON),
            Pending::Choose { candidates, .. } => choice
                .parse::<usize>()
                .is_ok_and(|n| (1..=candidates.len()).contains(&n)),
            Pending::Fill { .. } => false,
        }
    }

    /// Approvals may be answered by anyone in the conversation; the rest only by the requester.
    pub fn owner(&self) -> &str {
        match self {
            Pending::Approve { .. } => store::ANYONE,
            other => &other.request().requester,
        }
    }
}

/// The values of the confirmation and approval buttons (also answer words).
const CONFIRM: &str = "confirm";
const CANCEL: &str = "cancel";
const APPROVE_BUTTON: &str = "approve";
const DENY_BUTTON: &str = "deny";

/// One input to a pending dialog.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    Text(String),
    /// A button (or numbered choice): `confirm`, `cancel`, `approve`, `deny`, or a choice index.
    Button(String),
    Timeout,
}

/// Who answered, as the policy sees them.
#[derive(Debug, Clone)]
pub struct Actor {
    pub id: String,
    pub name: String,
    /// `Ok` when this person may approve the pending request; the refusal otherwise.
    pub may_approve: Result<(), String>,
}

/// What the bot must do.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    Say(String),
    /// Ask for confirmation or approval: the adapter may render buttons for these choices.
    Ask {
        /// The dialog asked about (its request id), so a button answers this dialog only.
        dialog: String,
        text: String,
        choices: Vec<(String, String)>,
    },
    /// Run the request (authorize again first).
    Run {
        req: Request,
        confirmed_by: Option<String>,
        approved_by: Option<String>,
    },
    /// A request that needs its own decision (picked from did-you-mean, or complete after a
    /// question): the bot calls [`begin`] again with it.
    Begin(Request),
    /// Record a dialog step in the audit log.
    Audit {
        req: Request,
        status: &'static str,
        detail: String,
    },
}

/// Context the state machine reads.
pub struct Ctx<'a> {
    pub catalog: &'a Catalog,
    pub prefix: &'a str,
}

/// How many times a missing value is asked for again before giving up.
pub const MAX_RETRIES: u8 = 2;

const YES: &[&str] = &[
    "yes",
    "y",
    "yeah",
    "yep",
    "yup",
    "confirm",
    "confirmed",
    "go",
    "go ahead",
    "ok",
    "okay",
    "do it",
    "sure",
];
const NO: &[&str] = &[
    "no",
    "n",
    "nope",
    "cancel",
    "stop",
    "never mind",
    "nevermind",
    "abort",
    "don't",
];
/// Approvals take only these words, so that "yes" or "cancel" meant for something else never
/// decides someone else's dangerous action.
const APPROVE: &[&str] = &["approve", "approved", "lgtm"];
const DENY: &[&str] = &["deny", "denied", "reject", "rejected"];

#[derive(Debug, PartialEq)]
enum Answer {
    Yes,
    No,
    Other,
}

fn matches(text: &str, list: &[&str]) -> bool {
    let t: String = text.trim().trim_end_matches(['.', '!']).to_lowercase();
    // typos are letters; "confirm?" is one edit from "confirm" but asks rather than answers
    let wordy = t
        .chars()
        .all(|c| c.is_alphabetic() || c == ' ' || c == '\'');
    list.iter().any(|w| {
        *w == t
            || (wordy && w.len() >= 4 && close_enough(&t, w))
            || (t.len() == 3 && w.len() == 3 && sorted(&t) == sorted(w))
    })
}

/// A question ("confirm?", "do it?") never says yes.
fn asks(text: &str) -> bool {
    text.contains('?')
}

/// yes / no in any case, with small typos ("yse", "cancle", "confrim").
fn answer(text: &str) -> Answer {
    if !asks(text) && matches(text, YES) {
        Answer::Yes
    } else if matches(text, NO) {
        Answer::No
    } else {
        Answer::Other
    }
}

/// "approve 5c1e0a92" -> ("approve", Some("5c1e0a92")): an approval word naming the request it
/// means by its reference.
pub fn named_approval(text: &str) -> (&str, Option<&str>) {
    let t = text.trim();
    match t.rsplit_once(char::is_whitespace) {
        Some((word, r))
            if r.len() >= 4
                && r.chars().all(|c| c.is_ascii_hexdigit())
                && (matches(word, APPROVE) || matches(word, DENY)) =>
        {
            (word.trim(), Some(r))
        }
        _ => (t, None),
    }
}

/// Is `text` an approval word ("approve", "lgtm"), with or without a reference?
pub fn is_approve(text: &str) -> bool {
    let (word, _) = named_approval(text);
    !asks(word) && matches(word, APPROVE)
}

/// approve / deny for approvals; the requester may also withdraw with a plain no / cancel.
/// A reference after the word ("approve 5c1e0a92") is checked by the caller.
fn approval_answer(text: &str, is_requester: bool) -> Answer {
    let (text, _) = named_approval(text);
    if !asks(text) && (matches(text, APPROVE) || (is_requester && matches(text, YES))) {
        Answer::Yes
    } else if matches(text, DENY) || (is_requester && matches(text, NO)) {
        Answer::No
    } else {
        Answer::Other
    }
}

/// Is `text` exactly an answer word ("yes", "no", "confirm", "cancel", "approve", "deny") or a
/// choice number? Chat adapters pass a message that is not addressed to the bot on to it only
/// then, and only when the speaker has a question open: "ok" said to a colleague must never
/// confirm a deploy.
pub fn is_bare_answer(text: &str) -> bool {
    let t = text.trim().trim_end_matches(['.', '!']).to_lowercase();
    matches!(
        t.as_str(),
        "yes" | "y" | "no" | "n" | "confirm" | "cancel" | "approve" | "deny"
    ) || (t.len() == 1 && t.chars().all(|c| c.is_ascii_digit() && c != '0'))
}

/// Does `text` answer a pending approval (approve / deny, or the requester's own yes / no)? Other
/// messages in the conversation pass it by.
pub fn answers_approval(text: &str, is_requester: bool) -> bool {
    approval_answer(text, is_requester) != Answer::Other
}

fn sorted(s: &str) -> Vec<char> {
    let mut v: Vec<char> = s.chars().collect();
    v.sort_unstable();
    v
}

/// "deploy api 2.4.1 to production"
pub fn describe(intent: &Intent, params: &Params) -> String {
    let mut s = intent.id.0.replace('.', " ");
    for p in &intent.params {
        if let Some(v) = params.get(&p.name) {
            s.push_str(&format!(" {}={}", p.name, quote(&v.to_string())));
        }
    }
    s
}

fn quote(s: &str) -> String {
    if s.contains(char::is_whitespace) || s.is_empty() {
        format!("\"{s}\"")
    } else {
        s.to_string()
    }
}

fn question(catalog: &Catalog, intent: &Intent, missing: &str) -> String {
    let Some(p) = intent.param(missing) else {
        return format!("what {missing}?");
    };
    match &p.kind {
        ParamKind::Entity(e) => {
            let values = catalog
                .entity(e)
                .map(|e| e.canonical_values().join(", "))
                .unwrap_or_default();
            let noun = if e == "env" {
                "environment"
            } else {
                e.as_str()
            };
            format!("Which {noun}? {values}")
        }
        other => format!("What {}? ({})", p.name, other.describe()),
    }
}

/// What understanding made of a message, for [`begin`] to decide on. (A message understood as
/// nothing opens no dialog: the bot refuses it with the closest commands.)
// built once per message and taken by value at once: the size difference costs nothing
#[allow(clippy::large_enum_variant)]
pub enum Understood {
    /// One request, complete or not, with the current state its action can tell ("now 2.4.0,
    /// 2 replicas"), when there is one.
    Request {
        req: Request,
        preview: Option<String>,
    },
    /// Several readings, best first: the speaker picks one ("did you mean ...?").
    Readings(Vec<Request>),
}

/// How many readings a did-you-mean offers at most.
pub const MAX_READINGS: usize = 3;

/// Opens the dialog of an understood message: a request runs, or asks for what is missing, for
/// confirmation or for approval; readings ask which one was meant.
pub fn begin(understood: Understood, ctx: &Ctx) -> (Option<Pending>, Vec<Effect>) {
    match understood {
        Understood::Request { req, preview } => begin_request(req, ctx, preview),
        Understood::Readings(candidates) => offer(candidates, ctx),
    }
}

/// "did you mean: 1. !restart api production ..." with a button per reading, labelled with its
/// strict command. Readings of intents no longer in the catalogue are left out.
fn offer(candidates: Vec<Request>, ctx: &Ctx) -> (Option<Pending>, Vec<Effect>) {
    let mut lines = Vec::new();
    let mut choices = Vec::new();
    let mut kept = Vec::new();
    let known = candidates
        .into_iter()
        .filter_map(|req| Some((ctx.catalog.intent(&req.intent)?, req)));
    for (intent, req) in known.take(MAX_READINGS) {
        let params = req.typed(ctx.catalog).unwrap_or_default();
        let line = if params.is_empty() {
            intent.usage(ctx.prefix)
        } else {
            strict_line(intent, &params, ctx.prefix)
        };
        lines.push(format!(
            "{}. {line}  ({})",
            kept.len() + 1,
            intent.description
        ));
        choices.push(((kept.len() + 1).to_string(), line));
        kept.push(req);
    }
    let Some(req) = kept.first().cloned() else {
        return (None, vec![Effect::Say("not sure what you meant".into())]);
    };
    let ask = Effect::Ask {
        dialog: req.question_id(),
        text: format!(
            "not sure what you meant; did you mean:\n{}\nreply with a number, or no",
            lines.join("\n")
        ),
        choices,
    };
    (
        Some(Pending::Choose {
            req,
            candidates: kept,
        }),
        vec![ask],
    )
}

/// The strict command that runs `intent` with `params`: positional while the syntax order
/// allows, `name=value` after a gap, values with spaces quoted.
pub fn strict_line(intent: &Intent, params: &Params, prefix: &str) -> String {
    let mut s = format!("{prefix}{}", intent.id.0.replace('.', " "));
    let mut gap = false;
    for p in &intent.params {
        match params.get(&p.name) {
            None => gap = true,
            Some(v) => {
                let raw = match v {
                    Value::Duration(_) => v.to_string(),
                    other => other.as_arg(),
                };
                let val = if raw.contains(char::is_whitespace) {
                    format!("\"{raw}\"")
                } else {
                    raw
                };
                if gap {
                    s.push_str(&format!(" {}={val}", p.name));
                } else {
                    s.push_str(&format!(" {val}"));
                }
            }
        }
    }
    s
}

fn begin_request(
    mut req: Request,
    ctx: &Ctx,
    preview: Option<String>,
) -> (Option<Pending>, Vec<Effect>) {
    let Some(intent) = ctx.catalog.intent(&req.intent) else {
        return (
            None,
            vec![Effect::Say(format!("unknown command {}", req.intent))],
        );
    };
    let Some(mut params) = req.typed(ctx.catalog) else {
        return (
            None,
            vec![Effect::Say(
                "a stored value is no longer valid; please ask again".into(),
            )],
        );
    };
    if let Err(missing) = ctx.catalog.complete(intent, &mut params) {
        let q = question(ctx.catalog, intent, &missing);
        let audit = Effect::Audit {
            req: req.clone(),
            status: "asked",
            detail: format!("waiting for {missing}"),
        };
        return (
            Some(Pending::Fill {
                req,
                missing,
                tries: 0,
            }),
            vec![Effect::Say(q), audit],
        );
    }
    req.set_params(&params);
    req.asked += 1;
    let what = describe(intent, &params);
    let now = preview.map(|p| format!(" ({p})")).unwrap_or_default();
    match intent.risk {
        Risk::Read => (
            None,
            vec![Effect::Run {
                req,
                confirmed_by: None,
                approved_by: None,
            }],
        ),
        Risk::Change => {
            let text = format!("{what}{now}? yes / no (or correct a value, e.g. \"no, staging\")");
            let ask = Effect::Ask {
                dialog: req.question_id(),
                text,
                choices: vec![
                    (CONFIRM.into(), "Confirm".into()),
                    (CANCEL.into(), "Cancel".into()),
                ],
            };
            (Some(Pending::Confirm { req, preview: now }), vec![ask])
        }
        Risk::Dangerous => {
            let text = format!(
                "{what}{now} is dangerous and needs approval by someone else with one of the roles {}: reply \"approve\" or \"deny\"",
                intent.approvers.join(", ")
            );
            let ask = Effect::Ask {
                dialog: req.question_id(),
                text,
                choices: vec![
                    (APPROVE_BUTTON.into(), "Approve".into()),
                    (DENY_BUTTON.into(), "Deny".into()),
                ],
            };
            let audit = Effect::Audit {
                req: req.clone(),
                status: "awaiting_approval",
                detail: what,
            };
            (
                Some(Pending::Approve { req, preview: now }),
                vec![ask, audit],
            )
        }
    }
}

/// One input to a pending dialog.
pub fn step(
    state: Pending,
    input: Input,
    who: &Actor,
    ctx: &Ctx,
) -> (Option<Pending>, Vec<Effect>) {
    if input == Input::Timeout {
        let req = state.request().clone();
        let what = req.describe(ctx.catalog).unwrap_or(req.intent.clone());
        return (
            None,
            vec![
                Effect::Say(format!(
                    "the {} for {what} (ref {}) expired; nothing was run",
                    state.kind(),
                    req.id
                )),
                Effect::Audit {
                    req,
                    status: "expired",
                    detail: what,
                },
            ],
        );
    }
    let text = match &input {
        Input::Text(t) => t.clone(),
        Input::Button(b) => b.clone(),
        Input::Timeout => unreachable!("handled above"),
    };
    match state {
        Pending::Confirm { req, preview } => confirm(req, preview, &text, who, ctx),
        Pending::Approve { req, preview } => approve(req, preview, &text, who, ctx),
        Pending::Choose { req, candidates } => choose(req, candidates, &text, ctx),
        Pending::Fill {
            req,
            missing,
            tries,
        } => fill(req, missing, tries, &text, ctx),
    }
}

fn cancelled(req: Request, by: &Actor, what: &str) -> (Option<Pending>, Vec<Effect>) {
    (
        None,
        vec![
            Effect::Say(format!("cancelled {what}; nothing was run")),
            Effect::Audit {
                req,
                status: "cancelled",
                detail: format!("cancelled by {}", by.id),
            },
        ],
    )
}

fn confirm(
    mut req: Request,
    preview: String,
    text: &str,
    who: &Actor,
    ctx: &Ctx,
) -> (Option<Pending>, Vec<Effect>) {
    let Some(intent) = ctx.catalog.intent(&req.intent) else {
        return (None, vec![]);
    };
    let what = req.describe(ctx.catalog).unwrap_or_default();
    match answer(text) {
        Answer::Yes => {
            let audit = Effect::Audit {
                req: req.clone(),
                status: "confirmed",
                detail: format!("confirmed by {}", who.id),
            };
            (
                None,
                vec![
                    audit,
                    Effect::Run {
                        req,
                        confirmed_by: Some(who.id.clone()),
                        approved_by: None,
                    },
                ],
            )
        }
        Answer::No if !has_correction(&req, text, ctx) => cancelled(req, who, &what),
        Answer::Other if !is_correction(text) => {
            let hint =
                "please answer yes or no (or correct a value, e.g. \"no, staging\")".to_string();
            let audit = Effect::Audit {
                req: req.clone(),
                status: "not_an_answer",
                detail: format!(
                    "{:?} answers nothing; still waiting for yes or no",
                    text.trim()
                ),
            };
            (
                Some(Pending::Confirm { req, preview }),
                vec![Effect::Say(hint), audit],
            )
        }
        _ => {
            // a correction: "no, staging", "env=dev", "make it 2.4.2"
            let found = slots::extract(ctx.catalog, intent, text);
            let Some(mut params) = req.typed(ctx.catalog) else {
                return (None, vec![]);
            };
            let changed: Vec<String> = found
                .params
                .iter()
                .filter(|(k, v)| {
                    params.get(*k) != Some(v)
                        && !matches!(
                            intent.param(k).map(|p| &p.kind),
                            Some(ParamKind::Text { .. })
                        )
                })
                .map(|(k, _)| k.clone())
                .collect();
            if changed.is_empty() {
                let hint = "please answer yes or no (or correct a value, e.g. \"no, staging\")"
                    .to_string();
                return (
                    Some(Pending::Confirm { req, preview }),
                    vec![Effect::Say(hint)],
                );
            }
            for k in &changed {
                params.insert(k.clone(), found.params[k].clone());
            }
            req.set_params(&params);
            let audit = Effect::Audit {
                req: req.clone(),
                status: "corrected",
                detail: format!("{} changed by {}", changed.join(", "), who.id),
            };
            // the preview may no longer apply: ask again through begin (which also rechecks risk)
            (None, vec![audit, Effect::Begin(req)])
        }
    }
}

/// A reply that corrects a value: "no, staging", "actually 2.4.2", "make it dev", or a bare value
/// or two ("staging", "env=dev"). A longer sentence is not taken as a correction.
fn is_correction(text: &str) -> bool {
    let t = text.trim().to_lowercase();
    let cue = [
        "no", "nope", "not", "actually", "instead", "make it", "change", "use",
    ]
    .iter()
    .any(|c| t.starts_with(&format!("{c} ")) || t.starts_with(&format!("{c},")));
    cue || t.split_whitespace().count() <= 2
}

fn has_correction(req: &Request, text: &str, ctx: &Ctx) -> bool {
    let Some(intent) = ctx.catalog.intent(&req.intent) else {
        return false;
    };
    slots::extract(ctx.catalog, intent, text)
        .params
        .keys()
        .any(|k| {
            !matches!(
                intent.param(k).map(|p| &p.kind),
                Some(ParamKind::Text { .. })
            )
        })
}

fn approve(
    req: Request,
    preview: String,
    text: &str,
    who: &Actor,
    ctx: &Ctx,
) -> (Option<Pending>, Vec<Effect>) {
    let what = req.describe(ctx.catalog).unwrap_or_default();
    let is_requester = who.id == req.requester;
    match approval_answer(text, is_requester) {
        Answer::No if is_requester => cancelled(req, who, &what),
        Answer::No => match &who.may_approve {
            Ok(()) => (
                None,
                vec![
                    Effect::Say(format!(
                        "{what} was denied by {}; nothing was run",
                        who.name
                    )),
                    Effect::Audit {
                        req,
                        status: "denied_by_approver",
                        detail: format!("denied by {}", who.id),
                    },
                ],
            ),
            Err(why) => {
                let audit = Effect::Audit {
                    req: req.clone(),
                    status: "deny_refused",
                    detail: format!("{}: {why}", who.id),
                };
                (
                    Some(Pending::Approve { req, preview }),
                    vec![Effect::Say(why.clone()), audit],
                )
            }
        },
        Answer::Yes => match &who.may_approve {
            Ok(()) => {
                let audit = Effect::Audit {
                    req: req.clone(),
                    status: "approved",
                    detail: format!("approved by {}", who.id),
                };
                (
                    None,
                    vec![
                        audit,
                        Effect::Run {
                            req,
                            confirmed_by: None,
                            approved_by: Some(who.id.clone()),
                        },
                    ],
                )
            }
            Err(why) => {
                let audit = Effect::Audit {
                    req: req.clone(),
                    status: "approval_refused",
                    detail: format!("{}: {why}", who.id),
                };
                (
                    Some(Pending::Approve { req, preview }),
                    vec![Effect::Say(why.clone()), audit],
                )
            }
        },
        Answer::Other => {
            let hint = format!("{what} is waiting for approval: reply \"approve\" or \"deny\"");
            (
                Some(Pending::Approve { req, preview }),
                vec![Effect::Say(hint)],
            )
        }
    }
}

fn choose(
    req: Request,
    candidates: Vec<Request>,
    text: &str,
    ctx: &Ctx,
) -> (Option<Pending>, Vec<Effect>) {
    let t = text.trim().trim_end_matches(['.', ')']);
    let pick = match t.parse::<usize>() {
        Ok(n) if (1..=candidates.len()).contains(&n) => Some(n - 1),
        Ok(_) => None,
        Err(_) => match answer(t) {
            Answer::Yes => Some(0),
            Answer::No => {
                let audit = Effect::Audit {
                    req,
                    status: "cancelled",
                    detail: "no suggestion picked".into(),
                };
                return (None, vec![Effect::Say("ok, nothing was run".into()), audit]);
            }
            Answer::Other => None,
        },
    };
    match pick {
        Some(i) => {
            let chosen = candidates[i].clone();
            let audit = Effect::Audit {
                req: chosen.clone(),
                status: "picked",
                detail: format!("suggestion {} picked", i + 1),
            };
            (None, vec![audit, Effect::Begin(chosen)])
        }
        None => {
            let n = candidates.len();
            (
                Some(Pending::Choose { req, candidates }),
                vec![Effect::Say(format!(
                    "pick a number from 1 to {n}, or say no ({}help lists everything)",
                    ctx.prefix
                ))],
            )
        }
    }
}

fn fill(
    mut req: Request,
    missing: String,
    tries: u8,
    text: &str,
    ctx: &Ctx,
) -> (Option<Pending>, Vec<Effect>) {
    let Some(intent) = ctx.catalog.intent(&req.intent) else {
        return (None, vec![]);
    };
    let Some(param) = intent.param(&missing) else {
        return (None, vec![]);
    };
    if answer(text) == Answer::No
        && matches!(
            text.trim().to_lowercase().as_str(),
            "cancel" | "stop" | "never mind" | "nevermind" | "no" | "abort"
        )
    {
        let audit = Effect::Audit {
            req,
            status: "cancelled",
            detail: format!("gave no {missing}"),
        };
        return (
            None,
            vec![Effect::Say("ok, cancelled; nothing was run".into()), audit],
        );
    }
    // the exact value, a synonym, or a small typo of one; else whatever the slot extractor finds
    let direct = ctx.catalog.parse_value(param, text).ok();
    let fuzzy = || match &param.kind {
        ParamKind::Entity(e) => ctx.catalog.entity(e).and_then(|ent| {
            let t = text.trim().to_lowercase();
            ent.surface_forms()
                .find(|(f, _)| close_enough(&t, &f.to_lowercase()))
                .map(|(_, v)| crate::catalog::Value::Entity(v.to_string()))
        }),
        _ => None,
    };
    let extracted = || {
        slots::extract(ctx.catalog, intent, text)
            .params
            .get(&missing)
            .cloned()
    };
    match direct.or_else(fuzzy).or_else(extracted) {
        Some(v) => {
            req.params.insert(missing, v.to_string());
            (None, vec![Effect::Begin(req)])
        }
        None if tries >= MAX_RETRIES => {
            let audit = Effect::Audit {
                req,
                status: "gave_up",
                detail: format!("no valid {missing} after {} tries", tries + 1),
            };
            (None, vec![Effect::Say(format!("sorry, I still don't have a valid {missing}, so I stopped; try again with {}help {}", ctx.prefix, intent.id)), audit])
        }
        None => {
            let q = format!(
                "'{}' is not a valid {missing}. {}",
                text.trim(),
                question(ctx.catalog, intent, &missing)
            );
            let audit = Effect::Audit {
                req: req.clone(),
                status: "invalid_answer",
                detail: format!("{:?} is not a valid {missing}", text.trim()),
            };
            (
                Some(Pending::Fill {
                    req,
                    missing,
                    tries: tries + 1,
                }),
                vec![Effect::Say(q), audit],
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers() {
        for t in [
            "yes", "Y", "YES!", "confirm", "go", "ok", "yse", "confrim", "Okay.",
        ] {
            assert_eq!(answer(t), Answer::Yes, "{t}");
        }
        for t in ["no", "N", "cancel", "stop", "never mind", "cancle", "Nope"] {
            assert_eq!(answer(t), Answer::No, "{t}");
        }
        for t in ["staging", "maybe", "yesterday", "now", "approve", "deny"] {
            assert_eq!(answer(t), Answer::Other, "{t}");
        }
        // approvals: only approve / deny, except that the requester may withdraw
        assert_eq!(approval_answer("approve", false), Answer::Yes);
        // regression (issue 13): a question is not an answer
        for q in ["confirm?", "do it?", "approve?", "yes?", "go?"] {
            assert_ne!(answer(q), Answer::Yes, "{q}");
            assert_ne!(approval_answer(q, false), Answer::Yes, "{q}");
            assert_ne!(approval_answer(q, true), Answer::Yes, "{q}");
        }
        assert_eq!(approval_answer("Deny", false), Answer::No);
        assert_eq!(approval_answer("yes", false), Answer::Other);
        assert_eq!(approval_answer("cancel", false), Answer::Other);
        assert_eq!(approval_answer("cancel", true), Answer::No);
        assert!(!answers_approval("!status api", false));
    }

    fn catalog() -> Catalog {
        crate::catalog::load_dir(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("intents"))
            .unwrap()
    }

    fn req(intent: &str, params: &[(&str, &str)]) -> Request {
        Request {
            id: "r1".into(),
            intent: intent.into(),
            params: params
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            requester: "shell:alice".into(),
            requester_name: "alice".into(),
            requester_roles: vec![],
            conversation: "shell:local".into(),
            text: String::new(),
            source: "strict".into(),
            asked: 0,
        }
    }

    fn actor(id: &str, may_approve: bool) -> Actor {
        Actor {
            id: id.into(),
            name: id.into(),
            may_approve: if may_approve {
                Ok(())
            } else {
                Err("no".into())
            },
        }
    }

    fn begin_one(
        req: Request,
        ctx: &Ctx,
        preview: Option<String>,
    ) -> (Option<Pending>, Vec<Effect>) {
        begin(Understood::Request { req, preview }, ctx)
    }

    #[test]
    fn begin_decides_by_risk_and_completeness() {
        let c = catalog();
        let ctx = Ctx {
            catalog: &c,
            prefix: "!",
        };
        let (next, fx) = begin_one(req("status", &[("service", "api")]), &ctx, None);
        assert!(next.is_none() && matches!(fx[..], [Effect::Run { .. }]));
        let (next, fx) = begin_one(
            req("deploy", &[("service", "api"), ("env", "staging")]),
            &ctx,
            Some("now 2.4.0".into()),
        );
        assert!(matches!(next, Some(Pending::Confirm { .. })));
        assert!(
            matches!(&fx[0], Effect::Ask { text, .. } if text.contains("(now 2.4.0)? yes / no"))
        );
        let (next, _) = begin_one(
            req("rollback", &[("service", "api"), ("env", "production")]),
            &ctx,
            None,
        );
        assert!(matches!(next, Some(Pending::Approve { .. })));
        let (next, fx) = begin_one(req("restart", &[("service", "api")]), &ctx, None);
        assert!(matches!(next, Some(Pending::Fill { ref missing, .. }) if missing == "env"));
        assert_eq!(
            fx[0],
            Effect::Say("Which environment? production, staging, dev".into())
        );
        // regression (issue 13): a request waiting for a value is audited
        assert!(
            matches!(&fx[1], Effect::Audit { status: "asked", detail, .. } if detail == "waiting for env")
        );
        // a stored value that no longer validates never runs
        let (next, fx) = begin_one(
            req(
                "deploy",
                &[("service", "api; rm -rf /"), ("env", "staging")],
            ),
            &ctx,
            None,
        );
        assert!(next.is_none() && !fx.iter().any(|e| matches!(e, Effect::Run { .. })));
    }

    #[test]
    fn begin_offers_readings_as_a_choice_with_a_button_each() {
        let c = catalog();
        let ctx = Ctx {
            catalog: &c,
            prefix: "!",
        };
        let readings = vec![
            req("restart", &[("service", "api")]),
            req("no.such.command", &[]),
            req("status", &[]),
            req("deploy", &[("service", "web")]),
            req("rollback", &[]),
        ];
        let (next, fx) = begin(Understood::Readings(readings), &ctx);
        let Some(Pending::Choose {
            req: first,
            candidates,
        }) = next
        else {
            panic!("a did-you-mean is a choice: {next:?}")
        };
        assert_eq!(first.intent, "restart");
        // an intent no longer in the catalogue is left out, and at most three are offered
        let offered: Vec<&str> = candidates.iter().map(|r| r.intent.as_str()).collect();
        assert_eq!(offered, ["restart", "status", "deploy"]);
        let [Effect::Ask {
            dialog,
            text,
            choices,
        }] = &fx[..]
        else {
            panic!("{fx:?}")
        };
        assert_eq!(dialog, &first.question_id());
        assert!(
            text.starts_with("not sure what you meant; did you mean:\n1. !restart api"),
            "{text}"
        );
        assert_eq!(choices[0], ("1".to_string(), "!restart api".to_string()));
        assert_eq!(choices.len(), 3);
        // nothing left to offer opens nothing
        let (next, fx) = begin(Understood::Readings(vec![req("gone", &[])]), &ctx);
        assert!(next.is_none() && !fx.iter().any(|e| matches!(e, Effect::Ask { .. })));
    }

    #[test]
    fn step_is_pure_and_decides() {
        let c = catalog();
        let ctx = Ctx {
            catalog: &c,
            prefix: "!",
        };
        let confirm = Pending::Confirm {
            req: req("deploy", &[("service", "api"), ("env", "staging")]),
            preview: String::new(),
        };
        let (next, fx) = step(
            confirm.clone(),
            Input::Text("yes".into()),
            &actor("shell:alice", false),
            &ctx,
        );
        assert!(next.is_none() && fx.iter().any(|e| matches!(e, Effect::Run { confirmed_by: Some(by), .. } if by == "shell:alice")));
        let (next, fx) = step(
            confirm.clone(),
            Input::Text("no, prod".into()),
            &actor("shell:alice", false),
            &ctx,
        );
        assert!(
            next.is_none()
                && fx
                    .iter()
                    .any(|e| matches!(e, Effect::Begin(r) if r.params["env"] == "production"))
        );
        let (next, fx) = step(confirm, Input::Timeout, &actor("opsbot", false), &ctx);
        assert!(
            next.is_none()
                && fx.iter().any(|e| matches!(
                    e,
                    Effect::Audit {
                        status: "expired",
                        ..
                    }
                ))
        );

        let approve = Pending::Approve {
            req: req("rollback", &[("service", "api"), ("env", "production")]),
            preview: String::new(),
        };
        // the requester cannot approve, whatever their roles
        let mut me = actor("shell:alice", false);
        me.may_approve = Err("you cannot approve your own request".into());
        let (next, fx) = step(approve.clone(), Input::Text("approve".into()), &me, &ctx);
        assert!(
            matches!(next, Some(Pending::Approve { .. }))
                && !fx.iter().any(|e| matches!(e, Effect::Run { .. }))
        );
        let (next, fx) = step(
            approve,
            Input::Button("approve".into()),
            &actor("shell:carol", true),
            &ctx,
        );
        assert!(next.is_none() && fx.iter().any(|e| matches!(e, Effect::Run { approved_by: Some(by), .. } if by == "shell:carol")));
    }

    /// The audit statuses among `fx`.
    fn audited(fx: &[Effect]) -> Vec<&'static str> {
        fx.iter()
            .filter_map(|e| match e {
                Effect::Audit { status, .. } => Some(*status),
                _ => None,
            })
            .collect()
    }

    // regression (issue 13): refused input left no audit row
    #[test]
    fn refused_answers_are_audited() {
        let c = catalog();
        let ctx = Ctx {
            catalog: &c,
            prefix: "!",
        };
        let confirm = Pending::Confirm {
            req: req("deploy", &[("service", "api"), ("env", "staging")]),
            preview: String::new(),
        };
        let alice = actor("shell:alice", false);
        let (next, fx) = step(
            confirm,
            Input::Text("hmm, what was the plan for lunch today".into()),
            &alice,
            &ctx,
        );
        assert!(matches!(next, Some(Pending::Confirm { .. })));
        assert_eq!(audited(&fx), ["not_an_answer"]);
        let approve = Pending::Approve {
            req: req("rollback", &[("service", "api"), ("env", "production")]),
            preview: String::new(),
        };
        let (next, fx) = step(
            approve,
            Input::Text("deny".into()),
            &actor("shell:mallory", false),
            &ctx,
        );
        assert!(matches!(next, Some(Pending::Approve { .. })));
        assert_eq!(audited(&fx), ["deny_refused"]);
        let fill = Pending::Fill {
            req: req("restart", &[("service", "api")]),
            missing: "env".into(),
            tries: 0,
        };
        let (next, fx) = step(fill, Input::Text("moon".into()), &alice, &ctx);
        assert!(matches!(next, Some(Pending::Fill { tries: 1, .. })));
        assert_eq!(audited(&fx), ["invalid_answer"]);
    }
}
