//! Prometheus metrics of an [`AdapterStatus`] (feature `metrics`): `GET /metrics`.
//!
//! Encoded by [`prometheus_client`], the Prometheus project's Rust client, in the OpenMetrics text format that
//! Prometheus scrapes (escaping, `_total` suffixes of counters and the closing `# EOF` are its job). Each scrape
//! builds the families from one status snapshot, so the numbers of one scrape are consistent with each other and
//! with `GET /status`.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::report::{phase_name, AdapterStatus};
use crate::status::Phase;

/// The content type of [`render`]'s output (OpenMetrics 1.0 text).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

type Labels = Vec<(&'static str, String)>;

/// The families of one scrape, registered as they are first used.
struct Out {
    registry: Registry,
    gauges: Vec<(&'static str, Family<Labels, Gauge>)>,
    counters: Vec<(&'static str, Family<Labels, Counter>)>,
}

impl Out {
    /// Declares a family. `kind` is `gauge` or `counter`; a counter's name ends in `_total`, which the encoder adds
    /// back to its samples.
    fn family(&mut self, name: &'static str, kind: &str, help: &str) {
        let help = help.trim_end_matches('.');
        if kind == "counter" {
            let family = Family::<Labels, Counter>::default();
            let base = name.strip_suffix("_total").unwrap_or(name);
            self.registry.register(base, help, family.clone());
            self.counters.push((name, family));
        } else {
            let family = Family::<Labels, Gauge>::default();
            self.registry.register(name, help, family.clone());
            self.gauges.push((name, family));
        }
    }

    fn sample(&mut self, name: &'static str, labels: &[(&'static str, &str)], value: f64) {
        let labels: Labels = labels.iter().map(|(k, v)| (*k, (*v).to_owned())).collect();
        if let Some((_, family)) = self.counters.iter().find(|(n, _)| *n == name) {
            family.get_or_create(&labels).inc_by(value.max(0.0) as u64);
        } else if let Some((_, family)) = self.gauges.iter().find(|(n, _)| *n == name) {
            family.get_or_create(&labels).set(value as i64);
        } else {
            debug_assert!(false, "metric {name} sampled before its family was declared");
        }
    }

    fn finish(self) -> String {
        let mut text = String::with_capacity(8192);
        encode(&mut text, &self.registry).expect("writing to a String cannot fail");
        text
    }
}

fn flag(b: bool) -> f64 {
    if b {
        1.0
    } else {
        0.0
    }
}

/// Renders the status as OpenMetrics text. Metric names start with `wap_billing_`; counters count since this
/// instance started. Every value is an integer (ids, counts, 0/1 flags).
pub fn render(status: &AdapterStatus) -> String {
    let mut o = Out { registry: Registry::default(), gauges: Vec::new(), counters: Vec::new() };

    o.family("wap_billing_catching_up", "gauge", "1 while a processor this instance leads is catching up.");
    o.sample("wap_billing_catching_up", &[], flag(status.catching_up));
    o.family("wap_billing_state_store_up", "gauge", "1 when the state store answered this scrape.");
    o.sample("wap_billing_state_store_up", &[], flag(status.store_error.is_none()));

    o.family("wap_billing_processor_leader", "gauge", "1 when this instance holds the processor's lease.");
    for p in &status.processors {
        o.sample("wap_billing_processor_leader", &[("processor", p.processor.name())], flag(p.is_leader));
    }
    o.family("wap_billing_processor_halted", "gauge", "1 while the processor is halted for an operator.");
    for p in &status.processors {
        o.sample("wap_billing_processor_halted", &[("processor", p.processor.name())], flag(p.halt.is_some()));
    }
    o.family("wap_billing_processor_lease_generation", "gauge", "The processor's lease generation (fencing token).");
    for p in &status.processors {
        if let Some(l) = &p.lease {
            o.sample(
                "wap_billing_processor_lease_generation",
                &[("processor", p.processor.name())],
                l.generation as f64,
            );
        }
    }
    o.family("wap_billing_processor_phase", "gauge", "1 for the phase this instance's processor is in.");
    const PHASES: [Phase; 6] =
        [Phase::Starting, Phase::Standby, Phase::CatchingUp, Phase::CaughtUp, Phase::Halted, Phase::Stopped];
    for p in &status.processors {
        let Some(current) = p.phase() else { continue };
        for phase in PHASES {
            let labels = [("processor", p.processor.name()), ("phase", phase_name(phase))];
            o.sample("wap_billing_processor_phase", &labels, flag(phase == current));
        }
    }
    o.family("wap_billing_processor_cycles_total", "counter", "Completed polling cycles.");
    for p in &status.processors {
        if let Some(l) = &p.local {
            o.sample("wap_billing_processor_cycles_total", &[("processor", p.processor.name())], l.cycles as f64);
        }
    }

    let feeds: Vec<_> = status.processors.iter().flat_map(|p| p.feeds.iter().map(move |f| (p, f))).collect();
    o.family("wap_billing_feed_committed_event_id", "gauge", "The last committed EventId of the feed.");
    for (_, f) in &feeds {
        if let Some(c) = f.committed {
            o.sample("wap_billing_feed_committed_event_id", &[("feed", f.feed.name())], c as f64);
        }
    }
    o.family("wap_billing_feed_newest_seen_event_id", "gauge", "The newest EventId this instance saw on the feed.");
    for (_, f) in &feeds {
        if let Some(n) = f.newest_seen {
            o.sample("wap_billing_feed_newest_seen_event_id", &[("feed", f.feed.name())], n as f64);
        }
    }
    o.family("wap_billing_feed_lag_event_ids", "gauge", "Newest EventId seen minus the committed one.");
    for (_, f) in &feeds {
        if let Some(lag) = f.lag {
            o.sample("wap_billing_feed_lag_event_ids", &[("feed", f.feed.name())], lag as f64);
        }
    }
    o.family("wap_billing_feed_held", "gauge", "1 while the feed is held at a PendingApproval event.");
    for (_, f) in &feeds {
        o.sample("wap_billing_feed_held", &[("feed", f.feed.name())], flag(f.hold.is_some()));
    }
    o.family("wap_billing_feed_fetches_total", "counter", "Pages requested from the Usage Service.");
    for (_, f) in &feeds {
        o.sample("wap_billing_feed_fetches_total", &[("feed", f.feed.name())], f.fetches as f64);
    }
    o.family("wap_billing_feed_fetch_errors_total", "counter", "Failed page requests (WAP side; retried).");
    for (_, f) in &feeds {
        o.sample("wap_billing_feed_fetch_errors_total", &[("feed", f.feed.name())], f.fetch_errors as f64);
    }
    o.family("wap_billing_feed_records_fetched_total", "counter", "Records and events received.");
    for (_, f) in &feeds {
        o.sample("wap_billing_feed_records_fetched_total", &[("feed", f.feed.name())], f.records_fetched as f64);
    }
    o.family("wap_billing_feed_applied_total", "counter", "Events (usage: records) applied by this instance.");
    for (p, f) in &feeds {
        if let Some(l) = p.local.as_ref().and_then(|s| s.feed(f.feed)) {
            o.sample("wap_billing_feed_applied_total", &[("feed", f.feed.name())], l.applied as f64);
        }
    }
    o.family("wap_billing_feed_skipped_rejected_total", "counter", "Rejected events skipped by this instance.");
    for (p, f) in &feeds {
        if let Some(l) = p.local.as_ref().and_then(|s| s.feed(f.feed)) {
            o.sample("wap_billing_feed_skipped_rejected_total", &[("feed", f.feed.name())], l.skipped_rejected as f64);
        }
    }
    o.family(
        "wap_billing_feed_history_lost_event_ids",
        "gauge",
        "Ids WAP purged before they were read, while the processor is halted on them (0 otherwise).",
    );
    for (p, f) in &feeds {
        let lost = p.history_lost(f.feed).map_or(0, |(from, to)| to - from + 1);
        o.sample("wap_billing_feed_history_lost_event_ids", &[("feed", f.feed.name())], lost as f64);
    }
    o.family("wap_billing_feed_consecutive_fetch_failures", "gauge", "Failed fetches in a row right now.");
    for (p, f) in &feeds {
        if let Some(l) = p.local.as_ref().and_then(|s| s.feed(f.feed)) {
            o.sample("wap_billing_feed_consecutive_fetch_failures", &[("feed", f.feed.name())], l.wap_failures as f64);
        }
    }
    o.finish()
}
