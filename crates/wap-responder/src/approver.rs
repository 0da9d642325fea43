//! [`SubscriptionApprover`]: the billing system's answer to "may this tenant action happen?"
//! (docs/protocol/approval-and-pricing.md §3.3).
//!
//! The adapter calls one method per operation WAP asks about: create or delete a subscription (A, B), add or
//! remove a subscription add-on (C, D). Subscription updates (E) and add-on updates are approved by the adapter
//! itself, as WAP requires; they never reach the trait, so no implementation can refuse them by accident.

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use async_trait::async_trait;
use futures_util::future::BoxFuture;
use wap_types::{AdminSubscription, Decision, PlanAddonReference, UsageEvent};

/// A create or delete subscription call (operations A and B): the event with its typed subscription.
#[derive(Debug, Clone)]
pub struct SubscriptionApproval {
    /// The whole event as received: `EventId`, `Method`, the subscription, the raw entity JSON, unknown members.
    pub event: UsageEvent<AdminSubscription>,
}

impl SubscriptionApproval {
    /// Wraps an event.
    pub fn new(event: UsageEvent<AdminSubscription>) -> Self {
        SubscriptionApproval { event }
    }

    /// `EventId`: the idempotency key WAP may resend.
    pub fn event_id(&self) -> i64 {
        self.event.event_id
    }

    /// The subscription (`Entity`).
    pub fn subscription(&self) -> &AdminSubscription {
        &self.event.entity
    }

    /// `PlanId` of the subscription, if sent.
    pub fn plan_id(&self) -> Option<&str> {
        self.event.entity.plan_id.as_deref()
    }

    /// `AccountAdminLiveEmailId`: the tenant account, if sent.
    pub fn account(&self) -> Option<&str> {
        self.event.entity.account_admin_live_email_id.as_deref()
    }
}

/// A create or delete subscription add-on call (operations C and D): the event with its typed add-on reference.
#[derive(Debug, Clone)]
pub struct AddOnApproval {
    /// The whole event as received; `entity_parent_id` is the subscription.
    pub event: UsageEvent<PlanAddonReference>,
}

impl AddOnApproval {
    /// Wraps an event.
    pub fn new(event: UsageEvent<PlanAddonReference>) -> Self {
        AddOnApproval { event }
    }

    /// `EventId`: the idempotency key WAP may resend.
    pub fn event_id(&self) -> i64 {
        self.event.event_id
    }

    /// The add-on reference (`Entity`).
    pub fn add_on(&self) -> &PlanAddonReference {
        &self.event.entity
    }

    /// `AddOnId`: the catalogue add-on.
    pub fn add_on_id(&self) -> &str {
        &self.event.entity.add_on_id
    }

    /// `EntityParentId`: the subscription the add-on is bought for or removed from.
    pub fn subscription_id(&self) -> Option<&str> {
        self.event.entity_parent_id.as_deref()
    }
}

/// Decides approval calls. An `Err` is a failure (billing system unreachable, bug): the adapter then applies its
/// `ApprovalFailureMode` (deny by default), exactly as for a panic or an overrun of the decision budget.
///
/// Only the two create operations must be written: deletes are approved unless overridden (docs/protocol/approval-and-pricing.md §3.3 B, D).
///
/// ```
/// use wap_responder::{AddOnApproval, SubscriptionApprover, SubscriptionApproval};
/// use wap_types::Decision;
///
/// struct KnownPlans(Vec<String>);
///
/// #[async_trait::async_trait]
/// impl SubscriptionApprover for KnownPlans {
///     type Error = std::convert::Infallible;
///     async fn create_subscription(&self, a: SubscriptionApproval) -> Result<Decision, Self::Error> {
///         Ok(match a.plan_id() {
///             Some(p) if self.0.iter().any(|k| k == p) => Decision::Approve,
///             _ => Decision::deny("unknown plan"),
///         })
///     }
///     async fn create_subscription_addon(&self, _: AddOnApproval) -> Result<Decision, Self::Error> {
///         Ok(Decision::Approve)
///     }
/// }
/// ```
#[async_trait]
pub trait SubscriptionApprover: Send + Sync + 'static {
    /// What a failed decision carries; only logged (never sent to WAP).
    type Error: fmt::Display + fmt::Debug + Send + 'static;

    /// A: may this subscription be created?
    async fn create_subscription(&self, approval: SubscriptionApproval) -> Result<Decision, Self::Error>;

    /// B: may this subscription be deleted? Approved unless overridden.
    async fn delete_subscription(&self, approval: SubscriptionApproval) -> Result<Decision, Self::Error> {
        let _ = approval;
        Ok(Decision::Approve)
    }

    /// C: may this add-on be added to the subscription `EntityParentId`?
    async fn create_subscription_addon(&self, approval: AddOnApproval) -> Result<Decision, Self::Error>;

    /// D: may this add-on be removed? Approved unless overridden.
    async fn delete_subscription_addon(&self, approval: AddOnApproval) -> Result<Decision, Self::Error> {
        let _ = approval;
        Ok(Decision::Approve)
    }
}

#[async_trait]
impl<T: SubscriptionApprover + ?Sized> SubscriptionApprover for Arc<T> {
    type Error = T::Error;

    async fn create_subscription(&self, approval: SubscriptionApproval) -> Result<Decision, Self::Error> {
        (**self).create_subscription(approval).await
    }

    async fn delete_subscription(&self, approval: SubscriptionApproval) -> Result<Decision, Self::Error> {
        (**self).delete_subscription(approval).await
    }

    async fn create_subscription_addon(&self, approval: AddOnApproval) -> Result<Decision, Self::Error> {
        (**self).create_subscription_addon(approval).await
    }

    async fn delete_subscription_addon(&self, approval: AddOnApproval) -> Result<Decision, Self::Error> {
        (**self).delete_subscription_addon(approval).await
    }
}

type SubscriptionFn<E> = Arc<dyn Fn(SubscriptionApproval) -> BoxFuture<'static, Result<Decision, E>> + Send + Sync>;
type AddOnFn<E> = Arc<dyn Fn(AddOnApproval) -> BoxFuture<'static, Result<Decision, E>> + Send + Sync>;

fn subscription_fn<E, F, Fut>(f: F) -> SubscriptionFn<E>
where
    F: Fn(SubscriptionApproval) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Decision, E>> + Send + 'static,
{
    Arc::new(move |a| Box::pin(f(a)))
}

fn add_on_fn<E, F, Fut>(f: F) -> AddOnFn<E>
where
    F: Fn(AddOnApproval) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Decision, E>> + Send + 'static,
{
    Arc::new(move |a| Box::pin(f(a)))
}

/// A [`SubscriptionApprover`] made of closures (each returns a future of `Result<Decision, E>`).
///
/// ```
/// use std::convert::Infallible;
/// use wap_responder::FnApprover;
/// use wap_types::Decision;
///
/// let approver = FnApprover::new(
///     |s| async move {
///         Ok::<_, Infallible>(if s.plan_id() == Some("Silverq7k2d9w") { Decision::Approve } else { Decision::deny("unknown plan") })
///     },
///     |_addon| async { Ok(Decision::Approve) },
/// )
/// .on_delete_subscription(|_| async { Ok(Decision::deny("contact billing to cancel")) });
/// # let _ = approver;
/// ```
pub struct FnApprover<E> {
    create_subscription: SubscriptionFn<E>,
    delete_subscription: Option<SubscriptionFn<E>>,
    create_subscription_addon: AddOnFn<E>,
    delete_subscription_addon: Option<AddOnFn<E>>,
}

impl<E> Clone for FnApprover<E> {
    fn clone(&self) -> Self {
        FnApprover {
            create_subscription: self.create_subscription.clone(),
            delete_subscription: self.delete_subscription.clone(),
            create_subscription_addon: self.create_subscription_addon.clone(),
            delete_subscription_addon: self.delete_subscription_addon.clone(),
        }
    }
}

impl<E> fmt::Debug for FnApprover<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FnApprover")
            .field("delete_subscription", &self.delete_subscription.as_ref().map(|_| "custom"))
            .field("delete_subscription_addon", &self.delete_subscription_addon.as_ref().map(|_| "custom"))
            .finish_non_exhaustive()
    }
}

impl<E: fmt::Display + fmt::Debug + Send + 'static> FnApprover<E> {
    /// An approver from the two create decisions; deletes are approved.
    pub fn new<F1, Fut1, F2, Fut2>(create_subscription: F1, create_subscription_addon: F2) -> Self
    where
        F1: Fn(SubscriptionApproval) -> Fut1 + Send + Sync + 'static,
        Fut1: Future<Output = Result<Decision, E>> + Send + 'static,
        F2: Fn(AddOnApproval) -> Fut2 + Send + Sync + 'static,
        Fut2: Future<Output = Result<Decision, E>> + Send + 'static,
    {
        FnApprover {
            create_subscription: subscription_fn(create_subscription),
            delete_subscription: None,
            create_subscription_addon: add_on_fn(create_subscription_addon),
            delete_subscription_addon: None,
        }
    }

    /// Decides subscription deletes (B) with a closure instead of approving them.
    pub fn on_delete_subscription<F, Fut>(mut self, f: F) -> Self
    where
        F: Fn(SubscriptionApproval) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Decision, E>> + Send + 'static,
    {
        self.delete_subscription = Some(subscription_fn(f));
        self
    }

    /// Decides add-on removals (D) with a closure instead of approving them.
    pub fn on_delete_subscription_addon<F, Fut>(mut self, f: F) -> Self
    where
        F: Fn(AddOnApproval) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Decision, E>> + Send + 'static,
    {
        self.delete_subscription_addon = Some(add_on_fn(f));
        self
    }
}

#[async_trait]
impl<E: fmt::Display + fmt::Debug + Send + 'static> SubscriptionApprover for FnApprover<E> {
    type Error = E;

    async fn create_subscription(&self, approval: SubscriptionApproval) -> Result<Decision, E> {
        (self.create_subscription)(approval).await
    }

    async fn delete_subscription(&self, approval: SubscriptionApproval) -> Result<Decision, E> {
        match &self.delete_subscription {
            Some(f) => f(approval).await,
            None => Ok(Decision::Approve),
        }
    }

    async fn create_subscription_addon(&self, approval: AddOnApproval) -> Result<Decision, E> {
        (self.create_subscription_addon)(approval).await
    }

    async fn delete_subscription_addon(&self, approval: AddOnApproval) -> Result<Decision, E> {
        match &self.delete_subscription_addon {
            Some(f) => f(approval).await,
            None => Ok(Decision::Approve),
        }
    }
}
