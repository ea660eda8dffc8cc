//! Recovering per-app orders from peers. An agreement replica that jumped past a range of
//! an app's orders (PBFT state transfer) or forgot them (a restart empties the router)
//! cannot give them to a joining execution replica, which needs f+1 matching copies; if
//! f+1 correct agreement replicas lack them, the app stalls. So the replica asks its peers.
//!
//! It recovers from the top down. It knows the app's order chain at every point it jumped
//! to (certified by 2f+1 signatures with the PBFT checkpoint) and after every order it
//! holds, so for the highest missing sequence number `g` it knows the chain at `g`, and
//! asks for the orders ending there. An answer is consecutive orders with the chain before
//! the first; folding [`AppOrder::chained`] over them must give the chain at `g`, which a
//! forged order cannot (the hash is collision resistant). One correct peer holding the
//! orders is enough, and nothing a Byzantine one sends is kept.
//!
//! A replica that restarted no longer knows the app's stable execution checkpoint, so it
//! does not know where to stop. Peers add theirs to every answer; a checkpoint f+1 of them
//! name alike is one a correct replica saw stable, and it is adopted (within what this
//! replica routed). A replica lacking any order after its stable checkpoint names none to
//! joiners (`join_checkpoint`).

use super::{ORDERS_RETAINED_MAX, OrderRouter, RetainedOrder};
use zz_protocol::messages::{AppOrder, ChainedOrders, ExecutionCheckpoint, FetchChainedOrders};
use zz_protocol::validate::CHAINED_ORDERS_MAX;
use zz_protocol::{AppId, Digest, ReplicaId, Seq, Time};

impl OrderRouter {
    /// The highest sequence number of `app` after its stable checkpoint and up to what
    /// was routed whose order is not held here, if any.
    pub fn highest_missing(&self, app: AppId) -> Option<Seq> {
        let floor = self.stable_checkpoint(app).map_or(Seq(0), |(seq, _)| seq);
        let mut expected = self.routed(app);
        if expected <= floor {
            return None;
        }
        let routed = expected;
        let held = self.retained.get(&app);
        let mut below = held
            .into_iter()
            .flat_map(|retained| retained.range(Seq(floor.0 + 1)..=routed).rev());
        while expected > floor {
            match below.next() {
                Some((seq, _)) if *seq == expected => expected = Seq(expected.0 - 1),
                _ => return Some(expected),
            }
        }
        None
    }

    /// Whether every order of `app` after its stable checkpoint is held here.
    pub fn holds_all_after_stable(&self, app: AppId) -> bool {
        self.highest_missing(app).is_none()
    }

    /// What to ask every peer for, at most once per `interval_micros`: for each app this
    /// replica lacks orders of (and has room to keep them), the orders ending at the
    /// highest missing one.
    pub fn poll_recovery(&mut self, now: Time, interval_micros: u64) -> Vec<FetchChainedOrders> {
        if now < self.next_recovery_at {
            return Vec::new();
        }
        self.next_recovery_at = now.saturating_add_micros(interval_micros);
        let apps: Vec<AppId> = self.membership.apps().collect();
        apps.into_iter()
            .filter_map(|app| self.next_fetch(app))
            .collect()
    }

    pub(super) fn next_fetch(&self, app: AppId) -> Option<FetchChainedOrders> {
        if self.retained_count(app) >= ORDERS_RETAINED_MAX {
            // Full: what it recovered would push out what it holds.
            return None;
        }
        let up_to = self.highest_missing(app)?;
        // Known by construction: the order above a gap was routed or recovered here, or
        // the gap's top is a jump's anchor. Should the bound on chains have dropped it,
        // nothing can be checked, so nothing is asked.
        self.chain_at(app, up_to)?;
        Some(FetchChainedOrders { app, up_to })
    }

    /// A peer's request: the orders of `fetch.app` held here that end at `fetch.up_to`
    /// (as many consecutive ones as fit in `bytes_max`, at least one), with the chain
    /// before the first, and this replica's stable checkpoint. None for an app without
    /// execution replicas.
    pub fn chained_orders(
        &self,
        fetch: FetchChainedOrders,
        bytes_max: usize,
    ) -> Option<ChainedOrders> {
        let app = fetch.app;
        if !self.membership.has_group(app) {
            return None;
        }
        let stable = self
            .stable_checkpoint(app)
            .map(|(seq, root)| ExecutionCheckpoint { app, seq, root });
        let mut answer = ChainedOrders {
            app,
            chain_before: Digest::default(),
            orders: Vec::new(),
            stable,
        };
        let Some(retained) = self.retained.get(&app) else {
            return Some(answer);
        };
        let mut orders = Vec::new();
        let mut bytes = 0usize;
        let mut next = fetch.up_to;
        for (seq, RetainedOrder { order, .. }) in retained.range(..=fetch.up_to).rev() {
            if *seq != next || orders.len() >= CHAINED_ORDERS_MAX {
                break;
            }
            bytes += order_bytes(order);
            if bytes > bytes_max && !orders.is_empty() {
                break;
            }
            orders.push(order);
            next = Seq(seq.0.saturating_sub(1));
        }
        // Only as far down as the chain before the lowest is known.
        while let Some(lowest) = orders.last() {
            match self.chain_at(app, Seq(lowest.seq.0 - 1)) {
                Some(chain) => {
                    answer.chain_before = chain;
                    break;
                }
                None => {
                    orders.pop();
                }
            }
        }
        answer.orders = orders.into_iter().rev().cloned().collect();
        Some(answer)
    }

    /// A peer's answer. Its stable checkpoint counts toward adopting one; its orders are
    /// kept if they chain to a chain value known here, else dropped whole. Returns what to
    /// ask this peer for next when the answer filled part of a gap and some remains.
    pub fn handle_chained_orders(
        &mut self,
        from: ReplicaId,
        answer: &ChainedOrders,
    ) -> Option<FetchChainedOrders> {
        let app = answer.app;
        if !self.membership.has_group(app) {
            return None;
        }
        if let Some(stable) = answer.stable.filter(|stable| stable.app == app) {
            let claims = self.claims.entry(app).or_default();
            claims.insert(from, (stable.seq, stable.root));
            self.adopt_claimed_checkpoint(app);
        }
        let recovered = self.keep_if_chained(app, answer.chain_before, &answer.orders);
        if recovered {
            self.next_fetch(app)
        } else {
            None
        }
    }

    /// Keep `orders` (consecutive, of `app`) if folding their chain from `chain_before`
    /// gives the chain known here after the last of them. Returns whether any was new.
    fn keep_if_chained(&mut self, app: AppId, chain_before: Digest, orders: &[AppOrder]) -> bool {
        let (Some(first), Some(last)) = (orders.first(), orders.last()) else {
            return false;
        };
        // Checked: a Byzantine peer's orders may end at u64::MAX.
        let consecutive = orders.iter().enumerate().all(|(index, order)| {
            order.app == app && Some(order.seq.0) == first.seq.0.checked_add(index as u64)
        });
        if !consecutive || first.seq == Seq(0) {
            return false;
        }
        let Some(expected) = self.chain_at(app, last.seq) else {
            return false;
        };
        // The chain before and after each order.
        let mut chains = Vec::with_capacity(orders.len());
        let mut chain = chain_before;
        for order in orders {
            let before = chain;
            chain = order.chained(before);
            chains.push((before, chain));
        }
        if chain != expected {
            tracing::debug!(%app, seq = %last.seq, "dropped orders that do not chain");
            return false;
        }
        let floor = self.stable_checkpoint(app).map_or(Seq(0), |(seq, _)| seq);
        let before_first = Seq(first.seq.0 - 1);
        let mut recovered = false;
        if before_first >= floor {
            self.record_chain(app, before_first, chain_before);
        }
        for (order, (before, after)) in orders.iter().zip(chains) {
            let seq = order.seq;
            if seq <= floor || self.retains(app, seq) {
                continue;
            }
            if self.retained_count(app) >= ORDERS_RETAINED_MAX {
                break;
            }
            self.record_chain(app, seq, after);
            self.retain(order.clone(), before);
            recovered = true;
        }
        recovered
    }

    /// Adopt the latest checkpoint f+1 peers claim alike (a correct one saw it stable),
    /// if it is later than this replica's own and within what it routed.
    fn adopt_claimed_checkpoint(&mut self, app: AppId) {
        let Some(claims) = self.claims.get(&app) else {
            return;
        };
        let own = self.stable_checkpoint(app).map_or(Seq(0), |(seq, _)| seq);
        let routed = self.routed(app);
        let adopted = claims
            .values()
            .filter(|(seq, _)| *seq > own && *seq <= routed)
            .filter(|claim| {
                let alike = claims.values().filter(|other| other == claim).count();
                alike >= self.weak_quorum
            })
            .max_by_key(|(seq, _)| *seq)
            .copied();
        if let Some((seq, root)) = adopted {
            tracing::info!(%app, %seq, "adopted the stable checkpoint f+1 peers name");
            self.make_stable(app, seq, root);
        }
    }
}

/// About how many bytes `order` takes on the wire (requests dominate).
fn order_bytes(order: &AppOrder) -> usize {
    let requests: usize = (order.requests.iter())
        .map(|request| request.request.op.len() + 64 + 32 * request.auth.0.len())
        .sum();
    requests + 64
}
