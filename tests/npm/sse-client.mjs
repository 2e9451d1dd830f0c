// An SSE client on the npm `eventsource` package: prints one JSON line per
// thing that happens (open, message with its id, error), reconnections
// (with Last-Event-ID, after the server's `retry:`) included.
// Usage: node sse-client.mjs <url>
import { EventSource } from "eventsource";

const source = new EventSource(process.argv[2]);
const say = (what) => process.stdout.write(JSON.stringify(what) + "\n");
source.onopen = () => say({ open: true });
source.onmessage = (e) => say({ id: e.lastEventId, data: e.data });
source.onerror = () => say({ error: true });
