//! `wap-billing`: the Windows Azure Pack billing adapter as a program. See the crate's README.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use wap_billing_cli::settings::{Settings, SettingsError};
use wap_billing_cli::{compose, demo, export, ops, EXAMPLE_SETTINGS as EXAMPLE};

#[derive(Debug, Parser)]
#[command(name = "wap-billing", version, about = "The Windows Azure Pack billing adapter")]
struct Cli {
    /// Log format on stderr (overrides `log.format`).
    #[arg(long, global = true, value_enum)]
    log_format: Option<LogFormat>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the adapter: processors, responder and admin endpoint, until SIGTERM or Ctrl-C.
    Run {
        /// The settings file.
        #[arg(long, short, env = "WAP_BILLING_CONFIG", default_value = "wap-billing.toml")]
        config: PathBuf,
    },
    /// Check a settings file: every problem with its key path; exit status 1 if there is any.
    Validate {
        /// The settings file.
        #[arg(long, short, env = "WAP_BILLING_CONFIG", default_value = "wap-billing.toml")]
        config: PathBuf,
    },
    /// Settings files.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// The whole flow on loopback with nothing installed: a simulated WAP, the adapter, the reference ledger.
    Demo,
    /// Per processor its leader, lease, halt and in-doubt intent; per feed its cursor, lag behind WAP, last poll
    /// and hold.
    Status {
        /// Do not ask WAP's Usage Service how far behind each feed is (state database only).
        #[arg(long)]
        no_wap: bool,
        #[command(flatten)]
        common: Common,
    },
    /// Try the halted event again (audited).
    Resume {
        /// `notification` or `usage`.
        processor: String,
        /// The halted event (as `status` shows it); refused if the processor is halted on another one.
        #[arg(long)]
        event: Option<i64>,
        /// The halted event's feed (needed for the notification processor).
        #[arg(long)]
        feed: Option<String>,
        #[command(flatten)]
        common: Common,
    },
    /// Record the halted event (or usage range) as skipped, never billed, and move on (audited).
    Skip {
        /// `notification` or `usage`.
        processor: String,
        /// The halted event (as `status` shows it; for a usage range, its first id); refused if the processor is
        /// halted on another one.
        #[arg(long)]
        event: i64,
        /// The halted event's feed (needed for the notification processor).
        #[arg(long)]
        feed: Option<String>,
        /// Why (kept in the audit log).
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        common: Common,
    },
    /// Resolve the in-doubt intent a processor halted on, after checking the billing system by hand (audited).
    Resolve {
        /// `notification` or `usage`.
        processor: String,
        /// `applied` (the billing system holds it: commit it), `send-again`, or `skip` (never bill it).
        #[arg(long = "as", value_name = "RESOLUTION")]
        resolution: String,
        /// Why (kept in the audit log).
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        common: Common,
    },
    /// The audit log: resumes, skips, resolutions, mapping changes.
    Audit {
        /// How many of the newest entries.
        #[arg(long, default_value_t = 50)]
        limit: u32,
        #[command(flatten)]
        common: Common,
    },
    /// The identity map between WAP ids and billing ids.
    Mappings {
        #[command(subcommand)]
        command: MappingsCommand,
        #[command(flatten)]
        common: Common,
    },
    /// Write a feed as JSON Lines or CSV, resumable with a cursor file.
    Export {
        /// usage, plans, addons, planAddons, planServices, subscriptions or subscriptionAddons.
        feed: String,
        #[command(flatten)]
        export: ExportArgs,
    },
    /// Follow a feed live, as JSON Lines or CSV on stdout.
    Tail {
        /// The feed.
        feed: String,
        #[command(flatten)]
        export: ExportArgs,
    },
}

#[derive(Debug, clap::Args)]
struct Common {
    /// The settings file (for the state database).
    #[arg(long, short, global = true, env = "WAP_BILLING_CONFIG", default_value = "wap-billing.toml")]
    config: PathBuf,
    /// Machine-readable output.
    #[arg(long, global = true)]
    json: bool,
    /// Who is acting, for the audit log (default `$USER@$HOSTNAME`).
    #[arg(long, global = true)]
    actor: Option<String>,
}

#[derive(Debug, clap::Args)]
struct ExportArgs {
    /// The settings file (for the Usage Service).
    #[arg(long, short, env = "WAP_BILLING_CONFIG", default_value = "wap-billing.toml")]
    config: PathBuf,
    /// `jsonl` or `csv`.
    #[arg(long, value_enum, default_value_t = ExportFormat::Jsonl)]
    format: ExportFormat,
    /// Where to start without a cursor file.
    #[arg(long, default_value_t = 0)]
    start_id: i64,
    /// Output file (stdout if absent); with --cursor-file, a resumed export never repeats or skips a record.
    #[arg(long, short)]
    output: Option<PathBuf>,
    /// Cursor file: read to resume, replaced after every page.
    #[arg(long)]
    cursor_file: Option<PathBuf>,
    /// Stop after this many records.
    #[arg(long)]
    limit: Option<u64>,
    /// Stop after this EventId (export a slice; with it or --limit the progress bar shows an ETA).
    #[arg(long)]
    until_id: Option<i64>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ExportFormat {
    Jsonl,
    Csv,
}

#[derive(Debug, Subcommand)]
enum MappingsCommand {
    /// List mappings, optionally of one kind (plan, addOn, user, subscription, addOnInstance).
    List {
        /// The kind.
        kind: Option<String>,
    },
    /// Set or change a mapping.
    Set {
        /// The kind.
        kind: String,
        /// The WAP id.
        wap_id: String,
        /// The billing system's id.
        billing_id: String,
    },
    /// Delete a mapping.
    Delete {
        /// The kind.
        kind: String,
        /// The WAP id.
        wap_id: String,
    },
    /// Set every mapping of a CSV file `kind,wap_id,billing_id`.
    Import {
        /// The CSV file.
        file: PathBuf,
    },
    /// Print every mapping as CSV `kind,wap_id,billing_id`.
    Export,
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Print an annotated example settings file.
    Example,
}

fn init_logging(format: LogFormat, level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

fn print_problems(e: &SettingsError) {
    match e {
        SettingsError::Invalid(problems) => {
            for p in problems {
                eprintln!("error: {p}");
            }
        }
        other => eprintln!("error: {other}"),
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("a Tokio runtime")
}

fn load_or_exit(config: &std::path::Path) -> Result<Settings, ExitCode> {
    Settings::load(config).map_err(|e| {
        print_problems(&e);
        ExitCode::from(2)
    })
}

fn print_value(json: bool, value: &serde_json::Value, text: impl FnOnce(&serde_json::Value) -> String) {
    if json {
        println!("{}", serde_json::to_string_pretty(value).expect("JSON"));
    } else {
        print!("{}", text(value));
    }
}

async fn operate(command: Command) -> Result<(), ops::OpsError> {
    match command {
        Command::Status { no_wap, common } => {
            let settings = state_settings(&common.config)?;
            let store = ops::open_store(&settings).await?;
            // The lag probe needs valid `[usage_service]` settings; without them the status is the database's.
            let wap = if no_wap {
                None
            } else {
                settings.usage_service.client_builder("usage_service").ok().and_then(|b| b.build().ok())
            };
            let status = ops::status(&store, wap.as_ref()).await?;
            print_value(common.json, &status, ops::status_text);
            Ok(())
        }
        Command::Resume { processor, event, feed, common } => {
            let settings = state_settings(&common.config)?;
            let target = event.map(|e| ops::target(&processor, e, feed.as_deref())).transpose()?;
            let store = ops::open_store(&settings).await?;
            let done = ops::resume(&store, &processor, target, &ops::actor(common.actor.as_deref())).await?;
            print_value(common.json, &done, |v| {
                format!(
                    "resumed {} at {} event {}\n",
                    processor,
                    v["resumed"]["feed"].as_str().unwrap_or("?"),
                    v["resumed"]["event_id"]
                )
            });
            Ok(())
        }
        Command::Skip { processor, event, feed, reason, common } => {
            let settings = state_settings(&common.config)?;
            let target = ops::target(&processor, event, feed.as_deref())?;
            let store = ops::open_store(&settings).await?;
            let done = ops::skip(&store, &processor, target, &ops::actor(common.actor.as_deref()), &reason).await?;
            print_value(common.json, &done, |v| {
                format!(
                    "skipped {} event {}..={} ({})\n",
                    v["skipped"]["feed"].as_str().unwrap_or("?"),
                    v["skipped"]["event_id"],
                    v["skipped"]["last_event_id"],
                    reason.trim()
                )
            });
            Ok(())
        }
        Command::Resolve { processor, resolution, reason, common } => {
            let settings = state_settings(&common.config)?;
            let store = ops::open_store(&settings).await?;
            let done =
                ops::resolve(&store, &processor, &resolution, &ops::actor(common.actor.as_deref()), &reason).await?;
            print_value(common.json, &done, |v| {
                format!(
                    "resolved {} intent {} as {}\n",
                    processor,
                    v["resolved"]["token"].as_str().unwrap_or("?"),
                    v["resolution"].as_str().unwrap_or("?")
                )
            });
            Ok(())
        }
        Command::Audit { limit, common } => {
            let settings = state_settings(&common.config)?;
            let store = ops::open_store(&settings).await?;
            let entries = ops::audit(&store, limit).await?;
            print_value(common.json, &entries, ops::audit_text);
            Ok(())
        }
        Command::Mappings { command, common } => {
            let settings = state_settings(&common.config)?;
            let store = ops::open_store(&settings).await?;
            let actor = ops::actor(common.actor.as_deref());
            match command {
                MappingsCommand::List { kind } => {
                    let list = ops::mappings_list(&store, kind.as_deref()).await?;
                    print_value(common.json, &list, ops::mappings_text);
                }
                MappingsCommand::Set { kind, wap_id, billing_id } => {
                    ops::mappings_set(&store, &kind, &wap_id, &billing_id, &actor).await?;
                    println!("mapped {kind} {wap_id} -> {billing_id}");
                }
                MappingsCommand::Delete { kind, wap_id } => {
                    let existed = ops::mappings_delete(&store, &kind, &wap_id, &actor).await?;
                    println!(
                        "{}",
                        if existed {
                            format!("deleted {kind} {wap_id}")
                        } else {
                            format!("no mapping for {kind} {wap_id}")
                        }
                    );
                }
                MappingsCommand::Import { file } => {
                    let text = std::fs::read_to_string(&file)
                        .map_err(|source| ops::OpsError::Io { path: file.display().to_string(), source })?;
                    let n = ops::mappings_import(&store, &text, &actor).await?;
                    println!("imported {n} mapping(s)");
                }
                MappingsCommand::Export => print!("{}", ops::mappings_csv(&store).await?),
            }
            Ok(())
        }
        Command::Export { feed, export } => export_feed(&feed, export, false).await,
        Command::Tail { feed, export } => export_feed(&feed, export, true).await,
        Command::Run { .. } | Command::Validate { .. } | Command::Config { .. } | Command::Demo => {
            unreachable!("handled in main")
        }
    }
}

async fn export_feed(feed: &str, args: ExportArgs, follow: bool) -> Result<(), ops::OpsError> {
    let settings = Settings::read(&args.config)
        .and_then(|s| s.checked(|path| path.starts_with("usage_service")))
        .map_err(settings_error)?;
    let client = compose::usage_client(&settings).map_err(|e| ops::OpsError::Usage(e.to_string()))?;
    let options = export::ExportOptions {
        feed: ops::feed(feed)?,
        format: match args.format {
            ExportFormat::Jsonl => export::Format::Jsonl,
            ExportFormat::Csv => export::Format::Csv,
        },
        start_id: args.start_id,
        output: args.output,
        cursor_file: args.cursor_file,
        follow,
        poll_interval: std::time::Duration::from_millis(settings.engine.sync_interval_ms.clamp(200, 60_000)),
        limit: args.limit,
        until_id: args.until_id,
        progress: true,
    };
    let summary = export::export(&client, &options).await.map_err(|e| ops::OpsError::Usage(e.to_string()))?;
    // Quiet when piped: the summary, like the bar, is for a person at a terminal (the cursor file is the record).
    if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        eprintln!("{} record(s); next startId {}", summary.records, summary.next_start);
    }
    Ok(())
}

/// Operator commands need only `[state]`: other sections' secrets need not be present.
fn state_settings(config: &std::path::Path) -> Result<Settings, ops::OpsError> {
    Settings::read(config).and_then(|s| s.checked(|path| path.starts_with("state"))).map_err(settings_error)
}

fn settings_error(e: SettingsError) -> ops::OpsError {
    print_problems(&e);
    ops::OpsError::Usage(format!("{} problem(s) in the settings", e.problems().len().max(1)))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Config { command: ConfigCommand::Example } => {
            print!("{EXAMPLE}");
            ExitCode::SUCCESS
        }
        Command::Validate { config } => match Settings::load(&config) {
            Ok(_) => {
                println!("{}: valid", config.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                print_problems(&e);
                eprintln!("{}: {} problem(s)", config.display(), e.problems().len().max(1));
                ExitCode::FAILURE
            }
        },
        Command::Demo => {
            init_logging(cli.log_format.unwrap_or(LogFormat::Text), "error");
            match runtime().block_on(demo::run()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Run { config } => {
            let settings = match load_or_exit(&config) {
                Ok(s) => s,
                Err(code) => return code,
            };
            let format = cli.log_format.unwrap_or(if settings.log.format.eq_ignore_ascii_case("json") {
                LogFormat::Json
            } else {
                LogFormat::Text
            });
            init_logging(format, &settings.log.level);
            runtime().block_on(async move {
                match compose::start(&settings).await {
                    Ok(running) => {
                        tracing::info!(
                            state = %running.state,
                            responder = running.adapter.responder_endpoint().unwrap_or("off"),
                            admin = %running.adapter.admin_addr().map(|a| a.to_string()).unwrap_or_else(|| "off".into()),
                            "wap-billing running"
                        );
                        running.adapter.run_until_signal().await;
                        ExitCode::SUCCESS
                    }
                    Err(e) => {
                        eprintln!("error: {e}");
                        ExitCode::from(2)
                    }
                }
            })
        }
        command => {
            init_logging(cli.log_format.unwrap_or(LogFormat::Text), "warn");
            match runtime().block_on(operate(command)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
