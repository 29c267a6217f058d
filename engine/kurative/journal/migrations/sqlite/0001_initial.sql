-- The journal (SQLite flavour of the PostgreSQL schema): alert inbox, ruleset versions, executions,
-- step records, approvals, dedupe keys and rate-limit counts. Times are Unix epoch seconds (real);
-- booleans are 0/1; JSON is text. One process writes, so seq is assigned by the writer.

CREATE TABLE alerts (
    id           text PRIMARY KEY,
    fingerprint  text NOT NULL,
    status       text NOT NULL CHECK (status IN ('firing', 'resolved')),
    alertname    text NOT NULL DEFAULT '',
    labels       text NOT NULL,
    payload      text NOT NULL,
    source       text NOT NULL,
    sanitized    integer NOT NULL DEFAULT 0,
    received_at  real NOT NULL
);
CREATE INDEX alerts_fingerprint ON alerts (fingerprint, received_at);
CREATE INDEX alerts_received_at ON alerts (received_at);

CREATE TABLE playbook_versions (
    name          text NOT NULL,
    version       integer NOT NULL,
    content_hash  text NOT NULL,
    body          text NOT NULL,
    recorded_at   real NOT NULL,
    PRIMARY KEY (name, version)
);

CREATE TABLE executions (
    seq               integer NOT NULL UNIQUE,
    id                text PRIMARY KEY,
    alert_id          text NOT NULL REFERENCES alerts (id),
    alert_fingerprint text NOT NULL,
    playbook_name     text NOT NULL,
    playbook_version  integer NOT NULL,
    playbook_hash     text NOT NULL,
    state             text NOT NULL CHECK (state IN ('pending', 'awaiting_approval', 'running',
                          'succeeded', 'failed', 'cancelled', 'needs_review')),
    dry_run           integer NOT NULL DEFAULT 0,
    dedupe_key        text,
    attempt           integer NOT NULL DEFAULT 0,
    lease_owner       text,
    lease_expires_at  real,
    cancel_requested  integer NOT NULL DEFAULT 0,
    available_at      real NOT NULL,
    created_at        real NOT NULL,
    updated_at        real NOT NULL,
    started_at        real,
    finished_at       real,
    error             text
);
-- claim: due pending work, and running work whose lease expired
CREATE INDEX executions_due ON executions (available_at) WHERE state = 'pending';
CREATE INDEX executions_leases ON executions (lease_expires_at) WHERE state = 'running';
CREATE INDEX executions_finished ON executions (finished_at)
    WHERE state IN ('succeeded', 'failed', 'cancelled', 'needs_review');
CREATE INDEX executions_state ON executions (state, seq);
CREATE INDEX executions_playbook ON executions (playbook_name, seq);
CREATE INDEX executions_fingerprint ON executions (alert_fingerprint, seq);
CREATE INDEX executions_alert ON executions (alert_id);

-- append-only: a step attempt has at most one 'started' and one final record
CREATE TABLE steps (
    id               integer PRIMARY KEY AUTOINCREMENT,
    execution_id     text NOT NULL REFERENCES executions (id) ON DELETE CASCADE,
    step_index       integer NOT NULL,
    name             text NOT NULL,
    action           text NOT NULL,
    attempt          integer NOT NULL,
    status           text NOT NULL CHECK (status IN ('started', 'succeeded', 'failed', 'skipped', 'dry_run')),
    final            integer NOT NULL,
    params           text,
    output           text,
    error            text,
    idempotency_key  text,
    started_at       real,
    finished_at      real,
    lease_attempt    integer NOT NULL,
    UNIQUE (execution_id, step_index, attempt, final)
);

CREATE TABLE approvals (
    id            integer PRIMARY KEY AUTOINCREMENT,
    execution_id  text NOT NULL REFERENCES executions (id) ON DELETE CASCADE,
    decision      text NOT NULL CHECK (decision IN ('approved', 'rejected')),
    who           text NOT NULL,
    reason        text NOT NULL DEFAULT '',
    decided_at    real NOT NULL
);
CREATE INDEX approvals_execution ON approvals (execution_id);

-- a live key (expires_at in the future, or NULL: until retention) deduplicates
CREATE TABLE dedupe_keys (
    playbook_name  text NOT NULL,
    dedupe_key     text NOT NULL,
    execution_id   text NOT NULL,
    expires_at     real,
    last_seen_at   real NOT NULL,
    PRIMARY KEY (playbook_name, dedupe_key)
);

-- one row per (playbook, limit, key value, period): locked while counting, so concurrent creators serialize
CREATE TABLE rate_limits (
    playbook_name  text NOT NULL,
    limit_name     text NOT NULL,
    limit_key      text NOT NULL,
    per_seconds    real NOT NULL,
    touched_at     real NOT NULL,
    PRIMARY KEY (playbook_name, limit_name, limit_key, per_seconds)
);
CREATE TABLE rate_limit_hits (
    playbook_name  text NOT NULL,
    limit_name     text NOT NULL,
    limit_key      text NOT NULL,
    per_seconds    real NOT NULL,
    execution_id   text NOT NULL,
    hit_at         real NOT NULL,
    expires_at     real NOT NULL
);
CREATE INDEX rate_limit_hits_window ON rate_limit_hits (playbook_name, limit_name, limit_key, per_seconds, hit_at);
CREATE INDEX rate_limit_hits_expiry ON rate_limit_hits (expires_at);
