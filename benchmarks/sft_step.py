"""Training throughput: one SFT step through `vlm.score` vs plain transformers' loss.

    .venv/bin/python benchmarks/sft_step.py --model smol --out benchmarks/results/sft_step-smol.json

Both sides train the same model object on the same batch of shapes-QA conversations (an image,
several questions, answers in <answer> tags), language model frozen and vision tower trained, as
stage 1 of `vlmrl pretrain smol`, under the compute dtype `vlmrl.model.precision` picks. Ours
is the shared SFT loop's step: `vlm.score` (logits only where an answer token is predicted) and
the mean negative log-likelihood of the answer tokens. The peer is what a user writes with
plain transformers: the processor's batch with labels masked to the answers (-100 elsewhere)
and `model(**inputs, labels=labels).loss` (logits at every position). Reported: tokens per
second (every token of the batch, image tokens included) and the ratio; the two losses agree
(checked). On an emulating CPU run it with `ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2`.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def batch(count: int, seed: int) -> list[list[dict]]:
    import numpy as np

    from vlmrl.pretrain_smol import SmolPretrainConfig, qa_conversation

    rng = np.random.default_rng(seed)
    config = SmolPretrainConfig(think_share=0.0)
    return [qa_conversation(rng, config) for _ in range(count)]


def peer_inputs(vlm, conversations):
    """The processor's batch (right padding) and labels: answer tokens kept, the rest -100."""
    import torch

    encoded = vlm.encode(conversations, add_generation_prompt=False)
    inputs = vlm._batch(encoded, padding_side="right", share_images=False)
    labels = torch.full_like(inputs["input_ids"], -100)
    for row, item in enumerate(encoded):
        mask = torch.tensor(item.action_mask, dtype=torch.bool)
        labels[row, : len(item.action_mask)][mask] = inputs["input_ids"][row, : len(item.action_mask)][mask]
    return inputs, labels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smol", help="Model spec for VLM.load (smol, tiny, a directory).")
    parser.add_argument("--batch-size", type=int, default=16, help="Conversations per step.")
    parser.add_argument("--repeats", type=int, default=3, help="Timed steps per side (median reported).")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default).")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="", help="JSON file for the results (none: print only).")
    arguments = parser.parse_args()

    import torch

    from vlmrl.model import VLM, precision
    from vlmrl.runs import atomic_write_json

    if arguments.threads:
        torch.set_num_threads(arguments.threads)
    vlm = VLM.load(arguments.model, dtype="float32", device="cpu")
    vlm.model.requires_grad_(False)
    vlm.model.model.visual.requires_grad_(True)
    vlm.model.train()
    dtype = precision.autocast_dtype(vlm.device, "auto")
    conversations = batch(arguments.batch_size, arguments.seed)
    inputs, labels = peer_inputs(vlm, conversations)
    tokens = int(inputs["attention_mask"].sum())

    def autocast():
        return torch.autocast("cpu", dtype=dtype, enabled=dtype != torch.float32)

    def ours() -> float:
        with autocast():
            scores = vlm.score(conversations)
        loss = -(scores.logprobs * scores.action_mask).sum() / scores.action_mask.sum()
        loss.backward()
        vlm.model.zero_grad(set_to_none=True)
        return float(loss)

    def peer() -> float:
        with autocast():
            output = vlm.model(**vlm._model_inputs(inputs), labels=labels, use_cache=False)
        output.loss.backward()
        vlm.model.zero_grad(set_to_none=True)
        return float(output.loss)

    def timed(step) -> tuple[float, float]:
        loss = step()  # warm-up
        times = []
        for _ in range(arguments.repeats):
            started = time.perf_counter()
            step()
            times.append(time.perf_counter() - started)
        return statistics.median(times), loss

    our_seconds, our_loss = timed(ours)
    peer_seconds, peer_loss = timed(peer)
    if abs(our_loss - peer_loss) > 2e-2 * max(1.0, abs(peer_loss)):
        raise RuntimeError(f"the two losses differ ({our_loss:.4f} vs {peer_loss:.4f}): not the same step")
    result = {
        "benchmark": "sft_step",
        "model": arguments.model,
        "parameters": vlm.parameter_count(),
        "batch_size": arguments.batch_size,
        "tokens": tokens,
        "machine": precision.summary_line(vlm.device),
        "ours_seconds": our_seconds,
        "ours_tokens_per_second": tokens / our_seconds,
        "peer_seconds": peer_seconds,
        "peer_tokens_per_second": tokens / peer_seconds,
        "ratio": peer_seconds / our_seconds,
        "losses": [our_loss, peer_loss],
    }
    print(result["machine"])
    print(f"{'':24}{'tokens/s':>10}{'s/step':>9}")
    print(f"{'ours (vlm.score)':24}{result['ours_tokens_per_second']:>10.0f}{our_seconds:>9.2f}")
    print(f"{'HF loss (labels)':24}{result['peer_tokens_per_second']:>10.0f}{peer_seconds:>9.2f}")
    print(f"ratio {result['ratio']:.2f}x ({arguments.model}, {tokens} tokens per step)")
    if arguments.out:
        atomic_write_json(arguments.out, result)


if __name__ == "__main__":
    main()
