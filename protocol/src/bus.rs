//! The message bus: how sealed frames move between nodes. Two implementations share one
//! trait: [`MemoryNetwork`] (in-process channels, for fast tests) and the QUIC transport in
//! [`crate::quic`]. The simulator implements the trait on its own virtual network.
//!
//! A bus never blocks and never grows without bound: each peer has a bounded queue, and a
//! frame that finds it full is dropped and counted, as the network might have dropped it.

use crate::ids::NodeId;
use bytes::Bytes;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

/// Frames queued for one receiver at most, in the in-memory bus.
pub const MEMORY_INBOX_FRAMES_MAX: usize = 4096;
/// Bytes of frames queued in one inbox at most, whoever sent them: what peers can make a
/// node hold before it reads. At least two frames of the largest size fit.
pub const INBOX_BYTES_MAX: usize = 256 * 1024 * 1024;

/// Moves sealed frames to other nodes.
pub trait MessageBus: Send + Sync {
    /// Queue `frame` for `to`. Never blocks: if the queue to `to` is full, or `to` is
    /// unknown, the frame is dropped and counted.
    fn send(&self, to: NodeId, frame: Bytes);

    /// Frames dropped so far because a queue was full or a peer unknown.
    fn dropped_frames(&self) -> u64;
}

/// Incoming frames, as they arrived; not yet opened. Bounded in frames and in bytes, and
/// per sender in bytes where the sender has an [`InboxShare`].
pub struct Inbox {
    frames: mpsc::Receiver<QueuedFrame>,
    bytes: Arc<AtomicUsize>,
    charge_min: usize,
}

/// A frame in an inbox, with the share it is charged to.
type QueuedFrame = (Bytes, Option<Arc<InboxShare>>);

/// The sending side of an [`Inbox`].
#[derive(Clone)]
pub struct InboxSender {
    frames: mpsc::Sender<QueuedFrame>,
    bytes: Arc<AtomicUsize>,
    bytes_max: usize,
    charge_min: usize,
}

/// One sender's share of an inbox: at most `bytes_max` bytes of its frames queued at once,
/// and within its parent's share too if it has one (all clients together, say). A sender
/// that fills its share loses its own frames only, not anyone else's room.
#[derive(Debug)]
pub struct InboxShare {
    queued: AtomicUsize,
    bytes_max: usize,
    parent: Option<Arc<InboxShare>>,
}

impl InboxShare {
    pub fn new(bytes_max: usize) -> Arc<InboxShare> {
        Arc::new(InboxShare {
            queued: AtomicUsize::new(0),
            bytes_max,
            parent: None,
        })
    }

    /// A share of at most `bytes_max` bytes inside `parent`'s.
    pub fn within(parent: &Arc<InboxShare>, bytes_max: usize) -> Arc<InboxShare> {
        Arc::new(InboxShare {
            queued: AtomicUsize::new(0),
            bytes_max,
            parent: Some(Arc::clone(parent)),
        })
    }

    /// Bytes of this sender's frames queued now.
    pub fn queued_bytes(&self) -> usize {
        self.queued.load(Ordering::Acquire)
    }

    fn reserve(&self, bytes: usize) -> bool {
        let before = self.queued.fetch_add(bytes, Ordering::AcqRel);
        if before.saturating_add(bytes) > self.bytes_max {
            self.queued.fetch_sub(bytes, Ordering::AcqRel);
            return false;
        }
        if let Some(parent) = &self.parent
            && !parent.reserve(bytes)
        {
            self.queued.fetch_sub(bytes, Ordering::AcqRel);
            return false;
        }
        true
    }

    fn release(&self, bytes: usize) {
        self.queued.fetch_sub(bytes, Ordering::AcqRel);
        if let Some(parent) = &self.parent {
            parent.release(bytes);
        }
    }
}

/// An inbox of at most `frames_max` frames and `bytes_max` bytes. Each frame is charged
/// `bytes_max / frames_max` bytes at least, against the inbox and its sender's share, so a
/// share bounds its sender's frames too: a flood of empty frames cannot take every slot.
pub fn inbox(frames_max: usize, bytes_max: usize) -> (InboxSender, Inbox) {
    let (sender, receiver) = mpsc::channel(frames_max);
    let bytes = Arc::new(AtomicUsize::new(0));
    let charge_min = bytes_max / frames_max.max(1);
    let sender = InboxSender {
        frames: sender,
        bytes: Arc::clone(&bytes),
        bytes_max,
        charge_min,
    };
    let inbox = Inbox {
        frames: receiver,
        bytes,
        charge_min,
    };
    (sender, inbox)
}

impl InboxSender {
    /// Queue `frame` without waiting; `Full` when either bound would be passed.
    pub fn try_send(&self, frame: Bytes) -> Result<(), mpsc::error::TrySendError<Bytes>> {
        self.try_send_charged(frame, None)
    }

    /// Queue `frame` without waiting, charged to `share`; `Full` when the share or either
    /// bound of the inbox would be passed.
    pub fn try_send_within(
        &self,
        frame: Bytes,
        share: &Arc<InboxShare>,
    ) -> Result<(), mpsc::error::TrySendError<Bytes>> {
        self.try_send_charged(frame, Some(share))
    }

    fn try_send_charged(
        &self,
        frame: Bytes,
        share: Option<&Arc<InboxShare>>,
    ) -> Result<(), mpsc::error::TrySendError<Bytes>> {
        let length = frame.len().max(self.charge_min);
        if let Some(share) = share
            && !share.reserve(length)
        {
            return Err(mpsc::error::TrySendError::Full(frame));
        }
        let release_share = || {
            if let Some(share) = share {
                share.release(length);
            }
        };
        let reserved = self.bytes.fetch_add(length, Ordering::AcqRel);
        if reserved.saturating_add(length) > self.bytes_max {
            self.bytes.fetch_sub(length, Ordering::AcqRel);
            release_share();
            return Err(mpsc::error::TrySendError::Full(frame));
        }
        let queued = (frame, share.cloned());
        self.frames.try_send(queued).map_err(|error| {
            self.bytes.fetch_sub(length, Ordering::AcqRel);
            release_share();
            match error {
                mpsc::error::TrySendError::Full((frame, _)) => {
                    mpsc::error::TrySendError::Full(frame)
                }
                mpsc::error::TrySendError::Closed((frame, _)) => {
                    mpsc::error::TrySendError::Closed(frame)
                }
            }
        })
    }
}

impl Inbox {
    /// The next frame, waiting for one; None once every sender is gone.
    pub async fn recv(&mut self) -> Option<Bytes> {
        let queued = self.frames.recv().await?;
        Some(self.taken(queued))
    }

    /// The next frame if one is queued.
    pub fn try_recv(&mut self) -> Result<Bytes, mpsc::error::TryRecvError> {
        let queued = self.frames.try_recv()?;
        Ok(self.taken(queued))
    }

    fn taken(&self, (frame, share): QueuedFrame) -> Bytes {
        let length = frame.len().max(self.charge_min);
        self.bytes.fetch_sub(length, Ordering::AcqRel);
        if let Some(share) = share {
            share.release(length);
        }
        frame
    }

    /// Bytes charged for the frames queued now (each the inbox's minimum charge at least).
    pub fn queued_bytes(&self) -> usize {
        self.bytes.load(Ordering::Acquire)
    }
}

/// An in-process network: every joined node has a bounded inbox.
#[derive(Default)]
pub struct MemoryNetwork {
    inboxes: Mutex<BTreeMap<NodeId, InboxSender>>,
    dropped: AtomicU64,
}

impl MemoryNetwork {
    pub fn new() -> Arc<MemoryNetwork> {
        Arc::new(MemoryNetwork::default())
    }

    /// Add node `id`; returns its bus handle and its inbox.
    pub fn join(self: &Arc<Self>, id: NodeId) -> (MemoryBus, Inbox) {
        let (sender, receiver) = inbox(MEMORY_INBOX_FRAMES_MAX, INBOX_BYTES_MAX);
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

    /// An inbox refuses a frame that would pass its byte bound, whatever its frame count,
    /// and takes frames again once some are read.
    #[tokio::test]
    async fn an_inbox_is_bounded_in_bytes() {
        let (sender, mut receiver) = inbox(100, 10);
        assert!(sender.try_send(Bytes::from_static(b"123456")).is_ok());
        assert!(matches!(
            sender.try_send(Bytes::from_static(b"12345")),
            Err(mpsc::error::TrySendError::Full(_))
        ));
        assert!(sender.try_send(Bytes::from_static(b"1234")).is_ok());
        assert_eq!(receiver.queued_bytes(), 10);
        assert_eq!(receiver.recv().await.unwrap().len(), 6);
        assert!(sender.try_send(Bytes::from_static(b"12345")).is_ok());
        assert_eq!(receiver.try_recv().unwrap().len(), 4);
        assert_eq!(receiver.queued_bytes(), 5);
    }

    /// A sender that fills its share loses its own frames only: another sender, in the same
    /// parent share or outside it, still gets in; the share frees as its frames are read.
    #[tokio::test]
    async fn a_sender_is_bounded_by_its_share_of_the_inbox() {
        let (sender, mut receiver) = inbox(100, 100);
        let clients = InboxShare::new(12);
        let greedy = InboxShare::within(&clients, 8);
        let modest = InboxShare::within(&clients, 8);
        let frame = |length: usize| Bytes::from(vec![0; length]);
        assert!(sender.try_send_within(frame(6), &greedy).is_ok());
        assert!(
            sender.try_send_within(frame(3), &greedy).is_err(),
            "own share"
        );
        assert!(sender.try_send_within(frame(6), &modest).is_ok());
        assert!(
            sender.try_send_within(frame(1), &modest).is_err(),
            "parent share"
        );
        assert!(
            sender.try_send(frame(50)).is_ok(),
            "no share: the inbox bound only"
        );
        assert_eq!((greedy.queued_bytes(), clients.queued_bytes()), (6, 12));
        assert_eq!(receiver.recv().await.unwrap().len(), 6);
        assert_eq!((greedy.queued_bytes(), clients.queued_bytes()), (0, 6));
        assert!(sender.try_send_within(frame(6), &greedy).is_ok());
        assert_eq!(receiver.queued_bytes(), 62);
    }

    /// Tiny frames are charged the inbox's bytes over its frames: a sender's share then
    /// bounds how many of the inbox's slots it can take, however small its frames.
    #[tokio::test]
    async fn empty_frames_are_charged_a_slots_worth() {
        let (sender, mut receiver) = inbox(10, 100);
        let share = InboxShare::new(30);
        for _ in 0..3 {
            assert!(sender.try_send_within(Bytes::new(), &share).is_ok());
        }
        assert!(sender.try_send_within(Bytes::new(), &share).is_err());
        assert_eq!((share.queued_bytes(), receiver.queued_bytes()), (30, 30));
        assert!(receiver.recv().await.unwrap().is_empty());
        assert_eq!((share.queued_bytes(), receiver.queued_bytes()), (20, 20));
    }
}
