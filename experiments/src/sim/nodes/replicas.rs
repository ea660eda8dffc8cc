//! Simulated agreement replicas: the real replica driver (core, frame sealing and opening,
//! persistence) on the simulated bus, with storage that survives crashes as a disk would,
//! and, for Byzantine ones, the liar that rewrites what the core sends.

use super::super::byzantine::Byzantine;
use super::super::network::SimBus;
use super::super::violation::Violation;
use super::super::world::{Event, World};
use zz_agreement::io::driver::ReplicaDriver;
use zz_agreement::io::storage::MemoryStorage;
use zz_agreement::{Replica, ReplicaConfig};
use zz_protocol::{Endpoint, NodeId, ReplicaId};

pub(crate) struct SimReplica {
    pub(crate) config: ReplicaConfig,
    pub(crate) endpoint: Endpoint,
    pub(crate) bus: SimBus,
    pub(crate) driver: Option<ReplicaDriver<SimBus, MemoryStorage>>,
    /// Survives crashes, as a disk would.
    pub(crate) storage: MemoryStorage,
    pub(crate) byzantine: Option<Byzantine>,
    pub(crate) timer_generation: u64,
}

impl World {
    pub(crate) fn deliver_to_replica(
        &mut self,
        replica: ReplicaId,
        frame: &[u8],
    ) -> Result<(), Violation> {
        let now = self.now;
        let Some(driver) = self.replicas[replica.index()].driver.as_mut() else {
            return Ok(());
        };
        driver.handle_frame(now, frame);
        self.after_replica_step(replica)
    }

    /// The replica's timer fired, unless a later deadline replaced it.
    pub(crate) fn replica_timer(
        &mut self,
        replica: ReplicaId,
        generation: u64,
    ) -> Result<(), Violation> {
        let now = self.now;
        let sim = &mut self.replicas[replica.index()];
        if sim.timer_generation == generation
            && let Some(driver) = sim.driver.as_mut()
        {
            driver.handle_timeout(now);
            self.after_replica_step(replica)?;
        }
        Ok(())
    }

    /// A crash (during the safety phase only): the driver goes, its records stay.
    pub(crate) fn crash(&mut self, replica: ReplicaId) {
        if !self.healed {
            let sim = &mut self.replicas[replica.index()];
            if let Some(driver) = sim.driver.take() {
                sim.storage = driver.storage().clone();
                sim.bus.drain();
            }
        }
    }

    pub(crate) fn restart(&mut self, replica: ReplicaId) {
        if self.replicas[replica.index()].driver.is_none() {
            self.stats.restarts += 1;
            let records = self.replicas[replica.index()].storage.records().to_vec();
            self.start_replica(replica, Some(records));
        }
    }

    pub(crate) fn start_replica(
        &mut self,
        id: ReplicaId,
        records: Option<Vec<zz_agreement::core::persist::Record>>,
    ) {
        let now = self.now;
        let sim = &mut self.replicas[id.index()];
        let replica = match &records {
            Some(records) => Replica::restore(sim.config.clone(), records.clone(), now),
            None => Replica::new(sim.config.clone(), now),
        };
        let records = records.unwrap_or_default();
        self.checker.replica_started(id, replica.last_executed());
        let storage = std::mem::take(&mut sim.storage);
        sim.driver = Some(
            ReplicaDriver::new(replica, sim.endpoint.clone(), sim.bus.clone(), storage)
                .with_execution_groups(self.groups.clone(), self.initial_active.clone())
                .with_restored_orders(&records),
        );
        self.reschedule_replica(id);
    }

    fn reschedule_replica(&mut self, id: ReplicaId) {
        let sim = &mut self.replicas[id.index()];
        let Some(deadline) = sim.driver.as_ref().and_then(|driver| driver.poll_timeout()) else {
            return;
        };
        sim.timer_generation += 1;
        let generation = sim.timer_generation;
        let at = deadline.max(self.now);
        self.schedule(
            at,
            Event::ReplicaTimer {
                replica: id,
                generation,
            },
        );
    }

    fn is_correct(&self, replica: ReplicaId) -> bool {
        self.replicas[replica.index()].byzantine.is_none()
    }

    /// After the replica handled an input: its bounds hold, the checker sees what a
    /// correct one ordered and holds stable, and what it sent goes on the network.
    fn after_replica_step(&mut self, id: ReplicaId) -> Result<(), Violation> {
        let correct = self.is_correct(id);
        let sim = &mut self.replicas[id.index()];
        let driver = sim.driver.as_mut().expect("a running replica");
        driver.replica().assert_bounds();
        driver
            .orders()
            .assert_bounds(driver.replica().params().replica_count());
        let deliveries = driver.take_deliveries();
        let stable = driver.replica().stable_checkpoint();
        let frames = sim.bus.drain();
        if correct {
            for delivery in deliveries {
                (self.checker).check_delivery(id, delivery, &mut self.stats)?;
            }
            self.checker.check_stable(id, stable)?;
        }
        for (to, frame) in frames {
            self.route(NodeId::Replica(id), to, frame);
        }
        self.reschedule_replica(id);
        Ok(())
    }
}
