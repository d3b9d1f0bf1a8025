//! [`WebhookStore`] in memory, with the semantics of the SQLite one: `append` puts the
//! events of [`OUTBOX_KINDS`] of a tenant with a live subscription in the outbox.

use std::collections::{BTreeMap, HashMap};

use async_trait::async_trait;
use baton_types::{EventRecord, TenantId};

use super::MemoryStore;
use crate::webhooks::{
    AfterAttempt, AttemptRecord, DeliveryRecord, DeliveryStatus, DueDelivery, InboundHookRecord,
    NewDelivery, OUTBOX_KINDS, OutboxEvent, SubscriptionRecord, WebhookStore,
};
use crate::{Error, Result};

struct Delivery {
    record: DeliveryRecord,
    lease_until_ms: Option<i64>,
}

#[derive(Default)]
pub(super) struct Hooks {
    inbound: Vec<(InboundHookRecord, bool)>,
    seen: HashMap<(String, String), i64>,
    subscriptions: Vec<(SubscriptionRecord, bool)>,
    outbox: BTreeMap<i64, OutboxEvent>,
    next_outbox: i64,
    deliveries: BTreeMap<String, Delivery>,
}

impl Hooks {
    pub(super) fn has_subscriptions(&self, tenant: &TenantId) -> bool {
        self.subscriptions
            .iter()
            .any(|(s, live)| *live && &s.tenant == tenant)
    }

    /// Called by `create_run` and `append` with the events they wrote to a run of `tenant`.
    pub(super) fn appended(&mut self, tenant: &TenantId, workflow: &str, events: &[EventRecord]) {
        if !self.has_subscriptions(tenant) {
            return;
        }
        for ev in events {
            let kind = ev.event.kind();
            if !OUTBOX_KINDS.contains(&kind) {
                continue;
            }
            self.next_outbox += 1;
            let mut event = serde_json::to_value(&ev.event).unwrap_or_default();
            if kind == "run_created"
                && let Some(o) = event.as_object_mut()
            {
                // As the run log stores it: the inputs live in the run's row.
                o.remove("inputs");
            }
            self.outbox.insert(
                self.next_outbox,
                OutboxEvent {
                    id: self.next_outbox,
                    run_id: ev.run_id,
                    tenant: tenant.clone(),
                    workflow: workflow.to_string(),
                    seq: ev.seq,
                    kind: kind.to_string(),
                    step: ev.event.step().map(str::to_string),
                    at_ms: ev.at_ms,
                    event,
                },
            );
        }
    }
}

impl MemoryStore {
    pub(super) fn hooks(&self) -> std::sync::MutexGuard<'_, Hooks> {
        self.webhooks.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn tenant_known(&self, t: &TenantId) -> Result<()> {
        if self.tenancy().tenants.contains_key(t) {
            Ok(())
        } else {
            Err(Error::Missing {
                what: format!("tenant {t}"),
            })
        }
    }
}

fn missing(what: &str, id: &str) -> Error {
    Error::Missing {
        what: format!("{what} {id}"),
    }
}

#[async_trait]
impl WebhookStore for MemoryStore {
    async fn create_inbound(&self, h: InboundHookRecord) -> Result<()> {
        self.tenant_known(&h.tenant)?;
        self.hooks().inbound.push((h, true));
        Ok(())
    }

    async fn inbound_hooks(&self, tenant: &TenantId) -> Result<Vec<InboundHookRecord>> {
        Ok(self
            .hooks()
            .inbound
            .iter()
            .filter(|(h, live)| *live && &h.tenant == tenant)
            .map(|(h, _)| h.clone())
            .collect())
    }

    async fn inbound_hook(&self, tenant: &TenantId, id: &str) -> Result<Option<InboundHookRecord>> {
        Ok(self
            .hooks()
            .inbound
            .iter()
            .find(|(h, live)| *live && &h.tenant == tenant && h.id == id)
            .map(|(h, _)| h.clone()))
    }

    async fn inbound_for_receive(&self, id: &str) -> Result<Option<InboundHookRecord>> {
        Ok(self
            .hooks()
            .inbound
            .iter()
            .find(|(h, live)| *live && h.id == id)
            .map(|(h, _)| h.clone()))
    }

    async fn rotate_inbound(
        &self,
        tenant: &TenantId,
        id: &str,
        secret: String,
        previous_until_ms: i64,
    ) -> Result<InboundHookRecord> {
        let mut hooks = self.hooks();
        let (h, _) = hooks
            .inbound
            .iter_mut()
            .find(|(h, live)| *live && &h.tenant == tenant && h.id == id)
            .ok_or_else(|| missing("inbound webhook", id))?;
        h.previous_secret = Some(std::mem::replace(&mut h.secret, secret));
        h.previous_until_ms = Some(previous_until_ms);
        Ok(h.clone())
    }

    async fn delete_inbound(&self, tenant: &TenantId, id: &str, _at_ms: i64) -> Result<()> {
        let mut hooks = self.hooks();
        let (_, live) = hooks
            .inbound
            .iter_mut()
            .find(|(h, live)| *live && &h.tenant == tenant && h.id == id)
            .ok_or_else(|| missing("inbound webhook", id))?;
        *live = false;
        hooks.seen.retain(|(h, _), _| h != id);
        Ok(())
    }

    async fn remember_message(
        &self,
        hook: &str,
        msg_id: &str,
        keep_until_ms: i64,
        now_ms: i64,
    ) -> Result<bool> {
        let mut hooks = self.hooks();
        hooks
            .seen
            .retain(|(h, _), until| h != hook || *until >= now_ms);
        let key = (hook.to_string(), msg_id.to_string());
        if hooks.seen.contains_key(&key) {
            return Ok(false);
        }
        hooks.seen.insert(key, keep_until_ms);
        Ok(true)
    }

    async fn forget_message(&self, hook: &str, msg_id: &str) -> Result<()> {
        self.hooks()
            .seen
            .remove(&(hook.to_string(), msg_id.to_string()));
        Ok(())
    }

    async fn create_subscription(&self, s: SubscriptionRecord) -> Result<()> {
        self.tenant_known(&s.tenant)?;
        self.hooks().subscriptions.push((s, true));
        Ok(())
    }

    async fn subscriptions(&self, tenant: &TenantId) -> Result<Vec<SubscriptionRecord>> {
        Ok(self
            .hooks()
            .subscriptions
            .iter()
            .filter(|(s, live)| *live && &s.tenant == tenant)
            .map(|(s, _)| s.clone())
            .collect())
    }

    async fn subscription(
        &self,
        tenant: &TenantId,
        id: &str,
    ) -> Result<Option<SubscriptionRecord>> {
        Ok(self
            .hooks()
            .subscriptions
            .iter()
            .find(|(s, live)| *live && &s.tenant == tenant && s.id == id)
            .map(|(s, _)| s.clone()))
    }

    async fn delete_subscription(&self, tenant: &TenantId, id: &str, _at_ms: i64) -> Result<()> {
        let mut hooks = self.hooks();
        let (_, live) = hooks
            .subscriptions
            .iter_mut()
            .find(|(s, live)| *live && &s.tenant == tenant && s.id == id)
            .ok_or_else(|| missing("webhook subscription", id))?;
        *live = false;
        for d in hooks.deliveries.values_mut() {
            if d.record.delivery.subscription == id && d.record.status == DeliveryStatus::Pending {
                d.record.status = DeliveryStatus::Cancelled;
                d.record.next_at_ms = None;
            }
        }
        Ok(())
    }

    async fn outbox(&self, limit: u32) -> Result<Vec<OutboxEvent>> {
        Ok(self
            .hooks()
            .outbox
            .values()
            .take(limit as usize)
            .cloned()
            .collect())
    }

    async fn fan_out(&self, consumed: Vec<i64>, deliveries: Vec<NewDelivery>) -> Result<()> {
        let mut hooks = self.hooks();
        for d in deliveries {
            let next = d.created_at_ms;
            hooks.deliveries.entry(d.id.clone()).or_insert(Delivery {
                record: DeliveryRecord {
                    delivery: d,
                    status: DeliveryStatus::Pending,
                    next_at_ms: Some(next),
                    attempts: Vec::new(),
                },
                lease_until_ms: None,
            });
        }
        for id in consumed {
            hooks.outbox.remove(&id);
        }
        Ok(())
    }

    async fn claim_due(&self, now_ms: i64, lease_ms: i64, limit: u32) -> Result<Vec<DueDelivery>> {
        let mut hooks = self.hooks();
        let live: HashMap<String, (String, String)> = hooks
            .subscriptions
            .iter()
            .filter(|(_, live)| *live)
            .map(|(s, _)| (s.id.clone(), (s.url.clone(), s.secret.clone())))
            .collect();
        let mut due: Vec<&mut Delivery> = hooks
            .deliveries
            .values_mut()
            .filter(|d| {
                d.record.status == DeliveryStatus::Pending
                    && d.record.next_at_ms.is_some_and(|t| t <= now_ms)
                    && d.lease_until_ms.is_none_or(|t| t <= now_ms)
                    && live.contains_key(&d.record.delivery.subscription)
            })
            .collect();
        due.sort_by(|a, b| {
            (a.record.next_at_ms, &a.record.delivery.id)
                .cmp(&(b.record.next_at_ms, &b.record.delivery.id))
        });
        let mut out = Vec::new();
        for d in due.into_iter().take(limit as usize) {
            d.lease_until_ms = Some(now_ms.saturating_add(lease_ms));
            if let Some((url, secret)) = live.get(&d.record.delivery.subscription) {
                out.push(DueDelivery {
                    delivery: d.record.delivery.clone(),
                    attempts: u32::try_from(d.record.attempts.len()).unwrap_or(u32::MAX),
                    url: url.clone(),
                    secret: secret.clone(),
                });
            }
        }
        Ok(out)
    }

    async fn record_attempt(
        &self,
        delivery: &str,
        a: AttemptRecord,
        after: AfterAttempt,
    ) -> Result<()> {
        let mut hooks = self.hooks();
        let d = hooks
            .deliveries
            .get_mut(delivery)
            .ok_or_else(|| missing("delivery", delivery))?;
        (d.record.status, d.record.next_at_ms) = match after {
            AfterAttempt::Succeeded => (DeliveryStatus::Succeeded, None),
            AfterAttempt::RetryAt(t) => (DeliveryStatus::Pending, Some(t)),
            AfterAttempt::Failed => (DeliveryStatus::Failed, None),
        };
        d.lease_until_ms = None;
        d.record.attempts.retain(|x| x.n != a.n);
        d.record.attempts.push(a);
        Ok(())
    }

    async fn deliveries(
        &self,
        tenant: &TenantId,
        subscription: &str,
        before: Option<(i64, String)>,
        limit: u32,
    ) -> Result<Vec<DeliveryRecord>> {
        let hooks = self.hooks();
        let mut out: Vec<DeliveryRecord> = hooks
            .deliveries
            .values()
            .map(|d| &d.record)
            .filter(|d| &d.delivery.tenant == tenant && d.delivery.subscription == subscription)
            .filter(|d| {
                before
                    .as_ref()
                    .is_none_or(|(at, id)| (d.delivery.created_at_ms, &d.delivery.id) < (*at, id))
            })
            .cloned()
            .collect();
        out.sort_by(|a, b| {
            (b.delivery.created_at_ms, &b.delivery.id)
                .cmp(&(a.delivery.created_at_ms, &a.delivery.id))
        });
        out.truncate(limit as usize);
        Ok(out)
    }
}
