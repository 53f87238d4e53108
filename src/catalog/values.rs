//! Typed parameter values: parsing and normalising what people type (`v2.4.1`, `90 minutes`,
//! `#4821`, `twenty`) into the canonical form actions receive. Owns no knowledge of intents; the
//! catalogue decides which parser applies to which parameter.

use serde::Serialize;
use std::fmt;

/// A parameter value after validation and normalisation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Value {
    /// Canonical entity value (`production`, never `prod`).
    Entity(String),
    Integer(i64),
    /// Seconds.
    Duration(u64),
    /// Version without a leading `v`.
    Version(String),
    /// Alert id: digits only.
    Alert(String),
    Text(String),
}

impl Value {
    /// The form substituted into an argv element or a URL.
    pub fn as_arg(&self) -> String {
        match self {
            Value::Entity(s) | Value::Version(s) | Value::Alert(s) | Value::Text(s) => s.clone(),
            Value::Integer(n) => n.to_string(),
            Value::Duration(s) => s.to_string(),
        }
    }

    /// The typed JSON form (numbers stay numbers).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Duration(s) => f.write_str(&format_duration(*s)),
            other => f.write_str(&other.as_arg()),
        }
    }
}

/// Longest raw value accepted for any non-text parameter.
pub const MAX_TOKEN_LEN: usize = 100;

/// Checks shared by every parameter type, run before the type's own parser.
pub fn check_common(raw: &str, max_len: usize) -> Result<(), String> {
    if raw.chars().any(|c| c.is_control()) {
        return Err("contains control characters".into());
    }
    if raw.chars().count() > max_len {
        return Err(format!("is longer than {max_len} characters"));
    }
    Ok(())
}

/// Parses an integer written in digits or in English words up to one hundred.
pub fn parse_integer(raw: &str) -> Option<i64> {
    let s = raw.trim();
    if let Ok(n) = s.parse::<i64>() {
        return Some(n);
    }
    parse_number_words(s)
}

const UNITS: [&str; 20] = [
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
];
const TENS: [&str; 8] = [
    "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety",
];

/// Value of a single number word (`seven`, `forty`, `a`), if it is one.
pub fn number_word(w: &str) -> Option<i64> {
    let w = w.to_ascii_lowercase();
    if let Some(i) = UNITS.iter().position(|u| *u == w) {
        return Some(i as i64);
    }
    if let Some(i) = TENS.iter().position(|t| *t == w) {
        return Some(20 + 10 * i as i64);
    }
    match w.as_str() {
        "hundred" => Some(100),
        "a" | "an" => Some(1),
        _ => None,
    }
}

/// `twenty five`, `twenty-five`, `a hundred`, `one hundred`, `seven`.
pub fn parse_number_words(s: &str) -> Option<i64> {
    let words: Vec<String> = s
        .split(|c: char| c.is_whitespace() || c == '-')
        .filter(|w| !w.is_empty())
        .map(|w| w.to_ascii_lowercase())
        .collect();
    match words.as_slice() {
        [w] if w != "a" && w != "an" => number_word(w),
        [a, h] if h == "hundred" && matches!(a.as_str(), "a" | "one") => Some(100),
        [t, u] => {
            let t = TENS.iter().position(|x| x == t)? as i64;
            let u = UNITS.iter().position(|x| x == u)? as i64;
            (1..=9).contains(&u).then_some(20 + 10 * t + u)
        }
        _ => None,
    }
}

/// Seconds per unit word or suffix.
pub fn duration_unit(u: &str) -> Option<u64> {
    Some(match u.to_ascii_lowercase().as_str() {
        "s" | "sec" | "secs" | "second" | "seconds" => 1,
        "m" | "min" | "mins" | "minute" | "minutes" => 60,
        "h" | "hr" | "hrs" | "hour" | "hours" => 3600,
        "d" | "day" | "days" => 86_400,
        "w" | "wk" | "week" | "weeks" => 604_800,
        _ => return None,
    })
}

/// Parses `15m`, `2h`, `1h30m`, `30 minutes`, `an hour`, `half an hour`, `a day`, `90 minutes`,
/// `twenty minutes` into seconds. A bare number is not a duration (its unit would be a guess).
pub fn parse_duration(raw: &str) -> Option<u64> {
    let s = raw.trim().to_ascii_lowercase();
    if s.is_empty() {
        return None;
    }
    // compact forms: 15m, 1h30m, 90s
    if s.chars().next().is_some_and(|c| c.is_ascii_digit()) && !s.contains(' ') {
        let mut total = 0u64;
        let mut num = String::new();
        let mut unit = String::new();
        let mut parts = Vec::new();
        for c in s.chars() {
            if c.is_ascii_digit() {
                if !unit.is_empty() {
                    parts.push((std::mem::take(&mut num), std::mem::take(&mut unit)));
                }
                num.push(c);
            } else if c.is_ascii_alphabetic() {
                unit.push(c);
            } else {
                return None;
            }
        }
        parts.push((num, unit));
        for (n, u) in parts {
            let n: u64 = n.parse().ok()?;
            total = total.checked_add(n.checked_mul(duration_unit(&u)?)?)?;
        }
        return Some(total);
    }
    let words: Vec<&str> = s.split_whitespace().collect();
    if let ["half", "an" | "a", unit] = words.as_slice() {
        return duration_unit(unit).map(|u| u / 2);
    }
    if let ["an" | "a", unit, "and", "a", "half"] = words.as_slice() {
        return duration_unit(unit).map(|u| u + u / 2);
    }
    let (unit, count) = words.split_last()?;
    let unit = duration_unit(unit)?;
    if count.is_empty() {
        return None; // "hour" alone names no amount
    }
    let n = match count {
        [] | ["a" | "an"] => 1,
        _ => parse_integer(&count.join(" "))?,
    };
    u64::try_from(n).ok()?.checked_mul(unit)
}

/// `7200` -> `2h`, `5400` -> `1h30m`.
pub fn format_duration(secs: u64) -> String {
    if secs == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    let mut rest = secs;
    for (unit, name) in [(86_400, "d"), (3600, "h"), (60, "m"), (1, "s")] {
        if rest >= unit {
            out.push_str(&format!("{}{}", rest / unit, name));
            rest %= unit;
        }
    }
    out
}

/// Semantic version (with optional pre-release and build), a shorter numeric version (`2.4`), or a
/// git sha (7-40 hex digits). A leading `v` is dropped.
pub fn parse_version(raw: &str) -> Option<String> {
    let s = raw.trim();
    let s = s
        .strip_prefix(['v', 'V'])
        .filter(|r| r.starts_with(|c: char| c.is_ascii_digit()))
        .unwrap_or(s);
    if is_git_sha(s) {
        return Some(s.to_ascii_lowercase());
    }
    let (core, rest) = match s.find(['-', '+']) {
        Some(i) => (&s[..i], &s[i..]),
        None => (s, ""),
    };
    let nums: Vec<&str> = core.split('.').collect();
    if nums.is_empty()
        || nums.len() > 3
        || nums
            .iter()
            .any(|n| n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) || n.len() > 9)
    {
        return None;
    }
    if nums.len() < 2 && rest.is_empty() {
        return None; // a bare number is not a version
    }
    if !rest.is_empty() {
        let ok = rest[1..]
            .split(['.', '+', '-'])
            .all(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric()));
        if !ok || rest.len() > 64 {
            return None;
        }
    }
    Some(s.to_string())
}

fn is_git_sha(s: &str) -> bool {
    (7..=40).contains(&s.len())
        && s.bytes().all(|b| b.is_ascii_hexdigit())
        && s.bytes().any(|b| b.is_ascii_alphabetic())
}

/// `4821`, `#4821`, `alert 4821`, `alert #4821` -> `4821`.
pub fn parse_alert(raw: &str) -> Option<String> {
    let s = raw.trim();
    let s = s
        .strip_prefix("alert")
        .or_else(|| s.strip_prefix("Alert"))
        .map(str::trim_start)
        .unwrap_or(s);
    let s = s.strip_prefix('#').unwrap_or(s);
    (!s.is_empty() && s.len() <= 12 && s.bytes().all(|b| b.is_ascii_digit())).then(|| s.to_string())
}

/// Free text: trimmed, bounded, no control characters, nothing that could pass for a flag or a path
/// climbing out of a directory.
pub fn parse_text(raw: &str, max_len: usize) -> Result<String, String> {
    let s = raw.trim();
    check_common(s, max_len)?;
    if s.is_empty() {
        return Err("is empty".into());
    }
    if s.starts_with('-') {
        return Err("must not start with '-'".into());
    }
    if s.split(['/', '\\', ' ']).any(|seg| seg == "..") || s.contains("../") || s.contains("..\\") {
        return Err("must not contain '../'".into());
    }
    if s.starts_with(['/', '\\']) {
        return Err("must not start with '/'".into());
    }
    Ok(s.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        let cases = [
            ("15m", Some(900)),
            ("2h", Some(7200)),
            ("1h30m", Some(5400)),
            ("30 minutes", Some(1800)),
            ("an hour", Some(3600)),
            ("half an hour", Some(1800)),
            ("a day", Some(86_400)),
            ("90 minutes", Some(5400)),
            ("twenty minutes", Some(1200)),
            ("2 days", Some(172_800)),
            ("an hour and a half", Some(5400)),
            ("90", None),
            ("soon", None),
            ("5x", None),
            ("hour", None),
            ("m", None),
            ("", None),
        ];
        for (raw, want) in cases {
            assert_eq!(parse_duration(raw), want, "{raw}");
        }
    }

    #[test]
    fn integers() {
        for (raw, want) in [
            ("5", Some(5)),
            ("twenty", Some(20)),
            ("twenty five", Some(25)),
            ("twenty-five", Some(25)),
            ("a hundred", Some(100)),
            ("one hundred", Some(100)),
            ("zero", Some(0)),
            ("many", None),
            ("a", None),
        ] {
            assert_eq!(parse_integer(raw), want, "{raw}");
        }
    }

    #[test]
    fn versions() {
        for (raw, want) in [
            ("2.4.1", Some("2.4.1")),
            ("v2.4.1", Some("2.4.1")),
            ("3.0.0-rc.1", Some("3.0.0-rc.1")),
            ("1.2.3+build.5", Some("1.2.3+build.5")),
            ("2.4", Some("2.4")),
            ("a1b2c3d", Some("a1b2c3d")),
            ("2", None),
            ("1234567", None),
            ("latest; rm", None),
            ("-rf", None),
            ("../../etc", None),
            ("v", None),
        ] {
            assert_eq!(parse_version(raw).as_deref(), want, "{raw}");
        }
    }

    #[test]
    fn alerts() {
        for (raw, want) in [
            ("4821", Some("4821")),
            ("#4821", Some("4821")),
            ("alert 4821", Some("4821")),
            ("alert #7", Some("7")),
            ("48a1", None),
            ("#", None),
        ] {
            assert_eq!(parse_alert(raw).as_deref(), want, "{raw}");
        }
    }

    #[test]
    fn text_rejects_flags_traversal_and_control() {
        assert!(parse_text("db failover", 200).is_ok());
        assert!(parse_text("--help", 200).is_err());
        assert!(parse_text("../../etc/passwd", 200).is_err());
        assert!(parse_text("foo/..", 200).is_err());
        assert!(parse_text("/etc/passwd", 200).is_err());
        assert!(parse_text("api/web latency", 200).is_ok());
        assert!(parse_text("a\u{0}b", 200).is_err());
        assert!(parse_text(&"x".repeat(201), 200).is_err());
    }

    #[test]
    fn format_durations() {
        assert_eq!(format_duration(7200), "2h");
        assert_eq!(format_duration(5400), "1h30m");
        assert_eq!(format_duration(45), "45s");
    }
}
