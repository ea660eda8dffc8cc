//! The protocol parameters every agreement replica must agree on.

use serde::{Deserialize, Serialize};

/// Largest f supported: the cluster has 3f+1 agreement replicas.
pub const FAULTS_TOLERATED_MAX: usize = 3;

/// Protocol parameters shared by the whole cluster (the `[protocol]` table of the
/// configuration). Relations between them are checked by [`ProtocolParams::validate`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProtocolParams {
    /// Faults tolerated; the cluster has 3f+1 agreement replicas.
    pub f: usize,
    /// K: a checkpoint every K sequence numbers.
    pub checkpoint_interval: u64,
    /// L: sequence numbers accepted above the low watermark (h < s <= h + L).
    pub window: u64,
    /// Requests in one batch at most.
    pub batch_size_max: usize,
    /// Batches the primary keeps in flight (proposed, not yet committed) at most.
    pub pipeline_max: u64,
    /// Bytes in one request's operation at most.
    pub request_bytes_max: usize,
    /// Bytes in one frame on the wire at most; checked before decoding.
    pub frame_bytes_max: usize,
    /// A backup waits this long for a request to commit before it starts a view change.
    pub view_change_timeout_ms: u64,
    /// How often a replica reports its progress to the others.
    pub status_interval_ms: u64,
    /// How far a primary's proposed timestamp may stray from a backup's clock.
    pub timestamp_skew_max_ms: u64,
    /// How long an active execution replica may stay silent about a sequence number the
    /// others reported before agreement replicas ask for standbys (and, once f+1 others
    /// agree, report it faulty).
    pub execution_silence_ms: u64,
}

impl Default for ProtocolParams {
    fn default() -> Self {
        ProtocolParams {
            f: 1,
            checkpoint_interval: 64,
            window: 128,
            batch_size_max: 512,
            pipeline_max: 4,
            request_bytes_max: 64 * 1024,
            frame_bytes_max: 64 * 1024 * 1024,
            view_change_timeout_ms: 1000,
            status_interval_ms: 100,
            timestamp_skew_max_ms: 60_000,
            execution_silence_ms: 1000,
        }
    }
}

/// A parameter that breaks a rule, with the rule it breaks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("protocol.{field}: {problem}")]
pub struct ParamsError {
    pub field: &'static str,
    pub problem: String,
}

/// A member that just became active (a woken standby) must join, replay from the stable
/// checkpoint and fetch state before it can report: agreement replicas count its silence
/// only after this many execution silence timeouts, and the activator thaws no more
/// standbys for as long.
pub const NEWCOMER_GRACE_TIMEOUTS: u64 = 4;

impl ProtocolParams {
    /// Bytes of the largest batch: `batch_size_max` requests of `request_bytes_max`, with
    /// their envelopes.
    pub fn batch_bytes_max(&self) -> usize {
        let envelope = 128 + 32 * self.replica_count();
        self.batch_size_max
            .saturating_mul(self.request_bytes_max + envelope)
    }

    /// See [`NEWCOMER_GRACE_TIMEOUTS`].
    pub fn newcomer_grace_micros(&self) -> u64 {
        self.execution_silence_ms
            .saturating_mul(1000)
            .saturating_mul(NEWCOMER_GRACE_TIMEOUTS)
    }

    /// n = 3f+1 agreement replicas.
    pub fn replica_count(&self) -> usize {
        3 * self.f + 1
    }

    /// 2f+1: any two quorums share a correct replica.
    pub fn quorum(&self) -> usize {
        2 * self.f + 1
    }

    /// f+1: at least one of them is correct.
    pub fn weak_quorum(&self) -> usize {
        self.f + 1
    }

    pub fn validate(&self) -> Result<(), ParamsError> {
        let err = |field, problem: String| Err(ParamsError { field, problem });
        if self.f == 0 || self.f > FAULTS_TOLERATED_MAX {
            return err(
                "f",
                format!("must be 1..={FAULTS_TOLERATED_MAX}, got {}", self.f),
            );
        }
        if self.checkpoint_interval == 0 {
            return err("checkpoint_interval", "must be at least 1".into());
        }
        if self.window < 2 * self.checkpoint_interval
            || !self.window.is_multiple_of(self.checkpoint_interval)
        {
            return err(
                "window",
                format!(
                    "must be a multiple of checkpoint_interval ({}) and at least twice it, got {}",
                    self.checkpoint_interval, self.window
                ),
            );
        }
        if self.batch_size_max == 0 || self.batch_size_max > 65_536 {
            return err(
                "batch_size_max",
                format!("must be 1..=65536, got {}", self.batch_size_max),
            );
        }
        if self.pipeline_max == 0 || self.pipeline_max > self.window {
            return err(
                "pipeline_max",
                format!(
                    "must be 1..=window ({}), got {}",
                    self.window, self.pipeline_max
                ),
            );
        }
        let batch_bytes = self.batch_bytes_max();
        // Two frames of the largest size fit an inbox (its byte bound).
        let frame_limit = crate::bus::INBOX_BYTES_MAX / 2;
        if self.frame_bytes_max < batch_bytes.min(frame_limit) || self.frame_bytes_max > frame_limit
        {
            return err(
                "frame_bytes_max",
                format!(
                    "must hold a full batch (batch_size_max x (request_bytes_max + 128 + 32 x replicas) = {batch_bytes}) and be at most {frame_limit}, got {}",
                    self.frame_bytes_max
                ),
            );
        }
        if self.view_change_timeout_ms == 0 || self.status_interval_ms == 0 {
            return err("view_change_timeout_ms", "timeouts must be positive".into());
        }
        if self.execution_silence_ms == 0 {
            return err("execution_silence_ms", "must be positive".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        ProtocolParams::default().validate().unwrap();
    }

    #[test]
    fn window_smaller_than_two_checkpoints_is_named() {
        let params = ProtocolParams {
            window: 64,
            ..ProtocolParams::default()
        };
        let error = params.validate().unwrap_err();
        assert_eq!(error.field, "window");
    }
}
