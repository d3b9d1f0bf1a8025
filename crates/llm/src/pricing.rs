//! Token prices and the cost of a call.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::Usage;

/// The price of a model in US dollars per million tokens.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Price {
    /// Prompt tokens.
    pub input: f64,
    /// Generated tokens.
    pub output: f64,
    /// Prompt tokens read from the provider's prompt cache; `input` when not set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_read: Option<f64>,
    /// Prompt tokens written to the provider's prompt cache; `input` when not set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_write: Option<f64>,
}

/// Prices by model name. A model not listed by its full name takes the price of the longest
/// listed name it starts with (`gpt-4o-mini` prices `gpt-4o-mini-2024-07-18`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PriceTable(pub BTreeMap<String, Price>);

impl PriceTable {
    pub fn get(&self, model: &str) -> Option<Price> {
        if let Some(p) = self.0.get(model) {
            return Some(*p);
        }
        self.0
            .iter()
            .filter(|(k, _)| model.starts_with(k.as_str()))
            .max_by_key(|(k, _)| k.len())
            .map(|(_, p)| *p)
    }
}

/// Token counts of one call, as providers report them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tokens {
    /// Prompt tokens billed at the input price (not read from or written to the cache).
    pub input: u64,
    pub output: u64,
    pub cache_read: u64,
    pub cache_write: u64,
}

impl Tokens {
    /// The usage with its cost at `price` (0 when the model has no price).
    pub fn usage(&self, price: Option<Price>) -> Usage {
        let cost_usd = price.map_or(0.0, |p| {
            (self.input as f64 * p.input
                + self.output as f64 * p.output
                + self.cache_read as f64 * p.cache_read.unwrap_or(p.input)
                + self.cache_write as f64 * p.cache_write.unwrap_or(p.input))
                / 1_000_000.0
        });
        Usage {
            prompt_tokens: self.input + self.cache_read + self.cache_write,
            completion_tokens: self.output,
            cost_usd,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn cost_and_prefix_lookup() {
        let mut t = PriceTable::default();
        t.0.insert(
            "gpt-4o".into(),
            Price {
                input: 2.5,
                output: 10.0,
                ..Default::default()
            },
        );
        t.0.insert(
            "gpt-4o-mini".into(),
            Price {
                input: 0.15,
                output: 0.6,
                cache_read: Some(0.075),
                cache_write: None,
            },
        );
        assert_eq!(t.get("gpt-4o-mini-2024-07-18").unwrap().input, 0.15);
        assert_eq!(t.get("gpt-4o-2024-08-06").unwrap().input, 2.5);
        assert!(t.get("o3").is_none());
        let u = Tokens {
            input: 1_000_000,
            output: 500_000,
            cache_read: 2_000_000,
            cache_write: 0,
        }
        .usage(t.get("gpt-4o-mini"));
        assert_eq!(u.prompt_tokens, 3_000_000);
        assert_eq!(u.completion_tokens, 500_000);
        assert!(
            (u.cost_usd - (0.15 + 0.3 + 0.15)).abs() < 1e-9,
            "{}",
            u.cost_usd
        );
        assert_eq!(
            Tokens {
                input: 10,
                ..Default::default()
            }
            .usage(None)
            .cost_usd,
            0.0
        );
    }
}
