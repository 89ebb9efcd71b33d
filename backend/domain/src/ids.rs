//! Identifiers as types of their own, so a patch id is never passed where a user id
//! belongs. Each is the database's integer (or digest) underneath; serde reads and writes
//! the bare value, so stored JSON and the API do not change.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

macro_rules! integer_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub i64);

        impl $name {
            /// The number as stored.
            pub fn get(self) -> i64 {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl From<i64> for $name {
            fn from(value: i64) -> Self {
                $name(value)
            }
        }
    };
}

integer_id!(
    /// A user account (`users.id`).
    UserId
);
integer_id!(
    /// A patch (`patches.id`).
    PatchId
);
integer_id!(
    /// A revision's number within its patch: 1, 2, 3, ...
    RevisionNumber
);
integer_id!(
    /// A comment thread (`comment_threads.id`).
    ThreadId
);

/// A SHA-256 digest (a revision's content address), shown as 64 lowercase hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Sha256(pub [u8; 32]);

impl Sha256 {
    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Sha256 {
        use sha2::Digest;
        Sha256(sha2::Sha256::digest(bytes).into())
    }

    /// The first 12 hex digits, as people quote a revision.
    pub fn short(&self) -> String {
        hex::encode(&self.0[..6])
    }
}

impl fmt::Display for Sha256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

/// Why a text is not a SHA-256 digest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a SHA-256 digest (64 hex digits): {0:?}")]
pub struct NotSha256(pub String);

impl FromStr for Sha256 {
    type Err = NotSha256;

    fn from_str(text: &str) -> Result<Sha256, NotSha256> {
        let mut digest = [0u8; 32];
        match hex::decode_to_slice(text, &mut digest) {
            Ok(()) if text.len() == 64 => Ok(Sha256(digest)),
            _ => Err(NotSha256(text.chars().take(80).collect())),
        }
    }
}

impl Serialize for Sha256 {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Sha256 {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Sha256, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_digest_round_trips_through_its_hex_form_and_refuses_others() {
        let digest = Sha256::of(b"fix");
        let text = digest.to_string();
        assert_eq!(text.len(), 64);
        assert_eq!(text.parse::<Sha256>(), Ok(digest));
        assert_eq!(&text[..12], digest.short());
        for bad in [
            "",
            "abc",
            &text[..63],
            &format!("{text}00"),
            &text.replace(|c: char| c.is_ascii_digit(), "g"),
        ] {
            assert!(bad.parse::<Sha256>().is_err(), "{bad}");
        }
        let json = serde_json::to_string(&digest).unwrap();
        assert_eq!(json, format!("\"{text}\""));
        assert_eq!(serde_json::from_str::<Sha256>(&json).unwrap(), digest);
    }

    #[test]
    fn integer_ids_serialize_as_bare_numbers() {
        assert_eq!(serde_json::to_string(&PatchId(7)).unwrap(), "7");
        assert_eq!(serde_json::from_str::<UserId>("3").unwrap(), UserId(3));
        assert_eq!(RevisionNumber(2).to_string(), "2");
    }
}
