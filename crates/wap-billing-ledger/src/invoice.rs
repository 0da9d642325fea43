//! [`Invoice`]: what a subscription owes according to the ledger, printable as a table.

use std::collections::HashMap;
use std::fmt;

use rusqlite::Connection;

use super::LedgerError;

/// A subscription's invoice: its plan, its add-ons and its usage per meter, priced with the ledger's price list.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Invoice {
    /// The WAP `SubscriptionID`.
    pub subscription_id: String,
    /// `SubscriptionName`.
    pub subscription_name: Option<String>,
    /// `AccountAdminLiveEmailId`.
    pub account: Option<String>,
    /// `active`, `suspended`, `deleted` or `unknown`.
    pub status: &'static str,
    /// `PlanId`.
    pub plan_id: Option<String>,
    /// The plan's `DisplayName`.
    pub plan_name: Option<String>,
    /// The plan's monthly price, when priced.
    pub plan_price: Option<f64>,
    /// Add-ons bought (removed ones included, marked).
    pub add_ons: Vec<InvoiceAddOn>,
    /// Usage per provider and meter.
    pub usage: Vec<InvoiceUsage>,
    /// Usage records of the subscription in the ledger.
    pub usage_records: u64,
}

/// An add-on on an invoice.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct InvoiceAddOn {
    /// `AddOnId`.
    pub add_on_id: String,
    /// The add-on's `DisplayName`.
    pub name: Option<String>,
    /// `AddOnInstanceId`.
    pub instance_id: String,
    /// Monthly price, when priced.
    pub price: Option<f64>,
    /// Removed from the subscription (not charged).
    pub removed: bool,
}

/// A usage line: one meter of one provider.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct InvoiceUsage {
    /// `ProviderName`.
    pub provider: String,
    /// The meter.
    pub meter: String,
    /// The sum of the meter over the subscription's records.
    pub quantity: f64,
    /// Records that contributed.
    pub records: u64,
    /// Price per unit, when priced.
    pub rate: Option<f64>,
}

impl InvoiceUsage {
    /// `quantity × rate`, when priced.
    pub fn amount(&self) -> Option<f64> {
        self.rate.map(|r| r * self.quantity)
    }
}

impl Invoice {
    /// The sum of the priced lines (removed add-ons excluded).
    pub fn total(&self) -> f64 {
        self.plan_price.unwrap_or(0.0)
            + self.add_ons.iter().filter(|a| !a.removed).filter_map(|a| a.price).sum::<f64>()
            + self.usage.iter().filter_map(InvoiceUsage::amount).sum::<f64>()
    }

    /// The quantity billed for one meter of one provider (names matched ignoring case).
    pub fn usage_quantity(&self, provider: &str, meter: &str) -> Option<f64> {
        self.usage
            .iter()
            .find(|u| u.provider.eq_ignore_ascii_case(provider) && u.meter.eq_ignore_ascii_case(meter))
            .map(|u| u.quantity)
    }
}

fn number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

fn money(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| format!("{v:.2}"))
}

/// A unit price with up to 6 decimals, trailing zeros removed (`0.00001`, `0.5`, `2`).
fn rate(r: f64) -> String {
    let text = format!("{r:.6}");
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}

fn cut(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        text.to_owned()
    } else {
        let mut t: String = text.chars().take(width.saturating_sub(1)).collect();
        t.push('~');
        t
    }
}

const ITEM: usize = 52;
const RULE: &str = "  ----------------------------------------------------  ------------  ----------  ----------";

impl fmt::Display for Invoice {
    /// A table: header lines, one line per plan / add-on / meter, the total.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = self.subscription_name.as_deref().unwrap_or("(unnamed)");
        writeln!(f, "Subscription  {name}  [{}]", self.subscription_id)?;
        writeln!(f, "Account       {}  ({})", self.account.as_deref().unwrap_or("-"), self.status)?;
        writeln!(f, "  {:<ITEM$}  {:>12}  {:>10}  {:>10}", "Item", "Quantity", "Rate", "Amount")?;
        writeln!(f, "{RULE}")?;
        let plan = self.plan_name.as_deref().or(self.plan_id.as_deref()).unwrap_or("(no plan)");
        let item = cut(&format!("Plan    {plan}"), ITEM);
        writeln!(f, "  {item:<ITEM$}  {:>12}  {:>10}  {:>10}", 1, money(self.plan_price), money(self.plan_price))?;
        for a in &self.add_ons {
            let label = a.name.as_deref().unwrap_or(&a.add_on_id);
            let label = if a.removed { format!("Add-on  {label} (removed)") } else { format!("Add-on  {label}") };
            let amount = if a.removed { None } else { a.price };
            writeln!(f, "  {:<ITEM$}  {:>12}  {:>10}  {:>10}", cut(&label, ITEM), 1, money(a.price), money(amount))?;
        }
        for u in &self.usage {
            let label = cut(&format!("Usage   {} {}", u.provider, u.meter), ITEM);
            writeln!(
                f,
                "  {label:<ITEM$}  {:>12}  {:>10}  {:>10}",
                number(u.quantity),
                u.rate.map_or_else(|| "-".to_owned(), rate),
                money(u.amount())
            )?;
        }
        writeln!(f, "{RULE}")?;
        let note = format!("{} usage record(s)", self.usage_records);
        write!(f, "  {note:<ITEM$}  {:>12}  {:>10}  {:>10}", "", "Total", format!("{:.2}", self.total()))
    }
}

type SubscriptionRow =
    (String, String, Option<String>, Option<String>, Option<String>, Option<String>, Option<i64>, bool);

/// Every invoice: active subscriptions first, then by account and name.
pub(super) fn all(c: &Connection) -> Result<Vec<Invoice>, LedgerError> {
    let mut prices: HashMap<(String, String), f64> = HashMap::new();
    {
        let mut stmt = c.prepare("SELECT kind, id, amount FROM price")?;
        for row in stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, f64>(2)?)))? {
            let (kind, id, amount) = row?;
            prices.insert((kind, id), amount);
        }
    }
    let names = |table: &str| -> Result<HashMap<String, Option<String>>, LedgerError> {
        let mut stmt = c.prepare(&format!("SELECT id, display_name FROM {table}"))?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, Option<String>>(1)?)))?;
        Ok(rows.collect::<Result<HashMap<_, _>, _>>()?)
    };
    let plan_names = names("plan")?;
    let addon_names = names("addon")?;
    let mut subs: Vec<SubscriptionRow> = {
        let mut stmt = c.prepare(
            "SELECT id, wap_id, name, account, plan_id, plan_wap_id, state, deleted FROM subscription
             ORDER BY deleted, account, name, id",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?, r.get(7)?))
        })?;
        rows.collect::<Result<Vec<_>, _>>()?
    };
    subs.sort_by_key(|s| s.7);
    let mut addons_stmt = c.prepare(
        "SELECT instance_id, addon_id, removed FROM subscription_addon WHERE subscription_id = ?1
         ORDER BY removed, addon_id, instance_id",
    )?;
    let mut usage_stmt = c.prepare(
        "SELECT provider, meter, total, records FROM usage_total WHERE subscription_id = ?1 ORDER BY provider, meter",
    )?;
    let mut record_counts: HashMap<String, u64> = HashMap::new();
    {
        let mut stmt = c.prepare("SELECT subscription_id, COUNT(*) FROM usage_record GROUP BY subscription_id")?;
        for row in stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))? {
            let (id, n) = row?;
            record_counts.insert(id, n as u64);
        }
    }
    let mut out = Vec::with_capacity(subs.len());
    for (id, wap_id, name, account, plan_id, plan_wap_id, state, deleted) in subs {
        let add_ons = addons_stmt
            .query_map([&id], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, bool>(2)?)))?
            .map(|row| {
                row.map(|(instance_id, addon_id, removed)| InvoiceAddOn {
                    name: addon_names.get(&addon_id).cloned().flatten(),
                    price: prices.get(&("addon".to_owned(), addon_id.clone())).copied(),
                    add_on_id: addon_id,
                    instance_id,
                    removed,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let usage = usage_stmt
            .query_map([&id], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, f64>(2)?, r.get::<_, i64>(3)?))
            })?
            .map(|row| {
                row.map(|(provider, meter, quantity, records)| InvoiceUsage {
                    rate: prices
                        .get(&(
                            "meter".to_owned(),
                            format!("{}/{}", provider.to_ascii_lowercase(), meter.to_ascii_lowercase()),
                        ))
                        .copied(),
                    provider,
                    meter,
                    quantity,
                    records: records as u64,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let status = if deleted {
            "deleted"
        } else {
            match state {
                Some(1) => "active",
                Some(2) => "suspended",
                Some(3) => "delete pending",
                _ => "unknown",
            }
        };
        out.push(Invoice {
            usage_records: record_counts.get(&id).copied().unwrap_or(0),
            subscription_id: wap_id,
            subscription_name: name,
            account,
            status,
            plan_name: plan_id.as_ref().and_then(|p| plan_names.get(p).cloned().flatten()),
            plan_price: plan_id.as_ref().and_then(|p| prices.get(&("plan".to_owned(), p.clone())).copied()),
            plan_id: plan_wap_id,
            add_ons,
            usage,
        });
    }
    Ok(out)
}
