"""The built-in desk's router: its data and how it is trained with the generic trainer.

``python -m deskline.agents.builtin.router.build`` rebuilds ``triage.bin`` next to this file,
byte for byte (scikit-learn needed; ~25-45 s on two vCPUs, most of it the intent SVM). What is
specific to this desk lives here, the training itself in :mod:`deskline.routing.train`:

* Data: BANKING77 (train split minus a 10 % hold-out, see ``prepare_data``), CLINC150 train and
  our own hand-written ``desk_examples.csv``. The Bitext file is never read here. Intents are
  the source labels, except that the 90 intents of six off-topic CLINC150 domains (travel,
  home, ...) are learned as one ``off_topic_<domain>`` class each.
* Departments in the desk's order (tech, billing, payment, human, other), and +1.0 log-odds on
  ``human``: a missed fraud report or stolen card costs far more than an extra escalation.
* The runtime-vs-scikit-learn parity check runs on the BANKING77 hold-out.

Byte identity also depends on OpenBLAS's kernel: the stacker's lbfgs fit differs in the 13th
digit between kernels. The shipped file was built with the SkylakeX kernels; on a CPU where
OpenBLAS picks another one (an AMD EPYC picks Haswell), ``OPENBLAS_CORETYPE=SkylakeX`` (if the
CPU has AVX-512) reproduces it, and ``--out`` elsewhere avoids rewriting it by accident.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import hashlib
import json
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from deskline.routing.train import Example, read_examples, write

ROUTER_DIR = Path(__file__).parent
DATA_DIR = ROUTER_DIR / "data"
MODEL_PATH = ROUTER_DIR / "triage.bin"
DEPARTMENTS = ("tech", "billing", "payment", "human", "other")
TRAIN_FILES = ("banking77_train.csv", "clinc150_train.csv", "desk_examples.csv")
HOLDOUT_FILE = "banking77_holdout.csv"
HOLDOUT_EVERY = 10  # every 10th BANKING77 row of an intent (by text digest) is held out
# Log-odds added to ``human``: a missed fraud report or stolen card costs far more than an extra
# escalation. 1.0 buys ~+1.5 points of human recall for ~-0.5 point of out-of-scope macro-F1.
HUMAN_BIAS = 1.0
PARITY_SAMPLE = 2000

# CLINC150 domains with nothing to do with a support desk. Their 90 intents are learned as one
# class per domain: the desk only needs "off topic, which kind", and it halves training time.
OFF_TOPIC_DOMAINS: dict[str, str] = {
    "kitchen_and_dining": (
        "accept_reservations calories cancel_reservation confirm_reservation cook_time food_last "
        "how_busy ingredient_substitution ingredients_list meal_suggestion nutrition_info recipe "
        "restaurant_reservation restaurant_reviews restaurant_suggestion"
    ),
    "home": (
        "calendar calendar_update next_song order order_status play_music reminder "
        "reminder_update shopping_list shopping_list_update smart_home todo_list todo_list_update "
        "update_playlist what_song"
    ),
    "auto_and_commute": (
        "current_location directions distance gas gas_type jump_start last_maintenance mpg "
        "oil_change_how oil_change_when schedule_maintenance tire_change tire_pressure traffic uber"
    ),
    "travel": (
        "book_flight book_hotel car_rental carry_on exchange_rate flight_status "
        "international_visa lost_luggage plug_type timezone translate travel_alert "
        "travel_notification travel_suggestion vaccines"
    ),
    "utility": (
        "alarm calculator date definition find_phone flip_coin make_call measurement_conversion "
        "roll_dice share_location spelling text time timer weather"
    ),
    "work": (
        "direct_deposit income insurance insurance_change meeting_schedule next_holiday payday "
        "pto_balance pto_request pto_request_status pto_used rollover_401k schedule_meeting taxes w2"
    ),
}
_OFF_TOPIC_DOMAIN = {i: d for d, names in OFF_TOPIC_DOMAINS.items() for i in names.split()}


def read_rows(path: Path) -> list[Example]:
    """The rows of one shipped CSV, their source named by the file's prefix (``banking77``)."""
    source = path.name.split("_")[0]
    return [dataclasses.replace(e, source=source) for e in read_examples([path])]


def read_training_rows(data_dir: Path = DATA_DIR) -> list[Example]:
    """All training rows, in file order, with off-topic CLINC150 intents grouped by domain."""
    rows: list[Example] = []
    for name in TRAIN_FILES:
        rows.extend(read_rows(data_dir / name))
    return [_grouped(row) for row in rows]


def _grouped(row: Example) -> Example:
    domain = _OFF_TOPIC_DOMAIN.get(row.intent)
    if row.source != "clinc150" or row.department != "other" or domain is None:
        return row
    return Example(row.text, f"off_topic_{domain}", row.department, row.source)


def build(data_dir: Path = DATA_DIR) -> dict[str, Any]:
    """Train on the shipped CSVs and return the artifact (header + arrays) for ``write``."""
    from deskline.routing.train import build as train

    holdout = [row.text for row in read_rows(data_dir / HOLDOUT_FILE)][:PARITY_SAMPLE]
    return train(
        read_training_rows(data_dir),
        departments=DEPARTMENTS,
        department_bias={"human": HUMAN_BIAS},
        parity_rows=holdout,
        data_sha256=_digest(data_dir / name for name in TRAIN_FILES),
    )


def _digest(paths: Iterable[Path]) -> str:
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.read_bytes())
    return digest.hexdigest()


def prepare_data(source_dir: Path, data_dir: Path = DATA_DIR) -> None:
    """Derive the shipped CSVs from the public files: BANKING77 train minus a hold-out split.

    Within each intent the rows are ordered by the SHA-256 of their text and every
    ``HOLDOUT_EVERY``-th one goes to the hold-out file, which is never trained on.
    """
    with (source_dir / "banking77_train.csv").open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        fields = list(reader.fieldnames or [])
        rows = list(reader)
    by_intent: dict[str, list[dict[str, str]]] = defaultdict(list)
    for row in rows:
        by_intent[row["source_intent"]].append(row)
    held: set[int] = set()
    for members in by_intent.values():
        ordered = sorted(members, key=lambda r: hashlib.sha256(r["text"].encode()).hexdigest())
        held.update(id(r) for r in ordered[HOLDOUT_EVERY - 1 :: HOLDOUT_EVERY])
    _write_csv(data_dir / "banking77_train.csv", fields, [r for r in rows if id(r) not in held])
    _write_csv(data_dir / HOLDOUT_FILE, fields, [r for r in rows if id(r) in held])
    clinc = (source_dir / "clinc150_train.csv").read_bytes()
    (data_dir / "clinc150_train.csv").write_bytes(clinc)


def _write_csv(path: Path, fields: list[str], rows: list[dict[str, str]]) -> None:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def main(argv: Sequence[str] | None = None) -> None:
    """Rebuild the shipped artifact (or, with --prepare, the shipped CSVs first)."""
    parser = argparse.ArgumentParser(description="Rebuild the built-in desk's router (triage.bin).")
    parser.add_argument("--prepare", type=Path, help="public data dir to derive the CSVs from")
    parser.add_argument("--data", type=Path, default=DATA_DIR)
    parser.add_argument("--out", type=Path, default=MODEL_PATH)
    args = parser.parse_args(argv)
    if args.prepare:
        prepare_data(args.prepare, args.data)
    started = time.perf_counter()
    artifact = build(args.data)
    write(artifact, args.out)
    print(f"built in {time.perf_counter() - started:.1f} s")
    print(json.dumps(artifact["header"]["metadata"], indent=2))
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
