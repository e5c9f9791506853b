"""Verifying an Amazon SNS HTTP(S) message, given the signing certificate (PEM). Pure.

AWS's rule (docs "Verifying the signatures of Amazon SNS messages"): the string to sign is
the listed fields, each as `Name\\nvalue\\n`, in this order, skipping Subject when absent;
SignatureVersion 1 is RSA PKCS#1 v1.5 over SHA-1, version 2 over SHA-256. The certificate
must come from an SNS host over HTTPS (`cert_url_allowed`), so a forged message cannot name
its own certificate. Fetching the certificate is the caller's I/O.
"""

from __future__ import annotations

import base64
import re
import time
from datetime import datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from geoflux.errors import BadSignature

NOTIFICATION_FIELDS = ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type")
SUBSCRIPTION_FIELDS = ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type")
TYPES = {"Notification": NOTIFICATION_FIELDS, "SubscriptionConfirmation": SUBSCRIPTION_FIELDS,
         "UnsubscribeConfirmation": SUBSCRIPTION_FIELDS}


def string_to_sign(msg: dict) -> bytes:
    fields = TYPES.get(msg.get("Type", ""))
    if fields is None:
        raise BadSignature(f"unknown SNS message Type {msg.get('Type')!r}")
    out = []
    for name in fields:
        if name == "Subject" and msg.get("Subject") is None:
            continue
        if msg.get(name) is None:
            raise BadSignature(f"SNS message lacks {name}")
        out.append(f"{name}\n{msg[name]}\n")
    return "".join(out).encode()


def cert_url_allowed(url: str, pattern: str) -> bool:
    return bool(url) and re.match(pattern, url) is not None


def verify(msg: dict, cert_pem: bytes, *, max_age_s: float | None = 3600.0,
           now_s: float | None = None) -> None:
    """Raises BadSignature unless `msg` is signed by `cert_pem`'s key (and fresh)."""
    version = str(msg.get("SignatureVersion", ""))
    algo = {"1": hashes.SHA1(), "2": hashes.SHA256()}.get(version)
    if algo is None:
        raise BadSignature(f"unsupported SignatureVersion {version!r}")
    try:
        signature = base64.b64decode(msg.get("Signature") or "", validate=True)
    except ValueError:
        raise BadSignature("Signature is not base64") from None
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
    except ValueError as exc:
        raise BadSignature(f"signing certificate unreadable: {exc}") from None
    try:
        cert.public_key().verify(signature, string_to_sign(msg), padding.PKCS1v15(), algo)
    except (InvalidSignature, TypeError, ValueError):
        raise BadSignature("SNS signature does not verify") from None
    if max_age_s is not None:
        try:
            sent = datetime.fromisoformat(msg["Timestamp"].replace("Z", "+00:00")).timestamp()
        except (KeyError, ValueError, AttributeError):
            raise BadSignature("SNS Timestamp unreadable") from None
        if abs((now_s if now_s is not None else time.time()) - sent) > max_age_s:
            raise BadSignature(f"SNS message is older than {max_age_s:g} s (replay?)")
