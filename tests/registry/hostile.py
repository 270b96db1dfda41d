#!/usr/bin/env python3
"""A hostile registry: serves a tiny image of its own, from memory, and
misbehaves as MODE says.

    hostile.py DIR MODE [REALM]

It listens on two free loopback ports: "main", the registry, and "aux", a
second server (a token realm, a redirect target) that serves the same
image and tokens. Each speaks HTTPS when DIR holds its certificate
(main.pem and main.key, aux.pem and aux.key), plain HTTP otherwise. Once
both listen it writes DIR/info.json: {"main": PORT, "aux": PORT,
"layer": DIGEST}. Every request is appended to DIR/log as one line,
LISTENER TAB METHOD TAB PATH TAB AUTH, where AUTH is the scheme of the
Authorization header or "-"; a TLS handshake that fails is logged as
LISTENER TAB TLS-FAILED TAB REASON TAB -.

The image (repository hostile/app, any tag) is one gzip layer holding
busybox, sh and cat, and /etc/marker saying "hostile". Modes:

  serve              the image, no authentication
  token              bearer tokens from REALM (a template: {main} and {aux}
                     stand for the two ports); both listeners answer /token
  redirect-token     as token, and main's /token redirects to aux's
  slow-token         as token, each token answered one byte every 2 s
  redirect-manifest  main redirects manifests to aux (307)
  redirect-blob      main redirects blobs to aux (307)
  slow-manifest      manifests sent one byte every 2 s
  slow-blob          the layer sent at 10 bytes a second
  many-layers        a manifest that lists an empty layer 5000 times
                     (under the 4 MiB a manifest may have)
  huge-layers        the same 100000 times (15 MB)
  many-manifests     an index of 2000 entries
  huge-manifests     an index of 100000 entries (10 MB)
  evil-digest        an index whose entry's digest is a path
"""

import gzip
import hashlib
import io
import json
import os
import re
import socketserver
import ssl
import sys
import tarfile
import threading
import time
import http.server

DIR, MODE = sys.argv[1], sys.argv[2]
REALM = sys.argv[3] if len(sys.argv) > 3 else ""
TOKEN = "hostile-token"
REPO = "hostile/app"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
GZIP_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
ARCH = {"x86_64": "amd64", "aarch64": "arm64"}.get(os.uname().machine, os.uname().machine)
log_lock = threading.Lock()
ports = {}


def log(listener, method, path, auth):
    with log_lock, open(os.path.join(DIR, "log"), "a") as f:
        f.write("%s\t%s\t%s\t%s\n" % (listener, method, path.replace("\t", " ").replace("\n", " "), auth))


def sha(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def tar(entries):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as t:
        for name, kind, data in entries:
            info = tarfile.TarInfo(name)
            info.mtime = 0
            if kind == "dir":
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                t.addfile(info)
            elif kind == "link":
                info.type, info.linkname, info.mode = tarfile.SYMTYPE, data, 0o777
                t.addfile(info)
            else:
                info.size, info.mode = len(data), kind
                t.addfile(info, io.BytesIO(data))
    return buf.getvalue()


with open("/usr/bin/busybox", "rb") as f:
    busybox = f.read()
layer_tar = tar(
    [
        ("bin", "dir", None),
        ("bin/busybox", 0o755, busybox),
        ("bin/sh", "link", "busybox"),
        ("bin/cat", "link", "busybox"),
        ("etc", "dir", None),
        ("etc/marker", 0o644, b"hostile\n"),
    ]
)
layer = gzip.compress(layer_tar, mtime=0)
empty_tar = tar([])
empty = gzip.compress(empty_tar, mtime=0)
config = json.dumps(
    {"architecture": ARCH, "os": "linux", "config": {}, "rootfs": {"type": "layers", "diff_ids": [sha(layer_tar)]}}
).encode()


def descriptor(media_type, data):
    return {"mediaType": media_type, "digest": sha(data), "size": len(data)}


def manifest_of(layers):
    doc = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor("application/vnd.oci.image.config.v1+json", config),
        "layers": layers,
    }
    return json.dumps(doc, separators=(",", ":")).encode()


blobs = {sha(layer): layer, sha(config): config, sha(empty): empty}
manifest = manifest_of([descriptor(GZIP_LAYER, layer)])
manifests = {sha(manifest): (OCI_MANIFEST, manifest)}
top = (OCI_MANIFEST, manifest)
COUNT = {"many-layers": 5000, "huge-layers": 100000, "many-manifests": 2000, "huge-manifests": 100000}.get(MODE, 0)
if MODE in ("many-layers", "huge-layers"):
    many = manifest_of([descriptor(GZIP_LAYER, empty)] * COUNT)
    top = (OCI_MANIFEST, many)
elif MODE in ("many-manifests", "huge-manifests", "evil-digest"):
    platform = {"os": "linux", "architecture": ARCH}
    first = dict(descriptor(OCI_MANIFEST, manifest), platform=platform)
    if MODE == "evil-digest":
        first["digest"] = "sha256:../../../../v2/x/manifests/evil"
        entries = [first]
    else:
        entries = [first] + [{"digest": sha(manifest), "size": len(manifest)}] * (COUNT - 1)
    index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}, separators=(",", ":"))
    top = (OCI_INDEX, index.encode())
manifests[sha(top[1])] = top


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 120

    def log_message(self, *args):
        pass

    def reply(self, status, headers, body, trickle=0.0, chunk=1):
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command == "HEAD":
            return
        if not trickle:
            self.wfile.write(body)
            return
        # One small piece at a time, until the client gives up.
        for i in range(0, len(body), chunk):
            self.wfile.write(body[i : i + chunk])
            self.wfile.flush()
            time.sleep(trickle)

    def redirect(self, port, path):
        self.reply(307, [("Location", "http://127.0.0.1:%d%s" % (port, path))], b"")

    def do_HEAD(self):
        self.do_GET()

    def do_GET(self):
        listener = self.server.name
        auth = self.headers.get("Authorization")
        log(listener, self.command, self.path, auth.split(" ")[0] if auth else "-")
        path = self.path
        main = listener == "main"
        if path.startswith("/token"):
            if MODE == "redirect-token" and main:
                return self.redirect(ports["aux"], path)
            body = json.dumps({"token": TOKEN}).encode()
            trickle = 2.0 if MODE == "slow-token" else 0.0
            return self.reply(200, [("Content-Type", "application/json")], body, trickle)
        if MODE in ("token", "redirect-token", "slow-token") and main and auth != "Bearer " + TOKEN:
            realm = REALM.format(main=ports["main"], aux=ports["aux"])
            challenge = 'Bearer realm="%s",service="hostile",scope="repository:%s:pull"' % (realm, REPO)
            body = b'{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}'
            return self.reply(401, [("WWW-Authenticate", challenge), ("Content-Type", "application/json")], body)
        if path == "/v2/":
            return self.reply(200, [("Content-Type", "application/json")], b"{}")
        m = re.fullmatch(r"/v2/(.+)/(manifests|blobs)/([^/?]+)", path)
        if not m or m.group(1) != REPO:
            return self.not_found()
        kind, ref = m.group(2), m.group(3)
        if kind == "manifests":
            if MODE == "redirect-manifest" and main:
                return self.redirect(ports["aux"], path)
            media_type, body = manifests.get(ref, (None, None)) if ref.startswith("sha256:") else top
            if body is None:
                return self.not_found()
            trickle = 2.0 if MODE == "slow-manifest" else 0.0
            return self.reply(200, [("Content-Type", media_type), ("Docker-Content-Digest", sha(body))], body, trickle)
        if ref not in blobs:
            return self.not_found()
        if MODE == "redirect-blob" and main:
            return self.redirect(ports["aux"], path)
        body = blobs[ref]
        slow = MODE == "slow-blob" and body is layer
        headers = [("Content-Type", "application/octet-stream"), ("Docker-Content-Digest", ref)]
        return self.reply(200, headers, body, 0.1 if slow else 0.0)

    def not_found(self):
        body = b'{"errors":[{"code":"NOT_FOUND","message":"not here"}]}'
        self.reply(404, [("Content-Type", "application/json")], body)


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True

    def __init__(self, name):
        self.name = name
        self.context = None
        pem, key = os.path.join(DIR, name + ".pem"), os.path.join(DIR, name + ".key")
        if os.path.exists(pem):
            self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self.context.load_cert_chain(pem, key)
        super().__init__(("127.0.0.1", 0), Handler)

    def finish_request(self, request, client_address):
        # The handshake in the connection's own thread, so that a client
        # that refuses the certificate is logged and blocks nobody.
        if self.context is not None:
            try:
                request.settimeout(30)
                request = self.context.wrap_socket(request, server_side=True)
            except (ssl.SSLError, OSError) as e:
                log(self.name, "TLS-FAILED", str(e), "-")
                return
        self.RequestHandlerClass(request, client_address, self)


for name in ("main", "aux"):
    server = Server(name)
    ports[name] = server.server_address[1]
    threading.Thread(target=server.serve_forever, daemon=True).start()
info = os.path.join(DIR, "info.json")
with open(info + ".new", "w") as f:
    json.dump({"main": ports["main"], "aux": ports["aux"], "layer": sha(layer)}, f)
os.rename(info + ".new", info)
threading.Event().wait()
