//! `[discord]` in opsbot.toml: read and checked here, by the adapter that uses it (the core's
//! configuration only hands the table over, with a way to point errors at their line).

use serde::Deserialize;
use std::collections::BTreeMap;

/// The table's name in opsbot.toml.
pub const SECTION: &str = "discord";

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Raw {
    token_env: Option<String>,
    api_base: Option<String>,
    #[serde(default)]
    guilds: Vec<String>,
    #[serde(default)]
    channels: Vec<String>,
    #[serde(default)]
    roles: BTreeMap<String, Vec<String>>,
    direct_messages: Option<bool>,
    slash_commands: Option<bool>,
}

/// How the Discord adapter connects and whom it listens to.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The environment variable holding the bot token (never the token itself).
    pub token_env: String,
    /// Replaces `https://discord.com` in every REST call and in gateway discovery (an HTTP
    /// proxy in a locked-down network, or a local test double).
    pub api_base: Option<String>,
    /// Servers to register slash commands in (instantly); empty: globally.
    pub guilds: Vec<u64>,
    /// Channels the bot listens in; empty: every channel it can see.
    pub channels: Vec<u64>,
    /// Discord role (id or name) -> opsbot roles.
    pub roles: BTreeMap<String, Vec<String>>,
    /// Whether direct messages are handled.
    pub direct_messages: bool,
    /// Whether slash commands are registered from the catalogue.
    pub slash_commands: bool,
}

impl Settings {
    /// Reads and checks the `[discord]` table; the error names the key it is about
    /// ("discord.api_base ...").
    pub fn from_section(section: &toml::Value) -> Result<Settings, String> {
        let d: Raw = section
            .clone()
            .try_into()
            .map_err(|e: toml::de::Error| format!("discord: {}", e.message().trim()))?;
        let ids = |v: Vec<String>, what: &str| -> Result<Vec<u64>, String> {
            v.into_iter()
                .map(|s| {
                    s.parse::<u64>().ok().filter(|n| *n > 0).ok_or_else(|| {
                        format!("discord.{what}: '{s}' is not a Discord id (a number, as a string)")
                    })
                })
                .collect()
        };
        let token_env = d.token_env.unwrap_or_else(|| "DISCORD_TOKEN".into());
        if token_env.is_empty()
            || !token_env
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
        {
            return Err(format!(
                "discord.token_env '{token_env}' must name an environment variable (A-Z, 0-9, _); the token itself never goes in this file"
            ));
        }
        let api_base = match d.api_base {
            None => None,
            Some(b) => {
                let u = url::Url::parse(&b)
                    .map_err(|e| format!("discord.api_base '{b}' is not a URL: {e}"))?;
                let loopback = matches!(u.host(), Some(url::Host::Ipv4(ip)) if ip.is_loopback())
                    || matches!(u.host(), Some(url::Host::Ipv6(ip)) if ip.is_loopback())
                    || u.host_str() == Some("localhost");
                if u.scheme() == "http" && !loopback {
                    return Err(format!(
                        "discord.api_base '{b}': plain http only to this machine (127.0.0.1, localhost); the bot token travels with every request, so use https"
                    ));
                }
                if !matches!(u.scheme(), "http" | "https")
                    || u.host_str().is_none()
                    || u.query().is_some()
                    || u.path() != "/"
                {
                    return Err(format!(
                        "discord.api_base '{b}' must be an http(s) origin such as \"http://127.0.0.1:8080\" (no path)"
                    ));
                }
                Some(b.trim_end_matches('/').to_string())
            }
        };
        for (role, mapped) in &d.roles {
            if role.trim().is_empty() || mapped.is_empty() {
                return Err(format!(
                    "discord.roles: '{role}' must map a Discord role id or name to at least one opsbot role"
                ));
            }
        }
        Ok(Settings {
            token_env,
            api_base,
            guilds: ids(d.guilds, "guilds")?,
            channels: ids(d.channels, "channels")?,
            roles: d.roles,
            direct_messages: d.direct_messages.unwrap_or(true),
            slash_commands: d.slash_commands.unwrap_or(true),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_checked() {
        let parse = |s: &str| Settings::from_section(&toml::from_str::<toml::Value>(s).unwrap());
        let ok = parse("guilds = [\"42\"]\napi_base = \"http://127.0.0.1:9\"\n").unwrap();
        assert_eq!(ok.guilds, [42]);
        assert_eq!(ok.token_env, "DISCORD_TOKEN");
        for (src, want) in [
            ("tokn_env = \"X\"\n", "discord: unknown field `tokn_env`"),
            (
                "guilds = [\"abc\"]\n",
                "discord.guilds: 'abc' is not a Discord id",
            ),
            (
                "api_base = \"http://example.com\"\n",
                "discord.api_base 'http://example.com': plain http only",
            ),
            (
                "token_env = \"my token\"\n",
                "discord.token_env 'my token' must name",
            ),
        ] {
            let e = parse(src).unwrap_err();
            assert!(e.starts_with(want), "{src}: {e}");
        }
    }
}
