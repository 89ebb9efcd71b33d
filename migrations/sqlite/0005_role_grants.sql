-- Four eyes on role grants. Keep in step with the other flavour's 0005_role_grants.sql.
--
-- Who granted a role and who confirmed it; both NULL for grants made on the server's
-- command line (the audited break-glass path) and for roles held before this migration.
ALTER TABLE user_roles ADD COLUMN granted_by INTEGER REFERENCES users (id);
ALTER TABLE user_roles ADD COLUMN confirmed_by INTEGER REFERENCES users (id);

-- The admin who created an account in the web UI or the API (NULL: the command line). A
-- patch written by that account counts as the admin's for four eyes.
ALTER TABLE users ADD COLUMN created_by INTEGER REFERENCES users (id);

-- Grants of the roles that sign off or manage users, made by an admin in the web UI or
-- the API, wait here until a second admin (neither the granting one nor the grantee)
-- confirms them; only then do they reach user_roles.
CREATE TABLE role_grants_pending (
    user_id    INTEGER NOT NULL REFERENCES users (id),
    role       TEXT    NOT NULL CHECK (role IN ('reviewer', 'security_officer',
                                               'release_manager', 'admin')),
    granted_by INTEGER NOT NULL REFERENCES users (id),
    granted_at TEXT    NOT NULL,
    PRIMARY KEY (user_id, role)
);
