//! `baton keys`, `tenants`, `workflows`, `audit` and `approvals`: the platform's
//! administration, thin over `baton_control`. The CLI acts as the local admin of tenant
//! `default` (the operator), in the tenant `--tenant` names, on the same database a running
//! `baton serve` uses.

use std::path::PathBuf;

use anyhow::{Context, bail};
use baton_control::{Caller, Control, NewKey, WorkflowRef};
use baton_store::AuditQuery;
use baton_types::{Role, TenantId};
use clap::{Args, Subcommand};

use crate::cmd_run::{DbArgs, EXIT_FAILED, EXIT_INVALID, EXIT_OK, print_diagnostics};
use crate::view::fmt_time;
use crate::wiring;

#[derive(Subcommand, Debug)]
pub enum KeysCmd {
    /// Create an API key and print it (only the key, once: it is stored hashed). It acts in
    /// `--tenant` (default `default`).
    Create {
        /// admin, editor, runner or viewer.
        #[arg(long)]
        role: String,
        /// When it stops working: a duration from now (30d, 12h) or an RFC 3339 time.
        #[arg(long, value_name = "WHEN")]
        expires: Option<String>,
        /// A note to recognise it by in `keys list`.
        #[arg(long)]
        name: Option<String>,
        #[command(flatten)]
        db: DbArgs,
    },
    /// List keys (never their secrets): `--tenant`'s, else every tenant's.
    List {
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Revoke a key: it stops working at once.
    Revoke {
        /// The key's id (as `keys list` prints it).
        id: String,
        #[command(flatten)]
        db: DbArgs,
    },
}

#[derive(Subcommand, Debug)]
pub enum TenantsCmd {
    /// Create a tenant.
    Create {
        /// 1-63 characters of a-z, 0-9, '-' and '_'.
        id: String,
        /// A display name (default: the id).
        #[arg(long)]
        name: Option<String>,
        #[command(flatten)]
        db: DbArgs,
    },
    /// List tenants.
    List {
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        db: DbArgs,
    },
}

#[derive(Subcommand, Debug)]
pub enum WorkflowsCmd {
    /// Validate a workflow file and store it as version 1 of its `name:`.
    Create {
        file: PathBuf,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Store a workflow file as the next version of its `name:`.
    Update {
        file: PathBuf,
        #[command(flatten)]
        db: DbArgs,
    },
    /// List stored workflows.
    List {
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Print a stored workflow: NAME (latest version) or NAME@VERSION.
    Show {
        workflow: String,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Delete a stored workflow (its versions are kept; runs keep their copy).
    Delete {
        name: String,
        #[command(flatten)]
        db: DbArgs,
    },
}

#[derive(Subcommand, Debug)]
pub enum AuditCmd {
    /// List `--tenant`'s audit entries (default `default`), oldest first.
    List {
        /// Only this action (e.g. run.start, key.create, auth).
        #[arg(long)]
        action: Option<String>,
        /// Only entries after this seq.
        #[arg(long)]
        after: Option<u64>,
        #[arg(long)]
        limit: Option<u32>,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Check the hash chains (`--tenant`'s, else every tenant's); exits 1 naming the first
    /// broken entry.
    Verify {
        #[command(flatten)]
        db: DbArgs,
    },
}

#[derive(Args, Debug)]
pub struct ApprovalsArgs {
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub db: DbArgs,
}

/// `baton approvals`: every `human` step waiting for an answer, oldest first.
pub async fn approvals(args: ApprovalsArgs) -> anyhow::Result<i32> {
    let (control, caller) = args.db.open().await?;
    let waiting = control.approvals(&caller).await?;
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&waiting)?);
        return Ok(EXIT_OK);
    }
    if waiting.is_empty() {
        outln!("nothing waits for an answer");
        return Ok(EXIT_OK);
    }
    for a in &waiting {
        let kind = match a.kind {
            baton_types::HumanKind::Approval => "approve",
            baton_types::HumanKind::Input => "input",
        };
        let until = a
            .deadline_ms
            .map(|d| format!(", until {}", fmt_time(d)))
            .unwrap_or_default();
        let escalated = a
            .escalated_to
            .as_deref()
            .map(|to| format!(", escalated to {to}"))
            .unwrap_or_default();
        outln!(
            "{}  {}  step {} ({kind}) since {}{until}{escalated}",
            a.run,
            a.workflow,
            a.step,
            fmt_time(a.requested_at_ms)
        );
        for line in a.prompt.lines() {
            outln!("    {line}");
        }
    }
    Ok(EXIT_OK)
}

/// `--expires`: a duration from now, or an RFC 3339 time; Unix ms.
fn parse_expiry(s: &str) -> anyhow::Result<i64> {
    if let Ok(d) = humantime::parse_duration(s) {
        let ms = i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        return Ok(baton_store::now_ms().saturating_add(ms));
    }
    let t = humantime::parse_rfc3339_weak(s).with_context(|| {
        format!("--expires '{s}': give a duration (30d, 12h) or a time (2027-01-31T00:00:00Z)")
    })?;
    let d = t
        .duration_since(std::time::UNIX_EPOCH)
        .context("--expires: the time is before 1970")?;
    Ok(i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

pub async fn keys(cmd: KeysCmd) -> anyhow::Result<i32> {
    match cmd {
        KeysCmd::Create {
            role,
            expires,
            name,
            db,
        } => {
            let role: Role = match role.parse() {
                Ok(r) => r,
                Err(e) => {
                    errln!("error: --role {e}");
                    return Ok(EXIT_INVALID);
                }
            };
            let expires_at_ms = expires.as_deref().map(parse_expiry).transpose()?;
            let control = wiring::control(db.db.as_deref()).await?;
            let k = control
                .create_key(
                    &Caller::local(),
                    NewKey {
                        tenant: Some(db.tenant_id()?.unwrap_or_default()),
                        role,
                        name,
                        expires_at_ms,
                    },
                )
                .await?;
            // Only the key: scripts capture it.
            outln!("{}", k.key);
            Ok(EXIT_OK)
        }
        KeysCmd::List { json, db } => list_keys(json, db).await,
        KeysCmd::Revoke { id, db } => {
            let control = wiring::control(db.db.as_deref()).await?;
            let k = control.revoke_key(&Caller::local(), &id).await?;
            outln!("revoked key {} (tenant {}, {})", k.id, k.tenant, k.role);
            Ok(EXIT_OK)
        }
    }
}

async fn list_keys(json: bool, db: DbArgs) -> anyhow::Result<i32> {
    let control = wiring::control(db.db.as_deref()).await?;
    let tenants = match db.tenant_id()? {
        Some(t) => vec![t],
        None => all_tenants(&control).await?,
    };
    let mut keys = Vec::new();
    for t in &tenants {
        keys.extend(control.list_keys(&Caller::local(), Some(t)).await?);
    }
    if json {
        outln!("{}", serde_json::to_string_pretty(&keys)?);
        return Ok(EXIT_OK);
    }
    if keys.is_empty() {
        outln!("no keys");
        return Ok(EXIT_OK);
    }
    let now = baton_store::now_ms();
    outln!(
        "{:<12}  {:<16}  {:<6}  {:<7}  {:<20}  {:<20}  NAME",
        "ID",
        "TENANT",
        "ROLE",
        "STATE",
        "CREATED",
        "EXPIRES"
    );
    for k in &keys {
        outln!(
            "{:<12}  {:<16}  {:<6}  {:<7}  {:<20}  {:<20}  {}",
            k.id,
            k.tenant.as_str(),
            k.role.as_str(),
            k.state(now),
            fmt_time(k.created_at_ms),
            k.expires_at_ms
                .map(fmt_time)
                .unwrap_or_else(|| "never".into()),
            k.name.as_deref().unwrap_or("")
        );
    }
    Ok(EXIT_OK)
}

async fn all_tenants(control: &Control) -> anyhow::Result<Vec<TenantId>> {
    Ok(control
        .list_tenants(&Caller::local())
        .await?
        .into_iter()
        .map(|t| t.id)
        .collect())
}

pub async fn tenants(cmd: TenantsCmd) -> anyhow::Result<i32> {
    match cmd {
        TenantsCmd::Create { id, name, db } => {
            let control = wiring::control(db.db.as_deref()).await?;
            let t = control.create_tenant(&Caller::local(), &id, name).await?;
            outln!("created tenant {}", t.id);
            Ok(EXIT_OK)
        }
        TenantsCmd::List { json, db } => {
            let control = wiring::control(db.db.as_deref()).await?;
            let ts = control.list_tenants(&Caller::local()).await?;
            if json {
                outln!("{}", serde_json::to_string_pretty(&ts)?);
                return Ok(EXIT_OK);
            }
            outln!("{:<24}  {:<20}  NAME", "ID", "CREATED");
            for t in &ts {
                outln!(
                    "{:<24}  {:<20}  {}",
                    t.id.as_str(),
                    fmt_time(t.created_at_ms),
                    t.name
                );
            }
            Ok(EXIT_OK)
        }
    }
}

pub(crate) fn read_doc(file: &std::path::Path) -> anyhow::Result<String> {
    std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))
}

/// Prints a refused document as `baton validate` would; other errors go up.
pub(crate) fn refused(e: baton_control::Error) -> anyhow::Result<i32> {
    if !e.diagnostics().is_empty() {
        print_diagnostics(e.diagnostics());
        return Ok(EXIT_INVALID);
    }
    if e.code() == baton_control::Code::Invalid {
        errln!("error: {e}");
        return Ok(EXIT_INVALID);
    }
    Err(e.into())
}

pub async fn workflows(cmd: WorkflowsCmd) -> anyhow::Result<i32> {
    match cmd {
        WorkflowsCmd::Create { file, db } => {
            let (control, caller) = db.open().await?;
            let text = read_doc(&file)?;
            let name = file.display().to_string();
            stored(control.create_workflow(&caller, &name, &text).await)
        }
        WorkflowsCmd::Update { file, db } => {
            let (control, caller) = db.open().await?;
            let text = read_doc(&file)?;
            let name = file.display().to_string();
            let doc_name = match baton_engine::load::load_bytes(&name, text.as_bytes()) {
                Ok(l) => l.doc.name,
                Err(d) => {
                    print_diagnostics(&d);
                    return Ok(EXIT_INVALID);
                }
            };
            stored(
                control
                    .update_workflow(&caller, &doc_name, &name, &text)
                    .await,
            )
        }
        WorkflowsCmd::List { json, db } => list_workflows(json, db).await,
        WorkflowsCmd::Show { workflow, json, db } => show_workflow(&workflow, json, db).await,
        WorkflowsCmd::Delete { name, db } => {
            let (control, caller) = db.open().await?;
            control.delete_workflow(&caller, &name).await?;
            outln!("deleted workflow {name}");
            Ok(EXIT_OK)
        }
    }
}

/// Reports a stored version (and the document's warnings), or why it was refused.
fn stored(r: Result<baton_control::WorkflowVersion, baton_control::Error>) -> anyhow::Result<i32> {
    match r {
        Ok(w) => Ok(report_stored(
            &w.warnings,
            &format!("workflow {}@{}", w.name, w.version),
        )),
        Err(e) => refused(e),
    }
}

/// A stored version: the document's warnings, then `stored WHAT`.
pub(crate) fn report_stored(warnings: &[baton_control::Diagnostic], what: &str) -> i32 {
    for d in warnings {
        errln!("{d}");
    }
    outln!("stored {what}");
    EXIT_OK
}

/// `stored WHEN by WHO`, for a version's headline.
pub(crate) fn stored_at(at_ms: i64, by: Option<&str>) -> String {
    let by = by.map(|b| format!(" by {b}")).unwrap_or_default();
    format!("stored {}{by}", fmt_time(at_ms))
}

async fn list_workflows(json: bool, db: DbArgs) -> anyhow::Result<i32> {
    let (control, caller) = db.open().await?;
    let ws = control.list_workflows(&caller).await?;
    if json {
        outln!("{}", serde_json::to_string_pretty(&ws)?);
    } else if ws.is_empty() {
        outln!("no workflows");
    } else {
        outln!("{:<32}  {:>7}  UPDATED", "NAME", "VERSION");
        for w in &ws {
            outln!(
                "{:<32}  {:>7}  {}",
                w.name,
                w.latest,
                fmt_time(w.updated_at_ms)
            );
        }
    }
    Ok(EXIT_OK)
}

async fn show_workflow(workflow: &str, json: bool, db: DbArgs) -> anyhow::Result<i32> {
    let r: WorkflowRef = match workflow.parse() {
        Ok(r) => r,
        Err(e) => {
            errln!("error: {e}");
            return Ok(EXIT_INVALID);
        }
    };
    let (control, caller) = db.open().await?;
    let w = control.get_workflow(&caller, &r).await?;
    if json {
        outln!("{}", serde_json::to_string_pretty(&w)?);
        return Ok(EXIT_OK);
    }
    let stored = stored_at(w.created_at_ms, w.created_by.as_deref());
    outln!("# {}@{} (latest {}), {stored}", w.name, w.version, w.latest);
    outln!("{}", w.source.trim_end());
    Ok(EXIT_OK)
}

pub async fn audit(cmd: AuditCmd) -> anyhow::Result<i32> {
    match cmd {
        AuditCmd::List {
            action,
            after,
            limit,
            json,
            db,
        } => {
            let control = wiring::control(db.db.as_deref()).await?;
            let q = AuditQuery {
                after,
                limit,
                action,
                ..Default::default()
            };
            let t = db.tenant_id()?.unwrap_or_default();
            let entries = control.audit(&Caller::local(), Some(&t), &q).await?;
            if json {
                outln!("{}", serde_json::to_string_pretty(&entries)?);
                return Ok(EXIT_OK);
            }
            if entries.is_empty() {
                outln!("no audit entries in tenant {t}");
                return Ok(EXIT_OK);
            }
            outln!(
                "{:>5}  {:<20}  {:<12}  {:<16}  {:<7}  OBJECT",
                "SEQ",
                "TIME",
                "KEY",
                "ACTION",
                "OUTCOME"
            );
            for e in &entries {
                let x = &e.entry;
                outln!(
                    "{:>5}  {:<20}  {:<12}  {:<16}  {:<7}  {}",
                    e.seq,
                    fmt_time(x.at_ms),
                    x.key_id.as_deref().unwrap_or("-"),
                    x.action,
                    x.outcome,
                    x.object.as_deref().unwrap_or("-")
                );
            }
            Ok(EXIT_OK)
        }
        AuditCmd::Verify { db } => {
            let control = wiring::control(db.db.as_deref()).await?;
            let tenants = match db.tenant_id()? {
                Some(t) => vec![t],
                None => all_tenants(&control).await?,
            };
            let mut code = EXIT_OK;
            for t in &tenants {
                let v = control.verify_audit(&Caller::local(), Some(t)).await?;
                match &v.broken {
                    None => outln!("tenant {}: {} entries, chain intact", v.tenant, v.entries),
                    Some(b) => {
                        errln!(
                            "error: the audit chain of tenant {} is broken at entry {}: {}",
                            v.tenant,
                            b.seq,
                            b.reason
                        );
                        code = EXIT_FAILED;
                    }
                }
            }
            if tenants.is_empty() {
                bail!("no tenants in this database");
            }
            Ok(code)
        }
    }
}
