//! The faulty network: frames leave a node through its [`SimBus`] outbox, and the world
//! routes each one through Byzantine rewriting, partitions, drops, delays and duplicates
//! (the faults stop once the network heals) to a delivery event.

use super::world::{Event, World};
use bytes::Bytes;
use std::sync::{Arc, Mutex};
use zz_protocol::NodeId;
use zz_protocol::bus::MessageBus;

/// The simulator's implementation of the message bus: frames wait in an outbox until the
/// world routes them through the faulty network.
#[derive(Clone, Default)]
pub(crate) struct SimBus {
    outbox: Arc<Mutex<Vec<(NodeId, Bytes)>>>,
}

impl SimBus {
    pub(crate) fn drain(&self) -> Vec<(NodeId, Bytes)> {
        std::mem::take(&mut *self.outbox.lock().expect("sim outbox"))
    }
}

impl MessageBus for SimBus {
    fn send(&self, to: NodeId, frame: Bytes) {
        self.outbox.lock().expect("sim outbox").push((to, frame));
    }
    fn dropped_frames(&self) -> u64 {
        0
    }
}

impl World {
    /// Whether a partition of the scenario separates `from` and `to` now.
    fn partitioned(&self, from: NodeId, to: NodeId) -> bool {
        let now = self.now.0;
        self.scenario
            .partitions
            .iter()
            .filter(|(start, end, _)| *start <= now && now < *end)
            .any(|(_, _, isolated)| {
                let side =
                    |node: NodeId| matches!(node, NodeId::Replica(r) if isolated.contains(&r));
                side(from) != side(to)
            })
    }

    /// The faulty network: Byzantine rewriting, partitions, drops, delays, duplicates.
    pub(crate) fn route(&mut self, from: NodeId, to: NodeId, frame: Bytes) {
        let frames = match from {
            NodeId::Replica(replica) => match self.replicas[replica.index()].byzantine.as_mut() {
                Some(byzantine) => {
                    let honest = (to, frame.clone());
                    let sent = byzantine.mutate(&mut self.rng, to, frame);
                    if sent.len() != 1 || sent[0] != honest {
                        self.stats.byzantine_frames_altered += 1;
                    }
                    sent
                }
                None => vec![(to, frame)],
            },
            NodeId::Client(_) | NodeId::Execution(_) | NodeId::Activator(_) => vec![(to, frame)],
        };
        for (to, frame) in frames {
            if !self.healed
                && (self.partitioned(from, to) || self.rng.chance(self.scenario.drop_per_mille))
            {
                self.stats.frames_lost += 1;
                continue;
            }
            let copies = if !self.healed && self.rng.chance(self.scenario.duplicate_per_mille) {
                2
            } else {
                1
            };
            for _ in 0..copies {
                let delay = self.rng.range(
                    self.scenario.delay_min_micros,
                    self.scenario.delay_max_micros,
                );
                let at = self.now.saturating_add_micros(delay);
                let frame = frame.clone();
                self.schedule(at, Event::Deliver { from, to, frame });
            }
        }
    }
}
