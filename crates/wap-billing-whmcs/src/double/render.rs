//! How the double writes answers: numbers as strings or numbers, empty lists in PHP's shapes, JSON or XML.

use serde_json::{Map, Value};

use super::config::{EmptyList, Numbers};
use super::form::Form;

/// The answer style of one request.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Render {
    pub(crate) numbers: Numbers,
    pub(crate) empty_list: EmptyList,
}

impl Render {
    /// An id or count.
    pub(crate) fn n(&self, n: u64) -> Value {
        match self.numbers {
            Numbers::Strings => Value::String(n.to_string()),
            Numbers::Integers => Value::from(n),
        }
    }

    /// `{inner: [items]}`, or the configured empty shape.
    pub(crate) fn nested(&self, inner: &str, items: Vec<Value>) -> Value {
        if items.is_empty() {
            return match self.empty_list {
                EmptyList::Nested | EmptyList::Missing => serde_json::json!({ inner: [] }),
                EmptyList::BareArray => Value::Array(vec![]),
            };
        }
        serde_json::json!({ inner: items })
    }

    /// Puts `outer: {inner: [items]}` in `m`, or the configured empty shape (which may be no key at all).
    pub(crate) fn put_list(&self, m: &mut Map<String, Value>, outer: &str, inner: &str, items: Vec<Value>) {
        if items.is_empty() && self.empty_list == EmptyList::Missing {
            return;
        }
        m.insert(outer.into(), self.nested(inner, items));
    }

    /// A paginated list answer (`limitstart`, `limitnum` default 25) with `totalresults`, `startnumber`,
    /// `numreturned`.
    pub(crate) fn page(&self, f: &Form, outer: &str, inner: &str, items: Vec<Value>) -> Map<String, Value> {
        let start = f.id("limitstart").unwrap_or(0) as usize;
        let num = f.id("limitnum").unwrap_or(25) as usize;
        let total = items.len();
        let page: Vec<Value> = items.into_iter().skip(start).take(num).collect();
        let mut m = Map::new();
        m.insert("result".into(), "success".into());
        m.insert("totalresults".into(), self.n(total as u64));
        m.insert("startnumber".into(), self.n(start as u64));
        m.insert("numreturned".into(), self.n(page.len() as u64));
        self.put_list(&mut m, outer, inner, page);
        m
    }
}

/// The answer as `<whmcsapi>` XML (`responsetype=xml`).
pub(crate) fn to_xml(m: &Map<String, Value>) -> String {
    fn write(out: &mut String, key: &str, v: &Value) {
        match v {
            Value::Array(items) => items.iter().for_each(|i| write(out, key, i)),
            Value::Object(o) => {
                out.push_str(&format!("<{key}>"));
                o.iter().for_each(|(k, v)| write(out, k, v));
                out.push_str(&format!("</{key}>"));
            }
            Value::Null => out.push_str(&format!("<{key}></{key}>")),
            Value::String(s) => {
                out.push_str(&format!("<{key}><![CDATA[{}]]></{key}>", s.replace("]]>", "]]]]><![CDATA[>")))
            }
            other => out.push_str(&format!("<{key}>{other}</{key}>")),
        }
    }
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<whmcsapi version=\"8\">");
    m.iter().for_each(|(k, v)| write(&mut out, k, v));
    out.push_str("</whmcsapi>");
    out
}
