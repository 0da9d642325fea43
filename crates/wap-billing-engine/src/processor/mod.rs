//! The two pull processors: [`EventProcessor`] (the six `/billing/*` feeds) and [`UsageProcessor`] (`/usage`).
//!
//! Both share one loop (docs/protocol/adapter-engine.md §3–§7):
//!
//! 1. Wait for the lease ([`LeaderElector`]); run only while leader. Losing the lease drops whatever is in
//!    flight, including a billing call, at once.
//! 2. A stored halt stops the processor until an operator's `resume` or `skip`.
//! 3. Each cycle drains the processor's feeds in order: fetch from the cursor (`startId` = committed + 1, or
//!    `InitialStartId` for a feed never committed), sort the page, drop ids at or below the cursor, apply each item,
//!    fetch again after every non-empty page, stop at `[]`.
//! 4. After the billing side returned `Ok`, commit the processed record and the cursor in one fenced transaction.
//! 5. Sleep `SyncIntervalMilliseconds` (or `RetrySleepMilliseconds` while an item waits on a dependency).
//!
//! WAP-side errors (fetch failures) are retried with back-off forever; billing-side errors up to
//! `RetryMaxAttempts` times, then the processor halts; state-store errors are retried with back-off (the position is
//! re-read from the store), except a fencing refusal, which ends leadership.

mod events;
mod journal;
mod usage;

use std::collections::HashMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::FutureExt;
use tokio::sync::{watch, Notify};
use tokio::time::{sleep, sleep_until, Instant};
use tracing::Instrument;
use wap_types::{FeedKind, StartId};

use crate::backoff::Backoff;
use crate::clock::{elapsed_between, Clock};
use crate::config::EngineConfig;
use crate::handler::{EventHandler, HandlerError, UsageHandler};
use crate::identity::IdentityMap;
use crate::journal::Delivery;
use crate::lease::{LeaderElector, Leadership, LeaseTimes};
use crate::operator::Operator;
use crate::source::{FeedItem, FeedSource, SourceError, SourceErrorKind};
use crate::status::{HeldEvent, Phase, ProcessorStatus, WaitingEvent};
use crate::store::{
    EventCommit, FeedHold, Fence, HaltReason, HaltStatus, HaltTarget, ProcessedOutcome, ProcessorKind, StateStore,
    StoreError, UnitAttempts,
};

/// The longest a halted processor waits before looking at the store again (an operator may have resumed it from
/// another instance).
const HALT_POLL_MAX: Duration = Duration::from_secs(5);

/// How a feed's drain ended in this cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FeedEnd {
    /// Reached `[]`.
    CaughtUp,
    /// Stopped at a PendingApproval event until the next cycle.
    Held,
    /// Stopped at an item whose handler answered `DependencyNotReady`.
    Waiting,
    /// The processor halted.
    Halted,
}

/// How the attempts on one unit (event or usage batch) ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum UnitEnd {
    Applied,
    Waiting,
    Halted,
    /// The handler named a failing record inside a larger usage batch: split there.
    Split(i64),
}

/// What one billing-side call gets besides its unit: which call it is, the lease generation and its deadline.
#[derive(Debug, Clone)]
pub(crate) struct CallInfo {
    /// 1, 2, … for the unit in this process.
    pub(crate) attempt: u32,
    /// The fencing generation of the term.
    pub(crate) generation: i64,
    /// When the call is cut.
    pub(crate) deadline: Instant,
    /// The fence of the term (identity-map writes by the handler carry it).
    pub(crate) fence: Fence,
}

/// Why a billing-side call did not succeed: the billing system answered (spends attempts), or the engine's own
/// state store failed on the way (an identity-map lookup): never a billing failure, retried like every store
/// error.
#[derive(Debug)]
pub(crate) enum CallError {
    /// The handler's answer.
    Handler(HandlerError),
    /// The state store failed before the billing system was called.
    Store(StoreError),
}

impl From<HandlerError> for CallError {
    fn from(e: HandlerError) -> Self {
        CallError::Handler(e)
    }
}

/// The text of a panic payload.
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a non-text panic payload".to_owned()
    }
}

/// Retry state of one unit, keyed by `(feed, first EventId)`; dropped on commit or halt. Attempts and the start
/// of a dependency wait are saved in the state store ([`StateStore::set_unit_attempts`]) and loaded at the start
/// of every term, so neither a new term nor a restarted process resets them; `calls` counts this process's calls.
#[derive(Debug, Default)]
struct UnitState {
    calls: u32,
    attempts: u32,
    dependency_since: Option<DateTime<Utc>>,
    /// Whether the store holds a row for the unit (saved by [`Processor::save_unit`]).
    persisted: bool,
}

enum Billing {
    Events { handler: Arc<dyn EventHandler>, identity: Option<Arc<dyn IdentityMap>> },
    Usage { handler: Arc<dyn UsageHandler> },
}

struct Processor {
    kind: ProcessorKind,
    config: Arc<EngineConfig>,
    source: Arc<dyn FeedSource>,
    store: Arc<dyn StateStore>,
    billing: Billing,
    delivery: Delivery,
    clock: Clock,
    status: watch::Sender<ProcessorStatus>,
    wake: Arc<Notify>,
    units: Mutex<HashMap<(FeedKind, i64), UnitState>>,
    lease: LeaseTimes,
    last_prune: Mutex<Option<Instant>>,
}

/// The election task of a processor; aborted when dropped.
struct ElectionTask(tokio::task::JoinHandle<()>);

impl Drop for ElectionTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A handle on a running processor: status, wake-up, operator commands. Cheap to clone.
#[derive(Debug, Clone)]
pub struct ProcessorHandle {
    kind: ProcessorKind,
    status: watch::Receiver<ProcessorStatus>,
    wake: Arc<Notify>,
    operator: Operator,
}

impl ProcessorHandle {
    /// Which processor.
    pub fn processor(&self) -> ProcessorKind {
        self.kind
    }

    /// The current status.
    pub fn status(&self) -> ProcessorStatus {
        self.status.borrow().clone()
    }

    /// Whether the processor's task is still alive (its future has not ended or died). A processor that was
    /// stopped reports `Stopped` as its last phase; one that died without stopping keeps its last phase, and
    /// this says `false`.
    pub fn is_running(&self) -> bool {
        self.status.has_changed().is_ok()
    }

    /// A receiver of status changes.
    pub fn subscribe(&self) -> watch::Receiver<ProcessorStatus> {
        self.status.clone()
    }

    /// Waits until the status satisfies `predicate` and returns it (returns the last status if the processor is
    /// gone). Wrap in a timeout.
    pub async fn wait_for(&self, predicate: impl FnMut(&ProcessorStatus) -> bool) -> ProcessorStatus {
        let mut rx = self.status.clone();
        let result = rx.wait_for(predicate).await.map(|s| s.clone());
        result.unwrap_or_else(|_| self.status.borrow().clone())
    }

    /// Ends the current sleep: the processor polls (or re-reads its halt) now.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Wakes the processor and waits until a round that **started after this call** has finished: the stored halt
    /// was read afresh (so an operator's `resume` or `skip` is seen) and, unless halted, every feed was drained to
    /// its end, a hold, a dependency wait or a halt — everything the Usage Service served before the call has been
    /// looked at. Returns the status then (check its phase). Only the leader runs rounds: on a standby instance
    /// this waits until it becomes leader, so wrap it in a timeout.
    pub async fn sync_once(&self) -> ProcessorStatus {
        let started = self.status.borrow().rounds_started;
        self.wake();
        self.wait_for(|s| s.last_finished_round > started || s.phase == Phase::Stopped).await
    }

    /// Operator `resume` of this processor (see [`Operator::resume`]), then wakes it.
    pub async fn resume(&self, actor: &str) -> Result<HaltStatus, StoreError> {
        self.resume_checked(None, actor).await
    }

    /// Operator resolution of an in-doubt intent (see [`Operator::resolve_in_doubt`]), then wakes the processor.
    pub async fn resolve_in_doubt(
        &self,
        resolution: crate::journal::InDoubtResolution,
        actor: &str,
        reason: &str,
    ) -> Result<crate::journal::Intent, StoreError> {
        let intent = self.operator.resolve_in_doubt(self.kind, resolution, actor, reason).await?;
        self.wake();
        Ok(intent)
    }

    /// Operator `skip` of the halted event (see [`Operator::skip`]), then wakes the processor.
    pub async fn skip(&self, actor: &str, reason: &str) -> Result<HaltStatus, StoreError> {
        self.skip_checked(None, actor, reason).await
    }

    /// Operator `resume` of the halt on `event` (see [`Operator::resume_event`]), then wakes the processor.
    pub async fn resume_event(&self, event: HaltTarget, actor: &str) -> Result<HaltStatus, StoreError> {
        self.resume_checked(Some(event), actor).await
    }

    /// Operator `skip` of the halt on `event` (see [`Operator::skip_event`]), then wakes the processor.
    pub async fn skip_event(&self, event: HaltTarget, actor: &str, reason: &str) -> Result<HaltStatus, StoreError> {
        self.skip_checked(Some(event), actor, reason).await
    }

    pub(crate) async fn resume_checked(
        &self,
        event: Option<HaltTarget>,
        actor: &str,
    ) -> Result<HaltStatus, StoreError> {
        let halt = self.operator.resume_checked(self.kind, event, actor).await?;
        self.wake();
        Ok(halt)
    }

    pub(crate) async fn skip_checked(
        &self,
        event: Option<HaltTarget>,
        actor: &str,
        reason: &str,
    ) -> Result<HaltStatus, StoreError> {
        let halt = self.operator.skip_checked(self.kind, event, actor, reason).await?;
        self.wake();
        Ok(halt)
    }
}

/// The notification processor: drains plans → addons → planAddons → planServices → subscriptions →
/// subscriptionAddons every cycle and hands each committed event to an [`EventHandler`].
pub struct EventProcessor {
    inner: Processor,
}

impl std::fmt::Debug for EventProcessor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventProcessor").field("store", &self.inner.store).finish_non_exhaustive()
    }
}

impl EventProcessor {
    /// A processor reading `source`, keeping state in `store`, applying events through `handler`.
    pub fn new(
        config: &EngineConfig,
        source: Arc<dyn FeedSource>,
        store: Arc<dyn StateStore>,
        handler: Arc<dyn EventHandler>,
    ) -> Self {
        let billing = Billing::Events { handler, identity: None };
        EventProcessor { inner: Processor::new(ProcessorKind::Notification, config, source, store, billing) }
    }

    /// Uses an identity map: the handler gets [`EventContext::billing_id`](crate::EventContext::billing_id), and a
    /// `Post` for a mapped id is delivered as an update.
    pub fn with_identity_map(mut self, map: Arc<dyn IdentityMap>) -> Self {
        if let Billing::Events { identity, .. } = &mut self.inner.billing {
            *identity = Some(map);
        }
        self
    }

    /// A handle for status and operator commands.
    pub fn handle(&self) -> ProcessorHandle {
        self.inner.handle()
    }

    /// Runs until the future is dropped (see [`EventProcessor::run_until`]).
    pub async fn run(self) {
        self.inner.run_until(std::future::pending()).await;
    }

    /// Runs until `shutdown` completes, then releases the lease. Does nothing but wait when
    /// `NotificationProcessorEnabled` is false. Dropping the future instead is a crash as far as the state is
    /// concerned (nothing half-written; the lease expires after its TTL).
    pub async fn run_until(self, shutdown: impl Future<Output = ()>) {
        self.inner.run_until(shutdown).await;
    }
}

/// The usage processor: drains `/usage` in its own loop and hands batches of records to a [`UsageHandler`].
pub struct UsageProcessor {
    inner: Processor,
}

impl std::fmt::Debug for UsageProcessor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UsageProcessor").field("store", &self.inner.store).finish_non_exhaustive()
    }
}

impl UsageProcessor {
    /// A processor reading `source`, keeping state in `store`, applying usage through `handler`.
    pub fn new(
        config: &EngineConfig,
        source: Arc<dyn FeedSource>,
        store: Arc<dyn StateStore>,
        handler: Arc<dyn UsageHandler>,
    ) -> Self {
        UsageProcessor {
            inner: Processor::new(ProcessorKind::Usage, config, source, store, Billing::Usage { handler }),
        }
    }

    /// A handle for status and operator commands.
    pub fn handle(&self) -> ProcessorHandle {
        self.inner.handle()
    }

    /// Runs until the future is dropped (see [`UsageProcessor::run_until`]).
    pub async fn run(self) {
        self.inner.run_until(std::future::pending()).await;
    }

    /// Runs until `shutdown` completes, then releases the lease. Does nothing but wait when
    /// `UsageProcessorEnabled` is false.
    pub async fn run_until(self, shutdown: impl Future<Output = ()>) {
        self.inner.run_until(shutdown).await;
    }
}

impl Processor {
    fn new(
        kind: ProcessorKind,
        config: &EngineConfig,
        source: Arc<dyn FeedSource>,
        store: Arc<dyn StateStore>,
        billing: Billing,
    ) -> Self {
        let delivery = billing.delivery();
        Processor {
            kind,
            config: Arc::new(config.clone()),
            source,
            store,
            billing,
            delivery,
            clock: Clock::new(),
            status: watch::Sender::new(ProcessorStatus::new(kind)),
            wake: Arc::new(Notify::new()),
            units: Mutex::new(HashMap::new()),
            lease: LeaseTimes::default(),
            last_prune: Mutex::new(None),
        }
    }

    fn handle(&self) -> ProcessorHandle {
        ProcessorHandle {
            kind: self.kind,
            status: self.status.subscribe(),
            wake: Arc::clone(&self.wake),
            operator: Operator::new(Arc::clone(&self.store)),
        }
    }

    fn enabled(&self) -> bool {
        match self.kind {
            ProcessorKind::Notification => self.config.notification_processor_enabled,
            ProcessorKind::Usage => self.config.usage_processor_enabled,
        }
    }

    async fn run_until(mut self, shutdown: impl Future<Output = ()>) {
        if !self.enabled() {
            tracing::info!(processor = %self.kind, "processor disabled by configuration");
            self.status.send_modify(|s| s.phase = Phase::Stopped);
            shutdown.await;
            return;
        }
        let elector = Arc::new(LeaderElector::new(Arc::clone(&self.store), self.kind, &self.config));
        self.lease = elector.times();
        let leadership = elector.subscribe();
        // The elector runs in a task of its own: on a multi-threaded runtime its renewals then go on while this
        // task parses a large page or runs a handler that blocks its thread. Dropping this future (a crash as far
        // as the state is concerned) aborts it, so the lease then expires.
        let mut election = ElectionTask(tokio::spawn({
            let elector = Arc::clone(&elector);
            async move { elector.run().await }
        }));
        tokio::select! {
            () = self.process(leadership) => {}
            () = shutdown => {}
        }
        election.0.abort();
        let _ = (&mut election.0).await;
        elector.release().await;
        self.status.send_modify(|s| {
            s.phase = Phase::Stopped;
            s.leader_generation = None;
        });
        tracing::info!(processor = %self.kind, "processor stopped");
    }

    /// Runs a term of leadership at a time, forever.
    async fn process(&self, mut leadership: watch::Receiver<Leadership>) {
        loop {
            self.status.send_modify(|s| {
                s.phase = Phase::Standby;
                s.leader_generation = None;
            });
            let fence = loop {
                let conflict = self.lease.conflict();
                self.status.send_if_modified(|s| {
                    let changed = s.lease_conflict != conflict;
                    s.lease_conflict.clone_from(&conflict);
                    changed
                });
                // Look again now and then: the elector reports a duplicate InstanceId through the lease times.
                let wait = tokio::time::timeout(
                    (self.config.lease_ttl / 4).max(Duration::from_millis(5)),
                    leadership.wait_for(|l| l.fence().is_some()),
                )
                .await;
                match wait {
                    Ok(Ok(l)) => break l.fence().cloned(),
                    Ok(Err(_)) => return,
                    Err(_) => continue,
                }
            };
            self.status.send_modify(|s| s.lease_conflict = None);
            let Some(fence) = fence else { continue };
            self.status.send_modify(|s| {
                s.leader_generation = Some(fence.generation);
                s.phase = Phase::CatchingUp;
            });
            let mut loss = leadership.clone();
            let term_fence = fence.clone();
            let lost = async move {
                let _ = loss.wait_for(|l| l.fence() != Some(&term_fence)).await;
            };
            tokio::pin!(lost);
            let fenced = tokio::select! {
                () = self.term(&fence) => true,
                () = &mut lost => false,
            };
            if fenced {
                // A commit was refused (or the billing system refused this generation): another instance holds the
                // lease. Wait for the elector to notice, a TTL at most: a billing system whose generation is ahead
                // of the state store's (a replaced state database) must not stall the processor silently; the term
                // then starts again and the refusal is logged and shown each time.
                let _ = tokio::time::timeout(self.config.lease_ttl, &mut lost).await;
            }
        }
    }

    /// One term of leadership; returns only when a fenced write was refused.
    async fn term(&self, fence: &Fence) {
        if let Some(not_before) = self.lease.first_call_not_before().filter(|t| *t > Instant::now()) {
            // The previous holder did not release the lease: it may still be inside a billing call until that
            // call's deadline. Bill nothing before it has passed.
            tracing::info!(processor = %self.kind, wait = ?(not_before - Instant::now()), "took over an unreleased lease; waiting out the previous holder's call deadline");
            sleep_until(not_before).await;
        }
        let mut store_backoff = Backoff::new(self.config.wap_retry_initial, self.config.wap_retry_max);
        let mut loaded = false;
        loop {
            let mut round_no = 0;
            self.status.send_modify(|s| {
                s.rounds_started += 1;
                round_no = s.rounds_started;
            });
            let span =
                tracing::info_span!("cycle", processor = %self.kind, generation = fence.generation, round = round_no);
            let result = async {
                if !loaded {
                    self.load_positions().await?;
                    loaded = true;
                }
                self.round(fence).await
            }
            .instrument(span)
            .await;
            match result {
                Ok(pause) => {
                    store_backoff.reset();
                    self.prune_if_due().await;
                    self.status.send_modify(|s| {
                        s.last_store_error = None;
                        s.last_finished_round = round_no;
                    });
                    tokio::select! {
                        () = sleep(pause) => {}
                        () = self.wake.notified() => {}
                    }
                }
                Err(e) if e.is_fenced() => {
                    tracing::warn!(processor = %self.kind, error = %e, "write refused: deposed by another instance");
                    return;
                }
                Err(e) => {
                    // Classified once (StoreError::is_retryable): a transient error is retried with back-off; a
                    // permanent one (an unreadable value, a newer schema) needs an operator, and is looked at
                    // again only at the longest back-off.
                    let (wait, what) = if e.is_retryable() {
                        (store_backoff.next_wait(), "state store failed")
                    } else {
                        (self.config.wap_retry_max, "state store failed permanently (needs an operator)")
                    };
                    tracing::error!(processor = %self.kind, error = %e, retryable = e.is_retryable(), retry_in = ?wait, "{what}; retrying");
                    let text = if e.is_retryable() { e.to_string() } else { format!("permanent: {e}") };
                    self.status.send_modify(|s| s.last_store_error = Some(text));
                    sleep(wait).await;
                }
            }
        }
    }

    /// Once a day (and after the first round of the process): deletes `processed_event` rows and audit entries
    /// older than their retention (`ProcessedEventRetentionDays`, `AuditLogRetentionDays`). A failure is logged and
    /// tried again the next day.
    async fn prune_if_due(&self) {
        const EVERY: Duration = Duration::from_secs(86_400);
        let now = Instant::now();
        {
            let mut last = self.last_prune.lock().unwrap_or_else(|p| p.into_inner());
            if last.is_some_and(|t| now.duration_since(t) < EVERY) {
                return;
            }
            *last = Some(now);
        }
        let wall = self.clock.now();
        let before = |keep: Option<Duration>| {
            keep.and_then(|k| chrono::Duration::from_std(k).ok()).and_then(|k| wall.checked_sub_signed(k))
        };
        let processed_before = before(self.config.processed_event_retention);
        let audit_before = before(self.config.audit_log_retention);
        if processed_before.is_none() && audit_before.is_none() {
            return;
        }
        match self.store.prune(processed_before, audit_before).await {
            Ok((processed, audit)) if processed + audit > 0 => {
                tracing::info!(processor = %self.kind, processed, audit, "old processed-event rows and audit entries deleted (retention)");
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(processor = %self.kind, error = %e, "retention pruning failed; trying again tomorrow")
            }
        }
    }

    /// Loads the stored cursors into the status and warns about feeds not polled within `RetentionWarnDays`; loads
    /// the stored retry state of failing units.
    async fn load_positions(&self) -> Result<(), StoreError> {
        self.load_units().await?;
        let now = self.clock.now();
        for &feed in self.kind.feeds() {
            let cursor = self.store.cursor(feed).await?;
            let stale = cursor.last_poll_at.is_some_and(|t| elapsed_between(t, now) > self.config.retention_warn);
            if stale {
                tracing::warn!(
                    feed = %feed,
                    last_poll_at = ?cursor.last_poll_at,
                    "feed not polled for longer than RetentionWarnDays: WAP deletes data after 40 days, records may be lost"
                );
            }
            self.status.send_modify(|s| {
                let f = s.feed_mut(feed);
                f.last_committed = cursor.last_event_id;
                f.last_poll_at = cursor.last_poll_at;
                f.retention_warning |= stale;
            });
        }
        Ok(())
    }

    /// Checks the halt, runs one cycle; returns how long to sleep.
    async fn round(&self, fence: &Fence) -> Result<Duration, StoreError> {
        if let Some(halt) = self.store.halt(self.kind).await? {
            let changed = self.status.send_if_modified(|s| {
                let changed = s.halt.as_ref() != Some(&halt) || s.phase != Phase::Halted;
                s.phase = Phase::Halted;
                s.halt = Some(halt.clone());
                changed
            });
            if changed {
                tracing::error!(processor = %self.kind, halt = %halt, "processor halted; waiting for an operator (resume or skip)");
            }
            return Ok(self.config.sync_interval.min(HALT_POLL_MAX));
        }
        self.status.send_modify(|s| {
            if s.halt.take().is_some() {
                // Resumed or skipped: what was held or waiting is looked at afresh.
                s.phase = Phase::CatchingUp;
                for f in &mut s.feeds {
                    f.held = None;
                    f.waiting = None;
                }
            }
        });
        if self.reconcile_open_intent(fence).await? {
            return Ok(Duration::ZERO);
        }
        let mut caught_up = true;
        let mut retry_soon = false;
        for &feed in self.kind.feeds() {
            let span = tracing::info_span!("feed", feed = %feed);
            match self.drain(fence, feed).instrument(span).await? {
                FeedEnd::CaughtUp | FeedEnd::Held => {}
                FeedEnd::Waiting => {
                    caught_up = false;
                    retry_soon = true;
                }
                FeedEnd::Halted => return Ok(Duration::ZERO),
            }
        }
        self.status.send_modify(|s| {
            s.cycles += 1;
            s.phase = if caught_up { Phase::CaughtUp } else { Phase::CatchingUp };
        });
        Ok(if retry_soon { self.config.retry_sleep.min(self.config.sync_interval) } else { self.config.sync_interval })
    }

    /// Drains one feed up to `[]`, a hold, a wait or a halt.
    async fn drain(&self, fence: &Fence, feed: FeedKind) -> Result<FeedEnd, StoreError> {
        let cursor = self.store.cursor(feed).await?;
        let mut committed = cursor.last_event_id;
        let mut hold = cursor.hold;
        let mode = self.config.start_id_mode;
        let mut start = match committed {
            None => StartId::new(self.config.initial_start_id(feed)),
            Some(c) => StartId::resume(Some(c), mode),
        };
        let mut poll_recorded = false;
        // The usage feed's next page, fetched while the billing side took the previous one: (its start, items).
        let mut prefetched: Option<(StartId, Vec<FeedItem>)> = None;
        loop {
            let mut page = match prefetched.take() {
                Some((at, items)) if at == start => items,
                _ => match self.fetch(feed, start).await {
                    Ok(items) => items,
                    Err(error) => return self.wap_rejected(fence, feed, start, &error).await,
                },
            };
            if !poll_recorded {
                // Once per drain: the time only feeds the retention warning, and saves a write per page.
                let polled_at = self.clock.now();
                self.store.record_poll(feed, polled_at).await?;
                self.status.send_modify(|s| s.feed_mut(feed).last_poll_at = Some(polled_at));
                poll_recorded = true;
            }
            if page.is_empty() {
                self.status.send_modify(|s| {
                    let f = s.feed_mut(feed);
                    f.caught_up = true;
                    f.held = None;
                    f.waiting = None;
                });
                return Ok(FeedEnd::CaughtUp);
            }
            page.sort_by_key(FeedItem::event_id);
            page.dedup_by_key(|i| i.event_id());
            if let Some(c) = committed {
                if self.history_lost(fence, feed, c, &page).await? {
                    return Ok(FeedEnd::Halted);
                }
            }
            let max_id = page.last().map_or(0, FeedItem::event_id);
            let received = page.len();
            if let Some(c) = committed {
                page.retain(|i| i.event_id() > c);
            }
            if page.len() < received {
                tracing::debug!(feed = %feed, dropped = received - page.len(), committed = ?committed, "dropped records at or below the committed cursor");
            }
            if let (Some(first), Some(last)) =
                (page.first().map(FeedItem::event_id), page.last().map(FeedItem::event_id))
            {
                let done = self.store.processed(feed, first, last).await?;
                if !done.is_empty() {
                    let before = page.len();
                    page.retain(|i| !done.iter().any(|p| p.covers(i.event_id())));
                    tracing::info!(feed = %feed, dropped = before - page.len(), "dropped records already processed");
                }
            }
            if !page.is_empty() {
                self.status.send_modify(|s| s.feed_mut(feed).caught_up = false);
                let end = match &self.billing {
                    Billing::Events { handler, identity } => {
                        self.apply_events(
                            fence,
                            feed,
                            handler.as_ref(),
                            identity.as_ref(),
                            &page,
                            &mut committed,
                            &mut hold,
                        )
                        .await?
                    }
                    Billing::Usage { handler } => {
                        // While the billing system takes this page, fetch the one that follows it (the start the
                        // loop below computes once the whole page is committed). If billing stops early, the
                        // fetch is dropped unused; WAP has seen one read-only request more.
                        let after = StartId::resume(Some(committed.map_or(max_id, |c| c.max(max_id))), mode);
                        let apply = self.apply_usage(fence, handler.as_ref(), page, &mut committed);
                        if after > start {
                            // A prefetch that failed is dropped: the loop fetches that page again (and halts then).
                            let prefetch = async { self.fetch(feed, after).await.unwrap_or_default() };
                            let (end, next_page) = while_fetching(apply, prefetch).await;
                            let next_page = next_page.filter(|items| !items.is_empty());
                            if matches!(end, Ok(None)) {
                                prefetched = next_page.map(|items| (after, items));
                            }
                            end?
                        } else {
                            apply.await?
                        }
                    }
                };
                if let Some(end) = end {
                    return Ok(end);
                }
            }
            let highest = committed.map_or(max_id, |c| c.max(max_id));
            let next = StartId::resume(Some(highest), mode);
            if next <= start {
                tracing::warn!(feed = %feed, start = %start, "page held no record after the cursor; ending the feed for this cycle");
                return Ok(FeedEnd::CaughtUp);
            }
            start = next;
        }
    }

    /// WAP refused the position `start` of a feed permanently: halt on its first id (`reason` wap_rejected), so an
    /// operator can `skip` it (the cursor then moves past that one id) or `resume` (try again).
    async fn wap_rejected(
        &self,
        fence: &Fence,
        feed: FeedKind,
        start: StartId,
        error: &SourceError,
    ) -> Result<FeedEnd, StoreError> {
        let first = match self.config.start_id_mode {
            wap_types::StartIdMode::Inclusive => start.get(),
            wap_types::StartIdMode::Exclusive => start.get().saturating_add(1),
        };
        let message = format!(
            "WAP refused the page at startId {start} {} times in a row: {error}. A skip passes over id {first} \
             only; skip again if the next position fails too",
            self.config.retry_max_attempts
        );
        self.halt_unit(fence, feed, first, first, HaltReason::WapRejected, message, self.config.retry_max_attempts)
            .await?;
        Ok(FeedEnd::Halted)
    }

    /// Checks a page for history WAP purged before the adapter read it: the page's first id lies above
    /// `committed + 1`, and WAP retains no record below that first id (asked with `startId = 0`, one record). Ids
    /// may have gaps for other reasons (a shared sequence, deleted records), so a gap alone is not a loss; a gap
    /// with nothing older retained is. Then the processor halts with "history lost between ids A and B"; only an
    /// operator's `skip` (the audited acknowledgement) moves the cursor past it.
    async fn history_lost(
        &self,
        fence: &Fence,
        feed: FeedKind,
        committed: i64,
        page: &[FeedItem],
    ) -> Result<bool, StoreError> {
        let expected = committed.saturating_add(1);
        let Some(first) = page.first().map(FeedItem::event_id).filter(|&f| f > expected) else {
            return Ok(false);
        };
        // A failed check is not a pass: without an answer the gap counts as lost (an operator decides).
        let oldest = self.fetch_with_size(feed, StartId::BEGINNING, 1).await.unwrap_or_default();
        let oldest = oldest.iter().map(FeedItem::event_id).min();
        if oldest.is_some_and(|o| o < first) {
            tracing::debug!(feed = %feed, expected, first, ?oldest, "id gap after the cursor; older records are retained: not a purge");
            return Ok(false);
        }
        let last_lost = first - 1;
        let error = format!(
            "history lost between ids {expected} and {last_lost}: WAP no longer serves them (the oldest record it \
             retains is {}); the adapter never read them. Bill them by other means, then skip this halt to \
             acknowledge the loss",
            oldest.unwrap_or(first)
        );
        tracing::error!(feed = %feed, from = expected, to = last_lost, "WAP purged records the adapter never read");
        self.status.send_modify(|s| s.feed_mut(feed).history_lost = Some((expected, last_lost)));
        self.halt_unit(fence, feed, expected, last_lost, HaltReason::HistoryLost, error, 0).await?;
        Ok(true)
    }

    /// Fetches a page, retrying WAP-side errors with back-off until one succeeds. Cancel-safe (a dropped fetch
    /// leaves nothing behind). A permanent error ([`SourceError::is_permanent`]: HTTP 400 or 404, a page whose
    /// records cannot be read) is given up after `RetryMaxAttempts` in a row and returned: the caller halts.
    async fn fetch(&self, feed: FeedKind, start: StartId) -> Result<Vec<FeedItem>, SourceError> {
        self.fetch_with_size(feed, start, self.config.batch_size).await
    }

    /// [`Processor::fetch`] with a batch size.
    async fn fetch_with_size(
        &self,
        feed: FeedKind,
        start: StartId,
        batch_size: u32,
    ) -> Result<Vec<FeedItem>, SourceError> {
        let mut backoff = Backoff::new(self.config.wap_retry_initial, self.config.wap_retry_max);
        let mut failures: u32 = 0;
        let mut permanent: u32 = 0;
        loop {
            let timeout = self.config.wap_fetch_timeout;
            let fetched = match tokio::time::timeout(timeout, self.source.fetch(feed, start, batch_size)).await {
                Ok(result) => result,
                Err(_) => Err(SourceError::new(
                    SourceErrorKind::Transport,
                    format!(
                        "the fetch of {feed} at startId {start} did not finish within {} ms \
                         (WapFetchTimeoutMilliseconds) and was cut",
                        timeout.as_millis()
                    ),
                )),
            };
            let error = match fetched {
                Ok(page) => match page.iter().find(|i| i.feed() != feed) {
                    None => {
                        if failures > 0 {
                            tracing::info!(feed = %feed, failures, "Usage Service reachable again");
                            self.status.send_modify(|s| {
                                let f = s.feed_mut(feed);
                                f.wap_failures = 0;
                                f.last_wap_error = None;
                            });
                        }
                        return Ok(page);
                    }
                    Some(other) => SourceError::new(
                        SourceErrorKind::Body,
                        format!("page of {feed} holds an item of {} (event {})", other.feed(), other.event_id()),
                    ),
                },
                Err(e) => e,
            };
            failures = failures.saturating_add(1);
            permanent = if error.is_permanent() { permanent + 1 } else { 0 };
            if permanent >= self.config.retry_max_attempts {
                tracing::error!(feed = %feed, start = %start, error = %error, failures, "WAP keeps refusing this position (permanent error); giving up");
                return Err(error);
            }
            let wait = backoff.next_wait();
            if error.is_configuration_error() {
                tracing::error!(feed = %feed, start = %start, error = %error, failures, retry_in = ?wait, "Usage Service refused the credentials (check UsageServiceUsername/Password); retrying");
            } else {
                tracing::warn!(feed = %feed, start = %start, error = %error, failures, retry_in = ?wait, "fetch failed (WAP side); retrying");
            }
            self.status.send_modify(|s| {
                let f = s.feed_mut(feed);
                f.wap_failures = failures;
                f.last_wap_error = Some(error.to_string());
            });
            sleep(wait).await;
        }
    }

    fn with_unit<T>(&self, feed: FeedKind, first: i64, f: impl FnOnce(&mut UnitState) -> T) -> T {
        let mut units = self.units.lock().unwrap_or_else(|p| p.into_inner());
        f(units.entry((feed, first)).or_default())
    }

    /// Drops the retry state of a unit (applied, split or halted), in the store too when it was saved there.
    async fn forget_unit(&self, fence: &Fence, feed: FeedKind, first: i64) -> Result<(), StoreError> {
        let removed = self.units.lock().unwrap_or_else(|p| p.into_inner()).remove(&(feed, first));
        if removed.is_some_and(|u| u.persisted) {
            self.store.clear_unit_attempts(fence, feed, first).await?;
        }
        Ok(())
    }

    /// Writes the retry state of a unit to the store (fenced), so a restarted process goes on from it.
    async fn save_unit(&self, fence: &Fence, feed: FeedKind, first: i64) -> Result<(), StoreError> {
        let (attempts, dependency_since) = self.with_unit(feed, first, |u| (u.attempts, u.dependency_since));
        let unit = UnitAttempts { feed, event_id: first, attempts, dependency_since };
        self.store.set_unit_attempts(fence, &unit).await?;
        self.with_unit(feed, first, |u| u.persisted = true);
        Ok(())
    }

    /// Counts a failed attempt on a unit (saved in the store); returns the attempts so far.
    async fn count_attempt(&self, fence: &Fence, feed: FeedKind, first: i64) -> Result<u32, StoreError> {
        let attempts = self.with_unit(feed, first, |u| {
            u.attempts += 1;
            u.attempts
        });
        self.save_unit(fence, feed, first).await?;
        Ok(attempts)
    }

    /// Since when the billing side answers `DependencyNotReady` for a unit: `now` on the first such answer (then
    /// saved in the store, so the wait keeps its start across restarts and terms).
    async fn dependency_since(
        &self,
        fence: &Fence,
        feed: FeedKind,
        first: i64,
        now: DateTime<Utc>,
    ) -> Result<DateTime<Utc>, StoreError> {
        let (since, new) = self.with_unit(feed, first, |u| match u.dependency_since {
            Some(since) => (since, false),
            None => {
                u.dependency_since = Some(now);
                (now, true)
            }
        });
        if new {
            self.save_unit(fence, feed, first).await?;
        }
        Ok(since)
    }

    /// At the start of a term: merges the retry state of failing units the store has (another leader, or this
    /// instance's previous process, may have counted): the higher attempt count and the earlier wait start win.
    async fn load_units(&self) -> Result<(), StoreError> {
        let stored = self.store.unit_attempts(self.kind).await?;
        let mut units = self.units.lock().unwrap_or_else(|p| p.into_inner());
        for s in stored {
            let unit = units.entry((s.feed, s.event_id)).or_default();
            unit.attempts = unit.attempts.max(s.attempts);
            unit.dependency_since = match (unit.dependency_since, s.dependency_since) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            unit.persisted = true;
        }
        Ok(())
    }

    /// Calls the billing side for one unit (an event, or a usage batch `first..=last`) until it succeeds, waits on a
    /// dependency, or has failed `RetryMaxAttempts` times (then halts the processor).
    #[allow(clippy::too_many_arguments)]
    async fn attempts<F, Fut>(
        &self,
        fence: &Fence,
        feed: FeedKind,
        first: i64,
        last: i64,
        allow_split: bool,
        reason: HaltReason,
        call: F,
    ) -> Result<UnitEnd, StoreError>
    where
        F: FnMut(CallInfo) -> Fut,
        Fut: Future<Output = Result<(), CallError>>,
    {
        let span = if first == last {
            tracing::debug_span!("event", feed = %feed, event_id = first)
        } else {
            tracing::debug_span!("usage_batch", feed = %feed, first, last)
        };
        self.attempts_in_span(fence, feed, first, last, allow_split, reason, call).instrument(span).await
    }

    #[allow(clippy::too_many_arguments)]
    async fn attempts_in_span<F, Fut>(
        &self,
        fence: &Fence,
        feed: FeedKind,
        first: i64,
        last: i64,
        allow_split: bool,
        reason: HaltReason,
        mut call: F,
    ) -> Result<UnitEnd, StoreError>
    where
        F: FnMut(CallInfo) -> Fut,
        Fut: Future<Output = Result<(), CallError>>,
    {
        let max = self.config.retry_max_attempts;
        loop {
            let call_no = self.with_unit(feed, first, |u| {
                u.calls += 1;
                u.calls
            });
            let deadline = self.call_deadline();
            let info = CallInfo { attempt: call_no, generation: fence.generation, deadline, fence: fence.clone() };
            let outcome = tokio::time::timeout_at(deadline, AssertUnwindSafe(call(info)).catch_unwind()).await;
            let error = match outcome {
                Ok(Ok(Ok(()))) => {
                    self.forget_unit(fence, feed, first).await?;
                    return Ok(UnitEnd::Applied);
                }
                // The billing system has seen a newer leader: this term is over, as after a fenced write.
                Ok(Ok(Err(CallError::Handler(e)))) if e.is_deposed() => return Err(self.deposed(fence, &e)),
                Ok(Ok(Err(CallError::Handler(e)))) => e,
                // The billing system was not called: a store error, retried by the term with back-off.
                Ok(Ok(Err(CallError::Store(e)))) => return Err(e),
                Ok(Err(payload)) => {
                    let message = panic_message(payload.as_ref());
                    let attempts = self.with_unit(feed, first, |u| u.attempts + 1);
                    let error = format!("the handler panicked: {message}");
                    return self
                        .halt_unit(fence, feed, first, last, HaltReason::HandlerPanicked, error, attempts)
                        .await;
                }
                Err(_) => HandlerError::failed(format!(
                    "the billing call did not finish by its deadline (HandlerTimeoutMilliseconds = {} ms, or the \
                     end of the lease) and was cut",
                    self.config.handler_timeout.as_millis()
                )),
            };
            if allow_split {
                if let Some(k) = error.record_event_id().filter(|k| (first..=last).contains(k)) {
                    tracing::info!(feed = %feed, first, last, failing = k, error = %error, "usage batch failed on a named record; isolating it");
                    return Ok(UnitEnd::Split(k));
                }
            }
            let now = self.clock.now();
            if let HandlerError::DependencyNotReady { reason: missing } = &error {
                let since = self.dependency_since(fence, feed, first, now).await?;
                let waited = elapsed_between(since, now);
                if waited < self.config.dependency_wait_max {
                    tracing::info!(feed = %feed, event_id = first, reason = %missing, waited = ?waited, "dependency not ready; retrying later without spending an attempt");
                    let waiting = WaitingEvent { event_id: first, reason: missing.clone(), since };
                    self.status.send_modify(|s| s.feed_mut(feed).waiting = Some(waiting));
                    return Ok(UnitEnd::Waiting);
                }
            }
            let attempts = self.count_attempt(fence, feed, first).await?;
            if attempts >= max && allow_split && first != last {
                // The handler did not say which record fails: take the batch apart, so that the halt (and an
                // operator's skip) names one record, never a whole batch.
                tracing::warn!(feed = %feed, first, last, error = %error, "usage batch failed without naming a record; retrying its records one by one");
                self.forget_unit(fence, feed, first).await?;
                return Ok(UnitEnd::Split(first));
            }
            if attempts >= max {
                return self.halt_unit(fence, feed, first, last, reason, error.to_string(), attempts).await;
            }
            tracing::warn!(feed = %feed, event_id = first, attempt = attempts, max, error = %error, retry_in = ?self.config.retry_sleep, "billing side failed; retrying");
            sleep(self.config.retry_sleep).await;
        }
    }

    /// The billing system refused a call as coming from a deposed leader ([`HandlerError::Deposed`]): logged and
    /// turned into the fencing refusal that ends the term (no attempt spent, no halt).
    pub(crate) fn deposed(&self, fence: &Fence, error: &HandlerError) -> StoreError {
        tracing::warn!(processor = %self.kind, generation = fence.generation, error = %error, "the billing system refused this instance as a deposed leader; ending the term");
        self.status.send_modify(|s| s.last_store_error = Some(format!("deposed: {error}")));
        StoreError::Fenced { processor: self.kind, holder: fence.holder.clone(), generation: fence.generation }
    }

    /// The deadline of a billing call starting now: `HandlerTimeoutMilliseconds` from now, but never after the
    /// local end of the lease.
    fn call_deadline(&self) -> Instant {
        let by_timeout = Instant::now() + self.config.handler_timeout;
        self.lease.deadline().map_or(by_timeout, |lease_end| lease_end.min(by_timeout))
    }

    /// Stores a halt on a unit (fenced) and publishes it.
    #[allow(clippy::too_many_arguments)]
    async fn halt_unit(
        &self,
        fence: &Fence,
        feed: FeedKind,
        first: i64,
        last: i64,
        reason: HaltReason,
        error: String,
        attempts: u32,
    ) -> Result<UnitEnd, StoreError> {
        let halt = HaltStatus {
            processor: self.kind,
            feed,
            event_id: first,
            last_event_id: last,
            reason,
            error,
            attempts,
            halted_at: self.clock.now(),
        };
        self.store.set_halt(fence, &halt).await?;
        self.forget_unit(fence, feed, first).await?;
        tracing::error!(halt = %halt, "processor halted; waiting for an operator (resume or skip)");
        self.status.send_modify(|s| {
            s.phase = Phase::Halted;
            s.halt = Some(halt);
        });
        Ok(UnitEnd::Halted)
    }

    /// Commits a unit: processed record + cursor, fenced, in one transaction.
    async fn commit(
        &self,
        fence: &Fence,
        feed: FeedKind,
        first: i64,
        last: i64,
        outcome: ProcessedOutcome,
        count: u64,
    ) -> Result<(), StoreError> {
        let commit = EventCommit { feed, first_event_id: first, last_event_id: last, outcome, at: self.clock.now() };
        if self.journaled() {
            // The outcome, the cursor and the removal of the open intent in one transaction.
            self.store.commit_intent(fence, &commit).await?;
        } else {
            self.store.commit(fence, &commit).await?;
        }
        tracing::debug!(feed = %feed, first, last, outcome = %outcome, "committed");
        self.note_commit(feed, last, outcome, count);
        Ok(())
    }

    /// The status after a commit.
    fn note_commit(&self, feed: FeedKind, last: i64, outcome: ProcessedOutcome, count: u64) {
        self.status.send_modify(|s| {
            let f = s.feed_mut(feed);
            f.last_committed = Some(f.last_committed.map_or(last, |c| c.max(last)));
            match outcome {
                ProcessedOutcome::Applied => f.applied += count,
                ProcessedOutcome::SkippedRejected => f.skipped_rejected += count,
                ProcessedOutcome::SkippedByOperator => {}
            }
            if f.waiting.as_ref().is_some_and(|w| w.event_id <= last) {
                f.waiting = None;
            }
            if f.held.is_some_and(|h| h.event_id <= last) {
                f.held = None;
            }
            if f.history_lost.is_some_and(|(_, to)| to <= last) {
                f.history_lost = None;
            }
        });
    }

    /// A PendingApproval event: hold the feed at it (persisting when the wait began), warn when overdue, halt when
    /// the maximum wait has passed.
    async fn hold(
        &self,
        fence: &Fence,
        feed: FeedKind,
        event_id: i64,
        hold: &mut Option<FeedHold>,
    ) -> Result<FeedEnd, StoreError> {
        let now = self.clock.now();
        let since = match hold {
            Some(h) if h.event_id == event_id => h.since,
            _ => {
                let h = FeedHold { event_id, since: now };
                self.store.set_hold(fence, feed, Some(h)).await?;
                *hold = Some(h);
                now
            }
        };
        let waited = elapsed_between(since, now);
        if waited >= self.config.pending_approval_max_wait {
            let halt = HaltStatus {
                processor: self.kind,
                feed,
                event_id,
                last_event_id: event_id,
                reason: HaltReason::PendingApprovalTimeout,
                error: format!(
                    "event still PendingApproval after {}s (PendingApprovalMaxWaitSeconds = {}s)",
                    waited.as_secs(),
                    self.config.pending_approval_max_wait.as_secs()
                ),
                attempts: 0,
                halted_at: now,
            };
            self.store.set_halt(fence, &halt).await?;
            tracing::error!(halt = %halt, "processor halted on a PendingApproval event; an operator decides (resume waits again, skip records it)");
            self.status.send_modify(|s| {
                s.phase = Phase::Halted;
                s.halt = Some(halt);
            });
            return Ok(FeedEnd::Halted);
        }
        let overdue = waited >= self.config.pending_approval_warn;
        if overdue {
            tracing::warn!(feed = %feed, event_id, waited_secs = waited.as_secs(), "event PendingApproval for longer than PendingApprovalWarnSeconds; feed held");
        } else {
            tracing::info!(feed = %feed, event_id, "event PendingApproval; feed held until the next cycle");
        }
        self.status.send_modify(|s| s.feed_mut(feed).held = Some(HeldEvent { event_id, since, overdue }));
        Ok(FeedEnd::Held)
    }
}

/// Runs `work` while `fetch` runs alongside it. When the work ends with `Ok(None)` (go on with the next page) the
/// fetch is awaited to its end and its page returned; otherwise it is dropped where it stands.
async fn while_fetching<W, F>(work: W, fetch: F) -> (Result<Option<FeedEnd>, StoreError>, Option<Vec<FeedItem>>)
where
    W: Future<Output = Result<Option<FeedEnd>, StoreError>>,
    F: Future<Output = Vec<FeedItem>>,
{
    let mut work = std::pin::pin!(work);
    let mut fetch = std::pin::pin!(fetch);
    let mut fetched = None;
    let end = std::future::poll_fn(|cx| {
        if fetched.is_none() {
            if let std::task::Poll::Ready(items) = fetch.as_mut().poll(cx) {
                fetched = Some(items);
            }
        }
        work.as_mut().poll(cx)
    })
    .await;
    if !matches!(end, Ok(None)) {
        return (end, None);
    }
    let items = match fetched {
        Some(items) => items,
        None => fetch.await,
    };
    (end, Some(items))
}
