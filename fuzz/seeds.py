#!/usr/bin/env python3
"""Writes the committed seed corpora under fuzz/corpus/<target>/.

    python3 fuzz/seeds.py [path/to/openredirects.txt]

Seeds are small, readable starting points; the fuzzer grows its own working
corpus from them (fuzz/found/, not committed). `@SESSION@` stands for the
live session cookie of the fuzz fixture. The open-redirect payloads are
oauth2-proxy's public corpus (one file each, as given, and with the corpus'
allowed domain swapped for one the fixture allows).
"""
import base64
import hashlib
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "corpus")


def write(target, data):
    if isinstance(data, str):
        data = data.encode()
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    name = hashlib.sha1(data).hexdigest()[:16]
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# --- protobuf, just enough for a CheckRequest ---------------------------------

def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def field(num, payload):
    if isinstance(payload, str):
        payload = payload.encode()
    return varint(num << 3 | 2) + varint(len(payload)) + payload


def check_request(method, scheme, host, path, headers, raw=False):
    """CheckRequest{attributes{request{http{...}}}} as Envoy fills it."""
    http = field(1, "1234567890") + field(2, method)
    if raw:
        # header_map (13): HeaderValue{key=1, raw_value=3}
        hm = b"".join(field(1, field(1, k) + field(3, v)) for k, v in headers)
        http += field(13, hm)
    else:
        for k, v in headers:
            http += field(3, field(1, k) + field(2, v))
    http += field(4, path) + field(5, host) + field(6, scheme) + field(10, "HTTP/1.1")
    request = field(2, http)
    attributes = field(4, request)
    return field(1, attributes)


def main():
    redirects = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        HERE, "..", "..", "shared", "data", "openredirects.txt")

    # cookie: first byte = shape (0 raw, 1 flips of the live cookie,
    # 2 prefix of it + tail, 3 authentic arbitrary plaintext).
    write("cookie", b"\x00" + base64.urlsafe_b64encode(bytes(105)).rstrip(b"="))
    write("cookie", b"\x00" + b"A" * 140)
    write("cookie", b"\x00not-a-cookie")
    write("cookie", b"\x00" + b"_" * 4097)
    write("cookie", b"\x01")
    write("cookie", b"\x01\x00\x01")
    write("cookie", b"\x01\x8b\x01\x10\x20")
    write("cookie", b"\x02\x8c")
    write("cookie", b"\x02\x8bA")
    write("cookie", b"\x02\x00")
    write("cookie", b"\x03" + bytes(64))
    write("cookie", b"\x03" + bytes(range(64)))
    write("cookie", b"\x03" + b"\xff" * 63)

    # redirect: the open-redirect corpus and a few good targets.
    with open(redirects, encoding="utf-8", errors="replace") as f:
        for line in f:
            line = line.rstrip("\n")
            if not line:
                continue
            write("redirect", line)
            if "whitelisteddomain.tld" in line:
                write("redirect", line.replace("www.whitelisteddomain.tld", "hello.example.com"))
    for good in ["/", "/app?q=a%20b", "https://hello.example.com/x?y=1#z",
                 "https://example.com", "https://a.b.apps.example.com:8443/api",
                 "https://other.test:8443/x", "https://auth.example.com/oauth2/userinfo"]:
        write("redirect", good)

    # nginx_request: first line METHOD PATH PEER, then headers.
    reqs = [
        "GET /oauth2/auth 127.0.0.1\nx-original-url: https://hello.example.com/\ncookie: _authgate=@SESSION@",
        "GET /oauth2/auth 127.0.0.1\nx-original-url: https://hello.example.com/healthz",
        "GET /oauth2/auth 127.0.0.1\nx-original-url: https://admin.example.com/x?y\ncookie: a=b; _authgate=@SESSION@",
        "GET /oauth2/auth 203.0.113.9\nx-forwarded-proto: https\nx-forwarded-host: hello.example.com\nx-forwarded-uri: /healthz",
        "GET /oauth2/auth 127.0.0.1\nx-forwarded-proto: https\nx-forwarded-host: x.apps.example.com\nx-forwarded-uri: /api/%2e%2e/admin\ncookie: _authgate=\"@SESSION@\"",
        "GET /forward-auth 127.0.0.1\nx-forwarded-proto: https\nx-forwarded-host: hello.example.com\nx-forwarded-uri: /app\nx-forwarded-method: POST\naccept: text/html",
        "POST /forward-auth/api/v1?x=1 ::1\nhost: x.apps.example.com\ncookie: _authgate=@SESSION@\naccept: application/json",
        "GET /forward-auth/healthz 127.0.0.1\nhost: HELLO.example.com.\nx-requested-with: XMLHttpRequest",
        "GET /forward-auth/ 127.0.0.1\nhost: other.test:8443\ncontent-type: application/grpc",
        "GET /oauth2/auth\nx-original-url: https://hello.example.com/%2e/healthz;x=y",
        "GET /oauth2/auth 127.0.0.1\nx-original-url: https://[::1]:443/a//b/../c",
    ]
    for r in reqs:
        write("nginx_request", r)

    # envoy_check: CheckRequests as Envoy sends them.
    checks = [
        check_request("GET", "https", "hello.example.com", "/",
                      [(":authority", "hello.example.com"), (":method", "GET"), (":path", "/"),
                       ("cookie", "_authgate=@SESSION@"), ("accept", "text/html")]),
        check_request("GET", "https", "hello.example.com", "/healthz", [(":path", "/healthz")]),
        check_request("POST", "https", "admin.example.com", "/x?y=1",
                      [("cookie", "a=1, _authgate=@SESSION@"), ("content-type", "application/grpc")]),
        check_request("GET", "https", "x.apps.example.com", "/api/v1",
                      [("cookie", "_authgate=@SESSION@"), ("x-requested-with", "XMLHttpRequest")], raw=True),
        check_request("GET", "http", "other.test:8443", "/%2e%2e/", [("accept", "*/*")], raw=True),
        check_request("HEAD", "https", "hello.example.com", "", []),
        field(1, b""),
        b"",
    ]
    for c in checks:
        write("envoy_check", c)

    # config: the fixture's own, the shipped example, and small variants.
    ex = os.path.join(HERE, "..", "examples", "authgate.yaml")
    with open(ex, encoding="utf-8") as f:
        example = f.read()
    # The target skips `*_file` keys (they read files); inline the secrets.
    example = example.replace(
        "idp_client_secret_file: /etc/authgate/idp_client_secret", "idp_client_secret: s3cret").replace(
        "cookie_secret_file: /etc/authgate/cookie_secret",
        "cookie_secret: AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=").replace(
        "session_store: embedded:/var/lib/authgate/sessions.redb", "session_store: memory")
    example = "\n".join(l for l in example.splitlines() if "_file" not in l) + "\n"
    write("config", example)
    base = ("authenticate_service_url: https://auth.example.com\n"
            "idp_provider_url: https://dex.example.com/dex\n"
            "idp_client_id: c\nidp_client_secret: s\n"
            "cookie_secret: AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=\n")
    write("config", base)
    write("config", base + "routes:\n  - from: https://*.example.com:8443\n    regex: ^/a(b|c)*$\n"
          "    allowed_idp_claims: {dept: [x, 1, true]}\n")
    write("config", base + "policy:\n  - from: https://a.example.com\n    prefix: /api\n"
          "    allowed_users: [a@b.c]\n    allowed_domains: [b.c]\n    pass_identity_headers: false\n"
          "cookie_expire: 1h30m\nrefresh_interval: 90s\ntrusted_proxies: [10.0.0.0/8, \"::1\"]\n")
    write("config", base + "x: &a [1, *a]\n")
    write("config", "a: {b: [c, {d: e}]}\n---\nf: g\n")
    write("config", base + "routes:\n  - from: https://a.example.com\n    policy:\n"
          "      allow: {and: [{domain: {is: example.com}}, {groups: {has: devops}}]}\n"
          "tests:\n  - url: https://a.example.com/\n    user: {email: a@example.com}\n    expect: deny\n")

    # PPL: Pomerium's documented shapes, every criterion and operator.
    for policy in [
        "allow:\n  and:\n    - domain:\n        is: example.com\ndeny:\n  or:\n    - email:\n        is: user2@example.com\n",
        "- allow:\n    and:\n      - claim/family_name: Smith\n- allow:\n    or:\n      - domain: {is: domain1.com}\n",
        "allow:\n  not:\n    - groups: {has: contractors}\n  nor:\n    - claim/org/unit: x\n    - user: {starts_with: a}\n",
        "allow:\n  and:\n    - source_ip: [10.0.0.0/8, '::1']\n    - http_path: {starts_with: /api, not_in: [/api/x]}\n    - http_method: {in: [GET]}\n",
        "allow:\n  or:\n    - cors_preflight: true\n    - accept: true\n    - reject: true\n    - authenticated_user: 1\n",
        "allow:\n  and:\n    - date: {after: 2020-01-02T16:20:00, before: 2150-01-02}\n    - day_of_week: mon-fri\n"
        "    - time_of_day: {timezone: Europe/Berlin, after: '9:00 AM', before: '17:30'}\n",
        "allow:\n  and:\n    - device: {type: any}\n    - email: [a, b]\n",
    ]:
        write("ppl", policy)


if __name__ == "__main__":
    main()
