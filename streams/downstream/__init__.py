"""Downstream consumer groups in Faust: where its at-least-once model fits.

The core stages (evaluation, CEP, the alert gate and status) run on confluent-kafka
transactions (`streams/runtime/txn_processor.py`); `docs/ARCHITECTURE.md` says why they are not Faust
agents. Consumers *of* our public topics are a different case: they read committed events,
keep their own state, and de-duplicate by the ids every record carries, so Faust's
at-least-once processing is enough. This room gives them:

    codec.py         the Confluent wire format (registry or registry-less) as Faust codecs
    records.py       typed `faust.Record`s for the public topics
    dead_letters.py  a topic whose undecodable records go to a DLQ instead of being skipped
    app.py           a Faust app built from the same `GEOFLUX_*` settings (security included)
    loitering.py     an example app shipped with the package: loitering counts per geofence
"""
