//! The activator driver: the [`Policy`] with its endpoint, message bus and backend. It opens
//! incoming frames (dropping and counting what fails), hands agreement replicas' `Wake`
//! and `Faulty` alarms to the policy, carries out the policy's commands through the
//! [`Backend`], announces memberships to the agreement replicas, answers `zz scale`, and
//! builds the status. It reads no clock and spawns no task: time comes in as an argument,
//! so the activator node and the simulator (with a simulated backend whose calls complete
//! at once) run the same code.
//!
//! The policy's record (each app's epoch, active set and pool) goes to the driver's
//! [`PoolStore`] whenever it changed, before any command derived from it is carried out
//! or announced: no agreement replica sees an epoch a restarted activator could forget.
//! A record that could not be saved holds the announcements back (the backend's work
//! still happens); the next turn tries again.
//!
//! Calling protocol: [`ActivatorDriver::restore`] if a record was kept, then
//! [`ActivatorDriver::start_members`] once; then
//! [`ActivatorDriver::handle_frame`] for every frame, [`ActivatorDriver::handle_control`]
//! for every control request and [`ActivatorDriver::handle_timeout`] whenever
//! [`ActivatorDriver::poll_timeout`] is reached; after each of these, and before waiting
//! again, [`ActivatorDriver::carry_out`].

use crate::backend::Backend;
use crate::control::{ControlAnswer, ControlRequest};
use crate::policy::{
    Command, Member, MemberState, Policy, PolicyConfig, PoolsRecord, RecordMismatch,
};
use crate::pools_file::{PoolStore, Unpersisted};
use crate::status::{
    ActivatorEvent, ActivatorStatus, BackendAction, BackendEvent, Event, MemberStatus, PoolStatus,
};
use bytes::Bytes;
use std::collections::{BTreeMap, VecDeque};
use zz_cluster::status_file::reasons;
use zz_protocol::bus::MessageBus;
use zz_protocol::messages::{Faulty, Message, Wake};
use zz_protocol::{
    AppId, Endpoint, ExecutionId, FrameCounters, NodeId, RejectReason, ReplicaId, Time,
};

/// How often the policy's timers run and the backend is asked which starts completed.
pub const TICK_MICROS: u64 = 20_000;
/// Backend events kept for the status, at most.
pub const BACKEND_EVENTS_MAX: usize = 64;

/// What an activator is set up with.
#[derive(Clone, Debug)]
pub struct ActivatorSetup {
    pub policy: PolicyConfig,
    /// Each app's members: Active ones run, Starting ones are started as standbys,
    /// Standby ones are already loaded and paused, Spare slots hold nothing.
    pub pools: BTreeMap<AppId, Vec<Member>>,
    /// How operators name the apps ("kv").
    pub app_names: BTreeMap<AppId, String>,
    /// Wall-clock milliseconds at time zero, for the times the status shows.
    pub wall_clock_at_zero_ms: u64,
}

/// What the driver counted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ActivatorCounters {
    pub wakes_received: u64,
    pub faulty_received: u64,
    /// Backend commands that failed.
    pub commands_failed: u64,
    /// Records the pool store could not save (their announcements waited).
    pub record_save_failures: u64,
    /// Frames received, and those rejected before the policy (decode, MAC, sender,
    /// kind), by reason.
    pub frames: FrameCounters,
}

/// An alarm from an agreement replica.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Alarm {
    Wake(Wake),
    Faulty(Faulty),
}

/// An alarm the driver handed to the policy, with the epoch its app was at when it
/// arrived: what a checker needs to tell whether the policy may count it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReceivedAlarm {
    pub from: ReplicaId,
    pub alarm: Alarm,
    pub epoch: Option<u64>,
}

/// See the module documentation.
pub struct ActivatorDriver<M, K, S = Unpersisted> {
    policy: Policy,
    backend: K,
    pool_store: S,
    /// The record the pool store holds, as far as this driver knows.
    saved: Option<PoolsRecord>,
    endpoint: Endpoint,
    bus: M,
    replica_count: u32,
    app_names: BTreeMap<AppId, String>,
    app_of: BTreeMap<ExecutionId, AppId>,
    counters: ActivatorCounters,
    backend_events: VecDeque<(Time, BackendEvent)>,
    next_tick: Time,
    wall_clock_at_zero_ms: u64,
}

impl<M: MessageBus, K: Backend> ActivatorDriver<M, K> {
    /// A driver that persists nothing, unless [`ActivatorDriver::with_pool_store`] says
    /// otherwise.
    pub fn new(setup: ActivatorSetup, endpoint: Endpoint, bus: M, backend: K) -> Self {
        assert!(matches!(endpoint.id(), NodeId::Activator(_)));
        let app_of = (setup.pools.iter())
            .flat_map(|(app, members)| members.iter().map(move |member| (member.id, *app)))
            .collect();
        let replica_count = setup.policy.replica_count as u32;
        let policy = Policy::new(setup.policy, setup.pools).with_app_names(setup.app_names.clone());
        ActivatorDriver {
            policy,
            backend,
            pool_store: Unpersisted,
            saved: None,
            endpoint,
            bus,
            replica_count,
            app_names: setup.app_names,
            app_of,
            counters: ActivatorCounters::default(),
            backend_events: VecDeque::new(),
            next_tick: Time(0),
            wall_clock_at_zero_ms: setup.wall_clock_at_zero_ms,
        }
    }
}

impl<M: MessageBus, K: Backend, S: PoolStore> ActivatorDriver<M, K, S> {
    /// The same driver, persisting the policy's record to `store`.
    pub fn with_pool_store<T: PoolStore>(self, store: T) -> ActivatorDriver<M, K, T> {
        ActivatorDriver {
            policy: self.policy,
            backend: self.backend,
            pool_store: store,
            saved: self.saved,
            endpoint: self.endpoint,
            bus: self.bus,
            replica_count: self.replica_count,
            app_names: self.app_names,
            app_of: self.app_of,
            counters: self.counters,
            backend_events: self.backend_events,
            next_tick: self.next_tick,
            wall_clock_at_zero_ms: self.wall_clock_at_zero_ms,
        }
    }

    /// Start from `record`, which the pool store held: its actives start active, its
    /// standbys as standbys, its spare slots (destroyed or never grown into) not at all,
    /// and the first announcements name its epochs. Before [`Self::start_members`].
    pub fn restore(&mut self, record: &PoolsRecord) -> Result<(), RecordMismatch> {
        self.policy.restore(record)?;
        self.saved = Some(record.clone());
        Ok(())
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }
    pub fn backend_mut(&mut self) -> &mut K {
        &mut self.backend
    }
    pub fn counters(&self) -> &ActivatorCounters {
        &self.counters
    }

    /// Start the configured members: Active ones running, Starting ones as standbys
    /// (paused once loaded). `clock` reads the time, for the events.
    pub async fn start_members(&mut self, clock: impl Fn() -> Time) {
        let to_start: Vec<(ExecutionId, bool)> = (self.policy.status().into_values())
            .flat_map(|pool| pool.members)
            .filter_map(|member| match member.state {
                MemberState::Active => Some((member.id, false)),
                MemberState::Starting => Some((member.id, true)),
                MemberState::Standby | MemberState::Spare => None,
            })
            .collect();
        for (member, standby) in to_start {
            if let Err(error) = self.backend.start(member, standby).await {
                self.counters.commands_failed += 1;
                let error = error.to_string();
                let event = BackendEvent::Failed {
                    action: BackendAction::Start,
                    member,
                    error,
                };
                self.backend_event(clock(), event);
            }
        }
    }

    /// A frame from the network: an alarm goes to the policy (and is returned), anything
    /// else is dropped and counted.
    pub fn handle_frame(&mut self, now: Time, frame: &[u8]) -> Option<ReceivedAlarm> {
        self.counters.frames.frames_received += 1;
        let verified = match self.endpoint.open(frame) {
            Ok(verified) => verified,
            Err(rejection) => {
                tracing::debug!(%rejection, "rejected frame");
                self.counters.frames.count_rejection(rejection.reason());
                return None;
            }
        };
        let (from, alarm) = match verified.into_parts() {
            (NodeId::Replica(from), Message::Wake(wake)) => (from, Alarm::Wake(wake)),
            (NodeId::Replica(from), Message::Faulty(faulty)) => (from, Alarm::Faulty(faulty)),
            _ => {
                self.counters
                    .frames
                    .count_rejection(RejectReason::UnexpectedKind);
                return None;
            }
        };
        let app = match alarm {
            Alarm::Wake(wake) => wake.app,
            Alarm::Faulty(faulty) => faulty.app,
        };
        let epoch = self.policy.epoch(app);
        match alarm {
            Alarm::Wake(wake) => {
                self.counters.wakes_received += 1;
                self.policy.handle_wake(now, from, wake);
            }
            Alarm::Faulty(faulty) => {
                self.counters.faulty_received += 1;
                self.policy.handle_faulty(now, from, faulty);
            }
        }
        Some(ReceivedAlarm { from, alarm, epoch })
    }

    /// A control request (`zz scale`).
    pub fn handle_control(&mut self, now: Time, request: ControlRequest) -> ControlAnswer {
        match request {
            ControlRequest::Scale { app, standbys } => {
                let Some(id) = (self.app_names.iter())
                    .find(|(_, name)| **name == app)
                    .map(|(id, _)| *id)
                else {
                    let names: Vec<&str> = self.app_names.values().map(String::as_str).collect();
                    return ControlAnswer::Refused(format!(
                        "no app named {app:?}; this platform hosts {}",
                        names.join(", ")
                    ));
                };
                match self.policy.handle_scale(now, id, standbys) {
                    Ok(event) => ControlAnswer::Done(event.to_string()),
                    Err(refusal) => ControlAnswer::Refused(refusal.to_string()),
                }
            }
        }
    }

    /// When [`ActivatorDriver::handle_timeout`] is due.
    pub fn poll_timeout(&self) -> Time {
        self.next_tick
    }

    /// Periodic work: starts the backend completed become ready standbys; the policy's
    /// timers run (quiet periods, announcements).
    pub async fn handle_timeout(&mut self, now: Time) {
        for member in self.backend.poll_started().await {
            if let Some(app) = self.app_of.get(&member).copied() {
                let name = (self.app_names.get(&app)).map_or_else(|| app.to_string(), Clone::clone);
                self.backend_event(now, BackendEvent::Ready { app: name, member });
                self.policy.handle_ready(now, app, member);
            }
        }
        self.policy.handle_tick(now);
        self.next_tick = now.saturating_add_micros(TICK_MICROS);
    }

    /// Carry out the policy's commands in order. `clock` reads the time, so that the
    /// events say how long each command took.
    pub async fn carry_out(&mut self, clock: impl Fn() -> Time) {
        let saved = self.save_record();
        for command in self.policy.take_commands() {
            let begun = clock();
            let (action, member, result) = match command {
                Command::Announce(membership) => {
                    // The policy announces every app again periodically: one held back
                    // now goes out once a save succeeds.
                    if saved {
                        self.announce(&Message::Membership(membership));
                    }
                    continue;
                }
                Command::Thaw(member) => {
                    (BackendAction::Thaw, member, self.backend.thaw(member).await)
                }
                Command::Pause(member) => (
                    BackendAction::Pause,
                    member,
                    self.backend.pause(member).await,
                ),
                Command::Destroy(member) => (
                    BackendAction::Destroy,
                    member,
                    self.backend.destroy(member).await,
                ),
                Command::StartStandby(member) => (
                    BackendAction::Start,
                    member,
                    self.backend.start(member, true).await,
                ),
            };
            let now = clock();
            let event = match result {
                Ok(()) => BackendEvent::Done {
                    backend: self.backend.name().to_string(),
                    action,
                    member,
                    took_ms: now.saturating_sub(begun) as f64 / 1000.0,
                },
                Err(error) => {
                    self.counters.commands_failed += 1;
                    let error = error.to_string();
                    BackendEvent::Failed {
                        action,
                        member,
                        error,
                    }
                }
            };
            self.backend_event(now, event);
        }
    }

    /// Save the policy's record if it changed since the last save; whether the store
    /// holds the current one.
    fn save_record(&mut self) -> bool {
        let record = self.policy.record();
        if self.saved.as_ref() == Some(&record) {
            return true;
        }
        match self.pool_store.save(&record) {
            Ok(()) => {
                self.saved = Some(record);
                true
            }
            Err(error) => {
                tracing::error!(%error, "membership not announced until its record is saved");
                self.counters.record_save_failures += 1;
                false
            }
        }
    }

    /// A membership notice to every agreement replica.
    fn announce(&mut self, message: &Message) {
        for replica in 0..self.replica_count {
            let to = NodeId::Replica(ReplicaId(replica));
            if let Some(frame) = self.endpoint.seal(to, message) {
                self.bus.send(to, Bytes::from(frame));
            }
        }
    }

    fn backend_event(&mut self, now: Time, event: BackendEvent) {
        tracing::info!("{event}");
        self.backend_events.push_back((now, event));
        while self.backend_events.len() > BACKEND_EVENTS_MAX {
            self.backend_events.pop_front();
        }
    }

    /// The status `zz status` shows, as of `updated_unix_ms`, for process `pid`.
    pub fn status(&self, pid: u32, updated_unix_ms: u64) -> ActivatorStatus {
        let instances = self.backend.instances();
        let pools = (self.policy.status().into_iter())
            .map(|(app, pool)| PoolStatus {
                app: app.0,
                name: self.app_names.get(&app).cloned().unwrap_or_default(),
                epoch: pool.epoch,
                members: (pool.members.into_iter())
                    .map(|member| MemberStatus {
                        id: member.id.0,
                        instance: instances.get(&member.id).cloned(),
                        host: member.host,
                        state: member.state,
                    })
                    .collect(),
            })
            .collect();
        let policy_events =
            (self.policy.events()).map(|(at, event)| (at, ActivatorEvent::Policy(event.clone())));
        let backend_events = (self.backend_events.iter())
            .map(|(at, event)| (*at, ActivatorEvent::Backend(event.clone())));
        let mut events: Vec<Event> = policy_events
            .chain(backend_events)
            .map(|(at, event)| Event {
                unix_ms: self.wall_clock_at_zero_ms + at.as_millis(),
                text: event.to_string(),
                event: Some(event),
            })
            .collect();
        events.sort_by_key(|event| event.unix_ms);
        ActivatorStatus {
            pid,
            backend: self.backend.name().to_string(),
            pools,
            events,
            wakes_received: self.counters.wakes_received,
            faulty_received: self.counters.faulty_received,
            commands_failed: self.counters.commands_failed,
            record_save_failures: self.counters.record_save_failures,
            rejected: reasons(&self.counters.frames.rejected),
            updated_unix_ms,
        }
    }
}

#[cfg(test)]
mod tests;
