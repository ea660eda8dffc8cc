//! The sans-IO client: one outstanding request at a time, sent to the replica it believes
//! is primary, retransmitted to every replica when no f+1 matching replies come in time
//! (PBFT section 4.1). A result is accepted only when f+1 distinct replicas vouch for it.
//!
//! Calling protocol: [`ClientCore::submit`] a request, then feed replies with
//! [`ClientCore::handle_reply`] and expiries with [`ClientCore::handle_timeout`]; drain
//! [`ClientCore::poll_send`] after each call and ask [`ClientCore::poll_timeout`] for the
//! next deadline. `handle_reply` returns the accepted result once.

use std::collections::BTreeMap;
use zz_protocol::messages::{AuthenticatedRequest, Reply};
use zz_protocol::{AppId, NodeId, ReplicaId, Time, View};

/// Where a request goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Destination {
    Replica(ReplicaId),
    AllReplicas,
}

impl Destination {
    /// The agreement replicas, of a cluster of `replica_count`, that the request goes to.
    pub fn replicas(self, replica_count: u32) -> impl Iterator<Item = ReplicaId> {
        let ids = match self {
            Destination::Replica(replica) => replica.0..replica.0 + 1,
            Destination::AllReplicas => 0..replica_count,
        };
        ids.map(ReplicaId)
    }
}

/// Whose replies count, per app: the app's execution replicas, or the agreement replicas
/// for an app they answer themselves (one without execution replicas). Votes from anyone
/// else are ignored, so faulty nodes of two kinds can never add up to f+1.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Voters {
    pub agreement: Vec<NodeId>,
    pub groups: BTreeMap<AppId, Vec<NodeId>>,
}

impl Voters {
    /// Agreement replicas 0..n answer for every app.
    pub fn agreement_only(replica_count: usize) -> Voters {
        Voters {
            agreement: (0..replica_count as u32)
                .map(|replica| NodeId::Replica(ReplicaId(replica)))
                .collect(),
            groups: BTreeMap::new(),
        }
    }

    pub fn for_app(&self, app: AppId) -> &[NodeId] {
        self.groups.get(&app).unwrap_or(&self.agreement)
    }
}

/// A result f+1 replicas vouched for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Accepted {
    pub timestamp: u64,
    pub result: Vec<u8>,
    /// The voters whose replies matched (at least f+1), in id order.
    pub voters: Vec<NodeId>,
}

struct Outstanding {
    request: AuthenticatedRequest,
    retransmit_at: Time,
    /// At most one reply per voter: the latest it sent.
    replies: BTreeMap<NodeId, Vec<u8>>,
}

/// The client's state machine. See the module documentation.
pub struct ClientCore {
    replica_count: usize,
    voters: Voters,
    weak_quorum: usize,
    retransmit_micros: u64,
    view_guess: View,
    outstanding: Option<Outstanding>,
    sends: Vec<(Destination, AuthenticatedRequest)>,
}

impl ClientCore {
    /// A client whose results need f+1 matching replies from the request's app's voters.
    pub fn new(f: usize, retransmit_micros: u64, voters: Voters) -> ClientCore {
        ClientCore {
            replica_count: 3 * f + 1,
            voters,
            weak_quorum: f + 1,
            retransmit_micros,
            view_guess: View(0),
            outstanding: None,
            sends: Vec::new(),
        }
    }

    pub fn is_busy(&self) -> bool {
        self.outstanding.is_some()
    }

    /// Start a request; the previous one must have been accepted or abandoned.
    pub fn submit(&mut self, now: Time, request: AuthenticatedRequest) {
        assert!(
            self.outstanding.is_none(),
            "one outstanding request per client"
        );
        let primary = self.view_guess.primary(self.replica_count);
        self.sends
            .push((Destination::Replica(primary), request.clone()));
        self.outstanding = Some(Outstanding {
            request,
            retransmit_at: now.saturating_add_micros(self.retransmit_micros),
            replies: BTreeMap::new(),
        });
    }

    /// Give up on the outstanding request (its deadline passed).
    pub fn abandon(&mut self) {
        self.outstanding = None;
    }

    /// A reply from `from`; returns the result once f+1 voters agree on it.
    pub fn handle_reply(&mut self, from: NodeId, reply: Reply) -> Option<Accepted> {
        let outstanding = self.outstanding.as_mut()?;
        if !self
            .voters
            .for_app(outstanding.request.request.app)
            .contains(&from)
        {
            return None;
        }
        let request = &outstanding.request.request;
        if reply.client != request.client || reply.timestamp != request.timestamp {
            return None;
        }
        self.view_guess = self.view_guess.max(reply.view);
        outstanding.replies.insert(from, reply.result.clone());
        let matching = outstanding
            .replies
            .values()
            .filter(|result| **result == reply.result)
            .count();
        if matching < self.weak_quorum {
            return None;
        }
        let timestamp = request.timestamp;
        let voters = (outstanding.replies.iter())
            .filter(|(_, result)| **result == reply.result)
            .map(|(voter, _)| *voter)
            .collect();
        self.outstanding = None;
        Some(Accepted {
            timestamp,
            result: reply.result,
            voters,
        })
    }

    pub fn handle_timeout(&mut self, now: Time) {
        let retransmit_micros = self.retransmit_micros;
        if let Some(outstanding) = self.outstanding.as_mut()
            && now >= outstanding.retransmit_at
        {
            outstanding.retransmit_at = now.saturating_add_micros(retransmit_micros);
            self.sends
                .push((Destination::AllReplicas, outstanding.request.clone()));
        }
    }

    pub fn voters(&self) -> &Voters {
        &self.voters
    }

    pub fn poll_timeout(&self) -> Option<Time> {
        self.outstanding
            .as_ref()
            .map(|outstanding| outstanding.retransmit_at)
    }

    /// Requests to send since the last call.
    pub fn poll_send(&mut self) -> Vec<(Destination, AuthenticatedRequest)> {
        std::mem::take(&mut self.sends)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zz_protocol::crypto::Authenticator;
    use zz_protocol::messages::Request;
    use zz_protocol::{AppId, ClientId};

    fn request(timestamp: u64) -> AuthenticatedRequest {
        AuthenticatedRequest {
            request: Request {
                app: AppId(0),
                client: ClientId(1),
                timestamp,
                op: vec![],
            },
            auth: Authenticator(vec![]),
            signature: zz_protocol::crypto::Signature([0; 32], [0; 32]),
        }
    }

    fn reply(timestamp: u64, result: &[u8]) -> Reply {
        Reply {
            view: View(0),
            client: ClientId(1),
            timestamp,
            result: result.to_vec(),
        }
    }

    fn agreement_voters() -> Voters {
        Voters::agreement_only(4)
    }

    fn r(id: u32) -> NodeId {
        NodeId::Replica(ReplicaId(id))
    }

    #[test]
    fn a_result_needs_f_plus_one_distinct_matching_replies() {
        let mut client = ClientCore::new(1, 1000, agreement_voters());
        client.submit(Time(0), request(1));
        assert_eq!(client.handle_reply(r(0), reply(1, b"x")), None);
        // The same replica again does not count twice.
        assert_eq!(client.handle_reply(r(0), reply(1, b"x")), None);
        // A different result does not match.
        assert_eq!(client.handle_reply(r(1), reply(1, b"y")), None);
        // A reply to another timestamp is ignored.
        assert_eq!(client.handle_reply(r(2), reply(2, b"x")), None);
        // A node that is not a voter does not count.
        let outsider = NodeId::Execution(zz_protocol::ExecutionId(0));
        assert_eq!(client.handle_reply(outsider, reply(1, b"x")), None);
        let accepted = client.handle_reply(r(3), reply(1, b"x")).unwrap();
        assert_eq!(accepted.result, b"x");
        assert!(!client.is_busy());
    }

    #[test]
    fn retransmits_to_all_replicas_after_the_timeout() {
        let mut client = ClientCore::new(1, 1000, agreement_voters());
        client.submit(Time(0), request(1));
        assert_eq!(client.poll_send()[0].0, Destination::Replica(ReplicaId(0)));
        client.handle_timeout(Time(999));
        assert!(client.poll_send().is_empty());
        client.handle_timeout(Time(1000));
        assert_eq!(client.poll_send()[0].0, Destination::AllReplicas);
    }

    #[test]
    fn a_destination_names_one_replica_or_every_one() {
        let one: Vec<_> = Destination::Replica(ReplicaId(2)).replicas(4).collect();
        assert_eq!(one, [ReplicaId(2)]);
        let all: Vec<_> = Destination::AllReplicas.replicas(4).collect();
        assert_eq!(all, (0..4).map(ReplicaId).collect::<Vec<_>>());
    }
}
