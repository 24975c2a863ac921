"""Write the labelled set that entity detection is measured on: tests/data/pii_labelled.jsonl.

    python scripts/pii_labelled.py --out tests/data/pii_labelled.jsonl

Two parts, one JSON line per text with its gold entities ``[{"type", "text"}]``:

* 120 notes built from templates with Faker ``en_US`` values (seed 11): each value's type is known
  because the note was built from it (person, phone, email, address, organisation, date);
* the hand-labelled sentences below: other phrasings, other number formats, places, money, URLs,
  and sentences whose only "entities" are words that are not personal data ("daily", "Street").

The file is committed, so the measurement does not move when Faker's data changes.
"""

from __future__ import annotations

import argparse
import json

from unembed.records import _faker

TEMPLATES = (
    ("Patient {person} ({phone}) reports chest pain since {date}.", ("person", "phone", "date")),
    ("{person} asked us to send the invoice to {email}.", ("person", "email")),
    ("Customer {person} moved to {address} on {date}.", ("person", "address", "date")),
    ("Call {person} back at {phone} about the late delivery.", ("person", "phone")),
    ("{person} from {company} wants a refund; write to {email}.", ("person", "company", "email")),
    ("The tenant {person} at {address} reported a broken heater.", ("person", "address")),
    ("Ms. {person} works for {company} and can be reached at {phone}.", ("person", "company", "phone")),
    ("Delivery for {person}, {address}, expected {date}.", ("person", "address", "date")),
)
TYPE_OF = {"company": "organisation"}

# (text, [(type, entity text), ...]): written and labelled by hand
HAND = [
    ("He runs daily and calls his mother weekly.", []),
    ("Our offices are closed every Monday and on public holidays.", []),
    ("The meeting moved to next week because of the storm.", []),
    ("Street food is popular in the summer.", []),
    ("Please reply within two days.", []),
    ("The quarterly report is due soon.", []),
    (
        "Maria Gonzalez flew from Madrid to Chicago on 3 March 2024.",
        [("person", "Maria Gonzalez"), ("place", "Madrid"), ("place", "Chicago"), ("date", "3 March 2024")],
    ),
    (
        "Contact Dr. Peter Novak at peter.novak@clinic-east.org or 415-555-0199.",
        [("person", "Peter Novak"), ("email", "peter.novak@clinic-east.org"), ("phone", "415-555-0199")],
    ),
    (
        "Send the contract to 1600 Pennsylvania Avenue, Washington.",
        [("address", "1600 Pennsylvania Avenue"), ("place", "Washington")],
    ),
    (
        "The refund of $249.99 was paid to Lena Fischer on 2023-11-02.",
        [("money", "$249.99"), ("person", "Lena Fischer"), ("date", "2023-11-02")],
    ),
    (
        "Tom Baker called from +44 20 7946 0958 about his order.",
        [("person", "Tom Baker"), ("phone", "+44 20 7946 0958")],
    ),
    (
        "Siemens and Deutsche Bank signed the agreement in Berlin.",
        [("organisation", "Siemens"), ("organisation", "Deutsche Bank"), ("place", "Berlin")],
    ),
    (
        "Visit https://www.example-shop.com/account to change your password.",
        [("url", "https://www.example-shop.com/account")],
    ),
    (
        "Anna Kowalski, born 12/04/1987, lives at 42 Maple Drive.",
        [("person", "Anna Kowalski"), ("date", "12/04/1987"), ("address", "42 Maple Drive")],
    ),
    (
        "Her phone number is (212) 555-7788 and her e-mail is anna.k@mailbox.net.",
        [("phone", "(212) 555-7788"), ("email", "anna.k@mailbox.net")],
    ),
    (
        "James O'Connor paid 1,200 dollars to Acme Corporation.",
        [("person", "James O'Connor"), ("money", "1,200 dollars"), ("organisation", "Acme Corporation")],
    ),
    (
        "The package for Wei Zhang arrives at 77 Harbor Road, Boston.",
        [("person", "Wei Zhang"), ("address", "77 Harbor Road"), ("place", "Boston")],
    ),
    (
        "Sarah Miller's appointment is on Friday, June 7, 2024 at Mercy Hospital.",
        [("person", "Sarah Miller"), ("date", "June 7, 2024"), ("organisation", "Mercy Hospital")],
    ),
    ("Text 555-867-5309 to confirm.", [("phone", "555-867-5309")]),
    (
        "Account holder: Priya Patel, 19 Elm Street Apt 4B, Austin.",
        [("person", "Priya Patel"), ("address", "19 Elm Street Apt 4B"), ("place", "Austin")],
    ),
    (
        "The engineer from Microsoft visited Toronto in May 2022.",
        [("organisation", "Microsoft"), ("place", "Toronto"), ("date", "May 2022")],
    ),
    (
        "Carlos Ruiz wrote to support@bank-online.com about a charge of €75.",
        [("person", "Carlos Ruiz"), ("email", "support@bank-online.com"), ("money", "€75")],
    ),
    ("We open at 9 am and close at 5 pm.", []),
    ("Room 12 has three beds.", [("number", "12")]),
    (
        "Grace Kim and David Lee married in Seattle last year.",
        [("person", "Grace Kim"), ("person", "David Lee"), ("place", "Seattle")],
    ),
    ("Invoice 48213 for Nordic Timber AB is overdue.", [("number", "48213"), ("organisation", "Nordic Timber AB")]),
    ("The shop on 12 Oak Street opens early.", [("address", "12 Oak Street")]),
    ("Mr. Hassan Ali can be called on 020-7946-0018.", [("person", "Hassan Ali"), ("phone", "020-7946-0018")]),
    ("See www.city-library.org for the opening hours.", [("url", "www.city-library.org")]),
    (
        "Olga Ivanova moved from Kyiv to Warsaw in 2019.",
        [("person", "Olga Ivanova"), ("place", "Kyiv"), ("place", "Warsaw"), ("date", "2019")],
    ),
]


def faker_part(n: int, seed: int) -> list[dict]:
    fake = _faker(seed)
    out = []
    for i in range(n):
        template, kinds = TEMPLATES[i % len(TEMPLATES)]
        vals = {
            "person": f"{fake.first_name()} {fake.last_name()}",
            "phone": fake.phone_number(),
            "email": fake.email(),
            "address": fake.street_address(),
            "company": fake.company(),
            "date": fake.date_this_decade().strftime("%B %d, %Y"),
        }
        out.append(
            {
                "text": template.format(**vals),
                "entities": [{"type": TYPE_OF.get(k, k), "text": vals[k]} for k in kinds],
                "part": "faker",
            }
        )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="tests/data/pii_labelled.jsonl")
    ap.add_argument("--n", type=int, default=120)
    ap.add_argument("--seed", type=int, default=11)
    args = ap.parse_args()
    rows = faker_part(args.n, args.seed)
    rows += [{"text": t, "entities": [{"type": k, "text": v} for k, v in ents], "part": "hand"} for t, ents in HAND]
    for r in rows:
        for e in r["entities"]:
            assert e["text"] in r["text"], (e, r["text"])
    with open(args.out, "w", encoding="utf-8") as fh:
        fh.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    print(f"wrote {len(rows)} labelled texts to {args.out}")


if __name__ == "__main__":
    main()
