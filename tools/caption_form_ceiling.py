"""What each caption form of the emoji data can score (docs/benchmarks.md,
"A captioner that looks"): for every validation image, a made-up caption with
the image's subcategory right and the name of a random training emoji of
that subcategory, in four forms. Writes one predictions file per form; score
each with

    cargo xtask evaluate captioning --predictions /tmp/form_<form>.json \
        --annotations data/emoji/annotations/captions_val2017.json

Standard library only: python3 tools/caption_form_ceiling.py
"""

import collections
import json
import random
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "data" / "emoji" / "annotations"


def captions(split):
    data = json.loads((ROOT / f"captions_{split}2017.json").read_text())
    by_image = collections.defaultdict(list)
    for a in data["annotations"]:
        by_image[a["image_id"]].append(a["caption"])
    return by_image


def fullest(caps):
    return next(c for c in caps if c.endswith(" emoji") and ", a " in c)


if __name__ == "__main__":
    random.seed(0)
    train, val = captions("train"), captions("val")
    by_subcategory = collections.defaultdict(list)
    for caps in train.values():
        name, kind = fullest(caps).rsplit(", a ", 1)
        by_subcategory[kind].append(name)
    forms = {
        "fullest": lambda name, kind: f"{name}, a {kind}",
        "subcategory_only": lambda name, kind: f"emoji, a {kind}",
        "an_emoji_of": lambda name, kind: f"an emoji of {name}",
        "name": lambda name, kind: name,
    }
    picks = {}
    for image_id, caps in val.items():
        kind = fullest(caps).rsplit(", a ", 1)[1]
        picks[image_id] = (random.choice(by_subcategory[kind]), kind)
    for form, make in forms.items():
        out = Path(f"/tmp/form_{form}.json")
        out.write_text(json.dumps(
            [{"image_id": i, "caption": make(*p)} for i, p in picks.items()]
        ))
        print(out)
