//! The message bus: how sealed frames move between nodes. Two implementations share one
//! trait: [`MemoryNetwork`] (in-process channels, for fast tests) and the QUIC transport in
//! [`crate::quic`]. The simulator implements the trait on its own virtual network.
//!
//! A bus never blocks and never grows without bound: each peer has a bounded queue, and a
//! frame that finds it full is dropped and counted, as the network might have dropped it.

use crate::ids::NodeId;
use bytes::Bytes;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

/// Frames queued for one receiver at most, in the in-memory bus.
pub const MEMORY_INBOX_FRAMES_MAX: usize = 4096;

/// Moves sealed frames to other nodes.
pub trait MessageBus: Send + Sync {
    /// Queue `frame` for `to`. Never blocks: if the queue to `to` is full, or `to` is
    /// unknown, the frame is dropped and counted.
    fn send(&self, to: NodeId, frame: Bytes);

    /// Frames dropped so far because a queue was full or a peer unknown.
    fn dropped_frames(&self) -> u64;
}

/// Incoming frames, as they arrived; not yet opened.
pub type Inbox = mpsc::Receiver<Bytes>;

/// An in-process network: every joined node has a bounded inbox.
#[derive(Default)]
pub struct MemoryNetwork {
    inboxes: Mutex<BTreeMap<NodeId, mpsc::Sender<Bytes>>>,
    dropped: AtomicU64,
}

impl MemoryNetwork {
    pub fn new() -> Arc<MemoryNetwork> {
        Arc::new(MemoryNetwork::default())
    }

    /// Add node `id`; returns its bus handle and its inbox.
    pub fn join(self: &Arc<Self>, id: NodeId) -> (MemoryBus, Inbox) {
        let (sender, receiver) = mpsc::channel(MEMORY_INBOX_FRAMES_MAX);
        self.inboxes
            .lock()
            .expect("memory network lock")
            .insert(id, sender);
        (
            MemoryBus {
                network: Arc::clone(self),
            },
            receiver,
        )
    }

    /// Remove node `id`: frames to it are dropped from now on.
    pub fn leave(&self, id: NodeId) {
        self.inboxes
            .lock()
            .expect("memory network lock")
            .remove(&id);
    }
}

/// One node's handle on a [`MemoryNetwork`].
#[derive(Clone)]
pub struct MemoryBus {
    network: Arc<MemoryNetwork>,
}

impl MessageBus for MemoryBus {
    fn send(&self, to: NodeId, frame: Bytes) {
        let sender = self
            .network
            .inboxes
            .lock()
            .expect("memory network lock")
            .get(&to)
            .cloned();
        let delivered = match sender {
            Some(sender) => sender.try_send(frame).is_ok(),
            None => false,
        };
        if !delivered {
            self.network.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn dropped_frames(&self) -> u64 {
        self.network.dropped.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{ClientId, ReplicaId};

    #[tokio::test]
    async fn frames_reach_their_receiver_and_unknown_peers_count_as_dropped() {
        let network = MemoryNetwork::new();
        let (bus_a, _inbox_a) = network.join(NodeId::Replica(ReplicaId(0)));
        let (_bus_b, mut inbox_b) = network.join(NodeId::Replica(ReplicaId(1)));
        bus_a.send(NodeId::Replica(ReplicaId(1)), Bytes::from_static(b"hello"));
        assert_eq!(inbox_b.recv().await.unwrap(), Bytes::from_static(b"hello"));
        bus_a.send(NodeId::Client(ClientId(9)), Bytes::from_static(b"lost"));
        assert_eq!(bus_a.dropped_frames(), 1);
    }
}
