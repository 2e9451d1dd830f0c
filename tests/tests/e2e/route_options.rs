//! Pushpin's route options for browsers and operators: `aco` (CORS headers
//! on relayed and held answers, preflights, JSON-P requests and long-polls,
//! checked with headless Chromium where a browser decides), `orig_headers`
//! and `log_level`.

use holdfast_tests::harness::origin::echoed_header;
use holdfast_tests::{answer, free_port, Browser, Client, Holdfast, Origin, Scripted, Seen};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(15);

/// The page's own origin serves it; it asks Holdfast (another port, so
/// another origin) with a header that needs a preflight and credentials,
/// reads an exposed header, and reports what it got to its own origin.
const PAGE: &str = r#"<!doctype html>
<title>Cross-origin through Holdfast</title>
<script>
  const api = new URLSearchParams(location.search).get("api");
  fetch(api + "/api/item", {method: "PUT", credentials: "include",
      headers: {"X-Token": "t1", "Content-Type": "application/json"}, body: "{}"})
    .then(async (r) => fetch("/report?status=" + r.status + "&id=" +
        encodeURIComponent(r.headers.get("X-Id")) + "&body=" + encodeURIComponent(await r.text())))
    .catch((e) => fetch("/report?error=" + encodeURIComponent(e)));
</script>
"#;

fn site(seen: &Seen) -> holdfast_tests::harness::scripted::Answer {
    match (
        seen.method.as_str(),
        seen.path.split('?').next().unwrap_or(""),
    ) {
        ("GET", "/page") => answer(200, &[("Content-Type", "text/html")], PAGE),
        // The origin knows nothing of CORS: it answers the preflight with
        // a plain 204 and the request with its own header.
        ("OPTIONS", "/api/item") => answer(204, &[], ""),
        ("PUT", "/api/item") => answer(
            200,
            &[("X-Id", "42"), ("Content-Type", "text/plain")],
            "stored",
        ),
        _ => answer(204, &[], ""),
    }
}

/// The site's origin, Holdfast in front of it with `options` on its route,
/// and the page's URL on the site's own origin, asking Holdfast.
async fn cross_origin_site(options: &str) -> (Scripted, Holdfast, String) {
    let origin = Scripted::start(site).await;
    let hf = Holdfast::builder()
        .route(format!("*{options} {}", origin.target()))
        .run()
        .await;
    let api = format!("http://{}", hf.addr());
    let page = format!("http://{}/page?api={api}", origin.target());
    (origin, hf, page)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_passes_a_preflighted_credentialed_request_through_aco() {
    let (origin, hf, page) = cross_origin_site(",aco").await;
    let _browser = Browser::open(&page);
    let report = origin
        .wait_for(WAIT, |s| s.path.starts_with("/report?"))
        .await
        .unwrap_or_else(|| panic!("no report: {:?}\n{}", origin.seen(), hf.logs()));
    assert_eq!(
        report.path,
        "/report?status=200&id=42&body=stored",
        "{:?}",
        origin.seen()
    );
    let preflight = origin
        .seen()
        .into_iter()
        .find(|s| s.method == "OPTIONS")
        .expect("the browser's preflight reached the origin");
    assert_eq!(
        preflight.header("access-control-request-method").as_deref(),
        Some("PUT")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_request_without_aco_is_refused_by_chromium() {
    let (origin, _hf, page) = cross_origin_site("").await;
    let _browser = Browser::open(&page);
    let report = origin
        .wait_for(WAIT, |s| s.path.starts_with("/report?"))
        .await
        .expect("a report");
    assert!(report.path.starts_with("/report?error="), "{}", report.path);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_headers_on_relayed_answers_and_held_long_polls() {
    let origin = Origin::start().await;
    let hf = Holdfast::builder()
        .route(format!("*,aco {}", origin.target()))
        .run()
        .await;
    let client = Client::new();
    let reply = client
        .send(
            "GET",
            &hf.url("/plain"),
            &[("Origin", "https://app.test")],
            "",
        )
        .await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.header("access-control-allow-origin"),
        Some("https://app.test")
    );
    assert_eq!(
        reply.header("access-control-allow-credentials"),
        Some("true")
    );
    assert_eq!(reply.header("access-control-max-age"), Some("3600"));
    // A preflight gets what it asked for.
    let reply = client
        .send(
            "OPTIONS",
            &hf.url("/plain"),
            &[
                ("Origin", "https://app.test"),
                ("Access-Control-Request-Method", "DELETE"),
                ("Access-Control-Request-Headers", "x-token"),
            ],
            "",
        )
        .await;
    assert_eq!(reply.header("access-control-allow-methods"), Some("DELETE"));
    assert_eq!(
        reply.header("access-control-allow-headers"),
        Some("x-token")
    );
    // A held long-poll: the published answer carries them, with its own
    // header exposed.
    let held = tokio::spawn({
        let (client, url) = (client.clone(), hf.url("/grip-instruct"));
        async move {
            let reply = client
                .send("GET", &url, &[("Origin", "https://app.test")], "")
                .await;
            (
                reply.status,
                reply
                    .header("access-control-allow-origin")
                    .map(str::to_owned),
                reply
                    .header("access-control-expose-headers")
                    .map(str::to_owned),
                reply.text(),
            )
        }
    });
    assert!(
        hf.wait_metric("holdfast_held_sessions", &["mode=\"response\""], 1.0, WAIT)
            .await
    );
    let item = serde_json::json!({"items": [{"channel": "test", "formats": {"http-response": {
        "code": 201, "headers": {"X-Pub": "1"}, "body": "published"}}}]});
    assert_eq!(hf.publish(&item.to_string()).await.0, 200);
    let (status, allow_origin, exposed, text) = held.await.unwrap();
    assert_eq!((status, text.as_str()), (201, "published"));
    assert_eq!(allow_origin.as_deref(), Some("https://app.test"));
    assert!(
        exposed.is_some_and(|e| e.contains("X-Pub")),
        "{}",
        hf.logs()
    );
}

/// The JSON object a JSON-P body calls `cb` with.
fn called_with(body: &str) -> serde_json::Value {
    let json = body
        .strip_prefix("/**/cb(")
        .and_then(|b| b.strip_suffix(");\n"))
        .unwrap_or_else(|| panic!("not a call to cb: {body:?}"));
    serde_json::from_str(json).expect("a JSON argument")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jsonp_requests_and_long_polls() {
    let origin = Origin::start().await;
    let hf = Holdfast::builder()
        .route(format!("*,aco {}", origin.target()))
        .run()
        .await;
    let client = Client::new();
    // The GET stands for a POST with a body and a header.
    let reply = client
        .get(&hf.url(
            "/thing?q=1&callback=cb&_method=POST&_body=hello&_headers=%7B%22X-A%22%3A%221%22%7D",
        ))
        .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("content-type"), Some("application/javascript"));
    let call = called_with(&reply.text());
    assert_eq!(call["code"], 200);
    let echo: serde_json::Value = serde_json::from_str(call["body"].as_str().unwrap()).unwrap();
    assert_eq!(echo["method"], "POST");
    assert_eq!(echo["uri"], "/thing?q=1");
    assert_eq!(echo["body_len"], 5);
    assert_eq!(echoed_header(&echo, "x-a").as_deref(), Some("1"));
    // An origin error is still a 200 to the script, with the code inside.
    let reply = client.get(&hf.url("/status/404?callback=cb")).await;
    assert_eq!(reply.status, 200);
    assert_eq!(called_with(&reply.text())["code"], 404);
    // A bad callback is refused, saying so.
    let reply = client.get(&hf.url("/thing?callback=alert(1)")).await;
    assert_eq!(reply.status, 400);
    assert!(
        reply.text().contains("Invalid callback parameter."),
        "{}",
        reply.text()
    );
    // A JSON-P long-poll: the published answer comes wrapped.
    let held = tokio::spawn({
        let (client, url) = (client.clone(), hf.url("/grip-instruct?callback=cb"));
        async move {
            let reply = client.get(&url).await;
            (
                reply.status,
                reply.header("content-type").map(str::to_owned),
                reply.text(),
            )
        }
    });
    assert!(
        hf.wait_metric("holdfast_held_sessions", &["mode=\"response\""], 1.0, WAIT)
            .await
    );
    let item = serde_json::json!({"items": [{"channel": "test", "formats": {"http-response": {
        "code": 201, "body": "{\"n\":1}"}}}]});
    assert_eq!(hf.publish(&item.to_string()).await.0, 200);
    let (status, content_type, text) = held.await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(content_type.as_deref(), Some("application/javascript"));
    let call = called_with(&text);
    assert_eq!(
        (call["code"].as_u64(), call["body"].as_str()),
        (Some(201), Some("{\"n\":1}"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orig_headers_reach_the_origin_marked() {
    let origin = Origin::start().await;
    let hf = Holdfast::builder()
        .route(format!("*,orig_headers {}", origin.target()))
        .set("proxy", "orig_headers_need_mark", "Cookie")
        .run()
        .await;
    let reply = Client::new()
        .send(
            "GET",
            &hf.url("/o"),
            &[
                ("X-Custom", "v"),
                ("Cookie", "a=b"),
                ("Connection", "keep-alive"),
            ],
            "",
        )
        .await;
    let echo = reply.json();
    assert_eq!(
        echoed_header(&echo, "eb9bf0f5-x-custom").as_deref(),
        Some("v")
    );
    assert_eq!(
        echoed_header(&echo, "eb9bf0f5-connection").as_deref(),
        Some("keep-alive")
    );
    assert_eq!(
        echoed_header(&echo, "eb9bf0f5-cookie"),
        None,
        "needs a mark"
    );
    assert_eq!(echoed_header(&echo, "x-custom").as_deref(), Some("v"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_log_level_lifts_or_quiets_its_lines() {
    let origin = Origin::start().await;
    let dead = free_port();
    let hf = Holdfast::builder()
        .route(format!("*,path_beg=/loud,log_level=3 {}", origin.target()))
        .route(format!("*,path_beg=/quiet,log_level=0 127.0.0.1:{dead}"))
        .route(format!("*,path_beg=/normal 127.0.0.1:{dead}"))
        .run()
        .await;
    let client = Client::new();
    assert_eq!(client.get(&hf.url("/loud/x")).await.status, 200);
    assert_eq!(client.get(&hf.url("/quiet/x")).await.status, 502);
    assert_eq!(client.get(&hf.url("/normal/x")).await.status, 502);
    // The loud route's debug line is written at info; the quiet route's
    // warning is not, the other route's is.
    assert!(hf.wait_log("/loud/x -> 200", WAIT).await, "{}", hf.logs());
    assert!(hf.wait_log("/normal/x -> 502", WAIT).await);
    let logs = hf.logs();
    let count = |needle: &str| logs.lines().filter(|l| l.contains(needle)).count();
    // The proxy's line names the absolute URI (connmgr's the path).
    assert_eq!(count("GET http://"), 1, "only the loud route's\n{logs}");
    assert_eq!(
        count(&format!("127.0.0.1:{dead} failed")),
        1,
        "only the normal route's\n{logs}"
    );
}
