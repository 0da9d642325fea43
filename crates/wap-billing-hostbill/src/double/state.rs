//! The double's data and the calls that read and change it.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Map, Value};

use super::{PageBase, Profile};

/// A client.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DoubleClient {
    /// `id`.
    pub id: u64,
    /// `email`.
    pub email: String,
    /// `firstname`.
    pub firstname: String,
    /// `lastname`.
    pub lastname: String,
}

/// An order.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DoubleOrder {
    /// `id`.
    pub id: u64,
    /// `client_id`.
    pub client_id: u64,
    /// `Active` (confirmed) or `Pending`.
    pub status: String,
}

/// An account (a client's service).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DoubleAccount {
    /// `id`.
    pub id: u64,
    /// `client_id`.
    pub client_id: u64,
    /// `product_id`.
    pub product_id: u64,
    /// `order_id`.
    pub order_id: u64,
    /// `domain`.
    pub domain: String,
    /// `status`: Pending, Active, Suspended, Terminated, Cancelled.
    pub status: String,
    /// `billingcycle`.
    pub billingcycle: String,
}

/// An add-on on an account.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DoubleAccountAddon {
    /// `id`.
    pub id: u64,
    /// `account_id`.
    pub account_id: u64,
    /// `addon_id`.
    pub addon_id: u64,
    /// `status`.
    pub status: String,
}

/// A product.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct DoubleProduct {
    /// `id`.
    pub id: u64,
    /// The order page (category) it is on.
    pub order_page: u64,
    /// `name`.
    pub name: String,
    /// Price by cycle letter, as HostBill writes it (`"25.00"`).
    pub prices: BTreeMap<String, String>,
    /// Setup fee by cycle letter.
    pub setup: BTreeMap<String, String>,
    /// The metered variables it accepts (empty: any).
    pub variables: BTreeSet<String>,
}

/// An add-on definition.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct DoubleAddon {
    /// `id`.
    pub id: u64,
    /// `name`.
    pub name: String,
    /// Price by cycle letter.
    pub prices: BTreeMap<String, String>,
}

/// A metered usage entry.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct DoubleUsage {
    /// `id`.
    pub id: u64,
    /// `account_id`.
    pub account_id: u64,
    /// The variable.
    pub variable: String,
    /// `qty`.
    pub qty: f64,
    /// `output`.
    pub output: String,
    /// `rawoutput`.
    pub rawoutput: String,
    /// The billing period it was recorded in (see [`super::HostBillDouble::close_period`]).
    pub period: u64,
}

/// Everything the double holds.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct DoubleState {
    /// Order pages by id (name).
    pub order_pages: BTreeMap<u64, String>,
    /// Products by id.
    pub products: BTreeMap<u64, DoubleProduct>,
    /// Add-on definitions by id.
    pub addons: BTreeMap<u64, DoubleAddon>,
    /// Clients by id.
    pub clients: BTreeMap<u64, DoubleClient>,
    /// Orders by id.
    pub orders: BTreeMap<u64, DoubleOrder>,
    /// Accounts by id.
    pub accounts: BTreeMap<u64, DoubleAccount>,
    /// Account add-ons by id.
    pub account_addons: BTreeMap<u64, DoubleAccountAddon>,
    /// Metered usage by id.
    pub usage: BTreeMap<u64, DoubleUsage>,
    /// The current billing period.
    pub period: u64,
    next_id: u64,
}

pub(crate) struct Ctx<'a> {
    pub(crate) profile: &'a Profile,
    pub(crate) page_base: PageBase,
    pub(crate) per_page: usize,
    pub(crate) form: &'a [(String, String)],
}

impl Ctx<'_> {
    fn get(&self, k: &str) -> Option<&str> {
        self.form.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str())
    }

    fn text(&self, k: &str) -> String {
        self.get(k).unwrap_or_default().trim().to_owned()
    }

    fn id(&self, k: &str) -> Result<u64, String> {
        self.get(k).and_then(|v| v.trim().parse().ok()).ok_or_else(|| "Wrong parameter".to_owned())
    }

    fn filter(&self, field: &str) -> Option<String> {
        if !self.profile.filters {
            return None;
        }
        self.get(&format!("filter[{field}]")).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
    }

    /// One page of `items` with HostBill's `sorter`.
    fn page(&self, key: &str, items: Vec<Value>) -> Map<String, Value> {
        let asked: usize = self.get("page").and_then(|p| p.trim().parse().ok()).unwrap_or(0);
        let index = match self.page_base {
            PageBase::Zero => asked,
            PageBase::One => asked.max(1) - 1,
        };
        let total = items.len();
        let pages = total.div_ceil(self.per_page);
        let page: Vec<Value> = items.into_iter().skip(index * self.per_page).take(self.per_page).collect();
        let next = match self.page_base {
            PageBase::Zero => index + 1,
            PageBase::One => index + 2,
        };
        let mut m = Map::new();
        m.insert(key.into(), Value::Array(page));
        m.insert(
            "sorter".into(),
            json!({"perpage": self.per_page, "totalpages": pages, "sorterrecords": total.to_string(), "sorterpage": next}),
        );
        m
    }
}

fn s(n: u64) -> Value {
    Value::String(n.to_string())
}

fn ok(pairs: Vec<(&str, Value)>) -> Map<String, Value> {
    pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

fn info(text: &str) -> (&'static str, Value) {
    ("info", json!([text]))
}

/// A keyed collection as PHP's `json_encode` writes it: an object, or `[]` when empty.
fn keyed(items: Vec<(u64, Value)>) -> Value {
    if items.is_empty() {
        return json!([]);
    }
    Value::Object(items.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
}

fn qty(text: &str) -> Result<f64, String> {
    text.trim().parse::<f64>().ok().filter(|q| q.is_finite()).ok_or_else(|| "Wrong parameter".to_owned())
}

impl DoubleState {
    fn next(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    fn account_json(&self, a: &DoubleAccount, with_product: bool) -> Value {
        let product = self.products.get(&a.product_id).map(|p| p.name.clone()).unwrap_or_default();
        let mut v = json!({
            "id": s(a.id), "domain": a.domain, "billingcycle": a.billingcycle, "status": a.status, "total": "0.00",
            "next_due": "", "name": product, "client_id": s(a.client_id), "currency_id": "0",
        });
        if with_product {
            v["product_id"] = s(a.product_id);
            v["order_id"] = s(a.order_id);
        }
        v
    }

    fn add_usage(
        &mut self,
        profile_vars: &BTreeSet<String>,
        account_id: u64,
        variable: &str,
        q: f64,
        output: String,
        raw: String,
    ) -> Result<u64, String> {
        if variable.is_empty() {
            return Err("Wrong parameter".into());
        }
        if !profile_vars.is_empty() && !profile_vars.contains(variable) {
            return Err(format!("Metered variable {variable} is not configured for this product"));
        }
        let id = self.next();
        let period = self.period;
        self.usage.insert(
            id,
            DoubleUsage { id, account_id, variable: variable.into(), qty: q, output, rawoutput: raw, period },
        );
        Ok(id)
    }

    fn account_vars(&self, account_id: u64) -> Result<BTreeSet<String>, String> {
        let a = self.accounts.get(&account_id).ok_or("Account not found")?;
        Ok(self.products.get(&a.product_id).map(|p| p.variables.clone()).unwrap_or_default())
    }

    /// Runs `call`: `None` for a call the profile lacks, `Err(message)` for a refusal.
    pub(crate) fn dispatch(&mut self, call: &str, c: &Ctx<'_>) -> Option<Result<Map<String, Value>, String>> {
        Some(match call {
            "gethostbillversion" => Ok(ok(vec![("version", c.profile.version.clone().into())])),
            "getclients" => {
                let email = c.filter("email");
                let items = self
                    .clients
                    .values()
                    .filter(|cl| email.as_ref().is_none_or(|e| cl.email.eq_ignore_ascii_case(e)))
                    .map(|cl| {
                        let services = self.accounts.values().filter(|a| a.client_id == cl.id).count();
                        json!({"id": s(cl.id), "firstname": cl.firstname, "lastname": cl.lastname,
                               "datecreated": "2026-01-01", "email": cl.email, "companyname": "", "services": services})
                    })
                    .collect();
                Ok(c.page("clients", items))
            }
            "addclient" => {
                let email = c.text("email");
                let (pw, pw2) = (c.text("password"), c.text("password2"));
                if email.is_empty() || !email.contains('@') || pw.is_empty() || pw != pw2 {
                    return Some(Err("Wrong parameter".into()));
                }
                let id = self.next();
                self.clients.insert(
                    id,
                    DoubleClient { id, email, firstname: c.text("firstname"), lastname: c.text("lastname") },
                );
                Ok(ok(vec![("client_id", s(id)), info("Client added")]))
            }
            "getclientaccounts" => match c.id("id") {
                Err(e) => Err(e),
                Ok(id) if !self.clients.contains_key(&id) => Err("Client not found".into()),
                Ok(id) => {
                    let items = self
                        .accounts
                        .values()
                        .filter(|a| a.client_id == id)
                        .map(|a| self.account_json(a, true))
                        .collect();
                    Ok(c.page("accounts", items))
                }
            },
            "getaccounts" => {
                let domain = c.filter("domain");
                let items = self
                    .accounts
                    .values()
                    .filter(|a| domain.as_ref().is_none_or(|d| a.domain.eq_ignore_ascii_case(d)))
                    .map(|a| self.account_json(a, false))
                    .collect();
                Ok(c.page("accounts", items))
            }
            "getaccountdetails" => {
                match c.id("id").and_then(|id| self.accounts.get(&id).ok_or("Account not found".into())) {
                    Err(e) => Err(e),
                    Ok(a) => {
                        let mut d = self.account_json(a, true);
                        d["username"] = "".into();
                        d["password"] = "".into();
                        Ok(ok(vec![("details", d)]))
                    }
                }
            }
            "editaccountdetails" => {
                let id = match c.id("id") {
                    Ok(id) => id,
                    Err(e) => return Some(Err(e)),
                };
                let status = c.get("status").map(|v| v.trim().to_owned());
                if let Some(st) = &status {
                    if !["Active", "Pending", "Suspended", "Terminated", "Cancelled", "Fraud"].contains(&st.as_str()) {
                        return Some(Err("Wrong parameter".into()));
                    }
                }
                let Some(a) = self.accounts.get_mut(&id) else { return Some(Err("Account not found".into())) };
                if let Some(d) = c.get("domain") {
                    a.domain = d.trim().to_owned();
                }
                if let Some(st) = status {
                    a.status = st;
                }
                Ok(ok(vec![info("account_updated2")]))
            }
            "addorder" => {
                let (client, product) = match (c.id("client_id"), c.id("product")) {
                    (Ok(a), Ok(b)) => (a, b),
                    _ => return Some(Err("Wrong parameter".into())),
                };
                let cycle = c.text("cycle");
                let cycles = ["m", "q", "s", "a", "b", "t", "d", "w", "h", "Free", "Once"];
                if !cycles.contains(&cycle.as_str()) || c.get("confirm").is_none() {
                    return Some(Err("Wrong parameter".into()));
                }
                if !self.clients.contains_key(&client) {
                    return Some(Err("Client not found".into()));
                }
                if !self.products.contains_key(&product) {
                    return Some(Err("Product not found".into()));
                }
                let confirmed = c.text("confirm") == "1";
                let order = self.next();
                let status = if confirmed { "Active" } else { "Pending" };
                self.orders.insert(order, DoubleOrder { id: order, client_id: client, status: status.into() });
                let account = self.next();
                self.accounts.insert(
                    account,
                    DoubleAccount {
                        id: account,
                        client_id: client,
                        product_id: product,
                        order_id: order,
                        domain: String::new(),
                        status: "Pending".into(),
                        billingcycle: cycle,
                    },
                );
                Ok(ok(vec![("order_id", s(order)), info("New Order created")]))
            }
            "accountsuspend" | "accountunsuspend" | "accountterminate" => {
                let id = match c.id("id") {
                    Ok(id) => id,
                    Err(e) => return Some(Err(e)),
                };
                let Some(a) = self.accounts.get_mut(&id) else { return Some(Err("Account not found".into())) };
                let (from, to, text): (&[&str], &str, &str) = match call {
                    "accountsuspend" => (&["Active"], "Suspended", "Account suspended"),
                    "accountunsuspend" => (&["Suspended"], "Active", "Account unsuspended"),
                    _ => (&["Active", "Suspended", "Pending"], "Terminated", "Account terminated"),
                };
                if !from.contains(&a.status.as_str()) {
                    // The module refuses a repeat.
                    return Some(Err(format!("Account is {}", a.status)));
                }
                a.status = to.into();
                if to == "Terminated" {
                    for ad in self.account_addons.values_mut().filter(|ad| ad.account_id == id) {
                        ad.status = "Terminated".into();
                    }
                }
                Ok(ok(vec![info(text)]))
            }
            "getaccountaddons" => match c.id("id") {
                Err(e) => Err(e),
                Ok(id) if !self.accounts.contains_key(&id) => Err("Account not found".into()),
                Ok(id) => {
                    let items: Vec<Value> = self
                        .account_addons
                        .values()
                        .filter(|a| a.account_id == id)
                        .map(|a| {
                            let def = self.addons.get(&a.addon_id);
                            json!({"id": s(a.id), "name": def.map(|d| d.name.clone()).unwrap_or_default(),
                                   "billingcycle": "Monthly", "recurring_amount": def.and_then(|d| d.prices.get("m").cloned()).unwrap_or_default(),
                                   "addon_id": s(a.addon_id), "setup_fee": "0.00", "status": a.status, "next_due": "",
                                   "module": "", "methods": {"Suspend": "", "Terminate": ""}})
                        })
                        .collect();
                    Ok(ok(vec![("account_addons", Value::Array(items))]))
                }
            },
            "addaddontoaccount" => {
                let (account, addon) = match (c.id("account_id"), c.id("addon_id")) {
                    (Ok(a), Ok(b)) => (a, b),
                    _ => return Some(Err("Wrong parameter".into())),
                };
                if !self.accounts.contains_key(&account) {
                    return Some(Err("Account not found".into()));
                }
                if !self.addons.contains_key(&addon) {
                    return Some(Err("Addon not found".into()));
                }
                let id = self.next();
                self.account_addons.insert(
                    id,
                    DoubleAccountAddon { id, account_id: account, addon_id: addon, status: "Active".into() },
                );
                Ok(ok(vec![("newaddon", true.into()), info("Addon added")]))
            }
            "getaddons" => {
                let items = self
                    .addons
                    .values()
                    .map(|a| {
                        let mut v = json!({"id": s(a.id), "name": a.name});
                        for (cy, p) in &a.prices {
                            v[cy] = p.clone().into();
                        }
                        (a.id, v)
                    })
                    .collect();
                Ok(ok(vec![("addons", keyed(items))]))
            }
            "getorderpages" => {
                let items: Vec<Value> = self
                    .order_pages
                    .iter()
                    .map(|(id, name)| {
                        let n = self.products.values().filter(|p| p.order_page == *id).count();
                        json!({"id": s(*id), "name": name, "visible": "1", "ptype": "other", "products": n.to_string()})
                    })
                    .collect();
                Ok(ok(vec![("categories", Value::Array(items))]))
            }
            "getproducts" => match c.id("id") {
                Err(e) => Err(e),
                Ok(page) => {
                    let items = self
                        .products
                        .values()
                        .filter(|p| p.order_page == page)
                        .map(|p| {
                            let mut v = json!({"id": s(p.id), "type": "other", "name": p.name, "paytype": "Regular",
                                               "qty": "0", "visible": "1", "ptype": "other",
                                               "accounts": self.accounts.values().filter(|a| a.product_id == p.id).count().to_string()});
                            for cy in crate::types::CYCLES {
                                v[cy] = p.prices.get(cy).cloned().unwrap_or_else(|| "0.00".into()).into();
                                v[format!("{cy}_setup")] = p.setup.get(cy).cloned().unwrap_or_else(|| "0.00".into()).into();
                            }
                            (p.id, v)
                        })
                        .collect();
                    Ok(ok(vec![("products", keyed(items))]))
                }
            },
            "meteredaddusage" => {
                let account = match c.id("account_id") {
                    Ok(a) => a,
                    Err(e) => return Some(Err(e)),
                };
                let vars = match self.account_vars(account) {
                    Ok(v) => v,
                    Err(e) => return Some(Err(e)),
                };
                let q = match qty(&c.text("qty")) {
                    Ok(q) => q,
                    Err(e) => return Some(Err(e)),
                };
                let variable = c.text("variable");
                self.add_usage(&vars, account, &variable, q, c.text("output"), c.text("rawoutput"))
                    .map(|id| ok(vec![("usage_id", s(id))]))
            }
            "meteredaddusagebulk" if c.profile.metered_bulk => {
                let account = match c.id("account_id") {
                    Ok(a) => a,
                    Err(e) => return Some(Err(e)),
                };
                let vars = match self.account_vars(account) {
                    Ok(v) => v,
                    Err(e) => return Some(Err(e)),
                };
                // variables[<var>][field]
                let mut parsed: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
                for (k, v) in c.form {
                    let Some(rest) = k.strip_prefix("variables[") else { continue };
                    let Some((var, field)) = rest.split_once("][") else { continue };
                    let field = field.trim_end_matches(']');
                    parsed.entry(var.to_owned()).or_default().insert(field.to_owned(), v.clone());
                }
                if parsed.is_empty() {
                    return Some(Err("Wrong parameter".into()));
                }
                // Checked first: a refused variable adds nothing.
                let mut rows = Vec::new();
                for (var, fields) in &parsed {
                    let q = match qty(fields.get("qty").map(String::as_str).unwrap_or_default()) {
                        Ok(q) => q,
                        Err(e) => return Some(Err(e)),
                    };
                    if !vars.is_empty() && !vars.contains(var) {
                        return Some(Err(format!("Metered variable {var} is not configured for this product")));
                    }
                    rows.push((
                        var.clone(),
                        q,
                        fields.get("output").cloned().unwrap_or_default(),
                        fields.get("rawoutput").cloned().unwrap_or_default(),
                    ));
                }
                let mut ids = Map::new();
                for (var, q, out, raw) in rows {
                    match self.add_usage(&vars, account, &var, q, out, raw) {
                        Ok(id) => ids.insert(var, s(id)),
                        Err(e) => return Some(Err(e)),
                    };
                }
                Ok(ok(vec![("usage_ids", Value::Object(ids))]))
            }
            "meteredgetusage" => {
                let account = match c.id("account_id") {
                    Ok(a) => a,
                    Err(e) => return Some(Err(e)),
                };
                if !self.accounts.contains_key(&account) {
                    return Some(Err("Account not found".into()));
                }
                let mut by_var: BTreeMap<String, Vec<&DoubleUsage>> = BTreeMap::new();
                for u in self.usage.values().filter(|u| u.account_id == account && u.period == self.period) {
                    by_var.entry(u.variable.clone()).or_default().push(u);
                }
                let items = by_var
                    .into_iter()
                    .enumerate()
                    .map(|(i, (var, values))| {
                        let total: f64 = values.iter().map(|u| u.qty).sum();
                        let values: Vec<Value> = values
                            .iter()
                            .map(|u| json!({"id": s(u.id), "date_created": "2026-01-01 00:00:00", "qty": crate::types::qty_text(u.qty),
                                            "charge": "0.00", "output": u.output, "rawoutput": u.rawoutput}))
                            .collect();
                        (i as u64 + 1, json!({"name": var, "variable_name": var, "unit_name": "", "scheme": "",
                                              "usage": crate::types::qty_text(total), "charge": "0.00", "values": values}))
                    })
                    .collect();
                Ok(ok(vec![("variables", keyed(items))]))
            }
            "getapimethods" => Ok(ok(vec![(
                "methods",
                json!([
                    "getHostBillversion",
                    "getClients",
                    "addClient",
                    "getClientAccounts",
                    "getAccounts",
                    "getAccountDetails",
                    "editAccountDetails",
                    "addOrder",
                    "accountSuspend",
                    "accountUnsuspend",
                    "accountTerminate",
                    "getAccountAddons",
                    "addAddonToAccount",
                    "getAddons",
                    "getOrderPages",
                    "getProducts",
                    "meteredAddUsage",
                    "meteredAddUsageBulk",
                    "meteredGetUsage"
                ]),
            )])),
            _ => return None,
        })
    }
}
