-- The whole SQLite schema at `SCHEMA_VERSION`, for a new database (schema.rs, `FRESH`): what the
-- migrations in schema.rs, webhooks.rs, agents.rs and team_memory.rs leave, created in one batch.
-- A new migration changes this file too; `a_new_database_matches_a_migrated_one` compares them.
CREATE TABLE runs (
    id TEXT PRIMARY KEY,
    workflow_name TEXT NOT NULL,
    workflow_source TEXT NOT NULL,
    workflow_path TEXT,
    inputs TEXT NOT NULL,
    options TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL,
    updated_at_ms INTEGER NOT NULL,
    outputs TEXT,
    error TEXT,
    last_seq INTEGER NOT NULL DEFAULT 0,
    owner TEXT,
    lease_until_ms INTEGER,
    durability TEXT,
    tenant TEXT NOT NULL DEFAULT 'default',
    started_by TEXT
);
CREATE INDEX runs_by_created ON runs (created_at_ms DESC);
CREATE TABLE events (
    run_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    at_ms INTEGER NOT NULL,
    kind TEXT NOT NULL,
    step TEXT,
    payload TEXT NOT NULL,
    PRIMARY KEY (run_id, seq)
) WITHOUT ROWID;
CREATE TABLE checkpoints (
    run_id TEXT PRIMARY KEY,
    seq INTEGER NOT NULL,
    state TEXT NOT NULL
);
CREATE TABLE controls (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT NOT NULL,
    control TEXT NOT NULL,
    at_ms INTEGER NOT NULL
);
CREATE INDEX controls_by_run ON controls (run_id, id);
CREATE TABLE run_inputs (
    run_id TEXT PRIMARY KEY,
    inputs TEXT NOT NULL
);
CREATE INDEX runs_by_tenant ON runs (tenant, created_at_ms DESC, id DESC);
CREATE TABLE tenants (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL
);
INSERT INTO tenants (id, name, created_at_ms) VALUES ('default', 'default', 0);
CREATE TABLE api_keys (
    id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL REFERENCES tenants (id),
    role TEXT NOT NULL,
    name TEXT,
    hash TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL,
    created_by TEXT,
    expires_at_ms INTEGER,
    revoked_at_ms INTEGER
);
CREATE INDEX api_keys_by_tenant ON api_keys (tenant, created_at_ms);
CREATE TABLE audit (
    tenant TEXT NOT NULL,
    seq INTEGER NOT NULL,
    at_ms INTEGER NOT NULL,
    key_id TEXT,
    action TEXT NOT NULL,
    object TEXT,
    request_id TEXT,
    source TEXT,
    outcome TEXT NOT NULL,
    details TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL,
    PRIMARY KEY (tenant, seq)
) WITHOUT ROWID;
CREATE TABLE workflows (
    tenant TEXT NOT NULL,
    name TEXT NOT NULL,
    latest INTEGER NOT NULL,
    created_at_ms INTEGER NOT NULL,
    updated_at_ms INTEGER NOT NULL,
    deleted_at_ms INTEGER,
    PRIMARY KEY (tenant, name)
) WITHOUT ROWID;
CREATE TABLE workflow_versions (
    tenant TEXT NOT NULL,
    name TEXT NOT NULL,
    version INTEGER NOT NULL,
    source TEXT NOT NULL,
    format TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL,
    created_by TEXT,
    PRIMARY KEY (tenant, name, version)
) WITHOUT ROWID;
CREATE TABLE run_starts (
    tenant TEXT NOT NULL,
    key TEXT NOT NULL,
    run_id TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL,
    PRIMARY KEY (tenant, key)
) WITHOUT ROWID;
CREATE TABLE webhook_inbound (
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
CREATE INDEX webhook_inbound_by_tenant ON webhook_inbound (tenant, created_at_ms);
CREATE TABLE webhook_seen (
    hook TEXT NOT NULL,
    msg_id TEXT NOT NULL,
    keep_until_ms INTEGER NOT NULL,
    PRIMARY KEY (hook, msg_id)
) WITHOUT ROWID;
CREATE TABLE webhook_subscriptions (
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
CREATE INDEX webhook_subscriptions_by_tenant ON webhook_subscriptions (tenant, deleted_at_ms);
CREATE TABLE webhook_outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    kind TEXT NOT NULL,
    step TEXT,
    at_ms INTEGER NOT NULL,
    payload TEXT NOT NULL
);
CREATE TABLE webhook_deliveries (
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
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (status, next_at_ms);
CREATE INDEX webhook_deliveries_by_subscription
    ON webhook_deliveries (tenant, subscription, created_at_ms DESC, id DESC);
CREATE TABLE webhook_attempts (
    delivery TEXT NOT NULL,
    n INTEGER NOT NULL,
    at_ms INTEGER NOT NULL,
    duration_ms INTEGER NOT NULL,
    status_code INTEGER,
    error TEXT,
    PRIMARY KEY (delivery, n)
) WITHOUT ROWID;
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
CREATE TABLE agents (
    tenant TEXT NOT NULL,
    name TEXT NOT NULL,
    latest INTEGER NOT NULL,
    default_version INTEGER NOT NULL,
    created_at_ms INTEGER NOT NULL,
    updated_at_ms INTEGER NOT NULL,
    PRIMARY KEY (tenant, name)
) WITHOUT ROWID;
CREATE TABLE agent_versions (
    tenant TEXT NOT NULL,
    name TEXT NOT NULL,
    version INTEGER NOT NULL,
    spec TEXT NOT NULL,
    source TEXT NOT NULL,
    format TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL,
    created_by TEXT,
    PRIMARY KEY (tenant, name, version)
) WITHOUT ROWID;
CREATE INDEX runs_by_status ON runs (status);
CREATE TABLE semantic_memories (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant TEXT NOT NULL,
    namespace TEXT NOT NULL,
    id TEXT NOT NULL,
    text TEXT NOT NULL,
    metadata TEXT NOT NULL,
    vector BLOB NOT NULL,
    agent TEXT,
    run_id TEXT,
    key TEXT,
    created_ms INTEGER NOT NULL,
    model TEXT NOT NULL DEFAULT 'local/all-MiniLM-L6-v2',
    UNIQUE (tenant, namespace, id),
    UNIQUE (tenant, key)
);
CREATE INDEX semantic_memories_by_namespace
    ON semantic_memories (tenant, namespace, seq);
CREATE TABLE workflow_memory (
    tenant TEXT NOT NULL,
    workflow TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    version INTEGER NOT NULL,
    op TEXT NOT NULL,
    written_by TEXT,
    run_id TEXT,
    step TEXT,
    at_ms INTEGER NOT NULL,
    PRIMARY KEY (tenant, workflow, key)
) WITHOUT ROWID;
CREATE TABLE workflow_memory_history (
    tenant TEXT NOT NULL,
    workflow TEXT NOT NULL,
    key TEXT NOT NULL,
    version INTEGER NOT NULL,
    value TEXT NOT NULL,
    op TEXT NOT NULL,
    written_by TEXT,
    run_id TEXT,
    step TEXT,
    at_ms INTEGER NOT NULL,
    call_key TEXT,
    PRIMARY KEY (tenant, workflow, key, version)
) WITHOUT ROWID;
CREATE UNIQUE INDEX workflow_memory_calls
    ON workflow_memory_history (tenant, workflow, call_key) WHERE call_key IS NOT NULL;
