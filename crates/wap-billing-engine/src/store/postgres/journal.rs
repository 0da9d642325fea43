//! The intent journal on PostgreSQL (the `intent` table of migration 3).

use chrono::{DateTime, Utc};
use tokio_postgres::{Client, GenericClient, Transaction};

use super::{
    audit, check_fence, feed_from, from_millis, processor_from, read_halt, to_millis, ADVANCE_CURSOR, DROP_HOLD_UP_TO,
};
use crate::journal::{InDoubtResolution, Intent};
use crate::store::{AuditAction, EventCommit, Fence, HaltReason, ProcessedOutcome, ProcessorKind, StoreError};

pub(super) async fn open_intent(c: &mut Client, fence: &Fence, intent: &Intent) -> Result<(), StoreError> {
    let tx = c.transaction().await?;
    check_fence(&tx, fence).await?;
    tx.execute(
        "INSERT INTO intent (processor, feed, first_event_id, last_event_id, records, operation, token, generation,
                             opened_at_ms)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
         ON CONFLICT (processor) DO UPDATE SET feed = excluded.feed, first_event_id = excluded.first_event_id,
            last_event_id = excluded.last_event_id, records = excluded.records, operation = excluded.operation,
            token = excluded.token, generation = excluded.generation, opened_at_ms = excluded.opened_at_ms",
        &[
            &intent.processor.name(),
            &intent.feed.name(),
            &intent.first_event_id,
            &intent.last_event_id,
            &i64::try_from(intent.records).unwrap_or(i64::MAX),
            &intent.operation,
            &intent.token,
            &intent.generation,
            &to_millis(intent.opened_at),
        ],
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

pub(super) async fn read_intent<C: GenericClient + Sync>(
    c: &C,
    processor: ProcessorKind,
) -> Result<Option<Intent>, StoreError> {
    let row = c
        .query_opt(
            "SELECT processor, feed, first_event_id, last_event_id, records, operation, token, generation, opened_at_ms
             FROM intent WHERE processor = $1",
            &[&processor.name()],
        )
        .await?;
    row.map(|r| {
        Ok(Intent {
            processor: processor_from(r.get(0))?,
            feed: feed_from(r.get(1))?,
            first_event_id: r.get(2),
            last_event_id: r.get(3),
            records: u64::try_from(r.get::<_, i64>(4)).unwrap_or(0),
            operation: r.get(5),
            token: r.get(6),
            generation: r.get(7),
            opened_at: from_millis(r.get(8)),
        })
    })
    .transpose()
}

async fn insert_processed(tx: &Transaction<'_>, commit: &EventCommit, generation: i64) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO processed_event (feed, event_id, last_event_id, outcome, processed_at_ms, generation)
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (feed, event_id) DO NOTHING",
        &[
            &commit.feed.name(),
            &commit.first_event_id,
            &commit.last_event_id,
            &commit.outcome.name(),
            &to_millis(commit.at),
            &generation,
        ],
    )
    .await?;
    tx.execute(ADVANCE_CURSOR, &[&commit.feed.name(), &commit.last_event_id]).await?;
    tx.execute(DROP_HOLD_UP_TO, &[&commit.feed.name(), &commit.last_event_id]).await?;
    Ok(())
}

pub(super) async fn commit_intent(c: &mut Client, fence: &Fence, commit: &EventCommit) -> Result<(), StoreError> {
    let tx = c.transaction().await?;
    check_fence(&tx, fence).await?;
    insert_processed(&tx, commit, fence.generation).await?;
    tx.execute("DELETE FROM intent WHERE processor = $1", &[&fence.processor.name()]).await?;
    tx.commit().await?;
    Ok(())
}

pub(super) async fn close_intent(c: &mut Client, fence: &Fence) -> Result<(), StoreError> {
    let tx = c.transaction().await?;
    check_fence(&tx, fence).await?;
    tx.execute("DELETE FROM intent WHERE processor = $1", &[&fence.processor.name()]).await?;
    tx.commit().await?;
    Ok(())
}

pub(super) async fn resolve_intent(
    c: &mut Client,
    processor: ProcessorKind,
    resolution: InDoubtResolution,
    actor: &str,
    reason: &str,
    at: DateTime<Utc>,
) -> Result<Intent, StoreError> {
    let tx = c.transaction().await?;
    // Lock the halt row so two operators cannot resolve the same intent twice.
    tx.execute("SELECT 1 FROM halt WHERE processor = $1 FOR UPDATE", &[&processor.name()]).await?;
    let halt = read_halt(&tx, processor).await?.filter(|h| h.reason == HaltReason::InDoubt);
    let (Some(halt), Some(intent)) = (halt, read_intent(&tx, processor).await?) else {
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
        insert_processed(&tx, &commit, intent.generation).await?;
    }
    tx.execute("DELETE FROM intent WHERE processor = $1", &[&processor.name()]).await?;
    tx.execute("DELETE FROM halt WHERE processor = $1", &[&processor.name()]).await?;
    audit(
        &tx,
        at,
        actor,
        &AuditAction::Resolve,
        Some(processor),
        Some(intent.feed),
        Some(intent.first_event_id),
        &format!("in-doubt {intent} resolved as {resolution} ({reason}); was: {halt}"),
    )
    .await?;
    tx.commit().await?;
    Ok(intent)
}
