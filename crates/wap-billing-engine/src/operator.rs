//! Operator commands (docs/protocol/adapter-engine.md §3): inspect a halt, `resume`, `skip`; read the audit log and cursors.
//!
//! The commands write to the state store, so they work from any instance (or a separate admin tool) against the
//! shared database; a halted processor notices within a few seconds, at once when the command goes through its
//! own [`ProcessorHandle`](crate::ProcessorHandle).

use std::sync::Arc;

use chrono::Utc;
use wap_types::FeedKind;

use crate::identity::StoreIdentityMap;
use crate::journal::{InDoubtResolution, Intent};
use crate::store::{AuditEntry, FeedCursor, HaltStatus, HaltTarget, ProcessorKind, StateStore, StoreError};

/// Operator commands on a state store.
#[derive(Debug, Clone)]
pub struct Operator {
    store: Arc<dyn StateStore>,
}

impl Operator {
    /// Commands on `store`.
    pub fn new(store: Arc<dyn StateStore>) -> Self {
        Operator { store }
    }

    /// The stored halt of a processor.
    pub async fn halt(&self, processor: ProcessorKind) -> Result<Option<HaltStatus>, StoreError> {
        self.store.halt(processor).await
    }

    /// `resume`: the processor retries the halted event with a fresh attempt budget (a PendingApproval timeout
    /// waits again). Audited. Returns the halt that was cleared. Acts on whatever is halted: prefer
    /// [`Operator::resume_event`], which names the event.
    pub async fn resume(&self, processor: ProcessorKind, actor: &str) -> Result<HaltStatus, StoreError> {
        self.resume_checked(processor, None, actor).await
    }

    /// `resume` of the halt on `event`: refused with [`StoreError::HaltMismatch`] (nothing changed) when the
    /// processor is halted on another event.
    pub async fn resume_event(
        &self,
        processor: ProcessorKind,
        event: HaltTarget,
        actor: &str,
    ) -> Result<HaltStatus, StoreError> {
        self.resume_checked(processor, Some(event), actor).await
    }

    pub(crate) async fn resume_checked(
        &self,
        processor: ProcessorKind,
        event: Option<HaltTarget>,
        actor: &str,
    ) -> Result<HaltStatus, StoreError> {
        let halt = self.store.resume(processor, event, actor, Utc::now()).await?;
        tracing::warn!(processor = %processor, actor, feed = %halt.feed, event_id = halt.event_id, "operator resumed processor");
        Ok(halt)
    }

    /// `skip`: records the halted event (for a usage batch whose failing record was not named: its whole id range)
    /// as `skipped_by_operator`, moves the cursor past it and resumes. Audited with `reason`. The event never
    /// reaches the billing system. For a lost-history halt this is the operator's acknowledgement that the
    /// range is gone. Acts on whatever is halted: prefer [`Operator::skip_event`], which names the event.
    pub async fn skip(&self, processor: ProcessorKind, actor: &str, reason: &str) -> Result<HaltStatus, StoreError> {
        self.skip_checked(processor, None, actor, reason).await
    }

    /// `skip` of the halt on `event`: refused with [`StoreError::HaltMismatch`] (nothing changed) when the
    /// processor is halted on another event.
    pub async fn skip_event(
        &self,
        processor: ProcessorKind,
        event: HaltTarget,
        actor: &str,
        reason: &str,
    ) -> Result<HaltStatus, StoreError> {
        self.skip_checked(processor, Some(event), actor, reason).await
    }

    pub(crate) async fn skip_checked(
        &self,
        processor: ProcessorKind,
        event: Option<HaltTarget>,
        actor: &str,
        reason: &str,
    ) -> Result<HaltStatus, StoreError> {
        let halt = self.store.skip(processor, event, actor, reason, Utc::now()).await?;
        tracing::warn!(processor = %processor, actor, reason, feed = %halt.feed, event_id = halt.event_id, last_event_id = halt.last_event_id, "operator skipped event");
        Ok(halt)
    }

    /// Resolves the intent a processor halted **in doubt** on (journaled path), after the operator checked the
    /// billing system: [`InDoubtResolution::Applied`] commits it as applied, [`InDoubtResolution::SendAgain`] has
    /// it sent again, [`InDoubtResolution::Skip`] records it as `skipped_by_operator`; the halt is cleared and the
    /// decision audited with `reason` (action `resolve`). Returns the intent. [`StoreError::NotInDoubt`] when the
    /// processor is not halted in doubt. (`resume` on an in-doubt halt asks the handler's `reconcile` again.)
    pub async fn resolve_in_doubt(
        &self,
        processor: ProcessorKind,
        resolution: InDoubtResolution,
        actor: &str,
        reason: &str,
    ) -> Result<Intent, StoreError> {
        let intent = self.store.resolve_intent(processor, resolution, actor, reason, Utc::now()).await?;
        tracing::warn!(processor = %processor, actor, reason, %resolution, %intent, "operator resolved in-doubt intent");
        Ok(intent)
    }

    /// The open intent of a processor (journaled path), if any.
    pub async fn intent(&self, processor: ProcessorKind) -> Result<Option<Intent>, StoreError> {
        self.store.intent(processor).await
    }

    /// The newest `limit` audit entries, oldest first.
    pub async fn audit_log(&self, limit: u32) -> Result<Vec<AuditEntry>, StoreError> {
        self.store.audit_log(limit).await
    }

    /// The stored positions of all seven feeds.
    pub async fn cursors(&self) -> Result<Vec<FeedCursor>, StoreError> {
        let mut out = Vec::with_capacity(FeedKind::ALL.len());
        for feed in FeedKind::ALL {
            out.push(self.store.cursor(feed).await?);
        }
        Ok(out)
    }

    /// The identity map in the same store (operators set, change and delete mappings through it).
    pub fn identity_map(&self) -> StoreIdentityMap {
        StoreIdentityMap::new(Arc::clone(&self.store))
    }
}
