//! [`WebhookStore`] on SQLite (schema 5). The outbox is filled by a trigger on `events`, in
//! the transaction that appends them, whichever process appends: only the kinds of
//! [`crate::webhooks::OUTBOX_KINDS`], and only for a run whose tenant has a live
//! subscription (a database without subscriptions pays one comparison per event).

use async_trait::async_trait;
use baton_types::{RunId, TenantId};
use rusqlite::{Connection, OptionalExtension, params};

use super::{SqliteStore, db_err};
use crate::webhooks::{
    AfterAttempt, AttemptRecord, DeliveryRecord, DeliveryStatus, DueDelivery, InboundHookRecord,
    NewDelivery, OutboxEvent, SubscriptionRecord, WebhookStore,
};
use crate::{Error, Result};

/// Version 5: webhooks (inbound hooks and the message ids they saw, subscriptions, the
/// outbox and its trigger, deliveries and their attempts).
pub(super) const MIGRATION_5: &str = "
CREATE TABLE IF NOT EXISTS webhook_inbound (
    id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL REFERENCES tenants (id),
    workflow TEXT NOT NULL,
    body_input TEXT,
    name TEXT,
    secret TEXT NOT NULL,
    previous_secret TEXT,
    previous_until_ms INTEGER,
    created_at_ms INTEGER NOT NULL,
    created_by TEXT,
    deleted_at_ms INTEGER
);
CREATE INDEX IF NOT EXISTS webhook_inbound_by_tenant ON webhook_inbound (tenant, created_at_ms);
CREATE TABLE IF NOT EXISTS webhook_seen (
    hook TEXT NOT NULL,
    msg_id TEXT NOT NULL,
    keep_until_ms INTEGER NOT NULL,
    PRIMARY KEY (hook, msg_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS webhook_subscriptions (
    id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL REFERENCES tenants (id),
    url TEXT NOT NULL,
    events TEXT NOT NULL,
    secret TEXT NOT NULL,
    description TEXT,
    created_at_ms INTEGER NOT NULL,
    created_by TEXT,
    deleted_at_ms INTEGER
);
CREATE INDEX IF NOT EXISTS webhook_subscriptions_by_tenant ON webhook_subscriptions (tenant, deleted_at_ms);
CREATE TABLE IF NOT EXISTS webhook_outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    kind TEXT NOT NULL,
    step TEXT,
    at_ms INTEGER NOT NULL,
    payload TEXT NOT NULL
);
CREATE TRIGGER IF NOT EXISTS webhook_outbox_fill AFTER INSERT ON events
WHEN NEW.kind IN ('run_created', 'run_succeeded', 'run_failed', 'run_cancelled', 'paused',
                  'step_succeeded', 'step_failed', 'human_requested', 'human_responded')
 AND EXISTS (SELECT 1 FROM runs r JOIN webhook_subscriptions s ON s.tenant = r.tenant
             WHERE r.id = NEW.run_id AND s.deleted_at_ms IS NULL)
BEGIN
    INSERT INTO webhook_outbox (run_id, seq, kind, step, at_ms, payload)
    VALUES (NEW.run_id, NEW.seq, NEW.kind, NEW.step, NEW.at_ms, NEW.payload);
END;
CREATE TABLE IF NOT EXISTS webhook_deliveries (
    id TEXT PRIMARY KEY,
    subscription TEXT NOT NULL,
    tenant TEXT NOT NULL,
    event_type TEXT NOT NULL,
    run_id TEXT,
    seq INTEGER,
    payload TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_at_ms INTEGER,
    lease_until_ms INTEGER
);
CREATE INDEX IF NOT EXISTS webhook_deliveries_due ON webhook_deliveries (status, next_at_ms);
CREATE INDEX IF NOT EXISTS webhook_deliveries_by_subscription
    ON webhook_deliveries (tenant, subscription, created_at_ms DESC, id DESC);
CREATE TABLE IF NOT EXISTS webhook_attempts (
    delivery TEXT NOT NULL,
    n INTEGER NOT NULL,
    at_ms INTEGER NOT NULL,
    duration_ms INTEGER NOT NULL,
    status_code INTEGER,
    error TEXT,
    PRIMARY KEY (delivery, n)
) WITHOUT ROWID;
";

fn conv(i: usize, e: impl ToString) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, e.to_string().into())
}

fn tenant_col(r: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<TenantId> {
    r.get::<_, String>(i)?.parse().map_err(|e| conv(i, e))
}

fn run_col(r: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<Option<RunId>> {
    r.get::<_, Option<String>>(i)?
        .map(|s| s.parse().map_err(|e| conv(i, e)))
        .transpose()
}

fn i64_of(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn u64_of(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

const HOOK_COLS: &str = "id, tenant, workflow, body_input, name, secret, previous_secret, previous_until_ms, created_at_ms, created_by";

fn parse_hook(r: &rusqlite::Row<'_>) -> rusqlite::Result<InboundHookRecord> {
    Ok(InboundHookRecord {
        id: r.get(0)?,
        tenant: tenant_col(r, 1)?,
        workflow: r.get(2)?,
        body_input: r.get(3)?,
        name: r.get(4)?,
        secret: r.get(5)?,
        previous_secret: r.get(6)?,
        previous_until_ms: r.get(7)?,
        created_at_ms: r.get(8)?,
        created_by: r.get(9)?,
    })
}

const SUB_COLS: &str = "id, tenant, url, events, secret, description, created_at_ms, created_by";

fn parse_sub(r: &rusqlite::Row<'_>) -> rusqlite::Result<SubscriptionRecord> {
    let events: String = r.get(3)?;
    Ok(SubscriptionRecord {
        id: r.get(0)?,
        tenant: tenant_col(r, 1)?,
        url: r.get(2)?,
        events: serde_json::from_str(&events).map_err(|e| conv(3, e))?,
        secret: r.get(4)?,
        description: r.get(5)?,
        created_at_ms: r.get(6)?,
        created_by: r.get(7)?,
    })
}

const DELIVERY_COLS: &str =
    "d.id, d.subscription, d.tenant, d.event_type, d.run_id, d.seq, d.payload, d.created_at_ms";

fn parse_delivery(r: &rusqlite::Row<'_>) -> rusqlite::Result<NewDelivery> {
    Ok(NewDelivery {
        id: r.get(0)?,
        subscription: r.get(1)?,
        tenant: tenant_col(r, 2)?,
        event_type: r.get(3)?,
        run_id: run_col(r, 4)?,
        seq: r.get::<_, Option<i64>>(5)?.map(u64_of),
        payload: r.get(6)?,
        created_at_ms: r.get(7)?,
    })
}

fn tenant_exists(c: &Connection, t: &TenantId) -> Result<()> {
    let found = c
        .prepare_cached("SELECT 1 FROM tenants WHERE id = ?1")
        .and_then(|mut st| st.query_row([t.as_str()], |_| Ok(())).optional())
        .map_err(db_err)?;
    found.ok_or_else(|| Error::Missing {
        what: format!("tenant {t}"),
    })
}

fn attempts_of(c: &Connection, delivery: &str) -> rusqlite::Result<Vec<AttemptRecord>> {
    c.prepare_cached(
        "SELECT n, at_ms, duration_ms, status_code, error FROM webhook_attempts
         WHERE delivery = ?1 ORDER BY n",
    )?
    .query_map([delivery], |r| {
        Ok(AttemptRecord {
            n: r.get(0)?,
            at_ms: r.get(1)?,
            duration_ms: u64_of(r.get(2)?),
            status_code: r.get(3)?,
            error: r.get(4)?,
        })
    })?
    .collect()
}

#[async_trait]
impl WebhookStore for SqliteStore {
    async fn create_inbound(&self, h: InboundHookRecord) -> Result<()> {
        self.call(move |c| {
            tenant_exists(c, &h.tenant)?;
            c.prepare_cached(&format!(
                "INSERT INTO webhook_inbound ({HOOK_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"
            ))
            .and_then(|mut st| {
                st.execute(params![
                    h.id,
                    h.tenant.as_str(),
                    h.workflow,
                    h.body_input,
                    h.name,
                    h.secret,
                    h.previous_secret,
                    h.previous_until_ms,
                    h.created_at_ms,
                    h.created_by
                ])
            })
            .map_err(db_err)?;
            Ok(())
        })
        .await
    }

    async fn inbound_hooks(&self, tenant: &TenantId) -> Result<Vec<InboundHookRecord>> {
        self.read(|c| {
            c.prepare_cached(&format!(
                "SELECT {HOOK_COLS} FROM webhook_inbound WHERE tenant = ?1 AND deleted_at_ms IS NULL
                 ORDER BY created_at_ms, id"
            ))?
            .query_map([tenant.as_str()], parse_hook)?
            .collect()
        })
    }

    async fn inbound_hook(&self, tenant: &TenantId, id: &str) -> Result<Option<InboundHookRecord>> {
        self.read(|c| {
            c.prepare_cached(&format!(
                "SELECT {HOOK_COLS} FROM webhook_inbound
                 WHERE tenant = ?1 AND id = ?2 AND deleted_at_ms IS NULL"
            ))?
            .query_row(params![tenant.as_str(), id], parse_hook)
            .optional()
        })
    }

    async fn inbound_for_receive(&self, id: &str) -> Result<Option<InboundHookRecord>> {
        self.read(|c| {
            c.prepare_cached(&format!(
                "SELECT {HOOK_COLS} FROM webhook_inbound WHERE id = ?1 AND deleted_at_ms IS NULL"
            ))?
            .query_row([id], parse_hook)
            .optional()
        })
    }

    async fn rotate_inbound(
        &self,
        tenant: &TenantId,
        id: &str,
        secret: String,
        previous_until_ms: i64,
    ) -> Result<InboundHookRecord> {
        let (tenant, id) = (tenant.clone(), id.to_string());
        self.call(move |c| {
            let n = c
                .prepare_cached(
                    "UPDATE webhook_inbound SET previous_secret = secret, secret = ?3,
                       previous_until_ms = ?4
                     WHERE tenant = ?1 AND id = ?2 AND deleted_at_ms IS NULL",
                )
                .and_then(|mut st| {
                    st.execute(params![tenant.as_str(), id, secret, previous_until_ms])
                })
                .map_err(db_err)?;
            if n == 0 {
                return Err(Error::Missing {
                    what: format!("inbound webhook {id}"),
                });
            }
            c.prepare_cached(&format!(
                "SELECT {HOOK_COLS} FROM webhook_inbound WHERE id = ?1"
            ))
            .and_then(|mut st| st.query_row([&id], parse_hook))
            .map_err(db_err)
        })
        .await
    }

    async fn delete_inbound(&self, tenant: &TenantId, id: &str, at_ms: i64) -> Result<()> {
        let (tenant, id) = (tenant.clone(), id.to_string());
        self.call(move |c| {
            let n = c
                .prepare_cached(
                    "UPDATE webhook_inbound SET deleted_at_ms = ?3
                     WHERE tenant = ?1 AND id = ?2 AND deleted_at_ms IS NULL",
                )
                .and_then(|mut st| st.execute(params![tenant.as_str(), id, at_ms]))
                .map_err(db_err)?;
            if n == 0 {
                return Err(Error::Missing {
                    what: format!("inbound webhook {id}"),
                });
            }
            c.prepare_cached("DELETE FROM webhook_seen WHERE hook = ?1")
                .and_then(|mut st| st.execute([&id]))
                .map_err(db_err)?;
            Ok(())
        })
        .await
    }

    async fn remember_message(
        &self,
        hook: &str,
        msg_id: &str,
        keep_until_ms: i64,
        now_ms: i64,
    ) -> Result<bool> {
        let (hook, msg_id) = (hook.to_string(), msg_id.to_string());
        self.call(move |c| {
            c.prepare_cached("DELETE FROM webhook_seen WHERE hook = ?1 AND keep_until_ms < ?2")
                .and_then(|mut st| st.execute(params![hook, now_ms]))
                .map_err(db_err)?;
            let n = c
                .prepare_cached(
                    "INSERT OR IGNORE INTO webhook_seen (hook, msg_id, keep_until_ms)
                     VALUES (?1, ?2, ?3)",
                )
                .and_then(|mut st| st.execute(params![hook, msg_id, keep_until_ms]))
                .map_err(db_err)?;
            Ok(n == 1)
        })
        .await
    }

    async fn forget_message(&self, hook: &str, msg_id: &str) -> Result<()> {
        let (hook, msg_id) = (hook.to_string(), msg_id.to_string());
        self.call(move |c| {
            c.prepare_cached("DELETE FROM webhook_seen WHERE hook = ?1 AND msg_id = ?2")
                .and_then(|mut st| st.execute(params![hook, msg_id]))
                .map_err(db_err)?;
            Ok(())
        })
        .await
    }

    async fn create_subscription(&self, s: SubscriptionRecord) -> Result<()> {
        self.call(move |c| {
            tenant_exists(c, &s.tenant)?;
            let events = serde_json::to_string(&s.events).map_err(|e| Error::Db(e.to_string()))?;
            c.prepare_cached(&format!(
                "INSERT INTO webhook_subscriptions ({SUB_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
            ))
            .and_then(|mut st| {
                st.execute(params![
                    s.id,
                    s.tenant.as_str(),
                    s.url,
                    events,
                    s.secret,
                    s.description,
                    s.created_at_ms,
                    s.created_by
                ])
            })
            .map_err(db_err)?;
            Ok(())
        })
        .await
    }

    async fn subscriptions(&self, tenant: &TenantId) -> Result<Vec<SubscriptionRecord>> {
        self.read(|c| {
            c.prepare_cached(&format!(
                "SELECT {SUB_COLS} FROM webhook_subscriptions
                 WHERE tenant = ?1 AND deleted_at_ms IS NULL ORDER BY created_at_ms, id"
            ))?
            .query_map([tenant.as_str()], parse_sub)?
            .collect()
        })
    }

    async fn subscription(
        &self,
        tenant: &TenantId,
        id: &str,
    ) -> Result<Option<SubscriptionRecord>> {
        self.read(|c| {
            c.prepare_cached(&format!(
                "SELECT {SUB_COLS} FROM webhook_subscriptions
                 WHERE tenant = ?1 AND id = ?2 AND deleted_at_ms IS NULL"
            ))?
            .query_row(params![tenant.as_str(), id], parse_sub)
            .optional()
        })
    }

    async fn delete_subscription(&self, tenant: &TenantId, id: &str, at_ms: i64) -> Result<()> {
        let (tenant, id) = (tenant.clone(), id.to_string());
        self.call(move |c| {
            let n = c
                .prepare_cached(
                    "UPDATE webhook_subscriptions SET deleted_at_ms = ?3
                     WHERE tenant = ?1 AND id = ?2 AND deleted_at_ms IS NULL",
                )
                .and_then(|mut st| st.execute(params![tenant.as_str(), id, at_ms]))
                .map_err(db_err)?;
            if n == 0 {
                return Err(Error::Missing {
                    what: format!("webhook subscription {id}"),
                });
            }
            c.prepare_cached(
                "UPDATE webhook_deliveries SET status = 'cancelled', next_at_ms = NULL
                 WHERE subscription = ?1 AND status = 'pending'",
            )
            .and_then(|mut st| st.execute([&id]))
            .map_err(db_err)?;
            Ok(())
        })
        .await
    }

    async fn outbox(&self, limit: u32) -> Result<Vec<OutboxEvent>> {
        self.read(|c| {
            c.prepare_cached(
                "SELECT o.id, o.run_id, r.tenant, r.workflow_name, o.seq, o.kind, o.step, o.at_ms,
                        o.payload
                 FROM webhook_outbox o JOIN runs r ON r.id = o.run_id
                 ORDER BY o.id LIMIT ?1",
            )?
            .query_map([limit], |r| {
                let payload: String = r.get(8)?;
                Ok(OutboxEvent {
                    id: r.get(0)?,
                    run_id: r.get::<_, String>(1)?.parse().map_err(|e| conv(1, e))?,
                    tenant: tenant_col(r, 2)?,
                    workflow: r.get(3)?,
                    seq: u64_of(r.get(4)?),
                    kind: r.get(5)?,
                    step: r.get(6)?,
                    at_ms: r.get(7)?,
                    event: serde_json::from_str(&payload).map_err(|e| conv(8, e))?,
                })
            })?
            .collect()
        })
    }

    async fn fan_out(&self, consumed: Vec<i64>, deliveries: Vec<NewDelivery>) -> Result<()> {
        self.call(move |c| {
            let mut ins = c
                .prepare_cached(
                    "INSERT OR IGNORE INTO webhook_deliveries (id, subscription, tenant, event_type,
                       run_id, seq, payload, created_at_ms, status, attempts, next_at_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'pending', 0, ?8)",
                )
                .map_err(db_err)?;
            for d in &deliveries {
                ins.execute(params![
                    d.id,
                    d.subscription,
                    d.tenant.as_str(),
                    d.event_type,
                    d.run_id.map(|r| r.to_string()),
                    d.seq.map(i64_of),
                    d.payload,
                    d.created_at_ms
                ])
                .map_err(db_err)?;
            }
            let mut del = c
                .prepare_cached("DELETE FROM webhook_outbox WHERE id = ?1")
                .map_err(db_err)?;
            for id in &consumed {
                del.execute([id]).map_err(db_err)?;
            }
            Ok(())
        })
        .await
    }

    async fn claim_due(&self, now_ms: i64, lease_ms: i64, limit: u32) -> Result<Vec<DueDelivery>> {
        self.call(move |c| {
            let due: Vec<DueDelivery> = c
                .prepare_cached(&format!(
                    "SELECT {DELIVERY_COLS}, d.attempts, s.url, s.secret
                     FROM webhook_deliveries d JOIN webhook_subscriptions s ON s.id = d.subscription
                     WHERE d.status = 'pending' AND d.next_at_ms <= ?1
                       AND (d.lease_until_ms IS NULL OR d.lease_until_ms <= ?1)
                       AND s.deleted_at_ms IS NULL
                     ORDER BY d.next_at_ms, d.id LIMIT ?2"
                ))
                .and_then(|mut st| {
                    st.query_map(params![now_ms, limit], |r| {
                        Ok(DueDelivery {
                            delivery: parse_delivery(r)?,
                            attempts: r.get(8)?,
                            url: r.get(9)?,
                            secret: r.get(10)?,
                        })
                    })?
                    .collect()
                })
                .map_err(db_err)?;
            let mut lease = c
                .prepare_cached("UPDATE webhook_deliveries SET lease_until_ms = ?2 WHERE id = ?1")
                .map_err(db_err)?;
            for d in &due {
                lease
                    .execute(params![d.delivery.id, now_ms.saturating_add(lease_ms)])
                    .map_err(db_err)?;
            }
            Ok(due)
        })
        .await
    }

    async fn record_attempt(
        &self,
        delivery: &str,
        a: AttemptRecord,
        after: AfterAttempt,
    ) -> Result<()> {
        let delivery = delivery.to_string();
        self.call(move |c| {
            let (status, next) = match after {
                AfterAttempt::Succeeded => (DeliveryStatus::Succeeded, None),
                AfterAttempt::RetryAt(t) => (DeliveryStatus::Pending, Some(t)),
                AfterAttempt::Failed => (DeliveryStatus::Failed, None),
            };
            let n = c
                .prepare_cached(
                    "UPDATE webhook_deliveries SET status = ?2, next_at_ms = ?3,
                       attempts = attempts + 1, lease_until_ms = NULL
                     WHERE id = ?1",
                )
                .and_then(|mut st| st.execute(params![delivery, status.as_str(), next]))
                .map_err(db_err)?;
            if n == 0 {
                return Err(Error::Missing {
                    what: format!("delivery {delivery}"),
                });
            }
            c.prepare_cached(
                "INSERT OR REPLACE INTO webhook_attempts (delivery, n, at_ms, duration_ms, status_code, error)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )
            .and_then(|mut st| {
                st.execute(params![
                    delivery,
                    a.n,
                    a.at_ms,
                    i64_of(a.duration_ms),
                    a.status_code,
                    a.error
                ])
            })
            .map_err(db_err)?;
            Ok(())
        })
        .await
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
        self.read(|c| {
            let rows: Vec<(NewDelivery, String, Option<i64>)> = c
                .prepare_cached(&format!(
                    "SELECT {DELIVERY_COLS}, d.status, d.next_at_ms FROM webhook_deliveries d
                     WHERE d.tenant = ?1 AND d.subscription = ?2
                       AND (?5 = 0 OR d.created_at_ms < ?3 OR (d.created_at_ms = ?3 AND d.id < ?4))
                     ORDER BY d.created_at_ms DESC, d.id DESC LIMIT ?6"
                ))?
                .query_map(
                    params![tenant.as_str(), subscription, at, id, bounded, limit],
                    |r| Ok((parse_delivery(r)?, r.get(8)?, r.get(9)?)),
                )?
                .collect::<rusqlite::Result<_>>()?;
            rows.into_iter()
                .map(|(d, status, next)| {
                    Ok(DeliveryRecord {
                        attempts: attempts_of(c, &d.id)?,
                        status: DeliveryStatus::parse(&status).ok_or_else(|| conv(8, &status))?,
                        next_at_ms: next,
                        delivery: d,
                    })
                })
                .collect()
        })
    }
}

/// Schema 6: the outbox also records `human_escalated` (webhook `approval.escalated`).
pub(super) const MIGRATION_6: &str = "
DROP TRIGGER IF EXISTS webhook_outbox_fill;
CREATE TRIGGER webhook_outbox_fill AFTER INSERT ON events
WHEN NEW.kind IN ('run_created', 'run_succeeded', 'run_failed', 'run_cancelled', 'paused',
                  'step_succeeded', 'step_failed', 'human_requested', 'human_escalated',
                  'human_responded')
 AND EXISTS (SELECT 1 FROM runs r JOIN webhook_subscriptions s ON s.tenant = r.tenant
             WHERE r.id = NEW.run_id AND s.deleted_at_ms IS NULL)
BEGIN
    INSERT INTO webhook_outbox (run_id, seq, kind, step, at_ms, payload)
    VALUES (NEW.run_id, NEW.seq, NEW.kind, NEW.step, NEW.at_ms, NEW.payload);
END;
";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_trigger_lists_the_outbox_kinds() {
        // The latest trigger (schema 6 replaced schema 5's).
        let when = MIGRATION_6
            .split("WHEN NEW.kind IN (")
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
