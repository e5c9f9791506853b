"""The same `GEOFLUX_KAFKA_*` security settings for aiokafka, the client under Faust.

`connectors/kafka_config.py` builds librdkafka's configuration; aiokafka (and so every Faust
app, e.g. the downstream consumers in `streams/downstream/`) names the same things differently
and takes TLS as an `ssl.SSLContext`. Both are built from one `KafkaSettings` and checked by
the same rules (`security_config` validates first), so a secured cluster is still one set of
variables away for either client.
"""

from __future__ import annotations

import asyncio
import ssl
import time

from aiokafka.abc import AbstractTokenProvider

from connectors.kafka_config import security_config
from geoflux.errors import ConfigurationError, TransientError
from geoflux.settings import KafkaSettings


def ssl_context(s: KafkaSettings) -> ssl.SSLContext | None:
    """TLS as librdkafka would do it: the CA file (else the system's), an optional client
    certificate, hostname verification unless `GEOFLUX_KAFKA_SSL_VERIFY_HOSTNAME=false`."""
    cfg = security_config(s)
    if not cfg["security.protocol"].endswith("SSL"):
        return None
    ctx = ssl.create_default_context(cafile=cfg.get("ssl.ca.location"))
    if not s.ssl_verify_hostname:
        ctx.check_hostname = False
    if s.ssl_certificate_location:
        ctx.load_cert_chain(str(s.ssl_certificate_location),
                            str(s.ssl_key_location) if s.ssl_key_location else None,
                            cfg.get("ssl.key.password"))
    return ctx


def aiokafka_config(s: KafkaSettings) -> dict:
    """Keyword arguments for aiokafka's AIOKafkaConsumer / AIOKafkaProducer / admin client."""
    cfg = security_config(s)
    out: dict = {"bootstrap_servers": s.bootstrap, "security_protocol": cfg["security.protocol"]}
    ctx = ssl_context(s)
    if ctx is not None:
        out["ssl_context"] = ctx
    mech = cfg.get("sasl.mechanisms")
    if mech == "OAUTHBEARER":
        out.update(sasl_mechanism=mech, sasl_oauth_token_provider=OidcTokenProvider(
            cfg["sasl.oauthbearer.token.endpoint.url"], cfg["sasl.oauthbearer.client.id"],
            cfg["sasl.oauthbearer.client.secret"], cfg.get("sasl.oauthbearer.scope")))
    elif mech:
        out.update(sasl_mechanism=mech, sasl_plain_username=cfg["sasl.username"],
                   sasl_plain_password=cfg["sasl.password"])
    return out


def faust_credentials(s: KafkaSettings):
    """`broker_credentials` for `faust.App`: None on PLAINTEXT. Faust hands these to aiokafka
    (`kafka://` transport) exactly as `aiokafka_config` would."""
    from faust.auth import OAuthCredentials, SASLCredentials, SSLCredentials

    cfg = aiokafka_config(s)
    protocol, ctx = cfg["security_protocol"], cfg.get("ssl_context")
    if protocol == "PLAINTEXT":
        return None
    if protocol == "SSL":
        return SSLCredentials(ctx)
    if cfg["sasl_mechanism"] == "OAUTHBEARER":
        return OAuthCredentials(oauth_cb=cfg["sasl_oauth_token_provider"], ssl_context=ctx)
    # SASLCredentials means SASL_SSL exactly when it has a TLS context
    return SASLCredentials(username=cfg["sasl_plain_username"], password=cfg["sasl_plain_password"],
                           ssl_context=ctx, mechanism=cfg["sasl_mechanism"])


class OidcTokenProvider(AbstractTokenProvider):
    """OAUTHBEARER tokens by the OIDC client-credentials grant, as librdkafka's
    `sasl.oauthbearer.method=oidc` fetches them: cached until shortly before they expire."""

    def __init__(self, endpoint: str, client_id: str, client_secret: str, scope: str | None = None,
                 timeout_s: float = 10.0) -> None:
        self.endpoint, self.client_id, self.client_secret = endpoint, client_id, client_secret
        self.scope, self.timeout_s = scope, timeout_s
        self._token: str | None = None
        self._expires_at = 0.0
        self._lock = asyncio.Lock()

    async def token(self) -> str:
        async with self._lock:
            if self._token is None or time.monotonic() >= self._expires_at:
                self._token, lifetime = await self._fetch()
                # renew at 80% of the lifetime, so a token never expires mid-connection
                self._expires_at = time.monotonic() + 0.8 * lifetime
            return self._token

    async def _fetch(self) -> tuple[str, float]:
        import aiohttp

        form = {"grant_type": "client_credentials", "client_id": self.client_id,
                "client_secret": self.client_secret}
        if self.scope:
            form["scope"] = self.scope
        timeout = aiohttp.ClientTimeout(total=self.timeout_s)
        try:
            async with aiohttp.ClientSession(timeout=timeout) as session:
                async with session.post(self.endpoint, data=form) as resp:
                    body = await resp.json(content_type=None)
                    status = resp.status
        except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as exc:
            raise TransientError(f"OIDC token endpoint {self.endpoint}: {exc!r}") from exc
        if status in (400, 401, 403):
            raise ConfigurationError(f"OIDC token endpoint {self.endpoint} refused client "
                                     f"{self.client_id!r}: {status} {body}")
        if status >= 300 or "access_token" not in body:
            raise TransientError(f"OIDC token endpoint {self.endpoint}: {status} {body}")
        return body["access_token"], float(body.get("expires_in", 300))
