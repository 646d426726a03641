"""Turning conversations into model inputs, and deciding which tokens are actions.

This is the single place where "which tokens did the model produce" is decided. A
conversation is rendered with the family's chat template, cut at assistant-turn boundaries
into context pieces and action pieces, and each piece is tokenized on its own:

- context pieces (system/user/tool text, images, the template's turn headers) go through
  the processor, which expands image markers into the family's image tokens;
- action pieces (an assistant turn's content and its end-of-turn token) use the exact
  sampled `token_ids` when the message carries them, else the tokenizer on the text.

Cutting at turn boundaries is safe because the boundaries are special tokens, which BPE
never merges across; `generate` builds its prompt with the same code, so prompt tokens seen
by the sampler and by `score` are identical.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from PIL import Image, UnidentifiedImageError

from vlmrl.model.families import Family

SUPPORTED_IMAGE_MODES = {"RGB", "RGBA", "L", "LA", "P", "PA", "1", "CMYK", "YCbCr", "I;16", "I", "F"}
# Modes converted through a value rescale rather than PIL's plain convert (which clips).
_WIDE_MODES = {"I;16", "I", "F"}


class ConversationError(ValueError):
    """A conversation does not have the shape the wrapper expects."""


def load_image(value: Any, where: str) -> Image.Image:
    """An RGB PIL image from a PIL image, a path or bytes, with errors naming `where`."""
    if isinstance(value, (str, Path)):
        path = Path(value)
        if not path.is_file():
            raise ConversationError(f"{where}: image file {path} does not exist")
        try:
            with Image.open(path) as opened:
                opened.load()
                image = opened.copy()
        except (UnidentifiedImageError, OSError, SyntaxError) as error:
            raise ConversationError(f"{where}: image file {path} cannot be decoded ({error})") from error
    elif isinstance(value, (bytes, bytearray)):
        try:
            with Image.open(io.BytesIO(value)) as opened:
                opened.load()
                image = opened.copy()
        except (UnidentifiedImageError, OSError, SyntaxError) as error:
            raise ConversationError(f"{where}: image bytes cannot be decoded ({error})") from error
    elif isinstance(value, Image.Image):
        image = value
    else:
        raise ConversationError(f"{where}: expected a PIL image, a path or bytes, got {type(value).__name__}")
    if image.mode not in SUPPORTED_IMAGE_MODES:
        raise ConversationError(
            f"{where}: image mode '{image.mode}' is not supported; expected one of {sorted(SUPPORTED_IMAGE_MODES)}"
        )
    if image.width < 1 or image.height < 1:
        raise ConversationError(f"{where}: image has an empty size {image.size}")
    if image.mode in _WIDE_MODES:
        import numpy as np

        array = np.asarray(image, dtype=np.float64)
        low, high = float(array.min()), float(array.max())
        scaled = (array - low) / (high - low) * 255 if high > low else np.zeros_like(array)
        image = Image.fromarray(scaled.astype("uint8"), mode="L")
    if image.mode != "RGB":
        image = (
            image.convert("RGBA").convert("RGB")
            if "A" in image.mode or image.mode == "P"
            else image.convert("RGB")
        )
    return image


def _normalise(conversation: Any, index: int) -> tuple[list[dict], list[Image.Image], list[list[int] | None]]:
    """Template-ready messages, the images in order, and each message's exact token ids."""
    if not isinstance(conversation, list) or not conversation:
        raise ConversationError(f"conversation {index}: expected a non-empty list of messages")
    messages, images, token_ids = [], [], []
    for position, message in enumerate(conversation):
        where = f"conversation {index}, message {position}"
        if not isinstance(message, dict) or "role" not in message:
            raise ConversationError(f"{where}: expected a dict with 'role' and 'content'")
        role, content = message["role"], message.get("content", "")
        if role not in ("system", "user", "assistant", "tool"):
            raise ConversationError(f"{where}: role '{role}' is not one of system/user/assistant/tool")
        if isinstance(content, str):
            parts = [{"type": "text", "text": content}]
        elif isinstance(content, list):
            parts = []
            for part_index, part in enumerate(content):
                part_where = f"{where}, part {part_index}"
                if not isinstance(part, dict):
                    raise ConversationError(f"{part_where}: expected a dict content part")
                kind = part.get("type", "image" if "image" in part else "text")
                if kind == "image":
                    if part.get("image") is None:
                        raise ConversationError(f"{part_where}: image placeholder without an image")
                    images.append(load_image(part["image"], part_where))
                    parts.append({"type": "image"})
                elif kind == "text":
                    text = part.get("text")
                    if not isinstance(text, str):
                        raise ConversationError(f"{part_where}: text part without a string 'text'")
                    parts.append({"type": "text", "text": text})
                else:
                    raise ConversationError(f"{part_where}: content type '{kind}' is not 'text' or 'image'")
        else:
            raise ConversationError(f"{where}: content must be a string or a list of parts")
        ids = message.get("token_ids")
        if ids is not None and (role != "assistant" or not all(isinstance(i, int) for i in ids)):
            raise ConversationError(f"{where}: token_ids are only for assistant messages and must be ints")
        if role == "assistant" and any(p["type"] == "image" for p in parts):
            raise ConversationError(f"{where}: assistant messages cannot contain images")
        messages.append({"role": role, "content": parts})
        token_ids.append(list(ids) if ids is not None else None)
    return messages, images, token_ids


@dataclass
class Encoded:
    """One conversation as token ids plus the per-image tensors of its images."""

    input_ids: list[int]
    action_mask: list[bool]
    turn_index: list[int]
    decision_positions: list[int]
    vision: list[dict[str, torch.Tensor]] = field(default_factory=list)


class ConversationEncoder:
    def __init__(self, processor: Any, family: Family):
        self.processor = processor
        self.family = family
        self.tokenizer = getattr(processor, "tokenizer", processor)
        self.end_of_turn_id = self.tokenizer.convert_tokens_to_ids(family.end_of_turn)
        if self.end_of_turn_id is None or self.end_of_turn_id == self.tokenizer.unk_token_id:
            raise ValueError(
                f"tokenizer has no end-of-turn token '{family.end_of_turn}' for family {family.name}"
            )

    def render(self, messages: list[dict], add_generation_prompt: bool) -> str:
        return self.processor.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=add_generation_prompt
        )

    def _context(
        self, text: str, images: list[Image.Image]
    ) -> tuple[list[int], dict[str, torch.Tensor] | None]:
        if not text:
            return [], None
        if not images:
            return self.tokenizer(text, add_special_tokens=False)["input_ids"], None
        output = self.processor(text=[text], images=images, return_tensors="pt", add_special_tokens=False)
        ids = output["input_ids"][0].tolist()
        skip = {"input_ids", "attention_mask", "mm_token_type_ids", "token_type_ids"}
        return ids, {k: v for k, v in output.items() if k not in skip and isinstance(v, torch.Tensor)}

    def encode(self, conversation: list[dict], index: int, add_generation_prompt: bool) -> Encoded:
        messages, images, exact_ids = _normalise(conversation, index)
        marker = self.family.image_marker
        full = self.render(messages, add_generation_prompt)
        # (text, is_action, exact ids, turn) pieces in order
        pieces: list[tuple[str, bool, list[int] | None, int]] = []
        cursor, turn = 0, 0
        for position, message in enumerate(messages):
            if message["role"] != "assistant":
                continue
            before = self.render(messages[:position], add_generation_prompt=True)
            through = self.render(messages[: position + 1], add_generation_prompt=False)
            if not (full.startswith(through) and through.startswith(before) and len(before) >= cursor):
                raise ConversationError(
                    f"conversation {index}: the chat template does not render turns as a growing prefix, "
                    "so assistant tokens cannot be located"
                )
            turn_text = through[len(before) :]
            end = turn_text.rfind(self.family.end_of_turn)
            cut = end + len(self.family.end_of_turn) if end >= 0 else len(turn_text)
            pieces.append((full[cursor : len(before)], False, None, -1))
            pieces.append((turn_text[:cut], True, exact_ids[position], turn))
            cursor = len(before) + cut
            turn += 1
        pieces.append((full[cursor:], False, None, -1))

        encoded = Encoded([], [], [], [])
        remaining_images = list(images)
        for text, is_action, ids, turn_number in pieces:
            if not is_action:
                count = text.count(marker)
                piece_images, remaining_images = remaining_images[:count], remaining_images[count:]
                if len(piece_images) != count:
                    raise ConversationError(f"conversation {index}: more image markers than images")
                piece_ids, vision = self._context(text, piece_images)
                if vision:
                    encoded.vision.append(vision)
                encoded.input_ids += piece_ids
                encoded.action_mask += [False] * len(piece_ids)
                encoded.turn_index += [-1] * len(piece_ids)
                continue
            encoded.decision_positions.append(len(encoded.input_ids) - 1)
            trailing: list[int] = []
            if ids is None:
                ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
            elif not ids or ids[-1] != self.end_of_turn_id:
                # A completion cut by max_new_tokens never produced the end-of-turn token; the
                # template still closes the turn, but that token is context, not an action.
                trailing = [self.end_of_turn_id]
            encoded.input_ids += list(ids) + trailing
            encoded.action_mask += [True] * len(ids) + [False] * len(trailing)
            encoded.turn_index += [turn_number] * len(ids) + [-1] * len(trailing)
        if remaining_images:
            raise ConversationError(
                f"conversation {index}: {len(remaining_images)} image(s) have no marker in the rendered template"
            )
        return encoded


def pad_right(tensors: list[torch.Tensor], dims: tuple[int, ...]) -> list[torch.Tensor]:
    """Zero-pad each tensor on the given dimensions to the largest size among them."""
    target = [max(t.shape[d] for t in tensors) for d in dims]
    padded = []
    for tensor in tensors:
        padding: list[int] = []
        for d in reversed(range(tensor.dim())):
            extra = target[dims.index(d)] - tensor.shape[d] if d in dims else 0
            padding += [0, extra]
        padded.append(torch.nn.functional.pad(tensor, padding) if any(padding) else tensor)
    return padded


def collate_vision(pieces: list[dict[str, torch.Tensor]], family: Family) -> dict[str, torch.Tensor]:
    """Join the per-image tensors of all pieces of a batch, in token order."""
    if not pieces:
        return {}
    joined: dict[str, torch.Tensor] = {}
    for key in pieces[0]:
        tensors = [piece[key] for piece in pieces if key in piece]
        if family.images_dimension == 1 and tensors[0].dim() >= 3:
            tensors = pad_right(tensors, tuple(range(2, tensors[0].dim())))
            joined[key] = torch.cat(tensors, dim=1)
        else:
            tensors = pad_right(tensors, tuple(range(1, tensors[0].dim())))
            joined[key] = torch.cat(tensors, dim=0)
    return joined
