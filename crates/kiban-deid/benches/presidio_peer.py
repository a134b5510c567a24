"""Peer for `kiban bench-text`: presidio-analyzer's pattern recognizers on the same notes.

Reads JSON lines {"text": ...} on stdin, writes JSON lines {"spans": [[start_char, end_char, tag], ...]}.
Presidio has no Japanese recognizers; only its language-independent patterns are run.
"""
import json
import sys
import time

import tldextract

# The e-mail recognizer asks tldextract for the public-suffix list; use the bundled snapshot
# instead of fetching it (the bench runs offline).
tldextract.extract = tldextract.TLDExtract(suffix_list_urls=())

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
texts = [json.loads(line)["text"] for line in sys.stdin]
started = time.thread_time()
out = []
for text in texts:
    spans = []
    for r in recs:
        for res in r.analyze(text, r.supported_entities, None) or []:
            if res.score >= 0.3:
                spans.append([res.start, res.end, TAGS.get(res.entity_type, "id")])
    out.append(json.dumps({"spans": spans}))
seconds = time.thread_time() - started
# CPU time of the analysis only (interpreter start and imports excluded), on one thread.
sys.stdout.write("\n".join(out) + "\n" + json.dumps({"seconds": seconds}) + "\n")
