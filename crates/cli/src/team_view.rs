//! The agents of a run as a team, on a terminal (`baton runs show`): each agent's state and
//! since when, the messages sent and those not yet delivered, the channels, the shared memory.

use baton_types::TeamView;

use crate::view::fmt_time;

/// The most characters of a memory value or a message shown on one line.
const SHOWN: usize = 72;

fn cut(s: &str) -> String {
    if s.chars().count() <= SHOWN {
        return s.to_string();
    }
    let head: String = s.chars().take(SHOWN).collect();
    format!("{head}…")
}

pub fn show_lines(team: &TeamView) -> Vec<String> {
    let mut out = vec!["agents:".to_string()];
    let width = team.agents.keys().map(String::len).max().unwrap_or(0);
    for (name, life) in &team.agents {
        let by = life
            .by
            .as_ref()
            .map(|b| format!(" by {b}"))
            .unwrap_or_default();
        out.push(format!(
            "  {name:<width$}  {:<8} since {}{by}",
            life.state.as_str(),
            fmt_time(life.since_ms)
        ));
    }
    let waiting: usize = team.inboxes.values().map(Vec::len).sum();
    if team.messages_sent > 0 || waiting > 0 {
        out.push(format!(
            "messages: {} sent, {waiting} not yet delivered",
            team.messages_sent
        ));
        for (agent, msgs) in &team.inboxes {
            for m in msgs {
                let on = m
                    .channel
                    .as_ref()
                    .map(|c| format!(" #{c}"))
                    .unwrap_or_default();
                out.push(format!(
                    "  to {agent} from {}{on}: {}",
                    m.from,
                    cut(&m.content)
                ));
            }
        }
    }
    if !team.channels.is_empty() {
        out.push("channels:".into());
        for (name, subs) in &team.channels {
            out.push(format!("  #{name}: {}", subs.join(", ")));
        }
    }
    if !team.memory.is_empty() {
        out.push("memory:".into());
        for (key, e) in &team.memory {
            out.push(format!(
                "  {key} (v{} by {}) = {}",
                e.version,
                e.by,
                cut(&e.value.to_string())
            ));
        }
    }
    out
}
