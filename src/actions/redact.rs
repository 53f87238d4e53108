//! Secret redaction: every secret value known to the process is replaced by `[redacted]` in
//! replies, log lines and audit rows.

/// Replaces known secret values. Values shorter than 4 bytes are not secrets worth the name and
/// would shred ordinary text, so they are refused at configuration time rather than ignored here.
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    secrets: Vec<String>,
}

pub const MASK: &str = "[redacted]";

impl Redactor {
    /// Reads the values of `names` from the environment (unset ones are skipped).
    pub fn from_env<'a>(names: impl IntoIterator<Item = &'a String>) -> Self {
        let mut secrets: Vec<String> = names
            .into_iter()
            .filter_map(|n| std::env::var(n).ok())
            .filter(|v| v.len() >= 4)
            .collect();
        // longest first, so a secret that contains another is masked whole
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        secrets.dedup();
        Redactor { secrets }
    }

    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_string();
        for s in &self.secrets {
            if out.contains(s.as_str()) {
                out = out.replace(s.as_str(), MASK);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_longest_first() {
        let r = Redactor {
            secrets: vec!["abcdef123".into(), "abcd".into()],
        };
        assert_eq!(
            r.redact("token=abcdef123 and abcd"),
            "token=[redacted] and [redacted]"
        );
        assert_eq!(r.redact("nothing here"), "nothing here");
    }
}
