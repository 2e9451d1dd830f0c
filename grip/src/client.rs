//! The pooled HTTP clients toward origins: one that verifies TLS
//! certificates against the webpki roots, and one for targets marked
//! `insecure` that accepts any certificate (still encrypted, not
//! authenticated), as Pushpin's `insecure` target option does.

use holdfast_runtime::body::HttpBody;
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use std::sync::Arc;
use std::time::Duration;

/// How long a connection attempt to an origin may take before the next
/// target is tried.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Idle pooled connections are closed after this (Pushpin's pool TTL).
pub const POOL_IDLE: Duration = Duration::from_secs(55);

/// Idle connections kept per origin. A connect storm opens one origin
/// connection per client request in flight (5,000 at once in the
/// benchmark); keeping them all for `POOL_IDLE` held about 10 KiB per client
/// in the proxy for nothing. Steady traffic needs far fewer.
pub const POOL_MAX_IDLE_PER_ORIGIN: usize = 256;

type Pool = Client<HttpsConnector<HttpConnector>, HttpBody>;

/// Pooled clients shared by all sessions.
#[derive(Clone)]
pub struct OriginClient {
    verified: Pool,
    insecure: Pool,
}

fn http_connector() -> HttpConnector {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(CONNECT_TIMEOUT));
    http.set_nodelay(true);
    http
}

fn pool(https: HttpsConnector<HttpConnector>) -> Pool {
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(POOL_IDLE)
        .pool_max_idle_per_host(POOL_MAX_IDLE_PER_ORIGIN)
        .build(https)
}

impl OriginClient {
    /// Both clients.
    pub fn new() -> OriginClient {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verified = hyper_rustls::HttpsConnectorBuilder::new()
            .with_webpki_roots()
            .https_or_http()
            .enable_http1()
            .wrap_connector(http_connector());
        let insecure_config = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map(|builder| {
                builder
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider)))
                    .with_no_client_auth()
            });
        let insecure = match insecure_config {
            Ok(config) => hyper_rustls::HttpsConnectorBuilder::new()
                .with_tls_config(config)
                .https_or_http()
                .enable_http1()
                .wrap_connector(http_connector()),
            // The ring provider always supports the default versions; if it
            // somehow did not, insecure targets fall back to verification.
            Err(_) => hyper_rustls::HttpsConnectorBuilder::new()
                .with_webpki_roots()
                .https_or_http()
                .enable_http1()
                .wrap_connector(http_connector()),
        };
        OriginClient {
            verified: pool(verified),
            insecure: pool(insecure),
        }
    }

    /// Sends one request, verifying the certificate unless `insecure`.
    pub async fn request(
        &self,
        insecure: bool,
        req: http::Request<HttpBody>,
    ) -> Result<http::Response<Incoming>, hyper_util::client::legacy::Error> {
        if insecure {
            self.insecure.request(req).await
        } else {
            self.verified.request(req).await
        }
    }
}

/// A TLS client configuration of our own, for connections that do not go
/// through the pooled HTTP clients (WebSocket to `ssl` targets): webpki
/// roots, or any certificate when `insecure`.
pub fn tls_config(insecure: bool) -> Result<Arc<rustls::ClientConfig>, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let config = if insecure {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider)))
            .with_no_client_auth()
    } else {
        let roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        builder.with_root_certificates(roots).with_no_client_auth()
    };
    Ok(Arc::new(config))
}

impl Default for OriginClient {
    fn default() -> Self {
        OriginClient::new()
    }
}

/// Accepts any server certificate but still checks the handshake
/// signatures, so the connection is encrypted to whoever holds the key.
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
