//! What one seed decides: protocol parameters, network faults, crashes, partitions,
//! Byzantine replicas and the client workload.

use super::byzantine::Behaviours;
use super::rng::SimRng;
use std::collections::BTreeMap;
use zz_protocol::{ProtocolParams, ReplicaId};

/// Everything random about one run, drawn from its seed.
#[derive(Clone, Debug)]
pub struct Scenario {
    pub params: ProtocolParams,
    pub drop_per_mille: u64,
    pub duplicate_per_mille: u64,
    pub delay_min_micros: u64,
    pub delay_max_micros: u64,
    /// (start, end, isolated replicas) in microseconds of virtual time.
    pub partitions: Vec<(u64, u64, Vec<ReplicaId>)>,
    /// (crash time, restart time, replica).
    pub crashes: Vec<(u64, u64, ReplicaId)>,
    pub byzantine: BTreeMap<ReplicaId, Behaviours>,
    pub clients: u64,
    pub requests_per_client: u64,
    pub client_retransmit_micros: u64,
    /// The safety phase (faults on) lasts this long; then the network heals.
    pub safety_micros: u64,
    /// After healing, every request must be accepted within this long.
    pub liveness_micros: u64,
}

impl Scenario {
    pub fn generate(rng: &mut SimRng, f: usize) -> Scenario {
        let checkpoint_interval = [2, 4, 8, 16][rng.range(0, 3) as usize];
        let params = ProtocolParams {
            f,
            checkpoint_interval,
            window: checkpoint_interval * rng.range(2, 4),
            batch_size_max: rng.range(1, 8) as usize,
            pipeline_max: rng.range(1, 4),
            request_bytes_max: 1024,
            frame_bytes_max: 4 * 1024 * 1024,
            view_change_timeout_ms: rng.range(200, 800),
            status_interval_ms: rng.range(30, 120),
            timestamp_skew_max_ms: 60_000,
            // Not drawn, so that every seed keeps the schedule it had before this setting.
            execution_silence_ms: 1000,
        };
        params
            .validate()
            .expect("the simulator draws valid parameters");
        let replica_count = params.replica_count() as u32;
        let safety_micros = rng.range(3_000_000, 12_000_000);
        let mut partitions = Vec::new();
        if rng.chance(500) {
            for _ in 0..rng.range(1, 3) {
                let start = rng.range(0, safety_micros);
                let end = (start + rng.range(200_000, 3_000_000)).min(safety_micros);
                let isolated = (0..replica_count)
                    .filter(|_| rng.chance(350))
                    .map(ReplicaId)
                    .collect();
                partitions.push((start, end, isolated));
            }
        }
        let mut crashes = Vec::new();
        if rng.chance(500) {
            for _ in 0..rng.range(1, 3) {
                let at = rng.range(0, safety_micros);
                let restart = (at + rng.range(100_000, 3_000_000)).min(safety_micros);
                crashes.push((
                    at,
                    restart,
                    ReplicaId(rng.range(0, replica_count as u64 - 1) as u32),
                ));
            }
        }
        let mut byzantine = BTreeMap::new();
        for _ in 0..rng.range(0, f as u64) {
            let replica = ReplicaId(rng.range(0, replica_count as u64 - 1) as u32);
            byzantine.insert(replica, Behaviours::random(rng));
        }
        let delay_min_micros = rng.range(50, 2_000);
        Scenario {
            params,
            drop_per_mille: if rng.chance(700) {
                rng.range(0, 150)
            } else {
                0
            },
            duplicate_per_mille: rng.range(0, 50),
            delay_min_micros,
            delay_max_micros: delay_min_micros + rng.range(0, 30_000),
            partitions,
            crashes,
            byzantine,
            clients: rng.range(1, 4),
            requests_per_client: rng.range(5, 40),
            client_retransmit_micros: rng.range(300_000, 1_000_000),
            safety_micros,
            liveness_micros: 120_000_000,
        }
    }
}
