//! Writes: the writer thread, a group of writes in one transaction (a savepoint each), and
//! what each write does.

use super::*;

pub(super) fn writer_loop(conn: &Mutex<Connection>, rx: mpsc::Receiver<Job>, host: &str) {
    while let Ok(first) = rx.recv() {
        let mut jobs = vec![first];
        while jobs.len() < 256 {
            match rx.try_recv() {
                Ok(j) => jobs.push(j),
                Err(_) => break,
            }
        }
        let ops: Vec<&Op> = jobs.iter().map(|(op, _)| op).collect();
        let results = {
            let conn = conn.lock().unwrap_or_else(|p| p.into_inner());
            write_group(&conn, &ops, host)
        };
        for ((_, reply), r) in jobs.into_iter().zip(results) {
            let _ = reply.send(r);
        }
    }
}

/// Runs a statement without parameters through the statement cache (transaction control runs
/// several times per step: parsing it each time cost a quarter of a write).
pub(super) fn exec_cached(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(|_| ())
}

/// Writes a group of jobs in one transaction (one commit); each job is all or nothing.
pub(super) fn write_group(
    conn: &Connection,
    jobs: &[&Op],
    host: &str,
) -> Vec<Result<Vec<Control>>> {
    let all_failed = |e: &dyn std::fmt::Display| {
        jobs.iter()
            .map(|_| Err(Error::Db(e.to_string())))
            .collect::<Vec<_>>()
    };
    if let Err(e) = exec_cached(conn, "BEGIN IMMEDIATE") {
        return all_failed(&e);
    }
    // One job: the transaction is its unit. Several: a savepoint each, so that a failing job
    // is rolled back alone.
    let single = jobs.len() == 1;
    let mut results = Vec::with_capacity(jobs.len());
    for op in jobs {
        let r = if single {
            apply(conn, op, host)
        } else {
            match exec_cached(conn, "SAVEPOINT job") {
                Err(e) => Err(db_err(e)),
                Ok(()) => match apply(conn, op, host) {
                    Ok(v) => exec_cached(conn, "RELEASE job").map(|()| v).map_err(db_err),
                    Err(e) => {
                        let _ = exec_cached(conn, "ROLLBACK TO job");
                        let _ = exec_cached(conn, "RELEASE job");
                        Err(e)
                    }
                },
            }
        };
        results.push(r);
    }
    if single && results.iter().any(Result::is_err) {
        let _ = exec_cached(conn, "ROLLBACK");
        return results;
    }
    match exec_cached(conn, "COMMIT") {
        Ok(()) => results,
        Err(e) => {
            let _ = exec_cached(conn, "ROLLBACK");
            all_failed(&e)
        }
    }
}

pub(super) fn apply(tx: &Connection, op: &Op, host: &str) -> Result<Vec<Control>> {
    match op {
        Op::Create(run, durability) => {
            if let Some(k) = &run.idempotency {
                let used: Option<(String, String)> = tx
                    .prepare_cached(
                        "SELECT run_id, fingerprint FROM run_starts WHERE tenant = ?1 AND key = ?2",
                    )
                    .and_then(|mut st| {
                        st.query_row(params![run.tenant.as_str(), k.key], |r| {
                            Ok((r.get(0)?, r.get(1)?))
                        })
                        .optional()
                    })
                    .map_err(db_err)?;
                if let Some((id, fingerprint)) = used {
                    return Err(Error::KeyUsed {
                        key: k.key.clone(),
                        run: parse_id(&id)?,
                        fingerprint,
                    });
                }
                tx.prepare_cached(
                    "INSERT INTO run_starts (tenant, key, run_id, fingerprint, created_at_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
                )
                .and_then(|mut st| {
                    st.execute(params![
                        run.tenant.as_str(),
                        k.key,
                        run.id.to_string(),
                        k.fingerprint,
                        run.created_at_ms
                    ])
                })
                .map_err(db_err)?;
            }
            tx.prepare_cached(
                "INSERT INTO runs (id, workflow_name, workflow_source, workflow_path, inputs, options, status, created_at_ms, updated_at_ms, durability, tenant, started_by, owner, lease_until_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'pending', ?7, ?7, ?8, ?9, ?10, ?11, ?12)",
            )
            .and_then(|mut st| st.execute(params![
                    run.id.to_string(),
                    run.workflow_name,
                    run.workflow_source,
                    run.workflow_path,
                    // In `run_inputs` (see MIGRATION_3).
                    "",
                    run.options.to_string(),
                    run.created_at_ms,
                    durability.as_str(),
                    run.tenant.as_str(),
                    run.started_by,
                    // The creator holds the new run (an owner without a lease) until a claim
                    // starts it: a run whose creator dies first reads as `interrupted`, not
                    // `pending` forever.
                    crate::process_owner(),
                    Option::<i64>::None
                ]))
            .map_err(db_err)?;
            tx.prepare_cached("INSERT INTO run_inputs (run_id, inputs) VALUES (?1, ?2)")
                .and_then(|mut st| st.execute(params![run.id.to_string(), run.inputs.to_string()]))
                .map_err(db_err)?;
            if !run.events.is_empty() {
                let id = run.id.to_string();
                let last = insert_events(tx, run.id, &id, &run.events)?;
                tx.prepare_cached("UPDATE runs SET last_seq = ?2 WHERE id = ?1")
                    .and_then(|mut st| st.execute(params![id, last]))
                    .map_err(db_err)?;
            }
            Ok(Vec::new())
        }
        Op::Append(run, batch) => append(tx, *run, batch).map(|()| Vec::new()),
        Op::SendControl(run, control) => {
            let exists: Option<i64> = tx
                .query_row("SELECT 1 FROM runs WHERE id = ?1", [run.to_string()], |r| {
                    r.get(0)
                })
                .optional()
                .map_err(db_err)?;
            if exists.is_none() {
                return Err(Error::NotFound(*run));
            }
            let json = serde_json::to_string(control).map_err(|e| Error::Db(e.to_string()))?;
            tx.prepare_cached("INSERT INTO controls (run_id, control, at_ms) VALUES (?1, ?2, ?3)")
                .and_then(|mut st| st.execute(params![run.to_string(), json, now_ms()]))
                .map_err(db_err)?;
            Ok(Vec::new())
        }
        Op::TakeControls(run) => take_controls(tx, *run),
        Op::Claim {
            run,
            owner,
            lease_ms,
            renew,
        } => {
            let row: Option<(Option<String>, Option<i64>, String)> = tx
                .prepare_cached("SELECT owner, lease_until_ms, status FROM runs WHERE id = ?1")
                .and_then(|mut st| {
                    st.query_row([run.to_string()], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                })
                .optional()
                .map_err(db_err)?;
            let Some((cur, until, status)) = row else {
                return Err(Error::NotFound(*run));
            };
            let now = now_ms();
            let free = match &cur {
                None => true,
                Some(o) if o == owner => true,
                // Held by its creator only (an owner without a lease, see `Op::Create`): that
                // hold marks orphans, it does not reserve the run; whoever claims it starts it.
                Some(_) if until.is_none() && status == "pending" => true,
                Some(_) if *renew => false,
                Some(o) => until.unwrap_or(0) < now || !owner_alive(o, host),
            };
            if !free {
                return Err(Error::Claimed {
                    run: *run,
                    owner: cur.unwrap_or_default(),
                });
            }
            let lease = i64::try_from(*lease_ms).unwrap_or(i64::MAX / 2);
            tx.prepare_cached("UPDATE runs SET owner = ?2, lease_until_ms = ?3 WHERE id = ?1")
                .and_then(|mut st| {
                    st.execute(params![run.to_string(), owner, now.saturating_add(lease)])
                })
                .map_err(db_err)?;
            Ok(Vec::new())
        }
        Op::Release(run, owner) => {
            tx.prepare_cached(
                "UPDATE runs SET owner = NULL, lease_until_ms = NULL WHERE id = ?1 AND owner = ?2",
            )
            .and_then(|mut st| st.execute(params![run.to_string(), owner]))
            .map_err(db_err)?;
            Ok(Vec::new())
        }
        Op::Call(f) => f(tx).map(|()| Vec::new()),
        Op::SetDurability(run, durability) => {
            let n = tx
                .prepare_cached("UPDATE runs SET durability = ?2 WHERE id = ?1")
                .and_then(|mut st| st.execute(params![run.to_string(), durability.as_str()]))
                .map_err(db_err)?;
            if n == 0 {
                return Err(Error::NotFound(*run));
            }
            Ok(Vec::new())
        }
    }
}

pub(super) fn take_controls(tx: &Connection, run: RunId) -> Result<Vec<Control>> {
    let mut stmt = tx
        .prepare_cached("SELECT id, control FROM controls WHERE run_id = ?1 ORDER BY id")
        .map_err(db_err)?;
    let rows: Vec<(i64, String)> = stmt
        .query_map([run.to_string()], |r| Ok((r.get(0)?, r.get(1)?)))
        .map_err(db_err)?
        .collect::<rusqlite::Result<_>>()
        .map_err(db_err)?;
    drop(stmt);
    let mut out = Vec::new();
    for (id, json) in rows {
        tx.prepare_cached("DELETE FROM controls WHERE id = ?1")
            .and_then(|mut st| st.execute([id]))
            .map_err(db_err)?;
        out.push(
            serde_json::from_str(&json)
                .map_err(|e| Error::Corrupt(format!("control {id}: {e}")))?,
        );
    }
    Ok(out)
}

/// Inserts `events` after the run's last; returns the new last seq.
pub(super) fn insert_events(
    tx: &Connection,
    run: RunId,
    id: &str,
    events: &[EventRecord],
) -> Result<i64> {
    let last: Option<i64> = tx
        .prepare_cached("SELECT last_seq FROM runs WHERE id = ?1")
        .and_then(|mut s| s.query_row([id], |r| r.get(0)).optional())
        .map_err(db_err)?;
    let Some(last) = last else {
        return Err(Error::NotFound(run));
    };
    let mut expect = u64::try_from(last).unwrap_or(0) + 1;
    {
        let mut ins = tx
            .prepare_cached("INSERT INTO events (run_id, seq, at_ms, kind, step, payload) VALUES (?1, ?2, ?3, ?4, ?5, ?6)")
            .map_err(db_err)?;
        for ev in events {
            if ev.seq != expect {
                return Err(Error::Conflict { run, seq: ev.seq });
            }
            let payload = crate::stored_payload(&ev.event).map_err(|e| Error::Db(e.to_string()))?;
            ins.execute(params![
                id,
                i64::try_from(ev.seq).unwrap_or(i64::MAX),
                ev.at_ms,
                ev.event.kind(),
                ev.event.step(),
                payload
            ])
            .map_err(db_err)?;
            expect += 1;
        }
    }
    Ok(i64::try_from(expect - 1).unwrap_or(i64::MAX))
}

pub(super) fn append(tx: &Connection, run: RunId, batch: &Batch) -> Result<()> {
    let id = run.to_string();
    let new_last = insert_events(tx, run, &id, &batch.events)?;
    let mut upd = tx
        .prepare_cached(
            "UPDATE runs SET last_seq = ?2, updated_at_ms = ?3,
                status = COALESCE(?4, status), outputs = COALESCE(?5, outputs), error = COALESCE(?6, error)
             WHERE id = ?1",
        )
        .map_err(db_err)?;
    upd.execute(params![
        &id,
        new_last,
        now_ms(),
        batch.status.map(|s| s.as_str()),
        batch.outputs.as_ref().map(|v| v.to_string()),
        batch.error.as_deref()
    ])
    .map_err(db_err)?;
    if let Some(cp) = &batch.checkpoint {
        tx.prepare_cached(
            "INSERT INTO checkpoints (run_id, seq, state) VALUES (?1, ?2, ?3)
             ON CONFLICT (run_id) DO UPDATE SET seq = excluded.seq, state = excluded.state",
        )
        .and_then(|mut s| {
            s.execute(params![
                &id,
                i64::try_from(cp.seq).unwrap_or(i64::MAX),
                cp.state
            ])
        })
        .map_err(db_err)?;
    }
    Ok(())
}
