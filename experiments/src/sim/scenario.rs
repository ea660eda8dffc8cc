//! What one seed decides: protocol parameters, network faults, crashes, partitions,
//! Byzantine replicas and the client workload.

use super::byzantine::Behaviours;
use super::rng::SimRng;
use std::collections::BTreeMap;
use zz_cluster::Fault;
use zz_protocol::{AppId, ProtocolParams, ReplicaId};

/// One execution replica that turns faulty, and when. The fault hits the instance
/// running at that time; a fresh instance started in its place later is clean.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExecutionFaultPlan {
    pub app: AppId,
    /// Index of the member in its app's group: below f+1 an active, above a standby.
    pub member_index: usize,
    pub at_micros: u64,
    /// A crash stops the replica for good; any other fault makes its driver misbehave as
    /// the fault says (its core stays correct).
    pub fault: Fault,
}

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
    /// (crash time, restart time) of every agreement replica at once, as a power cut or
    /// `zz down` would: what survives is only what each had synced.
    pub cluster_crash: Option<(u64, u64)>,
    pub byzantine: BTreeMap<ReplicaId, Behaviours>,
    pub clients: u64,
    pub requests_per_client: u64,
    pub client_retransmit_micros: u64,
    /// The safety phase (faults on) lasts this long; then the network heals.
    pub safety_micros: u64,
    /// After healing, every request must be accepted within this long.
    pub liveness_micros: u64,
    /// Paused standbys per app, besides its f+1 active execution replicas.
    pub standbys_per_app: usize,
    /// Execution replicas that turn faulty: at most f per app, and no more than it has
    /// standbys (so f+1 correct members always exist to take over). They stay faulty
    /// through the liveness phase: activation must heal the app.
    pub execution_faults: Vec<ExecutionFaultPlan>,
    /// How long the backend takes to start a fresh standby, drawn per start in this range.
    pub standby_start_micros: (u64, u64),
    /// The activator's quiet period before it pauses extra active members.
    pub quiet_micros: u64,
    /// How often the activator announces each app's membership again.
    pub announce_micros: u64,
    /// A Byzantine client (id `clients`, provisioned) attacking this often, if any.
    pub byzantine_client_every_micros: Option<u64>,
    /// When the activator crashes and when it restarts from its saved record, if it does.
    pub activator_restart: Option<(u64, u64)>,
    /// Whether clients send requests of the largest size allowed (`request_bytes_max`,
    /// then 64 KiB), so that batches, view changes and catch-up carry megabytes.
    pub large_requests: bool,
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
            request_bytes_max: REQUEST_BYTES,
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
        let mut scenario = Scenario {
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
            cluster_crash: None,
            byzantine,
            clients: rng.range(1, 4),
            requests_per_client: rng.range(5, 40),
            client_retransmit_micros: rng.range(300_000, 1_000_000),
            safety_micros,
            liveness_micros: 120_000_000,
            standbys_per_app: 0,
            execution_faults: Vec::new(),
            standby_start_micros: (0, 0),
            quiet_micros: 0,
            announce_micros: 0,
            byzantine_client_every_micros: None,
            large_requests: false,
            activator_restart: None,
        };
        // Activation draws come after the others, and the cluster crash last, so the
        // draws before each keep the values they had before it was added.
        scenario.draw_activation(rng, APP_COUNT);
        scenario.draw_cluster_crash(rng);
        if rng.chance(BYZANTINE_CLIENT_PER_MILLE) {
            scenario.byzantine_client_every_micros = Some(rng.range(5_000, 200_000));
        }
        for behaviours in scenario.byzantine.values_mut() {
            if rng.chance(500) {
                behaviours.spoil_signatures = rng.range(1, 500);
            }
        }
        if rng.chance(LARGE_REQUESTS_PER_MILLE) {
            scenario.large_requests = true;
            scenario.params.request_bytes_max = LARGE_REQUEST_BYTES;
            (scenario.params.validate()).expect("a full batch of large requests fits a frame");
        }
        for behaviours in scenario.byzantine.values_mut() {
            if rng.chance(500) {
                behaviours.greedy_fetch = rng.range(1, 300);
            }
        }
        if rng.chance(ACTIVATOR_RESTART_PER_MILLE) {
            let at = rng.range(0, scenario.safety_micros);
            let restart = (at + rng.range(10_000, 3_000_000)).min(scenario.safety_micros);
            scenario.activator_restart = Some((at, restart));
        }
        scenario
    }

    /// Now and then, every agreement replica crashes at once during the safety phase and
    /// restarts a little later (still within it, so liveness is judged after).
    fn draw_cluster_crash(&mut self, rng: &mut SimRng) {
        if rng.chance(CLUSTER_CRASH_PER_MILLE) {
            let at = rng.range(0, self.safety_micros);
            let restart = (at + rng.range(10_000, 2_000_000)).min(self.safety_micros);
            self.cluster_crash = Some((at, restart));
        }
    }

    /// Standbys, execution faults and activator settings.
    fn draw_activation(&mut self, rng: &mut SimRng, apps: u32) {
        let f = self.params.f;
        self.standbys_per_app = rng.range(1, f as u64 + 1) as usize;
        let group_size = f + 1 + self.standbys_per_app;
        let start_min = rng.range(10_000, 200_000);
        self.standby_start_micros = (start_min, start_min + rng.range(0, 500_000));
        self.quiet_micros = rng.range(1_000_000, 6_000_000);
        self.announce_micros = rng.range(200_000, 2_000_000);
        for app in (0..apps).map(AppId) {
            let faulty_max = f.min(self.standbys_per_app) as u64;
            let mut chosen: Vec<usize> = Vec::new();
            for _ in 0..rng.range(0, faulty_max) {
                let member_index = rng.range(0, group_size as u64 - 1) as usize;
                if chosen.contains(&member_index) {
                    continue;
                }
                chosen.push(member_index);
                let fault = match rng.range(0, 3) {
                    0 => Fault::Crash,
                    1 => Fault::Mute,
                    2 => Fault::CorruptReply,
                    _ => Fault::CorruptState,
                };
                self.execution_faults.push(ExecutionFaultPlan {
                    app,
                    member_index,
                    at_micros: rng.range(0, self.safety_micros),
                    fault,
                });
            }
        }
    }
}

/// Seeds, per thousand, whose activator crashes and restarts once.
pub const ACTIVATOR_RESTART_PER_MILLE: u64 = 300;

/// The request size limit in most seeds.
pub const REQUEST_BYTES: usize = 1024;
/// Seeds, per thousand, whose clients send requests of the largest size allowed.
pub const LARGE_REQUESTS_PER_MILLE: u64 = 250;
/// The request size limit in those seeds (zz's default limit).
pub const LARGE_REQUEST_BYTES: usize = 64 * 1024;

/// Seeds, per thousand, with a Byzantine client.
pub const BYZANTINE_CLIENT_PER_MILLE: u64 = 500;

/// Seeds, per thousand, whose whole agreement cluster crashes and restarts once.
pub const CLUSTER_CRASH_PER_MILLE: u64 = 200;

/// Apps in every simulated cluster (kv and null; see the simulator).
pub const APP_COUNT: u32 = 2;
