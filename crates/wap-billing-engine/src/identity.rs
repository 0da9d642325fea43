//! The optional identity map: WAP id ↔ billing-system id (adapter-engine.md §8).
//!
//! Unnecessary when the billing system can store WAP ids itself. When one is configured on the
//! [`EventProcessor`](crate::EventProcessor), the engine looks up the entity's WAP id for every event of plans,
//! add-ons, subscriptions and subscription add-ons (by `AddOnInstanceId`), hands the billing id to the handler in
//! [`EventContext::billing_id`](crate::EventContext::billing_id), and delivers a `Post` for an already-mapped id as
//! an update (the low-frequency workflow, where an operator created the product and the mapping by hand). WAP ids
//! are matched ignoring ASCII case (WAP writes GUIDs in both cases).

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::Utc;

use crate::store::{Fence, IdentityKind, IdentityMapping, StateStore, StoreError};

/// A WAP id ↔ billing id map that operators can edit.
#[async_trait]
pub trait IdentityMap: Send + Sync + fmt::Debug + 'static {
    /// The billing id mapped to a WAP id.
    async fn billing_id(&self, kind: IdentityKind, wap_id: &str) -> Result<Option<String>, StoreError>;

    /// The WAP id mapped to a billing id.
    async fn wap_id(&self, kind: IdentityKind, billing_id: &str) -> Result<Option<String>, StoreError>;

    /// Sets or changes a mapping (`actor`: who, for the audit log).
    async fn set(&self, kind: IdentityKind, wap_id: &str, billing_id: &str, actor: &str) -> Result<(), StoreError>;

    /// Deletes a mapping; whether it existed.
    async fn remove(&self, kind: IdentityKind, wap_id: &str, actor: &str) -> Result<bool, StoreError>;

    /// All mappings of a kind.
    async fn list(&self, kind: IdentityKind) -> Result<Vec<IdentityMapping>, StoreError>;

    /// [`IdentityMap::set`] by a handler under `fence`: a map that can check the fence in the same transaction
    /// refuses the write ([`StoreError::Fenced`]) once the lease is lost. The default does not check (a map kept
    /// outside the state store cannot): it calls [`IdentityMap::set`] with the fence's holder as actor.
    async fn set_fenced(
        &self,
        fence: &Fence,
        kind: IdentityKind,
        wap_id: &str,
        billing_id: &str,
    ) -> Result<(), StoreError> {
        self.set(kind, wap_id, billing_id, &fence.holder).await
    }

    /// [`IdentityMap::remove`] by a handler under `fence` (see [`IdentityMap::set_fenced`]).
    async fn remove_fenced(&self, fence: &Fence, kind: IdentityKind, wap_id: &str) -> Result<bool, StoreError> {
        self.remove(kind, wap_id, &fence.holder).await
    }
}

/// The identity map as a handler sees it ([`EventContext::identity`](crate::EventContext::identity)): reads go to
/// the configured map; writes carry the fence of the call's term, so a deposed leader's handler cannot change the
/// map (with [`StoreIdentityMap`]; see [`IdentityMap::set_fenced`]). The `actor` a handler passes is replaced by
/// the instance id (the fence's holder).
#[derive(Debug)]
pub(crate) struct FencedIdentityMap {
    inner: Arc<dyn IdentityMap>,
    fence: Fence,
}

impl FencedIdentityMap {
    pub(crate) fn new(inner: Arc<dyn IdentityMap>, fence: Fence) -> Self {
        FencedIdentityMap { inner, fence }
    }
}

#[async_trait]
impl IdentityMap for FencedIdentityMap {
    async fn billing_id(&self, kind: IdentityKind, wap_id: &str) -> Result<Option<String>, StoreError> {
        self.inner.billing_id(kind, wap_id).await
    }

    async fn wap_id(&self, kind: IdentityKind, billing_id: &str) -> Result<Option<String>, StoreError> {
        self.inner.wap_id(kind, billing_id).await
    }

    async fn set(&self, kind: IdentityKind, wap_id: &str, billing_id: &str, _actor: &str) -> Result<(), StoreError> {
        self.inner.set_fenced(&self.fence, kind, wap_id, billing_id).await
    }

    async fn remove(&self, kind: IdentityKind, wap_id: &str, _actor: &str) -> Result<bool, StoreError> {
        self.inner.remove_fenced(&self.fence, kind, wap_id).await
    }

    async fn list(&self, kind: IdentityKind) -> Result<Vec<IdentityMapping>, StoreError> {
        self.inner.list(kind).await
    }

    async fn set_fenced(
        &self,
        fence: &Fence,
        kind: IdentityKind,
        wap_id: &str,
        billing_id: &str,
    ) -> Result<(), StoreError> {
        self.inner.set_fenced(fence, kind, wap_id, billing_id).await
    }

    async fn remove_fenced(&self, fence: &Fence, kind: IdentityKind, wap_id: &str) -> Result<bool, StoreError> {
        self.inner.remove_fenced(fence, kind, wap_id).await
    }
}

/// The identity map kept in the engine's [`StateStore`] (table `identity_map`; every change is audited).
#[derive(Debug, Clone)]
pub struct StoreIdentityMap {
    store: Arc<dyn StateStore>,
}

impl StoreIdentityMap {
    /// The map in `store`.
    pub fn new(store: Arc<dyn StateStore>) -> Self {
        StoreIdentityMap { store }
    }
}

#[async_trait]
impl IdentityMap for StoreIdentityMap {
    async fn billing_id(&self, kind: IdentityKind, wap_id: &str) -> Result<Option<String>, StoreError> {
        Ok(self.store.identity(kind, wap_id).await?.map(|m| m.billing_id))
    }

    async fn wap_id(&self, kind: IdentityKind, billing_id: &str) -> Result<Option<String>, StoreError> {
        Ok(self.store.identity_by_billing_id(kind, billing_id).await?.map(|m| m.wap_id))
    }

    async fn set(&self, kind: IdentityKind, wap_id: &str, billing_id: &str, actor: &str) -> Result<(), StoreError> {
        self.store.set_identity(kind, wap_id, billing_id, actor, Utc::now()).await
    }

    async fn remove(&self, kind: IdentityKind, wap_id: &str, actor: &str) -> Result<bool, StoreError> {
        self.store.delete_identity(kind, wap_id, actor, Utc::now()).await
    }

    async fn list(&self, kind: IdentityKind) -> Result<Vec<IdentityMapping>, StoreError> {
        self.store.identities(kind).await
    }

    async fn set_fenced(
        &self,
        fence: &Fence,
        kind: IdentityKind,
        wap_id: &str,
        billing_id: &str,
    ) -> Result<(), StoreError> {
        self.store.set_identity_fenced(fence, kind, wap_id, billing_id, Utc::now()).await
    }

    async fn remove_fenced(&self, fence: &Fence, kind: IdentityKind, wap_id: &str) -> Result<bool, StoreError> {
        self.store.delete_identity_fenced(fence, kind, wap_id, Utc::now()).await
    }
}
