//! The `/usage` store: generated records are a pure function of (seed, id), so millions of them cost a few
//! integers; records appended at run time (collector, [`WapSim::append_usage`](crate::WapSim::append_usage)) are
//! kept as typed records. No JSON text is held: pages are serialised when asked for.

use std::borrow::Cow;
use std::sync::Arc;

use chrono::{DateTime, Duration as TimeDelta, Utc};
use wap_types::UsageRecord;

use crate::ids::{guid, hash3};
use crate::time::wap_time;

/// A resource provider the generator produces usage for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Provider {
    /// `sqlservers`
    Sql,
    /// `mysqlservers`
    MySql,
    /// `webspaces`
    Web,
    /// `systemcenter` (VM clouds)
    Vm,
}

impl Provider {
    pub(crate) const ALL: [Provider; 4] = [Provider::Web, Provider::Sql, Provider::MySql, Provider::Vm];

    /// The resource provider name (`ServiceName`, `ProviderName`).
    pub(crate) fn name(self) -> &'static str {
        match self {
            Provider::Sql => "sqlservers",
            Provider::MySql => "mysqlservers",
            Provider::Web => "webspaces",
            Provider::Vm => "systemcenter",
        }
    }

    /// The display name shown in plans.
    pub(crate) fn display_name(self) -> &'static str {
        match self {
            Provider::Sql => "SQL Servers",
            Provider::MySql => "MySQL Servers",
            Provider::Web => "Web Site Cloud",
            Provider::Vm => "Virtual Machine Clouds",
        }
    }

    pub(crate) fn from_name(name: &str) -> Option<Provider> {
        Provider::ALL.into_iter().find(|p| p.name().eq_ignore_ascii_case(name))
    }
}

/// One metered thing: a subscription's service (and resource).
#[derive(Debug, Clone)]
pub(crate) struct UsageSubject {
    pub(crate) subscription_id: String,
    pub(crate) provider: Provider,
    pub(crate) resource: String,
}

/// Makes generated usage record `id` from the seed alone.
#[derive(Debug)]
pub(crate) struct UsageGenerator {
    pub(crate) seed: u64,
    pub(crate) start: DateTime<Utc>,
    pub(crate) step_secs: i64,
    pub(crate) gap_per_mille: u16,
    pub(crate) subjects: Vec<UsageSubject>,
}

const STREAM_RECORD: u64 = 1;
const STREAM_GAP: u64 = 2;
const STREAM_METER: u64 = 3;

impl UsageGenerator {
    /// Whether generated id `id` exists (ids are skipped at a small rate, as WAP's sequence has gaps).
    pub(crate) fn present(&self, id: i64) -> bool {
        self.gap_per_mille == 0 || hash3(self.seed, STREAM_GAP, id as u64) % 1000 >= u64::from(self.gap_per_mille)
    }

    /// `StartTime` of generated record `id`: the timeline advances `step_secs` per id.
    pub(crate) fn start_of(&self, id: i64) -> DateTime<Utc> {
        self.start + TimeDelta::seconds((id - 1).max(0).saturating_mul(self.step_secs))
    }

    /// The first id whose `StartTime` is at or after `t`.
    pub(crate) fn first_id_at_or_after(&self, t: DateTime<Utc>) -> i64 {
        let secs = (t - self.start).num_seconds();
        if secs <= 0 {
            return 1;
        }
        let step = self.step_secs.max(1);
        1 + (secs + step - 1) / step
    }

    /// What generated record `id` is made of.
    fn parts(&self, id: i64) -> RecordParts<'_> {
        let h = hash3(self.seed, STREAM_RECORD, id as u64);
        let m = |k: u64| hash3(self.seed, STREAM_METER ^ (k << 8), id as u64);
        let subject = if self.subjects.is_empty() {
            None
        } else {
            Some(&self.subjects[(h % self.subjects.len() as u64) as usize])
        };
        let (subscription_id, provider, resource) = match subject {
            Some(s) => (Cow::Borrowed(s.subscription_id.as_str()), s.provider, s.resource.as_str()),
            None => (Cow::Owned(guid(self.seed, 0x5EED)), Provider::ALL[(h % 4) as usize], "default"),
        };
        let mut resources = Meters::default();
        let mut properties = None;
        let (service_type, resource_id) = match provider {
            Provider::Sql | Provider::MySql => {
                let dbs = 1 + m(1) % 5;
                let space = 1024 * (1 + m(2) % 10);
                resources.push("TotalAllottedSpace", Meter::Whole(space));
                resources.push("DatabaseCount", Meter::Whole(dbs));
                ("Default", None)
            }
            Provider::Web => {
                for (k, key) in [
                    "TotalIncomingRequestBytes",
                    "TotalIncomingRequestResponseBytes",
                    "TotalLocalReadBytes",
                    "TotalLocalWrittenBytes",
                    "TotalNetworkReadBytes",
                    "TotalNetworkWrittenBytes",
                ]
                .into_iter()
                .enumerate()
                {
                    resources.push(key, Meter::Hundredths(m(10 + k as u64) % 5000));
                }
                let mode = if h & 0x10 == 0 { "Shared" } else { "Dedicated" };
                properties = Some((resource, mode));
                (mode, Some(resource))
            }
            Provider::Vm => {
                let cpus = 1u64 << (m(20) % 4);
                resources.push("CPUAllocationCount", Meter::Whole(cpus));
                resources.push("MemoryAllocatedMB", Meter::Whole(cpus * 1792));
                resources.push("DiskAllocatedGB", Meter::Whole(40 + 20 * (m(21) % 10)));
                resources.push("CPUPercentUtilization", Meter::Hundredths(m(22) % 10_000));
                ("Default", Some(resource))
            }
        };
        // in the order a `StringMap` (sorted by key) writes them
        resources.entries[..resources.len].sort_unstable_by_key(|(key, _)| *key);
        RecordParts {
            external_record_id: 1 + (h >> 20) % 9_000_000,
            resource_id,
            start: self.start_of(id),
            provider,
            service_type,
            subscription_id,
            properties,
            resources,
        }
    }

    /// Generated record `id`.
    pub(crate) fn record(&self, id: i64) -> UsageRecord {
        let p = self.parts(id);
        let site_and_mode = |(site, mode): (&str, &str)| {
            [("SiteName", site.to_owned()), ("ComputeMode", mode.to_owned())].into_iter().collect()
        };
        UsageRecord {
            event_id: id,
            external_record_id: Some(p.external_record_id.to_string()),
            resource_id: p.resource_id.map(str::to_owned),
            start_time: wap_time(p.start, 0),
            end_time: wap_time(p.start + TimeDelta::hours(1), 0),
            provider_name: Some(p.provider.name().to_owned()),
            service_type: Some(p.service_type.to_owned()),
            subscription_id: p.subscription_id.into_owned(),
            properties: p.properties.map(site_and_mode),
            resources: p.resources.entries[..p.resources.len]
                .iter()
                .map(|(key, meter)| ((*key).to_owned(), meter.to_string()))
                .collect(),
            extra: Default::default(),
        }
    }

    /// Appends generated record `id` as JSON to `out`: the bytes `serde_json` writes for [`Self::record`], without
    /// building the record (the Usage Service's pages are mostly this).
    pub(crate) fn write_json(&self, id: i64, out: &mut Vec<u8>) {
        fn string(out: &mut Vec<u8>, s: &str) {
            let _ = serde_json::to_writer(&mut *out, s);
        }
        fn number(out: &mut Vec<u8>, n: impl serde::Serialize) {
            let _ = serde_json::to_writer(&mut *out, &n);
        }
        let p = self.parts(id);
        out.extend_from_slice(b"{\"EventId\":");
        number(out, id);
        out.extend_from_slice(b",\"ExternalRecordId\":\"");
        number(out, p.external_record_id);
        out.extend_from_slice(b"\",\"ResourceId\":");
        match p.resource_id {
            Some(r) => string(out, r),
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b",\"StartTime\":");
        let _ = serde_json::to_writer(&mut *out, &wap_time(p.start, 0));
        out.extend_from_slice(b",\"EndTime\":");
        let _ = serde_json::to_writer(&mut *out, &wap_time(p.start + TimeDelta::hours(1), 0));
        out.extend_from_slice(b",\"ProviderName\":");
        string(out, p.provider.name());
        out.extend_from_slice(b",\"ServiceType\":");
        string(out, p.service_type);
        out.extend_from_slice(b",\"SubscriptionId\":");
        string(out, &p.subscription_id);
        out.extend_from_slice(b",\"Properties\":");
        match p.properties {
            Some((site, mode)) => {
                out.extend_from_slice(b"{\"ComputeMode\":");
                string(out, mode);
                out.extend_from_slice(b",\"SiteName\":");
                string(out, site);
                out.push(b'}');
            }
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b",\"Resources\":{");
        for (i, (key, meter)) in p.resources.entries[..p.resources.len].iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            string(out, key);
            out.extend_from_slice(b":\"");
            meter.write(out);
            out.push(b'"');
        }
        out.extend_from_slice(b"}}");
    }
}

/// What a generated record is made of (borrowed from the generator where it can be).
struct RecordParts<'a> {
    external_record_id: u64,
    resource_id: Option<&'a str>,
    start: DateTime<Utc>,
    provider: Provider,
    service_type: &'static str,
    subscription_id: Cow<'a, str>,
    /// `SiteName` and `ComputeMode` of a web site.
    properties: Option<(&'a str, &'static str)>,
    resources: Meters,
}

/// Up to six meters, without allocating.
#[derive(Default)]
struct Meters {
    entries: [(&'static str, Meter); 6],
    len: usize,
}

impl Meters {
    fn push(&mut self, key: &'static str, value: Meter) {
        self.entries[self.len] = (key, value);
        self.len += 1;
    }
}

/// A meter's value.
#[derive(Clone, Copy, Default)]
enum Meter {
    /// An unused slot.
    #[default]
    Zero,
    /// A whole number.
    Whole(u64),
    /// `n / 100` (see [`decimal`]).
    Hundredths(u64),
}

impl Meter {
    fn write(self, out: &mut Vec<u8>) {
        match self {
            Meter::Zero => out.push(b'0'),
            Meter::Whole(n) => {
                let _ = serde_json::to_writer(&mut *out, &n);
            }
            Meter::Hundredths(n) => {
                let (whole, frac) = (n / 100, n % 100);
                let _ = serde_json::to_writer(&mut *out, &whole);
                match frac {
                    0 => {}
                    f if f % 10 == 0 => out.extend_from_slice(&[b'.', b'0' + (f / 10) as u8]),
                    f => out.extend_from_slice(&[b'.', b'0' + (f / 10) as u8, b'0' + (f % 10) as u8]),
                }
            }
        }
    }
}

impl std::fmt::Display for Meter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            Meter::Zero => f.write_str("0"),
            Meter::Whole(n) => write!(f, "{n}"),
            Meter::Hundredths(n) => f.write_str(&decimal(n)),
        }
    }
}

/// `n / 100` written like WAP's meters: `"12"`, `"0.75"`, `"3.5"`.
fn decimal(n: u64) -> String {
    let (whole, frac) = (n / 100, n % 100);
    match frac {
        0 => whole.to_string(),
        f if f % 10 == 0 => format!("{whole}.{}", f / 10),
        f => format!("{whole}.{f:02}"),
    }
}

/// A stretch of the id sequence.
#[derive(Debug, Clone)]
enum Segment {
    /// Generated records `first..=last` (absent ids skipped); `count` present.
    Generated { first: i64, last: i64, count: u64 },
    /// Records kept as values, ascending ids.
    Stored(Vec<Arc<UsageRecord>>),
}

impl Segment {
    fn first_id(&self) -> Option<i64> {
        match self {
            Segment::Generated { first, .. } => Some(*first),
            Segment::Stored(v) => v.first().map(|r| r.event_id),
        }
    }
    fn last_id(&self) -> Option<i64> {
        match self {
            Segment::Generated { last, .. } => Some(*last),
            Segment::Stored(v) => v.last().map(|r| r.event_id),
        }
    }
    fn count(&self) -> u64 {
        match self {
            Segment::Generated { count, .. } => *count,
            Segment::Stored(v) => v.len() as u64,
        }
    }
}

/// One element of a page, resolved under the lock and serialised after it.
#[derive(Debug, Clone)]
pub(crate) enum PageItem {
    /// Generated record with this id.
    Generated(i64),
    /// A stored record.
    Stored(Arc<UsageRecord>),
}

impl PageItem {
    pub(crate) fn to_record(&self, generator: &UsageGenerator) -> UsageRecord {
        match self {
            PageItem::Generated(id) => generator.record(*id),
            PageItem::Stored(r) => (**r).clone(),
        }
    }
}

/// The usage records the Usage Service holds.
#[derive(Debug)]
pub(crate) struct UsageStore {
    pub(crate) generator: Arc<UsageGenerator>,
    segments: Vec<Segment>,
    next_id: i64,
}

impl UsageStore {
    pub(crate) fn new(generator: Arc<UsageGenerator>) -> Self {
        UsageStore { generator, segments: Vec::new(), next_id: 1 }
    }

    /// Records retained.
    pub(crate) fn count(&self) -> u64 {
        self.segments.iter().map(Segment::count).sum()
    }

    /// Adds `count` generated records (absent ids skipped, so the range may be longer than `count`); `progress`
    /// is called every million ids.
    pub(crate) fn generate(&mut self, count: u64, progress: &mut dyn FnMut(u64)) -> std::ops::RangeInclusive<i64> {
        let first = self.next_id;
        if count == 0 {
            return first..=first - 1;
        }
        let mut id = first;
        let mut present = 0u64;
        loop {
            if self.generator.present(id) {
                present += 1;
                if present % 1_000_000 == 0 {
                    progress(present);
                }
                if present == count {
                    break;
                }
            }
            id += 1;
        }
        let last = id;
        self.next_id = last + 1;
        match self.segments.last_mut() {
            Some(Segment::Generated { last: prev_last, count: prev_count, .. }) if *prev_last + 1 == first => {
                *prev_last = last;
                *prev_count += count;
            }
            _ => self.segments.push(Segment::Generated { first, last, count }),
        }
        first..=last
    }

    /// Appends records, assigning the next ids (given ids are ignored). Returns the ids.
    pub(crate) fn append(&mut self, records: Vec<UsageRecord>) -> Vec<i64> {
        let mut ids = Vec::with_capacity(records.len());
        let mut out = Vec::with_capacity(records.len());
        for mut r in records {
            r.event_id = self.next_id;
            self.next_id += 1;
            ids.push(r.event_id);
            out.push(Arc::new(r));
        }
        self.push_stored(out);
        ids
    }

    /// Inserts records with their own ids (loaded data); they must be above every id held.
    pub(crate) fn insert_with_ids(&mut self, mut records: Vec<UsageRecord>) {
        records.sort_by_key(|r| r.event_id);
        records.dedup_by_key(|r| r.event_id);
        records.retain(|r| r.event_id >= self.next_id);
        if let Some(last) = records.last() {
            self.next_id = last.event_id + 1;
        }
        self.push_stored(records.into_iter().map(Arc::new).collect());
    }

    fn push_stored(&mut self, out: Vec<Arc<UsageRecord>>) {
        if out.is_empty() {
            return;
        }
        match self.segments.last_mut() {
            Some(Segment::Stored(v)) => v.extend(out),
            _ => self.segments.push(Segment::Stored(out)),
        }
    }

    /// Up to `limit` records with `EventId >= start_id`, ascending.
    pub(crate) fn page(&self, start_id: i64, limit: usize) -> Vec<PageItem> {
        let mut out = Vec::with_capacity(limit.min(10_000));
        let from = self.segments.partition_point(|s| s.last_id().is_some_and(|l| l < start_id));
        for seg in &self.segments[from..] {
            if out.len() >= limit {
                break;
            }
            match seg {
                Segment::Generated { first, last, .. } => {
                    let mut id = (*first).max(start_id);
                    while id <= *last && out.len() < limit {
                        if self.generator.present(id) {
                            out.push(PageItem::Generated(id));
                        }
                        id += 1;
                    }
                }
                Segment::Stored(v) => {
                    let i = v.partition_point(|r| r.event_id < start_id);
                    out.extend(v[i..].iter().take(limit - out.len()).map(|r| PageItem::Stored(r.clone())));
                }
            }
        }
        out
    }

    /// All retained ids, ascending.
    pub(crate) fn ids(&self) -> Vec<i64> {
        self.page(i64::MIN, usize::MAX)
            .into_iter()
            .map(|p| match p {
                PageItem::Generated(id) => id,
                PageItem::Stored(r) => r.event_id,
            })
            .collect()
    }

    /// The `StartTime` of the newest record (the simulator's clock for retention).
    pub(crate) fn newest_start(&self) -> Option<DateTime<Utc>> {
        let mut newest: Option<DateTime<Utc>> = None;
        for seg in &self.segments {
            let t = match seg {
                Segment::Generated { last, .. } => Some(self.generator.start_of(*last)),
                Segment::Stored(v) => v.iter().map(|r| r.start_time.to_utc()).max(),
            };
            newest = newest.max(t);
        }
        newest
    }

    /// Drops records with `EventId < id`. Returns how many were dropped.
    pub(crate) fn purge_before_id(&mut self, id: i64) -> u64 {
        let before = self.count();
        let generator = self.generator.clone();
        for seg in &mut self.segments {
            match seg {
                Segment::Generated { first, last, count } => {
                    if *first >= id {
                        continue;
                    }
                    let new_first = id.min(*last + 1);
                    let dropped = (*first..new_first).filter(|&i| generator.present(i)).count() as u64;
                    *first = new_first;
                    *count -= dropped;
                }
                Segment::Stored(v) => v.retain(|r| r.event_id >= id),
            }
        }
        self.segments.retain(|s| s.first_id().is_some() && s.count() > 0);
        before - self.count()
    }

    /// Drops records whose `StartTime` is before `cutoff`. Returns how many were dropped.
    pub(crate) fn purge_before_time(&mut self, cutoff: DateTime<Utc>) -> u64 {
        let before = self.count();
        let generator = self.generator.clone();
        let first_kept = generator.first_id_at_or_after(cutoff);
        for seg in &mut self.segments {
            match seg {
                Segment::Generated { first, last, count } => {
                    if *first >= first_kept {
                        continue;
                    }
                    let new_first = first_kept.min(*last + 1);
                    let dropped = (*first..new_first).filter(|&i| generator.present(i)).count() as u64;
                    *first = new_first;
                    *count -= dropped;
                }
                Segment::Stored(v) => v.retain(|r| r.start_time.to_utc() >= cutoff),
            }
        }
        self.segments.retain(|s| s.first_id().is_some() && s.count() > 0);
        before - self.count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    impl UsageGenerator {
        fn clone_with_subjects(&self, subjects: Vec<UsageSubject>) -> UsageGenerator {
            UsageGenerator { subjects, ..*self }
        }
    }

    fn generator(gap: u16) -> Arc<UsageGenerator> {
        Arc::new(UsageGenerator {
            seed: 1,
            start: DateTime::parse_from_rfc3339("2015-06-01T00:00:00Z").unwrap().with_timezone(&Utc),
            step_secs: 60,
            gap_per_mille: gap,
            subjects: vec![UsageSubject {
                subscription_id: "90f94f4c-4679-406a-b6f4-4814d281b3fc".into(),
                provider: Provider::Web,
                resource: "site".into(),
            }],
        })
    }

    #[test]
    fn written_json_is_exactly_what_serde_writes_for_the_record() {
        let subject = |provider, resource: &str| UsageSubject {
            subscription_id: format!("sub-{resource}-\"quoted\"\u{e9}"),
            provider,
            resource: resource.into(),
        };
        let mut generators = vec![generator(0), generator(20)];
        let mut all = (*generator(0)).clone_with_subjects(vec![
            subject(Provider::Sql, "db1"),
            subject(Provider::MySql, "db2"),
            subject(Provider::Web, "site\\one"),
            subject(Provider::Vm, "vm\n7"),
        ]);
        all.seed = 99;
        generators.push(Arc::new(all));
        generators.push(Arc::new((*generator(0)).clone_with_subjects(Vec::new())));
        let mut providers = std::collections::HashSet::new();
        for g in &generators {
            for id in 1..3_000 {
                let record = g.record(id);
                providers.insert(record.provider_name.clone());
                let mut written = Vec::new();
                g.write_json(id, &mut written);
                assert_eq!(String::from_utf8(written).unwrap(), serde_json::to_string(&record).unwrap(), "id {id}");
            }
        }
        assert_eq!(providers.len(), 4, "every provider's meters covered: {providers:?}");
    }

    #[test]
    fn generated_records_are_a_function_of_the_id() {
        let g = generator(0);
        assert_eq!(g.record(42), g.record(42));
        assert_ne!(g.record(42).resources, g.record(43).resources);
        assert_eq!(g.record(1).start_time.to_string(), "2015-06-01T00:00:00");
        assert_eq!(g.record(2).start_time.to_string(), "2015-06-01T00:01:00");
        assert_eq!(g.first_id_at_or_after(g.start_of(7)), 7);
    }

    #[test]
    fn pages_skip_gaps_and_purges_move_the_low_water_mark() {
        let mut s = UsageStore::new(generator(100));
        let range = s.generate(1000, &mut |_| {});
        assert_eq!(s.count(), 1000);
        assert!(*range.end() > 1000, "gaps make the id range longer than the count");
        let appended = s.append(vec![UsageRecord { subscription_id: "x".into(), ..Default::default() }]);
        assert_eq!(appended, vec![range.end() + 1]);
        let ids = s.ids();
        assert_eq!(ids.len(), 1001);
        assert!(ids.windows(2).all(|w| w[0] < w[1]));
        let page = s.page(ids[10], 5);
        assert_eq!(page.len(), 5);
        let dropped = s.purge_before_id(ids[100]);
        assert_eq!(dropped, 100);
        assert_eq!(s.ids()[0], ids[100]);
        assert_eq!(s.page(0, 1).len(), 1);
    }

    #[test]
    fn decimals_look_like_wap_meters() {
        assert_eq!(decimal(1200), "12");
        assert_eq!(decimal(75), "0.75");
        assert_eq!(decimal(350), "3.5");
    }
}
