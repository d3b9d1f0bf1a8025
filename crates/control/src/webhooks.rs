//! Webhooks in the Standard Webhooks format (`webhook-id`, `webhook-timestamp`,
//! `webhook-signature`; see `signature`).
//!
//! - **Inbound**: a tenant's editor makes a hook bound to a stored workflow; a request to it
//!   ([`Control::receive_webhook`], `POST /hooks/{id}` in the server) is authenticated by its
//!   signature alone (no API key), within ±300 s of its timestamp, once per `webhook-id`, with
//!   two secrets valid during a rotation, and starts a run as the hook (role `runner`, key id
//!   `hook/<id>`). Every refusal is audited and changes nothing else.
//! - **Outbound**: subscriptions to run events. The store writes the events to a durable
//!   outbox as they are logged (whichever process drives the run); the server's delivery
//!   worker fans them out ([`Control::webhook_fan_out`]), claims what is due
//!   ([`Control::claim_deliveries`]), sends it and records each attempt
//!   ([`Control::record_delivery_attempt`]). Targets are checked against an
//!   [`AddressPolicy`] when a subscription is made and again at delivery.

mod outbound;
pub mod policy;
pub mod signature;

#[cfg(test)]
use outbound::check_url;

use std::collections::HashMap;
use std::sync::Arc;

use baton_store::webhooks::{
    AfterAttempt, AttemptRecord, DeliveryRecord, DeliveryStatus, DueDelivery, InboundHookRecord,
    NewDelivery, SubscriptionRecord,
};
use baton_store::{WebhookStore, now_ms};
use baton_types::{Role, RunId, TenantId};
use rand::RngCore;
use serde::Serialize;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

pub use policy::{AddressPolicy, Cidr};

use crate::audit::Outcome;
use crate::error::{Error, Result};
use crate::runner::Drive;
use crate::runs::{RunRequest, WorkflowSource};
use crate::workflows::WorkflowRef;
use crate::{Caller, Control, Permission};

/// The event types a subscription may ask for, with the run log's event kind of each.
pub const EVENT_TYPES: &[(&str, &str)] = &[
    ("run.created", "run_created"),
    ("run.succeeded", "run_succeeded"),
    ("run.failed", "run_failed"),
    ("run.cancelled", "run_cancelled"),
    ("run.paused", "paused"),
    ("step.succeeded", "step_succeeded"),
    ("step.failed", "step_failed"),
    ("approval.requested", "human_requested"),
    ("approval.escalated", "human_escalated"),
    ("approval.answered", "human_responded"),
];

/// A run its budget stopped (a `paused` event with reason `budget`): delivered under this
/// type, not `run.paused`.
pub const BUDGET_EXCEEDED: &str = "run.budget_exceeded";

/// The webhook type of a logged event (its kind and the event as logged).
pub fn webhook_type(kind: &str, event: &Value) -> Option<&'static str> {
    if kind == "paused" && event["pause"]["reason"] == "budget" {
        return Some(BUDGET_EXCEEDED);
    }
    event_type_of(kind)
}

/// Every event type a subscription may ask for.
pub fn known_types() -> Vec<&'static str> {
    let mut all: Vec<&str> = EVENT_TYPES.iter().map(|(t, _)| *t).collect();
    all.push(BUDGET_EXCEEDED);
    all
}

/// The webhook type of a run log event kind.
pub fn event_type_of(kind: &str) -> Option<&'static str> {
    EVENT_TYPES
        .iter()
        .find(|(_, k)| *k == kind)
        .map(|(t, _)| *t)
}

/// What webhooks need: where they are kept and where deliveries may go.
pub(crate) struct Webhooks {
    store: Arc<dyn WebhookStore>,
    policy: AddressPolicy,
}

/// An inbound hook as shown (never its secret).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct InboundHook {
    pub id: String,
    /// Where to send: `POST` this path on the server.
    pub path: String,
    pub workflow: String,
    /// The input the whole body is given as; absent: the body's fields are the inputs.
    pub body_input: Option<String>,
    pub name: Option<String>,
    pub created_at_ms: i64,
    pub created_by: Option<String>,
    /// Until when the secret before the last rotation is still accepted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_secret_valid_until_ms: Option<i64>,
}

impl InboundHook {
    fn of(h: &InboundHookRecord, now: i64) -> Self {
        Self {
            id: h.id.clone(),
            path: format!("/hooks/{}", h.id),
            workflow: h.workflow.clone(),
            body_input: h.body_input.clone(),
            name: h.name.clone(),
            created_at_ms: h.created_at_ms,
            created_by: h.created_by.clone(),
            previous_secret_valid_until_ms: h.previous_until_ms.filter(|t| *t > now),
        }
    }
}

/// A hook as made or rotated: the only time its secret is shown.
#[derive(Clone, Debug, Serialize)]
pub struct HookWithSecret {
    #[serde(flatten)]
    pub hook: InboundHook,
    /// `whsec_<base64>`: sign requests with it.
    pub secret: String,
}

/// What a new inbound hook takes.
#[derive(Clone, Debug, Default)]
pub struct NewInboundHook {
    /// A stored workflow: `name` (the latest version at each call) or `name@3`.
    pub workflow: String,
    /// Give the whole body as this one input (any JSON); absent: the body must be an object
    /// whose fields are the inputs.
    pub body_input: Option<String>,
    pub name: Option<String>,
}

/// A request to an inbound hook, as the transport received it.
#[derive(Clone, Debug, Default)]
pub struct Incoming<'a> {
    pub hook: &'a str,
    pub msg_id: Option<&'a str>,
    pub timestamp: Option<&'a str>,
    pub signature: Option<&'a str>,
    pub body: &'a [u8],
    pub request_id: Option<String>,
    pub source: Option<String>,
}

/// A request that started a run.
pub struct Received {
    pub run: RunId,
    /// The new run, to drive in the background.
    pub drive: Option<Drive>,
}

/// A subscription as shown (never its secret).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct Subscription {
    pub id: String,
    pub url: String,
    pub events: Vec<String>,
    pub description: Option<String>,
    pub created_at_ms: i64,
    pub created_by: Option<String>,
}

impl Subscription {
    fn of(s: SubscriptionRecord) -> Self {
        Self {
            id: s.id,
            url: s.url,
            events: s.events,
            description: s.description,
            created_at_ms: s.created_at_ms,
            created_by: s.created_by,
        }
    }
}

/// A subscription as made: the only time its secret is shown.
#[derive(Clone, Debug, Serialize, schemars::JsonSchema)]
pub struct SubscriptionWithSecret {
    #[serde(flatten)]
    pub subscription: Subscription,
    /// `whsec_<base64>`: check deliveries' signatures with it.
    pub secret: String,
}

/// What a new subscription takes.
#[derive(Clone, Debug, Default)]
pub struct NewSubscription {
    /// `http://` or `https://`, no user name or password.
    pub url: String,
    /// Event types (see [`EVENT_TYPES`]).
    pub events: Vec<String>,
    pub description: Option<String>,
}

/// A delivery as shown.
#[derive(Clone, Debug, Serialize, schemars::JsonSchema)]
pub struct Delivery {
    /// The `webhook-id` of every attempt.
    pub id: String,
    pub event_type: String,
    pub run_id: Option<RunId>,
    pub seq: Option<u64>,
    pub status: DeliveryStatus,
    pub created_at_ms: i64,
    pub next_attempt_at_ms: Option<i64>,
    pub attempts: Vec<AttemptRecord>,
    /// The body every attempt sends.
    pub payload: Value,
}

impl Delivery {
    fn of(d: DeliveryRecord) -> Self {
        Self {
            payload: serde_json::from_str(&d.delivery.payload)
                .unwrap_or(Value::String(d.delivery.payload.clone())),
            id: d.delivery.id,
            event_type: d.delivery.event_type,
            run_id: d.delivery.run_id,
            seq: d.delivery.seq,
            status: d.status,
            created_at_ms: d.delivery.created_at_ms,
            next_attempt_at_ms: d.next_at_ms,
            attempts: d.attempts,
        }
    }
}

/// A page of deliveries, newest first.
#[derive(Clone, Debug, Serialize, schemars::JsonSchema)]
pub struct DeliveryPage {
    pub deliveries: Vec<Delivery>,
    /// The `cursor` of the next page (absent: this is the last).
    pub next: Option<String>,
}

fn random_id(prefix: &str) -> String {
    let mut b = [0u8; 12];
    rand::rng().fill_bytes(&mut b);
    format!("{prefix}{}", baton_store::tenancy::hex(&b))
}

fn check_id(id: &str, prefix: &str, what: &str) -> Result<()> {
    let ok = id
        .strip_prefix(prefix)
        .is_some_and(|h| h.len() == 24 && h.bytes().all(|b| b.is_ascii_hexdigit()));
    if ok {
        Ok(())
    } else {
        Err(Error::not_found(format!("no {what} {id}")))
    }
}

/// The message id of the delivery of one event to one subscription: the same whoever fans
/// it out, so a second fan-out makes no second delivery.
fn delivery_id(subscription: &str, run: RunId, seq: u64) -> String {
    let h = Sha256::digest(format!("{subscription}/{run}/{seq}").as_bytes());
    format!("msg_{}", baton_store::tenancy::hex(&h[..16]))
}

fn rfc3339(ms: i64) -> String {
    let t =
        std::time::UNIX_EPOCH + std::time::Duration::from_millis(u64::try_from(ms).unwrap_or(0));
    humantime::format_rfc3339_millis(t).to_string()
}

fn check_text(field: &str, v: &Option<String>, max: usize) -> Result<()> {
    match v {
        Some(s) if s.chars().count() > max || s.chars().any(char::is_control) => {
            Err(Error::invalid_field(
                field,
                format!("{field}: at most {max} characters, no control characters"),
            ))
        }
        _ => Ok(()),
    }
}

impl Control {
    /// Webhooks over `store` (the same database as the run log: its outbox is filled as
    /// events are appended), sending only where `policy` allows.
    pub fn with_webhooks(mut self, store: Arc<dyn WebhookStore>, policy: AddressPolicy) -> Self {
        self.webhooks = Some(Arc::new(Webhooks { store, policy }));
        self
    }

    fn hooks(&self) -> Result<&Webhooks> {
        self.webhooks.as_deref().ok_or_else(|| Error::Unavailable {
            message: "webhooks are not configured in this process".into(),
        })
    }

    /// Where outbound webhooks may go (`None`: webhooks are not configured).
    pub fn webhook_policy(&self) -> Option<&AddressPolicy> {
        self.webhooks.as_deref().map(|w| &w.policy)
    }

    /// Editors and admins manage webhooks; viewers, editors and admins read them (a runner
    /// key, which sees only its own runs, does not: deliveries carry every run's events).
    async fn webhook_access(&self, caller: &Caller, write: bool, action: &str) -> Result<()> {
        let ok = if write {
            caller.allows(Permission::EditWorkflows)
        } else {
            caller.role != Role::Runner
        };
        if ok {
            return Ok(());
        }
        let e = Error::forbidden(format!(
            "a key with role {} may not {} webhooks",
            caller.role,
            if write {
                "create, change or delete"
            } else {
                "read"
            }
        ));
        Err(self.denied(caller, action, None, e).await)
    }

    // ---- inbound -----------------------------------------------------------------------

    /// Makes an inbound hook bound to a stored workflow of the caller's tenant.
    pub async fn create_inbound_hook(
        &self,
        caller: &Caller,
        req: NewInboundHook,
    ) -> Result<HookWithSecret> {
        self.webhook_access(caller, true, "webhook.inbound.create")
            .await?;
        let w = self.hooks()?;
        let r: WorkflowRef = req.workflow.parse()?;
        // The workflow must exist now (it may change later: `name` follows its latest).
        self.stored_workflow(caller, &r).await?;
        if let Some(i) = &req.body_input {
            let ok = !i.is_empty()
                && i.len() <= 100
                && i.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
            if !ok {
                return Err(Error::invalid_field(
                    "body_input",
                    format!("'{i}' is not an input name: use 1-100 letters, digits or '_'"),
                ));
            }
        }
        check_text("name", &req.name, 200)?;
        let now = now_ms();
        let rec = InboundHookRecord {
            id: random_id("wh_"),
            tenant: caller.tenant.clone(),
            workflow: r.to_string(),
            body_input: req.body_input,
            name: req.name,
            secret: signature::new_secret(),
            previous_secret: None,
            previous_until_ms: None,
            created_at_ms: now,
            created_by: Some(caller.key_id.clone()),
        };
        w.store.create_inbound(rec.clone()).await?;
        let object = format!("hook/{}", rec.id);
        self.record(
            caller,
            "webhook.inbound.create",
            Some(&object),
            Outcome::Ok,
            json!({"workflow": rec.workflow}),
        )
        .await?;
        Ok(HookWithSecret {
            hook: InboundHook::of(&rec, now),
            secret: rec.secret,
        })
    }

    pub async fn list_inbound_hooks(&self, caller: &Caller) -> Result<Vec<InboundHook>> {
        self.webhook_access(caller, false, "webhook.inbound.read")
            .await?;
        let now = now_ms();
        Ok(self
            .hooks()?
            .store
            .inbound_hooks(&caller.tenant)
            .await?
            .iter()
            .map(|h| InboundHook::of(h, now))
            .collect())
    }

    async fn own_hook(&self, caller: &Caller, id: &str) -> Result<InboundHookRecord> {
        check_id(id, "wh_", "inbound webhook")?;
        self.hooks()?
            .store
            .inbound_hook(&caller.tenant, id)
            .await?
            .ok_or_else(|| Error::not_found(format!("no inbound webhook {id}")))
    }

    pub async fn get_inbound_hook(&self, caller: &Caller, id: &str) -> Result<InboundHook> {
        self.webhook_access(caller, false, "webhook.inbound.read")
            .await?;
        Ok(InboundHook::of(&self.own_hook(caller, id).await?, now_ms()))
    }

    /// Gives the hook a new secret; the old one is still accepted for `old_valid_ms` (0: not
    /// at all).
    pub async fn rotate_inbound_hook(
        &self,
        caller: &Caller,
        id: &str,
        old_valid_ms: i64,
    ) -> Result<HookWithSecret> {
        self.webhook_access(caller, true, "webhook.inbound.rotate")
            .await?;
        self.own_hook(caller, id).await?;
        if old_valid_ms < 0 {
            return Err(Error::invalid_field(
                "old_secret_valid_for",
                "must not be negative",
            ));
        }
        let now = now_ms();
        let secret = signature::new_secret();
        let until = now.saturating_add(old_valid_ms);
        let rec = self
            .hooks()?
            .store
            .rotate_inbound(&caller.tenant, id, secret, until)
            .await?;
        self.record(
            caller,
            "webhook.inbound.rotate",
            Some(&format!("hook/{id}")),
            Outcome::Ok,
            json!({"previous_valid_until_ms": until}),
        )
        .await?;
        Ok(HookWithSecret {
            hook: InboundHook::of(&rec, now),
            secret: rec.secret,
        })
    }

    pub async fn delete_inbound_hook(&self, caller: &Caller, id: &str) -> Result<()> {
        self.webhook_access(caller, true, "webhook.inbound.delete")
            .await?;
        self.own_hook(caller, id).await?;
        self.hooks()?
            .store
            .delete_inbound(&caller.tenant, id, now_ms())
            .await?;
        self.record(
            caller,
            "webhook.inbound.delete",
            Some(&format!("hook/{id}")),
            Outcome::Ok,
            Value::Null,
        )
        .await?;
        Ok(())
    }

    /// Checks a request to an inbound hook and starts its workflow: the signature (any
    /// listed `v1` signature under the secret, or the previous one during a rotation), the
    /// timestamp (±[`signature::TOLERANCE_S`]), the message id (once per hook), then the
    /// body (the inputs). A refusal is audited (`webhook.receive`, `failed`) and leaves
    /// nothing else behind.
    pub async fn receive_webhook(&self, inc: Incoming<'_>) -> Result<Received> {
        let w = self.hooks()?;
        let object = format!("hook/{}", inc.hook);
        let found = match check_id(inc.hook, "wh_", "inbound webhook") {
            Ok(()) => w.store.inbound_for_receive(inc.hook).await?,
            Err(_) => None,
        };
        let Some(hook) = found else {
            // No tenant to file it under: the operator's (`default`) audit log.
            let who = Caller::system("webhook").with_request(inc.request_id, inc.source);
            let e = Error::not_found(format!("no inbound webhook {}", inc.hook));
            self.refused(&who, &object, &e).await;
            return Err(e);
        };
        let caller = Caller {
            tenant: hook.tenant.clone(),
            key_id: object.clone(),
            role: Role::Runner,
            request_id: inc.request_id.clone(),
            source: inc.source.clone(),
        };
        match self.accept(w, &hook, &caller, &inc).await {
            Ok(r) => {
                self.telemetry.inbound(true);
                let details = json!({"run": r.run.to_string(), "webhook_id": inc.msg_id});
                self.record(
                    &caller,
                    "webhook.receive",
                    Some(&object),
                    Outcome::Ok,
                    details,
                )
                .await?;
                Ok(r)
            }
            Err(e) => {
                self.refused(&caller, &object, &e).await;
                Err(e)
            }
        }
    }

    async fn refused(&self, caller: &Caller, object: &str, e: &Error) {
        self.telemetry.inbound(false);
        let details = json!({"code": e.code().as_str(), "message": e.to_string()});
        if let Err(re) = self
            .record(
                caller,
                "webhook.receive",
                Some(object),
                Outcome::Failed,
                details,
            )
            .await
        {
            tracing::error!("cannot record a refused webhook in the audit log: {re}");
        }
    }

    async fn accept(
        &self,
        w: &Webhooks,
        hook: &InboundHookRecord,
        caller: &Caller,
        inc: &Incoming<'_>,
    ) -> Result<Received> {
        let (Some(msg_id), Some(ts), Some(sig)) = (inc.msg_id, inc.timestamp, inc.signature) else {
            return Err(Error::unauthenticated(
                "a webhook request needs the headers webhook-id, webhook-timestamp and webhook-signature (Standard Webhooks)",
            ));
        };
        if msg_id.is_empty() || msg_id.len() > 255 {
            return Err(Error::unauthenticated(
                "webhook-id must have 1 to 255 characters",
            ));
        }
        let ts: i64 = ts.trim().parse().map_err(|_| {
            Error::unauthenticated("webhook-timestamp must be whole seconds since 1970 (Unix time)")
        })?;
        let now = now_ms();
        let mut keys = vec![signature::key_of(&hook.secret)?];
        if let (Some(old), Some(until)) = (&hook.previous_secret, hook.previous_until_ms)
            && until > now
        {
            keys.push(signature::key_of(old)?);
        }
        if !signature::verify(&keys, msg_id, ts, inc.body, sig) {
            return Err(Error::unauthenticated(
                "webhook-signature does not match: sign \"{webhook-id}.{webhook-timestamp}.{body}\" with HMAC-SHA256 under the hook's secret (v1,<base64>)",
            ));
        }
        let skew = now / 1000 - ts;
        if skew.abs() > signature::TOLERANCE_S {
            return Err(Error::unauthenticated(format!(
                "webhook-timestamp is {} s in the {}: at most {} s either way are accepted",
                skew.abs(),
                if skew > 0 { "past" } else { "future" },
                signature::TOLERANCE_S
            )));
        }
        let inputs = self.hook_inputs(hook, inc.body)?;
        let r: WorkflowRef = hook.workflow.parse()?;
        // Remembered past the time its timestamp stops being accepted.
        let keep_until = (ts + 2 * signature::TOLERANCE_S).saturating_mul(1000);
        if !w
            .store
            .remember_message(&hook.id, msg_id, keep_until, now)
            .await?
        {
            return Err(Error::conflict(format!(
                "webhook-id {msg_id} was already received by this hook: a replayed message is refused"
            )));
        }
        let started = self
            .start_run(
                caller,
                WorkflowSource::Stored(r),
                RunRequest {
                    inputs,
                    ..Default::default()
                },
            )
            .await;
        match started {
            Ok(s) => Ok(Received {
                run: s.run,
                drive: s.drive,
            }),
            Err(e) => {
                // Refused: the message may be sent again once fixed.
                w.store.forget_message(&hook.id, msg_id).await?;
                Err(e)
            }
        }
    }

    fn hook_inputs(&self, hook: &InboundHookRecord, body: &[u8]) -> Result<Map<String, Value>> {
        let v: Value = if body.iter().all(u8::is_ascii_whitespace) {
            Value::Object(Map::new())
        } else {
            serde_json::from_slice(body)
                .map_err(|e| Error::invalid_field("body", format!("the body is not JSON: {e}")))?
        };
        match (&hook.body_input, v) {
            (Some(name), v) => Ok(Map::from_iter([(name.clone(), v)])),
            (None, Value::Object(m)) => Ok(m),
            (None, _) => Err(Error::invalid_field(
                "body",
                "the body must be a JSON object (its fields are the workflow's inputs), or the hook must name an input for the whole body (body_input)",
            )),
        }
    }
}

#[cfg(test)]
mod tests;
