//! Resending the last reports, sans-IO. An execution replica reports each executed
//! sequence number and each durable checkpoint once; when the app goes idle, a report
//! lost on the way would never be replaced by a later one, and an agreement replica
//! missing it would call the replica silent, or never see a checkpoint stable that a
//! joining replica needs. So once execution stops progressing, the last `Executed` and
//! checkpoint reports go out again, [`REPORT_RESENDS_MAX`] times, every
//! [`REPORT_RESEND_MICROS`].

use zz_protocol::Time;
use zz_protocol::messages::{Executed, ExecutionCheckpoint};

/// How long after the last report (or resend) the last reports go out again: well under
/// the agreement replicas' silence timeout, so a lost report is replaced before it.
pub const REPORT_RESEND_MICROS: u64 = 250_000;
/// Resends after the last progress, at most: enough that losing all of them is unlikely,
/// few enough that an idle replica soon sends nothing.
pub const REPORT_RESENDS_MAX: u32 = 4;

/// The last reports and when they go out again. See the module documentation.
#[derive(Clone, Debug, Default)]
pub struct LastReports {
    executed: Option<Executed>,
    checkpoint: Option<ExecutionCheckpoint>,
    /// When the next resend is due.
    next_at: Time,
    resends_left: u32,
}

impl LastReports {
    /// An `Executed` report went out.
    pub fn executed(&mut self, executed: Executed) {
        self.executed = Some(executed);
    }

    /// A checkpoint report went out.
    pub fn checkpoint(&mut self, checkpoint: ExecutionCheckpoint) {
        self.checkpoint = Some(checkpoint);
    }

    /// Execution progressed at `now`: the resends start over from it.
    pub fn progressed(&mut self, now: Time) {
        self.next_at = now.saturating_add_micros(REPORT_RESEND_MICROS);
        self.resends_left = REPORT_RESENDS_MAX;
    }

    /// Forget them: the replica starts over, and what it reported before is past.
    pub fn clear(&mut self) {
        *self = LastReports::default();
    }

    /// When [`LastReports::due`] has reports to resend.
    pub fn poll_timeout(&self) -> Option<Time> {
        let any = self.executed.is_some() || self.checkpoint.is_some();
        (any && self.resends_left > 0).then_some(self.next_at)
    }

    /// The reports to send again at `now`, if a resend is due.
    pub fn due(&mut self, now: Time) -> Option<(Option<Executed>, Option<ExecutionCheckpoint>)> {
        if self.poll_timeout().is_none_or(|at| now < at) {
            return None;
        }
        self.next_at = now.saturating_add_micros(REPORT_RESEND_MICROS);
        self.resends_left -= 1;
        Some((self.executed, self.checkpoint))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zz_protocol::{AppId, Digest, Seq};

    fn executed(seq: u64) -> Executed {
        Executed {
            app: AppId(0),
            seq: Seq(seq),
            replies: Digest([seq as u8; 32]),
        }
    }

    #[test]
    fn nothing_is_resent_before_anything_was_reported() {
        let mut reports = LastReports::default();
        assert_eq!(reports.poll_timeout(), None);
        assert_eq!(reports.due(Time(10_000_000)), None);
    }

    #[test]
    fn the_last_reports_go_out_again_a_bounded_number_of_times_after_progress_stops() {
        let mut reports = LastReports::default();
        reports.executed(executed(1));
        reports.progressed(Time(0));
        reports.executed(executed(2));
        reports.progressed(Time(7));
        let checkpoint = ExecutionCheckpoint {
            app: AppId(0),
            seq: Seq(2),
            root: Digest([9; 32]),
        };
        reports.checkpoint(checkpoint);
        assert_eq!(reports.due(Time(7 + REPORT_RESEND_MICROS - 1)), None);
        let mut resends = 0;
        let mut now = Time(7);
        while let Some(at) = reports.poll_timeout() {
            now = at;
            assert_eq!(
                reports.due(now),
                Some((Some(executed(2)), Some(checkpoint)))
            );
            resends += 1;
        }
        assert_eq!(resends, REPORT_RESENDS_MAX);
        assert_eq!(reports.due(now.saturating_add_micros(10_000_000)), None);
        // New progress starts the resends over.
        reports.executed(executed(3));
        reports.progressed(now);
        assert!(reports.poll_timeout().is_some());
        reports.clear();
        assert_eq!(reports.poll_timeout(), None);
    }
}
