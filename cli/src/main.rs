//! `seawall`: operate seawall's embedded store or PostgreSQL outbox, derive
//! idempotency keys, and read a running service's status. See the README's
//! "Operating seawall".
//!
//! Exit codes: 0 done; 1 failed (the message says why); 2 the command line
//! is wrong, or a purge was not confirmed; 3 the store is in use by another
//! process (the running service), nothing was read or changed.

#![forbid(unsafe_code)]

mod key;
mod source;
mod status;
mod store;
mod table;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

/// Operate seawall: queued writes and dead letters in an embedded store or
/// the PostgreSQL outbox, idempotency keys, a running service's status.
#[derive(Debug, Parser)]
#[command(name = "seawall", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Queued writes in an embedded store (the service must not have it
    /// open) or, with `--postgres URL`, the PostgreSQL outbox.
    #[command(subcommand)]
    Queue(Queue),
    /// List the dead letters: writes the vendor refused for good.
    DeadLetters {
        #[command(flatten)]
        store: StoreArgs,
        /// Only this contract's.
        #[arg(long)]
        contract: Option<String>,
    },
    /// Print the idempotency key seawall sends for a keyed write.
    Key(key::KeyArgs),
    /// Print a running service's status (its `Runtime::health()` as JSON) as tables.
    Status(status::StatusArgs),
}

#[derive(Debug, Subcommand)]
enum Queue {
    /// List the pending writes per contract: ordering key, attempts, age.
    Ls {
        #[command(flatten)]
        store: StoreArgs,
        /// Only this contract's.
        #[arg(long)]
        contract: Option<String>,
    },
    /// Show everything the store holds under one ticket.
    Show {
        #[command(flatten)]
        store: StoreArgs,
        /// The ticket (`42` or `#42`).
        #[arg(value_parser = store::parse_ticket)]
        ticket: u64,
    },
    /// Queue dead letters again, behind their contract's pending writes.
    Retry {
        #[command(flatten)]
        store: StoreArgs,
        /// The dead letters' tickets.
        #[arg(value_parser = store::parse_ticket, required_unless_present = "all")]
        tickets: Vec<u64>,
        /// Every dead letter (of `--contract`, if given).
        #[arg(long, conflicts_with = "tickets")]
        all: bool,
        /// With `--all`: only this contract's.
        #[arg(long, requires = "all")]
        contract: Option<String>,
    },
    /// Drop dead letters for good (needs `--yes`; without it, says what it would drop).
    Purge {
        #[command(flatten)]
        store: StoreArgs,
        /// The dead letters' tickets.
        #[arg(value_parser = store::parse_ticket, required_unless_present = "all")]
        tickets: Vec<u64>,
        /// Every dead letter (of `--contract`, if given).
        #[arg(long, conflicts_with = "tickets")]
        all: bool,
        /// With `--all`: only this contract's.
        #[arg(long, requires = "all")]
        contract: Option<String>,
        /// Drop them: without it nothing is changed.
        #[arg(long)]
        yes: bool,
    },
    /// Write pending writes and dead letters as JSON lines (redacted arguments hidden).
    Export {
        #[command(flatten)]
        store: StoreArgs,
        /// Only this contract's.
        #[arg(long)]
        contract: Option<String>,
    },
}

/// Where the queue is: an embedded store, or the PostgreSQL outbox.
///
/// The command line wins over the environment: `--store` and `--postgres`
/// exclude each other (clap says so); without either, `SEAWALL_POSTGRES_URL`
/// names the outbox and `SEAWALL_STORE` the store, and both set is an
/// error (so that neither silently wins).
#[derive(Debug, Args)]
struct StoreArgs {
    /// The store directory (`Runtime::embedded(dir)`'s) [env: SEAWALL_STORE]
    /// [default: ./seawall-data].
    #[arg(long)]
    store: Option<PathBuf>,
    /// Recover a store its service left uncleanly (killed) before reading
    /// it: opens it for writing, as the service would on start.
    #[arg(long)]
    recover: bool,
    /// The PostgreSQL outbox instead of a store: the database's URL, as
    /// `Postgres::new` takes it (`postgres://user:password@host:port/db`);
    /// safe while services run against it [env: SEAWALL_POSTGRES_URL].
    #[cfg(feature = "postgres")]
    #[arg(long, value_name = "URL", conflicts_with_all = ["store", "recover"])]
    postgres: Option<String>,
    /// With the outbox: the schema the services' runtimes use
    /// (`Postgres::schema`) [default: seawall].
    #[cfg(feature = "postgres")]
    #[arg(long, value_name = "NAME", conflicts_with_all = ["store", "recover"])]
    schema: Option<String>,
}

/// The store directory or the outbox's URL, from the command line or the
/// environment.
enum Place {
    Store(PathBuf),
    #[cfg(feature = "postgres")]
    Postgres(String),
}

impl StoreArgs {
    fn place(&self) -> Result<Place, Failure> {
        let env = |name: &str| std::env::var_os(name).filter(|value| !value.is_empty());
        #[cfg(feature = "postgres")]
        {
            if let Some(url) = &self.postgres {
                return Ok(Place::Postgres(url.clone()));
            }
            if let (None, false, Some(url)) =
                (&self.store, self.recover, env("SEAWALL_POSTGRES_URL"))
            {
                if env("SEAWALL_STORE").is_some() {
                    return Err(Failure::new(
                        "both SEAWALL_STORE and SEAWALL_POSTGRES_URL are set: say which with \
                         `--store DIR` or `--postgres URL`",
                    )
                    .with_code(2));
                }
                let url = url
                    .into_string()
                    .map_err(|_| Failure::new("SEAWALL_POSTGRES_URL is not UTF-8").with_code(2))?;
                return Ok(Place::Postgres(url));
            }
            if self.schema.is_some() {
                return Err(Failure::new(
                    "`--schema` names the PostgreSQL outbox's schema: give `--postgres URL` (or \
                     SEAWALL_POSTGRES_URL) too",
                )
                .with_code(2));
            }
        }
        Ok(Place::Store(self.store.clone().unwrap_or_else(|| {
            env("SEAWALL_STORE").map_or_else(|| PathBuf::from("./seawall-data"), PathBuf::from)
        })))
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = match cli.command {
        Command::Queue(Queue::Ls { store, contract }) => store::ls(&store, contract.as_deref()),
        Command::Queue(Queue::Show { store, ticket }) => store::show(&store, ticket),
        Command::Queue(Queue::Retry {
            store,
            tickets,
            all,
            contract,
        }) => store::retry(&store, &tickets, all, contract.as_deref()),
        Command::Queue(Queue::Purge {
            store,
            tickets,
            all,
            contract,
            yes,
        }) => store::purge(&store, &tickets, all, contract.as_deref(), yes),
        Command::Queue(Queue::Export { store, contract }) => {
            store::export(&store, contract.as_deref())
        }
        Command::DeadLetters { store, contract } => {
            store::dead_letters(&store, contract.as_deref())
        }
        Command::Key(args) => key::run(&args),
        Command::Status(args) => status::run(&args),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("error: {}", failure.message);
            ExitCode::from(failure.code)
        }
    }
}

/// Why a command failed, and its exit code.
#[derive(Debug)]
struct Failure {
    message: String,
    code: u8,
}

impl Failure {
    fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            code: 1,
        }
    }

    fn with_code(mut self, code: u8) -> Self {
        self.code = code;
        self
    }
}
