//! `baton webhooks`: inbound hooks (a URL that starts a stored workflow) and outbound
//! subscriptions (run events POSTed to a URL), thin over `baton_control::webhooks`. The CLI
//! acts as the local admin in `--tenant`; deliveries are sent by a running `baton serve`
//! (they wait in the database until one runs).

use baton_control::webhooks::{NewInboundHook, NewSubscription};
use clap::Subcommand;

use crate::cmd_run::{DbArgs, EXIT_OK};
use crate::view::fmt_time;

#[derive(Subcommand, Debug)]
pub enum WebhooksCmd {
    /// Inbound hooks: `POST /hooks/ID`, signed, starts a stored workflow.
    #[command(subcommand)]
    Inbound(InboundCmd),
    /// Outbound subscriptions to run events, and their deliveries.
    #[command(subcommand)]
    Subscriptions(SubscriptionsCmd),
}

#[derive(Subcommand, Debug)]
pub enum InboundCmd {
    /// Make a hook that starts WORKFLOW; prints its id, URL path and secret (shown only now).
    Create {
        /// A stored workflow: NAME (its latest version at each call) or NAME@VERSION.
        #[arg(long)]
        workflow: String,
        /// Give the whole request body as this one input (default: the body is a JSON object
        /// whose fields are the inputs).
        #[arg(long, value_name = "INPUT")]
        body_input: Option<String>,
        /// A note to recognise it by.
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        db: DbArgs,
    },
    /// List the tenant's hooks (never their secrets).
    List {
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Give a hook a new secret (printed); the old one stays valid for a while.
    Rotate {
        id: String,
        /// How long the old secret is still accepted: 24h, 30m, 0s.
        #[arg(long, default_value = "24h", value_name = "DURATION")]
        old_valid_for: String,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Delete a hook: its URL answers 404 from now on.
    Delete {
        id: String,
        #[command(flatten)]
        db: DbArgs,
    },
}

#[derive(Subcommand, Debug)]
pub enum SubscriptionsCmd {
    /// Subscribe URL to run events; prints its id and signing secret (shown only now).
    Create {
        /// http:// or https://; private, loopback and link-local addresses only where
        /// allowed ($BATON_WEBHOOK_ALLOW, `baton serve --webhook-allow`).
        #[arg(long)]
        url: String,
        /// An event type (repeat, or separate with commas): run.created, run.succeeded,
        /// run.failed, run.cancelled, run.paused, run.budget_exceeded, step.succeeded,
        /// step.failed, approval.requested, approval.answered.
        #[arg(
            long = "event",
            value_delimiter = ',',
            required = true,
            value_name = "TYPE"
        )]
        events: Vec<String>,
        #[arg(long)]
        description: Option<String>,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        db: DbArgs,
    },
    /// List the tenant's subscriptions (never their secrets).
    List {
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Delete a subscription; its deliveries not yet made are cancelled.
    Delete {
        id: String,
        #[command(flatten)]
        db: DbArgs,
    },
    /// A subscription's deliveries, newest first, with every attempt.
    Deliveries {
        id: String,
        #[arg(long, default_value_t = 20)]
        limit: u32,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        db: DbArgs,
    },
}

fn print_json(v: &impl serde::Serialize) -> anyhow::Result<i32> {
    outln!("{}", serde_json::to_string_pretty(v)?);
    Ok(EXIT_OK)
}

pub async fn webhooks(cmd: WebhooksCmd) -> anyhow::Result<i32> {
    match cmd {
        WebhooksCmd::Inbound(c) => inbound(c).await,
        WebhooksCmd::Subscriptions(c) => subscriptions(c).await,
    }
}

async fn inbound(cmd: InboundCmd) -> anyhow::Result<i32> {
    match cmd {
        InboundCmd::Create {
            workflow,
            body_input,
            name,
            json,
            db,
        } => {
            let (control, caller) = db.open().await?;
            let h = control
                .create_inbound_hook(
                    &caller,
                    NewInboundHook {
                        workflow,
                        body_input,
                        name,
                    },
                )
                .await?;
            if json {
                return print_json(&h);
            }
            outln!("id:       {}", h.hook.id);
            outln!("path:     {}  (POST, signed; no API key)", h.hook.path);
            outln!("workflow: {}", h.hook.workflow);
            outln!("secret:   {}  (shown only now)", h.secret);
            Ok(EXIT_OK)
        }
        InboundCmd::List { json, db } => list_hooks(json, db).await,
        InboundCmd::Rotate {
            id,
            old_valid_for,
            json,
            db,
        } => rotate(&id, &old_valid_for, json, db).await,
        InboundCmd::Delete { id, db } => {
            let (control, caller) = db.open().await?;
            control.delete_inbound_hook(&caller, &id).await?;
            outln!("deleted inbound webhook {id}");
            Ok(EXIT_OK)
        }
    }
}

async fn subscriptions(cmd: SubscriptionsCmd) -> anyhow::Result<i32> {
    match cmd {
        SubscriptionsCmd::Create {
            url,
            events,
            description,
            json,
            db,
        } => {
            let (control, caller) = db.open().await?;
            let s = control
                .create_subscription(
                    &caller,
                    NewSubscription {
                        url,
                        events,
                        description,
                    },
                )
                .await?;
            if json {
                return print_json(&s);
            }
            outln!("id:     {}", s.subscription.id);
            outln!("url:    {}", s.subscription.url);
            outln!("events: {}", s.subscription.events.join(", "));
            outln!("secret: {}  (shown only now)", s.secret);
            Ok(EXIT_OK)
        }
        SubscriptionsCmd::List { json, db } => list_subscriptions(json, db).await,
        SubscriptionsCmd::Delete { id, db } => {
            let (control, caller) = db.open().await?;
            control.delete_subscription(&caller, &id).await?;
            outln!("deleted webhook subscription {id}");
            Ok(EXIT_OK)
        }
        SubscriptionsCmd::Deliveries {
            id,
            limit,
            json,
            db,
        } => deliveries(&id, limit, json, db).await,
    }
}

async fn list_hooks(json: bool, db: DbArgs) -> anyhow::Result<i32> {
    let (control, caller) = db.open().await?;
    let hooks = control.list_inbound_hooks(&caller).await?;
    if json {
        return print_json(&hooks);
    }
    if hooks.is_empty() {
        outln!("no inbound webhooks");
        return Ok(EXIT_OK);
    }
    outln!("{:<27}  {:<24}  {:<20}  NAME", "ID", "WORKFLOW", "CREATED");
    for h in &hooks {
        outln!(
            "{:<27}  {:<24}  {:<20}  {}",
            h.id,
            h.workflow,
            fmt_time(h.created_at_ms),
            h.name.as_deref().unwrap_or("")
        );
    }
    Ok(EXIT_OK)
}

async fn rotate(id: &str, old_valid_for: &str, json: bool, db: DbArgs) -> anyhow::Result<i32> {
    let d = humantime::parse_duration(old_valid_for).map_err(|e| {
        anyhow::anyhow!("--old-valid-for '{old_valid_for}': {e} (write e.g. 24h or 0s)")
    })?;
    let (control, caller) = db.open().await?;
    let ms = i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
    let h = control.rotate_inbound_hook(&caller, id, ms).await?;
    if json {
        return print_json(&h);
    }
    outln!("secret:   {}  (shown only now)", h.secret);
    match h.hook.previous_secret_valid_until_ms {
        Some(t) => outln!("the old secret is accepted until {}", fmt_time(t)),
        None => outln!("the old secret is no longer accepted"),
    }
    Ok(EXIT_OK)
}

async fn list_subscriptions(json: bool, db: DbArgs) -> anyhow::Result<i32> {
    let (control, caller) = db.open().await?;
    let subs = control.list_subscriptions(&caller).await?;
    if json {
        return print_json(&subs);
    }
    if subs.is_empty() {
        outln!("no webhook subscriptions");
        return Ok(EXIT_OK);
    }
    outln!("{:<28}  {:<40}  EVENTS", "ID", "URL");
    for s in &subs {
        outln!("{:<28}  {:<40}  {}", s.id, s.url, s.events.join(","));
    }
    Ok(EXIT_OK)
}

async fn deliveries(id: &str, limit: u32, json: bool, db: DbArgs) -> anyhow::Result<i32> {
    let (control, caller) = db.open().await?;
    let page = control.deliveries(&caller, id, None, Some(limit)).await?;
    if json {
        return print_json(&page);
    }
    if page.deliveries.is_empty() {
        outln!("no deliveries");
        return Ok(EXIT_OK);
    }
    for d in &page.deliveries {
        outln!(
            "{}  {:<18}  {:<9}  {} attempt(s)  created {}",
            d.id,
            d.event_type,
            d.status.as_str(),
            d.attempts.len(),
            fmt_time(d.created_at_ms)
        );
        for a in &d.attempts {
            let code = a
                .status_code
                .map_or_else(|| "---".to_string(), |c| c.to_string());
            outln!(
                "    #{} {}  {code}  {} ms  {}",
                a.n,
                fmt_time(a.at_ms),
                a.duration_ms,
                a.error.as_deref().unwrap_or("ok")
            );
        }
    }
    Ok(EXIT_OK)
}
