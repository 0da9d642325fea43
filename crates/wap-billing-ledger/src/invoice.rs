//! [`Invoice`]: what a subscription owes according to the ledger, printable as a table a billing engineer reads:
//! an invoice number, a period and a currency; units per meter as the provider reports them (whole numbers where
//! the meter is whole); a note on a suspended or deleted subscription's charge; unpriced lines with the reason.

use std::collections::HashMap;
use std::fmt;

use rusqlite::{params, Connection};
use wap_types::WapDateTime;

use super::{LedgerError, SqliteLedger};

/// The currency of invoices until [`SqliteLedger::set_currency`] sets another (the price answers of the
/// reference ledger are written in dollars).
pub const DEFAULT_CURRENCY: &str = "USD";

/// A subscription's invoice: its plan, its add-ons and its usage per meter, priced with the ledger's price list.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Invoice {
    /// The invoice number: `INV-<period start, yyyymmdd, or "OPEN" without usage>-<the subscription id's first 8
    /// letters and digits, upper case>`; the same subscription and period always give the same number.
    pub invoice_number: String,
    /// The billing period: from the earliest `StartTime` to the latest `EndTime` of the subscription's usage
    /// records (`None` when it has none: then only the monthly fees are listed).
    pub period: Option<InvoicePeriod>,
    /// The ISO 4217 code every amount is in ([`SqliteLedger::set_currency`], default [`DEFAULT_CURRENCY`]).
    pub currency: String,
    /// The WAP `SubscriptionID`.
    pub subscription_id: String,
    /// `SubscriptionName`.
    pub subscription_name: Option<String>,
    /// `AccountAdminLiveEmailId`.
    pub account: Option<String>,
    /// `active`, `suspended`, `deleted`, `delete pending` or `unknown`.
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
    /// What a reader must know about the charge: how a suspended or deleted subscription is charged, how
    /// quantities are summed, why a line is not charged. Printed under the table.
    pub notes: Vec<String>,
}

/// The billing period of an [`Invoice`] (UTC).
#[derive(Debug, Clone, PartialEq)]
pub struct InvoicePeriod {
    /// The earliest `StartTime` of the usage records.
    pub start: WapDateTime,
    /// The latest `EndTime` of the usage records.
    pub end: WapDateTime,
}

impl fmt::Display for InvoicePeriod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let fmt = |t: &WapDateTime| t.to_utc().format("%Y-%m-%d %H:%M").to_string();
        write!(f, "{} to {} UTC", fmt(&self.start), fmt(&self.end))
    }
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

/// How a meter's quantity reads: its unit as the provider reports it and whether it counts whole things.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct MeterUnit {
    /// The unit the provider reports the meter in (`MB`, `GB`, `databases`, `vCPUs`, `%`, `units` when unknown).
    pub unit: &'static str,
    /// Whole numbers only (a count, whole MB): the quantity is shown without decimals.
    pub whole: bool,
    /// A percentage or other level that is averaged over the records instead of summed.
    pub averaged: bool,
}

impl MeterUnit {
    const fn new(unit: &'static str, whole: bool) -> Self {
        MeterUnit { unit, whole, averaged: false }
    }

    /// The unit of a meter of WAP's own resource providers (SQL Server, MySQL, web sites, VMs; the web-site
    /// `…Bytes` meters are reported in MB, docs/protocol/usage-service.md §3.1), else guessed from the meter's name
    /// (`…MB`, `…GB`, `…Count`, `…Percent…`, `…Bytes`), else `units`.
    pub fn of(provider: &str, meter: &str) -> MeterUnit {
        let p = provider.to_ascii_lowercase();
        let m = meter.to_ascii_lowercase();
        match (p.as_str(), m.as_str()) {
            ("sqlservers" | "mysqlservers", "totalallottedspace") => return MeterUnit::new("MB", true),
            ("sqlservers" | "mysqlservers", "databasecount") => return MeterUnit::new("databases", true),
            ("webspaces" | "websites", m) if m.ends_with("bytes") => return MeterUnit::new("MB", false),
            ("systemcenter", "cpuallocationcount") => return MeterUnit::new("vCPUs", true),
            _ => {}
        }
        if m.contains("percent") {
            MeterUnit { unit: "%", whole: false, averaged: true }
        } else if m.ends_with("mb") {
            MeterUnit::new("MB", true)
        } else if m.ends_with("gb") {
            MeterUnit::new("GB", true)
        } else if m.ends_with("bytes") {
            MeterUnit::new("bytes", true)
        } else if m.ends_with("count") {
            MeterUnit::new("count", true)
        } else {
            MeterUnit::new("units", false)
        }
    }
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
    /// The meter's unit ([`MeterUnit::of`]).
    pub unit: MeterUnit,
}

impl InvoiceUsage {
    /// The quantity charged: the sum over the records (rounded to a whole number for a whole meter), or for an
    /// averaged meter (a percentage) the average over the records.
    pub fn billed_quantity(&self) -> f64 {
        if self.unit.averaged {
            if self.records == 0 {
                0.0
            } else {
                self.quantity / self.records as f64
            }
        } else if self.unit.whole {
            self.quantity.round()
        } else {
            self.quantity
        }
    }

    /// `billed_quantity × rate`, when priced.
    pub fn amount(&self) -> Option<f64> {
        self.rate.map(|r| r * self.billed_quantity())
    }

    /// Why the line is not charged, when it has no rate.
    pub fn unpriced_reason(&self) -> Option<String> {
        self.rate.is_none().then(|| {
            format!(
                "no rate for {} {} in the price list (set one with SqliteLedger::set_meter_rate)",
                self.provider, self.meter
            )
        })
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

/// A quantity: no decimals for a whole meter (or a whole value), else two.
fn quantity(v: f64, whole: bool) -> String {
    if (whole || v.fract() == 0.0) && v.abs() < 1e15 {
        format!("{:.0}", v.round())
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

const ITEM: usize = 46;
const RULE: &str = "  ----------------------------------------------  ------------  ----------  ----------  ----------";

impl fmt::Display for Invoice {
    /// Header lines (invoice number, period, currency, subscription, account), a table with one line per plan /
    /// add-on / meter (quantity, unit, rate, amount), the total, then the notes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = self.subscription_name.as_deref().unwrap_or("(unnamed)");
        writeln!(f, "Invoice       {}", self.invoice_number)?;
        match &self.period {
            Some(p) => writeln!(f, "Period        {p}")?,
            None => writeln!(f, "Period        (no usage recorded: monthly fees only)")?,
        }
        writeln!(f, "Currency      {}", self.currency)?;
        writeln!(f, "Subscription  {name}  [{}]", self.subscription_id)?;
        writeln!(f, "Account       {}  ({})", self.account.as_deref().unwrap_or("-"), self.status)?;
        writeln!(f, "  {:<ITEM$}  {:>12}  {:<10}  {:>10}  {:>10}", "Item", "Quantity", "Unit", "Rate", "Amount")?;
        writeln!(f, "{RULE}")?;
        let line = |f: &mut fmt::Formatter<'_>, item: &str, qty: &str, unit: &str, rate: &str, amount: &str| {
            writeln!(f, "  {:<ITEM$}  {qty:>12}  {:<10}  {rate:>10}  {amount:>10}", cut(item, ITEM), cut(unit, 10))
        };
        let plan = self.plan_name.as_deref().or(self.plan_id.as_deref()).unwrap_or("(no plan)");
        let plan_rate = self.plan_price.map_or_else(|| "unpriced".to_owned(), |p| format!("{p:.2}"));
        line(f, &format!("Plan    {plan}"), "1", "month", &plan_rate, &money(self.plan_price))?;
        for a in &self.add_ons {
            let label = a.name.as_deref().unwrap_or(&a.add_on_id);
            let label = if a.removed { format!("Add-on  {label} (removed)") } else { format!("Add-on  {label}") };
            let amount = if a.removed { None } else { a.price };
            let price = a.price.map_or_else(|| "unpriced".to_owned(), |p| format!("{p:.2}"));
            line(f, &label, "1", "month", &price, &money(amount))?;
        }
        for u in &self.usage {
            let unit = if u.unit.averaged { format!("{} (avg)", u.unit.unit) } else { u.unit.unit.to_owned() };
            line(
                f,
                &format!("Usage   {} {}", u.provider, u.meter),
                &quantity(u.billed_quantity(), u.unit.whole),
                &unit,
                &u.rate.map_or_else(|| "unpriced".to_owned(), rate),
                &money(u.amount()),
            )?;
        }
        writeln!(f, "{RULE}")?;
        let note = format!("{} usage record(s)", self.usage_records);
        write!(
            f,
            "  {note:<ITEM$}  {:>12}  {:<10}  {:>10}  {:>10}",
            "",
            "",
            format!("Total {}", self.currency),
            format!("{:.2}", self.total())
        )?;
        if !self.notes.is_empty() {
            write!(f, "\n  Notes:")?;
            for n in &self.notes {
                write!(f, "\n  * {n}")?;
            }
        }
        Ok(())
    }
}

impl SqliteLedger {
    /// Sets the currency of the prices and invoices (an ISO 4217 code such as `EUR`; default
    /// [`DEFAULT_CURRENCY`]). Kept in the ledger's price list.
    pub async fn set_currency(&self, code: &str) -> Result<(), LedgerError> {
        let code = code.trim().to_ascii_uppercase();
        self.run(move |c| {
            c.execute("DELETE FROM price WHERE kind = 'currency'", [])?;
            c.execute("INSERT INTO price (kind, id, amount) VALUES ('currency', ?1, 0)", params![code])?;
            Ok(())
        })
        .await
    }
}

/// `INV-<yyyymmdd>-<8 letters and digits of the subscription id>`.
fn invoice_number(subscription_id: &str, period: Option<&InvoicePeriod>) -> String {
    let date = period.map_or_else(|| "OPEN".to_owned(), |p| p.start.to_utc().format("%Y%m%d").to_string());
    let id: String =
        subscription_id.chars().filter(char::is_ascii_alphanumeric).take(8).collect::<String>().to_ascii_uppercase();
    format!("INV-{date}-{id}")
}

/// The notes of an invoice: the status, the quantities, unpriced lines.
fn notes(status: &str, plan_priced: bool, usage: &[InvoiceUsage], add_ons: &[InvoiceAddOn]) -> Vec<String> {
    let mut out = Vec::new();
    match status {
        "suspended" => out.push(
            "Suspended subscription: WAP keeps its resources, so the monthly fees are charged in full (not prorated: \
             the ledger does not record when it was suspended); usage is charged as metered."
                .to_owned(),
        ),
        "deleted" | "delete pending" => out.push(format!(
            "{} subscription: the monthly fees are charged in full for this period (not prorated: the ledger does \
             not record when it was deleted); usage up to the deletion is charged as metered.",
            if status == "deleted" { "Deleted" } else { "Deletion pending for this" }
        )),
        _ => {}
    }
    if !usage.is_empty() {
        out.push(
            "Quantities are the sum of each meter over the usage records, in the provider's unit (a level such as \
             allocated MB summed over hourly records is MB-hours); percentages are averaged."
                .to_owned(),
        );
    }
    if !plan_priced {
        out.push("Plan not charged: it has no price in the price list (SqliteLedger::set_plan_price).".to_owned());
    }
    for a in add_ons.iter().filter(|a| a.price.is_none() && !a.removed) {
        out.push(format!(
            "Add-on {} not charged: it has no price in the price list (SqliteLedger::set_addon_price).",
            a.name.as_deref().unwrap_or(&a.add_on_id)
        ));
    }
    for u in usage {
        if let Some(reason) = u.unpriced_reason() {
            out.push(format!("Usage {} {} not charged: {reason}.", u.provider, u.meter));
        }
    }
    out
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
    let currency: String = c
        .query_row("SELECT id FROM price WHERE kind = 'currency'", [], |r| r.get(0))
        .unwrap_or_else(|_| DEFAULT_CURRENCY.to_owned());
    let mut periods: HashMap<String, InvoicePeriod> = HashMap::new();
    {
        let mut stmt = c.prepare(
            "SELECT subscription_id, MIN(start_time), MAX(end_time) FROM usage_record GROUP BY subscription_id",
        )?;
        let rows =
            stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?)))?;
        for row in rows {
            let (id, start, end) = row?;
            if let (Ok(start), Ok(end)) = (WapDateTime::parse(&start), WapDateTime::parse(&end)) {
                periods.insert(id, InvoicePeriod { start, end });
            }
        }
    }
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
                    unit: MeterUnit::of(&provider, &meter),
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
        let plan_price = plan_id.as_ref().and_then(|p| prices.get(&("plan".to_owned(), p.clone())).copied());
        let period = periods.get(&id).cloned();
        out.push(Invoice {
            invoice_number: invoice_number(&wap_id, period.as_ref()),
            period,
            currency: currency.clone(),
            notes: notes(status, plan_price.is_some() || plan_id.is_none(), &usage, &add_ons),
            usage_records: record_counts.get(&id).copied().unwrap_or(0),
            subscription_id: wap_id,
            subscription_name: name,
            account,
            status,
            plan_name: plan_id.as_ref().and_then(|p| plan_names.get(p).cloned().flatten()),
            plan_price,
            plan_id: plan_wap_id,
            add_ons,
            usage,
        });
    }
    Ok(out)
}
