"""Train a tiny BERT masked LM on a corpus's shards with whole-word masking, to see the pieces fit.

    python examples/train_mlm.py --shards OUT/shards --steps 20

Random initialization, a small config (vocab size and max length from the shards' metadata),
``training.loader.ShardDataset`` + ``torch.utils.data.DataLoader`` + ``WholeWordMaskCollator``
(or ``--collator macbert`` / ``pert``; PERT's labels are positions, trained here with a pointer
head: logits over the sequence's own positions). Prints ``loss <value>`` each step. Seconds on a CPU.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from anywhere without pip install -e

import torch  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402

from training.collators import MacBertCollator, PermutationCollator, TokenIds, WholeWordMaskCollator  # noqa: E402
from training.loader import ShardDataset  # noqa: E402

COLLATORS = {"wwm": WholeWordMaskCollator, "macbert": MacBertCollator, "pert": PermutationCollator}


def tiny_bert(vocab_size: int, max_len: int, hidden: int, layers: int):
    from transformers import BertConfig, BertForMaskedLM

    config = BertConfig(
        vocab_size=vocab_size,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=max(1, hidden // 32),
        intermediate_size=hidden * 4,
        max_position_embeddings=max_len,
    )
    return BertForMaskedLM(config)


def pointer_loss(model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """PERT: each position scores every position of the same sequence; the label is a position."""
    hidden = model.bert(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
    scores = hidden @ hidden.transpose(1, 2) / hidden.shape[-1] ** 0.5
    scores = scores.masked_fill(batch["attention_mask"][:, None, :] == 0, float("-inf"))
    return torch.nn.functional.cross_entropy(scores.flatten(0, 1), batch["labels"].flatten(), ignore_index=-100)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shards", required=True, help="corpus folder, its shards/ folder, or a folder of shards")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--workers", type=int, default=0, help="DataLoader worker processes")
    parser.add_argument("--collator", choices=sorted(COLLATORS), default="wwm")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    torch.manual_seed(args.seed)
    dataset = ShardDataset(args.shards)
    shards = dataset.shard_set
    collator = COLLATORS[args.collator](TokenIds.from_shards(shards), seed=args.seed)
    loader = DataLoader(
        dataset, batch_size=args.batch_size, shuffle=True, collate_fn=collator, num_workers=args.workers,
        generator=torch.Generator().manual_seed(args.seed), drop_last=len(dataset) > args.batch_size,
    )
    model = tiny_bert(shards.vocab_size, shards.max_seq_len, args.hidden, args.layers)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr)
    print(
        f"{len(dataset)} examples in {len(shards.shards)} shards; vocab {shards.vocab_size}, "
        f"max_seq_len {shards.max_seq_len}; {sum(p.numel() for p in model.parameters())} parameters",
        flush=True,
    )
    model.train()
    step, started = 0, time.perf_counter()
    while step < args.steps:
        for batch in loader:
            if args.collator == "pert":
                loss = pointer_loss(model, batch)
            else:
                loss = model(**batch).loss
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            step += 1
            print(f"loss {loss.item():.4f}", flush=True)
            if step >= args.steps:
                break
    print(f"{step} steps in {time.perf_counter() - started:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
