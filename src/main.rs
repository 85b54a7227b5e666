//! The `hermes` command: `serve` runs the gateway, `check-config` validates configuration,
//! `stats` prints what it has learned, `compare` sends one prompt to several backends, `migrate`
//! moves traffic, `classifier` measures and fits the job-type classifier.

use clap::{Args, Parser, Subcommand};
use hermes::state::config::{Config, Sources};
use hermes::state::gateway::Live;
use std::path::PathBuf;
use std::process::ExitCode;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    /// The learned table: per job type and backend, jobs, success, latency, cost, rating, share.
    /// Asks the running gateway (DuckDB allows one writer), else reads the file.
    Stats(StatsArgs),
    /// Send one prompt to several backends and compare status, time, cost and answer length.
    Compare(CompareArgs),
    /// Move traffic from one backend to another on the running gateway.
    #[command(subcommand)]
    Migrate(MigrateCommand),
    /// Measure the job-type classifier on labelled prompts, or fit it to your own.
    #[command(subcommand)]
    Classifier(ClassifierCommand),
    /// Virtual keys (`hk-...`) on the running gateway: each with its team, budget, limits and models.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Teams on the running gateway: a budget over all of their keys.
    #[command(subcommand)]
    Teams(TeamsCommand),
    /// Write every analytics table as `<DIR>/<table>.parquet`: by the running gateway (on its
    /// machine), else from the file at HERMES_DB_PATH (or --db).
    Export(ExportArgs),
}

#[derive(Args)]
struct ExportArgs {
    /// The folder to write into (made if missing); absolute when a gateway writes it.
    #[arg(long, value_name = "DIR")]
    dir: PathBuf,
    /// Read this analytics file directly (no gateway may have it open).
    #[arg(long, value_name = "PATH")]
    db: Option<PathBuf>,
    /// Ask the gateway at this address (default: HERMES_LISTEN, then the file at HERMES_DB_PATH).
    #[arg(long, value_name = "URL")]
    url: Option<String>,
    #[command(flatten)]
    config: ConfigArgs,
}

/// How the key and team commands reach the gateway (HERMES_LISTEN and HERMES_ADMIN_KEY).
#[derive(Args)]
struct GatewayArgs {
    /// The gateway (default: HERMES_LISTEN).
    #[arg(long, value_name = "URL")]
    url: Option<String>,
    #[command(flatten)]
    config: ConfigArgs,
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Make a key; it is printed once and stored only as a digest.
    Create {
        #[arg(long)]
        name: String,
        #[arg(long)]
        team: Option<String>,
        /// US dollars per window.
        #[arg(long, value_name = "USD")]
        budget_usd: Option<f64>,
        /// day, week or month (calendar, UTC).
        #[arg(long, value_name = "WINDOW")]
        budget_window: Option<String>,
        /// Requests per minute.
        #[arg(long)]
        rpm: Option<u32>,
        /// Prompt plus completion tokens per minute.
        #[arg(long)]
        tpm: Option<u32>,
        /// Comma list of the models it may ask for (default: any).
        #[arg(long, value_delimiter = ',')]
        models: Vec<String>,
        /// `local`: everything it sends stays on local backends.
        #[arg(long)]
        privacy: Option<String>,
        /// refuse (402 once spent) or local (free local backends only once spent).
        #[arg(long, value_name = "WHAT")]
        on_budget: Option<String>,
        #[command(flatten)]
        gateway: GatewayArgs,
    },
    /// Every key: team, budget, limits, spend in the window.
    List(GatewayArgs),
    /// One key's limits and spend in its window.
    Show {
        name: String,
        #[command(flatten)]
        gateway: GatewayArgs,
    },
    /// Refuse the key from its next request on.
    Revoke {
        name: String,
        #[command(flatten)]
        gateway: GatewayArgs,
    },
}

#[derive(Subcommand)]
enum TeamsCommand {
    /// Make a team (or change its budget).
    Create {
        name: String,
        #[arg(long, value_name = "USD")]
        budget_usd: Option<f64>,
        #[arg(long, value_name = "WINDOW")]
        budget_window: Option<String>,
        #[command(flatten)]
        gateway: GatewayArgs,
    },
    /// Every team, its keys and its spend.
    List(GatewayArgs),
}

#[derive(Subcommand)]
enum ClassifierCommand {
    /// Per-type precision and recall and the accuracy of the classifier the gateway would load,
    /// on FILE: JSON lines `{"messages": [...], "label": "job_type"}` or `{"prompt": "...", "label": ...}`.
    Eval {
        #[arg(long, value_name = "FILE")]
        data: PathBuf,
        /// Also list every prompt it got wrong.
        #[arg(long)]
        misses: bool,
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Fit the classifier to the shipped corpus plus your labelled prompts (and, with --from-db,
    /// the corrections posted to /feedback), and write it where the gateway loads it.
    Train {
        /// Labelled prompts, in the format `eval` reads (may be given several times).
        #[arg(long, value_name = "FILE")]
        data: Vec<PathBuf>,
        /// Add the job-type corrections stored in the analytics file (HERMES_DB_PATH, or --db).
        #[arg(long)]
        from_db: bool,
        /// The analytics file for --from-db.
        #[arg(long, value_name = "PATH")]
        db: Option<PathBuf>,
        /// Where to write the fitted classifier (default: the policies folder's classifier.bin).
        #[arg(long, value_name = "PATH")]
        out: Option<PathBuf>,
        /// How many shipped prompts each of yours (and each correction) counts as.
        #[arg(long, default_value_t = hermes::ops::cli::USER_EXAMPLE_WEIGHT)]
        weight: f32,
        #[command(flatten)]
        config: ConfigArgs,
    },
}

#[derive(Subcommand)]
enum MigrateCommand {
    /// Print the steps for this configuration.
    Plan(MigrationArgs),
    /// Carry the steps out on the running gateway; a failed check rolls back.
    Apply {
        #[command(flatten)]
        migration: MigrationArgs,
        /// The gateway (default: HERMES_LISTEN).
        #[arg(long, value_name = "URL")]
        url: Option<String>,
        /// Seconds each stage runs before its checks.
        #[arg(long, default_value_t = 300.0)]
        stage_seconds: f64,
        /// How much worse the new backend may be: error rate (absolute), p50 latency (relative),
        /// rating (× 4 stars).
        #[arg(long, default_value_t = 0.1)]
        margin: f64,
    },
    /// Return routing to the configuration (undo any migration's steering).
    Rollback {
        #[arg(long, value_name = "URL")]
        url: Option<String>,
        #[command(flatten)]
        config: ConfigArgs,
    },
}

#[derive(Args)]
struct MigrationArgs {
    #[arg(long)]
    from: String,
    #[arg(long)]
    to: String,
    /// immediate_cutover, gradual_migration or parallel_testing
    #[arg(long)]
    strategy: String,
    #[command(flatten)]
    config: ConfigArgs,
}

#[derive(Args)]
struct StatsArgs {
    /// Read this analytics file directly (the gateway must not be running on it); give it
    /// several times to add up the files of several replicas.
    #[arg(long, value_name = "PATH")]
    db: Vec<PathBuf>,
    /// Ask the gateway at this address (default: HERMES_LISTEN, then the file at HERMES_DB_PATH).
    #[arg(long, value_name = "URL")]
    url: Option<String>,
    /// Print JSON rather than a table.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    config: ConfigArgs,
}

#[derive(Args)]
struct CompareArgs {
    /// The prompt every backend gets.
    prompt: String,
    /// Comma list of backend names (default: every enabled backend).
    #[arg(long, value_delimiter = ',')]
    backends: Vec<String>,
    /// Run it on the gateway at this address (default: HERMES_LISTEN when it answers, else here).
    #[arg(long, value_name = "URL")]
    url: Option<String>,
    #[command(flatten)]
    config: ConfigArgs,
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

fn keys(command: KeysCommand) -> Result<String, String> {
    use hermes::ops::cli::{admin_call, Method};
    match command {
        KeysCommand::Create { name, team, budget_usd, budget_window, rpm, tpm, models, privacy, on_budget, gateway } => {
            let body = serde_json::json!({"name": name, "team": team, "budget_usd": budget_usd, "budget_window": budget_window,
                                          "rpm": rpm, "tpm": tpm, "models": models, "privacy": privacy, "on_budget": on_budget});
            admin_call(Method::Post, "/admin/keys", Some(body), gateway.url, &gateway.config.sources()).map(|v| hermes::ops::cli::render_new_key(&v))
        }
        KeysCommand::List(g) => admin_call(Method::Get, "/admin/keys", None, g.url, &g.config.sources()).map(|v| hermes::ops::cli::render_keys(&v)),
        KeysCommand::Show { name, gateway } => {
            admin_call(Method::Get, &format!("/admin/keys/{name}"), None, gateway.url, &gateway.config.sources()).map(|v| hermes::ops::cli::render_key(&v))
        }
        KeysCommand::Revoke { name, gateway } => admin_call(Method::Delete, &format!("/admin/keys/{name}"), None, gateway.url, &gateway.config.sources())
            .map(|v| format!("revoked {}\n", v["name"].as_str().unwrap_or(&name))),
    }
}

fn teams(command: TeamsCommand) -> Result<String, String> {
    use hermes::ops::cli::{admin_call, Method};
    match command {
        TeamsCommand::Create { name, budget_usd, budget_window, gateway } => {
            let body = serde_json::json!({"name": name, "budget_usd": budget_usd, "budget_window": budget_window});
            admin_call(Method::Post, "/admin/teams", Some(body), gateway.url, &gateway.config.sources())
                .map(|v| hermes::ops::cli::render_teams(&serde_json::json!({"teams": [v]})))
        }
        TeamsCommand::List(g) => admin_call(Method::Get, "/admin/teams", None, g.url, &g.config.sources()).map(|v| hermes::ops::cli::render_teams(&v)),
    }
}

/// Gives back to the system what start-up freed. mimalloc keeps a thread's freed pages for its
/// reuse, and the classifier's first fit for a new build (seconds of work, then cached) left
/// about 55 MB of them resident for the life of the process: a fresh install idled at 124 MB
/// instead of 66 (`/proc/PID/status` 1-20 s after start).
#[allow(unsafe_code)]
fn release_start_up_memory() {
    // SAFETY: mi_collect takes no pointer; it walks mimalloc's own structures and, with `true`,
    // returns the pages that are free to the system.
    unsafe { libmimalloc_sys::mi_collect(true) }
}

/// mimalloc's `generic_collect` option: in the mimalloc this links (v3), every N allocations that
/// miss a thread's free lists walk every page of that thread's heap to take back what other
/// threads freed. On a request thread that walk was 0.4–1 ms (the analytics writer frees each
/// record's strings, and the recent-request caches fill thousands of pages): the largest share
/// of its long busy periods once the caches stopped growing (`benches/load/stalls.sh`). Pages
/// are still taken back one by one as they are allocated from; the whole walk becomes rare.
const MI_OPTION_GENERIC_COLLECT: libmimalloc_sys::mi_option_t = 34;
const GENERIC_COLLECT_DEFAULT: std::ffi::c_long = 10_000;
/// The most mimalloc accepts.
const GENERIC_COLLECT_EVERY: std::ffi::c_long = 1_000_000;

/// Sets the option above, unless the option at that index does not read as its documented
/// default (another mimalloc, or MIMALLOC_GENERIC_COLLECT set by hand): then nothing changes.
#[allow(unsafe_code)]
fn collect_heaps_rarely() {
    // SAFETY: mi_option_get and mi_option_set take an option index and a number, no pointer;
    // an index past mimalloc's options is ignored by both.
    unsafe {
        if libmimalloc_sys::mi_option_get(MI_OPTION_GENERIC_COLLECT) == GENERIC_COLLECT_DEFAULT {
            libmimalloc_sys::mi_option_set(MI_OPTION_GENERIC_COLLECT, GENERIC_COLLECT_EVERY);
        }
    }
}

fn main() -> ExitCode {
    collect_heaps_rarely();
    hermes::ops::log_batch::init("info,pingora=warn,pingora_core=warn");
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => args.load().and_then(|c| Live::start(c, args.sources())).and_then(|live| {
            release_start_up_memory();
            hermes::server::run(live)
        }),
        Command::CheckConfig(args) => args.load().and_then(|c| {
            print!("{}", c.describe());
            hermes::state::traces::check()?;
            match c.unknown_vars.as_slice() {
                [] => Ok(()),
                unknown => Err(format!("unknown settings:\n  {}", unknown.join("\n  "))),
            }
        }),
        Command::Stats(args) => hermes::ops::cli::stats(args.db, args.url, args.json, &args.config.sources()).map(|out| print!("{out}")),
        Command::Compare(args) => hermes::ops::cli::compare(&args.prompt, &args.backends, args.url, &args.config.sources()).map(|out| print!("{out}")),
        Command::Migrate(MigrateCommand::Plan(m)) => {
            hermes::ops::cli::migrate_plan(&m.from, &m.to, &m.strategy, &m.config.sources()).map(|out| print!("{out}"))
        }
        Command::Migrate(MigrateCommand::Apply { migration: m, url, stage_seconds, margin }) => {
            let stage = std::time::Duration::from_secs_f64(stage_seconds.max(0.0));
            hermes::ops::cli::migrate_apply(&m.from, &m.to, &m.strategy, url, stage, margin, &m.config.sources()).map(|out| print!("{out}"))
        }
        Command::Migrate(MigrateCommand::Rollback { url, config }) => hermes::ops::cli::migrate_rollback(url, &config.sources()).map(|out| print!("{out}")),
        Command::Classifier(ClassifierCommand::Eval { data, misses, config }) => {
            hermes::ops::cli::classifier_eval(&data, misses, &config.sources()).map(|out| print!("{out}"))
        }
        Command::Classifier(ClassifierCommand::Train { data, from_db, db, out, weight, config }) => {
            let db = from_db.then(|| db.unwrap_or_else(|| hermes::ops::cli::db_path(&config.sources())));
            hermes::ops::cli::classifier_train(&data, db, out, weight, &config.sources()).map(|out| print!("{out}"))
        }
        Command::Keys(k) => keys(k).map(|out| print!("{out}")),
        Command::Teams(t) => teams(t).map(|out| print!("{out}")),
        Command::Export(e) => hermes::ops::cli::export(&e.dir, e.db, e.url, &e.config.sources()).map(|out| print!("{out}")),
    };
    hermes::ops::log_batch::flush();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hermes: {e}");
            ExitCode::from(2)
        }
    }
}
