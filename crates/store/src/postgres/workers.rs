//! Workers on PostgreSQL: the registry of `baton worker` processes (and servers with an
//! embedded worker), the claim of runnable runs with `FOR UPDATE SKIP LOCKED`, and the
//! notifications (`LISTEN/NOTIFY`) that tell processes sharing the database that a run logged
//! events or that work is waiting.

use std::time::Duration;

use baton_types::{RunId, RunStatus, TenantId};
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio_postgres::AsyncMessage;

use super::{PostgresStore, parse_id, pg_err};
use crate::{Error, Result, now_ms};

/// Schema 6: the workers.
pub(super) const MIGRATION: &str = r#"
CREATE TABLE workers (
    id TEXT COLLATE "C" PRIMARY KEY,
    host TEXT NOT NULL,
    pid BIGINT NOT NULL,
    version TEXT NOT NULL,
    tags TEXT NOT NULL,
    concurrency BIGINT NOT NULL,
    lease_ms BIGINT NOT NULL,
    started_at_ms BIGINT NOT NULL,
    heartbeat_at_ms BIGINT NOT NULL,
    draining BOOLEAN NOT NULL DEFAULT FALSE,
    stopped_at_ms BIGINT
);
"#;

/// The channel every append notifies: `RUN FIRST LAST TENANT ORIGIN` (the seqs appended, the
/// run's tenant, and the `host:pid` of the process that appended).
pub const EVENTS_CHANNEL: &str = "baton_events";
/// The channel that says work may be waiting for a worker (a control request queued, a run
/// released or queued).
pub const WORK_CHANNEL: &str = "baton_work";

/// A worker as registered.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct WorkerRecord {
    /// `host:pid`: the owner its leases carry.
    pub id: String,
    pub host: String,
    pub pid: u32,
    pub version: String,
    pub tags: Vec<String>,
    pub concurrency: u32,
    pub lease_ms: u64,
    pub started_at_ms: i64,
    pub heartbeat_at_ms: i64,
    pub draining: bool,
    /// Set when it stopped (drained, or told to stop); `None` while it runs or when it died
    /// without saying so (its heartbeat then gets old).
    pub stopped_at_ms: Option<i64>,
    /// The runs whose lease it holds now.
    pub runs_held: u64,
}

impl WorkerRecord {
    /// `running`, `draining`, `stopped`, or `lost` (no heartbeat for longer than its lease:
    /// killed, or its host is gone).
    pub fn state(&self, now_ms: i64) -> &'static str {
        if self.stopped_at_ms.is_some() {
            "stopped"
        } else if now_ms - self.heartbeat_at_ms > i64::try_from(self.lease_ms).unwrap_or(i64::MAX) {
            "lost"
        } else if self.draining {
            "draining"
        } else {
            "running"
        }
    }
}

/// What a worker registers.
#[derive(Clone, Debug)]
pub struct NewWorker {
    pub id: String,
    pub version: String,
    pub tags: Vec<String>,
    pub concurrency: u32,
    pub lease_ms: u64,
}

/// A notification from another process (or this one) sharing the database.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Notice {
    /// Events `first..=last` of `run` are in the log.
    Logged {
        run: RunId,
        first: u64,
        last: u64,
        tenant: TenantId,
        /// `host:pid` of the process that appended them.
        origin: String,
    },
    /// Work may wait for a worker.
    Work,
    /// `baton workers drain` asked this worker (`host:pid`) to drain.
    Drain { worker: String },
    /// The listening connection was (re)established: notifications sent while it was down
    /// are lost, so read what you follow from the log again.
    Connected,
}

fn parse_notice(channel: &str, payload: &str) -> Option<Notice> {
    match channel {
        EVENTS_CHANNEL => {
            let mut it = payload.split(' ');
            let run = it.next()?.parse().ok()?;
            let first = it.next()?.parse().ok()?;
            let last = it.next()?.parse().ok()?;
            let tenant = it.next()?.parse().ok()?;
            let origin = it.next()?.to_string();
            Some(Notice::Logged {
                run,
                first,
                last,
                tenant,
                origin,
            })
        }
        WORK_CHANNEL => Some(match payload.strip_prefix("drain ") {
            Some(worker) => Notice::Drain {
                worker: worker.to_string(),
            },
            None => Notice::Work,
        }),
        _ => None,
    }
}

/// The payload of an events notification.
pub(super) fn logged_payload(
    run: RunId,
    first: u64,
    last: u64,
    tenant: &str,
    origin: &str,
) -> String {
    format!("{run} {first} {last} {tenant} {origin}")
}

fn tags_json(tags: &[String]) -> String {
    serde_json::to_string(tags).unwrap_or_else(|_| "[]".into())
}

/// The statuses a run may be claimed in: started and not ended, or paused / waiting with a
/// request queued for it.
const CLAIM: &str = r#"
UPDATE runs SET owner = $1, lease_until_ms = $2
WHERE id IN (
    SELECT r.id FROM runs r
    WHERE (r.owner IS NULL OR (r.lease_until_ms IS NOT NULL AND r.lease_until_ms < $3))
      AND (r.status IN ('pending', 'running')
           OR (r.status IN ('paused', 'waiting', 'budget_exceeded')
               AND EXISTS (SELECT 1 FROM controls c WHERE c.run_id = r.id)))
      AND COALESCE(r.options::jsonb -> 'worker_tags', '[]'::jsonb) <@ $4::text::jsonb
      AND NOT (r.id = ANY($6::text[]))
    ORDER BY r.created_at_ms, r.id
    LIMIT $5
    FOR UPDATE SKIP LOCKED
)
RETURNING id, status
"#;

impl PostgresStore {
    /// Claims up to `limit` runs a worker with `tags` may run, for `owner` with a lease of
    /// `lease_ms`, in one statement: a queued run (`pending`, nobody holds it), a `running` run
    /// whose lease expired or was released (its process died or stopped), and a paused or
    /// waiting run with a control request queued (an answer, a resume). Rows another worker is
    /// claiming at the same moment are skipped (`SKIP LOCKED`), never waited for or taken
    /// twice. A run that requires tags (`worker_tags` in its options) goes only to a worker
    /// having all of them. `skip`: runs not to claim (ones this worker could not load).
    /// Returns each run with its stored status.
    pub async fn claim_runnable(
        &self,
        owner: &str,
        tags: &[String],
        limit: u32,
        lease_ms: u64,
        skip: &[RunId],
    ) -> Result<Vec<(RunId, RunStatus)>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let c = self.conn().await?;
        let now = now_ms();
        let until = now.saturating_add(i64::try_from(lease_ms).unwrap_or(i64::MAX / 2));
        let skip: Vec<String> = skip.iter().map(ToString::to_string).collect();
        let st = c.prepare_cached(CLAIM).await.map_err(pg_err)?;
        let rows = c
            .query(
                &st,
                &[
                    &owner,
                    &until,
                    &now,
                    &tags_json(tags),
                    &i64::from(limit),
                    &skip,
                ],
            )
            .await
            .map_err(pg_err)?;
        rows.iter()
            .map(|r| {
                let id: String = r.try_get(0).map_err(pg_err)?;
                let status: String = r.try_get(1).map_err(pg_err)?;
                Ok((
                    parse_id(&id)?,
                    status
                        .parse()
                        .map_err(|e: String| Error::Corrupt(format!("run {id}: {e}")))?,
                ))
            })
            .collect()
    }

    /// Leaves a run just created to the workers (it was held by its creator until now).
    pub async fn queue_run(&self, run: RunId) -> Result<()> {
        let c = self.conn().await?;
        let n = c
            .execute(
                "UPDATE runs SET owner = NULL, lease_until_ms = NULL WHERE id = $1 AND status = 'pending'",
                &[&run.to_string()],
            )
            .await
            .map_err(pg_err)?;
        if n == 0 {
            return Err(Error::Invalid(format!(
                "run {run} has started already: only a pending run can be queued"
            )));
        }
        c.execute("SELECT pg_notify($1, '')", &[&WORK_CHANNEL])
            .await
            .map_err(pg_err)?;
        Ok(())
    }

    /// Registers (or registers again) a worker; it is `running` from now.
    pub async fn register_worker(&self, w: &NewWorker) -> Result<()> {
        let c = self.conn().await?;
        let (host, pid) = w.id.rsplit_once(':').unwrap_or((&w.id, "0"));
        let pid: i64 = pid.parse().unwrap_or(0);
        let now = now_ms();
        c.execute(
            "INSERT INTO workers (id, host, pid, version, tags, concurrency, lease_ms,
                 started_at_ms, heartbeat_at_ms, draining, stopped_at_ms)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8, FALSE, NULL)
             ON CONFLICT (id) DO UPDATE SET host = excluded.host, pid = excluded.pid,
                 version = excluded.version, tags = excluded.tags,
                 concurrency = excluded.concurrency, lease_ms = excluded.lease_ms,
                 started_at_ms = excluded.started_at_ms,
                 heartbeat_at_ms = excluded.heartbeat_at_ms, draining = FALSE,
                 stopped_at_ms = NULL",
            &[
                &w.id,
                &host,
                &pid,
                &w.version,
                &tags_json(&w.tags),
                &i64::from(w.concurrency),
                &i64::try_from(w.lease_ms).unwrap_or(i64::MAX),
                &now,
            ],
        )
        .await
        .map_err(pg_err)?;
        Ok(())
    }

    /// Says the worker is alive; returns whether it was asked to drain (`None`: it is not
    /// registered, e.g. its row was removed).
    pub async fn heartbeat_worker(&self, id: &str) -> Result<Option<bool>> {
        let c = self.conn().await?;
        let row = c
            .query_opt(
                "UPDATE workers SET heartbeat_at_ms = $2 WHERE id = $1 RETURNING draining",
                &[&id, &now_ms()],
            )
            .await
            .map_err(pg_err)?;
        row.map(|r| r.try_get(0).map_err(pg_err)).transpose()
    }

    /// Asks a worker to drain: it takes no new runs, lets the steps in flight finish, hands
    /// its runs back and exits. `Missing` when there is no such worker (or it stopped).
    pub async fn drain_worker(&self, id: &str) -> Result<WorkerRecord> {
        let c = self.conn().await?;
        let n = c
            .execute(
                "UPDATE workers SET draining = TRUE WHERE id = $1 AND stopped_at_ms IS NULL",
                &[&id],
            )
            .await
            .map_err(pg_err)?;
        if n == 0 {
            return Err(Error::Missing {
                what: format!("running worker '{id}' (see `baton workers list`)"),
            });
        }
        c.execute(
            "SELECT pg_notify($1, $2)",
            &[&WORK_CHANNEL, &format!("drain {id}")],
        )
        .await
        .map_err(pg_err)?;
        self.workers()
            .await?
            .into_iter()
            .find(|w| w.id == id)
            .ok_or_else(|| Error::Missing {
                what: format!("worker '{id}'"),
            })
    }

    /// Records that a worker stopped (it holds nothing any more).
    pub async fn stop_worker(&self, id: &str) -> Result<()> {
        let c = self.conn().await?;
        c.execute(
            "UPDATE workers SET stopped_at_ms = $2 WHERE id = $1",
            &[&id, &now_ms()],
        )
        .await
        .map_err(pg_err)?;
        Ok(())
    }

    /// Every worker registered, newest first, with the runs each holds now.
    pub async fn workers(&self) -> Result<Vec<WorkerRecord>> {
        let c = self.conn().await?;
        let rows = c
            .query(
                "SELECT w.id, w.host, w.pid, w.version, w.tags, w.concurrency, w.lease_ms,
                        w.started_at_ms, w.heartbeat_at_ms, w.draining, w.stopped_at_ms,
                        (SELECT COUNT(*) FROM runs r WHERE r.owner = w.id
                            AND r.lease_until_ms IS NOT NULL AND r.lease_until_ms >= $1)
                 FROM workers w ORDER BY w.started_at_ms DESC, w.id",
                &[&now_ms()],
            )
            .await
            .map_err(pg_err)?;
        rows.iter()
            .map(|r| {
                let id: String = r.try_get(0).map_err(pg_err)?;
                let tags: String = r.try_get(4).map_err(pg_err)?;
                let int = |i: usize| -> Result<i64> { r.try_get(i).map_err(pg_err) };
                Ok(WorkerRecord {
                    host: r.try_get(1).map_err(pg_err)?,
                    pid: u32::try_from(int(2)?).unwrap_or(0),
                    version: r.try_get(3).map_err(pg_err)?,
                    tags: serde_json::from_str(&tags)
                        .map_err(|e| Error::Corrupt(format!("worker {id} tags: {e}")))?,
                    concurrency: u32::try_from(int(5)?).unwrap_or(0),
                    lease_ms: u64::try_from(int(6)?).unwrap_or(0),
                    started_at_ms: int(7)?,
                    heartbeat_at_ms: int(8)?,
                    draining: r.try_get(9).map_err(pg_err)?,
                    stopped_at_ms: r.try_get(10).map_err(pg_err)?,
                    runs_held: u64::try_from(int(11)?).unwrap_or(0),
                    id,
                })
            })
            .collect()
    }

    /// Who holds `run` now (`owner`, lease end), if anyone; and the tags it requires.
    pub async fn run_placement(
        &self,
        run: RunId,
    ) -> Result<Option<(Option<String>, Option<i64>, Vec<String>)>> {
        let c = self.conn().await?;
        let row = c
            .query_opt(
                "SELECT owner, lease_until_ms,
                        COALESCE(options::jsonb -> 'worker_tags', '[]'::jsonb)::text
                 FROM runs WHERE id = $1",
                &[&run.to_string()],
            )
            .await
            .map_err(pg_err)?;
        row.map(|r| {
            let tags: String = r.try_get(2).map_err(pg_err)?;
            Ok((
                r.try_get(0).map_err(pg_err)?,
                r.try_get(1).map_err(pg_err)?,
                serde_json::from_str(&tags)
                    .map_err(|e| Error::Corrupt(format!("run {run} worker_tags: {e}")))?,
            ))
        })
        .transpose()
    }

    /// Listens for [`Notice`]s on a connection of its own, reconnecting with backoff (100 ms
    /// doubling to 5 s) whenever it is lost; every (re)connection sends
    /// [`Notice::Connected`]. Stops when the receiver is dropped.
    pub fn listen(&self) -> mpsc::Receiver<Notice> {
        let cfg = self.cfg.clone();
        let url = self.url.clone();
        let (tx, rx) = mpsc::channel(1024);
        tokio::spawn(async move {
            let mut backoff = Duration::from_millis(100);
            loop {
                let mut connected = false;
                match listen_once(&cfg, &tx, &mut connected).await {
                    Ok(()) => return, // the receiver is gone
                    Err(e) => {
                        if tx.is_closed() {
                            return;
                        }
                        // A connection that worked starts the backoff over.
                        if connected {
                            backoff = Duration::from_millis(100);
                        }
                        tracing::warn!(
                            "database {url}: listening for notifications: {e}; again in {backoff:?}"
                        );
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(5));
                    }
                }
            }
        });
        rx
    }
}

/// One listening connection: `Ok` once the receiver is gone, `Err` when the connection is.
async fn listen_once(
    cfg: &tokio_postgres::Config,
    tx: &mpsc::Sender<Notice>,
    connected: &mut bool,
) -> std::result::Result<(), String> {
    let (client, mut conn) = cfg
        .connect(tokio_postgres::NoTls)
        .await
        .map_err(|e| super::PgError(e).to_string())?;
    let (msgs_tx, mut msgs) = mpsc::unbounded_channel();
    let driver = tokio::spawn(async move {
        let mut stream = futures::stream::poll_fn(move |cx| conn.poll_message(cx));
        while let Some(m) = stream.next().await {
            match m {
                Ok(AsyncMessage::Notification(n)) => {
                    if msgs_tx
                        .send(Ok((n.channel().to_string(), n.payload().to_string())))
                        .is_err()
                    {
                        return;
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    let _ = msgs_tx.send(Err(super::PgError(e).to_string()));
                    return;
                }
            }
        }
        let _ = msgs_tx.send(Err("the connection closed".into()));
    });
    let listened = client
        .batch_execute(&format!("LISTEN {EVENTS_CHANNEL}; LISTEN {WORK_CHANNEL}"))
        .await;
    if let Err(e) = listened {
        driver.abort();
        return Err(super::PgError(e).to_string());
    }
    *connected = true;
    if tx.send(Notice::Connected).await.is_err() {
        driver.abort();
        return Ok(());
    }
    let result = loop {
        match msgs.recv().await {
            Some(Ok((channel, payload))) => {
                if let Some(n) = parse_notice(&channel, &payload)
                    && tx.send(n).await.is_err()
                {
                    break Ok(());
                }
            }
            Some(Err(e)) => break Err(e),
            None => break Err("the connection closed".into()),
        }
    };
    driver.abort();
    drop(client);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notices_parse_from_their_payloads() {
        let run = RunId::new();
        let p = logged_payload(run, 3, 5, "acme", "h:12");
        assert_eq!(
            parse_notice(EVENTS_CHANNEL, &p),
            Some(Notice::Logged {
                run,
                first: 3,
                last: 5,
                tenant: "acme".parse().unwrap(),
                origin: "h:12".into()
            })
        );
        assert_eq!(parse_notice(WORK_CHANNEL, ""), Some(Notice::Work));
        assert_eq!(
            parse_notice(WORK_CHANNEL, "drain h:1"),
            Some(Notice::Drain {
                worker: "h:1".into()
            })
        );
        assert_eq!(parse_notice(EVENTS_CHANNEL, "garbage"), None);
        assert_eq!(parse_notice("other", ""), None);
    }

    #[test]
    fn a_worker_without_heartbeat_for_longer_than_its_lease_is_lost() {
        let mut w = WorkerRecord {
            id: "h:1".into(),
            host: "h".into(),
            pid: 1,
            version: "0".into(),
            tags: vec![],
            concurrency: 1,
            lease_ms: 1000,
            started_at_ms: 0,
            heartbeat_at_ms: 10_000,
            draining: false,
            stopped_at_ms: None,
            runs_held: 0,
        };
        assert_eq!(w.state(10_500), "running");
        assert_eq!(w.state(11_001), "lost");
        w.draining = true;
        assert_eq!(w.state(10_500), "draining");
        w.stopped_at_ms = Some(10_600);
        assert_eq!(w.state(20_000), "stopped");
    }
}
