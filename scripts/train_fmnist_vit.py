"""Train edgeq's small Fashion-MNIST ViT and write `edgeq/assets/vit_fmnist.safetensors`.

Reproduce the committed weights (about 25 minutes on 2 cores):

    apt-get install dataset-fashion-mnist
    python scripts/train_fmnist_vit.py --epochs 15 --out edgeq/assets/vit_fmnist.safetensors

Seeded; the data comes from Debian's package, nothing is downloaded.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import torch
from safetensors.torch import save_file

from edgeq.datasets import fashion_mnist
from edgeq.models import fmnist_vit


def augment(batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random horizontal flip and a random shift of up to 2 pixels (pad + crop)."""
    flip = torch.rand(batch.shape[0], generator=generator) < 0.5
    batch = torch.where(flip[:, None, None, None], batch.flip(-1), batch)
    padded = torch.nn.functional.pad(batch, (2, 2, 2, 2))
    dx, dy = torch.randint(0, 5, (2,), generator=generator).tolist()
    return padded[:, :, dy:dy + 28, dx:dx + 28]


def evaluate(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    model.eval()
    correct = 0
    with torch.no_grad():
        for start in range(0, len(images), 500):
            logits = model(images[start:start + 500])
            correct += int((logits.argmax(-1) == labels[start:start + 500]).sum())
    return correct / len(images)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("edgeq/assets/vit_fmnist.safetensors"))
    args = parser.parse_args()

    torch.manual_seed(args.seed)
    generator = torch.Generator().manual_seed(args.seed)
    mean, std = fmnist_vit.MEAN[0], fmnist_vit.STD[0]
    train_x, train_y = fashion_mnist.load("train")
    test_x, test_y = fashion_mnist.load("test")
    train_images = (torch.from_numpy(train_x) - mean) / std
    test_images = (torch.from_numpy(test_x) - mean) / std
    train_labels, test_labels = torch.from_numpy(train_y), torch.from_numpy(test_y)

    model = fmnist_vit.build()
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.05)
    steps_per_epoch = math.ceil(len(train_images) / args.batch_size)
    total_steps = args.epochs * steps_per_epoch
    warmup = steps_per_epoch // 2

    def lr_at(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / (total_steps - warmup)))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_at)
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=0.1)
    for epoch in range(args.epochs):
        model.train()
        started = time.time()
        order = torch.randperm(len(train_images), generator=generator)
        for start in range(0, len(order), args.batch_size):
            index = order[start:start + args.batch_size]
            batch = augment(train_images[index], generator)
            loss = loss_fn(model(batch), train_labels[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
        accuracy = evaluate(model, test_images, test_labels)
        print(f"epoch {epoch + 1}/{args.epochs}  loss {loss.item():.3f}  test top-1 {accuracy:.4f}  "
              f"{time.time() - started:.0f}s", flush=True)

    args.out.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(args.out), metadata={
        "architecture": fmnist_vit.NAME,
        "test_top1": f"{accuracy:.4f}",
        "epochs": str(args.epochs),
        "seed": str(args.seed),
    })
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.2f} MB), test top-1 {accuracy:.4f}")


if __name__ == "__main__":
    main()
