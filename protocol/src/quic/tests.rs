//! QUIC bus tests, on 127.0.0.1 only, each bounded by a timeout.

use super::*;
use crate::config::tests::{TempDir, init_test_cluster};
use crate::config::{endpoint_for_client, endpoint_for_execution, endpoint_for_replica};
use crate::ids::{AppId, Digest, ExecutionId, ReplicaId, Seq, View};
use crate::messages::{AppOrder, Executed, Message, NonDet, Reply, Request, Status};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::net::UdpSocket;

const TEST_TIMEOUT: Duration = Duration::from_secs(10);
const R0: NodeId = NodeId::Replica(ReplicaId(0));
const R1: NodeId = NodeId::Replica(ReplicaId(1));
const C0: NodeId = NodeId::Client(ClientId(0));
const E0: NodeId = NodeId::Execution(ExecutionId(0));

/// Ports one test cluster may use: 4 replicas, then 2 execution replicas for each of its
/// 2 apps, with room to spare.
const CLUSTER_PORTS: u16 = 16;

/// A base port with [`CLUSTER_PORTS`] consecutive free UDP ports on 127.0.0.1, so parallel
/// tests (and other test binaries) do not collide on fixed ports.
fn free_base_port() -> u16 {
    use std::sync::atomic::AtomicU32;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let seed = std::process::id();
    let stride = u32::from(CLUSTER_PORTS);
    for _ in 0..1000 {
        let attempt = NEXT.fetch_add(1, Ordering::Relaxed);
        let base = 20_000 + ((seed.wrapping_mul(7919) + attempt * stride) % 40_000) as u16;
        let free = (0..CLUSTER_PORTS)
            .all(|offset| UdpSocket::bind((Ipv4Addr::LOCALHOST, base + offset)).is_ok());
        if free {
            return base;
        }
    }
    panic!("no free ports");
}

fn cluster(name: &str) -> (TempDir, ClusterConfig) {
    let dir = init_test_cluster(name, free_base_port());
    let config = ClusterConfig::load(&dir.0).unwrap();
    (dir, config)
}

fn start(dir: &TempDir, config: &ClusterConfig, id: NodeId) -> (QuicBus, Inbox) {
    QuicBus::start_node(&dir.0, config, id).unwrap()
}

async fn within<F: std::future::Future>(future: F) -> F::Output {
    tokio::time::timeout(TEST_TIMEOUT, future)
        .await
        .expect("test timed out")
}

fn status(seq: u64) -> Message {
    Message::Status(Status {
        view: View(0),
        last_executed: Seq(seq),
        stable: Seq(0),
    })
}

/// A client reaches a replica, the replica answers over the client's own connection, and
/// two replicas talk both ways; every frame opens at its receiver.
#[tokio::test]
async fn replicas_and_a_client_exchange_sealed_frames() {
    within(async {
        let (dir, config) = cluster("quic-exchange");
        let (bus0, mut inbox0) = start(&dir, &config, R0);
        let (bus1, mut inbox1) = start(&dir, &config, R1);
        let (client, mut client_inbox) = start(&dir, &config, C0);
        assert_eq!(bus0.local_addr(), config.replicas[0].address);
        assert!(client.local_addr().ip().is_loopback());
        let (_, endpoint0) = endpoint_for_replica(&dir.0, ReplicaId(0)).unwrap();
        let (_, endpoint1) = endpoint_for_replica(&dir.0, ReplicaId(1)).unwrap();
        let (_, client_endpoint) = endpoint_for_client(&dir.0, ClientId(0)).unwrap();

        let request = Message::Request(client_endpoint.authenticate_request(Request {
            app: AppId(0),
            client: ClientId(0),
            timestamp: 1,
            op: b"get x".to_vec(),
        }));
        client.send(R0, client_endpoint.seal(R0, &request).unwrap().into());
        let frame = inbox0.recv().await.unwrap();
        assert_eq!(endpoint0.open(&frame).unwrap().message(), &request);

        let reply = Message::Reply(Reply {
            view: View(0),
            client: ClientId(0),
            timestamp: 1,
            result: b"none".to_vec(),
        });
        bus0.send(C0, endpoint0.seal(C0, &reply).unwrap().into());
        let frame = client_inbox.recv().await.unwrap();
        let opened = client_endpoint.open(&frame).unwrap();
        assert_eq!((opened.from(), opened.message()), (R0, &reply));

        bus0.send(R1, endpoint0.seal(R1, &status(1)).unwrap().into());
        let frame = inbox1.recv().await.unwrap();
        assert_eq!(endpoint1.open(&frame).unwrap().message(), &status(1));
        bus1.send(R0, endpoint1.seal(R0, &status(2)).unwrap().into());
        let frame = inbox0.recv().await.unwrap();
        assert_eq!(endpoint0.open(&frame).unwrap().message(), &status(2));

        for bus in [&bus0, &bus1, &client] {
            assert_eq!(bus.dropped_frames(), 0);
            assert_eq!(bus.rejected_frames(), 0);
        }
        assert_eq!(bus0.stats().connections_incoming, 2);
        client.shutdown().await;
        bus1.shutdown().await;
        bus0.shutdown().await;
    })
    .await;
}

/// 10,000 small frames over one connection arrive complete and in order. The sender stays
/// within the queue bound by waiting for each thousand to arrive, as a protocol's window does.
#[tokio::test]
async fn ten_thousand_frames_arrive_in_order() {
    within(async {
        let (dir, config) = cluster("quic-order");
        let (bus0, _inbox0) = start(&dir, &config, R0);
        let (bus1, mut inbox1) = start(&dir, &config, R1);
        for round in 0..10u64 {
            for index in round * 1000..(round + 1) * 1000 {
                bus0.send(R1, Bytes::copy_from_slice(&index.to_be_bytes()));
            }
            for index in round * 1000..(round + 1) * 1000 {
                let frame = inbox1.recv().await.unwrap();
                assert_eq!(frame.as_ref(), index.to_be_bytes(), "frame {index}");
            }
        }
        assert_eq!(bus0.dropped_frames(), 0);
        assert_eq!(bus1.dropped_frames(), 0);
    })
    .await;
}

/// Client 0's hello to `to`, tagged with its keys, at incarnation 1.
fn client_hello(dir: &TempDir, config: &ClusterConfig, to: NodeId) -> Bytes {
    let keys = crate::config::client_range_keys(&dir.0, config, ClientId(0), 1).unwrap();
    let keys = HeldKeys::new(keys, config.clients);
    let claim = hello::HelloClaim {
        id: C0,
        clients: 1,
        incarnation: 1,
    };
    frame::hello(claim, hello::client_tag(&keys, claim, to).unwrap())
}

/// A raw connection that announces a frame above `frame_bytes_max` is cut off, counted, and
/// its length never allocated; so is one whose hello is too long. The bus keeps serving.
#[tokio::test]
async fn oversized_length_prefix_is_rejected_and_counted() {
    within(async {
        let (dir, config) = cluster("quic-oversize");
        let (bus0, mut inbox0) = start(&dir, &config, R0);
        let peers = QuicPeers::from_config(&dir.0, &config).unwrap();
        let raw = quinn::Endpoint::client(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).unwrap();
        let pinned = tls::client_config(peers.replicas[0].certificate.clone(), None).unwrap();
        let hello = client_hello(&dir, &config, R0);
        let dial = || async {
            raw.connect_with(pinned.clone(), bus0.local_addr(), tls::SERVER_NAME)
                .unwrap()
                .await
                .unwrap()
        };

        let connection = dial().await;
        let mut send = connection.open_uni().await.unwrap();
        send.write_all(&hello).await.unwrap();
        send.write_all(&u32::MAX.to_be_bytes()).await.unwrap();
        let closed = connection.closed().await;
        assert!(
            matches!(&closed, quinn::ConnectionError::ApplicationClosed(close)
                if close.error_code == tasks::CLOSE_FRAMING),
            "{closed:?}"
        );
        assert_eq!(bus0.rejected_frames(), 1);

        let connection = dial().await;
        let mut send = connection.open_uni().await.unwrap();
        send.write_all(&1000u32.to_be_bytes()).await.unwrap();
        connection.closed().await;
        assert_eq!(bus0.rejected_frames(), 2);

        // A well-behaved client still gets through to the inbox (the MAC check is above).
        let connection = dial().await;
        let mut send = connection.open_uni().await.unwrap();
        send.write_all(&hello).await.unwrap();
        send.write_all(&3u32.to_be_bytes()).await.unwrap();
        send.write_all(b"abc").await.unwrap();
        assert_eq!(inbox0.recv().await.unwrap().as_ref(), b"abc");
        assert_eq!(bus0.stats().dropped_inbox, 0);
    })
    .await;
}

/// When a peer's bus stops and a new one starts on the same address, frames get through
/// again within a few seconds, with no action by the sender.
#[tokio::test]
async fn sender_redials_a_restarted_peer() {
    within(async {
        let (dir, config) = cluster("quic-redial");
        let (bus0, _inbox0) = start(&dir, &config, R0);
        let (bus1, mut inbox1) = start(&dir, &config, R1);
        bus0.send(R1, Bytes::from_static(b"before"));
        assert_eq!(inbox1.recv().await.unwrap().as_ref(), b"before");

        bus1.shutdown().await;
        drop(inbox1);
        // The old socket is released once quinn's driver task notices; retry briefly.
        let (_bus1, mut inbox1) = loop {
            match QuicBus::start_node(&dir.0, &config, R1) {
                Ok(started) => break started,
                Err(QuicError::Bind { .. }) => tokio::time::sleep(Duration::from_millis(20)).await,
                Err(error) => panic!("{error}"),
            }
        };
        let started = tokio::time::Instant::now();
        loop {
            bus0.send(R1, Bytes::from_static(b"after"));
            match tokio::time::timeout(Duration::from_millis(100), inbox1.recv()).await {
                Ok(Some(frame)) => {
                    assert_eq!(frame.as_ref(), b"after");
                    break;
                }
                _ => assert!(started.elapsed() < Duration::from_secs(5), "no redial"),
            }
        }
    })
    .await;
}

/// A dialer that pins one certificate refuses a server presenting another: nothing is
/// delivered and the frame counts as dropped.
#[tokio::test]
async fn dialer_refuses_a_server_with_another_certificate() {
    within(async {
        let (dir, config) = cluster("quic-pinning");
        let (_bus0, mut inbox0) = start(&dir, &config, R0);
        let mut peers = QuicPeers::from_config(&dir.0, &config).unwrap();
        peers.replicas[0].certificate = peers.replicas[1].certificate.clone();
        let (client, _client_inbox) =
            QuicBus::start(QuicIdentity::client(ClientId(0)), peers).unwrap();
        client.send(R0, Bytes::from_static(b"hello?"));
        while client.dropped_frames() == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(inbox0.try_recv().is_err());
    })
    .await;
}

/// Frames with no route (this node itself, a node outside the cluster) or above the limit
/// are dropped and counted at once; one to a client with no route yet is parked instead
/// (see `a_reply_sent_before_the_clients_hello_is_delivered_when_it_arrives`).
#[tokio::test]
async fn unroutable_frames_are_dropped_and_counted() {
    within(async {
        let (dir, config) = cluster("quic-unroutable");
        let (bus0, _inbox0) = start(&dir, &config, R0);
        bus0.send(NodeId::Client(ClientId(3)), Bytes::from_static(b"x"));
        bus0.send(R0, Bytes::from_static(b"x"));
        bus0.send(NodeId::Replica(ReplicaId(9)), Bytes::from_static(b"x"));
        bus0.send(NodeId::Execution(ExecutionId(9)), Bytes::from_static(b"x"));
        let oversized = Bytes::from(vec![0u8; config.protocol.frame_bytes_max + 1]);
        bus0.send(R1, oversized);
        assert_eq!(bus0.dropped_frames(), 4);
        let error = QuicBus::start_node(&dir.0, &config, NodeId::Client(ClientId(4)))
            .err()
            .expect("client 4 is not provisioned");
        assert!(error.to_string().contains("client c4"), "{error}");
        let error = QuicBus::start_node(&dir.0, &config, NodeId::Execution(ExecutionId(9)))
            .err()
            .expect("execution replica 9 is not configured");
        assert!(
            error.to_string().contains("execution replica e9"),
            "{error}"
        );
    })
    .await;
}

/// A client host speaks for several client ids over one connection: a replica's replies to
/// each of them come back over it, and a hello claiming too many clients is refused.
#[tokio::test]
async fn a_client_host_receives_replies_for_each_of_its_clients() {
    within(async {
        let (dir, config) = cluster("quic-client-host");
        let (bus0, mut inbox0) = start(&dir, &config, R0);
        let (host, mut host_inbox) =
            QuicBus::start_client_host(&dir.0, &config, ClientId(0), 2).unwrap();
        let (_, endpoint0) = endpoint_for_replica(&dir.0, ReplicaId(0)).unwrap();
        let (_, client0) = endpoint_for_client(&dir.0, ClientId(0)).unwrap();
        let (_, client1) = endpoint_for_client(&dir.0, ClientId(1)).unwrap();
        // The host's hello registered its route at start; a frame that has arrived shows
        // the connection (and so the route) is up.
        host.send(R0, client0.seal(R0, &status(1)).unwrap().into());
        inbox0.recv().await.unwrap();
        for (id, endpoint) in [(ClientId(0), &client0), (ClientId(1), &client1)] {
            let reply = Message::Reply(Reply {
                view: View(0),
                client: id,
                timestamp: 7,
                result: vec![],
            });
            let to = NodeId::Client(id);
            bus0.send(to, endpoint0.seal(to, &reply).unwrap().into());
            let frame = host_inbox.recv().await.unwrap();
            assert_eq!(endpoint.open(&frame).unwrap().message(), &reply);
        }
        let too_many = config.clients as u32 + 1;
        assert!(QuicBus::start_client_host(&dir.0, &config, ClientId(0), too_many).is_err());
    })
    .await;
}

/// A reply sent to a client before its hello reached the node is kept and sent over the
/// client's connection once the hello arrives; one sent to a client that never says hello
/// is dropped (and counted) after the time-to-live, not kept for ever.
#[tokio::test]
async fn a_reply_sent_before_the_clients_hello_is_delivered_when_it_arrives() {
    within(async {
        let (dir, config) = cluster("quic-parked");
        let (bus0, _inbox0) = start(&dir, &config, R0);
        let (_, endpoint0) = endpoint_for_replica(&dir.0, ReplicaId(0)).unwrap();
        let (_, client2) = endpoint_for_client(&dir.0, ClientId(2)).unwrap();
        let reply = |client| {
            Message::Reply(Reply {
                view: View(0),
                client,
                timestamp: 7,
                result: b"early".to_vec(),
            })
        };
        let to = NodeId::Client(ClientId(2));
        bus0.send(to, endpoint0.seal(to, &reply(ClientId(2))).unwrap().into());
        assert_eq!(bus0.stats().dropped_send, 0, "parked, not dropped");
        let (_host, mut host_inbox) =
            QuicBus::start_client_host(&dir.0, &config, ClientId(2), 1).unwrap();
        let frame = host_inbox.recv().await.unwrap();
        assert_eq!(client2.open(&frame).unwrap().message(), &reply(ClientId(2)));
        // Client 3 never says hello: its frame expires.
        let lost = NodeId::Client(ClientId(3));
        bus0.send(
            lost,
            endpoint0.seal(lost, &reply(ClientId(3))).unwrap().into(),
        );
        tokio::time::sleep(super::PARKED_FRAME_TTL + Duration::from_millis(100)).await;
        let (_late, mut late_inbox) =
            QuicBus::start_client_host(&dir.0, &config, ClientId(3), 1).unwrap();
        let nothing = tokio::time::timeout(Duration::from_millis(500), late_inbox.recv()).await;
        assert!(nothing.is_err(), "an expired frame is not sent");
    })
    .await;
}

fn app_order() -> Message {
    Message::AppOrder(AppOrder {
        app: AppId(0),
        seq: Seq(1),
        agreement_seq: Seq(1),
        nondet: NonDet::default(),
        requests: Vec::new(),
    })
}

/// An agreement replica's order reaches an execution replica over the connection the
/// replica dials, and the execution replica's report reaches the replica over its own.
#[tokio::test]
async fn replicas_and_execution_replicas_exchange_sealed_frames() {
    within(async {
        let (dir, config) = cluster("quic-execution");
        let (bus0, mut inbox0) = start(&dir, &config, R0);
        let (execution, mut execution_inbox) = start(&dir, &config, E0);
        assert_eq!(execution.local_addr(), config.executions[0].address);
        let (_, endpoint0) = endpoint_for_replica(&dir.0, ReplicaId(0)).unwrap();
        let (_, execution_endpoint) = endpoint_for_execution(&dir.0, ExecutionId(0)).unwrap();

        bus0.send(E0, endpoint0.seal(E0, &app_order()).unwrap().into());
        let frame = execution_inbox.recv().await.unwrap();
        let opened = execution_endpoint.open(&frame).unwrap();
        assert_eq!((opened.from(), opened.message()), (R0, &app_order()));

        let executed = Message::Executed(Executed {
            app: AppId(0),
            seq: Seq(1),
            replies: Digest([1; 32]),
        });
        execution.send(R0, execution_endpoint.seal_multicast(&executed).into());
        let frame = inbox0.recv().await.unwrap();
        let opened = endpoint0.open(&frame).unwrap();
        assert_eq!((opened.from(), opened.message()), (E0, &executed));

        for bus in [&bus0, &execution] {
            assert_eq!(bus.dropped_frames(), 0);
            assert_eq!(bus.rejected_frames(), 0);
        }
        execution.shutdown().await;
        bus0.shutdown().await;
    })
    .await;
}

/// A client host dials every peer when it starts, so an execution replica can answer one
/// of its clients though the host never wrote to that execution replica: the replies of the
/// normal case go straight from execution replicas to clients.
#[tokio::test]
async fn a_client_host_hears_from_an_execution_replica_it_never_wrote_to() {
    within(async {
        let (dir, config) = cluster("quic-execution-reply");
        let (execution, _execution_inbox) = start(&dir, &config, E0);
        let (host, mut host_inbox) =
            QuicBus::start_client_host(&dir.0, &config, ClientId(0), 2).unwrap();
        let (_, execution_endpoint) = endpoint_for_execution(&dir.0, ExecutionId(0)).unwrap();
        let (_, client1) = endpoint_for_client(&dir.0, ClientId(1)).unwrap();
        let to = NodeId::Client(ClientId(1));
        let reply = Message::Reply(Reply {
            view: View(0),
            client: ClientId(1),
            timestamp: 3,
            result: b"ok".to_vec(),
        });
        let sealed = Bytes::from(execution_endpoint.seal(to, &reply).unwrap());
        // The host's hello may still be on its way when the first copy goes: resend until
        // the route exists, as an execution replica answering a retransmission would.
        let frame = loop {
            execution.send(to, sealed.clone());
            if let Ok(Some(frame)) =
                tokio::time::timeout(Duration::from_millis(100), host_inbox.recv()).await
            {
                break frame;
            }
        };
        let opened = client1.open(&frame).unwrap();
        assert_eq!((opened.from(), opened.message()), (E0, &reply));
        assert_eq!(host.stats().dropped_send, 0, "the host sent nothing");
        assert_eq!(execution.stats().connections_incoming, 1);
        host.shutdown().await;
        execution.shutdown().await;
    })
    .await;
}

/// A raw connection's end: how the bus closed it (None: open still), and the connection,
/// kept open while the caller holds it.
type RawEnd = (
    Option<quinn::ConnectionError>,
    quinn::Connection,
    quinn::Endpoint,
);

/// Dial `bus` raw: with `own` as the client certificate (None: as a client does), send
/// `hello`, and wait until the bus closes the connection or half a second passes.
async fn raw_hello(
    bus: &QuicBus,
    pinned: CertificateDer<'static>,
    own: Option<(CertificateDer<'static>, PrivateKeyDer<'static>)>,
    hello: &[u8],
) -> Result<RawEnd, quinn::ConnectionError> {
    let raw = quinn::Endpoint::client(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).unwrap();
    let config = tls::client_config(pinned, own).unwrap();
    let connection = raw
        .connect_with(config, bus.local_addr(), tls::SERVER_NAME)
        .unwrap()
        .await?;
    let mut send = connection.open_uni().await?;
    send.write_all(hello).await.ok();
    let closed = tokio::time::timeout(Duration::from_millis(500), connection.closed()).await;
    Ok((closed.ok(), connection, raw))
}

/// An unauthenticated peer changes nothing. A hello naming a replica, from a dialer without
/// that replica's certificate (none, or another node's), is refused and counted: the bus
/// does not think the replica restarted, so its link to it is not redialed. A hello naming
/// a client without that client's tag (none, or one made for another node) is refused: no
/// route to the client is taken. A certificate outside the cluster fails the handshake.
/// The genuine replica's hello, with its certificate, is believed.
#[tokio::test]
async fn an_unauthenticated_peer_changes_nothing() {
    within(async {
        let (dir, config) = cluster("quic-unauthenticated");
        let (bus0, _inbox0) = start(&dir, &config, R0);
        let (bus1, mut inbox1) = start(&dir, &config, R1);
        bus0.send(R1, Bytes::from_static(b"linked"));
        assert_eq!(inbox1.recv().await.unwrap().as_ref(), b"linked");
        let peers = QuicPeers::from_config(&dir.0, &config).unwrap();
        let pinned = peers.replicas[1].certificate.clone();
        let restarts_of_r0 = || bus1.shared.peer_restarts[&R0].restarts();
        let node_hello = |id, incarnation| {
            let claim = hello::HelloClaim {
                id,
                clients: 0,
                incarnation,
            };
            frame::hello(claim, [0; 32])
        };
        let r0_key = crate::config::load_tls_key(&dir.0, &config, ReplicaId(0)).unwrap();
        let r0 = || Some((peers.replicas[0].certificate.clone(), r0_key.clone_key()));
        let r2_key = crate::config::load_tls_key(&dir.0, &config, ReplicaId(2)).unwrap();
        let r2 = Some((peers.replicas[2].certificate.clone(), r2_key));

        let mut refused = 0;
        for (own, hello) in [
            (None, node_hello(R0, 99)),
            (r2, node_hello(R0, 99)),
            (r0(), node_hello(NodeId::Replica(ReplicaId(2)), 99)),
            (r0(), client_hello(&dir, &config, R1)),
            (None, client_hello(&dir, &config, R0)),
            (None, node_hello(C0, 1)),
        ] {
            let (closed, _, _) = raw_hello(&bus1, pinned.clone(), own, &hello).await.unwrap();
            assert!(
                matches!(&closed, Some(quinn::ConnectionError::ApplicationClosed(close))
                    if close.error_code == tasks::CLOSE_BAD_HELLO),
                "{closed:?}"
            );
            refused += 1;
            assert_eq!(bus1.rejected_frames(), refused);
        }
        assert_eq!(restarts_of_r0(), 0, "no false restart");
        assert!(
            !bus1.shared.routes().contains_key(&ClientId(0)),
            "no route taken"
        );

        let (other_dir, other_config) = cluster("quic-unauthenticated-other");
        let foreign_key = crate::config::load_tls_key(&other_dir.0, &other_config, ReplicaId(0));
        let foreign_peers = QuicPeers::from_config(&other_dir.0, &other_config).unwrap();
        let foreign = Some((
            foreign_peers.replicas[0].certificate.clone(),
            foreign_key.unwrap(),
        ));
        let outcome = raw_hello(&bus1, pinned.clone(), foreign, &node_hello(R0, 99)).await;
        assert!(
            outcome.as_ref().is_err() || outcome.as_ref().unwrap().0.is_some(),
            "the handshake fails"
        );
        assert_eq!(restarts_of_r0(), 0);

        // The genuine ones are believed: a client's tagged hello takes its route, and R0's
        // certificate makes a new incarnation a restart.
        let hello = client_hello(&dir, &config, R1);
        let (closed, _client, _raw) = raw_hello(&bus1, pinned.clone(), None, &hello)
            .await
            .unwrap();
        assert_eq!(closed, None, "kept open");
        assert!(
            bus1.shared.routes().contains_key(&ClientId(0)),
            "route taken"
        );
        let genuine = raw_hello(&bus1, pinned.clone(), r0(), &node_hello(R0, 99)).await;
        assert_eq!(genuine.unwrap().0, None, "kept open");
        assert_eq!(restarts_of_r0(), 1);
        assert_eq!(bus1.rejected_frames(), refused);
    })
    .await;
}

/// A client host that floods a node which is not reading fills its own share of the inbox
/// only: the rest of its frames are dropped and counted, while another client and another
/// node still get their frames in; reading frees the share again.
#[tokio::test]
async fn a_flooding_client_fills_only_its_own_share_of_the_inbox() {
    within(async {
        let (dir, config) = cluster("quic-shares");
        let (bus0, mut inbox0) = start(&dir, &config, R0);
        let (bus1, _inbox1) = start(&dir, &config, R1);
        let (flooder, _flooder_inbox) = start(&dir, &config, C0);
        const MIB: usize = 1024 * 1024;
        let flood_frames = CLIENT_INBOX_SHARE_BYTES / MIB + 24;
        for _ in 0..flood_frames {
            flooder.send(R0, Bytes::from(vec![0xaa; MIB]));
        }
        let share_frames = CLIENT_INBOX_SHARE_BYTES / MIB;
        while bus0.stats().dropped_inbox < (flood_frames - share_frames) as u64 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(inbox0.queued_bytes(), share_frames * MIB);
        let (modest, _modest_inbox) =
            QuicBus::start_client_host(&dir.0, &config, ClientId(1), 1).unwrap();
        modest.send(R0, Bytes::from_static(b"modest client"));
        bus1.send(R0, Bytes::from_static(b"replica 1"));
        let mut seen = Vec::new();
        let mut flood_bytes = 0;
        while seen.len() < 2 {
            let frame = inbox0.recv().await.unwrap();
            match frame.first() {
                Some(0xaa) => flood_bytes += frame.len(),
                _ => seen.push(frame),
            }
        }
        seen.sort();
        assert_eq!(seen, [&b"modest client"[..], &b"replica 1"[..]]);
        assert_eq!(
            flood_bytes,
            share_frames * MIB,
            "the flooder's share and no more"
        );
        flooder.send(R0, Bytes::from(vec![0xaa; MIB]));
        let frame = inbox0.recv().await.unwrap();
        assert_eq!(frame.len(), MIB, "the share is free again once read");
    })
    .await;
}
