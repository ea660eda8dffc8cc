//! Persist before reporting: a checkpoint's report reaches the agreement replicas only once
//! the sink made it durable (DESIGN.md, "Durability"); replies are not held.

use super::tests::{Echo, config, order, state_params};
use super::*;
use crate::durable::{CheckpointSaved, Saving, WriteStats};
use zz_protocol::ProtocolParams;
use zz_protocol::bus::{Inbox, MemoryBus, MemoryNetwork};
use zz_protocol::derived_keys::DerivedKeys;
use zz_state_fetch::{ObjectStore, Snapshot};

/// A sink that answers as told and records what it was handed.
struct ScriptedSink {
    answer: Saving,
    handed: Vec<Seq>,
}

impl CheckpointSink for ScriptedSink {
    fn save(&mut self, snapshot: &Snapshot) -> Saving {
        self.handed.push(snapshot.seq());
        self.answer
    }

    fn stable(&mut self, _seq: Seq) {}
}

struct Setup {
    keys: DerivedKeys,
    driver: ExecutionDriver<MemoryBus, ScriptedSink>,
    /// What agreement replica 0 receives.
    replica_inbox: Inbox,
}

fn setup(answer: Saving) -> Setup {
    let params = ProtocolParams::default();
    let keys = DerivedKeys::new(7, &params).with_executions(1);
    let network = MemoryNetwork::new();
    let (bus, _inbox) = network.join(NodeId::Execution(ExecutionId(0)));
    let (_, replica_inbox) = network.join(NodeId::Replica(ReplicaId(0)));
    let replica = ExecutionReplica::new(
        config(),
        Box::new(Echo),
        ObjectStore::new(state_params()),
        Seq(0),
    );
    let sink = ScriptedSink {
        answer,
        handed: Vec::new(),
    };
    let driver = ExecutionDriver::new(replica, keys.execution_endpoint(ExecutionId(0)), bus, 4)
        .with_checkpoint_sink(sink);
    Setup {
        keys,
        driver,
        replica_inbox,
    }
}

impl Setup {
    /// Orders `seqs` from f+1 agreement replicas.
    fn execute(&mut self, seqs: std::ops::RangeInclusive<u64>) {
        for seq in seqs {
            for replica in 0..2 {
                let frame = (self.keys.replica_endpoint(ReplicaId(replica)))
                    .seal(
                        NodeId::Execution(ExecutionId(0)),
                        &Message::AppOrder(order(seq)),
                    )
                    .unwrap();
                self.driver.handle_frame(Time(0), &frame);
            }
        }
    }

    /// The checkpoint reports agreement replica 0 received since the last call, and
    /// whether it received the Executed reports too.
    fn reports(&mut self) -> (Vec<Seq>, usize) {
        let endpoint = self.keys.replica_endpoint(ReplicaId(0));
        let (mut checkpoints, mut executed) = (Vec::new(), 0);
        while let Ok(frame) = self.replica_inbox.try_recv() {
            match endpoint.open(&frame).unwrap().into_parts().1 {
                Message::ExecutionCheckpoint(checkpoint) => checkpoints.push(checkpoint.seq),
                Message::Executed(_) => executed += 1,
                other => panic!("unexpected {other:?}"),
            }
        }
        (checkpoints, executed)
    }
}

fn saved(seq: u64) -> CheckpointSaved {
    CheckpointSaved {
        seq: Seq(seq),
        result: Ok(WriteStats::default()),
    }
}

#[test]
fn a_checkpoint_is_reported_only_once_its_write_completes() {
    let mut setup = setup(Saving::InProgress);
    // Checkpoints fall every 2 sequence numbers.
    setup.execute(1..=4);
    assert_eq!(setup.driver.sink().handed, vec![Seq(2), Seq(4)]);
    assert_eq!(
        setup.reports(),
        (vec![], 4),
        "executed reports leave, checkpoint reports wait"
    );
    assert_eq!(setup.driver.unsaved_reports(), 2);

    let failed = CheckpointSaved {
        seq: Seq(2),
        result: Err("disk full".to_string()),
    };
    setup.driver.handle_checkpoint_saved(failed);
    assert_eq!(
        setup.reports(),
        (vec![], 0),
        "a failed write vouches for nothing"
    );
    assert_eq!(setup.driver.durability().save_failures, 1);

    // A write of checkpoint 4 covers checkpoint 2 too.
    setup.driver.handle_checkpoint_saved(saved(4));
    assert_eq!(setup.reports(), (vec![Seq(2), Seq(4)], 0));
    assert_eq!(setup.driver.durability().last_saved, Some(Seq(4)));
    assert_eq!(setup.driver.unsaved_reports(), 0);
}

#[test]
fn a_sink_durable_at_once_lets_reports_leave_at_once_and_an_unwritable_one_holds_them() {
    let mut durable = setup(Saving::Saved);
    durable.execute(1..=2);
    assert_eq!(durable.reports(), (vec![Seq(2)], 2));
    assert_eq!(durable.driver.durability().last_saved, Some(Seq(2)));

    // A checkpoint of a state still being fetched cannot be written: its report waits
    // (else it could become stable with this disk lacking it), until a later write.
    let mut unwritable = setup(Saving::Unwritable);
    unwritable.execute(1..=2);
    assert_eq!(unwritable.reports(), (vec![], 2));
    assert_eq!(unwritable.driver.durability().checkpoints_awaiting_state, 1);
    assert_eq!(unwritable.driver.durability().last_saved, None);
    unwritable.driver.handle_checkpoint_saved(saved(4));
    assert_eq!(unwritable.reports(), (vec![Seq(2)], 0));
}

/// A replica restored from disk at checkpoint 2 asks every agreement replica for the
/// orders after it.
#[test]
fn a_restored_replica_resumes_by_asking_for_the_orders_after_its_checkpoint() {
    let mut setup = setup(Saving::Saved);
    setup.execute(1..=2);
    setup.reports();
    let snapshot = setup.driver.replica().store().snapshot(Seq(2)).unwrap();
    let mut restorer = zz_state_fetch::Restorer::new(state_params(), Seq(2), snapshot.root());
    for index in 0..state_params().bucket_count() as u32 {
        let bucket = zz_state_fetch::BucketIndex(index);
        restorer.leaf(bucket, snapshot.leaf(bucket).unwrap());
        let proof = snapshot.bucket_with_proof(bucket).unwrap();
        restorer.bucket(bucket, proof.entries);
    }
    let restored = restorer.finish().unwrap();
    assert!(restored.refused.is_empty());
    let replica = ExecutionReplica::new(config(), Box::new(Echo), restored.store, Seq(2));
    let network = MemoryNetwork::new();
    let (bus, _) = network.join(NodeId::Execution(ExecutionId(0)));
    let (_, mut inbox) = network.join(NodeId::Replica(ReplicaId(1)));
    let endpoint = setup.keys.execution_endpoint(ExecutionId(0));
    let mut driver = ExecutionDriver::new(replica, endpoint, bus, 4);
    driver.resume(Time(0));
    let frame = inbox.try_recv().expect("asked replica 1");
    let opened = setup.keys.replica_endpoint(ReplicaId(1)).open(&frame);
    match opened.unwrap().into_parts().1 {
        Message::FetchOrders(fetch) => assert_eq!(fetch.after, Seq(2)),
        other => panic!("unexpected {other:?}"),
    }
}
