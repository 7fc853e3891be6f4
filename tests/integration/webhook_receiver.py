#!/usr/bin/env python3
"""A webhook receiver for test_presence_events: checks each POST's
Notify-Signature with the secret (README.md "Webhooks") and logs it.

  webhook_receiver.py PORT SECRET LOG MODE_FILE

Each request is answered as MODE_FILE says when it arrives: "200", "500",
or "sleep:<ms>" (then 200); a missing file means 200. One JSON line per
request goes to LOG once answered: id, node, sig_ok, status, start, end
(seconds) and the body's fields.
"""
import hashlib
import hmac
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PORT, SECRET, LOG, MODE = int(sys.argv[1]), sys.argv[2].encode(), sys.argv[3], sys.argv[4]
lock = threading.Lock()


def verify(header, body):
    """The check README.md shows: t and v1 from the header, HMAC over "t.body"."""
    try:
        parts = dict(p.split("=", 1) for p in header.split(","))
        t = parts["t"]
        want = hmac.new(SECRET, t.encode() + b"." + body, hashlib.sha256).hexdigest()
        return hmac.compare_digest(want, parts["v1"]) and abs(time.time() - int(t)) < 300
    except (KeyError, ValueError):
        return False


def mode():
    try:
        with open(MODE) as f:
            return f.read().strip() or "200"
    except OSError:
        return "200"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        start = time.time()
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        m = mode()
        status = 200
        if m.startswith("sleep:"):
            time.sleep(int(m[6:]) / 1000.0)
        elif m.isdigit():
            status = int(m)
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.flush()
        try:
            fields = json.loads(body)
        except ValueError:
            fields = {}
        line = {
            "event_id": self.headers.get("Notify-Event-Id"),
            "node": self.headers.get("Notify-Node"),
            "signature": self.headers.get("Notify-Signature"),
            "sig_ok": verify(self.headers.get("Notify-Signature", ""), body),
            "type_ok": self.headers.get("Content-Type") == "application/json",
            "status": status,
            "start": start,
            "end": time.time(),
            "body": fields,
        }
        with lock, open(LOG, "a") as f:
            f.write(json.dumps(line) + "\n")

    def log_message(self, *args):
        pass


server = ThreadingHTTPServer(("127.0.0.1", PORT), Handler)
server.daemon_threads = True
print("ready", flush=True)
server.serve_forever()
