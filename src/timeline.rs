//! An incident timeline from the audit log: events that came in, requests, confirmations and
//! approvals, refusals and outcomes, in one chronology, as markdown ready for a postmortem.
//! Used by `opsbot timeline` and by the built-in `timeline` action.

use crate::audit::Row;
use std::time::{Duration, SystemTime};

/// A point in time from the command line: an RFC 3339 time (`2026-12-03T10:00:00Z`, or without
/// the `T` and zone, read as UTC) or a duration meaning that long ago (`2h`, `30m`).
pub fn parse_when(s: &str, now: SystemTime) -> Result<SystemTime, String> {
    let s = s.trim();
    if let Ok(d) = humantime::parse_duration(s) {
        return now
            .checked_sub(d)
            .ok_or_else(|| format!("'{s}' reaches before the epoch"));
    }
    humantime::parse_rfc3339_weak(s).map_err(|_| {
        format!("'{s}' is neither a time (2026-12-03T10:00:00Z) nor a duration ago (2h)")
    })
}

/// The audit log's own time format, for comparisons in the store.
pub fn stamp(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

fn cell(s: &str) -> String {
    let one_line = s.split_whitespace().collect::<Vec<_>>().join(" ");
    let cut: String = one_line.chars().take(160).collect();
    let cut = if one_line.chars().count() > 160 {
        format!("{cut}…")
    } else {
        cut
    };
    cut.replace('|', "\\|").replace('`', "'")
}

/// One row as (who, what), or `None` for rows a timeline leaves out (messages that were not
/// understood, which are noise in a postmortem).
fn line(r: &Row) -> Option<(String, String)> {
    let who = if r.user_name.is_empty() {
        r.user_id.clone()
    } else {
        r.user_name.clone()
    };
    let what = match r.kind.as_str() {
        "event" if r.status == "refused" => {
            format!("refused a request from {}: {}", r.user_name, r.detail)
        }
        "event" => format!(
            "🔔 {} ({}) → {} in {}",
            r.text,
            r.intent,
            r.status,
            if r.conversation.is_empty() {
                "no conversation"
            } else {
                &r.conversation
            }
        ),
        "request" => format!("▶ started {}", r.detail),
        "outcome" => {
            let took = r
                .duration_ms
                .map(|ms| format!(" after {:.1}s", ms as f64 / 1000.0))
                .unwrap_or_default();
            let mark = if r.status == "succeeded" {
                "✅"
            } else {
                "❌"
            };
            format!("{mark} {} {}{took}", r.intent, r.status)
        }
        "dialog" => format!("{} {}: {}", r.intent, r.status, r.detail),
        "denied" => format!("⛔ {} refused: {}", r.intent, r.detail),
        _ => return None,
    };
    let who = if r.kind == "event" {
        r.source.clone()
    } else {
        who
    };
    Some((who, what))
}

/// The markdown timeline of `rows` (oldest first), optionally only of one conversation (events
/// routed to several conversations count for each of them).
pub fn render(
    rows: &[Row],
    since: SystemTime,
    until: SystemTime,
    conversation: Option<&str>,
) -> String {
    let mut out = format!(
        "# Timeline {} to {}\n\n| time (UTC) | who | what | ref |\n| --- | --- | --- | --- |\n",
        humantime::format_rfc3339_seconds(since),
        humantime::format_rfc3339_seconds(until)
    );
    let mut n = 0;
    for r in rows {
        if let Some(c) = conversation {
            if !r.conversation.split(',').any(|x| x == c) {
                continue;
            }
        }
        let Some((who, what)) = line(r) else {
            continue;
        };
        let time = r.ts.get(11..19).unwrap_or(&r.ts);
        out.push_str(&format!(
            "| {} {time} | {} | {} | {} |\n",
            r.ts.get(..10).unwrap_or(""),
            cell(&who),
            cell(&what),
            cell(&r.request_id)
        ));
        n += 1;
    }
    if n == 0 {
        out.push_str("| | | nothing was recorded in this period | |\n");
    }
    out
}

/// The default window of the built-in action when no `since` is given.
pub const DEFAULT_SINCE: Duration = Duration::from_secs(3600);

#[cfg(test)]
mod tests {
    use super::*;

    fn row(kind: &str, status: &str, text: &str, detail: &str) -> Row {
        Row {
            seq: 1,
            ts: "2026-12-03T10:00:05.123Z".into(),
            kind: kind.into(),
            request_id: "ab12cd34".into(),
            platform: "discord".into(),
            conversation: "discord:1".into(),
            user_id: "discord:9".into(),
            user_name: "alice".into(),
            text: text.into(),
            source: "alertmanager".into(),
            intent: "restart".into(),
            params: None,
            status: status.into(),
            exit_code: None,
            duration_ms: Some(2300),
            detail: detail.into(),
        }
    }

    #[test]
    fn times_read_as_times_or_as_durations_ago() {
        let now = humantime::parse_rfc3339("2026-12-03T12:00:00Z").unwrap();
        assert_eq!(
            parse_when("2h", now).unwrap(),
            humantime::parse_rfc3339("2026-12-03T10:00:00Z").unwrap()
        );
        assert_eq!(
            parse_when("2026-12-03 09:30:00", now).unwrap(),
            humantime::parse_rfc3339("2026-12-03T09:30:00Z").unwrap()
        );
        assert!(parse_when("yesterday-ish", now).is_err());
    }

    #[test]
    fn a_chronology_in_markdown_without_noise() {
        let rows = vec![
            row("event", "posted", "HighErrorRate: firing", "g1"),
            row("rejected", "rejected", "hello?", ""),
            row(
                "request",
                "started",
                "restart api production",
                "restart service=api env=production",
            ),
            row("outcome", "succeeded", "", ""),
            row("event", "refused", "", "missing or wrong credentials | x"),
        ];
        let since = humantime::parse_rfc3339("2026-12-03T10:00:00Z").unwrap();
        let md = render(&rows, since, since + Duration::from_secs(3600), None);
        assert!(
            md.starts_with("# Timeline 2026-12-03T10:00:00Z to 2026-12-03T11:00:00Z"),
            "{md}"
        );
        assert_eq!(
            md.lines().filter(|l| l.starts_with("| 2026")).count(),
            4,
            "{md}"
        );
        assert!(md.contains("| 2026-12-03 10:00:05 | alertmanager | 🔔 HighErrorRate: firing (restart) → posted in discord:1 |"), "{md}");
        assert!(md.contains("✅ restart succeeded after 2.3s"), "{md}");
        // a pipe in a value cannot break the table
        assert!(md.contains("credentials \\| x"), "{md}");
        let other = render(&rows, since, since, Some("discord:2"));
        assert!(other.contains("nothing was recorded"), "{other}");
    }
}
