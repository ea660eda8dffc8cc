//! The postcard codec every app shares: exact decoding (no trailing bytes) and infallible
//! encoding of its own types.

use serde::Serialize;
use serde::de::DeserializeOwned;

/// Bytes that are not a valid encoding of the expected type.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("malformed {what} ({size} bytes): {reason}")]
    Malformed {
        what: &'static str,
        size: usize,
        reason: String,
    },
    #[error("{what} ({size} bytes) has {trailing} trailing bytes")]
    TrailingBytes {
        what: &'static str,
        size: usize,
        trailing: usize,
    },
}

/// Decodes `bytes` as one `T`, and nothing after it: an operation has exactly one
/// encoding, so equal operations are equal bytes.
pub(crate) fn decode_exact<T: DeserializeOwned>(
    what: &'static str,
    bytes: &[u8],
) -> Result<T, DecodeError> {
    let (value, rest) =
        postcard::take_from_bytes::<T>(bytes).map_err(|error| DecodeError::Malformed {
            what,
            size: bytes.len(),
            reason: error.to_string(),
        })?;
    if !rest.is_empty() {
        return Err(DecodeError::TrailingBytes {
            what,
            size: bytes.len(),
            trailing: rest.len(),
        });
    }
    Ok(value)
}

/// Encodes one of this crate's types. These hold only integers, strings, byte vectors,
/// options and sequences, which postcard always encodes: a failure is a bug.
pub(crate) fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    postcard::to_allocvec(value).expect("invariant: app types always encode")
}

/// A stored amount: u64 little-endian, exactly 8 bytes. Only the app writes its own
/// objects, so another size is a bug (or a corrupted store), not an operating error.
pub(crate) fn decode_amount(key: &[u8], value: &[u8]) -> u64 {
    let bytes: [u8; 8] = value.try_into().unwrap_or_else(|_| {
        panic!(
            "invariant: object {key:?} holds an 8-byte amount, found {} bytes",
            value.len()
        )
    });
    u64::from_le_bytes(bytes)
}

pub(crate) fn encode_amount(amount: u64) -> Vec<u8> {
    amount.to_le_bytes().to_vec()
}
