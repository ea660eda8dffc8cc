//! Divergence detection, in each agreement replica: it compares what the execution
//! replicas of each app report (`Executed` reply digests per sequence number, state roots
//! per checkpoint) and raises alarms for the activator.
//!
//! - `Wake` when the active replicas disagree, when one stays silent past the timeout, or
//!   when a client retransmits a request that was already ordered (it did not get f+1
//!   matching replies). One wake per membership epoch, resent until the epoch changes.
//! - `Faulty` for a replica whose digest or root differs from one f+1 replicas agree on,
//!   or that stayed silent past the timeout while f+1 others agreed. Resent until the
//!   membership changes.
//!
//! Sans-IO: time comes in with every call, and so does the [`MembershipTable`] the order
//! router owns (who is active, in which epoch); alarms leave through
//! [`Detector::take_alarms`].
//! Nothing here decides what is correct for a client or a woken replica (they count f+1
//! matching replicas themselves); a wrong alarm costs resources, never safety, and the
//! activator acts only on f+1 matching alarms.

use super::membership::MembershipTable;
use std::collections::{BTreeMap, BTreeSet};
use zz_protocol::messages::{FaultReason, Faulty, Wake, WakeReason};
use zz_protocol::{AppId, ClientId, Digest, ExecutionId, Seq, Time};

/// Sequence numbers (or checkpoints) watched per app at most; older ones are forgotten.
pub const WATCHED_MAX: usize = 1024;
/// How far past its own routed sequence number a replica keeps reports: an agreement
/// replica that lags behind the execution replicas must not lose their one report about
/// a sequence number (and later call them silent), while a liar's reports from far
/// ahead are still ignored.
pub const REPORTS_AHEAD_MAX: u64 = 256;
pub use zz_protocol::params::NEWCOMER_GRACE_TIMEOUTS;

const _: () = assert!(REPORTS_AHEAD_MAX as usize <= WATCHED_MAX);

/// Settings of a detector.
#[derive(Clone, Copy, Debug)]
pub struct DetectorConfig {
    /// Execution replicas that must agree: f+1.
    pub weak_quorum: usize,
    /// How long an active replica may stay silent about a sequence number others reported.
    pub silence_micros: u64,
    /// How often an alarm still standing is sent again.
    pub resend_micros: u64,
}

/// An alarm for the activator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Alarm {
    Wake(Wake),
    Faulty(Faulty),
}

/// Reports about one sequence number (or one checkpoint) of one app.
#[derive(Default)]
struct Reports {
    /// When the first report arrived.
    first_at: Time,
    /// When f+1 reports first matched.
    agreed_at: Option<Time>,
    by_member: BTreeMap<ExecutionId, Digest>,
}

impl Reports {
    /// The digest at least `quorum` members reported alike.
    fn agreed(&self, quorum: usize) -> Option<Digest> {
        let mut counts: BTreeMap<Digest, usize> = BTreeMap::new();
        for digest in self.by_member.values() {
            *counts.entry(*digest).or_default() += 1;
        }
        counts
            .into_iter()
            .find(|(_, count)| *count >= quorum)
            .map(|(digest, _)| digest)
    }
}

/// Reports per sequence number of one kind, and the highest one settled (every active
/// member reported alike): a report at or below it with no entry is a late echo (a woken
/// replica replaying) and is not judged.
#[derive(Default)]
struct Table {
    reports: BTreeMap<Seq, Reports>,
    settled: Seq,
}

/// What the detector tracks of one app, besides its membership.
#[derive(Default)]
struct AppWatch {
    /// When the current membership took effect: silence counts from then at the earliest.
    active_since: Time,
    /// The highest sequence number each active member reported (a replies digest or a
    /// root) since it became active. Execution is gap-free, so a member that reported a
    /// later one executed every earlier one: a lost report, or a woken replica that
    /// started from a later stable checkpoint, is not silence.
    reported_up_to: BTreeMap<ExecutionId, Seq>,
    /// Members that became active with the current membership (woken, still joining).
    newcomers: BTreeSet<ExecutionId>,
    executed: Table,
    roots: Table,
    /// The wake sent for the current epoch, and when it was last sent.
    wake: Option<(Wake, Time)>,
    /// Faulty reports for the current epoch, and when each was last sent.
    faulty: BTreeMap<ExecutionId, (Faulty, Time)>,
}

impl AppWatch {
    /// Every active member reported the wake's sequence number alike (or later ones).
    fn resolved(&self, wake: &Wake) -> bool {
        let table = match wake.reason {
            WakeReason::RootsDiffer => &self.roots,
            _ => &self.executed,
        };
        wake.seq <= table.settled && !table.reports.contains_key(&wake.seq)
    }

    fn table_mut(&mut self, kind: Kind) -> &mut Table {
        match kind {
            Kind::Replies => &mut self.executed,
            Kind::Roots => &mut self.roots,
        }
    }
}

/// See the module documentation.
pub struct Detector {
    config: DetectorConfig,
    apps: BTreeMap<AppId, AppWatch>,
    alarms: Vec<Alarm>,
    /// When each client's retransmission last asked for standbys (within the last
    /// [`CLIENT_WAKE_INTERVALS`] resend intervals): one client wakes an app at most once
    /// per that span, however often it retransmits.
    client_wakes: BTreeMap<ClientId, Time>,
}

/// Resend intervals (the view-change timeout) between two wakes one client's
/// retransmissions may cause.
pub const CLIENT_WAKE_INTERVALS: u64 = 10;
/// Clients whose last wake is remembered, at most (the oldest are forgotten first).
pub const CLIENT_WAKES_KEPT_MAX: usize = 65_536;

impl Detector {
    /// A detector for the apps of `membership` (every app with execution replicas).
    pub fn new(config: DetectorConfig, membership: &MembershipTable) -> Detector {
        assert!(config.weak_quorum >= 1);
        let apps = membership
            .apps()
            .map(|app| (app, AppWatch::default()))
            .collect();
        Detector {
            config,
            apps,
            alarms: Vec::new(),
            client_wakes: BTreeMap::new(),
        }
    }

    /// The activator's word on who is active changed `membership` for `app` (a newer
    /// epoch); `previously_active` were the active members before it.
    pub fn handle_membership_change(
        &mut self,
        now: Time,
        app: AppId,
        previously_active: &BTreeSet<ExecutionId>,
        membership: &MembershipTable,
    ) {
        let Some(watch) = self.apps.get_mut(&app) else {
            return;
        };
        let active = membership.active(app);
        // A member that was not active, or was replaced by a fresh instance, starts over:
        // what it reported before tells nothing of where it is now.
        watch.newcomers = active.difference(previously_active).copied().collect();
        (watch.reported_up_to)
            .retain(|member, _| previously_active.contains(member) && active.contains(member));
        watch.active_since = now;
        watch.wake = None;
        watch.faulty.clear();
        // Judge the current members afresh: old reports of removed members do not count
        // against anyone, and a silent newcomer gets its full timeout.
        let tables = [&mut watch.executed, &mut watch.roots];
        for reports in tables
            .into_iter()
            .flat_map(|table| table.reports.values_mut())
        {
            reports.agreed_at = reports.agreed_at.map(|at| at.max(now));
        }
    }

    /// An `Executed` report from `from` about `seq` of `app`; `routed` is the app's
    /// highest routed sequence number (reports more than [`REPORTS_AHEAD_MAX`] beyond it
    /// are lies and ignored).
    #[allow(clippy::too_many_arguments)]
    pub fn handle_executed(
        &mut self,
        now: Time,
        from: ExecutionId,
        app: AppId,
        seq: Seq,
        digest: Digest,
        routed: Seq,
        membership: &MembershipTable,
    ) {
        let report = Report {
            from,
            app,
            seq,
            digest,
            routed,
        };
        self.record(now, report, Kind::Replies, membership);
    }

    /// A checkpoint root from `from` at `seq` of `app`.
    #[allow(clippy::too_many_arguments)]
    pub fn handle_root(
        &mut self,
        now: Time,
        from: ExecutionId,
        app: AppId,
        seq: Seq,
        root: Digest,
        routed: Seq,
        membership: &MembershipTable,
    ) {
        let report = Report {
            from,
            app,
            seq,
            digest: root,
            routed,
        };
        self.record(now, report, Kind::Roots, membership);
    }

    /// A client retransmitted a request of `app` that was already ordered at or before
    /// `seq`: it did not get f+1 matching replies.
    pub fn handle_client_retransmit(
        &mut self,
        now: Time,
        client: ClientId,
        app: AppId,
        seq: Seq,
        membership: &MembershipTable,
    ) {
        let span = self
            .config
            .resend_micros
            .saturating_mul(CLIENT_WAKE_INTERVALS);
        if (self.client_wakes.get(&client)).is_some_and(|last| now.saturating_sub(*last) < span) {
            return;
        }
        // A wake standing already costs the client nothing.
        if (self.apps.get(&app)).is_none_or(|watch| watch.wake.is_some()) {
            return;
        }
        self.client_wakes
            .retain(|_, last| now.saturating_sub(*last) < span);
        if self.client_wakes.len() >= CLIENT_WAKES_KEPT_MAX {
            return;
        }
        self.client_wakes.insert(client, now);
        let epoch = membership.epoch(app);
        self.wake(now, app, epoch, seq, WakeReason::ClientRetransmit);
    }

    fn record(&mut self, now: Time, report: Report, kind: Kind, membership: &MembershipTable) {
        let Report {
            from,
            app,
            seq,
            digest,
            routed,
        } = report;
        let Some(watch) = self.apps.get_mut(&app) else {
            return;
        };
        // Only active members are judged: a paused or removed one's echoes do not count.
        let too_far = seq.0 > routed.0.saturating_add(REPORTS_AHEAD_MAX);
        if !membership.active(app).contains(&from) || too_far || seq == Seq(0) {
            return;
        }
        let up_to = watch.reported_up_to.entry(from).or_default();
        *up_to = (*up_to).max(seq);
        let table = watch.table_mut(kind);
        if !table.reports.contains_key(&seq) && seq <= table.settled {
            return;
        }
        let table = &mut table.reports;
        if table.len() >= WATCHED_MAX
            && table
                .first_key_value()
                .is_some_and(|(oldest, _)| seq < *oldest)
        {
            return;
        }
        let reports = table.entry(seq).or_insert_with(|| Reports {
            first_at: now,
            ..Reports::default()
        });
        // A member's first word about a sequence number is its word.
        reports.by_member.entry(from).or_insert(digest);
        while table.len() > WATCHED_MAX {
            table.pop_first();
        }
        self.evaluate(now, app, seq, kind, membership);
    }

    /// Periodic work: silence checks and resending standing alarms.
    pub fn handle_tick(&mut self, now: Time, membership: &MembershipTable) {
        let apps: Vec<AppId> = self.apps.keys().copied().collect();
        for app in apps {
            for kind in [Kind::Replies, Kind::Roots] {
                let seqs: Vec<Seq> = self.table(app, kind).keys().copied().collect();
                for seq in seqs {
                    self.evaluate(now, app, seq, kind, membership);
                }
            }
            let resend = self.config.resend_micros;
            let watch = self.apps.get_mut(&app).expect("listed above");
            // A wake whose trouble is over stops: resent, it would keep the activator
            // from ever finding the app quiet and pausing the extra replicas. A new
            // trouble raises a new one.
            if watch.wake.is_some_and(|(wake, _)| watch.resolved(&wake)) {
                watch.wake = None;
            }
            if let Some((wake, sent_at)) = &mut watch.wake
                && now.saturating_sub(*sent_at) >= resend
            {
                *sent_at = now;
                self.alarms.push(Alarm::Wake(*wake));
            }
            for (faulty, sent_at) in watch.faulty.values_mut() {
                if now.saturating_sub(*sent_at) >= resend {
                    *sent_at = now;
                    self.alarms.push(Alarm::Faulty(*faulty));
                }
            }
        }
    }

    /// Alarms raised since the last call, to send to the activator.
    pub fn take_alarms(&mut self) -> Vec<Alarm> {
        std::mem::take(&mut self.alarms)
    }

    fn table(&self, app: AppId, kind: Kind) -> &BTreeMap<Seq, Reports> {
        let watch = &self.apps[&app];
        match kind {
            Kind::Replies => &watch.executed.reports,
            Kind::Roots => &watch.roots.reports,
        }
    }

    fn evaluate(
        &mut self,
        now: Time,
        app: AppId,
        seq: Seq,
        kind: Kind,
        membership: &MembershipTable,
    ) {
        let quorum = self.config.weak_quorum;
        let silence = self.config.silence_micros;
        let watch = self.apps.get_mut(&app).expect("a watched app");
        let active = membership.active(app);
        let epoch = membership.epoch(app);
        let since = watch.active_since;
        let newcomers = watch.newcomers.clone();
        let grace = silence.saturating_mul(NEWCOMER_GRACE_TIMEOUTS);
        // Members known to have executed `seq`, whether or not their report about it came.
        let past: BTreeSet<ExecutionId> = (watch.reported_up_to.iter())
            .filter(|(_, up_to)| **up_to > seq)
            .map(|(member, _)| *member)
            .collect();
        let table = watch.table_mut(kind);
        let Some(reports) = table.reports.get_mut(&seq) else {
            return;
        };
        let agreed = reports.agreed(quorum);
        if agreed.is_some() && reports.agreed_at.is_none() {
            reports.agreed_at = Some(now);
        }
        let accounted =
            |member: &ExecutionId| reports.by_member.contains_key(member) || past.contains(member);
        let all_active_reported = active.iter().all(|m| reports.by_member.contains_key(m));
        let all_active_accounted = active.iter().all(accounted);
        let mut wrong = Vec::new();
        let mut silent = Vec::new();
        if let Some(agreed) = agreed {
            for (member, digest) in &reports.by_member {
                if *digest != agreed && active.contains(member) {
                    wrong.push(*member);
                }
            }
            let agreed_at = reports.agreed_at.expect("set above").max(since);
            let silent_since = |member: &ExecutionId| match newcomers.contains(member) {
                true => agreed_at.max(since.saturating_add_micros(grace)),
                false => agreed_at,
            };
            silent.extend(active.iter().filter(|member| {
                !accounted(member) && now.saturating_sub(silent_since(member)) >= silence
            }));
        }
        let differ = {
            let mut digests = reports
                .by_member
                .iter()
                .filter(|(member, _)| active.contains(member))
                .map(|(_, digest)| digest);
            let first = digests.next();
            digests.any(|digest| Some(digest) != first)
        };
        let waited = now.saturating_sub(reports.first_at.max(since)) >= silence;
        // Settled when every active member is accounted for and none differs: either f+1
        // agree and all reported, or some reports were lost and there is nothing to judge.
        let done = all_active_accounted && !differ && (agreed.is_some() || !all_active_reported);
        if done {
            table.reports.remove(&seq);
            table.settled = table.settled.max(seq);
        }
        let (wrong_reason, differ_reason) = match kind {
            Kind::Replies => (FaultReason::WrongReplies, WakeReason::RepliesDiffer),
            Kind::Roots => (FaultReason::WrongRoot, WakeReason::RootsDiffer),
        };
        for member in wrong {
            self.faulty(now, app, epoch, member, seq, wrong_reason);
        }
        for member in silent {
            self.faulty(now, app, epoch, member, seq, FaultReason::Silent);
        }
        // With f+1 in agreement the culprits are known and reported above; standbys are
        // needed only when no f+1 agree: the actives differ, or too few of them answer.
        if agreed.is_none() {
            if all_active_reported && differ {
                self.wake(now, app, epoch, seq, differ_reason);
            } else if waited && (!all_active_accounted || active.len() < quorum) {
                self.wake(now, app, epoch, seq, WakeReason::Silence);
            }
        }
    }

    /// Ask for standbys for `app` in membership `epoch`, unless already asked.
    fn wake(&mut self, now: Time, app: AppId, epoch: u64, seq: Seq, reason: WakeReason) {
        let Some(watch) = self.apps.get_mut(&app) else {
            return;
        };
        if watch.wake.is_some() {
            return;
        }
        let wake = Wake {
            app,
            epoch,
            seq,
            reason,
        };
        tracing::info!(%app, epoch, %seq, reason = reason.name(), "asking for standbys");
        watch.wake = Some((wake, now));
        self.alarms.push(Alarm::Wake(wake));
    }

    /// Report `member` of `app` faulty in membership `epoch`, unless already reported.
    fn faulty(
        &mut self,
        now: Time,
        app: AppId,
        epoch: u64,
        member: ExecutionId,
        seq: Seq,
        reason: FaultReason,
    ) {
        let watch = self.apps.get_mut(&app).expect("a watched app");
        if watch.faulty.contains_key(&member) {
            return;
        }
        let faulty = Faulty {
            app,
            epoch,
            member,
            seq,
            reason,
        };
        tracing::warn!(%app, epoch, %member, %seq, reason = reason.name(), "reporting a faulty execution replica");
        watch.faulty.insert(member, (faulty, now));
        self.alarms.push(Alarm::Faulty(faulty));
    }
}

/// One execution replica's report: a replies digest or a root, about `seq` of `app`;
/// `routed` is the app's highest routed sequence number here.
#[derive(Clone, Copy, Debug)]
struct Report {
    from: ExecutionId,
    app: AppId,
    seq: Seq,
    digest: Digest,
    routed: Seq,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Replies,
    Roots,
}

#[cfg(test)]
mod tests;
