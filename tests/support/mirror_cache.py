#!/usr/bin/python3
"""mirror_cache UPSTREAM CACHE_DIR: a caching proxy for one Debian mirror.

The `--create --debian` test builds a real suite with mmdebstrap. Through
this proxy, what never changes on a mirror (packages under pool/, and index
files fetched by hash) is downloaded once per machine and kept in CACHE_DIR,
as the guest tree is; the signed Release files are fetched anew every time,
so apt still checks everything it gets against Debian's keys.

It listens on 127.0.0.1 on a free port, prints `port N` on stdout, and
serves until its stdin is closed.
"""

import http.server
import os
import shutil
import sys
import tempfile
import threading
import urllib.error
import urllib.request

UPSTREAM_TIMEOUT = 120


def cacheable(path):
    """True for files a Debian mirror never changes in place."""
    return path.startswith("/pool/") or "/by-hash/" in path


def safe(path):
    """The request path, or None when it could leave the mirror."""
    path = path.split("?", 1)[0]
    parts = path.split("/")
    if not path.startswith("/") or any(p in ("..", ".") for p in parts):
        return None
    return path


class Proxy(http.server.BaseHTTPRequestHandler):
    upstream = ""
    cache = ""

    def log_message(self, fmt, *args):
        """Quiet: the test reports what matters."""

    def do_GET(self):
        path = safe(self.path)
        if path is None:
            self.send_error(400, "bad path")
            return
        if not cacheable(path):
            self.relay(path)
            return
        local = os.path.join(self.cache, path.lstrip("/"))
        if not os.path.isfile(local):
            try:
                self.fetch(path, local)
            except urllib.error.HTTPError as e:
                self.send_error(e.code, e.reason)
                return
            except (urllib.error.URLError, OSError) as e:
                self.send_error(502, str(e))
                return
        self.send_file(local)

    def fetch(self, path, local):
        """Downloads one file into the cache; only a complete one lands."""
        os.makedirs(os.path.dirname(local), exist_ok=True)
        with urllib.request.urlopen(self.upstream + path, timeout=UPSTREAM_TIMEOUT) as response:
            fd, tmp = tempfile.mkstemp(dir=os.path.dirname(local))
            try:
                with os.fdopen(fd, "wb") as out:
                    shutil.copyfileobj(response, out)
                os.chmod(tmp, 0o644)
                os.replace(tmp, local)
            except BaseException:
                os.unlink(tmp)
                raise

    def relay(self, path):
        """Passes a file that may change (Release, InRelease) straight through."""
        try:
            with urllib.request.urlopen(self.upstream + path, timeout=UPSTREAM_TIMEOUT) as response:
                body = response.read()
        except urllib.error.HTTPError as e:
            self.send_error(e.code, e.reason)
            return
        except (urllib.error.URLError, OSError) as e:
            self.send_error(502, str(e))
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def send_file(self, local):
        with open(local, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            self.send_response(200)
            self.send_header("Content-Length", str(size))
            self.end_headers()
            shutil.copyfileobj(f, self.wfile)


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: mirror_cache UPSTREAM CACHE_DIR")
    Proxy.upstream = sys.argv[1].rstrip("/")
    Proxy.cache = sys.argv[2]
    os.makedirs(Proxy.cache, exist_ok=True)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Proxy)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    print(f"port {server.server_address[1]}", flush=True)
    sys.stdin.read()
    server.shutdown()


if __name__ == "__main__":
    main()
