//! The spec's approval/pricing exchange table (`testdata/spec/fixtures/approval/requests.json`), replayed over
//! real HTTP with hyper's low-level client against a served responder configured from the file's `config` block
//! (each case gets its own server, since a case's `override` changes the configuration and two cases share an
//! `EventId`).
#![allow(deprecated)] // also exercises ResponderConfig::from_settings, deprecated for ResponderSettings

mod common;

use std::sync::Arc;

use serde_json::Value;
use wap_responder::{PriceTable, Responder, ResponderConfig};

use common::{fixture, send, start, CatalogApprover};

fn strings(v: &Value) -> Vec<String> {
    v.as_array().map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_owned)).collect()).unwrap_or_default()
}

/// The `config` block as setting strings (`true` → "true"), for `ResponderConfig::from_settings`.
fn settings(config: &serde_json::Map<String, Value>) -> Vec<(String, String)> {
    config
        .iter()
        .filter_map(|(k, v)| match v {
            Value::String(s) => Some((k.clone(), s.clone())),
            Value::Bool(b) => Some((k.clone(), b.to_string())),
            Value::Number(n) => Some((k.clone(), n.to_string())),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn every_exchange_of_the_spec_table_gets_the_expected_answer() {
    let table: Value = serde_json::from_slice(&fixture("requests.json")).unwrap();
    let base = table["config"].as_object().unwrap().clone();
    let cases = table["cases"].as_array().unwrap();
    assert!(cases.len() >= 14, "the table has all its cases");
    let mut checked = 0;
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let mut config = base.clone();
        if let Some(o) = case["override"].as_object() {
            for (k, v) in o {
                config.insert(k.clone(), v.clone());
            }
        }
        let responder_config = ResponderConfig::from_settings(settings(&config)).unwrap();
        assert_eq!(responder_config.base_path, "/wap/");
        let plans = strings(&config["mappedPlans"]);
        let add_ons = strings(&config["mappedAddOns"]);
        let subscriptions = strings(&config["knownSubscriptions"]);
        let approver = Arc::new(CatalogApprover::new(
            plans.iter().map(String::as_str),
            add_ons.iter().map(String::as_str),
            subscriptions.iter().map(String::as_str),
        ));
        let mut prices = PriceTable::new();
        for (id, price) in config["prices"].as_object().unwrap() {
            // The table does not say which ids are plans; register each id under both kinds.
            prices = prices.plan(id, price.as_str().unwrap()).add_on(id, price.as_str().unwrap());
        }
        let server = start(Responder::with_pricing(approver.clone(), prices, responder_config)).await;

        let headers: Vec<(String, String)> = case["headers"]
            .as_object()
            .map(|h| h.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned())).collect())
            .unwrap_or_default();
        let header_refs: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let body = match (case["bodyFile"].as_str(), case["rawBody"].as_str()) {
            (Some(file), _) => fixture(file),
            (None, Some(raw)) => raw.as_bytes().to_vec(),
            (None, None) => Vec::new(),
        };
        let answer = send(
            server.local_addr(),
            case["method"].as_str().unwrap(),
            case["path"].as_str().unwrap(),
            &header_refs,
            &body,
        )
        .await;

        let expected = case["expectStatus"].as_u64().unwrap() as u16;
        assert_eq!(answer.status, expected, "case {name:?}: body {:?}", answer.text());
        if let Some(ct) = case["expectContentType"].as_str() {
            assert_eq!(answer.header("content-type"), Some(ct), "case {name:?}");
        }
        if let Some(file) = case["expectBodyFile"].as_str() {
            let want: Value = serde_json::from_slice(&fixture(file)).unwrap();
            let got: Value = serde_json::from_slice(&answer.body)
                .unwrap_or_else(|e| panic!("case {name:?}: body {:?} is not JSON: {e}", answer.text()));
            assert_eq!(got, want, "case {name:?}");
        }
        match expected {
            401 => {
                assert_eq!(answer.header("www-authenticate"), Some("Basic realm=\"wap-billing\""), "case {name:?}");
                assert_eq!(approver.calls(), 0, "case {name:?}: refused before any decision");
            }
            400 => assert!(!answer.body.is_empty(), "case {name:?}: a 400 says what was wrong"),
            403 => assert!(answer.text().contains("not mapped"), "case {name:?}: the reason is the body"),
            _ => {}
        }
        if name.contains("update") {
            assert_eq!(approver.calls(), 0, "case {name:?}: updates never reach the approver");
        }
        checked += 1;
        server.shutdown().await;
    }
    assert_eq!(checked, cases.len());
}
