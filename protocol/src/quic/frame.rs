//! Framing on a QUIC stream: each frame is a u32 big-endian length, then that many bytes.
//! A stream opens with a hello frame (the sender's postcard-encoded [`NodeId`], the client
//! ids it speaks for, its incarnation and, from a client host, the tag that proves it).
//!
//! The reader checks a length against its limit before reserving a byte for the frame, so a
//! peer cannot make it allocate more than one frame's limit by lying in a prefix.

use super::hello::HelloClaim;
use crate::crypto::Mac;
use crate::ids::NodeId;
use bytes::{Buf as _, Bytes, BytesMut};
use quinn::RecvStream;

/// Bytes in a hello frame at most: a postcard `NodeId` takes at most 11, the count 5, the
/// incarnation 10, the tag 32.
pub(super) const HELLO_BYTES_MAX: usize = 64;
/// Bytes asked of quinn per read; a chunk may hold many small frames.
const READ_CHUNK_BYTES_MAX: usize = 64 * 1024;
/// Frames gathered into one write at most, so one write call does not hold many
/// frames hostage while a slow peer's flow control opens.
pub(super) const WRITE_BATCH_FRAMES_MAX: usize = 64;
pub(super) const PREFIX_BYTES: usize = 4;

/// Why a stream stopped yielding frames.
#[derive(Debug, thiserror::Error)]
pub(super) enum FrameError {
    /// A length prefix above the limit: the peer is broken or hostile.
    #[error("frame length {length} above the limit of {limit}")]
    TooLarge { length: usize, limit: usize },
    /// The stream ended inside a frame.
    #[error("stream ended inside a frame, {buffered} bytes in")]
    Truncated { buffered: usize },
    /// The stream or its connection failed.
    #[error("stream lost: {0}")]
    Lost(String),
}

/// The length prefix of a frame of `length` bytes. The bus only queues frames of at most
/// `frame_bytes_max` bytes, which it checks fits a u32 at start.
pub(super) fn prefix(length: usize) -> Bytes {
    let length = u32::try_from(length).expect("frame lengths are checked to fit a u32");
    Bytes::copy_from_slice(&length.to_be_bytes())
}

/// The hello frame, prefix included: the sender's id, its incarnation (drawn at each
/// process start, so a peer can tell a restarted node from a redial), for a client host
/// how many consecutive client ids (starting at `id`) it speaks for, and the tag proving
/// it holds their keys (zeros from a node, which its certificate proves).
pub(super) fn hello(claim: HelloClaim, tag: Mac) -> Bytes {
    let HelloClaim {
        id,
        clients,
        incarnation,
    } = claim;
    let body = postcard::to_stdvec(&(id, clients, incarnation, tag))
        .expect("encoding a hello cannot fail");
    assert!(body.len() <= HELLO_BYTES_MAX);
    let mut frame = Vec::with_capacity(PREFIX_BYTES + body.len());
    frame.extend_from_slice(&(body.len() as u32).to_be_bytes());
    frame.extend_from_slice(&body);
    Bytes::from(frame)
}

/// What a hello frame claims, and its tag, if it is one.
pub(super) fn parse_hello(frame: &[u8]) -> Option<(HelloClaim, Mac)> {
    match postcard::take_from_bytes::<(NodeId, u32, u64, Mac)>(frame) {
        Ok(((id, clients, incarnation, tag), [])) => Some((
            HelloClaim {
                id,
                clients,
                incarnation,
            },
            tag,
        )),
        _ => None,
    }
}

/// Reads frames from one stream, buffering across QUIC chunk boundaries.
pub(super) struct FrameReader {
    buffer: BytesMut,
}

impl FrameReader {
    pub(super) fn new() -> FrameReader {
        FrameReader {
            buffer: BytesMut::with_capacity(READ_CHUNK_BYTES_MAX),
        }
    }

    /// The next frame of at most `limit` bytes; None when the stream ended cleanly between
    /// frames. Each frame is copied out of the read buffer so that a small frame waiting in
    /// the inbox does not keep a large buffer alive.
    pub(super) async fn next(
        &mut self,
        recv: &mut RecvStream,
        limit: usize,
    ) -> Result<Option<Bytes>, FrameError> {
        loop {
            if self.buffer.len() >= PREFIX_BYTES {
                let mut length_bytes = [0u8; PREFIX_BYTES];
                length_bytes.copy_from_slice(&self.buffer[..PREFIX_BYTES]);
                let length = u32::from_be_bytes(length_bytes) as usize;
                if length > limit {
                    return Err(FrameError::TooLarge { length, limit });
                }
                let end = PREFIX_BYTES + length;
                if self.buffer.len() >= end {
                    let frame = Bytes::copy_from_slice(&self.buffer[PREFIX_BYTES..end]);
                    self.buffer.advance(end);
                    return Ok(Some(frame));
                }
                // Bounded by `limit`, checked above.
                self.buffer.reserve(end - self.buffer.len());
            }
            match recv.read_chunk(READ_CHUNK_BYTES_MAX, true).await {
                Ok(Some(chunk)) => self.buffer.extend_from_slice(&chunk.bytes),
                Ok(None) if self.buffer.is_empty() => return Ok(None),
                Ok(None) => {
                    return Err(FrameError::Truncated {
                        buffered: self.buffer.len(),
                    });
                }
                Err(error) => return Err(FrameError::Lost(error.to_string())),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{ClientId, ExecutionId, ReplicaId};

    #[test]
    fn hello_round_trips_and_garbage_is_not_a_hello() {
        let claim = |id| HelloClaim {
            id,
            clients: u32::MAX,
            incarnation: u64::MAX,
        };
        for id in [
            NodeId::Replica(ReplicaId(3)),
            NodeId::Client(ClientId(u64::MAX)),
            NodeId::Execution(ExecutionId(u32::MAX)),
        ] {
            let frame = hello(claim(id), [0xff; 32]);
            assert!(frame.len() <= PREFIX_BYTES + HELLO_BYTES_MAX);
            let parsed = parse_hello(&frame[PREFIX_BYTES..]);
            assert_eq!(parsed, Some((claim(id), [0xff; 32])));
        }
        assert_eq!(parse_hello(&[]), None);
        assert_eq!(parse_hello(&[9, 9, 9]), None);
        let node = claim(NodeId::Replica(ReplicaId(1)));
        let mut trailing = hello(node, [0; 32])[PREFIX_BYTES..].to_vec();
        trailing.push(0);
        assert_eq!(parse_hello(&trailing), None);
    }
}
