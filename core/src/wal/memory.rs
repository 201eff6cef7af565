//! The log in the process's memory: for tests and demos.

use std::collections::BTreeMap;
use std::sync::Mutex;

use super::{DeadLetter, QueuedWrite, Ticket, TicketStatus};

#[derive(Default)]
pub(super) struct Memory {
    // Held only for a map operation; never across an await.
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    next: u64,
    entries: BTreeMap<u64, QueuedWrite>,
    settled: BTreeMap<u64, TicketStatus>,
    dead: BTreeMap<u64, DeadLetter>,
}

impl Memory {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(super) fn append(&self, write: QueuedWrite) -> Ticket {
        let mut state = self.state();
        state.next += 1;
        let seq = state.next;
        state.entries.insert(seq, write);
        Ticket(seq)
    }

    pub(super) fn pending(
        &self,
        contract: &str,
        limit: usize,
        skip: &std::collections::HashSet<String>,
    ) -> Vec<(Ticket, QueuedWrite)> {
        self.state()
            .entries
            .iter()
            .filter(|(_, write)| write.contract == contract && !skip.contains(write.lane()))
            .take(limit)
            .map(|(seq, write)| (Ticket(*seq), write.clone()))
            .collect()
    }

    pub(super) fn depth(&self) -> u64 {
        self.state().entries.len() as u64
    }

    pub(super) fn record_attempt(&self, ticket: Ticket) {
        if let Some(write) = self.state().entries.get_mut(&ticket.0) {
            write.attempts = write.attempts.saturating_add(1);
        }
    }

    /// Returns the settled write's contract, if it was pending.
    pub(super) fn settle(&self, ticket: Ticket, status: TicketStatus) -> Option<String> {
        let mut state = self.state();
        let write = state.entries.remove(&ticket.0)?;
        let contract = write.contract.clone();
        if let TicketStatus::Dead { error, at_ms } = &status {
            let letter = DeadLetter {
                write,
                error: error.clone(),
                at_ms: *at_ms,
            };
            state.dead.insert(ticket.0, letter);
        }
        state.settled.insert(ticket.0, status);
        Some(contract)
    }

    pub(super) fn status(&self, ticket: Ticket) -> Option<TicketStatus> {
        let state = self.state();
        if state.entries.contains_key(&ticket.0) {
            return Some(TicketStatus::Pending);
        }
        state.settled.get(&ticket.0).cloned()
    }

    pub(super) fn dead_letter(&self, ticket: Ticket) -> Option<DeadLetter> {
        self.state().dead.get(&ticket.0).cloned()
    }

    pub(super) fn remove_dead(&self, ticket: Ticket) -> bool {
        self.state().dead.remove(&ticket.0).is_some()
    }

    pub(super) fn dead_letters(&self, limit: usize) -> Vec<(Ticket, DeadLetter)> {
        self.state()
            .dead
            .iter()
            .take(limit)
            .map(|(seq, letter)| (Ticket(*seq), letter.clone()))
            .collect()
    }
}
