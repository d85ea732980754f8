//! Command line: `run`, `check`, and dev helpers (`token mint`, `secret`).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use serde_json::{Map, Value};

use crate::config;
use crate::config::units::parse_duration;
use crate::jwt::{mint, MintRequest};

/// The `portcullis` command line.
#[derive(Debug, Parser)]
#[command(
    name = "portcullis",
    version,
    about = "Authenticating reverse proxy: inline JWT validation in front of unchanged backends"
)]
pub struct Cli {
    /// The subcommand to run.
    #[command(subcommand)]
    pub command: Command,
}

/// The `-c/--config` option shared by the subcommands that read a config.
#[derive(Debug, Args)]
pub struct ConfigArg {
    /// Path to the YAML config.
    #[arg(short, long, default_value = "config/portcullis.yaml")]
    pub config: PathBuf,
}

/// The options of `run`.
#[derive(Debug, Args)]
pub struct RunOptions {
    /// The config to serve.
    #[command(flatten)]
    pub config: ConfigArg,
    /// Take the listening sockets over from the gateway running with the same
    /// `listeners.upgrade_socket` (zero-downtime upgrade): start this, then
    /// send the running process SIGQUIT.
    #[arg(long)]
    pub upgrade: bool,
    /// Write the process id to FILE once the process holds its listening
    /// sockets (with `--upgrade`: once it has taken them over), for service
    /// managers (systemd `PIDFile=`) and scripts/portcullis-service.
    #[arg(long, value_name = "FILE")]
    pub pid_file: Option<PathBuf>,
}

/// The options of `check`.
#[derive(Debug, Args)]
pub struct CheckOptions {
    /// The config to check.
    #[command(flatten)]
    pub config: ConfigArg,
    /// Also fetch every `jwt.issuers` discovery document and JWK Set now,
    /// and report per issuer (exit status 1 when one cannot be fetched).
    #[arg(long)]
    pub online: bool,
}

/// The top-level subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start the gateway (SIGHUP reloads the config, SIGTERM drains and stops,
    /// SIGQUIT hands the sockets to a `run --upgrade` process and stops).
    Run(RunOptions),
    /// Validate a config without starting; exit status 0 when it is valid.
    Check(CheckOptions),
    /// Apply the session-store migrations of `sessions.store` and exit.
    Migrate(ConfigArg),
    /// Access-token helpers for development.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Print a new random HMAC secret (256 bits, base64url).
    Secret,
    /// Wasm policy plugin tools.
    #[command(subcommand)]
    Plugin(PluginCommand),
}

/// The `plugin` subcommands.
#[derive(Debug, Subcommand)]
pub enum PluginCommand {
    /// Run a plugin on sample input: prints the header changes or the deny,
    /// its log lines, and the time per call. Same checks and limits as the gateway.
    Test(crate::plugin_cli::TestArgs),
}

/// The `token` subcommands.
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Sign a token with the config's signing key (`sign: true`).
    Mint {
        /// The config whose signing key signs the token.
        #[command(flatten)]
        config: ConfigArg,
        /// Subject (`sub`).
        #[arg(long)]
        sub: String,
        /// Extra claim as key=value (value parsed as JSON when it can be); repeatable.
        #[arg(long = "claim", value_name = "KEY=VALUE")]
        claims: Vec<String>,
        /// Lifetime, e.g. 15m.
        #[arg(long, default_value = "15m")]
        ttl: String,
    },
}

/// Runs the CLI; returns the process exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run(r) => run(r.config.config, r.upgrade, r.pid_file),
        Command::Check(c) => check(c.config.config, c.online),
        Command::Migrate(c) => migrate(c.config),
        Command::Token(TokenCommand::Mint {
            config,
            sub,
            claims,
            ttl,
        }) => mint_token(config.config, sub, claims, ttl),
        Command::Plugin(PluginCommand::Test(args)) => crate::plugin_cli::test(args),
        Command::Secret => {
            use base64::Engine as _;
            let mut bytes = [0u8; 32];
            if let Err(e) = getrandom::fill(&mut bytes) {
                eprintln!("portcullis: the OS random number generator failed: {e}");
                return ExitCode::FAILURE;
            }
            println!(
                "{}",
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
            );
            ExitCode::SUCCESS
        }
    }
}

fn run(path: PathBuf, upgrade: bool, pid_file: Option<PathBuf>) -> ExitCode {
    match config::load(&path) {
        Ok(generation) => {
            crate::logging::init(&generation.log);
            for w in &generation.warnings {
                tracing::warn!("{w}");
            }
            crate::server::run(path, generation, crate::server::Start { upgrade, pid_file })
        }
        Err(e) => {
            eprintln!("{e}");
            eprintln!("portcullis: not started; fix the errors above (`portcullis check -c {}` re-checks)", path.display());
            ExitCode::FAILURE
        }
    }
}

fn check(path: PathBuf, online: bool) -> ExitCode {
    match config::load(&path) {
        Ok(g) => {
            for w in &g.warnings {
                eprintln!("warning: {w}");
            }
            if online && !check_issuers_online(&g) {
                eprintln!(
                    "{}: an issuer's keys cannot be fetched (see above)",
                    path.display()
                );
                return ExitCode::FAILURE;
            }
            println!(
                "{}: OK ({} routes, {} upstreams, {} keys)",
                path.display(),
                g.router.iter().count(),
                g.upstreams.len(),
                g.verifier
                    .as_ref()
                    .map(|v| v.keys().iter().count())
                    .unwrap_or(0)
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            let n = e.0.len();
            eprintln!(
                "{}: {n} problem{}",
                path.display(),
                if n == 1 { "" } else { "s" }
            );
            ExitCode::FAILURE
        }
    }
}

/// `check --online`: fetches each fetched issuer's keys now and prints one
/// line per issuer; false when any fails.
fn check_issuers_online(generation: &crate::generation::Generation) -> bool {
    let Some(verifier) = generation.verifier.as_ref() else {
        return true;
    };
    let sources: Vec<_> = verifier.key_sources().collect();
    if sources.is_empty() {
        println!("no `jwt.issuers` fetch keys: nothing to check online");
        return true;
    }
    let Some(runtime) = cli_runtime() else {
        return false;
    };
    let mut all_ok = true;
    for (name, source) in sources {
        match runtime.block_on(source.fetch_now()) {
            Ok(kids) => println!(
                "issuer `{name}`: OK, {} usable key{} ({})",
                kids.len(),
                if kids.len() == 1 { "" } else { "s" },
                kids.join(", ")
            ),
            Err(why) => {
                all_ok = false;
                eprintln!("issuer `{name}`: cannot fetch its keys: {why}");
            }
        }
    }
    all_ok
}

/// A single-threaded runtime for a command's network work; `None` (said on
/// stderr) when it cannot start.
fn cli_runtime() -> Option<tokio::runtime::Runtime> {
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => Some(rt),
        Err(e) => {
            eprintln!("portcullis: cannot start a runtime: {e}");
            None
        }
    }
}

fn migrate(path: PathBuf) -> ExitCode {
    let generation = match config::load(&path) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let Some(settings) = &generation.sessions else {
        eprintln!(
            "{}: has no `sessions` section, so there is no store to migrate",
            path.display()
        );
        return ExitCode::FAILURE;
    };
    let store = crate::session::store::redact_url(&settings.store_url);
    let Some(runtime) = cli_runtime() else {
        return ExitCode::FAILURE;
    };
    let result = runtime.block_on(async {
        let s =
            crate::session::service::open_store(&settings.store_url, settings.pool, true).await?;
        Ok::<_, crate::session::store::StoreError>(s.engine())
    });
    match result {
        Ok(engine) => {
            println!("{store}: migrations applied ({engine})");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{store}: {e}");
            ExitCode::FAILURE
        }
    }
}

fn mint_token(path: PathBuf, sub: String, claims: Vec<String>, ttl: String) -> ExitCode {
    let generation = match config::load(&path) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let Some(verifier) = &generation.verifier else {
        eprintln!(
            "{}: has no `jwt` section, so there is no key to sign with",
            path.display()
        );
        return ExitCode::FAILURE;
    };
    let ttl = match parse_duration(&ttl) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("--ttl: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut extra = Map::new();
    for c in claims {
        let Some((k, v)) = c.split_once('=') else {
            eprintln!("--claim `{c}`: write it as key=value");
            return ExitCode::FAILURE;
        };
        let value = serde_json::from_str(v).unwrap_or_else(|_| Value::String(v.to_owned()));
        extra.insert(k.to_owned(), value);
    }
    let policy = verifier.policy();
    let req = MintRequest {
        sub,
        sid: None,
        ttl,
        issuer: policy.issuer.as_ref().and_then(|i| i.first().cloned()),
        audience: policy.audience.as_ref().and_then(|a| a.first().cloned()),
        claims: extra,
    };
    match mint(verifier.keys(), &req) {
        Ok(token) => {
            println!("{token}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{}: {e}", path.display());
            ExitCode::FAILURE
        }
    }
}
