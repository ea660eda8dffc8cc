//! Fuzz target: no byte string may make the frame opener or the message decoder panic.
//! Replica 0 of a fixed 4-replica f=1 cluster opens every input, so inputs that reach past
//! the envelope decoder exercise the sender lookup and the MAC check too.

#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use zz_protocol::crypto::{NodeKeys, ReplicaVerifyingKeys, SessionKey, signing_key_from_bytes};
use zz_protocol::messages::Message;
use zz_protocol::{Digest, Endpoint, NodeId, ProtocolParams, ReplicaId};

/// Deterministic key material, derived as the simulator derives it.
fn derive(label: &[u8], a: u64, b: u64) -> [u8; 32] {
    Digest::of(&[b"zz fuzz key", label, &a.to_le_bytes(), &b.to_le_bytes()]).0
}

fn replica_keys(replica: ReplicaId, replica_count: u32) -> NodeKeys {
    let peer_keys = (0..replica_count)
        .map(ReplicaId)
        .filter(|peer| *peer != replica)
        .map(|peer| {
            let (low, high) = (replica.0.min(peer.0), replica.0.max(peer.0));
            let key = SessionKey(derive(b"pair", low as u64, high as u64));
            (NodeId::Replica(peer), key)
        })
        .collect();
    NodeKeys {
        id: NodeId::Replica(replica),
        peer_keys,
        client_master: Some(SessionKey(derive(b"client master", replica.0 as u64, 0))),
        signing_key: Some(signing_key_from_bytes(derive(
            b"signing",
            replica.0 as u64,
            0,
        ))),
    }
}

fn endpoint() -> &'static Endpoint {
    static ENDPOINT: OnceLock<Endpoint> = OnceLock::new();
    ENDPOINT.get_or_init(|| {
        let params = ProtocolParams::default();
        let replica_count = params.replica_count() as u32;
        let verifying_keys = ReplicaVerifyingKeys(
            (0..replica_count)
                .map(|replica| {
                    replica_keys(ReplicaId(replica), replica_count)
                        .signing_key
                        .expect("replicas sign")
                        .verifying_key()
                })
                .collect(),
        );
        Endpoint::new(
            replica_keys(ReplicaId(0), replica_count),
            verifying_keys,
            params,
        )
    })
}

fuzz_target!(|data: &[u8]| {
    let _ = endpoint().open(data);
    let _ = postcard::from_bytes::<Message>(data);
});
