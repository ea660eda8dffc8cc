//! `null`: does nothing, for benchmarks. Any operation bytes are accepted and ignored (a
//! benchmark sends a payload of the size it measures); the reply is empty and no state is
//! read or written, so the platform's own cost is all that is measured.

use crate::codec::DecodeError;
use zz_execution::{App, ExecContext, StateAccess};
use zz_state_fetch::NotFetched;

/// The app's name in a cluster configuration.
pub const NAME: &str = "null";

/// A `null` operation: a payload carried only for its size. Encoded as the payload's
/// bytes, unframed, so an empty operation is empty bytes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Op {
    pub payload: Vec<u8>,
}

/// The answer to every `null` operation, encoded as empty bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Outcome;

/// The `null` application.
#[derive(Clone, Copy, Debug, Default)]
pub struct Null;

impl App for Null {
    fn name(&self) -> &'static str {
        NAME
    }

    fn execute(
        &self,
        _context: &ExecContext,
        _state: &mut StateAccess<'_>,
        _op: &[u8],
    ) -> Result<Vec<u8>, NotFetched> {
        Ok(Vec::new())
    }
}

/// Encodes an operation for a request (clients): its payload.
pub fn encode_op(op: &Op) -> Vec<u8> {
    op.payload.clone()
}

/// Decodes a reply's result (clients): only empty bytes are a `null` outcome.
pub fn decode_result(bytes: &[u8]) -> Result<Outcome, DecodeError> {
    if bytes.is_empty() {
        Ok(Outcome)
    } else {
        Err(DecodeError::TrailingBytes {
            what: "null outcome",
            size: bytes.len(),
            trailing: bytes.len(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zz_protocol::{AppId, ClientId, Digest, Seq};
    use zz_state_fetch::{ObjectStore, StateParams};

    #[test]
    fn any_operation_gives_an_empty_reply_and_touches_no_state() {
        // A pinned store has every bucket missing: any read would answer NotFetched.
        let store = ObjectStore::pinned(StateParams::new(2).unwrap(), Seq(1), Digest([7; 32]));
        let context = ExecContext {
            app: AppId(2),
            client: ClientId(3),
            timestamp_ms: 4,
            seed: 5,
        };
        for payload in [vec![], vec![0xff; 3], vec![1; 4096]] {
            let op = encode_op(&Op { payload });
            let mut state = StateAccess::new(&store);
            let reply = Null.execute(&context, &mut state, &op).unwrap();
            assert_eq!(decode_result(&reply), Ok(Outcome));
            assert!(state.into_writes().is_empty());
        }
        assert!(decode_result(&[0]).is_err());
    }
}
