//! A replica restarted from its state store still serves the stable checkpoint when it had
//! written newer ones: a fetcher pinned to that checkpoint (a woken standby, or a replica
//! whose store was lost) gets every bucket from it, each proof holding against the root.

use super::tests::{Echo, config, order, state_params};
use super::*;
use crate::durable::Saving;
use crate::durable::disk::DiskStore;
use crate::durable::startup::open_durable;
use zz_protocol::ProtocolParams;
use zz_protocol::bus::{Inbox, MemoryBus, MemoryNetwork};
use zz_protocol::derived_keys::DerivedKeys;
use zz_state_fetch::{ObjectStore, Snapshot};

const A: ExecutionId = ExecutionId(0);
const B: ExecutionId = ExecutionId(1);

/// The state store on a real file, written at once (the node's writer thread does the
/// same writes off the event loop).
struct WrittenAtOnce {
    disk: DiskStore,
    base: Option<Snapshot>,
    stable: Option<Seq>,
}

impl CheckpointSink for WrittenAtOnce {
    fn save(&mut self, snapshot: &Snapshot) -> Saving {
        let stable = self.stable.take();
        (self
            .disk
            .write_chain(&[snapshot], self.base.as_ref(), stable))
        .unwrap();
        self.base = Some(snapshot.clone());
        Saving::Saved
    }

    fn stable(&mut self, seq: Seq) {
        self.stable = Some(seq);
    }
}

fn store_path(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("zz-driver-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir.join("execution-0.redb")
}

fn seal(keys: &DerivedKeys, from: ReplicaId, message: &Message) -> Vec<u8> {
    (keys.replica_endpoint(from))
        .seal(NodeId::Execution(A), message)
        .unwrap()
}

fn driver_a(
    keys: &DerivedKeys,
    bus: MemoryBus,
    store: ObjectStore,
    executed: Seq,
    sink: WrittenAtOnce,
) -> ExecutionDriver<MemoryBus, WrittenAtOnce> {
    let replica = ExecutionReplica::new(config(), Box::new(Echo), store, executed);
    ExecutionDriver::new(replica, keys.execution_endpoint(A), bus, 4)
        .with_peers(vec![B])
        .with_checkpoint_sink(sink)
}

/// Every bucket B asks A for at B's pinned checkpoint, answered and installed.
fn fetch_everything(
    b: &mut ExecutionDriver<MemoryBus>,
    a: &mut ExecutionDriver<MemoryBus, WrittenAtOnce>,
    inbox_b: &mut Inbox,
) {
    for index in 0..state_params().bucket_count() as u32 {
        let fetch = FetchBucket {
            app: zz_protocol::AppId(0),
            seq: Seq(2),
            bucket: index,
        };
        let frame = (b.endpoint)
            .seal(NodeId::Execution(A), &Message::FetchBucket(fetch))
            .unwrap();
        a.handle_frame(Time(0), &frame);
        let answer = inbox_b.try_recv().expect("A answered");
        b.handle_frame(Time(0), &answer);
    }
}

#[test]
fn a_restarted_replica_serves_a_fetcher_pinned_to_the_stable_checkpoint_behind_its_last() {
    let params = ProtocolParams::default();
    let keys = DerivedKeys::new(7, &params).with_executions(2);
    let path = store_path("stable-serve");
    let network = MemoryNetwork::new();
    let (bus_a, _inbox_a) = network.join(NodeId::Execution(A));
    let (bus_b, mut inbox_b) = network.join(NodeId::Execution(B));

    let disk = open_durable(&path, state_params(), true, 0).unwrap().disk;
    let sink = WrittenAtOnce {
        disk,
        base: None,
        stable: None,
    };
    let store = ObjectStore::new(state_params());
    let mut a = driver_a(&keys, bus_a.clone(), store, Seq(0), sink);
    let execute = |a: &mut ExecutionDriver<MemoryBus, WrittenAtOnce>, seqs| {
        for seq in seqs {
            for replica in 0..2 {
                let frame = seal(&keys, ReplicaId(replica), &Message::AppOrder(order(seq)));
                a.handle_frame(Time(0), &frame);
            }
        }
    };
    // Checkpoints every 2 sequence numbers: 2 becomes stable, then 4 and 6 are written.
    execute(&mut a, 1..=2);
    let (_, root_2) = a.replica().store().last_checkpoint().unwrap();
    for replica in 0..2 {
        let notice = Message::ExecutionStable(ExecutionCheckpoint {
            app: zz_protocol::AppId(0),
            seq: Seq(2),
            root: root_2,
        });
        a.handle_frame(Time(0), &seal(&keys, ReplicaId(replica), &notice));
    }
    assert_eq!(a.sink().stable, Some(Seq(2)), "the sink heard");
    execute(&mut a, 3..=6);
    assert_eq!(a.replica().last_executed(), Seq(6));
    drop(a);

    // The restart: the store rebuilds 2 and 4 from 6.
    let start = open_durable(&path, state_params(), true, 0).unwrap();
    let restored = start.restored.unwrap();
    assert_eq!(
        (restored.seq, restored.older.clone()),
        (Seq(6), vec![Seq(2), Seq(4)])
    );
    let base = restored.store.snapshot(Seq(6)).cloned();
    let sink = WrittenAtOnce {
        disk: start.disk,
        base,
        stable: None,
    };
    let mut a = driver_a(&keys, bus_a, restored.store, Seq(6), sink);

    // B is pinned to the stable checkpoint, 2.
    let pinned = ObjectStore::pinned(state_params(), Seq(2), root_2);
    let replica_b = ExecutionReplica::new(config(), Box::new(Echo), pinned, Seq(2));
    let mut b =
        ExecutionDriver::new(replica_b, keys.execution_endpoint(B), bus_b, 4).with_peers(vec![A]);
    fetch_everything(&mut b, &mut a, &mut inbox_b);
    assert!(b.replica().store().is_complete(), "every bucket installed");
    assert_eq!(b.counters().rejected.values().sum::<u64>(), 0);
    let get = |name: &str| {
        let key = [crate::app::APP_KEY_PREFIX, name.as_bytes()].concat();
        b.replica().store().get(&key).unwrap().map(<[u8]>::to_vec)
    };
    assert_eq!(get("object-2"), Some(b"object-2".to_vec()));
    assert_eq!(get("object-3"), None, "executed after checkpoint 2");
    let _ = std::fs::remove_dir_all(path.parent().unwrap());
}
