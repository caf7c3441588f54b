"""A webhook receiver for the tests: every notification Alertmanager POSTs is appended, as one
JSON line with the time it arrived, to the file given as the first argument.

    python3 alert_receiver.py /var/log/hub-test-alerts.jsonl [port]

It listens on 127.0.0.1 only (Alertmanager runs on the same host). test_2_monitoring.py starts
it as a transient systemd unit and reads the file.
"""

import json
import sys
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

OUT = sys.argv[1]
PORT = int(sys.argv[2]) if len(sys.argv) > 2 else 9095


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        record = {"received_at": time.time(), "payload": json.loads(body)}
        with open(OUT, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


HTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
