"""A GRIP origin in one file, Python's standard library only: what an
application behind Holdfast answers to hold a client open.

    GET /stream   an HTTP stream held on channel "news" (Grip-Hold: stream):
                  the client gets "welcome" at once, then whatever is
                  published to "news", until it disconnects
    GET /poll     a long-poll on channel "news" (Grip-Hold: response): the
                  client gets the next publish, or "nothing new" after 20 s
    GET /         a plain answer, proxied as is

Run: python3 grip_origin.py [port]   (default 8080, on 127.0.0.1)
Publish: curl -d '{"items":[{"channel":"news","formats":{"http-stream":
{"content":"hello\\n"}}}]}' http://127.0.0.1:5561/publish/
or: holdfast-publish news hello
"""

import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Origin(BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/stream":
            self.answer(b"welcome\n", [("Grip-Hold", "stream"), ("Grip-Channel", "news")])
        elif self.path == "/poll":
            self.answer(
                b"nothing new\n",
                [("Grip-Hold", "response"), ("Grip-Channel", "news"), ("Grip-Timeout", "20")],
            )
        else:
            self.answer(b"a plain answer from the origin\n", [])

    def answer(self, body, headers):
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args):
        sys.stderr.write("origin: " + format % args + "\n")


if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8080
    ThreadingHTTPServer(("127.0.0.1", port), Origin).serve_forever()
