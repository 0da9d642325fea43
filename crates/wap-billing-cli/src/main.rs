//! `wap-billing`: the Windows Azure Pack billing adapter as a program. See the crate's README.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use wap_billing_cli::settings::{Settings, SettingsError};
use wap_billing_cli::{compose, demo, EXAMPLE_SETTINGS as EXAMPLE};

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
            let settings = match Settings::load(&config) {
                Ok(s) => s,
                Err(e) => {
                    print_problems(&e);
                    return ExitCode::from(2);
                }
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
    }
}
