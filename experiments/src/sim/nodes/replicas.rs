//! Simulated agreement replicas: the real replica driver (core, frame sealing and opening,
//! persistence) on the simulated bus, with storage that survives crashes as a disk would,
//! and, for Byzantine ones, the liar that rewrites what the core sends.
//!
//! The driver holds what it sends while records wait to be synced; the world syncs them
//! as an event of its own, a random moment (up to [`SYNC_DELAY_MAX_MICROS`]) after a step
//! that left any, and half the planned crashes wait for such a moment (the other half
//! strike when they are due), so that crashes often fall between an append and its sync.
//! A crash then loses the unsynced records and the frames held for them.

use super::super::byzantine::Byzantine;
use super::super::network::SimBus;
use super::super::violation::Violation;
use super::super::world::{Event, World};
use zz_agreement::io::driver::ReplicaDriver;
use zz_agreement::io::storage::MemoryStorage;
use zz_agreement::{Replica, ReplicaConfig};
use zz_protocol::{Endpoint, NodeId, ReplicaId};

/// The longest a replica's records wait between the step that appended them and their sync.
pub(crate) const SYNC_DELAY_MAX_MICROS: u64 = 2_000;

pub(crate) struct SimReplica {
    pub(crate) config: ReplicaConfig,
    pub(crate) endpoint: Endpoint,
    pub(crate) bus: SimBus,
    pub(crate) driver: Option<ReplicaDriver<SimBus, MemoryStorage>>,
    /// Survives crashes, as a disk would.
    pub(crate) storage: MemoryStorage,
    pub(crate) byzantine: Option<Byzantine>,
    pub(crate) timer_generation: u64,
    /// Whether a sync event is scheduled for the running driver, and its generation (a
    /// crash makes a scheduled one stale).
    pub(crate) sync_scheduled: bool,
    pub(crate) sync_generation: u64,
    /// A planned crash waiting for the replica to hold records not synced yet.
    pub(crate) crash_when_unsynced: bool,
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

    /// The scheduled sync of the replica's records, then what it held for them goes out.
    pub(crate) fn replica_sync(
        &mut self,
        replica: ReplicaId,
        generation: u64,
    ) -> Result<(), Violation> {
        let sim = &mut self.replicas[replica.index()];
        if sim.sync_generation != generation {
            return Ok(());
        }
        sim.sync_scheduled = false;
        let Some(driver) = sim.driver.as_mut() else {
            return Ok(());
        };
        driver.sync_and_send_held();
        self.after_replica_step(replica)
    }

    /// A planned crash is due: now, or (half the time, if nothing waits for a sync now) at
    /// the end of the replica's next step that leaves records unsynced.
    pub(crate) fn planned_crash(&mut self, replica: ReplicaId) {
        let awaits_sync = (self.replicas[replica.index()].driver.as_ref())
            .is_some_and(|driver| driver.awaits_sync());
        if self.healed || awaits_sync || self.sync_rng.chance(500) {
            self.crash(replica);
        } else {
            self.replicas[replica.index()].crash_when_unsynced = true;
        }
    }

    /// A crash (during the safety phase only): the driver goes with the frames it held,
    /// and of its records only the synced ones stay.
    pub(crate) fn crash(&mut self, replica: ReplicaId) {
        let sim = &mut self.replicas[replica.index()];
        sim.crash_when_unsynced = false;
        if !self.healed
            && let Some(driver) = sim.driver.take()
        {
            let mut storage = driver.storage().clone();
            let unsynced = storage.records().len() - storage.synced_records().len();
            storage.lose_unsynced();
            sim.storage = storage;
            sim.bus.drain();
            sim.sync_scheduled = false;
            sim.sync_generation += 1;
            self.stats.unsynced_records_lost += unsynced as u64;
            self.stats.held_frames_lost += driver.held_frame_count() as u64;
        }
    }

    pub(crate) fn restart(&mut self, replica: ReplicaId) -> Result<(), Violation> {
        if self.replicas[replica.index()].crash_when_unsynced {
            // The moment never came: the crash strikes now, and the restart follows.
            self.crash(replica);
        }
        if self.replicas[replica.index()].driver.is_none() {
            self.stats.restarts += 1;
            let records = self.replicas[replica.index()].storage.records().to_vec();
            self.start_replica(replica, Some(records))?;
        }
        Ok(())
    }

    pub(crate) fn start_replica(
        &mut self,
        id: ReplicaId,
        records: Option<Vec<zz_agreement::core::persist::Record>>,
    ) -> Result<(), Violation> {
        let now = self.now;
        let correct = self.is_correct(id);
        let sim = &mut self.replicas[id.index()];
        let replica = match &records {
            Some(records) => Replica::restore(sim.config.clone(), records.clone(), now),
            None => Replica::new(sim.config.clone(), now),
        };
        if correct && records.is_some() {
            self.checker.check_restored_votes(&replica)?;
        }
        let records = records.unwrap_or_default();
        self.checker.replica_started(id, replica.last_executed());
        let storage = std::mem::take(&mut sim.storage);
        let driver = ReplicaDriver::new(replica, sim.endpoint.clone(), sim.bus.clone(), storage)
            .with_execution_groups(self.groups.clone(), self.initial_active.clone())
            .with_restored_orders(&records)
            .unwrap_or_else(|error| panic!("{id} cannot restart from its records: {error}"));
        self.stats.orders_restored += (self.groups.keys())
            .map(|app| driver.orders().retained_count(*app) as u64)
            .sum::<u64>();
        sim.driver = Some(driver);
        self.reschedule_replica(id);
        Ok(())
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
        let sync_due = driver.awaits_sync() && !sim.sync_scheduled;
        let frames = sim.bus.drain();
        if correct {
            for delivery in deliveries {
                (self.checker).check_delivery(id, delivery, &mut self.stats)?;
            }
            self.checker.check_stable(id, stable)?;
            self.checker.check_own_votes(id, &frames)?;
        }
        for (to, frame) in frames {
            self.route(NodeId::Replica(id), to, frame);
        }
        self.reschedule_replica(id);
        if sync_due {
            self.schedule_sync(id);
        }
        let sim = &self.replicas[id.index()];
        if sim.crash_when_unsynced && sim.driver.as_ref().is_some_and(|d| d.awaits_sync()) {
            self.crash(id);
        }
        Ok(())
    }

    fn schedule_sync(&mut self, id: ReplicaId) {
        let delay = self.sync_rng.range(0, SYNC_DELAY_MAX_MICROS);
        let sim = &mut self.replicas[id.index()];
        sim.sync_scheduled = true;
        sim.sync_generation += 1;
        let generation = sim.sync_generation;
        let at = self.now.saturating_add_micros(delay);
        self.schedule(
            at,
            Event::ReplicaSync {
                replica: id,
                generation,
            },
        );
    }
}
