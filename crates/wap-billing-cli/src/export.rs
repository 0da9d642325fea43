//! `wap-billing export` and `tail`: a feed to JSON Lines or CSV, resumable after a kill without a gap or a repeat.
//!
//! With `--output FILE`, after every page the file is flushed and synced, then the cursor file is replaced
//! (write to a temporary file, sync, rename) with the next `startId` **and the output's length at that point**.
//! A resumed export first truncates the output to that length — dropping whatever a killed run wrote after its
//! last cursor — and continues from that `startId`. Every record is therefore in the file exactly once, whatever
//! the moment of the kill. Written to stdout (no `--output`), a resumed export may repeat the last page.

use std::fs::{File, OpenOptions};
use std::io::{self, IsTerminal, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;
use wap_types::feed::{
    AddonsFeed, PlanAddonsFeed, PlanServicesFeed, PlansFeed, SubscriptionAddonsFeed, SubscriptionsFeed, UsageFeed,
};
use wap_types::{Feed, FeedKind, HasEventId, StartId};
use wap_usage_client::UsageClient;

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// One JSON object per line, as WAP's wire names spell it.
    Jsonl,
    /// Comma-separated values with a header; usage records give one row per meter.
    Csv,
}

/// What to export and where.
#[derive(Debug, Clone)]
pub struct ExportOptions {
    /// The feed.
    pub feed: FeedKind,
    /// The format.
    pub format: Format,
    /// Where to start when there is no cursor file to resume from.
    pub start_id: i64,
    /// The output file (stdout when `None`).
    pub output: Option<PathBuf>,
    /// The cursor file: read to resume, replaced after every page.
    pub cursor_file: Option<PathBuf>,
    /// Stop once the feed is caught up (`export`), or keep following it (`tail`).
    pub follow: bool,
    /// Pause between polls when following.
    pub poll_interval: Duration,
    /// Stop after this many records (for tests and samples); `None` = no limit.
    pub limit: Option<u64>,
    /// Stop after this `EventId` (a backfill slice): with it, or with `limit`, the end is known and the progress
    /// bar shows an ETA.
    pub until_id: Option<i64>,
    /// Show a progress bar on stderr (only when stderr is a terminal: piped, nothing is drawn).
    pub progress: bool,
}

/// An export failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExportError {
    /// Reading the feed failed.
    #[error("Usage Service: {0}")]
    Client(#[from] wap_usage_client::Error),
    /// Writing the output or the cursor failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being written.
        what: &'static str,
        /// The file.
        path: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The cursor file is not one this command wrote.
    #[error("cursor file {path}: {reason}")]
    Cursor {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
}

/// What an export did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExportSummary {
    /// Records written in this run.
    pub records: u64,
    /// The `startId` to continue from.
    pub next_start: i64,
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct CursorFile {
    feed: String,
    format: String,
    next_start: i64,
    /// The output file's length when `next_start` was reached (absent for stdout).
    output_len: Option<u64>,
}

fn io_err<'p>(what: &'static str, path: &'p Path) -> impl FnOnce(io::Error) -> ExportError + 'p {
    move |source| ExportError::Io { what, path: path.display().to_string(), source }
}

/// Runs an export.
pub async fn export(client: &UsageClient, options: &ExportOptions) -> Result<ExportSummary, ExportError> {
    match options.feed {
        FeedKind::Usage => run::<UsageFeed>(client, options).await,
        FeedKind::Plans => run::<PlansFeed>(client, options).await,
        FeedKind::Addons => run::<AddonsFeed>(client, options).await,
        FeedKind::PlanAddons => run::<PlanAddonsFeed>(client, options).await,
        FeedKind::PlanServices => run::<PlanServicesFeed>(client, options).await,
        FeedKind::Subscriptions => run::<SubscriptionsFeed>(client, options).await,
        FeedKind::SubscriptionAddons => run::<SubscriptionAddonsFeed>(client, options).await,
    }
}

fn format_name(f: Format) -> &'static str {
    match f {
        Format::Jsonl => "jsonl",
        Format::Csv => "csv",
    }
}

fn read_cursor(options: &ExportOptions) -> Result<Option<CursorFile>, ExportError> {
    let Some(path) = &options.cursor_file else { return Ok(None) };
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err("cursor file", path)(e)),
    };
    let bad = |reason: String| ExportError::Cursor { path: path.display().to_string(), reason };
    let cursor: CursorFile = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
    if cursor.feed != options.feed.to_string() || cursor.format != format_name(options.format) {
        return Err(bad(format!(
            "it belongs to an export of {} as {}, not {} as {}",
            cursor.feed,
            cursor.format,
            options.feed,
            format_name(options.format)
        )));
    }
    Ok(Some(cursor))
}

fn write_cursor(path: &Path, cursor: &CursorFile) -> Result<(), ExportError> {
    let tmp = path.with_extension("tmp");
    let mut f = File::create(&tmp).map_err(io_err("cursor file", &tmp))?;
    f.write_all(serde_json::to_string(cursor).expect("serializable").as_bytes())
        .map_err(io_err("cursor file", &tmp))?;
    f.sync_all().map_err(io_err("cursor file", &tmp))?;
    std::fs::rename(&tmp, path).map_err(io_err("cursor file", path))?;
    Ok(())
}

enum Sink {
    File { file: File, path: PathBuf },
    Stdout(io::Stdout),
}

impl Sink {
    fn write_all(&mut self, bytes: &[u8]) -> Result<(), ExportError> {
        match self {
            Sink::File { file, path } => file.write_all(bytes).map_err(io_err("output", path)),
            Sink::Stdout(out) => out.lock().write_all(bytes).map_err(io_err("output", Path::new("<stdout>"))),
        }
    }

    /// Flushes, syncs, and returns the durable length (files only).
    fn checkpoint(&mut self) -> Result<Option<u64>, ExportError> {
        match self {
            Sink::File { file, path } => {
                file.flush().map_err(io_err("output", path))?;
                file.sync_data().map_err(io_err("output", path))?;
                let len = file.stream_position().map_err(io_err("output", path))?;
                Ok(Some(len))
            }
            Sink::Stdout(out) => {
                out.flush().map_err(io_err("output", Path::new("<stdout>")))?;
                Ok(None)
            }
        }
    }
}

async fn run<F>(client: &UsageClient, options: &ExportOptions) -> Result<ExportSummary, ExportError>
where
    F: Feed,
    F::Item: wap_usage_client::PageItem,
{
    let resumed = read_cursor(options)?;
    let mut next = resumed.as_ref().map_or(options.start_id.max(0), |c| c.next_start);
    let mut sink = match &options.output {
        Some(path) => {
            let mut file = OpenOptions::new()
                .create(true)
                .truncate(false)
                .read(true)
                .write(true)
                .open(path)
                .map_err(io_err("output", path))?;
            // Drop what a killed run wrote after its last cursor (or everything, on a fresh start).
            let keep = resumed.as_ref().and_then(|c| c.output_len).unwrap_or(0);
            file.set_len(keep).map_err(io_err("output", path))?;
            file.seek(SeekFrom::Start(keep)).map_err(io_err("output", path))?;
            Sink::File { file, path: path.clone() }
        }
        None => Sink::Stdout(io::stdout()),
    };
    let csv_header_needed =
        options.format == Format::Csv && resumed.as_ref().and_then(|c| c.output_len).unwrap_or(0) == 0;
    if csv_header_needed {
        sink.write_all(csv_header(F::KIND).as_bytes())?;
    }
    let first = next;
    let progress = (options.progress && io::stderr().is_terminal()).then(|| progress_bar(options, first));
    let feed = client.feed::<F>();
    let mut written = 0u64;
    let started = Instant::now();
    loop {
        let page = feed.page(StartId::new(next), client.batch_size()).await?;
        let mut text = String::new();
        let mut stop = false;
        for item in &page.items {
            if options.limit.is_some_and(|l| written >= l) || options.until_id.is_some_and(|u| item.event_id() > u) {
                stop = true;
                break;
            }
            let value = serde_json::to_value(item).expect("wire types serialize");
            match options.format {
                Format::Jsonl => {
                    text.push_str(&value.to_string());
                    text.push('\n');
                }
                Format::Csv => csv_rows(F::KIND, &value, &mut text),
            }
            next = match client.start_id_mode() {
                wap_types::StartIdMode::Inclusive => item.event_id().saturating_add(1),
                wap_types::StartIdMode::Exclusive => item.event_id(),
            };
            written += 1;
        }
        sink.write_all(text.as_bytes())?;
        let output_len = sink.checkpoint()?;
        if let Some(path) = &options.cursor_file {
            let cursor = CursorFile {
                feed: F::KIND.to_string(),
                format: format_name(options.format).to_owned(),
                next_start: next,
                output_len,
            };
            write_cursor(path, &cursor)?;
        }
        if let Some(bar) = &progress {
            match (options.limit, options.until_id) {
                (None, Some(_)) => bar.set_position(u64::try_from(next - first).unwrap_or(0)),
                _ => bar.set_position(written),
            }
            bar.set_message(format!("{written} records, startId {next}"));
        }
        let reached_until = options.until_id.is_some_and(|u| next > u);
        if stop || reached_until || options.limit.is_some_and(|l| written >= l) {
            break;
        }
        if page.caught_up {
            if !options.follow {
                break;
            }
            tokio::time::sleep(options.poll_interval).await;
        }
    }
    if let Some(bar) = progress {
        bar.finish_with_message(format!("done in {:.1?}, next startId {next}", started.elapsed()));
    }
    Ok(ExportSummary { records: written, next_start: next })
}

/// The progress bar: with `--limit` a bar of records, with `--until-id` a bar of the id range (both with a rate
/// and an ETA); otherwise a spinner with the count and rate (the end of a feed is not known in advance).
fn progress_bar(options: &ExportOptions, first: i64) -> indicatif::ProgressBar {
    let (bar, template) = match (options.limit, options.until_id) {
        (Some(limit), _) => (
            indicatif::ProgressBar::new(limit),
            "{bar:30} {human_pos}/{human_len} records  {per_sec}  ETA {eta}  {msg}",
        ),
        (None, Some(until)) => (
            indicatif::ProgressBar::new(u64::try_from(until - first + 1).unwrap_or(0)),
            "{bar:30} {percent}% of the id range  ETA {eta}  {msg}",
        ),
        (None, None) => (indicatif::ProgressBar::new_spinner(), "{spinner} {human_pos} records  {per_sec}  {msg}"),
    };
    bar.set_style(indicatif::ProgressStyle::with_template(template).expect("a valid template"));
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

const USAGE_COLUMNS: [&str; 9] = [
    "EventId",
    "SubscriptionId",
    "ProviderName",
    "ServiceType",
    "ResourceId",
    "StartTime",
    "EndTime",
    "Meter",
    "Value",
];
const EVENT_COLUMNS: [&str; 6] =
    ["EventId", "Method", "NotificationState", "EntityParentId", "NotificationEventTimeCreated", "Entity"];

fn csv_header(feed: FeedKind) -> String {
    let cols: &[&str] = if feed == FeedKind::Usage { &USAGE_COLUMNS } else { &EVENT_COLUMNS };
    format!("{}\n", cols.join(","))
}

fn csv_field(value: Option<&Value>) -> String {
    let text = match value {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    };
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text
    }
}

fn member<'v>(value: &'v Value, name: &str) -> Option<&'v Value> {
    value.as_object()?.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v)
}

fn csv_rows(feed: FeedKind, value: &Value, out: &mut String) {
    if feed == FeedKind::Usage {
        let fixed: Vec<String> = USAGE_COLUMNS[..7].iter().map(|c| csv_field(member(value, c))).collect();
        let meters = member(value, "Resources").and_then(Value::as_object);
        match meters {
            Some(m) if !m.is_empty() => {
                for (meter, v) in m {
                    out.push_str(&fixed.join(","));
                    out.push(',');
                    out.push_str(&csv_field(Some(&Value::String(meter.clone()))));
                    out.push(',');
                    out.push_str(&csv_field(Some(v)));
                    out.push('\n');
                }
            }
            _ => {
                out.push_str(&fixed.join(","));
                out.push_str(",,\n");
            }
        }
    } else {
        let row: Vec<String> = EVENT_COLUMNS.iter().map(|c| csv_field(member(value, c))).collect();
        out.push_str(&row.join(","));
        out.push('\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_what_needs_quoting() {
        assert_eq!(csv_field(Some(&Value::String("a,b".into()))), "\"a,b\"");
        assert_eq!(csv_field(Some(&Value::String("say \"hi\"".into()))), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field(Some(&serde_json::json!(3))), "3");
        assert_eq!(csv_field(None), "");
    }

    #[test]
    fn usage_gives_one_row_per_meter() {
        let record = serde_json::json!({
            "EventId": 7, "SubscriptionId": "s", "ProviderName": "sqlservers", "ServiceType": "Default",
            "ResourceId": null, "StartTime": "t0", "EndTime": "t1",
            "Resources": {"DatabaseCount": "2", "TotalAllottedSpace": "2048"}
        });
        let mut out = String::new();
        csv_rows(FeedKind::Usage, &record, &mut out);
        assert_eq!(
            out,
            "7,s,sqlservers,Default,,t0,t1,DatabaseCount,2\n7,s,sqlservers,Default,,t0,t1,TotalAllottedSpace,2048\n"
        );
    }
}
