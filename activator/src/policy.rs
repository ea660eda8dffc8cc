//! The activator's policy, sans-IO. Per app it keeps the members' states and a membership
//! epoch, and:
//! - on f+1 matching `Wake`s (same app and current epoch, distinct agreement replicas) it
//!   thaws up to f standbys, preferring hosts no active member runs on, and announces the
//!   new membership (epoch + 1);
//! - on f+1 matching `Faulty` reports (same app, epoch and member) it destroys that member,
//!   starts a fresh standby in its place, and announces the membership without it;
//! - after a quiet period with more than f+1 active members it pauses the extra ones,
//!   most recently woken first, and the app is back to f+1 active;
//! - on f+1 alarms naming epochs past its own (its record was lost or is older than what
//!   the agreement replicas adopted) it moves past them, so epochs never go backwards.
//!
//! Calling protocol: [`Policy::restore`] once if a [`PoolsRecord`] was kept; then feed
//! alarms, backend readiness and ticks; after each call persist [`Policy::record`] if it
//! changed, then drain [`Policy::take_commands`] and carry the commands out in order.

mod catch_up;
mod events;
mod record;

pub use events::{PolicyEvent, ScaleRefusal};
pub use record::{PoolRecord, PoolsRecord, RecordMismatch, SlotRecord, SlotRole};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use zz_protocol::messages::{Faulty, Membership, Wake};
use zz_protocol::{AppId, ExecutionId, ReplicaId, Time};

/// Events kept for status, at most.
pub const EVENTS_KEPT_MAX: usize = 64;

/// Settings of the policy.
#[derive(Clone, Copy, Debug)]
pub struct PolicyConfig {
    pub f: usize,
    /// Agreement replicas (3f+1): alarms from others are ignored.
    pub replica_count: usize,
    /// How long an app must be free of alarms before extra active members are paused.
    pub quiet_micros: u64,
    /// How often each app's membership is announced again (lost notices cost nothing).
    pub announce_micros: u64,
    /// After thawing standbys, how long they get to join (replay, fetch state) before
    /// wakes can thaw more: trouble that persists meanwhile is what they are fixing.
    pub join_grace_micros: u64,
}

/// Where a member stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MemberState {
    Active,
    /// Started, loaded and paused: ready to be woken.
    Standby,
    /// Being started as a standby; not ready yet.
    Starting,
    /// A provisioned slot with no replica running: what the pool grows into.
    Spare,
}

/// One configured execution replica of an app.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub id: ExecutionId,
    /// Its failure domain.
    pub host: String,
    pub state: MemberState,
}

/// Work for the backend, or a notice for the agreement replicas.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    Thaw(ExecutionId),
    Pause(ExecutionId),
    Destroy(ExecutionId),
    StartStandby(ExecutionId),
    Announce(Membership),
}

struct AppPool {
    epoch: u64,
    members: BTreeMap<ExecutionId, Member>,
    /// Agreement replicas that asked for standbys in the current epoch.
    wakes: BTreeSet<ReplicaId>,
    /// Agreement replicas that reported each member in the current epoch.
    faulty: BTreeMap<ExecutionId, BTreeSet<ReplicaId>>,
    /// Per agreement replica, the highest epoch past the current one its alarms named.
    ahead: BTreeMap<ReplicaId, u64>,
    /// The last time f+1 replicas raised an alarm.
    last_trouble: Time,
    /// Woken members, oldest first: the newest are paused first after a quiet period.
    woken: Vec<ExecutionId>,
    /// A wake that found no ready standby; served when one becomes ready.
    wake_wanted: bool,
    /// f+1 wakes were acted on in the current epoch (later ones only keep it from quiet).
    woken_this_epoch: bool,
    /// When standbys were last thawed.
    thawed_at: Option<Time>,
    last_announced: Option<Time>,
}

impl AppPool {
    fn active(&self) -> Vec<ExecutionId> {
        self.in_state(MemberState::Active)
    }

    fn in_state(&self, state: MemberState) -> Vec<ExecutionId> {
        (self.members.values())
            .filter(|member| member.state == state)
            .map(|member| member.id)
            .collect()
    }

    fn membership(&self, app: AppId) -> Membership {
        Membership {
            app,
            epoch: self.epoch,
            active: self.active(),
        }
    }
}

/// What the status shows of one app.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppPoolStatus {
    pub epoch: u64,
    pub members: Vec<Member>,
}

/// See the module documentation.
pub struct Policy {
    config: PolicyConfig,
    /// Operators' names of the apps, for events and answers.
    names: BTreeMap<AppId, String>,
    apps: BTreeMap<AppId, AppPool>,
    commands: Vec<Command>,
    events: VecDeque<(Time, PolicyEvent)>,
}

impl Policy {
    /// A policy for `apps`: each app's members as configured (Active, or Starting for
    /// standbys the backend is about to start).
    pub fn new(config: PolicyConfig, apps: BTreeMap<AppId, Vec<Member>>) -> Policy {
        assert!(config.replica_count > 3 * config.f);
        let apps = apps
            .into_iter()
            .map(|(app, members)| {
                let pool = AppPool {
                    epoch: 0,
                    members: members.into_iter().map(|m| (m.id, m)).collect(),
                    wakes: BTreeSet::new(),
                    faulty: BTreeMap::new(),
                    ahead: BTreeMap::new(),
                    last_trouble: Time(0),
                    woken: Vec::new(),
                    wake_wanted: false,
                    woken_this_epoch: false,
                    thawed_at: None,
                    last_announced: None,
                };
                (app, pool)
            })
            .collect();
        Policy {
            config,
            names: BTreeMap::new(),
            apps,
            commands: Vec::new(),
            events: VecDeque::new(),
        }
    }

    /// Name apps by `names` ("kv") rather than by id ("app0") in events and answers.
    pub fn with_app_names(mut self, names: BTreeMap<AppId, String>) -> Self {
        self.names = names;
        self
    }

    /// How operators name `app` ("kv"), or its id when it has no name.
    fn name(&self, app: AppId) -> String {
        (self.names.get(&app)).map_or_else(|| app.to_string(), Clone::clone)
    }

    /// The commands to carry out, in order. Thaws come first: clients wait on them, and a
    /// backend may take hundreds of milliseconds to destroy a replica and start its
    /// replacement (a container). Commands about one member never include a thaw and
    /// another command, so moving thaws keeps each member's commands in order.
    pub fn take_commands(&mut self) -> Vec<Command> {
        let mut commands = std::mem::take(&mut self.commands);
        commands.sort_by_key(|command| !matches!(command, Command::Thaw(_)));
        commands
    }

    /// The latest events with when they happened, oldest first.
    pub fn events(&self) -> impl Iterator<Item = (Time, &PolicyEvent)> {
        self.events.iter().map(|(at, event)| (*at, event))
    }

    /// `app`'s membership epoch, if it is an app of this policy.
    pub fn epoch(&self, app: AppId) -> Option<u64> {
        self.apps.get(&app).map(|pool| pool.epoch)
    }

    pub fn status(&self) -> BTreeMap<AppId, AppPoolStatus> {
        self.apps
            .iter()
            .map(|(app, pool)| {
                let status = AppPoolStatus {
                    epoch: pool.epoch,
                    members: pool.members.values().cloned().collect(),
                };
                (*app, status)
            })
            .collect()
    }

    fn event(&mut self, now: Time, event: PolicyEvent) {
        tracing::info!("{event}");
        self.events.push_back((now, event));
        while self.events.len() > EVENTS_KEPT_MAX {
            self.events.pop_front();
        }
    }

    fn known(&self, from: ReplicaId) -> bool {
        from.index() < self.config.replica_count
    }

    /// A `Wake` from agreement replica `from`.
    pub fn handle_wake(&mut self, now: Time, from: ReplicaId, wake: Wake) {
        let quorum = self.config.f + 1;
        if !self.known(from) {
            return;
        }
        let Some(pool) = self.apps.get_mut(&wake.app) else {
            return;
        };
        if wake.epoch != pool.epoch {
            self.handle_epoch_ahead(now, from, wake.app, wake.epoch);
            return;
        }
        pool.wakes.insert(from);
        if pool.wakes.len() < quorum {
            return;
        }
        // f+1 see trouble: not quiet. Standbys thawed a moment ago are still joining to
        // fix it; only once their grace is over may more be thawed.
        pool.last_trouble = now;
        let joining = pool
            .thawed_at
            .is_some_and(|at| now.saturating_sub(at) < self.config.join_grace_micros);
        if !pool.woken_this_epoch && !joining {
            pool.woken_this_epoch = true;
            let event = PolicyEvent::WakeQuorum {
                app: self.name(wake.app),
                reason: wake.reason,
                seq: wake.seq,
            };
            self.event(now, event);
            self.activate(now, wake.app);
        }
    }

    /// A `Faulty` report from agreement replica `from`.
    pub fn handle_faulty(&mut self, now: Time, from: ReplicaId, faulty: Faulty) {
        let quorum = self.config.f + 1;
        if !self.known(from) {
            return;
        }
        let Some(pool) = self.apps.get_mut(&faulty.app) else {
            return;
        };
        if faulty.epoch != pool.epoch {
            self.handle_epoch_ahead(now, from, faulty.app, faulty.epoch);
            return;
        }
        let is_active = pool
            .members
            .get(&faulty.member)
            .is_some_and(|member| member.state == MemberState::Active);
        if !is_active {
            return;
        }
        let reporters = pool.faulty.entry(faulty.member).or_default();
        reporters.insert(from);
        if reporters.len() != quorum {
            return;
        }
        pool.last_trouble = now;
        let member = pool.members.get_mut(&faulty.member).expect("checked above");
        member.state = MemberState::Starting;
        pool.woken.retain(|woken| *woken != faulty.member);
        self.commands.push(Command::Destroy(faulty.member));
        self.commands.push(Command::StartStandby(faulty.member));
        let event = PolicyEvent::Faulty {
            app: self.name(faulty.app),
            member: faulty.member,
            reason: faulty.reason,
            seq: faulty.seq,
        };
        self.event(now, event);
        let pool = self.apps.get_mut(&faulty.app).expect("checked above");
        if pool.active().len() <= self.config.f {
            // Too few left to answer clients: wake replacements at once.
            pool.wake_wanted = true;
        }
        self.new_epoch(now, faulty.app);
        self.activate_if_wanted(now, faulty.app);
    }

    /// The backend reports that `member` is started and paused: a ready standby.
    pub fn handle_ready(&mut self, now: Time, app: AppId, member: ExecutionId) {
        let Some(pool) = self.apps.get_mut(&app) else {
            return;
        };
        if let Some(entry) = pool.members.get_mut(&member)
            && entry.state == MemberState::Starting
        {
            entry.state = MemberState::Standby;
            self.activate_if_wanted(now, app);
        }
    }

    /// Grow or shrink `app`'s standby pool to `standbys` (ready or starting), starting
    /// replicas in spare slots or destroying standbys (the newest ids first). The event
    /// says what changed, or the refusal why nothing could.
    pub fn handle_scale(
        &mut self,
        now: Time,
        app: AppId,
        standbys: usize,
    ) -> Result<PolicyEvent, ScaleRefusal> {
        let name = self.name(app);
        let Some(pool) = self.apps.get_mut(&app) else {
            return Err(ScaleRefusal::NoExecutionReplicas { app: name });
        };
        let pooled: Vec<ExecutionId> = (pool.members.values())
            .filter(|m| matches!(m.state, MemberState::Standby | MemberState::Starting))
            .map(|m| m.id)
            .collect();
        let spares = pool.in_state(MemberState::Spare);
        if standbys > pooled.len() + spares.len() {
            return Err(ScaleRefusal::TooFewSlots {
                app: name,
                in_use: pooled.len(),
                spare: spares.len(),
            });
        }
        let event = if standbys > pooled.len() {
            let started: Vec<ExecutionId> = spares[..standbys - pooled.len()].to_vec();
            for member in &started {
                pool.members.get_mut(member).expect("listed").state = MemberState::Starting;
                self.commands.push(Command::StartStandby(*member));
            }
            PolicyEvent::PoolGrew {
                app: name,
                standbys,
                started,
            }
        } else if standbys < pooled.len() {
            let removed: Vec<ExecutionId> = pooled[standbys..].to_vec();
            for member in &removed {
                pool.members.get_mut(member).expect("listed").state = MemberState::Spare;
                self.commands.push(Command::Destroy(*member));
            }
            PolicyEvent::PoolShrank {
                app: name,
                standbys,
                removed,
            }
        } else {
            PolicyEvent::PoolUnchanged {
                app: name,
                standbys,
            }
        };
        self.event(now, event.clone());
        self.activate_if_wanted(now, app);
        Ok(event)
    }

    /// Periodic work: pausing extra members after a quiet period, announcing memberships.
    pub fn handle_tick(&mut self, now: Time) {
        let apps: Vec<AppId> = self.apps.keys().copied().collect();
        for app in apps {
            let pool = self.apps.get_mut(&app).expect("listed");
            let active_count = pool.active().len();
            let extra = active_count.saturating_sub(self.config.f + 1);
            let quiet = now.saturating_sub(pool.last_trouble) >= self.config.quiet_micros;
            // A wish for one more standby lapses with the quiet period, unless too few
            // members are active to answer clients.
            if quiet && pool.wake_wanted && active_count > self.config.f {
                pool.wake_wanted = false;
            }
            if extra > 0 && quiet && !pool.wake_wanted {
                let pool = self.apps.get_mut(&app).expect("listed");
                let mut paused = Vec::new();
                while paused.len() < extra
                    && let Some(member) = pool.woken.pop()
                {
                    if let Some(entry) = pool.members.get_mut(&member)
                        && entry.state == MemberState::Active
                    {
                        entry.state = MemberState::Standby;
                        paused.push(member);
                    }
                }
                if !paused.is_empty() {
                    self.commands
                        .extend(paused.iter().map(|m| Command::Pause(*m)));
                    let event = PolicyEvent::Paused {
                        app: self.name(app),
                        members: paused,
                    };
                    self.event(now, event);
                    self.new_epoch(now, app);
                }
            }
            let pool = &self.apps[&app];
            let due = pool
                .last_announced
                .is_none_or(|at| now.saturating_sub(at) >= self.config.announce_micros);
            if due {
                self.announce(now, app);
            }
        }
    }

    fn activate_if_wanted(&mut self, now: Time, app: AppId) {
        let pool = &self.apps[&app];
        if pool.wake_wanted || pool.active().len() <= self.config.f {
            self.activate(now, app);
        }
    }

    /// Thaw up to f ready standbys, preferring hosts no active member runs on.
    fn activate(&mut self, now: Time, app: AppId) {
        let f = self.config.f;
        let pool = self.apps.get_mut(&app).expect("a known app");
        let busy_hosts: BTreeSet<String> = (pool.members.values())
            .filter(|member| member.state == MemberState::Active)
            .map(|member| member.host.clone())
            .collect();
        let mut ready: Vec<&Member> = (pool.members.values())
            .filter(|member| member.state == MemberState::Standby)
            .collect();
        // Standbys on other hosts first; the id keeps the choice deterministic.
        ready.sort_by_key(|member| (busy_hosts.contains(&member.host), member.id));
        let chosen: Vec<ExecutionId> = ready.iter().take(f).map(|member| member.id).collect();
        if chosen.is_empty() {
            pool.wake_wanted = true;
            let event = PolicyEvent::NoStandbyReady {
                app: self.name(app),
            };
            self.event(now, event);
            return;
        }
        pool.wake_wanted = false;
        pool.thawed_at = Some(now);
        for member in &chosen {
            pool.members.get_mut(member).expect("chosen").state = MemberState::Active;
            pool.woken.push(*member);
            self.commands.push(Command::Thaw(*member));
        }
        let event = PolicyEvent::Woke {
            app: self.name(app),
            members: chosen,
        };
        self.event(now, event);
        self.new_epoch(now, app);
    }

    fn new_epoch(&mut self, now: Time, app: AppId) {
        let pool = self.apps.get_mut(&app).expect("a known app");
        pool.epoch += 1;
        pool.wakes.clear();
        pool.woken_this_epoch = false;
        pool.faulty.clear();
        let epoch = pool.epoch;
        pool.ahead.retain(|_, claimed| *claimed > epoch);
        self.announce(now, app);
    }

    fn announce(&mut self, now: Time, app: AppId) {
        let pool = self.apps.get_mut(&app).expect("a known app");
        pool.last_announced = Some(now);
        let membership = pool.membership(app);
        self.commands.push(Command::Announce(membership));
    }
}

#[cfg(test)]
mod tests;
