//! [`HostBillClient`]: `POST /admin/api.php` with `call`, `api_id`, `api_key` and the call's form fields, read
//! through HostBill's envelope.

use std::collections::BTreeSet;
use std::fmt;
use std::time::Duration;

use serde_json::{Map, Value};
use wap_billing_engine::billing_http::{encode_form, snippet, FormPostClient, TransportError, TransportFailure};
use wap_types::Secret;

use crate::error::{classify_messages, Error, ErrorKind};
use crate::types::{qty_text, Account, AccountAddon, Client, MeteredValue, NewClient, NewUsage, Obj, Priced};

/// The most pages a paged list reads (a guard against a server that never stops).
const MAX_PAGES: u64 = 100_000;

/// A client of HostBill's admin API (`admin/api.php`). Cheap to clone; clones share the connection pool.
///
/// The API key never appears in `Debug` output, logs or errors. Every call is a single request: this client does
/// not retry (the caller decides, with [`Error::is_retryable`], and for the non-idempotent calls — `addClient`,
/// `addOrder`, `addAddonToAccount`, `meteredAddUsage*` — after looking the result up).
#[derive(Clone)]
pub struct HostBillClient {
    http: FormPostClient,
    api_id: String,
    api_key: Secret,
}

impl fmt::Debug for HostBillClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HostBillClient")
            .field("endpoint", &self.http.endpoint().to_string())
            .field("api_id", &self.api_id)
            .field("api_key", &"***")
            .field("timeout", &self.http.timeout())
            .finish()
    }
}

/// Builds a [`HostBillClient`]. Start with [`HostBillClient::builder`].
pub struct HostBillClientBuilder {
    url: Option<String>,
    api_id: Option<String>,
    api_key: Option<Secret>,
    timeout: Duration,
    user_agent: String,
}

impl fmt::Debug for HostBillClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HostBillClientBuilder")
            .field("url", &self.url)
            .field("api_id", &self.api_id)
            .field("api_key", &self.api_key.as_ref().map(|_| "***"))
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl HostBillClientBuilder {
    /// HostBill's address: its base URL (`https://billing.example.com/`, to which `admin/api.php` is added) or the
    /// full URL of `api.php`. Credentials in the URL are refused.
    pub fn url(mut self, url: impl Into<String>) -> Self {
        self.url = Some(url.into());
        self
    }

    /// The API ID and key (Settings → Security settings → API access).
    pub fn credentials(mut self, api_id: impl Into<String>, api_key: impl Into<Secret>) -> Self {
        self.api_id = Some(api_id.into());
        self.api_key = Some(api_key.into());
        self
    }

    /// The time a whole call may take (default 30 s). A call that runs out may have been applied. With the
    /// engine's journal, keep it below `HandlerTimeoutMilliseconds`.
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
    pub fn build(self) -> Result<HostBillClient, Error> {
        let raw = self.url.ok_or_else(|| Error::Config("the HostBill URL is not set".into()))?;
        let mut url = raw.trim().to_owned();
        if let Some(q) = url.find(['?', '#']) {
            url.truncate(q);
        }
        if !url.ends_with(".php") {
            if !url.ends_with('/') {
                url.push('/');
            }
            url.push_str("admin/api.php");
        }
        let api_id = self.api_id.filter(|i| !i.trim().is_empty());
        let api_id = api_id.ok_or_else(|| Error::Config("the HostBill API ID is not set".into()))?;
        let api_key = self.api_key.ok_or_else(|| Error::Config("the HostBill API key is not set".into()))?;
        let http = FormPostClient::new(&url, self.timeout, &self.user_agent)
            .map_err(|e| Error::Config(format!("HostBill URL {raw:?}: {e}")))?;
        Ok(HostBillClient { http, api_id, api_key })
    }
}

impl HostBillClient {
    /// A builder with the defaults (30 s timeout).
    pub fn builder() -> HostBillClientBuilder {
        HostBillClientBuilder {
            url: None,
            api_id: None,
            api_key: None,
            timeout: Duration::from_secs(30),
            user_agent: concat!("wap-billing-hostbill/", env!("CARGO_PKG_VERSION")).to_owned(),
        }
    }

    /// The URL requests go to (`…/admin/api.php`).
    pub fn endpoint(&self) -> String {
        self.http.endpoint().to_string()
    }

    /// Calls `call` with form `params` and returns the success answer. `success: false` (whatever the HTTP
    /// status) is an [`Error::Api`] classified by its messages.
    pub async fn call(&self, call: &str, params: &[(&str, String)]) -> Result<Map<String, Value>, Error> {
        let body = {
            let mut pairs: Vec<(&str, &str)> =
                vec![("call", call), ("api_id", self.api_id.as_str()), ("api_key", self.api_key.expose())];
            pairs.extend(params.iter().map(|(k, v)| (*k, v.as_str())));
            encode_form(pairs)
        };
        let started = std::time::Instant::now();
        let answer = self.http.post(body).await.map_err(|source| {
            if matches!(source.failure, TransportFailure::Timeout(_)) {
                tracing::warn!(call, "HostBill call timed out; it may have been applied");
            }
            Error::Transport { call: call.to_owned(), source }
        })?;
        tracing::debug!(
            call,
            status = answer.status,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "HostBill call"
        );
        read_answer(call, answer.status, &answer.body)
    }

    /// Reads every page of a paged list (`page` = 0, 1, …): entries are collected until a page brings nothing
    /// new or `sorter.sorterrecords` are read, so both 0- and 1-based paging end correctly (HostBill does not
    /// document which it uses).
    async fn paged<T>(
        &self,
        call: &str,
        params: &[(&str, String)],
        key: &str,
        read: fn(Obj<'_>) -> Result<T, Error>,
        id_of: fn(&T) -> u64,
    ) -> Result<Vec<T>, Error> {
        let mut out = Vec::new();
        let mut seen = BTreeSet::new();
        for page in 0..MAX_PAGES {
            let mut form = params.to_vec();
            form.push(("page", page.to_string()));
            let answer = self.call(call, &form).await?;
            let top = Obj::new(call, "$", &answer);
            let mut new = 0;
            for (k, entry) in top.entries(key)? {
                let item = read(Obj::new(call, &format!("$.{key}.{k}"), entry))?;
                if seen.insert(id_of(&item)) {
                    out.push(item);
                    new += 1;
                }
            }
            let total = answer
                .get("sorter")
                .and_then(Value::as_object)
                .and_then(|s| s.get("sorterrecords"))
                .and_then(wap_billing_engine::billing_http::scalar::as_u64);
            let has_sorter = answer.get("sorter").is_some();
            // Page 1 may repeat page 0 (1-based paging reads `page=0` as the first page): only a later page that
            // brings nothing new ends the list.
            let repeated_first = page == 1 && new == 0 && !out.is_empty();
            if (new == 0 && !repeated_first) || !has_sorter || total.is_some_and(|t| out.len() as u64 >= t) {
                return Ok(out);
            }
        }
        Ok(out)
    }

    // ---- system ----------------------------------------------------------------------------------------------

    /// `getHostBillversion`: the version HostBill reports.
    pub async fn get_version(&self) -> Result<String, Error> {
        let a = self.call("getHostBillversion", &[]).await?;
        let v = Obj::new("getHostBillversion", "$", &a).text("version");
        if v.trim().is_empty() {
            return Err(Error::Decode {
                call: "getHostBillversion".into(),
                path: "$.version".into(),
                detail: "missing".into(),
            });
        }
        Ok(v)
    }

    // ---- clients ---------------------------------------------------------------------------------------------

    /// The clients whose email is `email` (compared ignoring ASCII case) through `getClients filter[email]=`. The
    /// match is checked here too, since older HostBill ignores `filter[…]` and returns every client.
    pub async fn find_clients_by_email(&self, email: &str) -> Result<Vec<Client>, Error> {
        let all =
            self.paged("getClients", &[("filter[email]", email.to_owned())], "clients", Client::read, |c| c.id).await?;
        Ok(all.into_iter().filter(|c| c.email.trim().eq_ignore_ascii_case(email.trim())).collect())
    }

    /// `addClient`: returns `client_id`. **Not idempotent** (HostBill does not document refusing a known email):
    /// look up first.
    pub async fn add_client(&self, c: &NewClient) -> Result<u64, Error> {
        let password = generated_password();
        let form = [
            ("email", c.email.clone()),
            ("firstname", c.firstname.clone()),
            ("lastname", c.lastname.clone()),
            ("password", password.clone()),
            ("password2", password),
        ];
        let a = self.call("addClient", &form).await?;
        Obj::new("addClient", "$", &a).id("client_id")
    }

    // ---- accounts --------------------------------------------------------------------------------------------

    /// `getClientAccounts id=`: the accounts of one client.
    pub async fn get_client_accounts(&self, client_id: u64) -> Result<Vec<Account>, Error> {
        self.paged("getClientAccounts", &[("id", client_id.to_string())], "accounts", Account::read, |a| a.id).await
    }

    /// The accounts whose `domain` is `domain` (ignoring ASCII case), through `getAccounts filter[domain]=`, the
    /// match checked here too.
    pub async fn find_accounts_by_domain(&self, domain: &str) -> Result<Vec<Account>, Error> {
        let form = [("list", "all".to_owned()), ("filter[domain]", domain.to_owned())];
        let all = self.paged("getAccounts", &form, "accounts", Account::read, |a| a.id).await?;
        Ok(all.into_iter().filter(|a| a.domain.trim().eq_ignore_ascii_case(domain.trim())).collect())
    }

    /// `getAccounts list=all`: every account.
    pub async fn get_accounts(&self) -> Result<Vec<Account>, Error> {
        self.paged("getAccounts", &[("list", "all".to_owned())], "accounts", Account::read, |a| a.id).await
    }

    /// `getAccountDetails id=` (`details`).
    pub async fn get_account_details(&self, id: u64) -> Result<Account, Error> {
        let a = self.call("getAccountDetails", &[("id", id.to_string())]).await?;
        let details = a.get("details").and_then(Value::as_object).ok_or_else(|| Error::Decode {
            call: "getAccountDetails".into(),
            path: "$.details".into(),
            detail: "missing".into(),
        })?;
        Account::read(Obj::new("getAccountDetails", "$.details", details))
    }

    /// `editAccountDetails id= …`: sets fields (set semantics: repeat-safe).
    pub async fn edit_account_details(&self, id: u64, fields: &[(&str, String)]) -> Result<(), Error> {
        let mut form = vec![("id", id.to_string())];
        form.extend(fields.iter().cloned());
        self.call("editAccountDetails", &form).await.map(drop)
    }

    /// `addOrder`: returns `order_id` (HostBill returns no account id). **Not idempotent.**
    pub async fn add_order(&self, client_id: u64, product_id: u64, cycle: &str) -> Result<u64, Error> {
        let form = [
            ("client_id", client_id.to_string()),
            ("product", product_id.to_string()),
            ("cycle", cycle.to_owned()),
            ("confirm", "1".to_owned()),
            ("invoice_generate", "0".to_owned()),
            ("invoice_info", "0".to_owned()),
        ];
        let a = self.call("addOrder", &form).await?;
        Obj::new("addOrder", "$", &a).id("order_id")
    }

    /// `accountSuspend id=`.
    pub async fn account_suspend(&self, id: u64) -> Result<(), Error> {
        self.call("accountSuspend", &[("id", id.to_string())]).await.map(drop)
    }

    /// `accountUnsuspend id=`.
    pub async fn account_unsuspend(&self, id: u64) -> Result<(), Error> {
        self.call("accountUnsuspend", &[("id", id.to_string())]).await.map(drop)
    }

    /// `accountTerminate id=`.
    pub async fn account_terminate(&self, id: u64) -> Result<(), Error> {
        self.call("accountTerminate", &[("id", id.to_string())]).await.map(drop)
    }

    // ---- add-ons ---------------------------------------------------------------------------------------------

    /// `getAccountAddons id=` (`account_addons`).
    pub async fn get_account_addons(&self, account_id: u64) -> Result<Vec<AccountAddon>, Error> {
        let a = self.call("getAccountAddons", &[("id", account_id.to_string())]).await?;
        let top = Obj::new("getAccountAddons", "$", &a);
        top.entries("account_addons")?
            .into_iter()
            .map(|(k, e)| AccountAddon::read(Obj::new("getAccountAddons", &format!("$.account_addons.{k}"), e)))
            .collect()
    }

    /// `addAddonToAccount`: HostBill answers only `newaddon: true`. **Not idempotent**, and there is no id to
    /// look up by: find it again through [`HostBillClient::get_account_addons`].
    pub async fn add_addon_to_account(&self, account_id: u64, addon_id: u64, cycle: Option<&str>) -> Result<(), Error> {
        let mut form = vec![("account_id", account_id.to_string()), ("addon_id", addon_id.to_string())];
        if let Some(c) = cycle {
            form.push(("cycle", c.to_owned()));
        }
        self.call("addAddonToAccount", &form).await.map(drop)
    }

    /// `getAddons`: the add-on definitions with their prices.
    pub async fn get_addons(&self) -> Result<Vec<Priced>, Error> {
        let a = self.call("getAddons", &[]).await?;
        let top = Obj::new("getAddons", "$", &a);
        top.entries("addons")?
            .into_iter()
            .map(|(k, e)| Priced::read(Obj::new("getAddons", &format!("$.addons.{k}"), e)))
            .collect()
    }

    // ---- catalogue -------------------------------------------------------------------------------------------

    /// `getOrderPages`: the ids of the order pages (categories).
    pub async fn get_order_pages(&self) -> Result<Vec<u64>, Error> {
        let a = self.call("getOrderPages", &[]).await?;
        let top = Obj::new("getOrderPages", "$", &a);
        top.entries("categories")?
            .into_iter()
            .map(|(k, e)| Obj::new("getOrderPages", &format!("$.categories.{k}"), e).id("id"))
            .collect()
    }

    /// `getProducts id=<orderpage>`: the products of one order page with their prices.
    pub async fn get_products(&self, order_page: u64) -> Result<Vec<Priced>, Error> {
        let a = self.call("getProducts", &[("id", order_page.to_string())]).await?;
        let top = Obj::new("getProducts", "$", &a);
        top.entries("products")?
            .into_iter()
            .map(|(k, e)| Priced::read(Obj::new("getProducts", &format!("$.products.{k}"), e)))
            .collect()
    }

    // ---- metered usage ---------------------------------------------------------------------------------------

    /// `meteredAddUsage`: returns `usage_id`. **Not idempotent.**
    pub async fn metered_add_usage(&self, account_id: u64, usage: &NewUsage) -> Result<u64, Error> {
        let form = [
            ("account_id", account_id.to_string()),
            ("variable", usage.variable.clone()),
            ("qty", qty_text(usage.qty)),
            ("output", usage.output.clone()),
            ("rawoutput", usage.rawoutput.clone()),
        ];
        let a = self.call("meteredAddUsage", &form).await?;
        Obj::new("meteredAddUsage", "$", &a).id("usage_id")
    }

    /// `meteredAddUsageBulk`: several variables of one account in one call (each variable at most once).
    /// **Not idempotent.**
    pub async fn metered_add_usage_bulk(&self, account_id: u64, usage: &[NewUsage]) -> Result<(), Error> {
        let mut form = vec![("account_id".to_owned(), account_id.to_string())];
        for u in usage {
            let v = &u.variable;
            form.push((format!("variables[{v}][qty]"), qty_text(u.qty)));
            form.push((format!("variables[{v}][output]"), u.output.clone()));
            form.push((format!("variables[{v}][rawoutput]"), u.rawoutput.clone()));
        }
        let borrowed: Vec<(&str, String)> = form.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
        self.call("meteredAddUsageBulk", &borrowed).await.map(drop)
    }

    /// `meteredGetUsage account_id=`: the usage entries of the account's **current billing period** (HostBill
    /// shows no other).
    pub async fn metered_get_usage(&self, account_id: u64) -> Result<Vec<MeteredValue>, Error> {
        let call = "meteredGetUsage";
        let a = self.call(call, &[("account_id", account_id.to_string())]).await?;
        let top = Obj::new(call, "$", &a);
        let mut out = Vec::new();
        for (k, var) in top.entries("variables")? {
            let path = format!("$.variables.{k}");
            let v = Obj::new(call, &path, var);
            let name = v.text("variable_name");
            for (i, value) in v.entries("values")? {
                let p = format!("{path}.values.{i}");
                let o = Obj::new(call, &p, value);
                out.push(MeteredValue {
                    variable: name.clone(),
                    id: o.id("id")?,
                    qty: o.amount("qty").unwrap_or(0.0),
                    output: o.text("output"),
                    rawoutput: o.text("rawoutput"),
                });
            }
        }
        Ok(out)
    }
}

/// A password for a new client (HostBill requires one; WAP's tenants never log in to HostBill with it).
fn generated_password() -> String {
    use std::fmt::Write as _;
    let mut s = String::from("Wap-");
    for _ in 0..4 {
        let _ = write!(s, "{:08x}", rand_u32());
    }
    s
}

fn rand_u32() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0));
    h.finish() as u32
}

/// Reads one answer through HostBill's envelope, whatever the HTTP status.
pub(crate) fn read_answer(call: &str, status: u16, bytes: &[u8]) -> Result<Map<String, Value>, Error> {
    let transport = |failure| Error::Transport {
        call: call.to_owned(),
        source: TransportError::new(failure, Some(status), snippet(bytes)),
    };
    let value: Value = match serde_json::from_slice(bytes) {
        Ok(v) => v,
        Err(_) => {
            let failure = if status >= 500 { TransportFailure::ServerError } else { TransportFailure::NotJson };
            return Err(transport(failure));
        }
    };
    let Value::Object(map) = value else {
        if status >= 500 {
            return Err(transport(TransportFailure::ServerError));
        }
        return Err(Error::Decode { call: call.to_owned(), path: "$".into(), detail: "not a JSON object".into() });
    };
    let success = match map.get("success") {
        Some(Value::Bool(b)) => Some(*b),
        Some(Value::String(s)) => Some(matches!(s.trim().to_ascii_lowercase().as_str(), "true" | "1")),
        Some(Value::Number(n)) => Some(n.as_u64() == Some(1)),
        _ => None,
    };
    let messages = error_messages(map.get("error"));
    match success {
        Some(true) if status < 400 && messages.is_empty() => Ok(map),
        Some(_) | None if !messages.is_empty() || success == Some(false) => {
            let mut kind = classify_messages(&messages);
            if status >= 500 && kind == ErrorKind::Validation {
                kind = ErrorKind::Transient;
            }
            Err(Error::Api { call: call.to_owned(), kind, messages, status })
        }
        _ if status >= 500 => Err(transport(TransportFailure::ServerError)),
        Some(true) => Err(Error::Api { call: call.to_owned(), kind: ErrorKind::Validation, messages, status }),
        _ => Err(Error::Decode { call: call.to_owned(), path: "$.success".into(), detail: "missing".into() }),
    }
}

/// The `error` member: a list of texts, an object ("hash") of texts, or one text.
fn error_messages(v: Option<&Value>) -> Vec<String> {
    let text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    match v {
        None | Some(Value::Null) | Some(Value::Bool(false)) => Vec::new(),
        Some(Value::String(s)) if s.is_empty() => Vec::new(),
        Some(Value::Array(a)) => a.iter().map(text).collect(),
        Some(Value::Object(o)) => o.values().map(text).collect(),
        Some(other) => vec![text(other)],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes_are_read_whatever_the_status() {
        let ok = br#"{"success":true,"client_id":"14","call":"addClient","server_time":1,"info":["Client added"]}"#;
        assert_eq!(read_answer("addClient", 200, ok).unwrap()["client_id"], "14");
        let e = read_answer(
            "accountSuspend",
            200,
            br#"{"success":false,"call":"accountSuspend","error":["Wrong parameter"]}"#,
        )
        .unwrap_err();
        assert_eq!((e.kind(), e.api_messages()), (ErrorKind::Validation, &["Wrong parameter".to_owned()][..]));
        let e =
            read_answer("x", 200, br#"{"success":false,"error":{"code":"Invalid API ID or API Key"}}"#).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Auth, "an error hash");
        let e = read_answer("x", 502, b"<html>Bad Gateway</html>").unwrap_err();
        assert_eq!((e.kind(), e.transport_failure()), (ErrorKind::Transient, Some(TransportFailure::ServerError)));
        let e = read_answer("x", 200, b"<html>maintenance</html>").unwrap_err();
        assert_eq!(e.transport_failure(), Some(TransportFailure::NotJson));
        let e = read_answer("x", 200, br#"{"call":"x"}"#).unwrap_err();
        assert!(matches!(e, Error::Decode { ref path, .. } if path == "$.success"), "{e}");
        let e = read_answer("x", 503, br#"{"success":false,"error":["Database busy"]}"#).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Transient, "an error envelope with 5xx is transient");
    }

    #[test]
    fn debug_hides_the_key() {
        let c =
            HostBillClient::builder().url("http://127.0.0.1:1/").credentials("id-1", "S3NTINEL-KEY").build().unwrap();
        let d = format!("{c:?}");
        assert!(!d.contains("S3NTINEL") && d.contains("id-1") && d.contains("admin/api.php"), "{d}");
    }
}
