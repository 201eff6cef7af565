//! Where the queue subcommands read and change queued writes: an embedded
//! store directory (`seawall_core::admin::Store`) or, with `--postgres
//! URL`, the PostgreSQL outbox (`seawall_core::admin::PostgresOutbox`). The
//! same answers from both, so that `store.rs` prints them one way.

use std::path::Path;

use seawall_core::StoreError;
use seawall_core::admin::{Entry, Listing, QueueSummary, Store};
use seawall_core::wal::{DeadLetter, Quarantined, QueuedWrite, Ticket};

use crate::{Failure, Place, StoreArgs};

/// The exit code when another process has the store open.
const LOCKED: u8 = 3;

/// An opened store or outbox.
pub(crate) enum Source {
    Store(Store),
    /// Boxed: the connection and its runtime are large beside a store.
    #[cfg(feature = "postgres")]
    Outbox(Box<postgres::Outbox>),
}

impl Source {
    /// Opens what `args` name: to read, or (`maintenance`) to change dead
    /// letters.
    pub(crate) fn open(args: &StoreArgs, maintenance: bool) -> Result<Self, Failure> {
        match args.place()? {
            Place::Store(dir) => open_store(&dir, args.recover, maintenance).map(Self::Store),
            #[cfg(feature = "postgres")]
            Place::Postgres(url) => postgres::Outbox::connect(&url, args.schema.as_deref())
                .map(|outbox| Self::Outbox(Box::new(outbox))),
        }
    }

    /// What was opened, for the first line of a listing.
    pub(crate) fn describe(&self) -> String {
        match self {
            Self::Store(store) => format!("store {}", store.path().display()),
            #[cfg(feature = "postgres")]
            Self::Outbox(outbox) => format!("outbox {}", outbox.address()),
        }
    }

    /// Why a ticket may hold nothing.
    pub(crate) fn absent(&self, ticket: Ticket) -> String {
        match self {
            Self::Store(store) => format!(
                "{}: no entry under {ticket} (never issued, or settled and swept after the \
                 retention)",
                store.path().display()
            ),
            #[cfg(feature = "postgres")]
            Self::Outbox(outbox) => format!(
                "{}: no entry under {ticket} (never issued, or a dead letter since retried or \
                 purged)",
                outbox.address()
            ),
        }
    }

    pub(crate) fn queues(&self) -> Result<Vec<QueueSummary>, Failure> {
        match self {
            Self::Store(store) => store.queues().map_err(failed),
            #[cfg(feature = "postgres")]
            Self::Outbox(outbox) => outbox.run(|o| o.queues()),
        }
    }

    pub(crate) fn pending(&self, contract: Option<&str>) -> Result<Listing<QueuedWrite>, Failure> {
        match self {
            Self::Store(store) => store.pending(contract).map_err(failed),
            #[cfg(feature = "postgres")]
            Self::Outbox(outbox) => outbox.run(|o| o.pending(contract)),
        }
    }

    pub(crate) fn dead_letters(
        &self,
        contract: Option<&str>,
    ) -> Result<Listing<DeadLetter>, Failure> {
        match self {
            Self::Store(store) => store.dead_letters(contract).map_err(failed),
            #[cfg(feature = "postgres")]
            Self::Outbox(outbox) => outbox.run(|o| o.dead_letters(contract)),
        }
    }

    /// The records set aside in the quarantine (an outbox has none: its
    /// rows are typed columns).
    pub(crate) fn quarantined(&self) -> Result<Vec<Quarantined>, Failure> {
        match self {
            Self::Store(store) => store.quarantined().map_err(failed),
            #[cfg(feature = "postgres")]
            Self::Outbox(_) => Ok(Vec::new()),
        }
    }

    pub(crate) fn entry(&self, ticket: Ticket) -> Result<Option<Entry>, Failure> {
        match self {
            Self::Store(store) => store.entry(ticket).map_err(failed),
            #[cfg(feature = "postgres")]
            Self::Outbox(outbox) => outbox.run(|o| o.entry(ticket)),
        }
    }

    pub(crate) fn retry_dead_letter(&self, ticket: Ticket) -> Result<Option<Ticket>, Failure> {
        match self {
            Self::Store(store) => store.retry_dead_letter(ticket).map_err(failed),
            #[cfg(feature = "postgres")]
            Self::Outbox(outbox) => outbox.run(|o| o.retry_dead_letter(ticket)),
        }
    }

    pub(crate) fn purge_dead_letter(&self, ticket: Ticket) -> Result<Option<DeadLetter>, Failure> {
        match self {
            Self::Store(store) => store.purge_dead_letter(ticket).map_err(failed),
            #[cfg(feature = "postgres")]
            Self::Outbox(outbox) => outbox.run(|o| o.purge_dead_letter(ticket)),
        }
    }

    pub(crate) fn purge_dead_letters(&self, contract: Option<&str>) -> Result<u64, Failure> {
        match self {
            Self::Store(store) => store.purge_dead_letters(contract).map_err(failed),
            #[cfg(feature = "postgres")]
            Self::Outbox(outbox) => outbox.run(|o| o.purge_dead_letters(contract)),
        }
    }
}

fn open_store(dir: &Path, recover: bool, maintenance: bool) -> Result<Store, Failure> {
    let opened = if maintenance || recover {
        Store::open_for_maintenance(dir)
    } else {
        Store::open_read_only(dir)
    };
    opened.map_err(|error| match error {
        StoreError::Locked { .. } => Failure::new(format!(
            "{error}.\n\
             The tool neither reads nor changes a store another process has open, so it never \
             races the service that owns it (it did nothing).\n\
             While the service runs, act through it: its status page (`Runtime::health()`: \
             queues, dead letters, quarantined; `seawall status URL` prints it as tables) and the \
             actions it offers there (`Runtime::retry_dead_letter(ticket)`, \
             `write_ahead_log().dead_letters(..)`). Or stop the service, and run this again."
        ))
        .with_code(LOCKED),
        StoreError::Unrecovered { .. } => Failure::new(format!(
            "{error}.\nRun the command again with `--recover` to recover it now (with the \
             service stopped), or start the service."
        )),
        error => Failure::new(error.to_string()),
    })
}

fn failed(error: StoreError) -> Failure {
    Failure::new(error.to_string())
}

#[cfg(feature = "postgres")]
mod postgres {
    //! The outbox behind `--postgres URL`: `PostgresOutbox` is async (sqlx),
    //! the tool is not, so each call runs on a current-thread runtime of
    //! its own.

    use std::future::Future;
    use std::time::Duration;

    use seawall_core::StoreError;
    use seawall_core::admin::PostgresOutbox;
    use seawall_core::postgres::Postgres;

    use crate::Failure;

    /// How long connecting, and each query, may take: longer than a
    /// runtime's default (an operator's shell may be far from the
    /// database), and bounded.
    const TIMEOUT: Duration = Duration::from_secs(10);

    pub(crate) struct Outbox {
        outbox: PostgresOutbox,
        runtime: tokio::runtime::Runtime,
    }

    impl Outbox {
        pub(crate) fn connect(url: &str, schema: Option<&str>) -> Result<Self, Failure> {
            // A URL or schema that does not parse is a wrong command line;
            // the message never repeats the URL (it may hold a password).
            let wrong =
                |error: StoreError| Failure::new(format!("--postgres: {error}")).with_code(2);
            let mut config = Postgres::new(url).map_err(wrong)?.store_timeout(TIMEOUT);
            if let Some(schema) = schema {
                config = config.schema(schema).map_err(wrong)?;
            }
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| Failure::new(format!("could not start an async runtime: {e}")))?;
            let outbox = runtime
                .block_on(PostgresOutbox::connect(&config))
                .map_err(|error| Failure::new(error.to_string()))?;
            Ok(Self { outbox, runtime })
        }

        pub(crate) fn address(&self) -> String {
            self.outbox.address()
        }

        /// Runs one of the outbox's calls to its end.
        pub(crate) fn run<'a, T, F>(
            &'a self,
            call: impl FnOnce(&'a PostgresOutbox) -> F,
        ) -> Result<T, Failure>
        where
            F: Future<Output = Result<T, StoreError>> + 'a,
        {
            self.runtime
                .block_on(call(&self.outbox))
                .map_err(|error| Failure::new(error.to_string()))
        }
    }
}
