//! [`UsageEvent`]: one element of the six `/billing/*` feeds, and the body of an approval call.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, DeserializeOwned, MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::datetime::WapDateTime;
use crate::method::EventMethod;
use crate::states::NotificationState;
use crate::wire::{name_matches, Extra};

/// One event of a `/billing/*` feed (docs/protocol/usage-service.md §3.2), generic over its entity type.
///
/// Besides the typed [`entity`](UsageEvent::entity) the event keeps the entity's JSON text exactly as it arrived
/// ([`UsageEvent::raw_entity`]), because the `planAddons` and `planServices` shapes are undocumented guesses and a
/// consumer must be able to look at what WAP really sent.
#[derive(Clone)]
pub struct UsageEvent<T> {
    /// `EventId`: the event sequence number, the cursor of the feed.
    pub event_id: i64,
    /// `State`: where the event stands in approval; pull feeds apply only committed events.
    pub state: NotificationState,
    /// `Method`: Post, Put, Patch, Delete or a kept unknown verb.
    pub method: EventMethod,
    /// `Entity`: the typed entity. In a Patch only changed members are `Some`.
    pub entity: T,
    /// `EntityParentId`: the parent (plan for plan links, subscription for subscription add-ons).
    pub entity_parent_id: Option<String>,
    /// `NotificationEventTimeCreated`: when WAP recorded the event.
    pub notification_event_time_created: Option<WapDateTime>,
    /// Unknown envelope members (e.g. `CorrelationId`), kept and written back.
    pub extra: Extra,
    raw_entity: Box<str>,
}

impl<T: serde::Serialize> UsageEvent<T> {
    /// A new event; its raw entity JSON is the serialized `entity`.
    pub fn new(event_id: i64, state: NotificationState, method: EventMethod, entity: T) -> Self {
        let raw_entity = serde_json::to_string(&entity).unwrap_or_else(|_| "null".to_owned()).into_boxed_str();
        UsageEvent {
            event_id,
            state,
            method,
            entity,
            entity_parent_id: None,
            notification_event_time_created: None,
            extra: Extra::new(),
            raw_entity,
        }
    }

    /// Sets `EntityParentId`.
    pub fn with_parent(mut self, parent: impl Into<String>) -> Self {
        self.entity_parent_id = Some(parent.into());
        self
    }

    /// Sets `NotificationEventTimeCreated`.
    pub fn with_time_created(mut self, time: WapDateTime) -> Self {
        self.notification_event_time_created = Some(time);
        self
    }

    /// Replaces the entity (and its raw JSON).
    pub fn set_entity(&mut self, entity: T) {
        if let Ok(raw) = serde_json::to_string(&entity) {
            self.raw_entity = raw.into_boxed_str();
        }
        self.entity = entity;
    }
}

impl<T> UsageEvent<T> {
    /// The entity's JSON text as received (or as serialized, for events built in code): always one valid JSON
    /// value (`serde_json::value::RawValue::from_string` accepts it).
    pub fn raw_entity(&self) -> &str {
        &self.raw_entity
    }

    /// The same event with its entity mapped (the raw JSON is kept).
    pub fn map_entity<U>(self, f: impl FnOnce(T) -> U) -> UsageEvent<U> {
        UsageEvent {
            event_id: self.event_id,
            state: self.state,
            method: self.method,
            entity: f(self.entity),
            entity_parent_id: self.entity_parent_id,
            notification_event_time_created: self.notification_event_time_created,
            extra: self.extra,
            raw_entity: self.raw_entity,
        }
    }
}

impl<T: fmt::Debug> fmt::Debug for UsageEvent<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UsageEvent")
            .field("event_id", &self.event_id)
            .field("state", &self.state)
            .field("method", &self.method)
            .field("entity", &self.entity)
            .field("entity_parent_id", &self.entity_parent_id)
            .field("notification_event_time_created", &self.notification_event_time_created)
            .field("extra", &self.extra)
            .finish()
    }
}

impl<T: PartialEq> PartialEq for UsageEvent<T> {
    /// Compares the typed members (the raw entity text is not compared).
    fn eq(&self, other: &Self) -> bool {
        self.event_id == other.event_id
            && self.state == other.state
            && self.method == other.method
            && self.entity == other.entity
            && self.entity_parent_id == other.entity_parent_id
            && self.notification_event_time_created == other.notification_event_time_created
            && self.extra == other.extra
    }
}

impl<T: serde::Serialize> serde::Serialize for UsageEvent<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(6 + self.extra.len()))?;
        m.serialize_entry("EventId", &self.event_id)?;
        m.serialize_entry("State", &self.state)?;
        m.serialize_entry("Method", &self.method)?;
        m.serialize_entry("Entity", &self.entity)?;
        m.serialize_entry("EntityParentId", &self.entity_parent_id)?;
        m.serialize_entry("NotificationEventTimeCreated", &self.notification_event_time_created)?;
        for (k, v) in &self.extra {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

enum EnvelopeField {
    EventId,
    State,
    Method,
    Entity,
    EntityParentId,
    TimeCreated,
    Other(String),
}

impl EnvelopeField {
    fn from_key(k: &str) -> Self {
        if name_matches(k, "EventId") {
            EnvelopeField::EventId
        } else if name_matches(k, "State") {
            EnvelopeField::State
        } else if name_matches(k, "Method") {
            EnvelopeField::Method
        } else if name_matches(k, "Entity") {
            EnvelopeField::Entity
        } else if name_matches(k, "EntityParentId") {
            EnvelopeField::EntityParentId
        } else if name_matches(k, "NotificationEventTimeCreated") {
            EnvelopeField::TimeCreated
        } else {
            EnvelopeField::Other(k.to_owned())
        }
    }
}

impl<'de> serde::Deserialize<'de> for EnvelopeField {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = EnvelopeField;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a member name")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<EnvelopeField, E> {
                Ok(EnvelopeField::from_key(v))
            }
        }
        d.deserialize_str(V)
    }
}

/// Reads `Entity`: keeps its raw text and parses the typed entity from it, inside the member so that an error's
/// path names `Entity` and the nested member.
struct EntitySeed<T>(PhantomData<T>);

/// Prefix of an error message that carries the path inside a nested document; [`crate::json`] joins it to the
/// outer path.
pub(crate) const NESTED_PATH_PREFIX: &str = "nested path `";

impl<'de, T: DeserializeOwned> de::DeserializeSeed<'de> for EntitySeed<T> {
    type Value = (T, Box<str>);
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        let raw = match Option::<Box<RawValue>>::deserialize(d)? {
            Some(raw) if raw.get() != "null" => raw,
            _ => return Err(de::Error::custom("`Entity` is null")),
        };
        if let Ok(entity) = serde_json::from_str::<T>(raw.get()) {
            return Ok((entity, raw.into()));
        }
        // Failed: parse again with path tracking to name the bad member.
        let mut inner = serde_json::Deserializer::from_str(raw.get());
        let entity: T = serde_path_to_error::deserialize(&mut inner).map_err(|e| {
            let path = e.path().to_string();
            if path == "." {
                de::Error::custom(e.into_inner())
            } else {
                de::Error::custom(format_args!("{NESTED_PATH_PREFIX}{path}`: {}", e.into_inner()))
            }
        })?;
        Ok((entity, raw.into()))
    }
}

impl<T: DeserializeOwned> UsageEvent<T> {
    /// Parses one event from JSON bytes (a UTF-8 BOM is tolerated); an error names the JSON path of the bad member.
    ///
    /// Faster than deserializing through serde ([`crate::json::from_slice`], same result): the entity is parsed
    /// once, its raw text taken from the input (see [`UsageEvent::try_from_slice`]).
    pub fn from_slice(bytes: &[u8]) -> Result<Self, crate::json::JsonError> {
        match UsageEvent::try_from_slice(bytes) {
            Some(event) => Ok(event),
            None => crate::json::from_slice(bytes),
        }
    }

    /// Parses one event from JSON bytes in a single pass over the entity, or `None` if the bytes are not such an
    /// event (or a member name is written with escapes); [`UsageEvent::from_slice`] then explains the problem.
    ///
    /// The envelope is read member by member, each value with its own `Deserialize` (the rules of the serde path:
    /// names in any case, unknown members kept, a later duplicate wins), and the entity's raw text is the exact
    /// range of input the typed entity was parsed from, so it is not read twice.
    pub fn try_from_slice(bytes: &[u8]) -> Option<Self> {
        single_pass::parse(crate::json::strip_bom(bytes))
    }
}

/// The hand-driven envelope reader behind [`UsageEvent::try_from_slice`].
mod single_pass {
    use serde::de::DeserializeOwned;

    use super::{EnvelopeField, UsageEvent};
    use crate::json::JsonCursor;
    use crate::wire::Extra;

    pub(super) fn parse<T: DeserializeOwned>(b: &[u8]) -> Option<UsageEvent<T>> {
        let mut c = JsonCursor::new(b)?;
        if !c.eat(b'{') || c.peek() == Some(b'}') {
            return None; // not an object, or no members: the serde path names the first missing one
        }
        let (mut event_id, mut state, mut method, mut entity, mut parent, mut created) =
            (None, None, None, None, None, None);
        let mut extra = Extra::new();
        loop {
            let (key, _) = c.value::<&str>()?;
            if !c.eat(b':') {
                return None;
            }
            match EnvelopeField::from_key(key) {
                EnvelopeField::EventId => event_id = Some(c.value()?.0),
                EnvelopeField::State => state = Some(c.value()?.0),
                EnvelopeField::Method => method = Some(c.value()?.0),
                EnvelopeField::Entity => {
                    if c.peek() == Some(b'n') {
                        return None; // "`Entity` is null"
                    }
                    entity = Some(c.value::<T>()?);
                }
                EnvelopeField::EntityParentId => parent = Some(c.value::<Option<String>>()?.0),
                EnvelopeField::TimeCreated => created = Some(c.value::<Option<crate::WapDateTime>>()?.0),
                EnvelopeField::Other(name) => {
                    extra.insert(name, c.value::<serde_json::Value>()?.0);
                }
            }
            if c.eat(b'}') {
                break;
            }
            if !c.eat(b',') {
                return None;
            }
        }
        if !c.at_end() {
            return None; // trailing characters
        }
        let (entity, raw) = entity?;
        Some(UsageEvent {
            event_id: event_id?,
            state: state?,
            method: method?,
            entity,
            entity_parent_id: parent.flatten(),
            notification_event_time_created: created.flatten(),
            extra,
            raw_entity: raw.into(),
        })
    }
}

impl<'de, T: DeserializeOwned> serde::Deserialize<'de> for UsageEvent<T> {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(std::marker::PhantomData<T>);
        impl<'de, T: DeserializeOwned> Visitor<'de> for V<T> {
            type Value = UsageEvent<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object (UsageEvent)")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<UsageEvent<T>, A::Error> {
                let mut event_id = None;
                let mut state = None;
                let mut method = None;
                let mut entity: Option<(T, Box<str>)> = None;
                let mut parent = None;
                let mut created = None;
                let mut extra = Extra::new();
                while let Some(key) = map.next_key::<EnvelopeField>()? {
                    match key {
                        EnvelopeField::EventId => event_id = Some(map.next_value::<i64>()?),
                        EnvelopeField::State => state = Some(map.next_value::<NotificationState>()?),
                        EnvelopeField::Method => method = Some(map.next_value::<EventMethod>()?),
                        EnvelopeField::Entity => entity = Some(map.next_value_seed(EntitySeed(PhantomData))?),
                        EnvelopeField::EntityParentId => parent = Some(map.next_value::<Option<String>>()?),
                        EnvelopeField::TimeCreated => created = Some(map.next_value::<Option<WapDateTime>>()?),
                        EnvelopeField::Other(k) => {
                            extra.insert(k, map.next_value::<serde_json::Value>()?);
                        }
                    }
                }
                let event_id = event_id.ok_or_else(|| de::Error::missing_field("EventId"))?;
                let state = state.ok_or_else(|| de::Error::missing_field("State"))?;
                let method = method.ok_or_else(|| de::Error::missing_field("Method"))?;
                let (entity, raw_entity) = match entity {
                    Some(parsed) => parsed,
                    None => return Err(de::Error::missing_field("Entity")),
                };
                Ok(UsageEvent {
                    event_id,
                    state,
                    method,
                    entity,
                    entity_parent_id: parent.flatten(),
                    notification_event_time_created: created.flatten(),
                    extra,
                    raw_entity,
                })
            }
        }
        d.deserialize_map(V(std::marker::PhantomData))
    }
}
