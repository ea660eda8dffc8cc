//! TLS for the QUIC bus: the ring provider, certificate pinning, and the quinn configs.
//!
//! Trust comes from the cluster directory, not from a certificate authority: a dialer
//! accepts a node only if it presents exactly the certificate `cluster.toml` lists for
//! it, and proves it holds that certificate's key (the handshake signature, checked by the
//! ring provider). Both ways: a node dials with its own certificate, which the listener
//! checks against the same list, so a hello naming a node is believed only from the
//! connection that node's certificate authenticated. Clients have no certificate; their
//! hello proves their keys instead (see the `hello` module).

use super::QuicError;
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use quinn::{IdleTimeout, TransportConfig, VarInt};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, SignatureScheme};
use std::sync::Arc;
use std::time::Duration;

/// The ALPN protocol id; a peer speaking anything else fails the handshake.
pub const ALPN: &[u8] = b"zz/1";
/// The name a dialer asks for. Pinning makes names irrelevant, but TLS needs one; the
/// certificates `init_cluster` writes carry it.
pub(super) const SERVER_NAME: &str = "localhost";

/// Bytes one stream may have in flight unread. Large, so one long-lived stream per peer can
/// keep loopback busy; the reader drains into the inbox without waiting, so this does not
/// pile up.
const STREAM_RECEIVE_WINDOW_BYTES: u32 = 8 * 1024 * 1024;
/// Bytes one connection may have in flight unread, over all its streams.
const CONNECTION_RECEIVE_WINDOW_BYTES: u32 = 16 * 1024 * 1024;
/// Bytes a sender keeps unacknowledged per connection.
const SEND_WINDOW_BYTES: u64 = 16 * 1024 * 1024;
/// Keep-alives make an idle connection to a live peer survive the idle timeout.
const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(1);
/// A peer silent for this long is considered gone.
const IDLE_TIMEOUT: Duration = Duration::from_secs(10);

const _: () = assert!(STREAM_RECEIVE_WINDOW_BYTES <= CONNECTION_RECEIVE_WINDOW_BYTES);
const _: () = assert!(KEEP_ALIVE_INTERVAL.as_millis() * 4 <= IDLE_TIMEOUT.as_millis());

/// Install ring as the process-wide rustls provider. Idempotent: a second call, or a
/// provider some other code installed first, is not an error. The bus itself never relies
/// on the process default (it passes ring explicitly), but installing it at start-up means
/// no other code path can find two providers and panic.
pub fn install_crypto_provider() {
    let _already_installed = rustls::crypto::ring::default_provider().install_default();
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Transport settings for every connection, both directions.
fn transport_config() -> Result<Arc<TransportConfig>, QuicError> {
    let idle_timeout = IdleTimeout::try_from(IDLE_TIMEOUT)
        .map_err(|error| QuicError::Tls(format!("idle timeout: {error}")))?;
    let mut transport = TransportConfig::default();
    transport
        // One long-lived unidirectional stream per direction carries all frames; one at a
        // time is all a peer may open, which also bounds what a stranger can make us track.
        .max_concurrent_uni_streams(VarInt::from_u32(1))
        .max_concurrent_bidi_streams(VarInt::from_u32(0))
        .stream_receive_window(VarInt::from_u32(STREAM_RECEIVE_WINDOW_BYTES))
        .receive_window(VarInt::from_u32(CONNECTION_RECEIVE_WINDOW_BYTES))
        .send_window(SEND_WINDOW_BYTES)
        .keep_alive_interval(Some(KEEP_ALIVE_INTERVAL))
        .max_idle_timeout(Some(idle_timeout));
    Ok(Arc::new(transport))
}

/// The listening side: presents `certificate`; a dialer may present one of `nodes` (the
/// cluster's node certificates), or none (a client).
pub(super) fn server_config(
    certificate: CertificateDer<'static>,
    private_key: PrivateKeyDer<'static>,
    nodes: Vec<CertificateDer<'static>>,
) -> Result<quinn::ServerConfig, QuicError> {
    let provider = provider();
    let verifier = PinnedCerts::new(nodes, &provider);
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|error| QuicError::Tls(error.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![certificate], private_key)
        .map_err(|error| QuicError::Tls(format!("certificate or key: {error}")))?;
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let crypto =
        QuicServerConfig::try_from(tls).map_err(|error| QuicError::Tls(error.to_string()))?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    config.transport_config(transport_config()?);
    Ok(config)
}

/// The dialing side, for a server that must present exactly `pinned`; a node presents
/// `own`, its certificate and key, in turn.
pub(super) fn client_config(
    pinned: CertificateDer<'static>,
    own: Option<(CertificateDer<'static>, PrivateKeyDer<'static>)>,
) -> Result<quinn::ClientConfig, QuicError> {
    let provider = provider();
    let verifier = PinnedCerts::new(vec![pinned], &provider);
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|error| QuicError::Tls(error.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let mut tls = match own {
        Some((certificate, key)) => builder
            .with_client_auth_cert(vec![certificate], key)
            .map_err(|error| QuicError::Tls(format!("certificate or key: {error}")))?,
        None => builder.with_no_client_auth(),
    };
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let crypto =
        QuicClientConfig::try_from(tls).map_err(|error| QuicError::Tls(error.to_string()))?;
    let mut config = quinn::ClientConfig::new(Arc::new(crypto));
    config.transport_config(transport_config()?);
    Ok(config)
}

/// The certificates a peer may present: byte for byte one of `pinned` (a dialed server's
/// exactly one; a dialer's any of the cluster's node certificates). Names, dates and
/// issuers are not consulted: the configuration, not a CA, says which certificate each
/// node has. Handshake signatures are still checked, by ring, against the certificate's
/// key. A dialer without a certificate (a client) is let in, and is a node to no one.
#[derive(Debug)]
struct PinnedCerts {
    pinned: Vec<CertificateDer<'static>>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl PinnedCerts {
    fn new(pinned: Vec<CertificateDer<'static>>, provider: &CryptoProvider) -> Arc<PinnedCerts> {
        Arc::new(PinnedCerts {
            pinned,
            algorithms: provider.signature_verification_algorithms,
        })
    }

    fn check(&self, end_entity: &CertificateDer<'_>) -> Result<(), rustls::Error> {
        if (self.pinned.iter()).any(|pinned| pinned.as_ref() == end_entity.as_ref()) {
            Ok(())
        } else {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::ApplicationVerificationFailure,
            ))
        }
    }

    fn tls12(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn tls13(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }
}

impl ServerCertVerifier for PinnedCerts {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.check(end_entity)
            .map(|()| ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.tls12(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.tls13(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

impl ClientCertVerifier for PinnedCerts {
    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.check(end_entity)
            .map(|()| ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.tls12(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.tls13(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}
