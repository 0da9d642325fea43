//! The journaled delivery path (see [`crate::journal`]): an intent committed before each billing call, the outcome
//! committed with the cursor after it, and open intents reconciled before anything is sent again.

use std::future::Future;
use std::panic::AssertUnwindSafe;

use futures_util::FutureExt;

use tracing::Instrument;
use wap_types::FeedKind;

use super::{panic_message, Billing, CallError, CallInfo, Processor, UnitEnd};
use crate::clock::elapsed_between;
use crate::handler::HandlerError;
use crate::journal::{Delivery, Intent, Reconciliation};
use crate::status::{Phase, WaitingEvent};
use crate::store::{EventCommit, Fence, HaltReason, HaltStatus, ProcessedOutcome, StoreError};

impl Billing {
    /// The delivery path the handler declared.
    pub(super) fn delivery(&self) -> Delivery {
        match self {
            Billing::Events { handler, .. } => handler.delivery(),
            Billing::Usage { handler } => handler.delivery(),
        }
    }

    fn intent_token(&self, intent: &Intent) -> Option<String> {
        match self {
            Billing::Events { handler, .. } => handler.intent_token(intent),
            Billing::Usage { handler } => handler.intent_token(intent),
        }
    }

    async fn reconcile(&self, intent: &Intent) -> Result<Reconciliation, HandlerError> {
        match self {
            Billing::Events { handler, .. } => handler.reconcile(intent).await,
            Billing::Usage { handler } => handler.reconcile(intent).await,
        }
    }
}

/// A unit of work on the journaled path: its range, size and operation.
#[derive(Debug, Clone)]
pub(super) struct JournaledUnit {
    pub(super) feed: FeedKind,
    pub(super) first: i64,
    pub(super) last: i64,
    pub(super) records: u64,
    pub(super) operation: String,
}

/// The fail point of the crash test: with `WAP_BILLING_FAIL_POINT=after_billing_call` (or
/// `after_billing_call@N`: at the N-th journaled call of the process) in the environment, the engine prints
/// `FAIL POINT after_billing_call <first>..=<last>` on stdout after a journaled billing call returned `Ok` and before
/// its outcome is committed, then parks there (until killed). The variable is read once per process.
fn park_after_billing_call() -> bool {
    static ARMED_AT: std::sync::OnceLock<Option<u64>> = std::sync::OnceLock::new();
    static CALLS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let armed_at = *ARMED_AT.get_or_init(|| {
        let value = std::env::var("WAP_BILLING_FAIL_POINT").ok()?;
        let rest = value.strip_prefix("after_billing_call")?;
        match rest.strip_prefix('@') {
            None if rest.is_empty() => Some(1),
            Some(n) => n.parse().ok(),
            None => None,
        }
    });
    let Some(at) = armed_at else { return false };
    CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1 == at
}

fn announce_fail_point(first: i64, last: i64) {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "FAIL POINT after_billing_call {first}..={last}");
    let _ = out.flush();
}

impl Processor {
    /// Whether this processor's handler takes the journaled path.
    pub(super) fn journaled(&self) -> bool {
        self.delivery == Delivery::Journaled
    }

    fn new_intent(&self, fence: &Fence, unit: &JournaledUnit) -> Intent {
        let mut intent = Intent {
            processor: self.kind,
            feed: unit.feed,
            first_event_id: unit.first,
            last_event_id: unit.last,
            records: unit.records,
            operation: unit.operation.clone(),
            token: Intent::default_token(unit.feed, unit.first, unit.last),
            generation: fence.generation,
            opened_at: self.clock.now(),
        };
        if let Some(token) = self.billing.intent_token(&intent) {
            intent.token = token;
        }
        intent
    }

    /// The journaled counterpart of `attempts`: opens an intent before every call; a failed call is reconciled
    /// before it is retried (a billing system may fail after committing). `Applied` leaves the intent open for the
    /// caller's commit ([`Processor::commit`] removes it in the same transaction).
    pub(super) async fn journaled_attempts<F, Fut>(
        &self,
        fence: &Fence,
        unit: JournaledUnit,
        mut call: F,
    ) -> Result<UnitEnd, StoreError>
    where
        F: FnMut(CallInfo) -> Fut,
        Fut: Future<Output = Result<(), CallError>>,
    {
        let span = tracing::debug_span!("journaled", feed = %unit.feed, first = unit.first, last = unit.last);
        async move {
            let (feed, first, last) = (unit.feed, unit.first, unit.last);
            let max = self.config.retry_max_attempts;
            loop {
                let call_no = self.with_unit(feed, first, |u| {
                    u.calls += 1;
                    u.calls
                });
                let intent = self.new_intent(fence, &unit);
                self.store.open_intent(fence, &intent).await?;
                let deadline = self.call_deadline();
                let info = CallInfo { attempt: call_no, generation: fence.generation, deadline, fence: fence.clone() };
                let outcome = tokio::time::timeout_at(deadline, AssertUnwindSafe(call(info)).catch_unwind()).await;
                let result = match outcome {
                    Ok(Ok(Ok(()))) => Ok(()),
                    // A newer leader exists: the intent stays open for it to reconcile; this term ends.
                    Ok(Ok(Err(CallError::Handler(e)))) if e.is_deposed() => return Err(self.deposed(fence, &e)),
                    Ok(Ok(Err(CallError::Handler(e)))) => Err(e),
                    // The billing system was not called; the intent stays open and is reconciled next round.
                    Ok(Ok(Err(CallError::Store(e)))) => return Err(e),
                    Ok(Err(payload)) => {
                        // The intent stays open: after the operator's resume it is reconciled first.
                        let message = panic_message(payload.as_ref());
                        let attempts = self.with_unit(feed, first, |u| u.attempts + 1);
                        let error = format!("the handler panicked: {message}");
                        return self
                            .halt_unit(fence, feed, first, last, HaltReason::HandlerPanicked, error, attempts)
                            .await;
                    }
                    Err(_) => Err(HandlerError::failed(format!(
                        "the billing call did not finish by its deadline (HandlerTimeoutMilliseconds = {} ms, or \
                         the end of the lease) and was cut",
                        self.config.handler_timeout.as_millis()
                    ))),
                };
                let error = match result {
                    Ok(()) => {
                        if park_after_billing_call() {
                            announce_fail_point(first, last);
                            std::future::pending::<()>().await;
                        }
                        self.forget_unit(fence, feed, first).await?;
                        return Ok(UnitEnd::Applied);
                    }
                    Err(e) => e,
                };
                let now = self.clock.now();
                let certainly_not_applied = if let HandlerError::DependencyNotReady { reason: missing } = &error {
                    let since = self.dependency_since(fence, feed, first, now).await?;
                    let waited = elapsed_between(since, now);
                    if waited < self.config.dependency_wait_max {
                        self.store.close_intent(fence).await?;
                        tracing::info!(feed = %feed, event_id = first, reason = %missing, waited = ?waited, "dependency not ready; retrying later without spending an attempt");
                        let waiting = WaitingEvent { event_id: first, reason: missing.clone(), since };
                        self.status.send_modify(|s| s.feed_mut(feed).waiting = Some(waiting));
                        return Ok(UnitEnd::Waiting);
                    }
                    true
                } else {
                    false
                };
                if !certainly_not_applied {
                    tracing::warn!(%intent, error = %error, "journaled billing call failed; reconciling before any retry");
                    match self.reconcile_intent(fence, &intent).await? {
                        Some(Reconciliation::Applied) => {
                            self.forget_unit(fence, feed, first).await?;
                            return Ok(UnitEnd::Applied);
                        }
                        Some(Reconciliation::NotApplied) => {}
                        Some(Reconciliation::Unknown { .. }) | None => {
                            self.forget_unit(fence, feed, first).await?;
                            return Ok(UnitEnd::Halted);
                        }
                    }
                }
                self.store.close_intent(fence).await?;
                let attempts = self.count_attempt(fence, feed, first).await?;
                if attempts >= max {
                    let error = error.to_string();
                    return self.halt_unit(fence, feed, first, last, HaltReason::HandlerFailed, error, attempts).await;
                }
                tracing::warn!(feed = %feed, event_id = first, attempt = attempts, max, error = %error, retry_in = ?self.config.retry_sleep, "billing side failed (reconciled: not applied); retrying");
                tokio::time::sleep(self.config.retry_sleep).await;
            }
        }
        .instrument(span)
        .await
    }

    /// Asks the handler about an intent, retrying a failing `reconcile` up to `RetryMaxAttempts` times. `Unknown`
    /// (or a reconcile that keeps failing) halts the processor in doubt: returns `None` after halting (or
    /// `Some(Unknown)` never; the halt is stored).
    async fn reconcile_intent(&self, fence: &Fence, intent: &Intent) -> Result<Option<Reconciliation>, StoreError> {
        let max = self.config.retry_max_attempts;
        let mut failures = 0;
        let reason = loop {
            match self.billing.reconcile(intent).await {
                Ok(Reconciliation::Unknown { reason }) => break reason,
                Ok(answer) => {
                    tracing::info!(%intent, answer = ?answer, "intent reconciled");
                    return Ok(Some(answer));
                }
                Err(e) => {
                    failures += 1;
                    if failures >= max {
                        break format!("reconcile failed {failures} times, last: {e}");
                    }
                    tracing::warn!(%intent, error = %e, attempt = failures, max, "reconcile failed; retrying");
                    tokio::time::sleep(self.config.retry_sleep).await;
                }
            }
        };
        let halt = HaltStatus {
            processor: self.kind,
            feed: intent.feed,
            event_id: intent.first_event_id,
            last_event_id: intent.last_event_id,
            reason: HaltReason::InDoubt,
            error: format!("in doubt: {intent}: {reason}"),
            attempts: failures,
            halted_at: self.clock.now(),
        };
        self.store.set_halt(fence, &halt).await?;
        tracing::error!(halt = %halt, "processor halted IN DOUBT: an operator checks the billing system and resolves the intent (applied, send again or skip)");
        self.status.send_modify(|s| {
            s.phase = Phase::Halted;
            s.halt = Some(halt);
        });
        Ok(None)
    }

    /// Before a round sends anything: reconciles the processor's open intent, if any (left by a crash, a lost
    /// lease or a state-database failure between a billing call and its commit). `true` when the processor halted
    /// in doubt.
    pub(super) async fn reconcile_open_intent(&self, fence: &Fence) -> Result<bool, StoreError> {
        let Some(intent) = self.store.intent(self.kind).await? else { return Ok(false) };
        let done = self.store.processed(intent.feed, intent.first_event_id, intent.last_event_id).await?;
        if covered(&done, intent.first_event_id, intent.last_event_id) {
            // Committed already (e.g. an operator skipped the in-doubt halt): nothing to ask.
            tracing::info!(%intent, "open intent already committed; dropped");
            self.store.close_intent(fence).await?;
            return Ok(false);
        }
        tracing::warn!(%intent, "open intent found: reconciling with the billing system before sending anything");
        match self.reconcile_intent(fence, &intent).await? {
            Some(Reconciliation::Applied) => {
                let commit = EventCommit {
                    feed: intent.feed,
                    first_event_id: intent.first_event_id,
                    last_event_id: intent.last_event_id,
                    outcome: ProcessedOutcome::Applied,
                    at: self.clock.now(),
                };
                self.store.commit_intent(fence, &commit).await?;
                self.note_commit(intent.feed, intent.last_event_id, ProcessedOutcome::Applied, intent.records);
                self.status.send_modify(|s| s.intents_reconciled += 1);
                Ok(false)
            }
            Some(_) => {
                self.store.close_intent(fence).await?;
                self.status.send_modify(|s| s.intents_reconciled += 1);
                Ok(false)
            }
            None => Ok(true),
        }
    }
}

/// Whether processed rows cover every id of `first..=last`.
fn covered(rows: &[crate::store::ProcessedEvent], first: i64, last: i64) -> bool {
    let mut next = first;
    for r in rows {
        if r.event_id > next {
            return false;
        }
        next = next.max(r.last_event_id.saturating_add(1));
        if next > last {
            return true;
        }
    }
    false
}
