//! A WHMCS double: a loopback HTTP server that answers `POST /includes/api.php` as WHMCS's documentation says,
//! for this crate's tests and for its users' tests (feature `double`, on by default).
//!
//! What it acts out:
//!
//! - dispatch on `action` in any case; `Command Not Found` for an action it (or the profile's version) lacks;
//! - authentication by API credential (`identifier` + `secret`, or the same in `username` + `password`; 7.2+) or
//!   by admin login (`username` + MD5 of the password); `Authentication Failed` otherwise;
//! - the IP allow-list (`Invalid IP <address>`), passed by a valid `accesskey`;
//! - API roles: an API credential limited to some actions gets
//!   `Invalid Permissions: API action "<action>" is not allowed` for others;
//! - version [profiles](Profile) (5.2, 7.x, 8.x);
//! - `AddOrder` → `Pending` → `AcceptOrder` → `Active` (a second accept fails);
//! - creates that are **not idempotent**: a repeated `AddOrder` makes new services, a repeated
//!   `AddBillableItem` appends; a repeated `AddClient` with the same email is refused (`Duplicate Email
//!   Address`) unless [`DuplicateEmail::Allow`];
//! - ids and counts as strings or numbers, empty lists in PHP's shapes, `responsetype=xml`;
//! - injectable [faults](FaultKind): an HTTP status, an HTML error page, and — after the change is committed —
//!   an error page, a dropped connection or no answer at all.
//!
//! - billable items that cannot be read back (there is no action for it), invoiced by the daily cron
//!   ([`WhmcsDouble::run_cron`]) or `GenInvoices`, after which `GetInvoices` / `GetInvoice` show them as invoice
//!   lines (`type` `Item`, `relid` the billable item id, the item's description).
//!
//! Its state (clients, orders, services, service add-ons, billable items, invoices) can be read and changed
//! directly.

mod config;
mod form;
mod render;
mod state;

use std::collections::HashSet;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{Map, Value};
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;
use tokio::sync::watch;
use wap_types::Secret;

pub use config::{DuplicateEmail, EmptyList, Fault, FaultKind, Numbers, Profile};
use form::Form;
use render::{to_xml, Render};
pub use state::{
    DoubleAddonDefinition, DoubleBillableItem, DoubleClient, DoubleCustomField, DoubleInvoice, DoubleInvoiceItem,
    DoubleOrder, DoubleProduct, DoubleService, DoubleServiceAddon, DoubleState,
};

/// The largest request body accepted.
const MAX_REQUEST: usize = 4 * 1024 * 1024;

struct ApiCredential {
    identifier: String,
    secret: Secret,
    /// Allowed actions (lowercase); `None` = every action.
    role: Option<HashSet<String>>,
}

struct AdminLogin {
    username: String,
    password_md5: Secret,
}

struct Settings {
    profile: Profile,
    numbers: Numbers,
    empty_list: EmptyList,
    duplicate_email: DuplicateEmail,
    auth_error_status: u16,
    allowed_ips: Vec<IpAddr>,
    access_key: Option<Secret>,
    api_credentials: Vec<ApiCredential>,
    admins: Vec<AdminLogin>,
}

struct Shared {
    settings: Settings,
    state: DoubleState,
    faults: Vec<Fault>,
    calls: Vec<String>,
}

/// Builds a [`WhmcsDouble`]. Start with [`WhmcsDouble::builder`].
pub struct WhmcsDoubleBuilder {
    settings: Settings,
    state: DoubleState,
}

impl std::fmt::Debug for WhmcsDoubleBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WhmcsDoubleBuilder").field("profile", &self.settings.profile).finish_non_exhaustive()
    }
}

impl WhmcsDoubleBuilder {
    /// The WHMCS version acted out (default [`Profile::v8`]).
    pub fn profile(mut self, profile: Profile) -> Self {
        self.settings.profile = profile;
        self
    }

    /// Accepts an API credential allowed every action (WHMCS 7.2+ profiles).
    pub fn api_credential(mut self, identifier: &str, secret: &str) -> Self {
        self.settings.api_credentials.push(ApiCredential {
            identifier: identifier.into(),
            secret: secret.into(),
            role: None,
        });
        self
    }

    /// Accepts an API credential whose API role allows only `actions` (any case).
    pub fn api_credential_with_role<'a>(
        mut self,
        identifier: &str,
        secret: &str,
        actions: impl IntoIterator<Item = &'a str>,
    ) -> Self {
        let role = actions.into_iter().map(str::to_ascii_lowercase).collect();
        self.settings.api_credentials.push(ApiCredential {
            identifier: identifier.into(),
            secret: secret.into(),
            role: Some(role),
        });
        self
    }

    /// Accepts an administrator's login (the request sends the MD5 of `password`).
    pub fn admin_login(mut self, username: &str, password: &str) -> Self {
        let password_md5 = Secret::new(crate::md5::hex(password.as_bytes()));
        self.settings.admins.push(AdminLogin { username: username.into(), password_md5 });
        self
    }

    /// The API access key (`$api_access_key`): a request carrying it passes the IP allow-list.
    pub fn access_key(mut self, key: &str) -> Self {
        self.settings.access_key = Some(key.into());
        self
    }

    /// The API IP allow-list (default: `127.0.0.1` and `::1`).
    pub fn allowed_ips(mut self, ips: impl IntoIterator<Item = IpAddr>) -> Self {
        self.settings.allowed_ips = ips.into_iter().collect();
        self
    }

    /// The HTTP status of authentication, IP and permission errors (default 200; some installations send 403).
    pub fn auth_error_status(mut self, status: u16) -> Self {
        self.settings.auth_error_status = status;
        self
    }

    /// How ids and counts are written (default strings).
    pub fn numbers(mut self, numbers: Numbers) -> Self {
        self.settings.numbers = numbers;
        self
    }

    /// How empty lists are written.
    pub fn empty_list(mut self, empty: EmptyList) -> Self {
        self.settings.empty_list = empty;
        self
    }

    /// What `AddClient` does with a known email (default: refuse).
    pub fn duplicate_email(mut self, policy: DuplicateEmail) -> Self {
        self.settings.duplicate_email = policy;
        self
    }

    /// A product the administrator created (type `other`, no module).
    pub fn product(mut self, pid: u64, gid: u64, name: &str) -> Self {
        self.state.products.insert(pid, DoubleProduct { pid, gid, name: name.into(), product_type: "other".into() });
        self
    }

    /// A product add-on definition the administrator created.
    pub fn addon_definition(mut self, id: u64, name: &str) -> Self {
        self.state.addon_definitions.insert(id, DoubleAddonDefinition { id, name: name.into() });
        self
    }

    /// A product custom field the administrator created.
    pub fn custom_field(mut self, id: u64, pid: u64, name: &str) -> Self {
        self.state.custom_fields.insert(id, DoubleCustomField { id, pid, name: name.into() });
        self
    }

    /// A payment gateway (default: `mailin` only).
    pub fn payment_method(mut self, name: &str) -> Self {
        if !self.state.payment_methods.iter().any(|m| m == name) {
            self.state.payment_methods.push(name.into());
        }
        self
    }

    /// Binds `127.0.0.1` on a free port and starts serving.
    pub async fn start(self) -> std::io::Result<WhmcsDouble> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Mutex::new(Shared {
            settings: self.settings,
            state: self.state,
            faults: Vec::new(),
            calls: Vec::new(),
        }));
        let (shutdown, watcher) = watch::channel(false);
        tokio::spawn(accept_loop(listener, shared.clone(), watcher));
        Ok(WhmcsDouble { addr, shared, shutdown })
    }
}

/// A running WHMCS double. Stops when dropped.
pub struct WhmcsDouble {
    addr: SocketAddr,
    shared: Arc<Mutex<Shared>>,
    shutdown: watch::Sender<bool>,
}

impl std::fmt::Debug for WhmcsDouble {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WhmcsDouble").field("addr", &self.addr).finish_non_exhaustive()
    }
}

impl Drop for WhmcsDouble {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}

impl WhmcsDouble {
    /// A builder: WHMCS 8 profile, no credentials yet, allow-list `127.0.0.1` and `::1`, payment method `mailin`.
    pub fn builder() -> WhmcsDoubleBuilder {
        let mut state = DoubleState::default();
        state.payment_methods.push("mailin".into());
        WhmcsDoubleBuilder {
            settings: Settings {
                profile: Profile::v8(),
                numbers: Numbers::default(),
                empty_list: EmptyList::default(),
                duplicate_email: DuplicateEmail::default(),
                auth_error_status: 200,
                allowed_ips: vec![IpAddr::V4(Ipv4Addr::LOCALHOST), IpAddr::V6(Ipv6Addr::LOCALHOST)],
                access_key: None,
                api_credentials: Vec::new(),
                admins: Vec::new(),
            },
            state,
        }
    }

    /// The base URL (`http://127.0.0.1:<port>/`), what a WHMCS client is configured with.
    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// The API's URL (`…/includes/api.php`).
    pub fn api_url(&self) -> String {
        format!("http://{}/includes/api.php", self.addr)
    }

    fn lock(&self) -> MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A copy of the whole state.
    pub fn state(&self) -> DoubleState {
        self.lock().state.clone()
    }

    /// Reads or changes the state directly (as an administrator would in WHMCS's admin area).
    pub fn with_state<R>(&self, f: impl FnOnce(&mut DoubleState) -> R) -> R {
        f(&mut self.lock().state)
    }

    /// The clients, by id.
    pub fn clients(&self) -> Vec<DoubleClient> {
        self.lock().state.clients.values().cloned().collect()
    }

    /// The services, by id.
    pub fn services(&self) -> Vec<DoubleService> {
        self.lock().state.services.values().cloned().collect()
    }

    /// The service add-ons, by id.
    pub fn service_addons(&self) -> Vec<DoubleServiceAddon> {
        self.lock().state.service_addons.values().cloned().collect()
    }

    /// The orders, by id.
    pub fn orders(&self) -> Vec<DoubleOrder> {
        self.lock().state.orders.values().cloned().collect()
    }

    /// The billable items, in creation order.
    pub fn billable_items(&self) -> Vec<DoubleBillableItem> {
        self.lock().state.billable_items.values().cloned().collect()
    }

    /// The invoices, by id.
    pub fn invoices(&self) -> Vec<DoubleInvoice> {
        self.lock().state.invoices.values().cloned().collect()
    }

    /// Runs WHMCS's daily cron job's invoicing: every client's due billable items go onto a new invoice (see
    /// [`DoubleState::invoice_due_items`]). Returns how many invoices it created.
    pub fn run_cron(&self) -> usize {
        self.lock().state.invoice_due_items(None).len()
    }

    /// Deletes an uninvoiced billable item, as an administrator can in WHMCS's admin area (Billing → Billable
    /// Items); `false` when there is none with `id` or it is invoiced already.
    pub fn delete_billable_item(&self, id: u64) -> bool {
        let mut shared = self.lock();
        match shared.state.billable_items.get(&id) {
            Some(b) if b.invoiceid.is_none() => shared.state.billable_items.remove(&id).is_some(),
            _ => false,
        }
    }

    /// The actions requested so far (lowercase), in order, whatever their outcome.
    pub fn calls(&self) -> Vec<String> {
        self.lock().calls.clone()
    }

    /// How many requests named `action` (any case) arrived.
    pub fn call_count(&self, action: &str) -> usize {
        let action = action.to_ascii_lowercase();
        self.lock().calls.iter().filter(|c| **c == action).count()
    }

    /// Queues a fault; faults apply in the order injected.
    pub fn inject(&self, fault: Fault) {
        self.lock().faults.push(fault);
    }

    /// Removes every queued fault.
    pub fn clear_faults(&self) {
        self.lock().faults.clear();
    }

    /// Changes how ids and counts are written.
    pub fn set_numbers(&self, numbers: Numbers) {
        self.lock().settings.numbers = numbers;
    }

    /// Changes how empty lists are written.
    pub fn set_empty_list(&self, empty: EmptyList) {
        self.lock().settings.empty_list = empty;
    }

    /// Replaces the IP allow-list.
    pub fn set_allowed_ips(&self, ips: impl IntoIterator<Item = IpAddr>) {
        self.lock().settings.allowed_ips = ips.into_iter().collect();
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Mutex<Shared>>, mut shutdown: watch::Receiver<bool>) {
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(_) => continue,
            },
            _ = shutdown.changed() => return,
        };
        let shared = shared.clone();
        let conn_shutdown = shutdown.clone();
        tokio::spawn(async move {
            let service_shutdown = conn_shutdown.clone();
            let service = service_fn(move |req| handle(shared.clone(), peer.ip(), req, service_shutdown.clone()));
            let conn = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service);
            let mut stop = conn_shutdown;
            tokio::select! {
                _ = conn => {}
                _ = stop.changed() => {}
            }
        });
    }
}

/// What to send after the state work is done.
enum Outcome {
    Answer(Response<Full<Bytes>>),
    Hang,
    Drop,
}

/// The error a dropped connection is made of.
#[derive(Debug)]
struct Dropped;

impl std::fmt::Display for Dropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped by an injected fault")
    }
}

impl std::error::Error for Dropped {}

async fn handle(
    shared: Arc<Mutex<Shared>>,
    peer: IpAddr,
    req: Request<Incoming>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<Response<Full<Bytes>>, Dropped> {
    let path_ok = req.uri().path().ends_with("/includes/api.php");
    let method = req.method().clone();
    let query = req.uri().query().unwrap_or_default().to_owned();
    let body = match Limited::new(req.into_body(), MAX_REQUEST).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return Ok(plain(StatusCode::PAYLOAD_TOO_LARGE, "request body too large")),
    };
    if !path_ok {
        return Ok(html(StatusCode::NOT_FOUND, "404 Not Found"));
    }
    if method != Method::POST && method != Method::GET {
        return Ok(plain(StatusCode::METHOD_NOT_ALLOWED, "POST only"));
    }
    let mut raw = body.to_vec();
    if !query.is_empty() {
        if !raw.is_empty() {
            raw.push(b'&');
        }
        raw.extend_from_slice(query.as_bytes());
    }
    let form = Form::parse(&raw);
    let outcome = {
        let mut guard = shared.lock().unwrap_or_else(|p| p.into_inner());
        respond(&mut guard, peer, &form)
    };
    match outcome {
        Outcome::Answer(r) => Ok(r),
        Outcome::Drop => Err(Dropped),
        Outcome::Hang => {
            // The change is committed; the answer never comes (until the double stops).
            let _ = shutdown.changed().await;
            Err(Dropped)
        }
    }
}

fn take_fault(shared: &mut Shared, action: &str) -> Option<FaultKind> {
    let index = shared.faults.iter().position(|f| f.matches(action))?;
    let fault = &mut shared.faults[index];
    if fault.skip > 0 {
        fault.skip -= 1;
        return None;
    }
    let kind = fault.kind;
    fault.times = fault.times.saturating_sub(1);
    if fault.times == 0 {
        shared.faults.remove(index);
    }
    Some(kind)
}

fn respond(shared: &mut Shared, peer: IpAddr, form: &Form) -> Outcome {
    let action = form.get("action").unwrap_or_default().trim().to_ascii_lowercase();
    shared.calls.push(action.clone());
    let fault = take_fault(shared, &action);
    match fault {
        Some(FaultKind::Status(s)) => {
            let status = StatusCode::from_u16(s).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            return Outcome::Answer(plain(status, "Internal Server Error"));
        }
        Some(FaultKind::HtmlErrorPage) => {
            return Outcome::Answer(html(StatusCode::INTERNAL_SERVER_ERROR, "Oops! Something went wrong."))
        }
        Some(FaultKind::HtmlOkPage) => return Outcome::Answer(html(StatusCode::OK, "Down for maintenance")),
        _ => {}
    }
    let s = &shared.settings;
    let render = Render { numbers: s.numbers, empty_list: s.empty_list };
    let xml = form.get("responsetype").is_some_and(|t| t.eq_ignore_ascii_case("xml"));
    let auth_status = StatusCode::from_u16(s.auth_error_status).unwrap_or(StatusCode::OK);
    let answer = |status: StatusCode, m: Map<String, Value>| Outcome::Answer(envelope(status, &m, xml));
    let error = |status: StatusCode, message: String| {
        let mut m = Map::new();
        m.insert("result".into(), "error".into());
        m.insert("message".into(), message.into());
        answer(status, m)
    };

    // IP allow-list, unless a valid access key is sent.
    let key_ok = match (&s.access_key, form.get("accesskey")) {
        (Some(key), Some(sent)) => bool::from(key.expose().as_bytes().ct_eq(sent.as_bytes())),
        _ => false,
    };
    let peer = match peer {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    };
    if !key_ok && !s.allowed_ips.contains(&peer) {
        return error(auth_status, format!("Invalid IP {peer}"));
    }

    // Authentication: API credential (7.2+; also in username/password), then admin login.
    let (user, pass) = (form.get("username").unwrap_or_default(), form.get("password").unwrap_or_default());
    let (ident, secret) = match (form.get("identifier"), form.get("secret")) {
        (Some(i), Some(sec)) => (i, sec),
        _ => (user, pass),
    };
    let eq = |a: &str, b: &str| bool::from(a.as_bytes().ct_eq(b.as_bytes()));
    let credential = s
        .profile
        .has_api_credentials()
        .then(|| s.api_credentials.iter().find(|c| eq(&c.identifier, ident) & eq(c.secret.expose(), secret)))
        .flatten();
    let admin =
        s.admins.iter().any(|a| eq(&a.username, user) & eq(a.password_md5.expose(), &pass.to_ascii_lowercase()));
    if credential.is_none() && !admin {
        return error(auth_status, "Authentication Failed".into());
    }
    if let Some(role) = credential.and_then(|c| c.role.as_ref()) {
        if !role.contains(&action) {
            return error(auth_status, format!("Invalid Permissions: API action \"{action}\" is not allowed"));
        }
    }

    let (profile, dup) = (s.profile.clone(), s.duplicate_email);
    let result = shared.state.dispatch(&action, form, &profile, dup, &render);
    let outcome = match result {
        None => error(StatusCode::OK, "Command Not Found".into()),
        Some(Ok(m)) => answer(StatusCode::OK, m),
        Some(Err(message)) => error(StatusCode::OK, message),
    };
    match fault {
        Some(FaultKind::ErrorPageAfterCommit) => {
            Outcome::Answer(html(StatusCode::INTERNAL_SERVER_ERROR, "Oops! Something went wrong."))
        }
        Some(FaultKind::TimeoutAfterCommit) => Outcome::Hang,
        Some(FaultKind::DropAfterCommit) => Outcome::Drop,
        _ => outcome,
    }
}

fn envelope(status: StatusCode, m: &Map<String, Value>, xml: bool) -> Response<Full<Bytes>> {
    let (body, content_type) = if xml {
        (to_xml(m), "text/xml; charset=utf-8")
    } else {
        (Value::Object(m.clone()).to_string(), "application/json; charset=utf-8")
    };
    response(status, content_type, body)
}

fn plain(status: StatusCode, text: &str) -> Response<Full<Bytes>> {
    response(status, "text/plain; charset=utf-8", text.to_owned())
}

fn html(status: StatusCode, title: &str) -> Response<Full<Bytes>> {
    let body =
        format!("<!DOCTYPE html>\n<html><head><title>{title}</title></head><body><h1>{title}</h1></body></html>\n");
    response(status, "text/html; charset=utf-8", body)
}

fn response(status: StatusCode, content_type: &str, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    if let Ok(v) = http::HeaderValue::from_str(content_type) {
        r.headers_mut().insert(http::header::CONTENT_TYPE, v);
    }
    r
}
