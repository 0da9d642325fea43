//! The objects HostBill's calls return, read tolerantly (ids and amounts as strings or numbers, collections keyed
//! by id or as arrays, empty ones as `[]`).

use std::collections::BTreeMap;

use serde_json::{Map, Value};
use wap_billing_engine::billing_http::scalar::{as_f64, as_text, as_u64, keyed_entries, KeyedEntry};

use crate::error::Error;

/// A JSON object of an answer, with the call and its path (for error context).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Obj<'a> {
    pub(crate) call: &'a str,
    pub(crate) path: &'a str,
    pub(crate) map: &'a Map<String, Value>,
}

impl<'a> Obj<'a> {
    pub(crate) fn new(call: &'a str, path: &'a str, map: &'a Map<String, Value>) -> Self {
        Obj { call, path, map }
    }

    pub(crate) fn err(&self, key: &str, detail: impl Into<String>) -> Error {
        Error::Decode { call: self.call.to_owned(), path: format!("{}.{key}", self.path), detail: detail.into() }
    }

    /// A required id: a JSON number or a decimal string.
    pub(crate) fn id(&self, key: &str) -> Result<u64, Error> {
        match self.map.get(key) {
            None | Some(Value::Null) => Err(self.err(key, "missing")),
            Some(v) => as_u64(v).ok_or_else(|| self.err(key, format!("expected an id, found {v}"))),
        }
    }

    /// An optional id; missing, `null`, `""` and `0` are `None`.
    pub(crate) fn opt_id(&self, key: &str) -> Result<Option<u64>, Error> {
        match self.map.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
            Some(v) => match as_u64(v) {
                Some(0) => Ok(None),
                Some(n) => Ok(Some(n)),
                None => Err(self.err(key, format!("expected an id, found {v}"))),
            },
        }
    }

    pub(crate) fn text(&self, key: &str) -> String {
        as_text(self.map.get(key))
    }

    /// An optional amount (`"6.00"`, `6`, `""`).
    pub(crate) fn amount(&self, key: &str) -> Option<f64> {
        self.map.get(key).and_then(as_f64)
    }

    /// The entries of a collection keyed by id or an array, empty in any of PHP's shapes.
    pub(crate) fn entries(&self, key: &str) -> Result<Vec<KeyedEntry<'a>>, Error> {
        keyed_entries(self.map.get(key)).map_err(|at| self.err(&format!("{key}{at}"), "expected an object"))
    }
}

/// A HostBill client (customer).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Client {
    /// `id`.
    pub id: u64,
    /// `email`.
    pub email: String,
    /// `firstname`.
    pub firstname: String,
    /// `lastname`.
    pub lastname: String,
}

impl Client {
    pub(crate) fn read(o: Obj<'_>) -> Result<Self, Error> {
        Ok(Client {
            id: o.id("id")?,
            email: o.text("email"),
            firstname: o.text("firstname"),
            lastname: o.text("lastname"),
        })
    }
}

/// A new client for `addClient`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct NewClient {
    /// `email` (required).
    pub email: String,
    /// `firstname` (required by HostBill 4.x; the email's local part when unknown).
    pub firstname: String,
    /// `lastname` (required by HostBill 4.x).
    pub lastname: String,
}

impl NewClient {
    /// A client named after its email address (WAP knows nothing else about an account).
    pub fn from_email(email: &str) -> Self {
        let local = email.split('@').next().unwrap_or(email);
        NewClient { email: email.to_owned(), firstname: local.to_owned(), lastname: "(Windows Azure Pack)".into() }
    }
}

/// A HostBill account: one service a client holds (what a WAP subscription becomes).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Account {
    /// `id`.
    pub id: u64,
    /// `client_id` (not in every list; `None` when absent).
    pub client_id: Option<u64>,
    /// `product_id` (not in every list).
    pub product_id: Option<u64>,
    /// `order_id` (not in every list).
    pub order_id: Option<u64>,
    /// `domain`: where the WAP subscription id is kept.
    pub domain: String,
    /// `status`: Pending, Active, Suspended, Terminated, Cancelled, Fraud.
    pub status: String,
    /// `billingcycle`.
    pub billingcycle: String,
}

impl Account {
    pub(crate) fn read(o: Obj<'_>) -> Result<Self, Error> {
        Ok(Account {
            id: o.id("id")?,
            client_id: o.opt_id("client_id")?,
            product_id: o.opt_id("product_id")?,
            order_id: o.opt_id("order_id")?,
            domain: o.text("domain"),
            status: o.text("status"),
            billingcycle: o.text("billingcycle"),
        })
    }

    /// Whether the account has ended (Terminated, Cancelled or Fraud).
    pub fn is_gone(&self) -> bool {
        is_gone(&self.status)
    }
}

pub(crate) fn is_gone(status: &str) -> bool {
    ["terminated", "cancelled", "fraud"].iter().any(|s| status.eq_ignore_ascii_case(s))
}

/// An add-on on an account (`getAccountAddons`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct AccountAddon {
    /// `id` (of the account's add-on).
    pub id: u64,
    /// `addon_id` (the add-on definition).
    pub addon_id: u64,
    /// `name`.
    pub name: String,
    /// `status`.
    pub status: String,
}

impl AccountAddon {
    pub(crate) fn read(o: Obj<'_>) -> Result<Self, Error> {
        Ok(AccountAddon {
            id: o.id("id")?,
            addon_id: o.id("addon_id")?,
            name: o.text("name"),
            status: o.text("status"),
        })
    }

    /// Whether the add-on has ended.
    pub fn is_gone(&self) -> bool {
        is_gone(&self.status)
    }
}

/// The billing cycles HostBill prices by (the letters of `getProducts` and `addOrder`).
pub const CYCLES: [&str; 9] = ["m", "q", "s", "a", "b", "t", "d", "w", "h"];

/// A product (`getProducts`) or an add-on definition (`getAddons`) with its prices.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Priced {
    /// `id`.
    pub id: u64,
    /// `name`.
    pub name: String,
    /// Recurring price by cycle letter (`m` → 25.0); cycles priced `""` or absent are left out.
    pub prices: BTreeMap<String, f64>,
    /// Setup fee by cycle letter (`m_setup` …), when not 0.
    pub setup: BTreeMap<String, f64>,
}

impl Priced {
    pub(crate) fn read(o: Obj<'_>) -> Result<Self, Error> {
        let mut prices = BTreeMap::new();
        let mut setup = BTreeMap::new();
        for c in CYCLES {
            if let Some(p) = o.amount(c) {
                prices.insert(c.to_owned(), p);
            }
            if let Some(s) = o.amount(&format!("{c}_setup")).filter(|s| *s != 0.0) {
                setup.insert(c.to_owned(), s);
            }
        }
        Ok(Priced { id: o.id("id")?, name: o.text("name"), prices, setup })
    }
}

/// One metered usage entry (`meteredGetUsage` … `values[]`).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct MeteredValue {
    /// The variable (`variable_name`).
    pub variable: String,
    /// `id` of the entry.
    pub id: u64,
    /// `qty`.
    pub qty: f64,
    /// `output` (a comment).
    pub output: String,
    /// `rawoutput`: where this crate keeps its marker.
    pub rawoutput: String,
}

/// One metered variable to add with `meteredAddUsage` / `meteredAddUsageBulk`.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct NewUsage {
    /// The variable (e.g. `bandwidth`), configured on the account's product.
    pub variable: String,
    /// The quantity.
    pub qty: f64,
    /// `output`: a comment shown to the administrator.
    pub output: String,
    /// `rawoutput`: raw data (this crate keeps its marker here).
    pub rawoutput: String,
}

impl NewUsage {
    /// Usage of `variable`.
    pub fn new(variable: impl Into<String>, qty: f64) -> Self {
        NewUsage { variable: variable.into(), qty, output: String::new(), rawoutput: String::new() }
    }

    /// With a comment.
    pub fn output(mut self, text: impl Into<String>) -> Self {
        self.output = text.into();
        self
    }

    /// With raw data.
    pub fn rawoutput(mut self, text: impl Into<String>) -> Self {
        self.rawoutput = text.into();
        self
    }
}

/// A quantity as HostBill's form takes it (no exponent, trailing zeros cut).
pub(crate) fn qty_text(q: f64) -> String {
    let s = format!("{q:.6}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s.is_empty() || s == "-" {
        "0".into()
    } else {
        s.to_owned()
    }
}
