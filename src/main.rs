//! The `hermes` command: `serve` runs the gateway, `check-config` validates configuration.

use clap::{Args, Parser, Subcommand};
use hermes::config::{Config, Sources};
use hermes::gateway::Live;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "hermes", version, about = "Hermes: an OpenAI-compatible LLM gateway that routes by cost, quality and speed")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway on HERMES_LISTEN.
    Serve(ConfigArgs),
    /// Validate `.env` and `policies/`; print the resolved backends, models and prices.
    CheckConfig(ConfigArgs),
}

#[derive(Args)]
struct ConfigArgs {
    /// Read this file instead of `./.env` (real environment variables still win).
    #[arg(long, value_name = "PATH")]
    env_file: Option<PathBuf>,
    /// Routing policies and prices folder (default `./policies`, built-in defaults when absent).
    #[arg(long, value_name = "DIR")]
    policies: Option<PathBuf>,
    /// Add three simulated backends (free, cheap, premium): a working gateway with no model at all.
    #[arg(long)]
    demo: bool,
}

impl ConfigArgs {
    fn sources(&self) -> Sources {
        Sources { env_file: self.env_file.clone(), policies_dir: self.policies.clone(), demo: self.demo }
    }

    fn load(&self) -> Result<Config, String> {
        Config::load(&self.sources()).map_err(|e| format!("configuration error: {e}"))
    }
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(
        env_logger::Env::default().default_filter_or("info,pingora=warn,pingora_core=warn,pingora_proxy=warn"),
    )
    .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => args.load().and_then(|c| Live::start(c, args.sources())).and_then(hermes::server::run),
        Command::CheckConfig(args) => args.load().map(|c| print!("{}", c.describe())),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hermes: {e}");
            ExitCode::from(2)
        }
    }
}
