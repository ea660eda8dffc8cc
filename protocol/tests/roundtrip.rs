//! Property tests for the wire codec: every message survives a postcard round trip, every
//! envelope does too, a sealed frame opens to the message that went in and to nothing else
//! once any byte of it changes, `Endpoint::open` turns any byte string into an answer
//! (never a panic), and a signature binds every field of what it signs.
//!
//! Keys are derived deterministically, as the simulator derives them, for a 4-replica f=1
//! cluster (`ProtocolParams::default()`).

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;
use std::collections::BTreeSet;
use std::sync::OnceLock;
use zz_protocol::crypto::{
    Authenticator, Ed25519SigningKey, Mac, ReplicaVerifyingKeys, Signature, Signed,
};
use zz_protocol::derived_keys::DerivedKeys;
use zz_protocol::envelope::{Auth, Envelope, encode_envelope};
use zz_protocol::messages::{
    AppHead, AppOrder, AuthenticatedRequest, Batch, Batches, BucketData, ChainedOrders, Checkpoint,
    CheckpointCertificate, CheckpointState, Commit, Executed, ExecutionCheckpoint, FaultReason,
    Faulty, FetchBatches, FetchBucket, FetchChainedOrders, FetchOrders, FetchProposals, Join,
    Membership, Message, NewView, NonDet, PrePrepareHeader, Prepare, PreparedCertificate, Proposal,
    Reply, Request, StabilityCertificate, Status, ViewChange, Wake, WakeReason,
};
use zz_protocol::{
    AppId, ClientId, Digest, Endpoint, ExecutionId, NodeId, ProtocolParams, ReplicaId, Seq, View,
};

/// Cases per property: enough to reach the corners of the encoding, few enough that the
/// whole file runs in seconds.
const CASES: u32 = 64;

/// Collections in generated messages hold fewer than this many items.
const COLLECTION_SIZE_MAX: usize = 4;

// ---------------------------------------------------------------------------------------
// Keys: a 4-replica cluster with keys derived from a fixed seed.
// ---------------------------------------------------------------------------------------

fn params() -> ProtocolParams {
    ProtocolParams::default()
}

/// The fixed cluster every sealing test uses: one endpoint per replica, one client.
struct Cluster {
    replicas: Vec<Endpoint>,
    client: Endpoint,
    verifying_keys: ReplicaVerifyingKeys,
}

const CLIENT: ClientId = ClientId(7);

fn cluster() -> &'static Cluster {
    static CLUSTER: OnceLock<Cluster> = OnceLock::new();
    CLUSTER.get_or_init(|| {
        let keys = DerivedKeys::new(0, &params());
        let replica_count = params().replica_count() as u32;
        Cluster {
            replicas: (0..replica_count)
                .map(|replica| keys.replica_endpoint(ReplicaId(replica)))
                .collect(),
            client: keys.client_endpoint(CLIENT),
            verifying_keys: keys.verifying_keys(),
        }
    })
}

fn replica(id: u32) -> &'static Endpoint {
    &cluster().replicas[id as usize]
}

fn signing_key(id: ReplicaId) -> Ed25519SigningKey {
    replica(id.0)
        .keys()
        .signing_key
        .clone()
        .expect("replicas sign")
}

// ---------------------------------------------------------------------------------------
// Strategies: one per wire type, bottom up.
// ---------------------------------------------------------------------------------------

/// Varint boundaries matter to postcard: mix small values, the largest value, and anything.
fn any_u64() -> impl Strategy<Value = u64> {
    prop_oneof![
        0..300u64,
        Just(u64::MAX),
        (1u32..64).prop_map(|shift| 1u64 << shift),
        any::<u64>(),
    ]
}

fn any_u32() -> impl Strategy<Value = u32> {
    prop_oneof![0..8u32, Just(u32::MAX), any::<u32>()]
}

fn view() -> impl Strategy<Value = View> {
    any_u64().prop_map(View)
}

fn seq() -> impl Strategy<Value = Seq> {
    any_u64().prop_map(Seq)
}

fn replica_id() -> impl Strategy<Value = ReplicaId> {
    any_u32().prop_map(ReplicaId)
}

fn client_id() -> impl Strategy<Value = ClientId> {
    any_u64().prop_map(ClientId)
}

fn app_id() -> impl Strategy<Value = AppId> {
    any_u32().prop_map(AppId)
}

fn node_id() -> impl Strategy<Value = NodeId> {
    prop_oneof![
        replica_id().prop_map(NodeId::Replica),
        client_id().prop_map(NodeId::Client),
        any_u32().prop_map(|id| NodeId::Execution(ExecutionId(id))),
        any_u32().prop_map(|id| NodeId::Activator(zz_protocol::ActivatorId(id))),
    ]
}

fn digest() -> impl Strategy<Value = Digest> {
    any::<[u8; 32]>().prop_map(Digest)
}

fn mac() -> impl Strategy<Value = Mac> {
    any::<[u8; 32]>()
}

fn bytes() -> impl Strategy<Value = Vec<u8>> {
    vec(any::<u8>(), 0..24)
}

/// Arbitrary signature bytes: the codec must carry them whether or not they verify.
fn signature() -> impl Strategy<Value = Signature> {
    (any::<[u8; 32]>(), any::<[u8; 32]>()).prop_map(|(low, high)| Signature(low, high))
}

fn signed<T: Clone + std::fmt::Debug>(
    body: impl Strategy<Value = T>,
) -> impl Strategy<Value = Signed<T>> {
    (body, replica_id(), signature()).prop_map(|(body, signer, signature)| Signed {
        body,
        signer,
        signature,
    })
}

fn authenticator() -> impl Strategy<Value = Authenticator> {
    vec(mac(), 0..COLLECTION_SIZE_MAX).prop_map(Authenticator)
}

prop_compose! {
    fn request()(app in app_id(), client in client_id(), timestamp in any_u64(), op in bytes())
        -> Request {
        Request { app, client, timestamp, op }
    }
}

prop_compose! {
    fn authenticated_request()(
        request in request(),
        auth in authenticator(),
        signature in signature(),
    ) -> AuthenticatedRequest {
        AuthenticatedRequest { request, auth, signature }
    }
}

prop_compose! {
    fn nondet()(timestamp_ms in any_u64(), seed in any_u64()) -> NonDet {
        NonDet { timestamp_ms, seed }
    }
}

prop_compose! {
    fn batch()(
        requests in vec(authenticated_request(), 0..COLLECTION_SIZE_MAX),
        nondet in nondet(),
        stability in vec(stability_certificate(), 0..3),
    ) -> Batch {
        Batch { requests, nondet, stability }
    }
}

prop_compose! {
    fn stability_certificate()(
        checkpoint in execution_checkpoint(),
        votes in vec(signed(execution_checkpoint()), 0..3),
    ) -> StabilityCertificate {
        StabilityCertificate { checkpoint, votes }
    }
}

prop_compose! {
    fn pre_prepare_header()(view in view(), seq in seq(), digest in digest()) -> PrePrepareHeader {
        PrePrepareHeader { view, seq, digest }
    }
}

prop_compose! {
    fn prepare()(view in view(), seq in seq(), digest in digest()) -> Prepare {
        Prepare { view, seq, digest }
    }
}

prop_compose! {
    fn commit()(view in view(), seq in seq(), digest in digest()) -> Commit {
        Commit { view, seq, digest }
    }
}

prop_compose! {
    fn checkpoint()(seq in seq(), digest in digest()) -> Checkpoint {
        Checkpoint { seq, digest }
    }
}

prop_compose! {
    fn checkpoint_certificate()(
        seq in seq(),
        digest in digest(),
        votes in vec(signed(checkpoint()), 0..COLLECTION_SIZE_MAX),
    ) -> CheckpointCertificate {
        CheckpointCertificate { seq, digest, votes }
    }
}

prop_compose! {
    fn prepared_certificate()(
        pre_prepare in signed(pre_prepare_header()),
        prepares in vec(signed(prepare()), 0..COLLECTION_SIZE_MAX),
    ) -> PreparedCertificate {
        PreparedCertificate { pre_prepare, prepares }
    }
}

prop_compose! {
    fn view_change()(
        new_view in view(),
        stable in checkpoint_certificate(),
        prepared in vec(prepared_certificate(), 0..COLLECTION_SIZE_MAX),
    ) -> ViewChange {
        ViewChange { new_view, stable, prepared }
    }
}

prop_compose! {
    fn new_view()(
        view in view(),
        view_changes in vec(signed(view_change()), 0..COLLECTION_SIZE_MAX),
        entries in vec(signed(pre_prepare_header()), 0..COLLECTION_SIZE_MAX),
    ) -> NewView {
        NewView { view, view_changes, entries }
    }
}

prop_compose! {
    fn checkpoint_state()(
        seq in seq(),
        chain in digest(),
        last_timestamp_ms in any_u64(),
        clients in vec((client_id(), any_u64(), app_id()), 0..COLLECTION_SIZE_MAX),
        apps in vec(
            (app_id(), seq(), digest(), proptest::option::of((seq(), digest())))
                .prop_map(|(app, seq, chain, stable)| AppHead { app, seq, chain, stable }),
            0..COLLECTION_SIZE_MAX,
        ),
    ) -> CheckpointState {
        CheckpointState { seq, chain, last_timestamp_ms, clients, apps }
    }
}

prop_compose! {
    fn status()(view in view(), last_executed in seq(), stable in seq()) -> Status {
        Status { view, last_executed, stable }
    }
}

prop_compose! {
    fn fetch_batches()(from in seq(), to in seq()) -> FetchBatches {
        FetchBatches { from, to }
    }
}

prop_compose! {
    fn batches()(
        checkpoint in proptest::option::of((checkpoint_certificate(), checkpoint_state())),
        entries in vec((seq(), batch()), 0..COLLECTION_SIZE_MAX),
    ) -> Batches {
        Batches { checkpoint, entries }
    }
}

prop_compose! {
    fn reply()(view in view(), client in client_id(), timestamp in any_u64(), result in bytes())
        -> Reply {
        Reply { view, client, timestamp, result }
    }
}

prop_compose! {
    fn app_order()(
        app in app_id(),
        seq in seq(),
        agreement_seq in seq(),
        nondet in nondet(),
        requests in vec(authenticated_request(), 0..COLLECTION_SIZE_MAX),
    ) -> AppOrder {
        AppOrder { app, seq, agreement_seq, nondet, requests }
    }
}

prop_compose! {
    fn executed()(app in app_id(), seq in seq(), replies in digest()) -> Executed {
        Executed { app, seq, replies }
    }
}

prop_compose! {
    fn execution_checkpoint()(app in app_id(), seq in seq(), root in digest())
        -> ExecutionCheckpoint {
        ExecutionCheckpoint { app, seq, root }
    }
}

/// Every variant of [`Message`]; [`variant_index`] keeps this list complete.
fn message() -> impl Strategy<Value = Message> {
    prop_oneof![
        authenticated_request().prop_map(Message::Request),
        (signed(pre_prepare_header()), batch())
            .prop_map(|(pre_prepare, batch)| Message::PrePrepare { pre_prepare, batch }),
        signed(prepare()).prop_map(Message::Prepare),
        commit().prop_map(Message::Commit),
        signed(checkpoint()).prop_map(Message::Checkpoint),
        signed(view_change()).prop_map(Message::ViewChange),
        signed(new_view()).prop_map(Message::NewView),
        status().prop_map(Message::Status),
        fetch_batches().prop_map(Message::FetchBatches),
        batches().prop_map(Message::Batches),
        reply().prop_map(Message::Reply),
        app_order().prop_map(Message::AppOrder),
        executed().prop_map(Message::Executed),
        execution_checkpoint().prop_map(Message::ExecutionCheckpoint),
        execution_checkpoint().prop_map(Message::ExecutionStable),
        signed(execution_checkpoint()).prop_map(Message::StableVote),
        activation_message(),
        (app_id(), seq()).prop_map(|(app, up_to)| {
            Message::FetchChainedOrders(FetchChainedOrders { app, up_to })
        }),
        (
            app_id(),
            digest(),
            vec(app_order(), 0..COLLECTION_SIZE_MAX),
            proptest::option::of(execution_checkpoint())
        )
            .prop_map(|(app, chain_before, orders, stable)| {
                Message::ChainedOrders(ChainedOrders {
                    app,
                    chain_before,
                    orders,
                    stable,
                })
            }),
        vec((seq(), digest()), 0..COLLECTION_SIZE_MAX)
            .prop_map(|wanted| Message::FetchProposals(FetchProposals { wanted })),
        (seq(), batch()).prop_map(|(seq, batch)| Message::Proposal(Proposal { seq, batch })),
    ]
}

fn activation_message() -> impl Strategy<Value = Message> {
    let execution = || any_u32().prop_map(ExecutionId);
    let wake_reason = prop_oneof![
        Just(WakeReason::RepliesDiffer),
        Just(WakeReason::Silence),
        Just(WakeReason::ClientRetransmit),
        Just(WakeReason::RootsDiffer),
    ];
    let fault_reason = prop_oneof![
        Just(FaultReason::WrongReplies),
        Just(FaultReason::WrongRoot),
        Just(FaultReason::Silent),
    ];
    prop_oneof![
        (app_id(), any::<u64>(), seq(), wake_reason).prop_map(|(app, epoch, seq, reason)| {
            Message::Wake(Wake {
                app,
                epoch,
                seq,
                reason,
            })
        }),
        (app_id(), any::<u64>(), execution(), seq(), fault_reason).prop_map(
            |(app, epoch, member, seq, reason)| {
                Message::Faulty(Faulty {
                    app,
                    epoch,
                    member,
                    seq,
                    reason,
                })
            }
        ),
        (app_id(), any::<u64>(), vec(execution(), 0..4)).prop_map(|(app, epoch, active)| {
            Message::Membership(Membership { app, epoch, active })
        }),
        app_id().prop_map(|app| Message::Join(Join { app })),
        (app_id(), seq()).prop_map(|(app, after)| Message::FetchOrders(FetchOrders { app, after })),
        (app_id(), seq(), any_u32()).prop_map(|(app, seq, bucket)| {
            Message::FetchBucket(FetchBucket { app, seq, bucket })
        }),
        (
            app_id(),
            seq(),
            any_u32(),
            proptest::option::of(vec(any::<u8>(), 0..64))
        )
            .prop_map(|(app, seq, bucket, proof)| {
                Message::BucketData(BucketData {
                    app,
                    seq,
                    bucket,
                    proof,
                })
            }),
    ]
}

/// The variants of [`Message`], in declaration order. The match is exhaustive, so a new
/// variant fails to compile here until [`message`] generates it too.
const VARIANT_COUNT: usize = 27;

fn variant_index(message: &Message) -> usize {
    match message {
        Message::Request(_) => 0,
        Message::PrePrepare { .. } => 1,
        Message::Prepare(_) => 2,
        Message::Commit(_) => 3,
        Message::Checkpoint(_) => 4,
        Message::ViewChange(_) => 5,
        Message::NewView(_) => 6,
        Message::Status(_) => 7,
        Message::FetchBatches(_) => 8,
        Message::Batches(_) => 9,
        Message::Reply(_) => 10,
        Message::AppOrder(_) => 11,
        Message::Executed(_) => 12,
        Message::ExecutionCheckpoint(_) => 13,
        Message::ExecutionStable(_) => 14,
        Message::StableVote(_) => 15,
        Message::Wake(_) => 16,
        Message::Faulty(_) => 17,
        Message::Membership(_) => 18,
        Message::Join(_) => 19,
        Message::FetchOrders(_) => 20,
        Message::FetchBucket(_) => 21,
        Message::BucketData(_) => 22,
        Message::FetchChainedOrders(_) => 23,
        Message::ChainedOrders(_) => 24,
        Message::FetchProposals(_) => 25,
        Message::Proposal(_) => 26,
    }
}

fn auth() -> impl Strategy<Value = Auth> {
    prop_oneof![
        mac().prop_map(Auth::Mac),
        authenticator().prop_map(Auth::Authenticator)
    ]
}

prop_compose! {
    fn envelope()(from in node_id(), auth in auth(), payload in vec(any::<u8>(), 0..64))
        -> Envelope {
        Envelope { from, auth, payload }
    }
}

// ---------------------------------------------------------------------------------------
// Helpers for the properties.
// ---------------------------------------------------------------------------------------

fn round_trip<T>(value: &T) -> Result<(), TestCaseError>
where
    T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let bytes = postcard::to_stdvec(value).expect("encoding into a Vec cannot fail");
    let decoded: T = postcard::from_bytes(&bytes)
        .map_err(|error| TestCaseError::fail(format!("{value:?} does not decode: {error}")))?;
    prop_assert_eq!(&decoded, value);
    // The encoding is a function of the value: encoding what was decoded gives the same bytes.
    let encoded_again = postcard::to_stdvec(&decoded).expect("encoding into a Vec cannot fail");
    prop_assert_eq!(encoded_again, bytes);
    Ok(())
}

/// Replica 1 seals `message` for replica 0; replica 0 must open it to exactly that message.
fn seal_and_open(message: &Message) -> Result<Vec<u8>, TestCaseError> {
    let (sender, receiver) = (replica(1), replica(0));
    let frame = sender
        .seal(receiver.id(), message)
        .expect("replicas share keys");
    let opened = receiver
        .open(&frame)
        .map_err(|rejection| TestCaseError::fail(format!("valid frame rejected: {rejection}")))?;
    prop_assert_eq!(opened.from(), sender.id());
    prop_assert_eq!(opened.message(), message);
    Ok(frame)
}

/// Every single-byte change of `frame` (each position XOR `mask`) is rejected by `receiver`.
fn every_flip_rejected(receiver: &Endpoint, frame: &[u8], mask: u8) -> Result<(), TestCaseError> {
    assert_ne!(mask, 0, "a zero mask changes nothing");
    for index in 0..frame.len() {
        let mut flipped = frame.to_vec();
        flipped[index] ^= mask;
        let opened = receiver.open(&flipped);
        prop_assert!(
            opened.is_err(),
            "byte {} of {} XOR {:#04x} accepted: {:?}",
            index,
            frame.len(),
            mask,
            opened
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Properties.
// ---------------------------------------------------------------------------------------

/// The strategy reaches every variant, so the round trip below covers all of them.
#[test]
fn message_strategy_covers_every_variant() {
    let mut runner = TestRunner::deterministic();
    let strategy = message();
    let mut seen = BTreeSet::new();
    for _ in 0..2000 {
        let message = strategy
            .new_tree(&mut runner)
            .expect("strategy never rejects")
            .current();
        seen.insert(variant_index(&message));
        if seen.len() == VARIANT_COUNT {
            return;
        }
    }
    panic!("only variants {seen:?} of {VARIANT_COUNT} were generated");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    /// (1) postcard encode then decode gives back every message, whatever its variant.
    #[test]
    fn message_round_trips(message in message()) {
        round_trip(&message)?;
    }

    #[test]
    fn request_round_trips(request in authenticated_request()) {
        round_trip(&Message::Request(request))?;
    }

    #[test]
    fn pre_prepare_round_trips(pre_prepare in signed(pre_prepare_header()), batch in batch()) {
        round_trip(&Message::PrePrepare { pre_prepare, batch })?;
    }

    #[test]
    fn prepare_round_trips(prepare in signed(prepare())) {
        round_trip(&Message::Prepare(prepare))?;
    }

    #[test]
    fn commit_round_trips(commit in commit()) {
        round_trip(&Message::Commit(commit))?;
    }

    #[test]
    fn checkpoint_round_trips(checkpoint in signed(checkpoint())) {
        round_trip(&Message::Checkpoint(checkpoint))?;
    }

    #[test]
    fn view_change_round_trips(view_change in signed(view_change())) {
        round_trip(&Message::ViewChange(view_change))?;
    }

    #[test]
    fn new_view_round_trips(new_view in signed(new_view())) {
        round_trip(&Message::NewView(new_view))?;
    }

    #[test]
    fn status_round_trips(status in status()) {
        round_trip(&Message::Status(status))?;
    }

    #[test]
    fn fetch_batches_round_trips(fetch in fetch_batches()) {
        round_trip(&Message::FetchBatches(fetch))?;
    }

    #[test]
    fn batches_round_trips(batches in batches()) {
        round_trip(&Message::Batches(batches))?;
    }

    #[test]
    fn reply_round_trips(reply in reply()) {
        round_trip(&Message::Reply(reply))?;
    }

    /// A decoded message is a prefix of its bytes: a strict prefix of an encoding never
    /// decodes to the same message (it runs out of bytes or decodes to something else).
    #[test]
    fn truncated_message_does_not_decode_to_the_original(message in message(), cut in any::<Index>()) {
        let bytes = postcard::to_stdvec(&message).expect("encoding into a Vec cannot fail");
        let cut = cut.index(bytes.len());
        if let Ok(decoded) = postcard::from_bytes::<Message>(&bytes[..cut]) {
            prop_assert_ne!(decoded, message);
        }
    }

    /// (2) An envelope round trips, and so does a message carried as its payload.
    #[test]
    fn envelope_round_trips(envelope in envelope()) {
        let frame = encode_envelope(&envelope);
        let decoded: Envelope = postcard::from_bytes(&frame)
            .map_err(|error| TestCaseError::fail(format!("envelope does not decode: {error}")))?;
        prop_assert_eq!(decoded, envelope);
    }

    #[test]
    fn envelope_carries_any_message(from in node_id(), auth in auth(), message in message()) {
        let payload = postcard::to_stdvec(&message).expect("encoding into a Vec cannot fail");
        let frame = encode_envelope(&Envelope { from, auth, payload });
        let decoded: Envelope = postcard::from_bytes(&frame)
            .map_err(|error| TestCaseError::fail(format!("envelope does not decode: {error}")))?;
        let inner: Message = postcard::from_bytes(&decoded.payload)
            .map_err(|error| TestCaseError::fail(format!("payload does not decode: {error}")))?;
        prop_assert_eq!(inner, message);
    }

    /// (3) A sealed status opens to itself at its receiver, and changing any one byte of the
    /// frame gets it rejected.
    #[test]
    fn sealed_status_opens_and_any_flip_is_rejected(
        status in status(),
        mask in 1..=u8::MAX,
    ) {
        let frame = seal_and_open(&Message::Status(status))?;
        every_flip_rejected(replica(0), &frame, mask)?;
    }

    #[test]
    fn sealed_commit_opens_and_any_flip_is_rejected(
        commit in commit(),
        mask in 1..=u8::MAX,
    ) {
        let frame = seal_and_open(&Message::Commit(commit))?;
        every_flip_rejected(replica(0), &frame, mask)?;
    }

    /// Every one of the 255 changes of one byte, at a position chosen by the case.
    #[test]
    fn every_change_of_one_byte_is_rejected(commit in commit(), position in any::<Index>()) {
        let frame = seal_and_open(&Message::Commit(commit))?;
        let index = position.index(frame.len());
        for mask in 1..=u8::MAX {
            let mut flipped = frame.clone();
            flipped[index] ^= mask;
            let opened = replica(0).open(&flipped);
            prop_assert!(opened.is_err(), "byte {} XOR {:#04x} accepted: {:?}", index, mask, opened);
        }
    }

    /// A reply sealed by a replica opens at its client; a flipped byte does not.
    #[test]
    fn sealed_reply_opens_at_client_and_any_flip_is_rejected(
        view in view(),
        timestamp in any_u64(),
        result in bytes(),
        mask in 1..=u8::MAX,
    ) {
        let client = &cluster().client;
        let reply = Message::Reply(Reply { view, client: CLIENT, timestamp, result });
        let frame = replica(2).seal(client.id(), &reply).expect("replicas derive client keys");
        let opened = client
            .open(&frame)
            .map_err(|rejection| TestCaseError::fail(format!("valid reply rejected: {rejection}")))?;
        prop_assert_eq!(opened.message(), &reply);
        every_flip_rejected(client, &frame, mask)?;
    }

    /// A multicast commit opens at every other replica. A changed byte may only be accepted
    /// where it lies in an authenticator slot the receiver does not check, and then it opens
    /// to the same message from the same sender; every byte is checked by some receiver
    /// except the sender's own slot, which holds zeros nobody reads.
    #[test]
    fn multicast_commit_opens_everywhere_and_flips_never_change_the_message(
        commit in commit(),
        mask in 1..=u8::MAX,
    ) {
        let sender = replica(1);
        let message = Message::Commit(commit);
        let frame = sender.seal_multicast(&message);
        let receivers: Vec<&Endpoint> = [0, 2, 3].into_iter().map(replica).collect();
        for receiver in &receivers {
            let opened = receiver.open(&frame).map_err(|rejection| {
                TestCaseError::fail(format!("{} rejects a valid multicast: {rejection}", receiver.id()))
            })?;
            prop_assert_eq!(opened.message(), &message);
        }
        let envelope: Envelope = postcard::from_bytes(&frame).expect("own frame decodes");
        let Auth::Authenticator(Authenticator(macs)) = &envelope.auth else {
            panic!("a multicast carries an authenticator");
        };
        let slots_start = frame
            .windows(32)
            .position(|window| window == macs[0])
            .expect("slot 0 is in the frame");
        let sender_slot = slots_start + 32..slots_start + 64;
        for index in 0..frame.len() {
            let mut flipped = frame.clone();
            flipped[index] ^= mask;
            let mut rejected_by = 0;
            for receiver in &receivers {
                match receiver.open(&flipped) {
                    Err(_) => rejected_by += 1,
                    Ok(opened) => {
                        prop_assert_eq!(opened.from(), sender.id());
                        prop_assert_eq!(opened.message(), &message);
                    }
                }
            }
            prop_assert!(
                rejected_by > 0 || sender_slot.contains(&index),
                "byte {} XOR {:#04x} accepted by every receiver", index, mask
            );
        }
    }

    /// (4) Opening arbitrary bytes never panics, and never accepts.
    #[test]
    fn open_rejects_random_bytes(frame in vec(any::<u8>(), 0..512)) {
        for receiver in cluster().replicas.iter().chain([&cluster().client]) {
            prop_assert!(receiver.open(&frame).is_err());
        }
    }

    /// Structured garbage gets further into `open`: a well-formed envelope from a known
    /// sender, carrying any message, under a MAC nobody computed.
    #[test]
    fn open_rejects_forged_envelopes(
        from in prop_oneof![(0..4u32).prop_map(|r| NodeId::Replica(ReplicaId(r))), node_id()],
        auth in auth(),
        message in message(),
    ) {
        let payload = postcard::to_stdvec(&message).expect("encoding into a Vec cannot fail");
        let frame = encode_envelope(&Envelope { from, auth, payload });
        for receiver in cluster().replicas.iter().chain([&cluster().client]) {
            prop_assert!(receiver.open(&frame).is_err());
        }
    }

    /// A Byzantine replica can MAC anything it likes: validation of any MAC-authenticated
    /// message never panics, and what it accepts is exactly what was sent.
    #[test]
    fn open_never_panics_on_authenticated_garbage(message in message(), sender in 1..4u32) {
        let frame = replica(sender).seal(replica(0).id(), &message).expect("replicas share keys");
        if let Ok(opened) = replica(0).open(&frame) {
            prop_assert_eq!(opened.from(), NodeId::Replica(ReplicaId(sender)));
            prop_assert_eq!(opened.message(), &message);
        }
    }

    /// (5) A signed prepare verifies; changing its view, sequence number, digest or signer,
    /// or any byte of its signature, makes it fail.
    #[test]
    fn signed_prepare_binds_every_field(
        prepare in prepare(),
        signer in 0..4u32,
        other_view in view(),
        other_seq in seq(),
        other_digest in digest(),
        other_signer in any_u32(),
        signature_byte in 0..64usize,
        mask in 1..=u8::MAX,
    ) {
        let keys = &cluster().verifying_keys;
        let signer = ReplicaId(signer);
        let signed = Signed::sign(prepare, signer, &signing_key(signer));
        prop_assert!(signed.verify(keys));

        if other_view != prepare.view {
            let mut changed = signed.clone();
            changed.body.view = other_view;
            prop_assert!(!changed.verify(keys), "view changed");
        }
        if other_seq != prepare.seq {
            let mut changed = signed.clone();
            changed.body.seq = other_seq;
            prop_assert!(!changed.verify(keys), "seq changed");
        }
        if other_digest != prepare.digest {
            let mut changed = signed.clone();
            changed.body.digest = other_digest;
            prop_assert!(!changed.verify(keys), "digest changed");
        }
        if other_signer != signer.0 {
            let mut changed = signed.clone();
            changed.signer = ReplicaId(other_signer);
            prop_assert!(!changed.verify(keys), "signer changed");
        }
        let mut changed = signed.clone();
        if signature_byte < 32 {
            changed.signature.0[signature_byte] ^= mask;
        } else {
            changed.signature.1[signature_byte - 32] ^= mask;
        }
        prop_assert!(!changed.verify(keys), "signature byte {} changed", signature_byte);

        // Another replica's valid signature on the same prepare is not this one's.
        let other = ReplicaId((signer.0 + 1) % 4);
        let mut swapped = Signed::sign(prepare, other, &signing_key(other));
        prop_assert!(swapped.verify(keys));
        swapped.signer = signer;
        prop_assert!(!swapped.verify(keys), "signature moved to another signer");
    }
}
