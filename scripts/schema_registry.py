#!/usr/bin/env python3
"""A minimal Confluent-compatible schema registry, for tidemark's tests only.

No real registry can be installed on the test machines (Confluent's and Apicurio's
need Docker or Maven; Karapace is not on PyPI), so the Avro tests run this stand-in.
It implements the documented REST endpoints that Confluent's serializers
(confluent-kafka's AvroSerializer) and tidemark call, in memory:

  POST /subjects/{subject}/versions     register {"schema", "schemaType"?} -> {"id"}
  POST /subjects/{subject}              look a schema up -> {"subject","id","version","schema"},
                                        404 with error_code 40403 when unknown
  GET  /schemas/ids/{id}                -> {"schema"} (plus "schemaType" when not AVRO)
  GET  /schemas/ids/{id}/subjects       -> ["subject", ...]
  GET  /schemas/ids/{id}/versions       -> [{"subject","version"}, ...]
  GET  /schemas/types                   -> ["AVRO", "JSON", "PROTOBUF"]
  GET  /subjects                        -> ["subject", ...]
  GET  /subjects/{subject}/versions     -> [1, 2, ...]
  GET  /subjects/{subject}/versions/{version|latest}
                                        -> {"subject","version","id","schema"}
  GET  /config, /config/{subject}       -> {"compatibilityLevel": "NONE"}

Ids are global: the same schema text gets the same id under every subject, as in
Confluent's registry; registering it again under a subject returns the existing id.
Schemas are compared as text after parsing and re-serialising the JSON compactly (no
Avro canonical form, no compatibility checks, no references, no deletes). A real
registry is untested.

Basic auth: when SCHEMA_REGISTRY_AUTH is set to "user:password", every request must
carry it (401 with error_code 401 otherwise).

    python3 scripts/schema_registry.py --port N

prints "listening on 127.0.0.1:N" (N chosen by the system when 0) and serves until
killed.
"""

import argparse
import base64
import json
import os
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit


class Store:
    """Schemas by id, and each subject's versions (lists of ids)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.schemas = []  # index = id - 1: (canonical text, original text, type)
        self.by_text = {}  # (canonical text, type) -> id
        self.subjects = {}  # subject -> [id, ...] (version = index + 1)

    @staticmethod
    def canonical(text):
        try:
            return json.dumps(json.loads(text), separators=(",", ":"), sort_keys=True)
        except ValueError:
            return None

    def register(self, subject, text, kind):
        canon = self.canonical(text) if kind == "AVRO" else text
        if canon is None:
            return None
        with self.lock:
            sid = self.by_text.get((canon, kind))
            if sid is None:
                self.schemas.append((canon, text, kind))
                sid = len(self.schemas)
                self.by_text[(canon, kind)] = sid
            versions = self.subjects.setdefault(subject, [])
            if sid not in versions:
                versions.append(sid)
            return sid

    def lookup(self, subject, text, kind):
        canon = self.canonical(text) if kind == "AVRO" else text
        with self.lock:
            sid = self.by_text.get((canon, kind))
            versions = self.subjects.get(subject, [])
            if sid is None or sid not in versions:
                return None
            return sid, versions.index(sid) + 1

    def schema(self, sid):
        with self.lock:
            if 1 <= sid <= len(self.schemas):
                return self.schemas[sid - 1]
            return None


STORE = Store()
AUTH = os.environ.get("SCHEMA_REGISTRY_AUTH")


class Handler(BaseHTTPRequestHandler):
    server_version = "tidemark-test-registry/1"
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):  # quiet: the tests read stdout
        if os.environ.get("SCHEMA_REGISTRY_LOG"):
            sys.stderr.write("registry: " + (fmt % args) + "\n")

    # -- replies ---------------------------------------------------------------

    def reply(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/vnd.schemaregistry.v1+json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def error(self, status, code, message):
        self.reply(status, {"error_code": code, "message": message})

    def authorised(self):
        if not AUTH:
            return True
        header = self.headers.get("Authorization", "")
        expected = "Basic " + base64.b64encode(AUTH.encode()).decode()
        if header == expected:
            return True
        self.error(401, 401, "Unauthorized")
        return False

    def body(self):
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            return json.loads(raw or b"{}")
        except ValueError:
            return None

    def parts(self):
        path = urlsplit(self.path).path
        return [unquote(p) for p in path.strip("/").split("/") if p]

    def schema_reply(self, subject, version, sid):
        canon, text, kind = STORE.schema(sid)
        out = {"subject": subject, "version": version, "id": sid, "schema": text}
        if kind != "AVRO":
            out["schemaType"] = kind
        return out

    # -- requests --------------------------------------------------------------

    def do_GET(self):
        if not self.authorised():
            return
        p = self.parts()
        if p == ["subjects"]:
            with STORE.lock:
                return self.reply(200, sorted(STORE.subjects))
        if p == ["schemas", "types"]:
            return self.reply(200, ["AVRO", "JSON", "PROTOBUF"])
        if p and p[0] == "config" and len(p) <= 2:
            return self.reply(200, {"compatibilityLevel": "NONE"})
        if len(p) >= 3 and p[:2] == ["schemas", "ids"]:
            try:
                sid = int(p[2])
            except ValueError:
                return self.error(404, 40403, "Schema not found")
            found = STORE.schema(sid)
            if found is None:
                return self.error(404, 40403, "Schema %s not found" % p[2])
            canon, text, kind = found
            if len(p) == 3:
                out = {"schema": text}
                if kind != "AVRO":
                    out["schemaType"] = kind
                return self.reply(200, out)
            with STORE.lock:
                uses = [
                    (s, v.index(sid) + 1) for s, v in sorted(STORE.subjects.items()) if sid in v
                ]
            if p[3:] == ["subjects"]:
                return self.reply(200, [s for s, _ in uses])
            if p[3:] == ["versions"]:
                return self.reply(200, [{"subject": s, "version": v} for s, v in uses])
        if len(p) >= 3 and p[0] == "subjects" and p[2] == "versions":
            subject = p[1]
            with STORE.lock:
                versions = list(STORE.subjects.get(subject, []))
            if not versions:
                return self.error(404, 40401, "Subject '%s' not found." % subject)
            if len(p) == 3:
                return self.reply(200, list(range(1, len(versions) + 1)))
            if len(p) == 4:
                if p[3] in ("latest", "-1"):
                    version = len(versions)
                else:
                    try:
                        version = int(p[3])
                    except ValueError:
                        return self.error(422, 42202, "Invalid version")
                if not 1 <= version <= len(versions):
                    return self.error(404, 40402, "Version %s not found." % p[3])
                return self.reply(200, self.schema_reply(subject, version, versions[version - 1]))
        return self.error(404, 404, "HTTP 404 Not Found")

    def do_POST(self):
        if not self.authorised():
            return
        p = self.parts()
        body = self.body()
        if body is None or not isinstance(body, dict) or not isinstance(body.get("schema"), str):
            return self.error(422, 42201, "Invalid schema: the body must be {\"schema\": \"...\"}")
        kind = (body.get("schemaType") or "AVRO").upper()
        if len(p) == 3 and p[0] == "subjects" and p[2] == "versions":
            sid = STORE.register(p[1], body["schema"], kind)
            if sid is None:
                return self.error(422, 42201, "Invalid schema: not JSON")
            return self.reply(200, {"id": sid})
        if len(p) == 2 and p[0] == "subjects":
            with STORE.lock:
                known = p[1] in STORE.subjects
            if not known:
                return self.error(404, 40401, "Subject '%s' not found." % p[1])
            found = STORE.lookup(p[1], body["schema"], kind)
            if found is None:
                return self.error(404, 40403, "Schema not found")
            sid, version = found
            return self.reply(200, self.schema_reply(p[1], version, sid))
        return self.error(404, 404, "HTTP 404 Not Found")

    def do_PUT(self):
        if not self.authorised():
            return
        p = self.parts()
        self.body()
        if p and p[0] == "config":
            return self.reply(200, {"compatibility": "NONE"})
        return self.error(404, 404, "HTTP 404 Not Found")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--host", default="127.0.0.1")
    args = ap.parse_args()
    server = ThreadingHTTPServer((args.host, args.port), Handler)
    server.daemon_threads = True
    print("listening on %s:%d" % (args.host, server.server_address[1]), flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
