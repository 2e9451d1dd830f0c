//! The benchmarks' origin: nginx answering `/` with a small body,
//! `/stream` with a GRIP stream hold on channel `bench`, `/cached` with the
//! same hold cacheable for ten minutes (each request logged to
//! `cached.log`), `/ws` as a WebSocket-over-HTTP origin subscribing every
//! connection to `bench`; and a purge sink answering anything with 200,
//! each request logged to `purges.log`.

use holdfast_tests::harness::nginx::Nginx;

/// The channel the origin holds connections on.
pub const CHANNEL: &str = "bench";

/// Starts the origin.
pub async fn grip_origin() -> Nginx {
    Nginx::builder()
        .server(
            "origin",
            r#"    location / { default_type text/plain; return 200 "hello from the origin\n"; }
    location /stream {
      default_type text/plain;
      add_header Grip-Hold stream;
      add_header Grip-Channel bench;
      return 200 "stream open\n";
    }
    location /cached {
      default_type text/plain;
      access_log {dir}/cached.log;
      add_header Grip-Hold stream;
      add_header Grip-Channel bench;
      add_header Cache-Control s-maxage=600;
      return 200 "stream open\n";
    }
    location /ws {
      default_type application/websocket-events;
      add_header Sec-WebSocket-Extensions grip;
      if ($http_content_length = 6) {
        return 200 "OPEN\r\nTEXT 28\r\nc:{\"type\":\"subscribe\",\"channel\":\"bench\"}\r\n";
      }
      return 200 "";
    }"#,
        )
        .server(
            "purge",
            r#"    access_log {dir}/purges.log;
    location / { return 200 "purged\n"; }"#,
        )
        .run()
        .await
}
