//! A message bus that misbehaves on purpose: what `zz inject mute|slow` turns on in a real
//! node. It wraps the node's real bus and drops or delays outgoing frames; everything the
//! node receives is untouched, so the node keeps its state and only looks faulty to others.

use crate::fault::Fault;
use bytes::Bytes;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;
use zz_protocol::NodeId;
use zz_protocol::bus::MessageBus;

/// Delayed frames in flight at most; more are dropped and counted, as a congested link
/// would.
pub const DELAYED_FRAMES_MAX: u64 = 65_536;

/// See the module documentation.
pub struct FaultyBus<B> {
    inner: Arc<B>,
    shared: Arc<Counters>,
}

#[derive(Default)]
struct Counters {
    mute: AtomicBool,
    delay_ms: AtomicU64,
    delayed_in_flight: AtomicU64,
    dropped: AtomicU64,
}

impl<B: MessageBus + 'static> FaultyBus<B> {
    pub fn new(inner: B) -> FaultyBus<B> {
        FaultyBus {
            inner: Arc::new(inner),
            shared: Arc::new(Counters::default()),
        }
    }

    pub fn inner(&self) -> &B {
        &self.inner
    }

    /// A handle that turns faults on and off while the bus is owned by a driver.
    pub fn switch(&self) -> FaultSwitch {
        FaultSwitch {
            shared: Arc::clone(&self.shared),
        }
    }
}

/// Turns a [`FaultyBus`]'s faults on and off.
#[derive(Clone)]
pub struct FaultSwitch {
    shared: Arc<Counters>,
}

impl FaultSwitch {
    /// Show `fault` from now on: mute and slow act here; other faults leave the bus honest.
    pub fn set_fault(&self, fault: Fault) {
        let (mute, delay_ms) = match fault {
            Fault::Mute => (true, 0),
            Fault::Slow { delay_ms } => (false, delay_ms),
            _ => (false, 0),
        };
        self.shared.mute.store(mute, Ordering::Relaxed);
        self.shared.delay_ms.store(delay_ms, Ordering::Relaxed);
    }

    /// Frames dropped on purpose (muted, or too many delayed).
    #[cfg(test)]
    fn dropped_on_purpose(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }
}

impl<B: MessageBus + 'static> MessageBus for FaultyBus<B> {
    fn send(&self, to: NodeId, frame: Bytes) {
        let shared = &self.shared;
        if shared.mute.load(Ordering::Relaxed) {
            shared.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let delay_ms = shared.delay_ms.load(Ordering::Relaxed);
        let runtime = tokio::runtime::Handle::try_current();
        if let (1.., Ok(runtime)) = (delay_ms, runtime) {
            if shared.delayed_in_flight.fetch_add(1, Ordering::Relaxed) >= DELAYED_FRAMES_MAX {
                shared.delayed_in_flight.fetch_sub(1, Ordering::Relaxed);
                shared.dropped.fetch_add(1, Ordering::Relaxed);
                return;
            }
            let inner = Arc::clone(&self.inner);
            let shared = Arc::clone(shared);
            runtime.spawn(async move {
                tokio::time::sleep(Duration::from_millis(delay_ms)).await;
                inner.send(to, frame);
                shared.delayed_in_flight.fetch_sub(1, Ordering::Relaxed);
            });
            return;
        }
        self.inner.send(to, frame);
    }

    fn dropped_frames(&self) -> u64 {
        self.inner.dropped_frames() + self.shared.dropped.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zz_protocol::ReplicaId;
    use zz_protocol::bus::MemoryNetwork;

    #[tokio::test]
    async fn mute_drops_slow_delays_and_honest_sends_at_once() {
        let network = MemoryNetwork::new();
        let (bus, _inbox) = network.join(NodeId::Replica(ReplicaId(0)));
        let (_other, mut inbox) = network.join(NodeId::Replica(ReplicaId(1)));
        let to = NodeId::Replica(ReplicaId(1));
        let bus = FaultyBus::new(bus);
        let switch = bus.switch();
        bus.send(to, Bytes::from_static(b"honest"));
        assert_eq!(inbox.try_recv().unwrap(), Bytes::from_static(b"honest"));
        switch.set_fault(Fault::Mute);
        bus.send(to, Bytes::from_static(b"muted"));
        assert!(inbox.try_recv().is_err());
        assert_eq!(switch.dropped_on_purpose(), 1);
        switch.set_fault(Fault::Slow { delay_ms: 500 });
        bus.send(to, Bytes::from_static(b"slow"));
        assert!(
            inbox.try_recv().is_err(),
            "a slow frame must not arrive at once"
        );
        let late = tokio::time::timeout(Duration::from_secs(10), inbox.recv()).await;
        assert_eq!(late.unwrap().unwrap(), Bytes::from_static(b"slow"));
        switch.set_fault(Fault::Honest);
        bus.send(to, Bytes::from_static(b"healed"));
        assert_eq!(inbox.try_recv().unwrap(), Bytes::from_static(b"healed"));
    }
}
