//! The pooled HTTP client toward origins (plain or TLS), with failover over
//! a route's targets.

use crate::routes::Target;
use holdfast_protocol::rt::body::HttpBody;
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::time::Duration;

/// How long a connection attempt to an origin may take before the next
/// target is tried.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Idle pooled connections are closed after this (Pushpin's pool TTL).
pub const POOL_IDLE: Duration = Duration::from_secs(55);

/// A pooled client shared by all sessions.
#[derive(Clone)]
pub struct OriginClient {
    client: Client<HttpsConnector<HttpConnector>, HttpBody>,
}

impl OriginClient {
    /// A client trusting the webpki roots for TLS origins.
    pub fn new() -> OriginClient {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(CONNECT_TIMEOUT));
        http.set_nodelay(true);
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_webpki_roots()
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(POOL_IDLE)
            .build(https);
        OriginClient { client }
    }

    /// Sends one request.
    pub async fn send(
        &self,
        req: http::Request<HttpBody>,
    ) -> Result<http::Response<Incoming>, hyper_util::client::legacy::Error> {
        self.client.request(req).await
    }
}

impl Default for OriginClient {
    fn default() -> Self {
        OriginClient::new()
    }
}

/// The URI prefix (`scheme://host:port`) for a target.
pub fn target_base(target: &Target) -> String {
    let scheme = if target.ssl { "https" } else { "http" };
    if target.host.contains(':') {
        format!("{scheme}://[{}]:{}", target.host, target.port)
    } else {
        format!("{scheme}://{}:{}", target.host, target.port)
    }
}
