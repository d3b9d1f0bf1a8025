//! The composition root: which store, models and tools a command uses.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use baton_control::Control;
use baton_control::webhooks::{AddressPolicy, Cidr};
use baton_engine::Services;
use baton_llm::Providers;
use baton_memory::{Embeddings, Memory};
use baton_store::postgres::PostgresStore;
use baton_store::sqlite::{Durability, SqliteStore};
use baton_store::{RunStore, TeamMemory, TenantStore, WebhookStore};
use baton_tools::Registry;
use baton_tools::workspace::{Limits, Workspaces};
use baton_types::RunId;

/// Where Baton keeps its data: `$BATON_HOME`, else `$XDG_DATA_HOME/baton`, else
/// `~/.local/share/baton`.
pub fn data_dir() -> PathBuf {
    if let Some(h) = std::env::var_os("BATON_HOME") {
        return PathBuf::from(h);
    }
    if let Some(x) = std::env::var_os("XDG_DATA_HOME") {
        return PathBuf::from(x).join("baton");
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    home.join(".local/share/baton")
}

/// The database: `--db`, else `$BATON_DB`, else `<data dir>/baton.db`. A `postgres://` (or
/// `postgresql://`) URL names a PostgreSQL database; anything else is a SQLite file.
pub fn db_target(flag: Option<&str>) -> String {
    match flag {
        Some(p) => p.to_string(),
        None => std::env::var("BATON_DB")
            .ok()
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| data_dir().join("baton.db").display().to_string()),
    }
}

/// An open store, SQLite or PostgreSQL: the same traits over either.
#[derive(Clone)]
pub enum Store {
    Sqlite(Arc<SqliteStore>),
    Postgres(Arc<PostgresStore>),
}

impl Store {
    pub fn runs(&self) -> Arc<dyn RunStore> {
        match self {
            Self::Sqlite(s) => s.clone(),
            Self::Postgres(s) => s.clone(),
        }
    }

    pub fn tenancy(&self) -> Arc<dyn TenantStore> {
        match self {
            Self::Sqlite(s) => s.clone(),
            Self::Postgres(s) => s.clone(),
        }
    }

    pub fn webhooks(&self) -> Arc<dyn WebhookStore> {
        match self {
            Self::Sqlite(s) => s.clone(),
            Self::Postgres(s) => s.clone(),
        }
    }

    pub fn team_memory(&self) -> Arc<dyn TeamMemory> {
        match self {
            Self::Sqlite(s) => s.clone(),
            Self::Postgres(s) => s.clone(),
        }
    }

    /// Where the runs' workspaces live: `workspaces/` beside a SQLite file; for PostgreSQL,
    /// `<data dir>/workspaces` on this host.
    fn workspaces_root(&self) -> PathBuf {
        match self {
            Self::Sqlite(s) => {
                let db = std::path::absolute(s.path()).unwrap_or_else(|_| s.path().to_path_buf());
                db.parent()
                    .map_or_else(|| PathBuf::from("workspaces"), |d| d.join("workspaces"))
            }
            Self::Postgres(_) => data_dir().join("workspaces"),
        }
    }

    /// The durability a run was started with, as `runs show` prints it (`None`: no such run).
    /// PostgreSQL commits as its server is configured (`synchronous_commit`): `server`.
    pub fn run_durability(&self, run: RunId) -> anyhow::Result<Option<&'static str>> {
        match self {
            Self::Sqlite(s) => Ok(s.run_durability(run)?.map(Durability::as_str)),
            Self::Postgres(_) => Ok(Some("server")),
        }
    }
}

/// Opens the store `--db` names (see [`db_target`]), applying the migrations it lacks.
/// `durability` is SQLite's; a PostgreSQL database commits as its server is configured.
pub async fn open_store(db: Option<&str>, durability: Durability) -> anyhow::Result<Store> {
    let target = db_target(db);
    if baton_store::postgres::is_url(&target) {
        // The error names the database (its password hidden).
        let store = PostgresStore::open(&target)
            .await
            .context("opening the run log")?;
        return Ok(Store::Postgres(Arc::new(store)));
    }
    open_sqlite(Path::new(&target), durability)
}

/// Opens (creating) the SQLite file at `path`.
pub fn open_sqlite(path: &Path, durability: Durability) -> anyhow::Result<Store> {
    let store = SqliteStore::open(path, durability)
        .with_context(|| format!("opening the run log {}", path.display()))?;
    Ok(Store::Sqlite(Arc::new(store)))
}

/// `--config PATH`, set once by `main` before any command runs.
static CONFIG: std::sync::OnceLock<Option<PathBuf>> = std::sync::OnceLock::new();

/// Records `--config PATH` (the configuration file every command reads instead of searching).
pub fn set_config(path: Option<PathBuf>) {
    let _ = CONFIG.set(path);
}

/// `--config PATH` when given (then the file must exist), else `None`: `baton.toml` is found
/// through `BATON_CONFIG`, the working directory and the user's config directory.
pub fn config_path() -> Option<&'static Path> {
    CONFIG.get().and_then(|p| p.as_deref())
}

/// The model providers: `scripted`, the remote adapters (`openai`, `anthropic`, `ollama` and
/// those configured in baton.toml) and `local`, the embedded model.
pub fn providers() -> anyhow::Result<Providers> {
    let (_, mut providers) = baton_llm::config::load_providers(config_path())
        .context("loading the provider configuration")?;
    let local = baton_llm_local::LocalConfig::from_env().context("configuring the local model")?;
    baton_llm_local::register(&mut providers, &local);
    Ok(providers)
}

/// Team memory over `store`, with the embedding model `[memory] embeddings` of baton.toml
/// names (the built-in MiniLM by default, loaded on first use).
pub fn memory_on(store: &Store) -> anyhow::Result<Arc<Memory>> {
    let embeddings = crate::memory_config::embeddings(config_path())?;
    Ok(Arc::new(Memory::new(store.team_memory(), embeddings)))
}

/// The tools, for checking workflows only: the memory tools' specs over a store of their own
/// (the workspace tools' specs over workspaces they never open).
pub fn tools() -> Registry {
    let store = Arc::new(baton_store::memory::MemoryStore::new());
    tools_on(
        Arc::new(Memory::new(store.clone(), Embeddings::shared())),
        store,
        Workspaces::new(data_dir().join("workspaces"), Limits::default()),
    )
}

/// The runs' workspaces of the database at `store`: `workspaces/` beside a SQLite file
/// (`<data dir>/workspaces` for PostgreSQL), one per folder in this process (so the tools and
/// the use cases share its locks).
pub fn workspaces(store: &Store) -> Arc<Workspaces> {
    static ALL: std::sync::Mutex<Vec<(PathBuf, Arc<Workspaces>)>> =
        std::sync::Mutex::new(Vec::new());
    let root = store.workspaces_root();
    let mut all = ALL.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((_, w)) = all.iter().find(|(r, _)| *r == root) {
        return w.clone();
    }
    let w = Workspaces::new(root.clone(), Limits::default());
    all.push((root, w.clone()));
    w
}

/// The tools: built-ins, `memory.*` over `memory` (the run's tenant read from `runs`),
/// `workspace.*` over `workspaces`,
/// `sandbox.exec` (process tier) where this host can sandbox, `sandbox.step`, which
/// `sandbox:` steps run under their own policy (a step whose tier this host lacks fails with
/// the tier's reason when it runs), and `deploy` / `deploy.stop` over the workspaces (a target
/// this host lacks fails the call with its reason).
pub fn tools_on(
    memory: Arc<Memory>,
    runs: Arc<dyn RunStore>,
    workspaces: Arc<Workspaces>,
) -> Registry {
    let mut r = Registry::with_builtins();
    baton_memory::tools::register(&mut r, memory, runs);
    workspaces.register(&mut r);
    r.register(Arc::new(baton_tools::sandbox_step::SandboxStep::host()));
    baton_tools::deploy::Deployer::host(workspaces.clone()).register(&mut r);
    match baton_tools::sandbox_exec::SandboxExec::from_policy(baton_sandbox::Policy::new(
        baton_sandbox::Tier::Process,
    )) {
        Ok(t) => r.register(Arc::new(t.with_workspaces(workspaces.clone()))),
        // Workflows naming sandbox.exec then fail validation ("unknown tool"); say why here.
        Err(e) => errln!("warning: sandbox.exec is not available on this host: {e}"),
    }
    r
}

/// The services over a store already open, the memory tools over `memory`.
pub fn services_with(store: &Store, memory: Arc<Memory>) -> anyhow::Result<Services> {
    Ok(Services {
        tools: Arc::new(tools_on(memory, store.runs(), workspaces(store))),
        store: store.runs(),
        models: Arc::new(providers()?),
    })
}

/// The address blocks outbound webhooks may reach besides public addresses: `allow` (CIDR
/// blocks such as `127.0.0.0/8`), each checked.
pub fn webhook_policy(allow: &[String]) -> anyhow::Result<AddressPolicy> {
    let blocks = allow
        .iter()
        .map(|a| a.trim())
        .filter(|a| !a.is_empty())
        .map(|a| {
            a.parse::<Cidr>()
                .map_err(|e| anyhow::anyhow!("webhook allow-list: {e}"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(AddressPolicy::new(blocks))
}

/// `$BATON_WEBHOOK_ALLOW`: comma-separated blocks (what `baton serve --webhook-allow` reads).
fn env_webhook_allow() -> Vec<String> {
    std::env::var("BATON_WEBHOOK_ALLOW")
        .map(|v| v.split(',').map(str::to_string).collect())
        .unwrap_or_default()
}

/// The use cases over a store already open, with these services (whose store it is) and
/// webhooks sent only where `policy` allows.
pub fn control_with(store: &Store, services: Services, policy: AddressPolicy) -> Control {
    Control::new(services, store.tenancy())
        .with_workspaces(workspaces(store))
        .with_webhooks(store.webhooks(), policy)
}

/// The use cases over a store already open.
pub fn control_on(store: &Store) -> anyhow::Result<Control> {
    let memory = memory_on(store)?;
    let services = services_with(store, memory.clone())?;
    let policy = webhook_policy(&env_webhook_allow())?;
    Ok(control_with(store, services, policy).with_memory(memory))
}

/// The use cases over the database `--db` names (default durability).
pub async fn control(db: Option<&str>) -> anyhow::Result<Control> {
    control_on(&open_store(db, Durability::Process).await?)
}
