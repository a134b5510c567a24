"""Peer for `kiban bench-text`: presidio-analyzer's pattern recognizers on the same notes.

Reads JSON lines {"text": ...} on stdin, writes JSON lines {"spans": [[start_char, end_char, tag], ...]}.
Presidio has no Japanese recognizers; only its language-independent patterns are run.
"""
import json
import sys

from presidio_analyzer.predefined_recognizers import (
    CreditCardRecognizer,
    DateRecognizer,
    EmailRecognizer,
    PhoneRecognizer,
    UrlRecognizer,
)

TAGS = {
    "CREDIT_CARD": "financial",
    "DATE_TIME": "time",
    "EMAIL_ADDRESS": "contact",
    "URL": "contact",
    "PHONE_NUMBER": "phone",
}
recs = []
for cls, kw in [
    (CreditCardRecognizer, {}),
    (DateRecognizer, {}),
    (EmailRecognizer, {}),
    (UrlRecognizer, {}),
    (PhoneRecognizer, {"supported_regions": ("JP", "US")}),
]:
    try:
        recs.append(cls(**kw))
    except TypeError:
        recs.append(cls())
for line in sys.stdin:
    text = json.loads(line)["text"]
    spans = []
    for r in recs:
        for res in r.analyze(text, r.supported_entities, None) or []:
            if res.score >= 0.3:
                spans.append([res.start, res.end, TAGS.get(res.entity_type, "id")])
    sys.stdout.write(json.dumps({"spans": spans}) + "\n")
