//! Injected faults: how an execution replica misbehaves when an operator or the simulator
//! tells it to. They live in the driver, on the outputs, so that the core stays correct
//! and the same faults run in the simulator and in real processes.

use serde::{Deserialize, Serialize};
use zz_protocol::Digest;
use zz_protocol::messages::{Executed, ExecutionCheckpoint, Reply};
use zz_state_fetch::BucketProof;

/// How an execution replica misbehaves.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExecutionFault {
    #[default]
    Honest,
    /// Sends nothing at all (it still receives and executes).
    Mute,
    /// Answers clients with wrong results and reports the digest of those wrong replies.
    CorruptReply,
    /// Serves altered buckets to fetchers and reports wrong checkpoint roots.
    CorruptState,
}

impl ExecutionFault {
    /// The name `zz inject` takes and the status file shows.
    pub fn name(self) -> &'static str {
        match self {
            ExecutionFault::Honest => "honest",
            ExecutionFault::Mute => "mute",
            ExecutionFault::CorruptReply => "corrupt-reply",
            ExecutionFault::CorruptState => "corrupt-state",
        }
    }

    pub fn sends_nothing(self) -> bool {
        self == ExecutionFault::Mute
    }

    /// The reply as this replica sends it to the client.
    pub fn reply(self, mut reply: Reply) -> Reply {
        if self == ExecutionFault::CorruptReply {
            reply.result = corrupt_bytes(&reply.result);
        }
        reply
    }

    /// The batch report as this replica sends it to agreement replicas: a replica that
    /// lies to clients reports what it sent them, consistently.
    pub fn executed(self, mut executed: Executed) -> Executed {
        if self == ExecutionFault::CorruptReply {
            executed.replies = corrupt_digest(&executed.replies);
        }
        executed
    }

    pub fn checkpoint(self, mut checkpoint: ExecutionCheckpoint) -> ExecutionCheckpoint {
        if self == ExecutionFault::CorruptState {
            checkpoint.root = corrupt_digest(&checkpoint.root);
        }
        checkpoint
    }

    /// The bucket as this replica serves it to a fetcher.
    pub fn bucket(self, mut proof: BucketProof) -> BucketProof {
        if self == ExecutionFault::CorruptState {
            match proof.entries.first_mut() {
                Some((_, value)) => *value = corrupt_bytes(value),
                None => proof.entries.push((b"forged".to_vec(), b"forged".to_vec())),
            }
        }
        proof
    }
}

impl std::str::FromStr for ExecutionFault {
    type Err = String;
    fn from_str(name: &str) -> Result<Self, String> {
        [
            ExecutionFault::Honest,
            ExecutionFault::Mute,
            ExecutionFault::CorruptReply,
            ExecutionFault::CorruptState,
        ]
        .into_iter()
        .find(|fault| fault.name() == name)
        .ok_or_else(|| format!("unknown execution fault {name:?}"))
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
        let honest = ExecutionFault::Honest;
        assert_eq!(honest.reply(reply.clone()), reply);
        assert_eq!(honest.executed(executed), executed);
        assert_eq!(honest.checkpoint(checkpoint), checkpoint);
        let corrupt = ExecutionFault::CorruptReply;
        assert_ne!(corrupt.reply(reply.clone()).result, reply.result);
        assert_ne!(corrupt.executed(executed), executed);
        assert_eq!(corrupt.checkpoint(checkpoint), checkpoint);
        let state = ExecutionFault::CorruptState;
        assert_eq!(state.reply(reply.clone()), reply);
        assert_ne!(state.checkpoint(checkpoint), checkpoint);
        assert!(ExecutionFault::Mute.sends_nothing());
        for fault in ["honest", "mute", "corrupt-reply", "corrupt-state"] {
            assert_eq!(fault.parse::<ExecutionFault>().unwrap().name(), fault);
        }
        assert!("bogus".parse::<ExecutionFault>().is_err());
    }
}
