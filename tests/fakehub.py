"""A tiny stand-in for the Hugging Face hub's file server, for tests.

Serves HEAD and GET on /datasets/<owner>/<name>/resolve/<revision>/<file> (and a one-page
/api/datasets/<owner>/<name>/tree/<revision>/<folder> listing) from 127.0.0.1 on a
free port, with the headers huggingface_hub's hf_hub_download needs (X-Repo-Commit, ETag,
Content-Length; 206 + Content-Range for Range requests) and the hub's error codes
(X-Error-Code RepoNotFound / EntryNotFound). It sends no X-Xet-* headers, so clients take the plain
HTTP download path. Faults are switched per file; every request is logged.

    with FakeHub({"kjj0/fineweb10B-gpt2": {"a.bin": b"..."}}) as hub:
        env["HF_ENDPOINT"] = hub.url
"""

import hashlib
import json
import os
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote

COMMIT = "0123456789abcdef0123456789abcdef01234567"
RESOLVE = re.compile(r"^/datasets/([^/]+/[^/]+)/resolve/([^/]+)/(.+)$")
TREE = re.compile(r"^/api/datasets/([^/]+/[^/]+)/tree/([^/]+)(?:/(.*))?$")
RANGE = re.compile(r"^bytes=(\d+)-(\d*)$")


def hub_env(url, hf_home, offline=False):
    """os.environ for a client of the fake hub: no real HF settings, token or proxy leak in."""
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("HF_") and "proxy" not in k.lower()
    }
    env.update(
        HF_ENDPOINT=url,
        HF_HOME=str(hf_home),
        HF_HUB_DISABLE_TELEMETRY="1",
        HF_HUB_ETAG_TIMEOUT="5",
        HF_HUB_DOWNLOAD_TIMEOUT="5",
        NO_PROXY="127.0.0.1",
    )
    if offline:
        env["HF_HUB_OFFLINE"] = "1"
    return env


class FakeHub:
    def __init__(self, repos):
        self.repos = repos  # {repo_id: {filename: bytes}}
        self.log = []  # resolve requests: (method, filename, Range header or None)
        self.cut = {}  # filename -> how many upcoming GETs send half the body, then close
        self.empty = {}  # filename -> how many upcoming GETs send headers only, then close
        self.ignore_range = False  # answer Range requests with the whole file (200)
        self.server_errors = {}  # filename -> how many upcoming requests (HEAD or GET) get HTTP 500
        self.stall = set()  # filenames whose GETs send half the body, then hang until release
        self.stalled = threading.Event()  # set once a stalled GET has sent its half
        self.release = threading.Event()
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self.release.set()
        self._server.shutdown()
        self._server.server_close()

    def gets(self, filename=None):
        return [r for r in self.log if r[0] == "GET" and filename in (None, r[1])]

    def _take(self, faults, filename):
        with self._lock:
            if faults.get(filename, 0) > 0:
                faults[filename] -= 1
                return True
        return False

    def _handler(self):
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output quiet
                pass

            def do_HEAD(self):
                self._serve(body=False)

            def do_GET(self):
                self._serve(body=True)

            def _error(self, status, code):
                msg = code.encode()
                self.send_response(status)
                self.send_header("X-Error-Code", code)
                self.send_header("X-Repo-Commit", COMMIT)
                self.send_header("Content-Length", str(len(msg)))
                self.end_headers()
                if self.command == "GET":
                    self.wfile.write(msg)

            def _tree(self, m):
                """One folder's files, non-recursive (list_repo_tree), in one page."""
                if m.group(1) not in hub.repos:
                    return self._error(401, "RepoNotFound")
                folder = unquote(m.group(3) or "").strip("/")
                prefix = folder + "/" if folder else ""
                entries = [
                    {
                        "type": "file",
                        "path": name,
                        "size": len(data),
                        "oid": hashlib.sha1(data).hexdigest(),
                    }
                    for name, data in sorted(hub.repos[m.group(1)].items())
                    if name.startswith(prefix) and "/" not in name[len(prefix) :]
                ]
                payload = json.dumps(entries).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def _serve(self, body):
                m = RESOLVE.match(self.path.split("?")[0])
                if not m and TREE.match(self.path.split("?")[0]) and body:
                    return self._tree(TREE.match(self.path.split("?")[0]))
                if not m:  # e.g. the client's own /api/ look-ups; not part of a download
                    return self._error(404, "NotFound")
                filename = unquote(m.group(3))
                with hub._lock:
                    hub.log.append((self.command, filename, self.headers.get("Range")))
                if hub._take(hub.server_errors, filename):
                    return self._error(500, "InternalServerError")
                if m.group(1) not in hub.repos:
                    return self._error(401, "RepoNotFound")  # what the hub answers anonymous users
                data = hub.repos[m.group(1)].get(filename)
                if data is None:
                    return self._error(404, "EntryNotFound")

                start, end = 0, len(data)
                rng = RANGE.match(self.headers.get("Range") or "")
                partial = bool(rng) and not hub.ignore_range
                if partial:
                    start = int(rng.group(1))
                    end = min(int(rng.group(2)) + 1, end) if rng.group(2) else end
                    if start >= len(data):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(data)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                self.send_response(206 if partial else 200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(end - start))
                if partial:
                    self.send_header("Content-Range", f"bytes {start}-{end - 1}/{len(data)}")
                self.send_header("Accept-Ranges", "bytes")
                self.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
                self.send_header("X-Repo-Commit", COMMIT)
                self.end_headers()
                if not body:
                    return
                chunk = data[start:end]
                if filename in hub.stall:
                    self.wfile.write(chunk[: len(chunk) // 2])
                    self.wfile.flush()
                    hub.stalled.set()
                    hub.release.wait(30)
                    self.close_connection = True
                    return
                if hub._take(hub.empty, filename):
                    chunk = b""
                elif hub._take(hub.cut, filename):
                    chunk = chunk[: len(chunk) // 2]
                else:
                    self.wfile.write(chunk)
                    return
                # Short body, then close: the client sees the connection drop mid-transfer.
                self.wfile.write(chunk)
                self.wfile.flush()
                self.close_connection = True

        return Handler
