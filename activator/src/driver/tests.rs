//! The driver and its pool store: a membership change is saved before it is announced, a
//! save that fails holds the announcement back, and a driver restored from a record
//! starts its members as the record has them and announces the recorded epoch.

use super::*;
use crate::backend::{BackendError, Instance};
use crate::policy::{PoolRecord, SlotRecord, SlotRole};
use crate::pools_file::PoolsFileError;
use std::sync::{Arc, Mutex};
use zz_protocol::bus::{Inbox, MemoryNetwork};
use zz_protocol::derived_keys::DerivedKeys;
use zz_protocol::messages::{Membership, WakeReason};
use zz_protocol::{ProtocolParams, Seq};

const APP: AppId = AppId(0);

/// What the fake backend was asked: (member, standby) per start, and thaws. A started
/// standby is ready at the next poll.
#[derive(Default)]
struct FakeBackend {
    starts: Vec<(ExecutionId, bool)>,
    loading: Vec<ExecutionId>,
    thawed: Vec<ExecutionId>,
}

impl Backend for FakeBackend {
    fn name(&self) -> &'static str {
        "fake"
    }
    async fn start(&mut self, member: ExecutionId, standby: bool) -> Result<(), BackendError> {
        self.starts.push((member, standby));
        if standby {
            self.loading.push(member);
        }
        Ok(())
    }
    async fn poll_started(&mut self) -> Vec<ExecutionId> {
        std::mem::take(&mut self.loading)
    }
    async fn pause(&mut self, _member: ExecutionId) -> Result<(), BackendError> {
        Ok(())
    }
    async fn thaw(&mut self, member: ExecutionId) -> Result<(), BackendError> {
        self.thawed.push(member);
        Ok(())
    }
    async fn destroy(&mut self, _member: ExecutionId) -> Result<(), BackendError> {
        Ok(())
    }
    fn instances(&self) -> BTreeMap<ExecutionId, Instance> {
        BTreeMap::new()
    }
}

/// Keeps the records saved; fails while `failing` is set.
#[derive(Clone, Default)]
struct FakeStore {
    saved: Arc<Mutex<Vec<PoolsRecord>>>,
    failing: Arc<Mutex<bool>>,
}

impl PoolStore for FakeStore {
    fn save(&mut self, record: &PoolsRecord) -> Result<(), PoolsFileError> {
        if *self.failing.lock().unwrap() {
            return Err(PoolsFileError::Write {
                path: "fake".into(),
                source: std::io::Error::other("disk full"),
            });
        }
        self.saved.lock().unwrap().push(record.clone());
        Ok(())
    }
}

struct Rig {
    driver: ActivatorDriver<zz_protocol::bus::MemoryBus, FakeBackend, FakeStore>,
    store: FakeStore,
    keys: DerivedKeys,
    /// Agreement replica 0's inbox: what the activator announced.
    inbox: Inbox,
}

/// f = 1, one app: E0, E1 active, E2 a standby (already loaded), E3 a spare slot.
fn rig() -> Rig {
    let params = ProtocolParams::default();
    let keys = DerivedKeys::new(3, &params).with_executions(4);
    let network = MemoryNetwork::new();
    let (bus, _) = network.join(NodeId::Activator(zz_protocol::config::LOCAL_ACTIVATOR));
    let (_, inbox) = network.join(NodeId::Replica(ReplicaId(0)));
    let member = |id, state| Member {
        id: ExecutionId(id),
        host: format!("host{id}"),
        state,
    };
    let members = vec![
        member(0, MemberState::Active),
        member(1, MemberState::Active),
        member(2, MemberState::Standby),
        member(3, MemberState::Spare),
    ];
    let setup = ActivatorSetup {
        policy: PolicyConfig {
            f: 1,
            replica_count: 4,
            quiet_micros: 10_000_000,
            announce_micros: 1_000_000,
            join_grace_micros: 1_000_000,
        },
        pools: BTreeMap::from([(APP, members)]),
        app_names: BTreeMap::from([(APP, "kv".to_string())]),
        wall_clock_at_zero_ms: 0,
    };
    let store = FakeStore::default();
    let driver = ActivatorDriver::new(
        setup,
        keys.activator_endpoint(),
        bus,
        FakeBackend::default(),
    )
    .with_pool_store(store.clone());
    Rig {
        driver,
        store,
        keys,
        inbox,
    }
}

impl Rig {
    fn wake_from(&mut self, replica: u32, epoch: u64) {
        let wake = Wake {
            app: APP,
            epoch,
            seq: Seq(3),
            reason: WakeReason::RepliesDiffer,
        };
        let to = NodeId::Activator(zz_protocol::config::LOCAL_ACTIVATOR);
        let frame = (self.keys.replica_endpoint(ReplicaId(replica)))
            .seal(to, &Message::Wake(wake))
            .unwrap();
        self.driver.handle_frame(Time(1_000), &frame);
    }

    /// The memberships replica 0 was sent since the last call.
    fn announced(&mut self) -> Vec<Membership> {
        let endpoint = self.keys.replica_endpoint(ReplicaId(0));
        let mut announced = Vec::new();
        while let Ok(frame) = self.inbox.try_recv() {
            if let (_, Message::Membership(membership)) =
                endpoint.open(&frame).unwrap().into_parts()
            {
                announced.push(membership);
            }
        }
        announced
    }

    fn saved(&self) -> Vec<PoolsRecord> {
        self.store.saved.lock().unwrap().clone()
    }
}

fn run<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(future)
}

#[test]
fn a_membership_change_is_saved_before_it_is_announced_and_a_failed_save_holds_it_back() {
    let mut rig = rig();
    *rig.store.failing.lock().unwrap() = true;
    rig.wake_from(0, 0);
    rig.wake_from(1, 0);
    run(rig.driver.carry_out(|| Time(1_000)));
    assert_eq!(rig.driver.backend_mut().thawed, vec![ExecutionId(2)]);
    assert_eq!(
        rig.announced(),
        vec![],
        "epoch 1 is not saved: not announced"
    );
    assert_eq!(rig.driver.counters().record_save_failures, 1);
    *rig.store.failing.lock().unwrap() = false;
    // The next periodic announcement goes out once the record is saved.
    run(rig.driver.handle_timeout(Time(2_000_000)));
    run(rig.driver.carry_out(|| Time(2_000_000)));
    let saved = rig.saved();
    assert_eq!(saved.len(), 1);
    assert_eq!(saved[0].apps[0].epoch, 1);
    let roles: Vec<SlotRole> = saved[0].apps[0].slots.iter().map(|s| s.role).collect();
    use SlotRole::{Active, Spare};
    assert_eq!(roles, vec![Active, Active, Active, Spare]);
    let membership = Membership {
        app: APP,
        epoch: 1,
        active: vec![ExecutionId(0), ExecutionId(1), ExecutionId(2)],
    };
    assert_eq!(rig.announced(), vec![membership]);
    // Nothing changed since: the next turn saves nothing again.
    run(rig.driver.carry_out(|| Time(2_000_001)));
    assert_eq!(rig.saved().len(), 1);
}

#[test]
fn a_restored_driver_starts_members_as_recorded_and_announces_the_recorded_epoch() {
    let mut rig = rig();
    let slot = |id, role| SlotRecord {
        id: ExecutionId(id),
        role,
    };
    // E1 was destroyed as faulty and refilled; E2 was woken in its place.
    let record = PoolsRecord {
        apps: vec![PoolRecord {
            app: APP,
            epoch: 5,
            slots: vec![
                slot(0, SlotRole::Active),
                slot(1, SlotRole::Standby),
                slot(2, SlotRole::Active),
                slot(3, SlotRole::Spare),
            ],
            woken: vec![ExecutionId(2)],
        }],
    };
    rig.driver.restore(&record).unwrap();
    run(rig.driver.start_members(|| Time(0)));
    let starts = &rig.driver.backend_mut().starts;
    let expected =
        [(0, false), (1, true), (2, false)].map(|(id, standby)| (ExecutionId(id), standby));
    assert_eq!(starts, &expected, "E3 is a spare slot: not started");
    run(rig.driver.handle_timeout(Time(0)));
    run(rig.driver.carry_out(|| Time(0)));
    let membership = Membership {
        app: APP,
        epoch: 5,
        active: vec![ExecutionId(0), ExecutionId(2)],
    };
    assert_eq!(rig.announced(), vec![membership]);
    assert_eq!(
        rig.saved(),
        vec![],
        "the record it started from is already saved"
    );
    // Alarms of the recorded epoch count.
    rig.wake_from(0, 5);
    rig.wake_from(1, 5);
    run(rig.driver.carry_out(|| Time(1_000)));
    assert_eq!(rig.driver.backend_mut().thawed, vec![ExecutionId(1)]);
    assert_eq!(rig.saved().last().unwrap().apps[0].epoch, 6);
}
