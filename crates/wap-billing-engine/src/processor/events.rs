//! The event processor's part: NotificationState actions and typed delivery to the [`EventHandler`].

use std::sync::Arc;

use wap_types::{EventMethod, FeedKind, NotificationState, PullAction, UsageEvent};

use super::journal::JournaledUnit;
use super::{CallError, CallInfo, FeedEnd, Processor, UnitEnd};
use crate::handler::{EntityChange, EventContext, EventHandler, HandlerError, IdempotencyKey};
use crate::identity::{FencedIdentityMap, IdentityMap};
use crate::source::FeedItem;
use crate::store::{FeedHold, Fence, HaltReason, IdentityKind, ProcessedOutcome, StoreError};

impl Processor {
    /// Applies a sorted page of new events one at a time. `Some(end)` when the feed stops before the end of the
    /// page.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn apply_events(
        &self,
        fence: &Fence,
        feed: FeedKind,
        handler: &dyn EventHandler,
        identity: Option<&Arc<dyn IdentityMap>>,
        page: &[FeedItem],
        committed: &mut Option<i64>,
        hold: &mut Option<FeedHold>,
    ) -> Result<Option<FeedEnd>, StoreError> {
        for item in page {
            let id = item.event_id();
            let end = match (item, item.state().map(NotificationState::pull_action)) {
                (FeedItem::Malformed(m), _) => {
                    let message = format!("event does not parse: {}", m.error);
                    self.attempts(fence, feed, id, id, false, HaltReason::InvalidItem, |_| {
                        let message = message.clone();
                        async move { Err(HandlerError::failed(message).into()) }
                    })
                    .await?
                }
                (_, Some(PullAction::Skip)) => {
                    tracing::info!(feed = %feed, event_id = id, "event Rejected (NotificationState 1): skipped and recorded");
                    self.commit(fence, feed, id, id, ProcessedOutcome::SkippedRejected, 1).await?;
                    *committed = Some(id);
                    continue;
                }
                (_, Some(PullAction::Hold)) => return Ok(Some(self.hold(fence, feed, id, hold).await?)),
                (_, Some(PullAction::Error)) => {
                    let message = format!("unknown NotificationState {:?}", item.state());
                    self.attempts(fence, feed, id, id, false, HaltReason::InvalidItem, |_| {
                        let message = message.clone();
                        async move { Err(HandlerError::failed(message).into()) }
                    })
                    .await?
                }
                (_, Some(PullAction::Apply) | None) if self.journaled() => {
                    let unit = JournaledUnit { feed, first: id, last: id, records: 1, operation: operation(item) };
                    self.journaled_attempts(fence, unit, |call| deliver(handler, identity, item, call)).await?
                }
                (_, Some(PullAction::Apply) | None) => {
                    self.attempts(fence, feed, id, id, false, HaltReason::HandlerFailed, |call| {
                        deliver(handler, identity, item, call)
                    })
                    .await?
                }
            };
            match end {
                UnitEnd::Applied => {
                    self.commit(fence, feed, id, id, ProcessedOutcome::Applied, 1).await?;
                    *committed = Some(id);
                }
                UnitEnd::Waiting => return Ok(Some(FeedEnd::Waiting)),
                UnitEnd::Halted => return Ok(Some(FeedEnd::Halted)),
                UnitEnd::Split(_) => unreachable!("events are never split"),
            }
        }
        Ok(None)
    }
}

/// The journaled operation of an event: `<feed>.<Method>`, e.g. `subscriptions.Post`.
fn operation(item: &FeedItem) -> String {
    let method = match item {
        FeedItem::Plan(ev) => ev.method.to_string(),
        FeedItem::Addon(ev) => ev.method.to_string(),
        FeedItem::PlanAddon(ev) => ev.method.to_string(),
        FeedItem::PlanService(ev) => ev.method.to_string(),
        FeedItem::Subscription(ev) => ev.method.to_string(),
        FeedItem::SubscriptionAddon(ev) => ev.method.to_string(),
        FeedItem::Usage(_) | FeedItem::Malformed(_) => "apply".to_owned(),
    };
    format!("{}.{method}", item.feed())
}

/// The change for a method: Post → created (updated when the id is already mapped), Put / unknown → updated,
/// Patch → patched, Delete → deleted.
fn change<'a, T>(key: IdempotencyKey, method: &EventMethod, entity: &'a T, mapped: bool) -> EntityChange<'a, T> {
    match method {
        EventMethod::Post if mapped => EntityChange::Updated(entity),
        EventMethod::Post => EntityChange::Created(entity),
        EventMethod::Put => EntityChange::Updated(entity),
        EventMethod::Patch => EntityChange::Patched(entity),
        EventMethod::Delete => EntityChange::Deleted(entity),
        EventMethod::Other(raw) => {
            tracing::warn!(event = %key, method = %raw, "unknown Method; delivered as an update");
            EntityChange::Updated(entity)
        }
    }
}

/// The billing id of a WAP id. A failing lookup is a state-store error, not a billing failure: it spends no
/// attempt and is retried like any store error.
async fn lookup(
    identity: Option<&Arc<dyn IdentityMap>>,
    kind: IdentityKind,
    wap_id: Option<&str>,
) -> Result<Option<String>, CallError> {
    match (identity, wap_id) {
        (Some(map), Some(id)) => map.billing_id(kind, id).await.map_err(|e| {
            tracing::warn!(kind = %kind, wap_id = id, error = %e, "identity map lookup failed (state store); retrying");
            CallError::Store(e)
        }),
        _ => Ok(None),
    }
}

fn context<'a, T>(
    feed: FeedKind,
    event: &'a UsageEvent<T>,
    call: CallInfo,
    billing_id: Option<String>,
    identity: Option<&Arc<dyn IdentityMap>>,
) -> EventContext<'a> {
    EventContext {
        key: IdempotencyKey { feed, event_id: event.event_id },
        method: &event.method,
        state: event.state,
        entity_parent_id: event.entity_parent_id.as_deref(),
        time_created: event.notification_event_time_created.as_ref(),
        raw_entity: event.raw_entity(),
        attempt: call.attempt,
        billing_id,
        identity: identity
            .map(|m| Arc::new(FencedIdentityMap::new(Arc::clone(m), call.fence.clone())) as Arc<dyn IdentityMap>),
        generation: call.generation,
        deadline: call.deadline,
    }
}

/// Hands one event to the matching typed handler method.
async fn deliver(
    handler: &dyn EventHandler,
    identity: Option<&Arc<dyn IdentityMap>>,
    item: &FeedItem,
    call: CallInfo,
) -> Result<(), CallError> {
    macro_rules! dispatch {
        ($ev:expr, $feed:expr, $method:ident, $id:expr) => {{
            let ev = $ev;
            let billing_id = lookup(identity, $id.0, $id.1).await?;
            let mapped = billing_id.is_some();
            let ctx = context($feed, ev, call, billing_id, identity);
            handler.$method(&ctx, change(ctx.key, &ev.method, &ev.entity, mapped)).await.map_err(CallError::from)
        }};
    }
    match item {
        FeedItem::Plan(ev) => dispatch!(ev, FeedKind::Plans, plan, (IdentityKind::Plan, Some(ev.entity.id.as_str()))),
        FeedItem::Addon(ev) => {
            dispatch!(ev, FeedKind::Addons, addon, (IdentityKind::AddOn, Some(ev.entity.id.as_str())))
        }
        FeedItem::PlanAddon(ev) => dispatch!(ev, FeedKind::PlanAddons, plan_addon, (IdentityKind::AddOn, None::<&str>)),
        FeedItem::PlanService(ev) => {
            dispatch!(ev, FeedKind::PlanServices, plan_service, (IdentityKind::Plan, None::<&str>))
        }
        FeedItem::Subscription(ev) => dispatch!(
            ev,
            FeedKind::Subscriptions,
            subscription,
            (IdentityKind::Subscription, Some(ev.entity.subscription_id.as_str()))
        ),
        FeedItem::SubscriptionAddon(ev) => dispatch!(
            ev,
            FeedKind::SubscriptionAddons,
            subscription_addon,
            (IdentityKind::AddOnInstance, ev.entity.add_on_instance_id.as_deref())
        ),
        FeedItem::Usage(r) => Err(HandlerError::failed(format!("usage record {} on an event feed", r.event_id)).into()),
        FeedItem::Malformed(m) => Err(HandlerError::failed(format!("event does not parse: {}", m.error)).into()),
    }
}
