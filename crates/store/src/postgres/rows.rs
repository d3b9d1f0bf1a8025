//! How runs and their events sit in PostgreSQL's rows: the columns a run is read with, parsing
//! a row into a [`RunRecord`], writing events, locking a run's row for a transaction, and the
//! notification of what was logged.

use super::*;

pub(super) const RUN_COLS: &str = "r.id, r.workflow_name, r.workflow_source, r.workflow_path,
    i.inputs, r.options, r.status, r.created_at_ms, r.updated_at_ms, r.outputs, r.error,
    r.last_seq, r.owner, r.lease_until_ms, r.tenant, r.started_by";

pub(super) const RUN_FROM: &str = "runs r JOIN run_inputs i ON i.run_id = r.id";

pub(super) fn corrupt(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Corrupt(format!("{what}: {e}"))
}

pub(crate) fn parse_id(s: &str) -> Result<RunId> {
    s.parse()
        .map_err(|e: baton_types::ids::ParseRunIdError| Error::Corrupt(e.to_string()))
}

pub(super) fn parse_run(r: &tokio_postgres::Row, host: &str) -> Result<RunRecord> {
    let id: String = r.try_get(0).map_err(pg_err)?;
    let what = format!("run {id}");
    let json = |i: usize| -> Result<serde_json::Value> {
        let s: String = r.try_get(i).map_err(pg_err)?;
        serde_json::from_str(&s).map_err(|e| corrupt(&what, e))
    };
    let status: String = r.try_get(6).map_err(pg_err)?;
    let owner: Option<String> = r.try_get(12).map_err(pg_err)?;
    let outputs: Option<String> = r.try_get(9).map_err(pg_err)?;
    let tenant: String = r.try_get(14).map_err(pg_err)?;
    Ok(RunRecord {
        id: parse_id(&id)?,
        workflow_name: r.try_get(1).map_err(pg_err)?,
        workflow_source: r.try_get(2).map_err(pg_err)?,
        workflow_path: r.try_get(3).map_err(pg_err)?,
        inputs: json(4)?,
        options: json(5)?,
        status: live_status(
            status.parse().map_err(|e: String| corrupt(&what, e))?,
            owner.as_deref(),
            r.try_get(13).map_err(pg_err)?,
            host,
        ),
        created_at_ms: r.try_get(7).map_err(pg_err)?,
        updated_at_ms: r.try_get(8).map_err(pg_err)?,
        outputs: outputs
            .map(|s| serde_json::from_str(&s).map_err(|e| corrupt(&what, e)))
            .transpose()?,
        error: r.try_get(10).map_err(pg_err)?,
        last_seq: u64::try_from(r.try_get::<_, i64>(11).map_err(pg_err)?).unwrap_or(0),
        tenant: tenant
            .parse()
            .map_err(|e: baton_types::tenancy::ParseTenantIdError| corrupt(&what, e))?,
        started_by: r.try_get(15).map_err(pg_err)?,
    })
}

pub(super) fn seq_i64(seq: u64) -> i64 {
    i64::try_from(seq).unwrap_or(i64::MAX)
}

/// Inserts `events` after the run's last (its row locked by the caller); returns the new
/// last seq.
pub(super) async fn insert_events(
    tx: &deadpool_postgres::Transaction<'_>,
    run: RunId,
    id: &str,
    last: i64,
    events: &[EventRecord],
) -> Result<i64> {
    let mut expect = u64::try_from(last).unwrap_or(0) + 1;
    if events.is_empty() {
        return Ok(last);
    }
    let ins = tx
        .prepare_cached(
            "INSERT INTO events (run_id, seq, at_ms, kind, step, payload) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .await
        .map_err(pg_err)?;
    for ev in events {
        if ev.seq != expect {
            return Err(Error::Conflict { run, seq: ev.seq });
        }
        let payload = crate::stored_payload(&ev.event).map_err(|e| Error::Db(e.to_string()))?;
        tx.execute(
            &ins,
            &[
                &id,
                &seq_i64(ev.seq),
                &ev.at_ms,
                &ev.event.kind(),
                &ev.event.step(),
                &payload,
            ],
        )
        .await
        .map_err(pg_err)?;
        expect += 1;
    }
    Ok(seq_i64(expect - 1))
}

/// A run's row as [`lock_run`] reads it.
pub(super) struct Locked {
    pub(super) last_seq: i64,
    pub(super) owner: Option<String>,
    pub(super) lease_until_ms: Option<i64>,
    pub(super) status: String,
    pub(super) tenant: String,
}

/// Locks a run's row for the transaction (`None`: no such run).
pub(super) async fn lock_run(
    tx: &deadpool_postgres::Transaction<'_>,
    id: &str,
) -> Result<Option<Locked>> {
    // Every append and lease renewal starts here: prepared once per connection.
    let st = tx
        .prepare_cached(
            "SELECT last_seq, owner, lease_until_ms, status, tenant FROM runs WHERE id = $1 FOR UPDATE",
        )
        .await
        .map_err(pg_err)?;
    let row = tx.query_opt(&st, &[&id]).await.map_err(pg_err)?;
    row.map(|r| {
        Ok(Locked {
            last_seq: r.try_get(0).map_err(pg_err)?,
            owner: r.try_get(1).map_err(pg_err)?,
            lease_until_ms: r.try_get(2).map_err(pg_err)?,
            status: r.try_get(3).map_err(pg_err)?,
            tenant: r.try_get(4).map_err(pg_err)?,
        })
    })
    .transpose()
}

/// Tells every listener that events `first..=last` of `run` are logged (delivered when the
/// transaction commits; see [`Notice::Logged`]).
pub(super) async fn notify_logged(
    tx: &deadpool_postgres::Transaction<'_>,
    run: RunId,
    first: u64,
    last: u64,
    tenant: &str,
    origin: &str,
) -> Result<()> {
    let st = tx
        .prepare_cached("SELECT pg_notify($1, $2)")
        .await
        .map_err(pg_err)?;
    let payload = workers::logged_payload(run, first, last, tenant, origin);
    tx.execute(&st, &[&EVENTS_CHANNEL, &payload])
        .await
        .map_err(pg_err)?;
    Ok(())
}
