//! Snapshot leases, sans-IO: a serving replica keeps the checkpoints fetchers still ask
//! for (up to [`LEASES_MAX`]), each until [`LEASE_MICROS`] after the last ask. The driver
//! tells the store which snapshots to keep whenever the set changes.

use std::collections::{BTreeMap, BTreeSet};
use zz_protocol::{Seq, Time};

/// How long a snapshot stays leased after the last fetch from it.
pub const LEASE_MICROS: u64 = 10_000_000;
/// Snapshots leased at once at most (woken replicas joining from different checkpoints).
pub const LEASES_MAX: usize = 4;

/// See the module documentation.
#[derive(Clone, Debug, Default)]
pub struct Leases {
    /// When each leased checkpoint was last asked for.
    asked_at: BTreeMap<Seq, Time>,
}

impl Leases {
    /// A fetcher asked at `now` for a bucket of checkpoint `seq`, which this replica
    /// keeps. The new set of leased checkpoints when it changed.
    pub fn asked(&mut self, now: Time, seq: Seq) -> Option<BTreeSet<Seq>> {
        if let Some(at) = self.asked_at.get_mut(&seq) {
            *at = now;
            return None;
        }
        if self.asked_at.len() >= LEASES_MAX {
            // The oldest checkpoint goes: its fetchers are the furthest behind.
            self.asked_at.pop_first();
        }
        self.asked_at.insert(seq, now);
        Some(self.seqs())
    }

    /// Drop the leases nobody asked for in [`LEASE_MICROS`]. The new set of leased
    /// checkpoints when it changed.
    pub fn expire(&mut self, now: Time) -> Option<BTreeSet<Seq>> {
        let before = self.asked_at.len();
        (self.asked_at).retain(|_, at| now.saturating_sub(*at) < LEASE_MICROS);
        (self.asked_at.len() != before).then(|| self.seqs())
    }

    /// When the next lease expires, if any is held.
    pub fn poll_timeout(&self) -> Option<Time> {
        let oldest = self.asked_at.values().min()?;
        Some(oldest.saturating_add_micros(LEASE_MICROS))
    }

    fn seqs(&self) -> BTreeSet<Seq> {
        self.asked_at.keys().copied().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_lasts_while_asked_and_expires_after_the_lease_time() {
        let mut leases = Leases::default();
        assert_eq!(leases.asked(Time(0), Seq(8)), Some([Seq(8)].into()));
        assert_eq!(leases.asked(Time(5), Seq(8)), None, "already leased");
        assert_eq!(leases.poll_timeout(), Some(Time(5 + LEASE_MICROS)));
        assert_eq!(
            leases.expire(Time(LEASE_MICROS + 4)),
            None,
            "renewed by the ask"
        );
        assert_eq!(leases.expire(Time(LEASE_MICROS + 5)), Some(BTreeSet::new()));
        assert_eq!(leases.poll_timeout(), None);
    }

    #[test]
    fn at_most_leases_max_are_kept_and_the_oldest_checkpoint_goes_first() {
        let mut leases = Leases::default();
        for seq in 1..=LEASES_MAX as u64 + 1 {
            leases.asked(Time(0), Seq(seq * 8));
        }
        let kept: BTreeSet<Seq> = (2..=LEASES_MAX as u64 + 1).map(|s| Seq(s * 8)).collect();
        assert_eq!(leases.seqs(), kept);
    }
}
