//! Fault injection on the Usage Service: seeded, per path, observable through [`FaultStats`].

use std::time::Duration;

use crate::ids::{hash3, unit};

/// One way the simulated Usage Service misbehaves on a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FaultKind {
    /// `500 Internal Server Error` with an IIS-style HTML body (`text/html`).
    Status500Html,
    /// `503 Service Unavailable` with an empty body.
    Status503Empty,
    /// The headers and about half of the body are sent, then the connection is reset (TCP RST).
    ResetMidBody,
    /// The headers (with the full `Content-Length`, or chunked: the two alternate) and about half of the JSON
    /// body are sent, then the connection is closed cleanly: the client sees a truncated body.
    TruncatedJson,
    /// The answer is correct but sent after this delay.
    Delay(Duration),
    /// The request is never answered (until the client gives up or the simulator shuts down).
    Stall,
}

impl FaultKind {
    /// A short name for logs and the binary's `--faults` flag.
    pub fn name(&self) -> &'static str {
        match self {
            FaultKind::Status500Html => "500",
            FaultKind::Status503Empty => "503",
            FaultKind::ResetMidBody => "reset",
            FaultKind::TruncatedJson => "truncate",
            FaultKind::Delay(_) => "delay",
            FaultKind::Stall => "stall",
        }
    }

    /// Parses a name as written by [`FaultKind::name`]; `delay` takes a millisecond count as `delay:250`.
    pub fn parse(text: &str) -> Option<FaultKind> {
        let t = text.trim().to_ascii_lowercase();
        Some(match t.as_str() {
            "500" | "status500html" => FaultKind::Status500Html,
            "503" | "status503empty" => FaultKind::Status503Empty,
            "reset" | "resetmidbody" => FaultKind::ResetMidBody,
            "truncate" | "truncated" | "truncatedjson" => FaultKind::TruncatedJson,
            "stall" => FaultKind::Stall,
            "delay" => FaultKind::Delay(Duration::from_millis(500)),
            other => {
                let ms = other.strip_prefix("delay:")?.trim_end_matches("ms").parse::<u64>().ok()?;
                FaultKind::Delay(Duration::from_millis(ms))
            }
        })
    }
}

/// Which requests get which faults: seeded, so a run is reproducible.
///
/// A request is eligible when its path matches (all feed paths by default, compared ignoring ASCII case); the
/// *n*-th eligible request (counting from 0) is faulted when `n >= after_requests`, fewer than `max_faults`
/// faults were injected, and a draw from `(seed, n)` falls under `rate`. The kind is drawn from `kinds` with the
/// same seed. Requests rejected before routing (bad credentials, unknown path, wrong method) are never
/// eligible.
#[derive(Debug, Clone, PartialEq)]
pub struct FaultPlan {
    pub(crate) seed: u64,
    pub(crate) rate: f64,
    pub(crate) kinds: Vec<FaultKind>,
    pub(crate) paths: Option<Vec<String>>,
    pub(crate) max_faults: Option<u64>,
    pub(crate) after_requests: u64,
}

impl Default for FaultPlan {
    fn default() -> Self {
        FaultPlan::none()
    }
}

impl FaultPlan {
    /// No faults.
    pub fn none() -> Self {
        FaultPlan { seed: 1, rate: 0.0, kinds: Vec::new(), paths: None, max_faults: None, after_requests: 0 }
    }

    /// A plan with this seed, a rate of 0.1 and every kind (delays of 200 ms); refine with the other methods.
    pub fn seeded(seed: u64) -> Self {
        FaultPlan {
            seed,
            rate: 0.1,
            kinds: vec![
                FaultKind::Status500Html,
                FaultKind::Status503Empty,
                FaultKind::ResetMidBody,
                FaultKind::TruncatedJson,
                FaultKind::Delay(Duration::from_millis(200)),
            ],
            ..FaultPlan::none()
        }
    }

    /// Every eligible request gets `kind` (combine with [`FaultPlan::max_faults`] to let clients recover).
    pub fn always(kind: FaultKind) -> Self {
        FaultPlan { rate: 1.0, kinds: vec![kind], ..FaultPlan::none() }
    }

    /// The share of eligible requests that get a fault (0.0–1.0).
    pub fn rate(mut self, rate: f64) -> Self {
        self.rate = if rate.is_finite() { rate.clamp(0.0, 1.0) } else { 0.0 };
        self
    }

    /// The kinds drawn from.
    pub fn kinds(mut self, kinds: &[FaultKind]) -> Self {
        self.kinds = kinds.to_vec();
        self
    }

    /// Only requests to these paths are eligible (e.g. `["/usage"]`, `["/billing/plans"]`).
    pub fn only_paths(mut self, paths: &[&str]) -> Self {
        self.paths = Some(paths.iter().map(|p| p.trim_end_matches('/').to_owned()).collect());
        self
    }

    /// At most `n` faults in total; afterwards every request is answered normally.
    pub fn max_faults(mut self, n: u64) -> Self {
        self.max_faults = Some(n);
        self
    }

    /// The first `n` eligible requests are answered normally.
    pub fn after_requests(mut self, n: u64) -> Self {
        self.after_requests = n;
        self
    }

    fn eligible(&self, path: &str) -> bool {
        match &self.paths {
            None => true,
            Some(paths) => {
                let p = path.trim_end_matches('/');
                paths.iter().any(|x| x.eq_ignore_ascii_case(p))
            }
        }
    }
}

/// How many faults of each kind were injected since start ([`WapSim::set_faults`](crate::WapSim::set_faults)
/// does not reset the counters).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct FaultStats {
    /// [`FaultKind::Status500Html`] answers.
    pub status_500_html: u64,
    /// [`FaultKind::Status503Empty`] answers.
    pub status_503_empty: u64,
    /// [`FaultKind::ResetMidBody`] connections reset.
    pub reset_mid_body: u64,
    /// [`FaultKind::TruncatedJson`] bodies cut.
    pub truncated_json: u64,
    /// [`FaultKind::Delay`] answers delayed.
    pub delays: u64,
    /// [`FaultKind::Stall`] requests never answered.
    pub stalls: u64,
}

impl FaultStats {
    /// All faults injected.
    pub fn total(&self) -> u64 {
        self.status_500_html
            + self.status_503_empty
            + self.reset_mid_body
            + self.truncated_json
            + self.delays
            + self.stalls
    }

    /// Faults of one kind (any delay for [`FaultKind::Delay`]).
    pub fn count(&self, kind: FaultKind) -> u64 {
        match kind {
            FaultKind::Status500Html => self.status_500_html,
            FaultKind::Status503Empty => self.status_503_empty,
            FaultKind::ResetMidBody => self.reset_mid_body,
            FaultKind::TruncatedJson => self.truncated_json,
            FaultKind::Delay(_) => self.delays,
            FaultKind::Stall => self.stalls,
        }
    }

    fn record(&mut self, kind: FaultKind) {
        match kind {
            FaultKind::Status500Html => self.status_500_html += 1,
            FaultKind::Status503Empty => self.status_503_empty += 1,
            FaultKind::ResetMidBody => self.reset_mid_body += 1,
            FaultKind::TruncatedJson => self.truncated_json += 1,
            FaultKind::Delay(_) => self.delays += 1,
            FaultKind::Stall => self.stalls += 1,
        }
    }
}

/// The running injector: the plan, its counters and the stats.
#[derive(Debug, Default)]
pub(crate) struct FaultInjector {
    plan: FaultPlan,
    eligible_seen: u64,
    injected: u64,
    pub(crate) stats: FaultStats,
}

impl FaultInjector {
    pub(crate) fn new(plan: FaultPlan) -> Self {
        FaultInjector { plan, eligible_seen: 0, injected: 0, stats: FaultStats::default() }
    }

    /// Replaces the plan; the request and fault counters of the plan restart, the stats do not.
    pub(crate) fn set_plan(&mut self, plan: FaultPlan) {
        self.plan = plan;
        self.eligible_seen = 0;
        self.injected = 0;
    }

    /// The fault for a request to `path`, if any, with a per-fault variant bit (used to alternate framings).
    pub(crate) fn decide(&mut self, path: &str) -> Option<(FaultKind, bool)> {
        if self.plan.kinds.is_empty() || self.plan.rate <= 0.0 || !self.plan.eligible(path) {
            return None;
        }
        let n = self.eligible_seen;
        self.eligible_seen += 1;
        if n < self.plan.after_requests || self.plan.max_faults.is_some_and(|m| self.injected >= m) {
            return None;
        }
        if unit(hash3(self.plan.seed, 11, n)) >= self.plan.rate {
            return None;
        }
        let kind = self.plan.kinds[(hash3(self.plan.seed, 12, n) % self.plan.kinds.len() as u64) as usize];
        let variant = self.stats.count(kind) % 2 == 1;
        self.injected += 1;
        self.stats.record(kind);
        Some((kind, variant))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_are_seeded_limited_and_path_scoped() {
        let plan = FaultPlan::seeded(42).rate(0.5).only_paths(&["/usage"]);
        let mut a = FaultInjector::new(plan.clone());
        let mut b = FaultInjector::new(plan);
        let da: Vec<_> = (0..200).map(|_| a.decide("/usage")).collect();
        let db: Vec<_> = (0..200).map(|_| b.decide("/Usage/")).collect();
        assert_eq!(da, db);
        let hits = da.iter().filter(|d| d.is_some()).count();
        assert!((50..150).contains(&hits), "{hits}");
        assert_eq!(a.decide("/billing/plans"), None);
        let mut c = FaultInjector::new(FaultPlan::always(FaultKind::Stall).max_faults(2).after_requests(1));
        let d: Vec<_> = (0..5).map(|_| c.decide("/usage").map(|x| x.0)).collect();
        assert_eq!(d, vec![None, Some(FaultKind::Stall), Some(FaultKind::Stall), None, None]);
        assert_eq!(c.stats.stalls, 2);
        assert_eq!(FaultKind::parse("delay:250"), Some(FaultKind::Delay(Duration::from_millis(250))));
        assert_eq!(FaultKind::parse("reset"), Some(FaultKind::ResetMidBody));
        assert_eq!(FaultKind::parse("nonsense"), None);
    }
}
