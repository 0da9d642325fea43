//! The intent journal on SQLite (the `intent` table of migration 3).

use chrono::{DateTime, Utc};
use rusqlite::{params, Connection, OptionalExtension, Transaction, TransactionBehavior};

use super::{
    audit, check_fence, feed_from, from_millis, processor_from, read_halt, to_millis, ADVANCE_CURSOR, DROP_HOLD_UP_TO,
};
use crate::journal::{InDoubtResolution, Intent};
use crate::store::{AuditAction, EventCommit, Fence, HaltReason, ProcessedOutcome, ProcessorKind, StoreError};

pub(super) fn open_intent(c: &mut Connection, fence: &Fence, intent: &Intent) -> Result<(), StoreError> {
    let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
    check_fence(&tx, fence)?;
    tx.execute(
        "INSERT INTO intent (processor, feed, first_event_id, last_event_id, records, operation, token, generation,
                             opened_at_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
         ON CONFLICT (processor) DO UPDATE SET feed = excluded.feed, first_event_id = excluded.first_event_id,
            last_event_id = excluded.last_event_id, records = excluded.records, operation = excluded.operation,
            token = excluded.token, generation = excluded.generation, opened_at_ms = excluded.opened_at_ms",
        params![
            intent.processor.name(),
            intent.feed.name(),
            intent.first_event_id,
            intent.last_event_id,
            i64::try_from(intent.records).unwrap_or(i64::MAX),
            intent.operation,
            intent.token,
            intent.generation,
            to_millis(intent.opened_at)
        ],
    )?;
    tx.commit()?;
    Ok(())
}

type IntentRow = (String, String, i64, i64, i64, String, String, i64, i64);

pub(super) fn read_intent(c: &Connection, processor: ProcessorKind) -> Result<Option<Intent>, StoreError> {
    let row: Option<IntentRow> = c
        .query_row(
            "SELECT processor, feed, first_event_id, last_event_id, records, operation, token, generation, opened_at_ms
             FROM intent WHERE processor = ?1",
            [processor.name()],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?, r.get(7)?, r.get(8)?)),
        )
        .optional()?;
    row.map(|(p, feed, first, last, records, operation, token, generation, at)| {
        Ok(Intent {
            processor: processor_from(&p)?,
            feed: feed_from(&feed)?,
            first_event_id: first,
            last_event_id: last,
            records: u64::try_from(records).unwrap_or(0),
            operation,
            token,
            generation,
            opened_at: from_millis(at),
        })
    })
    .transpose()
}

fn insert_processed(tx: &Transaction<'_>, commit: &EventCommit, generation: i64) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO processed_event (feed, event_id, last_event_id, outcome, processed_at_ms, generation)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (feed, event_id) DO NOTHING",
        params![
            commit.feed.name(),
            commit.first_event_id,
            commit.last_event_id,
            commit.outcome.name(),
            to_millis(commit.at),
            generation
        ],
    )?;
    tx.execute(ADVANCE_CURSOR, params![commit.feed.name(), commit.last_event_id])?;
    tx.execute(DROP_HOLD_UP_TO, params![commit.feed.name(), commit.last_event_id])?;
    Ok(())
}

pub(super) fn commit_intent(c: &mut Connection, fence: &Fence, commit: &EventCommit) -> Result<(), StoreError> {
    let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
    check_fence(&tx, fence)?;
    insert_processed(&tx, commit, fence.generation)?;
    tx.execute("DELETE FROM intent WHERE processor = ?1", [fence.processor.name()])?;
    tx.commit()?;
    Ok(())
}

pub(super) fn close_intent(c: &mut Connection, fence: &Fence) -> Result<(), StoreError> {
    let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
    check_fence(&tx, fence)?;
    tx.execute("DELETE FROM intent WHERE processor = ?1", [fence.processor.name()])?;
    tx.commit()?;
    Ok(())
}

pub(super) fn resolve_intent(
    c: &mut Connection,
    processor: ProcessorKind,
    resolution: InDoubtResolution,
    actor: &str,
    reason: &str,
    at: DateTime<Utc>,
) -> Result<Intent, StoreError> {
    let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let halt = read_halt(&tx, processor)?.filter(|h| h.reason == HaltReason::InDoubt);
    let (Some(halt), Some(intent)) = (halt, read_intent(&tx, processor)?) else {
        return Err(StoreError::NotInDoubt { processor });
    };
    let outcome = match resolution {
        InDoubtResolution::Applied => Some(ProcessedOutcome::Applied),
        InDoubtResolution::Skip => Some(ProcessedOutcome::SkippedByOperator),
        InDoubtResolution::SendAgain => None,
    };
    if let Some(outcome) = outcome {
        let commit = EventCommit {
            feed: intent.feed,
            first_event_id: intent.first_event_id,
            last_event_id: intent.last_event_id,
            outcome,
            at,
        };
        insert_processed(&tx, &commit, intent.generation)?;
    }
    tx.execute("DELETE FROM intent WHERE processor = ?1", [processor.name()])?;
    tx.execute("DELETE FROM halt WHERE processor = ?1", [processor.name()])?;
    audit(
        &tx,
        at,
        actor,
        &AuditAction::Resolve,
        Some(processor),
        Some(intent.feed),
        Some(intent.first_event_id),
        &format!("in-doubt {intent} resolved as {resolution} ({reason}); was: {halt}"),
    )?;
    tx.commit()?;
    Ok(intent)
}
