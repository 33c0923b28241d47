"""PyTorch side of `cargo xtask bench train` / `extract` / `caption`: the same workloads
in the reference's PyTorch, written from ../shared/REFERENCE.md §1 (torchvision
ResNet with zero-init residuals, layer4 grid -> Linear(C, H), word + position
embedding with LayerNorm(eps 1e-8), post-norm nn.TransformerDecoder with GELU,
output tied to the word embedding; bicaptioning = a second decoder sharing the
projection, embedding and output) and §4 (SGD momentum 0.9 or AdamW, weight
decay 1e-4 off for biases and norms, global grad-norm clip 10, Lookahead).

Prints one JSON line per run, the shape `cargo xtask bench` reads:

    python3 tools/bench/train_step.py train --arch resnet50 --hidden 1024 \
        --batch 8 --size 224 --steps 3 --threads 2
    python3 tools/bench/train_step.py extract --arch resnet50 --batch 32
    python3 tools/bench/train_step.py caption --arch resnet50 --hidden 2048 --batch 8 --steps 1
    python3 tools/bench/train_step.py gemm --threads 2

`--device cuda` runs on a GPU (`--amp` adds fp16 autocast + GradScaler, the
reference's AMP). Synthetic inputs: normal images, captions of 20 random tokens.
"""

import argparse
import copy
import json
import statistics
import time

import torch
import torchvision
from torch import nn


def peak_rss_mb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return None


class Embedding(nn.Module):
    def __init__(self, vocab, hidden, max_len=30, dropout=0.1):
        super().__init__()
        self.words = nn.Embedding(vocab, hidden, padding_idx=0)
        self.positions = nn.Embedding(max_len, hidden)
        self.norm = nn.LayerNorm(hidden, eps=1e-8)
        self.dropout = nn.Dropout(dropout)

    def forward(self, tokens):
        positions = torch.arange(tokens.size(1), device=tokens.device)
        x = self.words(tokens) + self.positions(positions)[None]
        x = self.dropout(self.norm(x))
        return x * (tokens != 0).unsqueeze(-1).type(x.dtype)


class Bicaptioning(nn.Module):
    def __init__(self, arch, vocab, hidden, layers, dropout=0.1):
        super().__init__()
        cnn = getattr(torchvision.models, arch)(weights=None, zero_init_residual=True)
        channels = cnn.fc.in_features
        self.cnn = nn.Sequential(*list(cnn.children())[:-2])  # up to layer4
        self.visual_projection = nn.Linear(channels, hidden)
        self.embedding = Embedding(vocab, hidden, dropout=dropout)
        layer = nn.TransformerDecoderLayer(
            hidden, hidden // 64, 4 * hidden, dropout, activation="gelu", batch_first=True
        )
        self.forward_transformer = nn.TransformerDecoder(layer, layers)
        self.backward_transformer = copy.deepcopy(self.forward_transformer)
        self.output = nn.Linear(hidden, vocab)
        self.output.weight = self.embedding.words.weight
        self.loss = nn.CrossEntropyLoss(ignore_index=0)

    def decode(self, transformer, memory, tokens, lengths):
        t = tokens.size(1)
        x = self.embedding(tokens)
        causal = torch.ones(t, t, dtype=torch.bool, device=x.device).triu(1)
        padding = lengths.unsqueeze(1) <= torch.arange(t, device=x.device)
        x = transformer(x, memory, tgt_mask=causal, tgt_key_padding_mask=padding)
        return self.output(x)

    def forward(self, images, forward_tokens, backward_tokens, lengths):
        grid = self.cnn(images)  # [batch, C, 7, 7]
        memory = self.visual_projection(grid.flatten(2).transpose(1, 2))
        loss = 0.0
        for transformer, tokens in (
            (self.forward_transformer, forward_tokens),
            (self.backward_transformer, backward_tokens),
        ):
            logits = self.decode(transformer, memory, tokens[:, :-1], lengths - 1)
            loss = loss + self.loss(
                logits.reshape(-1, logits.size(-1)), tokens[:, 1:].reshape(-1)
            )
        return loss


class Lookahead:
    def __init__(self, optimizer, alpha=0.5, k=5):
        self.optimizer, self.alpha, self.k, self.steps = optimizer, alpha, k, 0
        self.slow = [
            [p.detach().clone() for p in group["params"]]
            for group in optimizer.param_groups
        ]

    def step(self):
        self.optimizer.step()
        self.steps += 1
        if self.steps % self.k:
            return
        for group, slows in zip(self.optimizer.param_groups, self.slow):
            for p, slow in zip(group["params"], slows):
                slow.add_(p.detach() - slow, alpha=self.alpha)
                p.data.copy_(slow)


def synthetic_batch(args):
    g = torch.Generator().manual_seed(0)
    images = torch.randn(args.batch, 3, args.size, args.size, generator=g)
    words = torch.randint(4, args.vocab, (args.batch, 20), generator=g)
    sos = torch.full((args.batch, 1), 1)
    eos = torch.full((args.batch, 1), 2)
    forward = torch.cat([sos, words, eos], 1)
    # As the loader frames it: the forward caption reversed, [EOS] ... [SOS].
    backward = forward.flip(1)
    lengths = torch.full((args.batch,), forward.size(1))
    return [images, forward, backward, lengths]


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed_report(args, device, work, label=""):
    """Median seconds of `args.steps` timed calls of `work` (after the caller's
    warm-up), as the JSON report `cargo xtask bench` reads."""
    times = []
    for _ in range(args.steps):
        sync(device)
        start = time.perf_counter()
        work()
        sync(device)
        times.append(time.perf_counter() - start)
    median = statistics.median(times)
    return {
        "impl": f"pytorch {torch.__version__}{label}",
        "s_per_step": median,
        "images_per_s": args.batch / median,
        "peak_rss_mb": peak_rss_mb(),
    }


def train(args):
    device = torch.device(args.device)
    model = Bicaptioning(args.arch, args.vocab, args.hidden, args.layers).to(device).train()
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (no_decay if p.ndim <= 1 else decay).append(p)
    groups = [{"params": decay, "weight_decay": 1e-4}, {"params": no_decay, "weight_decay": 0.0}]
    if args.optimizer == "sgd":
        optimizer = torch.optim.SGD(groups, lr=args.lr, momentum=0.9)
    else:
        optimizer = torch.optim.AdamW(groups, lr=args.lr)
    stepper = Lookahead(optimizer) if args.lookahead else optimizer
    scaler = torch.amp.GradScaler(enabled=args.amp)
    host_batch = synthetic_batch(args)

    def step():
        # As the reference's loop (and virtex-rs's step) does: the batch
        # comes from the host each iteration.
        batch = [t.to(device) for t in host_batch]
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.float16, enabled=args.amp):
            loss = model(*batch)
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        nn.utils.clip_grad_norm_(model.parameters(), 10.0)
        if args.amp:
            scaler.step(optimizer)  # Lookahead's sync is skipped under AMP here
        else:
            stepper.step()
        scaler.update()
        return loss

    # The warm-up step, counted (matmul and convolution FLOPs, forward and
    # backward): model FLOP utilisation on either device.
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        step()
    flops = counter.get_total_flops()
    report = timed_report(args, device, step, " AMP fp16" if args.amp else "")
    report["flops_per_step"] = flops
    if device.type == "cuda":
        report["allocator_peak_mb"] = torch.cuda.max_memory_reserved() / 2**20
    return report


@torch.no_grad()
def extract(args):
    device = torch.device(args.device)
    cnn = getattr(torchvision.models, args.arch)(weights=None)
    cnn.fc = nn.Identity()
    cnn = cnn.to(device).eval()
    images = torch.randn(args.batch, 3, args.size, args.size, generator=torch.Generator().manual_seed(0)).to(device)
    cnn(images)
    return timed_report(
        args, device, lambda: torch.nn.functional.normalize(cnn(images), dim=1).cpu()
    )


@torch.no_grad()
def caption(args):
    """Beam search as the reference's `virtex/utils/beam_search.py` runs it:
    every step re-decodes the whole prefix of each of the `beam` hypotheses,
    keeps `per_node` = 2 expansions per beam, for 30 steps (random weights
    never say [EOS], so this is the same upper bound as the Rust row)."""
    device = torch.device(args.device)
    model = Bicaptioning(args.arch, args.vocab, args.hidden, args.layers).to(device).eval()
    images = torch.randn(args.batch, 3, args.size, args.size, generator=torch.Generator().manual_seed(0)).to(device)

    def run():
        grid = model.cnn(images)
        memory = model.visual_projection(grid.flatten(2).transpose(1, 2))
        b, k, per_node = args.batch, args.beam, 2
        memory = memory.repeat_interleave(k, 0)
        tokens = torch.full((b * k, 1), 1, device=device)
        scores = torch.zeros(b, k, device=device)
        scores[:, 1:] = float("-inf")
        for _ in range(30):
            lengths = torch.full((b * k,), tokens.size(1), device=device)
            logits = model.decode(model.forward_transformer, memory, tokens, lengths)[:, -1]
            logp = logits.log_softmax(-1)
            logp[torch.arange(b * k), tokens[:, -1]] = -10000.0
            top, ids = logp.topk(per_node, -1)
            cand = (scores.view(b * k, 1) + top).view(b, k * per_node)
            scores, pick = cand.topk(k, -1)
            beam = torch.div(pick, per_node, rounding_mode="floor") + torch.arange(b, device=device)[:, None] * k
            next_ids = ids.view(b, k * per_node).gather(1, pick)
            tokens = torch.cat([tokens[beam.view(-1)], next_ids.view(-1, 1)], 1)
        return tokens

    run()
    return timed_report(args, device, run)


def gemm(args):
    n = 2048
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    times = []
    for _ in range(args.steps):
        start = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - start)
    return {"impl": f"pytorch {torch.__version__}", "gemm_gflops": 2 * n**3 / min(times) / 1e9}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("workload", choices=["train", "extract", "caption", "gemm"])
    parser.add_argument("--arch", default="resnet50")
    parser.add_argument("--hidden", type=int, default=1024)
    parser.add_argument("--layers", type=int, default=1)
    parser.add_argument("--vocab", type=int, default=10000)
    parser.add_argument("--optimizer", choices=["sgd", "adamw"], default="sgd")
    parser.add_argument("--lr", type=float, default=0.2)
    parser.add_argument("--lookahead", action="store_true")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--amp", action="store_true")
    parser.add_argument("--beam", type=int, default=5)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device.startswith("cuda"):
        torch.backends.cudnn.benchmark = True
    result = {"train": train, "extract": extract, "caption": caption, "gemm": gemm}[args.workload](args)
    result["threads"] = torch.get_num_threads()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
