"""Abuse probes for one fuzz run (scripts/fuzz.sh runs this after schemathesis), with requests
schemathesis does not make: made-up HTTP methods, a sweep of booking ids by one rider, and tokens
at the edges of their lifetime rules. Standard library only; seeded, so a failure reproduces.

    python3 scripts/fuzz_abuse.py   (environment: PORT, RUN, SEED, TOKEN, AUTH_SECRET, DB_URL)

Exits non-zero, naming each broken expectation, if any probe got an answer it should not have.
"""

import base64
import hashlib
import hmac
import json
import os
import random
import subprocess
import sys
import time
import urllib.error
import urllib.request
import urllib.parse

PORT = os.environ["PORT"]
RUN = os.environ["RUN"]
TOKEN = os.environ.get("TOKEN", "")
SECRET = os.environ.get("AUTH_SECRET", "")
DB_URL = os.environ["DB_URL"]
BASE = f"http://127.0.0.1:{PORT}"
KNOWN_METHODS = {"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "OTHER"}
# config/base.toml and config/test.toml: lifetimes per role and the clock skew allowed.
MAX_TTL = {"rider": 86400, "driver": 86400, "ops": 3600}
LEEWAY = 30

rng = random.Random(int(os.environ.get("SEED", "0")))
broken = []


def request(method, path, token=None, body=None):
    """(status, parsed JSON body or text) of one request."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(BASE + path, data=data, method=method)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=10) as reply:
            status, raw = reply.status, reply.read()
    except urllib.error.HTTPError as error:
        status, raw = error.code, error.read()
    try:
        return status, json.loads(raw or b"null")
    except ValueError:
        return status, raw.decode(errors="replace")


def expect(what, ok, detail):
    if not ok:
        broken.append(f"{what}: {detail}")


def sql(query):
    """Rows of `query` in the run's database, the password passed through the environment."""
    parts = urllib.parse.urlsplit(DB_URL)
    env = dict(os.environ, PGPASSWORD=urllib.parse.unquote(parts.password or ""))
    netloc = f"{parts.username}@{parts.hostname}:{parts.port}"
    url = urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, parts.query, ""))
    out = subprocess.run(
        ["/usr/lib/postgresql/15/bin/psql", url, "-Atqc", query],
        env=env, check=True, capture_output=True, text=True,
    )
    return out.stdout.splitlines()


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def jwt(claims):
    """`claims` signed HS256 with the test profile's secret, as an identity provider would."""
    head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = b64(json.dumps(claims).encode())
    mac = hmac.new(SECRET.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64(mac)}"


def unknown_methods():
    """Made-up methods on known and unknown paths: never a 5xx, never a new metrics label."""
    paths = ["/api/health", "/api/bookings", "/api/bookings/1/assign", "/x", "/metrics"]
    letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    for n in range(200):
        method = "".join(rng.choice(letters) for _ in range(rng.randint(3, 12))) + str(n)
        status, _ = request(method, rng.choice(paths))
        expect(f"{method}", 400 <= status < 500, f"answered {status}")
    # Operators (and everyone with auth off) read the metrics: the method labels stay closed.
    if RUN in ("jwt-ops", "off"):
        status, text = request("GET", "/metrics", TOKEN)
        expect("GET /metrics", status == 200, f"answered {status}")
        labels = set()
        for line in str(text).splitlines():
            if line.startswith("ridelock_http_requests_total{method=\""):
                labels.add(line.split('"')[1])
        expect("metrics method labels", labels <= KNOWN_METHODS, f"{sorted(labels - KNOWN_METHODS)}")


def id_sweep():
    """Rider 1 tries every action on every booking id: other riders' bookings stay untouched
    (no status change, no fencing-token bump, no event)."""
    if RUN != "jwt-rider":
        return
    def others():
        return sql(
            "SELECT b.id || ':' || b.status || ':' || b.fencing_token || ':' ||"
            " (SELECT count(*) FROM booking_events e WHERE e.booking_id = b.id)"
            " FROM bookings b WHERE b.rider_id <> 1 ORDER BY b.id"
        )
    before = others()
    top = int((sql("SELECT coalesce(max(id), 0) FROM bookings") or ["0"])[0])
    bodies = {
        "assign": None,
        "cancel": {"user_id": 1, "user_type": "rider", "reason": "sweep"},
        "accept": {"driver_id": 1},
        "complete": {"driver_id": 1, "actual_fare": 10.0},
    }
    for booking in range(1, top + 20):
        for action, body in bodies.items():
            status, reply = request("POST", f"/api/bookings/{booking}/{action}", TOKEN, body)
            # 403: a stranger, or a driver id that is not the rider's own; 404: no such booking;
            # 409 / 200 only on rider 1's own; 429 if the sweep outran its share.
            expect(f"POST {booking}/{action}", status in (200, 403, 404, 409, 429),
                   f"answered {status} {reply}")
    after = others()
    expect("other riders' bookings", before == after,
           f"changed: {sorted(set(before) ^ set(after))[:10]}")


def token_edges():
    """Tokens around the lifetime, nbf, iat and exp rules: each answers as the rules say."""
    if not SECRET or RUN == "off":
        return
    now = int(time.time())
    cases = []
    for role, subject in (("ops", "ops:fuzz"), ("rider", "rider:1")):
        most = MAX_TTL[role]
        cases += [
            ({"iat": now, "exp": now + most}, 200),
            ({"iat": now, "exp": now + most + LEEWAY + 5}, "token_lifetime_too_long"),
            ({"exp": now + most + LEEWAY + 5}, "token_lifetime_too_long"),
            ({"iat": now - most, "exp": now + 60}, "token_lifetime_too_long"),
            ({"iat": now, "exp": now + 60, "nbf": now + LEEWAY + 60}, "token_not_yet_valid"),
            ({"iat": now, "exp": now + 60, "nbf": now + LEEWAY - 10}, 200),
            ({"iat": now + LEEWAY + 60, "exp": now + 120}, "token_not_yet_valid"),
            ({"iat": now - 300, "exp": now - LEEWAY - 5}, "expired_token"),
            ({"iat": now - 300, "exp": now - LEEWAY + 10}, 200),
        ]
        # Lifetimes drawn around the limit: longer than `most` + the leeway is refused.
        for _ in range(20):
            ttl = rng.randint(most - 100, most + LEEWAY + 100)
            want = 200 if ttl <= most + LEEWAY else "token_lifetime_too_long"
            cases.append(({"iat": now, "exp": now + ttl}, want))
        for claims, want in cases:
            claims = dict(claims, sub=subject, iss="ridelock", aud="ridelock-api")
            status, reply = request("GET", "/api/riders/1", jwt(claims))
            got = status if status == 200 else (reply if isinstance(reply, dict) else {}).get("error")
            expect(f"{subject} token {claims}", got == want, f"answered {status} {got}")
        cases = []


unknown_methods()
id_sweep()
token_edges()
for line in broken:
    print(f"fuzz: {RUN}: abuse probe failed: {line}", file=sys.stderr)
print(f"fuzz: {RUN}: abuse probes {'FAILED' if broken else 'ok'} ({len(broken)} broken)",
      file=sys.stderr)
sys.exit(1 if broken else 0)
