//! The double's data (what WHMCS keeps in its database) and the actions that read and change it.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use super::config::{DuplicateEmail, Profile};
use super::form::Form;
use super::render::Render;
use crate::php::{decode_custom_fields, PhpKey};

/// A client (customer account) in the double.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DoubleClient {
    /// Client id.
    pub id: u64,
    /// First name.
    pub firstname: String,
    /// Last name.
    pub lastname: String,
    /// Company name.
    pub companyname: String,
    /// Email address.
    pub email: String,
    /// `Active` or `Closed`.
    pub status: String,
}

/// A product the administrator configured.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DoubleProduct {
    /// Product id.
    pub pid: u64,
    /// Product group id.
    pub gid: u64,
    /// Name.
    pub name: String,
    /// Product type (`other` for WAP plans).
    pub product_type: String,
}

/// A product add-on definition the administrator configured.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DoubleAddonDefinition {
    /// Add-on definition id.
    pub id: u64,
    /// Name.
    pub name: String,
}

/// A product custom field the administrator configured.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DoubleCustomField {
    /// Field id.
    pub id: u64,
    /// The product it belongs to.
    pub pid: u64,
    /// Name.
    pub name: String,
}

/// An order.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DoubleOrder {
    /// Order id.
    pub id: u64,
    /// Client id.
    pub userid: u64,
    /// `Pending`, `Active` or `Cancelled`.
    pub status: String,
    /// Payment method.
    pub paymentmethod: String,
    /// Services the order created.
    pub service_ids: Vec<u64>,
    /// Service add-ons the order created.
    pub addon_ids: Vec<u64>,
}

/// A service (a client's product).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DoubleService {
    /// Service id.
    pub id: u64,
    /// Client id.
    pub clientid: u64,
    /// Order id.
    pub orderid: u64,
    /// Product id.
    pub pid: u64,
    /// Domain field.
    pub domain: String,
    /// `Pending`, `Active`, `Suspended`, `Terminated`, `Cancelled`.
    pub status: String,
    /// Billing cycle.
    pub billingcycle: String,
    /// Custom-field values by field id.
    pub customfields: BTreeMap<u64, String>,
    /// The last suspension reason.
    pub suspendreason: String,
}

/// A service add-on.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DoubleServiceAddon {
    /// Service add-on id.
    pub id: u64,
    /// Client id.
    pub userid: u64,
    /// Order id.
    pub orderid: u64,
    /// Service id.
    pub serviceid: u64,
    /// Add-on definition id.
    pub addonid: u64,
    /// `Pending`, `Active`, `Suspended`, `Terminated`, `Cancelled`.
    pub status: String,
}

/// A billable item.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DoubleBillableItem {
    /// Billable item id.
    pub id: u64,
    /// Client id.
    pub clientid: u64,
    /// Description (the invoice line).
    pub description: String,
    /// Amount, as sent.
    pub amount: String,
    /// `hours` (quantity), as sent.
    pub hours: String,
    /// `invoiceaction`.
    pub invoiceaction: String,
    /// `duedate`, as sent.
    pub duedate: String,
    /// The invoice it was put on (by the cron or `GenInvoices`), `None` while uninvoiced.
    pub invoiceid: Option<u64>,
}

/// An invoice.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DoubleInvoice {
    /// Invoice id.
    pub id: u64,
    /// Client id.
    pub userid: u64,
    /// Invoice date (`Y-m-d`).
    pub date: String,
    /// `Unpaid`, `Paid`, `Cancelled`, …
    pub status: String,
    /// The lines.
    pub items: Vec<DoubleInvoiceItem>,
}

/// A line of an invoice.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DoubleInvoiceItem {
    /// Invoice item id.
    pub id: u64,
    /// `Item` for a billable item.
    pub item_type: String,
    /// The billable item's id (for `Item`).
    pub relid: u64,
    /// The line's text (a billable item's description).
    pub description: String,
    /// The amount.
    pub amount: String,
}

/// Everything the double stores.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct DoubleState {
    /// Clients by id.
    pub clients: BTreeMap<u64, DoubleClient>,
    /// Products by id.
    pub products: BTreeMap<u64, DoubleProduct>,
    /// Add-on definitions by id.
    pub addon_definitions: BTreeMap<u64, DoubleAddonDefinition>,
    /// Product custom fields by id.
    pub custom_fields: BTreeMap<u64, DoubleCustomField>,
    /// Payment methods (gateway system names).
    pub payment_methods: Vec<String>,
    /// Orders by id.
    pub orders: BTreeMap<u64, DoubleOrder>,
    /// Services by id.
    pub services: BTreeMap<u64, DoubleService>,
    /// Service add-ons by id.
    pub service_addons: BTreeMap<u64, DoubleServiceAddon>,
    /// Billable items by id, in creation order.
    pub billable_items: BTreeMap<u64, DoubleBillableItem>,
    /// Invoices by id.
    pub invoices: BTreeMap<u64, DoubleInvoice>,
    /// The date invoices get (`Y-m-d`; empty: today in UTC).
    pub today: String,
    next_id: u64,
}

/// Service and add-on statuses a module action cannot leave.
fn is_final(status: &str) -> bool {
    matches!(status, "Terminated" | "Cancelled" | "Fraud")
}

type Answer = Result<Map<String, Value>, String>;

fn ok() -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("result".into(), "success".into());
    m
}

impl DoubleState {
    fn next(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// Runs one action (already authenticated). `Err` is the message of an error envelope.
    pub(crate) fn dispatch(
        &mut self,
        action: &str,
        f: &Form,
        p: &Profile,
        dup: DuplicateEmail,
        r: &Render,
    ) -> Option<Answer> {
        let v = &p.version;
        Some(match action {
            "getclients" => self.get_clients(f, r),
            "getclientsdetails" => self.get_clients_details(f, r),
            "addclient" => self.add_client(f, dup, r),
            "getproducts" => self.get_products(f, r),
            "getpaymentmethods" => Ok(self.get_payment_methods(r)),
            "addorder" => self.add_order(f, p, r),
            "acceptorder" => self.accept_order(f),
            "cancelorder" => self.cancel_order(f),
            "getorders" => self.get_orders(f, r),
            "getclientsproducts" => self.get_clients_products(f, r),
            "updateclientproduct" => self.update_client_product(f, r),
            "modulesuspend" => self.module_action(f, "Suspended"),
            "moduleunsuspend" => self.module_action(f, "Active"),
            "moduleterminate" => self.module_action(f, "Terminated"),
            "getclientsaddons" => self.get_clients_addons(f, r),
            "updateclientaddon" => self.update_client_addon(f, r),
            "addbillableitem" => self.add_billable_item(f, r),
            "geninvoices" => Ok(self.gen_invoices(f.id("clientid"), r)),
            "getinvoices" => Ok(self.get_invoices(f, r)),
            "getinvoice" => self.get_invoice(f, r),
            "whmcsdetails" if v.at_least(8, 0) => {
                let mut m = ok();
                m.insert(
                    "whmcs".into(),
                    json!({"version": v.to_string(), "canonicalversion": format!("{v}-release.1")}),
                );
                Ok(m)
            }
            "getconfigurationvalue" if v.at_least(7, 0) => match f.get("setting").unwrap_or_default() {
                "" => Err("Parameter setting is required".into()),
                s if s.eq_ignore_ascii_case("Version") => Ok(setting(s, &format!("{v}-release.1"))),
                s if s.eq_ignore_ascii_case("SystemURL") => Ok(setting(s, "http://127.0.0.1/whmcs/")),
                _ => Err("Invalid name for parameter setting".into()),
            },
            _ => return None,
        })
    }

    fn client_json(&self, c: &DoubleClient, r: &Render) -> Value {
        json!({"id": r.n(c.id), "firstname": c.firstname, "lastname": c.lastname, "companyname": c.companyname,
               "email": c.email, "datecreated": "2026-01-01", "groupid": r.n(0), "status": c.status})
    }

    fn get_clients(&self, f: &Form, r: &Render) -> Answer {
        let search = f.get("search").unwrap_or_default().to_lowercase();
        let matching: Vec<&DoubleClient> = self
            .clients
            .values()
            .filter(|c| {
                let full = format!("{} {}", c.firstname, c.lastname);
                search.is_empty()
                    || [&c.email, &c.firstname, &c.lastname, &full, &c.companyname]
                        .iter()
                        .any(|field| field.to_lowercase().starts_with(&search))
            })
            .collect();
        let items = matching.iter().map(|c| self.client_json(c, r)).collect();
        Ok(r.page(f, "clients", "client", items))
    }

    fn get_clients_details(&self, f: &Form, r: &Render) -> Answer {
        let client = match (f.id("clientid"), f.get("email")) {
            (Some(id), _) => self.clients.get(&id),
            (None, Some(email)) if !email.is_empty() => {
                self.clients.values().find(|c| c.email.eq_ignore_ascii_case(email))
            }
            _ => return Err("Either clientid Or email Is Required".into()),
        };
        let c = client.ok_or("Client Not Found")?;
        let mut m = ok();
        let details = self.client_json(c, r);
        // The client's fields are also returned at the top level (deprecated, still sent).
        if let Value::Object(fields) = &details {
            for (k, v) in fields {
                m.insert(k.clone(), v.clone());
            }
        }
        m.insert("client".into(), details);
        Ok(m)
    }

    fn add_client(&mut self, f: &Form, dup: DuplicateEmail, r: &Render) -> Answer {
        let email = f.get("email").unwrap_or_default().trim().to_owned();
        let skip = f.flag("skipvalidation");
        for (field, message) in
            [("firstname", "You did not enter your first name"), ("lastname", "You did not enter your last name")]
        {
            if !skip && f.get(field).unwrap_or_default().trim().is_empty() {
                return Err(message.into());
            }
        }
        if email.is_empty() {
            return Err("You did not enter your email address".into());
        }
        let (local, domain) = email.split_once('@').unwrap_or(("", ""));
        if local.is_empty() || !domain.contains('.') || email.contains(char::is_whitespace) {
            return Err("The email address you entered was not valid".into());
        }
        if !skip {
            let required = [
                ("address1", "You did not enter your address line 1"),
                ("city", "You did not enter your city"),
                ("state", "You did not enter your state"),
                ("postcode", "You did not enter your postcode"),
                ("country", "You did not enter your country"),
                ("phonenumber", "You did not enter your phone number"),
            ];
            for (field, message) in required {
                if f.get(field).unwrap_or_default().trim().is_empty() {
                    return Err(message.into());
                }
            }
        }
        if dup == DuplicateEmail::Reject && self.clients.values().any(|c| c.email.eq_ignore_ascii_case(&email)) {
            return Err("Duplicate Email Address".into());
        }
        let id = self.next();
        let text = |k: &str| f.get(k).unwrap_or_default().to_owned();
        self.clients.insert(
            id,
            DoubleClient {
                id,
                firstname: text("firstname"),
                lastname: text("lastname"),
                companyname: text("companyname"),
                email,
                status: "Active".into(),
            },
        );
        let mut m = ok();
        m.insert("clientid".into(), r.n(id));
        Ok(m)
    }

    fn get_products(&self, f: &Form, r: &Render) -> Answer {
        let pids: Vec<u64> =
            f.get("pid").unwrap_or_default().split(',').filter_map(|p| p.trim().parse().ok()).collect();
        let gid = f.id("gid");
        let items = self
            .products
            .values()
            .filter(|p| (pids.is_empty() || pids.contains(&p.pid)) && gid.is_none_or(|g| g == p.gid))
            .map(|p| {
                let fields: Vec<Value> = self
                    .custom_fields
                    .values()
                    .filter(|cf| cf.pid == p.pid)
                    .map(|cf| json!({"id": r.n(cf.id), "name": cf.name, "description": "", "required": ""}))
                    .collect();
                json!({"pid": r.n(p.pid), "gid": r.n(p.gid), "type": p.product_type, "name": p.name, "description": "",
                       "module": "", "paytype": "recurring",
                       "customfields": r.nested("customfield", fields), "configoptions": r.nested("configoption", vec![])})
            })
            .collect::<Vec<_>>();
        let mut m = ok();
        m.insert("totalresults".into(), r.n(items.len() as u64));
        r.put_list(&mut m, "products", "product", items);
        Ok(m)
    }

    fn get_payment_methods(&self, r: &Render) -> Map<String, Value> {
        let mut m = ok();
        m.insert("totalresults".into(), r.n(self.payment_methods.len() as u64));
        let items = self.payment_methods.iter().map(|p| json!({"module": p, "displayname": p})).collect();
        r.put_list(&mut m, "paymentmethods", "paymentmethod", items);
        m
    }

    fn add_order(&mut self, f: &Form, p: &Profile, r: &Render) -> Answer {
        let clientid = f.id("clientid").unwrap_or(0);
        let client = self.clients.get(&clientid).ok_or("Client ID Not Found")?;
        if client.status == "Closed" {
            return Err("Unable to add order when client status is Closed".into());
        }
        let method = f.get("paymentmethod").unwrap_or_default();
        if !self.payment_methods.iter().any(|m| m == method) {
            return Err(format!("Invalid Payment Method. Valid options include {}", self.payment_methods.join(",")));
        }
        // Validate everything before creating anything: WHMCS creates an order whole or not at all.
        let pids = f.indexed("pid");
        let mut lines = Vec::new();
        for (i, pid) in &pids {
            let pid: u64 = pid.trim().parse().map_err(|_| "Invalid Product ID".to_owned())?;
            if !self.products.contains_key(&pid) {
                return Err("Invalid Product ID".into());
            }
            let addons: Vec<u64> = f
                .at("addons", *i)
                .unwrap_or_default()
                .split(',')
                .filter(|a| !a.trim().is_empty())
                .map(|a| {
                    a.trim().parse().ok().filter(|id| self.addon_definitions.contains_key(id)).ok_or("Addon ID invalid")
                })
                .collect::<Result<_, _>>()?;
            let mut fields = BTreeMap::new();
            if let Some(encoded) = f.at("customfields", *i).filter(|c| !c.is_empty()) {
                let decoded = decode_custom_fields(encoded)
                    .ok_or("Invalid customfields: expected base64 of a serialized array")?;
                for (key, value) in decoded {
                    let id = match key {
                        PhpKey::Int(n) => u64::try_from(n).ok(),
                        PhpKey::Str(s) => s.parse().ok(),
                    };
                    // Values for fields the product does not have are dropped, as the order form would.
                    if let Some(id) = id.filter(|id| self.custom_fields.get(id).is_some_and(|cf| cf.pid == pid)) {
                        fields.insert(id, value);
                    }
                }
            }
            let cycle = f.at("billingcycle", *i).unwrap_or("monthly");
            lines.push((pid, addons, fields, cycle.to_owned(), f.at("domain", *i).unwrap_or_default().to_owned()));
        }
        let mut addon_only: Vec<(u64, u64)> = Vec::new();
        if let (Some(a), Some(s)) = (f.id("addonid"), f.id("serviceid")) {
            addon_only.push((a, s));
        }
        let addon_ids = f.indexed("addonids");
        let service_ids = f.indexed("serviceids");
        for ((_, a), (_, s)) in addon_ids.iter().zip(service_ids.iter()) {
            addon_only.push((a.trim().parse().unwrap_or(0), s.trim().parse().unwrap_or(0)));
        }
        for (a, s) in &addon_only {
            if !self.addon_definitions.contains_key(a) {
                return Err("Addon ID invalid".into());
            }
            if self.services.get(s).is_none_or(|svc| svc.clientid != clientid) {
                return Err("Service ID not owned by Client ID provided".into());
            }
        }
        if lines.is_empty() && addon_only.is_empty() {
            return Err("No items added to cart so order cannot proceed".into());
        }
        let orderid = self.next();
        let mut order = DoubleOrder {
            id: orderid,
            userid: clientid,
            status: "Pending".into(),
            paymentmethod: method.to_owned(),
            service_ids: vec![],
            addon_ids: vec![],
        };
        for (pid, addons, customfields, billingcycle, domain) in lines {
            let id = self.next();
            self.services.insert(
                id,
                DoubleService {
                    id,
                    clientid,
                    orderid,
                    pid,
                    domain,
                    status: "Pending".into(),
                    billingcycle,
                    customfields,
                    suspendreason: String::new(),
                },
            );
            order.service_ids.push(id);
            for addonid in addons {
                order.addon_ids.push(self.new_service_addon(clientid, orderid, id, addonid));
            }
        }
        for (addonid, serviceid) in addon_only {
            order.addon_ids.push(self.new_service_addon(clientid, orderid, serviceid, addonid));
        }
        let join = |ids: &[u64]| ids.iter().map(u64::to_string).collect::<Vec<_>>().join(",");
        let mut m = ok();
        m.insert("orderid".into(), r.n(orderid));
        let key = if p.version.at_least(7, 8) { "serviceids" } else { "productids" };
        m.insert(key.into(), join(&order.service_ids).into());
        m.insert("addonids".into(), join(&order.addon_ids).into());
        m.insert("domainids".into(), "".into());
        if !f.flag("noinvoice") {
            let invoice = self.next();
            m.insert("invoiceid".into(), r.n(invoice));
        }
        self.orders.insert(orderid, order);
        Ok(m)
    }

    fn new_service_addon(&mut self, userid: u64, orderid: u64, serviceid: u64, addonid: u64) -> u64 {
        let id = self.next();
        self.service_addons
            .insert(id, DoubleServiceAddon { id, userid, orderid, serviceid, addonid, status: "Pending".into() });
        id
    }

    fn set_order_status(&mut self, f: &Form, order_status: &str, item_status: &str) -> Answer {
        let id = f.id("orderid").unwrap_or(0);
        let order = self
            .orders
            .get_mut(&id)
            .filter(|o| o.status == "Pending")
            .ok_or("Order ID not found or Status not Pending")?;
        order.status = order_status.into();
        let (services, addons) = (order.service_ids.clone(), order.addon_ids.clone());
        for s in services {
            if let Some(s) = self.services.get_mut(&s) {
                s.status = item_status.into();
            }
        }
        for a in addons {
            if let Some(a) = self.service_addons.get_mut(&a) {
                a.status = item_status.into();
            }
        }
        Ok(ok())
    }

    fn accept_order(&mut self, f: &Form) -> Answer {
        self.set_order_status(f, "Active", "Active")
    }

    fn cancel_order(&mut self, f: &Form) -> Answer {
        self.set_order_status(f, "Cancelled", "Cancelled")
    }

    fn get_orders(&self, f: &Form, r: &Render) -> Answer {
        let (id, userid, status) = (f.id("id"), f.id("userid"), f.get("status"));
        let items = self
            .orders
            .values()
            .filter(|o| id.is_none_or(|i| i == o.id) && userid.is_none_or(|u| u == o.userid) && status.is_none_or(|s| s.is_empty() || s.eq_ignore_ascii_case(&o.status)))
            .map(|o| {
                let mut lines: Vec<Value> = o
                    .service_ids
                    .iter()
                    .filter_map(|s| self.services.get(s))
                    .map(|s| json!({"type": "product", "relid": r.n(s.id), "producttype": "Other", "product": self.product_name(s.pid), "domain": s.domain, "billingcycle": s.billingcycle, "amount": "0.00", "status": s.status}))
                    .collect();
                lines.extend(o.addon_ids.iter().filter_map(|a| self.service_addons.get(a)).map(|a| {
                    json!({"type": "addon", "relid": r.n(a.id), "producttype": "Addon", "product": self.addon_name(a.addonid), "domain": "", "billingcycle": "", "amount": "0.00", "status": a.status})
                }));
                json!({"id": r.n(o.id), "ordernum": r.n(1_000_000 + o.id), "userid": r.n(o.userid), "date": "2026-01-01 00:00:00",
                       "amount": "0.00", "invoiceid": r.n(0), "status": o.status, "paymentmethod": o.paymentmethod, "paymentstatus": "",
                       "lineitems": r.nested("lineitem", lines)})
            })
            .collect();
        Ok(r.page(f, "orders", "order", items))
    }

    fn product_name(&self, pid: u64) -> String {
        self.products.get(&pid).map(|p| p.name.clone()).unwrap_or_default()
    }

    fn addon_name(&self, id: u64) -> String {
        self.addon_definitions.get(&id).map(|a| a.name.clone()).unwrap_or_default()
    }

    fn get_clients_products(&self, f: &Form, r: &Render) -> Answer {
        let (clientid, serviceid, pid) = (f.id("clientid"), f.id("serviceid"), f.id("pid"));
        let domain = f.get("domain").filter(|d| !d.is_empty());
        let items = self
            .services
            .values()
            .filter(|s| {
                clientid.is_none_or(|c| c == s.clientid)
                    && serviceid.is_none_or(|i| i == s.id)
                    && pid.is_none_or(|p| p == s.pid)
                    && domain.is_none_or(|d| d.eq_ignore_ascii_case(&s.domain))
            })
            .map(|s| {
                let fields: Vec<Value> = self
                    .custom_fields
                    .values()
                    .filter(|cf| cf.pid == s.pid)
                    .map(|cf| json!({"id": r.n(cf.id), "name": cf.name, "translated_name": cf.name, "value": s.customfields.get(&cf.id).cloned().unwrap_or_default()}))
                    .collect();
                json!({"id": r.n(s.id), "clientid": r.n(s.clientid), "orderid": r.n(s.orderid), "pid": r.n(s.pid),
                       "regdate": "2026-01-01", "name": self.product_name(s.pid), "groupname": "", "domain": s.domain,
                       "status": s.status, "billingcycle": s.billingcycle, "nextduedate": "0000-00-00", "recurringamount": "0.00",
                       "firstpaymentamount": "0.00", "paymentmethod": "", "username": "", "notes": "", "suspensionreason": s.suspendreason,
                       "customfields": r.nested("customfield", fields), "configoptions": r.nested("configoption", vec![])})
            })
            .collect();
        let mut m = r.page(f, "products", "product", items);
        m.insert("clientid".into(), clientid.map_or(Value::Null, |c| r.n(c)));
        Ok(m)
    }

    fn update_client_product(&mut self, f: &Form, r: &Render) -> Answer {
        let id = f.id("serviceid").unwrap_or(0);
        let fields = &self.custom_fields;
        let s = self.services.get_mut(&id).ok_or("Service ID Not Found")?;
        if let Some(status) = f.get("status").filter(|v| !v.is_empty()) {
            s.status = status.to_owned();
        }
        if let Some(d) = f.get("domain") {
            s.domain = d.to_owned();
        }
        if let Some(encoded) = f.get("customfields").filter(|c| !c.is_empty()) {
            let decoded =
                decode_custom_fields(encoded).ok_or("Invalid customfields: expected base64 of a serialized array")?;
            for (key, value) in decoded {
                if let Some(fid) =
                    key.as_text().parse::<u64>().ok().filter(|fid| fields.get(fid).is_some_and(|cf| cf.pid == s.pid))
                {
                    s.customfields.insert(fid, value);
                }
            }
        }
        let mut m = ok();
        m.insert("serviceid".into(), r.n(id));
        Ok(m)
    }

    fn module_action(&mut self, f: &Form, target: &str) -> Answer {
        let id = f.id("accountid").unwrap_or(0);
        let s = self.services.get_mut(&id).ok_or("Service ID Not Found")?;
        if is_final(&s.status) && target != "Terminated" {
            // The double's own text: WHMCS's answer depends on the module.
            return Err(format!("Service status is {}: the module action cannot run", s.status));
        }
        if target == "Suspended" {
            s.suspendreason = f.get("suspendreason").unwrap_or_default().to_owned();
        }
        s.status = target.into();
        Ok(ok())
    }

    fn get_clients_addons(&self, f: &Form, r: &Render) -> Answer {
        let services: Vec<u64> =
            f.get("serviceid").unwrap_or_default().split(',').filter_map(|s| s.trim().parse().ok()).collect();
        let (clientid, addonid) = (f.id("clientid"), f.id("addonid"));
        let items: Vec<Value> = self
            .service_addons
            .values()
            .filter(|a| (services.is_empty() || services.contains(&a.serviceid)) && clientid.is_none_or(|c| c == a.userid) && addonid.is_none_or(|d| d == a.addonid))
            .map(|a| {
                json!({"id": r.n(a.id), "userid": r.n(a.userid), "orderid": r.n(a.orderid), "serviceid": r.n(a.serviceid),
                       "addonid": r.n(a.addonid), "name": self.addon_name(a.addonid), "setupfee": "0.00", "recurring": "0.00",
                       "billingcycle": "Monthly", "status": a.status, "regdate": "2026-01-01", "nextduedate": "0000-00-00"})
            })
            .collect();
        let mut m = ok();
        m.insert("totalresults".into(), r.n(items.len() as u64));
        r.put_list(&mut m, "addons", "addon", items);
        Ok(m)
    }

    fn update_client_addon(&mut self, f: &Form, r: &Render) -> Answer {
        let id = f.id("id").unwrap_or(0);
        let a = self.service_addons.get_mut(&id).ok_or("Addon ID Not Found")?;
        match f.get("status").filter(|s| !s.is_empty()) {
            Some(status) if status != a.status => a.status = status.to_owned(),
            _ => return Err("Nothing to Update".into()),
        }
        let mut m = ok();
        m.insert("id".into(), r.n(id));
        Ok(m)
    }

    fn add_billable_item(&mut self, f: &Form, r: &Render) -> Answer {
        let clientid = f.id("clientid").unwrap_or(0);
        if !self.clients.contains_key(&clientid) {
            return Err("Client ID not Found".into());
        }
        let description = f.get("description").unwrap_or_default();
        if description.trim().is_empty() {
            return Err("You must provide a description".into());
        }
        let action = f.get("invoiceaction").unwrap_or("noinvoice");
        if !["noinvoice", "nextcron", "nextinvoice", "duedate", "recur"].contains(&action) {
            return Err("Invalid Invoice Action".into());
        }
        let duedate = f.get("duedate").unwrap_or_default();
        if action == "duedate" && duedate.is_empty() {
            return Err("Due date is required".into());
        }
        if action == "recur"
            && [f.get("recur"), f.get("recurcycle"), f.get("recurfor")].iter().any(|v| v.unwrap_or_default().is_empty())
        {
            return Err("Recurring must have a unit, cycle and limit".into());
        }
        let id = self.next();
        self.billable_items.insert(
            id,
            DoubleBillableItem {
                id,
                clientid,
                description: description.to_owned(),
                amount: f.get("amount").unwrap_or("0").to_owned(),
                hours: f.get("hours").unwrap_or_default().to_owned(),
                invoiceaction: action.to_owned(),
                duedate: duedate.to_owned(),
                invoiceid: None,
            },
        );
        let mut m = ok();
        m.insert("billableid".into(), r.n(id));
        Ok(m)
    }
}

impl DoubleState {
    /// Invoices the billable items that are due, as WHMCS's daily cron (and `GenInvoices`) does: per client, one
    /// new invoice holding its uninvoiced items marked `nextcron`, `duedate` or `recur`, plus those marked
    /// `nextinvoice` (they join the client's next invoice); `noinvoice` items stay uninvoiced. With `client`, only
    /// that client's. Returns the new invoices' ids.
    pub fn invoice_due_items(&mut self, client: Option<u64>) -> Vec<u64> {
        let mut by_client: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
        for b in self.billable_items.values() {
            if b.invoiceid.is_none() && client.is_none_or(|c| c == b.clientid) && b.invoiceaction != "noinvoice" {
                by_client.entry(b.clientid).or_default().push(b.id);
            }
        }
        let mut created = Vec::new();
        for (userid, ids) in by_client {
            let due = ids.iter().any(|id| self.billable_items[id].invoiceaction != "nextinvoice");
            if !due {
                continue;
            }
            let invoice = self.next();
            let mut items = Vec::new();
            for id in ids {
                let line = self.next();
                let b = self.billable_items.get_mut(&id).expect("listed above");
                b.invoiceid = Some(invoice);
                items.push(DoubleInvoiceItem {
                    id: line,
                    item_type: "Item".into(),
                    relid: id,
                    description: b.description.clone(),
                    amount: b.amount.clone(),
                });
            }
            let date = if self.today.is_empty() {
                chrono::Utc::now().format("%Y-%m-%d").to_string()
            } else {
                self.today.clone()
            };
            self.invoices.insert(invoice, DoubleInvoice { id: invoice, userid, date, status: "Unpaid".into(), items });
            created.push(invoice);
        }
        created
    }

    fn gen_invoices(&mut self, client: Option<u64>, r: &Render) -> Map<String, Value> {
        let created = self.invoice_due_items(client);
        let mut m = ok();
        m.insert("numcreated".into(), r.n(created.len() as u64));
        if client.is_some() {
            m.insert("latestinvoiceid".into(), r.n(created.last().copied().unwrap_or(0)));
        }
        m
    }

    fn invoice_total(i: &DoubleInvoice) -> String {
        let total: f64 = i.items.iter().map(|l| l.amount.trim().parse::<f64>().unwrap_or(0.0)).sum();
        format!("{total:.2}")
    }

    fn get_invoices(&self, f: &Form, r: &Render) -> Map<String, Value> {
        let (userid, status) = (f.id("userid"), f.get("status").filter(|s| !s.is_empty()));
        let items = self
            .invoices
            .values()
            .filter(|i| userid.is_none_or(|u| u == i.userid) && status.is_none_or(|s| s.eq_ignore_ascii_case(&i.status)))
            .map(|i| {
                let total = Self::invoice_total(i);
                json!({"id": r.n(i.id), "userid": r.n(i.userid), "invoicenum": "", "date": i.date, "duedate": i.date,
                       "datepaid": "0000-00-00 00:00:00", "subtotal": total, "credit": "0.00", "tax": "0.00",
                       "total": total, "status": i.status, "paymentmethod": "mailin", "notes": "", "currencycode": "USD"})
            })
            .collect();
        r.page(f, "invoices", "invoice", items)
    }

    fn get_invoice(&self, f: &Form, r: &Render) -> Answer {
        let id = f.id("invoiceid").unwrap_or(0);
        let i = self.invoices.get(&id).ok_or("Invoice ID Not Found")?;
        let total = Self::invoice_total(i);
        let mut m = ok();
        for (k, v) in [("invoiceid", r.n(i.id)), ("userid", r.n(i.userid))] {
            m.insert(k.into(), v);
        }
        for (k, v) in
            [("invoicenum", ""), ("date", i.date.as_str()), ("duedate", i.date.as_str()), ("status", i.status.as_str())]
        {
            m.insert(k.into(), v.into());
        }
        for k in ["subtotal", "total", "balance"] {
            m.insert(k.into(), total.clone().into());
        }
        m.insert("paymentmethod".into(), "mailin".into());
        m.insert("notes".into(), "".into());
        let lines = i
            .items
            .iter()
            .map(|l| {
                json!({"id": r.n(l.id), "type": l.item_type, "relid": r.n(l.relid), "description": l.description,
                            "amount": l.amount, "taxed": r.n(0)})
            })
            .collect();
        r.put_list(&mut m, "items", "item", lines);
        m.insert("transactions".into(), Value::String(String::new()));
        Ok(m)
    }
}

fn setting(name: &str, value: &str) -> Map<String, Value> {
    let mut m = ok();
    m.insert("setting".into(), name.into());
    m.insert("value".into(), value.into());
    m
}
