//! A HostBill double: a loopback HTTP server that answers `POST` (and `GET`) `/admin/api.php` as HostBill's
//! documentation describes it, for this crate's tests and for its users' tests (feature `double`, on by default).
//!
//! What it acts out:
//!
//! - dispatch on `call`; an unknown call (or one the [profile](Profile) lacks, such as `meteredAddUsageBulk` on
//!   an old version) is refused;
//! - `api_id` + `api_key` (compared in constant time), each key with its own **function allow-list** and **IP
//!   allow-list**;
//! - the envelope: `success`, `call`, `server_time`, `info` on success, an `error` list on failure, whatever the
//!   HTTP status ([`ErrorTexts`] holds the texts HostBill does not document, switchable);
//! - string scalars (`"id": "8"`), collections keyed by id (`getProducts`), empty ones as `[]`;
//! - paged lists with `sorter` ([`PageBase`]: HostBill does not document whether `page` starts at 0 or 1);
//! - `filter[…]` on `getClients` / `getAccounts`, or ignored (as on older versions, [`Profile::filters`]);
//! - `addOrder` returning only `order_id` (the account it makes is `Pending`, its `domain` empty),
//!   `addAddonToAccount` returning only `newaddon: true`, `meteredAddUsage` returning `usage_id`;
//! - creates that are **not idempotent**: each `addClient` (the same email too), `addOrder`,
//!   `addAddonToAccount` and `meteredAddUsage*` makes a new object;
//! - metered usage readable through `meteredGetUsage` only for the **current billing period**
//!   ([`HostBillDouble::close_period`] starts a new one);
//! - injectable [faults](Fault): an HTTP status, an HTML error page, and — after the change is committed — an
//!   error page, a dropped connection or no answer at all.
//!
//! Its state can be read and changed directly ([`HostBillDouble::with_state`]).

mod state;

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
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
use wap_billing_engine::billing_http::fault::FaultQueue;
use wap_types::Secret;

pub use state::{
    DoubleAccount, DoubleAccountAddon, DoubleAddon, DoubleClient, DoubleOrder, DoubleProduct, DoubleState, DoubleUsage,
};
pub use wap_billing_engine::billing_http::fault::{Fault, FaultKind};

/// The largest request body accepted.
const MAX_REQUEST: usize = 4 * 1024 * 1024;

/// Which HostBill the double behaves as.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Profile {
    /// What `getHostBillversion` reports.
    pub version: String,
    /// Whether `meteredAddUsageBulk` exists.
    pub metered_bulk: bool,
    /// Whether `getClients` / `getAccounts` apply `filter[…]` (older versions ignore it and list everything).
    pub filters: bool,
}

impl Profile {
    /// A current HostBill (`2025.1.3`): bulk metered usage, filters.
    pub fn current() -> Self {
        Profile { version: "2025.1.3".into(), metered_bulk: true, filters: true }
    }

    /// HostBill 4.9.8 as far as known: no bulk metered usage, filters ignored.
    pub fn v4_9_8() -> Self {
        Profile { version: "4.9.8".into(), metered_bulk: false, filters: false }
    }

    /// Any version string with the current features.
    pub fn version(version: &str) -> Self {
        Profile { version: version.into(), ..Profile::current() }
    }
}

/// Whether `page` counts from 0 or from 1 (undocumented; both are acted out, `page=0` reads the first page either
/// way).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum PageBase {
    /// `page=0` is the first page (the default).
    #[default]
    Zero,
    /// `page=1` is the first page.
    One,
}

/// The error texts HostBill does not document ([I] facts: switchable). `{call}` and `{ip}` are replaced.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ErrorTexts {
    /// A wrong `api_id` / `api_key`.
    pub auth: String,
    /// The caller's address is not allowed for the key.
    pub ip: String,
    /// The call is not in the key's function allow-list.
    pub permission: String,
    /// The call does not exist.
    pub unknown_call: String,
    /// The HTTP status of these four refusals (HostBill documents none; default 200).
    pub status: u16,
}

impl Default for ErrorTexts {
    fn default() -> Self {
        ErrorTexts {
            auth: "Invalid API ID or API Key".into(),
            ip: "IP address {ip} is not allowed to use the API".into(),
            permission: "API function {call} is not allowed for this API ID".into(),
            unknown_call: "Unknown call: {call}".into(),
            status: 200,
        }
    }
}

struct ApiKey {
    id: String,
    key: Secret,
    /// Allowed calls (lower case); `None` = all.
    calls: Option<HashSet<String>>,
    /// Allowed addresses; `None` = all.
    ips: Option<Vec<IpAddr>>,
}

struct Settings {
    profile: Profile,
    page_base: PageBase,
    per_page: usize,
    texts: ErrorTexts,
    keys: Vec<ApiKey>,
}

struct Shared {
    settings: Settings,
    state: DoubleState,
    faults: FaultQueue,
    calls: Vec<String>,
}

/// Builds a [`HostBillDouble`]. Start with [`HostBillDouble::builder`].
pub struct HostBillDoubleBuilder {
    settings: Settings,
    state: DoubleState,
}

impl std::fmt::Debug for HostBillDoubleBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostBillDoubleBuilder").field("profile", &self.settings.profile).finish_non_exhaustive()
    }
}

impl HostBillDoubleBuilder {
    /// The HostBill acted out (default [`Profile::current`]).
    pub fn profile(mut self, profile: Profile) -> Self {
        self.settings.profile = profile;
        self
    }

    /// Accepts an API ID and key allowed every function from every address.
    pub fn api_key(mut self, api_id: &str, api_key: &str) -> Self {
        self.settings.keys.push(ApiKey { id: api_id.into(), key: api_key.into(), calls: None, ips: None });
        self
    }

    /// Accepts an API ID and key allowed only `calls` (any case), from `ips` when given.
    pub fn api_key_limited<'a>(
        mut self,
        api_id: &str,
        api_key: &str,
        calls: Option<impl IntoIterator<Item = &'a str>>,
        ips: Option<Vec<IpAddr>>,
    ) -> Self {
        let calls = calls.map(|c| c.into_iter().map(str::to_ascii_lowercase).collect());
        self.settings.keys.push(ApiKey { id: api_id.into(), key: api_key.into(), calls, ips });
        self
    }

    /// Whether `page` counts from 0 or 1.
    pub fn page_base(mut self, base: PageBase) -> Self {
        self.settings.page_base = base;
        self
    }

    /// Entries per page of paged lists (default 25, HostBill's default admin setting).
    pub fn per_page(mut self, n: usize) -> Self {
        self.settings.per_page = n.max(1);
        self
    }

    /// The undocumented error texts.
    pub fn error_texts(mut self, texts: ErrorTexts) -> Self {
        self.settings.texts = texts;
        self
    }

    /// An order page (category).
    pub fn order_page(mut self, id: u64, name: &str) -> Self {
        self.state.order_pages.insert(id, name.into());
        self
    }

    /// A product on order page `order_page` with a monthly price (add others with [`Self::product_price`]).
    pub fn product(mut self, id: u64, order_page: u64, name: &str, monthly: &str) -> Self {
        self.state.order_pages.entry(order_page).or_insert_with(|| format!("Order page {order_page}"));
        let mut p = DoubleProduct { id, order_page, name: name.into(), ..DoubleProduct::default() };
        p.prices.insert("m".into(), monthly.into());
        self.state.products.insert(id, p);
        self
    }

    /// A product's price (and setup fee) in `cycle`.
    pub fn product_price(mut self, id: u64, cycle: &str, price: &str, setup: &str) -> Self {
        if let Some(p) = self.state.products.get_mut(&id) {
            p.prices.insert(cycle.into(), price.into());
            p.setup.insert(cycle.into(), setup.into());
        }
        self
    }

    /// The metered variables a product accepts (default: any variable).
    pub fn metered_variables<'a>(mut self, id: u64, variables: impl IntoIterator<Item = &'a str>) -> Self {
        if let Some(p) = self.state.products.get_mut(&id) {
            p.variables = variables.into_iter().map(str::to_owned).collect();
        }
        self
    }

    /// An add-on definition with a monthly price.
    pub fn addon(mut self, id: u64, name: &str, monthly: &str) -> Self {
        let mut a = DoubleAddon { id, name: name.into(), ..DoubleAddon::default() };
        a.prices.insert("m".into(), monthly.into());
        self.state.addons.insert(id, a);
        self
    }

    /// Binds `127.0.0.1` on a free port and starts serving.
    pub async fn start(self) -> std::io::Result<HostBillDouble> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Mutex::new(Shared {
            settings: self.settings,
            state: self.state,
            faults: FaultQueue::default(),
            calls: Vec::new(),
        }));
        let (shutdown, watcher) = watch::channel(false);
        tokio::spawn(accept_loop(listener, shared.clone(), watcher));
        Ok(HostBillDouble { addr, shared, shutdown })
    }
}

/// A running HostBill double. Stops when dropped.
pub struct HostBillDouble {
    addr: SocketAddr,
    shared: Arc<Mutex<Shared>>,
    shutdown: watch::Sender<bool>,
}

impl std::fmt::Debug for HostBillDouble {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostBillDouble").field("addr", &self.addr).finish_non_exhaustive()
    }
}

impl Drop for HostBillDouble {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}

impl HostBillDouble {
    /// A builder: the current profile, no keys yet, no catalogue.
    pub fn builder() -> HostBillDoubleBuilder {
        HostBillDoubleBuilder {
            settings: Settings {
                profile: Profile::current(),
                page_base: PageBase::default(),
                per_page: 25,
                texts: ErrorTexts::default(),
                keys: Vec::new(),
            },
            state: DoubleState::default(),
        }
    }

    /// The base URL (`http://127.0.0.1:<port>/`), what a HostBill client is configured with.
    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// The API's URL (`…/admin/api.php`).
    pub fn api_url(&self) -> String {
        format!("http://{}/admin/api.php", self.addr)
    }

    fn lock(&self) -> MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A copy of the whole state.
    pub fn state(&self) -> DoubleState {
        self.lock().state.clone()
    }

    /// Reads or changes the state directly (as an administrator would in HostBill's admin area).
    pub fn with_state<R>(&self, f: impl FnOnce(&mut DoubleState) -> R) -> R {
        f(&mut self.lock().state)
    }

    /// The clients.
    pub fn clients(&self) -> Vec<DoubleClient> {
        self.lock().state.clients.values().cloned().collect()
    }

    /// The accounts.
    pub fn accounts(&self) -> Vec<DoubleAccount> {
        self.lock().state.accounts.values().cloned().collect()
    }

    /// The accounts' add-ons.
    pub fn account_addons(&self) -> Vec<DoubleAccountAddon> {
        self.lock().state.account_addons.values().cloned().collect()
    }

    /// The orders.
    pub fn orders(&self) -> Vec<DoubleOrder> {
        self.lock().state.orders.values().cloned().collect()
    }

    /// Every metered usage entry, of every period, in creation order.
    pub fn usage(&self) -> Vec<DoubleUsage> {
        self.lock().state.usage.values().cloned().collect()
    }

    /// Ends the current billing period of every account: its usage stays (see [`HostBillDouble::usage`]) but
    /// `meteredGetUsage` no longer shows it.
    pub fn close_period(&self) {
        let mut s = self.lock();
        s.state.period += 1;
    }

    /// The calls requested so far (lower case), in order, whatever their outcome.
    pub fn calls(&self) -> Vec<String> {
        self.lock().calls.clone()
    }

    /// How many requests named `call` (any case) arrived.
    pub fn call_count(&self, call: &str) -> usize {
        let call = call.to_ascii_lowercase();
        self.lock().calls.iter().filter(|c| **c == call).count()
    }

    /// How many requests arrived.
    pub fn total_calls(&self) -> usize {
        self.lock().calls.len()
    }

    /// Queues a fault; faults apply in the order injected.
    pub fn inject(&self, fault: Fault) {
        self.lock().faults.push(fault);
    }

    /// Removes every queued fault.
    pub fn clear_faults(&self) {
        self.lock().faults.clear();
    }

    /// Changes the version `getHostBillversion` reports.
    pub fn set_version(&self, version: &str) {
        self.lock().settings.profile.version = version.into();
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

enum Outcome {
    Answer(Response<Full<Bytes>>),
    Hang,
    Drop,
}

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
    let path_ok = req.uri().path().ends_with("/admin/api.php");
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
        return Ok(plain(StatusCode::METHOD_NOT_ALLOWED, "POST or GET"));
    }
    let mut raw = body.to_vec();
    if !query.is_empty() {
        if !raw.is_empty() {
            raw.push(b'&');
        }
        raw.extend_from_slice(query.as_bytes());
    }
    let form: Vec<(String, String)> = form_urlencoded::parse(&raw).into_owned().collect();
    let outcome = {
        let mut guard = shared.lock().unwrap_or_else(|p| p.into_inner());
        respond(&mut guard, peer, &form)
    };
    match outcome {
        Outcome::Answer(r) => Ok(r),
        Outcome::Drop => Err(Dropped),
        Outcome::Hang => {
            let _ = shutdown.changed().await;
            Err(Dropped)
        }
    }
}

fn respond(shared: &mut Shared, peer: IpAddr, form: &[(String, String)]) -> Outcome {
    let get = |k: &str| form.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str());
    let call = get("call").unwrap_or_default().trim().to_owned();
    let lower = call.to_ascii_lowercase();
    shared.calls.push(lower.clone());
    let fault = shared.faults.take(&lower);
    match fault {
        Some(FaultKind::Status(s)) => {
            let status = StatusCode::from_u16(s).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            return Outcome::Answer(plain(status, "Internal Server Error"));
        }
        Some(FaultKind::HtmlErrorPage) => return Outcome::Answer(html(StatusCode::INTERNAL_SERVER_ERROR, "Error")),
        Some(FaultKind::HtmlOkPage) => return Outcome::Answer(html(StatusCode::OK, "Down for maintenance")),
        _ => {}
    }
    let s = &shared.settings;
    let texts = &s.texts;
    let refusal_status = StatusCode::from_u16(texts.status).unwrap_or(StatusCode::OK);
    let peer = match peer {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    };
    let fill = |t: &str| t.replace("{call}", &call).replace("{ip}", &peer.to_string());
    let eq = |a: &str, b: &str| bool::from(a.as_bytes().ct_eq(b.as_bytes()));
    let (id, key) = (get("api_id").unwrap_or_default(), get("api_key").unwrap_or_default());
    let Some(k) = s.keys.iter().find(|k| eq(&k.id, id) & eq(k.key.expose(), key)) else {
        return Outcome::Answer(error(refusal_status, &call, vec![fill(&texts.auth)]));
    };
    if k.ips.as_ref().is_some_and(|ips| !ips.contains(&peer)) {
        return Outcome::Answer(error(refusal_status, &call, vec![fill(&texts.ip)]));
    }
    if k.calls.as_ref().is_some_and(|c| !c.contains(&lower)) {
        return Outcome::Answer(error(refusal_status, &call, vec![fill(&texts.permission)]));
    }
    let ctx = state::Ctx { profile: &s.profile, page_base: s.page_base, per_page: s.per_page, form };
    let result = shared.state.dispatch(&lower, &ctx);
    let outcome = match result {
        None => error(refusal_status, &call, vec![fill(&texts.unknown_call)]),
        Some(Ok(mut m)) => {
            m.insert("success".into(), true.into());
            m.insert("call".into(), call.clone().into());
            m.insert("server_time".into(), server_time().into());
            json(StatusCode::OK, &m)
        }
        Some(Err(message)) => error(StatusCode::OK, &call, vec![message]),
    };
    Outcome::Answer(outcome).after(fault)
}

impl Outcome {
    fn after(self, fault: Option<FaultKind>) -> Outcome {
        match fault {
            Some(FaultKind::ErrorPageAfterCommit) => Outcome::Answer(html(StatusCode::INTERNAL_SERVER_ERROR, "Error")),
            Some(FaultKind::TimeoutAfterCommit) => Outcome::Hang,
            Some(FaultKind::DropAfterCommit) => Outcome::Drop,
            _ => self,
        }
    }
}

fn server_time() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

fn error(status: StatusCode, call: &str, messages: Vec<String>) -> Response<Full<Bytes>> {
    let mut m = Map::new();
    m.insert("success".into(), false.into());
    m.insert("call".into(), call.into());
    m.insert("server_time".into(), server_time().into());
    m.insert("error".into(), Value::Array(messages.into_iter().map(Value::String).collect()));
    json(status, &m)
}

fn json(status: StatusCode, m: &Map<String, Value>) -> Response<Full<Bytes>> {
    response(status, "application/json", Value::Object(m.clone()).to_string())
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
