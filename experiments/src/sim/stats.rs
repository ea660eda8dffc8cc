//! What happened in one run, counted as it went: traffic, faults, activation and what the
//! checkers compared. `Display` prints it all on one line.

use std::collections::BTreeMap;
use std::fmt;
use zz_agreement::core::DropReason;

/// What happened in one run.
#[derive(Clone, Debug, Default)]
pub struct SimStats {
    pub events: u64,
    pub requests_accepted: u64,
    pub batches_ordered_max: u64,
    pub view_changes: u64,
    pub state_transfers: u64,
    /// Batches of new views' re-proposals that replicas lacked and fetched by digest.
    pub proposals_fetched: u64,
    /// Answers to fetch requests withheld from an asker over its share.
    pub fetch_answers_withheld: u64,
    pub frames_rejected: u64,
    pub frames_lost: u64,
    /// Messages the cores dropped after authentication (stale, duplicate, out of window..),
    /// by reason, summed over the replicas running at the end.
    pub messages_dropped: BTreeMap<DropReason, u64>,
    /// Frames of their cores' that Byzantine replicas rewrote, forged, withheld or sent
    /// with a replay.
    pub byzantine_frames_altered: u64,
    pub byzantine_replicas: usize,
    /// Whether clients sent requests of the largest size allowed.
    pub large_requests: bool,
    /// Attacks the Byzantine client sent (none without one).
    pub byzantine_client_attacks: u64,
    pub crashes: usize,
    /// Crashed replicas brought back from their persisted records.
    pub restarts: u64,
    /// Whether every agreement replica crashed at once (and restarted).
    pub cluster_crashes: u64,
    /// Times the activator crashed (and restarted from its record).
    pub activator_restarts: u64,
    /// Records a crash lost because they were appended but not synced yet, and frames it
    /// lost because they waited for that sync.
    pub unsynced_records_lost: u64,
    pub held_frames_lost: u64,
    /// Per-app orders restarted replicas took back from their records.
    pub orders_restored: u64,
    /// Execution checkpoints (app, seq) whose roots the checker compared.
    pub execution_checkpoints: u64,
    /// Per-app orders from correct replicas that the checker compared.
    pub app_orders_checked: u64,
    pub end_micros: u64,
    /// Execution faults the scenario planned, and how many hit a running instance.
    pub execution_faults_planned: usize,
    pub execution_faults_injected: u64,
    /// Alarms the activator opened.
    pub wakes_received: u64,
    pub faulty_received: u64,
    /// Of those, alarms from correct agreement replicas.
    pub alarms_from_correct: u64,
    /// False alarms Byzantine agreement replicas sent the activator.
    pub false_alarms_sent: u64,
    /// Commands the activator carried out.
    pub standbys_woken: u64,
    pub replicas_destroyed: u64,
    /// Destroyed replicas that really were faulty (an injected fault or a crash).
    pub faulty_replaced: u64,
    pub standbys_started: u64,
    pub standbys_paused: u64,
    /// Buckets execution replicas installed (each verified against the pinned root).
    pub buckets_fetched: u64,
    /// Fetched buckets refused because their proof failed.
    pub bad_buckets: u64,
    /// Results accepted by clients that the checker compared with correct replicas' ones.
    pub results_checked: u64,
    /// Active members of each app at the end, in the activator's view.
    pub active_at_end: Vec<usize>,
}

impl fmt::Display for SimStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "events {}, accepted {}, batches {}, execution checkpoints {}, app orders checked \
             {}, view changes {}, state transfers {}, re-proposals fetched {}, fetch answers \
             withheld {}, rejected {}, lost {}, dropped {{{}}}, \
             byzantine {} ({} frames altered, {} false alarms), byzantine client attacks {}, large requests {}, crashes {} ({} restarts, {} of \
             the whole cluster, {} of the activator, {} unsynced records and {} held frames lost, {} orders restored), \
             execution faults {} ({} planned), alarms {} wakes and {} faulty ({} from correct \
             replicas), woken {}, destroyed {} ({} faulty), started {}, paused {}, buckets \
             fetched {} ({} bad refused), results checked {}, active at end {:?}, end {:.1}s",
            self.events,
            self.requests_accepted,
            self.batches_ordered_max,
            self.execution_checkpoints,
            self.app_orders_checked,
            self.view_changes,
            self.state_transfers,
            self.proposals_fetched,
            self.fetch_answers_withheld,
            self.frames_rejected,
            self.frames_lost,
            (self.messages_dropped.iter())
                .map(|(reason, count)| format!("{reason}: {count}"))
                .collect::<Vec<_>>()
                .join(", "),
            self.byzantine_replicas,
            self.byzantine_frames_altered,
            self.false_alarms_sent,
            self.byzantine_client_attacks,
            self.large_requests,
            self.crashes,
            self.restarts,
            self.cluster_crashes,
            self.activator_restarts,
            self.unsynced_records_lost,
            self.held_frames_lost,
            self.orders_restored,
            self.execution_faults_injected,
            self.execution_faults_planned,
            self.wakes_received,
            self.faulty_received,
            self.alarms_from_correct,
            self.standbys_woken,
            self.replicas_destroyed,
            self.faulty_replaced,
            self.standbys_started,
            self.standbys_paused,
            self.buckets_fetched,
            self.bad_buckets,
            self.results_checked,
            self.active_at_end,
            self.end_micros as f64 / 1e6,
        )
    }
}
