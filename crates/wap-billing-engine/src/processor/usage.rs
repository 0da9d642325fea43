//! The usage processor's part: batches of records to the [`UsageHandler`].
//!
//! Exactly-once for batches: the handler receives the uncommitted records of a page (ascending); on `Ok` the engine
//! commits one `processed_event` row covering the batch's id range together with the cursor (= the batch's last
//! id), fenced, in one transaction. A crash before that commit re-delivers the records, possibly in a batch with
//! other boundaries, so the handler deduplicates per record `(usage, EventId)`. When the handler names the failing
//! record ([`HandlerError::for_record`](crate::HandlerError::for_record)), the records before it are applied and
//! committed as their own batch and the failing record is retried alone, so a halt and an operator `skip` concern
//! that record only; otherwise the halt covers the whole batch.

use wap_types::{FeedKind, UsageRecord};

use super::journal::JournaledUnit;
use super::{CallError, CallInfo, FeedEnd, Processor, UnitEnd};
use crate::handler::{HandlerError, UsageBatch, UsageHandler};
use crate::source::{FeedItem, MalformedItem};
use crate::store::{Fence, HaltReason, ProcessedOutcome, StoreError};
use crate::usage_lines::{aggregate, UsageLines, UsageShape};

enum Segment {
    Records(Vec<UsageRecord>),
    Invalid(MalformedItem),
}

fn segments(page: Vec<FeedItem>) -> Vec<Segment> {
    let mut out: Vec<Segment> = Vec::new();
    for item in page {
        match item {
            FeedItem::Usage(r) => match out.last_mut() {
                Some(Segment::Records(records)) => records.push(r),
                _ => out.push(Segment::Records(vec![r])),
            },
            FeedItem::Malformed(m) => out.push(Segment::Invalid(m)),
            other => out.push(Segment::Invalid(MalformedItem {
                feed: FeedKind::Usage,
                event_id: other.event_id(),
                error: format!("an item of {} on the usage feed", other.feed()),
                raw: String::new(),
            })),
        }
    }
    out
}

impl Processor {
    /// Applies a sorted page of new usage records in batches. `Some(end)` when the feed stops early.
    pub(super) async fn apply_usage(
        &self,
        fence: &Fence,
        handler: &dyn UsageHandler,
        page: Vec<FeedItem>,
        committed: &mut Option<i64>,
    ) -> Result<Option<FeedEnd>, StoreError> {
        let feed = FeedKind::Usage;
        let shape = handler.usage_shape();
        for segment in segments(page) {
            let records = match segment {
                Segment::Invalid(m) => {
                    let message = format!("usage record does not parse: {}", m.error);
                    let end = self
                        .attempts(fence, feed, m.event_id, m.event_id, false, HaltReason::InvalidItem, |_| {
                            let message = message.clone();
                            async move { Err(HandlerError::failed(message).into()) }
                        })
                        .await?;
                    return Ok(Some(match end {
                        UnitEnd::Waiting => FeedEnd::Waiting,
                        _ => FeedEnd::Halted,
                    }));
                }
                Segment::Records(records) => records,
            };
            let mut rest: &[UsageRecord] = &records;
            while !rest.is_empty() {
                let mut take = rest.len();
                loop {
                    let batch = &rest[..take];
                    let (first, last) = (batch[0].event_id, batch[take - 1].event_id);
                    let end = if self.journaled() || shape != UsageShape::PerRecord {
                        self.usage_unit(fence, handler, shape, batch).await?
                    } else {
                        self.attempts(fence, feed, first, last, take > 1, HaltReason::HandlerFailed, |call| {
                            let batch = UsageBatch {
                                records: batch,
                                attempt: call.attempt,
                                generation: call.generation,
                                deadline: call.deadline,
                            };
                            async move { handler.apply_usage(batch).await.map_err(CallError::from) }
                        })
                        .await?
                    };
                    match end {
                        UnitEnd::Applied => {
                            self.commit(fence, feed, first, last, ProcessedOutcome::Applied, take as u64).await?;
                            *committed = Some(last);
                            rest = &rest[take..];
                            break;
                        }
                        UnitEnd::Split(k) => {
                            let idx = batch.iter().position(|r| r.event_id == k).unwrap_or(0);
                            take = idx.max(1);
                        }
                        UnitEnd::Waiting => return Ok(Some(FeedEnd::Waiting)),
                        UnitEnd::Halted => return Ok(Some(FeedEnd::Halted)),
                    }
                }
            }
        }
        Ok(None)
    }

    /// One batch on the journaled path and/or as aggregated lines ([`UsageShape::PerMeter`]). Neither splits a
    /// batch at a failing record: lines sum several records, and a journaled batch is reconciled as a whole.
    async fn usage_unit(
        &self,
        fence: &Fence,
        handler: &dyn UsageHandler,
        shape: UsageShape,
        batch: &[UsageRecord],
    ) -> Result<UnitEnd, StoreError> {
        let feed = FeedKind::Usage;
        let (first, last) = (batch[0].event_id, batch[batch.len() - 1].event_id);
        let lines = match shape {
            UsageShape::PerMeter { period } => Some(aggregate(batch, period)),
            _ => None,
        };
        let call = |call: CallInfo| {
            let lines = &lines;
            async move {
                let (attempt, generation, deadline) = (call.attempt, call.generation, call.deadline);
                let result = match lines {
                    None => handler.apply_usage(UsageBatch { records: batch, attempt, generation, deadline }).await,
                    Some(Ok(lines)) => {
                        let lines = UsageLines { lines, records: batch, attempt, generation, deadline };
                        handler.apply_usage_lines(lines).await
                    }
                    Some(Err(e)) => Err(HandlerError::failed(e.to_string())),
                };
                result.map_err(CallError::from)
            }
        };
        if self.journaled() {
            let operation = if lines.is_some() { "usage_lines" } else { "usage" };
            let unit = JournaledUnit { feed, first, last, records: batch.len() as u64, operation: operation.into() };
            self.journaled_attempts(fence, unit, call).await
        } else {
            self.attempts(fence, feed, first, last, false, HaltReason::HandlerFailed, call).await
        }
    }
}
