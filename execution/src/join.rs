//! Joining, sans-IO: a woken replica asks every agreement replica for its app's stable
//! execution checkpoint and restarts from the latest one f+1 of them name alike (so a
//! correct one vouches for it). It chooses once 2f+1 answered, or, since some agreement
//! replicas may never answer (down or Byzantine), once [`JOIN_RETRY_MICROS`] passed with
//! f+1 alike; until then `Join` goes out again every [`JOIN_RETRY_MICROS`].

use std::collections::BTreeMap;
use zz_protocol::{Digest, ProtocolParams, ReplicaId, Seq, Time};

/// How long a joining replica waits before it asks again, and before it settles for
/// fewer than 2f+1 answers.
pub const JOIN_RETRY_MICROS: u64 = 200_000;

/// A join in progress. See the module documentation.
#[derive(Clone, Debug)]
pub struct Joining {
    /// The stable checkpoint each agreement replica named.
    answers: BTreeMap<ReplicaId, (Seq, Digest)>,
    started_at: Time,
    sent_at: Time,
}

/// What a joining replica does next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JoinStep {
    /// Keep waiting.
    Wait,
    /// Send `Join` to every agreement replica again.
    AskAgain,
    /// Restart from this checkpoint: the join is over.
    StartFrom(Seq, Digest),
}

impl Joining {
    /// A join whose first `Join` goes out at `now`.
    pub fn new(now: Time) -> Joining {
        Joining {
            answers: BTreeMap::new(),
            started_at: now,
            sent_at: now,
        }
    }

    /// Agreement replica `from` names `(seq, root)` at `now`. Once 2f+1 answered, or
    /// the retry interval passed, the latest checkpoint f+1 name alike, if any.
    pub fn handle_answer(
        &mut self,
        params: &ProtocolParams,
        now: Time,
        from: ReplicaId,
        (seq, root): (Seq, Digest),
    ) -> Option<(Seq, Digest)> {
        self.answers.insert(from, (seq, root));
        let answers_wanted = params.replica_count() - params.f;
        let settling = now.saturating_sub(self.started_at) >= JOIN_RETRY_MICROS;
        (self.answers.len() >= answers_wanted || settling)
            .then(|| self.agreed(params.weak_quorum()))
            .flatten()
    }

    /// At a timeout: settle for f+1 alike after the retry interval, or ask again.
    pub fn handle_timeout(&mut self, params: &ProtocolParams, now: Time) -> JoinStep {
        if now.saturating_sub(self.started_at) >= JOIN_RETRY_MICROS
            && let Some((seq, root)) = self.agreed(params.weak_quorum())
        {
            return JoinStep::StartFrom(seq, root);
        }
        if now.saturating_sub(self.sent_at) >= JOIN_RETRY_MICROS {
            self.sent_at = now;
            return JoinStep::AskAgain;
        }
        JoinStep::Wait
    }

    /// When [`Joining::handle_timeout`] has something to do.
    pub fn poll_timeout(&self) -> Time {
        let settle = self.started_at.saturating_add_micros(JOIN_RETRY_MICROS);
        let resend = self.sent_at.saturating_add_micros(JOIN_RETRY_MICROS);
        // Past the settling time only resends remain to wait for.
        match self.sent_at >= settle {
            true => resend,
            false => settle.min(resend),
        }
    }

    /// The latest checkpoint that `weak_quorum` replicas named alike. The latest, not the
    /// first to reach f+1: a replica that restarted or jumped by state transfer may name
    /// an older one, whose following orders the others no longer keep.
    fn agreed(&self, weak_quorum: usize) -> Option<(Seq, Digest)> {
        let answers = &self.answers;
        (answers.values())
            .filter(|answer| {
                answers.values().filter(|other| other == answer).count() >= weak_quorum
            })
            .max_by_key(|(seq, _)| *seq)
            .copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> ProtocolParams {
        ProtocolParams::default()
    }

    #[test]
    fn two_f_plus_one_answers_choose_the_latest_checkpoint_f_plus_one_name_alike() {
        let params = params();
        let mut join = Joining::new(Time(0));
        let root = Digest([1; 32]);
        assert_eq!(
            join.handle_answer(&params, Time(1), ReplicaId(0), (Seq(0), Digest::default())),
            None
        );
        assert_eq!(
            join.handle_answer(&params, Time(1), ReplicaId(1), (Seq(8), root)),
            None
        );
        assert_eq!(
            join.handle_answer(&params, Time(1), ReplicaId(2), (Seq(8), root)),
            Some((Seq(8), root))
        );
    }

    #[test]
    fn fewer_answers_settle_after_the_retry_interval_and_join_is_asked_again_meanwhile() {
        let params = params();
        let mut join = Joining::new(Time(0));
        let zero = (Seq(0), Digest::default());
        join.handle_answer(&params, Time(0), ReplicaId(0), zero);
        assert_eq!(join.handle_timeout(&params, Time(1)), JoinStep::Wait);
        assert_eq!(join.poll_timeout(), Time(JOIN_RETRY_MICROS));
        assert_eq!(
            join.handle_timeout(&params, Time(JOIN_RETRY_MICROS)),
            JoinStep::AskAgain,
            "one answer is not f+1"
        );
        join.handle_answer(&params, Time(1), ReplicaId(1), zero);
        assert_eq!(
            join.handle_timeout(&params, Time(JOIN_RETRY_MICROS + 1)),
            JoinStep::StartFrom(Seq(0), Digest::default())
        );
    }

    /// Past the retry interval, an answer that makes f+1 alike settles at once, without
    /// waiting for the next resend.
    #[test]
    fn an_answer_after_the_retry_interval_settles_at_once() {
        let params = params();
        let mut join = Joining::new(Time(0));
        let zero = (Seq(0), Digest::default());
        join.handle_answer(&params, Time(0), ReplicaId(0), zero);
        assert_eq!(
            join.handle_timeout(&params, Time(JOIN_RETRY_MICROS)),
            JoinStep::AskAgain
        );
        let late = Time(JOIN_RETRY_MICROS + 5);
        assert_eq!(
            join.handle_answer(&params, late, ReplicaId(1), zero),
            Some(zero)
        );
    }
}
