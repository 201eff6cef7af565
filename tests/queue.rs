//! `fallback = queue`: undeliverable writes are queued durably, drained in
//! order with their original keys, and refused ones kept as dead letters.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use seawall::wal::{QueuedWrite, Ticket, TicketStatus};
use seawall::{Delivery, Event, Resilient, Runtime, contract};
use serde::{Deserialize, Serialize};
use support::VendorError;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    pub number: String,
    pub to: String,
}

#[contract(name = "telephony")]
pub trait Telephony {
    #[integration(write, timeout = "1s", retry(attempts = 2, base = "100ms", jitter = "none"),
                  breaker(failure_rate = 0.5, window = 10, min_calls = 10, open_for = "30s"),
                  idempotent(key = [route.number, priority]), fallback = queue)]
    async fn route(&self, route: &Route, priority: u8) -> Result<Delivery<String>, VendorError>;

    #[integration(read, timeout = "1s")]
    async fn status(&self, number: &str) -> Result<String, VendorError>;
}

/// What the vendor received, in order: (idempotency key, number).
type Received = Arc<Mutex<Vec<(String, String)>>>;

/// A fake telephony vendor: down (503) while `down` is set; answers 422 for
/// the numbers in `refuse`.
#[derive(Clone, Default)]
struct Vendor {
    down: Arc<Mutex<bool>>,
    refuse: Arc<Mutex<Vec<String>>>,
    /// Fails the next calls with 503, whatever `down` says.
    fail_next: Arc<Mutex<u32>>,
    /// Numbers whose delivery panics in the adapter (a parsing bug, say).
    panic_on: Arc<Mutex<Vec<String>>>,
    received: Received,
}

impl Vendor {
    fn set_down(&self, down: bool) {
        *self.down.lock().unwrap() = down;
    }

    fn received(&self) -> Vec<(String, String)> {
        self.received.lock().unwrap().clone()
    }

    fn numbers(&self) -> Vec<String> {
        self.received().into_iter().map(|(_, n)| n).collect()
    }
}

impl Telephony for Vendor {
    async fn route(&self, route: &Route, _priority: u8) -> Result<Delivery<String>, VendorError> {
        let key = seawall::idempotency::current_key()
            .map(|k| k.to_string())
            .unwrap_or_default();
        self.received
            .lock()
            .unwrap()
            .push((key, route.number.clone()));
        {
            let mut fail_next = self.fail_next.lock().unwrap();
            if *fail_next > 0 {
                *fail_next -= 1;
                return Err(VendorError::status(503));
            }
        }
        if *self.down.lock().unwrap() {
            return Err(VendorError::status(503));
        }
        if self.refuse.lock().unwrap().contains(&route.number) {
            return Err(VendorError::status(422));
        }
        if self.panic_on.lock().unwrap().contains(&route.number) {
            panic!("could not parse the answer for {}", route.number);
        }
        Ok(format!("routed {} to {}", route.number, route.to).into())
    }

    async fn status(&self, number: &str) -> Result<String, VendorError> {
        Ok(format!("{number}: up"))
    }
}

fn route(n: u32) -> Route {
    Route {
        number: format!("+1555000{n:04}"),
        to: format!("agent-{n}"),
    }
}

fn ticket(delivery: &Delivery<String>) -> Ticket {
    delivery.ticket().expect("the write was queued")
}

#[tokio::test(start_paused = true)]
async fn a_write_the_vendor_takes_is_done_and_nothing_is_queued() {
    let runtime = Runtime::in_memory();
    let vendor = Vendor::default();
    let telephony = Resilient::new(vendor.clone(), &runtime);
    let answer = telephony.route(&route(1), 1).await.unwrap();
    assert_eq!(
        answer,
        Delivery::Done("routed +15550000001 to agent-1".into())
    );
    assert_eq!(runtime.write_ahead_log().depth().await.unwrap(), 0);
    assert_eq!(vendor.received().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_permanent_error_goes_back_to_the_caller_and_not_into_the_log() {
    let runtime = Runtime::in_memory();
    let vendor = Vendor::default();
    vendor.refuse.lock().unwrap().push(route(1).number);
    let telephony = Resilient::new(vendor.clone(), &runtime);
    let error = telephony.route(&route(1), 1).await.unwrap_err();
    assert!(
        matches!(error, VendorError::Status(s) if s.as_u16() == 422),
        "{error:?}"
    );
    assert_eq!(runtime.write_ahead_log().depth().await.unwrap(), 0);
}

#[tokio::test(start_paused = true)]
async fn undeliverable_writes_are_queued_then_drained_in_order_with_their_original_keys() {
    let runtime = Runtime::in_memory();
    let events = Arc::new(Mutex::new(Vec::new()));
    let seen = events.clone();
    runtime.subscribe(move |event| match event {
        Event::Queued(q) => seen.lock().unwrap().push(format!("queued {}", q.ticket)),
        Event::Delivered(d) => seen.lock().unwrap().push(format!("delivered {}", d.ticket)),
        _ => {}
    });
    let vendor = Vendor::default();
    vendor.set_down(true);
    let telephony = Resilient::new(vendor.clone(), &runtime);

    let mut tickets = Vec::new();
    for n in 0..6 {
        let answer = telephony.route(&route(n), 2).await.unwrap();
        tickets.push(ticket(&answer));
    }
    // The first write made its two attempts; the later ones were queued
    // behind it without calling the vendor.
    let sent_while_down = vendor.numbers();
    assert_eq!(sent_while_down, [route(0).number, route(0).number]);
    let log = runtime.write_ahead_log();
    assert_eq!(log.pending_count("telephony"), 6);
    let pending = log.pending("telephony", 100).await.unwrap();
    let queued_keys: Vec<String> = pending.iter().map(|(_, w)| w.key.clone()).collect();
    assert_eq!(pending.iter().map(|(t, _)| *t).collect::<Vec<_>>(), tickets);
    assert_eq!(pending[0].1.arguments["route"]["to"], "agent-0");
    assert_eq!(pending[0].1.arguments["priority"], 2);

    vendor.set_down(false);
    vendor.received.lock().unwrap().clear();
    for ticket in &tickets {
        let status = log.settled(*ticket).await.unwrap();
        assert!(
            matches!(status, Some(TicketStatus::Delivered { .. })),
            "{status:?}"
        );
    }
    let delivered = vendor.received();
    assert_eq!(
        delivered.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>(),
        queued_keys,
        "delivered in enqueue order, each with the key it was queued with"
    );
    assert_eq!(
        delivered.iter().map(|(_, n)| n.clone()).collect::<Vec<_>>(),
        (0..6).map(|n| route(n).number).collect::<Vec<_>>()
    );
    let Some(TicketStatus::Delivered { answer, .. }) = log.status(tickets[5]).await.unwrap() else {
        panic!("delivered");
    };
    assert_eq!(answer, "routed +15550000005 to agent-5");
    assert_eq!(log.pending_count("telephony"), 0);
    assert_eq!(log.depth().await.unwrap(), 0);
    let events = events.lock().unwrap().clone();
    assert_eq!(events.iter().filter(|e| e.starts_with("queued")).count(), 6);
    assert_eq!(
        events.iter().filter(|e| e.starts_with("delivered")).count(),
        6
    );
}

#[tokio::test(start_paused = true)]
async fn while_writes_are_queued_a_new_write_queues_behind_them() {
    let runtime = Runtime::in_memory();
    let vendor = Vendor::default();
    vendor.set_down(true);
    let telephony = Resilient::new(vendor.clone(), &runtime);
    let first = telephony.route(&route(1), 1).await.unwrap();
    assert!(first.is_queued());

    // The vendor is back, but the first write is still waiting for the
    // drain: the second must not overtake it.
    vendor.set_down(false);
    vendor.received.lock().unwrap().clear();
    let second = telephony.route(&route(2), 1).await.unwrap();
    assert!(second.is_queued(), "{second:?}");
    assert!(vendor.received().is_empty(), "the vendor was not called");

    let log = runtime.write_ahead_log();
    log.settled(ticket(&second)).await.unwrap();
    assert_eq!(vendor.numbers(), [route(1).number, route(2).number]);

    // With the log empty, writes go straight to the vendor again.
    let third = telephony.route(&route(3), 1).await.unwrap();
    assert!(third.is_done(), "{third:?}");
}

#[tokio::test(start_paused = true)]
async fn a_failure_during_the_drain_holds_the_line_and_keeps_the_order() {
    let runtime = Runtime::in_memory();
    let vendor = Vendor::default();
    vendor.set_down(true);
    let telephony = Resilient::new(vendor.clone(), &runtime);
    let mut tickets = Vec::new();
    for n in 0..3 {
        tickets.push(ticket(&telephony.route(&route(n), 1).await.unwrap()));
    }
    vendor.set_down(false);
    vendor.received.lock().unwrap().clear();
    // The head's first drain attempt fails twice (both of its attempts).
    *vendor.fail_next.lock().unwrap() = 2;
    let log = runtime.write_ahead_log();
    for ticket in &tickets {
        log.settled(*ticket).await.unwrap();
    }
    let numbers = vendor.numbers();
    let head = route(0).number;
    assert_eq!(
        numbers,
        [
            head.clone(),
            head.clone(),
            head,
            route(1).number,
            route(2).number
        ],
        "nothing overtook the head while it failed"
    );
}

#[tokio::test(start_paused = true)]
async fn a_write_refused_on_delivery_becomes_a_dead_letter_and_the_drain_goes_on() {
    let runtime = Runtime::in_memory();
    let dead = Arc::new(Mutex::new(Vec::new()));
    let seen = dead.clone();
    runtime.subscribe(move |event| {
        if let Event::DeadLetter(letter) = event {
            seen.lock()
                .unwrap()
                .push((letter.ticket, letter.error.clone()));
        }
    });
    let vendor = Vendor::default();
    vendor.set_down(true);
    let telephony = Resilient::new(vendor.clone(), &runtime);
    let mut tickets = Vec::new();
    for n in 0..3 {
        tickets.push(ticket(&telephony.route(&route(n), 1).await.unwrap()));
    }
    vendor.refuse.lock().unwrap().push(route(1).number);
    vendor.set_down(false);
    let log = runtime.write_ahead_log();
    let statuses: Vec<_> = {
        let mut statuses = Vec::new();
        for ticket in &tickets {
            statuses.push(log.settled(*ticket).await.unwrap().unwrap());
        }
        statuses
    };
    assert!(matches!(statuses[0], TicketStatus::Delivered { .. }));
    let TicketStatus::Dead { error, .. } = &statuses[1] else {
        panic!("{:?}", statuses[1]);
    };
    assert!(error.contains("422"), "{error}");
    assert!(matches!(statuses[2], TicketStatus::Delivered { .. }));

    let letters = log.dead_letters(10).await.unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].0, tickets[1]);
    assert_eq!(
        letters[0].1.write.arguments["route"]["number"],
        route(1).number
    );
    assert_eq!(dead.lock().unwrap().clone(), [(tickets[1], error.clone())]);
    assert_eq!(log.pending_count("telephony"), 0);
}

#[tokio::test(start_paused = true)]
async fn a_delivery_that_panics_is_a_dead_letter_and_the_writes_behind_it_go_on() {
    let runtime = Runtime::in_memory();
    let dead = Arc::new(Mutex::new(Vec::new()));
    let seen = dead.clone();
    runtime.subscribe(move |event| {
        if let Event::DeadLetter(letter) = event {
            seen.lock().unwrap().push(letter.ticket);
        }
    });
    let vendor = Vendor::default();
    vendor.set_down(true);
    let telephony = Resilient::new(vendor.clone(), &runtime);
    let mut tickets = Vec::new();
    for n in 10..13 {
        tickets.push(ticket(&telephony.route(&route(n), 1).await.unwrap()));
    }
    // Back up, but the adapter panics on the answer for write 11.
    vendor.panic_on.lock().unwrap().push(route(11).number);
    vendor.set_down(false);
    let log = runtime.write_ahead_log();
    let mut statuses = Vec::new();
    for ticket in &tickets {
        statuses.push(log.settled(*ticket).await.unwrap().unwrap());
    }
    assert!(matches!(statuses[0], TicketStatus::Delivered { .. }));
    let TicketStatus::Dead { error, .. } = &statuses[1] else {
        panic!("{:?}", statuses[1]);
    };
    assert!(
        error.contains("panicked") && error.contains("could not parse the answer for +15550000011"),
        "{error}"
    );
    assert!(
        matches!(statuses[2], TicketStatus::Delivered { .. }),
        "the write behind the panic is delivered: {:?}",
        statuses[2]
    );
    assert_eq!(dead.lock().unwrap().clone(), [tickets[1]]);
    assert_eq!(log.pending_count("telephony"), 0);
    // Write 11 was queued behind write 10 without a call, reached the
    // vendor once from the drain, and was never sent again.
    let elevens = vendor
        .numbers()
        .into_iter()
        .filter(|n| *n == route(11).number)
        .count();
    assert_eq!(elevens, 1);

    // The adapter is fixed: an operator queues the dead letter again, and
    // it is delivered with its original key.
    vendor.panic_on.lock().unwrap().clear();
    let original_key = log.dead_letters(1).await.unwrap()[0].1.write.key.clone();
    let again = runtime
        .retry_dead_letter(tickets[1])
        .await
        .unwrap()
        .expect("a dead letter");
    let status = log.settled(again).await.unwrap().unwrap();
    assert!(
        matches!(status, TicketStatus::Delivered { .. }),
        "{status:?}"
    );
    let (key, number) = vendor.received().last().cloned().unwrap();
    assert_eq!((key, number), (original_key, route(11).number));
    assert!(log.dead_letters(10).await.unwrap().is_empty());
    assert_eq!(log.dead_count("telephony"), 0);
    assert_eq!(runtime.retry_dead_letter(tickets[1]).await.unwrap(), None);
}

#[tokio::test(start_paused = true)]
async fn a_stored_write_that_no_longer_fits_the_contract_is_a_dead_letter_not_a_loss() {
    let runtime = Runtime::in_memory();
    let log = runtime.write_ahead_log();
    let gone = log
        .append(&QueuedWrite::new(
            "telephony",
            "transfer",
            "key-1",
            serde_json::json!({}),
        ))
        .await
        .unwrap();
    let reshaped = log
        .append(&QueuedWrite::new(
            "telephony",
            "route",
            "key-2",
            serde_json::json!({ "route": 7, "priority": 1 }),
        ))
        .await
        .unwrap();
    let vendor = Vendor::default();
    let telephony = Resilient::new(vendor.clone(), &runtime);
    // Any first call offers the wrapper to the contract's queue, which
    // starts draining what was left.
    telephony.status("+15550000001").await.unwrap();
    let Some(TicketStatus::Dead { error, .. }) = log.settled(gone).await.unwrap() else {
        panic!("dead");
    };
    assert!(error.contains("no queued method `transfer`"), "{error}");
    let Some(TicketStatus::Dead { error, .. }) = log.settled(reshaped).await.unwrap() else {
        panic!("dead");
    };
    assert!(error.contains("argument `route` cannot be read"), "{error}");
    assert!(vendor.received().is_empty());
    assert_eq!(log.dead_letters(10).await.unwrap().len(), 2);
}

/// Three routing writes queued by an embedded runtime in a fresh directory
/// while the vendor was down; that runtime is closed, the vendor is back up
/// and has forgotten what it saw.
#[cfg(feature = "embedded")]
async fn queued_before_a_restart() -> (tempfile::TempDir, Vendor, Vec<Ticket>) {
    let dir = tempfile::tempdir().unwrap();
    let vendor = Vendor::default();
    vendor.set_down(true);
    let tickets = {
        let runtime = Runtime::embedded(dir.path()).unwrap();
        assert!(runtime.write_ahead_log().is_durable());
        let telephony = Resilient::new(vendor.clone(), &runtime);
        let mut tickets = Vec::new();
        for n in 0..3 {
            tickets.push(ticket(&telephony.route(&route(n), 1).await.unwrap()));
        }
        tickets
    };
    vendor.set_down(false);
    vendor.received.lock().unwrap().clear();
    (dir, vendor, tickets)
}

// A restart needs the durable log.
#[cfg(feature = "embedded")]
#[tokio::test]
async fn writes_queued_before_a_restart_are_delivered_by_the_next_runtime() {
    let (dir, vendor, tickets) = queued_before_a_restart().await;

    let runtime = Runtime::embedded(dir.path()).unwrap();
    let log = runtime.write_ahead_log();
    assert_eq!(log.pending_count("telephony"), 3);
    let telephony = Resilient::new(vendor.clone(), &runtime);
    telephony.status("+15550000001").await.unwrap();
    for ticket in &tickets {
        let status = tokio::time::timeout(Duration::from_secs(10), log.settled(*ticket))
            .await
            .expect("the drain delivers within 10 s")
            .unwrap();
        assert!(matches!(status, Some(TicketStatus::Delivered { .. })));
    }
    assert_eq!(
        vendor.numbers(),
        (0..3).map(|n| route(n).number).collect::<Vec<_>>()
    );
}

// A restart needs the durable log.
#[cfg(feature = "embedded")]
#[tokio::test]
async fn resume_queued_starts_the_leftovers_at_start_up_without_a_call() {
    let (dir, vendor, tickets) = queued_before_a_restart().await;

    let runtime = Runtime::embedded(dir.path()).unwrap();
    let log = runtime.write_ahead_log();
    let telephony = Resilient::new(vendor.clone(), &runtime);
    assert_eq!(log.pending_count("telephony"), 3);
    telephony.resume_queued();
    for ticket in &tickets {
        let status = tokio::time::timeout(Duration::from_secs(10), log.settled(*ticket))
            .await
            .expect("the drain delivers within 10 s")
            .unwrap();
        assert!(matches!(status, Some(TicketStatus::Delivered { .. })));
    }
    assert_eq!(
        vendor.numbers(),
        (0..3).map(|n| route(n).number).collect::<Vec<_>>(),
        "in order, with no call of the contract made"
    );
    // A second call changes nothing, and an adapter's own is a no-op.
    telephony.resume_queued();
    vendor.resume_queued();
    assert_eq!(vendor.numbers().len(), 3);
}

#[tokio::test(start_paused = true)]
async fn a_write_that_cannot_be_serialized_is_refused_before_the_vendor_is_called() {
    #[contract(name = "ledger")]
    pub trait Ledger {
        #[integration(write, timeout = "1s", idempotent(key = [id]), fallback = queue)]
        async fn post(
            &self,
            id: u32,
            totals: &std::collections::BTreeMap<(u8, u8), u32>,
        ) -> Result<Delivery<()>, VendorError>;
    }
    #[derive(Default)]
    struct Down(Mutex<u32>);
    impl Ledger for Down {
        async fn post(
            &self,
            _id: u32,
            _totals: &std::collections::BTreeMap<(u8, u8), u32>,
        ) -> Result<Delivery<()>, VendorError> {
            *self.0.lock().unwrap() += 1;
            Err(VendorError::status(503))
        }
    }
    let runtime = Runtime::in_memory();
    let ledger = Resilient::new(Down::default(), &runtime);
    let totals = [((1, 2), 3)].into_iter().collect();
    let error = ledger.post(7, &totals).await.unwrap_err();
    let Some(seawall::Error::Unrepresentable { reason, .. }) = error.seawall() else {
        panic!("{error:?}");
    };
    assert!(reason.contains("argument `totals`"), "{reason}");
    assert_eq!(
        *ledger.inner().0.lock().unwrap(),
        0,
        "the vendor was not called"
    );
    assert_eq!(runtime.write_ahead_log().depth().await.unwrap(), 0);
}

#[contract(name = "meter")]
pub trait Meter {
    /// The reading is not part of the key: only the queue stores it.
    #[integration(write, timeout = "1s", idempotent(key = [id]), fallback = queue)]
    async fn report(&self, id: u32, reading: f64) -> Result<Delivery<()>, VendorError>;

    /// Every argument is part of the key.
    #[integration(write, timeout = "1s", retry(attempts = 2), idempotent)]
    async fn adjust(&self, id: u32, delta: f64) -> Result<u32, VendorError>;
}

#[derive(Default)]
struct MeterVendor {
    calls: Mutex<u32>,
}

impl Meter for MeterVendor {
    async fn report(&self, _id: u32, _reading: f64) -> Result<Delivery<()>, VendorError> {
        *self.calls.lock().unwrap() += 1;
        Err(VendorError::status(503))
    }

    async fn adjust(&self, id: u32, _delta: f64) -> Result<u32, VendorError> {
        *self.calls.lock().unwrap() += 1;
        Ok(id)
    }
}

#[tokio::test(start_paused = true)]
async fn nan_and_infinities_are_refused_at_call_time_naming_the_argument() {
    let runtime = Runtime::in_memory();
    let meter = Resilient::new(MeterVendor::default(), &runtime);
    for (reading, shown) in [
        (f64::NAN, "NaN"),
        (f64::INFINITY, "inf"),
        (f64::NEG_INFINITY, "-inf"),
    ] {
        let error = meter.report(1, reading).await.unwrap_err();
        let Some(seawall::Error::Unrepresentable { reason, .. }) = error.seawall() else {
            panic!("{error:?}");
        };
        assert!(
            reason.contains("argument `reading`") && reason.contains(shown),
            "{reason}"
        );
        let error = meter.adjust(1, reading).await.unwrap_err();
        let Some(seawall::Error::IdempotencyKey { reason, .. }) = error.seawall() else {
            panic!("{error:?}");
        };
        assert!(
            reason.contains("`delta`") && reason.contains(shown),
            "{reason}"
        );
    }
    assert_eq!(
        *meter.inner().calls.lock().unwrap(),
        0,
        "the vendor was not called"
    );
    assert_eq!(
        runtime.write_ahead_log().depth().await.unwrap(),
        0,
        "nothing queued"
    );
    // A finite reading is queued as before (the vendor is down), and read
    // back as the same number.
    let queued = meter.report(1, 2.5).await.unwrap();
    assert!(queued.is_queued());
    let pending = runtime
        .write_ahead_log()
        .pending("meter", 10)
        .await
        .unwrap();
    assert_eq!(pending[0].1.arguments["reading"], 2.5);
}

#[tokio::test(start_paused = true)]
async fn the_drain_leaves_an_open_breaker_alone_until_it_lets_calls_through() {
    #[contract(name = "sms")]
    pub trait Sms {
        #[integration(write, timeout = "1s",
                      breaker(failure_rate = 0.5, window = 2, min_calls = 2, open_for = "30s"),
                      idempotent, fallback = queue)]
        async fn send(&self, to: &str, text: &str) -> Result<Delivery<u32>, VendorError>;
    }
    #[derive(Clone, Default)]
    struct Gateway {
        down: Arc<Mutex<bool>>,
        calls: Arc<Mutex<Vec<tokio::time::Instant>>>,
    }
    impl Sms for Gateway {
        async fn send(&self, _to: &str, _text: &str) -> Result<Delivery<u32>, VendorError> {
            self.calls.lock().unwrap().push(tokio::time::Instant::now());
            if *self.down.lock().unwrap() {
                Err(VendorError::status(503))
            } else {
                Ok(Delivery::Done(1))
            }
        }
    }
    let runtime = Runtime::in_memory();
    let gateway = Gateway::default();
    *gateway.down.lock().unwrap() = true;
    let sms = Resilient::new(gateway.clone(), &runtime);
    let start = tokio::time::Instant::now();
    let queued = sms.send("+15550000001", "hello").await.unwrap();
    // The vendor recovers after 5 s; the breaker opened at the drain's
    // first attempt (t = 1 s) and lets a probe through 30 s later.
    tokio::time::sleep(Duration::from_secs(5)).await;
    *gateway.down.lock().unwrap() = false;
    assert_delivered(&runtime, &queued).await;
    let calls = since(&gateway.calls, start);
    assert_eq!(calls.len(), 3, "{calls:?}");
    assert_eq!(calls[0], Duration::ZERO);
    assert_eq!(
        calls[1],
        Duration::from_secs(1),
        "the drain's first attempt"
    );
    assert!(
        calls[2] >= Duration::from_secs(31),
        "the probe waited for the breaker: {calls:?}"
    );
}

fn ticket_of<T>(delivery: &Delivery<T>) -> Ticket {
    delivery.ticket().expect("the write was queued")
}

/// Waits for a queued write to settle, and checks it was delivered.
async fn assert_delivered<T>(runtime: &Runtime, queued: &Delivery<T>) {
    let status = runtime
        .write_ahead_log()
        .settled(ticket_of(queued))
        .await
        .unwrap();
    assert!(
        matches!(status, Some(TicketStatus::Delivered { .. })),
        "{status:?}"
    );
}

/// When each recorded call came, counted from `start`.
fn since(times: &Mutex<Vec<tokio::time::Instant>>, start: tokio::time::Instant) -> Vec<Duration> {
    times.lock().unwrap().iter().map(|at| *at - start).collect()
}

#[test]
fn a_drain_cut_short_by_its_tokio_runtime_shutting_down_is_restarted_by_the_next_write() {
    let runtime = Runtime::in_memory();
    let vendor = Vendor::default();
    vendor.set_down(true);
    let first = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let queued = first.block_on(async {
        let telephony = Resilient::new(vendor.clone(), &runtime);
        telephony.route(&route(1), 1).await.unwrap()
    });
    assert!(queued.is_queued());
    // The drain task spawned on `first` dies with it.
    drop(first);

    vendor.set_down(false);
    let second = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    second.block_on(async {
        let telephony = Resilient::new(vendor.clone(), &runtime);
        let next = telephony.route(&route(2), 1).await.unwrap();
        let log = runtime.write_ahead_log();
        let status = tokio::time::timeout(Duration::from_secs(10), log.settled(ticket(&next)))
            .await
            .expect("a new drain delivers both writes")
            .unwrap();
        assert!(matches!(status, Some(TicketStatus::Delivered { .. })));
        assert_eq!(vendor.numbers().last(), Some(&route(2).number));
        assert_eq!(log.pending_count("telephony"), 0);
    });
}

#[contract(name = "fax")]
pub trait Fax {
    #[integration(
        read,
        timeout = "1s",
        breaker(window = 2, min_calls = 2, open_for = "10s")
    )]
    async fn status(&self) -> Result<String, VendorError>;

    #[integration(write, timeout = "1s", retry(attempts = 2, base = "10ms", jitter = "none"),
                  breaker(window = 2, min_calls = 2, open_for = "10s"),
                  idempotent, fallback = queue)]
    async fn send(&self, page: u32) -> Result<Delivery<u32>, VendorError>;
}

/// A fax vendor whose `send` follows a script of steps, recording when each
/// call came.
#[derive(Clone)]
struct FaxVendor {
    status: Arc<Mutex<Vec<support::Step>>>,
    send: Arc<Mutex<Vec<support::Step>>>,
    sent_at: Arc<Mutex<Vec<tokio::time::Instant>>>,
}

impl FaxVendor {
    fn new(status: Vec<support::Step>, send: Vec<support::Step>) -> Self {
        Self {
            status: Arc::new(Mutex::new(status)),
            send: Arc::new(Mutex::new(send)),
            sent_at: Arc::default(),
        }
    }
}

fn play(steps: &Mutex<Vec<support::Step>>) -> Result<(), VendorError> {
    let mut steps = steps.lock().unwrap();
    let step = if steps.is_empty() {
        support::Step::Ok
    } else {
        steps.remove(0)
    };
    match step {
        support::Step::Fail(status) => Err(VendorError::status(status)),
        support::Step::Throttled(status, after) => Err(VendorError::Throttled(
            http::StatusCode::from_u16(status).unwrap(),
            after,
        )),
        _ => Ok(()),
    }
}

impl Fax for FaxVendor {
    async fn status(&self) -> Result<String, VendorError> {
        play(&self.status).map(|()| "up".to_owned())
    }

    async fn send(&self, page: u32) -> Result<Delivery<u32>, VendorError> {
        self.sent_at
            .lock()
            .unwrap()
            .push(tokio::time::Instant::now());
        play(&self.send).map(|()| Delivery::Done(page))
    }
}

#[tokio::test(start_paused = true)]
async fn an_unrelated_breaker_closing_earlier_does_not_cut_the_drains_wait_short() {
    use support::Step::{Fail, Ok, Throttled};
    let after = Duration::from_secs(30);
    let vendor = FaxVendor::new(vec![Fail(503), Fail(503), Ok], vec![Throttled(429, after)]);
    let runtime = Runtime::in_memory();
    let fax = Resilient::new(vendor.clone(), &runtime);
    // The status breaker opens, then closes again after its 10 s.
    fax.status().await.unwrap_err();
    fax.status().await.unwrap_err();
    tokio::time::sleep(Duration::from_secs(11)).await;
    fax.status().await.unwrap();

    let start = tokio::time::Instant::now();
    let queued = fax.send(1).await.unwrap();
    assert_delivered(&runtime, &queued).await;
    let sent = since(&vendor.sent_at, start);
    assert_eq!(
        sent,
        [Duration::ZERO, after],
        "the drain waited the Retry-After the vendor asked for"
    );
}

#[tokio::test(start_paused = true)]
async fn a_breaker_opened_by_the_queued_call_itself_sets_the_drains_first_wait() {
    use support::Step::Fail;
    // `VendorError` passes on no `retry_in`: the wait is read from the
    // breaker itself.
    let vendor = FaxVendor::new(vec![], vec![Fail(503), Fail(503)]);
    let runtime = Runtime::in_memory();
    let fax = Resilient::new(vendor.clone(), &runtime);
    let start = tokio::time::Instant::now();
    let queued = fax.send(1).await.unwrap();
    assert_delivered(&runtime, &queued).await;
    let sent = since(&vendor.sent_at, start);
    // Two failed attempts 10 ms apart opened the breaker for 10 s; the
    // drain's probe came when it let calls through, not after 1 s.
    assert_eq!(sent.len(), 3, "{sent:?}");
    assert!(sent[2] >= Duration::from_secs(10), "{sent:?}");
}
