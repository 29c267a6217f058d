-- Firing episodes (kurative.journal.episodes): alerts.starts_at is the start of the episode the journal
-- gave each alert: its own startsAt, or for an alert sent without one, the start of the open episode of
-- its fingerprint (the newest alert of the fingerprint, when that one is firing), else its receipt.
-- NULL for alerts stored before this migration. The inbox is the record of the episodes: no new table.

ALTER TABLE alerts ADD COLUMN starts_at timestamptz;
