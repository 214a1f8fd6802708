//! Identifiers shared by every crate, validated once at the edge.
//!
//! * A [`TxId`] names one global transaction. Clients may choose it (for idempotent retries)
//!   or let the coordinator generate one. It is printable ASCII, 1 to 128 bytes.
//! * A [`CoordinatorId`] is the short, stable name of a coordinator, recorded with every
//!   transaction so that recovery only touches what this coordinator owns (a lesson from Citus
//!   and Narayana: without it, one coordinator's recovery rolls back another's work).
//! * A [`ParticipantName`] names a participant in the coordinator's configuration.
//!
//! The limits are chosen so that the derived Postgres gid always fits PostgreSQL's 199-byte
//! limit (see [`crate::gid`]).

use serde::{Deserialize, Serialize};
use std::fmt;

/// Longest transaction id, in bytes.
pub const MAX_TXID_LEN: usize = 128;
/// Longest coordinator id, in bytes.
pub const MAX_COORDINATOR_ID_LEN: usize = 16;
/// Longest participant name, in bytes.
pub const MAX_PARTICIPANT_NAME_LEN: usize = 64;

/// Why an identifier was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// The identifier is the empty string.
    #[error("{what} must not be empty")]
    Empty {
        /// Which kind of identifier.
        what: &'static str,
    },
    /// The identifier is longer than its limit.
    #[error("{what} is {len} bytes long; the limit is {max}")]
    TooLong {
        /// Which kind of identifier.
        what: &'static str,
        /// Its length in bytes.
        len: usize,
        /// The limit in bytes.
        max: usize,
    },
    /// The identifier contains a character outside its allowed set.
    #[error("{what} contains {found:?} at byte {at}; allowed: {allowed}")]
    BadChar {
        /// Which kind of identifier.
        what: &'static str,
        /// The offending character.
        found: char,
        /// Its byte offset.
        at: usize,
        /// A description of the allowed set.
        allowed: &'static str,
    },
}

fn check(
    what: &'static str,
    s: &str,
    max: usize,
    ok: impl Fn(char) -> bool,
    allowed: &'static str,
) -> Result<(), IdError> {
    if s.is_empty() {
        return Err(IdError::Empty { what });
    }
    if s.len() > max {
        return Err(IdError::TooLong {
            what,
            len: s.len(),
            max,
        });
    }
    if let Some((at, found)) = s.char_indices().find(|&(_, c)| !ok(c)) {
        return Err(IdError::BadChar {
            what,
            found,
            at,
            allowed,
        });
    }
    Ok(())
}

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident, $what:literal, $max:expr, $ok:expr, $allowed:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Validates `s` and wraps it.
            pub fn new(s: impl Into<String>) -> Result<Self, IdError> {
                let s = s.into();
                check($what, &s, $max, $ok, $allowed)?;
                Ok(Self(s))
            }

            /// The identifier as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl std::str::FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                Self::new(s)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::new(s).map_err(serde::de::Error::custom)
            }
        }
    };
}

string_id!(
    /// A global transaction id: printable ASCII (0x20..=0x7E), 1 to 128 bytes.
    TxId,
    "transaction id",
    MAX_TXID_LEN,
    |c: char| (' '..='~').contains(&c),
    "printable ASCII"
);

string_id!(
    /// A coordinator id: 1 to 16 bytes of `[A-Za-z0-9_-]`.
    CoordinatorId,
    "coordinator id",
    MAX_COORDINATOR_ID_LEN,
    |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-',
    "ASCII letters, digits, '_' and '-'"
);

string_id!(
    /// A participant name from the coordinator's configuration: 1 to 64 bytes of
    /// `[A-Za-z0-9_.-]`, or, for one shard of a sharded participant, `logical/shard` (see
    /// [`ParticipantName::shard_of`]).
    ParticipantName,
    "participant name",
    MAX_PARTICIPANT_NAME_LEN,
    |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.' || c == '/',
    "ASCII letters, digits, '_', '-', '.' and '/' (logical/shard)"
);

impl ParticipantName {
    /// The name of shard `shard` of the sharded participant `logical`: `logical/shard`.
    pub fn shard_of(logical: &ParticipantName, shard: &str) -> Result<ParticipantName, IdError> {
        ParticipantName::new(format!("{}/{shard}", logical.as_str()))
    }

    /// `(logical, shard)` for a shard's name, `None` for a participant of its own.
    pub fn split_shard(&self) -> Option<(&str, &str)> {
        self.as_str().split_once('/')
    }

    /// Whether it is a plain name (no `/`): what a configuration and a client may name.
    pub fn is_plain(&self) -> bool {
        !self.as_str().contains('/')
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn txid_accepts_printable_ascii_up_to_limit() {
        assert!(TxId::new("tx-1").is_ok());
        assert!(TxId::new("with space and 'quotes' \"too\" ~").is_ok());
        assert!(TxId::new("x".repeat(MAX_TXID_LEN)).is_ok());
    }

    #[test]
    fn txid_rejects_empty_long_and_control_chars() {
        assert_eq!(
            TxId::new(""),
            Err(IdError::Empty {
                what: "transaction id"
            })
        );
        assert!(matches!(
            TxId::new("x".repeat(MAX_TXID_LEN + 1)),
            Err(IdError::TooLong { len: 129, .. })
        ));
        assert!(matches!(
            TxId::new("a\nb"),
            Err(IdError::BadChar {
                found: '\n',
                at: 1,
                ..
            })
        ));
        assert!(matches!(
            TxId::new("é"),
            Err(IdError::BadChar { found: 'é', .. })
        ));
    }

    #[test]
    fn coordinator_id_rules() {
        assert!(CoordinatorId::new("c1").is_ok());
        assert!(CoordinatorId::new("c:1").is_err());
        assert!(CoordinatorId::new("a".repeat(17)).is_err());
    }

    #[test]
    fn ids_deserialize_with_validation() {
        let ok: TxId = serde_json::from_str("\"t1\"").unwrap();
        assert_eq!(ok.as_str(), "t1");
        let err = serde_json::from_str::<TxId>("\"\"").unwrap_err();
        assert!(err.to_string().contains("must not be empty"), "{err}");
    }
}
