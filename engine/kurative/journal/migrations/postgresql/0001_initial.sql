-- The journal: alert inbox, ruleset versions, executions, step records, approvals, dedupe keys and
-- rate-limit counts. Times are the database clock (timestamptz); ids are UUID text made by the writer,
-- so that a retried batch commit can never insert the same alert twice.

CREATE TABLE alerts (
    id           text PRIMARY KEY,
    fingerprint  text NOT NULL,
    status       text NOT NULL CHECK (status IN ('firing', 'resolved')),
    alertname    text NOT NULL DEFAULT '',
    labels       jsonb NOT NULL,
    payload      json NOT NULL,
    source       text NOT NULL,
    sanitized    boolean NOT NULL DEFAULT false,
    received_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX alerts_fingerprint ON alerts (fingerprint, received_at);
CREATE INDEX alerts_received_at ON alerts (received_at);

CREATE TABLE playbook_versions (
    name          text NOT NULL,
    version       integer NOT NULL,
    content_hash  text NOT NULL,
    body          text NOT NULL,
    recorded_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (name, version)
);

CREATE TABLE executions (
    seq               bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
    id                text PRIMARY KEY,
    alert_id          text NOT NULL REFERENCES alerts (id),
    alert_fingerprint text NOT NULL,
    playbook_name     text NOT NULL,
    playbook_version  integer NOT NULL,
    playbook_hash     text NOT NULL,
    state             text NOT NULL CHECK (state IN ('pending', 'awaiting_approval', 'running',
                          'succeeded', 'failed', 'cancelled', 'needs_review')),
    dry_run           boolean NOT NULL DEFAULT false,
    dedupe_key        text,
    attempt           integer NOT NULL DEFAULT 0,
    lease_owner       text,
    lease_expires_at  timestamptz,
    cancel_requested  boolean NOT NULL DEFAULT false,
    available_at      timestamptz NOT NULL DEFAULT now(),
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    started_at        timestamptz,
    finished_at       timestamptz,
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
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    execution_id     text NOT NULL REFERENCES executions (id) ON DELETE CASCADE,
    step_index       integer NOT NULL,
    name             text NOT NULL,
    action           text NOT NULL,
    attempt          integer NOT NULL,
    status           text NOT NULL CHECK (status IN ('started', 'succeeded', 'failed', 'skipped', 'dry_run')),
    final            boolean NOT NULL,
    params           jsonb,
    output           jsonb,
    error            text,
    idempotency_key  text,
    started_at       timestamptz,
    finished_at      timestamptz,
    lease_attempt    integer NOT NULL,
    UNIQUE (execution_id, step_index, attempt, final)
);

CREATE TABLE approvals (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    execution_id  text NOT NULL REFERENCES executions (id) ON DELETE CASCADE,
    decision      text NOT NULL CHECK (decision IN ('approved', 'rejected')),
    who           text NOT NULL,
    reason        text NOT NULL DEFAULT '',
    decided_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX approvals_execution ON approvals (execution_id);

-- a live key (expires_at in the future, or NULL: until retention) deduplicates
CREATE TABLE dedupe_keys (
    playbook_name  text NOT NULL,
    dedupe_key     text NOT NULL,
    execution_id   text NOT NULL,
    expires_at     timestamptz,
    last_seen_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (playbook_name, dedupe_key)
);

-- one row per (playbook, limit, key value, period): locked while counting, so concurrent creators serialize
CREATE TABLE rate_limits (
    playbook_name  text NOT NULL,
    limit_name     text NOT NULL,
    limit_key      text NOT NULL,
    per_seconds    double precision NOT NULL,
    touched_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (playbook_name, limit_name, limit_key, per_seconds)
);
CREATE TABLE rate_limit_hits (
    playbook_name  text NOT NULL,
    limit_name     text NOT NULL,
    limit_key      text NOT NULL,
    per_seconds    double precision NOT NULL,
    execution_id   text NOT NULL,
    hit_at         timestamptz NOT NULL DEFAULT now(),
    expires_at     timestamptz NOT NULL
);
CREATE INDEX rate_limit_hits_window ON rate_limit_hits (playbook_name, limit_name, limit_key, per_seconds, hit_at);
CREATE INDEX rate_limit_hits_expiry ON rate_limit_hits (expires_at);
