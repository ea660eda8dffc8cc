//! The request queue (PBFT section 4.1): requests known to this replica and not ordered
//! yet, one per client, with the order in which they reached the primary, for fairness.
//! A request waiting here runs the backups' view-change timer.

use super::{DropReason, Output, Replica, WAITING_CLIENTS_MAX};
use std::collections::{BTreeMap, VecDeque};
use zz_protocol::messages::{AuthenticatedRequest, Message};
use zz_protocol::{ClientId, NodeId, Time};

/// Requests waiting to be ordered.
#[derive(Default)]
pub(super) struct RequestQueue {
    /// The newest request of each client, until it is ordered.
    pub(super) waiting: BTreeMap<ClientId, Waiting>,
    /// Primary only: the order in which waiting requests arrived, for fairness.
    pub(super) arrivals: VecDeque<(ClientId, u64)>,
    /// Primary only: the timestamp of each client's request proposed in this view and
    /// perhaps not executed yet. A client gets one request in flight at a time: one that
    /// sends new requests without waiting for replies (a Byzantine client) would otherwise
    /// fill every batch of the pipeline and delay correct clients past their timeouts.
    pub(super) in_flight: BTreeMap<ClientId, u64>,
}

/// A request known to this replica and not ordered yet.
#[derive(Clone, Debug)]
pub(super) struct Waiting {
    pub(super) request: AuthenticatedRequest,
    pub(super) since: Time,
    pub(super) proposed: bool,
    /// Whether its signature was checked here (a request message), or only this replica's
    /// MAC slot may have been (seen in a pre-prepare). Only a checked request may be
    /// proposed: one whose signature a Byzantine primary spoiled, leaving this replica's
    /// slot alone, would make other backups refuse the batch.
    pub(super) verified: bool,
}

impl Replica {
    /// PBFT section 4.1: a request with the timestamp last ordered for its client is a
    /// retransmission (answered again), an older one is ignored, a newer one is ordered.
    pub(super) fn handle_request(&mut self, from: NodeId, request: AuthenticatedRequest) {
        let client = request.request.client;
        let timestamp = request.request.timestamp;
        let last = self.exec.clients.get(&client).copied();
        if let Some((last, app)) = last
            && timestamp <= last
        {
            // The app is the one ordered: a "retransmission" naming another app is not
            // that request, and must not wake another app's standbys.
            if timestamp == last && request.request.app == app {
                self.outputs.push_back(Output::AlreadyOrdered {
                    app,
                    client,
                    timestamp,
                });
            } else {
                self.drop_message(DropReason::StaleRequest);
            }
            return;
        }
        let from_client = matches!(from, NodeId::Client(_));
        // A checked copy replaces an unchecked one of the same timestamp.
        let known = (self.requests.waiting.get(&client)).is_some_and(|waiting| {
            let waiting_timestamp = waiting.request.request.timestamp;
            waiting_timestamp > timestamp || (waiting_timestamp == timestamp && waiting.verified)
        });
        if !known {
            if !self.remember_request(request.clone()) {
                return;
            }
            if self.is_primary() && self.normal {
                if self.requests.arrivals.len() >= 2 * WAITING_CLIENTS_MAX {
                    // Clients that replaced their request left stale arrivals behind.
                    let waiting = &self.requests.waiting;
                    self.requests.arrivals.retain(|(client, timestamp)| {
                        waiting.get(client).is_some_and(|w| {
                            w.request.request.timestamp == *timestamp && !w.proposed
                        })
                    });
                }
                self.requests.arrivals.push_back((client, timestamp));
            }
        }
        // A backup that hears from a client directly relays to the primary (section 4.4).
        if from_client && !self.is_primary() {
            let primary = self.primary_of(self.view);
            self.send(primary, Message::Request(request));
        }
    }

    /// Track a request (its signature checked) until it is ordered. Returns false when the
    /// table is full.
    fn remember_request(&mut self, request: AuthenticatedRequest) -> bool {
        let client = request.request.client;
        if !self.requests.waiting.contains_key(&client)
            && self.requests.waiting.len() >= WAITING_CLIENTS_MAX
        {
            self.drop_message(DropReason::WaitingTableFull);
            return false;
        }
        let since = self.now;
        self.requests.waiting.insert(
            client,
            Waiting {
                request,
                since,
                proposed: false,
                verified: true,
            },
        );
        true
    }

    /// A backup that sees a request in a pre-prepare waits for it to execute (its
    /// view-change timer runs until then).
    pub(super) fn note_request_in_flight(&mut self, request: &AuthenticatedRequest) {
        let client = request.request.client;
        let timestamp = request.request.timestamp;
        let executed = self.exec.clients.get(&client).map_or(0, |(last, _)| *last);
        let known = self
            .requests
            .waiting
            .get(&client)
            .is_some_and(|waiting| waiting.request.request.timestamp >= timestamp);
        if timestamp > executed
            && !known
            && self.requests.waiting.len() < super::WAITING_CLIENTS_MAX
        {
            let waiting = Waiting {
                request: request.clone(),
                since: self.now,
                proposed: true,
                verified: false,
            };
            self.requests.waiting.insert(client, waiting);
        }
    }

    pub(super) fn take_proposable_requests(&mut self) -> Vec<AuthenticatedRequest> {
        let limit = self.config.params.batch_size_max;
        let executed_of = |replica: &Replica, client: &ClientId| {
            replica
                .exec
                .clients
                .get(client)
                .map_or(0, |(last, _)| *last)
        };
        let in_flight_max = limit * self.config.params.pipeline_max as usize;
        if self.requests.in_flight.len() > in_flight_max {
            let executed = &self.exec.clients;
            (self.requests.in_flight).retain(|client, proposed| {
                *proposed > executed.get(client).map_or(0, |(last, _)| *last)
            });
        }
        let mut requests = Vec::new();
        let mut deferred = Vec::new();
        while requests.len() < limit {
            let Some((client, timestamp)) = self.requests.arrivals.pop_front() else {
                break;
            };
            let executed = executed_of(self, &client);
            let Some(waiting) = self.requests.waiting.get_mut(&client) else {
                continue;
            };
            if waiting.request.request.timestamp != timestamp
                || waiting.proposed
                || !waiting.verified
                || timestamp <= executed
            {
                continue;
            }
            if (self.requests.in_flight.get(&client)).is_some_and(|proposed| *proposed > executed) {
                // Its previous request is still being ordered: this one waits its turn.
                deferred.push((client, timestamp));
                continue;
            }
            waiting.proposed = true;
            requests.push(waiting.request.clone());
            self.requests.in_flight.insert(client, timestamp);
        }
        for entry in deferred.into_iter().rev() {
            self.requests.arrivals.push_front(entry);
        }
        requests
    }
}
