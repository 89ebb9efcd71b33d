//! Demo data for `graftbench serve --demo`: one user per role and one real fix.

use crate::service::auth;
use crate::service::submit::{self, SubmissionInput};
use crate::store::Database;
use anyhow::Context;
use graftbench_app::model::Role;

/// The demo accounts: (user name, display name, password, roles).
pub const DEMO_USERS: &[(&str, &str, &str, &[Role])] = &[
    ("alice", "Alice Author", "alice-demo-pw", &[Role::Author]),
    ("bob", "Bob Reviewer", "bob-demo-pw", &[Role::Reviewer]),
    (
        "carol",
        "Carol Reviewer",
        "carol-demo-pw",
        &[Role::Reviewer],
    ),
    (
        "dave",
        "Dave Security",
        "dave-demo-pw",
        &[Role::SecurityOfficer],
    ),
    (
        "erin",
        "Erin Release",
        "erin-demo-pw",
        &[Role::ReleaseManager],
    ),
    ("frank", "Frank Auditor", "frank-demo-pw", &[Role::Auditor]),
    ("grace", "Grace Admin", "grace-demo-pw", &[Role::Admin]),
];

/// The demo fix: the upstream patch for CVE-2024-1086 (nf_tables verdict use-after-free).
const DEMO_PATCH: &[u8] = include_bytes!("../../demo/nf_tables-verdict.patch");

/// Creates the demo users and the demo patch where they do not exist yet. The accounts
/// are marked as demo accounts: their passwords are published.
pub async fn seed(db: &Database) -> anyhow::Result<()> {
    for (name, display, password, roles) in DEMO_USERS {
        if db.user_by_name(name).await?.is_none() {
            let hash = auth::hash_password(password)?;
            crate::service::accounts::create_user(db, name, display, &hash, roles).await?;
            db.mark_demo(name).await?;
        }
    }
    if crate::service::pages::list_patches(db, &graftbench_domain::eligibility::Policy::default())
        .await?
        .is_empty()
    {
        let author = db
            .user_by_name("alice")
            .await?
            .context("demo author missing")?;
        let valid = submit::validate(SubmissionInput {
            title: String::new(),
            cves: "CVE-2024-1086".into(),
            cvss_vector: "CVSS:3.1/AV:L/AC:L/PR:L/UI:N/S:U/C:H/I:H/A:H".into(),
            diff: DEMO_PATCH.to_vec(),
            tier: "emergency".into(),
            ..SubmissionInput::default()
        })
        .context("the bundled demo patch does not validate")?;
        submit::create_patch(db, &author.user, &valid).await?;
    }
    Ok(())
}

/// Enabled accounts whose password is published: marked as demo accounts, or (in a data
/// directory from before the mark existed) named as one and still taking its demo password.
/// A server holding any of them must run only as `serve --demo`, on loopback.
pub async fn accounts_with_published_passwords(db: &Database) -> anyhow::Result<Vec<String>> {
    let mut found = Vec::new();
    for account in db.list_users().await? {
        if account.disabled_at.is_some() {
            continue;
        }
        let published = DEMO_USERS
            .iter()
            .find(|(name, ..)| *name == account.username)
            .map(|(_, _, password, _)| *password);
        let still_published = match (account.demo, published) {
            (true, _) => true,
            (false, Some(password)) => {
                let record = db.user_by_name(&account.username).await?;
                let hash = record.map(|r| r.password_hash).unwrap_or_default();
                tokio::task::spawn_blocking(move || auth::verify_password(password, &hash)).await?
            }
            (false, None) => false,
        };
        if still_published {
            found.push(account.username);
        }
    }
    Ok(found)
}
