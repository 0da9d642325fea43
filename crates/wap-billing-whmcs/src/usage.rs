//! Usage into WHMCS: one `AddBillableItem` per usage line (subscription, provider, resource, meter, period) of a
//! batch, on the engine's journaled path, and the reconciliation of an open intent.
//!
//! `AddBillableItem` appends on every call and WHMCS has no action that lists billable items, so:
//!
//! * each item's description ends with a marker `[<intent token> <k>/<n>]` (the engine's token of the batch, e.g.
//!   `wap-usage-1001-2000`, the line's number and the batch's line count);
//! * within one process the handler remembers which lines of a batch WHMCS confirmed and which calls may have
//!   landed without an answer (timeout, dropped connection, 5xx / HTML after commit); a retry sends only the lines
//!   not confirmed;
//! * after a crash or a take-over it looks the marker up on **invoices** (`GetInvoices` since the day the intent was
//!   opened, then `GetInvoice`): billable items appear there as lines once WHMCS's cron (or `GenInvoices`) has
//!   invoiced them. Every line found: applied. Otherwise it cannot tell whether the missing lines are uninvoiced
//!   billable items or were never sent, and answers `Unknown`: the processor halts **in doubt** and the operator
//!   checks Billing → Billable Items for the marker (see the crate README, "Usage in doubt").

use std::collections::{BTreeMap, BTreeSet};

use async_trait::async_trait;
use wap_billing_engine::{
    Delivery, HandlerError, Intent, Reconciliation, UsageBatch, UsageHandler, UsageLine, UsageLines, UsageShape,
};
use wap_types::FeedKind;

use crate::billing::WhmcsBilling;
use crate::error::Error;
use crate::types::NewBillableItem;

/// What this process knows about the lines of one batch (by intent token).
#[derive(Debug, Default, Clone)]
pub(crate) struct LineLog {
    /// How many lines the batch has.
    lines: usize,
    /// Lines WHMCS confirmed (answered a `billableid`), 1-based.
    done: BTreeSet<usize>,
    /// Lines whose call may have landed without a confirmation (sent, no definite answer).
    uncertain: BTreeSet<usize>,
}

/// The marker a usage line's description ends with.
pub fn usage_marker(token: &str, line: usize, lines: usize) -> String {
    format!("[{token} {line}/{lines}]")
}

/// Parses the marker at the end of a description: `(token, line, lines)`.
pub fn parse_usage_marker(description: &str) -> Option<(&str, usize, usize)> {
    let rest = description.trim_end().strip_suffix(']')?;
    let open = rest.rfind('[')?;
    let (token, count) = rest[open + 1..].rsplit_once(' ')?;
    let (k, n) = count.split_once('/')?;
    Some((token, k.parse().ok()?, n.parse().ok()?))
}

/// Whether a failed call may still have been committed by WHMCS: anything but a WHMCS error envelope (which is
/// a refusal) — a timeout, a dropped connection, an error page, an unreadable answer.
fn may_have_landed(e: &Error) -> bool {
    e.api_message().is_none()
}

fn failed(what: &str, e: Error) -> HandlerError {
    HandlerError::Failed { message: format!("{what}: {e}"), record_event_id: None, source: Some(Box::new(e)) }
}

impl WhmcsBilling {
    fn line_description(line: &UsageLine, marker: &str) -> String {
        let mut what = String::new();
        if !line.provider.is_empty() {
            what.push_str(&line.provider);
            what.push(' ');
        }
        what.push_str(&line.meter);
        let resource =
            if line.resource_id.is_empty() { String::new() } else { format!(", resource {}", line.resource_id) };
        format!(
            "WAP usage {what} {}: {} (subscription {}{resource}; usage EventId {}..={}, {} records) {marker}",
            line.period, line.quantity, line.subscription_id, line.first_event_id, line.last_event_id, line.records
        )
    }

    /// The amount of a line: its quantity times the meter's configured unit price, rounded to cents.
    fn line_amount(&self, line: &UsageLine) -> Result<String, HandlerError> {
        let price_text =
            self.config.meter_prices.get(&line.meter.to_ascii_lowercase()).unwrap_or(&self.config.default_meter_price);
        let price: f64 = price_text.trim().parse().ok().filter(|p: &f64| p.is_finite()).ok_or_else(|| {
            HandlerError::failed(format!("the unit price of meter {:?} is not a number: {price_text:?}", line.meter))
        })?;
        Ok(format!("{:.2}", line.quantity * price))
    }

    /// The WHMCS client of a WAP subscription (through its service; cached).
    async fn client_of(&self, subscription_id: &str) -> Result<u64, HandlerError> {
        let key = subscription_id.to_ascii_lowercase();
        if let Some(id) = self.subscription_clients.lock().unwrap_or_else(|p| p.into_inner()).get(&key) {
            return Ok(*id);
        }
        let found = self
            .client
            .find_services_by_wap_subscription(None, self.config.subscription_key, subscription_id)
            .await
            .map_err(|e| failed("GetClientsProducts", e))?;
        let client = found.first().map(|s| s.clientid).ok_or_else(|| {
            HandlerError::dependency_not_ready(format!("usage for subscription {subscription_id}, not in WHMCS yet"))
        })?;
        self.subscription_clients.lock().unwrap_or_else(|p| p.into_inner()).insert(key, client);
        Ok(client)
    }

    fn log(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, LineLog>> {
        self.usage_log.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn bill_lines(&self, lines: &UsageLines<'_>) -> Result<(), HandlerError> {
        let token = Intent::default_token(FeedKind::Usage, lines.first_event_id(), lines.last_event_id());
        let n = lines.lines.len();
        // Every client first: a missing subscription must stop the batch before anything is billed.
        let mut clients = Vec::with_capacity(n);
        for line in lines.lines {
            clients.push(self.client_of(&line.subscription_id).await?);
        }
        {
            let mut log = self.log();
            let entry = log.entry(token.clone()).or_default();
            if entry.lines != n {
                *entry = LineLog { lines: n, ..LineLog::default() };
            }
        }
        for (i, (line, client)) in lines.lines.iter().zip(clients).enumerate() {
            let k = i + 1;
            if self.log().get(&token).is_some_and(|l| l.done.contains(&k)) {
                continue;
            }
            let mut item = NewBillableItem::new(
                client,
                Self::line_description(line, &usage_marker(&token, k, n)),
                self.line_amount(line)?,
            );
            item.quantity = Some(line.quantity.to_string());
            item.invoice_action = self.config.usage_invoice_action;
            // Marked before the call: a call cut at its deadline may land.
            self.log().entry(token.clone()).or_default().uncertain.insert(k);
            let result = self.client.add_billable_item(&item).await;
            let mut log = self.log();
            let entry = log.entry(token.clone()).or_default();
            match result {
                Ok(_) => {
                    entry.uncertain.remove(&k);
                    entry.done.insert(k);
                }
                Err(e) => {
                    if !may_have_landed(&e) {
                        entry.uncertain.remove(&k);
                    }
                    return Err(failed(&format!("AddBillableItem (line {k}/{n} of {token})"), e));
                }
            }
        }
        // Only the open intent can be asked about: forget the batches finished before.
        let mut log = self.log();
        log.retain(|_, l| !l.uncertain.is_empty() || l.done.len() != l.lines);
        log.insert(token, LineLog { lines: n, done: (1..=n).collect(), uncertain: BTreeSet::new() });
        Ok(())
    }

    /// The lines of `token` found on invoices dated on or after `since` (`Y-m-d`): line number → count of
    /// invoice lines carrying it, and the batch's line count as the markers say.
    async fn invoiced_lines(
        &self,
        token: &str,
        since: &str,
    ) -> Result<(BTreeMap<usize, usize>, Option<usize>), HandlerError> {
        let invoices = self.client.get_invoices(None, None).await.map_err(|e| failed("GetInvoices", e))?;
        let mut found: BTreeMap<usize, usize> = BTreeMap::new();
        let mut total = None;
        for summary in invoices.into_iter().filter(|i| i.date.as_str() >= since || i.date.is_empty()) {
            let invoice = self.client.get_invoice(summary.id).await.map_err(|e| failed("GetInvoice", e))?;
            for item in &invoice.items {
                if let Some((t, k, n)) = parse_usage_marker(&item.description) {
                    if t == token {
                        *found.entry(k).or_default() += 1;
                        total = Some(n);
                    }
                }
            }
        }
        Ok((found, total))
    }

    async fn reconcile_usage(&self, intent: &Intent) -> Result<Reconciliation, HandlerError> {
        let token = &intent.token;
        let known = self.log().get(token).cloned();
        // A day earlier than the intent: an invoice date is the WHMCS server's local day.
        let since = (intent.opened_at - chrono::Duration::days(1)).format("%Y-%m-%d").to_string();
        if let Some(mut log) = known {
            if !log.uncertain.is_empty() {
                let (found, _) = self.invoiced_lines(token, &since).await?;
                for k in found.keys() {
                    log.uncertain.remove(k);
                    log.done.insert(*k);
                }
                self.log().insert(token.clone(), log.clone());
                if !log.uncertain.is_empty() {
                    return Ok(Reconciliation::unknown(self.in_doubt_reason(token, &log.uncertain, log.lines)));
                }
            }
            return Ok(if log.done.len() == log.lines { Reconciliation::Applied } else { Reconciliation::NotApplied });
        }
        let (found, total) = self.invoiced_lines(token, &since).await?;
        if let Some((k, c)) = found.iter().find(|(_, c)| **c > 1) {
            return Ok(Reconciliation::unknown(format!(
                "line {k} of {token} is on {c} invoice lines: billed more than once; correct the invoices in WHMCS"
            )));
        }
        match total {
            Some(n) if found.len() == n => Ok(Reconciliation::Applied),
            Some(n) => {
                let missing: BTreeSet<usize> = (1..=n).filter(|k| !found.contains_key(k)).collect();
                Ok(Reconciliation::unknown(self.in_doubt_reason(token, &missing, n)))
            }
            None => Ok(Reconciliation::unknown(format!(
                "no line of {token} is on a WHMCS invoice, and WHMCS's API cannot list uninvoiced billable items: \
                 look in Billing → Billable Items for descriptions ending \"[{token} k/n]\""
            ))),
        }
    }

    fn in_doubt_reason(&self, token: &str, missing: &BTreeSet<usize>, lines: usize) -> String {
        let list: Vec<String> = missing.iter().map(ToString::to_string).collect();
        format!(
            "line(s) {} of {lines} of {token} are not on a WHMCS invoice, and WHMCS's API cannot list uninvoiced \
             billable items: look in Billing → Billable Items for descriptions ending \"[{token} k/{lines}]\"",
            list.join(", ")
        )
    }
}

#[async_trait]
impl UsageHandler for WhmcsBilling {
    async fn apply_usage(&self, batch: UsageBatch<'_>) -> Result<(), HandlerError> {
        Err(HandlerError::failed(format!(
            "WHMCS takes usage as lines (UsageShape::PerMeter), not {} records",
            batch.records.len()
        )))
    }

    fn delivery(&self) -> Delivery {
        Delivery::Journaled
    }

    fn usage_shape(&self) -> UsageShape {
        UsageShape::PerMeter { period: self.config.usage_period }
    }

    async fn apply_usage_lines(&self, lines: UsageLines<'_>) -> Result<(), HandlerError> {
        self.bill_lines(&lines).await
    }

    async fn reconcile(&self, intent: &Intent) -> Result<Reconciliation, HandlerError> {
        if intent.feed != FeedKind::Usage {
            return Ok(Reconciliation::unknown(format!("WHMCS usage cannot reconcile {intent}")));
        }
        self.reconcile_usage(intent).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_marker_reads_back() {
        let d = format!("WAP usage sql cpu 2026-12: 3 (subscription s) {}", usage_marker("wap-usage-1-9", 2, 7));
        assert_eq!(parse_usage_marker(&d), Some(("wap-usage-1-9", 2, 7)));
        assert_eq!(parse_usage_marker("no marker"), None);
        assert_eq!(parse_usage_marker("[x 1/]"), None);
    }
}
