//! Secret redaction: every secret value known to the process is replaced by `[redacted]` in
//! replies, log lines and audit rows, and so are the forms a program is likely to print it in:
//! upper and lower case, hex, base64 (standard and URL-safe, with or without padding) and
//! URL-encoded.

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
            .flat_map(|v| encodings(&v))
            .collect();
        // longest first, so a secret that contains another is masked whole
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        secrets.dedup();
        Redactor { secrets }
    }

    /// The longest text that is redacted: read this far past a cut so no secret is cut in two.
    pub fn longest(&self) -> usize {
        self.secrets.first().map(|s| s.len()).unwrap_or(0)
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

/// A secret and the forms it is commonly printed in.
fn encodings(secret: &str) -> Vec<String> {
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    use base64::Engine;
    let b = secret.as_bytes();
    let mut out = vec![
        secret.to_string(),
        secret.to_uppercase(),
        secret.to_lowercase(),
        hex::encode(b),
        hex::encode_upper(b),
        STANDARD.encode(b),
        STANDARD_NO_PAD.encode(b),
        URL_SAFE.encode(b),
        URL_SAFE_NO_PAD.encode(b),
        url::form_urlencoded::byte_serialize(b).collect(),
    ];
    // percent-encoding with %20 rather than + for spaces
    out.push(out[9].replace('+', "%20"));
    out.retain(|s| s.len() >= 4);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    // regression (issue 13): encoded and upper-case forms of a secret were printed in clear
    #[test]
    fn redacts_encoded_forms() {
        let secret = "s3cr3t/Token+x";
        std::env::set_var("OPSBOT_TEST_REDACT_FORMS", secret);
        let r = Redactor::from_env(&["OPSBOT_TEST_REDACT_FORMS".to_string()]);
        use base64::Engine;
        for form in [
            secret.to_string(),
            secret.to_uppercase(),
            hex::encode(secret),
            hex::encode_upper(secret),
            base64::engine::general_purpose::STANDARD.encode(secret),
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret),
            url::form_urlencoded::byte_serialize(secret.as_bytes()).collect::<String>(),
        ] {
            let out = r.redact(&format!("value: {form} end"));
            assert_eq!(out, "value: [redacted] end", "{form}");
        }
        assert!(r.longest() >= secret.len() * 2);
    }

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
