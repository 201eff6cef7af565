//! `seawall queue ..` and `seawall dead-letters`: an embedded store or the
//! PostgreSQL outbox, through `seawall_core::admin` (see `source.rs`).

use seawall_core::admin::{Entry, Listing};
use seawall_core::wal::{DeadLetter, Quarantined, QueuedWrite, Ticket, TicketStatus};
use serde_json::json;

use crate::source::Source;
use crate::table::{Table, age, utc};
use crate::{Failure, StoreArgs};

/// `42` or `#42`.
pub(crate) fn parse_ticket(text: &str) -> Result<u64, String> {
    text.trim_start_matches('#')
        .parse()
        .map_err(|_| format!("`{text}` is not a ticket (a number, such as 42 or #42)"))
}

/// `seawall queue ls`.
pub(crate) fn ls(args: &StoreArgs, contract: Option<&str>) -> Result<(), Failure> {
    let store = Source::open(args, false)?;
    let queues = store.queues()?;
    let pending = store.pending(contract)?;
    let quarantined = store.quarantined()?;
    println!("{}", store.describe());
    let mut summary = Table::new(["CONTRACT", "PENDING", "LANES", "DEAD LETTERS", "OLDEST"]);
    for queue in queues
        .iter()
        .filter(|queue| contract.is_none_or(|c| c == queue.contract))
    {
        summary.row([
            queue.contract.clone(),
            queue.pending.to_string(),
            queue.lanes.to_string(),
            queue.dead_letters.to_string(),
            queue.oldest_enqueued_ms.map_or("-".into(), age),
        ]);
    }
    if summary.is_empty() {
        println!(
            "\nno queued writes{}",
            contract.map(|c| format!(" of `{c}`")).unwrap_or_default()
        );
    } else {
        println!();
        summary.print();
    }
    let by_contract: std::collections::BTreeSet<&str> = pending
        .items
        .iter()
        .map(|(_, write)| write.contract.as_str())
        .collect();
    for name in by_contract {
        println!("\n{name}: pending, in delivery order per lane");
        let mut writes = Table::new(["TICKET", "METHOD", "ORDER KEY", "ATTEMPTS", "AGE", "KEY"]);
        for (ticket, write) in pending.items.iter().filter(|(_, w)| w.contract == name) {
            writes.row([
                ticket.to_string(),
                write.method.clone(),
                write.order_key.clone().unwrap_or_else(|| "-".into()),
                write.attempts.to_string(),
                age(write.enqueued_at_ms),
                short_key(&write.key),
            ]);
        }
        writes.print();
    }
    if !pending.items.is_empty() {
        println!(
            "\n(The next attempt is the service's to decide: its drain starts when a wrapper of \
             the contract is first used, or on `resume_queued()`.)"
        );
    }
    print_unreadable(&pending.unreadable, &quarantined);
    Ok(())
}

fn print_unreadable(unreadable: &[Quarantined], quarantined: &[Quarantined]) {
    if !unreadable.is_empty() {
        println!(
            "\n{} record(s) could not be decoded (the service sets them aside when it next opens \
             the store):",
            unreadable.len()
        );
        for record in unreadable {
            println!("  {}: {}", record.ticket, record.reason);
        }
    }
    if !quarantined.is_empty() {
        println!(
            "\n{} record(s) in the quarantine (`write_ahead_log().quarantined(..)`):",
            quarantined.len()
        );
        for record in quarantined {
            println!("  {}: {}", record.ticket, record.reason);
        }
    }
}

/// `seawall queue show TICKET`.
pub(crate) fn show(args: &StoreArgs, ticket: u64) -> Result<(), Failure> {
    let store = Source::open(args, false)?;
    let ticket = Ticket(ticket);
    let Some(entry) = store.entry(ticket)? else {
        return Err(Failure::new(store.absent(ticket)));
    };
    let mut fields = Table::plain();
    fields.row(["ticket".into(), ticket.to_string()]);
    match entry {
        Entry::Pending(write) => {
            fields.row(["state".into(), "pending".into()]);
            write_fields(&mut fields, &write);
        }
        Entry::DeadLetter(letter) => {
            fields.row(["state".into(), "dead letter".into()]);
            write_fields(&mut fields, &letter.write);
            fields.row(["refused".into(), at(letter.at_ms)]);
            fields.row(["error".into(), letter.error]);
        }
        Entry::Settled(TicketStatus::Delivered { answer, at_ms }) => {
            fields.row(["state".into(), "delivered".into()]);
            fields.row(["delivered".into(), at(at_ms)]);
            fields.row(["answer".into(), pretty(&answer)]);
        }
        Entry::Settled(TicketStatus::Dead { error, at_ms }) => {
            fields.row([
                "state".into(),
                "dead (its dead letter was retried or purged)".into(),
            ]);
            fields.row(["refused".into(), at(at_ms)]);
            fields.row(["error".into(), error]);
        }
        Entry::Settled(status) => {
            fields.row(["state".into(), format!("{status:?}")]);
        }
        Entry::Moved(to) => {
            fields.row([
                "state".into(),
                format!("moved to the PostgreSQL outbox, as {to} there"),
            ]);
        }
        Entry::Unreadable(record) => {
            fields.row(["state".into(), "unreadable".into()]);
            fields.row(["reason".into(), record.reason]);
            fields.row(["bytes".into(), record.bytes.len().to_string()]);
        }
        other => fields.row(["state".into(), format!("{other:?}")]),
    }
    fields.print();
    Ok(())
}

fn write_fields(fields: &mut Table, write: &QueuedWrite) {
    fields.row(["contract".into(), write.contract.clone()]);
    fields.row(["method".into(), write.method.clone()]);
    fields.row(["key".into(), write.key.clone()]);
    fields.row([
        "order key".into(),
        write.order_key.clone().unwrap_or_else(|| "-".into()),
    ]);
    fields.row(["attempts".into(), write.attempts.to_string()]);
    fields.row(["queued".into(), at(write.enqueued_at_ms)]);
    if !write.redacted.is_empty() {
        fields.row(["redacted".into(), write.redacted.join(", ")]);
    }
    fields.row(["arguments".into(), pretty(&write.shown_arguments())]);
}

fn at(ms: u64) -> String {
    format!("{} ({} ago)", utc(ms), age(ms))
}

fn pretty(value: &serde_json::Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
}

/// The dead letters `tickets` (or all, of `contract`) name.
fn chosen(
    store: &Source,
    tickets: &[u64],
    all: bool,
    contract: Option<&str>,
) -> Result<Vec<Ticket>, Failure> {
    if all {
        let letters = store.dead_letters(contract)?;
        Ok(letters
            .items
            .into_iter()
            .map(|(ticket, _)| ticket)
            .collect())
    } else {
        Ok(tickets.iter().copied().map(Ticket).collect())
    }
}

/// `seawall queue retry`.
pub(crate) fn retry(
    args: &StoreArgs,
    tickets: &[u64],
    all: bool,
    contract: Option<&str>,
) -> Result<(), Failure> {
    let store = Source::open(args, true)?;
    let mut missing = Vec::new();
    let mut queued = 0;
    for ticket in chosen(&store, tickets, all, contract)? {
        match store.retry_dead_letter(ticket)? {
            Some(new) => {
                queued += 1;
                println!("{ticket} queued again as {new}");
            }
            None => missing.push(ticket.to_string()),
        }
    }
    println!(
        "{queued} dead letter(s) queued again; the service delivers them when it drains their \
         contract (on its first call of it, or `resume_queued()`)"
    );
    if missing.is_empty() {
        Ok(())
    } else {
        Err(Failure::new(format!(
            "not dead letters (nothing done for them): {}",
            missing.join(", ")
        )))
    }
}

/// `seawall queue purge`.
pub(crate) fn purge(
    args: &StoreArgs,
    tickets: &[u64],
    all: bool,
    contract: Option<&str>,
    yes: bool,
) -> Result<(), Failure> {
    if !yes {
        let store = Source::open(args, false)?;
        let letters = store.dead_letters(None)?;
        let doomed: Vec<&(Ticket, DeadLetter)> = letters
            .items
            .iter()
            .filter(|(ticket, letter)| {
                if all {
                    contract.is_none_or(|c| c == letter.write.contract)
                } else {
                    tickets.contains(&ticket.0)
                }
            })
            .collect();
        dead_letter_table(doomed.iter().copied()).print();
        return Err(Failure::new(format!(
            "nothing was purged: {} dead letter(s) would be dropped for good; run again with \
             `--yes` to drop them",
            doomed.len()
        ))
        .with_code(2));
    }
    let store = Source::open(args, true)?;
    if all {
        let purged = store.purge_dead_letters(contract)?;
        println!("{purged} dead letter(s) purged");
        return Ok(());
    }
    let mut missing = Vec::new();
    let mut purged = 0;
    for &ticket in tickets {
        match store.purge_dead_letter(Ticket(ticket))? {
            Some(_) => purged += 1,
            None => missing.push(Ticket(ticket).to_string()),
        }
    }
    println!("{purged} dead letter(s) purged");
    if missing.is_empty() {
        Ok(())
    } else {
        Err(Failure::new(format!(
            "not dead letters (nothing done for them): {}",
            missing.join(", ")
        )))
    }
}

fn dead_letter_table<'a>(letters: impl IntoIterator<Item = &'a (Ticket, DeadLetter)>) -> Table {
    let mut table = Table::new([
        "TICKET", "CONTRACT", "METHOD", "ATTEMPTS", "QUEUED", "REFUSED", "ERROR",
    ]);
    for (ticket, letter) in letters {
        table.row([
            ticket.to_string(),
            letter.write.contract.clone(),
            letter.write.method.clone(),
            letter.write.attempts.to_string(),
            age(letter.write.enqueued_at_ms),
            age(letter.at_ms),
            one_line(&letter.error, 80),
        ]);
    }
    table
}

/// A key's first 16 characters: enough to tell keys apart in a list
/// (`queue show` and `export` print it whole).
fn short_key(key: &str) -> String {
    match key.char_indices().nth(16) {
        Some((at, _)) => format!("{}…", &key[..at]),
        None => key.to_owned(),
    }
}

fn one_line(text: &str, max: usize) -> String {
    let line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if line.chars().count() <= max {
        return line;
    }
    let cut: String = line.chars().take(max - 1).collect();
    format!("{cut}…")
}

/// `seawall dead-letters`.
pub(crate) fn dead_letters(args: &StoreArgs, contract: Option<&str>) -> Result<(), Failure> {
    let store = Source::open(args, false)?;
    let letters = store.dead_letters(contract)?;
    println!("{}", store.describe());
    if letters.items.is_empty() {
        println!(
            "\nno dead letters{}",
            contract.map(|c| format!(" of `{c}`")).unwrap_or_default()
        );
    } else {
        println!();
        dead_letter_table(&letters.items).print();
        println!(
            "\n(`seawall queue show TICKET` for a letter's arguments and whole error; `seawall \
             queue retry TICKET` once its cause is fixed.)"
        );
    }
    print_unreadable(&letters.unreadable, &[]);
    Ok(())
}

/// `seawall queue export`: JSON lines on stdout.
pub(crate) fn export(args: &StoreArgs, contract: Option<&str>) -> Result<(), Failure> {
    let store = Source::open(args, false)?;
    let pending: Listing<QueuedWrite> = store.pending(contract)?;
    let dead = store.dead_letters(contract)?;
    let mut out = std::io::stdout().lock();
    let mut line = |value: serde_json::Value| {
        use std::io::Write;
        writeln!(out, "{value}").map_err(|e| Failure::new(format!("writing the export: {e}")))
    };
    for (ticket, write) in &pending.items {
        let mut record = write_json(write);
        record["ticket"] = json!(ticket.0);
        record["state"] = json!("pending");
        line(record)?;
    }
    for (ticket, letter) in &dead.items {
        let mut record = write_json(&letter.write);
        record["ticket"] = json!(ticket.0);
        record["state"] = json!("dead_letter");
        record["error"] = json!(letter.error);
        record["refused_at_ms"] = json!(letter.at_ms);
        line(record)?;
    }
    for record in pending.unreadable.iter().chain(&dead.unreadable) {
        line(json!({
            "ticket": record.ticket.0,
            "state": "unreadable",
            "reason": record.reason,
        }))?;
    }
    Ok(())
}

/// A write as exported: redacted arguments shown as `"<redacted>"`.
fn write_json(write: &QueuedWrite) -> serde_json::Value {
    json!({
        "ticket": null,
        "state": null,
        "contract": write.contract,
        "method": write.method,
        "key": write.key,
        "order_key": write.order_key,
        "attempts": write.attempts,
        "enqueued_at_ms": write.enqueued_at_ms,
        "arguments": write.shown_arguments(),
        "redacted": write.redacted,
    })
}
