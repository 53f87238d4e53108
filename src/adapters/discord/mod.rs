//! The Discord adapter (serenity). The only module that names serenity types. It turns addressed
//! messages, button presses and slash commands into [`ChatEvent`]s for the core and renders
//! [`Reply`] values in Discord's idiom: code blocks, attachments for long output, buttons for
//! questions, reactions for progress. It decides nothing: who may do what is the policy's and
//! the bot's business; the adapter only maps Discord ids and roles into a [`Principal`].

use super::{addressed, Addressing, ChatEvent, ConversationId, Principal, Reply};
use crate::bot::Bot;
use crate::catalog::{Catalog, Intent, ParamKind};
mod settings;

use crate::chat::{Outbox, Posted, Sending};
use crate::state::{MessageMap, ShownMessage};
use anyhow::Context as _;
use serenity::all::{
    ActionRow, ActionRowComponent, ButtonStyle, ChannelId, ClientBuilder, Command,
    CommandDataOptionValue, CommandInteraction, CommandOptionType, ComponentInteraction, Context,
    CreateActionRow, CreateAllowedMentions, CreateAttachment, CreateAutocompleteResponse,
    CreateButton, CreateCommand, CreateCommandOption, CreateInteractionResponse,
    CreateInteractionResponseFollowup, CreateInteractionResponseMessage, CreateMessage,
    EditInteractionResponse, EditMessage, EventHandler, GatewayIntents, GuildId, Http, HttpBuilder,
    Interaction, Message, MessageId, ReactionType, Ready, RoleId, User, UserId,
};
pub use settings::{Settings as DiscordSettings, SECTION};
use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The platform name in conversation ids (`discord:<channel>`) and in the state stores.
const PLATFORM: &str = SECTION;

/// Discord's limit on the length of a message, in characters.
pub const MAX_CHARS: usize = 2000;
/// Discord's limit on a button label, in characters.
const MAX_LABEL: usize = 80;
/// Custom ids of opsbot's buttons start with this.
const BUTTON_PREFIX: &str = "opsbot";
/// How long Discord role names are trusted before they are fetched again.
const ROLE_NAMES_TTL: Duration = Duration::from_secs(60);

const WORKING: &str = "⏳";
const DONE: &str = "✅";
const FAILED: &str = "❌";

/// A reply laid out for Discord, independent of serenity so it can be tested on its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// At most [`MAX_CHARS`] characters.
    pub content: String,
    /// (file name, contents) when the reply is too long for a message.
    pub file: Option<(String, String)>,
    pub buttons: Vec<Button>,
    /// A role this message may ping (a routed event's `mention`); nothing else ever pings.
    pub ping_role: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Button {
    pub custom_id: String,
    pub label: String,
    pub style: Style,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    Go,
    Stop,
    Choice,
}

/// Custom ids of event buttons: the prefix, then the strict command line the press sends.
const RUN_PREFIX: &str = "opsbot-run:";
/// Discord's limit on a custom id (counted here in bytes, the stricter reading).
const MAX_CUSTOM_ID: usize = 100;

/// The custom id of an event's button that sends `line` as the presser's request; `None` when
/// the line is too long for one (the message still shows it, to be typed).
pub fn run_button_id(line: &str) -> Option<String> {
    let id = format!("{RUN_PREFIX}{line}");
    (id.len() <= MAX_CUSTOM_ID).then_some(id)
}

/// The command line of an event button's custom id.
pub fn parse_run_button_id(id: &str) -> Option<&str> {
    id.strip_prefix(RUN_PREFIX)
        .filter(|l| !l.trim().is_empty() && !l.chars().any(char::is_control))
}

/// The custom id of the button that answers `choice` to dialog `dialog`.
pub fn button_id(dialog: &str, choice: &str) -> String {
    format!("{BUTTON_PREFIX}:{dialog}:{choice}")
}

/// (dialog, choice) from one of opsbot's button ids.
pub fn parse_button_id(id: &str) -> Option<(&str, &str)> {
    let rest = id.strip_prefix(BUTTON_PREFIX)?.strip_prefix(':')?;
    let (dialog, choice) = rest.split_once(':')?;
    let ok = |s: &str| {
        !s.is_empty() && s.len() <= 40 && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    };
    (ok(dialog) && ok(choice)).then_some((dialog, choice))
}

fn cut(s: &str, max_chars: usize) -> String {
    if s.chars().count() <= max_chars {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max_chars.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// Keeps command output from closing its code block early: no run of three backticks survives.
fn fence_safe(body: &str) -> String {
    body.replace("``", "`\u{200b}`")
}

/// Lays out a reply: code blocks for command output; anything that would not fit in one message
/// goes into an attached text file, with a short note in the message; questions get buttons.
pub fn render(reply: &Reply) -> Rendered {
    let mut buttons = vec![];
    let mut ping_role = None;
    let (inline, file_name, full) = match reply {
        Reply::Notice {
            text,
            mention,
            actions,
        } => {
            buttons = actions
                .iter()
                .filter_map(|(label, line)| {
                    Some(Button {
                        custom_id: run_button_id(line)?,
                        label: cut(label, MAX_LABEL),
                        style: Style::Choice,
                    })
                })
                .collect();
            ping_role = mention.as_deref().and_then(|m| m.parse::<u64>().ok());
            let shown = match ping_role {
                Some(role) => format!("<@&{role}> {text}"),
                None => text.clone(),
            };
            (shown, "event.txt", reply.to_plain())
        }
        Reply::Text(t) => (t.clone(), "reply.txt", t.clone()),
        Reply::Error(t) => (format!("⚠️ {t}"), "reply.txt", format!("error: {t}")),
        Reply::Ask {
            dialog,
            text,
            choices,
        } => {
            buttons = choices
                .iter()
                .map(|(value, label)| Button {
                    custom_id: button_id(dialog, value),
                    label: cut(label, MAX_LABEL),
                    style: match value.as_str() {
                        "confirm" | "approve" => Style::Go,
                        "cancel" | "deny" => Style::Stop,
                        _ => Style::Choice,
                    },
                })
                .collect();
            (text.clone(), "question.txt", text.clone())
        }
        Reply::Output { summary, body, .. } if body.trim().is_empty() => {
            (summary.clone(), "output.txt", summary.clone())
        }
        Reply::Output { summary, body, .. } => (
            format!("{summary}\n```\n{}\n```", fence_safe(body.trim_end())),
            "output.txt",
            format!("{summary}\n\n{body}"),
        ),
    };
    if inline.chars().count() <= MAX_CHARS {
        return Rendered {
            content: inline,
            file: None,
            buttons,
            ping_role,
        };
    }
    let first = match reply {
        Reply::Output { summary, .. } => summary.clone(),
        _ => full.lines().next().unwrap_or_default().to_string(),
    };
    let note = format!(
        "\n(the full text, {} lines, is attached as {file_name})",
        full.lines().count()
    );
    Rendered {
        content: format!("{}{note}", cut(&first, MAX_CHARS - note.chars().count())),
        file: Some((file_name.to_string(), full)),
        buttons,
        ping_role,
    }
}

/// Did the replies end in a refusal or a failure?
fn failed(replies: &[Reply]) -> bool {
    replies
        .iter()
        .any(|r| matches!(r, Reply::Error(_) | Reply::Output { ok: false, .. }))
}

/// The slash command name of an intent (`alerts.ack` -> `alerts-ack`).
pub fn command_name(intent: &Intent) -> String {
    intent.id.0.replace('.', "-")
}

/// The strict command a slash command stands for, so both paths are parsed, validated and
/// audited the same way: `name="value"` for each option, or the bare values when `positional`
/// (for `help`). Values are quoted; a value holding both kinds of quote is refused.
pub fn strict_text(
    prefix: &str,
    command: &str,
    options: &[(String, String)],
    positional: bool,
) -> Result<String, String> {
    let mut s = format!("{prefix}{command}");
    for (name, value) in options {
        if value.chars().any(|c| c.is_control()) {
            return Err(format!("{name}: control characters are not allowed"));
        }
        let quoted = if !value.contains('"') {
            format!("\"{value}\"")
        } else if !value.contains('\'') {
            format!("'{value}'")
        } else {
            return Err(format!("{name}: a value may not hold both kinds of quote"));
        };
        if positional {
            s.push_str(&format!(" {quoted}"));
        } else {
            s.push_str(&format!(" {name}={quoted}"));
        }
    }
    Ok(s)
}

/// The slash commands for a catalogue: one per intent, with typed options (entity values as
/// choices, or autocomplete when there are more than Discord's 25), plus `help`.
fn slash_commands(catalog: &Catalog) -> Vec<CreateCommand> {
    let mut out = vec![CreateCommand::new("help")
        .description("What opsbot can do here")
        .add_option(CreateCommandOption::new(
            CommandOptionType::String,
            "topic",
            "a command to explain",
        ))];
    let valid_name = |n: &str| {
        !n.is_empty()
            && n.chars().count() <= 32
            && n.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
    };
    let mut names: std::collections::HashSet<String> = ["help".to_string()].into();
    for intent in &catalog.intents {
        let name = command_name(intent);
        let bad_param = intent.params.iter().find(|p| !valid_name(&p.name));
        if !valid_name(&name) || bad_param.is_some() || intent.params.len() > 25 || out.len() >= 100
        {
            tracing::error!(intent = %intent.id, "no slash command for this intent: Discord needs names of 1-32 lowercase letters, digits, '-' or '_', at most 25 options and 100 commands; its strict syntax still works");
            continue;
        }
        if !names.insert(name.clone()) {
            tracing::error!(intent = %intent.id, command = %name, "no slash command for this intent: another intent has the same command name");
            continue;
        }
        let description = if intent.description.trim().is_empty() {
            intent.id.0.clone()
        } else {
            intent.description.clone()
        };
        let mut cmd = CreateCommand::new(&name).description(cut(&description, 100));
        // Discord wants required options first
        let mut params: Vec<_> = intent.params.iter().collect();
        params.sort_by_key(|p| !p.required);
        for p in params {
            let desc = cut(
                if p.description.is_empty() {
                    &p.name
                } else {
                    &p.description
                },
                100,
            );
            let mut opt = match &p.kind {
                ParamKind::Integer { min, max } => {
                    let mut o = CreateCommandOption::new(CommandOptionType::Integer, &p.name, desc);
                    if *min >= 0 {
                        o = o
                            .min_int_value(*min as u64)
                            .max_int_value((*max).max(0) as u64);
                    }
                    o
                }
                ParamKind::Entity(e) => {
                    let mut o = CreateCommandOption::new(CommandOptionType::String, &p.name, desc);
                    let values = catalog
                        .entity(e)
                        .map(|e| e.canonical_values())
                        .unwrap_or_default();
                    if values.len() <= 25 {
                        for v in values {
                            o = o.add_string_choice(v, v);
                        }
                    } else {
                        o = o.set_autocomplete(true);
                    }
                    o
                }
                _ => CreateCommandOption::new(CommandOptionType::String, &p.name, desc),
            };
            opt = opt.required(p.required && p.default.is_none());
            cmd = cmd.add_option(opt);
        }
        out.push(cmd);
    }
    out
}

/// A message that asked a question, so its buttons can be disabled when the question closes.
struct Asked {
    channel: ChannelId,
    message: MessageId,
    content: String,
    rows: Vec<ActionRow>,
}

/// The messages that show an open question's buttons, by question id, kept in the
/// application's [`MessageMap`] so that after a restart they are still disabled when their
/// question closes. Best effort: a failure is logged, and a press is checked by the bot
/// regardless.
struct Shown {
    map: Arc<dyn MessageMap>,
}

/// What [`Shown`] keeps of a message besides its ids.
#[derive(Default, serde::Serialize, serde::Deserialize)]
struct Body {
    content: String,
    rows: Vec<ActionRow>,
}

impl Shown {
    /// Remembers the message of `question`.
    fn put(&self, question: &str, a: &Asked) {
        let body = Body {
            content: a.content.clone(),
            rows: a.rows.clone(),
        };
        let shown = ShownMessage {
            place: a.channel.get().to_string(),
            message: a.message.get().to_string(),
            body: serde_json::to_string(&body).unwrap_or_default(),
        };
        if let Err(e) = self.map.put(PLATFORM, question, &shown) {
            tracing::error!(error = %e, "could not remember a question's message");
        }
    }

    /// Removes and returns the message of `question`, if any.
    fn take(&self, question: &str) -> Option<Asked> {
        let shown = match self.map.take(PLATFORM, question) {
            Ok(s) => s?,
            Err(e) => {
                tracing::error!(error = %e, "could not read a question's message");
                return None;
            }
        };
        let id = |s: &str| s.parse::<u64>().ok().filter(|n| *n > 0);
        let (Some(channel), Some(message)) = (id(&shown.place), id(&shown.message)) else {
            tracing::error!(question, "a remembered message has no valid Discord ids");
            return None;
        };
        let body: Body = serde_json::from_str(&shown.body).unwrap_or_default();
        Some(Asked {
            channel: ChannelId::new(channel),
            message: MessageId::new(message),
            content: body.content,
            rows: body.rows,
        })
    }

    /// The questions shown in `channel`.
    fn in_channel(&self, channel: ChannelId) -> Vec<String> {
        self.map
            .questions_in(PLATFORM, &channel.get().to_string())
            .unwrap_or_else(|e| {
                tracing::error!(error = %e, "could not read the questions shown");
                vec![]
            })
    }
}

/// A guild's role names by role id.
type RoleNames = HashMap<RoleId, String>;

struct Handler {
    bot: Arc<Bot>,
    settings: DiscordSettings,
    me: Mutex<Option<UserId>>,
    commands_registered: AtomicBool,
    ticker_started: AtomicBool,
    shown: Arc<Shown>,
    role_names: Mutex<HashMap<GuildId, (Instant, RoleNames)>>,
    /// Set when opsbot paces its own REST calls (serenity's limiter is off with `api_base`).
    pacer: Option<Arc<Pacer>>,
    /// Where the application finds this adapter's outbox once connected (events post there).
    outboxes: Arc<crate::chat::Outboxes>,
    /// Whether a user is in one of the configured servers, and when that was asked.
    members: Mutex<HashMap<UserId, (Instant, bool)>>,
    /// Message ids already handled, newest last (bounded): a gateway resume can deliver the same
    /// MESSAGE_CREATE again, and it must not run an action twice.
    seen: Mutex<(
        std::collections::HashSet<u64>,
        std::collections::VecDeque<u64>,
    )>,
}

/// How many message ids are remembered for [`Handler::first_delivery`].
const SEEN_MESSAGES: usize = 10_000;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Does `[discord.roles]` name any role by name (not by id)?
fn by_name(settings: &DiscordSettings) -> bool {
    settings.roles.keys().any(|k| k.parse::<u64>().is_err())
}

/// The opsbot roles that `[discord.roles]` maps these Discord roles to (by id, or by name where
/// `names` knows it).
fn map_roles(
    settings: &DiscordSettings,
    roles: &[RoleId],
    names: &HashMap<RoleId, String>,
) -> BTreeSet<String> {
    let mut mapped = BTreeSet::new();
    for r in roles {
        let keys = [Some(r.to_string()), names.get(r).cloned()];
        for key in keys.iter().flatten() {
            if let Some(m) = settings.roles.get(key) {
                mapped.extend(m.iter().cloned());
            }
        }
    }
    mapped
}

/// A requester's current roles, asked of Discord: their member record in the configured servers
/// (or, with none configured, in the server of the request's channel). `None` when Discord cannot
/// say.
struct DiscordRoles {
    http: Arc<Http>,
    settings: DiscordSettings,
}

impl DiscordRoles {
    async fn lookup(
        &self,
        user: &super::UserId,
        conversation: &super::ConversationId,
    ) -> Option<Vec<String>> {
        let id: u64 = user.0.strip_prefix("discord:")?.parse().ok()?;
        let user = UserId::new(id);
        let guilds: Vec<GuildId> = if self.settings.guilds.is_empty() {
            let channel = channel_of(conversation)?;
            match channel.to_channel(&self.http).await.ok()? {
                serenity::model::channel::Channel::Guild(c) => vec![c.guild_id],
                // a direct message has no server roles: only [policy.users] counts
                _ => return Some(vec![]),
            }
        } else {
            self.settings
                .guilds
                .iter()
                .map(|g| GuildId::new(*g))
                .collect()
        };
        let mut mapped = BTreeSet::new();
        let mut answered = false;
        for g in guilds {
            match self.http.get_member(g, user).await {
                Ok(m) => {
                    answered = true;
                    let names =
                        if by_name(&self.settings) && self.settings.guilds.contains(&g.get()) {
                            match g.roles(&self.http).await {
                                Ok(r) => r.into_iter().map(|(id, r)| (id, r.name)).collect(),
                                Err(_) => return None,
                            }
                        } else {
                            HashMap::new()
                        };
                    mapped.extend(map_roles(&self.settings, &m.roles, &names));
                }
                Err(serenity::Error::Http(serenity::http::HttpError::UnsuccessfulRequest(r)))
                    if r.status_code.as_u16() == 404 =>
                {
                    // not (or no longer) a member there: no roles from that server
                    answered = true;
                }
                Err(e) => {
                    tracing::error!(user = %user, error = %e, "could not read a member's current roles");
                    return None;
                }
            }
        }
        answered.then(|| mapped.into_iter().collect())
    }
}

impl crate::bot::CurrentRoles for DiscordRoles {
    fn current<'a>(
        &'a self,
        user: &'a super::UserId,
        conversation: &'a super::ConversationId,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Option<Vec<String>>> + Send + 'a>> {
        Box::pin(self.lookup(user, conversation))
    }
}

/// Tries per reply before it counts as lost (pauses of 0.5, 1 and 2 s between them).
const SEND_ATTEMPTS: u32 = 4;

/// Worth trying again: Discord's rate limit (429), its own failures (5xx), or no answer at all.
fn retryable(e: &serenity::Error) -> bool {
    use serenity::http::HttpError;
    match e {
        serenity::Error::Http(HttpError::UnsuccessfulRequest(r)) => {
            r.status_code.as_u16() == 429 || r.status_code.is_server_error()
        }
        serenity::Error::Http(HttpError::Request(_)) => true,
        _ => false,
    }
}

/// Paces REST calls when serenity's own rate limiter is off (with `api_base`): Discord allows
/// 50 requests a second in all, and about five messages per five seconds in one channel.
struct Pacer {
    global: governor::DefaultDirectRateLimiter,
    per_channel: governor::DefaultKeyedRateLimiter<u64>,
}

impl Pacer {
    /// Waits for a turn to call Discord about `channel`.
    async fn wait(&self, channel: ChannelId) {
        self.per_channel.until_key_ready(&channel.get()).await;
        self.global.until_ready().await;
    }

    fn new() -> Pacer {
        use governor::{Quota, RateLimiter};
        use std::num::NonZeroU32;
        let n = |x: u32| NonZeroU32::new(x).expect("non-zero");
        Pacer {
            global: RateLimiter::direct(Quota::per_second(n(50))),
            per_channel: RateLimiter::keyed(
                Quota::with_period(Duration::from_secs(1))
                    .expect("non-zero period")
                    .allow_burst(n(5)),
            ),
        }
    }
}

fn no_pings() -> CreateAllowedMentions {
    CreateAllowedMentions::new()
}

/// No pings, except the one role a routed event names.
fn pings(r: &Rendered) -> CreateAllowedMentions {
    match r.ping_role {
        Some(role) => CreateAllowedMentions::new().roles([RoleId::new(role.max(1))]),
        None => no_pings(),
    }
}

/// Buttons laid out in rows of five, optionally disabled.
fn rows(buttons: &[Button]) -> Vec<CreateActionRow> {
    buttons
        .chunks(5)
        .take(5)
        .map(|chunk| {
            CreateActionRow::Buttons(
                chunk
                    .iter()
                    .map(|b| {
                        CreateButton::new(&b.custom_id)
                            .label(&b.label)
                            .style(match b.style {
                                Style::Go => ButtonStyle::Success,
                                Style::Stop => ButtonStyle::Danger,
                                Style::Choice => ButtonStyle::Primary,
                            })
                    })
                    .collect(),
            )
        })
        .collect()
}

/// The same buttons, disabled.
fn disabled(rows: &[ActionRow]) -> Vec<CreateActionRow> {
    rows.iter()
        .map(|row| {
            CreateActionRow::Buttons(
                row.components
                    .iter()
                    .filter_map(|c| match c {
                        ActionRowComponent::Button(b) => {
                            Some(CreateButton::from(b.clone()).disabled(true))
                        }
                        _ => None,
                    })
                    .collect(),
            )
        })
        .collect()
}

/// Marks a question's message closed: the note added, the buttons disabled.
async fn close(http: &Http, a: Asked, note: &str) {
    let edit = EditMessage::new()
        .content(with_note(&a.content, note))
        .allowed_mentions(no_pings())
        .components(disabled(&a.rows));
    if let Err(e) = a.channel.edit_message(http, a.message, edit).await {
        tracing::error!(channel = %a.channel, error = %e, "could not disable a question's buttons");
    }
}

/// `content` with a note on a line of its own, the whole within Discord's limit (the note is
/// kept; the content is cut if need be).
fn with_note(content: &str, note: &str) -> String {
    let room = MAX_CHARS - note.chars().count() - 1;
    format!("{}\n{note}", cut(content, room))
}

fn b_custom_id(c: &ActionRowComponent) -> Option<&str> {
    match c {
        ActionRowComponent::Button(b) => match &b.data {
            serenity::all::ButtonKind::NonLink { custom_id, .. } => Some(custom_id.as_str()),
            _ => None,
        },
        _ => None,
    }
}

fn conversation(channel: ChannelId) -> ConversationId {
    ConversationId(format!("discord:{channel}"))
}

fn channel_of(conversation: &ConversationId) -> Option<ChannelId> {
    conversation
        .0
        .strip_prefix("discord:")?
        .parse::<u64>()
        .ok()
        .filter(|n| *n > 0)
        .map(ChannelId::new)
}

impl Handler {
    /// Does opsbot listen here, to this user? Direct messages if enabled, and when `guilds` is
    /// set only from a member of one of them; in servers, only the configured ones (when
    /// `guilds` is set) and only the configured channels (when `channels` is set).
    async fn allowed(
        &self,
        http: &Http,
        channel: ChannelId,
        guild: Option<GuildId>,
        user: UserId,
    ) -> bool {
        match guild {
            None if !self.settings.direct_messages => false,
            None if self.settings.guilds.is_empty() => true,
            None => {
                let member = self.member_of_a_guild(http, user).await;
                if !member {
                    tracing::info!(user = %user, "ignored a direct message from someone in none of the configured servers");
                }
                member
            }
            Some(g) => {
                (self.settings.guilds.is_empty() || self.settings.guilds.contains(&g.get()))
                    && (self.settings.channels.is_empty()
                        || self.settings.channels.contains(&channel.get()))
            }
        }
    }

    /// Is `user` a member of one of the configured servers? Asked of Discord, remembered for
    /// five minutes; a failed look-up counts as no (fail closed).
    async fn member_of_a_guild(&self, http: &Http, user: UserId) -> bool {
        if let Some((at, yes)) = lock(&self.members).get(&user) {
            if at.elapsed() < Duration::from_secs(300) {
                return *yes;
            }
        }
        // only a clear answer is remembered: a member (200) or not (404 everywhere); a failure
        // (429, 5xx, network) counts as no this time and is asked again next time
        let mut yes = false;
        let mut clear = true;
        for g in &self.settings.guilds {
            match http.get_member(GuildId::new(*g), user).await {
                Ok(_) => {
                    yes = true;
                    break;
                }
                Err(serenity::Error::Http(serenity::http::HttpError::UnsuccessfulRequest(r)))
                    if r.status_code.as_u16() == 404 => {}
                Err(e) => {
                    clear = false;
                    tracing::warn!(guild = g, user = %user, error = %e, "could not tell whether a user is a member");
                }
            }
        }
        if yes || clear {
            lock(&self.members).insert(user, (Instant::now(), yes));
        }
        yes
    }

    /// The principal for a Discord user: the immutable user id, and the opsbot roles that
    /// `[discord.roles]` maps their Discord roles (by id or by name) to.
    async fn principal(
        &self,
        http: &Http,
        user: &User,
        guild: Option<GuildId>,
        roles: &[RoleId],
    ) -> Principal {
        // role names are only trusted in the configured servers: anyone can name a role "SRE"
        // in a server of their own
        let names = match guild {
            Some(g) if by_name(&self.settings) && self.settings.guilds.contains(&g.get()) => {
                self.role_names(http, g).await
            }
            _ => HashMap::new(),
        };
        let mapped = map_roles(&self.settings, roles, &names);
        Principal {
            id: super::UserId(format!("discord:{}", user.id)),
            display_name: user
                .global_name
                .clone()
                .unwrap_or_else(|| user.name.clone()),
            roles: mapped.into_iter().collect(),
        }
    }

    /// The platform-neutral event for something `user` did in `channel`.
    async fn event(
        &self,
        http: &Http,
        user: &User,
        guild: Option<GuildId>,
        roles: Option<&[RoleId]>,
        channel: ChannelId,
        text: String,
    ) -> ChatEvent {
        ChatEvent {
            conversation: conversation(channel),
            principal: self
                .principal(http, user, guild, roles.unwrap_or_default())
                .await,
            text,
        }
    }

    /// Role names of a guild, fetched at most once a minute. On failure no name maps to
    /// anything (fail closed).
    async fn role_names(&self, http: &Http, guild: GuildId) -> HashMap<RoleId, String> {
        if let Some((at, names)) = lock(&self.role_names).get(&guild) {
            if at.elapsed() < ROLE_NAMES_TTL {
                return names.clone();
            }
        }
        match guild.roles(http).await {
            Ok(roles) => {
                let names: HashMap<RoleId, String> =
                    roles.into_iter().map(|(id, r)| (id, r.name)).collect();
                lock(&self.role_names).insert(guild, (Instant::now(), names.clone()));
                names
            }
            Err(e) => {
                tracing::error!(guild = %guild, error = %e, "could not read the guild's roles; roles mapped by name are not granted");
                HashMap::new()
            }
        }
    }

    async fn react(&self, http: &Http, msg: &Message, emoji: &str) {
        self.pace(msg.channel_id).await;
        let r = ReactionType::Unicode(emoji.to_string());
        if let Err(e) = msg.channel_id.create_reaction(http, msg.id, r).await {
            tracing::warn!(channel = %msg.channel_id, error = %e, "could not add a reaction");
        }
    }

    async fn unreact(&self, http: &Http, msg: &Message, emoji: &str) {
        self.pace(msg.channel_id).await;
        let r = ReactionType::Unicode(emoji.to_string());
        if let Err(e) = msg.channel_id.delete_reaction(http, msg.id, None, r).await {
            tracing::warn!(channel = %msg.channel_id, error = %e, "could not remove a reaction");
        }
    }

    /// Remembers a message that shows a question's buttons.
    fn remember(&self, reply: &Reply, sent: &Message) {
        if let Reply::Ask { dialog, .. } = reply {
            self.shown.put(
                dialog,
                &Asked {
                    channel: sent.channel_id,
                    message: sent.id,
                    content: sent.content.clone(),
                    rows: sent.components.clone(),
                },
            );
        }
    }

    /// Disables the buttons of this channel's questions that a typed answer (or a correction,
    /// which asks anew) has closed.
    async fn close_answered(&self, http: &Http, channel: ChannelId) {
        let conv = conversation(channel);
        let closed = self
            .shown
            .in_channel(channel)
            .into_iter()
            .filter(|q| !self.bot.question_open(&conv, q))
            .filter_map(|q| self.shown.take(&q));
        for a in closed.collect::<Vec<_>>() {
            close(http, a, "→ answered in the chat").await;
        }
    }

    /// Waits for a turn to call Discord about `channel`, when opsbot paces itself (see
    /// [`Pacer`]).
    async fn pace(&self, channel: ChannelId) {
        if let Some(p) = &self.pacer {
            p.wait(channel).await;
        }
    }

    /// Sends one reply to a channel, as an answer to `reference` when given. A 429, a 5xx or a
    /// network error is retried with growing pauses; `false` when the reply was lost for good
    /// (logged).
    async fn send(
        &self,
        http: &Http,
        channel: ChannelId,
        reply: &Reply,
        reference: Option<MessageId>,
    ) -> bool {
        let r = render(reply);
        let mut m = CreateMessage::new()
            .content(&r.content)
            .allowed_mentions(no_pings())
            .components(rows(&r.buttons));
        if let Some(id) = reference {
            m = m.reference_message((channel, id));
        }
        if let Some((name, text)) = &r.file {
            m = m.add_file(CreateAttachment::bytes(text.as_bytes().to_vec(), name));
        }
        let mut pause = Duration::from_millis(500);
        for attempt in 1..=SEND_ATTEMPTS {
            self.pace(channel).await;
            match channel.send_message(http, m.clone()).await {
                Ok(sent) => {
                    self.remember(reply, &sent);
                    return true;
                }
                Err(e) if attempt < SEND_ATTEMPTS && retryable(&e) => {
                    tracing::warn!(channel = %channel, attempt, error = %e, "Discord refused a reply for now; retrying");
                    tokio::time::sleep(pause + Duration::from_millis(rand::random::<u64>() % 250))
                        .await;
                    pause *= 2;
                }
                Err(e) => {
                    tracing::error!(channel = %channel, error = %e, "could not send a reply to Discord; it is lost");
                    return false;
                }
            }
        }
        false
    }

    /// Sends the replies to a slash command: the first replaces the deferred response, the rest
    /// follow it.
    async fn answer_command(&self, http: &Http, c: &CommandInteraction, replies: &[Reply]) {
        for (i, reply) in replies.iter().enumerate() {
            let r = render(reply);
            let sent = if i == 0 {
                let mut m = EditInteractionResponse::new()
                    .content(&r.content)
                    .allowed_mentions(no_pings())
                    .components(rows(&r.buttons));
                if let Some((name, text)) = &r.file {
                    m = m.new_attachment(CreateAttachment::bytes(text.as_bytes().to_vec(), name));
                }
                c.edit_response(http, m).await
            } else {
                let mut m = CreateInteractionResponseFollowup::new()
                    .content(&r.content)
                    .allowed_mentions(no_pings())
                    .components(rows(&r.buttons));
                if let Some((name, text)) = &r.file {
                    m = m.add_file(CreateAttachment::bytes(text.as_bytes().to_vec(), name));
                }
                c.create_followup(http, m).await
            };
            match sent {
                Ok(m) => self.remember(reply, &m),
                Err(e) => {
                    tracing::error!(command = %c.data.name, error = %e, "could not answer a slash command")
                }
            }
        }
    }

    async fn ephemeral(
        &self,
        http: &Http,
        id: serenity::all::InteractionId,
        token: &str,
        text: &str,
    ) {
        let msg = CreateInteractionResponseMessage::new()
            .content(cut(text, MAX_CHARS))
            .ephemeral(true)
            .allowed_mentions(no_pings());
        if let Err(e) = http
            .create_interaction_response(
                id,
                token,
                &CreateInteractionResponse::Message(msg),
                vec![],
            )
            .await
        {
            tracing::error!(error = %e, "could not answer an interaction");
        }
    }

    /// Is this the first delivery of message `id`?
    fn first_delivery(&self, id: u64) -> bool {
        let mut seen = lock(&self.seen);
        if !seen.0.insert(id) {
            return false;
        }
        seen.1.push_back(id);
        if seen.1.len() > SEEN_MESSAGES {
            if let Some(old) = seen.1.pop_front() {
                seen.0.remove(&old);
            }
        }
        true
    }

    async fn on_message(&self, ctx: &Context, msg: &Message) {
        if !self.first_delivery(msg.id.get()) {
            tracing::warn!(message = %msg.id, "the same message was delivered twice; handled once");
            return;
        }
        let me = *lock(&self.me);
        if msg.author.bot || Some(msg.author.id) == me {
            return;
        }
        if !self
            .allowed(&ctx.http, msg.channel_id, msg.guild_id, msg.author.id)
            .await
        {
            return;
        }
        let mut text = msg.content.clone();
        let mentioned = me.is_some_and(|me| msg.mentions.iter().any(|u| u.id == me));
        if let Some(me) = me {
            text = text
                .replace(&format!("<@{me}>"), " ")
                .replace(&format!("<@!{me}>"), " ");
        }
        let how = Addressing {
            direct: msg.guild_id.is_none(),
            mentioned,
        };
        let bot = &self.bot;
        let user = super::UserId(format!("discord:{}", msg.author.id));
        let conv = conversation(msg.channel_id);
        let text = match addressed(&text, bot.name(), bot.prefix(), how) {
            Some(t) => t,
            // "yes" to one's own open question needs no mention
            None if bot.expects_answer(&conv, &user, &text) => text.trim().to_string(),
            None => return,
        };
        if text.is_empty() {
            return;
        }
        let roles = msg.member.as_ref().map(|m| m.roles.as_slice());
        let ev = self
            .event(
                &ctx.http,
                &msg.author,
                msg.guild_id,
                roles,
                msg.channel_id,
                text,
            )
            .await;
        tracing::debug!(user = %ev.principal.id, channel = %msg.channel_id, "message");
        self.react(&ctx.http, msg, WORKING).await;
        let replies = bot.handle(&ev).await;
        let mut lost = false;
        for reply in &replies {
            lost |= !self
                .send(&ctx.http, msg.channel_id, reply, Some(msg.id))
                .await;
        }
        self.unreact(&ctx.http, msg, WORKING).await;
        self.close_answered(&ctx.http, msg.channel_id).await;
        let waiting = matches!(replies.last(), Some(Reply::Ask { .. }));
        if !waiting {
            let mark = if lost || failed(&replies) {
                FAILED
            } else {
                DONE
            };
            self.react(&ctx.http, msg, mark).await;
        }
    }

    /// A button press as the presser's message `text`.
    async fn press_event(&self, ctx: &Context, c: &ComponentInteraction, text: &str) -> ChatEvent {
        let roles = c.member.as_ref().map(|m| m.roles.as_slice());
        self.event(
            &ctx.http,
            &c.user,
            c.guild_id,
            roles,
            c.channel_id,
            text.to_string(),
        )
        .await
    }

    /// A press on an event's button: the presser's own request for the button's command line,
    /// handled exactly as if they had typed it here (policy, confirmation, approval, audit).
    async fn on_run_button(&self, ctx: &Context, c: &ComponentInteraction, line: &str) {
        if let Err(e) = c
            .create_response(&ctx.http, CreateInteractionResponse::Acknowledge)
            .await
        {
            tracing::error!(error = %e, "could not acknowledge a button press");
        }
        let ev = self.press_event(ctx, c, line).await;
        let replies = self.bot.handle(&ev).await;
        for reply in &replies {
            self.send(&ctx.http, c.channel_id, reply, Some(c.message.id))
                .await;
        }
    }

    async fn on_button(&self, ctx: &Context, c: &ComponentInteraction) {
        let run = parse_run_button_id(&c.data.custom_id);
        let answer = parse_button_id(&c.data.custom_id);
        if run.is_none() && answer.is_none() {
            return self
                .ephemeral(&ctx.http, c.id, &c.token, "that button is not one of mine")
                .await;
        }
        if !self
            .allowed(&ctx.http, c.channel_id, c.guild_id, c.user.id)
            .await
        {
            return self
                .ephemeral(
                    &ctx.http,
                    c.id,
                    &c.token,
                    "opsbot does not take answers or requests in this channel",
                )
                .await;
        }
        let Some((dialog, choice)) = answer else {
            // an event's button: the presser's own request
            return self.on_run_button(ctx, c, run.unwrap_or_default()).await;
        };
        let ev = self.press_event(ctx, c, choice).await;
        // the question is taken first (one SQLite statement), so exactly one press wins and the
        // message shows the press that counted; Discord's 3 seconds are easily kept
        let claimed = match self.bot.claim(&ev, dialog, choice) {
            Ok(c) => c,
            Err(refusal) => return self.ephemeral(&ctx.http, c.id, &c.token, &refusal).await,
        };
        let label = c
            .message
            .components
            .iter()
            .flat_map(|r| r.components.iter())
            .find_map(|b| match (b, b_custom_id(b)) {
                (ActionRowComponent::Button(b), Some(id)) if id == c.data.custom_id => {
                    b.label.clone()
                }
                _ => None,
            })
            .unwrap_or_else(|| choice.to_string());
        let update = CreateInteractionResponseMessage::new()
            .content(with_note(
                &c.message.content,
                &format!("→ {label} (<@{}>)", c.user.id),
            ))
            .allowed_mentions(no_pings())
            .components(disabled(&c.message.components));
        if let Err(e) = c
            .create_response(&ctx.http, CreateInteractionResponse::UpdateMessage(update))
            .await
        {
            tracing::error!(error = %e, "could not answer a button press");
        }
        self.shown.take(dialog);
        for reply in &self.bot.answer_claimed(&ev, claimed, choice).await {
            self.send(&ctx.http, c.channel_id, reply, None).await;
        }
    }

    fn intent_for(&self, name: &str) -> Option<&Intent> {
        self.bot
            .catalog()
            .intents
            .iter()
            .find(|i| command_name(i) == name)
    }

    async fn on_command(&self, ctx: &Context, c: &CommandInteraction) {
        if !self
            .allowed(&ctx.http, c.channel_id, c.guild_id, c.user.id)
            .await
        {
            return self
                .ephemeral(
                    &ctx.http,
                    c.id,
                    &c.token,
                    "opsbot does not take commands in this channel",
                )
                .await;
        }
        let words = if c.data.name == "help" {
            "help".to_string()
        } else {
            match self.intent_for(&c.data.name) {
                Some(i) => i.id.0.replace('.', " "),
                None => {
                    return self
                        .ephemeral(
                            &ctx.http,
                            c.id,
                            &c.token,
                            "unknown command; opsbot's commands changed, try /help",
                        )
                        .await
                }
            }
        };
        let options: Vec<(String, String)> = c
            .data
            .options
            .iter()
            .filter_map(|o| {
                let v = match &o.value {
                    CommandDataOptionValue::String(s) => s.clone(),
                    CommandDataOptionValue::Integer(n) => n.to_string(),
                    CommandDataOptionValue::Number(n) => n.to_string(),
                    CommandDataOptionValue::Boolean(b) => b.to_string(),
                    _ => return None,
                };
                Some((o.name.clone(), v))
            })
            .collect();
        let prefix = self.bot.prefix();
        let text = match strict_text(prefix, &words, &options, words == "help") {
            Ok(t) => t,
            Err(e) => return self.ephemeral(&ctx.http, c.id, &c.token, &e).await,
        };
        if let Err(e) = c.defer(&ctx.http).await {
            tracing::error!(command = %c.data.name, error = %e, "could not defer a slash command");
            return;
        }
        let roles = c.member.as_ref().map(|m| m.roles.as_slice());
        let ev = self
            .event(&ctx.http, &c.user, c.guild_id, roles, c.channel_id, text)
            .await;
        let replies = self.bot.handle(&ev).await;
        self.answer_command(&ctx.http, c, &replies).await;
    }

    async fn on_autocomplete(&self, ctx: &Context, c: &CommandInteraction) {
        let mut response = CreateAutocompleteResponse::new();
        if !self
            .allowed(&ctx.http, c.channel_id, c.guild_id, c.user.id)
            .await
        {
            // nothing to offer here
        } else if let (Some(intent), Some(focused)) =
            (self.intent_for(&c.data.name), c.data.autocomplete())
        {
            let typed = focused.value.to_lowercase();
            if let Some(ParamKind::Entity(e)) = intent.param(focused.name).map(|p| &p.kind) {
                if let Some(entity) = self.bot.catalog().entity(e) {
                    let mut values: Vec<&str> = entity.canonical_values();
                    values.sort_by_key(|v| !v.to_lowercase().starts_with(&typed));
                    for v in values
                        .into_iter()
                        .filter(|v| v.to_lowercase().contains(&typed))
                        .take(25)
                    {
                        response = response.add_string_choice(v, v);
                    }
                }
            }
        }
        if let Err(e) = c
            .create_response(&ctx.http, CreateInteractionResponse::Autocomplete(response))
            .await
        {
            tracing::error!(error = %e, "could not answer an autocomplete request");
        }
    }

    /// Registers the catalogue's slash commands (a bulk overwrite: commands no longer in the
    /// catalogue disappear). Per configured guild, else globally.
    async fn register_commands(&self, http: &Http) -> bool {
        let commands = slash_commands(self.bot.catalog());
        let mut ok = true;
        if self.settings.guilds.is_empty() {
            if let Err(e) = Command::set_global_commands(http, commands).await {
                tracing::error!(error = %e, "could not register the slash commands");
                ok = false;
            }
        } else {
            for g in &self.settings.guilds {
                if let Err(e) = GuildId::new(*g).set_commands(http, commands.clone()).await {
                    tracing::error!(guild = g, error = %e, "could not register the slash commands");
                    ok = false;
                }
            }
        }
        ok
    }
}

/// Discord's [`Outbox`]: posts and edits messages in a channel (paced like every other call
/// when opsbot paces itself), and disables the buttons of a question that closed.
struct Poster {
    http: Arc<Http>,
    shown: Arc<Shown>,
    pacer: Option<Arc<Pacer>>,
}

impl Poster {
    async fn pace(&self, channel: ChannelId) {
        if let Some(p) = &self.pacer {
            p.wait(channel).await;
        }
    }
}

impl Outbox for Poster {
    fn platform(&self) -> &str {
        PLATFORM
    }

    fn send<'a>(&'a self, to: &'a ConversationId, reply: &'a Reply) -> Sending<'a, Option<Posted>> {
        Box::pin(async move {
            let channel = channel_of(to)?;
            let r = render(reply);
            let mut m = CreateMessage::new()
                .content(&r.content)
                .allowed_mentions(pings(&r))
                .components(rows(&r.buttons));
            if let Some((name, text)) = &r.file {
                m = m.add_file(CreateAttachment::bytes(text.as_bytes().to_vec(), name));
            }
            self.pace(channel).await;
            match channel.send_message(&self.http, m).await {
                Ok(sent) => Some(Posted {
                    conversation: to.clone(),
                    id: sent.id.to_string(),
                }),
                Err(err) => {
                    tracing::error!(channel = %channel, error = %err, "could not post a message");
                    None
                }
            }
        })
    }

    fn edit<'a>(&'a self, posted: &'a Posted, reply: &'a Reply) -> Sending<'a, bool> {
        Box::pin(async move {
            let (Some(channel), Ok(id)) =
                (channel_of(&posted.conversation), posted.id.parse::<u64>())
            else {
                return false;
            };
            let r = render(reply);
            let edit = EditMessage::new()
                .content(&r.content)
                .allowed_mentions(pings(&r))
                .components(rows(&r.buttons));
            self.pace(channel).await;
            match channel
                .edit_message(&self.http, MessageId::new(id), edit)
                .await
            {
                Ok(_) => true,
                Err(err) => {
                    tracing::error!(channel = %channel, error = %err, "could not edit a message");
                    false
                }
            }
        })
    }

    fn close_question<'a>(&'a self, question: &'a str, note: &'a str) -> Sending<'a, ()> {
        Box::pin(async move {
            if let Some(a) = self.shown.take(question) {
                self.pace(a.channel).await;
                close(&self.http, a, note).await;
            }
        })
    }
}

#[serenity::async_trait]
impl EventHandler for Handler {
    /// READY comes on every (re)connection and once per shard: it only records who the bot is;
    /// commands are registered and the outbox registered once per process.
    async fn ready(&self, ctx: Context, ready: Ready) {
        *lock(&self.me) = Some(ready.user.id);
        tracing::info!(user = %ready.user.name, id = %ready.user.id, guilds = ready.guilds.len(), shard = ?ready.shard, "connected to Discord");
        if !self.ticker_started.swap(true, Ordering::SeqCst) {
            let poster = Arc::new(Poster {
                http: ctx.http.clone(),
                shown: self.shown.clone(),
                pacer: self.pacer.clone(),
            });
            // expiry notices and events routed to Discord conversations post through it from
            // now on (the application's ticker finds it there)
            crate::app::connect(&self.bot, &self.outboxes, poster).await;
        }
        if self.settings.slash_commands
            && !self.commands_registered.load(Ordering::SeqCst)
            && self.register_commands(&ctx.http).await
        {
            self.commands_registered.store(true, Ordering::SeqCst);
            tracing::info!(
                commands = self.bot.catalog().intents.len() + 1,
                "slash commands registered"
            );
        }
    }

    async fn message(&self, ctx: Context, msg: Message) {
        self.on_message(&ctx, &msg).await;
    }

    async fn interaction_create(&self, ctx: Context, interaction: Interaction) {
        match interaction {
            Interaction::Component(c) => self.on_button(&ctx, &c).await,
            Interaction::Command(c) => self.on_command(&ctx, &c).await,
            Interaction::Autocomplete(c) => self.on_autocomplete(&ctx, &c).await,
            _ => {}
        }
    }
}

/// The Discord adapter, as `opsbot run` starts it.
struct Discord(DiscordSettings);

/// Reads `[discord]`, if the configuration has it; its token's variable is a secret.
pub fn configure(
    config: &mut crate::config::Config,
) -> anyhow::Result<Option<Box<dyn super::Adapter>>> {
    let Some(section) = config.section(SECTION) else {
        return Ok(None);
    };
    let settings = DiscordSettings::from_section(section).map_err(|m| config.section_error(m))?;
    // the token is redacted everywhere like any other secret
    config.add_secret(&settings.token_env)?;
    Ok(Some(Box::new(Discord(settings))))
}

impl super::Adapter for Discord {
    fn run(
        self: Box<Self>,
        bot: Arc<Bot>,
        messages: Arc<dyn MessageMap>,
        outboxes: Arc<crate::chat::Outboxes>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = anyhow::Result<()>> + Send>> {
        Box::pin(run(bot, self.0, messages, outboxes))
    }
}

/// Connects to Discord (autosharded) and serves until the connection ends for good or the
/// process is told to stop.
pub async fn run(
    bot: Arc<Bot>,
    settings: DiscordSettings,
    messages: Arc<dyn MessageMap>,
    outboxes: Arc<crate::chat::Outboxes>,
) -> anyhow::Result<()> {
    let token = std::env::var(&settings.token_env).unwrap_or_default();
    let token = token.trim();
    if token.is_empty() {
        anyhow::bail!(
            "the Discord bot token is missing: set the environment variable {} (see README, \"Discord\")",
            settings.token_env
        );
    }
    let mut http = HttpBuilder::new(token);
    if let Some(base) = &settings.api_base {
        // serenity applies the base URL only with its own rate limiter off
        http = http.proxy(base.clone()).ratelimiter_disabled(true);
    }
    let intents = GatewayIntents::GUILDS
        | GatewayIntents::GUILD_MESSAGES
        | GatewayIntents::DIRECT_MESSAGES
        | GatewayIntents::MESSAGE_CONTENT;
    if settings.guilds.is_empty() && settings.roles.keys().any(|k| k.parse::<u64>().is_err()) {
        tracing::warn!("[discord.roles] maps roles by name, but no guilds are configured: names are only trusted in the servers listed in [discord] guilds, so these mappings grant nothing");
    }
    let bot_for_roles = bot.clone();
    let settings_for_roles = settings.clone();
    // with its own limiter off, serenity paces nothing: opsbot does
    let settings_paced = settings.api_base.is_some();
    let handler = Handler {
        bot,
        settings,
        me: Mutex::new(None),
        commands_registered: AtomicBool::new(false),
        ticker_started: AtomicBool::new(false),
        shown: Arc::new(Shown { map: messages }),
        role_names: Mutex::default(),
        seen: Mutex::default(),
        members: Mutex::default(),
        pacer: settings_paced.then(|| Arc::new(Pacer::new())),
        outboxes,
    };
    let mut client = ClientBuilder::new_with_http(http.build(), intents)
        .event_handler(handler)
        .await
        .context("starting the Discord client")?;
    bot_for_roles.set_current_roles(
        PLATFORM,
        Arc::new(DiscordRoles {
            http: client.http.clone(),
            settings: settings_for_roles,
        }),
    );
    let shards = client.shard_manager.clone();
    tokio::spawn(async move {
        stop_signal().await;
        tracing::info!("stopping: closing the Discord connection");
        shards.shutdown_all().await;
    });
    client
        .start_autosharded()
        .await
        .context("the Discord connection failed")?;
    Ok(())
}

async fn stop_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn button_ids_round_trip_and_refuse_strangers() {
        let id = button_id("1a2b3c4d", "confirm");
        assert_eq!(parse_button_id(&id), Some(("1a2b3c4d", "confirm")));
        assert_eq!(parse_button_id("other:1a2b:confirm"), None);
        assert_eq!(parse_button_id("opsbot:1a2b"), None);
        assert_eq!(parse_button_id("opsbot:1a 2b:confirm"), None);
        assert_eq!(parse_button_id("opsbot:1a2b:con:firm"), None);
    }

    #[test]
    fn long_output_becomes_an_attachment() {
        let body: String = (0..400).map(|i| format!("line {i}\n")).collect();
        let r = render(&Reply::Output {
            summary: "logs api".into(),
            body: body.clone(),
            ok: true,
        });
        assert!(r.content.chars().count() <= MAX_CHARS);
        assert!(r.content.starts_with("logs api"));
        let (name, text) = r.file.unwrap();
        assert_eq!(name, "output.txt");
        assert!(text.contains("line 399"));
        let short = render(&Reply::Output {
            summary: "status".into(),
            body: "ok ``` sneaky".into(),
            ok: true,
        });
        assert_eq!(short.file, None);
        assert_eq!(short.content.matches("```").count(), 2, "{}", short.content);
        let huge = render(&Reply::Text("x".repeat(5000)));
        assert!(huge.content.chars().count() <= MAX_CHARS);
        assert_eq!(huge.file.unwrap().1.len(), 5000);
    }

    #[test]
    fn questions_get_buttons_bound_to_their_dialog() {
        let r = render(&Reply::Ask {
            dialog: "abcd1234".into(),
            text: "deploy api?".into(),
            choices: vec![
                ("confirm".into(), "Confirm".into()),
                ("cancel".into(), "Cancel".into()),
            ],
        });
        assert_eq!(r.buttons.len(), 2);
        assert_eq!(r.buttons[0].custom_id, "opsbot:abcd1234:confirm");
        assert_eq!(r.buttons[0].style, Style::Go);
        assert_eq!(r.buttons[1].style, Style::Stop);
    }

    #[test]
    fn slash_options_become_one_strict_line() {
        let opts = vec![
            ("service".to_string(), "api".to_string()),
            ("topic".to_string(), "db failover".to_string()),
        ];
        assert_eq!(
            strict_text("!", "deploy", &opts, false).unwrap(),
            "!deploy service=\"api\" topic=\"db failover\""
        );
        let q = vec![("title".to_string(), "it's \"bad\"".to_string())];
        assert!(strict_text("!", "incident", &q, false).is_err());
        let c = vec![("title".to_string(), "a\nb".to_string())];
        assert!(strict_text("!", "incident", &c, false).is_err());
        let topic = vec![("topic".to_string(), "deploy".to_string())];
        assert_eq!(
            strict_text("!", "help", &topic, true).unwrap(),
            "!help \"deploy\""
        );
    }
}
