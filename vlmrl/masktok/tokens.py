"""Mask token strings and their total parser.

A mask is four tokens: `<|mt_start|><|mt_AAAA|><|mt_BBBB|><|mt_end|>`, AAAA the level-0
code in [0, 256) and BBBB the level-1 code offset by 256, in [256, 512) (so the two levels
never share a token: 512 code tokens + 2 delimiters, the released SAMTok vocabulary).

Model text is untrusted: `parse_masks` returns the list of (code0, code1) pairs or a
`FormatFailure` for anything else (an unknown id, one code only, the levels in the wrong
order, a missing end, text inside a mask), never raising.
"""

from __future__ import annotations

import re

from vlmrl.model.formats import FormatFailure

MASK_START = "<|mt_start|>"
MASK_END = "<|mt_end|>"
CODEBOOK_SIZE = 256
LEVELS = 2
NO_TARGET = "none"  # the answer to an expression that names no object in the image

_CODE = re.compile(r"<\|mt_(\d{4})\|>")
_ANY_MASK_TOKEN = re.compile(r"<\|mt_[^|]*\|>")


def code_token(index: int) -> str:
    return f"<|mt_{index:04d}|>"


def mask_vocabulary(codebook_size: int = CODEBOOK_SIZE, levels: int = LEVELS) -> list[str]:
    """The tokens to add to a VLM: delimiters, then every code of every level."""
    return [MASK_START, MASK_END] + [code_token(i) for i in range(codebook_size * levels)]


def mask_string(codes: tuple[int, ...] | list[int], codebook_size: int = CODEBOOK_SIZE) -> str:
    """'<|mt_start|><|mt_0012|><|mt_0300|><|mt_end|>' from codes (12, 44): level l adds l*K."""
    parts = []
    for level, code in enumerate(codes):
        code = int(code)
        if not 0 <= code < codebook_size:
            raise ValueError(f"level {level} code {code} is outside [0, {codebook_size})")
        parts.append(code_token(code + level * codebook_size))
    return MASK_START + "".join(parts) + MASK_END


def masks_answer(codes: list[tuple[int, ...]], codebook_size: int = CODEBOOK_SIZE) -> str:
    """The answer text for a referring expression: one mask string per object, or 'none'."""
    if not codes:
        return NO_TARGET
    return "".join(mask_string(c, codebook_size) for c in codes)


def parse_masks(
    text: object, codebook_size: int = CODEBOOK_SIZE, levels: int = LEVELS, allow_empty: bool = True
) -> list[tuple[int, ...]] | FormatFailure:
    """Every mask in `text` as a tuple of level codes (offsets removed), or why not.

    Text outside masks is allowed (an answer may say 'the cube is <mask>'); text inside a mask
    is not. With `allow_empty`, a text holding no mask token at all gives [] (no target).
    """
    if not isinstance(text, str):
        return FormatFailure(f"expected text, got {type(text).__name__}")
    masks: list[tuple[int, ...]] = []
    position = 0
    while True:
        start = text.find(MASK_START, position)
        stray = _ANY_MASK_TOKEN.search(text, position, len(text) if start < 0 else start)
        if stray is not None:
            return FormatFailure(f"mask token {stray.group()} outside <|mt_start|>...<|mt_end|>")
        if start < 0:
            break
        end = text.find(MASK_END, start + len(MASK_START))
        if end < 0:
            return FormatFailure("a mask has <|mt_start|> but no <|mt_end|>")
        inner = text[start + len(MASK_START) : end]
        parsed = _parse_codes(inner, codebook_size, levels)
        if isinstance(parsed, FormatFailure):
            return parsed
        masks.append(parsed)
        position = end + len(MASK_END)
    if not masks and not allow_empty:
        return FormatFailure("no mask tokens")
    return masks


def _parse_codes(inner: str, codebook_size: int, levels: int) -> tuple[int, ...] | FormatFailure:
    found = list(_CODE.finditer(inner))
    if "".join(m.group() for m in found) != inner:
        return FormatFailure(f"a mask holds something other than code tokens: {inner[:40]!r}")
    if len(found) != levels:
        return FormatFailure(f"a mask needs {levels} codes, got {len(found)}")
    codes = []
    for level, match in enumerate(found):
        identifier = int(match.group(1))
        low, high = level * codebook_size, (level + 1) * codebook_size
        if not low <= identifier < high:
            if 0 <= identifier < levels * codebook_size:
                return FormatFailure(f"code {identifier} belongs to another level than {level} (wrong order)")
            return FormatFailure(
                f"unknown mask code {identifier} (codes are 0..{levels * codebook_size - 1})"
            )
        codes.append(identifier - low)
    return tuple(codes)
