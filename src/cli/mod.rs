//! The command line: subcommands wiring the library together.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod controller;
pub mod policy;
pub mod routes;
pub mod serve;

pub use controller::ControllerArgs;

#[derive(Debug, Parser)]
#[command(
    name = "portcullis",
    version,
    about = "Identity-aware ingress controller"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Standalone mode: serve the routes of a configuration file, reloading it on change.
    Serve {
        #[arg(long, short, env = "PORTCULLIS_CONFIG")]
        config: PathBuf,
    },
    /// Print fresh `cookie_secret`, `shared_secret` and `signing_key` as `key=value` lines
    /// (usable with `kubectl create secret generic NAME --from-env-file=FILE`).
    GenSecrets,
    /// Kubernetes mode: routes from Ingresses and Policy objects (plus any in the file).
    Controller(ControllerArgs),
    /// Print the CustomResourceDefinitions (YAML) generated from the Rust types.
    Crd,
    /// Validate or evaluate policies (PPL files or Policy manifests).
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// Print the live route table of a running Portcullis.
    Routes {
        /// Its metrics listener, e.g. http://127.0.0.1:9090
        #[arg(long)]
        from: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Check PPL files or Policy manifests; errors as FILE:LINE:COL: message. Exit 0 valid, 2 invalid.
    Check {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Evaluate one policy against one request context (JSON); prints the decision as JSON.
    Eval {
        file: PathBuf,
        #[arg(long)]
        input: PathBuf,
    },
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    match cli.command {
        Command::Serve { config } => match serve::serve(&config) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::from(2)
            }
        },
        Command::GenSecrets => match gen_secrets() {
            Ok(text) => {
                print!("{text}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(1)
            }
        },
        Command::Controller(args) => match controller::controller(args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::from(2)
            }
        },
        Command::Crd => match crate::controller::crd::crd_yaml() {
            Ok(yaml) => {
                print!("{yaml}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(2)
            }
        },
        Command::Routes { from } => match routes::routes(&from) {
            Ok(text) => {
                print!("{text}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::from(1)
            }
        },
        Command::Policy { command } => match command {
            PolicyCommand::Check { files } => policy::check(&files),
            PolicyCommand::Eval { file, input } => policy::eval(&file, &input),
        },
    }
}

/// Run a future to completion on a runtime of its own, before the server starts its runtimes.
fn block_on<F: std::future::Future>(future: F) -> anyhow::Result<F::Output> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| anyhow::anyhow!("cannot start a runtime: {e}"))?;
    Ok(rt.block_on(future))
}

/// Logs go to stderr through a buffered, non-blocking writer: a worker thread does the writing,
/// so a request never waits for stderr (the access log is one line per request), and lines
/// that queue up while it writes go out together in one system call. When the
/// buffer is full (stderr far slower than the traffic), lines are dropped rather than stalling
/// the proxy, and counted in `portcullis_log_lines_dropped_total`. `RUST_LOG` filters them
/// (default `info`), `PORTCULLIS_LOG_FORMAT=json` makes them JSON lines.
fn init_logging() {
    use tracing_subscriber::EnvFilter;
    static GUARD: std::sync::OnceLock<tracing_appender::non_blocking::WorkerGuard> =
        std::sync::OnceLock::new();
    let filter = match rust_log() {
        Some(directives) => EnvFilter::new(directives),
        None => EnvFilter::new("info"),
    };
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(true)
        .buffered_lines_limit(64 * 1024)
        .thread_name("portcullis-log")
        // The worker flushes whenever it has written all it was sent, so under load many
        // lines go out in one write, and an idle proxy's lines are not held back.
        .finish(std::io::BufWriter::with_capacity(
            64 * 1024,
            std::io::stderr(),
        ));
    let dropped = writer.error_counter();
    crate::metrics::count_dropped_log_lines(Box::new(move || {
        dropped.dropped_lines() as u64 + crate::access_log::dropped()
    }));
    let json = std::env::var("PORTCULLIS_LOG_FORMAT").is_ok_and(|v| v == "json");
    // The access log has a writer of its own (see `access_log`); without it, its lines go
    // through `tracing` with the rest.
    if let Err(e) = crate::access_log::start(json) {
        eprintln!("cannot start the access-log writer, logging requests through tracing: {e}");
    }
    let _ = GUARD.set(guard);
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(writer);
    if json {
        let builder = builder.json().with_filter_reloading();
        let handle = builder.reload_handle();
        let _ = SET_FILTER.set(Box::new(move |f| handle.reload(f).is_ok()));
        let _ = builder.try_init();
    } else {
        let builder = builder.with_filter_reloading();
        let handle = builder.reload_handle();
        let _ = SET_FILTER.set(Box::new(move |f| handle.reload(f).is_ok()));
        let _ = builder.try_init();
    }
    crate::access_log::filter_changed();
}

type FilterSetter = Box<dyn Fn(tracing_subscriber::EnvFilter) -> bool + Send + Sync>;
/// Replaces the log filter once the configuration is read (`log_level`).
static SET_FILTER: std::sync::OnceLock<FilterSetter> = std::sync::OnceLock::new();

/// `RUST_LOG` when set and not empty.
fn rust_log() -> Option<String> {
    std::env::var("RUST_LOG")
        .ok()
        .filter(|v| !v.trim().is_empty())
}

/// Pomerium's `log_level` from the configuration: the level of every log line, unless
/// `RUST_LOG` says otherwise (it wins, being the more precise).
pub(crate) fn apply_log_level(level: Option<crate::config::LogLevel>) {
    let (Some(level), None) = (level, rust_log()) else {
        return;
    };
    tracing::info!(
        log_level = level.as_str(),
        "log level from the configuration"
    );
    if let Some(set) = SET_FILTER.get()
        && !set(tracing_subscriber::EnvFilter::new(level.as_str()))
    {
        tracing::warn!("cannot change the log level");
    }
    crate::access_log::filter_changed();
}

/// Fresh secrets: two 32-byte keys (base64) and an EC P-256 signing key (base64 of its PEM).
pub fn gen_secrets() -> Result<String, rcgen::Error> {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let cookie: [u8; 32] = rand::random();
    let shared: [u8; 32] = rand::random();
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    Ok(format!(
        "cookie_secret={}\nshared_secret={}\nsigning_key={}\n",
        b64.encode(cookie),
        b64.encode(shared),
        b64.encode(key.serialize_pem())
    ))
}
