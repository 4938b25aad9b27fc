//! Writes audit events and what meetings remember, in order, on a thread of
//! their own, durably, and checkpoints the audit log's head.
//!
//! **Group commit.** The thread takes everything waiting in its queue (up to
//! [`MAX_GROUP`] writes), stores it in one transaction and commits it with
//! SQLite's `synchronous=FULL` (the WAL is fsynced), then tells each waiting
//! sender that its writes are on disk. A meeting's task holds back what it
//! would tell people about a host action or a join until then
//! ([`Writer::commit`]); one fsync covers everything queued meanwhile, by every
//! meeting.
//!
//! **Back-pressure.** The queue is bounded ([`WriterOptions::queue`] writes).
//! When it is full:
//! * a meeting's task waits for room ([`Writer::commit`]): host actions, joins,
//!   leaves and what meetings remember are never dropped; that meeting's
//!   output waits with them, other meetings run on until they write too;
//! * [`Writer::record`] from code that cannot wait hands the write to a task
//!   that waits for room (counted in [`WriterStats::queue_full`]);
//! * refused joins never wait: see below.
//!
//! **Refused joins** do not go through the queue one by one. Refusals alike
//! (same meeting, same client address, same event and outcome) within one
//! minute (wall clock, UTC) are tallied: the first is queued at once (if the
//! queue has room), and when the minute is over the writer stores one row
//! saying how many there were in all ("… (N in all)"). At most
//! [`MAX_OPEN_TALLIES`] tallies are kept per minute; refusals beyond that are
//! counted as dropped, logged, and recorded in the audit log as one
//! `audit`/`refusals dropped` row with their number. So a flood of refusals
//! costs at most two rows per (meeting, address, outcome) per minute.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use convene_meeting::Change;
use convene_storage::checkpoint::{self, Checkpoint};
use convene_storage::{AuditEvent, AuditHead, AuditKey, Batch, ChatKey, Storage, StorageError};
use tokio::sync::{mpsc, oneshot};
use tracing::{error, info, warn};

/// Most queued writes stored in one transaction.
pub const MAX_GROUP: usize = 512;
/// Refusal tallies open at once; refusals with a new key beyond this are dropped
/// (and counted).
pub const MAX_OPEN_TALLIES: usize = 4096;
/// How often the thread wakes without writes, to close minutes and checkpoint.
const TICK: Duration = Duration::from_millis(500);

/// Writes kept at most while the database is away (about 100 bytes to a few
/// kilobytes each): past this, new ones are given up, counted and logged.
const MAX_UNSTORED: usize = 100_000;
/// The longest wait between tries while the database is away.
const RETRY_AT_MOST: Duration = Duration::from_secs(8);

/// Writes whose transaction failed (the database away, or unreachable),
/// kept in order and tried again, before newer ones, until they are stored:
/// a meeting goes on while its database is away, and what was done in it
/// is stored when the database is back. They are stored dated when they
/// are stored (the chain's dates only go forward, which the checkpoints
/// check), with the time they happened in the audit row's detail. Meanwhile
/// their output has gone out: the durability promise (on disk before it is
/// acknowledged) holds while the database answers; a node that dies while
/// its database is away loses what it kept.
struct Unstored {
    items: Vec<(i64, Item)>,
    next_try: Instant,
    wait: Duration,
    /// The head the audit log would have if the last failed try had in fact
    /// committed (its answer lost), and how many of `items` that try held.
    /// A try that wrote no audit row leaves none: storing its writes again
    /// is harmless (meeting state is set, not added to, and kept chat
    /// messages are numbered: a number stored is not stored again).
    maybe_landed: Option<(AuditHead, usize)>,
}

/// Kept writes stored per transaction when the database is back.
const RETRY_CHUNK: usize = 500;

/// What one try of a batch did (a batch may run twice: the last run's).
#[derive(Default)]
struct Tried {
    outcome: std::cell::Cell<Option<TryOutcome>>,
    /// Writes that failed alone, said after the batch.
    problems: std::cell::RefCell<Vec<String>>,
}

impl Tried {
    fn reset(&self) {
        self.outcome.set(None);
        self.problems.borrow_mut().clear();
    }

    fn finish(&self, o: TryOutcome) {
        self.outcome.set(Some(o));
    }

    fn problem(&self, p: String) {
        self.problems.borrow_mut().push(p);
    }

    /// Log the writes that failed alone, once the batch is done.
    fn say(&self) {
        for problem in self.problems.take() {
            error!("{problem}");
        }
    }
}

struct TryOutcome {
    /// The last failed try had committed after all.
    landed: bool,
    /// Whether that could be told.
    clean: bool,
    /// Kept writes skipped (in by that commit), and the end of those tried.
    skip: usize,
    end: usize,
    /// The new writes were in this try (every kept one before them was).
    with_new: bool,
    /// The log's head after this try's appends, if it appended.
    reached: Option<AuditHead>,
}

impl Unstored {
    fn new() -> Unstored {
        Unstored {
            items: Vec::new(),
            next_try: Instant::now(),
            wait: Duration::from_millis(500),
            maybe_landed: None,
        }
    }

    /// Whether the kept writes may be tried now (new ones wait behind them).
    fn due(&self) -> bool {
        Instant::now() >= self.next_try
    }

    /// A try failed: wait longer before the next.
    fn failed(&mut self) {
        self.next_try = Instant::now() + self.wait;
        self.wait = (self.wait * 2).min(RETRY_AT_MOST);
    }

    fn stored(&mut self) {
        self.items.clear();
        self.maybe_landed = None;
        self.wait = Duration::from_millis(500);
        self.next_try = Instant::now();
    }

    /// Keep `items`, made at `at`; how many did not fit.
    fn keep(&mut self, at: i64, items: Vec<Item>) -> usize {
        let room = MAX_UNSTORED.saturating_sub(self.items.len());
        let lost = items.len().saturating_sub(room);
        self.items
            .extend(items.into_iter().take(room).map(|i| (at, i)));
        lost
    }
}

#[derive(Debug, Clone)]
pub struct AuditEntry {
    pub meeting: String,
    pub actor: String,
    pub subject: String,
    pub event: String,
    pub outcome: String,
    pub detail: String,
}

impl AuditEntry {
    /// A refused join, which may be tallied rather than written one by one.
    pub fn is_refusal(&self) -> bool {
        self.event == "join" && self.outcome.starts_with("refused")
    }
}

/// One thing to store.
#[derive(Debug, Clone)]
pub enum Item {
    Audit(AuditEntry),
    Remember {
        meeting: String,
        change: Change,
    },
    /// A host ended the meeting.
    End {
        meeting: String,
    },
    /// Places held for the people in a meeting, written as they change (so
    /// that they come back as themselves after a crash): `hold` (participant
    /// id, JSON) replaces what was held for each; those in `forget` left.
    Places {
        meeting: String,
        hold: Vec<(String, String)>,
        forget: Vec<String>,
    },
    /// The places held for a running meeting are still current.
    PlacesCurrent {
        meeting: String,
    },
}

impl Item {
    /// The meeting whose state (not its audit log) this writes, if it does.
    fn meeting_state_of(&self) -> Option<&str> {
        match self {
            Item::Audit(_) => None,
            Item::Remember { meeting, .. }
            | Item::End { meeting }
            | Item::Places { meeting, .. }
            | Item::PlacesCurrent { meeting } => Some(meeting),
        }
    }
}

enum Write {
    Items {
        items: Vec<Item>,
        /// Told whether the items are on disk.
        done: Option<oneshot::Sender<bool>>,
    },
    /// Close every refusal tally and checkpoint now (shutdown, tests).
    Flush(oneshot::Sender<()>),
    /// Apply retention here, between this writer's own transactions, so the
    /// purge's rows are this server's and its checkpoint dated in order.
    Purge {
        retention: convene_storage::Retention,
        live: std::collections::HashSet<String>,
        reply: oneshot::Sender<Result<convene_storage::PurgeReport, String>>,
    },
}

#[derive(Debug, Clone)]
pub struct WriterOptions {
    /// Writes the queue holds before senders wait.
    pub queue: usize,
    /// Refusals are tallied per this much wall-clock time.
    pub refusal_window: Duration,
    /// Where checkpoints are appended (none: only logged).
    pub checkpoints: Option<PathBuf>,
    /// The key checkpoints are made with (none: unkeyed).
    pub key: Option<AuditKey>,
    /// A checkpoint is made when the log changed and this long has passed…
    pub checkpoint_every: Duration,
    /// …or this many rows were added since the last one.
    pub checkpoint_rows: i64,
    /// The key kept chat is sealed with (none: chat is not stored, and a
    /// level that keeps chat is refused at start).
    pub chat_key: Option<Arc<ChatKey>>,
}

impl Default for WriterOptions {
    fn default() -> Self {
        WriterOptions {
            queue: 1024,
            refusal_window: Duration::from_secs(60),
            checkpoints: None,
            key: None,
            checkpoint_every: Duration::from_secs(60),
            checkpoint_rows: 1000,
            chat_key: None,
        }
    }
}

/// Counters, for monitoring.
#[derive(Debug, Default)]
pub struct WriterStats {
    /// Times a write found the queue full and had to wait.
    pub queue_full: AtomicU64,
    /// Refusals counted in a tally instead of written one by one.
    pub refusals_tallied: AtomicU64,
    /// Refusals not recorded at all (too many tallies open).
    pub refusals_dropped: AtomicU64,
    /// Transactions committed, and queued writes they held.
    pub commits: AtomicU64,
    pub writes: AtomicU64,
    /// Writes whose transaction failed the first time they were tried
    /// (kept and tried again: see [`Unstored`]).
    pub failed: AtomicU64,
    /// Writes kept now, waiting for the database.
    pub unstored: AtomicU64,
    /// Writes given up: more than [`MAX_UNSTORED`] waited at once.
    pub lost: AtomicU64,
}

#[derive(Clone)]
pub struct Writer {
    tx: mpsc::Sender<Write>,
    shared: Arc<Shared>,
}

struct Shared {
    tallies: Mutex<Tallies>,
    stats: WriterStats,
    /// Meetings another node hosts now (this one's hold ran out): what this
    /// node kept for them while the database was away is not written over
    /// what that node has written since (their audit rows still are).
    moved: Mutex<Moved>,
}

/// Meetings found hosted elsewhere, each with the time from which this
/// node's writes for it count again (none while it is elsewhere: the
/// meeting's last writes here, as it closes, are set aside too; the time it
/// started here again if it came back), and when it was found elsewhere.
/// Once nothing is kept, a meeting that came back is forgotten, and one
/// still elsewhere after [`AWAY_REMEMBERED`] (its task here has long
/// closed); one that moved a moment ago is not: its task may still be
/// closing here, and its last writes be kept again if the database goes
/// away again.
#[derive(Default, Clone)]
struct Moved(std::collections::HashMap<String, (i64, i64)>);

/// How long a meeting found hosted elsewhere is remembered as such (see
/// [`Moved`]): far longer than a meeting's task takes to close.
const AWAY_REMEMBERED: i64 = 10 * 60 * 1000;

impl Shared {
    fn moved(&self) -> std::sync::MutexGuard<'_, Moved> {
        self.moved.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Moved {
    fn away(&mut self, meeting: &str, at: i64) {
        self.0.insert(meeting.to_string(), (i64::MAX, at));
    }

    fn back(&mut self, meeting: &str, at: i64) {
        if let Some((from, _)) = self.0.get_mut(meeting) {
            *from = at;
        }
    }

    /// Whether a write for `meeting` kept at `then` is set aside.
    fn sets_aside(&self, meeting: &str, then: i64) -> bool {
        self.0.get(meeting).is_some_and(|&(from, _)| then < from)
    }

    /// Nothing is kept any more, at `now`: forget what can no longer set
    /// anything aside.
    fn nothing_kept(&mut self, now: i64) {
        self.0.retain(|_, &mut (from, found)| {
            from == i64::MAX && now.saturating_sub(found) < AWAY_REMEMBERED
        });
    }
}

impl Writer {
    pub fn start(storage: Arc<Storage>, options: WriterOptions) -> Writer {
        let (tx, rx) = mpsc::channel::<Write>(options.queue.max(1));
        let shared = Arc::new(Shared {
            tallies: Mutex::new(Tallies::new(options.refusal_window)),
            stats: WriterStats::default(),
            moved: Mutex::default(),
        });
        let sh = shared.clone();
        std::thread::Builder::new()
            .name("convene-writer".into())
            .spawn(move || run(storage, rx, sh, options))
            .expect("writer thread starts");
        Writer { tx, shared }
    }

    /// Purge what `retention` no longer keeps, sparing the meetings in `live`;
    /// a checkpoint follows when anything went.
    pub async fn purge(
        &self,
        retention: convene_storage::Retention,
        live: std::collections::HashSet<String>,
    ) -> Result<convene_storage::PurgeReport, String> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Write::Purge {
                retention,
                live,
                reply,
            })
            .await
            .map_err(|_| "the audit writer has stopped".to_string())?;
        answer
            .await
            .map_err(|_| "the audit writer has stopped".to_string())?
    }

    /// Another node hosts `meeting` now: see [`Shared::moved`].
    pub fn moved_away(&self, meeting: &str) {
        self.shared
            .moved()
            .away(meeting, convene_storage::unix_millis());
    }

    /// `meeting` starts on this node: if it had moved away, what is kept
    /// for it from now on is written as usual.
    pub fn hosted_here(&self, meeting: &str) {
        self.shared
            .moved()
            .back(meeting, convene_storage::unix_millis());
    }

    pub fn stats(&self) -> &WriterStats {
        &self.shared.stats
    }

    /// The writer thread still takes writes (readiness checks).
    pub fn is_running(&self) -> bool {
        !self.tx.is_closed()
    }

    /// Record an event without waiting for it to be stored. Refused joins are
    /// tallied (see the module's documentation); anything else is queued and
    /// never dropped.
    pub fn record(&self, entry: AuditEntry) {
        if entry.is_refusal() {
            self.refused(entry);
        } else {
            self.enqueue(vec![Item::Audit(entry)]);
        }
    }

    /// Store `items` and return once they are on disk (true), or failed to be
    /// stored (false, logged). Waits for room in the queue if it is full.
    pub async fn commit(&self, items: Vec<Item>) -> bool {
        let (done, stored) = oneshot::channel();
        let write = Write::Items {
            items,
            done: Some(done),
        };
        let sent = match self.tx.try_send(write) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(write)) => {
                self.shared.stats.queue_full.fetch_add(1, Ordering::Relaxed);
                self.tx.send(write).await.is_ok()
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        };
        if !sent {
            error!("the writer has stopped: a write was not stored");
            return false;
        }
        stored.await.unwrap_or(false)
    }

    /// Close every refusal tally and write a checkpoint if the log changed;
    /// returns once done.
    pub async fn flush(&self) {
        let (done, flushed) = oneshot::channel();
        if self.tx.send(Write::Flush(done)).await.is_ok() {
            let _ = flushed.await;
        }
    }

    fn enqueue(&self, items: Vec<Item>) {
        let write = Write::Items { items, done: None };
        match self.tx.try_send(write) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(write)) => {
                self.shared.stats.queue_full.fetch_add(1, Ordering::Relaxed);
                let tx = self.tx.clone();
                match tokio::runtime::Handle::try_current() {
                    Ok(rt) => {
                        rt.spawn(async move {
                            let _ = tx.send(write).await;
                        });
                    }
                    Err(_) => {
                        let _ = tx.blocking_send(write);
                    }
                }
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                error!("the writer has stopped: a write was not stored")
            }
        }
    }

    fn refused(&self, entry: AuditEntry) {
        let stats = &self.shared.stats;
        let mut tallies = self
            .shared
            .tallies
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        match tallies.count(&entry, convene_storage::unix_millis()) {
            Tally::Counted => {
                stats.refusals_tallied.fetch_add(1, Ordering::Relaxed);
            }
            Tally::Dropped => {
                stats.refusals_dropped.fetch_add(1, Ordering::Relaxed);
            }
            Tally::First(key) => {
                let write = Write::Items {
                    items: vec![Item::Audit(entry)],
                    done: None,
                };
                // Never wait: if the queue is full, the minute's row counts it.
                if self.tx.try_send(write).is_ok() {
                    tallies.first_written(&key);
                } else {
                    stats.refusals_tallied.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct TallyKey {
    window: i64,
    meeting: String,
    actor: String,
    event: String,
    outcome: String,
}

struct Open {
    first: AuditEntry,
    count: u64,
    first_written: bool,
}

enum Tally {
    First(TallyKey),
    Counted,
    Dropped,
}

struct Tallies {
    window_ms: i64,
    open: HashMap<TallyKey, Open>,
    dropped: u64,
}

impl Tallies {
    fn new(window: Duration) -> Tallies {
        Tallies {
            window_ms: (window.as_millis() as i64).max(1),
            open: HashMap::new(),
            dropped: 0,
        }
    }

    fn count(&mut self, e: &AuditEntry, now_ms: i64) -> Tally {
        let key = TallyKey {
            window: now_ms.div_euclid(self.window_ms),
            meeting: e.meeting.clone(),
            actor: e.actor.clone(),
            event: e.event.clone(),
            outcome: e.outcome.clone(),
        };
        if let Some(open) = self.open.get_mut(&key) {
            open.count += 1;
            return Tally::Counted;
        }
        if self.open.len() >= MAX_OPEN_TALLIES {
            self.dropped += 1;
            return Tally::Dropped;
        }
        self.open.insert(
            key.clone(),
            Open {
                first: e.clone(),
                count: 1,
                first_written: false,
            },
        );
        Tally::First(key)
    }

    fn first_written(&mut self, key: &TallyKey) {
        if let Some(open) = self.open.get_mut(key) {
            open.first_written = true;
        }
    }

    /// The rows for tallies whose window is over (all of them if `all`), and
    /// the number of refusals dropped since last asked.
    fn close(&mut self, now_ms: i64, all: bool) -> (Vec<AuditEntry>, u64) {
        let current = now_ms.div_euclid(self.window_ms);
        let closed: Vec<TallyKey> = self
            .open
            .keys()
            .filter(|k| all || k.window < current)
            .cloned()
            .collect();
        let mut rows = Vec::new();
        for key in closed {
            let Some(t) = self.open.remove(&key) else {
                continue;
            };
            let from = crate::utc::utc(key.window * self.window_ms);
            let secs = self.window_ms / 1000;
            let detail = match (t.first_written, t.count) {
                (true, 1) => continue,
                (false, 1) => t.first.detail.clone(),
                (true, n) => {
                    format!(
                        "and {} more like it in the {secs} s from {from} ({n} in all)",
                        n - 1
                    )
                }
                (false, n) => format!(
                    "{n} like it in the {secs} s from {from}, none written singly \
                     (the log was busy) ({n} in all)"
                ),
            };
            rows.push(AuditEntry { detail, ..t.first });
        }
        (rows, std::mem::take(&mut self.dropped))
    }
}

fn run(
    storage: Arc<Storage>,
    mut rx: mpsc::Receiver<Write>,
    shared: Arc<Shared>,
    options: WriterOptions,
) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("the writer's timer starts");
    let mut cp = Checkpointer::start(&storage, &options);
    // The log's head as this server last left it: anything else found there
    // was written by something else.
    let mut expected = storage.audit_head().ok();
    let mut unstored = Unstored::new();
    loop {
        let mut writes = Vec::new();
        let mut stopping = false;
        // A backlog the database takes again is stored without pause.
        let wait = if !unstored.items.is_empty() && unstored.due() {
            Duration::ZERO
        } else {
            TICK
        };
        match rt.block_on(async { tokio::time::timeout(wait, rx.recv()).await }) {
            Ok(Some(w)) => writes.push(w),
            Ok(None) => stopping = true,
            Err(_) => {}
        }
        while writes.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(w) => writes.push(w),
                Err(_) => break,
            }
        }
        let mut items = Vec::new();
        let (mut dones, mut flushes, mut purges) = (Vec::new(), Vec::new(), Vec::new());
        for w in writes {
            match w {
                Write::Items { items: i, done } => {
                    items.extend(i);
                    dones.extend(done);
                }
                Write::Flush(f) => flushes.push(f),
                Write::Purge {
                    retention,
                    live,
                    reply,
                } => purges.push((retention, live, reply)),
            }
        }
        let closing = stopping || !flushes.is_empty();
        let (tallied, dropped) = shared
            .tallies
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .close(convene_storage::unix_millis(), closing);
        if dropped > 0 {
            warn!(
                dropped,
                "refused joins not recorded: too many different refusers at once"
            );
        }
        let mut extra = tallied;
        if dropped > 0 {
            extra.push(AuditEntry {
                meeting: "-".into(),
                actor: "system".into(),
                subject: "-".into(),
                event: "audit".into(),
                outcome: "refusals dropped".into(),
                detail: format!(
                    "{dropped} refused joins were not recorded: more than {MAX_OPEN_TALLIES} \
                     different refusers at once"
                ),
            });
        }
        items.extend(extra.into_iter().map(Item::Audit));
        let kept = !unstored.items.is_empty();
        if !items.is_empty() || (kept && unstored.due()) {
            let at = convene_storage::unix_millis().max(cp.floor);
            let n = items.len();
            let mut stored_new = false;
            // Stored a chunk of the backlog; the new writes wait their turn
            // (not a failure).
            let mut behind = false;
            if !kept || unstored.due() {
                let tried = Tried::default();
                let moved = shared.moved().clone();
                let result = storage.write_batch(|b| {
                    tried.reset();
                    check_head(b, expected.as_ref(), at, storage.is_shared(), &tried);
                    // The last try's answer was lost (its commit went out,
                    // and then nothing): if it landed, its writes are in.
                    let landed = match &unstored.maybe_landed {
                        None => Ok(false),
                        Some((head, _)) => b.audit_continues(head),
                    };
                    let skip = match (&landed, &unstored.maybe_landed) {
                        (Ok(true), Some((_, covered))) => *covered,
                        _ => 0,
                    };
                    // A few hundred kept writes per transaction: a long
                    // backlog does not hold the log's write lock (and every
                    // other node's appends) for long.
                    let end = unstored.items.len().min(skip + RETRY_CHUNK);
                    let with_new = end == unstored.items.len();
                    let start = b.audit_head().ok();
                    for (then, item) in &unstored.items[skip.min(end)..end] {
                        if item
                            .meeting_state_of()
                            .is_some_and(|m| moved.sets_aside(m, *then))
                        {
                            continue;
                        }
                        store(
                            b,
                            &late(item, *then),
                            at,
                            options.chat_key.as_deref(),
                            &tried,
                        );
                    }
                    if with_new {
                        for item in &items {
                            // A moved meeting's task closing here does not
                            // write its state over the other node's.
                            if item
                                .meeting_state_of()
                                .is_some_and(|m| moved.sets_aside(m, at))
                            {
                                continue;
                            }
                            store(b, item, at, options.chat_key.as_deref(), &tried);
                        }
                    }
                    let head = b.audit_head();
                    let reached = match (&start, &head) {
                        (Some(s), Ok(h)) if h.rows > s.rows => Some(h.clone()),
                        _ => None,
                    };
                    tried.finish(TryOutcome {
                        landed: matches!(landed, Ok(true)),
                        clean: landed.is_ok(),
                        skip,
                        end,
                        with_new,
                        reached,
                    });
                    head
                });
                // Said once, by the run that counts (a batch may run twice).
                tried.say();
                let outcome = tried.outcome.take();
                match (result, outcome) {
                    (Ok(head), Some(o)) => {
                        if o.landed {
                            info!(
                                writes = o.skip,
                                "the writes of a commit whose answer was lost had been stored"
                            );
                        }
                        let from_backlog = o.end.min(unstored.items.len());
                        if from_backlog > o.skip {
                            info!(
                                writes = from_backlog - o.skip,
                                left = unstored.items.len() - from_backlog,
                                "stored writes kept while the database was away"
                            );
                        }
                        unstored.items.drain(..from_backlog);
                        unstored.maybe_landed = None;
                        if unstored.items.is_empty() {
                            unstored.stored();
                            shared.moved().nothing_kept(at);
                        }
                        cp.floor = at;
                        // Committed even when the head could not be read after.
                        expected = head.ok().or_else(|| storage.audit_head().ok());
                        stored_new = o.with_new;
                        behind = !o.with_new;
                    }
                    (result, outcome) => {
                        let e = match result {
                            Err(e) => e.to_string(),
                            Ok(_) => "the batch did not run".into(),
                        };
                        if let Some(o) = outcome {
                            if o.landed {
                                unstored.items.drain(..o.skip.min(unstored.items.len()));
                            }
                            if o.clean {
                                // Whether this one landed is unknown if its
                                // COMMIT went unanswered: checked next time.
                                let covered = (o.end - o.skip) + if o.with_new { n } else { 0 };
                                unstored.maybe_landed = o.reached.map(|h| (h, covered));
                            }
                        }
                        unstored.failed();
                        error!(
                            "could not store {} audit and meeting writes (kept, and tried again within {} s): {e}",
                            n + unstored.items.len(),
                            unstored.wait.as_secs()
                        );
                        expected = storage.audit_head().ok();
                    }
                }
            }
            // Not stored with this try (or not tried: older ones wait their
            // turn): kept, after the older ones.
            if !stored_new && n > 0 {
                if !behind {
                    shared.stats.failed.fetch_add(n as u64, Ordering::Relaxed);
                }
                let lost = unstored.keep(at, std::mem::take(&mut items));
                if lost > 0 {
                    error!(
                        lost,
                        "audit and meeting writes given up: {MAX_UNSTORED} already wait for the database"
                    );
                    shared.stats.lost.fetch_add(lost as u64, Ordering::Relaxed);
                }
            }
            shared
                .stats
                .unstored
                .store(unstored.items.len() as u64, Ordering::Relaxed);
            if stored_new {
                shared.stats.commits.fetch_add(1, Ordering::Relaxed);
                shared.stats.writes.fetch_add(n as u64, Ordering::Relaxed);
            }
            for d in dones {
                let _ = d.send(stored_new);
            }
        }
        if stopping && !unstored.items.is_empty() {
            error!(
                writes = unstored.items.len(),
                "stopping with audit and meeting writes the database never took: they are lost"
            );
        }
        let mut purged = false;
        for (retention, live, reply) in purges {
            // Dated after everything this writer wrote, as its own rows are.
            let at = convene_storage::unix_millis().max(cp.floor);
            let result = storage
                .purge(&retention, at, &live, options.key.as_ref(), false)
                .map_err(|e| e.to_string());
            if matches!(&result, Ok(r) if !r.is_empty()) {
                purged = true;
                cp.floor = at;
                expected = storage.audit_head().ok();
            }
            let _ = reply.send(result);
        }
        if let Some(head) = &expected {
            cp.maybe(head, closing || purged);
        }
        for f in flushes {
            let _ = f.send(());
        }
        if stopping {
            break;
        }
    }
}

/// Someone wrote to the audit log behind this server's back: say so, in the
/// log itself (the row chains onto what was found) and loudly.
///
/// On a `shared` database the other nodes append too: there, what this
/// server wrote must still be there, under whatever followed.
fn check_head(
    b: &mut Batch<'_>,
    expected: Option<&AuditHead>,
    at: i64,
    shared: bool,
    tried: &Tried,
) {
    let (Some(expected), Ok(found)) = (expected, b.audit_head()) else {
        return;
    };
    if *expected == found {
        return;
    }
    if shared && found.rows > expected.rows && b.audit_continues(expected).unwrap_or(true) {
        return;
    }
    error!(
        expected = expected.rows,
        found = found.rows,
        "the audit log was changed by something other than this server; run `convene audit verify`"
    );
    store_audit(
        b,
        &AuditEntry {
            meeting: "-".into(),
            actor: "system".into(),
            subject: "-".into(),
            event: "audit".into(),
            outcome: "changed elsewhere".into(),
            detail: format!(
                "this server last left the log at row {} (hash {}); it found row {} (hash {})",
                expected.rows, expected.hash, found.rows, found.hash
            ),
        },
        at,
        tried,
    );
}

/// `item`, made at `then` and stored later: an audit row says when it
/// happened.
fn late(item: &Item, then: i64) -> std::borrow::Cow<'_, Item> {
    match item {
        Item::Audit(e) => {
            let when = format!(
                "happened at {}, stored later (the database was away)",
                crate::utc::utc(then)
            );
            let detail = if e.detail.is_empty() {
                when
            } else {
                format!("{}; {when}", e.detail)
            };
            std::borrow::Cow::Owned(Item::Audit(AuditEntry {
                detail,
                ..e.clone()
            }))
        }
        other => std::borrow::Cow::Borrowed(other),
    }
}

fn store_audit(b: &mut Batch<'_>, e: &AuditEntry, at: i64, tried: &Tried) {
    let ev = AuditEvent {
        meeting: &e.meeting,
        actor: &e.actor,
        subject: &e.subject,
        event: &e.event,
        outcome: &e.outcome,
        detail: &e.detail,
    };
    if let Err(err) = b.audit(ev, at) {
        // The event and outcome only: the row names people and its meeting.
        tried.problem(format!(
            "audit log write failed ({} {}): {err}",
            e.event, e.outcome
        ));
    }
}

fn store(b: &mut Batch<'_>, item: &Item, at: i64, chat_key: Option<&ChatKey>, tried: &Tried) {
    match item {
        Item::Audit(e) => store_audit(b, e, at, tried),
        Item::Remember { meeting, change } => {
            if let Err(err) = remember(b, meeting, change, chat_key) {
                tried.problem(format!(
                    "meeting {}: could not store {change:?}: {err}",
                    crate::logging::meeting_tag(meeting)
                ));
            }
        }
        Item::End { meeting } => {
            if let Err(err) = b.end_meeting(meeting) {
                tried.problem(format!(
                    "meeting {}: could not mark the meeting ended: {err}",
                    crate::logging::meeting_tag(meeting)
                ));
            }
        }
        Item::Places {
            meeting,
            hold,
            forget,
        } => {
            let at = convene_storage::unix_millis();
            let held = hold
                .iter()
                .try_for_each(|(who, data)| b.hold_place(meeting, who, data, at))
                .and_then(|()| {
                    forget
                        .iter()
                        .try_for_each(|who| b.forget_place(meeting, who))
                });
            if let Err(err) = held {
                tried.problem(format!(
                    "meeting {}: could not hold places: {err}",
                    crate::logging::meeting_tag(meeting)
                ));
            }
        }
        Item::PlacesCurrent { meeting } => {
            if let Err(err) = b.places_current(meeting, convene_storage::unix_millis()) {
                tried.problem(format!(
                    "meeting {}: could not refresh places: {err}",
                    crate::logging::meeting_tag(meeting)
                ));
            }
        }
    }
}

fn remember(
    b: &Batch<'_>,
    meeting: &str,
    change: &Change,
    chat_key: Option<&ChatKey>,
) -> Result<(), StorageError> {
    match change {
        Change::Settings(s) => {
            let json = serde_json::to_string(s).map_err(|e| StorageError::Export(e.to_string()))?;
            b.update_settings(meeting, &json)
        }
        Change::Locked(locked) => b.set_locked(meeting, *locked),
        Change::Grant { key, role } => {
            let role = match role {
                convene_meeting::access::Role::Participant => None,
                r => Some(role_name(*r)),
            };
            b.set_grant(meeting, key, role.as_deref())
        }
        Change::Bar { key } => b.bar(meeting, key),
        Change::Level(level) => b.set_level(meeting, level),
        Change::Passcode(hash) => b.set_passcode_hash(meeting, hash.as_deref()),
        Change::Chat { message, days } => {
            let Some(key) = chat_key else {
                return Err(StorageError::Export(
                    "a level keeps chat but this server has no chat key".into(),
                ));
            };
            let json =
                serde_json::to_vec(message).map_err(|e| StorageError::Export(e.to_string()))?;
            let sent = i64::try_from(message.sent_at).unwrap_or(i64::MAX);
            let until = sent.saturating_add(i64::from(*days) * 24 * 60 * 60 * 1000);
            b.keep_chat(key, meeting, message.id as i64, sent, until, &json)
        }
    }
}

pub fn role_name(role: convene_meeting::access::Role) -> String {
    serde_json::to_value(role)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// Makes checkpoints of the log's head: to the log (info, target
/// `convene::audit`) and appended to the checkpoint file.
struct Checkpointer {
    path: Option<PathBuf>,
    key: Option<AuditKey>,
    every: Duration,
    rows: i64,
    last: Option<Checkpoint>,
    last_made: Instant,
    /// No row is dated before this: the newest checkpoint's time, so that a
    /// row after a checkpoint is never dated before it (even if the clock
    /// steps back), which lets `audit verify` spot rows appended later.
    floor: i64,
}

impl Checkpointer {
    fn start(storage: &Storage, o: &WriterOptions) -> Checkpointer {
        let mut cp = Checkpointer {
            path: o.checkpoints.clone(),
            key: o.key.clone(),
            every: o.checkpoint_every,
            rows: o.checkpoint_rows.max(1),
            last: None,
            last_made: Instant::now(),
            floor: 0,
        };
        match &cp.key {
            Some(k) => info!(key = %k.id(), "audit checkpoints are keyed"),
            None => warn!(
                "no audit key (--audit-key-file): audit checkpoints are unkeyed; they catch \
                 damage, but prove nothing against whoever can write both the database and \
                 the checkpoints"
            ),
        }
        let newest = match &cp.path {
            None => None,
            Some(p) => match checkpoint::read_from(p) {
                Ok((cps, _)) => cps.into_iter().max_by_key(|c| (c.rows, c.at)),
                Err(e) => {
                    error!("audit checkpoints {}: {e}", p.display());
                    None
                }
            },
        };
        let Ok(head) = storage.audit_head() else {
            return cp;
        };
        if let Some(n) = &newest {
            cp.floor = n.at;
            let problem = if n.rows > head.rows {
                Some(format!(
                    "the newest checkpoint counted {} rows; the log has {}",
                    n.rows, head.rows
                ))
            } else {
                match storage.audit_row_hash(n.rows) {
                    Ok(h) if h.as_deref() == Some(n.head.as_str()) || n.rows == 0 => None,
                    _ => Some(format!(
                        "row {} does not have the hash the newest checkpoint has",
                        n.rows
                    )),
                }
            };
            let uncovered = head.rows > n.rows;
            if let Some(problem) = &problem {
                error!("the audit log does not match its checkpoints ({problem}): run `convene audit verify`");
            } else if uncovered {
                warn!(
                    "audit rows {} to {} are not covered by a checkpoint (the server stopped \
                     before making one, or they were added since); covering them now",
                    n.rows + 1,
                    head.rows
                );
            }
            if problem.is_some() || uncovered {
                let detail = problem.unwrap_or_else(|| {
                    format!("rows {} to {} were not checkpointed", n.rows + 1, head.rows)
                });
                let at = convene_storage::unix_millis().max(cp.floor);
                let found = AuditEntry {
                    meeting: "-".into(),
                    actor: "system".into(),
                    subject: "-".into(),
                    event: "audit".into(),
                    outcome: "found at start".into(),
                    detail,
                };
                let tried = Tried::default();
                let _ = storage.write_batch(|b| store_audit(b, &found, at, &tried));
                tried.say();
            }
            cp.last = Some(n.clone());
        }
        if let Ok(head) = storage.audit_head() {
            cp.maybe(&head, true);
        }
        cp
    }

    fn maybe(&mut self, head: &AuditHead, now: bool) {
        let since = match &self.last {
            Some(c) if c.rows == head.rows && c.head == head.hash => return,
            Some(c) => head.rows - c.rows,
            None => head.rows,
        };
        if !(now || since >= self.rows || self.last_made.elapsed() >= self.every) {
            return;
        }
        if head.rows == 0 {
            return;
        }
        let at = convene_storage::unix_millis().max(self.floor);
        let cp = Checkpoint::new(head, at, self.key.as_ref());
        info!(target: "convene::audit", checkpoint = %cp.to_json(), "audit checkpoint");
        if let Some(p) = &self.path {
            if let Err(e) = checkpoint::append_to(p, &cp) {
                error!(
                    "could not append to the audit checkpoints {}: {e}",
                    p.display()
                );
            }
        }
        self.floor = at;
        self.last = Some(cp);
        self.last_made = Instant::now();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(meeting: &str, client: &str, outcome: &str) -> AuditEntry {
        AuditEntry {
            meeting: meeting.into(),
            actor: format!("client {client}"),
            subject: "-".into(),
            event: "join".into(),
            outcome: outcome.into(),
            detail: String::new(),
        }
    }

    #[test]
    fn a_meeting_that_moved_sets_aside_only_what_was_kept_before() {
        let mut moved = Moved::default();
        moved.back("m1", 500);
        assert!(!moved.sets_aside("m1", 400), "never moved");
        moved.away("m1", 800);
        assert!(moved.sets_aside("m1", 900), "kept before the move");
        assert!(moved.sets_aside("m1", 5_000), "kept as it closed here");
        moved.back("m1", 6_000);
        assert!(moved.sets_aside("m1", 5_999), "kept before it came back");
        assert!(!moved.sets_aside("m1", 6_000), "kept after it came back");
        assert!(!moved.sets_aside("m2", 900), "another meeting");
        moved.away("m1", 6_500);
        assert!(moved.sets_aside("m1", 7_000), "moved again");
    }

    #[test]
    fn a_meeting_that_moved_a_moment_ago_is_remembered_when_nothing_is_kept() {
        let mut moved = Moved::default();
        moved.away("closing", 10_000);
        moved.away("came-back", 1_000);
        moved.back("came-back", 2_000);
        moved.away("long-gone", 1_000);
        moved.nothing_kept(10_000 + 1_000);
        // Still closing here when the database goes away again: its last
        // writes are set aside as before.
        assert!(moved.sets_aside("closing", 10_500));
        assert!(!moved.0.contains_key("came-back"), "nothing to set aside");
        assert!(moved.0.contains_key("long-gone"));
        moved.nothing_kept(1_000 + AWAY_REMEMBERED);
        assert!(
            !moved.0.contains_key("long-gone"),
            "its task here has closed"
        );
        assert!(moved.0.contains_key("closing"));
    }

    /// The refusals a row stands for: itself, or those its tally adds.
    fn refusals_in(detail: &str) -> u64 {
        let number = |s: &str| s.split(' ').next().and_then(|n| n.parse().ok());
        if let Some(more) = detail.strip_prefix("and ") {
            return number(more).unwrap(); // the first was written singly
        }
        detail
            .rsplit_once('(')
            .and_then(|(_, t)| t.strip_suffix(" in all)"))
            .and_then(number)
            .unwrap_or(1)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_flood_of_refusals_writes_a_few_rows_that_count_them_all() {
        let storage = Arc::new(Storage::in_memory().unwrap());
        let writer = Writer::start(
            storage.clone(),
            WriterOptions {
                queue: 16,
                refusal_window: Duration::from_millis(300),
                ..Default::default()
            },
        );
        let started = Instant::now();
        let mut sent = HashMap::new();
        for i in 0..20_000u64 {
            let (client, outcome) = match i % 10 {
                0 => ("10.0.0.2", "refused: locked"),
                1 => ("10.0.0.3", "refused: locked"),
                _ => ("10.0.0.1", "refused: wrong passcode"),
            };
            writer.record(refusal("m1", client, outcome));
            *sent.entry((client, outcome)).or_insert(0u64) += 1;
        }
        // Host actions are never dropped, even with the refusals in the queue.
        let host = AuditEntry {
            actor: "p1".into(),
            outcome: "locked".into(),
            event: "lock".into(),
            ..refusal("m1", "-", "")
        };
        assert!(writer.commit(vec![Item::Audit(host)]).await);
        let windows = started.elapsed().as_millis() as u64 / 300 + 2;
        writer.flush().await;

        let rows = storage.audit_records(None).unwrap();
        assert!(
            rows.len() as u64 <= 1 + 3 * 2 * windows,
            "{} rows for 20 000 refusals in {windows} windows",
            rows.len()
        );
        let mut counted = HashMap::new();
        for r in rows.iter().filter(|r| r.event == "join") {
            let client = r.actor.trim_start_matches("client ").to_string();
            *counted.entry((client, r.outcome.clone())).or_insert(0u64) += refusals_in(&r.detail);
        }
        for ((client, outcome), n) in sent {
            assert_eq!(
                counted.get(&(client.to_string(), outcome.to_string())),
                Some(&n),
                "{client} {outcome}"
            );
        }
        assert!(rows.iter().any(|r| r.event == "lock"));
        assert_eq!(writer.stats().refusals_dropped.load(Ordering::Relaxed), 0);
        assert!(storage.verify_audit().unwrap().is_ok());
    }

    /// Nodes sharing one PostgreSQL append to one log: another node's rows
    /// are not tampering, but a row of this node's changed still is.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn another_nodes_appends_are_not_taken_for_tampering() {
        let url = convene_storage::testing::postgres_url();
        let event = |meeting: &str, actor: &str| AuditEntry {
            actor: actor.into(),
            event: "lock".into(),
            outcome: "locked".into(),
            ..refusal(meeting, "-", "")
        };
        let a_store = Arc::new(Storage::connect(&url).unwrap());
        let a = Writer::start(a_store.clone(), WriterOptions::default());
        let b = Writer::start(
            Arc::new(Storage::connect(&url).unwrap()),
            WriterOptions::default(),
        );
        let meeting = convene_storage::new_meeting_id();
        for i in 0..5 {
            assert!(
                a.commit(vec![Item::Audit(event(&meeting, &format!("p{i}")))])
                    .await
            );
            assert!(
                b.commit(vec![Item::Audit(event(&meeting, &format!("p{i}")))])
                    .await
            );
        }
        let alarms = |s: &Storage| {
            s.audit_records(None)
                .unwrap()
                .into_iter()
                .filter(|r| r.outcome == "changed elsewhere")
                .count()
        };
        assert_eq!(alarms(&a_store), 0);
        assert_eq!(a_store.audit_records(Some(&meeting)).unwrap().len(), 10);
        // Someone with the database rewrites the last row node A wrote.
        let b_last = a_store
            .audit_records(Some(&meeting))
            .unwrap()
            .pop()
            .unwrap();
        convene_storage::testing::rewrite_audit_hash(&a_store, b_last.seq - 1);
        assert!(a.commit(vec![Item::Audit(event(&meeting, "p9"))]).await);
        assert_eq!(alarms(&a_store), 1, "A's own row was changed");
    }

    /// A relay to the tests' PostgreSQL that cuts the connection at the next
    /// COMMIT it sees: before it reaches the server (the transaction is
    /// lost), or just after (it commits, and its answer is lost). Returns
    /// the address through it, and the switch (0: pass everything).
    fn commit_cutter(url: &str) -> (String, Arc<std::sync::atomic::AtomicU8>) {
        use std::io::{Read, Write};
        use std::sync::atomic::AtomicU8;
        let field = |k: &str| {
            url.split_whitespace()
                .find_map(|kv| kv.strip_prefix(k))
                .unwrap()
                .to_string()
        };
        let socket = std::path::Path::new(&field("host=")).join(".s.PGSQL.5432");
        let mode = Arc::new(AtomicU8::new(0));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let m = mode.clone();
        std::thread::spawn(move || {
            for tcp in listener.incoming().flatten() {
                let Ok(unix) = std::os::unix::net::UnixStream::connect(&socket) else {
                    continue;
                };
                let (mut from_client, mut to_client) = (tcp.try_clone().unwrap(), tcp);
                let (mut to_server, mut from_server) = (unix.try_clone().unwrap(), unix);
                let mode = m.clone();
                // Set at the cut: nothing more reaches the client.
                let silent = Arc::new(std::sync::atomic::AtomicBool::new(false));
                let hush = silent.clone();
                let (cut_tcp, cut_unix) = (
                    from_client.try_clone().unwrap(),
                    to_server.try_clone().unwrap(),
                );
                std::thread::spawn(move || {
                    let mut buf = [0u8; 16384];
                    while let Ok(n @ 1..) = from_client.read(&mut buf) {
                        let commit = buf[..n].windows(7).any(|w| w == b"COMMIT\0");
                        let cut = if commit {
                            mode.swap(0, Ordering::SeqCst)
                        } else {
                            0
                        };
                        if cut != 0 {
                            hush.store(true, Ordering::SeqCst);
                        }
                        if cut != 1 && to_server.write_all(&buf[..n]).is_err() {
                            break;
                        }
                        if cut != 0 {
                            // Let the server read it before the socket goes.
                            std::thread::sleep(Duration::from_millis(200));
                            let _ = cut_tcp.shutdown(std::net::Shutdown::Both);
                            let _ = cut_unix.shutdown(std::net::Shutdown::Both);
                            break;
                        }
                    }
                });
                std::thread::spawn(move || {
                    let mut buf = [0u8; 16384];
                    while let Ok(n @ 1..) = from_server.read(&mut buf) {
                        if silent.load(Ordering::SeqCst) || to_client.write_all(&buf[..n]).is_err()
                        {
                            break;
                        }
                    }
                });
            }
        });
        (
            format!(
                "host=127.0.0.1 port={port} user={} dbname={}",
                field("user="),
                field("dbname=")
            ),
            mode,
        )
    }

    /// A commit whose answer is lost may have happened: the writer tries
    /// again, and stores what it holds once, not twice; one that did not
    /// happen is stored at the next try.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_commit_whose_answer_was_lost_is_not_stored_twice() {
        let url = convene_storage::testing::postgres_url();
        let (through, cut) = commit_cutter(&url);
        let writer = Writer::start(
            Arc::new(Storage::connect(&through).unwrap()),
            WriterOptions::default(),
        );
        let look = Storage::connect(&url).unwrap();
        let meeting = convene_storage::new_meeting_id();
        let event = |actor: &str| {
            Item::Audit(AuditEntry {
                actor: actor.into(),
                event: "lock".into(),
                outcome: "locked".into(),
                ..refusal(&meeting, "-", "")
            })
        };
        let count = |actor: &str| {
            look.audit_records(Some(&meeting))
                .unwrap()
                .iter()
                .filter(|r| r.actor == actor)
                .count()
        };
        assert!(writer.commit(vec![event("p1")]).await);
        for (mode, actor) in [(2, "p2"), (1, "p3")] {
            cut.store(mode, Ordering::SeqCst);
            assert!(
                !writer.commit(vec![event(actor)]).await,
                "the answer did not come"
            );
            let until = Instant::now() + Duration::from_secs(15);
            while writer.stats().unstored.load(Ordering::Relaxed) > 0 && Instant::now() < until {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            writer.flush().await;
            assert_eq!(
                count(actor),
                1,
                "cut {}: stored once",
                ["", "before", "after"][mode as usize]
            );
        }
        assert_eq!(count("p1"), 1);
        assert!(look.verify_audit().unwrap().is_ok());
    }

    #[test]
    fn too_many_refusers_at_once_are_dropped_and_counted() {
        let mut t = Tallies::new(Duration::from_secs(60));
        for i in 0..MAX_OPEN_TALLIES + 5 {
            let _ = t.count(
                &refusal("m1", &format!("10.1.{}.{}", i / 256, i % 256), "refused: x"),
                0,
            );
        }
        let (rows, dropped) = t.close(60_000, false);
        assert_eq!(dropped, 5);
        // None was written singly, so each tally is written now, as itself.
        assert_eq!(rows.len(), MAX_OPEN_TALLIES);
        assert!(rows.iter().all(|r| r.detail.is_empty()));
    }

    #[test]
    fn times_are_written_in_utc() {
        use crate::utc::utc;
        assert_eq!(utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc(1_764_076_805_120), "2025-11-25T13:20:05Z");
        assert_eq!(utc(951_782_400_000), "2000-02-29T00:00:00Z");
    }
}
