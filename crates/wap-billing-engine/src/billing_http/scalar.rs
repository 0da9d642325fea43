//! Tolerant reading of PHP's JSON scalars: ids and amounts as strings or numbers, empty values as `""`, `null` or
//! `0`, and collections keyed by id that PHP writes as `[]` when empty.

use serde_json::{Map, Value};

/// A non-negative integer from a JSON number or a decimal string (surrounding blanks allowed).
pub fn as_u64(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// A decimal number from a JSON number or a string (`"6.00"`); `""` is `None`.
pub fn as_f64(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok().filter(|f: &f64| f.is_finite()),
        _ => None,
    }
}

/// A string field: strings as they are, numbers and booleans as their text, anything else as `""`.
pub fn as_text(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::Bool(b)) => b.to_string(),
        _ => String::new(),
    }
}

/// One entry of a keyed collection: its key (or array index) and its object.
pub type KeyedEntry<'a> = (String, &'a Map<String, Value>);

/// The entries of a collection that is either an object keyed by id (`{"236": {…}, "235": {…}}`) or an array
/// (`[{…}]`); an empty one may be `[]`, `{}`, `""`, `null` or missing. Entries come in the order written; an
/// entry that is not an object is reported by its key or index.
pub fn keyed_entries(v: Option<&Value>) -> Result<Vec<KeyedEntry<'_>>, String> {
    match v {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(s)) if s.is_empty() => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, item)| item.as_object().map(|o| (i.to_string(), o)).ok_or_else(|| format!("[{i}]")))
            .collect(),
        Some(Value::Object(map)) => map
            .iter()
            .map(|(k, item)| item.as_object().map(|o| (k.clone(), o)).ok_or_else(|| format!(".{k}")))
            .collect(),
        Some(_) => Err(String::new()),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn scalars_as_strings_or_numbers() {
        assert_eq!(as_u64(&json!("8")), Some(8));
        assert_eq!(as_u64(&json!(8)), Some(8));
        assert_eq!(as_u64(&json!(" 9 ")), Some(9));
        assert_eq!(as_u64(&json!("x")), None);
        assert_eq!(as_f64(&json!("6.00")), Some(6.0));
        assert_eq!(as_f64(&json!("")), None);
        assert_eq!(as_text(Some(&json!(2))), "2");
        assert_eq!(as_text(None), "");
    }

    #[test]
    fn keyed_collections_in_every_shape() {
        let keyed = json!({"236": {"id": "236"}, "235": {"id": "235"}});
        let e = keyed_entries(Some(&keyed)).unwrap();
        assert_eq!(e.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(), ["235", "236"]);
        for empty in [json!([]), json!({}), json!(""), json!(null)] {
            assert!(keyed_entries(Some(&empty)).unwrap().is_empty(), "{empty}");
        }
        assert!(keyed_entries(None).unwrap().is_empty());
        assert_eq!(keyed_entries(Some(&json!([{"id": 1}]))).unwrap().len(), 1);
        assert_eq!(keyed_entries(Some(&json!({"7": 1}))).unwrap_err(), ".7");
        assert!(keyed_entries(Some(&json!(5))).is_err());
    }
}
