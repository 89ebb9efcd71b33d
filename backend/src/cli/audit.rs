//! `graftbench audit`: checks the trail.

use super::global::Global;
use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use graftbench::service::{checkpoints, retention};

#[derive(Subcommand)]
pub enum AuditCommand {
    /// Walks the hash chain of every audit event; names the first one that was edited,
    /// deleted or moved. With --checkpoint, also checks the trail against a signed
    /// checkpoint kept outside the server: a trail rewritten from the start or cut short
    /// no longer matches it.
    Verify(VerifyArgs),
    /// Prints the verifier key of the instance's checkpoint key (made on first use, mode
    /// 0600 in the data directory): pin it where checkpoints are checked.
    Key,
    /// Signs a checkpoint of the trail as it stands (RFC 6962 tree of the events' hashes,
    /// C2SP tlog-checkpoint, Ed25519 signed note) and prints it: copy it out of the
    /// server's reach.
    Checkpoint,
    /// Writes the audit trail (or the part the filters select) as JSON Lines or CSV, a
    /// header first; the export is itself an audit event.
    Export(ExportArgs),
    /// Replaces the checkpoint key: records the rotation in the trail, signs a rotation
    /// statement (both keys, the size and root of the trail up to it) with the old key and
    /// the new, and puts the new key in place; prints the new verifier key to pin.
    /// Verifiers who pinned the old key follow the statement forwards; the old key is
    /// trusted for checkpoints up to the rotation only.
    RotateKey,
    /// Moves the events older than the policy's `[audit] online_months` into an archive
    /// segment under DATA_DIR/audit-archive (a JSON Lines export with its own signed
    /// checkpoint, checked offline by `verify --bundle`); the online chain continues from
    /// it. Serve does this daily where its database role may; on PostgreSQL run it as the
    /// database's owner.
    Archive,
    /// Writes the evidence bundle of one patch (--patch) or of a period (--from, --to):
    /// a tar archive with a printable report, sealed by an audit event in a signed
    /// checkpoint.
    Evidence(EvidenceArgs),
}

#[derive(Args)]
pub struct EvidenceArgs {
    /// The patch.
    #[arg(long, conflicts_with_all = ["from", "to"])]
    patch: Option<i64>,
    /// Changes with events at or after this time (`2026-11-01` or RFC 3339).
    #[arg(long)]
    from: Option<String>,
    /// ... and before this time.
    #[arg(long)]
    to: Option<String>,
    /// Where to write the archive.
    #[arg(short, long)]
    output: std::path::PathBuf,
}

#[derive(Args)]
pub struct VerifyArgs {
    /// A checkpoint made by `graftbench audit checkpoint`, kept outside the server; give
    /// several to bound where a rewrite began.
    #[arg(long, conflicts_with = "bundle")]
    checkpoint: Vec<std::path::PathBuf>,
    /// An evidence bundle (.tar) or a JSON Lines export to check offline, with no
    /// database: every hash, the chain, the inclusion proofs, the checkpoints' signatures
    /// against --key (and, for a bundle, every byte of it).
    #[arg(long)]
    bundle: Option<std::path::PathBuf>,
    /// The verifier key to check their signatures with (a file holding what `audit key`
    /// printed, or several such keys one a line, for evidence signed before a key
    /// rotation); default: this data directory's own key, which must then exist.
    #[arg(long)]
    key: Option<std::path::PathBuf>,
    /// Where the archive segments are (default: DATA_DIR/audit-archive).
    #[arg(long, conflicts_with = "bundle")]
    archive: Option<std::path::PathBuf>,
}

#[derive(Args)]
pub struct ExportArgs {
    /// `jsonl` (every field, what verifies) or `csv` (for reading).
    #[arg(long, default_value = "jsonl")]
    format: String,
    /// Events at or after this time (`2026-11-01` or RFC 3339).
    #[arg(long)]
    from: Option<String>,
    /// Events before this time.
    #[arg(long)]
    to: Option<String>,
    /// Only this actor's events.
    #[arg(long)]
    actor: Option<String>,
    /// Only this action, or the actions a prefix ending in `.` starts (`sign_off.`).
    #[arg(long)]
    action: Option<String>,
    /// Only events about this subject (`patch:7`, `user:alice`).
    #[arg(long)]
    subject: Option<String>,
    /// Write here instead of standard output (replaced whole when done).
    #[arg(short, long)]
    output: Option<std::path::PathBuf>,
}

pub async fn run(global: &Global, command: AuditCommand) -> Result<()> {
    match command {
        AuditCommand::Verify(args) => verify(global, args).await,
        AuditCommand::Key => {
            global.create_data_dir()?;
            let (_, vkey) = checkpoints::load_or_create_key(&global.data_dir)?;
            println!("{vkey}");
            Ok(())
        }
        AuditCommand::Checkpoint => {
            global.create_data_dir()?;
            checkpoints::load_or_create_key(&global.data_dir)?;
            let db = global.open_database().await?;
            let made = graftbench::service::tree::sign_checkpoint(&db, &global.data_dir).await?;
            print!("{}", made.note);
            Ok(())
        }
        AuditCommand::Export(args) => export(global, args).await,
        AuditCommand::Archive => archive(global).await,
        AuditCommand::RotateKey => {
            let db = global.open_database().await?;
            let rotated =
                graftbench::service::tree::rotate_key(&db, &global.data_dir, "system").await?;
            eprintln!(
                "the checkpoint key was rotated at event #{}; the rotation statement, signed by \
                 the old key and the new:",
                rotated.seq
            );
            eprint!("{}", rotated.note);
            eprintln!("the new verifier key (pin it; the old one still checks what came before):");
            println!("{}", rotated.new_key);
            Ok(())
        }
        AuditCommand::Evidence(args) => evidence(global, args).await,
    }
}

async fn evidence(global: &Global, args: EvidenceArgs) -> Result<()> {
    use graftbench::service::evidence::{self, Scope};
    let bound = |text: &Option<String>| -> Result<String> {
        match text.as_deref().map(str::trim) {
            None | Some("") => Ok(String::new()),
            Some(text) => graftbench::clock::parse_bound(text).map_err(anyhow::Error::msg),
        }
    };
    let scope = match args.patch {
        Some(id) => Scope::Patch(id),
        None => Scope::Period {
            from: bound(&args.from)?,
            to: bound(&args.to)?,
        },
    };
    global.create_data_dir()?;
    checkpoints::load_or_create_key(&global.data_dir)?;
    let db = global.open_database().await?;
    let policy = graftbench_domain::eligibility::LoadedPolicy::load(&global.data_dir)?;
    let system = graftbench_app::model::SessionUser {
        id: graftbench_domain::UserId(0),
        username: "system".into(),
        display_name: "command line".into(),
        roles: Vec::new(),
    };
    let source = format!("graftbench (command line, {})", global.data_dir.display());
    let bundle = evidence::bundle(
        &db,
        &policy.policy,
        &global.data_dir,
        &source,
        &system,
        &scope,
    )
    .await?;
    bundle
        .file
        .persist(&args.output)
        .with_context(|| format!("writing {}", args.output.display()))?;
    eprintln!("wrote {} ({} bytes)", args.output.display(), bundle.size);
    Ok(())
}

async fn export(global: &Global, args: ExportArgs) -> Result<()> {
    use graftbench::service::export::{self, ExportFormat};
    use std::io::Write;
    let Some(format) = ExportFormat::parse(&args.format) else {
        bail!("--format {}: use jsonl or csv", args.format);
    };
    let text = |value: &Option<String>| value.clone().unwrap_or_default();
    let range = export::range(
        &text(&args.actor),
        &text(&args.action),
        &text(&args.subject),
        &text(&args.from),
        &text(&args.to),
    )
    .map_err(anyhow::Error::msg)?;
    let db = global.open_database().await?;
    let source = format!("graftbench (command line, {})", global.data_dir.display());
    let mut chunks =
        export::export(&db, &global.data_dir, &source, "system", range, format).await?;
    // A file is written beside its final name and renamed into place when complete.
    let mut file = match &args.output {
        Some(path) => {
            let dir = path
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(std::path::Path::new("."));
            Some(
                tempfile::NamedTempFile::new_in(dir)
                    .with_context(|| format!("creating a file in {}", dir.display()))?,
            )
        }
        None => None,
    };
    let mut stdout = std::io::stdout().lock();
    while let Some(chunk) = chunks.recv().await {
        let chunk = chunk?;
        match &mut file {
            Some(file) => file.write_all(&chunk)?,
            None => stdout.write_all(&chunk)?,
        }
    }
    if let (Some(file), Some(path)) = (file, &args.output) {
        file.persist(path)
            .with_context(|| format!("writing {}", path.display()))?;
        eprintln!("wrote {}", path.display());
    } else {
        stdout.flush()?;
    }
    Ok(())
}

async fn verify(global: &Global, args: VerifyArgs) -> Result<()> {
    if let Some(bundle) = &args.bundle {
        return verify_offline(global, bundle, args.key.as_deref());
    }
    let db = global.open_database().await?;
    let vkey = match &args.key {
        Some(key) => Some(
            std::fs::read_to_string(key).with_context(|| format!("reading {}", key.display()))?,
        ),
        None if args.checkpoint.is_empty() => None,
        None => {
            let path = global.data_dir.join(checkpoints::KEY_FILE);
            if !path.exists() {
                bail!(
                    "{} does not exist: pass the verifier key the checkpoints were signed with \
                     (--key FILE)",
                    path.display()
                );
            }
            Some(checkpoints::load_or_create_key(&global.data_dir)?.1)
        }
    };
    // Single edits, deletions and moves break the chain: named by sequence number.
    let archive = args
        .archive
        .unwrap_or_else(|| retention::archive_dir(&global.data_dir));
    let trail = retention::whole_trail(&db, &archive).await??;
    let tree = &trail.tree;
    let mut held = Vec::new();
    if !args.checkpoint.is_empty() {
        let mut keys = checkpoints::TrustedKeys::pinned(vkey.as_deref().unwrap_or_default());
        // Rotations of the key, proved against the trail just walked.
        let mut announcements = Vec::new();
        for rotation in db.key_rotations().await? {
            let size = u64::try_from(rotation.event.seq).unwrap_or(0);
            let proof =
                tlog_tiles::prove_record(size, size.saturating_sub(1), tree).unwrap_or_default();
            announcements.push(checkpoints::Announcement {
                note: rotation.note,
                event: rotation.event,
                proof,
            });
        }
        // A recorded rotation that does not check was changed in the database.
        let mut invalid = 0;
        for result in keys.learn(&announcements) {
            match result {
                Ok(line) => println!("{line}"),
                Err(line) => {
                    eprintln!("FAILED: {line}");
                    invalid += 1;
                }
            }
        }
        if invalid > 0 {
            bail!("{invalid} recorded key rotation(s) do not check: the database was changed");
        }
        for path in &args.checkpoint {
            let text =
                std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
            let checkpoint = keys
                .open(&text)
                .with_context(|| format!("{} cannot be used", path.display()))?;
            held.push(checkpoint);
        }
    }
    if !held.is_empty() {
        let against = checkpoints::against_all(tree, &held)?;
        for line in &against.report {
            println!("{line}");
        }
        if let Some(problem) = against.problem {
            bail!("{problem}");
        }
    }
    // The tree the server grew as events arrived: a trail rewritten behind its back no
    // longer has its root (unless the rewrite reached that table too: the checkpoints
    // kept outside are what no database write reaches).
    let leaves = db.tree_leaves().await?;
    if leaves > 0 {
        let stored = graftbench::service::tree::StoredTree::new(&db)
            .root(leaves)
            .await?;
        if tree.size() < leaves || tree.root(leaves)? != stored {
            bail!(
                "the trail's first {leaves} event(s) are not the ones the server's Merkle tree \
                 holds: the trail was rewritten"
            );
        }
    }
    let count = trail.events.len();
    if trail.archived > 0 {
        println!(
            "the audit trail is intact: {count} event(s), {} of them in archive segments \
             under {}",
            trail.archived,
            archive.display()
        );
    } else {
        println!("the audit trail is intact: {count} event(s)");
    }
    let unexplained = db.unexplained_rows_given(&trail.events).await?;
    if unexplained.is_empty() {
        println!("every sign-off, revision, role and account state has its event");
        return Ok(());
    }
    for row in &unexplained {
        eprintln!("unexplained: {row}");
    }
    bail!(
        "{} row(s) in the database that no audit event explains: they were written around \
         Graftbench",
        unexplained.len()
    )
}

async fn archive(global: &Global) -> Result<()> {
    global.create_data_dir()?;
    let policy = graftbench_domain::eligibility::LoadedPolicy::load(&global.data_dir)?.policy;
    let db = global.open_database().await?;
    let source = format!("graftbench (command line, {})", global.data_dir.display());
    match retention::archive(&db, &global.data_dir, &policy.audit, &source).await? {
        Some(done) => {
            let s = &done.segment;
            println!(
                "archived events #{}..#{} ({} event(s), {} to {}) into {} (SHA-256 {})",
                s.first_seq,
                s.last_seq,
                s.events,
                s.first_at,
                s.last_at,
                done.path.display(),
                s.sha256
            );
        }
        None => println!(
            "nothing to archive: no event older than {} month(s) but the newest",
            policy.audit.online_months
        ),
    }
    Ok(())
}

/// Checks a bundle or a JSON Lines export with no database and no network.
fn verify_offline(
    global: &Global,
    path: &std::path::Path,
    key: Option<&std::path::Path>,
) -> Result<()> {
    let vkey = match key {
        Some(key) => {
            std::fs::read_to_string(key).with_context(|| format!("reading {}", key.display()))?
        }
        None => match checkpoints::load_key(&global.data_dir)? {
            Some((_, vkey)) => vkey,
            None => bail!(
                "pass the verifier key the checkpoints were signed with (--key FILE): \
                 evidence is checked against a key pinned beforehand, never one it carries"
            ),
        },
    };
    let outcome = graftbench::service::evidence::verify::verify(path, &vkey)?;
    for line in &outcome.checked {
        println!("ok: {line}");
    }
    for line in &outcome.problems {
        eprintln!("FAILED: {line}");
    }
    if !outcome.passed() {
        bail!(
            "{}: {} check(s) failed",
            path.display(),
            outcome.problems.len()
        );
    }
    println!("{}: every check passed", path.display());
    Ok(())
}
