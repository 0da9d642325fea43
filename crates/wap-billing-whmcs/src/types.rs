//! Typed requests and answers of the WHMCS actions the adapter uses.

use serde_json::{Map, Value};

use crate::error::Error;
use crate::wire::Obj;

/// A WHMCS client (a customer account), as `GetClients` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Client {
    /// Client id.
    pub id: u64,
    /// First name.
    pub firstname: String,
    /// Last name.
    pub lastname: String,
    /// Company name (may be empty).
    pub companyname: String,
    /// Email address (unique in WHMCS).
    pub email: String,
    /// `Active`, `Inactive` or `Closed`.
    pub status: String,
}

impl Client {
    pub(crate) fn read(o: Obj<'_>) -> Result<Self, Error> {
        Ok(Client {
            id: o.id("id")?,
            firstname: o.text("firstname"),
            lastname: o.text("lastname"),
            companyname: o.text("companyname"),
            email: o.text("email"),
            status: o.text("status"),
        })
    }
}

/// The fields of `AddClient`. WHMCS requires the address fields unless `skip_validation` is set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct NewClient {
    /// First name (required).
    pub firstname: String,
    /// Last name (required).
    pub lastname: String,
    /// Email address (required; WHMCS's lookup key for the adapter).
    pub email: String,
    /// Company name.
    pub companyname: Option<String>,
    /// Address line 1.
    pub address1: Option<String>,
    /// City.
    pub city: Option<String>,
    /// State or region.
    pub state: Option<String>,
    /// Post code.
    pub postcode: Option<String>,
    /// ISO 3166-1 alpha-2 country code.
    pub country: Option<String>,
    /// Phone number.
    pub phonenumber: Option<String>,
    /// Currency id (`tblcurrencies`).
    pub currency: Option<u64>,
    /// Client group id.
    pub groupid: Option<u64>,
    /// Admin-only notes.
    pub notes: Option<String>,
    /// `skipvalidation=true`: accept missing address fields (WAP knows only an email address).
    pub skip_validation: bool,
    /// `noemail=true`: do not send the welcome email.
    pub no_email: bool,
}

impl NewClient {
    /// A client known only by email (what WAP knows of an account), names defaulting to the email's local part,
    /// with validation of the address fields skipped and no welcome email.
    pub fn from_email(email: impl Into<String>) -> Self {
        let email = email.into();
        let local = email.split('@').next().unwrap_or_default().to_owned();
        NewClient {
            firstname: local.clone(),
            lastname: local,
            email,
            skip_validation: true,
            no_email: true,
            ..NewClient::default()
        }
    }

    pub(crate) fn form(&self) -> Vec<(String, String)> {
        let mut f = vec![
            ("firstname".to_owned(), self.firstname.clone()),
            ("lastname".to_owned(), self.lastname.clone()),
            ("email".to_owned(), self.email.clone()),
        ];
        let opt = [
            ("companyname", &self.companyname),
            ("address1", &self.address1),
            ("city", &self.city),
            ("state", &self.state),
            ("postcode", &self.postcode),
            ("country", &self.country),
            ("phonenumber", &self.phonenumber),
            ("notes", &self.notes),
        ];
        f.extend(opt.into_iter().filter_map(|(k, v)| v.as_ref().map(|v| (k.to_owned(), v.clone()))));
        if let Some(c) = self.currency {
            f.push(("currency".into(), c.to_string()));
        }
        if let Some(g) = self.groupid {
            f.push(("groupid".into(), g.to_string()));
        }
        if self.skip_validation {
            f.push(("skipvalidation".into(), "true".into()));
        }
        if self.no_email {
            f.push(("noemail".into(), "true".into()));
        }
        f
    }
}

/// A product (what a WAP plan maps to), as `GetProducts` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Product {
    /// Product id.
    pub pid: u64,
    /// Product group id.
    pub gid: u64,
    /// Name.
    pub name: String,
    /// `hostingaccount`, `reselleraccount`, `server` or `other`.
    pub product_type: String,
    /// Provisioning module (empty for none).
    pub module: String,
    /// `free`, `onetime` or `recurring`.
    pub paytype: String,
}

impl Product {
    pub(crate) fn read(o: Obj<'_>) -> Result<Self, Error> {
        Ok(Product {
            pid: o.id("pid")?,
            gid: o.opt_id("gid")?.unwrap_or(0),
            name: o.text("name"),
            product_type: o.text("type"),
            module: o.text("module"),
            paytype: o.text("paytype"),
        })
    }
}

/// An order, as `GetOrders` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Order {
    /// Order id.
    pub id: u64,
    /// Client id (`userid`).
    pub userid: u64,
    /// `Pending`, `Active`, `Cancelled`, `Fraud`, …
    pub status: String,
    /// Invoice id, when one was created.
    pub invoiceid: Option<u64>,
    /// The order's items.
    pub lineitems: Vec<OrderLine>,
}

/// One item of an [`Order`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct OrderLine {
    /// `product`, `addon`, `domain`, …
    pub line_type: String,
    /// The id of the service (or add-on, domain) the line created.
    pub relid: u64,
    /// Status of the created item.
    pub status: String,
}

impl Order {
    pub(crate) fn read(o: Obj<'_>) -> Result<Self, Error> {
        let lines = o.list("lineitems", "lineitem")?;
        Ok(Order {
            id: o.id("id")?,
            userid: o.opt_id("userid")?.unwrap_or(0),
            status: o.text("status"),
            invoiceid: o.opt_id("invoiceid")?,
            lineitems: lines
                .into_iter()
                .map(|l| {
                    let l = Obj::new(o.action, "$.orders.order[].lineitems.lineitem[]", l);
                    Ok(OrderLine {
                        line_type: l.text("type"),
                        relid: l.opt_id("relid")?.unwrap_or(0),
                        status: l.text("status"),
                    })
                })
                .collect::<Result<_, Error>>()?,
        })
    }
}

/// A custom-field value on a service.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CustomFieldValue {
    /// The field's id (`tblcustomfields`).
    pub id: u64,
    /// The field's name.
    pub name: String,
    /// The value.
    pub value: String,
}

/// A service (a client's product; what a WAP subscription maps to), as `GetClientsProducts` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Service {
    /// Service id (`accountid` of the Module* actions).
    pub id: u64,
    /// Owning client.
    pub clientid: u64,
    /// The order that created it.
    pub orderid: u64,
    /// Product id.
    pub pid: u64,
    /// Product name.
    pub name: String,
    /// The service's domain field (the adapter may keep the WAP subscription id there).
    pub domain: String,
    /// `Pending`, `Active`, `Suspended`, `Terminated`, `Cancelled`, `Fraud`, `Completed`.
    pub status: String,
    /// Billing cycle.
    pub billingcycle: String,
    /// Service username.
    pub username: String,
    /// Custom-field values.
    pub customfields: Vec<CustomFieldValue>,
}

impl Service {
    pub(crate) fn read(o: Obj<'_>) -> Result<Self, Error> {
        let fields = o.list("customfields", "customfield")?;
        Ok(Service {
            id: o.id("id")?,
            clientid: o.opt_id("clientid")?.unwrap_or(0),
            orderid: o.opt_id("orderid")?.unwrap_or(0),
            pid: o.opt_id("pid")?.unwrap_or(0),
            name: o.text("name"),
            domain: o.text("domain"),
            status: o.text("status"),
            billingcycle: o.text("billingcycle"),
            username: o.text("username"),
            customfields: fields
                .into_iter()
                .map(|f| {
                    let f = Obj::new(o.action, "$.products.product[].customfields.customfield[]", f);
                    Ok(CustomFieldValue {
                        id: f.opt_id("id")?.unwrap_or(0),
                        name: f.text("name"),
                        value: f.text("value"),
                    })
                })
                .collect::<Result<_, Error>>()?,
        })
    }

    /// The value of custom field `field_id`, if set.
    pub fn custom_field(&self, field_id: u64) -> Option<&str> {
        self.customfields.iter().find(|f| f.id == field_id).map(|f| f.value.as_str())
    }
}

/// A service add-on (what a WAP subscription add-on maps to), as `GetClientsAddons` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServiceAddon {
    /// The service add-on's id.
    pub id: u64,
    /// Owning client.
    pub userid: u64,
    /// The order that created it.
    pub orderid: u64,
    /// The service it belongs to.
    pub serviceid: u64,
    /// The add-on definition id (configured by the administrator).
    pub addonid: u64,
    /// Name.
    pub name: String,
    /// `Pending`, `Active`, `Suspended`, `Terminated`, `Cancelled`, …
    pub status: String,
}

impl ServiceAddon {
    pub(crate) fn read(o: Obj<'_>) -> Result<Self, Error> {
        Ok(ServiceAddon {
            id: o.id("id")?,
            userid: o.opt_id("userid")?.unwrap_or(0),
            orderid: o.opt_id("orderid")?.unwrap_or(0),
            serviceid: o.opt_id("serviceid")?.unwrap_or(0),
            addonid: o.opt_id("addonid")?.unwrap_or(0),
            name: o.text("name"),
            status: o.text("status"),
        })
    }
}

/// One product line of an `AddOrder`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct OrderItem {
    /// Product id.
    pub pid: u64,
    /// Billing cycle (`monthly`, `annually`, …); WHMCS's default when `None`.
    pub billingcycle: Option<String>,
    /// The service's domain field.
    pub domain: Option<String>,
    /// Custom-field values `{field id => value}` (sent PHP-serialized, base64).
    pub customfields: Vec<(String, String)>,
    /// Add-on definition ids ordered with the product.
    pub addons: Vec<u64>,
    /// A price override for the first payment and renewals.
    pub priceoverride: Option<String>,
}

impl OrderItem {
    /// A line for product `pid`.
    pub fn product(pid: u64) -> Self {
        OrderItem {
            pid,
            billingcycle: None,
            domain: None,
            customfields: Vec::new(),
            addons: Vec::new(),
            priceoverride: None,
        }
    }

    /// Sets the service's domain field (where [`SubscriptionKey::Domain`](crate::SubscriptionKey) keeps the WAP
    /// subscription id).
    pub fn domain(mut self, domain: impl Into<String>) -> Self {
        self.domain = Some(domain.into());
        self
    }

    /// Sets custom field `field_id` of the new service.
    pub fn custom_field(mut self, field_id: u64, value: impl Into<String>) -> Self {
        self.customfields.push((field_id.to_string(), value.into()));
        self
    }

    /// Orders add-on definition `addon_id` with the product.
    pub fn addon(mut self, addon_id: u64) -> Self {
        self.addons.push(addon_id);
        self
    }

    /// Sets the billing cycle (`monthly`, `annually`, …).
    pub fn billing_cycle(mut self, cycle: impl Into<String>) -> Self {
        self.billingcycle = Some(cycle.into());
        self
    }

    /// Overrides the price.
    pub fn price_override(mut self, price: impl Into<String>) -> Self {
        self.priceoverride = Some(price.into());
        self
    }
}

/// An `AddOrder` request.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct NewOrder {
    /// The ordering client.
    pub clientid: u64,
    /// The payment gateway's system name (e.g. `mailin`).
    pub paymentmethod: String,
    /// Product lines.
    pub items: Vec<OrderItem>,
    /// Add-on-only lines: `(add-on definition id, existing service id)`.
    pub addons_for_services: Vec<(u64, u64)>,
    /// `noinvoice=true`.
    pub no_invoice: bool,
    /// `noemail=true`.
    pub no_email: bool,
}

impl NewOrder {
    /// An order for `clientid` paid with `paymentmethod`, no items yet, no invoice and no email.
    pub fn new(clientid: u64, paymentmethod: impl Into<String>) -> Self {
        NewOrder {
            clientid,
            paymentmethod: paymentmethod.into(),
            items: Vec::new(),
            addons_for_services: Vec::new(),
            no_invoice: true,
            no_email: true,
        }
    }

    /// Adds a product line.
    pub fn item(mut self, item: OrderItem) -> Self {
        self.items.push(item);
        self
    }

    /// Adds an add-on for an existing service.
    pub fn addon_for_service(mut self, addon_id: u64, service_id: u64) -> Self {
        self.addons_for_services.push((addon_id, service_id));
        self
    }

    pub(crate) fn form(&self) -> Vec<(String, String)> {
        let mut f = vec![
            ("clientid".to_owned(), self.clientid.to_string()),
            ("paymentmethod".to_owned(), self.paymentmethod.clone()),
        ];
        for (i, item) in self.items.iter().enumerate() {
            f.push((format!("pid[{i}]"), item.pid.to_string()));
            if let Some(c) = &item.billingcycle {
                f.push((format!("billingcycle[{i}]"), c.clone()));
            }
            if let Some(d) = &item.domain {
                f.push((format!("domain[{i}]"), d.clone()));
            }
            if !item.customfields.is_empty() {
                let encoded =
                    crate::php::encode_custom_fields(item.customfields.iter().map(|(k, v)| (k.as_str(), v.as_str())));
                f.push((format!("customfields[{i}]"), encoded));
            }
            if !item.addons.is_empty() {
                let ids: Vec<String> = item.addons.iter().map(u64::to_string).collect();
                f.push((format!("addons[{i}]"), ids.join(",")));
            }
            if let Some(p) = &item.priceoverride {
                f.push((format!("priceoverride[{i}]"), p.clone()));
            }
        }
        for (i, (addon, service)) in self.addons_for_services.iter().enumerate() {
            f.push((format!("addonids[{i}]"), addon.to_string()));
            f.push((format!("serviceids[{i}]"), service.to_string()));
        }
        if self.no_invoice {
            f.push(("noinvoice".into(), "true".into()));
        }
        if self.no_email {
            f.push(("noemail".into(), "true".into()));
        }
        f
    }
}

/// What `AddOrder` created.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PlacedOrder {
    /// The new order (status `Pending` until `AcceptOrder`).
    pub orderid: u64,
    /// The services created (`serviceids`; `productids` before WHMCS 7.8).
    pub service_ids: Vec<u64>,
    /// The service add-ons created.
    pub addon_ids: Vec<u64>,
    /// The invoice, when one was created.
    pub invoiceid: Option<u64>,
}

impl PlacedOrder {
    pub(crate) fn read(o: Obj<'_>) -> Result<Self, Error> {
        let mut service_ids = o.ids("serviceids")?;
        if service_ids.is_empty() {
            service_ids = o.ids("productids")?;
        }
        Ok(PlacedOrder {
            orderid: o.id("orderid")?,
            service_ids,
            addon_ids: o.ids("addonids")?,
            invoiceid: o.opt_id("invoiceid")?,
        })
    }
}

/// When WHMCS invoices a billable item (`invoiceaction`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum InvoiceAction {
    /// `noinvoice`: keep it uninvoiced.
    NoInvoice,
    /// `nextcron`: invoice at the next cron run.
    NextCron,
    /// `nextinvoice`: add it to the client's next invoice.
    NextInvoice,
    /// `duedate`: invoice on the item's due date (set [`NewBillableItem::duedate`]).
    DueDate,
}

impl InvoiceAction {
    fn as_str(self) -> &'static str {
        match self {
            InvoiceAction::NoInvoice => "noinvoice",
            InvoiceAction::NextCron => "nextcron",
            InvoiceAction::NextInvoice => "nextinvoice",
            InvoiceAction::DueDate => "duedate",
        }
    }
}

/// An `AddBillableItem` request: a charge on a **client** (not a service). Not idempotent, and WHMCS cannot list
/// billable items: exactly-once needs the caller's own journal.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct NewBillableItem {
    /// The client charged.
    pub clientid: u64,
    /// The invoice line's text.
    pub description: String,
    /// The total amount (not a unit price), as decimal text.
    pub amount: String,
    /// `hours`: the quantity shown.
    pub quantity: Option<String>,
    /// When to invoice.
    pub invoice_action: InvoiceAction,
    /// `duedate` (`Y-m-d`).
    pub duedate: Option<String>,
}

impl NewBillableItem {
    /// An item invoiced with the client's next invoice.
    pub fn new(clientid: u64, description: impl Into<String>, amount: impl Into<String>) -> Self {
        NewBillableItem {
            clientid,
            description: description.into(),
            amount: amount.into(),
            quantity: None,
            invoice_action: InvoiceAction::NextInvoice,
            duedate: None,
        }
    }

    pub(crate) fn form(&self) -> Vec<(String, String)> {
        let mut f = vec![
            ("clientid".to_owned(), self.clientid.to_string()),
            ("description".to_owned(), self.description.clone()),
            ("amount".to_owned(), self.amount.clone()),
            ("invoiceaction".to_owned(), self.invoice_action.as_str().to_owned()),
        ];
        if let Some(q) = &self.quantity {
            f.push(("hours".into(), q.clone()));
        }
        if let Some(d) = &self.duedate {
            f.push(("duedate".into(), d.clone()));
        }
        f
    }
}

/// An invoice as `GetInvoices` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct InvoiceSummary {
    /// Invoice id.
    pub id: u64,
    /// The client invoiced.
    pub userid: u64,
    /// Invoice date (`Y-m-d`).
    pub date: String,
    /// `Unpaid`, `Paid`, `Cancelled`, …
    pub status: String,
}

impl InvoiceSummary {
    pub(crate) fn read(o: Obj<'_>) -> Result<Self, Error> {
        Ok(InvoiceSummary {
            id: o.id("id")?,
            userid: o.opt_id("userid")?.unwrap_or(0),
            date: o.text("date"),
            status: o.text("status"),
        })
    }
}

/// An invoice with its lines (`GetInvoice`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Invoice {
    /// Invoice id.
    pub id: u64,
    /// The client invoiced.
    pub userid: u64,
    /// Invoice date (`Y-m-d`).
    pub date: String,
    /// Status.
    pub status: String,
    /// The lines.
    pub items: Vec<InvoiceItem>,
}

/// A line of an invoice.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct InvoiceItem {
    /// Invoice item id.
    pub id: u64,
    /// What the line bills: `Item` for a billable item, `Hosting`, `Addon`, … (empty when absent).
    pub item_type: String,
    /// The billed entity's id (the billable item id for `Item`); 0 when absent.
    pub relid: u64,
    /// The line's text.
    pub description: String,
    /// The amount, as WHMCS wrote it.
    pub amount: String,
}

impl InvoiceItem {
    pub(crate) fn read(o: Obj<'_>) -> Result<Self, Error> {
        Ok(InvoiceItem {
            id: o.opt_id("id")?.unwrap_or(0),
            item_type: o.text("type"),
            relid: o.opt_id("relid")?.unwrap_or(0),
            description: o.text("description"),
            amount: o.text("amount"),
        })
    }
}

/// Reads every entry of a nested list with `read`.
pub(crate) fn read_list<T>(
    action: &str,
    answer: &Map<String, Value>,
    outer: &str,
    inner: &str,
    read: fn(Obj<'_>) -> Result<T, Error>,
) -> Result<Vec<T>, Error> {
    let top = Obj::new(action, "$", answer);
    let path = format!("$.{outer}.{inner}[]");
    top.list(outer, inner)?.into_iter().map(|m| read(Obj::new(action, &path, m))).collect()
}
