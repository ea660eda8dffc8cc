//! Fuzz target: no byte string may make the frame opener or the message decoder panic.
//! Replica 0 of a fixed 4-replica f=1 cluster opens every input, so inputs that reach past
//! the envelope decoder exercise the sender lookup and the MAC check too.

#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use zz_protocol::derived_keys::DerivedKeys;
use zz_protocol::messages::Message;
use zz_protocol::{Endpoint, ProtocolParams, ReplicaId};

fn endpoint() -> &'static Endpoint {
    static ENDPOINT: OnceLock<Endpoint> = OnceLock::new();
    ENDPOINT.get_or_init(|| {
        DerivedKeys::new(0, &ProtocolParams::default()).replica_endpoint(ReplicaId(0))
    })
}

fuzz_target!(|data: &[u8]| {
    let _ = endpoint().open(data);
    let _ = postcard::from_bytes::<Message>(data);
});
