//! Tolerant reading of WHMCS's JSON: numbers as strings or numbers, doubly nested lists with PHP's empty-array
//! shapes, comma-separated id lists.

use serde_json::{Map, Value};

use crate::error::Error;

/// A JSON object of a WHMCS answer, with the action (for error context).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Obj<'a> {
    pub(crate) action: &'a str,
    pub(crate) path: &'a str,
    pub(crate) map: &'a Map<String, Value>,
}

impl<'a> Obj<'a> {
    pub(crate) fn new(action: &'a str, path: &'a str, map: &'a Map<String, Value>) -> Self {
        Obj { action, path, map }
    }

    fn err(&self, key: &str, detail: impl Into<String>) -> Error {
        Error::Decode { action: self.action.to_owned(), path: format!("{}.{key}", self.path), detail: detail.into() }
    }

    /// A required integer: a JSON number or a decimal string.
    pub(crate) fn id(&self, key: &str) -> Result<u64, Error> {
        match self.map.get(key) {
            None | Some(Value::Null) => Err(self.err(key, "missing")),
            Some(v) => as_u64(v).ok_or_else(|| self.err(key, format!("expected an id, found {v}"))),
        }
    }

    /// An optional integer; missing, `null`, `""` and `0` read as `None`.
    pub(crate) fn opt_id(&self, key: &str) -> Result<Option<u64>, Error> {
        match self.map.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
            Some(v) => match as_u64(v) {
                Some(0) => Ok(None),
                Some(n) => Ok(Some(n)),
                None => Err(self.err(key, format!("expected an id, found {v}"))),
            },
        }
    }

    /// A string field; numbers are read as their text, missing and `null` as `""`.
    pub(crate) fn text(&self, key: &str) -> String {
        match self.map.get(key) {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            Some(Value::Bool(b)) => b.to_string(),
            _ => String::new(),
        }
    }

    /// The entries of a doubly nested list such as `"clients":{"client":[…]}`. Reads every shape WHMCS (PHP)
    /// produces for it: the nested array, a single nested object, a bare array, and for an empty list `[]`,
    /// `{}`, `""`, `{"client":[]}`, `null` or a missing key. Entries that are not objects are an error.
    pub(crate) fn list(&self, outer: &str, inner: &str) -> Result<Vec<&'a Map<String, Value>>, Error> {
        let items: Vec<&Value> = match self.map.get(outer) {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::String(s)) if s.is_empty() => Vec::new(),
            Some(Value::Array(a)) => a.iter().collect(),
            Some(Value::Object(o)) => match o.get(inner) {
                None | Some(Value::Null) => Vec::new(),
                Some(Value::String(s)) if s.is_empty() => Vec::new(),
                Some(Value::Array(a)) => a.iter().collect(),
                Some(v @ Value::Object(_)) => vec![v],
                Some(v) => return Err(self.err(outer, format!("expected a list in {inner:?}, found {v}"))),
            },
            Some(v) => return Err(self.err(outer, format!("expected a list, found {v}"))),
        };
        items
            .into_iter()
            .enumerate()
            .map(|(i, v)| v.as_object().ok_or_else(|| self.err(&format!("{outer}.{inner}[{i}]"), "not an object")))
            .collect()
    }

    /// A comma-separated id list (`"1,2"`), a single number, or a JSON array of ids. Missing or `""` is empty.
    pub(crate) fn ids(&self, key: &str) -> Result<Vec<u64>, Error> {
        let bad = |v: &Value| self.err(key, format!("expected ids, found {v}"));
        match self.map.get(key) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::String(s)) => s
                .split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(|p| p.parse().map_err(|_| bad(&Value::String(s.clone()))))
                .collect(),
            Some(v @ Value::Number(_)) => as_u64(v).map(|n| vec![n]).ok_or_else(|| bad(v)),
            Some(Value::Array(a)) => a.iter().map(|v| as_u64(v).ok_or_else(|| bad(v))).collect(),
            Some(v) => Err(bad(v)),
        }
    }
}

/// A non-negative integer from a JSON number or a decimal string.
pub(crate) fn as_u64(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn obj(v: &Value) -> Obj<'_> {
        Obj::new("GetClients", "$", v.as_object().unwrap())
    }

    #[test]
    fn every_empty_list_shape_is_empty() {
        for v in [
            json!({}),
            json!({"clients": null}),
            json!({"clients": ""}),
            json!({"clients": []}),
            json!({"clients": {}}),
            json!({"clients": {"client": []}}),
            json!({"clients": {"client": ""}}),
        ] {
            assert!(obj(&v).list("clients", "client").unwrap().is_empty(), "{v}");
        }
    }

    #[test]
    fn lists_nested_single_and_bare() {
        let nested = json!({"clients": {"client": [{"id": 1}, {"id": "2"}]}});
        let ids: Vec<u64> =
            obj(&nested).list("clients", "client").unwrap().iter().map(|m| as_u64(&m["id"]).unwrap()).collect();
        assert_eq!(ids, [1, 2]);
        let single = json!({"clients": {"client": {"id": "7"}}});
        assert_eq!(obj(&single).list("clients", "client").unwrap().len(), 1);
        let bare = json!({"clients": [{"id": 3}]});
        assert_eq!(obj(&bare).list("clients", "client").unwrap().len(), 1);
        let bad = json!({"clients": {"client": [1]}});
        let err = obj(&bad).list("clients", "client").unwrap_err().to_string();
        assert!(err.contains("$.clients.client[0]"), "{err}");
    }

    #[test]
    fn numbers_as_strings_or_numbers() {
        let v = json!({"a": "12", "b": 13, "c": "", "d": "x", "e": 0, "ids": "1, 2,3", "one": 4, "arr": ["5", 6]});
        let o = obj(&v);
        assert_eq!(o.id("a").unwrap(), 12);
        assert_eq!(o.id("b").unwrap(), 13);
        assert_eq!(o.opt_id("c").unwrap(), None);
        assert_eq!(o.opt_id("e").unwrap(), None);
        assert!(o.id("d").unwrap_err().to_string().contains("$.d"));
        assert!(o.id("zz").unwrap_err().to_string().contains("missing"));
        assert_eq!(o.ids("ids").unwrap(), [1, 2, 3]);
        assert_eq!(o.ids("one").unwrap(), [4]);
        assert_eq!(o.ids("arr").unwrap(), [5, 6]);
        assert_eq!(o.ids("none").unwrap(), Vec::<u64>::new());
        assert_eq!(o.text("b"), "13");
    }
}
