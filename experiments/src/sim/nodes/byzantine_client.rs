//! A Byzantine client: a provisioned client id whose owner attacks the platform through
//! the front door. Every few milliseconds it sends one of its attacks to the agreement
//! replicas; the checkers must still see safety, and the correct clients liveness.
//!
//! Its attacks, and what must come of them:
//! - partial authenticators: a genuine request, signed, with the MAC slots of some replicas
//!   spoiled (the primary's among them, now and then): ordered like any other, and no view
//!   change for it;
//! - a spoiled signature (valid MACs): refused by every replica, never ordered;
//! - an app no replica hosts: refused;
//! - an id outside the provisioned range, with MACs derived for it: refused;
//! - a replay of a frame a correct client sent: a retransmission at most (its wakes are
//!   rate-limited per client);
//! - a flood: many new requests at once.

use super::super::world::{Event, World};
use bytes::Bytes;
use zz_protocol::messages::{AuthenticatedRequest, Message, Request};
use zz_protocol::{AppId, Endpoint, NodeId, ReplicaId};

/// Requests a flood sends at once.
pub(crate) const FLOOD_REQUESTS: u64 = 16;

/// The kinds of attack, drawn one per firing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ClientAttack {
    PartialAuthenticator,
    BadSignature,
    UnknownApp,
    UnprovisionedId,
    Replay,
    Flood,
}

const ATTACKS: [ClientAttack; 6] = [
    ClientAttack::PartialAuthenticator,
    ClientAttack::BadSignature,
    ClientAttack::UnknownApp,
    ClientAttack::UnprovisionedId,
    ClientAttack::Replay,
    ClientAttack::Flood,
];

pub(crate) struct SimByzantineClient {
    /// Its own, provisioned, id's endpoint.
    pub(crate) endpoint: Endpoint,
    /// An endpoint for an id no replica provisions (its keys derived anyway).
    pub(crate) unprovisioned: Endpoint,
    pub(crate) every_micros: u64,
    pub(crate) next_timestamp: u64,
    /// Attacks sent so far, by kind (in [`ATTACKS`] order).
    pub(crate) sent: [u64; ATTACKS.len()],
}

impl SimByzantineClient {
    fn fresh_request(&mut self, endpoint: &Endpoint, app: AppId) -> AuthenticatedRequest {
        self.next_timestamp += 1;
        let NodeId::Client(client) = endpoint.id() else {
            unreachable!("a client endpoint")
        };
        endpoint.authenticate_request(Request {
            app,
            client,
            timestamp: self.next_timestamp,
            op: zz_apps::kv::encode_op(&zz_apps::kv::Op::Put {
                key: b"byzantine".to_vec(),
                value: self.next_timestamp.to_le_bytes().to_vec(),
            }),
        })
    }
}

impl World {
    /// Fire the Byzantine client's next attack and schedule the one after.
    pub(crate) fn byzantine_client_timer(&mut self) {
        let Some(mut attacker) = self.byzantine_client.take() else {
            return;
        };
        let replica_count = self.scenario.params.replica_count() as u32;
        let all: Vec<NodeId> = (0..replica_count)
            .map(|r| NodeId::Replica(ReplicaId(r)))
            .collect();
        let index = self.rng.range(0, ATTACKS.len() as u64 - 1) as usize;
        attacker.sent[index] += 1;
        let own = attacker.endpoint.clone();
        let mut frames: Vec<(NodeId, NodeId, Bytes)> = Vec::new();
        let mut send = |endpoint: &Endpoint, request: AuthenticatedRequest, to: &[NodeId]| {
            let message = Message::Request(request);
            for to in to {
                if let Some(frame) = endpoint.seal(*to, &message) {
                    frames.push((endpoint.id(), *to, Bytes::from(frame)));
                }
            }
        };
        match ATTACKS[index] {
            ClientAttack::PartialAuthenticator => {
                let mut request = attacker.fresh_request(&own, AppId(0));
                // Spoil at least one slot (the primary's, now and then) and leave at least one.
                let spoiled = self.rng.range(1, replica_count as u64 - 1);
                let start = self.rng.range(0, replica_count as u64 - 1);
                for offset in 0..spoiled {
                    let slot = ((start + offset) % replica_count as u64) as usize;
                    request.auth.0[slot][0] ^= 0x5a;
                }
                send(&own, request, &all);
            }
            ClientAttack::BadSignature => {
                let mut request = attacker.fresh_request(&own, AppId(1));
                request.signature.0[3] ^= 1;
                send(&own, request, &all);
            }
            ClientAttack::UnknownApp => {
                let app = AppId(self.rng.range(2, 1_000) as u32);
                let request = attacker.fresh_request(&own, app);
                send(&own, request, &all);
            }
            ClientAttack::UnprovisionedId => {
                let other = attacker.unprovisioned.clone();
                let request = attacker.fresh_request(&other, AppId(0));
                send(&other, request, &all);
            }
            ClientAttack::Replay => {
                if let Some((from, to, frame)) = self.last_client_frame.clone() {
                    frames.push((from, to, frame));
                }
            }
            ClientAttack::Flood => {
                for _ in 0..FLOOD_REQUESTS {
                    let app = AppId(self.rng.range(0, 1) as u32);
                    let request = attacker.fresh_request(&own, app);
                    send(&own, request, &all);
                }
            }
        }
        let next = self.now.saturating_add_micros(attacker.every_micros);
        self.byzantine_client = Some(attacker);
        for (from, to, frame) in frames {
            self.route(from, to, frame);
        }
        self.schedule(next, Event::ByzantineClientTimer);
    }

    /// Attacks the Byzantine client sent, in total.
    pub(crate) fn byzantine_client_attacks(&self) -> u64 {
        (self.byzantine_client.as_ref()).map_or(0, |attacker| attacker.sent.iter().sum())
    }
}
