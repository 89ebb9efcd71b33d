//! Submitting a fix: validation before anything is stored, then the patch and its first
//! revision stored and audited.
//!
//! Validation is pure functions over the submitted fields: a submission either becomes a
//! [`ValidSubmission`] or is refused with a [`SubmissionError`] that says what to fix.

use crate::clock;
use crate::store::audit;
use crate::store::files::RevisionFile;
use crate::store::patches::{self, NewPatch, NewRevision};
use crate::store::{self, Database, DbError};
use analyzer::patch::{self, Patch, PatchError};
use graftbench_app::model::SessionUser;
use graftbench_app::model::{Category, Tier};
use graftbench_domain::audit::{AuditAction, AuditSubject};
use graftbench_domain::{PatchId, Refusal, Sha256 as Digest256, State};
use std::collections::HashSet;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// The largest diff accepted, in bytes.
pub const MAX_DIFF_BYTES: usize = 5 * 1024 * 1024;
/// The most files one diff may change. A live patch replaces a handful of functions;
/// a tree-wide change of thousands of files is not one, and every file is a row to
/// store and a path the dashboard searches.
pub const MAX_DIFF_FILES: usize = 2_000;
/// The longest title accepted, in characters.
pub const MAX_TITLE_CHARS: usize = 200;
/// The most CVE ids one patch may list.
pub const MAX_CVES: usize = 64;
/// The longest CVE field accepted: [`MAX_CVES`] of the longest ids (`CVE-YYYY-` and seven
/// digits) with a separator each, and as much again for spacing and repeats.
pub const MAX_CVES_FIELD_BYTES: usize = 2 * MAX_CVES * 17;
/// The longest CVSS vector accepted.
pub const MAX_CVSS_CHARS: usize = 256;

/// The fields of a submission as they arrived (form or JSON).
#[derive(Debug, Clone, Default)]
pub struct SubmissionInput {
    /// Title; may be empty for a mail, whose subject is then used.
    pub title: String,
    /// CVE ids, separated by white space or commas.
    pub cves: String,
    /// CVSS vector, may be empty.
    pub cvss_vector: String,
    /// The diff or mail, byte for byte.
    pub diff: Vec<u8>,
    /// `vulnerability` (the default when empty), `data_corruption` or `severe_instability`.
    pub category: String,
    /// `incident`, `emergency` or `scheduled` (the default when empty).
    pub tier: String,
    /// When the problem was reported, RFC 3339 (default: now).
    pub reported_at: String,
    /// Keep it as a draft instead of sending it for review.
    pub draft: bool,
    /// The names of the targets to analyse it for (none: every active target).
    pub targets: Vec<String>,
}

/// A diff that may be stored as a revision.
#[derive(Debug, Clone)]
pub struct ValidDiff {
    /// The bytes as submitted.
    pub diff: Vec<u8>,
    /// SHA-256 of `diff`: the revision's content address.
    pub sha256: Digest256,
    /// The parsed diff.
    pub patch: Patch,
}

/// A submission that may be stored.
#[derive(Debug, Clone)]
pub struct ValidSubmission {
    /// Title.
    pub title: String,
    /// Normalised CVE ids (`CVE-2024-1086`), in the order given, without duplicates.
    pub cves: Vec<String>,
    /// CVSS vector, trimmed (empty if none).
    pub cvss_vector: String,
    /// The bytes as submitted.
    pub diff: Vec<u8>,
    /// SHA-256 of `diff`: the revision's content address.
    pub sha256: Digest256,
    /// The parsed diff.
    pub patch: Patch,
    /// What it fixes.
    pub category: Category,
    /// Its change tier.
    pub tier: Tier,
    /// When the problem was reported, as stored.
    pub reported_at: String,
    /// Stored as a draft.
    pub draft: bool,
    /// The names of the targets it is for, as given (none: every active target).
    pub target_names: Vec<String>,
    /// Those targets' ids, once resolved ([`crate::service::targets::resolve`]).
    pub targets: Vec<i64>,
}

/// Why a submission was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubmissionError {
    /// The diff is over [`MAX_DIFF_BYTES`].
    #[error("the diff is {size} bytes; the limit is {limit} bytes (5 MiB)")]
    TooLarge {
        /// Size received.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// No diff at all.
    #[error("no diff: paste the fix or upload it as a file")]
    MissingDiff,
    /// Both a pasted diff and an uploaded file.
    #[error("both a pasted diff and an uploaded file: submit one of them")]
    TwoDiffs,
    /// The diff does not parse.
    #[error("the diff was refused: {0}")]
    Diff(#[from] PatchError),
    /// More files than [`MAX_DIFF_FILES`].
    #[error("the diff changes {files} files; at most {limit} are accepted")]
    TooManyFiles {
        /// How many it changes.
        files: usize,
        /// The limit.
        limit: usize,
    },
    /// The same file changed in two sections: `patch` applies both, readers see one.
    #[error("the diff was refused: `{0}` is changed in two places; give each file one diff")]
    PathTwice(String),
    /// No title and no mail subject to take one from.
    #[error("a title is required")]
    MissingTitle,
    /// Title too long or with control characters.
    #[error("the title must be at most {MAX_TITLE_CHARS} characters on one line")]
    BadTitle,
    /// A CVE id that is not one.
    #[error("`{0}` is not a CVE id (expected CVE-YYYY-NNNN)")]
    BadCve(String),
    /// More than [`MAX_CVES`] CVE ids, or a CVE field longer than [`MAX_CVES_FIELD_BYTES`].
    #[error(
        "at most {MAX_CVES} CVE ids per patch (a field of at most {MAX_CVES_FIELD_BYTES} bytes)"
    )]
    TooManyCves,
    /// A CVSS vector that is not one.
    /// The CVSS vector does not parse, or lacks base metrics; the message says which.
    #[error("{0}")]
    BadCvss(String),
    /// Not a category.
    #[error("`{0}` is not a category: use vulnerability, data_corruption or severe_instability")]
    BadCategory(String),
    /// Not a tier.
    #[error("`{0}` is not a change tier: use incident, emergency or scheduled")]
    BadTier(String),
    /// Not a time, or in the future.
    #[error(
        "the report time `{0}` is not an RFC 3339 time in the past (e.g. 2026-11-27T09:30:00Z)"
    )]
    BadReportTime(String),
}

impl SubmissionError {
    /// How this refusal is answered: too large is 413, every other problem with what was
    /// submitted 422.
    pub fn refusal(&self) -> Refusal {
        match self {
            SubmissionError::TooLarge { .. } => Refusal::TooLarge,
            _ => Refusal::Invalid,
        }
    }
}

/// Checks a diff on its own, as a new revision brings it.
pub fn validate_diff(diff: Vec<u8>) -> Result<ValidDiff, SubmissionError> {
    if diff.len() > MAX_DIFF_BYTES {
        return Err(SubmissionError::TooLarge {
            size: diff.len(),
            limit: MAX_DIFF_BYTES,
        });
    }
    if diff.is_empty() {
        return Err(SubmissionError::MissingDiff);
    }
    let patch = patch::parse(&diff)?;
    if patch.files.len() > MAX_DIFF_FILES {
        return Err(SubmissionError::TooManyFiles {
            files: patch.files.len(),
            limit: MAX_DIFF_FILES,
        });
    }
    let mut seen = std::collections::HashSet::new();
    if let Some(twice) = patch
        .files
        .iter()
        .map(|f| f.path())
        .find(|p| !seen.insert(*p))
    {
        return Err(SubmissionError::PathTwice(twice.to_owned()));
    }
    let sha256 = Digest256::of(&diff);
    Ok(ValidDiff {
        diff,
        sha256,
        patch,
    })
}

/// The files `patch` changes, each with a digest of its change.
pub fn revision_files(patch: &analyzer::patch::Patch) -> Vec<RevisionFile> {
    patch
        .files
        .iter()
        .map(|file| RevisionFile {
            path: file.path().to_owned(),
            change_sha256: change_digest(file).to_string(),
        })
        .collect()
}

/// A digest of what a file's diff does, without where: its paths, kind of change and
/// modes, and its hunks' lines with their markers, but no line numbers. A rebase that
/// only moves the change keeps the digest (and a reviewer's mark); any other change to
/// the file's diff resets it.
fn change_digest(file: &analyzer::patch::FileDiff) -> Digest256 {
    let mut text = Vec::new();
    for part in [
        file.old_path.as_deref().unwrap_or_default(),
        file.new_path.as_deref().unwrap_or_default(),
        &format!("{:?}", file.change),
        file.old_mode.as_deref().unwrap_or_default(),
        file.new_mode.as_deref().unwrap_or_default(),
    ] {
        text.extend_from_slice(part.as_bytes());
        text.push(0);
    }
    for hunk in &file.hunks {
        text.extend_from_slice(b"@@\n");
        for line in &hunk.lines {
            text.push(match line.kind {
                analyzer::patch::LineKind::Context => b' ',
                analyzer::patch::LineKind::Added => b'+',
                analyzer::patch::LineKind::Removed => b'-',
            });
            text.extend_from_slice(line.text.as_bytes());
            if line.no_newline_at_eof {
                text.extend_from_slice(b"\n\\");
            }
            text.push(b'\n');
        }
    }
    Digest256::of(&text)
}

/// Checks a submission; nothing is stored either way.
pub fn validate(input: SubmissionInput) -> Result<ValidSubmission, SubmissionError> {
    let ValidDiff {
        diff,
        sha256,
        patch,
    } = validate_diff(input.diff)?;
    let cves = parse_cves(&input.cves)?;
    let cvss_vector = parse_cvss(&input.cvss_vector)?;
    let mut title = input.title.trim().to_owned();
    if title.is_empty() {
        title = patch
            .mail
            .as_ref()
            .and_then(|m| m.subject.clone())
            .unwrap_or_default();
    }
    if title.is_empty() {
        return Err(SubmissionError::MissingTitle);
    }
    if title.chars().count() > MAX_TITLE_CHARS || title.chars().any(char::is_control) {
        return Err(SubmissionError::BadTitle);
    }
    let category = match input.category.trim() {
        "" => Category::Vulnerability,
        name => Category::parse(name)
            .ok_or_else(|| SubmissionError::BadCategory(name.chars().take(40).collect()))?,
    };
    let tier = match input.tier.trim() {
        "" => Tier::Scheduled,
        name => Tier::parse(name)
            .ok_or_else(|| SubmissionError::BadTier(name.chars().take(40).collect()))?,
    };
    let now = OffsetDateTime::now_utc();
    let reported_at = match input.reported_at.trim() {
        "" => clock::format(now),
        text => {
            let bad = || SubmissionError::BadReportTime(text.chars().take(40).collect());
            let at = OffsetDateTime::parse(text, &Rfc3339).map_err(|_| bad())?;
            // A little slack for clocks that disagree; a report from the future is a typo.
            if at > now + time::Duration::minutes(5) {
                return Err(bad());
            }
            clock::format(at)
        }
    };
    Ok(ValidSubmission {
        title,
        cves,
        cvss_vector,
        diff,
        sha256,
        patch,
        category,
        tier,
        reported_at,
        draft: input.draft,
        target_names: input.targets,
        targets: Vec::new(),
    })
}

/// Browsers send a textarea's line ends as CRLF; a pasted diff is meant with the LF line
/// ends it was copied with. Uploaded files are kept byte for byte instead.
pub fn normalize_pasted(text: &str) -> Vec<u8> {
    text.replace("\r\n", "\n").into_bytes()
}

fn parse_cves(text: &str) -> Result<Vec<String>, SubmissionError> {
    // Bounds first, so the work below is linear in a field that is already small.
    if text.len() > MAX_CVES_FIELD_BYTES {
        return Err(SubmissionError::TooManyCves);
    }
    let mut seen = HashSet::new();
    let mut cves: Vec<String> = Vec::new();
    for word in text.split(|c: char| c.is_whitespace() || c == ',' || c == ';') {
        if word.is_empty() {
            continue;
        }
        let id = word.to_ascii_uppercase();
        if !is_cve_id(&id) {
            return Err(SubmissionError::BadCve(word.chars().take(40).collect()));
        }
        if seen.insert(id.clone()) {
            if cves.len() == MAX_CVES {
                return Err(SubmissionError::TooManyCves);
            }
            cves.push(id);
        }
    }
    Ok(cves)
}

/// `CVE-YYYY-NNNN...`: a four-digit year and a sequence of four to seven digits.
fn is_cve_id(id: &str) -> bool {
    let mut parts = id.splitn(3, '-');
    let (Some("CVE"), Some(year), Some(seq)) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    year.len() == 4
        && year.bytes().all(|b| b.is_ascii_digit())
        && (4..=7).contains(&seq.len())
        && seq.bytes().all(|b| b.is_ascii_digit())
}

/// A CVSS 3.x or 4.0 vector with every base metric, as the eligibility rules score it.
fn parse_cvss(text: &str) -> Result<String, SubmissionError> {
    let vector = text.trim();
    if vector.is_empty() {
        return Ok(String::new());
    }
    if vector.len() > MAX_CVSS_CHARS {
        return Err(SubmissionError::BadCvss(format!(
            "the CVSS vector is longer than {MAX_CVSS_CHARS} characters"
        )));
    }
    graftbench_domain::eligibility::score(vector)
        .map(|scored| scored.vector)
        .map_err(|e| SubmissionError::BadCvss(e.to_string()))
}

/// What storing a new patch returns.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CreatedPatch {
    /// Patch id.
    pub id: i64,
    /// Title as stored.
    pub title: String,
    /// Revision number (1).
    pub revision: i64,
    /// SHA-256 of revision 1.
    pub sha256: Digest256,
}

/// Stores a new patch and its revision 1, audited, in one transaction.
pub async fn create_patch(
    db: &Database,
    author: &SessionUser,
    patch: &ValidSubmission,
) -> Result<CreatedPatch, DbError> {
    let now = clock::now();
    let mut tx = db.begin().await?;
    // Nobody has signed off yet: a new patch is a draft or in review, nothing else.
    let (phase, state) = if patch.draft {
        ("draft", State::Draft)
    } else {
        ("open", State::InReview)
    };
    let id = patches::insert_patch(
        &mut tx,
        &NewPatch {
            title: &patch.title,
            cvss_vector: &patch.cvss_vector,
            author_id: author.id.get(),
            created_at: &now,
            phase,
            state: state.as_str(),
            category: patch.category.as_str(),
            tier: patch.tier.as_str(),
            reported_at: &patch.reported_at,
            cves: &patch.cves,
        },
    )
    .await?;
    let files = revision_files(&patch.patch);
    let revision = NewRevision {
        patch_id: id,
        number: 1,
        diff: &patch.diff,
        sha256: patch.sha256,
        format: patch.patch.format,
        submitted_by: author.id.get(),
        at: &now,
        files: &files,
    };
    revision.insert(&mut tx).await?;
    crate::store::targets::set_patch_targets(&mut tx, id, &patch.targets).await?;
    crate::service::analysis_queue::queue_for_revision(&mut tx, id, 1, &patch.sha256.to_string())
        .await?;
    audit::append(
        &mut tx,
        &author.username,
        AuditAction::PatchSubmitted,
        &AuditSubject::Patch(PatchId(id)),
        &serde_json::json!({
            "title": patch.title,
            "revision": 1,
            "sha256": patch.sha256,
            "cves": patch.cves,
            "cvss_vector": patch.cvss_vector,
            "category": patch.category.as_str(),
            "tier": patch.tier.as_str(),
            "reported_at": patch.reported_at,
            "state": state.as_str(),
        }),
    )
    .await?;
    store::commit(tx).await?;
    Ok(CreatedPatch {
        id,
        title: patch.title.clone(),
        revision: 1,
        sha256: patch.sha256,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    const DIFF: &[u8] = b"--- a/fs/proc/cmdline.c\n+++ b/fs/proc/cmdline.c\n@@ -1 +1 @@\n-a\n+b\n";

    /// Security review: a file changed in two sections would show one section to
    /// readers of some views while `patch` applies both.
    #[test]
    fn a_file_changed_in_two_sections_is_refused() {
        let twice = [
            DIFF,
            b"--- a/fs/proc/cmdline.c\n+++ b/fs/proc/cmdline.c\n@@ -9 +9 @@\n-y\n+z\n",
        ]
        .concat();
        let error = validate_diff(twice).err().map(|e| e.to_string());
        assert_eq!(
            error.as_deref(),
            Some("the diff was refused: `fs/proc/cmdline.c` is changed in two places; give each file one diff")
        );
    }

    fn input(title: &str, cves: &str, cvss: &str, diff: &[u8]) -> SubmissionInput {
        SubmissionInput {
            title: title.into(),
            cves: cves.into(),
            cvss_vector: cvss.into(),
            diff: diff.to_vec(),
            ..SubmissionInput::default()
        }
    }

    #[test]
    fn valid_submission_is_hashed_and_normalised() {
        let ok = validate(input(
            " Fix ",
            "cve-2024-1086, CVE-2024-1086 CVE-2023-0001",
            "",
            DIFF,
        ))
        .unwrap();
        assert_eq!(ok.title, "Fix");
        assert_eq!(ok.cves, ["CVE-2024-1086", "CVE-2023-0001"]);
        assert_eq!(ok.sha256.to_string(), hex::encode(Sha256::digest(DIFF)));
    }

    #[test]
    fn mail_subject_becomes_the_title() {
        let mail = b"From: A <a@b>\nSubject: [PATCH] proc: fix it\n\nmsg\n---\n--- a/x.c\n+++ b/x.c\n@@ -1 +1 @@\n-a\n+b\n";
        assert_eq!(
            validate(input("", "", "", mail)).unwrap().title,
            "proc: fix it"
        );
        assert_eq!(
            validate(input("", "", "", DIFF)).unwrap_err(),
            SubmissionError::MissingTitle
        );
    }

    #[test]
    fn oversized_diff_is_refused_before_parsing() {
        let big = vec![b'x'; MAX_DIFF_BYTES + 1];
        assert!(matches!(
            validate(input("t", "", "", &big)),
            Err(SubmissionError::TooLarge { .. })
        ));
    }

    #[test]
    fn bad_fields_are_named() {
        assert_eq!(
            validate(input("t", "CVE-24-1", "", DIFF)).unwrap_err(),
            SubmissionError::BadCve("CVE-24-1".into())
        );
        assert!(matches!(
            validate(input("t", "", "AV:N/AC:L", DIFF)),
            Err(SubmissionError::BadCvss(_))
        ));
        // Shaped like a vector, but a base metric is missing: refused, with which.
        let SubmissionError::BadCvss(message) = validate(input(
            "t",
            "",
            "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H",
            DIFF,
        ))
        .unwrap_err() else {
            panic!("not a CVSS error");
        };
        assert!(message.contains("base metric(s) A missing"), "{message}");
        assert_eq!(
            validate(input("a\nb", "", "", DIFF)).unwrap_err(),
            SubmissionError::BadTitle
        );
        assert_eq!(
            validate(input("t", "", "", b"")).unwrap_err(),
            SubmissionError::MissingDiff
        );
    }

    #[test]
    fn category_tier_and_report_time_are_checked() {
        let mut fields = input("t", "", "", DIFF);
        let ok = validate(fields.clone()).unwrap();
        assert_eq!(
            (ok.category, ok.tier),
            (Category::Vulnerability, Tier::Scheduled)
        );
        fields.category = "data-corruption".into();
        fields.tier = "incident".into();
        fields.reported_at = "2026-11-27T09:30:00+01:00".into();
        let ok = validate(fields.clone()).unwrap();
        assert_eq!(
            (ok.category, ok.tier),
            (Category::DataCorruption, Tier::Incident)
        );
        assert_eq!(ok.reported_at, "2026-11-27T08:30:00.000Z");
        fields.reported_at = "2999-01-01T00:00:00Z".into();
        assert!(matches!(
            validate(fields.clone()),
            Err(SubmissionError::BadReportTime(_))
        ));
        fields.reported_at = "yesterday".into();
        assert!(matches!(
            validate(fields.clone()),
            Err(SubmissionError::BadReportTime(_))
        ));
        fields.reported_at.clear();
        fields.tier = "urgent".into();
        assert_eq!(
            validate(fields.clone()).unwrap_err(),
            SubmissionError::BadTier("urgent".into())
        );
        fields.tier.clear();
        fields.category = "bug".into();
        assert_eq!(
            validate(fields).unwrap_err(),
            SubmissionError::BadCategory("bug".into())
        );
    }

    /// Security review, finding 3: 100,000 ids took 35 s per request because duplicates
    /// were looked up in a list before the count was checked. The length of the field is
    /// now checked before any id is looked at, so a long list is refused as too long even
    /// when a bad id hides far into it.
    #[test]
    fn a_huge_cve_list_is_refused_by_its_length_before_any_id_is_read() {
        let mut ids: Vec<String> = (0..100_000).map(|n| format!("CVE-2024-{n:05}")).collect();
        ids[70] = "not-a-cve".into();
        assert_eq!(
            parse_cves(&ids.join(" ")),
            Err(SubmissionError::TooManyCves)
        );
    }

    #[test]
    fn cve_list_limits_count_distinct_ids() {
        let ids = |n: usize| {
            (0..n)
                .map(|i| format!("CVE-2024-{:04}", 1000 + i))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            parse_cves(&ids(MAX_CVES).join(",")).unwrap().len(),
            MAX_CVES
        );
        assert_eq!(
            parse_cves(&ids(MAX_CVES + 1).join(",")),
            Err(SubmissionError::TooManyCves)
        );
        // Repeats do not count towards the limit.
        let mut repeated = ids(MAX_CVES);
        repeated.extend(ids(3));
        assert_eq!(parse_cves(&repeated.join(" ")).unwrap().len(), MAX_CVES);
        let longest = "CVE-2024-1234567 ".repeat(MAX_CVES);
        assert!(longest.len() <= MAX_CVES_FIELD_BYTES);
        assert_eq!(parse_cves(&longest).unwrap(), ["CVE-2024-1234567"]);
    }

    #[test]
    fn pasted_crlf_becomes_lf() {
        assert_eq!(normalize_pasted("a\r\nb\r\n"), b"a\nb\n");
    }

    fn files_of(diff: &str) -> Vec<RevisionFile> {
        revision_files(&analyzer::patch::parse(diff.as_bytes()).expect("parses"))
    }

    const FIRST: &str = "--- a/fs/proc/cmdline.c\n+++ b/fs/proc/cmdline.c\n\
        @@ -10,3 +10,3 @@ static int show(void)\n a\n-b\n+c\n d\n\
        --- a/mm/slab.c\n+++ b/mm/slab.c\n@@ -1,2 +1,2 @@\n-x\n+y\n z\n";

    #[test]
    fn moving_a_change_keeps_its_digest_and_changing_it_does_not() {
        let first = files_of(FIRST);
        assert_eq!(first.len(), 2);
        assert_eq!(first[0].path, "fs/proc/cmdline.c");
        // The same change twenty lines further down: same digest.
        let moved = files_of(&FIRST.replace("@@ -10,3 +10,3 @@", "@@ -30,3 +30,3 @@"));
        assert_eq!(moved, first);
        // One added line different: a new digest for that file only.
        let changed = files_of(&FIRST.replace("+c\n", "+c2\n"));
        assert_ne!(changed[0].change_sha256, first[0].change_sha256);
        assert_eq!(changed[1], first[1]);
        // A context line only: still a different change to review.
        let context = files_of(&FIRST.replace(" d\n", " e\n"));
        assert_ne!(context[0].change_sha256, first[0].change_sha256);
    }

    #[test]
    fn a_diff_of_more_files_than_the_limit_is_refused() {
        let many: String = (0..=MAX_DIFF_FILES)
            .map(|i| format!("--- a/f{i}.c\n+++ b/f{i}.c\n@@ -1 +1 @@\n-a\n+b\n"))
            .collect();
        assert!(matches!(
            validate_diff(many.into_bytes()),
            Err(SubmissionError::TooManyFiles { files, limit: MAX_DIFF_FILES })
                if files == MAX_DIFF_FILES + 1
        ));
    }
}
