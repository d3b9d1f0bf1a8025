//! Outbound webhooks: subscriptions to a tenant's run events, their deliveries and attempts,
//! and what the delivery worker asks of control (fan-out from the outbox, claims, attempts).

use super::*;

impl Control {
    /// Subscribes `req.url` to the caller's tenant's run events of `req.events`.
    pub async fn create_subscription(
        &self,
        caller: &Caller,
        req: NewSubscription,
    ) -> Result<SubscriptionWithSecret> {
        self.webhook_access(caller, true, "webhook.subscription.create")
            .await?;
        let w = self.hooks()?;
        let url = check_url(&req.url, &w.policy)?;
        if req.events.is_empty() {
            return Err(Error::invalid_field(
                "events",
                "give at least one event type",
            ));
        }
        let mut events: Vec<String> = Vec::new();
        for e in &req.events {
            if !known_types().contains(&e.as_str()) {
                let known = known_types();
                return Err(Error::invalid_field(
                    "events",
                    format!("'{e}' is not an event type; known: {}", known.join(", ")),
                ));
            }
            if !events.contains(e) {
                events.push(e.clone());
            }
        }
        check_text("description", &req.description, 200)?;
        let rec = SubscriptionRecord {
            id: random_id("sub_"),
            tenant: caller.tenant.clone(),
            url,
            events,
            secret: signature::new_secret(),
            description: req.description,
            created_at_ms: now_ms(),
            created_by: Some(caller.key_id.clone()),
        };
        w.store.create_subscription(rec.clone()).await?;
        self.record(
            caller,
            "webhook.subscription.create",
            Some(&format!("subscription/{}", rec.id)),
            Outcome::Ok,
            json!({"url": rec.url, "events": rec.events}),
        )
        .await?;
        let secret = rec.secret.clone();
        Ok(SubscriptionWithSecret {
            subscription: Subscription::of(rec),
            secret,
        })
    }

    pub async fn list_subscriptions(&self, caller: &Caller) -> Result<Vec<Subscription>> {
        self.webhook_access(caller, false, "webhook.subscription.read")
            .await?;
        Ok(self
            .hooks()?
            .store
            .subscriptions(&caller.tenant)
            .await?
            .into_iter()
            .map(Subscription::of)
            .collect())
    }

    async fn own_subscription(&self, caller: &Caller, id: &str) -> Result<SubscriptionRecord> {
        check_id(id, "sub_", "webhook subscription")?;
        self.hooks()?
            .store
            .subscription(&caller.tenant, id)
            .await?
            .ok_or_else(|| Error::not_found(format!("no webhook subscription {id}")))
    }

    pub async fn get_subscription(&self, caller: &Caller, id: &str) -> Result<Subscription> {
        self.webhook_access(caller, false, "webhook.subscription.read")
            .await?;
        Ok(Subscription::of(self.own_subscription(caller, id).await?))
    }

    /// Deletes a subscription; its deliveries not yet made are cancelled.
    pub async fn delete_subscription(&self, caller: &Caller, id: &str) -> Result<()> {
        self.webhook_access(caller, true, "webhook.subscription.delete")
            .await?;
        self.own_subscription(caller, id).await?;
        self.hooks()?
            .store
            .delete_subscription(&caller.tenant, id, now_ms())
            .await?;
        self.record(
            caller,
            "webhook.subscription.delete",
            Some(&format!("subscription/{id}")),
            Outcome::Ok,
            Value::Null,
        )
        .await?;
        Ok(())
    }

    /// A subscription's deliveries with every attempt, newest first, a page at a time.
    pub async fn deliveries(
        &self,
        caller: &Caller,
        id: &str,
        cursor: Option<&str>,
        limit: Option<u32>,
    ) -> Result<DeliveryPage> {
        self.webhook_access(caller, false, "webhook.subscription.read")
            .await?;
        self.own_subscription(caller, id).await?;
        let before = cursor
            .map(|c| {
                c.split_once('.')
                    .and_then(|(at, id)| Some((at.parse::<i64>().ok()?, id.to_string())))
                    .ok_or_else(|| {
                        Error::invalid_field(
                            "cursor",
                            format!("'{c}' is not a cursor of this listing"),
                        )
                    })
            })
            .transpose()?;
        let limit = limit.unwrap_or(50).clamp(1, 1000);
        let list = self
            .hooks()?
            .store
            .deliveries(&caller.tenant, id, before, limit)
            .await?;
        let next = (list.len() == limit as usize)
            .then(|| {
                list.last()
                    .map(|d| format!("{}.{}", d.delivery.created_at_ms, d.delivery.id))
            })
            .flatten();
        Ok(DeliveryPage {
            deliveries: list.into_iter().map(Delivery::of).collect(),
            next,
        })
    }

    // ---- the delivery worker -------------------------------------------------------------

    /// Turns up to `limit` outbox events into deliveries, one per subscription that asked
    /// for the event's type and existed when it happened. Returns how many events it took.
    pub async fn webhook_fan_out(&self, limit: u32) -> Result<usize> {
        let w = self.hooks()?;
        let events = w.store.outbox(limit).await?;
        if events.is_empty() {
            return Ok(0);
        }
        let mut subs: HashMap<TenantId, Vec<SubscriptionRecord>> = HashMap::new();
        let mut deliveries = Vec::new();
        let now = now_ms();
        for ev in &events {
            let Some(ty) = webhook_type(&ev.kind, &ev.event) else {
                continue;
            };
            if !subs.contains_key(&ev.tenant) {
                let list = w.store.subscriptions(&ev.tenant).await?;
                subs.insert(ev.tenant.clone(), list);
            }
            for s in subs.get(&ev.tenant).into_iter().flatten() {
                if !s.events.iter().any(|e| e == ty) || s.created_at_ms > ev.at_ms {
                    continue;
                }
                let payload = json!({
                    "type": ty,
                    "timestamp": rfc3339(ev.at_ms),
                    "data": {
                        "tenant": ev.tenant,
                        "run_id": ev.run_id,
                        "workflow": ev.workflow,
                        "seq": ev.seq,
                        "step": ev.step,
                        "event": ev.event,
                    }
                });
                deliveries.push(NewDelivery {
                    id: delivery_id(&s.id, ev.run_id, ev.seq),
                    subscription: s.id.clone(),
                    tenant: ev.tenant.clone(),
                    event_type: ty.to_string(),
                    run_id: Some(ev.run_id),
                    seq: Some(ev.seq),
                    payload: payload.to_string(),
                    created_at_ms: now,
                });
            }
        }
        let consumed = events.iter().map(|e| e.id).collect();
        w.store.fan_out(consumed, deliveries).await?;
        Ok(events.len())
    }

    /// Claims up to `limit` deliveries due now for `lease_ms`.
    pub async fn claim_deliveries(&self, limit: u32, lease_ms: i64) -> Result<Vec<DueDelivery>> {
        Ok(self
            .hooks()?
            .store
            .claim_due(now_ms(), lease_ms, limit)
            .await?)
    }

    /// Records an attempt of a claimed delivery and what follows it.
    pub async fn record_delivery_attempt(
        &self,
        delivery: &str,
        attempt: AttemptRecord,
        after: AfterAttempt,
    ) -> Result<()> {
        let outcome = match &after {
            AfterAttempt::Succeeded => "succeeded",
            AfterAttempt::RetryAt(_) => "retrying",
            AfterAttempt::Failed => "failed",
        };
        self.hooks()?
            .store
            .record_attempt(delivery, attempt, after)
            .await?;
        self.telemetry.delivery(outcome);
        Ok(())
    }
}

/// A subscription's URL: http(s), a host, no credentials or fragment, and a host that is
/// not refused as written (names are checked again, resolved, at each delivery).
pub(super) fn check_url(raw: &str, policy: &AddressPolicy) -> Result<String> {
    let bad = |why: String| Error::invalid_field("url", format!("url '{raw}': {why}"));
    let u = url::Url::parse(raw.trim()).map_err(|e| bad(e.to_string()))?;
    if !matches!(u.scheme(), "http" | "https") {
        return Err(bad("only http:// and https:// URLs are delivered to".into()));
    }
    if !u.username().is_empty() || u.password().is_some() {
        return Err(bad("no user name or password in the URL (put them in a path or a query the receiver checks)".into()));
    }
    if u.fragment().is_some() {
        return Err(bad("a fragment (#...) is never sent; remove it".into()));
    }
    let host = u.host_str().ok_or_else(|| bad("no host".into()))?;
    policy.check_host(host).map_err(bad)?;
    Ok(u.to_string())
}
