//! `redact = [..]`: the arguments kept out of every message and sealed at
//! rest, and its rules.

use crate::{Field, PolicyError};

/// `redact = [token, card]`: the arguments of a method whose values are
/// never recorded (not in events, not in plain text at rest).
///
/// A name is a whole argument: redacting one field of an argument would
/// still record the rest of it next to the secret. Whether each name is an
/// argument of the method can only be checked against the method's
/// arguments ([`Policy::argument_violations`](crate::Policy::argument_violations)).
///
/// ```
/// use seawall_policy::Redact;
///
/// let redact = Redact::from(["card_number", "cvc"]);
/// assert!(redact.contains("cvc"));
/// assert!(!redact.contains("cents"));
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Redact {
    pub(crate) names: Vec<String>,
}

impl Redact {
    /// Redacts nothing.
    pub const fn none() -> Self {
        Self { names: Vec::new() }
    }

    /// Redacts the arguments `names`, as written.
    pub fn new(names: impl IntoIterator<Item = impl Into<String>>) -> Self {
        Self {
            names: names.into_iter().map(Into::into).collect(),
        }
    }

    /// The names, in the order written.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.names.iter().map(String::as_str)
    }

    /// Whether the argument `argument` is redacted.
    pub fn contains(&self, argument: &str) -> bool {
        self.names.iter().any(|name| name == argument)
    }

    /// Whether nothing is redacted.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// Every rule the names break on their own: each is a whole argument.
    pub fn check(&self, errors: &mut Vec<PolicyError>) {
        for (entry, name) in self.names.iter().enumerate() {
            if name.contains('.') {
                errors.push(PolicyError::RedactPath {
                    path: name.clone(),
                    entry,
                });
            }
        }
    }

    /// Every rule the names break against the arguments of `method`: each
    /// is one of them. A field path is left to [`check`](Self::check).
    pub fn check_arguments(&self, method: &str, arguments: &[&str], errors: &mut Vec<PolicyError>) {
        for (entry, name) in self.names.iter().enumerate() {
            if !name.contains('.') && !arguments.contains(&name.as_str()) {
                errors.push(PolicyError::not_an_argument(
                    Field::Redact,
                    name,
                    entry,
                    method,
                    arguments,
                ));
            }
        }
    }
}

impl<S: Into<String>, const N: usize> From<[S; N]> for Redact {
    fn from(names: [S; N]) -> Self {
        Self::new(names)
    }
}
