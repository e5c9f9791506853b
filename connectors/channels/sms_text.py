"""What fits in a text message. Pure: phone numbers, GSM-7 / UCS-2 segments, truncation.

A message whose characters are all in the GSM 03.38 alphabet travels as GSM-7: 160 septets in one
segment, 153 per segment once it is split (the rest is the concatenation header); characters of
the extension table (`^{}[]~|€\\` and form feed) take two septets and an escape pair is never split
across segments. Any other character makes the whole message UCS-2: 70 UTF-16 code units in one
segment, 67 per segment when split, and a surrogate pair (an emoji) is never split either.

Carriers bill and providers cap by segments, so a channel bounds a message to `max_segments`:
a longer text is cut and ends with an ellipsis ("..." in GSM-7, because "…" is not in the GSM
alphabet and would turn the whole message into UCS-2, halving what fits).
"""

from __future__ import annotations

import re

from geoflux.errors import ValidationError

E164 = re.compile(r"^\+[1-9][0-9]{7,14}$")  # + and 8-15 digits, no leading zero
MAX_SEGMENTS = 10  # Twilio's recommended ceiling (1600 characters) and within SNS's 1600 bytes
DEFAULT_SEGMENTS = 3

GSM_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ"
    " !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmnopqrstuvwxyzäöñüà")
GSM_EXTENSION = frozenset("\f^{}\\[~]|€")

# typography that would otherwise force UCS-2 for one character: replaced by its GSM look-alike
_PLAIN = str.maketrans({"‘": "'", "’": "'", "‚": "'", "“": '"', "”": '"', "„": '"', "–": "-",
                        "—": "-", "−": "-", "…": "...", "\u00a0": " ", "\u2009": " ", "\t": " "})


def require_e164(value: object, what: str) -> str:
    if not isinstance(value, str) or not E164.match(value):
        raise ValidationError(f"{what} must be an E.164 phone number: + and 8-15 digits, "
                              f"e.g. +14155550100")
    return value


def is_gsm7(text: str) -> bool:
    return all(c in GSM_BASIC or c in GSM_EXTENSION for c in text)


def _units(text: str, gsm: bool) -> list[int]:
    """The size of each character in its encoding's units (septets or UTF-16 code units)."""
    if gsm:
        return [2 if c in GSM_EXTENSION else 1 for c in text]
    return [2 if ord(c) > 0xFFFF else 1 for c in text]


def segments(text: str) -> int:
    """How many segments `text` is sent as."""
    gsm = is_gsm7(text)
    single, multi = (160, 153) if gsm else (70, 67)
    units = _units(text, gsm)
    if sum(units) <= single:
        return 1
    count, used = 1, 0
    for u in units:  # a character that does not fit whole starts the next segment
        if used + u > multi:
            count, used = count + 1, 0
        used += u
    return count


def encoding(text: str) -> str:
    return "GSM-7" if is_gsm7(text) else "UCS-2"


def fit(text: str, max_segments: int = DEFAULT_SEGMENTS) -> str:
    """`text` (typography made plain) cut to `max_segments`, ending with an ellipsis if it was cut."""
    text = text.translate(_PLAIN)
    if segments(text) <= max_segments:
        return text
    lo, hi = 0, len(text)  # the longest prefix that fits; lo only moves to a prefix that does
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if segments(_cut(text, mid)) <= max_segments:
            lo = mid
        else:
            hi = mid - 1
    return _cut(text, lo)


def _cut(text: str, n: int) -> str:
    # a cut before the first non-GSM character may travel as GSM-7 again
    head = text[:n].rstrip()
    return head + ("..." if is_gsm7(head) else "…")


def compose(severity: str, title: str, body: str, action: str = "trigger") -> str:
    """The text an alert is sent as: severity and title first, so a cut keeps what matters."""
    head = "[RESOLVED]" if action == "resolve" else f"[{severity.upper()}]"
    return f"{head} {title}" + (f"\n{body}" if body else "")


def max_segments_of(settings: dict) -> int:
    value = settings.get("max_segments", DEFAULT_SEGMENTS)
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_SEGMENTS:
        raise ValidationError(f"settings.max_segments must be an integer from 1 to {MAX_SEGMENTS}")
    return value
