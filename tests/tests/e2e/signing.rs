//! What the origin sees of GRIP: `Grip-Sig`, `Grip-Feature`, stripped client
//! `Grip-*` headers, upstream trust, and GRIP answers refused with 501.

use bytes::Bytes;
use holdfast_tests::harness::origin::echoed_header;
use holdfast_tests::{Client, Holdfast, Origin};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    iss: String,
    exp: u64,
}

fn verify(token: &str, key: &[u8]) -> Result<Claims, jsonwebtoken::errors::Error> {
    let mut validation = Validation::new(Algorithm::HS256);
    validation.set_required_spec_claims(&["exp", "iss"]);
    jsonwebtoken::decode::<Claims>(token, &DecodingKey::from_secret(key), &validation)
        .map(|d| d.claims)
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grip_sig_is_signed_with_the_configured_key() {
    let origin = Origin::start().await;
    let hf = Holdfast::builder()
        .routes_file(format!(
            "* {o}\n*,path_beg=/own,sig_key=routekey,sig_iss=route-iss {o}\n",
            o = origin.target()
        ))
        .set("proxy", "sig_key", "base64:c2VjcmV0LWtleQ==")
        .set("proxy", "sig_iss", "holdfast-test")
        .run()
        .await;
    let client = Client::new();
    let echo = client
        .send(
            "GET",
            &hf.url("/"),
            &[("Grip-Sig", "forged"), ("Grip-Last", "news; last-id=7")],
            Bytes::new(),
        )
        .await
        .json();
    let sig = echoed_header(&echo, "grip-sig").expect("Grip-Sig");
    assert_ne!(sig, "forged");
    let claims = verify(&sig, b"secret-key").expect("signature verifies with sig_key");
    assert_eq!(claims.iss, "holdfast-test");
    assert!(
        claims.exp > now() + 3500 && claims.exp <= now() + 3601,
        "{claims:?}"
    );
    assert!(verify(&sig, b"changeme").is_err());
    assert!(
        echoed_header(&echo, "grip-last").is_none(),
        "client Grip-* headers must be stripped"
    );
    let features = echoed_header(&echo, "grip-feature").expect("Grip-Feature");
    assert!(
        features.contains("link:next") && features.contains("filter:skip-self"),
        "{features}"
    );

    let echo = client.get(&hf.url("/own")).await.json();
    let claims =
        verify(&echoed_header(&echo, "grip-sig").unwrap(), b"routekey").expect("route key");
    assert_eq!(claims.iss, "route-iss");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_grip_routes_are_not_signed() {
    let origin = Origin::start().await;
    let hf = Holdfast::builder()
        .route(format!("*,no_grip {}", origin.target()))
        .run()
        .await;
    let client = Client::new();
    let echo = client.get(&hf.url("/")).await.json();
    assert!(echoed_header(&echo, "grip-sig").is_none());
    let reply = client.get(&hf.url("/grip")).await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.header("grip-hold"),
        Some("stream"),
        "no_grip passes GRIP headers through"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trusted_upstream_passes_grip_through() {
    let origin = Origin::start().await;
    let hf = Holdfast::in_front_of(&origin)
        .set("proxy", "upstream_key", "upstream-secret")
        .run()
        .await;
    let claims = Claims {
        iss: "edge".into(),
        exp: now() + 600,
    };
    let token = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(b"upstream-secret"),
    )
    .unwrap();
    let client = Client::new();
    let headers = [
        ("Grip-Sig", token.as_str()),
        ("Grip-Last", "news; last-id=7"),
    ];
    let echo = client
        .send("GET", &hf.url("/"), &headers, Bytes::new())
        .await
        .json();
    assert_eq!(
        echoed_header(&echo, "grip-sig").as_deref(),
        Some(token.as_str())
    );
    assert_eq!(
        echoed_header(&echo, "grip-last").as_deref(),
        Some("news; last-id=7")
    );
    let reply = client
        .send("GET", &hf.url("/grip"), &headers, Bytes::new())
        .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("grip-hold"), Some("stream"));

    // A signature from another key is not trusted: stripped and re-signed.
    let forged = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(b"wrong"),
    )
    .unwrap();
    let echo = client
        .send(
            "GET",
            &hf.url("/"),
            &[("Grip-Sig", forged.as_str()), ("Grip-Last", "x; last-id=1")],
            Bytes::new(),
        )
        .await
        .json();
    assert_ne!(
        echoed_header(&echo, "grip-sig").as_deref(),
        Some(forged.as_str())
    );
    assert!(echoed_header(&echo, "grip-last").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grip_answers_without_a_hold_are_applied() {
    let origin = Origin::start().await;
    let hf = Holdfast::in_front_of(&origin).run().await;
    let client = Client::new();
    let no_grip_headers = |reply: &holdfast_tests::Reply| {
        reply
            .headers
            .keys()
            .all(|k| !k.as_str().starts_with("grip-"))
    };

    let reply = client.get(&hf.url("/grip/status")).await;
    assert_eq!((reply.status, reply.text().as_str()), (299, "plain body\n"));
    assert_eq!(reply.header("x-other"), Some("kept"));
    assert!(no_grip_headers(&reply), "{:?}", reply.headers);

    let reply = client.get(&hf.url("/grip/expose")).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("x-keep"), Some("1"));
    assert_eq!(reply.header("x-drop"), None);
    assert!(no_grip_headers(&reply));

    let reply = client.get(&hf.url("/grip/instruct")).await;
    assert_eq!(
        (reply.status, reply.text().as_str()),
        (202, "made by instruct\n")
    );
    assert_eq!(reply.header("x-made"), Some("yes"));
    assert!(no_grip_headers(&reply), "{:?}", reply.headers);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_grip_answers_give_502_with_a_logged_reason() {
    let origin = Origin::start().await;
    let hf = Holdfast::in_front_of(&origin).run().await;
    let client = Client::new();
    let cases = [
        ("bad-hold", "Grip-Hold: unknown mode \"sometimes\""),
        (
            "bad-timeout",
            "Grip-Timeout: \"soon\" is not a number of seconds",
        ),
        ("instruct-bad", "application/grip-instruct body:"),
        ("instruct-404", "application/grip-instruct with status 404"),
    ];
    for (case, logged) in cases {
        let reply = client.get(&hf.url(&format!("/grip/{case}"))).await;
        assert_eq!(
            (reply.status, reply.text().as_str()),
            (502, "Error while proxying to origin.\n"),
            "{case}"
        );
        assert!(reply
            .headers
            .keys()
            .all(|k| !k.as_str().starts_with("grip-")));
        assert!(
            hf.wait_log(logged, std::time::Duration::from_secs(5)).await,
            "{case}: no log line with {logged:?}\n{}",
            hf.logs()
        );
    }
}
