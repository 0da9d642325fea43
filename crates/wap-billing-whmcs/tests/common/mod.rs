//! Helpers shared by the integration tests.
#![allow(dead_code, unreachable_pub)]

use std::time::Duration;

use wap_billing_whmcs::double::{WhmcsDouble, WhmcsDoubleBuilder};
use wap_billing_whmcs::{Credentials, WhmcsClient};

pub const IDENTIFIER: &str = "wap-adapter";
pub const SECRET: &str = "api-secret-1";

/// A double with the products and add-on an administrator would prepare, and one API credential.
pub fn prepared() -> WhmcsDoubleBuilder {
    WhmcsDouble::builder()
        .api_credential(IDENTIFIER, SECRET)
        .product(1, 1, "WAP Gold")
        .product(2, 1, "WAP Silver")
        .addon_definition(5, "Extra IPs")
        .custom_field(9, 1, "WAP Subscription ID")
}

pub fn client(double: &WhmcsDouble) -> WhmcsClient {
    WhmcsClient::builder()
        .url(double.url())
        .credentials(Credentials::api_credential(IDENTIFIER, SECRET))
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

/// A double with four products (1–4) and three add-on definitions (5–7): enough to map wap-sim's small dataset.
pub fn prepared_for_dataset() -> WhmcsDoubleBuilder {
    prepared()
        .product(3, 1, "WAP Bronze")
        .product(4, 1, "WAP Trial")
        .addon_definition(6, "Backup")
        .addon_definition(7, "SQL")
}

/// One usage billable item read back: `(token, line, lines, subscription, meter, quantity)`.
pub type BilledLine = (String, usize, usize, String, String, f64);

/// Reads a usage billable item's description (`WAP usage [<provider> ]<meter> <period>: … (subscription <id>…) [<token> k/n]`).
pub fn billed_line(item: &wap_billing_whmcs::double::DoubleBillableItem) -> BilledLine {
    let d = &item.description;
    let (token, k, n) = wap_billing_whmcs::parse_usage_marker(d).unwrap_or_else(|| panic!("no marker: {d}"));
    let head = d.strip_prefix("WAP usage ").and_then(|r| r.split_once(':')).unwrap_or_else(|| panic!("{d}")).0;
    let words: Vec<&str> = head.split(' ').collect();
    let meter = words[words.len() - 2].to_owned();
    let sub = d.split_once("(subscription ").unwrap().1;
    let sub = sub.split([',', ';']).next().unwrap().trim().to_owned();
    let quantity = item.hours.parse().unwrap_or_else(|_| panic!("hours of {d}: {:?}", item.hours));
    (token.to_owned(), k, n, sub, meter, quantity)
}

/// Asserts the double holds every usage line exactly once: each marker once, every batch complete, batch ranges
/// disjoint, and the quantities per (subscription, meter) equal to the records' sums. Returns the number of lines.
pub fn assert_usage_billed_once(double: &WhmcsDouble, records: &[wap_types::UsageRecord]) -> usize {
    use std::collections::BTreeMap;
    let lines: Vec<BilledLine> = double.billable_items().iter().map(billed_line).collect();
    let mut markers: BTreeMap<(String, usize), usize> = BTreeMap::new();
    let mut batches: BTreeMap<String, usize> = BTreeMap::new();
    for (token, k, n, ..) in &lines {
        *markers.entry((token.clone(), *k)).or_default() += 1;
        batches.insert(token.clone(), *n);
    }
    let twice: Vec<_> = markers.iter().filter(|(_, c)| **c > 1).collect();
    assert!(twice.is_empty(), "usage lines billed more than once: {twice:?}");
    for (token, n) in &batches {
        for k in 1..=*n {
            assert!(markers.contains_key(&(token.clone(), k)), "line {k}/{n} of {token} was never billed");
        }
    }
    let mut ranges: Vec<(i64, i64)> = batches
        .keys()
        .map(|t| {
            let mut parts = t.rsplitn(3, '-');
            let last = parts.next().unwrap().parse().unwrap();
            let first = parts.next().unwrap().parse().unwrap();
            (first, last)
        })
        .collect();
    ranges.sort_unstable();
    for pair in ranges.windows(2) {
        assert!(pair[0].1 < pair[1].0, "usage batches overlap (billed twice): {pair:?}");
    }
    let mut expected: BTreeMap<(String, String), f64> = BTreeMap::new();
    for r in records {
        for (meter, value) in r.resources.iter() {
            let v: f64 = value.trim().parse().unwrap_or(0.0);
            *expected.entry((r.subscription_id.to_ascii_lowercase(), meter.clone())).or_default() += v;
        }
    }
    let mut billed: BTreeMap<(String, String), f64> = BTreeMap::new();
    for (_, _, _, sub, meter, q) in &lines {
        *billed.entry((sub.clone(), meter.clone())).or_default() += q;
    }
    assert_eq!(billed.len(), expected.len(), "one total per subscription and meter");
    for (key, sum) in &expected {
        let got = billed.get(key).copied().unwrap_or(f64::NAN);
        assert!((got - sum).abs() <= 1e-6 * sum.abs().max(1.0), "{key:?}: billed {got}, recorded {sum}");
    }
    lines.len()
}
