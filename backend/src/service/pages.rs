//! What the pages read: the patch list, a patch page with its rendered revision (cached,
//! rendered once however many ask), interdiffs, the audit page, users and the policy:
//! the [`Workbench`] the Leptos server functions call.

use crate::around::KnownLines;
use crate::interdiff::LineAnchor;
use crate::render::DiffRenderer;
use crate::service::renders::{parse_stored, slot_of, Renders, SlotCache};
use crate::service::review;
use crate::store::{Database, DbError};
use graftbench_app::api::ssr::{BoxFuture, Workbench};
use graftbench_app::model::{
    AppError, AuditEventView, AuditFilter, AuditPage, CheckpointView, ConsideredView, ContextQuery,
    FileHunks, FileView, HeldBack, ImpactView, InterdiffView, LineView, PatchFilter, PatchPage,
    PatchSummary, PolicyView, ReviewView, ReviewerView, RevisionView, Role, SegmentView,
    SessionUser, State, TargetPage, TargetsPage, UserAccount, DUE_SOON_SECONDS,
};
use graftbench_domain::eligibility::{LoadedPolicy, Policy};
use graftbench_domain::workflow;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

/// Why the dashboard's filters were refused, or the list failed.
#[derive(Debug, thiserror::Error)]
pub enum ListError {
    /// A filter names something that does not exist or cannot be matched.
    #[error("{0}")]
    Invalid(String),
    /// The store failed.
    #[error(transparent)]
    Db(#[from] DbError),
}

/// The longest search text taken, in characters, and the most words in it.
const MAX_SEARCH_CHARS: usize = 200;
const MAX_SEARCH_WORDS: usize = 10;

/// A [`PatchFilter`] checked: what each set filter selects.
struct Selection {
    words: Vec<String>,
    state: Option<State>,
    target: Option<HashSet<i64>>,
    needs_me: bool,
    mine: bool,
    due_soon: bool,
}

impl Selection {
    async fn of(db: &Database, filter: &PatchFilter) -> Result<Selection, ListError> {
        let q = filter.q.trim();
        if q.chars().count() > MAX_SEARCH_CHARS {
            return Err(ListError::Invalid(format!(
                "the search text is longer than {MAX_SEARCH_CHARS} characters"
            )));
        }
        let words: Vec<String> = q.split_whitespace().map(str::to_lowercase).collect();
        if words.len() > MAX_SEARCH_WORDS {
            return Err(ListError::Invalid(format!(
                "the search has more than {MAX_SEARCH_WORDS} words"
            )));
        }
        let state = match filter.state.trim() {
            "" => None,
            name => Some(State::parse(name).ok_or_else(|| {
                ListError::Invalid(format!(
                    "no state is named `{}` (one of: {})",
                    name.chars().take(40).collect::<String>(),
                    State::ALL.map(State::as_str).join(", ")
                ))
            })?),
        };
        let target = match filter.target.trim() {
            "" => None,
            name => Some(db.patches_for_target(name).await?.ok_or_else(|| {
                ListError::Invalid(format!(
                    "no target is named `{}`",
                    name.chars().take(80).collect::<String>()
                ))
            })?),
        };
        let flag = |value: &str, on: &str, field: &str| match value.trim() {
            "" => Ok(false),
            v if v == on => Ok(true),
            _ => Err(ListError::Invalid(format!("{field} takes only `{on}`"))),
        };
        Ok(Selection {
            words,
            state,
            target,
            needs_me: flag(&filter.needs, "me", "needs")?,
            mine: flag(&filter.author, "me", "author")?,
            due_soon: flag(&filter.due, "soon", "due")?,
        })
    }
}

/// The patches `filter` selects for `user`, most urgent first: those someone asked
/// `user` to review, then open ones by deadline, then closed ones, newest first.
pub async fn list_patches(
    db: &Database,
    policy: &Policy,
    user: &SessionUser,
    filter: &PatchFilter,
) -> Result<Vec<PatchSummary>, ListError> {
    let selection = Selection::of(db, filter).await?;
    let rows = db.listed_patches().await?;
    let mut review: HashMap<i64, _> = db
        .all_review_facts(user.id)
        .await?
        .into_iter()
        .map(|(facts, sign_offs)| (facts.id, (facts, sign_offs)))
        .collect();
    let requested = db.patches_requested_from(user.id).await?;
    let mut paths = if selection.words.is_empty() {
        HashMap::new()
    } else {
        db.current_paths().await?
    };
    let now = time::OffsetDateTime::now_utc();
    let mut list = Vec::new();
    // The four-eyes answer for every patch, read at the first patch that asks it.
    let mut four_eyes: Option<std::collections::HashSet<i64>> = None;
    for row in rows {
        let id = row.id;
        let (facts, sign_offs) = review
            .remove(&id)
            .ok_or_else(|| DbError::Corrupt(format!("patch {id} has no revision")))?;
        if selection.target.as_ref().is_some_and(|t| !t.contains(&id))
            || selection.mine && row.author_id != user.id.get()
        {
            continue;
        }
        // The stored state is what every change computed; the list shows it, and
        // eligibility as the policy in force sees it.
        let state = facts.stored_state;
        if selection.state.is_some_and(|s| s != state) {
            continue;
        }
        let standing = review::standing(&facts, &sign_offs, user.id);
        let mut awaits =
            workflow::awaits_review_by(user.id, &user.roles, facts.author_id, state, &standing);
        if awaits && policy.role_grants_need_second_admin {
            // Four eyes on granted roles: a patch whose writer granted my reviewer role
            // does not wait for my approval, which would be refused. Asked only of the
            // patches that would otherwise wait for me.
            let granted_by_writers = match &four_eyes {
                Some(patches) => patches,
                None => four_eyes.insert(
                    db.patches_whose_writers_granted(user.id, Role::Reviewer)
                        .await?,
                ),
            };
            if granted_by_writers.contains(&id) {
                awaits = false;
            }
        }
        if selection.needs_me && !awaits {
            continue;
        }
        let deadline = review::deadline(&facts, state, policy, now);
        let due_soon = deadline
            .seconds_left
            .is_some_and(|left| left <= DUE_SOON_SECONDS);
        if selection.due_soon && !due_soon {
            continue;
        }
        if !selection.words.is_empty() {
            let files = paths.remove(&id).unwrap_or_default();
            let haystack: Vec<String> = std::iter::once(row.title.to_lowercase())
                .chain(row.cves.iter().map(|c| c.to_lowercase()))
                .chain(files.iter().map(|p| p.to_lowercase()))
                .collect();
            let found = |word: &String| haystack.iter().any(|h| h.contains(word.as_str()));
            if !selection.words.iter().all(found) {
                continue;
            }
        }
        let evaluation = review::evaluate(&facts, &sign_offs, policy);
        list.push(PatchSummary {
            id,
            title: row.title,
            cves: row.cves,
            author: row.author,
            created_at: row.created_at,
            revisions: row.revisions,
            state,
            deadline,
            eligible: evaluation.eligibility.eligible,
            requested_from_me: awaits && requested.contains(&id),
        });
    }
    // Asked of me first; then open, soonest due first; then closed, newest first (the
    // query's order; the sort is stable).
    list.sort_by_key(|p| {
        let urgency = match p.deadline.seconds_left {
            Some(left) => (0, left),
            None => (1, 0),
        };
        (!p.requested_from_me, urgency)
    });
    Ok(list)
}

/// The most events the audit page shows at once (the newest that match).
pub const AUDIT_PAGE_LIMIT: i64 = 500;
/// The most checkpoints the audit page lists (the API lists more).
pub const AUDIT_PAGE_CHECKPOINTS: i64 = 5;

/// The diff lines a patch page carries at first: the rest of a longer revision is held
/// back, file by file, and loaded when the reader gets there. A page of 5,000 lines is
/// 1.6 MiB of HTML whose every line the server renders and compresses on each view.
pub const PAGE_LINES: usize = 1_000;

/// `view` as revision `number`, with its hunks in order up to `budget` lines and the rest
/// held back (at least one hunk is kept, however long). Hunks are not split: a line
/// number's comment and a hunk's header stay with their lines.
pub fn first_lines(view: &RevisionView, number: i64, budget: usize) -> RevisionView {
    let mut left = budget;
    let mut kept_any = false;
    let files = view
        .files
        .iter()
        .map(|file| {
            let mut kept = 0;
            for hunk in &file.hunks {
                if left == 0 || (hunk.lines.len() > left && kept_any) {
                    left = 0;
                    break;
                }
                left = left.saturating_sub(hunk.lines.len());
                kept += 1;
                kept_any = true;
            }
            let rest = &file.hunks[kept..];
            FileView {
                old_path: file.old_path.clone(),
                new_path: file.new_path.clone(),
                change: file.change.clone(),
                mode_change: file.mode_change.clone(),
                syntax: file.syntax.clone(),
                added: file.added,
                removed: file.removed,
                hunks: file.hunks[..kept].to_vec(),
                held_back: (!rest.is_empty()).then(|| HeldBack {
                    hunks: rest.len(),
                    lines: rest.iter().map(|h| h.lines.len()).sum(),
                }),
            }
        })
        .collect();
    RevisionView {
        number,
        sha256: view.sha256.clone(),
        format: view.format.clone(),
        mail: view.mail.clone(),
        files_changed: view.files_changed,
        added: view.added,
        removed: view.removed,
        files,
        highlighted: view.highlighted,
    }
}

/// Threads of at most this many other revisions (the nearest) are ported onto the one
/// shown; those of the rest are listed as outdated. Each costs a parse and a diff.
const MAX_PORTED_REVISIONS: usize = 8;
/// The time all porting for one page may take before its diffs answer coarsely.
const PORT_TIME: std::time::Duration = std::time::Duration::from_secs(1);

/// The revisions other than `shown` that `keep` selects, the
/// [`MAX_PORTED_REVISIONS`] nearest it, nearest first (the later of two as near).
fn nearest_others(
    revisions: &[graftbench_app::model::RevisionSummary],
    shown: i64,
    keep: impl Fn(&graftbench_app::model::RevisionSummary) -> bool,
) -> Vec<&graftbench_app::model::RevisionSummary> {
    let mut others: Vec<_> = revisions
        .iter()
        .filter(|r| r.number != shown && keep(r))
        .collect();
    others.sort_by_key(|r| ((r.number - shown).abs(), -r.number));
    others.truncate(MAX_PORTED_REVISIONS);
    others
}

/// The [`Workbench`] the pages use, over the database.
pub struct DbWorkbench {
    db: Database,
    policy: Arc<LoadedPolicy>,
    renderer: Arc<DiffRenderer>,
    renders: Arc<Renders>,
    /// Highlightings of lines around hunks at once (each up to 500 lines).
    context_slots: Arc<tokio::sync::Semaphore>,
    /// Where threads of other revisions sit on a revision's lines (thread to line), by a
    /// digest of the revisions' hashes and the threads' anchors.
    ports: Mutex<SlotCache<HashMap<i64, u32>>>,
    /// The original lines other revisions show around a revision's hunks, by a digest of
    /// the revisions' hashes.
    known: Mutex<SlotCache<KnownLines>>,
    target_root: Option<std::path::PathBuf>,
    no_target_notice: Option<String>,
}

impl DbWorkbench {
    /// Names `root` as the directory in-house targets are registered from (pages show it).
    pub fn with_target_root(mut self, root: Option<std::path::PathBuf>) -> DbWorkbench {
        self.target_root = root;
        self
    }

    /// Why there is no kernel target, when the server knows (see
    /// [`crate::web::ServerConfig::no_target_notice`]).
    pub fn with_no_target_notice(mut self, notice: Option<String>) -> DbWorkbench {
        self.no_target_notice = notice;
        self
    }

    /// A workbench over `db`.
    pub fn new(
        db: Database,
        renderer: Arc<DiffRenderer>,
        policy: Arc<LoadedPolicy>,
    ) -> DbWorkbench {
        DbWorkbench {
            renders: Renders::new(db.clone(), Arc::clone(&renderer)),
            db,
            policy,
            renderer,
            ports: Mutex::new(SlotCache::default()),
            known: Mutex::new(SlotCache::default()),
            context_slots: Arc::new(tokio::sync::Semaphore::new(2)),
            target_root: None,
            no_target_notice: None,
        }
    }

    /// The lines of the original files that the patch's other revisions (the
    /// [`MAX_PORTED_REVISIONS`] nearest) show around the hunks of revision `shown`
    /// (number and SHA-256), for a page whose targets have no source tree: computed once
    /// per set of revisions, in a blocking task that parses each of them once.
    async fn known_lines(
        &self,
        id: i64,
        shown: (i64, &str),
        revisions: &[graftbench_app::model::RevisionSummary],
    ) -> Result<Arc<KnownLines>, AppError> {
        use sha2::{Digest, Sha256};
        // The nearest first: they are trusted first where two disagree.
        let others = nearest_others(revisions, shown.0, |_| true);
        let mut key = Sha256::new();
        key.update(b"known\0");
        key.update(shown.1.as_bytes());
        for other in &others {
            key.update(other.sha256.as_bytes());
        }
        let slot = slot_of(&self.known, &hex::encode(key.finalize()));
        let known = slot
            .get_or_try_init(|| async move {
                if others.is_empty() {
                    return Ok(Arc::new(KnownLines::default()));
                }
                // A turn of the context slots, held by the blocking task itself: a request
                // that gives up does not free it while the work goes on.
                let turn = Arc::clone(&self.context_slots)
                    .acquire_owned()
                    .await
                    .map_err(internal)?;
                let mut stored = Vec::with_capacity(others.len() + 1);
                for number in std::iter::once(shown.0).chain(others.iter().map(|r| r.number)) {
                    let revision = self.db.revision(id, number).await.map_err(internal)?;
                    stored.push(revision.ok_or_else(|| {
                        AppError::NotFound(format!("revision {number} of patch {id}"))
                    })?);
                }
                tokio::task::spawn_blocking(move || {
                    let _turn = turn;
                    let (shown, others) = stored.split_first().ok_or(AppError::Internal)?;
                    let shown = parse_stored(shown)?;
                    // One other revision parsed at a time; one that no longer parses
                    // (logged) adds nothing.
                    let others = others.iter().filter_map(|stored| parse_stored(stored).ok());
                    Ok::<_, AppError>(Arc::new(KnownLines::pool(&shown, others)))
                })
                .await
                .map_err(|e| {
                    tracing::error!(error = %e, "known-lines task failed");
                    AppError::Internal
                })?
            })
            .await?;
        Ok(Arc::clone(known))
    }

    /// Places the threads of other revisions than `shown` (number and SHA-256) on the
    /// lines they map to in it (their `shown_at`), where it shows those lines. Threads of
    /// the [`MAX_PORTED_REVISIONS`] revisions nearest the shown one are ported, in one
    /// blocking task that parses each revision once, under one deadline; the answer is
    /// kept by a digest of everything it depends on (the revisions' bytes and the
    /// threads' anchors), so a page view with no new thread computes nothing.
    async fn place_threads(
        &self,
        id: i64,
        shown: (i64, &str),
        revisions: &[graftbench_app::model::RevisionSummary],
        threads: &mut [graftbench_app::model::ThreadView],
    ) -> Result<(), AppError> {
        use sha2::{Digest, Sha256};
        let others = nearest_others(revisions, shown.0, |r| {
            threads.iter().any(|t| t.revision == r.number)
        });
        if others.is_empty() {
            return Ok(());
        }
        // What to port: per other revision, its threads' anchors.
        let mut asked: Vec<(i64, Vec<(i64, LineAnchor)>)> = Vec::with_capacity(others.len());
        let mut key = Sha256::new();
        key.update(shown.1.as_bytes());
        for other in &others {
            key.update(other.sha256.as_bytes());
            let anchors: Vec<(i64, LineAnchor)> = threads
                .iter()
                .filter(|t| t.revision == other.number)
                .map(|t| (t.id, (t.path.clone(), t.side == "new", t.line)))
                .collect();
            for (thread, (path, new_side, line)) in &anchors {
                key.update(format!("{thread}\0{path}\0{new_side}\0{line}\0").as_bytes());
            }
            asked.push((other.number, anchors));
        }
        let key = hex::encode(key.finalize());
        let slot = slot_of(&self.ports, &key);
        let placed = slot
            .get_or_try_init(|| async move {
                let shown_diff = self
                    .db
                    .revision(id, shown.0)
                    .await
                    .map_err(internal)?
                    .ok_or_else(|| {
                        AppError::NotFound(format!("revision {} of patch {id}", shown.0))
                    })?;
                let mut work = Vec::with_capacity(asked.len());
                for (number, anchors) in asked {
                    let stored = self.db.revision(id, number).await.map_err(internal)?;
                    if let Some(stored) = stored {
                        work.push((stored, anchors));
                    }
                }
                // Parsing and comparing diffs is CPU work: off the async workers.
                tokio::task::spawn_blocking(move || {
                    let deadline = std::time::Instant::now() + PORT_TIME;
                    let to = parse_stored(&shown_diff)?;
                    let mut placed = HashMap::new();
                    for (stored, anchors) in work {
                        let from = parse_stored(&stored)?;
                        let lines: Vec<LineAnchor> =
                            anchors.iter().map(|(_, anchor)| anchor.clone()).collect();
                        let port = crate::interdiff::port_lines(&from, &to, &lines, deadline);
                        for (thread, (path, new_side, line)) in anchors {
                            if let Some(at) = port.place(&path, new_side, line) {
                                placed.insert(thread, at);
                            }
                        }
                    }
                    Ok::<_, AppError>(Arc::new(placed))
                })
                .await
                .map_err(|e| {
                    tracing::error!(error = %e, "porting task failed");
                    AppError::Internal
                })?
            })
            .await?;
        for thread in threads.iter_mut() {
            thread.shown_at = placed
                .get(&thread.id)
                .map(|line| (thread.side.clone(), *line));
        }
        Ok(())
    }

    /// The renderings of revisions this workbench shows (handlers that store a revision
    /// start its rendering there).
    pub fn renders(&self) -> &Arc<Renders> {
        &self.renders
    }

    /// The patch page for one revision (the latest when `revision` is `None`), with the
    /// first [`PAGE_LINES`] lines of its diff or, when `all_lines`, every line.
    pub async fn page(
        &self,
        user: &SessionUser,
        id: i64,
        revision: Option<i64>,
        all_lines: bool,
    ) -> Result<PatchPage, AppError> {
        let Some(patch) = self.db.patch(id).await.map_err(internal)? else {
            return Err(AppError::NotFound(format!("patch {id}")));
        };
        let revisions = self.db.revisions(id).await.map_err(internal)?;
        let number = match revision {
            Some(n) => n,
            None => revisions.last().map(|r| r.number).unwrap_or(1),
        };
        let Some(summary) = revisions.iter().find(|r| r.number == number) else {
            return Err(AppError::NotFound(format!(
                "revision {number} of patch {id}"
            )));
        };
        let view = self.renders.view(id, number, &summary.sha256).await?;
        // The same bytes may be revision 1 of one patch and revision 3 of another.
        let shown = first_lines(
            &view,
            number,
            if all_lines { usize::MAX } else { PAGE_LINES },
        );
        let mut review = self.review(user, id).await.map_err(internal)?;
        self.place_threads(
            id,
            (number, &summary.sha256),
            &revisions,
            &mut review.threads,
        )
        .await?;
        // The patch's active targets, read once: for the pitfalls and the downloads.
        let targets = crate::service::impact::targets_of(&self.db, id).await?;
        let mut pitfalls =
            crate::service::impact::pitfalls_on(&self.db, id, (number, &summary.sha256), &targets)
                .await?;
        for pitfall in &mut pitfalls {
            let (side, line) = pitfall.anchor_line();
            pitfall.considered = review
                .threads
                .iter()
                .filter(|t| {
                    t.revision == number
                        && t.pitfall.as_deref() == Some(pitfall.kind.as_str())
                        && t.path == pitfall.path
                        && (t.side.as_str(), t.line) == (side, line)
                })
                .filter_map(|t| {
                    t.comments.first().map(|c| ConsideredView {
                        by: c.author.clone(),
                        comment: c.body.clone(),
                        at: c.created_at.clone(),
                        revision: t.revision,
                    })
                })
                .collect();
        }
        let file_marks = crate::service::reviewers::file_marks(&self.db, user, id, number)
            .await
            .map_err(internal)?;
        let source_targets: Vec<String> = targets
            .into_iter()
            .filter(|t| t.source_dir.is_some())
            .map(|t| t.name)
            .collect();
        // Without a source tree, the lines around hunks come from the other revisions.
        // A failure there (logged) costs the page those controls, not the page.
        let known_around = if source_targets.is_empty() && revisions.len() > 1 {
            match self
                .known_lines(id, (number, &summary.sha256), &revisions)
                .await
            {
                Ok(known) => known.gaps().to_vec(),
                Err(e) => {
                    tracing::warn!(patch = id, revision = number, error = ?e, "lines known from other revisions");
                    Vec::new()
                }
            }
        } else {
            Vec::new()
        };
        Ok(PatchPage {
            info: patch,
            revisions,
            shown,
            review,
            pitfalls,
            file_marks,
            source_targets,
            known_around,
        })
    }
}

impl DbWorkbench {
    /// The review side of the patch page, for `user`.
    pub async fn review(&self, user: &SessionUser, id: i64) -> Result<ReviewView, DbError> {
        review_view(&self.db, &self.policy.policy, user, id).await
    }
}

/// The review side of a patch for `user`: state, eligibility, deadline, sign-offs,
/// threads and the actions the rules offer.
pub async fn review_view(
    db: &Database,
    policy: &Policy,
    user: &SessionUser,
    id: i64,
) -> Result<ReviewView, DbError> {
    {
        let (facts, sign_offs) = db
            .review_facts(id)
            .await?
            .ok_or_else(|| DbError::Corrupt(format!("patch {id} has no revision")))?;
        let evaluation = review::evaluate(&facts, &sign_offs, policy);
        let state = evaluation.state;
        let mut actions = workflow::offered(
            user.id,
            &user.roles,
            facts.author_id,
            state,
            &review::standing(&facts, &sign_offs, user.id),
        );
        if policy.role_grants_need_second_admin {
            // The four-eyes rule on granted roles reads the accounts: asked only where it
            // can refuse, the same way the action asks it.
            let mut tx = db.begin().await?;
            let mut kept = Vec::with_capacity(actions.len());
            for action in actions {
                match review::granted_independently(&mut tx, id, user.id, action).await {
                    Ok(()) => kept.push(action),
                    Err(review::ReviewError::Db(e)) => return Err(e),
                    Err(_) => {}
                }
            }
            actions = kept;
        }
        let standing = |user_id| review::standing(&facts, &sign_offs, user_id);
        let requested: Vec<ReviewerView> = db
            .review_requests(id)
            .await?
            .into_iter()
            .map(|r| ReviewerView {
                signed_current: standing(r.reviewer_id).own_verdict.is_some(),
                username: r.username,
                display_name: r.display_name,
                requested_by: r.requested_by,
            })
            .collect();
        let can_request_reviewers =
            workflow::may_request_reviewers(user.id, &user.roles, facts.author_id, state).is_ok();
        let mut request_candidates = Vec::new();
        if can_request_reviewers {
            let mut accounts: Vec<_> = db
                .reviewers()
                .await?
                .into_iter()
                .filter(|(id, username, _)| {
                    *id != facts.author_id && !requested.iter().any(|r| &r.username == username)
                })
                .collect();
            if policy.role_grants_need_second_admin {
                // Four eyes on granted roles: not those whose approval would be refused
                // (the request is refused for them too), as `granted_independently`
                // refuses it, for all of them in one statement.
                let refused = db.role_granted_by_a_writer_to(id, Role::Reviewer).await?;
                accounts.retain(|(account, _, _)| !refused.contains(account));
            }
            request_candidates = accounts
                .into_iter()
                .map(|(_, username, display_name)| ReviewerView {
                    username,
                    display_name,
                    requested_by: String::new(),
                    signed_current: false,
                })
                .collect();
        }
        Ok(ReviewView {
            requested,
            request_candidates,
            can_request_reviewers,
            state,
            current_revision: facts.current_revision.get(),
            current_sha256: facts.current_sha256.to_string(),
            approvals: evaluation.approvals,
            approvals_required: policy.approvals_required,
            deadline: review::deadline(&facts, state, policy, time::OffsetDateTime::now_utc()),
            eligibility: evaluation.eligibility,
            sign_offs: review::sign_off_views(&sign_offs, facts.current_revision),
            threads: db.threads(id).await?,
            drafts: db.drafts(id, user.id.get()).await?,
            actions,
        })
    }
}

/// Lines around a hunk as the diff shows lines: highlighted with `path`'s syntax (as one
/// hunk of context lines), or escaped text if that fails.
fn context_views(
    renderer: &DiffRenderer,
    path: &str,
    lines: &[crate::around::ContextLine],
) -> Vec<LineView> {
    let plain = || {
        lines
            .iter()
            .map(|line| {
                let mut html = String::new();
                graftbench_app::escape_html_into(&mut html, &line.text);
                LineView {
                    kind: graftbench_app::model::LineKind::Context,
                    old: Some(line.old),
                    new: Some(line.new),
                    html,
                    no_eol: false,
                }
            })
            .collect()
    };
    let Some(first) = lines.first() else {
        return Vec::new();
    };
    // The syntax comes from the file's name; the name in this diff is only that, kept to
    // characters no diff header can misread.
    let name: String = path
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        .collect();
    let name = if name.is_empty() {
        "x".to_owned()
    } else {
        name
    };
    let mut diff = format!(
        "--- a/{name}\n+++ b/{name}\n@@ -{},{} +{},{} @@\n",
        first.old,
        lines.len(),
        first.new,
        lines.len()
    );
    for line in lines {
        diff.push(' ');
        diff.push_str(&line.text);
        diff.push('\n');
    }
    match analyzer::patch::parse(diff.as_bytes()) {
        Ok(patch) => {
            let mut files = renderer.render(&patch);
            match files.first_mut().and_then(|f| f.hunks.first_mut()) {
                Some(hunk) if hunk.lines.len() == lines.len() => std::mem::take(&mut hunk.lines),
                _ => plain(),
            }
        }
        Err(_) => plain(),
    }
}

fn internal(e: impl std::fmt::Display) -> AppError {
    tracing::error!(error = %e, "store error");
    AppError::Internal
}

impl Workbench for DbWorkbench {
    fn list_patches<'a>(
        &'a self,
        user: &'a SessionUser,
        filter: PatchFilter,
    ) -> BoxFuture<'a, Result<Vec<PatchSummary>, AppError>> {
        Box::pin(async move {
            list_patches(&self.db, &self.policy.policy, user, &filter)
                .await
                .map_err(|e| match e {
                    ListError::Invalid(why) => AppError::Invalid(why),
                    ListError::Db(e) => internal(e),
                })
        })
    }

    fn patch_page<'a>(
        &'a self,
        user: &'a SessionUser,
        id: i64,
        revision: Option<i64>,
        all_lines: bool,
    ) -> BoxFuture<'a, Result<PatchPage, AppError>> {
        Box::pin(self.page(user, id, revision, all_lines))
    }

    fn context_lines<'a>(
        &'a self,
        _user: &'a SessionUser,
        query: ContextQuery,
    ) -> BoxFuture<'a, Result<Vec<LineView>, AppError>> {
        Box::pin(async move {
            // Every signed-in user may read every patch (as its page).
            let count = query.count.min(crate::service::sources::MAX_CONTEXT_LINES);
            let lines = match &query.target {
                Some(target) => crate::service::sources::context(
                    &self.db,
                    query.id,
                    query.revision,
                    target,
                    &query.path,
                    query.hunk,
                    query.below,
                    count,
                )
                .await
                .map_err(|e| match e {
                    review::ReviewError::NotFound(what) => AppError::NotFound(what),
                    review::ReviewError::Db(e) => internal(e),
                    other => AppError::Invalid(other.to_string()),
                })?,
                None => {
                    let revisions = self.db.revisions(query.id).await.map_err(internal)?;
                    let Some(summary) = revisions.iter().find(|r| r.number == query.revision)
                    else {
                        return Err(AppError::NotFound(format!(
                            "revision {} of patch {}",
                            query.revision, query.id
                        )));
                    };
                    self.known_lines(query.id, (query.revision, &summary.sha256), &revisions)
                        .await?
                        .around(&query.path, query.hunk, query.below, count)
                        .ok_or_else(|| {
                            AppError::NotFound(format!(
                                "hunk {} of `{}` in revision {}",
                                query.hunk.saturating_add(1),
                                query.path.chars().take(200).collect::<String>(),
                                query.revision
                            ))
                        })?
                }
            };
            let turn = Arc::clone(&self.context_slots)
                .acquire_owned()
                .await
                .map_err(internal)?;
            let renderer = Arc::clone(&self.renderer);
            let path = query.path;
            tokio::task::spawn_blocking(move || {
                let _turn = turn;
                context_views(&renderer, &path, &lines)
            })
            .await
            .map_err(internal)
        })
    }

    fn file_hunks<'a>(
        &'a self,
        _user: &'a SessionUser,
        id: i64,
        revision: i64,
        file: usize,
        from: usize,
    ) -> BoxFuture<'a, Result<FileHunks, AppError>> {
        Box::pin(async move {
            // Every signed-in user may read every patch (as its page).
            let revisions = self.db.revisions(id).await.map_err(internal)?;
            let Some(summary) = revisions.iter().find(|r| r.number == revision) else {
                return Err(AppError::NotFound(format!(
                    "revision {revision} of patch {id}"
                )));
            };
            let view = self.renders.view(id, revision, &summary.sha256).await?;
            let Some(shown) = view.files.get(file) else {
                return Err(AppError::NotFound(format!(
                    "file {file} of revision {revision} of patch {id}"
                )));
            };
            Ok(FileHunks {
                hunks: shown.hunks.get(from..).unwrap_or_default().to_vec(),
                highlighted: view.highlighted,
            })
        })
    }

    fn impact<'a>(
        &'a self,
        _user: &'a SessionUser,
        id: i64,
        revision: Option<i64>,
        target: Option<String>,
        query: String,
    ) -> BoxFuture<'a, Result<ImpactView, AppError>> {
        Box::pin(crate::service::impact::impact_view(
            &self.db,
            crate::service::impact::ImpactQuery {
                patch: id,
                revision,
                target,
                query,
                no_target_notice: self.no_target_notice.clone(),
            },
        ))
    }

    fn interdiff<'a>(
        &'a self,
        _user: &'a SessionUser,
        id: i64,
        from: i64,
        to: i64,
    ) -> BoxFuture<'a, Result<InterdiffView, AppError>> {
        Box::pin(async move {
            let Some(info) = self.db.patch(id).await.map_err(internal)? else {
                return Err(AppError::NotFound(format!("patch {id}")));
            };
            let mut sides = Vec::with_capacity(2);
            let mut shas = Vec::with_capacity(2);
            for number in [from, to] {
                let stored = self.db.revision(id, number).await.map_err(internal)?;
                let Some(stored) = stored else {
                    return Err(AppError::NotFound(format!(
                        "revision {number} of patch {id}"
                    )));
                };
                shas.push(stored.sha256.clone());
                sides.push(stored);
            }
            let replace_sets =
                crate::service::impact::replace_set_changes(&self.db, id, &shas[0], &shas[1])
                    .await?;
            // Two diffs of up to 5 MiB each to parse, compare and highlight: CPU work, off
            // the async workers.
            let renderer = Arc::clone(&self.renderer);
            let (files, rebased, message) = tokio::task::spawn_blocking(move || {
                let (older, newer) = (parse_stored(&sides[0])?, parse_stored(&sides[1])?);
                let diff = crate::interdiff::interdiff(&older, &newer);
                let files = renderer.render(&analyzer::patch::Patch {
                    format: newer.format,
                    mail: None,
                    files: diff.files,
                });
                Ok::<_, AppError>((files, diff.rebased, diff.message))
            })
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "interdiff task failed");
                AppError::Internal
            })??;
            Ok(InterdiffView {
                info,
                revisions: self.db.revisions(id).await.map_err(internal)?,
                from,
                to,
                files,
                rebased,
                message,
                replace_sets,
            })
        })
    }

    fn audit<'a>(
        &'a self,
        user: &'a SessionUser,
        filter: AuditFilter,
    ) -> BoxFuture<'a, Result<AuditPage, AppError>> {
        Box::pin(async move {
            if !user.reads_audit() {
                return Err(AppError::Forbidden(
                    "the audit trail is for auditors, security officers and admins".into(),
                ));
            }
            let (events, matched) = self
                .db
                .search_audit(&filter, AUDIT_PAGE_LIMIT)
                .await
                .map_err(internal)?;
            let check = crate::service::tree::check(&self.db)
                .await
                .map_err(internal)?;
            let checkpoints = self
                .db
                .checkpoints(AUDIT_PAGE_CHECKPOINTS)
                .await
                .map_err(internal)?;
            let oldest_online = self.db.oldest_online_event().await.map_err(internal)?;
            let segments = self.db.segments().await.map_err(internal)?;
            Ok(AuditPage {
                events: events
                    .into_iter()
                    .map(|e| AuditEventView {
                        seq: e.seq,
                        at: e.at,
                        actor: e.actor,
                        action: e.action,
                        subject: e.subject,
                        details: e.details,
                        hash: e.hash,
                    })
                    .collect(),
                matched,
                limit: AUDIT_PAGE_LIMIT,
                broken: check.broken,
                tree_leaves: i64::try_from(check.leaves).unwrap_or(i64::MAX),
                checkpoints: checkpoints
                    .into_iter()
                    .map(|c| CheckpointView {
                        size: c.size,
                        created_at: c.created_at,
                        root: c.root,
                    })
                    .collect(),
                online_months: self.policy.policy.audit.online_months,
                oldest_online: oldest_online.map(|e| (e.seq, e.at)),
                segments: segments
                    .into_iter()
                    .map(|s| SegmentView {
                        first_seq: s.first_seq,
                        last_seq: s.last_seq,
                        first_at: s.first_at,
                        last_at: s.last_at,
                        file: s.file,
                        sha256: s.sha256,
                    })
                    .collect(),
            })
        })
    }

    fn policy(&self) -> PolicyView {
        PolicyView {
            source: self.policy.source(),
            toml: self.policy.to_toml(),
        }
    }

    fn users<'a>(
        &'a self,
        user: &'a SessionUser,
    ) -> BoxFuture<'a, Result<Vec<UserAccount>, AppError>> {
        Box::pin(async move {
            if !user.has_role(Role::Admin) {
                return Err(AppError::Forbidden(
                    "managing users needs the admin role".into(),
                ));
            }
            self.db.list_users().await.map_err(internal)
        })
    }

    fn targets<'a>(
        &'a self,
        user: &'a SessionUser,
    ) -> BoxFuture<'a, Result<TargetsPage, AppError>> {
        Box::pin(async move {
            super::targets::targets_page(&self.db, self.target_root.as_deref(), user)
                .await
                .map_err(internal)
        })
    }

    fn target<'a>(
        &'a self,
        user: &'a SessionUser,
        name: String,
    ) -> BoxFuture<'a, Result<TargetPage, AppError>> {
        Box::pin(async move {
            super::targets::target_page(&self.db, user, &name)
                .await
                .map_err(internal)?
                .ok_or_else(|| AppError::NotFound(format!("target {name}")))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use graftbench_app::model::{HunkView, LineKind, LineView};

    /// A file of hunks of these many lines each.
    fn file(path: &str, hunks: &[usize]) -> FileView {
        FileView {
            old_path: Some(path.into()),
            new_path: Some(path.into()),
            change: "modified".into(),
            mode_change: None,
            syntax: "C".into(),
            added: 0,
            removed: 0,
            hunks: hunks
                .iter()
                .map(|&lines| HunkView {
                    range: String::new(),
                    section: String::new(),
                    lines: (0..lines)
                        .map(|n| LineView {
                            kind: LineKind::Context,
                            old: Some(n as u32 + 1),
                            new: Some(n as u32 + 1),
                            html: String::new(),
                            no_eol: false,
                        })
                        .collect(),
                })
                .collect(),
            held_back: None,
        }
    }

    fn revision(files: Vec<FileView>) -> RevisionView {
        RevisionView {
            number: 1,
            sha256: "ab".into(),
            format: "unified".into(),
            mail: None,
            files_changed: files.len(),
            added: 0,
            removed: 0,
            files,
            highlighted: true,
        }
    }

    /// Per file: hunks kept, and what is held back.
    fn cut(view: &RevisionView, budget: usize) -> Vec<(usize, Option<(usize, usize)>)> {
        first_lines(view, 7, budget)
            .files
            .iter()
            .map(|f| (f.hunks.len(), f.held_back.map(|h| (h.hunks, h.lines))))
            .collect()
    }

    #[test]
    fn a_page_carries_whole_hunks_in_order_up_to_its_budget() {
        let view = revision(vec![
            file("a.c", &[10, 20]),
            file("b.c", &[30, 5]),
            file("c.c", &[1]),
        ]);
        // Everything fits.
        assert_eq!(cut(&view, 100), vec![(2, None), (2, None), (1, None)]);
        // 30 lines: a.c whole; b.c's first hunk would pass the budget, and nothing after
        // it is shown either (not c.c's one line: the page stops at one place).
        assert_eq!(
            cut(&view, 30),
            vec![(2, None), (0, Some((2, 35))), (0, Some((1, 1)))]
        );
        // Exactly at a hunk's end.
        assert_eq!(
            cut(&view, 60),
            vec![(2, None), (1, Some((1, 5))), (0, Some((1, 1)))]
        );
        // A first hunk longer than the budget is still shown: a page is never empty.
        assert_eq!(
            cut(&revision(vec![file("big.c", &[5000, 3])]), 1000),
            vec![(1, Some((1, 3)))]
        );
        // Unlimited, as `?lines=all` asks.
        assert_eq!(
            cut(&view, usize::MAX),
            vec![(2, None), (2, None), (1, None)]
        );
        let shown = first_lines(&view, 7, 30);
        assert_eq!(
            (shown.number, shown.files_changed),
            (7, 3),
            "the revision's own number"
        );
    }
}
