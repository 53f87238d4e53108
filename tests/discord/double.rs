//! A test double of Discord: the REST API and the gateway websocket, on 127.0.0.1, as much as
//! opsbot uses. It records every REST call, keeps the messages the bot posts (so buttons can be
//! pressed on them), and lets a test play users: send messages, press buttons, run slash
//! commands, drop the connection. Formats follow Discord's API v10 as serenity reads it.

use axum::body::Bytes;
use axum::extract::ws::{Message as WsMessage, WebSocket, WebSocketUpgrade};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

pub const BOT_ID: u64 = 900_000_000_000_000_001;
pub const APP_ID: u64 = 900_000_000_000_000_002;
pub const GUILD: u64 = 900_000_000_000_000_003;
pub const CHANNEL: u64 = 900_000_000_000_000_004;
pub const TOKEN: &str = "test-token-not-a-real-one-0123456789";

/// One REST call the bot made.
#[derive(Debug, Clone)]
pub struct Call {
    pub method: String,
    /// Path without the `/api/v10` prefix, e.g. `/channels/1/messages`.
    pub path: String,
    /// The JSON body (for multipart: the `payload_json` part).
    pub body: Value,
    /// Attached files: (file name, contents).
    pub files: Vec<(String, String)>,
    pub authorization: String,
}

#[derive(Default)]
struct Inner {
    calls: Vec<Call>,
    messages: Vec<Value>,
    next_id: u64,
    identifies: usize,
    readies: usize,
    gateway: Option<mpsc::UnboundedSender<Frame>>,
    seq: u64,
    roles: Vec<(u64, String)>,
    /// Discord is down for message posts (500)
    fail_posts: bool,
    fail_next: usize,
    fail_with_429: bool,
    /// interaction token -> the message whose button was pressed
    pressed: std::collections::HashMap<String, String>,
    /// interaction token -> the response message of a slash command
    originals: std::collections::HashMap<String, String>,
    /// interaction token -> when it was sent (Discord wants an answer within 3 seconds)
    sent_at: std::collections::HashMap<String, Instant>,
    /// what Discord would have refused: (call, reason)
    violations: Vec<String>,
    /// Users who are members of the configured guild, as GET .../members/{user} answers; a user
    /// not listed gets 404 Unknown Member.
    members: std::collections::HashMap<u64, Value>,
    outsiders: std::collections::HashSet<u64>,
    /// The last MESSAGE_CREATE sent, for [`Discord::redeliver_last`].
    last_message: Option<Value>,
}

enum Frame {
    Dispatch(&'static str, Value),
    Drop,
}

#[derive(Clone)]
pub struct Double {
    inner: Arc<Mutex<Inner>>,
    pub base: String,
}

/// A user the test plays.
#[derive(Debug, Clone)]
pub struct Person {
    pub id: u64,
    pub name: &'static str,
    pub roles: Vec<u64>,
    pub bot: bool,
}

impl Person {
    pub fn new(id: u64, name: &'static str, roles: &[u64]) -> Person {
        Person {
            id,
            name,
            roles: roles.to_vec(),
            bot: false,
        }
    }

    fn user(&self) -> Value {
        user_json(self.id, self.name, self.bot)
    }

    fn member(&self) -> Value {
        json!({
            "user": self.user(),
            "roles": self.roles.iter().map(|r| r.to_string()).collect::<Vec<_>>(),
            "joined_at": "2026-01-01T00:00:00.000000+00:00",
            "deaf": false, "mute": false, "flags": 0, "permissions": "0"
        })
    }
}

fn user_json(id: u64, name: &str, bot: bool) -> Value {
    json!({"id": id.to_string(), "username": name, "discriminator": "0", "global_name": name,
           "avatar": null, "bot": bot})
}

fn lock(m: &Mutex<Inner>) -> std::sync::MutexGuard<'_, Inner> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Double {
    /// Starts the double on a free port of 127.0.0.1, on the caller's tokio runtime.
    pub async fn start() -> Double {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let inner = Arc::new(Mutex::new(Inner {
            next_id: 950_000_000_000_000_000,
            roles: vec![(700, "SRE".into()), (701, "Release Managers".into())],
            ..Default::default()
        }));
        let double = Double { inner, base };
        let app = Router::new()
            .route("/gateway", get(gateway))
            .fallback(rest)
            .with_state(double.clone());
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        double
    }

    fn id(&self) -> u64 {
        let mut i = lock(&self.inner);
        i.next_id += 1;
        i.next_id
    }

    /// Makes every message post fail with a server error (or work again).
    /// The next `n` message posts fail: 429 (with Retry-After) when `rate_limited`, else 500.
    pub fn fail_next_posts(&self, n: usize, rate_limited: bool) {
        let mut inner = lock(&self.inner);
        inner.fail_next = n;
        inner.fail_with_429 = rate_limited;
    }

    pub fn fail_posts(&self, fail: bool) {
        lock(&self.inner).fail_posts = fail;
    }

    pub fn calls(&self) -> Vec<Call> {
        lock(&self.inner).calls.clone()
    }

    pub fn readies(&self) -> usize {
        lock(&self.inner).readies
    }

    pub fn identifies(&self) -> usize {
        lock(&self.inner).identifies
    }

    /// Waits (up to `secs`) for the first call after `skip` for which `pick` holds.
    pub async fn wait_call(&self, skip: usize, secs: u64, pick: impl Fn(&Call) -> bool) -> Call {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(c) = self.calls().into_iter().skip(skip).find(|c| pick(c)) {
                return c;
            }
            assert!(
                Instant::now() < deadline,
                "the bot never made the expected call; calls so far:\n{}",
                self.calls()
                    .iter()
                    .map(|c| format!("{} {} {}", c.method, c.path, c.body))
                    .collect::<Vec<_>>()
                    .join("\n")
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until READY was sent `n` times.
    pub async fn wait_ready(&self, n: usize, secs: u64) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while self.readies() < n {
            assert!(
                Instant::now() < deadline,
                "the bot did not connect ({} READY sent)",
                self.readies()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Payloads Discord would have refused, and interactions answered too late.
    pub fn violations(&self) -> Vec<String> {
        lock(&self.inner).violations.clone()
    }

    fn dispatch(&self, t: &'static str, d: Value) {
        if let Some(token) = d["token"].as_str() {
            lock(&self.inner)
                .sent_at
                .insert(token.to_string(), Instant::now());
        }
        let tx = lock(&self.inner)
            .gateway
            .clone()
            .expect("no gateway connection");
        tx.send(Frame::Dispatch(t, d))
            .expect("the gateway connection is gone");
    }

    /// Drops the gateway connection, as a network failure would.
    pub fn drop_connection(&self) {
        if let Some(tx) = lock(&self.inner).gateway.take() {
            let _ = tx.send(Frame::Drop);
        }
    }

    /// A user writes `content` in the test channel. `mentions_bot` adds the bot to the
    /// mentions, as Discord does for `<@bot>`. Returns the message id.
    pub fn say(&self, who: &Person, content: &str, mentions_bot: bool) -> u64 {
        self.say_in(who, content, mentions_bot, CHANNEL, Some(GUILD))
    }

    /// A user writes in `channel` of `guild` (None: a direct message channel).
    pub fn say_in(
        &self,
        who: &Person,
        content: &str,
        mentions_bot: bool,
        channel: u64,
        guild: Option<u64>,
    ) -> u64 {
        let id = self.id();
        let mentions = if mentions_bot {
            vec![user_json(BOT_ID, "opsbot", true)]
        } else {
            vec![]
        };
        if !who.bot {
            lock(&self.inner)
                .members
                .entry(who.id)
                .or_insert_with(|| who.member());
        }
        let mut msg = message_json(id, channel, &who.user(), content);
        msg["mentions"] = json!(mentions);
        if let Some(g) = guild {
            msg["guild_id"] = json!(g.to_string());
            let mut member = who.member();
            member.as_object_mut().unwrap().remove("user");
            msg["member"] = member;
        }
        lock(&self.inner).last_message = Some(msg.clone());
        self.dispatch("MESSAGE_CREATE", msg);
        id
    }

    /// `who` leaves the guild (or was never in it): member look-ups find nothing.
    pub fn not_a_member(&self, who: &Person) {
        let mut inner = lock(&self.inner);
        inner.members.remove(&who.id);
        inner.outsiders.insert(who.id);
    }

    /// `who` now holds these roles in the guild (member look-ups say so).
    pub fn set_member_roles(&self, who: &Person, roles: &[u64]) {
        let mut p = who.clone();
        p.roles = roles.to_vec();
        lock(&self.inner).members.insert(who.id, p.member());
    }

    /// Delivers the last user message again, as a gateway resume may.
    pub fn redeliver_last(&self) {
        let msg = lock(&self.inner)
            .last_message
            .clone()
            .expect("no message yet");
        self.dispatch("MESSAGE_CREATE", msg);
    }

    /// A message the bot posted, as Discord keeps it.
    pub fn message(&self, id: &str) -> Value {
        lock(&self.inner)
            .messages
            .iter()
            .find(|m| m["id"] == id)
            .cloned()
            .unwrap_or_else(|| panic!("no message {id}"))
    }

    /// The id of the newest message the bot posted with this content.
    pub fn find_message(&self, content: &str) -> String {
        lock(&self.inner)
            .messages
            .iter()
            .rev()
            .find(|m| m["content"] == content)
            .and_then(|m| m["id"].as_str().map(str::to_string))
            .unwrap_or_else(|| panic!("no message with content {content:?}"))
    }

    /// `who` presses the button `custom_id` on message `message_id`.
    pub fn press(&self, who: &Person, message_id: &str, custom_id: &str) -> String {
        self.press_in(who, message_id, custom_id, CHANNEL)
    }

    /// A press that arrives from `channel` (a forged or misrouted interaction, when that is not
    /// the message's channel).
    pub fn press_in(
        &self,
        who: &Person,
        message_id: &str,
        custom_id: &str,
        channel: u64,
    ) -> String {
        let message = self.message(message_id);
        let id = self.id();
        let token = format!("itoken{id}");
        let mut i = interaction_json(id, &token, 3, who);
        i["channel_id"] = json!(channel.to_string());
        i["message"] = message;
        i["data"] = json!({"custom_id": custom_id, "component_type": 2});
        lock(&self.inner)
            .pressed
            .insert(token.clone(), message_id.to_string());
        self.dispatch("INTERACTION_CREATE", i);
        token
    }

    /// `who` runs slash command `name` with (option, value) pairs (strings, or integers).
    pub fn slash(&self, who: &Person, name: &str, options: Value) -> String {
        let id = self.id();
        let token = format!("itoken{id}");
        let mut i = interaction_json(id, &token, 2, who);
        i["data"] =
            json!({"id": self.id().to_string(), "name": name, "type": 1, "options": options});
        self.dispatch("INTERACTION_CREATE", i);
        token
    }

    /// `who` is typing option values of slash command `name`; one option is `focused`.
    pub fn autocomplete(&self, who: &Person, name: &str, options: Value) -> String {
        let id = self.id();
        let token = format!("itoken{id}");
        let mut i = interaction_json(id, &token, 4, who);
        i["data"] =
            json!({"id": self.id().to_string(), "name": name, "type": 1, "options": options});
        self.dispatch("INTERACTION_CREATE", i);
        token
    }

    /// Stores a message the bot created and returns it as Discord would.
    fn create_message(&self, channel: u64, body: &Value, files: &[(String, String)]) -> Value {
        let id = self.id();
        let mut msg = message_json(
            id,
            channel,
            &user_json(BOT_ID, "opsbot", true),
            body["content"].as_str().unwrap_or(""),
        );
        msg["components"] = echo_components(&body["components"]);
        msg["attachments"] = json!(files
            .iter()
            .enumerate()
            .map(|(n, (name, text))| json!({"id": (id + 1 + n as u64).to_string(), "filename": name, "size": text.len(),
                "url": "http://127.0.0.1/x", "proxy_url": "http://127.0.0.1/x"}))
            .collect::<Vec<_>>());
        lock(&self.inner).messages.push(msg.clone());
        msg
    }

    fn edit_message(&self, id: &str, body: &Value) -> Value {
        let mut inner = lock(&self.inner);
        let Some(m) = inner.messages.iter_mut().find(|m| m["id"] == id) else {
            return json!({"message": "Unknown Message", "code": 10008});
        };
        if let Some(c) = body.get("content") {
            m["content"] = c.clone();
        }
        if body.get("components").is_some() {
            m["components"] = echo_components(&body["components"]);
        }
        m.clone()
    }
}

/// Components as Discord returns them (the request's, with the defaults filled in).
fn echo_components(v: &Value) -> Value {
    let rows = v.as_array().cloned().unwrap_or_default();
    json!(rows
        .into_iter()
        .map(|mut row| {
            row["type"] = json!(1);
            if let Some(cs) = row["components"].as_array_mut() {
                for c in cs {
                    if c.get("disabled").is_none() {
                        c["disabled"] = json!(false);
                    }
                }
            }
            row
        })
        .collect::<Vec<_>>())
}

fn message_json(id: u64, channel: u64, author: &Value, content: &str) -> Value {
    json!({
        "id": id.to_string(), "channel_id": channel.to_string(), "author": author,
        "content": content, "timestamp": "2026-11-25T12:00:00.000000+00:00",
        "edited_timestamp": null, "tts": false, "mention_everyone": false, "mentions": [],
        "mention_roles": [], "attachments": [], "embeds": [], "pinned": false, "type": 0,
        "components": []
    })
}

fn interaction_json(id: u64, token: &str, kind: u8, who: &Person) -> Value {
    json!({
        "id": id.to_string(), "application_id": APP_ID.to_string(), "type": kind,
        "token": token, "version": 1, "channel_id": CHANNEL.to_string(),
        "guild_id": GUILD.to_string(), "locale": "en-US", "guild_locale": "en-US",
        "entitlements": [], "attachment_size_limit": 8388608, "member": who.member(),
        "app_permissions": "0", "authorizing_integration_owners": {}, "context": 0
    })
}

async fn gateway(State(d): State<Double>, ws: WebSocketUpgrade) -> Response {
    ws.on_upgrade(move |socket| session(d, socket))
}

/// One gateway connection: HELLO, IDENTIFY -> READY, heartbeats acknowledged, dispatches from
/// the test; a RESUME is refused so that the client identifies again.
async fn session(d: Double, mut socket: WebSocket) {
    let (tx, mut rx) = mpsc::unbounded_channel();
    lock(&d.inner).gateway = Some(tx);
    let hello = json!({"op": 10, "d": {"heartbeat_interval": 45000}});
    if socket
        .send(WsMessage::Text(hello.to_string().into()))
        .await
        .is_err()
    {
        return;
    }
    loop {
        tokio::select! {
            frame = rx.recv() => match frame {
                Some(Frame::Dispatch(t, data)) => {
                    let s = { let mut i = lock(&d.inner); i.seq += 1; i.seq };
                    let m = json!({"op": 0, "s": s, "t": t, "d": data});
                    if socket.send(WsMessage::Text(m.to_string().into())).await.is_err() { return; }
                }
                Some(Frame::Drop) | None => return,
            },
            incoming = socket.recv() => {
                let text = match incoming {
                    Some(Ok(WsMessage::Text(t))) => t.to_string(),
                    Some(Ok(WsMessage::Binary(_))) | Some(Ok(WsMessage::Ping(_))) | Some(Ok(WsMessage::Pong(_))) => continue,
                    _ => return,
                };
                let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                match v["op"].as_u64() {
                    Some(1) => {
                        let ack = json!({"op": 11});
                        if socket.send(WsMessage::Text(ack.to_string().into())).await.is_err() { return; }
                    }
                    Some(2) => {
                        assert_eq!(v["d"]["token"].as_str().map(|t| t.trim_start_matches("Bot ")), Some(TOKEN));
                        let s = {
                            let mut i = lock(&d.inner);
                            i.identifies += 1;
                            i.seq += 1;
                            i.seq
                        };
                        let ready = json!({"op": 0, "s": s, "t": "READY", "d": {
                            "v": 10, "user": user_json(BOT_ID, "opsbot", true),
                            "guilds": [{"id": GUILD.to_string(), "unavailable": true}],
                            "session_id": format!("session{s}"),
                            "resume_gateway_url": d.base.replace("http://", "ws://") + "/gateway",
                            "shard": [0, 1],
                            "application": {"id": APP_ID.to_string(), "flags": 0}
                        }});
                        if socket.send(WsMessage::Text(ready.to_string().into())).await.is_err() { return; }
                        lock(&d.inner).readies += 1;
                    }
                    Some(6) => {
                        let invalid = json!({"op": 9, "d": false});
                        if socket.send(WsMessage::Text(invalid.to_string().into())).await.is_err() { return; }
                    }
                    _ => {}
                }
            }
        }
    }
}

/// Every REST call: recorded, then answered as Discord would.
async fn rest(State(d): State<Double>, req: Request) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let headers: HeaderMap = req.headers().clone();
    let authorization = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let bytes: Bytes = axum::body::to_bytes(req.into_body(), 64 << 20)
        .await
        .unwrap_or_default();
    let (body, files) = if content_type.starts_with("multipart/form-data") {
        parse_multipart(&content_type, &bytes).await
    } else {
        (
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
            vec![],
        )
    };
    let Some(api) = path.strip_prefix("/api/v10") else {
        return (StatusCode::NOT_FOUND, "not an API path").into_response();
    };
    let api = api.to_string();
    lock(&d.inner).calls.push(Call {
        method: method.to_string(),
        path: api.clone(),
        body: body.clone(),
        files: files.clone(),
        authorization: authorization.clone(),
    });
    if let Some(problem) = check_limits(&method, &api, &body) {
        lock(&d.inner)
            .violations
            .push(format!("{method} {api}: {problem}"));
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"message": "Invalid Form Body", "code": 50035, "errors": problem})),
        )
            .into_response();
    }
    if let Some(token) = api
        .strip_prefix("/interactions/")
        .and_then(|r| r.split('/').nth(1))
    {
        let sent = lock(&d.inner).sent_at.get(token).copied();
        if sent.is_some_and(|t| t.elapsed() > Duration::from_secs(3)) {
            lock(&d.inner)
                .violations
                .push(format!("{api}: answered after 3 seconds"));
            return (
                StatusCode::NOT_FOUND,
                Json(json!({"message": "Unknown interaction", "code": 10062})),
            )
                .into_response();
        }
    }
    if authorization != format!("Bot {TOKEN}") {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"message": "401: Unauthorized", "code": 0})),
        )
            .into_response();
    }
    let ws_url = d.base.replace("http://", "ws://") + "/gateway";
    let parts: Vec<&str> = api.trim_start_matches('/').split('/').collect();
    match (method, parts.as_slice()) {
        (Method::GET, ["gateway", "bot"]) => Json(json!({
            "url": ws_url, "shards": 1,
            "session_start_limit": {"total": 1000, "remaining": 999, "reset_after": 0, "max_concurrency": 1}
        }))
        .into_response(),
        (Method::GET, ["gateway"]) => Json(json!({"url": ws_url})).into_response(),
        (Method::POST, ["channels", _, "messages"]) if lock(&d.inner).fail_next > 0 => {
            let mut inner = lock(&d.inner);
            inner.fail_next -= 1;
            if inner.fail_with_429 {
                (
                    StatusCode::TOO_MANY_REQUESTS,
                    [("retry-after", "1")],
                    Json(json!({"message": "You are being rate limited.", "retry_after": 0.5, "global": false, "code": 0})),
                )
                    .into_response()
            } else {
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    Json(json!({"message": "500: Internal Server Error", "code": 0})),
                )
                    .into_response()
            }
        }
        (Method::POST, ["channels", _, "messages"]) if lock(&d.inner).fail_posts => (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(json!({"message": "500: Internal Server Error", "code": 0})),
        )
            .into_response(),
        (Method::POST, ["channels", channel, "messages"]) => {
            let channel: u64 = channel.parse().unwrap_or(0);
            Json(d.create_message(channel, &body, &files)).into_response()
        }
        (Method::PATCH, ["channels", _, "messages", id]) => Json(d.edit_message(id, &body)).into_response(),
        (Method::PUT | Method::DELETE, ["channels", _, "messages", _, "reactions", ..]) => {
            StatusCode::NO_CONTENT.into_response()
        }
        (Method::POST, ["interactions", _, token, "callback"]) => {
            // an update of the pressed message changes it, as on Discord
            if body["type"] == 7 {
                let pressed = lock(&d.inner).pressed.get(*token).cloned();
                if let Some(id) = pressed {
                    d.edit_message(&id, &body["data"]);
                }
            }
            StatusCode::NO_CONTENT.into_response()
        }
        (Method::PATCH, ["webhooks", _, token, "messages", "@original"]) => {
            let original = lock(&d.inner).originals.get(*token).cloned();
            match original {
                Some(id) => Json(d.edit_message(&id, &body)).into_response(),
                None => {
                    let m = d.create_message(CHANNEL, &body, &files);
                    let id = m["id"].as_str().unwrap_or_default().to_string();
                    lock(&d.inner).originals.insert(token.to_string(), id);
                    Json(m).into_response()
                }
            }
        }
        (Method::POST, ["webhooks", _, _]) => Json(d.create_message(CHANNEL, &body, &files)).into_response(),
        (Method::PUT, ["applications", _, "guilds", guild, "commands"]) => {
            Json(commands_json(&body, Some(guild))).into_response()
        }
        (Method::PUT, ["applications", _, "commands"]) => Json(commands_json(&body, None)).into_response(),
        (Method::GET, ["guilds", _, "members", user]) => {
            let user: u64 = user.parse().unwrap_or(0);
            let inner = lock(&d.inner);
            match inner.members.get(&user).filter(|_| !inner.outsiders.contains(&user)) {
                Some(m) => Json(m.clone()).into_response(),
                None => (
                    StatusCode::NOT_FOUND,
                    Json(json!({"message": "Unknown Member", "code": 10007})),
                )
                    .into_response(),
            }
        }
        (Method::GET, ["guilds", _, "roles"]) => {
            let roles = lock(&d.inner).roles.clone();
            Json(json!(roles
                .iter()
                .enumerate()
                .map(|(n, (id, name))| json!({"id": id.to_string(), "name": name, "color": 0,
                    "colors": {"primary_color": 0, "secondary_color": null, "tertiary_color": null},
                    "hoist": false, "managed": false, "mentionable": false, "permissions": "0",
                    "position": n + 1, "icon": null, "unicode_emoji": null, "flags": 0}))
                .collect::<Vec<_>>()))
            .into_response()
        }
        _ => (
            StatusCode::NOT_FOUND,
            Json(json!({"message": "Unknown route in the Discord double", "code": 0})),
        )
            .into_response(),
    }
}

fn commands_json(body: &Value, guild: Option<&str>) -> Value {
    json!(body
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .enumerate()
        .map(|(n, mut c)| {
            c["id"] = json!((800_000_000_000_000_000u64 + n as u64).to_string());
            c["application_id"] = json!(APP_ID.to_string());
            c["version"] = json!("1");
            c["default_member_permissions"] = Value::Null;
            if c.get("type").is_none() {
                c["type"] = json!(1);
            }
            if let Some(g) = guild {
                c["guild_id"] = json!(g);
            }
            c
        })
        .collect::<Vec<_>>())
}

/// The JSON payload and the files of a multipart body.
async fn parse_multipart(content_type: &str, bytes: &Bytes) -> (Value, Vec<(String, String)>) {
    let boundary = content_type
        .split("boundary=")
        .nth(1)
        .unwrap_or("")
        .trim_matches('"')
        .to_string();
    let stream = futures_stream(bytes.clone());
    let mut multipart = multer::Multipart::new(stream, boundary);
    let (mut payload, mut files) = (Value::Null, vec![]);
    while let Ok(Some(field)) = multipart.next_field().await {
        let name = field.name().unwrap_or("").to_string();
        let file_name = field.file_name().map(str::to_string);
        let data = field.bytes().await.unwrap_or_default();
        if name == "payload_json" {
            payload = serde_json::from_slice(&data).unwrap_or(Value::Null);
        } else if let Some(f) = file_name {
            files.push((f, String::from_utf8_lossy(&data).into_owned()));
        }
    }
    (payload, files)
}

fn futures_stream(
    bytes: Bytes,
) -> impl futures_util::Stream<Item = Result<Bytes, std::convert::Infallible>> {
    futures_util::stream::once(async move { Ok(bytes) })
}

/// Discord's limits that opsbot must respect: message length, buttons, command shapes.
fn check_limits(method: &Method, path: &str, body: &Value) -> Option<String> {
    let message = if path.contains("/callback") {
        &body["data"]
    } else {
        body
    };
    if let Some(content) = message["content"].as_str() {
        if content.chars().count() > 2000 {
            return Some(format!(
                "content is {} characters (limit 2000)",
                content.chars().count()
            ));
        }
    }
    for row in message["components"].as_array().into_iter().flatten() {
        let buttons = row["components"].as_array().cloned().unwrap_or_default();
        if buttons.len() > 5 {
            return Some("more than 5 buttons in a row".into());
        }
        for b in buttons {
            if b["label"].as_str().is_some_and(|l| l.chars().count() > 80) {
                return Some("button label over 80 characters".into());
            }
            if b["custom_id"].as_str().is_some_and(|c| c.len() > 100) {
                return Some("custom_id over 100 characters".into());
            }
        }
    }
    if *method == Method::PUT && path.ends_with("/commands") {
        let commands = body.as_array().cloned().unwrap_or_default();
        if commands.len() > 100 {
            return Some("more than 100 commands".into());
        }
        let name_ok = |n: &str| {
            (1..=32).contains(&n.chars().count())
                && n.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        };
        let mut names = std::collections::HashSet::new();
        for c in commands {
            let name = c["name"].as_str().unwrap_or("");
            if !name_ok(name) || !names.insert(name.to_string()) {
                return Some(format!("bad or repeated command name {name:?}"));
            }
            let d = c["description"].as_str().unwrap_or("");
            if !(1..=100).contains(&d.chars().count()) {
                return Some(format!("{name}: description must be 1-100 characters"));
            }
            let options = c["options"].as_array().cloned().unwrap_or_default();
            if options.len() > 25 {
                return Some(format!("{name}: more than 25 options"));
            }
            let mut optional_seen = false;
            for o in options {
                let oname = o["name"].as_str().unwrap_or("");
                if !name_ok(oname) {
                    return Some(format!("{name}: bad option name {oname:?}"));
                }
                let od = o["description"].as_str().unwrap_or("");
                if !(1..=100).contains(&od.chars().count()) {
                    return Some(format!(
                        "{name}.{oname}: description must be 1-100 characters"
                    ));
                }
                let required = o["required"].as_bool().unwrap_or(false);
                if required && optional_seen {
                    return Some(format!(
                        "{name}: required option {oname} after an optional one"
                    ));
                }
                optional_seen |= !required;
                let choices = o["choices"].as_array().map(Vec::len).unwrap_or(0);
                if choices > 25 {
                    return Some(format!("{name}.{oname}: more than 25 choices"));
                }
                if choices > 0 && o["autocomplete"] == true {
                    return Some(format!("{name}.{oname}: choices and autocomplete together"));
                }
            }
        }
    }
    None
}

#[test]
fn the_double_refuses_what_discord_refuses() {
    let long = json!({"content": "x".repeat(2001)});
    assert!(check_limits(&Method::POST, "/channels/1/messages", &long).is_some());
    let fine = json!({"content": "x".repeat(2000)});
    assert!(check_limits(&Method::POST, "/channels/1/messages", &fine).is_none());
    let bad_name = json!([{"name": "alerts.ack", "description": "d", "options": []}]);
    assert!(check_limits(&Method::PUT, "/applications/1/commands", &bad_name).is_some());
    let order = json!([{"name": "deploy", "description": "d", "options": [
        {"name": "version", "description": "v", "required": false},
        {"name": "service", "description": "s", "required": true}]}]);
    assert!(check_limits(&Method::PUT, "/applications/1/commands", &order).is_some());
    let label =
        json!({"type": 7, "data": {"components": [{"components": [{"label": "l".repeat(81)}]}]}});
    assert!(check_limits(&Method::POST, "/interactions/1/t/callback", &label).is_some());
}
