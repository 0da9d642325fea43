//! Shared test helpers: a raw hyper client, fixture loading, and a small "backup vaults" provider.
#![allow(dead_code, unreachable_pub, missing_docs)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use wap_resource_provider::{
    CallContext, CreateOutcome, DeleteOutcome, NotificationError, NotificationHandler, QuotaResults, UpdateOutcome,
};
use wap_types::rp::{
    LifecycleState, QuotaUpdateBatch, QuotaUpdateResultBatch, RpSubscriptionState, ServiceUsage, ServiceUsageSummary,
    Subscription,
};
use wap_types::{OrEmpty, ResourceProviderError, ServiceQuotaSetting};

/// `testdata/spec/fixtures/resource-provider/<name>`.
pub fn fixture_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../testdata/spec/fixtures/resource-provider").join(name)
}

pub fn fixture_bytes(name: &str) -> Vec<u8> {
    std::fs::read(fixture_path(name)).unwrap_or_else(|e| panic!("fixture {name}: {e}"))
}

pub fn fixture_json(name: &str) -> serde_json::Value {
    serde_json::from_slice(&fixture_bytes(name)).unwrap()
}

/// A response read by [`send`].
#[derive(Debug)]
pub struct RawResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl RawResponse {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    /// The `ResourceProviderError` body every 4xx/5xx must carry.
    pub fn rp_error(&self) -> ResourceProviderError {
        assert!(
            self.headers.get("content-type").and_then(|v| v.to_str().ok()).is_some_and(|v| v.contains("json")),
            "error without a JSON content type: {:?}",
            self.headers
        );
        let e: ResourceProviderError = wap_types::json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not a ResourceProviderError ({e}): {}", String::from_utf8_lossy(&self.body)));
        assert!(!e.code.is_empty() && !e.message.is_empty(), "error without code or message: {e:?}");
        e
    }
}

/// One HTTP/1.1 request over a fresh connection with a raw hyper client.
pub async fn send(
    addr: SocketAddr,
    method: Method,
    path_and_query: &str,
    headers: &[(&str, &str)],
    body: Option<Vec<u8>>,
) -> RawResponse {
    tokio::time::timeout(Duration::from_secs(20), async {
        let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.expect("handshake");
        tokio::spawn(conn);
        let mut req = Request::builder().method(method).uri(path_and_query).header("host", addr.to_string());
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req.body(Full::new(Bytes::from(body.unwrap_or_default()))).expect("request");
        let resp = sender.send_request(req).await.expect("send");
        let (parts, body) = resp.into_parts();
        let body = body.collect().await.expect("body").to_bytes();
        RawResponse { status: parts.status, headers: parts.headers, body }
    })
    .await
    .expect("request timed out")
}

pub const USER: &str = "rpadmin";
pub const PASSWORD: &str = "R3source#Key";

pub fn basic_header() -> String {
    wap_types::BasicCredentials::new(USER, PASSWORD).header_value()
}

/// What the provider saw of one call.
#[derive(Debug, Clone)]
pub struct SeenCall {
    pub operation: &'static str,
    pub principal: Option<String>,
    pub principal_raw: Option<String>,
    pub request_id: Option<String>,
    pub session_id: Option<String>,
    pub accept_language: Option<String>,
    pub referer: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct VaultUsage {
    pub vaults: i64,
    pub protected_kb: i64,
}

#[derive(Debug, Default)]
struct State {
    subscriptions: HashMap<String, Subscription>,
    /// Subscriptions answered 202 whose provisioning finishes when WAP next polls.
    provisioning: Vec<String>,
    usage: HashMap<String, VaultUsage>,
    free_vault_slots: i64,
    seen: Vec<SeenCall>,
}

/// "Backup vaults": an asynchronous provider with a `MaxVaults` quota (0..=50) on a storage cluster with a
/// limited number of vault slots. Create answers 202; provisioning finishes when WAP polls Get, failing with
/// `LifecycleState` 5 when the cluster has fewer free slots than the quota asks. Delete answers 202 and leaves
/// the subscription `DeletePending`/`Deleting`.
#[derive(Debug, Clone, Default)]
pub struct BackupVaults {
    state: Arc<Mutex<State>>,
}

pub fn key(id: &str) -> String {
    id.to_ascii_lowercase()
}

fn max_vaults(settings: &[ServiceQuotaSetting]) -> Option<&str> {
    settings.iter().find(|s| s.key.eq_ignore_ascii_case("MaxVaults")).map(|s| s.value.as_str())
}

impl BackupVaults {
    pub fn new(free_vault_slots: i64) -> Self {
        let p = BackupVaults::default();
        p.state.lock().unwrap().free_vault_slots = free_vault_slots;
        p
    }

    pub fn seed(&self, sub: Subscription) {
        self.state.lock().unwrap().subscriptions.insert(key(&sub.subscription_id), sub);
    }

    pub fn set_usage(&self, id: &str, usage: VaultUsage) {
        self.state.lock().unwrap().usage.insert(key(id), usage);
    }

    pub fn subscription(&self, id: &str) -> Option<Subscription> {
        self.state.lock().unwrap().subscriptions.get(&key(id)).cloned()
    }

    pub fn subscription_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.state.lock().unwrap().subscriptions.keys().cloned().collect();
        ids.sort();
        ids
    }

    pub fn seen(&self) -> Vec<SeenCall> {
        self.state.lock().unwrap().seen.clone()
    }

    /// Forgets deleted subscriptions (the background deletion finished).
    pub fn finish_deletions(&self) {
        self.state.lock().unwrap().subscriptions.retain(|_, s| s.lifecycle_state != Some(LifecycleState::Deleting));
    }

    fn record(&self, operation: &'static str, ctx: &CallContext) {
        self.state.lock().unwrap().seen.push(SeenCall {
            operation,
            principal: ctx.principal_id().map(|p| p.decoded().to_owned()),
            principal_raw: ctx.principal_id().map(|p| p.raw().to_owned()),
            request_id: ctx.request_id().map(str::to_owned),
            session_id: ctx.session_id().map(str::to_owned),
            accept_language: ctx.accept_language().map(str::to_owned),
            referer: ctx.referer().map(str::to_owned),
        });
    }

    fn check_quota(ctx: &CallContext, settings: &[ServiceQuotaSetting]) -> Result<(), NotificationError> {
        let Some(value) = max_vaults(settings) else { return Ok(()) };
        if value.trim().parse::<u32>().is_ok_and(|n| n <= 50) {
            return Ok(());
        }
        let (template, message) = match ctx.preferred_language(&["en-US", "pt-PT"]) {
            Some("pt-PT") => (
                "MaxVaults tem de ser um número inteiro entre {0} e {1}; o valor '{2}' não é válido.",
                format!("MaxVaults tem de ser um número inteiro entre 0 e 50; o valor '{value}' não é válido."),
            ),
            _ => (
                "MaxVaults must be a whole number between {0} and {1}; the value '{2}' is not valid.",
                format!("MaxVaults must be a whole number between 0 and 50; the value '{value}' is not valid."),
            ),
        };
        Err(NotificationError::bad_request(ResourceProviderError {
            code: "InvalidQuota".into(),
            message,
            extended_code: Some("MaxVaultsOutOfRange".into()),
            message_template: Some(template.into()),
            parameters: Some(vec!["0".into(), "50".into(), value.to_owned()]),
            inner_errors: Some(vec![]),
            ..Default::default()
        }))
    }
}

#[async_trait]
impl NotificationHandler for BackupVaults {
    async fn create_subscription(
        &self,
        ctx: &CallContext,
        mut subscription: Subscription,
    ) -> Result<CreateOutcome, NotificationError> {
        self.record("create", ctx);
        let mut st = self.state.lock().unwrap();
        let k = key(&subscription.subscription_id);
        if let Some(existing) = st.subscriptions.get(&k) {
            // A retried create answers as the first one did.
            return Ok(match existing.lifecycle_state {
                Some(LifecycleState::Provisioning) => CreateOutcome::Accepted(existing.clone()),
                _ => CreateOutcome::Created(existing.clone()),
            });
        }
        subscription.lifecycle_state = Some(LifecycleState::Provisioning);
        subscription.last_error_message = None;
        st.provisioning.push(k.clone());
        st.subscriptions.insert(k, subscription.clone());
        Ok(CreateOutcome::Accepted(subscription))
    }

    async fn get_subscription(&self, ctx: &CallContext, id: &str) -> Result<Option<Subscription>, NotificationError> {
        self.record("get", ctx);
        let mut st = self.state.lock().unwrap();
        let k = key(id);
        if let Some(pos) = st.provisioning.iter().position(|p| *p == k) {
            st.provisioning.remove(pos);
            let wanted = st
                .subscriptions
                .get(&k)
                .and_then(|s| max_vaults(s.quota_settings.or_empty()).and_then(|v| v.parse::<i64>().ok()))
                .unwrap_or(0);
            let free = st.free_vault_slots;
            let sub = st.subscriptions.get_mut(&k).expect("provisioning subscription is stored");
            if wanted > free {
                sub.lifecycle_state = Some(LifecycleState::OutOfSync);
                sub.last_error_message =
                    Some("Vault storage account could not be created: quota of the storage cluster exceeded.".into());
            } else {
                sub.lifecycle_state = Some(LifecycleState::Provisioned);
                st.free_vault_slots -= wanted;
            }
        }
        Ok(st.subscriptions.get(&k).cloned())
    }

    async fn update_subscription(
        &self,
        ctx: &CallContext,
        mut subscription: Subscription,
    ) -> Result<UpdateOutcome, NotificationError> {
        self.record("update", ctx);
        Self::check_quota(ctx, subscription.quota_settings.or_empty())?;
        let mut st = self.state.lock().unwrap();
        match st.subscriptions.get_mut(&key(&subscription.subscription_id)) {
            None => Ok(UpdateOutcome::NotFound),
            Some(stored) => {
                subscription.lifecycle_state = Some(LifecycleState::Provisioned);
                *stored = subscription.clone();
                Ok(UpdateOutcome::Updated(subscription))
            }
        }
    }

    async fn delete_subscription(&self, ctx: &CallContext, id: &str) -> Result<DeleteOutcome, NotificationError> {
        self.record("delete", ctx);
        let mut st = self.state.lock().unwrap();
        match st.subscriptions.get_mut(&key(id)) {
            None => Ok(DeleteOutcome::NotFound),
            Some(s) => {
                s.state = RpSubscriptionState::DeletePending;
                s.lifecycle_state = Some(LifecycleState::Deleting);
                Ok(DeleteOutcome::Accepted)
            }
        }
    }

    async fn usage_summary(
        &self,
        ctx: &CallContext,
        id: &str,
    ) -> Result<Option<ServiceUsageSummary>, NotificationError> {
        self.record("usage_summary", ctx);
        let st = self.state.lock().unwrap();
        let Some(sub) = st.subscriptions.get(&key(id)) else { return Ok(None) };
        let usage = st.usage.get(&key(id)).cloned().unwrap_or_default();
        let limit = max_vaults(sub.quota_settings.or_empty()).and_then(|v| v.parse().ok()).unwrap_or(0);
        Ok(Some(ServiceUsageSummary {
            service_name: ctx.provider_name().to_owned(),
            service_display_name: Some("Backup Vaults".into()),
            retrieved_successfully: true,
            error_message: None,
            usages: Some(vec![
                ServiceUsage {
                    display_name: Some("Vaults".into()),
                    current_value: usage.vaults,
                    limit,
                    unit_display_name: Some("vaults".into()),
                    group_id: Some("vaults".into()),
                    group_display_name: Some("Storage".into()),
                    ..Default::default()
                },
                ServiceUsage {
                    display_name: Some("Protected data".into()),
                    current_value: usage.protected_kb,
                    limit: -1,
                    unit_display_name: Some("KB".into()),
                    group_id: Some("vaults".into()),
                    ..Default::default()
                },
            ]),
            ..Default::default()
        }))
    }

    async fn update_quota(
        &self,
        ctx: &CallContext,
        batch: QuotaUpdateBatch,
    ) -> Result<QuotaUpdateResultBatch, NotificationError> {
        self.record("update_quota", ctx);
        Self::check_quota(ctx, batch.base_quota.or_empty())?;
        let mut st = self.state.lock().unwrap();
        let mut results = QuotaResults::new();
        for id in batch.subscription_ids_to_update.or_empty() {
            match st.subscriptions.get_mut(&key(id)) {
                Some(s) if s.state == RpSubscriptionState::DeletePending => {
                    let template = "Subscription {0} is being deleted and cannot take a new quota.";
                    results.failed(
                        id.clone(),
                        ResourceProviderError {
                            code: "SubscriptionDeletePending".into(),
                            message: template.replace("{0}", id),
                            message_template: Some(template.into()),
                            parameters: Some(vec![id.clone()]),
                            ..Default::default()
                        },
                    );
                }
                Some(s) => {
                    s.quota_settings = batch.base_quota.clone();
                    results.updated(id.clone());
                }
                None => {
                    results.failed(id.clone(), ResourceProviderError::new("SubscriptionNotFound", format!("{id}?")));
                }
            }
        }
        Ok(results.finish())
    }

    async fn validate_quota(&self, ctx: &CallContext, batch: QuotaUpdateBatch) -> Result<(), NotificationError> {
        self.record("validate_quota", ctx);
        Self::check_quota(ctx, batch.base_quota.or_empty())?;
        for add_on in batch.add_on_quotas.or_empty() {
            Self::check_quota(ctx, add_on)?;
        }
        Ok(())
    }

    async fn default_quota(&self, ctx: &CallContext) -> Result<Vec<ServiceQuotaSetting>, NotificationError> {
        self.record("default_quota", ctx);
        Ok(vec![
            ServiceQuotaSetting::new("MaxVaults", "1"),
            ServiceQuotaSetting::new("RetentionTiers", r#"[{"name":"daily","days":7}]"#),
        ])
    }
}
