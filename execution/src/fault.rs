//! Injected faults in the execution driver: how an execution replica's outputs change
//! under a [`Fault`] an operator or the simulator gives it. They live in the driver, on the
//! outputs, so that the core stays correct and the same faults run in the simulator and in
//! real processes. The fault type itself is `zz_cluster`'s, shared with `zz inject`, the
//! nodes and the simulator.

use zz_cluster::Fault;
use zz_protocol::Digest;
use zz_protocol::messages::{Executed, ExecutionCheckpoint, Reply};
use zz_state_fetch::BucketProof;

/// What a [`Fault`] does to the execution driver's outputs; faults it does not name leave
/// them as they are.
pub trait FaultyOutputs: Copy {
    /// Whether the driver sends nothing at all (mute, or crashed).
    fn sends_nothing(self) -> bool;
    /// The reply as this replica sends it to the client.
    fn reply(self, reply: Reply) -> Reply;
    /// The batch report as this replica sends it to agreement replicas: a replica that
    /// lies to clients reports what it sent them, consistently.
    fn executed(self, executed: Executed) -> Executed;
    fn checkpoint(self, checkpoint: ExecutionCheckpoint) -> ExecutionCheckpoint;
    /// The bucket as this replica serves it to a fetcher.
    fn bucket(self, proof: BucketProof) -> BucketProof;
}

impl FaultyOutputs for Fault {
    fn sends_nothing(self) -> bool {
        matches!(self, Fault::Mute | Fault::Crash)
    }

    fn reply(self, mut reply: Reply) -> Reply {
        if self == Fault::CorruptReply {
            reply.result = corrupt_bytes(&reply.result);
        }
        reply
    }

    fn executed(self, mut executed: Executed) -> Executed {
        if self == Fault::CorruptReply {
            executed.replies = corrupt_digest(&executed.replies);
        }
        executed
    }

    fn checkpoint(self, mut checkpoint: ExecutionCheckpoint) -> ExecutionCheckpoint {
        if self == Fault::CorruptState {
            checkpoint.root = corrupt_digest(&checkpoint.root);
        }
        checkpoint
    }

    fn bucket(self, mut proof: BucketProof) -> BucketProof {
        if self == Fault::CorruptState {
            match proof.entries.first_mut() {
                Some((_, value)) => *value = corrupt_bytes(value),
                None => proof.entries.push((b"forged".to_vec(), b"forged".to_vec())),
            }
        }
        proof
    }
}

/// Different bytes of a plausible shape: flip every bit of the first byte, or add one.
fn corrupt_bytes(bytes: &[u8]) -> Vec<u8> {
    let mut corrupted = bytes.to_vec();
    match corrupted.first_mut() {
        Some(first) => *first ^= 0xff,
        None => corrupted.push(0xff),
    }
    corrupted
}

fn corrupt_digest(digest: &Digest) -> Digest {
    Digest::of(&[b"corrupted", &digest.0])
}

#[cfg(test)]
mod tests {
    use super::*;
    use zz_protocol::{AppId, ClientId, Seq, View};

    #[test]
    fn honest_changes_nothing_and_every_fault_changes_what_it_names() {
        let reply = Reply {
            view: View(0),
            client: ClientId(1),
            timestamp: 1,
            result: b"value".to_vec(),
        };
        let executed = Executed {
            app: AppId(0),
            seq: Seq(1),
            replies: Digest::of(&[b"r"]),
        };
        let checkpoint = ExecutionCheckpoint {
            app: AppId(0),
            seq: Seq(1),
            root: Digest::of(&[b"root"]),
        };
        let honest = Fault::Honest;
        assert_eq!(honest.reply(reply.clone()), reply);
        assert_eq!(honest.executed(executed), executed);
        assert_eq!(honest.checkpoint(checkpoint), checkpoint);
        let corrupt = Fault::CorruptReply;
        assert_ne!(corrupt.reply(reply.clone()).result, reply.result);
        assert_ne!(corrupt.executed(executed), executed);
        assert_eq!(corrupt.checkpoint(checkpoint), checkpoint);
        let state = Fault::CorruptState;
        assert_eq!(state.reply(reply.clone()), reply);
        assert_ne!(state.checkpoint(checkpoint), checkpoint);
        assert!(Fault::Mute.sends_nothing());
        assert!(!Fault::Slow { delay_ms: 200 }.sends_nothing());
    }
}
