"""Publish one http-stream item with the real gripcontrol/pubcontrol libraries.

Usage: publish.py MODE URI CHANNEL CONTENT
  MODE http      URI is the publish API base (http://127.0.0.1:5561)
  MODE zmq-push  URI is the ZeroMQ PULL input (tcp://127.0.0.1:5560)
  MODE zmq       URI is the command socket (tcp://127.0.0.1:5563); the
                 library asks it for the publish sockets (get-zmq-uris)
"""

import sys

from gripcontrol import GripPubControl

mode, uri, channel, content = sys.argv[1:5]
pub = GripPubControl()
if mode == "http":
    pub.apply_grip_config({"control_uri": uri})
elif mode == "zmq-push":
    pub.apply_config({"zmq_push_uri": uri})
elif mode == "zmq":
    pub.apply_grip_config({"control_zmq_uri": uri})
else:
    sys.exit("unknown mode " + mode)

# Blocking, so that a failure raises here instead of in a background thread.
pub.publish_http_stream(channel, content, blocking=True)
# pubcontrol closes its PUSH socket with linger 0, which drops a message still
# waiting for the TCP connection it just started; give it time to go out.
for client in pub.clients:
    if getattr(client, "_push_sock", None) is not None:
        client._push_sock.linger = 5000
pub.finish()
print("published")
