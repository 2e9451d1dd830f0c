//! TLS and HTTP/2 on the client side: certificates by SNI from
//! `runner/certs` beside the config, h2 negotiated by ALPN with 50 held
//! streams on one connection all receiving a publish, and a plain HTTP
//! request on the TLS port answered with a clear 400.

use bytes::Bytes;
use holdfast_tests::{free_port, raw_exchange, Holdfast, HoldfastBuilder, Origin};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::{CertificateDer, ServerName};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

const WAIT: Duration = Duration::from_secs(15);

struct Certs {
    default: rcgen::CertifiedKey,
    named: rcgen::CertifiedKey,
}

fn certs() -> Certs {
    Certs {
        default: rcgen::generate_simple_self_signed(vec![
            "localhost".to_owned(),
            "127.0.0.1".to_owned(),
        ])
        .unwrap(),
        named: rcgen::generate_simple_self_signed(vec!["example.test".to_owned()]).unwrap(),
    }
}

fn with_tls(builder: HoldfastBuilder, certs: &Certs, port: u16) -> HoldfastBuilder {
    builder
        .set("runner", "https_ports", format!("127.0.0.1:{port}"))
        .file("runner/certs/default.crt", certs.default.cert.pem())
        .file(
            "runner/certs/default.key",
            certs.default.key_pair.serialize_pem(),
        )
        .file("runner/certs/example.test.crt", certs.named.cert.pem())
        .file(
            "runner/certs/example.test.key",
            certs.named.key_pair.serialize_pem(),
        )
}

/// An origin, fresh certificates, and Holdfast serving them on a TLS port.
async fn tls_holdfast() -> (Origin, Certs, u16, Holdfast) {
    let origin = Origin::start().await;
    let certs = certs();
    let port = free_port();
    let hf = with_tls(Holdfast::in_front_of(&origin), &certs, port)
        .run()
        .await;
    (origin, certs, port, hf)
}

/// A client trusting exactly the given certificates.
fn connector(trusted: &[&rcgen::CertifiedKey], alpn: &[&[u8]]) -> TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for cert in trusted {
        roots.add(cert.cert.der().clone()).unwrap();
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    TlsConnector::from(Arc::new(config))
}

async fn handshake(
    connector: &TlsConnector,
    port: u16,
    name: &str,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(("127.0.0.1", port)).await?;
    let name = ServerName::try_from(name.to_owned()).unwrap();
    connector.connect(name, tcp).await
}

/// `GET /echo` (Host `localhost`) over HTTP/1.1 on an open TLS stream:
/// the status and the body.
async fn get_echo(stream: tokio_rustls::client::TlsStream<TcpStream>) -> (u16, Bytes) {
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = http::Request::get("/echo")
        .header("Host", "localhost")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let resp = tokio::time::timeout(WAIT, sender.send_request(req))
        .await
        .expect("answered")
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.into_body().collect().await.unwrap().to_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sni_chooses_the_certificate_and_falls_back_to_the_default() {
    let (_origin, certs, port, hf) = tls_holdfast().await;
    let both = connector(&[&certs.default, &certs.named], &[b"http/1.1"]);
    let stream = handshake(&both, port, "example.test").await.unwrap();
    let presented: &CertificateDer<'_> = &stream.get_ref().1.peer_certificates().unwrap()[0];
    assert_eq!(presented, certs.named.cert.der());
    // An unknown name gets the default certificate (which, here, does not
    // name it, so a verifying client refuses it).
    let only_default = connector(&[&certs.default], &[b"http/1.1"]);
    assert!(handshake(&only_default, port, "other.test").await.is_err());
    let stream = handshake(&only_default, port, "localhost").await.unwrap();
    let presented: &CertificateDer<'_> = &stream.get_ref().1.peer_certificates().unwrap()[0];
    assert_eq!(presented, certs.default.cert.der());

    // HTTP/1.1 over TLS, proxied: the origin hears X-Forwarded-Proto https.
    let (status, body) = get_echo(stream).await;
    assert_eq!(status, 200);
    let echo: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        holdfast_tests::harness::origin::echoed_header(&echo, "x-forwarded-proto").as_deref(),
        Some("https"),
        "{echo}\n{}",
        hf.logs()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_streams_on_one_http2_connection_all_receive_a_publish() {
    let (_origin, certs, port, hf) = tls_holdfast().await;
    let tls = connector(&[&certs.default], &[b"h2"]);
    let stream = handshake(&tls, port, "localhost").await.unwrap();
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);

    let mut bodies = Vec::new();
    for _ in 0..50 {
        let mut sender = sender.clone();
        let req = http::Request::get(format!("https://localhost:{port}/grip"))
            .body(Empty::<Bytes>::new())
            .unwrap();
        let resp = tokio::time::timeout(WAIT, sender.send_request(req))
            .await
            .expect("response head")
            .expect("h2 stream");
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.version(), http::Version::HTTP_2);
        bodies.push(resp.into_body());
    }
    // Each stream has its initial body before anything is published.
    let mut texts = vec![String::new(); bodies.len()];
    for (body, text) in bodies.iter_mut().zip(texts.iter_mut()) {
        read_until(body, text, "initial\n").await;
    }
    let item = serde_json::json!({"items": [{"channel": "test",
        "formats": {"http-stream": {"content": "over h2\n"}}}]});
    assert_eq!(hf.publish(&item.to_string()).await.0, 200);
    for (body, text) in bodies.iter_mut().zip(texts.iter_mut()) {
        read_until(body, text, "over h2\n").await;
        assert_eq!(text, "initial\nover h2\n");
    }
}

/// Reads an HTTP/2 stream's body into `text` until it holds `needle`.
async fn read_until(body: &mut hyper::body::Incoming, text: &mut String, needle: &str) {
    while !text.contains(needle) {
        let frame = tokio::time::timeout(WAIT, body.frame())
            .await
            .unwrap_or_else(|_| panic!("{needle:?} not received; got {text:?}"))
            .expect("stream open")
            .expect("frame");
        if let Ok(data) = frame.into_data() {
            text.push_str(&String::from_utf8_lossy(&data));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_on_the_tls_port_gets_a_clear_400() {
    let (_origin, _certs, port, _hf) = tls_holdfast().await;
    let answer = raw_exchange(
        &format!("127.0.0.1:{port}"),
        b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n",
        WAIT,
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 400 "), "{answer}");
    assert!(answer.contains("This port speaks TLS"), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_default_certificate_stops_start_up_with_the_reason() {
    let origin = Origin::start().await;
    let port = free_port();
    let mut hf = Holdfast::in_front_of(&origin)
        .set("runner", "https_ports", format!("127.0.0.1:{port}"))
        .file("runner/certs/README", "no certificates here")
        .spawn()
        .await;
    let status = hf.wait_exit(WAIT).await;
    assert!(status.is_some_and(|s| !s.success()), "{}", hf.logs());
    assert!(
        hf.logs().contains("no default certificate"),
        "{}",
        hf.logs()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_through_condure_uses_the_same_certificates() {
    // Pushpin's condure as the connection manager ([runner] connmgr_bin):
    // the runner gives it the certificates folder and the default name.
    let origin = Origin::start().await;
    let certs = certs();
    let port = free_port();
    let hf = with_tls(Holdfast::in_front_of(&origin), &certs, port)
        .set("runner", "connmgr_bin", "condure")
        .run()
        .await;
    let both = connector(&[&certs.default, &certs.named], &[b"http/1.1"]);
    let stream = handshake(&both, port, "example.test").await.unwrap();
    let presented: &CertificateDer<'_> = &stream.get_ref().1.peer_certificates().unwrap()[0];
    assert_eq!(presented, certs.named.cert.der(), "{}", hf.logs());
    let stream = handshake(&both, port, "localhost").await.unwrap();
    let presented: &CertificateDer<'_> = &stream.get_ref().1.peer_certificates().unwrap()[0];
    assert_eq!(presented, certs.default.cert.der());
    let (status, _) = get_echo(stream).await;
    assert_eq!(status, 200, "{}", hf.logs());
}
