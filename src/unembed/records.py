"""Synthetic personal records: the known-value attack's benchmark and its scorer's training data.

A record is one template sentence holding one value of a type (a person's full name, a street
address, a company, an e-mail address, a phone number), alone or placed at a random position among
sentences of real text until the record has about ``extra_words`` more words. Values come from
Faker's ``en_US`` provider with a fixed seed, so the same arguments give the same records; no real
person's data is involved.

Templates are split in two: the scorer is fitted on ``train`` templates (and context sentences of
the corpus' train split) and measured on ``test`` templates (and the test split), so that the
benchmark's figures are on sentences the scorer never saw.

``candidate_pool`` builds a list of candidate values that holds every true value plus distractors;
with ``hard=True`` the distractors of a person share a first or last name with the truth (and an
e-mail its local part or domain), which is what a real customer list looks like.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

TYPES = ("person", "address", "company", "email", "phone")
SPLITS = ("train", "test")

TEMPLATES: dict[str, dict[str, tuple[str, ...]]] = {
    "person": {
        "train": (
            "Patient {} reports chest pain.",
            "{} was admitted to the ward on Monday.",
            "The contract was signed by {} last week.",
            "Please forward the invoice to {}.",
            "{} has asked to reschedule the appointment.",
            "Our new account manager is {}.",
            "The complaint was filed by {}.",
            "{} called about a late delivery.",
            "Reference letter written for {}.",
            "Meeting notes taken by {}.",
            "The loan application of {} was approved.",
            "{} booked a room for two nights.",
        ),
        "test": (
            "Employee {} requested parental leave.",
            "{} missed the follow-up visit.",
            "The package was delivered to {}.",
            "Customer {} wants a refund.",
            "{} is allergic to penicillin.",
            "The tenant {} reported a broken heater.",
        ),
    },
    "address": {
        "train": (
            "Ship the order to {}.",
            "The customer lives at {}.",
            "Our new office is located at {}.",
            "Send the documents to {}.",
            "The accident happened near {}.",
            "Billing address: {}.",
            "The property at {} is for sale.",
            "Deliveries go to {}.",
        ),
        "test": (
            "The patient's home address is {}.",
            "Please update my address to {}.",
            "The parcel was left at {}.",
            "She moved to {} last year.",
        ),
    },
    "company": {
        "train": (
            "The invoice was issued by {}.",
            "He has worked at {} since 2015.",
            "{} won the contract.",
            "We signed a partnership with {}.",
            "The shipment is handled by {}.",
            "{} reported strong quarterly results.",
            "Her previous employer was {}.",
            "The audit of {} found no issues.",
        ),
        "test": (
            "The lawsuit names {} as the defendant.",
            "{} is hiring engineers.",
            "The payment to {} bounced.",
            "Our supplier {} raised its prices.",
        ),
    },
    "email": {
        "train": (
            "Contact me at {}.",
            "The login e-mail is {}.",
            "Send the report to {}.",
            "Replies should go to {}.",
            "His e-mail address is {}.",
            "The account {} was locked.",
            "A password reset was sent to {}.",
            "Questions: {}.",
        ),
        "test": (
            "You can reach the applicant at {}.",
            "The newsletter was sent to {}.",
            "Please write to {} for details.",
            "The user {} reported a bug.",
        ),
    },
    "phone": {
        "train": (
            "Call me back at {}.",
            "Her phone number is {}.",
            "The customer can be reached at {}.",
            "Emergency contact: {}.",
            "Text {} to confirm.",
            "The office number is {}.",
            "A missed call from {}.",
            "Mobile: {}.",
        ),
        "test": (
            "Please call the patient at {}.",
            "The caller's number was {}.",
            "Reach the landlord at {}.",
            "His new number is {}.",
        ),
    },
}


@dataclass(frozen=True)
class Record:
    """One synthetic record: its text, the value it holds and the value's type, how many words
    it has beyond the value's own sentence (``extra_words``)."""

    text: str
    value: str
    type: str
    extra_words: int


def _faker(seed: int):
    try:
        from faker import Faker
    except ImportError:
        raise ValueError("synthetic records need Faker: pip install faker") from None
    fake = Faker("en_US")
    fake.seed_instance(seed)
    return fake


def values(kind: str, n: int, seed: int = 0) -> list[str]:
    """``n`` distinct values of a type (see TYPES), the same for the same seed."""
    if kind not in TYPES:
        raise ValueError(f"unknown value type {kind!r} (known: {', '.join(TYPES)})")
    fake = _faker(seed)
    make = {
        "person": lambda: f"{fake.first_name()} {fake.last_name()}",
        "address": lambda: fake.street_address(),
        "company": fake.company,
        "email": fake.email,
        "phone": fake.phone_number,
    }[kind]
    out: dict[str, None] = {}
    for _ in range(50 * n + 1000):
        out[make()] = None
        if len(out) == n:
            return list(out)
    raise ValueError(f"Faker gave only {len(out)} distinct {kind} values, {n} asked")


def _sibling(kind: str, truth: str, fake) -> str:
    """A distractor that shares a part with ``truth`` (a first or last name, a local part or domain)."""
    if kind == "person":
        first, last = truth.split(" ", 1)
        return f"{first} {fake.last_name()}" if fake.random.random() < 0.5 else f"{fake.first_name()} {last}"
    if kind == "email":
        local, domain = truth.split("@", 1)
        return f"{local}@{fake.free_email_domain()}" if fake.random.random() < 0.5 else f"{fake.user_name()}@{domain}"
    if kind == "address":
        number, street = truth.split(" ", 1)
        return f"{fake.building_number()} {street}"
    return {"company": fake.company, "phone": fake.phone_number}[kind]()


def candidate_pool(kind: str, truths: Sequence[str], size: int, seed: int = 1, hard: bool = True) -> list[str]:
    """A list of ``size`` distinct candidates: every truth, then (``hard``) up to 16 siblings of
    each truth in turn until half the list is truths and siblings, then random values of the type."""
    if size < len(set(truths)):
        raise ValueError(f"a list of {size} cannot hold {len(set(truths))} true values")
    fake = _faker(seed)
    pool: dict[str, None] = dict.fromkeys(truths)
    if hard:
        for _ in range(16):
            for t in truths:
                if len(pool) >= max(len(truths), size // 2):
                    break
                pool.setdefault(_sibling(kind, t, fake))
    for v in values(kind, size, seed + 1):
        if len(pool) >= size:
            break
        pool.setdefault(v)
    return list(pool)[:size]


def make_records(
    kind: str,
    truths: Sequence[str],
    split: str,
    context: Sequence[str] = (),
    extra_words: int = 0,
    seed: int = 0,
) -> list[Record]:
    """One record per true value: a ``split`` template holding it, with about ``extra_words``
    words of ``context`` sentences around it (none when 0)."""
    if kind not in TEMPLATES:
        raise ValueError(f"unknown value type {kind!r} (known: {', '.join(TYPES)})")
    if split not in SPLITS:
        raise ValueError(f"unknown template split {split!r} (known: {', '.join(SPLITS)})")
    if extra_words > 0 and not context:
        raise ValueError("records with extra words need context sentences")
    rng = np.random.default_rng(seed)
    templates = TEMPLATES[kind][split]
    out = []
    for value in truths:
        sentence = templates[rng.integers(len(templates))].format(value)
        around, words = [], 0
        while words < extra_words:
            s = context[rng.integers(len(context))]
            around.append(s)
            words += len(s.split())
        around.insert(int(rng.integers(len(around) + 1)), sentence)
        out.append(Record(" ".join(around), value, kind, words))
    return out


PERSONAL = (
    "Patient {person} ({phone}) reports chest pain since {date}.",
    "{person} asked us to send the invoice to {email}.",
    "Customer {person} moved to {address} on {date}.",
    "Call {person} back at {phone} about the late delivery.",
    "{person} from {company} wants a refund; write to {email}.",
    "The tenant {person} at {address} reported a broken heater.",
)


def personal_records(n: int, seed: int = 0) -> list[str]:
    """``n`` one-sentence notes about people (a name plus a phone number, e-mail address, street
    address, company or date), as a help desk or a clinic would store them; Faker ``en_US``."""
    fake = _faker(seed)
    out = []
    for i in range(n):
        template = PERSONAL[i % len(PERSONAL)]
        out.append(
            template.format(
                person=f"{fake.first_name()} {fake.last_name()}",
                phone=fake.phone_number(),
                email=fake.email(),
                address=fake.street_address(),
                company=fake.company(),
                date=fake.date_this_decade().strftime("%B %d, %Y"),
            )
        )
    return out
