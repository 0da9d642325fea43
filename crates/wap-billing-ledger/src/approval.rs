//! The ledger as the responder's billing system: [`LedgerApprover`] (docs/protocol/approval-and-pricing.md §3.3) and prices
//! (docs/protocol/approval-and-pricing.md §4).

use async_trait::async_trait;
use wap_responder::{AddOnApproval, PricingResponder, SubscriptionApproval, SubscriptionApprover};
use wap_types::{AddonPriceQuery, Decision, PlanPriceQuery};

use super::{key, AccountStanding, LedgerError, SqliteLedger};

/// Decides approval calls from the ledger's data, with the spec's default rules (docs/protocol/approval-and-pricing.md §3.3):
///
/// | Operation | Approved when |
/// |---|---|
/// | A create subscription | the plan is in the ledger (synced, not deleted) — or `ApproveUnknownPlans` — and the account is not overdue |
/// | B delete subscription | always |
/// | C create add-on | the add-on is in the ledger (or `ApproveUnknownPlans`), the subscription `EntityParentId` is in the ledger, and its account is not overdue |
/// | D delete add-on | always |
///
/// Updates never reach an approver (the responder approves them itself). While the engine backfills, plans not
/// synced yet are unknown and their purchases denied: see `ApproveUnknownPlans` in docs/operations.md.
#[derive(Debug, Clone)]
pub struct LedgerApprover {
    ledger: SqliteLedger,
    approve_unknown_plans: bool,
}

impl SqliteLedger {
    /// An approver reading this ledger (`ApproveUnknownPlans = false`).
    pub fn approver(&self) -> LedgerApprover {
        LedgerApprover { ledger: self.clone(), approve_unknown_plans: false }
    }
}

impl LedgerApprover {
    /// `ApproveUnknownPlans`: approve purchases of plans and add-ons the ledger does not know (yet), e.g. during a
    /// first-run backfill.
    pub fn approve_unknown_plans(mut self, approve: bool) -> Self {
        self.approve_unknown_plans = approve;
        self
    }

    async fn account_check(&self, account: Option<&str>) -> Result<Option<Decision>, LedgerError> {
        let Some(account) = account else { return Ok(None) };
        Ok(match self.ledger.account_standing(account).await? {
            Some(AccountStanding::Overdue) => Some(Decision::deny(format!("account {account} has an overdue invoice"))),
            _ => None,
        })
    }
}

#[async_trait]
impl SubscriptionApprover for LedgerApprover {
    type Error = LedgerError;

    async fn create_subscription(&self, approval: SubscriptionApproval) -> Result<Decision, Self::Error> {
        let plan = approval.plan_id().unwrap_or("");
        if !self.ledger.has_plan(plan).await? && !self.approve_unknown_plans {
            return Ok(Decision::deny(format!("plan {plan:?} is not in the billing system (not synced yet?)")));
        }
        if let Some(deny) = self.account_check(approval.account()).await? {
            return Ok(deny);
        }
        Ok(Decision::Approve)
    }

    async fn create_subscription_addon(&self, approval: AddOnApproval) -> Result<Decision, Self::Error> {
        let add_on = approval.add_on_id();
        if !self.ledger.has_addon(add_on).await? && !self.approve_unknown_plans {
            return Ok(Decision::deny(format!("add-on {add_on:?} is not in the billing system (not synced yet?)")));
        }
        let subscription = approval.subscription_id().unwrap_or("");
        let account = match self.ledger.subscription_account(subscription).await? {
            Some(account) => account,
            None if self.approve_unknown_plans => None,
            None => {
                return Ok(Decision::deny(format!(
                    "subscription {subscription:?} is not in the billing system (not synced yet?)"
                )))
            }
        };
        if let Some(deny) = self.account_check(account.as_deref()).await? {
            return Ok(deny);
        }
        Ok(Decision::Approve)
    }
}

impl SqliteLedger {
    /// `Some(account)` for a known subscription (the account may be unknown: `Some(None)`).
    async fn subscription_account(&self, subscription_id: &str) -> Result<Option<Option<String>>, LedgerError> {
        use rusqlite::OptionalExtension;
        let k = key(subscription_id);
        self.run(move |c| {
            Ok(c.query_row("SELECT account FROM subscription WHERE id = ?1 AND deleted = 0", [k], |r| r.get(0))
                .optional()?)
        })
        .await
    }

    async fn price_line(&self, table: &'static str, kind: &'static str, id: &str) -> Option<String> {
        use rusqlite::OptionalExtension;
        let k = key(id);
        let row = self
            .run(move |c| {
                Ok(c.query_row(
                    &format!(
                        "SELECT t.display_name, p.amount FROM price p LEFT JOIN {table} t ON t.id = p.id
                         WHERE p.kind = ?1 AND p.id = ?2"
                    ),
                    rusqlite::params![kind, k],
                    |r| Ok((r.get::<_, Option<String>>(0)?, r.get::<_, f64>(1)?)),
                )
                .optional()?)
            })
            .await;
        match row {
            Ok(Some((name, amount))) => {
                let name = name.unwrap_or_else(|| id.to_owned());
                let usage = if kind == "plan" { " + usage" } else { "" };
                Some(format!("{name}: ${amount:.2} per month{usage}"))
            }
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(error = %e, id, "price lookup failed; answering an empty price");
                None
            }
        }
    }
}

/// Prices from the ledger's price list: `"<DisplayName>: $25.00 per month + usage"` for a plan,
/// `"<DisplayName>: $4.00 per month"` for an add-on; `None` (an empty price) for an id without a price.
#[async_trait]
impl PricingResponder for SqliteLedger {
    async fn plan_price(&self, query: &PlanPriceQuery) -> Option<String> {
        self.price_line("plan", "plan", &query.id).await
    }

    async fn addon_price(&self, query: &AddonPriceQuery) -> Option<String> {
        self.price_line("addon", "addon", &query.id).await
    }
}
