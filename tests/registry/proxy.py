#!/usr/bin/env python3
"""A loopback HTTP proxy in front of a test registry, which misbehaves on
purpose: it cuts blob downloads off (once or always), flips a byte, sends
more bytes than the manifest says, redirects blobs elsewhere, or asks for a
bearer token first.

    proxy.py PORT_FILE UPSTREAM_PORT MODE

It listens on a free loopback port, writes the port to PORT_FILE, and
forwards every request to http://127.0.0.1:UPSTREAM_PORT. Modes: pass,
cut-once, cut, tamper, oversize, redirect, bearer.
"""

import http.client
import http.server
import json
import socketserver
import sys
import threading

PORT_FILE, UPSTREAM, MODE = sys.argv[1], int(sys.argv[2]), sys.argv[3]
TOKEN = "distrorun-test-token"
cut_already = set()
lock = threading.Lock()


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def upstream(self, path):
        conn = http.client.HTTPConnection("127.0.0.1", UPSTREAM, timeout=60)
        headers = {k: v for k, v in self.headers.items() if k.lower() in ("accept", "range", "authorization")}
        if MODE == "bearer":
            headers.pop("Authorization", None)
        conn.request(self.command, path, headers=headers)
        return conn.getresponse()

    def reply(self, status, headers, body):
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_HEAD(self):
        self.do_GET()

    def do_GET(self):
        path = self.path
        host = "127.0.0.1:%d" % self.server.server_address[1]
        if MODE == "bearer":
            if path.startswith("/token"):
                body = json.dumps({"token": TOKEN}).encode()
                return self.reply(200, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))], body)
            if self.headers.get("Authorization") != "Bearer " + TOKEN:
                body = b'{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}'
                challenge = 'Bearer realm="http://%s/token",service="distrorun-test",scope="repository:test:pull"' % host
                return self.reply(401, [("WWW-Authenticate", challenge), ("Content-Length", str(len(body)))], body)
        is_blob = "/blobs/sha256:" in path
        if MODE == "redirect" and is_blob and not path.startswith("/storage"):
            return self.reply(307, [("Location", "http://%s/storage%s" % (host, path)), ("Content-Length", "0")], b"")
        if path.startswith("/storage"):
            path = path[len("/storage"):]
        resp = self.upstream(path)
        body = resp.read()
        headers = [(k, v) for k, v in resp.getheaders() if k.lower() not in ("content-length", "connection", "transfer-encoding")]
        # Layers only: the large blobs, not configs.
        if is_blob and len(body) > 4096 and resp.status in (200, 206):
            if MODE == "tamper":
                i = len(body) // 2
                body = body[:i] + bytes([body[i] ^ 0xFF]) + body[i + 1:]
            elif MODE == "oversize":
                body = body + b"\0" * 1024
            elif MODE in ("cut", "cut-once"):
                with lock:
                    first = path not in cut_already
                    cut_already.add(path)
                if MODE == "cut" or first:
                    self.send_response(resp.status)
                    for k, v in headers:
                        self.send_header(k, v)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
        self.reply(resp.status, headers + [("Content-Length", str(len(body)))], body)


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True


server = Server(("127.0.0.1", 0), Handler)
with open(PORT_FILE + ".new", "w") as f:
    f.write(str(server.server_address[1]))
import os

os.rename(PORT_FILE + ".new", PORT_FILE)
server.serve_forever()
