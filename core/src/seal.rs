//! Redacted arguments at rest: sealed with a key the application supplies.
//!
//! `redact = [card]` keeps an argument out of logs and events. A queued
//! write also keeps its arguments on disk until it is delivered, in the
//! write-ahead log and, if refused, as a dead letter; a card number there is
//! as exposed as in a log. So an embedded runtime seals every redacted
//! argument of a queued write with ChaCha20-Poly1305 under a key the
//! application gives ([`SealingKey`]), bound to the write's contract,
//! method, idempotency key and argument name (so a sealed value cannot be
//! moved to another write), and opens it only in memory, when the drain
//! delivers the write. A runtime with a durable log and no key refuses such
//! a write before calling the vendor, unless the application accepts
//! plaintext at rest explicitly
//! ([`RuntimeBuilder::plaintext_redacted`](crate::RuntimeBuilder::plaintext_redacted)).
//!
//! **Rotation.** Each sealed value names the key that sealed it. Give the
//! new key as the sealing key and the old one as a previous key
//! ([`RuntimeBuilder::previous_sealing_key`](crate::RuntimeBuilder::previous_sealing_key)):
//! new writes are sealed with the new key, writes queued before are opened
//! with the old one. Once they have drained (`depth()` is 0, or after the
//! settled retention for dead letters you still want to read), drop the old
//! key.
//!
//! Sealing needs the `sealing` feature (a default one). Without it there is
//! no key to give: a durable log refuses redacted arguments unless
//! plaintext is accepted, and a write sealed by an earlier build becomes a
//! dead letter (its argument cannot be opened) instead of being delivered.

#[cfg(feature = "sealing")]
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
#[cfg(feature = "sealing")]
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use serde_json::Value;
#[cfg(feature = "sealing")]
use serde_json::json;

use crate::wal::QueuedWrite;

/// The field a sealed value is stored under.
const SEALED: &str = "$seawall_sealed";

/// A 256-bit key for sealing redacted arguments, with the id that sealed
/// values carry. Its `Debug` shows the id only.
#[cfg(feature = "sealing")]
#[derive(Clone)]
pub struct SealingKey {
    id: String,
    cipher: ChaCha20Poly1305,
}

#[cfg(feature = "sealing")]
impl SealingKey {
    /// A key from its 32 bytes (keep them in your secret store, never in
    /// code), named `id` (a short, non-secret name such as `"2026-11"`).
    pub fn new(id: impl Into<String>, key: [u8; 32]) -> Self {
        Self {
            id: id.into(),
            cipher: ChaCha20Poly1305::new(Key::from_slice(&key)),
        }
    }

    /// The key's name.
    pub fn id(&self) -> &str {
        &self.id
    }
}

#[cfg(feature = "sealing")]
impl std::fmt::Debug for SealingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealingKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// How a runtime keeps redacted arguments at rest.
#[derive(Clone, Debug, Default)]
pub(crate) struct Sealing {
    #[cfg(feature = "sealing")]
    current: Option<SealingKey>,
    #[cfg(feature = "sealing")]
    previous: Vec<SealingKey>,
    plaintext: bool,
}

#[cfg(feature = "sealing")]
fn aad(write: &QueuedWrite, name: &str) -> Vec<u8> {
    [
        write.contract.as_bytes(),
        write.method.as_bytes(),
        write.key.as_bytes(),
        name.as_bytes(),
    ]
    .join(&0u8)
}

#[cfg(feature = "sealing")]
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(feature = "sealing")]
fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

impl Sealing {
    /// No key yet; redacted arguments in plaintext at rest if `plaintext`.
    pub(crate) fn new(plaintext: bool) -> Self {
        Self {
            #[cfg(feature = "sealing")]
            current: None,
            #[cfg(feature = "sealing")]
            previous: Vec::new(),
            plaintext,
        }
    }

    /// Seals with `current`, opens with it or one of `previous`.
    #[cfg(feature = "sealing")]
    pub(crate) fn with_keys(self, current: Option<SealingKey>, previous: Vec<SealingKey>) -> Self {
        Self {
            current,
            previous,
            ..self
        }
    }

    #[cfg(feature = "sealing")]
    fn has_key(&self) -> bool {
        self.current.is_some()
    }

    #[cfg(not(feature = "sealing"))]
    #[allow(clippy::unused_self)]
    fn has_key(&self) -> bool {
        false
    }

    /// Why a write with these redacted arguments cannot be queued on a log
    /// that is (or is not) `durable`; `None` when it can.
    pub(crate) fn refusal(&self, redacted: &[String], durable: bool) -> Option<String> {
        let name = redacted.first()?;
        (durable && !self.has_key() && !self.plaintext).then(|| {
            #[cfg(feature = "sealing")]
            let how = "give one with `RuntimeBuilder::sealing_key(..)`";
            #[cfg(not(feature = "sealing"))]
            let how = "build seawall with its `sealing` feature and give one with \
                       `RuntimeBuilder::sealing_key(..)`";
            format!(
                "argument `{name}` is redacted, and this runtime has no key to seal it at rest: \
                 {how}, or accept it in plaintext on disk with \
                 `RuntimeBuilder::plaintext_redacted()`"
            )
        })
    }

    /// Seals the redacted arguments of `write` in place (with no key, as
    /// allowed by [`refusal`](Self::refusal), they stay as they are).
    #[cfg(feature = "sealing")]
    pub(crate) fn seal(&self, write: &mut QueuedWrite) -> Result<(), String> {
        let Some(key) = &self.current else {
            return Ok(());
        };
        for name in write.redacted.clone() {
            let aad = aad(write, &name);
            let Some(value) = write.arguments.get_mut(&name) else {
                continue;
            };
            if value.get(SEALED).is_some() {
                continue; // sealed already (a dead letter queued again)
            }
            let plain = serde_json::to_vec(value).map_err(|e| e.to_string())?;
            let nonce: [u8; 12] = rand::random();
            let sealed = key
                .cipher
                .encrypt(
                    Nonce::from_slice(&nonce),
                    Payload {
                        msg: &plain,
                        aad: &aad,
                    },
                )
                .map_err(|_| format!("argument `{name}` could not be sealed"))?;
            *value =
                json!({ SEALED: { "key": key.id, "nonce": hex(&nonce), "data": hex(&sealed) } });
        }
        Ok(())
    }

    /// Without the `sealing` feature there is no key: redacted arguments
    /// stay as they are (as allowed by [`refusal`](Self::refusal)).
    #[cfg(not(feature = "sealing"))]
    #[allow(clippy::unnecessary_wraps, clippy::unused_self)]
    pub(crate) fn seal(&self, _write: &mut QueuedWrite) -> Result<(), String> {
        Ok(())
    }

    /// Opens the sealed arguments of `write` in place, for delivery.
    ///
    /// # Errors
    ///
    /// Why one cannot be opened (a key this runtime does not have, or a
    /// value that was altered), naming the argument but never its value.
    pub(crate) fn unseal(&self, write: &mut QueuedWrite) -> Result<(), String> {
        for name in write.redacted.clone() {
            #[cfg(feature = "sealing")]
            let aad = aad(write, &name);
            #[cfg(not(feature = "sealing"))]
            let aad = Vec::new();
            let Some(value) = write.arguments.get_mut(&name) else {
                continue;
            };
            let Some(sealed) = value.get(SEALED) else {
                continue; // queued in plaintext, as allowed
            };
            *value = self.open(&aad, &name, sealed)?;
        }
        Ok(())
    }

    /// The value sealed in `sealed`: the argument `name` of the write whose
    /// associated data is `aad`.
    #[cfg(feature = "sealing")]
    fn open(&self, aad: &[u8], name: &str, sealed: &Value) -> Result<Value, String> {
        {
            let field = |f: &str| sealed.get(f).and_then(Value::as_str).map(str::to_owned);
            let damaged = || format!("the sealed argument `{name}` is damaged");
            let id = field("key").ok_or_else(damaged)?;
            let nonce = field("nonce")
                .and_then(|n| unhex(&n))
                .filter(|n| n.len() == 12);
            let nonce = nonce.ok_or_else(damaged)?;
            let data = field("data").and_then(|d| unhex(&d)).ok_or_else(damaged)?;
            let key = self
                .current
                .iter()
                .chain(&self.previous)
                .find(|k| k.id == id)
                .ok_or_else(|| {
                    format!(
                        "argument `{name}` is sealed with key `{id}`, which this runtime does not \
                         have (give it with `RuntimeBuilder::previous_sealing_key(..)`)"
                    )
                })?;
            let plain = key
                .cipher
                .decrypt(Nonce::from_slice(&nonce), Payload { msg: &data, aad })
                .map_err(|_| {
                    format!("the sealed argument `{name}` does not open with key `{id}` (altered?)")
                })?;
            serde_json::from_slice(&plain).map_err(|_| damaged())
        }
    }

    #[cfg(not(feature = "sealing"))]
    #[allow(clippy::unused_self)]
    fn open(&self, _aad: &[u8], name: &str, _sealed: &Value) -> Result<Value, String> {
        Err(format!(
            "argument `{name}` is sealed, and this build of seawall cannot open it: build it with \
             its `sealing` feature and give the key with `RuntimeBuilder::sealing_key(..)`"
        ))
    }
}

#[cfg(all(test, feature = "sealing"))]
mod tests {
    use super::*;

    fn write() -> QueuedWrite {
        let mut write = QueuedWrite::new(
            "payments",
            "charge",
            "k1",
            json!({ "card": "4111222233334444", "cents": 500 }),
        );
        write.redacted = vec!["card".into()];
        write
    }

    fn sealing(id: &str, byte: u8) -> Sealing {
        Sealing::new(false).with_keys(Some(SealingKey::new(id, [byte; 32])), Vec::new())
    }

    #[test]
    fn a_sealed_argument_is_unreadable_at_rest_and_opens_for_delivery() {
        let sealing = sealing("k", 1);
        let mut stored = write();
        sealing.seal(&mut stored).unwrap();
        let text = serde_json::to_string(&stored).unwrap();
        assert!(!text.contains("4111222233334444"), "{text}");
        assert_eq!(stored.arguments["cents"], 500, "the rest stays readable");
        let mut opened = stored.clone();
        sealing.unseal(&mut opened).unwrap();
        assert_eq!(opened.arguments, write().arguments);
        // Two seals of the same value differ (a fresh nonce each).
        let mut again = write();
        sealing.seal(&mut again).unwrap();
        assert_ne!(again.arguments["card"], stored.arguments["card"]);
        // A sealed write sealed again (a dead letter queued again) is left
        // as it is, and still opens.
        let mut resealed = stored.clone();
        sealing.seal(&mut resealed).unwrap();
        assert_eq!(resealed.arguments, stored.arguments);
    }

    #[test]
    fn rotation_opens_old_writes_with_the_previous_key() {
        let old = sealing("2026-10", 1);
        let mut stored = write();
        old.seal(&mut stored).unwrap();
        let rotated = Sealing::new(false).with_keys(
            Some(SealingKey::new("2026-11", [2; 32])),
            vec![SealingKey::new("2026-10", [1; 32])],
        );
        let mut opened = stored.clone();
        rotated.unseal(&mut opened).unwrap();
        assert_eq!(opened.arguments["card"], "4111222233334444");
        let error = sealing("2026-11", 2)
            .unseal(&mut stored.clone())
            .unwrap_err();
        assert!(
            error.contains("key `2026-10`") && !error.contains("4111"),
            "{error}"
        );
    }

    #[test]
    fn an_altered_or_moved_value_does_not_open() {
        let sealing = sealing("k", 1);
        let mut stored = write();
        sealing.seal(&mut stored).unwrap();
        // Moved to another write: the binding to its key fails it.
        let mut moved = stored.clone();
        moved.key = "k2".into();
        assert!(sealing.unseal(&mut moved).unwrap_err().contains("altered"));
        // A byte changed.
        let mut altered = stored.clone();
        let data = altered.arguments["card"][SEALED]["data"]
            .as_str()
            .unwrap()
            .to_owned();
        let flipped = format!(
            "{}{}",
            if data.starts_with('0') { "1" } else { "0" },
            &data[1..]
        );
        altered.arguments["card"][SEALED]["data"] = json!(flipped);
        assert!(sealing.unseal(&mut altered).is_err());
    }

    #[test]
    fn without_a_key_a_durable_log_refuses_unless_plaintext_is_accepted() {
        let none = Sealing::default();
        let redacted = vec!["card".to_owned()];
        let refusal = none.refusal(&redacted, true).unwrap();
        assert!(refusal.contains("sealing_key") && refusal.contains("plaintext_redacted"));
        assert_eq!(
            none.refusal(&redacted, false),
            None,
            "in memory, nothing is at rest"
        );
        assert_eq!(none.refusal(&[], true), None, "nothing redacted");
        let plaintext = Sealing::new(true);
        assert_eq!(plaintext.refusal(&redacted, true), None);
        assert!(format!("{:?}", SealingKey::new("k", [9; 32])).contains("\"k\""));
    }
}
