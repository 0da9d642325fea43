//! The six `/billing/*` feeds (one id sequence shared by all, so each feed has gaps) and the catalogue state
//! that their events build (plans, add-ons, links, subscriptions).

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use wap_types::{EventMethod, FeedKind, NotificationState, UsageEvent, WapDateTime};

/// One stored event: its wire JSON (WAP's member names) and its time, for retention.
#[derive(Debug, Clone)]
pub(crate) struct StoredEvent {
    pub(crate) id: i64,
    pub(crate) time: DateTime<Utc>,
    pub(crate) json: Value,
}

/// Index of an event feed in [`FeedKind::EVENT_FEEDS`].
pub(crate) fn feed_index(feed: FeedKind) -> Option<usize> {
    FeedKind::EVENT_FEEDS.iter().position(|f| *f == feed)
}

/// The events of the six feeds.
#[derive(Debug, Default)]
pub(crate) struct EventStore {
    feeds: [Vec<StoredEvent>; 6],
    next_id: i64,
}

impl EventStore {
    pub(crate) fn new() -> Self {
        EventStore { feeds: Default::default(), next_id: 1 }
    }

    /// Takes the next id of the shared sequence.
    pub(crate) fn allocate_id(&mut self) -> i64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// Adds an event; ids stay ascending per feed (an id at or below the feed's last is inserted in order).
    pub(crate) fn push(&mut self, feed: FeedKind, event: StoredEvent) {
        let Some(i) = feed_index(feed) else { return };
        self.next_id = self.next_id.max(event.id + 1);
        let v = &mut self.feeds[i];
        match v.last() {
            Some(last) if last.id >= event.id => {
                let at = v.partition_point(|e| e.id < event.id);
                if v.get(at).is_some_and(|e| e.id == event.id) {
                    v[at] = event;
                } else {
                    v.insert(at, event);
                }
            }
            _ => v.push(event),
        }
    }

    /// Up to `limit` events of `feed` with `EventId >= start_id`.
    pub(crate) fn page(&self, feed: FeedKind, start_id: i64, limit: usize) -> Vec<Value> {
        let Some(i) = feed_index(feed) else { return Vec::new() };
        let v = &self.feeds[i];
        let from = v.partition_point(|e| e.id < start_id);
        v[from..].iter().take(limit).map(|e| e.json.clone()).collect()
    }

    pub(crate) fn all(&self, feed: FeedKind) -> &[StoredEvent] {
        feed_index(feed).map(|i| self.feeds[i].as_slice()).unwrap_or(&[])
    }

    pub(crate) fn newest_time(&self) -> Option<DateTime<Utc>> {
        self.feeds.iter().filter_map(|v| v.iter().map(|e| e.time).max()).max()
    }

    pub(crate) fn purge_before_id(&mut self, feed: FeedKind, id: i64) -> u64 {
        let Some(i) = feed_index(feed) else { return 0 };
        let before = self.feeds[i].len();
        self.feeds[i].retain(|e| e.id >= id);
        (before - self.feeds[i].len()) as u64
    }

    pub(crate) fn purge_before_time(&mut self, cutoff: DateTime<Utc>) -> u64 {
        let mut n = 0;
        for v in &mut self.feeds {
            let before = v.len();
            v.retain(|e| e.time >= cutoff);
            n += (before - v.len()) as u64;
        }
        n
    }
}

fn get_ci<'a>(obj: &'a Map<String, Value>, names: &[&str]) -> Option<&'a Value> {
    obj.iter().find(|(k, _)| names.iter().any(|n| k.eq_ignore_ascii_case(n))).map(|(_, v)| v)
}

fn str_member(entity: &Value, names: &[&str]) -> Option<String> {
    entity.as_object().and_then(|o| get_ci(o, names)).and_then(Value::as_str).map(str::to_owned)
}

/// Copies the non-null members of `patch` onto `target` (a Patch carries only changed members).
fn merge(target: &mut Value, patch: &Value) {
    if let (Some(t), Some(p)) = (target.as_object_mut(), patch.as_object()) {
        for (k, v) in p {
            if v.is_null() {
                continue;
            }
            let existing = t.keys().find(|tk| tk.eq_ignore_ascii_case(k)).cloned();
            match existing {
                Some(ek) => {
                    t.insert(ek, v.clone());
                }
                None => {
                    t.insert(k.clone(), v.clone());
                }
            }
        }
    }
}

/// The catalogue as the committed events leave it: entities kept as wire JSON, keyed by lower-case id.
#[derive(Debug, Default, Clone)]
pub(crate) struct Catalogue {
    pub(crate) plans: BTreeMap<String, Value>,
    pub(crate) add_ons: BTreeMap<String, Value>,
    /// (plan id, add-on id), lower case.
    pub(crate) plan_add_ons: BTreeSet<(String, String)>,
    /// (plan id, service name), lower case.
    pub(crate) plan_services: BTreeSet<(String, String)>,
    pub(crate) subscriptions: BTreeMap<String, Value>,
    /// Tenant accounts (e-mail), as the generator or tenant actions created them.
    pub(crate) accounts: BTreeSet<String>,
}

impl Catalogue {
    /// Applies one committed event.
    pub(crate) fn apply(&mut self, feed: FeedKind, method: &EventMethod, entity: &Value, parent: Option<&str>) {
        let parent = parent.map(str::to_ascii_lowercase);
        match feed {
            FeedKind::Plans | FeedKind::Addons | FeedKind::Subscriptions => {
                let names: &[&str] =
                    if feed == FeedKind::Subscriptions { &["SubscriptionID", "SubscriptionId"] } else { &["Id"] };
                let Some(id) = str_member(entity, names) else { return };
                let key = id.to_ascii_lowercase();
                let map = match feed {
                    FeedKind::Plans => &mut self.plans,
                    FeedKind::Addons => &mut self.add_ons,
                    _ => &mut self.subscriptions,
                };
                match method {
                    EventMethod::Post => {
                        map.insert(key, entity.clone());
                    }
                    EventMethod::Delete => {
                        map.remove(&key);
                    }
                    _ => match map.get_mut(&key) {
                        Some(existing) => merge(existing, entity),
                        None => {
                            map.insert(key, entity.clone());
                        }
                    },
                }
                if feed == FeedKind::Subscriptions && !method.is_delete() {
                    if let Some(email) = str_member(entity, &["AccountAdminLiveEmailId"]) {
                        self.accounts.insert(email);
                    }
                }
            }
            FeedKind::PlanAddons | FeedKind::PlanServices => {
                let (Some(plan), Some(child)) = (parent, str_member(entity, &["AddOnId", "Name"])) else { return };
                let set = if feed == FeedKind::PlanAddons { &mut self.plan_add_ons } else { &mut self.plan_services };
                let link = (plan, child.to_ascii_lowercase());
                if method.is_delete() {
                    set.remove(&link);
                } else {
                    set.insert(link);
                }
            }
            FeedKind::SubscriptionAddons => {
                let Some(sub) = parent.and_then(|p| self.subscriptions.get_mut(&p)) else { return };
                let Some(obj) = sub.as_object_mut() else { return };
                let refs = obj.entry("AddOnReferences").or_insert_with(|| Value::Array(Vec::new()));
                if refs.is_null() {
                    *refs = Value::Array(Vec::new());
                }
                let Some(list) = refs.as_array_mut() else { return };
                let add_on = str_member(entity, &["AddOnId"]);
                let instance = str_member(entity, &["AddOnInstanceId", "InstanceId"]);
                if method.is_delete() {
                    let pos = list.iter().position(|r| match &instance {
                        Some(i) => str_member(r, &["AddOnInstanceId", "InstanceId"]).as_deref() == Some(i),
                        None => str_member(r, &["AddOnId"]) == add_on,
                    });
                    if let Some(pos) = pos {
                        list.remove(pos);
                    }
                } else {
                    list.push(entity.clone());
                }
            }
            FeedKind::Usage => {}
        }
    }
}

/// The event store plus the catalogue it builds; every committed event goes through [`Feeds::commit`].
#[derive(Debug)]
pub(crate) struct Feeds {
    pub(crate) store: EventStore,
    pub(crate) catalogue: Catalogue,
}

impl Feeds {
    pub(crate) fn new() -> Self {
        Feeds { store: EventStore::new(), catalogue: Catalogue::default() }
    }

    /// Commits an event under a new id; returns the id.
    pub(crate) fn commit<T: serde::Serialize>(
        &mut self,
        feed: FeedKind,
        method: EventMethod,
        entity: &T,
        parent: Option<&str>,
        time: WapDateTime,
    ) -> i64 {
        let id = self.store.allocate_id();
        self.commit_with_id(id, feed, method, entity, parent, time);
        id
    }

    /// Commits an event under an id taken earlier (approval: the id sent with `State: 2` is the id on the feed).
    pub(crate) fn commit_with_id<T: serde::Serialize>(
        &mut self,
        id: i64,
        feed: FeedKind,
        method: EventMethod,
        entity: &T,
        parent: Option<&str>,
        time: WapDateTime,
    ) {
        let entity = serde_json::to_value(entity).unwrap_or(Value::Null);
        self.catalogue.apply(feed, &method, &entity, parent);
        let mut event = UsageEvent::new(id, NotificationState::Acknowledged, method, entity).with_time_created(time);
        if let Some(p) = parent {
            event = event.with_parent(p);
        }
        let json = serde_json::to_value(&event).unwrap_or(Value::Null);
        self.store.push(feed, StoredEvent { id, time: time.to_utc(), json });
    }

    /// Stores an event read from a file as it is, applying it to the catalogue.
    pub(crate) fn load(&mut self, feed: FeedKind, json: Value) -> Result<(), String> {
        let event: UsageEvent<Value> = serde_json::from_value(json.clone()).map_err(|e| e.to_string())?;
        self.catalogue.apply(feed, &event.method, &event.entity, event.entity_parent_id.as_deref());
        let time = event.notification_event_time_created.map(|t| t.to_utc()).unwrap_or_else(Utc::now);
        self.store.push(feed, StoredEvent { id: event.event_id, time, json });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn patch_merges_only_present_members_and_ids_are_shared() {
        let mut f = Feeds::new();
        let t = WapDateTime::parse("2015-05-28T14:02:11.207").unwrap();
        let a = f.commit(
            FeedKind::Plans,
            EventMethod::Post,
            &json!({"Id": "P1", "DisplayName": "One", "State": 0}),
            None,
            t,
        );
        let b = f.commit(FeedKind::Addons, EventMethod::Post, &json!({"Id": "A1"}), None, t);
        let c = f.commit(
            FeedKind::Plans,
            EventMethod::Patch,
            &json!({"Id": "P1", "State": 1, "DisplayName": null}),
            None,
            t,
        );
        assert_eq!((a, b, c), (1, 2, 3));
        assert_eq!(f.catalogue.plans["p1"], json!({"Id": "P1", "DisplayName": "One", "State": 1}));
        let plans: Vec<i64> = f.store.all(FeedKind::Plans).iter().map(|e| e.id).collect();
        assert_eq!(plans, vec![1, 3]);
        assert_eq!(f.store.page(FeedKind::Plans, 2, 10)[0]["EventId"], 3);
        assert_eq!(f.store.page(FeedKind::Plans, 2, 10)[0]["NotificationEventTimeCreated"], "2015-05-28T14:02:11.207");
    }
}
