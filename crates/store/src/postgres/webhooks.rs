//! [`WebhookStore`] on PostgreSQL: the same tables as SQLite's. The outbox is filled by a
//! trigger on `events` in the transaction that appends them, whichever process appends; due
//! deliveries are claimed with `FOR UPDATE SKIP LOCKED` and a lease, so several servers
//! deliver each one once.

use async_trait::async_trait;
use baton_types::{RunId, TenantId};
use tokio_postgres::GenericClient;
use tokio_postgres::error::SqlState;

use super::{PostgresStore, pg_err};
use crate::webhooks::{
    AfterAttempt, AttemptRecord, DeliveryRecord, DeliveryStatus, DueDelivery, InboundHookRecord,
    NewDelivery, OutboxEvent, SubscriptionRecord, WebhookStore,
};
use crate::{Error, Result};

/// Schema 5: webhooks (inbound hooks and the message ids they saw, subscriptions, the outbox
/// and its trigger, deliveries and their attempts).
pub(super) const MIGRATION: &str = r#"
CREATE TABLE webhook_inbound (
    id TEXT COLLATE "C" PRIMARY KEY,
    tenant TEXT COLLATE "C" NOT NULL REFERENCES tenants (id),
    workflow TEXT NOT NULL,
    body_input TEXT,
    name TEXT,
    secret TEXT NOT NULL,
    previous_secret TEXT,
    previous_until_ms BIGINT,
    created_at_ms BIGINT NOT NULL,
    created_by TEXT,
    deleted_at_ms BIGINT
);
CREATE INDEX webhook_inbound_by_tenant ON webhook_inbound (tenant, created_at_ms);
CREATE TABLE webhook_seen (
    hook TEXT COLLATE "C" NOT NULL,
    msg_id TEXT COLLATE "C" NOT NULL,
    keep_until_ms BIGINT NOT NULL,
    PRIMARY KEY (hook, msg_id)
);
CREATE TABLE webhook_subscriptions (
    id TEXT COLLATE "C" PRIMARY KEY,
    tenant TEXT COLLATE "C" NOT NULL REFERENCES tenants (id),
    url TEXT NOT NULL,
    events TEXT NOT NULL,
    secret TEXT NOT NULL,
    description TEXT,
    created_at_ms BIGINT NOT NULL,
    created_by TEXT,
    deleted_at_ms BIGINT
);
CREATE INDEX webhook_subscriptions_by_tenant ON webhook_subscriptions (tenant, deleted_at_ms);
CREATE TABLE webhook_outbox (
    id BIGSERIAL PRIMARY KEY,
    run_id TEXT COLLATE "C" NOT NULL,
    seq BIGINT NOT NULL,
    kind TEXT NOT NULL,
    step TEXT,
    at_ms BIGINT NOT NULL,
    payload TEXT NOT NULL
);
CREATE FUNCTION webhook_outbox_fill() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.kind IN ('run_created', 'run_succeeded', 'run_failed', 'run_cancelled', 'paused',
                    'step_succeeded', 'step_failed', 'human_requested', 'human_escalated',
                    'human_responded')
       AND EXISTS (SELECT 1 FROM runs r JOIN webhook_subscriptions s ON s.tenant = r.tenant
                   WHERE r.id = NEW.run_id AND s.deleted_at_ms IS NULL) THEN
        INSERT INTO webhook_outbox (run_id, seq, kind, step, at_ms, payload)
        VALUES (NEW.run_id, NEW.seq, NEW.kind, NEW.step, NEW.at_ms, NEW.payload);
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER webhook_outbox_fill AFTER INSERT ON events
    FOR EACH ROW EXECUTE FUNCTION webhook_outbox_fill();
CREATE TABLE webhook_deliveries (
    id TEXT COLLATE "C" PRIMARY KEY,
    subscription TEXT COLLATE "C" NOT NULL,
    tenant TEXT COLLATE "C" NOT NULL,
    event_type TEXT NOT NULL,
    run_id TEXT,
    seq BIGINT,
    payload TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    status TEXT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    next_at_ms BIGINT,
    lease_until_ms BIGINT
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (status, next_at_ms);
CREATE INDEX webhook_deliveries_by_subscription
    ON webhook_deliveries (tenant, subscription, created_at_ms DESC, id DESC);
CREATE TABLE webhook_attempts (
    delivery TEXT COLLATE "C" NOT NULL,
    n BIGINT NOT NULL,
    at_ms BIGINT NOT NULL,
    duration_ms BIGINT NOT NULL,
    status_code BIGINT,
    error TEXT,
    PRIMARY KEY (delivery, n)
);
"#;

fn corrupt(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Corrupt(format!("{what}: {e}"))
}

fn tenant_col(r: &tokio_postgres::Row, i: usize) -> Result<TenantId> {
    let s: String = r.try_get(i).map_err(pg_err)?;
    s.parse()
        .map_err(|e: baton_types::tenancy::ParseTenantIdError| corrupt(&format!("tenant {s}"), e))
}

fn i64_of(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn u64_of(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

fn u32_of(v: i64) -> u32 {
    u32::try_from(v).unwrap_or(u32::MAX)
}

const HOOK_COLS: &str = "id, tenant, workflow, body_input, name, secret, previous_secret, previous_until_ms, created_at_ms, created_by";

fn parse_hook(r: &tokio_postgres::Row) -> Result<InboundHookRecord> {
    Ok(InboundHookRecord {
        id: r.try_get(0).map_err(pg_err)?,
        tenant: tenant_col(r, 1)?,
        workflow: r.try_get(2).map_err(pg_err)?,
        body_input: r.try_get(3).map_err(pg_err)?,
        name: r.try_get(4).map_err(pg_err)?,
        secret: r.try_get(5).map_err(pg_err)?,
        previous_secret: r.try_get(6).map_err(pg_err)?,
        previous_until_ms: r.try_get(7).map_err(pg_err)?,
        created_at_ms: r.try_get(8).map_err(pg_err)?,
        created_by: r.try_get(9).map_err(pg_err)?,
    })
}

const SUB_COLS: &str = "id, tenant, url, events, secret, description, created_at_ms, created_by";

fn parse_sub(r: &tokio_postgres::Row) -> Result<SubscriptionRecord> {
    let id: String = r.try_get(0).map_err(pg_err)?;
    let events: String = r.try_get(3).map_err(pg_err)?;
    Ok(SubscriptionRecord {
        events: serde_json::from_str(&events)
            .map_err(|e| corrupt(&format!("subscription {id}"), e))?,
        id,
        tenant: tenant_col(r, 1)?,
        url: r.try_get(2).map_err(pg_err)?,
        secret: r.try_get(4).map_err(pg_err)?,
        description: r.try_get(5).map_err(pg_err)?,
        created_at_ms: r.try_get(6).map_err(pg_err)?,
        created_by: r.try_get(7).map_err(pg_err)?,
    })
}

const DELIVERY_COLS: &str =
    "d.id, d.subscription, d.tenant, d.event_type, d.run_id, d.seq, d.payload, d.created_at_ms";

fn parse_delivery(r: &tokio_postgres::Row) -> Result<NewDelivery> {
    let run: Option<String> = r.try_get(4).map_err(pg_err)?;
    Ok(NewDelivery {
        id: r.try_get(0).map_err(pg_err)?,
        subscription: r.try_get(1).map_err(pg_err)?,
        tenant: tenant_col(r, 2)?,
        event_type: r.try_get(3).map_err(pg_err)?,
        run_id: run
            .map(|s| {
                s.parse::<RunId>()
                    .map_err(|e| corrupt(&format!("delivery run {s}"), e))
            })
            .transpose()?,
        seq: r.try_get::<_, Option<i64>>(5).map_err(pg_err)?.map(u64_of),
        payload: r.try_get(6).map_err(pg_err)?,
        created_at_ms: r.try_get(7).map_err(pg_err)?,
    })
}

/// A tenant-referencing insert that failed on its foreign key names the tenant.
fn missing_tenant(t: &TenantId) -> impl Fn(tokio_postgres::Error) -> Error + '_ {
    move |e| match e.code() {
        Some(&SqlState::FOREIGN_KEY_VIOLATION) => Error::Missing {
            what: format!("tenant {t}"),
        },
        _ => pg_err(e),
    }
}

async fn attempts_of(c: &impl GenericClient, delivery: &str) -> Result<Vec<AttemptRecord>> {
    c.query(
        "SELECT n, at_ms, duration_ms, status_code, error FROM webhook_attempts
         WHERE delivery = $1 ORDER BY n",
        &[&delivery],
    )
    .await
    .map_err(pg_err)?
    .iter()
    .map(|r| {
        Ok(AttemptRecord {
            n: u32_of(r.try_get(0).map_err(pg_err)?),
            at_ms: r.try_get(1).map_err(pg_err)?,
            duration_ms: u64_of(r.try_get(2).map_err(pg_err)?),
            status_code: r
                .try_get::<_, Option<i64>>(3)
                .map_err(pg_err)?
                .map(|c| u16::try_from(c).unwrap_or(0)),
            error: r.try_get(4).map_err(pg_err)?,
        })
    })
    .collect()
}

#[async_trait]
impl WebhookStore for PostgresStore {
    async fn create_inbound(&self, h: InboundHookRecord) -> Result<()> {
        let c = self.conn().await?;
        c.execute(
            &format!(
                "INSERT INTO webhook_inbound ({HOOK_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
            ),
            &[
                &h.id,
                &h.tenant.as_str(),
                &h.workflow,
                &h.body_input,
                &h.name,
                &h.secret,
                &h.previous_secret,
                &h.previous_until_ms,
                &h.created_at_ms,
                &h.created_by,
            ],
        )
        .await
        .map_err(missing_tenant(&h.tenant))?;
        Ok(())
    }

    async fn inbound_hooks(&self, tenant: &TenantId) -> Result<Vec<InboundHookRecord>> {
        let c = self.conn().await?;
        c.query(
            &format!(
                "SELECT {HOOK_COLS} FROM webhook_inbound WHERE tenant = $1 AND deleted_at_ms IS NULL
                 ORDER BY created_at_ms, id"
            ),
            &[&tenant.as_str()],
        )
        .await
        .map_err(pg_err)?
        .iter()
        .map(parse_hook)
        .collect()
    }

    async fn inbound_hook(&self, tenant: &TenantId, id: &str) -> Result<Option<InboundHookRecord>> {
        let c = self.conn().await?;
        c.query_opt(
            &format!(
                "SELECT {HOOK_COLS} FROM webhook_inbound
                 WHERE tenant = $1 AND id = $2 AND deleted_at_ms IS NULL"
            ),
            &[&tenant.as_str(), &id],
        )
        .await
        .map_err(pg_err)?
        .as_ref()
        .map(parse_hook)
        .transpose()
    }

    async fn inbound_for_receive(&self, id: &str) -> Result<Option<InboundHookRecord>> {
        let c = self.conn().await?;
        c.query_opt(
            &format!(
                "SELECT {HOOK_COLS} FROM webhook_inbound WHERE id = $1 AND deleted_at_ms IS NULL"
            ),
            &[&id],
        )
        .await
        .map_err(pg_err)?
        .as_ref()
        .map(parse_hook)
        .transpose()
    }

    async fn rotate_inbound(
        &self,
        tenant: &TenantId,
        id: &str,
        secret: String,
        previous_until_ms: i64,
    ) -> Result<InboundHookRecord> {
        let c = self.conn().await?;
        let row = c
            .query_opt(
                &format!(
                    "UPDATE webhook_inbound SET previous_secret = secret, secret = $3,
                       previous_until_ms = $4
                     WHERE tenant = $1 AND id = $2 AND deleted_at_ms IS NULL
                     RETURNING {HOOK_COLS}"
                ),
                &[&tenant.as_str(), &id, &secret, &previous_until_ms],
            )
            .await
            .map_err(pg_err)?;
        match row {
            Some(r) => parse_hook(&r),
            None => Err(Error::Missing {
                what: format!("inbound webhook {id}"),
            }),
        }
    }

    async fn delete_inbound(&self, tenant: &TenantId, id: &str, at_ms: i64) -> Result<()> {
        let mut c = self.conn().await?;
        let tx = c.transaction().await.map_err(pg_err)?;
        let n = tx
            .execute(
                "UPDATE webhook_inbound SET deleted_at_ms = $3
                 WHERE tenant = $1 AND id = $2 AND deleted_at_ms IS NULL",
                &[&tenant.as_str(), &id, &at_ms],
            )
            .await
            .map_err(pg_err)?;
        if n == 0 {
            return Err(Error::Missing {
                what: format!("inbound webhook {id}"),
            });
        }
        tx.execute("DELETE FROM webhook_seen WHERE hook = $1", &[&id])
            .await
            .map_err(pg_err)?;
        tx.commit().await.map_err(pg_err)
    }

    async fn remember_message(
        &self,
        hook: &str,
        msg_id: &str,
        keep_until_ms: i64,
        now_ms: i64,
    ) -> Result<bool> {
        let c = self.conn().await?;
        c.execute(
            "DELETE FROM webhook_seen WHERE hook = $1 AND keep_until_ms < $2",
            &[&hook, &now_ms],
        )
        .await
        .map_err(pg_err)?;
        let n = c
            .execute(
                "INSERT INTO webhook_seen (hook, msg_id, keep_until_ms) VALUES ($1, $2, $3)
                 ON CONFLICT DO NOTHING",
                &[&hook, &msg_id, &keep_until_ms],
            )
            .await
            .map_err(pg_err)?;
        Ok(n == 1)
    }

    async fn forget_message(&self, hook: &str, msg_id: &str) -> Result<()> {
        let c = self.conn().await?;
        c.execute(
            "DELETE FROM webhook_seen WHERE hook = $1 AND msg_id = $2",
            &[&hook, &msg_id],
        )
        .await
        .map_err(pg_err)?;
        Ok(())
    }

    async fn create_subscription(&self, s: SubscriptionRecord) -> Result<()> {
        let events = serde_json::to_string(&s.events).map_err(|e| Error::Db(e.to_string()))?;
        let c = self.conn().await?;
        c.execute(
            &format!(
                "INSERT INTO webhook_subscriptions ({SUB_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
            ),
            &[
                &s.id,
                &s.tenant.as_str(),
                &s.url,
                &events,
                &s.secret,
                &s.description,
                &s.created_at_ms,
                &s.created_by,
            ],
        )
        .await
        .map_err(missing_tenant(&s.tenant))?;
        Ok(())
    }

    async fn subscriptions(&self, tenant: &TenantId) -> Result<Vec<SubscriptionRecord>> {
        let c = self.conn().await?;
        c.query(
            &format!(
                "SELECT {SUB_COLS} FROM webhook_subscriptions
                 WHERE tenant = $1 AND deleted_at_ms IS NULL ORDER BY created_at_ms, id"
            ),
            &[&tenant.as_str()],
        )
        .await
        .map_err(pg_err)?
        .iter()
        .map(parse_sub)
        .collect()
    }

    async fn subscription(
        &self,
        tenant: &TenantId,
        id: &str,
    ) -> Result<Option<SubscriptionRecord>> {
        let c = self.conn().await?;
        c.query_opt(
            &format!(
                "SELECT {SUB_COLS} FROM webhook_subscriptions
                 WHERE tenant = $1 AND id = $2 AND deleted_at_ms IS NULL"
            ),
            &[&tenant.as_str(), &id],
        )
        .await
        .map_err(pg_err)?
        .as_ref()
        .map(parse_sub)
        .transpose()
    }

    async fn delete_subscription(&self, tenant: &TenantId, id: &str, at_ms: i64) -> Result<()> {
        let mut c = self.conn().await?;
        let tx = c.transaction().await.map_err(pg_err)?;
        let n = tx
            .execute(
                "UPDATE webhook_subscriptions SET deleted_at_ms = $3
                 WHERE tenant = $1 AND id = $2 AND deleted_at_ms IS NULL",
                &[&tenant.as_str(), &id, &at_ms],
            )
            .await
            .map_err(pg_err)?;
        if n == 0 {
            return Err(Error::Missing {
                what: format!("webhook subscription {id}"),
            });
        }
        tx.execute(
            "UPDATE webhook_deliveries SET status = 'cancelled', next_at_ms = NULL
             WHERE subscription = $1 AND status = 'pending'",
            &[&id],
        )
        .await
        .map_err(pg_err)?;
        tx.commit().await.map_err(pg_err)
    }

    async fn outbox(&self, limit: u32) -> Result<Vec<OutboxEvent>> {
        let c = self.conn().await?;
        c.query(
            "SELECT o.id, o.run_id, r.tenant, r.workflow_name, o.seq, o.kind, o.step, o.at_ms,
                    o.payload
             FROM webhook_outbox o JOIN runs r ON r.id = o.run_id
             ORDER BY o.id LIMIT $1",
            &[&i64::from(limit)],
        )
        .await
        .map_err(pg_err)?
        .iter()
        .map(|r| {
            let id: i64 = r.try_get(0).map_err(pg_err)?;
            let run: String = r.try_get(1).map_err(pg_err)?;
            let payload: String = r.try_get(8).map_err(pg_err)?;
            Ok(OutboxEvent {
                id,
                run_id: super::parse_id(&run)?,
                tenant: tenant_col(r, 2)?,
                workflow: r.try_get(3).map_err(pg_err)?,
                seq: u64_of(r.try_get(4).map_err(pg_err)?),
                kind: r.try_get(5).map_err(pg_err)?,
                step: r.try_get(6).map_err(pg_err)?,
                at_ms: r.try_get(7).map_err(pg_err)?,
                event: serde_json::from_str(&payload)
                    .map_err(|e| corrupt(&format!("outbox event {id}"), e))?,
            })
        })
        .collect()
    }

    async fn fan_out(&self, consumed: Vec<i64>, deliveries: Vec<NewDelivery>) -> Result<()> {
        let mut c = self.conn().await?;
        let tx = c.transaction().await.map_err(pg_err)?;
        let ins = tx
            .prepare(
                "INSERT INTO webhook_deliveries (id, subscription, tenant, event_type,
                   run_id, seq, payload, created_at_ms, status, attempts, next_at_ms)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'pending', 0, $8)
                 ON CONFLICT (id) DO NOTHING",
            )
            .await
            .map_err(pg_err)?;
        for d in &deliveries {
            tx.execute(
                &ins,
                &[
                    &d.id,
                    &d.subscription,
                    &d.tenant.as_str(),
                    &d.event_type,
                    &d.run_id.map(|r| r.to_string()),
                    &d.seq.map(i64_of),
                    &d.payload,
                    &d.created_at_ms,
                ],
            )
            .await
            .map_err(pg_err)?;
        }
        tx.execute(
            "DELETE FROM webhook_outbox WHERE id = ANY($1)",
            &[&consumed],
        )
        .await
        .map_err(pg_err)?;
        tx.commit().await.map_err(pg_err)
    }

    async fn claim_due(&self, now_ms: i64, lease_ms: i64, limit: u32) -> Result<Vec<DueDelivery>> {
        let mut c = self.conn().await?;
        let tx = c.transaction().await.map_err(pg_err)?;
        // Rows another process is claiming this moment are skipped, not waited for.
        let rows = tx
            .query(
                &format!(
                    "SELECT {DELIVERY_COLS}, d.attempts, s.url, s.secret
                     FROM webhook_deliveries d JOIN webhook_subscriptions s ON s.id = d.subscription
                     WHERE d.status = 'pending' AND d.next_at_ms <= $1
                       AND (d.lease_until_ms IS NULL OR d.lease_until_ms <= $1)
                       AND s.deleted_at_ms IS NULL
                     ORDER BY d.next_at_ms, d.id LIMIT $2
                     FOR UPDATE OF d SKIP LOCKED"
                ),
                &[&now_ms, &i64::from(limit)],
            )
            .await
            .map_err(pg_err)?;
        let due = rows
            .iter()
            .map(|r| {
                Ok(DueDelivery {
                    delivery: parse_delivery(r)?,
                    attempts: u32_of(r.try_get(8).map_err(pg_err)?),
                    url: r.try_get(9).map_err(pg_err)?,
                    secret: r.try_get(10).map_err(pg_err)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let ids: Vec<&str> = due.iter().map(|d| d.delivery.id.as_str()).collect();
        tx.execute(
            "UPDATE webhook_deliveries SET lease_until_ms = $2 WHERE id = ANY($1)",
            &[&ids, &now_ms.saturating_add(lease_ms)],
        )
        .await
        .map_err(pg_err)?;
        tx.commit().await.map_err(pg_err)?;
        Ok(due)
    }

    async fn record_attempt(
        &self,
        delivery: &str,
        a: AttemptRecord,
        after: AfterAttempt,
    ) -> Result<()> {
        let (status, next) = match after {
            AfterAttempt::Succeeded => (DeliveryStatus::Succeeded, None),
            AfterAttempt::RetryAt(t) => (DeliveryStatus::Pending, Some(t)),
            AfterAttempt::Failed => (DeliveryStatus::Failed, None),
        };
        let mut c = self.conn().await?;
        let tx = c.transaction().await.map_err(pg_err)?;
        let n = tx
            .execute(
                "UPDATE webhook_deliveries SET status = $2, next_at_ms = $3,
                   attempts = attempts + 1, lease_until_ms = NULL
                 WHERE id = $1",
                &[&delivery, &status.as_str(), &next],
            )
            .await
            .map_err(pg_err)?;
        if n == 0 {
            return Err(Error::Missing {
                what: format!("delivery {delivery}"),
            });
        }
        tx.execute(
            "INSERT INTO webhook_attempts (delivery, n, at_ms, duration_ms, status_code, error)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (delivery, n) DO UPDATE SET at_ms = excluded.at_ms,
               duration_ms = excluded.duration_ms, status_code = excluded.status_code,
               error = excluded.error",
            &[
                &delivery,
                &i64::from(a.n),
                &a.at_ms,
                &i64_of(a.duration_ms),
                &a.status_code.map(i64::from),
                &a.error,
            ],
        )
        .await
        .map_err(pg_err)?;
        tx.commit().await.map_err(pg_err)
    }

    async fn deliveries(
        &self,
        tenant: &TenantId,
        subscription: &str,
        before: Option<(i64, String)>,
        limit: u32,
    ) -> Result<Vec<DeliveryRecord>> {
        let (at, id) = before.unwrap_or((i64::MAX, String::new()));
        let bounded = at != i64::MAX;
        let c = self.conn().await?;
        let rows = c
            .query(
                &format!(
                    "SELECT {DELIVERY_COLS}, d.status, d.next_at_ms FROM webhook_deliveries d
                     WHERE d.tenant = $1 AND d.subscription = $2
                       AND (NOT $5 OR d.created_at_ms < $3 OR (d.created_at_ms = $3 AND d.id < $4))
                     ORDER BY d.created_at_ms DESC, d.id DESC LIMIT $6"
                ),
                &[
                    &tenant.as_str(),
                    &subscription,
                    &at,
                    &id,
                    &bounded,
                    &i64::from(limit),
                ],
            )
            .await
            .map_err(pg_err)?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let d = parse_delivery(r)?;
            let status: String = r.try_get(8).map_err(pg_err)?;
            out.push(DeliveryRecord {
                attempts: attempts_of(&**c, &d.id).await?,
                status: DeliveryStatus::parse(&status)
                    .ok_or_else(|| corrupt(&format!("delivery {}", d.id), &status))?,
                next_at_ms: r.try_get(9).map_err(pg_err)?,
                delivery: d,
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_trigger_lists_the_outbox_kinds() {
        let when = MIGRATION
            .split("IF NEW.kind IN (")
            .nth(1)
            .and_then(|s| s.split(')').next())
            .unwrap_or_default();
        let kinds: Vec<&str> = when
            .split(',')
            .map(|k| k.trim().trim_matches('\''))
            .collect();
        assert_eq!(kinds, crate::webhooks::OUTBOX_KINDS);
    }
}
