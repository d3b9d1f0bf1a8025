//! The team settings: `channels:` (their subscribers are agents of the workflow), `messages:`,
//! and agent steps' `wait_for:`.

use std::collections::BTreeSet;

use baton_types::{WaitFor, agent_name};

use super::Checker;
use crate::load::suggest::{hint, list};
use crate::load::{index_path, key_path};

impl Checker<'_, '_> {
    /// The agent names of the workflow (`coder@3` is `coder`).
    fn team_names(&self) -> BTreeSet<&str> {
        self.doc.agents.keys().map(|k| agent_name(k)).collect()
    }

    /// An agent name where one is expected: an error naming the known ones otherwise.
    fn check_agent_name(&mut self, name: &str, path: String, what: &str) {
        let names = self.team_names();
        if !names.contains(name) {
            let m = format!(
                "{what} `{name}` is not an agent of this workflow{} (agents: {})",
                hint(name, names.iter().copied()),
                list(names.iter().copied())
            );
            self.error(path, m);
        }
    }

    pub(super) fn check_team(&mut self) {
        for (name, channel) in &self.doc.channels {
            let cp = key_path("channels", name);
            if channel.subscribers.is_empty() {
                self.error(
                    key_path(&cp, "subscribers"),
                    format!(
                        "channel `{name}` has no subscribers: list the agents that receive it \
                         (`subscribers: [coder, tester]`), or remove it"
                    ),
                );
            }
            for (i, s) in channel.subscribers.iter().enumerate() {
                let path = index_path(&key_path(&cp, "subscribers"), i);
                self.check_agent_name(s, path, "subscriber");
            }
        }
        if let Some(m) = &self.doc.messages
            && m.max_bytes == 0
        {
            self.error(
                key_path("messages", "max_bytes"),
                "`max_bytes` must be at least 1 (the default is 65536)",
            );
        }
        let broadcaster = self
            .doc
            .agents
            .iter()
            .find(|(_, a)| a.tools.iter().any(|t| t == "message.broadcast"))
            .map(|(n, _)| n.clone());
        if let Some(name) = broadcaster
            && self.doc.channels.is_empty()
        {
            self.error(
                key_path(&key_path("agents", &name), "tools"),
                format!(
                    "agent `{name}` may use `message.broadcast`, but the workflow declares no \
                     `channels:` to broadcast on"
                ),
            );
        }
    }

    pub(super) fn check_wait_for(&mut self, agent: &str, w: &WaitFor, path: &str) {
        self.check_agent_name(&w.from, key_path(path, "from"), "`wait_for.from`");
        if agent_name(agent) == w.from {
            self.error(
                key_path(path, "from"),
                format!("agent `{}` cannot wait for a message from itself", w.from),
            );
        }
        let sends = self
            .doc
            .agents
            .iter()
            .filter(|(k, _)| agent_name(k) == w.from)
            .any(|(_, a)| {
                a.tools
                    .iter()
                    .any(|t| t == "message.send" || t == "message.broadcast")
            });
        if self.team_names().contains(w.from.as_str()) && !sends {
            self.error(
                key_path(path, "from"),
                format!(
                    "agent `{}` can never send a message: give it `message.send` (or \
                     `message.broadcast`) in its `tools:`",
                    w.from
                ),
            );
        }
    }
}
