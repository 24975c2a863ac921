"""Personal data: what is found in a text (spaCy's English model + regexes) and when it counts as recovered."""

from __future__ import annotations

import pytest

from unembed import pii


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
