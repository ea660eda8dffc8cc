//! Simulated clients: the real sans-IO client core, each sending its share of the workload
//! to one app, one request at a time, with a random think time between them. A result
//! counts as accepted when f+1 of the app's execution replicas vouch for it; the checker
//! then compares it with what correct replicas ordered and replied.

use super::super::violation::Violation;
use super::super::world::{Event, World};
use super::APPS;
use bytes::Bytes;
use zz_agreement::liaison::membership::ExecutionGroups;
use zz_client::{ClientCore, Destination, Voters};
use zz_protocol::messages::{Message, Request};
use zz_protocol::{AppId, ClientId, Endpoint, NodeId, Time};

pub(crate) struct SimClient {
    pub(crate) core: ClientCore,
    pub(crate) endpoint: Endpoint,
    pub(crate) next_timestamp: u64,
    pub(crate) remaining: u64,
    pub(crate) next_submit_at: Option<Time>,
    pub(crate) timer_generation: u64,
}

impl World {
    pub(crate) fn deliver_to_client(
        &mut self,
        from: NodeId,
        id: ClientId,
        frame: &[u8],
    ) -> Result<(), Violation> {
        // Replies to the Byzantine client (or the ids it made up) are not checked.
        let Some(client) = self.clients.get_mut(id.0 as usize) else {
            return Ok(());
        };
        let Ok(verified) = client.endpoint.open(frame) else {
            return Ok(());
        };
        let (replier, Message::Reply(reply)) = verified.into_parts() else {
            return Ok(());
        };
        debug_assert_eq!(from, replier);
        if let Some(accepted) = client.core.handle_reply(replier, reply) {
            (self.checker).check_accepted(id, &accepted, &mut self.stats)?;
            self.stats.requests_accepted += 1;
            let think = self.rng.range(0, 50_000);
            let client = &mut self.clients[id.0 as usize];
            if client.remaining > 0 {
                client.next_submit_at = Some(self.now.saturating_add_micros(think));
            }
        }
        self.reschedule_client(id);
        Ok(())
    }

    /// The client's timer fired, unless a later deadline replaced it: submit the next
    /// request if it is due, and let the core retransmit.
    pub(crate) fn client_timer(&mut self, id: ClientId, generation: u64) {
        if self.clients[id.0 as usize].timer_generation != generation {
            return;
        }
        let now = self.now;
        let client = &mut self.clients[id.0 as usize];
        if let Some(at) = client.next_submit_at
            && now >= at
            && !client.core.is_busy()
            && client.remaining > 0
        {
            client.next_submit_at = None;
            client.remaining -= 1;
            let app = client_app(id);
            let timestamp = client.next_timestamp;
            let size =
                (self.scenario.large_requests).then_some(self.scenario.params.request_bytes_max);
            let request = Request {
                app,
                client: id,
                timestamp,
                op: client_op(app, id, timestamp, size),
            };
            client.next_timestamp += 1;
            let request = client.endpoint.authenticate_request(request);
            client.core.submit(now, request);
        }
        client.core.handle_timeout(now);
        self.flush_client(id);
        self.reschedule_client(id);
    }

    fn flush_client(&mut self, id: ClientId) {
        let client = &mut self.clients[id.0 as usize];
        let mut frames = Vec::new();
        let replica_count = self.scenario.params.replica_count() as u32;
        for (destination, request) in client.core.poll_send() {
            // A retransmission also asks the app's execution replicas, which answer it
            // from their reply caches if they executed it already.
            let executions: &[_] = match destination {
                Destination::Replica(_) => &[],
                Destination::AllReplicas => &self.groups[&request.request.app],
            };
            let message = Message::Request(request);
            let destinations = (destination.replicas(replica_count))
                .map(NodeId::Replica)
                .chain(executions.iter().map(|member| NodeId::Execution(*member)));
            for to in destinations {
                if let Some(frame) = client.endpoint.seal(to, &message) {
                    frames.push((to, Bytes::from(frame)));
                }
            }
        }
        for (to, frame) in frames {
            self.last_client_frame = Some((NodeId::Client(id), to, frame.clone()));
            self.route(NodeId::Client(id), to, frame);
        }
    }

    pub(crate) fn reschedule_client(&mut self, id: ClientId) {
        let client = &mut self.clients[id.0 as usize];
        let deadline = [client.next_submit_at, client.core.poll_timeout()]
            .into_iter()
            .flatten()
            .min();
        if let Some(at) = deadline {
            client.timer_generation += 1;
            let generation = client.timer_generation;
            let at = at.max(self.now);
            self.schedule(
                at,
                Event::ClientTimer {
                    client: id,
                    generation,
                },
            );
        }
    }
}

/// Agreement replicas vote for nothing here: every app has execution replicas.
pub(crate) fn voters(replica_count: usize, groups: &ExecutionGroups) -> Voters {
    Voters {
        groups: groups
            .iter()
            .map(|(app, members)| {
                (
                    *app,
                    members.iter().map(|m| NodeId::Execution(*m)).collect(),
                )
            })
            .collect(),
        ..Voters::agreement_only(replica_count)
    }
}

/// Which app a simulated client uses: both apps get traffic.
fn client_app(client: ClientId) -> AppId {
    AppId((client.0 % APPS.len() as u64) as u32)
}

/// A deterministic operation for `app`: kv clients write and read a few shared keys, so
/// results depend on the order of execution; null clients send a small payload. With
/// `size`, writes and payloads are padded to exactly that many bytes.
fn client_op(app: AppId, client: ClientId, timestamp: u64, size: Option<usize>) -> Vec<u8> {
    let op = plain_client_op(app, client, timestamp);
    let Some(size) = size else {
        return op;
    };
    match APPS[app.0 as usize] {
        "kv" => {
            let key = format!("k{}", (client.0 + timestamp) % 3).into_bytes();
            if timestamp.is_multiple_of(3) {
                return op;
            }
            let mut value = timestamp.to_le_bytes().to_vec();
            let put = |value: Vec<u8>| {
                zz_apps::kv::encode_op(&zz_apps::kv::Op::Put {
                    key: key.clone(),
                    value,
                })
            };
            // The encoding's overhead does not depend on the value's contents.
            let overhead = put(Vec::new()).len() + 8;
            value.resize(size.saturating_sub(overhead).max(8), 0xab);
            let padded = put(value);
            assert!(
                padded.len() <= size,
                "a padded request stays within the limit"
            );
            padded
        }
        _ => {
            let mut padded = op;
            padded.resize(size, 0xab);
            padded
        }
    }
}

fn plain_client_op(app: AppId, client: ClientId, timestamp: u64) -> Vec<u8> {
    match APPS[app.0 as usize] {
        "kv" => {
            let key = format!("k{}", (client.0 + timestamp) % 3).into_bytes();
            let op = if timestamp.is_multiple_of(3) {
                zz_apps::kv::Op::Get { key }
            } else {
                zz_apps::kv::Op::Put {
                    key,
                    value: timestamp.to_le_bytes().to_vec(),
                }
            };
            zz_apps::kv::encode_op(&op)
        }
        _ => timestamp.to_le_bytes().to_vec(),
    }
}
