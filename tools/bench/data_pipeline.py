"""The Python counterpart of `cargo xtask bench data`: the reference's training
data pipeline on a COCO-format split's train images (the bundled emoji
dataset by default), one process, one thread.

decode JPEG (PIL) -> RandomResizedCrop(size, scale 0.2-1, ratio 3/4-4/3) ->
horizontal flip p=0.5 with the caption's left/right swap -> ColorJitter(0.4,
0.4, 0.4, 0.1) with p=0.8 -> ToTensor + ImageNet Normalize -> caption choice,
lower-case + NFKD accent strip -> SentencePiece ids with [SOS]/[EOS], 30 max
-> batch collation (torch.stack + right padding).

torchvision's PIL transforms stand in for albumentations (not installed here);
both are the usual Python way to run these ops. Usage:

    python3 tools/bench/data_pipeline.py [--root data/emoji] [--size 224] [--batch 64] [--batches 20]
"""

import argparse
import json
import random
import time
import unicodedata
from pathlib import Path

import sentencepiece as spm
import torch
from PIL import Image
from torchvision import transforms as T

ROOT = Path(__file__).resolve().parents[2]


def normalize(caption):
    caption = unicodedata.normalize("NFKD", caption.lower())
    return "".join(c for c in caption if not unicodedata.combining(c))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--root", type=Path, default=ROOT / "data/emoji")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--batches", type=int, default=20)
    args = parser.parse_args()
    torch.set_num_threads(1)

    split = args.root
    coco = json.loads((split / "annotations/captions_train2017.json").read_text())
    captions = {}
    for a in coco["annotations"]:
        captions.setdefault(a["image_id"], []).append(a["caption"])
    items = [(split / "train2017" / i["file_name"], captions[i["id"]]) for i in coco["images"]]
    sp = spm.SentencePieceProcessor(
        model_file=str(ROOT / "data/fixtures/tokenizer/emoji_bpe.model")
    )

    crop = T.RandomResizedCrop(args.size, scale=(0.2, 1.0), ratio=(0.75, 4 / 3))
    jitter = T.RandomApply([T.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8)
    to_tensor = T.Compose(
        [T.ToTensor(), T.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))]
    )

    def sample(index):
        path, options = items[index % len(items)]
        image = Image.open(path).convert("RGB")
        caption = random.choice(options)
        image = crop(image)
        if random.random() < 0.5:
            image = image.transpose(Image.FLIP_LEFT_RIGHT)
            caption = (
                caption.replace("left", "[TMP]").replace("right", "left").replace("[TMP]", "right")
            )
        image = to_tensor(jitter(image))
        tokens = ([1] + sp.encode(normalize(caption)) + [2])[:30]
        return image, tokens

    def batch(start):
        samples = [sample(start + i) for i in range(args.batch)]
        images = torch.stack([s[0] for s in samples])
        width = max(len(s[1]) for s in samples)
        tokens = torch.zeros(len(samples), width, dtype=torch.long)
        for row, (_, ids) in enumerate(samples):
            tokens[row, : len(ids)] = torch.tensor(ids)
        return images, tokens

    random.seed(0)
    torch.manual_seed(0)
    batch(0)
    start = time.perf_counter()
    for b in range(1, args.batches + 1):
        batch(b * args.batch)
    elapsed = time.perf_counter() - start
    rate = args.batches * args.batch / elapsed
    print(
        f"python data pipeline (torch {torch.__version__}, PIL {Image.__version__}), "
        f"{args.size}x{args.size}, batch {args.batch}, 1 thread: {rate:.0f} images/s"
    )


if __name__ == "__main__":
    main()
