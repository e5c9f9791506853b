"""The delivery worker: sends each delivery request through its channel, at least once, and
never drops one.

- Requests come from `alerts.deliveries`, retries from `alerts.retry`, slow retries from
  `alerts.dlq`. A record not yet due is held in memory (a heap), so one waiting delivery
  never blocks another; its offset is committed only once it is finished, so a crash
  re-delivers it rather than losing it.
- Outcomes (SENT, RETRYING, DEAD_LETTERED, ABANDONED, DISABLED) go to `alerts.outcomes`,
  where `AlertStatusStage` folds them into the alert's status. Outputs are flushed (acks=all)
  before offsets are committed.
- A crash after a send and before its commit sends again: every request carries its
  delivery id as the receiver-visible idempotency key (webhook-id, dedup_key, alias, ...).
- A circuit breaker per channel holds non-critical deliveries while it is open (they wait,
  they are not dropped); critical ones go through. A failing or held primary triggers the
  rule's fallback channel once per alert.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
import uuid


import structlog

from connectors.channels.base import Channel, ChannelConfig, EndpointGone, Notification, build_channel
from connectors.channels.http import install_callback_secret, job_callback_config
from connectors.topic_reader import TopicReader
from geoflux.errors import PermanentError, TransientError, ValidationError
from geoflux.settings import AlertSettings, KafkaSettings
from schemas.catalogue import topic
from schemas.codec import AvroCodec
from streams.alerting.delivery_policy import Breakers, RetryPolicy
from streams.alerting.sensor import AlertSensor, NullSensor
from streams.runtime.at_least_once import AtLeastOnceWorker, Work
from geoflux.keys import scoped
from streams.runtime.sensor import StageSensor
from streams.runtime.txn_processor import now_ms

log = structlog.get_logger("geoflux.delivery")
TRANSIENT_CLASSES = {"transient", "rate_limited", "breaker_open"}
CHANNELS_CATCH_UP_S = 10.0


class DeliveryStage(AtLeastOnceWorker):
    stage = "delivery"

    def __init__(self, kafka: KafkaSettings, codec: AvroCodec, settings: AlertSettings,
                 sensor: AlertSensor | None = None, stage_sensor: StageSensor | None = None) -> None:
        self.t_deliveries = topic("alerts.deliveries", kafka)
        self.t_retry = topic("alerts.retry", kafka)
        self.t_dlq = topic("alerts.dlq", kafka)
        super().__init__(kafka, codec, "geoflux-delivery", [self.t_deliveries, self.t_retry, self.t_dlq],
                         stage_sensor)
        self.s = settings
        self.commit_interval_s = settings.commit_interval_s
        self.backlog_limit = settings.max_pending
        self.drain_s = settings.send_timeout_s + 5  # a send under way may finish at stop
        self.sensor = sensor or NullSensor()
        self.t_outcomes = topic("alerts.outcomes", kafka)
        self.policy = RetryPolicy(settings.primary_attempts, settings.primary_backoff_s,
                                  settings.total_attempts, settings.dlq_backoff_s)
        self.breakers = Breakers(settings.breaker_failures, settings.breaker_open_s)
        self.configs: dict[str, tuple[int, ChannelConfig]] = {}
        self.channels: dict[str, tuple[int, Channel]] = {}
        self.disabled: set[tuple[str, int]] = set()
        self.fallbacks_sent: set[str] = set()
        self._sems: dict[str, asyncio.Semaphore] = {}
        self.reader = TopicReader(kafka, topic("alerts.channels", kafka), "ConfigRecord", codec,
                                  self._apply_channel)

    # -- channel configuration ----------------------------------------------------------------
    def _apply_channel(self, key: str, rec: dict | None, _msg) -> bool:
        if rec is None or rec["deleted"]:
            return self.configs.pop(key, None) is not None
        body = json.loads(rec["body"])
        self.configs[scoped(rec["tenant_id"], rec["id"])] = (rec["version"], ChannelConfig(
            rec["id"], body["kind"], rec["tenant_id"], body.get("settings") or {}))
        return True

    def _callback_channel(self, req: dict) -> tuple[int, Channel]:
        """Job subscriber callbacks: an ad-hoc signed webhook to the URL the job was given, signed
        with the subscriber's sealed secret or the install's (connectors/channels/http.py)."""
        url, sealed = req["labels"].get("callback_url", ""), req["labels"].get("callback_secret")
        key = f"job-callback:{url}:{sealed or ''}"
        if key not in self.channels:
            install = install_callback_secret(self.s.callback_secret.get_secret_value(),
                                              self.s.callback_secret_file)
            config = job_callback_config(req["tenant_id"], url, install, sealed)
            self.channels[key] = (0, build_channel(config))
        return self.channels[key]

    def _channel(self, name: str, tenant: str) -> tuple[int, Channel] | None:
        """Channel names are per tenant: a delivery only ever uses its own tenant's channel."""
        key = scoped(tenant, name)
        with self.reader.lock:
            entry = self.configs.get(key)
        if entry is None:
            return None
        version, config = entry
        cached = self.channels.get(key)
        if cached is None or cached[0] != version:
            self.channels[key] = (version, build_channel(config))
        return self.channels[key]

    # -- producing ----------------------------------------------------------------------------
    def _outcome(self, req: dict, outcome: str, error_class: str | None = None,
                 message: str | None = None) -> None:
        rec = dict(req, outcome=outcome, error_class=error_class, error_message=message,
                   created_ms=now_ms())
        self.produce(self.t_outcomes, req["alert_id"], "DeliveryAttempt", rec)
        self.sensor.attempt(req["channel"], outcome, error_class)

    def _dead_letter(self, delivery: Work, req: dict, error_class: str, message: str,
                     next_attempt: dict | None = None) -> None:
        now = now_ms()
        nxt = next_attempt or req
        src_topic, src_partition = delivery.tp
        rec = {"dlq_id": f"{req['delivery_id']}-{uuid.uuid4().hex[:8]}",
               "original_topic": src_topic, "original_partition": src_partition,
               "original_offset": delivery.offset, "original_key": req["alert_id"].encode(),
               "original_value": self.codec.encode(self.t_deliveries, "DeliveryAttempt", nxt),
               "error_class": error_class, "error_message": message[:2000],
               "attempts": req["attempt"], "first_failure_ms": req["first_failure_ms"] or now,
               "last_failure_ms": now, "redrive_topic": self.t_deliveries}
        self.produce(self.t_dlq, req["delivery_id"], "DlqRecord", rec)

    # -- intake -------------------------------------------------------------------------------
    def intake(self, msg) -> None:
        tp = (msg.topic(), msg.partition())
        try:
            if msg.topic() == self.t_dlq:
                dlq = self.codec.decode(msg.value(), "DlqRecord")
                if dlq["error_class"] not in TRANSIENT_CLASSES or dlq["attempts"] >= self.policy.total_attempts:
                    self.tracker.done(tp, msg.offset())  # waits there for a person to redrive it
                    return
                req = self.codec.decode(dlq["original_value"], "DeliveryAttempt")
                delivery = Work(tp, msg.offset(), req, dlq)
            else:
                delivery = Work(tp, msg.offset(), self.codec.decode(msg.value(), "DeliveryAttempt"))
        except ValidationError as exc:
            # read back from alerts.dlq with class `undecodable`, it waits there for a person
            log.error("undecodable delivery record dead-lettered", topic=msg.topic(),
                      offset=msg.offset(), error=str(exc))
            self.dead_letter_input(msg, self.t_dlq, "undecodable", str(exc))
            self.tracker.done(tp, msg.offset())
            return
        self.hold(delivery, delivery.record["not_before_ms"] / 1000)

    # -- sending ------------------------------------------------------------------------------
    async def handle(self, delivery: Work) -> None:
        req = delivery.record
        name = req["channel"]
        # channel names are per tenant: breakers, 410-disabling and concurrency are too
        ckey = name if name == "job-callback" else scoped(req["tenant_id"], name)
        try:
            entry = (self._callback_channel(req) if name == "job-callback"
                     else self._channel(name, req["tenant_id"]))
            if entry is None:
                # a channel created just before the alert that names it may still be on its way
                # to this worker: it is unknown only once every channel written so far is read
                if not await asyncio.to_thread(self.reader.applied_through_now, CHANNELS_CATCH_UP_S):
                    raise TransientError(f"channel {name}: the channel list is not read to its end yet")
                entry = self._channel(name, req["tenant_id"])
            if entry is None:
                self._dead_letter(delivery, req, "permanent", f"no channel named {name!r} for tenant "
                                                         f"{req['tenant_id']}")
                self._outcome(req, "DEAD_LETTERED", "permanent", f"unknown channel {name}")
                return self.finish(delivery)
            version, channel = entry
            if (ckey, version) in self.disabled:
                self._dead_letter(delivery, req, "gone",
                                  f"channel {name} v{version} is disabled after HTTP 410")
                self._outcome(req, "DISABLED", "gone", "endpoint disabled (410)")
                return self.finish(delivery)
            breaker = self.breakers[ckey]
            critical = req["severity"] == "critical"
            if not breaker.allows(time.time(), critical):
                self._fallback(req)
                self.hold(delivery, breaker.reopens_at())  # waits for the breaker; not an attempt
                return
            sem = self._sems.setdefault(ckey, asyncio.Semaphore(self.s.per_channel_concurrency))
            async with sem:
                try:
                    # a deadline on this task, not wait_for's extra task per send
                    async with asyncio.timeout(self.s.send_timeout_s):
                        await channel.send(self._notification(req))
                except TimeoutError as exc:
                    raise TransientError(f"{name}: no answer within {self.s.send_timeout_s:.0f}s") from exc
            breaker.record(True, time.time())
            self._outcome(req, "SENT")
            self.sensor.delivered(req["severity"], name, (now_ms() - req["alert_created_ms"]) / 1000)
            self.finish(delivery)
        except EndpointGone as exc:
            if ckey in self.channels:
                self.disabled.add((ckey, self.channels[ckey][0]))
            self._dead_letter(delivery, req, "gone", str(exc))
            self._outcome(req, "DISABLED", "gone", str(exc))
            self.finish(delivery)
        except TransientError as exc:
            self.breakers[ckey].record(False, time.time())
            self._retry(delivery, exc, getattr(exc, "retry_after_s", None))
        except PermanentError as exc:
            self._dead_letter(delivery, req, "permanent", str(exc))
            self._outcome(req, "DEAD_LETTERED", "permanent", str(exc))
            self.finish(delivery)
        except Exception as exc:  # a channel bug must not kill the worker or lose the alert
            log.exception("unexpected channel error", channel=name)
            self._dead_letter(delivery, req, "unexpected", f"{type(exc).__name__}: {exc}")
            self._outcome(req, "DEAD_LETTERED", "unexpected", str(exc))
            self.finish(delivery)

    @staticmethod
    def _notification(req: dict) -> Notification:
        return Notification(req["delivery_id"], req["alert_id"], req["tenant_id"], req["severity"],
                            req["title"], req["body"], dict(req["labels"]), req["alert_created_ms"],
                            req["action"])

    def _retry(self, delivery: Work, exc: Exception, retry_after_s: float | None) -> None:
        req = delivery.record
        now = now_ms()
        error_class = getattr(exc, "error_class", "transient")
        self._fallback(req)
        step, delay = self.policy.next_step(req["attempt"], retry_after_s)
        nxt = dict(req, attempt=req["attempt"] + 1, not_before_ms=now + int(delay * 1000),
                   first_failure_ms=req["first_failure_ms"] or now, error_class=error_class,
                   error_message=str(exc)[:2000], created_ms=now)
        if step == "retry":
            self.produce(self.t_retry, req["alert_id"], "DeliveryAttempt", nxt)
            self._outcome(req, "RETRYING", error_class, str(exc))
        elif step == "dlq":
            self._dead_letter(delivery, req, error_class, str(exc), nxt)
            self._outcome(req, "DEAD_LETTERED", error_class, str(exc))
        else:
            self._outcome(req, "ABANDONED", error_class, str(exc))
        self.finish(delivery)

    def _fallback(self, req: dict) -> None:
        fb = req["fallback_channel"]
        if not fb or req["fallback_for"] or req["alert_id"] in self.fallbacks_sent:
            return
        self.fallbacks_sent.add(req["alert_id"])
        now = now_ms()
        rec = dict(req, delivery_id=f"{req['alert_id']}:{fb}", channel=fb, fallback_channel=None,
                   fallback_for=req["channel"], attempt=1, outcome=None, error_class=None,
                   error_message=None, first_failure_ms=None, not_before_ms=now, created_ms=now)
        self.produce(self.t_deliveries, req["alert_id"], "DeliveryAttempt", rec)

    # -- the shell's hooks --------------------------------------------------------------------
    def backlog(self) -> int:
        # sends started and waiting for their channel count too: nothing else bounds them
        return self.tracker.pending()

    def housekeeping(self) -> None:
        self.sensor.pending(self.tracker.pending())

    async def open(self) -> None:
        self.reader.load().follow()

    async def close(self) -> None:
        self.reader.close()
        for _, ch in self.channels.values():
            await ch.close()


def run_delivery(kafka: KafkaSettings, codec: AvroCodec, settings: AlertSettings,
                 sensor: AlertSensor | None = None, stage_sensor: StageSensor | None = None) -> None:
    worker = DeliveryStage(kafka, codec, settings, sensor, stage_sensor)
    signal.signal(signal.SIGTERM, worker.stop)
    signal.signal(signal.SIGINT, worker.stop)
    worker.serve()
