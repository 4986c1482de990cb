//! Content identities: [`ChunkId`] and [`BlobId`], both BLAKE3 hashes (DESIGN §2).
//!
//! They are distinct types so a chunk id can never be passed where a blob id is meant.
//! Parsing accepts exactly 64 hex digits; anything else is `InvalidInput`. Every key,
//! path and object name is derived from the 32 raw bytes, never from user strings.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, Result};

macro_rules! hash_id {
    ($name:ident, $what:literal) => {
        #[doc = concat!("The BLAKE3 hash naming a ", $what, ".")]
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name([u8; 32]);

        impl $name {
            /// Length of the id in bytes.
            pub const LEN: usize = 32;

            /// Hash `bytes` to get their id.
            pub fn of(bytes: &[u8]) -> Self {
                Self(*blake3::hash(bytes).as_bytes())
            }

            /// Wrap 32 raw bytes.
            pub const fn from_bytes(bytes: [u8; 32]) -> Self {
                Self(bytes)
            }

            /// Parse raw bytes of exactly 32 bytes (e.g. a database key).
            pub fn from_slice(bytes: &[u8]) -> Result<Self> {
                let arr: [u8; 32] = bytes.try_into().map_err(|_| {
                    Error::invalid(format!(
                        concat!($what, " id must be 32 bytes, got {}"),
                        bytes.len()
                    ))
                })?;
                Ok(Self(arr))
            }

            /// The raw 32 bytes.
            pub fn as_bytes(&self) -> &[u8; 32] {
                &self.0
            }

            /// Lower-case hex, 64 characters.
            pub fn to_hex(&self) -> String {
                let mut s = String::with_capacity(64);
                for b in self.0 {
                    s.push(char::from(HEX[(b >> 4) as usize]));
                    s.push(char::from(HEX[(b & 0xf) as usize]));
                }
                s
            }

            /// The first 12 hex digits, for logs.
            pub fn short(&self) -> String {
                let mut s = self.to_hex();
                s.truncate(12);
                s
            }
        }

        impl From<blake3::Hash> for $name {
            fn from(h: blake3::Hash) -> Self {
                Self(*h.as_bytes())
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.to_hex())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({})"), self.short())
            }
        }

        impl FromStr for $name {
            type Err = Error;

            fn from_str(s: &str) -> Result<Self> {
                parse_hex(s).map(Self).ok_or_else(|| {
                    Error::invalid(format!(
                        concat!("malformed ", $what, " id {:?}: expected 64 hex digits"),
                        truncate_for_message(s)
                    ))
                })
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
                s.serialize_str(&self.to_hex())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

hash_id!(ChunkId, "chunk");
hash_id!(BlobId, "blob");

const HEX: &[u8; 16] = b"0123456789abcdef";

fn parse_hex(s: &str) -> Option<[u8; 32]> {
    let b = s.as_bytes();
    if b.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in b.chunks_exact(2).enumerate() {
        let hi = (pair[0] as char).to_digit(16)?;
        let lo = (pair[1] as char).to_digit(16)?;
        out[i] = (hi * 16 + lo) as u8;
    }
    Some(out)
}

fn truncate_for_message(s: &str) -> String {
    if s.chars().count() <= 80 {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(80).collect();
        t.push('…');
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_blob_id_is_blake3_of_nothing() {
        assert_eq!(
            BlobId::of(b"").to_string(),
            "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"
        );
    }

    #[test]
    fn hex_round_trip_and_case() {
        let id = ChunkId::of(b"hello");
        let hex = id.to_string();
        assert_eq!(hex.parse::<ChunkId>().unwrap(), id);
        assert_eq!(hex.to_uppercase().parse::<ChunkId>().unwrap(), id);
        assert_eq!(id.short().len(), 12);
    }

    #[test]
    fn malformed_ids_are_invalid_input() {
        for bad in [
            "",
            "abc",
            &"g".repeat(64),
            &"a".repeat(63),
            &"a".repeat(65),
            "../../etc/passwd",
        ] {
            let err = bad.parse::<BlobId>().unwrap_err();
            assert_eq!(err.kind(), crate::ErrorKind::InvalidInput, "{bad}");
        }
        // multi-byte characters must not panic on slicing
        assert!("é".repeat(32).parse::<BlobId>().is_err());
    }

    #[test]
    fn serde_as_hex_string() {
        let id = BlobId::of(b"x");
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, format!("\"{id}\""));
        let back: BlobId = serde_json::from_str(&json).unwrap();
        assert_eq!(back, id);
    }
}
