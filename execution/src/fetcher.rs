//! Bucket-fetch scheduling, sans-IO: which buckets to ask for, of which peer, and when to
//! ask again. The driver tells it what the store misses and what execution waits on, and
//! sends the asks it returns; answers come back as [`BucketFetcher::installed`] or
//! [`BucketFetcher::refused`]. Time comes in as an argument.
//!
//! Rules:
//! - buckets execution waits on are asked for at once, on top of the in-flight cap;
//! - background asks keep at most [`BACKGROUND_FETCHES_MAX`] in flight
//!   ([`EAGER_FETCHES_MAX`] for a replica that serves nothing until its state is whole);
//! - an ask unanswered for [`FETCH_RETRY_MICROS`] goes to another peer, and the silent
//!   peer counts a miss; a wrong answer from the peer asked counts a miss and the bucket
//!   is asked of another peer [`REFUSED_REASK_MICROS`] later, not at once (two bad
//!   answerers must not keep each other busy); an answer from a peer not asked changes
//!   nothing, so no replica can put off an ask it was not sent;
//! - each ask goes to a peer with the fewest misses, spread by bucket among equals, and
//!   never to the peer asked last time for that bucket (unless it is the only one).

use std::collections::BTreeMap;
use zz_protocol::{ExecutionId, Time};
use zz_state_fetch::BucketIndex;

/// How long a bucket fetch waits for an answer before another peer is asked.
pub const FETCH_RETRY_MICROS: u64 = 200_000;
/// Background fetches in flight at most: few, so that the replicas serving them, and this
/// one, keep executing at full speed while the state is completed. Buckets execution
/// waits on are asked for at once on top (the core parks on one at a time).
pub const BACKGROUND_FETCHES_MAX: usize = 4;
/// Fetches in flight at most for a replica that executes nothing until the state is whole
/// (eager fetch): every bucket is one it waits on.
pub const EAGER_FETCHES_MAX: usize = 16;
/// How long after a wrong answer its bucket is asked again (of another peer): the next
/// round, not at once, so that two bad answerers do not keep each other busy.
pub const REFUSED_REASK_MICROS: u64 = 10_000;
/// Misses counted per peer at most (a peer back from a pause starts over soon enough).
const PEER_MISSES_MAX: u32 = 64;

/// One bucket asked for and not installed yet.
#[derive(Clone, Copy, Debug)]
struct Fetch {
    /// Asks so far: which peer is next.
    asks: usize,
    /// When it is asked again, of another peer.
    due_at: Time,
    peer: ExecutionId,
    /// The peer answered wrongly (its miss is counted already).
    refused: bool,
}

/// See the module documentation.
#[derive(Clone, Debug, Default)]
pub struct BucketFetcher {
    /// The app's other execution replicas: where buckets are fetched from.
    peers: Vec<ExecutionId>,
    fetches: BTreeMap<BucketIndex, Fetch>,
    /// Per peer, asks in a row it left unanswered or answered wrongly.
    peer_misses: BTreeMap<ExecutionId, u32>,
}

/// What the store needs, as the fetcher sees it on one call.
pub struct Wanted<'a, I> {
    /// Buckets execution is parked on, asked for at once.
    pub waited_on: &'a [BucketIndex],
    /// Every bucket the store still misses, in the order to fetch them.
    pub missing: I,
    /// Serve nothing until the state is whole: a larger pipeline.
    pub eager: bool,
}

impl BucketFetcher {
    pub fn new(peers: Vec<ExecutionId>) -> BucketFetcher {
        BucketFetcher {
            peers,
            ..BucketFetcher::default()
        }
    }

    /// Whether there is anyone to fetch from.
    pub fn has_peers(&self) -> bool {
        !self.peers.is_empty()
    }

    /// Buckets asked for and not installed yet.
    pub fn in_flight(&self) -> usize {
        self.fetches.len()
    }

    /// Forget every ask (the state is whole, or the replica starts over elsewhere).
    pub fn clear(&mut self) {
        self.fetches.clear();
    }

    /// The asks to send now, as (peer, bucket): buckets waited on that are not in flight,
    /// background buckets up to the cap, and asks due again (unanswered for
    /// [`FETCH_RETRY_MICROS`], or answered wrongly [`REFUSED_REASK_MICROS`] ago) to
    /// another peer.
    pub fn poll_asks<I: Iterator<Item = BucketIndex>>(
        &mut self,
        now: Time,
        wanted: Wanted<'_, I>,
    ) -> Vec<(ExecutionId, BucketIndex)> {
        if self.peers.is_empty() {
            return Vec::new();
        }
        let in_flight_max = match wanted.eager {
            true => EAGER_FETCHES_MAX,
            false => BACKGROUND_FETCHES_MAX,
        };
        let room = in_flight_max.saturating_sub(self.fetches.len());
        let background: Vec<BucketIndex> = (wanted.missing)
            .filter(|bucket| {
                !self.fetches.contains_key(bucket) && !wanted.waited_on.contains(bucket)
            })
            .take(room)
            .collect();
        let mut asks = Vec::new();
        let fresh = (wanted.waited_on.iter().copied()).filter(|b| !self.fetches.contains_key(b));
        for bucket in fresh.collect::<Vec<_>>().into_iter().chain(background) {
            asks.push(self.ask(now, bucket));
        }
        let due: Vec<(BucketIndex, Fetch)> = (self.fetches.iter())
            .filter(|(_, fetch)| now >= fetch.due_at)
            .map(|(bucket, fetch)| (*bucket, *fetch))
            .collect();
        for (bucket, fetch) in due {
            if !fetch.refused {
                self.missed(fetch.peer);
            }
            asks.push(self.ask(now, bucket));
        }
        asks
    }

    /// When the next ask in flight is due again, if any.
    pub fn poll_timeout(&self) -> Option<Time> {
        self.fetches.values().map(|fetch| fetch.due_at).min()
    }

    /// `from` answered `bucket` with a proof that held (or it was already installed).
    pub fn installed(&mut self, bucket: BucketIndex, from: ExecutionId) {
        self.fetches.remove(&bucket);
        self.peer_misses.remove(&from);
    }

    /// `from` answered `bucket` wrongly at `now`: if it was the peer asked, ask another
    /// one [`REFUSED_REASK_MICROS`] later (never later than the ask was due anyway).
    pub fn refused(&mut self, now: Time, bucket: BucketIndex, from: ExecutionId) {
        let Some(fetch) = self.fetches.get_mut(&bucket) else {
            return;
        };
        if fetch.peer != from || fetch.refused {
            return;
        }
        let reask_at = now.saturating_add_micros(REFUSED_REASK_MICROS);
        fetch.due_at = fetch.due_at.min(reask_at);
        fetch.refused = true;
        self.missed(from);
    }

    /// `bucket` is installed already (an answer to an earlier ask came first): forget the
    /// ask, crediting no peer, since nothing was verified.
    pub fn forget(&mut self, bucket: BucketIndex) {
        self.fetches.remove(&bucket);
    }

    fn missed(&mut self, peer: ExecutionId) {
        let misses = self.peer_misses.entry(peer).or_default();
        *misses = (*misses + 1).min(PEER_MISSES_MAX);
    }

    /// Pick the peer for `bucket`: one with the fewest misses, spread by bucket among
    /// equals, not the one asked last time for this bucket.
    fn ask(&mut self, now: Time, bucket: BucketIndex) -> (ExecutionId, BucketIndex) {
        let previous = self.fetches.get(&bucket).copied();
        let asks = previous.map_or(0, |fetch| fetch.asks);
        let count = self.peers.len();
        let peer = (0..count)
            .map(|offset| self.peers[(bucket.index() + asks + offset) % count])
            .filter(|peer| count == 1 || previous.is_none_or(|fetch| fetch.peer != *peer))
            .min_by_key(|peer| self.peer_misses.get(peer).copied().unwrap_or(0))
            .expect("asks are made only with peers");
        let fetch = Fetch {
            asks: asks + 1,
            due_at: now.saturating_add_micros(FETCH_RETRY_MICROS),
            peer,
            refused: false,
        };
        self.fetches.insert(bucket, fetch);
        (peer, bucket)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: ExecutionId = ExecutionId(1);
    const B: ExecutionId = ExecutionId(2);

    fn buckets(range: std::ops::Range<u32>) -> impl Iterator<Item = BucketIndex> {
        range.map(BucketIndex)
    }

    fn poll(
        fetcher: &mut BucketFetcher,
        now: u64,
        waited_on: &[BucketIndex],
        missing: std::ops::Range<u32>,
    ) -> Vec<(ExecutionId, BucketIndex)> {
        let wanted = Wanted {
            waited_on,
            missing: buckets(missing),
            eager: false,
        };
        fetcher.poll_asks(Time(now), wanted)
    }

    #[test]
    fn background_asks_stop_at_the_cap_and_waited_on_buckets_go_on_top() {
        let mut fetcher = BucketFetcher::new(vec![A, B]);
        let asks = poll(&mut fetcher, 0, &[], 0..100);
        assert_eq!(asks.len(), BACKGROUND_FETCHES_MAX);
        assert!(
            poll(&mut fetcher, 1, &[], 0..100).is_empty(),
            "the pipeline is full"
        );
        let waited = [BucketIndex(50)];
        let asks = poll(&mut fetcher, 2, &waited, 0..100);
        assert_eq!(asks.len(), 1);
        assert_eq!(asks[0].1, BucketIndex(50));
        assert_eq!(fetcher.in_flight(), BACKGROUND_FETCHES_MAX + 1);
    }

    #[test]
    fn asks_spread_over_peers_and_an_unanswered_one_goes_to_the_other_peer() {
        let mut fetcher = BucketFetcher::new(vec![A, B]);
        let asks = poll(&mut fetcher, 0, &[], 0..4);
        assert!(asks.iter().any(|(peer, _)| *peer == A));
        assert!(asks.iter().any(|(peer, _)| *peer == B));
        assert!(poll(&mut fetcher, FETCH_RETRY_MICROS - 1, &[], 0..4).is_empty());
        assert_eq!(fetcher.poll_timeout(), Some(Time(FETCH_RETRY_MICROS)));
        let again = poll(&mut fetcher, FETCH_RETRY_MICROS, &[], 0..4);
        assert_eq!(again.len(), 4);
        for (peer, bucket) in again {
            let first = asks
                .iter()
                .find(|(_, b)| *b == bucket)
                .expect("asked before")
                .0;
            assert_ne!(peer, first, "{bucket:?} goes to the other peer");
        }
    }

    #[test]
    fn a_peer_that_misses_gets_no_more_asks_while_another_answers() {
        let mut fetcher = BucketFetcher::new(vec![A, B]);
        for (peer, bucket) in poll(&mut fetcher, 0, &[], 0..4) {
            match peer {
                A => fetcher.refused(Time(0), bucket, A),
                _ => fetcher.installed(bucket, B),
            }
        }
        assert!(poll(&mut fetcher, 1, &[], 0..0).is_empty(), "not at once");
        // The refused ones are due again at the next round, and go to B.
        let asks = poll(&mut fetcher, REFUSED_REASK_MICROS, &[], 4..6);
        assert!(asks.iter().all(|(peer, _)| *peer == B), "{asks:?}");
    }

    /// A replica that was not asked cannot put an ask off by answering wrongly, and the
    /// peer asked cannot put it off past its due time.
    #[test]
    fn wrong_answers_never_postpone_an_ask() {
        let mut fetcher = BucketFetcher::new(vec![A, B]);
        let (peer, bucket) = poll(&mut fetcher, 0, &[], 0..1)[0];
        let other = if peer == A { B } else { A };
        for now in (0..FETCH_RETRY_MICROS).step_by(5_000) {
            fetcher.refused(Time(now), bucket, other);
            fetcher.refused(Time(now), bucket, ExecutionId(9));
        }
        assert_eq!(fetcher.poll_timeout(), Some(Time(FETCH_RETRY_MICROS)));
        fetcher.refused(Time(FETCH_RETRY_MICROS - 1), bucket, peer);
        fetcher.refused(Time(FETCH_RETRY_MICROS - 1), bucket, peer);
        assert_eq!(fetcher.poll_timeout(), Some(Time(FETCH_RETRY_MICROS)));
        let again = poll(&mut fetcher, FETCH_RETRY_MICROS, &[], 0..1);
        assert_eq!(again, vec![(other, bucket)]);
    }

    #[test]
    fn a_single_peer_is_asked_again_and_installs_clear_the_ask() {
        let mut fetcher = BucketFetcher::new(vec![A]);
        let asks = poll(&mut fetcher, 0, &[], 0..1);
        assert_eq!(asks, vec![(A, BucketIndex(0))]);
        assert_eq!(poll(&mut fetcher, FETCH_RETRY_MICROS, &[], 0..1), asks);
        fetcher.installed(BucketIndex(0), A);
        assert_eq!(fetcher.in_flight(), 0);
        assert_eq!(fetcher.poll_timeout(), None);
        assert!(
            BucketFetcher::new(vec![])
                .poll_asks(
                    Time(0),
                    Wanted {
                        waited_on: &[BucketIndex(0)],
                        missing: buckets(0..1),
                        eager: true,
                    }
                )
                .is_empty()
        );
    }
}
