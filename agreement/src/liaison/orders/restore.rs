//! Taking back, after a restart, the orders this replica retained before it: the driver
//! persists every retained order with the app's order chain before it, and hands the
//! records back here. With them an app's execution replicas still find every order after
//! the stable execution checkpoint at f+1 agreement replicas when all of them restarted
//! at once, and no peer has anything to recover from.
//!
//! Only the orders up to where the app stood at the restored PBFT checkpoint (its head,
//! [`OrderRouter::jumped_to`]) are taken back: the core orders the later ones again as it
//! commits the slots after its checkpoint, and [`OrderRouter::route`] takes each app's
//! orders gap-free. Orders missing below the head (never recovered before the restart)
//! are recovered from peers as after any jump.

use super::{OrderRouter, RetainedOrder};
use std::collections::BTreeMap;
use zz_protocol::{AppId, Digest, Seq};

/// Persisted orders that contradict what else the replica knows: its log is not one it
/// wrote consistently, so it must not serve from it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum OrderRestoreError {
    #[error(
        "the order chain of {app} after {seq} is {on_disk:?} by the orders on disk, but the \
         restored stable checkpoint certifies {certified:?}; refusing to serve orders from an \
         inconsistent log"
    )]
    HeadChainMismatch {
        app: AppId,
        seq: Seq,
        on_disk: Digest,
        certified: Digest,
    },
    #[error(
        "the orders of {app} on disk disagree on the order chain after {seq} ({on_disk:?} \
         and {known:?}); refusing to serve orders from an inconsistent log"
    )]
    ChainBreak {
        app: AppId,
        seq: Seq,
        on_disk: Digest,
        known: Digest,
    },
    #[error(
        "the order {seq} of {app} on disk names batch {batch:?} for its requests, and no \
         record before it holds that batch; refusing to serve orders from an inconsistent log"
    )]
    BatchMissing { app: AppId, seq: Seq, batch: Digest },
}

impl OrderRouter {
    /// After a restart, once the stable checkpoints are restored
    /// ([`OrderRouter::restore_stable`]) and the apps' heads set ([`OrderRouter::jumped_to`]),
    /// before any other input: take back the persisted `orders` (in any order; one order
    /// persisted twice, routed again after an earlier restart, counts once). Those after an
    /// app's stable checkpoint and up to its head are retained again, with their chain
    /// values; each must chain onto what is known, and the one at the head onto the chain
    /// the checkpoint certifies.
    pub fn restore_orders(
        &mut self,
        orders: impl IntoIterator<Item = RetainedOrder>,
    ) -> Result<(), OrderRestoreError> {
        let mut by_app: BTreeMap<AppId, BTreeMap<Seq, RetainedOrder>> = BTreeMap::new();
        for retained in orders {
            let (app, seq) = (retained.order.app, retained.order.seq);
            if self.membership.has_group(app) && seq > Seq(0) {
                by_app.entry(app).or_default().insert(seq, retained);
            }
        }
        for (app, orders) in by_app {
            let floor = self.stable_checkpoint(app).map_or(Seq(0), |(seq, _)| seq);
            let head = self.routed(app);
            if head <= floor {
                continue;
            }
            for (seq, retained) in orders.range(floor.next()..=head) {
                let before = Seq(seq.0 - 1);
                let after = retained.order.chained(retained.chain_before);
                self.check_restored_chain(app, before, retained.chain_before, head)?;
                self.check_restored_chain(app, *seq, after, head)?;
                self.record_chain(app, before, retained.chain_before);
                self.record_chain(app, *seq, after);
                self.retain(retained.order.clone(), retained.chain_before);
            }
        }
        // They are on disk already.
        self.newly_retained.clear();
        Ok(())
    }

    /// `chain` (from a persisted order) is the chain of `app` after `seq`: it must be what
    /// is known there already, if anything (the head's anchor, or a neighbour's value).
    fn check_restored_chain(
        &self,
        app: AppId,
        seq: Seq,
        chain: Digest,
        head: Seq,
    ) -> Result<(), OrderRestoreError> {
        match self.chain_at(app, seq) {
            Some(known) if known != chain && seq == head => {
                Err(OrderRestoreError::HeadChainMismatch {
                    app,
                    seq,
                    on_disk: chain,
                    certified: known,
                })
            }
            Some(known) if known != chain => Err(OrderRestoreError::ChainBreak {
                app,
                seq,
                on_disk: chain,
                known,
            }),
            _ => Ok(()),
        }
    }
}
