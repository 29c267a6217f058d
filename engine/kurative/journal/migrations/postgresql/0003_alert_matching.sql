-- Matching that survives a crash: an alert is committed first (the ingress answers 200) and matched
-- afterwards; matched_at and ruleset record when and against which ruleset version. An alert whose
-- matched_at is NULL is still to be matched by whichever replica is alive. Alerts stored before this
-- migration were never going to be matched by a daemon: they count as matched.

ALTER TABLE alerts ADD COLUMN matched_at timestamptz;
ALTER TABLE alerts ADD COLUMN ruleset text;
UPDATE alerts SET matched_at = received_at, ruleset = '';
CREATE INDEX alerts_unmatched ON alerts (received_at, id) WHERE matched_at IS NULL;
