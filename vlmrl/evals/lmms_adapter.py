"""lmms-eval model class `vlmrl`: any model the suite can load, behind lmms-eval's interface.

    lmms-eval --model vlmrl --model_args pretrained=DIR --tasks mme       (entry point installed)
    python -m vlmrl.evals.lmms_adapter --model vlmrl --model_args pretrained=tiny --tasks ...
    vlmrl eval lmms --model DIR --tasks ...

`pretrained` is anything `VLM.load` accepts: "tiny", a checkpoint directory the suite saved, or
a hub id. Generation goes through `VLM.generate` and log-likelihoods through `VLM.score`, so
lmms-eval sees exactly the chat formatting and decoding our own harness uses.

lmms-eval 0.7.3 finds the class through the `lmms_eval.models` entry point declared in
pyproject.toml (`lmms_manifest`), or through `register()` in this process.

What a stock task receives (`--model_args response=answer|raw`, default `answer`):
- `answer`: the final answer of each response, `vlmrl.model.formats.extract_final_answer`: the
  content of the last `<answer>...</answer>` (a `\\boxed{}` inside it unwrapped), else of the
  last `\\boxed{...}`, else the raw text unchanged. Reasoning (`<think>`), tool calls and clues
  around the answer are dropped, so a stock parser expecting "yes"/"no" or a letter sees just
  that; a model that answers in plain text is scored exactly as with `raw`. A malformed block
  (unclosed or empty `<answer>`) counts as none: the task then gets the raw text.
- `raw`: the generated text as it is, for tasks that do their own extraction.
Tasks exported from this suite (`vlmrl_*`, rows with a `vlmrl_task` column) always get the raw
text, because their scorer extracts the answer itself and also counts format compliance.

Which of a task's settings are followed:
- `generation_kwargs`: `max_new_tokens` (else the `max_new_tokens` model arg, 64);
  `temperature` 0, or `do_sample: false`, is greedy decoding, `temperature` > 0 samples with
  `top_p` and `top_k`; `until` (lmms-eval's default is "\\n\\n") cuts the text handed to the
  task at the first stop string, applied after answer extraction, so a stop string inside the
  reasoning does not cut the answer away. `num_beams` > 1 is not supported: decoding stays
  greedy and a warning is logged. Other keys (`repetition_penalty`, ...) are ignored.
- `pre_prompt` / `post_prompt` (`lmms_eval_specific_kwargs`; no task has a `vlmrl` entry, so
  lmms-eval picks `default`): the task's `doc_to_text` applies them and the adapter sends that
  text as it is, after the images, with `<image>` placeholders removed and outer whitespace
  stripped. `vlmrl eval run --pre-prompt/--post-prompt` puts the same text around questions of
  user tasks, so both harnesses send identical prompts.
- `system_prompt` model arg: a system turn before every request.
- `generate_until_multi_round`: every round's text goes through the same `response` option;
  `until` is not applied between rounds. `loglikelihood` scores the task's continuation as
  given (no extraction is involved).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from lmms_eval.api.instance import Instance
from lmms_eval.api.model import lmms
from PIL import Image

from vlmrl.model.formats import extract_final_answer

MODEL_ID = "vlmrl"
CLASS_PATH = "vlmrl.evals.lmms_adapter.VlmrlLmms"
RESPONSE_MODES = ("answer", "raw")
# A column of the tasks `vlmrl.evals.lmms_export` writes: their scorer parses our formats itself.
EXPORTED_TASK_COLUMN = "vlmrl_task"


def lmms_manifest():
    """The entry-point payload lmms-eval reads to learn the `vlmrl` model id."""
    from lmms_eval.models.registry_v2 import ModelManifest

    return ModelManifest(model_id=MODEL_ID, simple_class_path=CLASS_PATH)


def register() -> None:
    """Make `--model vlmrl` resolvable in this process (idempotent)."""
    from lmms_eval.models import MODEL_REGISTRY_V2

    MODEL_REGISTRY_V2.register_manifest(lmms_manifest(), overwrite=True)


def _visuals(value: Any, where: str) -> list[Image.Image]:
    if value is None:
        return []
    items = value if isinstance(value, (list, tuple)) else [value]
    images = []
    for item in items:
        if not isinstance(item, Image.Image):
            raise ValueError(
                f"{where}: the vlmrl model takes images only, got {type(item).__name__} (video/audio unsupported)"
            )
        images.append(item.convert("RGB") if item.mode != "RGB" else item)
    return images


def _user_turn(images: Sequence[Image.Image], text: str) -> dict[str, Any]:
    content: list[dict[str, Any]] = [{"type": "image", "image": image} for image in images]
    content.append({"type": "text", "text": text.replace("<image>", "").strip()})
    return {"role": "user", "content": content}


def _cut(text: str, until: Sequence[str]) -> str:
    for stop in until:
        if stop:
            text = text.split(stop)[0]
    return text


def _response_mode(value: Any) -> str:
    if value not in RESPONSE_MODES:
        raise ValueError(f"--model_args response={value!r}: expected one of {list(RESPONSE_MODES)}")
    return value


def _stops(gen_kwargs: dict[str, Any]) -> list[str]:
    until = gen_kwargs.get("until") or []
    return [until] if isinstance(until, str) else [stop for stop in until if isinstance(stop, str)]


class VlmrlLmms(lmms):
    """lmms-eval's view of a `vlmrl.model.VLM` ("simple" request format)."""

    is_simple = True

    def __init__(
        self,
        pretrained: str = "tiny",
        device: str | None = "auto",
        dtype: str = "auto",
        batch_size: int | str = 1,
        max_new_tokens: int = 64,
        system_prompt: str | None = None,
        response: str = "answer",
        **unused: Any,
    ) -> None:
        super().__init__()
        from vlmrl.model import VLM

        self.response = _response_mode(response)  # checked before the (slow) model load
        self.vlm = VLM.load(str(pretrained), device=device or "auto", dtype=dtype)
        self.batch_size_per_gpu = 1 if str(batch_size) == "auto" else int(batch_size)
        self.max_new_tokens = int(max_new_tokens)
        self.system_prompt = self._resolve_system_prompt(system_prompt or "")
        self._warned: set[str] = set()

    @classmethod
    def from_vlm(
        cls,
        vlm: Any,
        batch_size: int = 1,
        max_new_tokens: int = 64,
        system_prompt: str = "",
        response: str = "answer",
    ) -> VlmrlLmms:
        """Wrap an already loaded VLM (benchmarks, evaluation inside a training run)."""
        adapter = cls.__new__(cls)
        lmms.__init__(adapter)
        adapter.response = _response_mode(response)
        adapter.vlm = vlm
        adapter.batch_size_per_gpu = int(batch_size)
        adapter.max_new_tokens = int(max_new_tokens)
        adapter.system_prompt = system_prompt
        adapter._warned = set()
        return adapter

    @property
    def batch_size(self) -> int:
        return self.batch_size_per_gpu

    def _conversation(self, images: Sequence[Image.Image], text: str) -> list[dict[str, Any]]:
        messages = [_user_turn(images, text)]
        if self.system_prompt:
            messages.insert(0, {"role": "system", "content": self.system_prompt})
        return messages

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            from loguru import logger

            logger.warning(message)

    def _sampling(self, gen_kwargs: dict[str, Any]):
        from vlmrl.model import SamplingParams

        temperature = float(gen_kwargs.get("temperature") or 0.0)
        if gen_kwargs.get("do_sample") is False:
            temperature = 0.0
        beams = gen_kwargs.get("num_beams")
        if beams is not None and int(beams) > 1:
            self._warn_once("num_beams", f"vlmrl: num_beams={beams} is not supported; decoding greedily")
        return SamplingParams(
            max_new_tokens=int(gen_kwargs.get("max_new_tokens") or self.max_new_tokens),
            temperature=temperature,
            top_p=float(gen_kwargs.get("top_p") or 1.0),
            top_k=int(gen_kwargs.get("top_k") or 0),
        )

    def _doc(self, task: str, split: str, doc_id: int) -> dict[str, Any]:
        return self.task_dict[task][split][doc_id]

    def _for_task(self, text: str, doc: Any) -> str:
        """What the task is handed: the final answer, or the raw text (see the module doc)."""
        if self.response == "raw" or (isinstance(doc, dict) and EXPORTED_TASK_COLUMN in doc):
            return text
        return extract_final_answer(text).text

    # ------------------------------------------------------------------ generate_until
    def generate_until(self, requests: list[Instance]) -> list[str]:
        """Greedy (or sampled) answers, batched over requests with equal generation settings."""
        from rich.progress import Progress

        outputs: list[str | None] = [None] * len(requests)
        groups: dict[str, list[int]] = {}
        for index, request in enumerate(requests):
            groups.setdefault(repr(sorted(request.args[1].items())), []).append(index)
        with Progress(transient=True) as progress:
            bar = progress.add_task("vlmrl generate_until", total=len(requests))
            for indices in groups.values():
                for start in range(0, len(indices), self.batch_size):
                    chunk = indices[start : start + self.batch_size]
                    conversations, docs = [], []
                    for index in chunk:
                        context, _, doc_to_visual, doc_id, task, split = requests[index].args
                        docs.append(self._doc(task, split, doc_id))
                        images = _visuals(doc_to_visual(docs[-1]), f"{task} doc {doc_id}")
                        conversations.append(self._conversation(images, context))
                    gen_kwargs = dict(requests[chunk[0]].args[1])
                    until = _stops(gen_kwargs)
                    generations = self.vlm.generate(conversations, self._sampling(gen_kwargs))
                    for index, doc, generation in zip(chunk, docs, generations):
                        outputs[index] = _cut(self._for_task(generation.text, doc), until)
                        self.cache_hook.add_partial(
                            "generate_until", requests[index].args[:2], outputs[index]
                        )
                    progress.advance(bar, len(chunk))
        return [text or "" for text in outputs]

    # ------------------------------------------------------------------ loglikelihood
    def loglikelihood(self, requests: list[Instance]) -> list[tuple[float, bool]]:
        """log p(continuation | context, images) and whether greedy decoding would produce it."""
        import torch

        from vlmrl.model import SamplingParams

        results: list[tuple[float, bool]] = []
        for start in range(0, len(requests), self.batch_size):
            chunk = requests[start : start + self.batch_size]
            prompts, full = [], []
            for request in chunk:
                context, continuation, doc_to_visual, doc_id, task, split = request.args
                images = _visuals(doc_to_visual(self._doc(task, split, doc_id)), f"{task} doc {doc_id}")
                prompt = self._conversation(images, context)
                prompts.append(prompt)
                full.append(prompt + [{"role": "assistant", "content": continuation}])
            with torch.no_grad():
                scores = self.vlm.score(full)
            end_of_turn = self.vlm.end_of_turn_id
            for row in range(len(chunk)):
                positions = scores.action_mask[row].nonzero().flatten().tolist()
                ids = scores.input_ids[row, positions].tolist()
                if ids and ids[-1] == end_of_turn:  # the turn's end is not part of the continuation
                    positions, ids = positions[:-1], ids[:-1]
                logprob = float(scores.logprobs[row, positions].sum()) if positions else 0.0
                greedy = False
                if ids:
                    generation = self.vlm.generate(
                        [prompts[row]], SamplingParams(max_new_tokens=len(ids), temperature=0.0)
                    )[0]
                    greedy = generation.token_ids[: len(ids)] == ids
                results.append((logprob, greedy))
        return results

    # ------------------------------------------------------------------ multi-round
    def generate_until_multi_round(self, requests: list[Instance]) -> list[Any]:
        """lmms-eval's multi-round protocol: round 0 answers the context; afterwards the task's
        doc_to_text(doc, previous_output=..., round_idx=..., previous_round_info=...) returns
        (visuals, context, terminal, round_results, round_info) for the next round."""
        results: list[Any] = []
        for request in requests:
            context, gen_kwargs, doc_to_visual, doc_to_text, doc_id, task, split = request.args
            doc = self._doc(task, split, doc_id)
            gen_kwargs = {k: v for k, v in dict(gen_kwargs).items() if k != "until"}
            sampling = self._sampling(gen_kwargs)
            images = _visuals(doc_to_visual(doc), f"{task} doc {doc_id}")
            round_results: list[str] = []
            round_info = None
            round_index = 0
            while True:
                if round_index > 0:
                    visuals, context, terminal, returned, round_info = doc_to_text(
                        doc,
                        previous_output=round_results,
                        round_idx=round_index,
                        previous_round_info=round_info,
                    )
                    if returned is not None:
                        round_results = list(returned)
                    if terminal:
                        break
                    images = _visuals(visuals, f"{task} doc {doc_id} round {round_index}")
                generation = self.vlm.generate([self._conversation(images, context)], sampling)[0]
                round_results.append(self._for_task(generation.text, doc))
                round_index += 1
            results.append(round_results)
        return results


def main() -> None:
    """`python -m vlmrl.evals.lmms_adapter ARGS`: the lmms-eval CLI with `vlmrl` registered."""
    register()
    from lmms_eval.cli.dispatch import main as lmms_main

    lmms_main()


if __name__ == "__main__":
    main()
