//! The in-memory ledger backend.

use std::collections::{HashMap, VecDeque};
use std::ops::RangeInclusive;
use std::sync::{Mutex, MutexGuard};

use wap_types::{LastId, RpUsageRecord};

use super::{check_key_reuse, renumbered, LastIdBeyondIssued, LedgerOptions, LedgerStats, UsageLedgerError};
use crate::usage::{UsageEntry, UsagePage, UsagePoll, UsageQuery};

#[derive(Debug, Default)]
struct State {
    highest_issued: i64,
    acknowledged_through: i64,
    /// The highest id handed to a collector in a page.
    served_through: i64,
    /// Ascending by id.
    records: VecDeque<UsageEntry>,
    /// Client keys of recent appends: the ids they got and how many records they held.
    keys: HashMap<String, (RangeInclusive<i64>, usize)>,
    /// Oldest key first (retention).
    key_order: VecDeque<String>,
    acknowledgements_above_served: u64,
    last_ids_beyond_issued: u64,
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

    pub(super) fn append_all(
        &self,
        records: Vec<RpUsageRecord>,
        key: Option<String>,
        options: &LedgerOptions,
    ) -> Result<RangeInclusive<i64>, UsageLedgerError> {
        let mut st = self.lock();
        if let Some(key) = &key {
            if let Some((range, count)) = st.keys.get(key) {
                check_key_reuse(key, *count, records.len())?;
                return Ok(range.clone());
            }
        }
        let first = st.highest_issued.checked_add(1).ok_or(UsageLedgerError::IdsExhausted)?;
        let count = i64::try_from(records.len()).map_err(|_| UsageLedgerError::IdsExhausted)?;
        let last = first.checked_add(count - 1).ok_or(UsageLedgerError::IdsExhausted)?;
        // Serialize everything first so a failure leaves the ledger unchanged.
        let mut entries = Vec::with_capacity(records.len());
        for (id, mut record) in (first..).zip(records) {
            record.event_id = id;
            entries.push(UsageEntry::from_trusted_json(id, serde_json::to_string(&record)?));
        }
        let stored = entries.len();
        st.records.extend(entries);
        st.highest_issued = st.highest_issued.max(last);
        if let Some(key) = key {
            st.keys.insert(key.clone(), (first..=last, stored));
            st.key_order.push_back(key);
            while st.key_order.len() > options.client_key_retention {
                if let Some(old) = st.key_order.pop_front() {
                    st.keys.remove(&old);
                }
            }
        }
        Ok(first..=last)
    }

    /// Moves the id counter to at least `id` and gives the records never served with an id at or below it new ids
    /// above it (nobody has seen their old ids), so that a collector at `lastID = id` still receives them.
    fn advance_locked(st: &mut State, id: i64) -> Result<u64, UsageLedgerError> {
        let served = st.served_through;
        let unserved = |e: &UsageEntry| e.event_id() > served && e.event_id() <= id;
        // Rewrite first, so that a failure leaves the ledger unchanged.
        let mut next = st.highest_issued.max(id);
        let mut moved = Vec::new();
        for entry in st.records.iter().filter(|e| unserved(e)) {
            next = next.checked_add(1).ok_or(UsageLedgerError::IdsExhausted)?;
            moved.push(renumbered(entry, next)?);
        }
        // The moved records leave their place and go to the end, in their order: ids stay ascending.
        st.records.retain(|e| !unserved(e));
        let count = moved.len() as u64;
        st.records.extend(moved);
        st.highest_issued = next;
        // At or below `id` only served records are left: the mark moves up to it.
        st.served_through = st.served_through.max(id);
        Ok(count)
    }

    pub(super) fn advance_ids_past(&self, id: i64) -> Result<u64, UsageLedgerError> {
        Self::advance_locked(&mut self.lock(), id)
    }

    pub(super) fn stats(&self) -> LedgerStats {
        let st = self.lock();
        LedgerStats {
            highest_issued: st.highest_issued,
            acknowledged_through: st.acknowledged_through,
            pending: st.records.len() as u64,
            served_through: st.served_through,
            acknowledgements_above_served: st.acknowledgements_above_served,
            last_ids_beyond_issued: st.last_ids_beyond_issued,
            append_commits: 0,
        }
    }

    /// Deletes the records up to `up_to`, never above what was served.
    fn acknowledge_locked(st: &mut State, up_to: i64) -> u64 {
        let up_to = up_to.min(st.served_through);
        let mut removed = 0;
        while st.records.front().is_some_and(|e| e.event_id() <= up_to) {
            st.records.pop_front();
            removed += 1;
        }
        st.acknowledged_through = st.acknowledged_through.max(up_to);
        removed
    }

    pub(super) fn acknowledge(&self, up_to: i64) -> u64 {
        Self::acknowledge_locked(&mut self.lock(), up_to)
    }

    pub(super) fn mark_served(&self, through: i64) {
        let mut st = self.lock();
        st.served_through = st.served_through.max(through.min(st.highest_issued));
    }

    pub(super) fn served_through(&self) -> i64 {
        self.lock().served_through
    }

    fn records_after_locked(st: &State, after: LastId, limit: usize) -> UsagePage {
        let start = st.records.partition_point(|e| !after.admits(e.event_id()));
        UsagePage::from_entries(st.records.range(start..).take(limit).cloned().collect())
    }

    pub(super) fn records_after(&self, after: LastId, limit: usize) -> UsagePage {
        Self::records_after_locked(&self.lock(), after, limit)
    }

    pub(super) fn poll(
        &self,
        query: UsageQuery,
        max_page: usize,
        options: &LedgerOptions,
    ) -> Result<UsagePoll, UsageLedgerError> {
        let mut st = self.lock();
        let mut poll = UsagePoll::new(UsagePage::empty(), st.highest_issued);
        if let Some(last) = query.last_id.get() {
            if last > st.highest_issued {
                st.last_ids_beyond_issued += 1;
                poll.last_id_beyond_issued = true;
                match options.last_id_beyond_issued {
                    LastIdBeyondIssued::Refuse => {
                        return Err(UsageLedgerError::LastIdBeyondIssued {
                            last_id: last,
                            highest_issued: st.highest_issued,
                        })
                    }
                    LastIdBeyondIssued::AdvanceIds => {
                        // Nothing is acknowledged: the page holds the records that got new ids above `last`.
                        poll.renumbered = Self::advance_locked(&mut st, last)?;
                        poll.ids_advanced = true;
                        poll.after = query.last_id;
                    }
                }
            } else if last > st.served_through {
                // Acknowledges only what was served; the records never served at or below `last` get new ids above
                // the highest (a collector drops ids at or below its lastID), and are served after it.
                st.acknowledgements_above_served += 1;
                poll.last_id_above_served = true;
                let served = st.served_through;
                Self::acknowledge_locked(&mut st, served);
                poll.renumbered = Self::advance_locked(&mut st, last)?;
                poll.after = query.last_id;
            } else {
                Self::acknowledge_locked(&mut st, last);
                poll.after = query.last_id;
            }
        }
        poll.highest_issued = st.highest_issued;
        poll.served_through = Some(st.served_through);
        let limit = (query.batch_size as usize).min(max_page);
        if limit > 0 {
            poll.page = Self::records_after_locked(&st, poll.after, limit);
        }
        Ok(poll)
    }
}
