use super::*;
use zz_protocol::Digest;
use zz_protocol::messages::{ChainedOrders, FetchChainedOrders, NonDet};
use zz_protocol::validate::CHAINED_ORDERS_MAX;

/// The router as these tests drive it: what it judges stable is ordered at once (as if
/// f+1 agreement replicas voted alike and the certificate committed).
trait AgreeAtOnce {
    fn report(&mut self, from: ExecutionId, checkpoint: ExecutionCheckpoint) -> Vec<ExecutionId>;
    fn join(&mut self, from: ExecutionId, app: AppId) -> Vec<(ExecutionId, ExecutionCheckpoint)>;
}

impl AgreeAtOnce for OrderRouter {
    fn report(&mut self, from: ExecutionId, checkpoint: ExecutionCheckpoint) -> Vec<ExecutionId> {
        let vote = self.handle_checkpoint(from, checkpoint);
        let told = vote
            .map(|vote| self.agreed_stable(vote))
            .unwrap_or_default();
        told.into_iter().map(|(member, _)| member).collect()
    }

    fn join(&mut self, from: ExecutionId, app: AppId) -> Vec<(ExecutionId, ExecutionCheckpoint)> {
        let vote = self.handle_join(from, app);
        vote.map(|vote| self.agreed_stable(vote))
            .unwrap_or_default()
    }
}

/// A judgement is a vote: nothing is stable until the agreement orders it, and then
/// whatever this replica's own reports said.
#[test]
fn a_checkpoint_judged_stable_is_stable_only_once_ordered() {
    let mut router = router_that_routed(4);
    let checkpoint = |seq, root| ExecutionCheckpoint {
        app: AppId(0),
        seq: Seq(seq),
        root: Digest([root; 32]),
    };
    assert_eq!(
        router.handle_checkpoint(ExecutionId(0), checkpoint(2, 2)),
        None
    );
    let vote = router.handle_checkpoint(ExecutionId(1), checkpoint(2, 2));
    assert_eq!(vote, Some(checkpoint(2, 2)));
    assert_eq!(router.stable_checkpoint(AppId(0)), None);
    assert!(router.retains(AppId(0), Seq(1)));
    // The others agreed on checkpoint 4 (this replica saw no report of it): it is stable.
    let told = router.agreed_stable(checkpoint(4, 7));
    assert_eq!(
        router.stable_checkpoint(AppId(0)),
        Some((Seq(4), Digest([7; 32])))
    );
    assert_eq!(told.len(), 2, "both active members are told");
    assert!(!router.retains(AppId(0), Seq(4)));
    // An older agreement changes nothing.
    assert!(router.agreed_stable(checkpoint(2, 2)).is_empty());
    assert_eq!(
        router.stable_checkpoint(AppId(0)),
        Some((Seq(4), Digest([7; 32])))
    );
}

fn order(app: u32, seq: u64) -> AppOrder {
    AppOrder {
        app: AppId(app),
        seq: Seq(seq),
        agreement_seq: Seq(seq),
        nondet: NonDet::default(),
        requests: Vec::new(),
    }
}

#[test]
fn orders_go_to_their_group_and_are_resent_to_members_behind() {
    let groups = BTreeMap::from([(AppId(0), vec![ExecutionId(0), ExecutionId(1)])]);
    let mut router = OrderRouter::new(groups.clone(), groups, 2);
    assert!(router.route(order(7, 1)).is_empty(), "app 7 has no group");
    assert_eq!(router.route(order(0, 1)).len(), 2);
    assert_eq!(router.route(order(0, 2)).len(), 2);
    let executed = |seq| Executed {
        app: AppId(0),
        seq: Seq(seq),
        replies: Digest::default(),
    };
    router.handle_executed(ExecutionId(0), executed(2));
    // A report about another app's sequence is ignored.
    router.handle_executed(
        ExecutionId(1),
        Executed {
            app: AppId(9),
            ..executed(2)
        },
    );
    let resent = router.resend(Time(0), 1000);
    let to: Vec<(u32, u64)> = (resent.orders.iter())
        .map(|(e, o)| (e.0, o.seq.0))
        .collect();
    assert_eq!(to, vec![(1, 1), (1, 2)]);
    assert!(resent.stable_notices.is_empty(), "nothing is stable yet");
    assert!(
        router.resend(Time(999), 1000).orders.is_empty(),
        "rate limited"
    );
}

/// A Byzantine member's reports (absurd sequence numbers, floods of checkpoints) are
/// ignored or replace its own earlier ones; they never panic the agreement replica or
/// stop resends to the others.
#[test]
fn a_lying_member_cannot_crash_the_router_or_block_the_others() {
    let groups = BTreeMap::from([(AppId(0), vec![ExecutionId(0), ExecutionId(1)])]);
    let mut router = OrderRouter::new(groups.clone(), groups, 2);
    for seq in 1..=3 {
        router.route(order(0, seq));
    }
    let liar = ExecutionId(0);
    router.handle_executed(
        liar,
        Executed {
            app: AppId(0),
            seq: Seq(u64::MAX),
            replies: Digest::default(),
        },
    );
    for seq in (1..100).map(|i| i * 1000) {
        let checkpoint = ExecutionCheckpoint {
            app: AppId(0),
            seq: Seq(seq),
            root: Digest([1; 32]),
        };
        assert!(router.report(liar, checkpoint).is_empty());
    }
    let honest = ExecutionCheckpoint {
        app: AppId(0),
        seq: Seq(2),
        root: Digest([2; 32]),
    };
    assert!(router.report(ExecutionId(1), honest).is_empty());
    let resent = router.resend(Time(0), 1000);
    let to: Vec<(u32, u64)> = (resent.orders.iter())
        .map(|(e, o)| (e.0, o.seq.0))
        .collect();
    assert_eq!(
        to,
        vec![(0, 1), (0, 2), (0, 3), (1, 3)],
        "the liar still gets every retained order, the honest member (at 2) the rest"
    );
}

/// A router for app 0 with members e0 and e1 (both active), f+1 = 2.
fn router() -> OrderRouter {
    let groups = BTreeMap::from([(AppId(0), vec![ExecutionId(0), ExecutionId(1)])]);
    OrderRouter::new(groups.clone(), groups, 2)
}

/// A router that routed app 0's orders 1..=`up_to` itself.
fn router_that_routed(up_to: u64) -> OrderRouter {
    let mut router = router();
    for seq in 1..=up_to {
        router.route(order(0, seq));
    }
    router
}

/// Where app 0's orders stand at `router`: what a PBFT checkpoint taken there certifies,
/// had its stable execution checkpoint not been ordered yet.
fn head(router: &OrderRouter) -> AppHead {
    let seq = router.routed(AppId(0));
    AppHead {
        app: AppId(0),
        seq,
        chain: router.chain_at(AppId(0), seq).expect("kept"),
        stable: None,
    }
}

/// Both members report `root` at `seq`: the checkpoint becomes stable there.
fn make_stable_at(router: &mut OrderRouter, seq: u64, root: u8) {
    let checkpoint = ExecutionCheckpoint {
        app: AppId(0),
        seq: Seq(seq),
        root: Digest([root; 32]),
    };
    router.report(ExecutionId(0), checkpoint);
    router.report(ExecutionId(1), checkpoint);
    assert_eq!(
        router.stable_checkpoint(AppId(0)),
        Some((Seq(seq), Digest([root; 32])))
    );
}

/// Hand `asker`'s next request to `peer` and its answer back, until nothing is left to
/// ask this peer; returns how many answers went back.
fn recover_from(asker: &mut OrderRouter, peer_id: u32, peer: &OrderRouter) -> usize {
    let mut fetch = asker.next_fetch(AppId(0));
    let mut answers = 0;
    while let Some(next) = fetch {
        let answer = peer
            .chained_orders(next, usize::MAX)
            .expect("app 0 has a group");
        answers += 1;
        assert!(answers < 100, "recovery must end");
        fetch = asker.handle_chained_orders(ReplicaId(peer_id), &answer);
    }
    answers
}

/// The gap of issue 4: a replica that jumped past orders by PBFT state transfer must not
/// name the stable checkpoint to a joiner while it lacks orders after it (the joiner
/// would wait for them forever), and gets them back from one peer, checked against the
/// chain the PBFT checkpoint certified.
#[test]
fn after_a_state_transfer_the_router_recovers_the_skipped_orders_from_one_peer() {
    let peer = router_that_routed(6);
    let mut jumper = router_that_routed(2);
    assert_eq!(
        jumper.join_checkpoint(AppId(0)),
        Some((Seq(0), Digest::default()))
    );
    jumper.jumped_to(head(&peer));
    assert_eq!(
        jumper.routed(AppId(0)),
        Seq(6),
        "reports up to the jump are judged"
    );
    assert_eq!(jumper.highest_missing(AppId(0)), Some(Seq(6)));
    assert_eq!(
        jumper.join_checkpoint(AppId(0)),
        None,
        "orders 3..=6 are missing"
    );
    let fetches = jumper.poll_recovery(Time(0), 1000);
    assert_eq!(
        fetches,
        vec![FetchChainedOrders {
            app: AppId(0),
            up_to: Seq(6)
        }]
    );
    assert!(
        jumper.poll_recovery(Time(999), 1000).is_empty(),
        "rate limited"
    );
    assert_eq!(recover_from(&mut jumper, 1, &peer), 1);
    assert_eq!(jumper.retained_count(AppId(0)), 6);
    assert_eq!(
        jumper.join_checkpoint(AppId(0)),
        Some((Seq(0), Digest::default()))
    );
    // It routes on from the certified head, and serves what it recovered to others.
    jumper.route(order(0, 7));
    let mut other = router_that_routed(1);
    other.jumped_to(head(&jumper));
    recover_from(&mut other, 0, &jumper);
    assert!(other.holds_all_after_stable(AppId(0)));
}

/// A Byzantine peer's answer is kept only if it chains to the certified head: a changed
/// order, a made-up chain before it, or a gap in the sequence are dropped whole.
#[test]
fn forged_chained_orders_are_dropped_whole() {
    let peer = router_that_routed(4);
    let mut jumper = router();
    jumper.jumped_to(head(&peer));
    let fetch = jumper.next_fetch(AppId(0)).expect("all four are missing");
    let genuine = peer.chained_orders(fetch, usize::MAX).expect("answered");
    assert_eq!(genuine.orders.len(), 4);
    let mut changed = genuine.clone();
    changed.orders[1].nondet.seed ^= 1;
    let mut other_before = genuine.clone();
    other_before.chain_before = Digest([7; 32]);
    let mut gap = genuine.clone();
    gap.orders.remove(1);
    let mut other_app = genuine.clone();
    other_app.orders[0].app = AppId(5);
    // Sequence numbers that wrap past u64::MAX are not consecutive (nor a panic).
    let mut wrapped = genuine.clone();
    wrapped.orders[0].seq = Seq(u64::MAX);
    wrapped.orders[1].seq = Seq(0);
    for forged in [changed, other_before, gap, other_app, wrapped] {
        assert_eq!(jumper.handle_chained_orders(ReplicaId(3), &forged), None);
        assert_eq!(jumper.retained_count(AppId(0)), 0);
    }
    jumper.handle_chained_orders(ReplicaId(1), &genuine);
    assert_eq!(jumper.retained_count(AppId(0)), 4);
    assert!(jumper.holds_all_after_stable(AppId(0)));
}

/// A state transfer to a PBFT checkpoint that certifies the app's stable execution
/// checkpoint makes it stable here too: the jumper names it to joiners once it recovered
/// the orders after it.
#[test]
fn a_jump_takes_the_stable_checkpoint_the_pbft_checkpoint_certifies() {
    let mut peer = router_that_routed(6);
    make_stable_at(&mut peer, 4, 3);
    let mut jumper = router();
    let certified = AppHead {
        stable: peer.stable_checkpoint(AppId(0)),
        ..head(&peer)
    };
    jumper.jumped_to(certified);
    assert_eq!(
        jumper.stable_checkpoint(AppId(0)),
        Some((Seq(4), Digest([3; 32])))
    );
    assert_eq!(
        jumper.join_checkpoint(AppId(0)),
        None,
        "orders 5 and 6 are missing"
    );
    recover_from(&mut jumper, 1, &peer);
    assert_eq!(
        jumper.join_checkpoint(AppId(0)),
        Some((Seq(4), Digest([3; 32])))
    );
}

/// An idle app's certificate may be ordered in the range a state transfer skipped, with
/// none of its orders: the jump still takes the stable checkpoint.
#[test]
fn a_jump_past_no_order_still_takes_the_stable_checkpoint() {
    let mut peer = router_that_routed(4);
    make_stable_at(&mut peer, 4, 3);
    let mut jumper = router_that_routed(4);
    let certified = AppHead {
        stable: peer.stable_checkpoint(AppId(0)),
        ..head(&peer)
    };
    jumper.jumped_to(certified);
    assert_eq!(
        jumper.stable_checkpoint(AppId(0)),
        Some((Seq(4), Digest([3; 32])))
    );
}

/// A replica that restarted with an empty router knows neither the orders before its
/// PBFT checkpoint nor the app's stable execution checkpoint. It recovers the orders its
/// peers hold and adopts the checkpoint f+1 of them name alike; one peer's claim (it may
/// be Byzantine) is not enough.
#[test]
fn after_a_restart_the_router_adopts_the_checkpoint_f_plus_1_peers_name() {
    let mut peers = [router_that_routed(6), router_that_routed(6)];
    for peer in &mut peers {
        make_stable_at(peer, 4, 3);
    }
    let mut restarted = router();
    restarted.jumped_to(head(&peers[0]));
    assert_eq!(restarted.join_checkpoint(AppId(0)), None);
    recover_from(&mut restarted, 1, &peers[0]);
    assert_eq!(restarted.retained_count(AppId(0)), 2, "orders 5 and 6");
    assert_eq!(restarted.highest_missing(AppId(0)), Some(Seq(4)));
    assert_eq!(
        restarted.join_checkpoint(AppId(0)),
        None,
        "one claim is not enough"
    );
    let liar = ChainedOrders {
        app: AppId(0),
        chain_before: Digest::default(),
        orders: Vec::new(),
        stable: Some(ExecutionCheckpoint {
            app: AppId(0),
            seq: Seq(5),
            root: Digest([9; 32]),
        }),
    };
    restarted.handle_chained_orders(ReplicaId(3), &liar);
    assert_eq!(restarted.join_checkpoint(AppId(0)), None);
    recover_from(&mut restarted, 2, &peers[1]);
    assert_eq!(
        restarted.join_checkpoint(AppId(0)),
        Some((Seq(4), Digest([3; 32])))
    );
}

/// A restarted replica starts from the stable checkpoint it persisted, even one past its
/// PBFT checkpoint: it names it to joiners at once, keeps only the orders after it as it
/// orders again, and still checks its own orders against the chain.
#[test]
fn a_restarted_router_starts_from_its_persisted_stable_checkpoint() {
    let mut before_crash = router_that_routed(9);
    make_stable_at(&mut before_crash, 8, 4);
    let persisted = before_crash.take_newly_stable();
    assert_eq!(persisted.len(), 1, "persisted once, when it became stable");
    assert!(before_crash.take_newly_stable().is_empty());
    let pbft_checkpoint = head(&router_that_routed(6));
    let mut restarted = router();
    restarted.jumped_to(pbft_checkpoint);
    restarted.restore_stable(persisted[0]);
    assert!(
        restarted.take_newly_stable().is_empty(),
        "nothing new to persist"
    );
    assert_eq!(
        restarted.join_checkpoint(AppId(0)),
        Some((Seq(8), Digest([4; 32])))
    );
    for seq in 7..=9 {
        restarted.route(order(0, seq));
    }
    assert_eq!(restarted.retained_count(AppId(0)), 1, "only order 9");
    assert_eq!(restarted.stable_checkpoints(), persisted);
}

/// Answers stay bounded: at most [`CHAINED_ORDERS_MAX`] orders and the byte budget (but
/// at least one order), so a long gap is recovered over several answers.
#[test]
fn a_long_gap_is_recovered_over_bounded_answers() {
    let total = 3 * CHAINED_ORDERS_MAX as u64 + 5;
    let peer = router_that_routed(total);
    let mut jumper = router();
    jumper.jumped_to(head(&peer));
    let fetch = jumper.next_fetch(AppId(0)).expect("missing");
    assert_eq!(
        peer.chained_orders(fetch, 0)
            .expect("answered")
            .orders
            .len(),
        1
    );
    let full = peer.chained_orders(fetch, usize::MAX).expect("answered");
    assert_eq!(full.orders.len(), CHAINED_ORDERS_MAX);
    assert_eq!(recover_from(&mut jumper, 1, &peer), 4);
    assert_eq!(jumper.retained_count(AppId(0)), total as usize);
    assert!(jumper.holds_all_after_stable(AppId(0)));
}

#[test]
fn a_checkpoint_every_active_member_agrees_on_releases_the_orders_before_it() {
    let groups = BTreeMap::from([(AppId(0), vec![ExecutionId(0), ExecutionId(1)])]);
    let mut router = OrderRouter::new(groups.clone(), groups, 2);
    for seq in 1..=4 {
        router.route(order(0, seq));
    }
    let checkpoint = |seq, root: u8| ExecutionCheckpoint {
        app: AppId(0),
        seq: Seq(seq),
        root: Digest([root; 32]),
    };
    router.report(ExecutionId(0), checkpoint(2, 1));
    router.report(ExecutionId(1), checkpoint(2, 9));
    assert_eq!(router.stable_checkpoint(AppId(0)), None, "roots differ");
    assert_eq!(router.retained_count(AppId(0)), 4);
    router.report(ExecutionId(0), checkpoint(4, 5));
    router.report(ExecutionId(1), checkpoint(4, 5));
    assert_eq!(
        router.stable_checkpoint(AppId(0)),
        Some((Seq(4), Digest([5; 32])))
    );
    assert_eq!(router.retained_count(AppId(0)), 0);
}

/// A restarted router takes back the orders it persisted after its stable checkpoint, up
/// to the PBFT checkpoint's head (not beyond: those are ordered again), with their chain;
/// the ones not on disk (this replica never recovered them before it stopped) it still
/// recovers from a peer, checked against the chain the persisted ones give.
#[test]
fn a_restarted_router_takes_back_its_persisted_orders_and_recovers_the_rest() {
    let mut before_crash = router_that_routed(8);
    make_stable_at(&mut before_crash, 2, 3);
    let persisted: Vec<RetainedOrder> = before_crash.take_newly_retained();
    assert_eq!(persisted.len(), 8, "every order was retained when routed");
    let pbft_checkpoint = head(&router_that_routed(6));
    let stable = before_crash.take_newly_stable();

    let mut restarted = router();
    restarted.jumped_to(pbft_checkpoint);
    restarted.restore_stable(stable[0]);
    // Orders 3 and 4 never reached this replica's disk.
    let on_disk = persisted
        .iter()
        .filter(|retained| retained.order.seq.0 != 3 && retained.order.seq.0 != 4);
    restarted.restore_orders(on_disk.cloned()).unwrap();
    assert!(
        restarted.take_newly_retained().is_empty(),
        "on disk already"
    );
    assert_eq!(restarted.routed(AppId(0)), Seq(6), "up to the head only");
    assert!(restarted.retains(AppId(0), Seq(5)) && restarted.retains(AppId(0), Seq(6)));
    assert!(!restarted.retains(AppId(0), Seq(7)));
    assert_eq!(
        restarted.join_checkpoint(AppId(0)),
        None,
        "3 and 4 are missing"
    );
    assert_eq!(
        restarted.next_fetch(AppId(0)),
        Some(FetchChainedOrders {
            app: AppId(0),
            up_to: Seq(4)
        })
    );
    recover_from(&mut restarted, 2, &before_crash);
    assert_eq!(
        restarted.join_checkpoint(AppId(0)),
        Some((Seq(2), Digest([3; 32])))
    );
    let recovered: Vec<u64> = (restarted.take_newly_retained().iter())
        .map(|retained| retained.order.seq.0)
        .collect();
    assert_eq!(recovered, vec![3, 4], "recovered orders are persisted too");
    // Ordering goes on from the head, chained onto what came back from disk.
    restarted.route(order(0, 7));
    assert_eq!(head(&restarted), head(&router_that_routed(7)));
}

/// An order persisted at the head that does not chain to what the PBFT checkpoint
/// certifies is refused, naming the app and the sequence number.
#[test]
fn a_persisted_order_contradicting_the_certified_head_is_refused() {
    let mut before_crash = router_that_routed(4);
    let mut persisted = before_crash.take_newly_retained();
    persisted[3].order.agreement_seq = Seq(99);
    let mut restarted = router();
    restarted.jumped_to(head(&router_that_routed(4)));
    let error = restarted.restore_orders(persisted).unwrap_err();
    assert!(matches!(
        error,
        OrderRestoreError::HeadChainMismatch {
            app: AppId(0),
            seq: Seq(4),
            ..
        }
    ));
}

/// A woken member holds back no checkpoint once it asked to join: the checkpoint the
/// others reported alike becomes stable, and that is what it is told to start from. Left
/// to hold them back, agreement replicas that learned of the wake at different moments
/// would name different checkpoints, never f+1 alike.
#[test]
fn a_joining_member_does_not_hold_back_the_checkpoint_the_others_reported() {
    let members = vec![ExecutionId(0), ExecutionId(1), ExecutionId(2)];
    let groups = BTreeMap::from([(AppId(0), members.clone())]);
    let active = BTreeMap::from([(AppId(0), members[..2].to_vec())]);
    let mut router = OrderRouter::new(groups, active, 2);
    for seq in 1..=4 {
        router.route(order(0, seq));
    }
    let checkpoint = |seq| ExecutionCheckpoint {
        app: AppId(0),
        seq: Seq(seq),
        root: Digest([seq as u8; 32]),
    };
    for member in &members[..2] {
        router.report(*member, checkpoint(2));
    }
    assert_eq!(
        router.stable_checkpoint(AppId(0)),
        Some((Seq(2), Digest([2; 32])))
    );
    // The third member is woken: checkpoint 4 waits for it...
    router.handle_membership(AppId(0), 1, &members);
    for member in &members[..2] {
        router.report(*member, checkpoint(4));
    }
    assert_eq!(
        router.stable_checkpoint(AppId(0)),
        Some((Seq(2), Digest([2; 32])))
    );
    // ...until it asks to join. A member that is not active cannot ask for that.
    assert!(router.join(ExecutionId(9), AppId(0)).is_empty());
    let told = router.join(ExecutionId(2), AppId(0));
    assert_eq!(
        router.stable_checkpoint(AppId(0)),
        Some((Seq(4), Digest([4; 32])))
    );
    assert_eq!(
        router.join_checkpoint(AppId(0)),
        Some((Seq(4), Digest([4; 32])))
    );
    let told: Vec<ExecutionId> = told.into_iter().map(|(member, _)| member).collect();
    assert_eq!(told, members);
    // Once it reports a checkpoint it counts again: the next one waits for its root.
    for seq in 5..=6 {
        router.route(order(0, seq));
    }
    router.report(ExecutionId(2), checkpoint(5));
    for member in &members[..2] {
        router.report(*member, checkpoint(6));
    }
    assert_eq!(
        router.stable_checkpoint(AppId(0)),
        Some((Seq(4), Digest([4; 32])))
    );
    router.report(ExecutionId(2), checkpoint(6));
    assert_eq!(
        router.stable_checkpoint(AppId(0)),
        Some((Seq(6), Digest([6; 32])))
    );
}

/// A member left behind a stable checkpoint (the orders it lacks were dropped when the
/// others made it stable while it was joining) is told the checkpoint again at every
/// resend round; nothing else would bring it up once the app goes idle. Seed 3978 of `zz sim --f 1` stalled for good without this.
#[test]
fn a_member_behind_the_stable_checkpoint_is_told_it_again() {
    let members = vec![ExecutionId(0), ExecutionId(1), ExecutionId(2)];
    let groups = BTreeMap::from([(AppId(0), members.clone())]);
    let mut router = OrderRouter::new(groups.clone(), groups, 2);
    for seq in 1..=4 {
        router.route(order(0, seq));
    }
    let checkpoint = ExecutionCheckpoint {
        app: AppId(0),
        seq: Seq(4),
        root: Digest([4; 32]),
    };
    let executed = |seq| Executed {
        app: AppId(0),
        seq: Seq(seq),
        replies: Digest::default(),
    };
    router.handle_executed(ExecutionId(2), executed(3));
    assert!(router.join(ExecutionId(2), AppId(0)).is_empty());
    for member in &members[..2] {
        router.report(*member, checkpoint);
    }
    assert_eq!(
        router.stable_checkpoint(AppId(0)),
        Some((Seq(4), checkpoint.root))
    );
    let resent = router.resend(Time(0), 1000);
    assert!(resent.orders.is_empty(), "the orders up to 4 are gone");
    let everyone: Vec<_> = members.iter().map(|member| (*member, checkpoint)).collect();
    assert_eq!(resent.stable_notices, everyone);
    // Told again next round, and still once it reported reaching the checkpoint, as the
    // members past it are: one may have lost the notice, and keeps the checkpoint's
    // snapshot (which joiners fetch from) only once told.
    assert_eq!(router.resend(Time(1000), 1000).stable_notices, everyone);
    router.handle_executed(ExecutionId(2), executed(4));
    assert_eq!(router.resend(Time(2000), 1000).stable_notices, everyone);
}

/// A member's older checkpoint report, replayed after its newer one, does not replace it:
/// the newer checkpoint still becomes stable when the other member reports it.
#[test]
fn an_older_report_does_not_replace_a_members_newer_one() {
    let mut router = router_that_routed(4);
    let checkpoint = |seq| ExecutionCheckpoint {
        app: AppId(0),
        seq: Seq(seq),
        root: Digest([seq as u8; 32]),
    };
    router.report(ExecutionId(0), checkpoint(4));
    router.report(ExecutionId(0), checkpoint(2));
    router.report(ExecutionId(1), checkpoint(4));
    assert_eq!(
        router.stable_checkpoint(AppId(0)),
        Some((Seq(4), Digest([4; 32])))
    );
}
