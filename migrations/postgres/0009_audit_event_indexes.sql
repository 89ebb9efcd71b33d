-- The audit page's search and filtered exports by exact actor, action or subject read
-- these instead of the whole trail (a million events). Newest first within each.
-- Keep in step with the other flavour's 0009_audit_event_indexes.sql.
CREATE INDEX audit_events_by_actor ON audit_events (actor, seq);
CREATE INDEX audit_events_by_action ON audit_events (action, seq);
CREATE INDEX audit_events_by_subject ON audit_events (subject, seq);
