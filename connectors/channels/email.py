"""Email over SMTP (STARTTLS optional). smtplib runs in a thread; the Message-ID is the
delivery id, so a receiving system can drop a repeated delivery."""

from __future__ import annotations

import asyncio
import smtplib
import ssl
from email.message import EmailMessage

from connectors.channels.base import ChannelConfig, Notification
from geoflux.errors import PermanentError, TransientError, ValidationError


class EmailChannel:
    kind = "email"

    def __init__(self, config: ChannelConfig) -> None:
        self.name, self.s = config.name, config.settings

    @classmethod
    def validate(cls, settings: dict) -> None:
        for key in ("host", "from"):
            if not isinstance(settings.get(key), str) or not settings[key]:
                raise ValidationError(f"settings.{key} is required")
        to = settings.get("to")
        if not isinstance(to, list) or not to or not all(isinstance(a, str) and "@" in a for a in to):
            raise ValidationError("settings.to must be a non-empty list of addresses")
        if not isinstance(settings.get("port", 25), int):
            raise ValidationError("settings.port must be an integer")

    def message(self, n: Notification) -> EmailMessage:
        msg = EmailMessage()
        prefix = "[RESOLVED] " if n.action == "resolve" else f"[{n.severity.upper()}] "
        msg["Subject"] = prefix + n.title
        msg["From"] = self.s["from"]
        msg["To"] = ", ".join(self.s["to"])
        # ':' is not allowed in a Message-ID's local part; the raw id rides in its own header
        msg["Message-ID"] = f"<{n.delivery_id.replace(':', '.')}@geoflux>"
        msg["X-Geoflux-Delivery-Id"] = n.delivery_id
        msg["X-Geoflux-Alert-Id"] = n.alert_id
        msg.set_content(f"{n.title}\n\n{n.body}\n\nalert {n.alert_id} · delivery {n.delivery_id}\n")
        return msg

    def _send(self, n: Notification) -> str:
        timeout = float(self.s.get("timeout_s", 10))
        try:
            with smtplib.SMTP(self.s["host"], int(self.s.get("port", 25)), timeout=timeout) as smtp:
                if self.s.get("starttls"):
                    smtp.starttls(context=ssl.create_default_context())
                if self.s.get("username"):
                    smtp.login(self.s["username"], self.s.get("password", ""))
                refused = smtp.send_message(self.message(n))
        except smtplib.SMTPResponseException as exc:
            detail = f"email {self.name}: SMTP {exc.smtp_code} {exc.smtp_error!r}"
            raise (TransientError if 400 <= exc.smtp_code < 500 else PermanentError)(detail) from exc
        except smtplib.SMTPRecipientsRefused as exc:
            raise PermanentError(f"email {self.name}: all recipients refused: {exc.recipients}") from exc
        except (smtplib.SMTPServerDisconnected, smtplib.SMTPConnectError, OSError) as exc:
            raise TransientError(f"email {self.name}: {type(exc).__name__}: {exc}") from exc
        if refused:
            return f"sent; refused {sorted(refused)}"
        return "250"

    async def send(self, n: Notification) -> str:
        return await asyncio.to_thread(self._send, n)

    async def close(self) -> None:
        pass
