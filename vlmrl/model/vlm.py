"""`VLM`: the one wrapper every method, trainer and evaluation goes through.

It hides the differences between model families behind three verbs: `generate` (batched
sampling with the sampler's log-probs), `score` (one forward pass returning per-token
log-probs of exactly the assistant's tokens) and `save`. See DESIGN 3.1.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from vlmrl.model.encoding import ConversationEncoder, ConversationError, Encoded, collate_vision
from vlmrl.model.families import Family, family_for
from vlmrl.model.precision import weights_dtype
from vlmrl.model.types import Conversation, Generation, SamplingParams, TokenScores

TINY_DIRECTORY = Path(__file__).resolve().parent.parent / "assets" / "tiny"


class ModelLoadError(ValueError):
    """A model spec could not be resolved to a loadable model."""


@dataclass
class LoraSettings:
    rank: int = 16
    alpha: int = 32
    dropout: float = 0.0
    target_modules: Any = "all-linear"


def _resolve_device(device: str | torch.device) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _model_class(model_type: str):
    import transformers

    names = {
        "qwen2_vl": "Qwen2VLForConditionalGeneration",
        "qwen2_5_vl": "Qwen2_5_VLForConditionalGeneration",
        "qwen3_vl": "Qwen3VLForConditionalGeneration",
    }
    if model_type in names:
        return getattr(transformers, names[model_type])
    return transformers.AutoModelForImageTextToText


class VLM:
    """A vision-language model with its processor, behind one interface for all families."""

    def __init__(self, model: Any, processor: Any, family: Family, name: str = "model"):
        self.model = model
        self.processor = processor
        self.family = family
        self.name = name
        self.tokenizer = getattr(processor, "tokenizer", processor)
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.encoder = ConversationEncoder(processor, family)
        self._adapter_disabled = False
        # Never sample image/video placeholder ids, and normalise `score` over the same support.
        # Off only to compare with code that normalises over the whole vocabulary (TRL parity).
        self.suppress_vision_placeholders = True
        # Encode each distinct image of a batch once (a GRPO group repeats its prompt's image
        # group-size times). Off only to compare with the per-sample path.
        self.share_vision_features = True
        # In `score`, run a prompt shared by several conversations (a GRPO group) once and its
        # completions against its cache. Off only to compare with one pass per conversation.
        self.share_prompts = True

    # ------------------------------------------------------------------ loading
    @classmethod
    def load(
        cls,
        spec: str | Path,
        *,
        dtype: str | torch.dtype = "auto",
        device: str | torch.device = "auto",
        lora: LoraSettings | dict | None = None,
        trust_remote_code: bool = False,
    ) -> VLM:
        """Load `spec`: "smol", "tiny", "tiny-teacher", a local directory or a hub id."""
        from transformers import AutoConfig, AutoProcessor

        torch_device = _resolve_device(device)
        torch_dtype = weights_dtype(torch_device, dtype)
        spec = str(spec)
        if spec == "smol":
            from vlmrl.model.smol import load_smol

            vlm = load_smol(dtype=torch_dtype)
        elif spec in ("tiny", "tiny-teacher"):
            from vlmrl.model.tiny import load_tiny

            vlm = load_tiny(spec, dtype=torch_dtype)
        else:
            path = Path(spec).expanduser()
            looks_local = path.exists() or spec.startswith((".", "/", "~")) or spec.count("/") > 1
            if looks_local:
                if not path.is_dir():
                    raise ModelLoadError(f"model '{spec}': no such directory")
                if not (path / "config.json").is_file():
                    raise ModelLoadError(
                        f"model '{spec}': directory has no config.json (expected a saved model)"
                    )
                try:
                    json.loads((path / "config.json").read_text())
                except json.JSONDecodeError as error:
                    raise ModelLoadError(
                        f"model '{spec}': config.json is not valid JSON ({error})"
                    ) from error
            try:
                config = AutoConfig.from_pretrained(spec, trust_remote_code=trust_remote_code)
            except (OSError, ValueError) as error:
                where = (
                    "directory"
                    if looks_local
                    else "hub id (is the hub reachable? use a local directory offline)"
                )
                raise ModelLoadError(
                    f"model '{spec}': cannot read its config as a {where}: {error}"
                ) from error
            family = family_for(getattr(config, "model_type", "?"), source=f"model '{spec}'")
            try:
                processor = AutoProcessor.from_pretrained(spec, trust_remote_code=trust_remote_code)
                model = _model_class(config.model_type).from_pretrained(
                    spec, dtype=torch_dtype, trust_remote_code=trust_remote_code
                )
            except (OSError, ValueError) as error:
                raise ModelLoadError(f"model '{spec}': cannot load weights or processor: {error}") from error
            vlm = cls(model, processor, family, name=spec)
        vlm.model.to(torch_device)
        vlm.model.eval()
        if lora is not None:
            vlm.enable_lora(lora if isinstance(lora, LoraSettings) else LoraSettings(**lora))
        return vlm

    def enable_lora(self, settings: LoraSettings) -> None:
        from peft import LoraConfig, get_peft_model

        config = LoraConfig(
            r=settings.rank,
            lora_alpha=settings.alpha,
            lora_dropout=settings.dropout,
            target_modules=settings.target_modules,
        )
        self.model = get_peft_model(self.model, config)

    @property
    def uses_lora(self) -> bool:
        return hasattr(self.model, "disable_adapter") and hasattr(self.model, "peft_config")

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def end_of_turn_id(self) -> int:
        return self.encoder.end_of_turn_id

    def context_length(self) -> int:
        config = self.model.config
        text_config = getattr(config, "text_config", config)
        return int(getattr(text_config, "max_position_embeddings", 0) or 1 << 30)

    # ------------------------------------------------------------------ batching
    def encode(self, conversations: Sequence[Conversation], add_generation_prompt: bool) -> list[Encoded]:
        if isinstance(conversations, dict) or not isinstance(conversations, Sequence):
            raise ConversationError("expected a list of conversations (each a list of messages)")
        return [self.encoder.encode(c, i, add_generation_prompt) for i, c in enumerate(conversations)]

    def _padded_ids(self, encoded: list[Encoded], padding_side: str) -> dict[str, torch.Tensor]:
        length = max(len(e.input_ids) for e in encoded)
        pad = self.tokenizer.pad_token_id
        ids, mask = [], []
        for item in encoded:
            padding = length - len(item.input_ids)
            if padding_side == "left":
                ids.append([pad] * padding + item.input_ids)
                mask.append([0] * padding + [1] * len(item.input_ids))
            else:
                ids.append(item.input_ids + [pad] * padding)
                mask.append([1] * len(item.input_ids) + [0] * padding)
        return {
            "input_ids": torch.tensor(ids, dtype=torch.long),
            "attention_mask": torch.tensor(mask, dtype=torch.long),
        }

    def _batch(
        self, encoded: list[Encoded], padding_side: str, share_images: bool = False
    ) -> dict[str, torch.Tensor]:
        """Padded model inputs; with `share_images`, repeated images are kept once for
        `_model_inputs` (see `_share_repeated_images`)."""
        batch = self._padded_ids(encoded, padding_side)
        ids = batch["input_ids"].tolist()
        # Only families that declare it take per-token modality ids (other processors' methods
        # of this name need extra arguments, and their models do not read the ids).
        if self.family.modality_type_ids and getattr(self.processor, "image_token_id", None) is not None:
            types = self.processor.create_mm_token_type_ids(ids)
            batch["mm_token_type_ids"] = torch.tensor(types, dtype=torch.long)
        if self.family.token_type_ids:
            # The image soft token the model embeds pixels into; Gemma3's processor calls its
            # begin-of-image token `image_token_id`, which would leave the image tokens causal.
            image_token = getattr(self.model.config, "image_token_id", None)
            batch["token_type_ids"] = (batch["input_ids"] == image_token).long()
        vision = collate_vision([piece for item in encoded for piece in item.vision], self.family)
        if "pixel_values" in vision:
            vision["pixel_values"] = vision["pixel_values"].to(self.model.dtype)
            if share_images:
                self._share_repeated_images(vision)
        batch.update(vision)
        return {key: value.to(self.device) for key, value in batch.items()}

    def _share_repeated_images(self, vision: dict[str, torch.Tensor]) -> None:
        """Keep one copy of each distinct image; `_model_inputs` encodes those and repeats them.

        Only for the Qwen-VL families, whose pixels are one row block per image (sized by its
        `image_grid_thw` row) and whose models take precomputed vision features
        (`mm_encoder_outputs`). Images are compared by content, exactly. Writes
        `image_copies` (for each image, the index of its distinct copy) and
        `unique_image_grid_thw` next to the pixels of the distinct images only.
        """
        if not (self.share_vision_features and self.family.first_class):
            return
        found = self._distinct_images(vision)
        if found is None or len(found[0]) == len(found[1]):
            return
        kept, copies = found
        pixels = torch.split(vision["pixel_values"], vision["image_grid_thw"].prod(-1).tolist())
        vision["pixel_values"] = torch.cat([pixels[i] for i in kept])
        vision["unique_image_grid_thw"] = vision["image_grid_thw"][kept]
        vision["image_copies"] = torch.tensor(copies, dtype=torch.long)

    @staticmethod
    def _distinct_images(vision: dict[str, torch.Tensor]) -> tuple[list[int], list[int]] | None:
        """(the first image of each distinct content, each image's index among those), for
        Qwen-VL style pixels (a row block per `image_grid_thw` row); None for other layouts."""
        grid = vision.get("image_grid_thw")
        values = vision.get("pixel_values")
        if grid is None or values is None or grid.dim() != 2 or values.dim() != 2:
            return None
        sizes = grid.prod(-1).tolist()
        if sum(sizes) != values.shape[0]:
            return None
        pixels = torch.split(values, sizes)
        buckets: dict[tuple, list[int]] = {}  # a cheap fingerprint -> distinct images having it
        kept: list[int] = []
        copies: list[int] = []
        for index, (piece, size) in enumerate(zip(pixels, grid.tolist())):
            key = (tuple(size), float(piece.sum()), float(piece[:, ::7].abs().sum()))
            match = next((u for u in buckets.get(key, []) if torch.equal(pixels[kept[u]], piece)), None)
            if match is None:
                match = len(kept)
                kept.append(index)
                buckets.setdefault(key, []).append(match)
            copies.append(match)
        return kept, copies

    def _model_inputs(self, inputs: dict[str, torch.Tensor]) -> dict[str, Any]:
        """The model's keyword arguments for a batch; with shared images (see
        `_share_repeated_images`) the vision tower runs on the distinct images only, under the
        caller's grad mode, and their features are repeated per image (gradients of the copies
        add up in the shared features, as with one tower pass per copy)."""
        if "image_copies" not in inputs:
            return inputs
        inputs = dict(inputs)
        copies = inputs.pop("image_copies").tolist()
        grid = inputs.pop("unique_image_grid_thw")
        features = self.model.get_image_features(inputs.pop("pixel_values"), grid, return_dict=True)
        features.pooler_output = tuple(features.pooler_output[i] for i in copies)
        if getattr(features, "deepstack_features", None) is not None:  # Qwen3-VL
            features.deepstack_features = [
                tuple(layer[i] for i in copies) for layer in features.deepstack_features
            ]
        inputs["mm_encoder_outputs"] = {"image": features}
        return inputs

    @contextlib.contextmanager
    def _adapter_context(self) -> Iterator[None]:
        if self._adapter_disabled and self.uses_lora:
            with self.model.disable_adapter():
                yield
        else:
            yield

    # ------------------------------------------------------------------ generate
    @torch.no_grad()
    def generate(
        self,
        conversations: Sequence[Conversation],
        sampling: SamplingParams | None = None,
        batch_size: int | None = None,
    ) -> list[Generation]:
        """Sample `sampling.n` completions per conversation, batched and left-padded.

        Returns len(conversations) * n generations ordered by prompt, then sample. Each carries
        the sampled ids (with the end-of-turn token when the model stopped) and the sampler's
        log-prob of each id: log-softmax of the logits after temperature/top-k/top-p, which at
        temperature 1 with no truncation are the model's own log-probs (what `score` returns).
        A stop string ends a completion; it is kept in both text and ids.
        """
        sampling = sampling or SamplingParams()
        encoded = self.encode(conversations, add_generation_prompt=True)
        limit = self.context_length()
        for index, item in enumerate(encoded):
            if len(item.input_ids) + sampling.max_new_tokens > limit:
                raise ConversationError(
                    f"conversation {index}: prompt of {len(item.input_ids)} tokens plus max_new_tokens="
                    f"{sampling.max_new_tokens} exceeds the model's context of {limit} tokens"
                )
        jobs = [(p, s) for p in range(len(encoded)) for s in range(sampling.n)]
        batch_size = batch_size or len(jobs)
        results: list[Generation] = []
        generator_state = None
        if sampling.seed is not None:
            generator_state = torch.random.get_rng_state()
            torch.manual_seed(sampling.seed)
        try:
            self.model.eval()
            for start in range(0, len(jobs), batch_size):
                chunk = jobs[start : start + batch_size]
                results += self._generate_chunk([encoded[p] for p, _ in chunk], chunk, sampling)
        finally:
            if generator_state is not None:
                torch.random.set_rng_state(generator_state)
        return results

    def _generate_chunk(
        self, encoded: list[Encoded], jobs: list[tuple[int, int]], sampling: SamplingParams
    ) -> list[Generation]:
        inputs = self._batch(encoded, padding_side="left", share_images=True)
        greedy = sampling.temperature == 0
        options: dict[str, Any] = {
            "max_new_tokens": sampling.max_new_tokens,
            "do_sample": not greedy,
            "eos_token_id": [self.end_of_turn_id],
            "pad_token_id": self.tokenizer.pad_token_id,
            "output_scores": True,
            "return_dict_in_generate": True,
        }
        if not greedy:
            options.update(
                temperature=sampling.temperature, top_p=sampling.top_p, top_k=sampling.top_k or None
            )
        else:
            options.update(temperature=None, top_p=None, top_k=None)
        if sampling.repetition_penalty != 1.0:
            options["repetition_penalty"] = sampling.repetition_penalty
        if sampling.stop:
            options.update(stop_strings=list(sampling.stop), tokenizer=self.tokenizer)
        placeholders = self._vision_placeholder_ids()
        if placeholders:
            # A sampled image/video placeholder would make the conversation unscorable (the
            # model expects pixels for it), so those ids are never sampled.
            options["suppress_tokens"] = placeholders
        with self._adapter_context():
            prefilled = self._prefill_shared_prompts(encoded, inputs)
            if prefilled is not None:
                output = self.model.generate(**prefilled, **options)
            else:
                output = self.model.generate(**self._model_inputs(inputs), **options)
        prompt_length = inputs["input_ids"].shape[1]
        sequences = output.sequences[:, prompt_length:].cpu()
        steps = len(output.scores)
        chosen = torch.zeros(sequences.shape[0], steps)
        for step, scores in enumerate(output.scores):
            logprobs = torch.log_softmax(scores.float(), dim=-1)
            chosen[:, step] = (
                logprobs.gather(1, sequences[:, step : step + 1].to(logprobs.device)).squeeze(1).cpu()
            )
        generations = []
        for row, (prompt_index, sample_index) in enumerate(jobs):
            ids = sequences[row].tolist()
            finish = "length"
            cut = len(ids)
            if self.end_of_turn_id in ids:
                cut = ids.index(self.end_of_turn_id) + 1
                finish = "stop"
            ids = ids[:cut]
            text = self.tokenizer.decode(
                [i for i in ids if i != self.end_of_turn_id], skip_special_tokens=True
            )
            if sampling.stop:
                stop_cut = self._stop_string_cut(ids, sampling.stop)
                # The stop string usually ends in the last sampled token (the sampler stops
                # there), so any match marks the completion as stopped by it.
                if stop_cut is not None:
                    ids = ids[:stop_cut]
                    text = self.tokenizer.decode(ids, skip_special_tokens=True)
                    finish = "stop_string"
            generations.append(
                Generation(
                    text=text,
                    token_ids=ids,
                    logprobs=chosen[row, : len(ids)].tolist(),
                    prompt_index=prompt_index,
                    sample_index=sample_index,
                    finish_reason=finish,
                )
            )
        return generations

    def _prefill_shared_prompts(
        self, encoded: list[Encoded], inputs: dict[str, torch.Tensor]
    ) -> dict[str, Any] | None:
        """`generate`'s inputs with each distinct prompt of the chunk prefilled once.

        The samples of one prompt (`SamplingParams.n`) are the same `Encoded` object. Each
        distinct prompt but its last token runs once, left-padded like the chunk; its
        key/value cache and M-RoPE offset are repeated for its samples, and generation
        continues from that cache with the last prompt token. None (plain generation) unless
        a Qwen-VL family with repeated prompts.
        """
        if not (self.share_prompts and self.family.first_class) or self._training_is_random_or_checkpointed():
            return None
        if "mm_token_type_ids" not in inputs or inputs["input_ids"].shape[1] < 2:
            return None
        first_row: dict[int, int] = {}
        groups = [first_row.setdefault(id(item), len(first_row)) for item in encoded]
        if len(first_row) == len(encoded):
            return None
        representatives = [groups.index(g) for g in range(len(first_row))]
        prompts = self._batch([encoded[r] for r in representatives], padding_side="left", share_images=True)
        positions, deltas = self._rope_index(prompts)
        model_inputs = self._model_inputs(prompts)
        for key in ("input_ids", "attention_mask", "mm_token_type_ids"):
            model_inputs[key] = model_inputs[key][:, :-1]
        output = self.model(**model_inputs, position_ids=positions[:, :, :-1], use_cache=True)
        index = torch.tensor(groups, dtype=torch.long, device=self.device)
        cache = output.cache
        cache.batch_select_indices(index)
        # Generation from a cache places the new tokens' M-RoPE positions with these offsets.
        base = self.model.get_base_model() if self.uses_lora else self.model
        base.model.rope_deltas = deltas[index]
        return {
            "input_ids": inputs["input_ids"],
            "attention_mask": inputs["attention_mask"],
            "mm_token_type_ids": inputs["mm_token_type_ids"],
            "cache": cache,
        }

    def _vision_placeholder_ids(self) -> list[int]:
        if not self.suppress_vision_placeholders:
            return []
        config = self.model.config
        names = ("image_token_id", "video_token_id", "vision_start_token_id", "vision_end_token_id")
        return sorted({int(v) for v in (getattr(config, n, None) for n in names) if v is not None})

    def _stop_string_cut(self, ids: list[int], stops: Sequence[str]) -> int | None:
        """Smallest k such that the first k ids decode to text containing a stop string."""
        text = self.tokenizer.decode(ids, skip_special_tokens=True)
        if not any(stop in text for stop in stops):
            return None
        for k in range(1, len(ids) + 1):
            if any(stop in self.tokenizer.decode(ids[:k], skip_special_tokens=True) for stop in stops):
                return k
        return None

    # ------------------------------------------------------------------ score
    def score(
        self,
        conversations: Sequence[Conversation],
        *,
        entropy: bool = False,
        hidden_states: bool = False,
        temperature: float = 1.0,
        distributions: bool = False,
    ) -> TokenScores:
        """One forward pass over whole conversations; log-probs of every token given its prefix.

        Runs under the caller's grad mode (enable grad for a loss). `action_mask` marks the
        assistant's own tokens; every loss in the suite selects tokens with it. Log-probs are
        those of the action tokens: other positions hold 0 (they are computed too only when
        `entropy` or `hidden_states` is asked for, which need every position's logits). With
        `distributions`, also the full log-softmax over the vocabulary at each action token
        (`action_log_distributions`), for divergences between two models' distributions.
        """
        encoded = self.encode(conversations, add_generation_prompt=False)
        limit = self.context_length()
        for index, item in enumerate(encoded):
            if len(item.input_ids) > limit:
                raise ConversationError(
                    f"conversation {index}: {len(item.input_ids)} tokens exceed the model's context of {limit}"
                )
        length = max(len(e.input_ids) for e in encoded)
        action_rows = [e.action_mask + [False] * (length - len(e.action_mask)) for e in encoded]
        # Positions whose logits some loss reads: those predicting an action token of any row.
        # With a 49k-word vocabulary the full logits tensor (and its backward) costs more than
        # the whole decoder on CPU, so without entropy or hidden states only these are computed.
        kept = None
        if not (entropy or hidden_states):
            kept = torch.tensor(
                [t - 1 for t in range(1, length) if any(row[t] for row in action_rows)], dtype=torch.long
            )
        with self._adapter_context():
            shared = None if hidden_states else self._logits_with_shared_prompts(encoded)
            if shared is not None:
                inputs, logits = shared
                kept = None
            else:
                inputs = self._batch(encoded, padding_side="right", share_images=True)
                extra = {} if kept is None else {"logits_to_keep": kept.to(self.device)}
                output = self.model(
                    **self._model_inputs(inputs), output_hidden_states=hidden_states, use_cache=False, **extra
                )
                logits = output.logits if kept is not None else output.logits[:, :-1]
        logits = logits.float()
        if temperature != 1.0:
            logits = logits / temperature
        targets = inputs["input_ids"][:, 1:]
        if kept is not None:
            targets = targets[:, kept.to(targets.device)]
        placeholders = self._vision_placeholder_ids()
        if placeholders:
            # The sampler never samples vision placeholder ids (see _generate_chunk), so the
            # policy's distribution excludes them: normalise over the same support, or an
            # untrained model's scores sit log(V / (V - k)) below the sampler's log-probs.
            excluded = torch.zeros(logits.shape[-1], dtype=torch.bool, device=logits.device)
            excluded[placeholders] = True
            logits_for_normaliser = logits.masked_fill(excluded, torch.finfo(logits.dtype).min)
        else:
            logits_for_normaliser = logits
        log_normaliser = torch.logsumexp(logits_for_normaliser, dim=-1)
        token_logprobs = logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1) - log_normaliser
        batch, length = inputs["input_ids"].shape
        if kept is not None:  # back to one value per position; unkept ones are never actions
            positions = kept.to(logits.device)
            full = torch.zeros(batch, length - 1, device=logits.device, dtype=token_logprobs.dtype)
            token_logprobs = full.index_copy(1, positions, token_logprobs)
            full_normaliser = torch.zeros(batch, length - 1, device=logits.device, dtype=log_normaliser.dtype)
            log_normaliser = full_normaliser.index_copy(1, positions, log_normaliser)
        zeros = torch.zeros(batch, 1, device=logits.device, dtype=token_logprobs.dtype)
        logprobs = torch.cat([zeros, token_logprobs], dim=1)
        entropies = None
        if entropy:
            probabilities = torch.softmax(logits_for_normaliser, dim=-1)
            token_entropy = log_normaliser - (probabilities * logits_for_normaliser).sum(-1)
            entropies = torch.cat([zeros, token_entropy], dim=1)

        def padded(values: list[list[Any]], fill: Any, dtype: torch.dtype) -> torch.Tensor:
            return torch.tensor(
                [v + [fill] * (length - len(v)) for v in values], dtype=dtype, device=logits.device
            )

        action_mask = padded([e.action_mask for e in encoded], False, torch.bool)
        action_log_distributions = None
        if distributions:
            # logits[:, t - 1] predicts token t; position 0 is never an action.
            selected = action_mask[:, 1:]
            if kept is not None:
                chosen = logits_for_normaliser[selected[:, kept.to(selected.device)]]
            else:
                chosen = logits_for_normaliser[selected]
            action_log_distributions = chosen - log_normaliser[selected].unsqueeze(-1)
        return TokenScores(
            input_ids=inputs["input_ids"],
            attention_mask=inputs["attention_mask"].bool(),
            action_mask=action_mask,
            logprobs=logprobs,
            turn_index=padded([e.turn_index for e in encoded], -1, torch.long),
            entropy=entropies,
            hidden_states=output.hidden_states[-1] if hidden_states else None,
            decision_positions=[e.decision_positions for e in encoded],
            action_log_distributions=action_log_distributions,
        )

    def _rope_index(self, inputs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Qwen-VL's M-RoPE positions (3, batch, length) and per-row offsets for a padded batch."""
        base = self.model.get_base_model() if self.uses_lora else self.model
        return base.model.get_rope_index(
            inputs["input_ids"],
            mm_token_type_ids=inputs["mm_token_type_ids"],
            image_grid_thw=inputs.get("image_grid_thw"),
            attention_mask=inputs["attention_mask"],
        )

    def _logits_with_shared_prompts(
        self, encoded: list[Encoded]
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor] | None:
        """`score`'s logits with each distinct prompt run through the model once.

        A GRPO group is group-size conversations that share everything before the first
        action token (the prompt and its images) and differ after it. Here the distinct
        prompts run once (with grad, under the caller's grad mode), their key/value cache is
        repeated for every conversation of the group, and only the completions run per
        conversation, attending to that cache. The logits are gathered back into the
        right-padded layout of the plain path: [conversations, length - 1, vocabulary] with
        the padded ids and mask. Gradients of the copies add up in the shared prompt pass.

        None (use the plain path) unless: a Qwen-VL family, not training with activation
        checkpointing (which drops the cache) or dropout (a shared prompt would share its
        dropout masks), every conversation has an action token and no image or video after
        it, only images (no videos), and some prompt repeats.
        """
        if not (self.share_prompts and self.family.first_class) or self._training_is_random_or_checkpointed():
            return None
        if len(encoded) < 2 or not hasattr(self.processor, "create_mm_token_type_ids"):
            return None
        config = self.model.config
        vision_ids = {
            int(v) for v in (getattr(config, n, None) for n in ("image_token_id", "video_token_id")) if v
        }
        prompt_lengths = []
        for item in encoded:
            first = next((t for t, action in enumerate(item.action_mask) if action), None)
            if not first or vision_ids & set(item.input_ids[first:]):
                return None
            if any(set(piece) - {"pixel_values", "image_grid_thw"} for piece in item.vision):
                return None
            prompt_lengths.append(first)
        vision = collate_vision([piece for item in encoded for piece in item.vision], self.family)
        copies: list[int] = []
        if vision:
            found = self._distinct_images(vision)
            if found is None:
                return None
            copies = found[1]
        keys, offset = [], 0
        for item, length in zip(encoded, prompt_lengths):
            count = sum(int(piece["image_grid_thw"].shape[0]) for piece in item.vision)
            keys.append((tuple(item.input_ids[:length]), tuple(copies[offset : offset + count])))
            offset += count
        group_of_key: dict[tuple, int] = {}
        groups = [group_of_key.setdefault(key, len(group_of_key)) for key in keys]
        if len(group_of_key) == len(encoded):
            return None
        representatives = [groups.index(g) for g in range(len(group_of_key))]
        prompts = [
            dataclasses.replace(encoded[r], input_ids=encoded[r].input_ids[: prompt_lengths[r]])
            for r in representatives
        ]
        prompt_inputs = self._batch(prompts, padding_side="right", share_images=True)
        positions, _ = self._rope_index(prompt_inputs)
        prompt_output = self.model(
            **self._model_inputs(prompt_inputs), position_ids=positions, use_cache=True
        )

        device = self.device
        index = torch.tensor(groups, dtype=torch.long, device=device)
        completions = self._padded_ids(
            [
                dataclasses.replace(item, input_ids=item.input_ids[length:])
                for item, length in zip(encoded, prompt_lengths)
            ],
            "right",
        )
        completion_ids = completions["input_ids"].to(device)
        span = completion_ids.shape[1]
        # Completion tokens continue the text positions after the prompt's largest position
        # (what M-RoPE gives text after the prompt in one sequence).
        start = positions.amax(dim=(0, 2))[index] + 1
        completion_positions = (start[:, None] + torch.arange(span, device=device)).expand(3, -1, -1)
        cache = prompt_output.cache
        cache.batch_select_indices(index)
        attention_mask = torch.cat(
            [prompt_inputs["attention_mask"][index], completions["attention_mask"].to(device)], dim=1
        )
        completion_output = self.model(
            input_ids=completion_ids,
            attention_mask=attention_mask,
            position_ids=completion_positions,
            cache=cache,
            use_cache=True,
        )
        # Row r of `rows` predicts token c + 1 of conversation i: a prompt row of its group
        # up to its last prompt token, then its own completion rows.
        inputs = {key: value.to(device) for key, value in self._padded_ids(encoded, "right").items()}
        total = inputs["input_ids"].shape[1]
        prompt_span = prompt_inputs["input_ids"].shape[1]
        column = torch.arange(total - 1, device=device)[None, :]
        length = torch.tensor(prompt_lengths, device=device)[:, None]
        in_prompt = index[:, None] * prompt_span + column.clamp(max=prompt_span - 1)
        in_completion = len(representatives) * prompt_span + (
            torch.arange(len(encoded), device=device)[:, None] * span + (column - length).clamp(0, span - 1)
        )
        rows = torch.where(column < length, in_prompt, in_completion)
        vocabulary = prompt_output.logits.shape[-1]
        flat = torch.cat(
            [prompt_output.logits.reshape(-1, vocabulary), completion_output.logits.reshape(-1, vocabulary)]
        )
        return inputs, flat[rows.reshape(-1)].reshape(len(encoded), total - 1, vocabulary)

    def _training_is_random_or_checkpointed(self) -> bool:
        if not self.model.training:
            return False
        if getattr(self.model, "is_activation_checkpointing", False):
            return True
        text_config = self.model.config.get_text_config()
        if getattr(text_config, "attention_dropout", 0.0):
            return True
        return any(isinstance(m, torch.nn.Dropout) and m.p > 0 for m in self.model.modules())

    # ------------------------------------------------------------------ tokens, copies, saving
    def add_tokens(self, tokens: Sequence[str]) -> list[int]:
        """Add tokens to the vocabulary; new embedding rows start at the mean embedding."""
        tokens = list(tokens)
        if not tokens or not all(isinstance(t, str) and t for t in tokens):
            raise ValueError("add_tokens expects a non-empty list of non-empty strings")
        old_size = self.model.get_input_embeddings().weight.shape[0]
        old_vocabulary = len(self.tokenizer)
        self.tokenizer.add_tokens(tokens)
        new_size = max(len(self.tokenizer), old_size)
        if new_size > old_size:
            self.model.resize_token_embeddings(new_size, mean_resizing=False)
        ids = self.tokenizer.convert_tokens_to_ids(tokens)
        # Embedding matrices are often padded past the vocabulary, so a new token may land on
        # an existing (unused) row: initialise the rows of new ids, not only appended rows.
        new_ids = sorted({i for i in ids if i >= old_vocabulary})
        if new_ids:
            with torch.no_grad():
                for embedding in (self.model.get_input_embeddings(), self.model.get_output_embeddings()):
                    if embedding is None:
                        continue
                    weight = embedding.weight
                    weight[new_ids] = weight[:old_vocabulary].mean(dim=0, keepdim=True)
        return ids

    # Module names under which the supported families keep the vision encoder and its
    # projector into the language model (Qwen-VL: one `visual` module with its merger).
    VISION_MODULES = frozenset(
        {"visual", "vision_tower", "vision_model", "multi_modal_projector", "connector", "image_newline"}
    )

    def freeze_vision(self) -> list[torch.nn.Parameter]:
        """Stop training the vision encoder and projector; returns the tensors it froze (those
        that were trainable), so a caller can train them again afterwards.

        Only the language model (and LoRA adapters on it) then learns, and the update skips
        the encoder's backward pass.
        """
        vision = [
            parameter
            for name, parameter in self.model.named_parameters()
            if self.VISION_MODULES.intersection(name.split("."))
        ]
        if not vision:
            raise ValueError(
                f"{self.name}: no parameter under {sorted(self.VISION_MODULES)} to freeze "
                f"(model class {type(self.model).__name__})"
            )
        frozen = [parameter for parameter in vision if parameter.requires_grad]
        for parameter in frozen:
            parameter.requires_grad_(False)
        return frozen

    def reference(self) -> VLM:
        """A frozen reference policy: a copy, or with LoRA the same weights with adapters off."""
        if self.uses_lora:
            view = copy.copy(self)
            view._adapter_disabled = True
            return view
        frozen = VLM(copy.deepcopy(self.model), self.processor, self.family, name=f"{self.name} (reference)")
        frozen.model.eval()
        frozen.model.requires_grad_(False)
        return frozen

    def gradient_checkpointing(self, enabled: bool = True) -> None:
        # transformers 5.x renamed the switch (the old name warns and goes away in v6).
        modern = hasattr(self.model, "activation_checkpointing_enable")
        if enabled:
            if modern:
                self.model.activation_checkpointing_enable(
                    activation_checkpointing_kwargs={"use_reentrant": False}
                )
            else:
                self.model.gradient_checkpointing_enable(
                    gradient_checkpointing_kwargs={"use_reentrant": False}
                )
            if hasattr(self.model, "enable_input_require_grads"):
                self.model.enable_input_require_grads()
        elif modern:
            self.model.activation_checkpointing_disable()
        else:
            self.model.gradient_checkpointing_disable()

    def save(self, directory: str | Path, merge_lora: bool = True) -> Path:
        """Write safetensors weights, config and processor atomically to `directory`."""
        from vlmrl.runs import atomic_directory

        model = self.model
        if self.uses_lora and merge_lora:
            model = copy.deepcopy(self.model).merge_and_unload()
        with atomic_directory(directory) as temporary:
            model.save_pretrained(str(temporary), safe_serialization=True)
            self.processor.save_pretrained(str(temporary))
        return Path(directory)

    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.model.parameters())
