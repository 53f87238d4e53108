//! Loading the catalogue from a directory: `entities.toml` plus one `<intent>.toml` per intent.
//! Every problem found is collected (not just the first) with its file, line and a fix, so one run
//! of `opsbot check` shows all that needs mending.

use super::*;
use serde::Deserialize;
use std::collections::BTreeSet;
use std::fs;
use std::path::Path;
use toml::Spanned;

/// The schema version this build reads.
pub const SCHEMA: u32 = 1;

/// One thing wrong with the catalogue.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    pub file: PathBuf,
    pub line: usize,
    pub message: String,
    pub fix: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.file.display(), self.line, self.message)?;
        if !self.fix.is_empty() {
            write!(f, "\n    fix: {}", self.fix)?;
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
#[error("the intent catalogue in {} has {} problem(s):\n{}", .dir.display(), .problems.len(), .problems.iter().map(|p| p.to_string()).collect::<Vec<_>>().join("\n"))]
pub struct LoadError {
    pub dir: PathBuf,
    pub problems: Vec<Problem>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEntities {
    schema: Spanned<u32>,
    #[serde(default)]
    entity: Vec<Spanned<RawEntity>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEntity {
    name: String,
    #[serde(default)]
    description: String,
    values: Vec<Spanned<RawEntityValue>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEntityValue {
    value: String,
    #[serde(default)]
    synonyms: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIntent {
    schema: Spanned<u32>,
    name: Spanned<String>,
    description: String,
    syntax: Spanned<String>,
    risk: Spanned<String>,
    roles: Spanned<Vec<String>>,
    #[serde(default)]
    approvers: Vec<String>,
    confirm_timeout: Option<Spanned<String>>,
    examples: Spanned<Vec<Spanned<String>>>,
    #[serde(default)]
    params: Vec<Spanned<RawParam>>,
    action: Option<Spanned<RawAction>>,
    preview: Option<Spanned<RawAction>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawParam {
    name: String,
    #[serde(rename = "type")]
    kind: Spanned<String>,
    entity: Option<Spanned<String>>,
    min: Option<toml::Value>,
    max: Option<toml::Value>,
    max_len: Option<usize>,
    #[serde(default)]
    required: bool,
    default: Option<toml::Value>,
    #[serde(default)]
    description: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAction {
    #[serde(rename = "type")]
    kind: String,
    // exec
    argv: Option<Vec<String>>,
    workdir: Option<String>,
    #[serde(default)]
    env: Vec<String>,
    // http
    method: Option<String>,
    url: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    body: Option<toml::Value>,
    expect_status: Option<Vec<u16>>,
    // both
    timeout: Option<String>,
    #[serde(default)]
    secrets: Vec<String>,
}

struct Ctx<'a> {
    file: PathBuf,
    src: &'a str,
    problems: &'a mut Vec<Problem>,
}

impl Ctx<'_> {
    fn line_of(&self, offset: usize) -> usize {
        self.src[..offset.min(self.src.len())]
            .bytes()
            .filter(|b| *b == b'\n')
            .count()
            + 1
    }
    fn at(
        &mut self,
        span: std::ops::Range<usize>,
        message: impl Into<String>,
        fix: impl Into<String>,
    ) {
        // a broken file can yield a problem per value: show the first ones and say so once
        let in_file = self.problems.iter().filter(|p| p.file == self.file).count();
        if in_file > MAX_PROBLEMS_PER_FILE {
            return;
        }
        let line = self.line_of(span.start);
        let (message, fix) = if in_file == MAX_PROBLEMS_PER_FILE {
            (
                format!("more than {MAX_PROBLEMS_PER_FILE} problems in this file; the rest are not shown"),
                "fix the problems above and run `opsbot check` again".to_string(),
            )
        } else {
            (message.into(), fix.into())
        };
        self.problems.push(Problem {
            file: self.file.clone(),
            line,
            message,
            fix,
        });
    }
}

/// Problems reported per file at most (then one line says that more were cut).
const MAX_PROBLEMS_PER_FILE: usize = 50;

/// A value quoted in a problem, cut to a readable length.
fn quoted(s: &str) -> String {
    const MAX: usize = 60;
    if s.chars().count() <= MAX {
        s.to_string()
    } else {
        format!("{}…", s.chars().take(MAX).collect::<String>())
    }
}

/// Each placeholder once, in order of first appearance.
fn distinct(t: &Template) -> Vec<&str> {
    let mut seen = BTreeSet::new();
    t.placeholders()
        .into_iter()
        .filter(|p| seen.insert(*p))
        .collect()
}

fn read(path: &Path, problems: &mut Vec<Problem>) -> Option<String> {
    match fs::read_to_string(path) {
        Ok(s) => Some(s),
        Err(e) => {
            problems.push(Problem {
                file: path.to_path_buf(),
                line: 1,
                message: format!("cannot read the file: {e}"),
                fix: "make the file readable UTF-8 text".into(),
            });
            None
        }
    }
}

fn parse_toml<T: for<'de> Deserialize<'de>>(ctx: &mut Ctx, what: &str) -> Option<T> {
    match toml::from_str::<T>(ctx.src) {
        Ok(v) => Some(v),
        Err(e) => {
            let span = e.span().unwrap_or(0..0);
            let mut msg = e.message().trim().replace('\n', "; ");
            if msg.is_empty() {
                // the TOML parser gives no words for some characters (a control character in a
                // comment, say): name what is there
                let bad = ctx.src[span.start.min(ctx.src.len())..]
                    .chars()
                    .next()
                    .map(|c| format!(" U+{:04X}", c as u32))
                    .unwrap_or_default();
                msg = format!("unexpected character{bad} here (control characters are not allowed, not even in comments)");
            }
            ctx.at(
                span,
                format!("invalid {what}: {msg}"),
                "see the intent file reference in README.md",
            );
            None
        }
    }
}

fn check_schema(ctx: &mut Ctx, schema: &Spanned<u32>) {
    if *schema.get_ref() != SCHEMA {
        ctx.at(
            schema.span(),
            format!("schema {} is not supported", schema.get_ref()),
            format!("set `schema = {SCHEMA}`"),
        );
    }
}

/// Loads and validates the catalogue in `dir`. `base` resolves `./` programs (normally `dir`).
pub fn load_dir(dir: &Path) -> Result<Catalog, LoadError> {
    let mut problems = Vec::new();
    // programs and working directories are resolved against the absolute directory, so they stay
    // right whatever the process's working directory is
    let dir = &dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    let entities = load_entities(&dir.join("entities.toml"), &mut problems);
    let mut files: Vec<PathBuf> = match fs::read_dir(dir) {
        Ok(rd) => rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.extension().is_some_and(|x| x == "toml")
                    && p.file_name().is_some_and(|n| n != "entities.toml")
            })
            .collect(),
        Err(e) => {
            problems.push(Problem { file: dir.to_path_buf(), line: 0, message: format!("cannot read the intents directory: {e}"), fix: "point --intents (or `intents` in opsbot.toml) at the directory holding the intent files".into() });
            Vec::new()
        }
    };
    files.sort();
    let mut intents: Vec<Intent> = Vec::new();
    for file in files {
        if let Some(intent) = load_intent(dir, &file, &entities, &mut problems) {
            if let Some(prev) = intents.iter().find(|i| i.id == intent.id) {
                problems.push(Problem {
                    file: file.clone(),
                    line: 1,
                    message: format!(
                        "intent '{}' is also defined in {}",
                        intent.id,
                        prev.file.display()
                    ),
                    fix: "give every intent a unique name".into(),
                });
                continue;
            }
            intents.push(intent);
        }
    }
    if intents.is_empty() && problems.is_empty() {
        problems.push(Problem {
            file: dir.to_path_buf(),
            line: 0,
            message: "no intent files found".into(),
            fix: "add at least one <intent>.toml".into(),
        });
    }
    if problems.is_empty() {
        Ok(Catalog {
            intents,
            entities,
            dir: dir.to_path_buf(),
        })
    } else {
        Err(LoadError {
            dir: dir.to_path_buf(),
            problems,
        })
    }
}

fn load_entities(path: &Path, problems: &mut Vec<Problem>) -> BTreeMap<String, Entity> {
    let mut out = BTreeMap::new();
    let Some(src) = read(path, problems) else {
        return out;
    };
    let mut ctx = Ctx {
        file: path.to_path_buf(),
        src: &src,
        problems,
    };
    let Some(raw) = parse_toml::<RawEntities>(&mut ctx, "entities file") else {
        return out;
    };
    check_schema(&mut ctx, &raw.schema);
    for e in raw.entity {
        let span = e.span();
        let e = e.into_inner();
        if !is_name(&e.name) {
            ctx.at(
                span.clone(),
                format!("entity name '{}' is not a plain lowercase name", e.name),
                "use letters, digits, '_' or '-'",
            );
        }
        if out.contains_key(&e.name) {
            ctx.at(
                span.clone(),
                format!("entity '{}' is defined twice", e.name),
                "merge the two definitions",
            );
        }
        let mut seen: BTreeMap<String, String> = BTreeMap::new();
        let mut values = Vec::new();
        for v in e.values {
            let vspan = v.span();
            let v = v.into_inner();
            for form in std::iter::once(&v.value).chain(&v.synonyms) {
                let key = form.to_lowercase();
                if form.trim().is_empty()
                    || form.chars().any(|c| c.is_control())
                    || form.starts_with('-')
                {
                    ctx.at(
                        vspan.clone(),
                        format!(
                            "entity '{}' has an invalid value or synonym '{form}'",
                            e.name
                        ),
                        "use plain words",
                    );
                } else if let Some(owner) = seen.insert(key, v.value.clone()) {
                    ctx.at(
                        vspan.clone(),
                        format!(
                            "'{form}' names both '{owner}' and '{}' in entity '{}'",
                            v.value, e.name
                        ),
                        "a synonym may name one value only",
                    );
                }
            }
            if !is_name(&v.value) {
                ctx.at(
                    vspan.clone(),
                    format!(
                        "canonical value '{}' of entity '{}' is not a plain lowercase name",
                        v.value, e.name
                    ),
                    "use letters, digits, '_', '-' or '.'",
                );
            }
            values.push(EntityValue {
                value: v.value,
                synonyms: v.synonyms,
            });
        }
        if values.is_empty() {
            ctx.at(
                span,
                format!("entity '{}' has no values", e.name),
                "list its values",
            );
        }
        out.insert(
            e.name.clone(),
            Entity {
                name: e.name,
                description: e.description,
                values,
            },
        );
    }
    out
}

fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.starts_with(|c: char| c.is_ascii_lowercase())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '-' | '.'))
}

fn parse_duration_setting(s: &str) -> Option<Duration> {
    values::parse_duration(s).map(Duration::from_secs)
}

fn load_intent(
    dir: &Path,
    path: &Path,
    entities: &BTreeMap<String, Entity>,
    problems: &mut Vec<Problem>,
) -> Option<Intent> {
    let src = read(path, problems)?;
    let mut ctx = Ctx {
        file: path.to_path_buf(),
        src: &src,
        problems,
    };
    let raw: RawIntent = parse_toml(&mut ctx, "intent file")?;
    let before = ctx.problems.len();
    check_schema(&mut ctx, &raw.schema);
    let name = raw.name.get_ref().clone();
    if !is_name(&name) || name == "help" {
        ctx.at(
            raw.name.span(),
            format!("intent name '{name}' is not allowed"),
            "use a lowercase name (letters, digits, '.', '_', '-'); 'help' is built in",
        );
    }
    let expected_file = format!("{name}.toml");
    if path
        .file_name()
        .is_some_and(|f| f.to_string_lossy() != expected_file)
    {
        ctx.at(
            raw.name.span(),
            format!("intent '{name}' lives in a file of another name"),
            format!("rename the file to {expected_file}"),
        );
    }
    let risk = match raw.risk.get_ref().as_str() {
        "read" => Some(Risk::Read),
        "change" => Some(Risk::Change),
        "dangerous" => Some(Risk::Dangerous),
        other => {
            ctx.at(
                raw.risk.span(),
                format!("unknown risk level '{other}'"),
                "use read, change or dangerous",
            );
            None
        }
    };
    if raw.roles.get_ref().is_empty() {
        ctx.at(
            raw.roles.span(),
            "no roles may run this intent",
            "list the roles allowed, e.g. roles = [\"operator\"]",
        );
    }
    if risk == Some(Risk::Dangerous) && raw.approvers.is_empty() {
        ctx.at(
            raw.risk.span(),
            "a dangerous intent needs approvers",
            "add approvers = [\"<role>\"]",
        );
    }
    let confirm_timeout = raw.confirm_timeout.as_ref().and_then(|t| {
        let d = parse_duration_setting(t.get_ref());
        if d.is_none() {
            ctx.at(
                t.span(),
                format!("confirm_timeout '{}' is not a duration", t.get_ref()),
                "write it like \"120s\" or \"5m\"",
            );
        }
        d
    });

    // parameters; `broken` holds names of parameters already reported as invalid, so that their
    // uses elsewhere in the file do not repeat the same problem
    let mut params: Vec<Param> = Vec::new();
    let mut broken: Vec<String> = Vec::new();
    for rp in &raw.params {
        let span = rp.span();
        let p = rp.get_ref();
        if !is_name(&p.name) || p.name.contains('.') {
            ctx.at(
                span.clone(),
                format!("parameter name '{}' is not a plain lowercase name", p.name),
                "use letters, digits or '_'",
            );
        }
        if params.iter().any(|q| q.name == p.name) {
            ctx.at(
                span.clone(),
                format!("parameter '{}' is defined twice", p.name),
                "remove one",
            );
            continue;
        }
        let int_of = |v: &Option<toml::Value>| v.as_ref().and_then(|v| v.as_integer());
        let kind = match p.kind.get_ref().as_str() {
            "entity" => match &p.entity {
                Some(e) if entities.contains_key(e.get_ref()) => {
                    ParamKind::Entity(e.get_ref().clone())
                }
                Some(e) if entities.is_empty() => {
                    // entities.toml is broken: that problem is already reported
                    broken.push(p.name.clone());
                    let _ = e;
                    continue;
                }
                Some(e) => {
                    let known = entities.keys().cloned().collect::<Vec<_>>().join(", ");
                    broken.push(p.name.clone());
                    let (span, e) = (e.span(), e.get_ref());
                    ctx.at(
                        span,
                        format!("parameter '{}' refers to unknown entity '{e}'", p.name),
                        format!("use one of: {known}, or define it in entities.toml"),
                    );
                    continue;
                }
                None => {
                    ctx.at(
                        span.clone(),
                        format!("entity parameter '{}' names no entity", p.name),
                        "add entity = \"<name>\"",
                    );
                    broken.push(p.name.clone());
                    continue;
                }
            },
            "integer" => {
                let (min, max) = (
                    int_of(&p.min).unwrap_or(i64::MIN),
                    int_of(&p.max).unwrap_or(i64::MAX),
                );
                if p.min.is_none() || p.max.is_none() || min > max {
                    ctx.at(
                        span.clone(),
                        format!(
                            "integer parameter '{}' needs bounds with min <= max",
                            p.name
                        ),
                        "add min = 0 and max = 100 (for example)",
                    );
                }
                ParamKind::Integer { min, max }
            }
            "duration" => {
                let bound = |v: &Option<toml::Value>, dflt: u64| match v {
                    None => Some(dflt),
                    Some(v) => v.as_str().and_then(values::parse_duration),
                };
                match (bound(&p.min, 1), bound(&p.max, 30 * 86_400)) {
                    (Some(min), Some(max)) if min <= max => ParamKind::Duration { min, max },
                    _ => {
                        ctx.at(
                            span.clone(),
                            format!("duration parameter '{}' has bad bounds", p.name),
                            "write bounds like min = \"1m\", max = \"7d\"",
                        );
                        continue;
                    }
                }
            }
            "version" => ParamKind::Version,
            "alert" => ParamKind::Alert,
            "text" => match p.max_len {
                Some(n) if (1..=2000).contains(&n) => ParamKind::Text { max_len: n },
                _ => {
                    ctx.at(
                        span.clone(),
                        format!(
                            "text parameter '{}' needs max_len between 1 and 2000",
                            p.name
                        ),
                        "add max_len = 200",
                    );
                    broken.push(p.name.clone());
                    continue;
                }
            },
            other => {
                ctx.at(
                    p.kind.span(),
                    format!("parameter '{}' has unknown type '{other}'", p.name),
                    "use entity, integer, duration, version, alert or text",
                );
                broken.push(p.name.clone());
                continue;
            }
        };
        let mut param = Param {
            name: p.name.clone(),
            kind,
            required: p.required,
            default: None,
            description: p.description.clone(),
        };
        if let Some(d) = &p.default {
            let raw_default = match d {
                toml::Value::String(s) => s.clone(),
                toml::Value::Integer(n) => n.to_string(),
                other => other.to_string(),
            };
            let tmp = Catalog {
                intents: vec![],
                entities: entities.clone(),
                dir: dir.to_path_buf(),
            };
            match tmp.parse_value(&param, &raw_default) {
                Ok(v) => param.default = Some(v),
                Err(e) => ctx.at(
                    span.clone(),
                    format!("bad default for parameter '{}': {e}", p.name),
                    "give a default that is a valid value of the parameter's type",
                ),
            }
            if p.required {
                ctx.at(
                    span.clone(),
                    format!("parameter '{}' is required and has a default", p.name),
                    "drop `required = true` or the default",
                );
            }
        }
        params.push(param);
    }

    // syntax: `name <req> [opt] ...` naming every parameter once, in positional order
    let syntax = raw.syntax.get_ref().trim().to_string();
    let all_words: Vec<&str> = syntax.split_whitespace().collect();
    let n_cmd = all_words
        .iter()
        .take_while(|w| !w.starts_with(['<', '[']))
        .count();
    if all_words[..n_cmd].join(".") != name {
        ctx.at(
            raw.syntax.span(),
            format!("syntax must start with the command words of '{name}'"),
            format!("write syntax = \"{} ...\"", name.replace('.', " ")),
        );
    }
    let words = all_words[n_cmd..].iter().copied();
    let mut ordered = Vec::new();
    let mut seen_text = false;
    for w in words {
        let (pname, required) =
            if let Some(n) = w.strip_prefix('<').and_then(|w| w.strip_suffix('>')) {
                (n, true)
            } else if let Some(n) = w.strip_prefix('[').and_then(|w| w.strip_suffix(']')) {
                (n, false)
            } else {
                ctx.at(
                    raw.syntax.span(),
                    format!("syntax word '{w}' is neither <param> nor [param]"),
                    "write required parameters as <name> and optional ones as [name]",
                );
                continue;
            };
        match params.iter().position(|p| p.name == pname) {
            None if broken.iter().any(|b| b == pname) => {}
            None => ctx.at(
                raw.syntax.span(),
                format!("syntax names '{pname}', which is not a parameter"),
                "define it under [[params]] or remove it from the syntax",
            ),
            Some(i) => {
                let p = &params[i];
                if p.required != required {
                    let want = if p.required {
                        format!("<{pname}>")
                    } else {
                        format!("[{pname}]")
                    };
                    ctx.at(
                        raw.syntax.span(),
                        format!(
                            "syntax writes '{w}' but the parameter is {}",
                            if p.required { "required" } else { "optional" }
                        ),
                        format!("write {want}"),
                    );
                }
                if seen_text {
                    ctx.at(
                        raw.syntax.span(),
                        format!(
                            "'{pname}' follows a text parameter, which takes the rest of the line"
                        ),
                        "put the text parameter last",
                    );
                }
                seen_text |= matches!(p.kind, ParamKind::Text { .. });
                if ordered.contains(&i) {
                    ctx.at(
                        raw.syntax.span(),
                        format!("syntax names '{pname}' twice"),
                        "name each parameter once",
                    );
                }
                ordered.push(i);
            }
        }
    }
    for (i, p) in params.iter().enumerate() {
        if !ordered.contains(&i) {
            ctx.at(
                raw.syntax.span(),
                format!("parameter '{}' is missing from the syntax", p.name),
                format!(
                    "add {} to the syntax",
                    if p.required {
                        format!("<{}>", p.name)
                    } else {
                        format!("[{}]", p.name)
                    }
                ),
            );
        }
    }
    let params: Vec<Param> = ordered.iter().map(|&i| params[i].clone()).collect();

    // examples
    let examples: Vec<String> = raw
        .examples
        .get_ref()
        .iter()
        .map(|e| e.get_ref().clone())
        .collect();
    if examples.len() < 12 {
        ctx.at(
            raw.examples.span(),
            format!(
                "intent '{name}' has {} examples; at least 12 are needed to learn it",
                examples.len()
            ),
            "add varied example utterances",
        );
    }
    let mut seen_examples = BTreeSet::new();
    for e in raw.examples.get_ref() {
        let t = Template(e.get_ref().clone());
        for ph in distinct(&t) {
            if !params.iter().any(|p| p.name == ph) && !broken.iter().any(|b| b == ph) {
                ctx.at(
                    e.span(),
                    format!(
                        "example '{}' uses {{{}}}, which is not a parameter",
                        quoted(e.get_ref()),
                        quoted(ph)
                    ),
                    "use only the intent's parameter names in placeholders",
                );
            }
        }
        if !seen_examples.insert(e.get_ref().to_lowercase()) {
            ctx.at(
                e.span(),
                format!("example '{}' appears twice", quoted(e.get_ref())),
                "remove the duplicate",
            );
        }
    }

    // action
    let action = match &raw.action {
        None => {
            ctx.at(
                0..0,
                format!("intent '{name}' has no [action]"),
                "add an [action] table (type = \"exec\" or \"http\")",
            );
            None
        }
        Some(a) => load_action(&mut ctx, dir, a, &params, &broken, true),
    };
    let preview = match &raw.preview {
        None => None,
        Some(p) => match load_action(&mut ctx, dir, p, &params, &broken, false) {
            Some(Action::Exec(spec)) => Some(spec),
            Some(Action::Http(_) | Action::Timeline) => {
                ctx.at(
                    p.span(),
                    "a preview must be an exec action",
                    "write [preview] with type = \"exec\" and an argv",
                );
                None
            }
            None => None,
        },
    };
    if ctx.problems.len() > before {
        return None;
    }
    Some(Intent {
        id: IntentId(name),
        description: raw.description,
        syntax,
        params,
        examples,
        risk: risk?,
        roles: raw.roles.into_inner(),
        approvers: raw.approvers,
        confirm_timeout,
        action: action?,
        preview,
        file: path.to_path_buf(),
    })
}

fn check_placeholders(
    ctx: &mut Ctx,
    span: std::ops::Range<usize>,
    t: &Template,
    params: &[Param],
    broken: &[String],
) {
    for ph in distinct(t) {
        if !params.iter().any(|p| p.name == ph) && !broken.iter().any(|b| b == ph) {
            ctx.at(
                span.clone(),
                format!("action uses {{{}}}, which is not a parameter", quoted(ph)),
                "use only the intent's parameter names in placeholders",
            );
        }
    }
}

fn is_env_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
        && !s.starts_with(|c: char| c.is_ascii_digit())
}

fn load_action(
    ctx: &mut Ctx,
    dir: &Path,
    a: &Spanned<RawAction>,
    params: &[Param],
    broken: &[String],
    require_all: bool,
) -> Option<Action> {
    let span = a.span();
    let a = a.get_ref();
    let timeout = match &a.timeout {
        None => Duration::from_secs(30),
        Some(t) => match parse_duration_setting(t) {
            Some(d) if d.as_secs() >= 1 && d.as_secs() <= 3600 => d,
            _ => {
                ctx.at(
                    span.clone(),
                    format!("action timeout '{t}' is not a duration between 1s and 1h"),
                    "write it like \"30s\" or \"5m\"",
                );
                Duration::from_secs(30)
            }
        },
    };
    for s in a.secrets.iter().chain(&a.env) {
        if !is_env_name(s) {
            ctx.at(
                span.clone(),
                format!("'{s}' is not an environment variable name"),
                "use names like MY_TOKEN",
            );
        }
    }
    match a.kind.as_str() {
        "exec" => {
            let argv = a.argv.clone().unwrap_or_default();
            let Some((first, rest)) = argv.split_first() else {
                ctx.at(
                    span,
                    "exec action has no argv",
                    "add argv = [\"program\", \"arg\", ...]",
                );
                return None;
            };
            if !Template(first.clone()).placeholders().is_empty() || first.trim().is_empty() {
                ctx.at(
                    span.clone(),
                    format!("the program '{first}' must be fixed, not a template"),
                    "name the program literally",
                );
            }
            let program = match first.strip_prefix("./") {
                Some(rel) => dir.join(rel),
                None if first.starts_with("../") => dir.join(first),
                None => PathBuf::from(first),
            };
            if program.components().count() > 1 && !program.exists() {
                ctx.at(
                    span.clone(),
                    format!("the program {} does not exist", program.display()),
                    "fix the path (./ is relative to the intents directory)",
                );
            }
            let args: Vec<Template> = rest.iter().map(|s| Template(s.clone())).collect();
            for t in &args {
                check_placeholders(ctx, span.clone(), t, params, broken);
            }
            for p in params.iter().filter(|p| p.required && require_all) {
                if !args
                    .iter()
                    .any(|t| t.placeholders().contains(&p.name.as_str()))
                {
                    ctx.at(
                        span.clone(),
                        format!(
                            "required parameter '{}' is never passed to the action",
                            p.name
                        ),
                        format!("add an argv element with {{{}}}", p.name),
                    );
                }
            }
            let workdir = a
                .workdir
                .as_ref()
                .map(|w| dir.join(w))
                .unwrap_or_else(|| dir.to_path_buf());
            Some(Action::Exec(ExecSpec {
                program,
                args,
                workdir,
                timeout,
                env: a.env.clone(),
                secrets: a.secrets.clone(),
            }))
        }
        "http" => {
            let method = a
                .method
                .clone()
                .unwrap_or_else(|| "POST".into())
                .to_uppercase();
            if !matches!(method.as_str(), "GET" | "POST" | "PUT" | "PATCH" | "DELETE") {
                ctx.at(
                    span.clone(),
                    format!("unsupported HTTP method '{method}'"),
                    "use GET, POST, PUT, PATCH or DELETE",
                );
            }
            let Some(url) = a.url.clone() else {
                ctx.at(span, "http action has no url", "add url = \"https://...\"");
                return None;
            };
            let url = Template(url);
            check_placeholders(ctx, span.clone(), &url, params, broken);
            if !fixed_http_host(&url.0) {
                ctx.at(
                    span.clone(),
                    format!("url '{}' must be http(s) with a fixed host", url.0),
                    "write the scheme and host literally; placeholders only in the path or query",
                );
            }
            let mut headers = Vec::new();
            for (k, v) in &a.headers {
                let t = Template(v.clone());
                check_placeholders(ctx, span.clone(), &t, params, broken);
                for secret in secret_refs(v) {
                    if !a.secrets.iter().any(|s| s == secret) {
                        ctx.at(
                            span.clone(),
                            format!(
                                "header '{k}' uses ${{{secret}}}, which is not listed in secrets"
                            ),
                            format!("add \"{secret}\" to secrets"),
                        );
                    }
                }
                headers.push((k.clone(), t));
            }
            let body = a
                .body
                .as_ref()
                .map(|b| serde_json::to_value(b).unwrap_or(serde_json::Value::Null));
            if let Some(b) = &body {
                for t in json_strings(b) {
                    check_placeholders(ctx, span.clone(), &Template(t), params, broken);
                }
            }
            Some(Action::Http(HttpSpec {
                method,
                url,
                headers,
                body,
                expect_status: a
                    .expect_status
                    .clone()
                    .unwrap_or_else(|| vec![200, 201, 202, 204]),
                timeout,
                secrets: a.secrets.clone(),
            }))
        }
        "timeline" => {
            let extra = a.argv.is_some()
                || a.url.is_some()
                || a.method.is_some()
                || a.body.is_some()
                || !a.headers.is_empty()
                || !a.secrets.is_empty()
                || !a.env.is_empty();
            let since = params.iter().find(|p| p.name == "since");
            if extra || since.is_some_and(|p| !matches!(p.kind, ParamKind::Duration { .. })) {
                ctx.at(
                    span,
                    "the built-in timeline action takes no program, URL or secrets, and at most a duration parameter named since",
                    "write [action] type = \"timeline\" alone, with an optional duration parameter since",
                );
                return None;
            }
            Some(Action::Timeline)
        }
        other => {
            ctx.at(
                span,
                format!("unknown action type '{other}'"),
                "use type = \"exec\", \"http\" or \"timeline\"",
            );
            None
        }
    }
}

/// An http(s) URL whose host (everything up to the first `/`, `?` or `#` after the scheme) is
/// written literally, with no placeholder: parameters may choose a path, never a server.
fn fixed_http_host(url: &str) -> bool {
    let Some((scheme, rest)) = url.split_once("://") else {
        return false;
    };
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    matches!(scheme, "http" | "https") && !host.is_empty() && !host.contains(['{', '}', '$'])
}

/// Names referenced as `${NAME}` in a header template.
pub fn secret_refs(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(i) = rest.find("${") {
        let after = &rest[i + 2..];
        match after.find('}') {
            Some(j) => {
                out.push(&after[..j]);
                rest = &after[j + 1..];
            }
            None => break,
        }
    }
    out
}

fn json_strings(v: &serde_json::Value) -> Vec<String> {
    match v {
        serde_json::Value::String(s) => vec![s.clone()],
        serde_json::Value::Array(a) => a.iter().flat_map(json_strings).collect(),
        serde_json::Value::Object(o) => o.values().flat_map(json_strings).collect(),
        _ => vec![],
    }
}

#[cfg(test)]
mod tests {
    use super::fixed_http_host;

    #[test]
    fn url_hosts_must_be_literal() {
        assert!(fixed_http_host("https://api.example/x/{service}?q={env}"));
        assert!(fixed_http_host("http://127.0.0.1:9093/api"));
        // regression: the first host character of http:// URLs was skipped, and short URLs panicked
        assert!(!fixed_http_host("http://{title}/x"));
        assert!(!fixed_http_host("https://{host}.example/x"));
        assert!(!fixed_http_host("http://"));
        assert!(!fixed_http_host("ftp://example/x"));
        assert!(!fixed_http_host("example/x"));
    }
}
