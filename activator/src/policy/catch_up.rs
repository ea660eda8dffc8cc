//! Catching up with the agreement replicas' epoch: the one way the policy's epoch moves
//! other than by its own membership changes. It matters when the activator's record is
//! older than what the agreement replicas adopted (the record was lost or put back while
//! they kept running): their alarms name an epoch the policy would never count, and its
//! announcements an epoch they would never adopt.

use super::{Policy, PolicyEvent};
use zz_protocol::{AppId, ReplicaId, Time};

impl Policy {
    /// An alarm from `from` named `epoch`, not the app's. A correct agreement replica
    /// holds only epochs an activator announced, so once f+1 distinct replicas name epochs
    /// of at least E past the app's, one correct replica holds E: this activator's record
    /// is older than what they adopted (it was lost, or put back). The policy moves past E
    /// and announces its membership there; the replicas adopt it and their alarms count
    /// again. f Byzantine replicas naming absurd epochs move nothing.
    pub(super) fn handle_epoch_ahead(
        &mut self,
        now: Time,
        from: ReplicaId,
        app: AppId,
        epoch: u64,
    ) {
        let quorum = self.config.f + 1;
        let pool = self.apps.get_mut(&app).expect("a known app");
        // No epoch lies past the last one.
        if epoch <= pool.epoch || epoch == u64::MAX {
            return;
        }
        let claim = pool.ahead.entry(from).or_default();
        *claim = (*claim).max(epoch);
        let mut claims: Vec<u64> = pool.ahead.values().copied().collect();
        claims.sort_unstable_by(|a, b| b.cmp(a));
        let Some(&held) = claims.get(quorum - 1) else {
            return;
        };
        let behind = pool.epoch;
        pool.epoch = held;
        self.new_epoch(now, app);
        let event = PolicyEvent::EpochBehind {
            app: self.name(app),
            behind,
            held,
            epoch: self.apps[&app].epoch,
        };
        self.event(now, event);
    }
}
