"""PyTorch twin of `cargo run --release -p virtex-bench --example conv_layers`.

Times conv2d forward, input gradient and weight gradient
(torch.nn.grad.conv2d_input / conv2d_weight) for the same layer shapes, on
the same number of threads (2 unless --threads), best of three after one
warm-up.

    python3 tools/bench/conv_layers.py          # ResNet-50 layers, batch 8, 224^2
    python3 tools/bench/conv_layers.py emoji    # ResNet-18 layers, batch 32, 64^2
    python3 tools/bench/conv_layers.py all      # every ResNet-50 convolution, summed
    python3 tools/bench/conv_layers.py emoji-all  # every ResNet-18 convolution, b32, 64^2

`all` (`emoji-all`) times each distinct convolution of a ResNet-50 (the emoji
row's ResNet-18) training step once and
ends with the step's sums (each shape times its count; no input gradient for
the stem, whose input needs none).
"""

import argparse
import time

import torch

RESNET50 = [
    ("stem 7x7", 8, 3, 224, 64, 7, 2, 3),
    ("l1 1x1", 8, 64, 56, 256, 1, 1, 0),
    ("l1 3x3", 8, 64, 56, 64, 3, 1, 1),
    ("l2 3x3", 8, 128, 28, 128, 3, 1, 1),
    ("l3 3x3", 8, 256, 14, 256, 3, 1, 1),
    ("l4 1x1", 8, 2048, 7, 512, 1, 1, 0),
]
# Every distinct ResNet-50 convolution (torchvision v1.5) and its count (53).
RESNET50_ALL = [
    (("stem 7x7", 8, 3, 224, 64, 7, 2, 3), 1),
    (("l1 1x1 64>64", 8, 64, 56, 64, 1, 1, 0), 1),
    (("l1 1x1 256>64", 8, 256, 56, 64, 1, 1, 0), 2),
    (("l1 3x3", 8, 64, 56, 64, 3, 1, 1), 3),
    (("l1 1x1 64>256", 8, 64, 56, 256, 1, 1, 0), 4),
    (("l2 1x1 256>128", 8, 256, 56, 128, 1, 1, 0), 1),
    (("l2 3x3 s2", 8, 128, 56, 128, 3, 2, 1), 1),
    (("l2 3x3", 8, 128, 28, 128, 3, 1, 1), 3),
    (("l2 1x1 128>512", 8, 128, 28, 512, 1, 1, 0), 4),
    (("l2 1x1 512>128", 8, 512, 28, 128, 1, 1, 0), 3),
    (("l2 down s2", 8, 256, 56, 512, 1, 2, 0), 1),
    (("l3 1x1 512>256", 8, 512, 28, 256, 1, 1, 0), 1),
    (("l3 3x3 s2", 8, 256, 28, 256, 3, 2, 1), 1),
    (("l3 3x3", 8, 256, 14, 256, 3, 1, 1), 5),
    (("l3 1x1 256>1024", 8, 256, 14, 1024, 1, 1, 0), 6),
    (("l3 1x1 1024>256", 8, 1024, 14, 256, 1, 1, 0), 5),
    (("l3 down s2", 8, 512, 28, 1024, 1, 2, 0), 1),
    (("l4 1x1 1024>512", 8, 1024, 14, 512, 1, 1, 0), 1),
    (("l4 3x3 s2", 8, 512, 14, 512, 3, 2, 1), 1),
    (("l4 3x3", 8, 512, 7, 512, 3, 1, 1), 2),
    (("l4 1x1 512>2048", 8, 512, 7, 2048, 1, 1, 0), 3),
    (("l4 1x1 2048>512", 8, 2048, 7, 512, 1, 1, 0), 2),
    (("l4 down s2", 8, 1024, 14, 2048, 1, 2, 0), 1),
]
# Every distinct ResNet-18 convolution at batch 32, 64^2, and its count (20).
RESNET18_EMOJI_ALL = [
    (("stem 7x7", 32, 3, 64, 64, 7, 2, 3), 1),
    (("l1 3x3", 32, 64, 16, 64, 3, 1, 1), 4),
    (("l2 3x3 s2", 32, 64, 16, 128, 3, 2, 1), 1),
    (("l2 3x3", 32, 128, 8, 128, 3, 1, 1), 3),
    (("l2 down s2", 32, 64, 16, 128, 1, 2, 0), 1),
    (("l3 3x3 s2", 32, 128, 8, 256, 3, 2, 1), 1),
    (("l3 3x3", 32, 256, 4, 256, 3, 1, 1), 3),
    (("l3 down s2", 32, 128, 8, 256, 1, 2, 0), 1),
    (("l4 3x3 s2", 32, 256, 4, 512, 3, 2, 1), 1),
    (("l4 3x3", 32, 512, 2, 512, 3, 1, 1), 3),
    (("l4 down s2", 32, 256, 4, 512, 1, 2, 0), 1),
]
RESNET18_EMOJI = [
    ("stem 7x7", 32, 3, 64, 64, 7, 2, 3),
    ("l1 3x3", 32, 64, 16, 64, 3, 1, 1),
    ("l2 3x3", 32, 128, 8, 128, 3, 1, 1),
    ("l3 3x3", 32, 256, 4, 256, 3, 1, 1),
    ("l4 3x3", 32, 512, 2, 512, 3, 1, 1),
]


def best_of_three(run):
    run()
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return best


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("layers", nargs="?", choices=["emoji", "all", "emoji-all"])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    whole_network = args.layers in ("all", "emoji-all")
    if whole_network:
        layers = RESNET50_ALL if args.layers == "all" else RESNET18_EMOJI_ALL
        print("| layer | count | forward ms | input grad ms | weight grad ms | forward GFLOP/s |")
        print("|---|---|---|---|---|---|")
    else:
        layers = [(layer, 1) for layer in (RESNET18_EMOJI if args.layers == "emoji" else RESNET50)]
        print("| layer | forward ms | input grad ms | weight grad ms | forward GFLOP/s |")
        print("|---|---|---|---|---|")
    sums = [0.0, 0.0, 0.0]
    with torch.no_grad():
        for i, ((name, n, c_in, side, c_out, k, s, p), count) in enumerate(layers):
            x = torch.randn(n, c_in, side, side)
            w = torch.randn(c_out, c_in, k, k) * 0.1
            y = torch.nn.functional.conv2d(x, w, stride=s, padding=p)
            g = torch.randn_like(y)
            forward = best_of_three(lambda: torch.nn.functional.conv2d(x, w, stride=s, padding=p))
            input_grad = best_of_three(
                lambda: torch.nn.grad.conv2d_input(x.shape, w, g, stride=s, padding=p)
            )
            weight_grad = best_of_three(
                lambda: torch.nn.grad.conv2d_weight(x, w.shape, g, stride=s, padding=p)
            )
            flops = 2.0 * n * c_out * y.shape[2] * y.shape[3] * c_in * k * k
            counted = f"{count} | " if whole_network else ""
            print(
                f"| {name} | {counted}{forward * 1e3:.1f} | {input_grad * 1e3:.1f} | "
                f"{weight_grad * 1e3:.1f} | {flops / forward / 1e9:.1f} |"
            )
            sums[0] += forward * count
            sums[1] += 0.0 if i == 0 else input_grad * count
            sums[2] += weight_grad * count
    if whole_network:
        print(
            f"| **step sum** | {sum(count for _, count in layers)} | {sums[0] * 1e3:.0f} | {sums[1] * 1e3:.0f} | "
            f"{sums[2] * 1e3:.0f} | total {sum(sums) * 1e3:.0f} ms |"
        )


if __name__ == "__main__":
    main()
