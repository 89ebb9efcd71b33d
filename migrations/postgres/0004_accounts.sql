-- Accounts that can be disabled, and demo accounts marked as such. Keep in step with the
-- other flavour's 0004_accounts.sql.
--
-- A disabled account cannot sign in and its sessions end at once (every request reads
-- the user again); the row stays, because the audit trail and sign-offs name it.
ALTER TABLE users ADD COLUMN disabled_at TEXT;
-- 1 for the accounts `serve --demo` seeds with published passwords: a data directory
-- holding an enabled one is served only with --demo (which stays on loopback).
ALTER TABLE users ADD COLUMN demo BIGINT NOT NULL DEFAULT 0 CHECK (demo IN (0, 1));
