//! The fault queue of the billing-system doubles: faults injected by a test, taken in order by the calls they
//! match, some of them **after** the call's change was committed (what makes non-idempotent calls dangerous).

/// What an injected fault does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FaultKind {
    /// Answer with this HTTP status and a plain-text body; nothing is applied.
    Status(u16),
    /// Answer 500 with an HTML error page; nothing is applied.
    HtmlErrorPage,
    /// Answer 200 with an HTML page (a proxy or maintenance page); nothing is applied.
    HtmlOkPage,
    /// Apply the request, then answer 500 with an HTML error page.
    ErrorPageAfterCommit,
    /// Apply the request, then never answer (the caller times out): the change is committed.
    TimeoutAfterCommit,
    /// Apply the request, then close the connection without an answer.
    DropAfterCommit,
}

impl FaultKind {
    /// Whether the request is applied before the fault shows (the caller cannot tell from the answer).
    pub fn commits(self) -> bool {
        matches!(self, FaultKind::ErrorPageAfterCommit | FaultKind::TimeoutAfterCommit | FaultKind::DropAfterCommit)
    }
}

/// A fault on matching calls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    call: Option<String>,
    kind: FaultKind,
    skip: usize,
    times: usize,
}

impl Fault {
    /// A fault on the next request for `call` (compared ignoring ASCII case).
    pub fn on(call: &str, kind: FaultKind) -> Self {
        Fault { call: Some(call.to_ascii_lowercase()), kind, skip: 0, times: 1 }
    }

    /// A fault on the next request, whatever its call.
    pub fn any(kind: FaultKind) -> Self {
        Fault { call: None, kind, skip: 0, times: 1 }
    }

    /// Lets `n` matching requests through first.
    pub fn after(mut self, n: usize) -> Self {
        self.skip = n;
        self
    }

    /// Applies to `n` matching requests (default 1).
    pub fn times(mut self, n: usize) -> Self {
        self.times = n;
        self
    }

    /// The fault's kind.
    pub fn kind(&self) -> FaultKind {
        self.kind
    }

    fn matches(&self, call: &str) -> bool {
        self.call.as_deref().is_none_or(|c| c.eq_ignore_ascii_case(call))
    }
}

/// Injected faults in the order injected.
#[derive(Debug, Clone, Default)]
pub struct FaultQueue {
    faults: Vec<Fault>,
}

impl FaultQueue {
    /// Queues a fault.
    pub fn push(&mut self, fault: Fault) {
        self.faults.push(fault);
    }

    /// Removes every fault.
    pub fn clear(&mut self) {
        self.faults.clear();
    }

    /// How many faults are queued.
    pub fn len(&self) -> usize {
        self.faults.len()
    }

    /// Whether none is queued.
    pub fn is_empty(&self) -> bool {
        self.faults.is_empty()
    }

    /// The fault the request for `call` meets, if any (spending one of its times, or one of its skips).
    pub fn take(&mut self, call: &str) -> Option<FaultKind> {
        let index = self.faults.iter().position(|f| f.matches(call))?;
        let fault = &mut self.faults[index];
        if fault.skip > 0 {
            fault.skip -= 1;
            return None;
        }
        let kind = fault.kind;
        fault.times = fault.times.saturating_sub(1);
        if fault.times == 0 {
            self.faults.remove(index);
        }
        Some(kind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_skip_then_apply_their_times_in_order() {
        let mut q = FaultQueue::default();
        q.push(Fault::on("addOrder", FaultKind::Status(503)).after(1).times(2));
        q.push(Fault::any(FaultKind::HtmlOkPage));
        assert_eq!(q.take("getClients"), Some(FaultKind::HtmlOkPage));
        assert_eq!(q.take("ADDORDER"), None, "skipped once");
        assert_eq!(q.take("addorder"), Some(FaultKind::Status(503)));
        assert_eq!(q.take("addorder"), Some(FaultKind::Status(503)));
        assert_eq!(q.take("addorder"), None);
        assert!(q.is_empty());
        assert!(FaultKind::TimeoutAfterCommit.commits() && !FaultKind::Status(500).commits());
    }
}
