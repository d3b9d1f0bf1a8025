//! The outbound delivery worker. Each tick: fan the store's outbox out into deliveries, claim
//! the deliveries that are due (a lease, so two servers on one database do not send the same
//! attempt), send each signed as Standard Webhooks, and record the attempt.
//!
//! No SSRF: a target's host is checked before each attempt (a literal address, or every
//! address its name resolves to, against the control's `AddressPolicy`; refused: the delivery
//! fails for good), and the HTTP client connects only through a resolver that checks again
//! the addresses it connects to (a name that resolves elsewhere the second time, DNS
//! rebinding, is refused too). No proxy, no redirects followed (a 3xx is a failed attempt).
//!
//! Retries: a non-2xx answer or no answer is tried again after `first_retry`, then 4 times
//! longer each time (capped at `max_retry`), `max_attempts` attempts in all. Delivery is at
//! least once: a worker that dies mid-attempt leaves the claim to expire and the delivery
//! to be sent again with the same `webhook-id`, which receivers use to drop duplicates.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use baton_control::Control;
use baton_control::webhooks::{AddressPolicy, signature};
use baton_store::webhooks::{AfterAttempt, AttemptRecord, DueDelivery};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// How the worker paces itself.
#[derive(Clone, Debug)]
pub struct DeliveryConfig {
    /// How often it looks for work when there was none.
    pub poll: Duration,
    /// The wait before the second attempt; each later wait is 4 times the one before.
    pub first_retry: Duration,
    pub max_retry: Duration,
    /// Attempts in all before a delivery is marked failed.
    pub max_attempts: u32,
    /// How long one attempt may take.
    pub timeout: Duration,
    /// Deliveries claimed and sent at once.
    pub batch: u32,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        Self {
            poll: Duration::from_secs(1),
            first_retry: Duration::from_secs(5),
            max_retry: Duration::from_secs(6 * 3600),
            max_attempts: 8,
            timeout: Duration::from_secs(10),
            batch: 16,
        }
    }
}

impl DeliveryConfig {
    /// The wait after failed attempt `n` (1-based).
    pub fn backoff(&self, n: u32) -> Duration {
        let factor = 4u32.saturating_pow(n.saturating_sub(1));
        self.first_retry
            .checked_mul(factor)
            .unwrap_or(self.max_retry)
            .min(self.max_retry)
    }
}

/// A resolver that refuses names resolving to an address the policy refuses.
struct CheckedResolver {
    policy: AddressPolicy,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Refused(String);

async fn resolve_checked(
    policy: &AddressPolicy,
    host: &str,
    port: u16,
) -> Result<Vec<SocketAddr>, Refused> {
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| Refused(format!("cannot resolve {host}: {e}")))?
        .collect();
    if addrs.is_empty() {
        return Err(Refused(format!("{host} resolves to no address")));
    }
    for a in &addrs {
        policy
            .check(a.ip())
            .map_err(|e| Refused(format!("{host} resolves to {e}")))?;
    }
    Ok(addrs)
}

impl Resolve for CheckedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy.clone();
        Box::pin(async move {
            let addrs = resolve_checked(&policy, name.as_str(), 0).await?;
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

/// What one attempt came to.
enum Sent {
    Ok(u16),
    /// Try again later.
    Retry {
        status: Option<u16>,
        error: String,
    },
    /// Never (a refused address).
    Refused(String),
}

/// Sends the deliveries of one control.
#[derive(Clone)]
pub struct Deliverer {
    control: Control,
    config: Arc<DeliveryConfig>,
    client: reqwest::Client,
    policy: AddressPolicy,
}

impl Deliverer {
    /// `None` when the control has no webhooks configured.
    pub fn new(control: Control, config: DeliveryConfig) -> Result<Self, String> {
        let policy = control
            .webhook_policy()
            .cloned()
            .ok_or("webhooks are not configured")?;
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(config.timeout)
            .user_agent(concat!("Baton-Webhooks/", env!("CARGO_PKG_VERSION")))
            .dns_resolver(Arc::new(CheckedResolver {
                policy: policy.clone(),
            }))
            .build()
            .map_err(|e| format!("cannot build the webhook HTTP client: {e}"))?;
        Ok(Self {
            control,
            config: Arc::new(config),
            client,
            policy,
        })
    }

    /// One round: fans the outbox out, then sends every delivery due now. Returns the
    /// attempts made.
    pub async fn tick(&self) -> baton_control::Result<usize> {
        while self.control.webhook_fan_out(256).await? > 0 {}
        let lease = i64::try_from(self.config.timeout.as_millis())
            .unwrap_or(60_000)
            .saturating_mul(3);
        let mut made = 0;
        loop {
            let due = self
                .control
                .claim_deliveries(self.config.batch, lease)
                .await?;
            if due.is_empty() {
                return Ok(made);
            }
            made += due.len();
            let results = futures::future::join_all(due.into_iter().map(|d| self.attempt(d))).await;
            for r in results {
                r?;
            }
        }
    }

    /// Ticks until `shutdown` completes (a failed tick is logged and tried again).
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            if let Err(e) = self.tick().await {
                tracing::error!("webhook deliveries: {e}");
            }
            tokio::select! {
                () = &mut shutdown => return,
                () = tokio::time::sleep(self.config.poll) => {}
            }
        }
    }

    async fn attempt(&self, d: DueDelivery) -> baton_control::Result<()> {
        let n = d.attempts + 1;
        let at_ms = baton_store::now_ms();
        let started = Instant::now();
        let sent = self.send(&d).await;
        let duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let (status_code, error, after) = match sent {
            Sent::Ok(code) => (Some(code), None, AfterAttempt::Succeeded),
            Sent::Refused(e) => (None, Some(format!("refused: {e}")), AfterAttempt::Failed),
            Sent::Retry { status, error } => {
                let after = if n >= self.config.max_attempts {
                    AfterAttempt::Failed
                } else {
                    let wait =
                        i64::try_from(self.config.backoff(n).as_millis()).unwrap_or(i64::MAX);
                    AfterAttempt::RetryAt(baton_store::now_ms().saturating_add(wait))
                };
                (status, Some(error), after)
            }
        };
        if let Some(e) = &error {
            tracing::warn!(delivery = %d.delivery.id, subscription = %d.delivery.subscription, attempt = n, "webhook delivery failed: {e}");
        }
        self.control
            .record_delivery_attempt(
                &d.delivery.id,
                AttemptRecord {
                    n,
                    at_ms,
                    duration_ms,
                    status_code,
                    error,
                },
                after,
            )
            .await
    }

    async fn send(&self, d: &DueDelivery) -> Sent {
        let url = match reqwest::Url::parse(&d.url) {
            Ok(u) => u,
            Err(e) => return Sent::Refused(format!("the URL does not parse: {e}")),
        };
        let Some(host) = url.host_str() else {
            return Sent::Refused("the URL has no host".into());
        };
        // The host as written (a literal address, a localhost name), then what it resolves to
        // now; the client's resolver checks again at connect time.
        if let Err(e) = self.policy.check_host(host) {
            return Sent::Refused(e);
        }
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        if bare.parse::<IpAddr>().is_err() {
            let port = url.port_or_known_default().unwrap_or(443);
            match resolve_checked(&self.policy, bare, port).await {
                Ok(_) => {}
                Err(Refused(e)) if e.starts_with("cannot resolve") => {
                    return Sent::Retry {
                        status: None,
                        error: e,
                    };
                }
                Err(Refused(e)) => return Sent::Refused(e),
            }
        }
        let key = match signature::key_of(&d.secret) {
            Ok(k) => k,
            Err(e) => return Sent::Refused(e.to_string()),
        };
        let ts = baton_store::now_ms() / 1000;
        let body = d.delivery.payload.clone().into_bytes();
        let sig = signature::sign(&key, &d.delivery.id, ts, &body);
        let resp = self
            .client
            .post(url)
            .header("content-type", "application/json")
            .header("webhook-id", &d.delivery.id)
            .header("webhook-timestamp", ts.to_string())
            .header("webhook-signature", sig)
            .body(body)
            .send()
            .await;
        match resp {
            Ok(r) if r.status().is_success() => Sent::Ok(r.status().as_u16()),
            Ok(r) => Sent::Retry {
                status: Some(r.status().as_u16()),
                error: format!(
                    "the receiver answered {}{}",
                    r.status(),
                    if r.status().is_redirection() {
                        " (redirects are not followed)"
                    } else {
                        ""
                    }
                ),
            },
            Err(e) => Sent::Retry {
                status: None,
                error: error_chain(&e),
            },
        }
    }
}

/// An error with its causes (reqwest's own message says little: "error sending request").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_four_times_and_is_capped() {
        let c = DeliveryConfig::default();
        let secs: Vec<u64> = (1..=8).map(|n| c.backoff(n).as_secs()).collect();
        assert_eq!(secs, [5, 20, 80, 320, 1280, 5120, 20480, 21600]);
        assert_eq!(c.backoff(40), c.max_retry);
    }
}
