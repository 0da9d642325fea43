//! [`WhmcsClient`]: `POST /includes/api.php` with a form body, `responsetype=json`, and typed calls.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_TYPE, USER_AGENT};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Map, Value};
use url::Url;
use wap_types::Secret;

use crate::credentials::Credentials;
use crate::error::{classify_message, Error, ErrorKind, TransportFailure};
use crate::types::{
    read_list, Client, Invoice, InvoiceItem, InvoiceSummary, NewBillableItem, NewClient, NewOrder, Order, PlacedOrder,
    Product, Service, ServiceAddon,
};
use crate::wire::Obj;

#[cfg(feature = "rustls")]
type Connector = hyper_rustls::HttpsConnector<HttpConnector>;
#[cfg(not(feature = "rustls"))]
type Connector = HttpConnector;
type HttpClient = hyper_util::client::legacy::Client<Connector, Full<Bytes>>;

/// The most of an answer read (WHMCS answers are small; a larger one is a misconfigured endpoint).
const MAX_BODY: usize = 16 * 1024 * 1024;
/// How much of a non-JSON body an error keeps.
const SNIPPET: usize = 200;
/// Page size of the paginated list actions.
const PAGE: u64 = 250;

/// A client of WHMCS's HTTP API (`includes/api.php`). Cheap to clone; clones share the connection pool.
///
/// Credentials and the access key never appear in `Debug` output, logs or errors. Every call is a single request:
/// this client does not retry (the caller decides, with [`Error::is_retryable`] and, for non-idempotent actions,
/// a lookup first).
#[derive(Clone)]
pub struct WhmcsClient {
    inner: Arc<Inner>,
}

struct Inner {
    http: HttpClient,
    endpoint: Url,
    credentials: Credentials,
    access_key: Option<Secret>,
    timeout: Duration,
    user_agent: HeaderValue,
}

impl fmt::Debug for WhmcsClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WhmcsClient")
            .field("endpoint", &self.inner.endpoint.as_str())
            .field("credentials", &self.inner.credentials)
            .field("access_key", &self.inner.access_key.as_ref().map(|_| "***"))
            .field("timeout", &self.inner.timeout)
            .finish()
    }
}

/// Builds a [`WhmcsClient`]. Start with [`WhmcsClient::builder`].
pub struct WhmcsClientBuilder {
    url: Option<String>,
    credentials: Option<Credentials>,
    access_key: Option<Secret>,
    timeout: Duration,
    user_agent: String,
}

impl fmt::Debug for WhmcsClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WhmcsClientBuilder")
            .field("url", &self.url)
            .field("credentials", &self.credentials)
            .field("access_key", &self.access_key.as_ref().map(|_| "***"))
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl WhmcsClientBuilder {
    /// WHMCS's address: its base URL (`https://billing.example.com/whmcs/`, to which `includes/api.php` is added)
    /// or the full URL of `api.php`. Credentials in the URL are refused.
    pub fn url(mut self, url: impl Into<String>) -> Self {
        self.url = Some(url.into());
        self
    }

    /// The credentials (required).
    pub fn credentials(mut self, credentials: Credentials) -> Self {
        self.credentials = Some(credentials);
        self
    }

    /// The API access key (`$api_access_key` of WHMCS's `configuration.php`), sent as `accesskey` to pass the IP
    /// allow-list.
    pub fn access_key(mut self, key: impl Into<Secret>) -> Self {
        self.access_key = Some(key.into());
        self
    }

    /// The time a whole call may take, answer included (default 30 s). A call that runs out is a
    /// [`TransportFailure::Timeout`]: WHMCS may have applied it.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The `User-Agent` header.
    pub fn user_agent(mut self, ua: impl Into<String>) -> Self {
        self.user_agent = ua.into();
        self
    }

    /// Checks the settings and builds the client.
    pub fn build(self) -> Result<WhmcsClient, Error> {
        let raw = self.url.ok_or_else(|| Error::Config("the WHMCS URL is not set".into()))?;
        let mut endpoint =
            Url::parse(raw.trim()).map_err(|e| Error::Config(format!("the WHMCS URL {raw:?} is not a URL: {e}")))?;
        if !matches!(endpoint.scheme(), "http" | "https") {
            return Err(Error::Config(format!("the WHMCS URL has the unsupported scheme {:?}", endpoint.scheme())));
        }
        if !endpoint.username().is_empty() || endpoint.password().is_some() {
            return Err(Error::Config("the WHMCS URL must not carry credentials; use credentials()".into()));
        }
        if !endpoint.path().ends_with(".php") {
            if !endpoint.path().ends_with('/') {
                let p = format!("{}/", endpoint.path());
                endpoint.set_path(&p);
            }
            endpoint = endpoint.join("includes/api.php").map_err(|e| Error::Config(e.to_string()))?;
        }
        endpoint.set_query(None);
        endpoint.set_fragment(None);
        let credentials = self.credentials.ok_or_else(|| Error::Config("the WHMCS credentials are not set".into()))?;
        if self.timeout.is_zero() {
            return Err(Error::Config("the WHMCS timeout must be > 0".into()));
        }
        let user_agent = HeaderValue::from_str(&self.user_agent)
            .map_err(|_| Error::Config(format!("invalid User-Agent {:?}", self.user_agent)))?;

        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        #[cfg(feature = "rustls")]
        let connector: Connector = {
            let mut roots = rustls::RootCertStore::empty();
            for cert in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(cert);
            }
            let config =
                rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                    .with_safe_default_protocol_versions()
                    .map_err(|e| Error::Config(format!("TLS: {e}")))?
                    .with_root_certificates(roots)
                    .with_no_client_auth();
            hyper_rustls::HttpsConnectorBuilder::new()
                .with_tls_config(config)
                .https_or_http()
                .enable_http1()
                .wrap_connector(http)
        };
        #[cfg(not(feature = "rustls"))]
        let connector: Connector = {
            if endpoint.scheme() == "https" {
                return Err(Error::Config("https needs the `rustls` feature of wap-billing-whmcs".into()));
            }
            http
        };
        let http = hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build(connector);
        Ok(WhmcsClient {
            inner: Arc::new(Inner {
                http,
                endpoint,
                credentials,
                access_key: self.access_key,
                timeout: self.timeout,
                user_agent,
            }),
        })
    }
}

/// Parameters of a paginated or filtered list call.
type Params<'a> = Vec<(&'a str, String)>;

impl WhmcsClient {
    /// A builder with the defaults (30 s timeout).
    pub fn builder() -> WhmcsClientBuilder {
        WhmcsClientBuilder {
            url: None,
            credentials: None,
            access_key: None,
            timeout: Duration::from_secs(30),
            user_agent: concat!("wap-billing-whmcs/", env!("CARGO_PKG_VERSION")).to_owned(),
        }
    }

    /// The URL requests go to (`…/includes/api.php`).
    pub fn endpoint(&self) -> &Url {
        &self.inner.endpoint
    }

    /// Calls `action` with form `params` and returns the success answer's fields. An error envelope
    /// (`result=error`, whatever the HTTP status) is an [`Error::Api`], classified by its message.
    pub async fn call(&self, action: &str, params: &[(&str, &str)]) -> Result<Map<String, Value>, Error> {
        let owned: Vec<(String, String)> = params.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        self.call_form(action, &owned).await
    }

    async fn call_form(&self, action: &str, params: &[(String, String)]) -> Result<Map<String, Value>, Error> {
        let i = &self.inner;
        // The serializer is not `Send`: it must not live across an await.
        let body = {
            let mut form = form_urlencoded::Serializer::new(String::new());
            form.append_pair("action", action).append_pair("responsetype", "json");
            for (k, v) in i.credentials.form_fields() {
                form.append_pair(k, v);
            }
            if let Some(key) = &i.access_key {
                form.append_pair("accesskey", key.expose());
            }
            for (k, v) in params {
                form.append_pair(k, v);
            }
            form.finish()
        };
        let request = http::Request::post(i.endpoint.as_str())
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(USER_AGENT, i.user_agent.clone())
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| Error::Config(format!("cannot build the request: {e}")))?;
        let started = Instant::now();
        let transport = |failure, status: Option<u16>, detail: String| Error::Transport {
            action: action.to_owned(),
            failure,
            status,
            detail,
        };
        let exchange = async {
            let response = i.http.request(request).await.map_err(|e| {
                let failure = if e.is_connect() { TransportFailure::Connect } else { TransportFailure::Interrupted };
                // The error's source chain names the socket error; it never contains the request body.
                transport(failure, None, error_chain(&e))
            })?;
            let status = response.status().as_u16();
            let bytes = Limited::new(response.into_body(), MAX_BODY)
                .collect()
                .await
                .map_err(|e| transport(TransportFailure::Interrupted, Some(status), e.to_string()))?
                .to_bytes();
            Ok::<_, Error>((status, bytes))
        };
        let (status, bytes) = match tokio::time::timeout(i.timeout, exchange).await {
            Ok(r) => r?,
            Err(_) => {
                tracing::warn!(
                    action,
                    timeout_ms = i.timeout.as_millis() as u64,
                    "WHMCS call timed out; it may have been applied"
                );
                return Err(transport(TransportFailure::Timeout(i.timeout), None, "no answer in time".into()));
            }
        };
        tracing::debug!(action, status, elapsed_ms = started.elapsed().as_millis() as u64, "WHMCS call");
        read_answer(action, status, &bytes)
    }

    async fn list_paged<T>(
        &self,
        action: &str,
        mut params: Params<'_>,
        outer: &str,
        inner: &str,
        read: fn(Obj<'_>) -> Result<T, Error>,
    ) -> Result<Vec<T>, Error> {
        let mut out = Vec::new();
        let mut start = 0u64;
        params.push(("limitnum", PAGE.to_string()));
        loop {
            let mut form: Vec<(String, String)> = params.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect();
            form.push(("limitstart".into(), start.to_string()));
            let answer = self.call_form(action, &form).await?;
            let page = read_list(action, &answer, outer, inner, read)?;
            let top = Obj::new(action, "$", &answer);
            let total = top.opt_id("totalresults")?.unwrap_or(0);
            let n = page.len() as u64;
            out.extend(page);
            start += n;
            if n == 0 || start >= total {
                return Ok(out);
            }
        }
    }

    // ---- clients -------------------------------------------------------------------------------------------

    /// The client whose email is `email` (compared ignoring ASCII case), through `GetClients search=` (a prefix
    /// match on several fields, filtered here to the exact email). `None` when there is none.
    pub async fn find_client_by_email(&self, email: &str) -> Result<Option<Client>, Error> {
        let clients = self
            .list_paged("GetClients", vec![("search", email.to_owned())], "clients", "client", Client::read)
            .await?;
        Ok(clients.into_iter().find(|c| c.email.trim().eq_ignore_ascii_case(email.trim())))
    }

    /// `AddClient`: creates a client and returns its id. **Not idempotent**: look the email up first.
    pub async fn add_client(&self, client: &NewClient) -> Result<u64, Error> {
        let a = self.call_form("AddClient", &client.form()).await?;
        Obj::new("AddClient", "$", &a).id("clientid")
    }

    // ---- products ------------------------------------------------------------------------------------------

    /// `GetProducts`, all products or those of group `gid`.
    pub async fn get_products(&self, gid: Option<u64>) -> Result<Vec<Product>, Error> {
        let mut form = Vec::new();
        if let Some(g) = gid {
            form.push(("gid".to_owned(), g.to_string()));
        }
        let a = self.call_form("GetProducts", &form).await?;
        read_list("GetProducts", &a, "products", "product", Product::read)
    }

    // ---- orders --------------------------------------------------------------------------------------------

    /// `AddOrder`: creates a **Pending** order with its services and add-ons. **Not idempotent**: every call makes
    /// new services. Follow with [`WhmcsClient::accept_order`].
    pub async fn add_order(&self, order: &NewOrder) -> Result<PlacedOrder, Error> {
        let a = self.call_form("AddOrder", &order.form()).await?;
        PlacedOrder::read(Obj::new("AddOrder", "$", &a))
    }

    /// `AcceptOrder`: accepts a Pending order (its services and add-ons become Active). `autosetup` runs the
    /// product's provisioning module. A second call fails with `Order ID not found or Status not Pending`
    /// ([`ErrorKind::NotFound`]).
    pub async fn accept_order(&self, order_id: u64, autosetup: bool) -> Result<(), Error> {
        let mut form = vec![("orderid".to_owned(), order_id.to_string()), ("sendemail".into(), "false".into())];
        if autosetup {
            form.push(("autosetup".into(), "true".into()));
        }
        self.call_form("AcceptOrder", &form).await.map(drop)
    }

    /// `GetOrders` for one order id.
    pub async fn get_order(&self, order_id: u64) -> Result<Option<Order>, Error> {
        let a = self.call_form("GetOrders", &[("id".to_owned(), order_id.to_string())]).await?;
        Ok(read_list("GetOrders", &a, "orders", "order", Order::read)?.into_iter().find(|o| o.id == order_id))
    }

    /// `GetOrders` of a client, optionally of one status (`Pending`, `Active`, …), all pages.
    pub async fn get_orders(&self, client_id: u64, status: Option<&str>) -> Result<Vec<Order>, Error> {
        let mut params = vec![("userid", client_id.to_string())];
        if let Some(s) = status {
            params.push(("status", s.to_owned()));
        }
        self.list_paged("GetOrders", params, "orders", "order", Order::read).await
    }

    // ---- services ------------------------------------------------------------------------------------------

    /// `GetClientsProducts` with the given filters (`clientid`, `serviceid`, `pid`, `domain`, `username2`), all
    /// pages.
    pub async fn get_clients_products(&self, filter: &ServiceFilter) -> Result<Vec<Service>, Error> {
        let mut params: Params<'_> = Vec::new();
        let ids = [("clientid", filter.client_id), ("serviceid", filter.service_id), ("pid", filter.product_id)];
        params.extend(ids.into_iter().filter_map(|(k, v)| v.map(|v| (k, v.to_string()))));
        if let Some(d) = &filter.domain {
            params.push(("domain", d.clone()));
        }
        if let Some(u) = &filter.username {
            params.push(("username2", u.clone()));
        }
        self.list_paged("GetClientsProducts", params, "products", "product", Service::read).await
    }

    /// The services carrying WAP subscription `subscription_id` where `key` says it is stored, oldest first (more
    /// than one means an earlier attempt created a duplicate). With `client_id`, only that client's services are
    /// searched; without, every client's (one filtered call for [`SubscriptionKey::Domain`], but **all services**
    /// listed for [`SubscriptionKey::CustomField`]: pass the client where it is known).
    pub async fn find_services_by_wap_subscription(
        &self,
        client_id: Option<u64>,
        key: SubscriptionKey,
        subscription_id: &str,
    ) -> Result<Vec<Service>, Error> {
        let mut filter = ServiceFilter { client_id, ..ServiceFilter::default() };
        if key == SubscriptionKey::Domain {
            filter.domain = Some(subscription_id.to_owned());
        }
        let mut found: Vec<Service> = self
            .get_clients_products(&filter)
            .await?
            .into_iter()
            .filter(|s| match key {
                SubscriptionKey::Domain => s.domain.eq_ignore_ascii_case(subscription_id),
                SubscriptionKey::CustomField(id) => {
                    s.custom_field(id).is_some_and(|v| v.eq_ignore_ascii_case(subscription_id))
                }
            })
            .collect();
        found.sort_by_key(|s| s.id);
        Ok(found)
    }

    /// `ModuleSuspend` (`accountid` = the service id).
    pub async fn module_suspend(&self, service_id: u64, reason: Option<&str>) -> Result<(), Error> {
        let mut form = vec![("accountid".to_owned(), service_id.to_string())];
        if let Some(r) = reason {
            form.push(("suspendreason".into(), r.to_owned()));
        }
        self.call_form("ModuleSuspend", &form).await.map(drop)
    }

    /// `ModuleUnsuspend`.
    pub async fn module_unsuspend(&self, service_id: u64) -> Result<(), Error> {
        self.call_form("ModuleUnsuspend", &[("accountid".to_owned(), service_id.to_string())]).await.map(drop)
    }

    /// `ModuleTerminate`.
    pub async fn module_terminate(&self, service_id: u64) -> Result<(), Error> {
        self.call_form("ModuleTerminate", &[("accountid".to_owned(), service_id.to_string())]).await.map(drop)
    }

    /// `UpdateClientProduct status=…`: sets the service's billing status without calling a provisioning module
    /// (for products without one).
    pub async fn set_service_status(&self, service_id: u64, status: &str) -> Result<(), Error> {
        let form = [("serviceid".to_owned(), service_id.to_string()), ("status".to_owned(), status.to_owned())];
        self.call_form("UpdateClientProduct", &form).await.map(drop)
    }

    // ---- add-ons -------------------------------------------------------------------------------------------

    /// `GetClientsAddons` of one service.
    pub async fn get_service_addons(&self, service_id: u64) -> Result<Vec<ServiceAddon>, Error> {
        let a = self.call_form("GetClientsAddons", &[("serviceid".to_owned(), service_id.to_string())]).await?;
        read_list("GetClientsAddons", &a, "addons", "addon", ServiceAddon::read)
    }

    /// `UpdateClientAddon status=…`. WHMCS answers `Nothing to Update` when nothing changes; that is read as
    /// success here (the add-on has the status asked for).
    pub async fn set_addon_status(&self, addon_id: u64, status: &str) -> Result<(), Error> {
        let form = [("id".to_owned(), addon_id.to_string()), ("status".to_owned(), status.to_owned())];
        match self.call_form("UpdateClientAddon", &form).await {
            Err(e) if e.api_message().is_some_and(|m| m.trim().eq_ignore_ascii_case("Nothing to Update")) => Ok(()),
            other => other.map(drop),
        }
    }

    // ---- billable items ------------------------------------------------------------------------------------

    /// `AddBillableItem`: returns the new item's id. **Not idempotent, and WHMCS has no action to read billable
    /// items back**: only a journal on the caller's side can make this exactly-once.
    pub async fn add_billable_item(&self, item: &NewBillableItem) -> Result<u64, Error> {
        let a = self.call_form("AddBillableItem", &item.form()).await?;
        Obj::new("AddBillableItem", "$", &a).id("billableid")
    }

    // ---- invoices ------------------------------------------------------------------------------------------

    /// `GetInvoices`, optionally of one client and one status, all pages.
    pub async fn get_invoices(
        &self,
        client_id: Option<u64>,
        status: Option<&str>,
    ) -> Result<Vec<InvoiceSummary>, Error> {
        let mut params: Params<'_> = Vec::new();
        if let Some(c) = client_id {
            params.push(("userid", c.to_string()));
        }
        if let Some(s) = status {
            params.push(("status", s.to_owned()));
        }
        self.list_paged("GetInvoices", params, "invoices", "invoice", InvoiceSummary::read).await
    }

    /// `GetInvoice`: one invoice with its lines (billable items appear as lines of `type` `Item` whose `relid` is
    /// the billable item's id and whose text is its description).
    pub async fn get_invoice(&self, invoice_id: u64) -> Result<Invoice, Error> {
        let action = "GetInvoice";
        let a = self.call_form(action, &[("invoiceid".to_owned(), invoice_id.to_string())]).await?;
        let top = Obj::new(action, "$", &a);
        Ok(Invoice {
            id: top.opt_id("invoiceid")?.unwrap_or(invoice_id),
            userid: top.opt_id("userid")?.unwrap_or(0),
            date: top.text("date"),
            status: top.text("status"),
            items: read_list(action, &a, "items", "item", InvoiceItem::read)?,
        })
    }

    // ---- system --------------------------------------------------------------------------------------------

    /// `WhmcsDetails` (WHMCS 8.0+): `(version, canonicalversion)`.
    pub async fn whmcs_details(&self) -> Result<(String, String), Error> {
        let a = self.call_form("WhmcsDetails", &[]).await?;
        let details = a.get("whmcs").and_then(Value::as_object).ok_or_else(|| Error::Decode {
            action: "WhmcsDetails".into(),
            path: "$.whmcs".into(),
            detail: "missing".into(),
        })?;
        let o = Obj::new("WhmcsDetails", "$.whmcs", details);
        Ok((o.text("version"), o.text("canonicalversion")))
    }

    /// `GetConfigurationValue setting=…` (WHMCS 7.0+).
    pub async fn get_configuration_value(&self, setting: &str) -> Result<String, Error> {
        let a = self.call_form("GetConfigurationValue", &[("setting".to_owned(), setting.to_owned())]).await?;
        Ok(Obj::new("GetConfigurationValue", "$", &a).text("value"))
    }
}

/// Filters of `GetClientsProducts`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServiceFilter {
    /// `clientid`.
    pub client_id: Option<u64>,
    /// `serviceid`.
    pub service_id: Option<u64>,
    /// `pid`.
    pub product_id: Option<u64>,
    /// `domain`.
    pub domain: Option<String>,
    /// `username2`.
    pub username: Option<String>,
}

impl ServiceFilter {
    /// The services of one client.
    pub fn client(client_id: u64) -> Self {
        ServiceFilter { client_id: Some(client_id), ..ServiceFilter::default() }
    }

    /// One service.
    pub fn service(service_id: u64) -> Self {
        ServiceFilter { service_id: Some(service_id), ..ServiceFilter::default() }
    }
}

/// Where the WAP subscription id is kept on a WHMCS service, so that a lookup finds it again without a database
/// of the adapter's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SubscriptionKey {
    /// The service's `domain` field: set by `AddOrder domain[]`, found by `GetClientsProducts domain=` (a
    /// documented filter). Needs no set-up in WHMCS.
    Domain,
    /// A product custom field the administrator created (its id): set by `AddOrder customfields[]`, found by
    /// listing the client's services.
    CustomField(u64),
}

/// Reads one answer: the envelope decides, whatever the HTTP status.
pub(crate) fn read_answer(action: &str, status: u16, bytes: &[u8]) -> Result<Map<String, Value>, Error> {
    let transport =
        |failure, detail: String| Error::Transport { action: action.to_owned(), failure, status: Some(status), detail };
    let value: Value = match serde_json::from_slice(bytes) {
        Ok(v) => v,
        Err(_) => {
            let failure = if status >= 500 { TransportFailure::ServerError } else { TransportFailure::NotJson };
            return Err(transport(failure, snippet(bytes)));
        }
    };
    let Value::Object(map) = value else {
        if status >= 500 {
            return Err(transport(TransportFailure::ServerError, snippet(bytes)));
        }
        return Err(Error::Decode { action: action.to_owned(), path: "$".into(), detail: "not a JSON object".into() });
    };
    // `result` is the documented field; one action (GetEmails) was reported to use `status` instead.
    let result = map.get("result").or_else(|| map.get("status")).and_then(Value::as_str).map(str::to_ascii_lowercase);
    match result.as_deref() {
        Some("success") if status < 400 => Ok(map),
        Some("error") | Some("success") => {
            let message = map.get("message").and_then(Value::as_str).unwrap_or_default().to_owned();
            let mut kind = classify_message(&message);
            if status >= 500 && kind == ErrorKind::Validation {
                kind = ErrorKind::Transient;
            }
            Err(Error::Api { action: action.to_owned(), kind, message, status })
        }
        _ if status >= 500 => Err(transport(TransportFailure::ServerError, snippet(bytes))),
        _ => Err(Error::Decode {
            action: action.to_owned(),
            path: "$.result".into(),
            detail: "missing or not success/error".into(),
        }),
    }
}

/// The first bytes of a body, control characters escaped.
fn snippet(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(SNIPPET)]);
    text.chars().flat_map(char::escape_default).collect()
}

fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}
