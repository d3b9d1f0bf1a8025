//! `baton serve`: the platform over HTTP (the REST API under `/api/v1`, run events as SSE and
//! over a WebSocket, the OpenAI-compatible `/v1` routes, `/healthz`, `/readyz`, `/metrics`).

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result};
use baton_control::{Caller, NewKey};
use baton_server::{AppState, ServerConfig};
use baton_types::{Role, TenantId};
use clap::Args;

use crate::cmd_run::DbArgs;
use baton_engine::inputs::parse_size;

#[derive(Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8787", env = "BATON_ADDR")]
    addr: SocketAddr,
    /// The largest request body accepted (`10M`, `512K`...).
    #[arg(long, default_value = "10M", env = "BATON_BODY_LIMIT")]
    body_limit: String,
    /// An origin allowed to call the API from a browser (repeat for more); none: CORS off.
    #[arg(
        long = "cors-origin",
        env = "BATON_CORS_ORIGINS",
        value_delimiter = ','
    )]
    cors_origins: Vec<String>,
    /// Requests per second each API key may make (bursts of twice that; over it: 429 with
    /// Retry-After), or `off`.
    #[arg(long, default_value = "50", env = "BATON_RATE_LIMIT")]
    rate_limit: String,
    /// An address block outbound webhooks may reach although it is not public (e.g.
    /// `127.0.0.0/8`, `10.1.0.0/16`; repeat for more). Private, loopback and link-local
    /// addresses are refused otherwise; a cloud metadata address only when named exactly.
    #[arg(
        long = "webhook-allow",
        env = "BATON_WEBHOOK_ALLOW",
        value_delimiter = ',',
        value_name = "CIDR"
    )]
    webhook_allow: Vec<String>,
    /// Send each run's trace, when the run ends, to this OpenTelemetry collector (OTLP over
    /// HTTP, e.g. `http://127.0.0.1:4318`; `/v1/traces` is added). Default:
    /// `$OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, else `$OTEL_EXPORTER_OTLP_ENDPOINT`, else no
    /// traces are sent.
    #[arg(long, value_name = "URL")]
    otlp_endpoint: Option<String>,
    /// On Ctrl-C or SIGTERM, how long the steps in flight get to finish (and be checkpointed)
    /// before the runs are stopped where they are; every run is resumed by the next start.
    #[arg(
        long,
        default_value = "10s",
        env = "BATON_SHUTDOWN_GRACE",
        value_name = "DURATION"
    )]
    shutdown_grace: humantime::Duration,
    /// Print the OpenAPI document of `/api/v1` (as `GET /api/v1/openapi.json` answers it) and
    /// exit, without opening a database or listening.
    #[arg(long)]
    print_openapi: bool,
    /// Serve the API only, executing nothing: runs are left to the `baton worker` processes
    /// of the (PostgreSQL) database. Default: a worker runs inside the server too (on
    /// PostgreSQL it claims runs as `baton worker` does).
    #[arg(long, env = "BATON_NO_WORKER")]
    no_worker: bool,
    #[command(flatten)]
    worker: crate::cmd_worker::WorkerOptions,
    #[command(flatten)]
    db: DbArgs,
}

/// On the first start (no key was ever made for tenant `default`), an admin key to begin with.
async fn first_key(control: &baton_control::Control) -> Result<Option<String>> {
    let local = Caller::local();
    if !control
        .tenancy()
        .keys(&TenantId::default())
        .await?
        .is_empty()
    {
        return Ok(None);
    }
    let k = control
        .create_key(
            &local,
            NewKey {
                tenant: None,
                role: Role::Admin,
                name: Some("first start".into()),
                expires_at_ms: None,
            },
        )
        .await?;
    Ok(Some(k.key))
}

/// The server's log on stderr: warnings and errors by default (refused requests, failed
/// authentications, runs that stopped), with their request ids; `BATON_LOG` (`info`, `debug`,
/// `baton_server=debug`...) sets the level.
pub(crate) fn init_log() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("BATON_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    // Already set (a second server in one process): keep the first.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(
            std::io::IsTerminal::is_terminal(&std::io::stderr())
                && std::env::var_os("NO_COLOR").is_none(),
        )
        .with_target(false)
        .try_init();
}

/// How the server treats clients, from its flags.
fn server_config(args: &ServeArgs) -> Result<ServerConfig> {
    let body_limit =
        parse_size(&args.body_limit).map_err(|e| anyhow::anyhow!("--body-limit: {e}"))?;
    let rate_limit = match args.rate_limit.trim() {
        "off" => None,
        r => Some(
            r.parse::<f64>()
                .ok()
                .filter(|r| r.is_finite() && *r > 0.0)
                .ok_or_else(|| {
                    anyhow::anyhow!(
                        "--rate-limit: '{r}' is not a number of requests a second above 0, nor `off`"
                    )
                })?,
        ),
    };
    Ok(ServerConfig {
        body_limit: usize::try_from(body_limit).unwrap_or(usize::MAX),
        cors_origins: args.cors_origins.clone(),
        poll: Duration::from_millis(500),
        rate_limit,
        shutdown_grace: args.shutdown_grace.into(),
    })
}

/// Ctrl-C (SIGINT) or SIGTERM (what service managers and `kill` send).
pub(crate) async fn stop_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::warn!("cannot listen for SIGTERM: {e}");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
    }
    errln!("baton: stopping (new connections refused; runs drain, then stop at a checkpoint)");
}

pub async fn run(args: ServeArgs) -> Result<i32> {
    if args.print_openapi {
        outln!("{}", baton_server::openapi_json());
        return Ok(0);
    }
    init_log();
    let config = server_config(&args)?;
    let policy = crate::wiring::webhook_policy(&args.webhook_allow)?;
    let traces =
        crate::otlp::traces_endpoint(args.otlp_endpoint.as_deref(), |k| std::env::var(k).ok())?;
    let store = crate::wiring::open_store(
        args.db.db.as_deref(),
        baton_store::sqlite::Durability::Process,
    )
    .await?;
    let pg = match &store {
        crate::wiring::Store::Postgres(pg) => Some(pg.clone()),
        crate::wiring::Store::Sqlite(_) => None,
    };
    if args.no_worker && pg.is_none() {
        anyhow::bail!(
            "--no-worker leaves runs to `baton worker` processes, which share a PostgreSQL database: pass --db postgres://..."
        );
    }
    let worker_config = args.worker.config(args.shutdown_grace.into())?;
    let memory = crate::wiring::memory_on(&store)?;
    let services = crate::wiring::services_with(&store, memory.clone())?;
    let mut control = crate::wiring::control_with(&store, services, policy)
        .with_memory(memory)
        .with_lease(worker_config.lease);
    match &pg {
        Some(pg) if args.no_worker => control = control.with_queue(pg.clone()),
        // Runs that require tags this server's worker lacks are left to the workers.
        Some(pg) => control = control.with_worker_tags(pg.clone(), &worker_config.tags),
        None => {}
    }
    let sink = traces
        .as_deref()
        .map(crate::otlp::OtlpSink::start)
        .transpose()?;
    if let Some(sink) = &sink {
        control = control.with_traces(sink.clone());
    }
    let state = AppState::new(control.clone(), crate::wiring::providers()?).with_config(config);
    let listener = tokio::net::TcpListener::bind(args.addr)
        .await
        .with_context(|| format!("cannot listen on {}", args.addr))?;
    let addr = listener.local_addr()?;
    let key = first_key(&control).await?;
    // On PostgreSQL: the worker (claims runs, as `baton worker` does) and the events other
    // processes log, relayed to this server's subscribers.
    let worker = match (&pg, args.no_worker) {
        (Some(pg), false) => Some(
            baton_control::worker::Worker::start(
                &Caller::system("serve"),
                control.clone(),
                pg.clone(),
                worker_config.clone(),
            )
            .await
            .context("starting the server's worker")?,
        ),
        _ => None,
    };
    let _relay = pg.as_ref().map(|pg| control.relay(pg.listen()));
    let state = match &worker {
        Some(w) => state.with_worker(w.stats()),
        None => state,
    };
    // Runs left in flight when the server (or any process) last stopped (on PostgreSQL the
    // worker claims them, with the other workers).
    let resumed = if pg.is_none() {
        control.resume_interrupted(&Caller::system("serve")).await?
    } else {
        Vec::new()
    };
    // Human steps with a `timeout` in runs nobody drives: escalated or ended on time (by the
    // workers when this server executes nothing).
    let _timekeeper = if args.no_worker {
        None
    } else {
        Some(control.keep_time(&Caller::system("serve"))?)
    };
    errln!("baton serving on http://{addr}");
    errln!("  REST API:    http://{addr}/api/v1   (key: Authorization: Bearer <key>)");
    errln!("  OpenAI API:  http://{addr}/v1");
    errln!("  API reference: http://{addr}/api/v1/docs (OpenAPI: /api/v1/openapi.json)");
    if !resumed.is_empty() {
        errln!("  resumed {} interrupted run(s)", resumed.len());
    }
    if args.no_worker {
        errln!("  API only: runs are left to the workers of this database (`baton workers list`)");
    } else if let Some(w) = &worker {
        errln!(
            "  worker:      {} (concurrency {}, tags {})",
            w.id(),
            worker_config.concurrency,
            if worker_config.tags.is_empty() {
                "none".to_string()
            } else {
                worker_config.tags.join(",")
            }
        );
    }
    if let Some(k) = key {
        errln!(
            "  first start: an admin key for tenant 'default' on stdout (shown only now; store it)"
        );
        outln!("{k}");
    }
    if let Some(p) = control.webhook_policy()
        && !p.allowed_blocks().is_empty()
    {
        let blocks: Vec<String> = p.allowed_blocks().iter().map(ToString::to_string).collect();
        errln!("  webhooks may also reach: {}", blocks.join(", "));
    }
    // Outbound webhooks: the outbox every process fills, sent from here.
    let deliverer = baton_server::webhooks::Deliverer::new(
        control.clone(),
        baton_server::webhooks::DeliveryConfig::default(),
    )
    .map_err(anyhow::Error::msg)?;
    let deliveries = tokio::spawn(deliverer.run(std::future::pending::<()>()));
    if let Some(url) = &traces {
        errln!("  traces:      OTLP to {url} (each run's trace when it ends)");
    }
    // Always the banner's last line.
    errln!("  health:      http://{addr}/healthz, /readyz; metrics: /metrics");
    // One stop signal for the server and its worker. A drained worker (`baton workers drain`)
    // stops its server too: a server that executes nothing more must not take runs it would
    // hold without running.
    let stop_tx = std::sync::Arc::new(tokio::sync::watch::channel(false).0);
    let stop_rx = stop_tx.subscribe();
    {
        let stop_tx = stop_tx.clone();
        tokio::spawn(async move {
            stop_signal().await;
            stop_tx.send_replace(true);
        });
    }
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|v| *v).await;
    };
    let worker = worker.map(|w| {
        let rx = stop_rx.clone();
        let stop_tx = stop_tx.clone();
        tokio::spawn(async move {
            let id = w.id().to_string();
            if w.run(stopped(rx)).await == baton_control::worker::Stopped::Drained {
                errln!("baton: worker {id} drained: the server stops too");
                stop_tx.send_replace(true);
            }
        })
    });
    let served = baton_server::serve(listener, state, stopped(stop_rx)).await;
    if let Some(w) = worker {
        let _ = w.await;
    }
    // An attempt cut short is sent again by the next start (its claim expires).
    deliveries.abort();
    // The traces of runs that ended before the stop.
    if let Some(sink) = &sink {
        sink.flush(Duration::from_secs(5)).await;
    }
    served.context("the server failed")?;
    Ok(0)
}
