//! Strict command syntax: `!deploy api staging 2.4.1`, `!deploy service=api env=staging`, quoted
//! values, synonyms. Exact by design: a strict command either parses completely, with every value
//! validated by type, or is refused with a message that says what was wrong and shows the usage.

use crate::catalog::{Catalog, Intent, ParamKind, Params, ValueError};

/// A parsed strict command.
#[derive(Debug, Clone)]
pub enum Strict<'c> {
    Help { topic: Option<String> },
    Command { intent: &'c Intent, params: Params },
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StrictError {
    #[error("empty command; try {prefix}help")]
    Empty { prefix: String },
    #[error("unbalanced quotes in the command")]
    Quotes,
    #[error("unknown command '{name}'{}", .suggestion.as_ref().map(|s| format!("; did you mean {s}?")).unwrap_or_default())]
    UnknownCommand {
        name: String,
        suggestion: Option<String>,
    },
    #[error("{message}\nusage: {usage}")]
    Usage { message: String, usage: String },
}

/// Splits a command line into words at white space; single or double quotes group words (`"30
/// minutes"`) and are removed. Nothing else is special: no escapes, comments or expansions.
pub fn split_words(s: &str) -> Result<Vec<String>, StrictError> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    for c in s.chars() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => word.push(c),
            None if c == '"' || c == '\'' => {
                quote = Some(c);
                in_word = true;
            }
            None if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            None => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if quote.is_some() {
        return Err(StrictError::Quotes);
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

/// Parses `body`, the text after the prefix. `prefix` is only used in messages.
pub fn parse<'c>(
    catalog: &'c Catalog,
    body: &str,
    prefix: &str,
) -> Result<Strict<'c>, StrictError> {
    let words = split_words(body)?;
    let Some((name, args)) = words.split_first() else {
        return Err(StrictError::Empty {
            prefix: prefix.to_string(),
        });
    };
    if name.eq_ignore_ascii_case("help") {
        return Ok(Strict::Help {
            topic: args.first().cloned(),
        });
    }
    // `alerts.list` may also be written as two words: `alerts list`
    let (intent, args) = match catalog.intent(name) {
        Some(i) => (i, args),
        None => match args.split_first().and_then(|(second, rest)| {
            catalog
                .intent(&format!("{name}.{second}"))
                .map(|i| (i, rest))
        }) {
            Some(found) => found,
            None => {
                return Err(StrictError::UnknownCommand {
                    name: name.clone(),
                    suggestion: closest_command(catalog, name)
                        .map(|i| format!("{prefix}{}", i.syntax)),
                });
            }
        },
    };
    let usage = intent.usage(prefix);
    let fail = |message: String| StrictError::Usage {
        message,
        usage: usage.clone(),
    };
    let mut params = Params::new();
    // named values first: `key=value` where key is one of the intent's parameters
    let mut positional: Vec<&str> = Vec::new();
    for arg in args {
        match arg.split_once('=') {
            Some((key, raw)) if intent.param(&key.to_ascii_lowercase()).is_some() => {
                let param = intent
                    .param(&key.to_ascii_lowercase())
                    .expect("checked above");
                if params.contains_key(&param.name) {
                    return Err(fail(format!("{} is given twice", param.name)));
                }
                let value = catalog
                    .parse_value(param, raw)
                    .map_err(|e| fail(describe_value_error(catalog, e)))?;
                params.insert(param.name.clone(), value);
            }
            Some((key, _))
                if !key.is_empty()
                    && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                    && intent
                        .params
                        .iter()
                        .all(|p| !matches!(p.kind, ParamKind::Text { .. })) =>
            {
                return Err(fail(format!("{} has no parameter '{key}'", intent.id)));
            }
            _ => positional.push(arg.as_str()),
        }
    }
    // then positional values in syntax order; an optional parameter whose type does not fit the
    // next value is skipped, and a text parameter takes the rest of the line
    let mut rest = positional.as_slice();
    let mut first_error: Option<String> = None;
    let unnamed: Vec<_> = intent
        .params
        .iter()
        .filter(|p| !params.contains_key(&p.name))
        .collect();
    for param in unnamed {
        let Some((arg, after)) = rest.split_first() else {
            break;
        };
        if let ParamKind::Text { .. } = param.kind {
            let value = catalog
                .parse_value(param, &rest.join(" "))
                .map_err(|e| fail(describe_value_error(catalog, e)))?;
            params.insert(param.name.clone(), value);
            rest = &[];
            break;
        }
        match catalog.parse_value(param, arg) {
            Ok(value) => {
                params.insert(param.name.clone(), value);
                rest = after;
                first_error = None;
            }
            Err(e) => {
                let message = describe_value_error(catalog, e);
                if param.required {
                    return Err(fail(first_error.unwrap_or(message)));
                }
                first_error.get_or_insert(message);
            }
        }
    }
    if let Some(arg) = rest.first() {
        return Err(fail(first_error.unwrap_or_else(|| {
            format!("too many values: '{arg}' is left over")
        })));
    }
    if let Err(missing) = catalog.complete(intent, &mut params) {
        let p = intent
            .param(&missing)
            .expect("complete returns a parameter name");
        return Err(fail(format!("missing {missing} ({})", p.kind.describe())));
    }
    Ok(Strict::Command { intent, params })
}

fn describe_value_error(catalog: &Catalog, e: ValueError) -> String {
    match &e {
        ValueError::UnknownEntity { entity, raw, .. } => {
            let near = catalog.entity(entity).and_then(|ent| {
                ent.surface_forms()
                    .map(|(form, canon)| {
                        (
                            strsim::normalized_damerau_levenshtein(&raw.to_lowercase(), form),
                            canon,
                        )
                    })
                    .filter(|(s, _)| *s >= 0.6)
                    .max_by(|a, b| a.0.total_cmp(&b.0))
                    .map(|(_, c)| c.to_string())
            });
            match near {
                Some(c) => format!("{e}; did you mean '{c}'?"),
                None => e.to_string(),
            }
        }
        _ => e.to_string(),
    }
}

/// The command whose name is closest to `name`, if any is close enough to suggest.
pub fn closest_command<'c>(catalog: &'c Catalog, name: &str) -> Option<&'c Intent> {
    let name = name.to_lowercase();
    catalog
        .intents
        .iter()
        .map(|i| (strsim::normalized_damerau_levenshtein(&name, &i.id.0), i))
        .filter(|(s, _)| *s >= 0.5)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, i)| i)
}

#[cfg(test)]
mod tests {
    use super::split_words;

    #[test]
    fn splitting() {
        assert_eq!(split_words("ack #4821").unwrap(), ["ack", "#4821"]);
        assert_eq!(
            split_words(" a  \"b c\" 'd e'f ").unwrap(),
            ["a", "b c", "d ef"]
        );
        assert_eq!(split_words("x \"\"").unwrap(), ["x", ""]);
        assert_eq!(split_words("$(x) `y`").unwrap(), ["$(x)", "`y`"]);
        assert!(split_words("a \"b").is_err());
    }
}
