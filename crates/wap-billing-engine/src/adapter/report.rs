//! [`AdapterStatus`] and [`Health`]: what the admin endpoints `GET /status` and `GET /health` answer.

use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use wap_types::FeedKind;

use crate::status::{Phase, ProcessorStatus};
use crate::store::{FeedHold, HaltStatus, LeaseRecord, ProcessorKind};

/// The adapter's status as this instance sees it: per processor its leader (from the lease row), its halt and
/// per feed the committed cursor (all from the state store, so a standby instance reports them too), plus what
/// this instance's own processors report.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct AdapterStatus {
    /// This instance's `InstanceId`.
    pub instance_id: String,
    /// `sqlite` or `postgres`.
    pub state_store: &'static str,
    /// A processor this instance leads is consuming a backlog (a first-run backfill or a large catch-up): tenants'
    /// purchases of plans not synced yet may be denied meanwhile (docs/operations.md).
    pub catching_up: bool,
    /// Both processors, notification first.
    pub processors: Vec<ProcessorReport>,
    /// The endpoint to register with WAP (`-Endpoint`), when this instance serves the responder.
    pub responder_endpoint: Option<String>,
    /// Why the state store could not be read for this report (the report then holds only local data).
    pub store_error: Option<String>,
    /// When the report was made.
    pub at: DateTime<Utc>,
}

/// One processor in an [`AdapterStatus`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ProcessorReport {
    /// Which processor.
    pub processor: ProcessorKind,
    /// `NotificationProcessorEnabled` / `UsageProcessorEnabled` on this instance.
    pub enabled: bool,
    /// The lease row: holder (the leader while `expires_at` is in the future), generation, expiry.
    pub lease: Option<LeaseRecord>,
    /// Whether this instance is the leader.
    pub is_leader: bool,
    /// The stored halt (from any instance).
    pub halt: Option<HaltStatus>,
    /// This instance's processor status (`None` when the processor is not configured here).
    pub local: Option<ProcessorStatus>,
    /// Whether this instance's processor task is alive (`false` when it ended without being stopped, e.g. a
    /// panic outside a handler; `true` when not configured here).
    pub task_running: bool,
    /// One entry per feed, in cycle order.
    pub feeds: Vec<FeedReport>,
}

impl ProcessorReport {
    /// The ids of `feed` WAP purged before they were read, while the processor is halted on them (from the
    /// stored halt, so every instance reports it).
    pub fn history_lost(&self, feed: FeedKind) -> Option<(i64, i64)> {
        self.halt
            .as_ref()
            .filter(|h| h.reason == crate::store::HaltReason::HistoryLost && h.feed == feed)
            .map(|h| (h.event_id, h.last_event_id))
    }

    /// The holder of a live lease (the leader), judged with this machine's clock.
    pub fn leader(&self, now: DateTime<Utc>) -> Option<&str> {
        self.lease.as_ref().filter(|l| l.expires_at > now).and_then(|l| l.holder.as_deref())
    }

    /// Where this instance's processor stands (`None` when not configured here).
    pub fn phase(&self) -> Option<Phase> {
        self.local.as_ref().map(|s| s.phase)
    }
}

/// One feed in a [`ProcessorReport`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct FeedReport {
    /// The feed.
    pub feed: FeedKind,
    /// The last committed `EventId` (state store).
    pub committed: Option<i64>,
    /// The newest `EventId` this instance has seen on the feed since it started.
    pub newest_seen: Option<i64>,
    /// `newest_seen − committed` (0 when nothing newer was seen): an upper bound of the records seen but not
    /// committed yet (ids have gaps). `None` before this instance has fetched the feed.
    pub lag: Option<i64>,
    /// The PendingApproval event the feed is held at (state store).
    pub hold: Option<FeedHold>,
    /// The last successful poll (state store; any instance).
    pub last_poll_at: Option<DateTime<Utc>>,
    /// Pages fetched by this instance since start.
    pub fetches: u64,
    /// Failed fetches (WAP side) by this instance since start.
    pub fetch_errors: u64,
    /// Records received by this instance since start.
    pub records_fetched: u64,
}

/// How the adapter is doing (`GET /health`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HealthState {
    /// Running; nothing needs attention.
    Ok,
    /// Running, but something needs attention: a halted processor, failing fetches, a failing state store seen by
    /// a processor. Responders still answer (HTTP 200).
    Degraded,
    /// The state store cannot be reached, or the adapter is shutting down (HTTP 503).
    Unavailable,
}

impl HealthState {
    /// `ok`, `degraded` or `unavailable`.
    pub fn name(self) -> &'static str {
        match self {
            HealthState::Ok => "ok",
            HealthState::Degraded => "degraded",
            HealthState::Unavailable => "unavailable",
        }
    }
}

/// The answer of `GET /health`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Health {
    /// The verdict.
    pub state: HealthState,
    /// What needs attention, one line each.
    pub problems: Vec<String>,
    /// A processor this instance leads is catching up.
    pub catching_up: bool,
}

impl Health {
    /// The HTTP status of `GET /health`: 200, or 503 when unavailable.
    pub fn http_status(&self) -> u16 {
        if self.state == HealthState::Unavailable {
            503
        } else {
            200
        }
    }

    /// The JSON body of `GET /health`.
    pub fn to_json(&self) -> Value {
        json!({ "status": self.state.name(), "catching_up": self.catching_up, "problems": self.problems })
    }
}

/// The snake-case name of a phase (`caught_up`).
pub fn phase_name(phase: Phase) -> &'static str {
    match phase {
        Phase::Starting => "starting",
        Phase::Standby => "standby",
        Phase::CatchingUp => "catching_up",
        Phase::CaughtUp => "caught_up",
        Phase::Halted => "halted",
        Phase::Stopped => "stopped",
    }
}

fn time(t: Option<DateTime<Utc>>) -> Value {
    t.map_or(Value::Null, |t| Value::String(t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)))
}

/// A halt as JSON (feed, event id, reason, error, attempts, time).
pub(crate) fn halt_json(h: &HaltStatus) -> Value {
    json!({
        "processor": h.processor.name(),
        "feed": h.feed.name(),
        "event_id": h.event_id,
        "last_event_id": h.last_event_id,
        "reason": h.reason.name(),
        "error": h.error,
        "attempts": h.attempts,
        "halted_at": time(Some(h.halted_at)),
    })
}

impl AdapterStatus {
    /// The JSON body of `GET /status`.
    pub fn to_json(&self) -> Value {
        let processors: Vec<Value> = self
            .processors
            .iter()
            .map(|p| {
                let local = p.local.as_ref();
                let feeds: Vec<Value> = p
                    .feeds
                    .iter()
                    .map(|f| {
                        let lf = local.and_then(|s| s.feed(f.feed));
                        json!({
                            "feed": f.feed.name(),
                            "committed": f.committed,
                            "newest_seen": f.newest_seen,
                            "lag": f.lag,
                            "caught_up": lf.map(|l| l.caught_up),
                            "applied": lf.map(|l| l.applied),
                            "skipped_rejected": lf.map(|l| l.skipped_rejected),
                            "held": f.hold.map(|h| json!({ "event_id": h.event_id, "since": time(Some(h.since)) })),
                            "waiting": lf.and_then(|l| l.waiting.as_ref()).map(|w| json!({
                                "event_id": w.event_id, "reason": w.reason, "since": time(Some(w.since)),
                            })),
                            "wap_failures": lf.map(|l| l.wap_failures),
                            "last_wap_error": lf.and_then(|l| l.last_wap_error.clone()),
                            "retention_warning": lf.map(|l| l.retention_warning),
                            "history_lost": p.history_lost(f.feed).map(|(from, to)| json!({ "from": from, "to": to })),
                            "last_poll_at": time(f.last_poll_at),
                            "fetches": f.fetches,
                            "fetch_errors": f.fetch_errors,
                            "records_fetched": f.records_fetched,
                        })
                    })
                    .collect();
                json!({
                    "processor": p.processor.name(),
                    "enabled": p.enabled,
                    "phase": local.map(|s| phase_name(s.phase)),
                    "leader": p.leader(self.at),
                    "is_leader": p.is_leader,
                    "lease": p.lease.as_ref().map(|l| json!({
                        "holder": l.holder, "generation": l.generation, "expires_at": time(Some(l.expires_at)),
                    })),
                    "halted": p.halt.is_some(),
                    "halt": p.halt.as_ref().map(halt_json),
                    "cycles": local.map(|s| s.cycles),
                    "last_store_error": local.and_then(|s| s.last_store_error.clone()),
                    "task_running": p.task_running,
                    "lease_conflict": local.and_then(|s| s.lease_conflict.clone()),
                    "feeds": feeds,
                })
            })
            .collect();
        json!({
            "instance_id": self.instance_id,
            "state_store": self.state_store,
            "catching_up": self.catching_up,
            "halted_feeds": self.halted_feeds().iter().map(|h| halt_json(h)).collect::<Vec<_>>(),
            "processors": processors,
            "responder_endpoint": self.responder_endpoint,
            "store_error": self.store_error,
            "at": time(Some(self.at)),
        })
    }

    /// The stored halts (a halted notification processor stops all six event feeds; the halt names the feed and
    /// event it stopped at).
    pub fn halted_feeds(&self) -> Vec<&HaltStatus> {
        self.processors.iter().filter_map(|p| p.halt.as_ref()).collect()
    }

    /// The report of one processor.
    pub fn processor(&self, processor: ProcessorKind) -> Option<&ProcessorReport> {
        self.processors.iter().find(|p| p.processor == processor)
    }

    /// The report of one feed.
    pub fn feed(&self, feed: FeedKind) -> Option<&FeedReport> {
        self.processors.iter().flat_map(|p| p.feeds.iter()).find(|f| f.feed == feed)
    }

    /// The health verdict derived from this report.
    pub fn health(&self, shutting_down: bool) -> Health {
        let mut problems = Vec::new();
        let mut state = HealthState::Ok;
        if shutting_down {
            problems.push("shutting down".to_owned());
            state = HealthState::Unavailable;
        }
        if let Some(e) = &self.store_error {
            problems.push(format!("state store unreachable: {e}"));
            state = HealthState::Unavailable;
        }
        let mut degrade = |problem: String| {
            problems.push(problem);
            if state == HealthState::Ok {
                state = HealthState::Degraded;
            }
        };
        for h in self.halted_feeds() {
            degrade(h.to_string());
        }
        for p in &self.processors {
            let Some(local) = &p.local else { continue };
            if !p.task_running && local.phase != Phase::Stopped && !shutting_down {
                degrade(format!(
                    "{} processor: its task is not running (last phase {})",
                    p.processor,
                    phase_name(local.phase)
                ));
            }
            if let Some(c) = &local.lease_conflict {
                degrade(format!("{} processor: {c}", p.processor));
            }
            if let Some(e) = &local.last_store_error {
                degrade(format!("{} processor: state store failing: {e}", p.processor));
            }
            for f in local.feeds.iter().filter(|f| f.wap_failures > 0) {
                degrade(format!(
                    "{}: {} failed fetch(es) in a row: {}",
                    f.feed,
                    f.wap_failures,
                    f.last_wap_error.as_deref().unwrap_or("")
                ));
            }
            for f in local.feeds.iter().filter(|f| f.retention_warning) {
                degrade(format!("{}: not polled within RetentionWarnDays; WAP may have purged records", f.feed));
            }
        }
        Health { state, problems, catching_up: self.catching_up }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(task_running: bool, phase: Phase, conflict: Option<&str>) -> AdapterStatus {
        let mut local = ProcessorStatus::new(ProcessorKind::Usage);
        local.phase = phase;
        local.lease_conflict = conflict.map(str::to_owned);
        AdapterStatus {
            instance_id: "i".into(),
            state_store: "sqlite",
            catching_up: false,
            processors: vec![ProcessorReport {
                processor: ProcessorKind::Usage,
                enabled: true,
                lease: None,
                is_leader: false,
                halt: None,
                local: Some(local),
                task_running,
                feeds: Vec::new(),
            }],
            responder_endpoint: None,
            store_error: None,
            at: Utc::now(),
        }
    }

    #[test]
    fn health_reports_a_processor_task_that_is_not_running_and_a_lease_conflict() {
        assert_eq!(report(true, Phase::CaughtUp, None).health(false).state, HealthState::Ok);
        let dead = report(false, Phase::CatchingUp, None).health(false);
        assert_eq!(dead.state, HealthState::Degraded);
        assert!(dead.problems[0].contains("task is not running"), "{:?}", dead.problems);
        assert_eq!(report(false, Phase::Stopped, None).health(false).state, HealthState::Ok, "stopped on purpose");
        let twin = report(true, Phase::Standby, Some("two instances share one InstanceId")).health(false);
        assert_eq!(twin.state, HealthState::Degraded);
        assert!(twin.problems[0].contains("InstanceId"), "{:?}", twin.problems);
    }
}
