//! Revisions rendered for the patch page: highlighted once per revision's bytes, kept in
//! memory, and never waited for by a view of a long revision.
//!
//! Highlighting a 5,000-line patch takes about half a second of every core. A revision is
//! therefore rendered when it is stored (when it is long enough for that to matter), or
//! else by its first view, in a task of its own, at most [`RENDER_SLOTS`] at once; until
//! the rendering is ready a long revision's page shows its lines as plain text, which
//! takes a hundredth of the time. A short revision is rendered while its first view waits
//! (tens of milliseconds), so what is small never flickers from plain to highlighted.
//!
//! Renderings are kept in memory only, by the SHA-256 of the bytes they were made from
//! (checked against that hash when read). They are not written to the database: a stored
//! rendering is HTML the page places as it is, so a row changed behind the server's back
//! would put any markup on the page, where the diff's own bytes are checked against their
//! hash on every read. A restart or another replica renders again, in the background.

use crate::render::DiffRenderer;
use crate::store::patches::StoredRevision;
use crate::store::Database;
use graftbench_app::model::{AppError, MailView, RevisionView};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// Revisions of at most this many diff lines are highlighted while their first view waits;
/// a longer one is shown plain until its rendering is ready. Highlighting runs at about
/// 11,000 lines a second per core in a release build: 400 lines are some 40 ms.
pub const WAIT_FOR_RENDER_LINES: usize = 400;
/// Renderings that run at once (a long revision's uses every core); the others queue.
pub const RENDER_SLOTS: usize = 2;
/// How many rendered revisions to keep in memory.
pub const RENDER_CACHE_ENTRIES: usize = 32;

/// A value computed once, or the one computation of it under way: concurrent requests
/// for the same key wait for that computation instead of starting their own.
pub type Slot<T> = Arc<tokio::sync::OnceCell<Arc<T>>>;

/// Values computed from revisions' bytes, by the SHA-256 of those bytes (one or two).
/// A revision's bytes never change, so such a value never goes stale; only the code that
/// computes it could change it, and that changes only with a new binary. The oldest
/// entries go first past [`RENDER_CACHE_ENTRIES`].
pub struct SlotCache<T> {
    entries: HashMap<String, Slot<T>>,
    order: VecDeque<String>,
}

impl<T> Default for SlotCache<T> {
    fn default() -> Self {
        SlotCache {
            entries: HashMap::new(),
            order: VecDeque::new(),
        }
    }
}

impl<T> SlotCache<T> {
    /// The slot for `key`, made (and the oldest slot dropped) when there is none.
    fn slot(&mut self, key: &str) -> Slot<T> {
        if let Some(slot) = self.entries.get(key) {
            return Arc::clone(slot);
        }
        let slot = Slot::default();
        self.entries.insert(key.to_owned(), Arc::clone(&slot));
        self.order.push_back(key.to_owned());
        while self.order.len() > RENDER_CACHE_ENTRIES {
            if let Some(old) = self.order.pop_front() {
                self.entries.remove(&old);
            }
        }
        slot
    }
}

/// The slot for `key` in `cache`; a poisoned cache only costs a computation.
pub fn slot_of<T>(cache: &Mutex<SlotCache<T>>, key: &str) -> Slot<T> {
    match cache.lock() {
        Ok(mut cache) => cache.slot(key),
        Err(_) => Slot::default(),
    }
}

/// The renderings of revisions, shared by the pages and the handlers that store revisions.
pub struct Renders {
    db: Database,
    renderer: Arc<DiffRenderer>,
    cache: Mutex<SlotCache<RevisionView>>,
    slots: tokio::sync::Semaphore,
    started: AtomicUsize,
}

impl Renders {
    /// Renderings of the revisions in `db`, made with `renderer`.
    pub fn new(db: Database, renderer: Arc<DiffRenderer>) -> Arc<Renders> {
        Arc::new(Renders {
            db,
            renderer,
            cache: Mutex::new(SlotCache::default()),
            slots: tokio::sync::Semaphore::new(RENDER_SLOTS),
            started: AtomicUsize::new(0),
        })
    }

    /// How many renderings have started since the server did: for tests that show
    /// concurrent views share one.
    pub fn started(&self) -> usize {
        self.started.load(Ordering::Relaxed)
    }

    /// Starts rendering revision `number` of patch `id`, just stored with `lines` diff
    /// lines, when it is long enough that its first view would otherwise show it plain.
    /// Returns at once.
    pub fn prerender(self: &Arc<Self>, id: i64, number: i64, sha256: &str, lines: usize) {
        if lines <= WAIT_FOR_RENDER_LINES {
            return;
        }
        let renders = Arc::clone(self);
        let slot = slot_of(&self.cache, sha256);
        tokio::spawn(async move {
            if let Err(error) = renders.render_into(slot, id, number, None).await {
                tracing::warn!(
                    patch = id,
                    revision = number,
                    ?error,
                    "rendering a stored revision failed"
                );
            }
        });
    }

    /// Revision `number` of patch `id`, whose bytes hash to `sha256`: highlighted when
    /// that is ready or quick, plain text otherwise (its rendering then under way; the
    /// view's `highlighted` tells which).
    pub async fn view(
        self: &Arc<Self>,
        id: i64,
        number: i64,
        sha256: &str,
    ) -> Result<Arc<RevisionView>, AppError> {
        let slot = slot_of(&self.cache, sha256);
        if let Some(view) = slot.get() {
            return Ok(Arc::clone(view));
        }
        let Some(stored) = self.db.revision(id, number).await.map_err(internal)? else {
            return Err(AppError::NotFound(format!(
                "revision {number} of patch {id}"
            )));
        };
        // In a task of its own: a view that stops waiting (or a client that goes away)
        // does not stop the rendering the next view will use.
        let renders = Arc::clone(self);
        if line_count(&stored.diff) <= WAIT_FOR_RENDER_LINES {
            // Short: rendered from the bytes just read, while this view waits.
            let task =
                tokio::spawn(
                    async move { renders.render_into(slot, id, number, Some(stored)).await },
                );
            return joined(task.await, "rendering")?;
        }
        tokio::spawn(async move { renders.render_into(slot, id, number, None).await });
        let renderer = Arc::clone(&self.renderer);
        let plain = tokio::task::spawn_blocking(move || {
            revision_view(&stored, false, |patch| renderer.render_plain(patch))
        })
        .await;
        joined(plain, "plain rendering")?.map(Arc::new)
    }

    /// Renders revision `number` of patch `id` into `slot`, unless it holds a rendering
    /// or one is under way. Without `read` (the bytes, when the caller has them and waits
    /// anyway) the bytes are read once it is this rendering's turn, so that renderings
    /// waiting for a slot hold no revision in memory.
    async fn render_into(
        &self,
        slot: Slot<RevisionView>,
        id: i64,
        number: i64,
        read: Option<StoredRevision>,
    ) -> Result<Arc<RevisionView>, AppError> {
        let view = slot
            .get_or_try_init(|| async move {
                let _turn = self.slots.acquire().await.map_err(|_| AppError::Internal)?;
                let stored = match read {
                    Some(stored) => stored,
                    None => self
                        .db
                        .revision(id, number)
                        .await
                        .map_err(internal)?
                        .ok_or_else(|| {
                            AppError::NotFound(format!("revision {number} of patch {id}"))
                        })?,
                };
                self.started.fetch_add(1, Ordering::Relaxed);
                let renderer = Arc::clone(&self.renderer);
                // Parsing and highlighting are CPU work: off the async workers.
                let view = tokio::task::spawn_blocking(move || {
                    revision_view(&stored, true, |patch| renderer.render(patch))
                })
                .await;
                joined(view, "rendering")?.map(Arc::new)
            })
            .await?;
        Ok(Arc::clone(view))
    }
}

/// The lines in a diff's bytes.
pub fn line_count(diff: &[u8]) -> usize {
    diff.iter().filter(|&&b| b == b'\n').count()
}

/// Parses a stored revision.
pub fn parse_stored(stored: &StoredRevision) -> Result<analyzer::patch::Patch, AppError> {
    analyzer::patch::parse(&stored.diff).map_err(|e| {
        // It parsed when it was accepted; failing now means the parser changed.
        tracing::error!(sha256 = %stored.sha256, error = %e, "stored revision no longer parses");
        AppError::Internal
    })
}

/// A stored revision's view, its files rendered by `render`.
fn revision_view(
    stored: &StoredRevision,
    highlighted: bool,
    render: impl FnOnce(&analyzer::patch::Patch) -> Vec<graftbench_app::model::FileView>,
) -> Result<RevisionView, AppError> {
    let parsed = parse_stored(stored)?;
    let stats = parsed.stats();
    Ok(RevisionView {
        number: stored.number,
        sha256: stored.sha256.clone(),
        format: stored.format.clone(),
        mail: parsed.mail.as_ref().map(|m| MailView {
            commit: m.commit.clone(),
            from: m.from.clone(),
            date: m.date.clone(),
            subject: m.subject.clone(),
            message: m.message.clone(),
        }),
        files_changed: stats.files,
        added: stats.added,
        removed: stats.removed,
        files: render(&parsed),
        highlighted,
    })
}

/// The result of a task that ran `what`; a task that panicked or was cancelled is an
/// internal error, logged.
fn joined<T>(result: Result<T, tokio::task::JoinError>, what: &str) -> Result<T, AppError> {
    result.map_err(|e| {
        tracing::error!(error = %e, "{what} task failed");
        AppError::Internal
    })
}

fn internal(e: impl std::fmt::Display) -> AppError {
    tracing::error!(error = %e, "store error");
    AppError::Internal
}
