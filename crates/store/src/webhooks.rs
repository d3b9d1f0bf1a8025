//! What webhooks keep (schema 5): inbound hooks (a URL that starts a stored workflow, its
//! secrets and the message ids it has seen), outbound subscriptions, and the durable outbox
//! their deliveries go through.
//!
//! ```text
//!  any process appends a run's events ──► outbox (same transaction; only the kinds in
//!                                          OUTBOX_KINDS, only when the run's tenant has a
//!                                          live subscription)
//!  the server's delivery worker: outbox ──fan_out──► deliveries (one per subscription)
//!                                deliveries ──claim_due──► HTTP ──record_attempt──► attempts
//! ```
//!
//! The outbox is written by the store itself (an SQLite trigger, the memory store's append),
//! so a run driven by a CLI process, or by a server that stopped since, still has its events
//! delivered by whichever server runs next. Secrets are kept as given (HMAC needs them);
//! they are never logged and only shown when made.

use async_trait::async_trait;
use baton_types::{RunId, TenantId};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::Result;

/// The event kinds (`Event::kind`) the outbox records. The SQLite trigger (schema 6) lists
/// the same kinds (a test checks it); a later schema that adds one replaces the trigger.
pub const OUTBOX_KINDS: &[&str] = &[
    "run_created",
    "run_succeeded",
    "run_failed",
    "run_cancelled",
    "paused",
    "step_succeeded",
    "step_failed",
    "human_requested",
    "human_escalated",
    "human_responded",
];

/// An inbound hook: `POST /hooks/{id}` with a valid signature starts `workflow`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InboundHookRecord {
    /// `wh_` and 24 hex digits.
    pub id: String,
    pub tenant: TenantId,
    /// A stored workflow of the tenant: `name` (its latest version when called) or `name@3`.
    pub workflow: String,
    /// When set, the whole body is given as this one input; otherwise the body must be a
    /// JSON object whose fields are the inputs.
    pub body_input: Option<String>,
    pub name: Option<String>,
    /// `whsec_<base64>`.
    pub secret: String,
    /// The secret before the last rotation, valid until `previous_until_ms`.
    pub previous_secret: Option<String>,
    pub previous_until_ms: Option<i64>,
    pub created_at_ms: i64,
    pub created_by: Option<String>,
}

/// An outbound subscription: the tenant's run events of `events` types, POSTed to `url`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubscriptionRecord {
    /// `sub_` and 24 hex digits.
    pub id: String,
    pub tenant: TenantId,
    pub url: String,
    /// Event types (`run.succeeded`, `step.failed`...).
    pub events: Vec<String>,
    /// `whsec_<base64>`.
    pub secret: String,
    pub description: Option<String>,
    pub created_at_ms: i64,
    pub created_by: Option<String>,
}

/// A run event waiting in the outbox to be fanned out to subscriptions.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OutboxEvent {
    /// Position in the outbox (increasing).
    pub id: i64,
    pub run_id: RunId,
    pub tenant: TenantId,
    pub workflow: String,
    pub seq: u64,
    /// `Event::kind`.
    pub kind: String,
    pub step: Option<String>,
    pub at_ms: i64,
    /// The event as the run log holds it.
    pub event: Value,
}

/// Where a delivery stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    /// Waiting for its first or next attempt.
    Pending,
    Succeeded,
    /// Out of attempts, or refused for good (an address the allow-list refuses).
    Failed,
    /// Its subscription was deleted before it succeeded.
    Cancelled,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => Self::Pending,
            "succeeded" => Self::Succeeded,
            "failed" => Self::Failed,
            "cancelled" => Self::Cancelled,
            _ => return None,
        })
    }
}

/// A delivery as fanned out.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewDelivery {
    /// The message id (`webhook-id`): the same for every attempt, so receivers dedupe.
    pub id: String,
    pub subscription: String,
    pub tenant: TenantId,
    pub event_type: String,
    pub run_id: Option<RunId>,
    pub seq: Option<u64>,
    /// The exact body every attempt sends.
    pub payload: String,
    pub created_at_ms: i64,
}

/// One attempt to deliver.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct AttemptRecord {
    /// 1, 2, ...
    pub n: u32,
    pub at_ms: i64,
    pub duration_ms: u64,
    /// The receiver's HTTP status, when it answered.
    pub status_code: Option<u16>,
    /// What went wrong (no answer, a non-2xx answer, a refused address).
    pub error: Option<String>,
}

/// What follows an attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AfterAttempt {
    Succeeded,
    /// Try again at this time (Unix ms).
    RetryAt(i64),
    Failed,
}

/// A delivery with its attempts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryRecord {
    #[serde(flatten)]
    pub delivery: NewDelivery,
    pub status: DeliveryStatus,
    /// When the next attempt is due (pending deliveries).
    pub next_at_ms: Option<i64>,
    /// Oldest first.
    pub attempts: Vec<AttemptRecord>,
}

/// A delivery claimed for an attempt, with where it goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DueDelivery {
    pub delivery: NewDelivery,
    /// Attempts made before this one.
    pub attempts: u32,
    pub url: String,
    pub secret: String,
}

/// Inbound hooks, subscriptions, the outbox and deliveries. As in [`crate::TenantStore`],
/// what a tenant owns is read and written with its tenant; the exceptions are for the
/// machinery: `inbound_for_receive` (a request names the hook), and the outbox and delivery
/// methods of the delivery worker.
#[async_trait]
pub trait WebhookStore: Send + Sync {
    /// [`crate::Error::Missing`] when the tenant does not exist.
    async fn create_inbound(&self, h: InboundHookRecord) -> Result<()>;
    /// The tenant's live hooks, oldest first.
    async fn inbound_hooks(&self, tenant: &TenantId) -> Result<Vec<InboundHookRecord>>;
    async fn inbound_hook(&self, tenant: &TenantId, id: &str) -> Result<Option<InboundHookRecord>>;
    /// A live hook of any tenant: only for checking a request to it.
    async fn inbound_for_receive(&self, id: &str) -> Result<Option<InboundHookRecord>>;
    /// Makes `secret` the hook's secret; the one it had stays valid until
    /// `previous_until_ms`. `Missing` when the tenant has no such live hook.
    async fn rotate_inbound(
        &self,
        tenant: &TenantId,
        id: &str,
        secret: String,
        previous_until_ms: i64,
    ) -> Result<InboundHookRecord>;
    /// Soft delete (`Missing` when not live).
    async fn delete_inbound(&self, tenant: &TenantId, id: &str, at_ms: i64) -> Result<()>;
    /// Records that `hook` received message `msg_id` (kept until `keep_until_ms`): `false`
    /// when it had already (a replay). Forgets the hook's expired ids.
    async fn remember_message(
        &self,
        hook: &str,
        msg_id: &str,
        keep_until_ms: i64,
        now_ms: i64,
    ) -> Result<bool>;
    /// Undoes `remember_message` (the request was refused after all).
    async fn forget_message(&self, hook: &str, msg_id: &str) -> Result<()>;

    /// [`crate::Error::Missing`] when the tenant does not exist.
    async fn create_subscription(&self, s: SubscriptionRecord) -> Result<()>;
    /// The tenant's live subscriptions, oldest first.
    async fn subscriptions(&self, tenant: &TenantId) -> Result<Vec<SubscriptionRecord>>;
    async fn subscription(&self, tenant: &TenantId, id: &str)
    -> Result<Option<SubscriptionRecord>>;
    /// Soft delete; its pending deliveries are cancelled. `Missing` when not live.
    async fn delete_subscription(&self, tenant: &TenantId, id: &str, at_ms: i64) -> Result<()>;

    /// The oldest events in the outbox (at most `limit`).
    async fn outbox(&self, limit: u32) -> Result<Vec<OutboxEvent>>;
    /// In one write: adds `deliveries` (an id already there is kept as it is, so two workers
    /// fanning out the same events make each delivery once) and removes outbox events
    /// `consumed`.
    async fn fan_out(&self, consumed: Vec<i64>, deliveries: Vec<NewDelivery>) -> Result<()>;
    /// Claims up to `limit` pending deliveries due at `now_ms` of live subscriptions, oldest
    /// first, for `lease_ms` (another worker does not take them meanwhile; a worker that dies
    /// leaves them to be taken again when the lease ends).
    async fn claim_due(&self, now_ms: i64, lease_ms: i64, limit: u32) -> Result<Vec<DueDelivery>>;
    /// Appends an attempt and sets what follows it (and releases the claim).
    async fn record_attempt(
        &self,
        delivery: &str,
        attempt: AttemptRecord,
        after: AfterAttempt,
    ) -> Result<()>;
    /// A subscription's deliveries, newest first (`created_at_ms`, then id), those before
    /// the cursor `before`.
    async fn deliveries(
        &self,
        tenant: &TenantId,
        subscription: &str,
        before: Option<(i64, String)>,
        limit: u32,
    ) -> Result<Vec<DeliveryRecord>>;
}
