//! What a violation report prints of the world as the run ended: one line per agreement
//! replica, per execution replica and per app's pool, and, for a stalled app, what the
//! agreement replicas lack that its execution replicas need.

use super::scenario;
use super::violation::OrderShortage;
use super::world::World;
use std::collections::BTreeMap;
use zz_protocol::{AppId, ExecutionId};

impl World {
    /// Why a stalled run's execution replica cannot go on, if the agreement replicas are
    /// the cause: an honest running one whose next order was routed, yet is retained by
    /// fewer than f+1 correct agreement replicas (so it can never get f+1 matching
    /// copies), or a joining one that fewer than f+1 of them name one checkpoint to.
    pub(crate) fn order_shortage(&self) -> Option<OrderShortage> {
        let f = self.scenario.params.f;
        let correct: Vec<_> = (self.replicas.iter())
            .filter(|sim| sim.byzantine.is_none())
            .filter_map(|sim| sim.driver.as_ref())
            .collect();
        for (index, sim) in self.executions.iter().enumerate() {
            let Some(driver) = sim.driver.as_ref().filter(|_| sim.running()) else {
                continue;
            };
            if driver.fault() != zz_cluster::Fault::Honest {
                continue;
            }
            if driver.is_joining() {
                // The same, seen at the join: no f+1 correct agreement replicas name one
                // checkpoint alike (they lack orders after theirs, or judged different ones
                // stable).
                let mut named: BTreeMap<_, usize> = BTreeMap::new();
                for d in &correct {
                    if let Some(checkpoint) = d.orders().join_checkpoint(sim.app) {
                        *named.entry(checkpoint).or_default() += 1;
                    }
                }
                let most = named.values().copied().max().unwrap_or(0);
                if most <= f {
                    return Some(OrderShortage::CannotJoin {
                        execution: ExecutionId(index as u32),
                        app: sim.app,
                        most,
                    });
                }
                continue;
            }
            let next = driver.replica().last_executed().next();
            let routed = correct.iter().map(|d| d.orders().routed(sim.app)).max();
            if routed.is_none_or(|routed| next > routed) {
                continue;
            }
            let holders = (correct.iter())
                .filter(|d| d.orders().retains(sim.app, next))
                .count();
            if holders <= f {
                return Some(OrderShortage::OrderNotRetained {
                    execution: ExecutionId(index as u32),
                    app: sim.app,
                    seq: next,
                    holders,
                });
            }
        }
        None
    }

    /// One line per replica, for violation reports.
    pub(crate) fn describe_replicas(&self) -> String {
        let mut lines = Vec::new();
        for (index, sim) in self.replicas.iter().enumerate() {
            let role = if sim.byzantine.is_some() {
                "byzantine"
            } else {
                "correct"
            };
            let line = match &sim.driver {
                None => format!("  r{index} ({role}): down"),
                Some(driver) => {
                    let replica = driver.replica();
                    let orders: Vec<String> = (0..scenario::APP_COUNT)
                        .map(AppId)
                        .map(|app| {
                            let router = driver.orders();
                            format!(
                                "{app} routed {} stable {:?} missing {:?} retained {}",
                                router.routed(app),
                                router.stable_checkpoint(app).map(|(seq, _)| seq),
                                router.highest_missing(app),
                                router.retained_count(app),
                            )
                        })
                        .collect();
                    format!(
                        "  r{index} ({role}): {} {}, executed {}, stable {}, orders [{}], waiting {}, dropped {:?}, rejected {:?}",
                        replica.view(),
                        if replica.is_normal() {
                            "normal"
                        } else {
                            "changing"
                        },
                        replica.last_executed(),
                        replica.stable_seq(),
                        orders.join("; "),
                        replica.waiting_count(),
                        replica.counters().dropped,
                        driver.counters().rejected,
                    )
                }
            };
            lines.push(line);
        }
        lines.join("\n")
    }

    /// One line per execution replica and per app's pool, for violation reports.
    pub(crate) fn describe_executions(&self) -> String {
        let mut lines = Vec::new();
        for (index, sim) in self.executions.iter().enumerate() {
            let run = match (&sim.driver, sim.crashed, sim.paused) {
                (None, _, _) => "destroyed",
                (Some(_), true, _) => "crashed",
                (Some(_), false, true) => "paused",
                (Some(_), false, false) => "running",
            };
            let line = match &sim.driver {
                None => format!("  e{index} ({}): {run}", sim.app),
                Some(driver) => format!(
                    "  e{index} ({}): {run}, {}, instance {}, executed {}, joining {}, missing buckets {}, pinned {:?}, stable {:?}, snapshots {:?}, dropped {:?}, rejected {:?}",
                    sim.app,
                    driver.fault().name(),
                    sim.instance,
                    driver.replica().last_executed(),
                    driver.is_joining(),
                    driver.replica().store().missing_count(),
                    driver.replica().store().pin().map(|(seq, _)| seq),
                    driver.replica().store().latest_stable(),
                    driver.replica().store().snapshot_seqs().collect::<Vec<_>>(),
                    driver.replica().counters().dropped,
                    driver.counters().rejected,
                ),
            };
            lines.push(line);
        }
        for (app, pool) in self.activator.driver.policy().status() {
            let members: Vec<String> = (pool.members.iter())
                .map(|member| format!("{}:{:?}", member.id, member.state))
                .collect();
            lines.push(format!(
                "  activator {app}: epoch {}, {members:?}",
                pool.epoch
            ));
        }
        lines.extend(
            self.activator
                .driver
                .policy()
                .events()
                .map(|(at, event)| format!("  activator at {} ms: {event}", at.as_millis())),
        );
        lines.join("\n")
    }
}
