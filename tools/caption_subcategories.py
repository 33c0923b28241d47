"""How often emoji captions name the right subcategory (docs/benchmarks.md,
"A captioner that looks"): a caption is right when what follows its last
", a " equals the same part of the image's "<name>, a <subcategory> emoji"
reference. Also prints the number of distinct captions and the share of the
images given the most frequent one.

    cargo xtask evaluate captioning --checkpoint CKPT \
        --annotations data/emoji/annotations/captions_val2017.json --output /tmp/val
    python3 tools/caption_subcategories.py /tmp/val.captions.json

Standard library only.
"""

import collections
import json
import sys
from pathlib import Path

ANNOTATIONS = (
    Path(__file__).resolve().parents[1]
    / "data/emoji/annotations/captions_val2017.json"
)


def subcategory(caption):
    return caption.rsplit(", a ", 1)[1] if ", a " in caption else None


def main(predictions, annotations=ANNOTATIONS):
    captions = json.loads(Path(predictions).read_text())
    references = collections.defaultdict(list)
    for ann in json.loads(Path(annotations).read_text())["annotations"]:
        references[ann["image_id"]].append(ann["caption"])
    right = 0
    for prediction in captions:
        full = [r for r in references[prediction["image_id"]] if ", a " in r]
        if not full:
            sys.exit(f"{annotations}: image {prediction['image_id']} has no '<name>, a <subcategory> emoji' caption")
        right += subcategory(prediction["caption"]) == subcategory(full[0])
    counts = collections.Counter(p["caption"] for p in captions)
    top, times = counts.most_common(1)[0]
    n = len(captions)
    print(f"subcategory right {right}/{n} = {right / n:.1%}; distinct {len(counts)}; "
          f"most frequent {times / n:.1%}: {top!r}")


if __name__ == "__main__":
    main(*sys.argv[1:])
