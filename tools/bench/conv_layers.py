"""PyTorch twin of `cargo run --release -p virtex-bench --example conv_layers`.

Times conv2d forward, input gradient and weight gradient
(torch.nn.grad.conv2d_input / conv2d_weight) for the same layer shapes, on
the same number of threads (2 unless --threads), best of three after one
warm-up.

    python3 tools/bench/conv_layers.py          # ResNet-50 layers, batch 8, 224^2
    python3 tools/bench/conv_layers.py emoji    # ResNet-18 layers, batch 32, 64^2
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
    parser.add_argument("layers", nargs="?", choices=["emoji"])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    layers = RESNET18_EMOJI if args.layers == "emoji" else RESNET50
    print("| layer | forward ms | input grad ms | weight grad ms | forward GFLOP/s |")
    print("|---|---|---|---|---|")
    with torch.no_grad():
        for name, n, c_in, side, c_out, k, s, p in layers:
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
            print(
                f"| {name} | {forward * 1e3:.1f} | {input_grad * 1e3:.1f} | "
                f"{weight_grad * 1e3:.1f} | {flops / forward / 1e9:.1f} |"
            )


if __name__ == "__main__":
    main()
