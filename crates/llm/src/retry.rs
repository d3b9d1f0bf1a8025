//! Retries around any [`ChatModel`]: exponential backoff with jitter, honouring the provider's
//! `Retry-After`, and only for the kinds of error where another try can help.

use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use futures::stream::{self, BoxStream};
use rand::Rng;

use crate::{Capabilities, ChatModel, ChatRequest, Chunk, Error};

/// When and how long to wait before trying again.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RetryPolicy {
    /// Tries after the first one; 0 turns retrying off.
    pub max_retries: u32,
    /// The wait before the first retry; it doubles after each.
    pub initial_backoff: Duration,
    /// The longest wait computed by backoff.
    pub max_backoff: Duration,
    /// A provider asking to wait longer than this is not waited for: the error goes up, so the
    /// engine can decide (a run should not sit silently for an hour).
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_retries: 2,
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
            max_retry_after: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    pub fn none() -> Self {
        Self {
            max_retries: 0,
            ..Self::default()
        }
    }

    /// How long to wait before retry number `attempt` (0 for the first retry) after `err`, or
    /// `None` when the error must not be retried.
    pub fn delay(&self, attempt: u32, err: &Error) -> Option<Duration> {
        if attempt >= self.max_retries || !err.is_retryable() {
            return None;
        }
        if let Some(after) = err.retry_after() {
            if after > self.max_retry_after {
                return None;
            }
            // A little jitter on top, so many clients told the same time do not come back at once.
            let extra = after.mul_f64(rand::rng().random_range(0.0..0.1));
            return Some(after + extra);
        }
        let base = self
            .initial_backoff
            .saturating_mul(2u32.saturating_pow(attempt.min(30)))
            .min(self.max_backoff);
        // "Equal jitter": half fixed, half random; never zero, never above the cap.
        let half = base / 2;
        Some(half + half.mul_f64(rand::rng().random_range(0.0..=1.0)))
    }
}

/// A model that retries another one.
///
/// A failure is retried when it happens before the first piece of the answer: when sending, or
/// as the first item of the stream. Once pieces have gone out, an error is passed on as it is,
/// since they cannot be taken back.
pub struct Retrying<M> {
    inner: M,
    policy: RetryPolicy,
    label: String,
}

impl<M: ChatModel> Retrying<M> {
    /// `label` names the model in log lines (e.g. `openai/gpt-4o-mini`).
    pub fn new(inner: M, policy: RetryPolicy, label: impl Into<String>) -> Self {
        Self {
            inner,
            policy,
            label: label.into(),
        }
    }

    pub fn inner(&self) -> &M {
        &self.inner
    }

    pub fn policy(&self) -> &RetryPolicy {
        &self.policy
    }
}

#[async_trait]
impl<M: ChatModel> ChatModel for Retrying<M> {
    async fn stream(
        &self,
        req: ChatRequest,
    ) -> Result<BoxStream<'static, Result<Chunk, Error>>, Error> {
        let mut attempt = 0;
        loop {
            let err = match self.inner.stream(req.clone()).await {
                Err(e) => e,
                Ok(mut s) => match s.next().await {
                    Some(Err(e)) => e,
                    first => return Ok(stream::iter(first).chain(s).boxed()),
                },
            };
            let Some(wait) = self.policy.delay(attempt, &err) else {
                return Err(err);
            };
            attempt += 1;
            tracing::warn!(
                model = %self.label,
                kind = err.kind(),
                error = %err,
                attempt,
                wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                "model call failed; retrying"
            );
            tokio::time::sleep(wait).await;
        }
    }

    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::Message;
    use crate::scripted::{Reply, ScriptedError, ScriptedModel};
    use std::sync::Arc;

    fn req() -> ChatRequest {
        ChatRequest {
            model: "m".into(),
            messages: vec![Message::user("hi")],
            ..Default::default()
        }
    }

    fn rate_limited(after: Option<u64>) -> Reply {
        Reply {
            error: Some(ScriptedError {
                kind: "rate_limit".into(),
                message: String::new(),
                retry_after: after.map(|s| baton_types::Dur(Duration::from_secs(s))),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn backoff_grows_with_jitter_and_stops() {
        let p = RetryPolicy {
            max_retries: 5,
            ..Default::default()
        };
        let e = Error::Transient {
            provider: "p".into(),
            message: "x".into(),
        };
        for attempt in 0..5 {
            let base = Duration::from_millis(500) * 2u32.pow(attempt);
            let d = p.delay(attempt, &e).unwrap();
            assert!(d >= base / 2 && d <= base, "attempt {attempt}: {d:?}");
        }
        assert_eq!(p.delay(5, &e), None);
        assert_eq!(
            p.delay(
                0,
                &Error::Auth {
                    provider: "p".into(),
                    message: "x".into()
                }
            ),
            None
        );
        assert_eq!(
            p.delay(
                0,
                &Error::ContextLength {
                    message: "x".into()
                }
            ),
            None
        );
        let big = RetryPolicy {
            max_retries: 50,
            ..Default::default()
        };
        assert!(big.delay(40, &e).unwrap() <= Duration::from_secs(30));
    }

    #[test]
    fn retry_after_is_honoured_and_capped() {
        let p = RetryPolicy::default();
        let e = Error::RateLimited {
            provider: "p".into(),
            retry_after: Some(Duration::from_secs(3)),
        };
        let d = p.delay(0, &e).unwrap();
        assert!(
            d >= Duration::from_secs(3) && d <= Duration::from_millis(3300),
            "{d:?}"
        );
        let e = Error::RateLimited {
            provider: "p".into(),
            retry_after: Some(Duration::from_secs(3600)),
        };
        assert_eq!(p.delay(0, &e), None);
    }

    #[tokio::test(start_paused = true)]
    async fn retries_then_succeeds() {
        let m = Arc::new(
            ScriptedModel::new(
                "t",
                vec![rate_limited(Some(2)), rate_limited(None), Reply::text("ok")],
            )
            .unwrap(),
        );
        let r = Retrying::new(m.clone(), RetryPolicy::default(), "scripted/t");
        let start = tokio::time::Instant::now();
        assert_eq!(r.complete(req()).await.unwrap().content, "ok");
        assert_eq!(m.requests().len(), 3);
        assert!(
            start.elapsed() >= Duration::from_millis(2250),
            "{:?}",
            start.elapsed()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn gives_up_after_max_and_never_retries_auth() {
        let m = Arc::new(ScriptedModel::new("t", vec![rate_limited(None).repeating()]).unwrap());
        let r = Retrying::new(
            m.clone(),
            RetryPolicy {
                max_retries: 3,
                ..Default::default()
            },
            "t",
        );
        assert_eq!(r.complete(req()).await.unwrap_err().kind(), "rate_limit");
        assert_eq!(m.requests().len(), 4);

        let m = Arc::new(
            ScriptedModel::new(
                "t",
                vec![Reply::error("auth", "bad key"), Reply::text("never")],
            )
            .unwrap(),
        );
        let r = Retrying::new(m.clone(), RetryPolicy::default(), "t");
        assert_eq!(r.complete(req()).await.unwrap_err().kind(), "auth");
        assert_eq!(m.requests().len(), 1);
    }
}
