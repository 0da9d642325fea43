//! The in-memory ledger backend.

use std::collections::VecDeque;
use std::ops::RangeInclusive;
use std::sync::{Mutex, MutexGuard};

use wap_types::{LastId, RpUsageRecord};

use super::{LedgerError, LedgerStats};
use crate::usage::{UsageEntry, UsagePage, UsagePoll, UsageQuery};

#[derive(Debug, Default)]
struct State {
    highest_issued: i64,
    acknowledged_through: i64,
    /// Ascending by id.
    records: VecDeque<UsageEntry>,
}

/// Records in a `VecDeque` behind a mutex: ids ascend, so acknowledging pops from the front.
#[derive(Debug, Default)]
pub(super) struct MemoryLedger {
    state: Mutex<State>,
}

impl MemoryLedger {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(super) fn append_all(&self, records: Vec<RpUsageRecord>) -> Result<RangeInclusive<i64>, LedgerError> {
        let mut st = self.lock();
        let first = st.highest_issued.checked_add(1).ok_or(LedgerError::IdsExhausted)?;
        let count = i64::try_from(records.len()).map_err(|_| LedgerError::IdsExhausted)?;
        let last = first.checked_add(count - 1).ok_or(LedgerError::IdsExhausted)?;
        // Serialize everything first so a failure leaves the ledger unchanged.
        let mut entries = Vec::with_capacity(records.len());
        for (id, mut record) in (first..).zip(records) {
            record.event_id = id;
            entries.push(UsageEntry::from_trusted_json(id, serde_json::to_string(&record)?));
        }
        st.records.extend(entries);
        st.highest_issued = st.highest_issued.max(last);
        Ok(first..=last)
    }

    pub(super) fn advance_ids_past(&self, id: i64) {
        let mut st = self.lock();
        st.highest_issued = st.highest_issued.max(id);
    }

    pub(super) fn stats(&self) -> LedgerStats {
        let st = self.lock();
        LedgerStats {
            highest_issued: st.highest_issued,
            acknowledged_through: st.acknowledged_through,
            pending: st.records.len() as u64,
        }
    }

    fn acknowledge_locked(st: &mut State, up_to: i64) -> u64 {
        let mut removed = 0;
        while st.records.front().is_some_and(|e| e.event_id() <= up_to) {
            st.records.pop_front();
            removed += 1;
        }
        st.acknowledged_through = st.acknowledged_through.max(up_to.min(st.highest_issued));
        removed
    }

    pub(super) fn acknowledge(&self, up_to: i64) -> u64 {
        Self::acknowledge_locked(&mut self.lock(), up_to)
    }

    fn records_after_locked(st: &State, after: LastId, limit: usize) -> UsagePage {
        let start = st.records.partition_point(|e| !after.admits(e.event_id()));
        UsagePage::from_entries(st.records.range(start..).take(limit).cloned().collect())
    }

    pub(super) fn records_after(&self, after: LastId, limit: usize) -> UsagePage {
        Self::records_after_locked(&self.lock(), after, limit)
    }

    pub(super) fn poll(&self, query: UsageQuery, max_page: usize) -> UsagePoll {
        let mut st = self.lock();
        let highest = st.highest_issued;
        if let Some(last) = query.last_id.get() {
            if last > highest {
                return UsagePoll { page: UsagePage::empty(), last_id_beyond_issued: true, highest_issued: highest };
            }
            Self::acknowledge_locked(&mut st, last);
        }
        let limit = (query.batch_size as usize).min(max_page);
        let page = Self::records_after_locked(&st, query.last_id, limit);
        UsagePoll { page, last_id_beyond_issued: false, highest_issued: highest }
    }
}
