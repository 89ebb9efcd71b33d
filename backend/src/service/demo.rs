//! Demo data for `graftbench serve --demo`: one user per role, real fixes, and a kernel
//! target registered in the background so that their impact graphs appear on their own.

use crate::service::auth;
use crate::service::submit::{self, SubmissionInput};
use crate::service::targets::{
    request_as, QueuedRegistration, TargetRequest, TargetSettings, REGISTER,
};
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

/// One demo fix.
struct DemoPatch {
    title: &'static str,
    cves: &'static str,
    cvss_vector: &'static str,
    tier: &'static str,
    diff: &'static [u8],
}

/// The demo fixes, the first shown first. The last is the upstream patch for
/// CVE-2024-1086, which Debian's 6.1.192 already has: it demonstrates "does not apply".
/// The others are written against that build's own source (`bench/fixes/`, where the
/// benchmarks use them too).
const DEMO_PATCHES: [DemoPatch; 4] = [
    DemoPatch {
        title: "ipv4: say why a packet is dropped in ip_rcv_finish_core (a constprop clone: its callers are replaced)",
        cves: "",
        cvss_vector: "",
        tier: "scheduled",
        diff: include_bytes!("../../../bench/fixes/ip-rcv-finish-core.patch"),
    },
    DemoPatch {
        title: "proc: mark /proc/cmdline as patched (one function)",
        cves: "",
        cvss_vector: "",
        tier: "scheduled",
        diff: include_bytes!("../../../bench/fixes/cmdline.patch"),
    },
    DemoPatch {
        title: "list: publish __list_add with release semantics (a header change: hundreds of functions)",
        cves: "",
        cvss_vector: "",
        tier: "scheduled",
        diff: include_bytes!("../../../bench/fixes/list-add.patch"),
    },
    DemoPatch {
        title: "netfilter: nf_tables: reject QUEUE/DROP verdict parameters (CVE-2024-1086; already in Debian 6.1.192: does not apply)",
        cves: "CVE-2024-1086",
        cvss_vector: "CVSS:3.1/AV:L/AC:L/PR:L/UI:N/S:U/C:H/I:H/A:H",
        tier: "emergency",
        diff: include_bytes!("../../demo/nf_tables-verdict.patch"),
    },
];

/// Creates the demo users and the demo patches where they do not exist yet. The accounts
/// are marked as demo accounts: their passwords are published.
pub async fn seed(db: &Database) -> anyhow::Result<()> {
    for (name, display, password, roles) in DEMO_USERS {
        if db.user_by_name(name).await?.is_none() {
            let hash = auth::hash_password(password)?;
            crate::service::accounts::create_user(db, name, display, &hash, roles).await?;
            db.mark_demo(name).await?;
        }
    }
    if db.listed_patches().await?.is_empty() {
        let author = db
            .user_by_name("alice")
            .await?
            .context("demo author missing")?;
        // Oldest first: the dashboard lists the newest first.
        for patch in DEMO_PATCHES.iter().rev() {
            let valid = submit::validate(SubmissionInput {
                title: patch.title.into(),
                cves: patch.cves.into(),
                cvss_vector: patch.cvss_vector.into(),
                diff: patch.diff.to_vec(),
                tier: patch.tier.into(),
                ..SubmissionInput::default()
            })
            .with_context(|| {
                format!("the bundled demo patch `{}` does not validate", patch.title)
            })?;
            submit::create_patch(db, &author.user, &valid).await?;
        }
    }
    Ok(())
}

/// The kernel build the demo analyses its fixes against.
#[derive(Debug, Clone)]
pub enum DemoKernel {
    /// The newest Debian 6.1 cloud-amd64 build the package archive offers, with its
    /// source (the lighter download: about 420 MB with the source).
    Debian,
    /// A build under the target root instead (an air-gapped machine, or a test):
    /// `DIR/vmlinux`, and `DIR/source` when there is one.
    Build {
        /// `DIR`, relative to the target root.
        dir: String,
    },
}

/// The Debian release the demo registers: the newest `6.1.0-N-cloud-amd64` whose debug
/// image the archive apt knows offers.
fn newest_cloud_release() -> Result<String, String> {
    let out = std::process::Command::new("apt-cache")
        .args([
            "search",
            "--names-only",
            r"^linux-image-6\.1\.0-[0-9]+-cloud-amd64-dbg$",
        ])
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| format!("running apt-cache: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .filter_map(|line| line.split_whitespace().next())
        .filter_map(|package| {
            let release = package.strip_prefix("linux-image-")?.strip_suffix("-dbg")?;
            let abi: u32 = release
                .strip_prefix("6.1.0-")?
                .strip_suffix("-cloud-amd64")?
                .parse()
                .ok()?;
            Some((abi, release.to_owned()))
        })
        .max()
        .map(|(_, release)| release)
        .ok_or_else(|| {
            "the package archive apt knows lists no linux-image-6.1.0-N-cloud-amd64-dbg \
             (no network, or no Debian bookworm sources)"
                .to_owned()
        })
}

/// Queues the demo's kernel target on the first start: when there is no target and no
/// registration yet. `Ok(None)` when there was nothing to do; `Err` says, for people,
/// why the demo has no target (and so no graphs).
pub async fn register_kernel(
    db: &Database,
    settings: &TargetSettings,
    kernel: &DemoKernel,
) -> Result<Option<QueuedRegistration>, String> {
    let existing = db.targets().await.map_err(|e| e.to_string())?;
    let registrations = db
        .jobs_with_key_prefix(&format!("{REGISTER}:"), 1)
        .await
        .map_err(|e| e.to_string())?;
    if !existing.is_empty() || !registrations.is_empty() {
        return Ok(None);
    }
    let request = match kernel {
        DemoKernel::Debian => {
            let release = tokio::task::spawn_blocking(newest_cloud_release)
                .await
                .map_err(|e| e.to_string())??;
            TargetRequest {
                release: Some(release),
                with_source: true,
                ..TargetRequest::default()
            }
        }
        DemoKernel::Build { dir } => {
            let source = settings
                .paths_root
                .as_ref()
                .map(|root| root.join(dir).join("source"))
                .filter(|source| source.is_dir())
                .map(|_| format!("{dir}/source"));
            TargetRequest {
                vmlinux: Some(format!("{dir}/vmlinux")),
                source_dir: source,
                name: Some("demo".into()),
                kernel_release: Some("6.1.0-demo".into()),
                ..TargetRequest::default()
            }
        }
    };
    request_as(db, settings, "demo", request)
        .await
        .map(Some)
        .map_err(|e| format!("registering the demo's kernel target: {e}"))
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
