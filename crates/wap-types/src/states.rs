//! Integer enums of the Usage Service and admin objects.

use crate::wire::wire_int_enum;

wire_int_enum! {
    /// `UsageEvent.State`: where an event stands in WAP's approval.
    #[derive(Default)]
    pub enum NotificationState {
        /// 0: committed by WAP (the only value seen on pull feeds).
        #[default]
        Acknowledged = 0,
        /// 1: rejected by a subscriber.
        Rejected = 1,
        /// 2: waiting for approval (approval calls carry it).
        PendingApproval = 2,
        /// 3: approved.
        Approved = 3,
    }
}

/// What a pull-feed consumer does with an event in a given [`NotificationState`] (docs/protocol/usage-service.md §3.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PullAction {
    /// Apply it (states 0 and 3).
    Apply,
    /// Skip it, advance the cursor, record it as skipped (state 1).
    Skip,
    /// Hold the cursor at it and poll again next cycle (state 2).
    Hold,
    /// An adapter-side error: the state is unknown.
    Error,
}

impl NotificationState {
    /// The pull-feed action for this state.
    pub fn pull_action(self) -> PullAction {
        match self {
            NotificationState::Acknowledged | NotificationState::Approved => PullAction::Apply,
            NotificationState::Rejected => PullAction::Skip,
            NotificationState::PendingApproval => PullAction::Hold,
            NotificationState::Unknown(_) => PullAction::Error,
        }
    }
}

wire_int_enum! {
    /// `Plan.State` / `PlanAddon.State`.
    pub enum PlanState {
        /// 0: visible to admins only.
        Private = 0,
        /// 1: open to tenants.
        Public = 1,
        /// 2: no new subscriptions.
        Decommissioned = 2,
    }
}

wire_int_enum! {
    /// `ConfigState` of plans, add-ons, quotas and plan services.
    pub enum ConfigState {
        /// 0: not configured.
        NotConfigured = 0,
        /// 1: configured.
        Configured = 1,
    }
}

wire_int_enum! {
    /// `QuotaSyncState` / `ActivationSyncState`.
    pub enum SyncState {
        /// 0: in sync.
        InSync = 0,
        /// 1: syncing.
        Syncing = 1,
        /// 2: out of sync.
        OutOfSync = 2,
    }
}

wire_int_enum! {
    /// `AdminSubscription.State`: the **admin** numbering (Usage Service and approval calls).
    ///
    /// Distinct from [`RpSubscriptionState`](crate::rp::RpSubscriptionState): a suspension is `2` here and `1`
    /// on a resource provider.
    pub enum AdminSubscriptionState {
        /// 0: internal (approval calls may carry it on create).
        None = 0,
        /// 1: active, billable.
        Active = 1,
        /// 2: suspended.
        Suspended = 2,
        /// 3: being deleted (internal).
        DeletePending = 3,
    }
}

wire_int_enum! {
    /// `User.State`.
    pub enum UserState {
        /// 0: e-mail not yet validated.
        PendingValidation = 0,
        /// 1: active.
        Active = 1,
        /// 2: suspended.
        Suspended = 2,
        /// 3: being deleted.
        DeletePending = 3,
    }
}
