#!/usr/bin/env python3
"""Writes the generated seeds of fuzz/corpus/cookie and fuzz/corpus/signed_url.

They are sealed and signed with the fixed keys of fuzz_targets/cookie.rs and signed_url.rs, so
the fuzzer starts from values that open and verify. The time is the targets' NOW
(2026-01-01T00:00:00Z). Needs Python's `cryptography` package; rerun it only when the sealing
or signing format changes.

Sealing (src/auth/cookie.rs): XChaCha20-Poly1305, `v1.` + base64url(nonce24 || ciphertext+tag),
associated data `portcullis/v1/<purpose>`. XChaCha20 is HChaCha20 for a subkey, then the IETF
ChaCha20-Poly1305 with the last 8 nonce bytes.
"""
import base64
import hashlib
import hmac
import json
import os
import struct
import sys
from urllib.parse import quote_plus

from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

COOKIE_KEY = bytes([0x42]) * 32
SHARED_SECRET = b"fuzz-shared-secret"
NOW = 1_767_225_600
HERE = os.path.dirname(os.path.abspath(__file__))


def rotl(v, n):
    return ((v << n) & 0xFFFFFFFF) | (v >> (32 - n))


def quarter(s, a, b, c, d):
    s[a] = (s[a] + s[b]) & 0xFFFFFFFF; s[d] = rotl(s[d] ^ s[a], 16)
    s[c] = (s[c] + s[d]) & 0xFFFFFFFF; s[b] = rotl(s[b] ^ s[c], 12)
    s[a] = (s[a] + s[b]) & 0xFFFFFFFF; s[d] = rotl(s[d] ^ s[a], 8)
    s[c] = (s[c] + s[d]) & 0xFFFFFFFF; s[b] = rotl(s[b] ^ s[c], 7)


def hchacha20(key, nonce16):
    s = list(struct.unpack("<4I", b"expand 32-byte k"))
    s += list(struct.unpack("<8I", key)) + list(struct.unpack("<4I", nonce16))
    for _ in range(10):
        quarter(s, 0, 4, 8, 12); quarter(s, 1, 5, 9, 13)
        quarter(s, 2, 6, 10, 14); quarter(s, 3, 7, 11, 15)
        quarter(s, 0, 5, 10, 15); quarter(s, 1, 6, 11, 12)
        quarter(s, 2, 7, 8, 13); quarter(s, 3, 4, 9, 14)
    return struct.pack("<8I", *(s[0:4] + s[12:16]))


def b64(raw):
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def seal(purpose, plaintext, nonce=None):
    nonce = nonce or os.urandom(24)
    sub = hchacha20(COOKIE_KEY, nonce[:16])
    aad = f"portcullis/v1/{purpose}".encode()
    ct = ChaCha20Poly1305(sub).encrypt(b"\0\0\0\0" + nonce[16:], plaintext, aad)
    return "v1." + b64(nonce + ct)


def seal_json(purpose, value):
    return seal(purpose, json.dumps(value, separators=(",", ":")).encode())


def sign(url_without_signature):
    """The URL must already be in the url crate's canonical form (plain values, or encoded
    like application/x-www-form-urlencoded with no `~` or `*`)."""
    mac = hmac.new(SHARED_SECRET, b"portcullis/url/v1\n" + url_without_signature.encode(),
                   hashlib.sha256).digest()
    return f"{url_without_signature}&portcullis_signature={b64(mac)}"


def session(**extra):
    s = {"user": "auth0|alice", "email": "alice@example.com",
         "claims": {"email": ["alice@example.com"], "https://example.com/roles": ["admin"]},
         "groups": ["admin"], "sid": "c2lkLWZvci1mdXp6", "issued_at": NOW - 60,
         "expires_at": NOW + 3600, "id_token_expires_at": NOW + 3600}
    s.update(extra)
    return s


def write(target, name, text):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "w") as f:
        f.write(text)


def main():
    cookie = seal_json("cookie:_portcullis", session())
    write("cookie", "sealed-session.txt", cookie)
    write("cookie", "sealed-expired.txt", seal_json("cookie:_portcullis", session(expires_at=NOW)))
    write("cookie", "sealed-other-name.txt", seal_json("cookie:_other", session()))
    write("cookie", "sealed-refresh.txt",
          seal_json("cookie:_portcullis", session(name="Alice", refresh_token="rt-123")))
    # A long session, chunked the way CookieOptions::set_cookie_headers writes it.
    big = seal_json("cookie:_portcullis",
                    session(groups=[f"group-{i:04}" for i in range(400)]))
    chunks = [big[i:i + 3800] for i in range(0, len(big), 3800)]
    names = ["_portcullis"] + [f"_portcullis_{i}" for i in range(1, len(chunks))]
    write("cookie", "header-chunked.txt",
          "theme=dark; " + "; ".join(f"{n}={c}" for n, c in zip(names, chunks)))
    write("cookie", "header-plain.txt", f"a=1; _portcullis={cookie}; b=2")
    write("cookie", "header-duplicates.txt",
          "_portcullis=x; _portcullis=y; _portcullis_1=z; _portcullis_3=w;;=; a")
    write("cookie", "payload-json.txt", json.dumps(session()))

    exp = NOW + 60
    write("signed_url", "signed.txt",
          sign(f"https://app.example.com/dash?a=1&portcullis_expiry={exp}") + "\n")
    write("signed_url", "signed-expired.txt",
          sign(f"https://app.example.com/?portcullis_expiry={NOW}") + "\n")
    host = "app.example.com:8443"
    payload = {"session": session(), "host": host, "expires_at": exp}
    sealed = seal_json(f"handoff:{host}", payload)
    ret = quote_plus(f"https://{host}/dash?x=1", safe="")
    write("signed_url", "handoff.txt", sign(
        f"https://{host}/.pomerium/callback/?portcullis_session={sealed}"
        f"&portcullis_return={ret}&portcullis_expiry={exp}") + "\n")
    state = {"nonce": b64(b"n" * 32), "return_url": "https://app.example.com/dash",
             "pkce_verifier": "pkce-verifier-0123456789", "expires_at": NOW + 900}
    write("signed_url", "oauth-state.txt",
          "https://authenticate.example.com/oauth2/callback?code=abc\n"
          + seal_json("oauth-state", state))
    write("signed_url", "unsigned.txt", "http://[::1]:8080/a/../b?q=%zz#frag\n")
    write("signed_url", "duplicate-signature.txt",
          "https://h/?portcullis_signature=a&portcullis_signature=b&portcullis_expiry=1\n")


if __name__ == "__main__":
    sys.exit(main())
