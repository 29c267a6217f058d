-- Firing episodes (kurative.journal.episodes): an alert sent without startsAt joins the open episode of
-- its fingerprint, so that its repeats share one default dedupe key. alerts.starts_at is the start the
-- journal gave each alert (NULL for alerts stored before this migration).

ALTER TABLE alerts ADD COLUMN starts_at timestamptz;

-- one row per fingerprint seen: starts_at is the open episode's start, NULL once a resolved alert closed
-- it; the row is locked while a commit joins or closes the episode, so replicas agree
CREATE TABLE alert_episodes (
    fingerprint  text PRIMARY KEY,
    starts_at    timestamptz,
    seen_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX alert_episodes_seen_at ON alert_episodes (seen_at);
