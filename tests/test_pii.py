"""Personal data: what is found in a text (spaCy's English model + regexes) and when it counts as recovered."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from unembed import pii

DATA = Path(__file__).parent / "data"


def kinds(text, mode="spacy"):
    return {(e["type"], e["text"]) for e in pii.find([text], mode)[0]}


def test_structured_kinds_by_regex():
    assert ("email", "john.smith@example.com") in kinds("Email john.smith@example.com today.", "regex")
    assert ("phone", "555-123-4567") in kinds("Call 555-123-4567 now.", "regex")
    assert ("phone", "+1 212 555 0199") in kinds("Her number is +1 212 555 0199.", "regex")
    assert ("url", "https://example.org/jobs") in kinds("See https://example.org/jobs.", "regex")
    assert ("money", "$1,200") in kinds("Rent rose by $1,200.", "regex")
    assert ("date", "2019-03-04") in kinds("Signed on 2019-03-04.", "regex")
    assert kinds("Toyota recalled 40,000 cars.", "regex") == {("number", "40,000")}
    assert kinds("Nothing personal here.", "regex") == set()


def test_spacy_finds_names_places_and_dates():
    got = kinds("Maria Lopez moved to Boston in March 2019.")
    assert {("person", "Maria Lopez"), ("place", "Boston"), ("date", "March 2019")} <= got
    assert ("number", "2019") not in got  # the date wins over the bare number inside it
    assert ("organisation", "Toyota") in kinds("Toyota recalled 40,000 cars in Japan.")


def test_recovered_needs_the_words_in_order():
    assert pii.recovered("john.smith@example.com", "please email john. smith @ example. com today")
    assert not pii.recovered("john.smith@example.com", "please email john @ example. com")
    assert pii.recovered("Maria Lopez", "maria lopez moved to boston")
    assert not pii.recovered("Maria Lopez", "lopez maria moved")
    assert not pii.recovered("2019", "in 20199")
    assert [e["recovered"] for e in pii.mark([{"type": "place", "text": "Boston"}], "to boston")] == [True]


def test_off_and_unknown_modes():
    assert pii.find(["Maria Lopez lives in Boston."], "off") == [[]]
    with pytest.raises(ValueError, match="unknown entities mode 'ner'"):
        pii.find(["x"], "ner")


def test_degree_credits_what_identifies_on_its_own():
    deg = pii.degree
    assert deg({"type": "person", "text": "Alice Smith"}, "smith... was here") == "partial"
    assert deg({"type": "person", "text": "Alice Martin"}, "martin martin") == "partial"
    assert deg({"type": "person", "text": "Alice Martin"}, "alice martin called") == "full"
    assert deg({"type": "person", "text": "Alice Martin"}, "the customer called") == "none"
    assert deg({"type": "phone", "text": "972-801-9860"}, "call 972 801 9860") == "full"
    assert deg({"type": "phone", "text": "(972) 801-9860"}, "call 9728019860") == "full"  # any grouping
    assert deg({"type": "phone", "text": "972-801-9860"}, "call 972 later") == "partial"  # its area code
    assert (
        deg({"type": "phone", "text": "972-801-9860"}, "room 280 at 10") == "none"
    )  # digits inside a group do not count
    assert deg({"type": "email", "text": "jsmith@example.com"}, "jsmith @ gmail. com") == "partial"
    assert deg({"type": "email", "text": "jsmith@acme.com"}, "write to acme") == "partial"
    assert deg({"type": "email", "text": "jsmith@acme.com"}, "write to example") == "none"
    assert deg({"type": "date", "text": "July 15, 2025"}, "in july 2025") == "partial"
    assert deg({"type": "date", "text": "July 15, 2025"}, "in 2025") == "none"  # a year alone is in too many texts
    assert deg({"type": "date", "text": "July 15, 2025"}, "on july 15") == "partial"
    assert deg({"type": "date", "text": "July 15, 2025"}, "in july") == "none"
    assert deg({"type": "organisation", "text": "Wells LLC"}, "wells") == "partial"
    assert deg({"type": "organisation", "text": "Wells LLC"}, "an llc") == "none"  # a legal form says nothing
    assert deg({"type": "place", "text": "Boston"}, "to boston") == "full"
    marked = pii.mark([{"type": "person", "text": "Ann Lee"}], "lee")
    assert marked == [{"type": "person", "text": "Ann Lee", "degree": "partial", "recovered": False}]


def test_formats_people_write_and_words_that_are_not_dates():
    assert ("phone", "001-380-573-0215x736") in kinds("Patient (001-380-573-0215x736) called.", "regex")
    assert ("phone", "(550)624-2984x889") in kinds("Call (550)624-2984x889 today.", "regex")
    assert ("phone", "+44 20 7946 0958") in kinds("He called from +44 20 7946 0958 today.", "regex")
    assert ("address", "7132 Charles Ways Suite 728") in kinds("She moved to 7132 Charles Ways Suite 728 on Monday.")
    assert kinds("He runs daily and calls his mother weekly.") == set()
    assert ("person", "Ryan Perez") in kinds("Customer Ryan Perez moved to Boston.")
    assert ("person", "Lori Melendez") in kinds("Call Lori Melendez back at 7837787995 about the late delivery.")


def test_detection_on_the_labelled_set_stays_measured():
    """The figures in docs/audit.md (scripts/pii_eval.py): a regression below them fails here."""
    rows = [json.loads(x) for x in (DATA / "pii_labelled.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(rows) >= 150 and {r["part"] for r in rows} == {"faker", "hand"}
    got = pii.detection_scores(rows, "spacy")
    for kind in ("email", "phone", "address"):
        assert got[kind]["precision"] >= 0.95 and got[kind]["recall"] >= 0.95, (kind, got[kind])
    assert got["person"]["precision"] >= 0.85 and got["person"]["recall"] >= 0.9, got["person"]
    assert got["date"]["precision"] >= 0.9 and got["date"]["recall"] >= 0.95, got["date"]
