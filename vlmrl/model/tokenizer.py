"""The project's offline tokenizer: a byte-level BPE with Qwen's special tokens.

Model hubs are unreachable, so the tiny default cannot borrow Qwen's tokenizer. We train a
small byte-level BPE (HF `tokenizers`) on a corpus generated here from the vocabulary of the
suite's worlds and formats, add Qwen's special tokens, and give it a Qwen-style chat template
(system/user/assistant/tool turns, image placeholders). Byte-level means any text, including
text the corpus never saw, still tokenizes: unknown words just cost more tokens.
"""

from __future__ import annotations

import itertools
import random
from pathlib import Path

# Qwen2.5-VL's special tokens, in its order, so ids and names line up with real checkpoints'
# conventions (<|endoftext|> pads, <|im_end|> ends a turn, <|image_pad|> is the image token).
SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
]
# Format tags the methods parse. Single tokens make the formats cheap for a tiny model to
# learn; they are ordinary (non-special) tokens so decoding keeps them in the text.
FORMAT_TOKENS = ["<think>", "</think>", "<answer>", "</answer>", "<tool_call>", "</tool_call>"]

# Qwen2's pre-tokenisation split: contractions, letters, single digits, punctuation runs,
# newlines and spaces. Single digits keep numbers compositional for counting and charts.
SPLIT_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' or 'image' in part %}{{ '<|vision_start|><|image_pad|><|vision_end|>' }}"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}"
    "{{ '<|im_end|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

_COLOURS = "gray red blue green brown purple cyan yellow orange pink black white".split()
_SHAPES = "sphere cube cylinder cone ball block object objects thing things".split()
_WORDS = (
    "the a an is are there how many what which of to in on at left right front behind above below "
    "same different color colour shape material size small large big tiny metal rubber shiny matte "
    "yes no and or than more fewer less number count exist exists any other than visible image "
    "picture scene chart bar line pie scatter value values maximum minimum max min difference trend "
    "increase increasing decrease decreasing stable label labels category year month total sum "
    "average highest lowest largest smallest between from find look zoom region target where "
    "player players spy civilian clue vote describe description my your his her its their one "
    "two three four five six seven eight nine ten you are i think because so answer question "
    "move go up down turn forward back pick place open door card cards sum equals target reach "
    "goal step action observation reward done mask segment it this that with has have it's "
    "name arguments bbox image_id crop original not sure maybe probably must only all each "
    "first second third last next previous round game says said see sees can cannot"
).split()


def training_corpus(seed: int = 0, sentences: int = 20000) -> list[str]:
    """A deterministic corpus covering the words, numbers and formats the suite uses."""
    rng = random.Random(seed)
    vocabulary = _COLOURS + _SHAPES + _WORDS
    corpus = [" ".join(vocabulary), " ".join(w.capitalize() for w in vocabulary)]
    corpus += [str(number) for number in range(0, 1001)]
    for _ in range(sentences):
        length = rng.randint(3, 14)
        words = [rng.choice(vocabulary) for _ in range(length)]
        if rng.random() < 0.3:
            words.insert(rng.randrange(len(words) + 1), str(rng.randint(0, 999)))
        sentence = " ".join(words)
        if rng.random() < 0.5:
            sentence = sentence.capitalize() + rng.choice(["?", ".", "!", ":", ","])
        if rng.random() < 0.15:
            box = [rng.randint(0, 999) for _ in range(4)]
            sentence += ' {"name": "zoom", "arguments": {"bbox": [' + ", ".join(map(str, box)) + "]}}"
        corpus.append(sentence)
    for colour, shape in itertools.product(_COLOURS, _SHAPES):
        corpus.append(f"a {colour} {shape}. The {colour} {shape}s.")
    return corpus


def train_tokenizer(vocab_size: int = 2048, seed: int = 0):
    """Train the byte-level BPE and wrap it as a transformers fast tokenizer."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(SPLIT_PATTERN), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size - len(SPECIAL_TOKENS) - len(FORMAT_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=[],
        show_progress=False,
    )
    tokenizer.train_from_iterator(training_corpus(seed), trainer=trainer)
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        clean_up_tokenization_spaces=False,
        model_max_length=4096,
    )
    wrapped.add_special_tokens({"additional_special_tokens": SPECIAL_TOKENS[1:]})
    wrapped.add_tokens(FORMAT_TOKENS)
    wrapped.chat_template = CHAT_TEMPLATE
    return wrapped


def build_tiny_processor(tokenizer, image_size: int = 112):
    """A Qwen2.5-VL processor around our tokenizer, with pixel limits sized for the tiny model.

    `image_size` is the side of the square image budget: images are resized (aspect kept) to
    at most image_size^2 pixels in 28-pixel units, i.e. at most (image_size/28)^2 visual tokens.
    """
    from transformers import Qwen2_5_VLProcessor, Qwen2VLImageProcessor, Qwen2VLVideoProcessor

    image_processor = Qwen2VLImageProcessor(
        min_pixels=28 * 28 * 4,
        max_pixels=image_size * image_size,
        patch_size=14,
        merge_size=2,
        temporal_patch_size=2,
    )
    return Qwen2_5_VLProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        video_processor=Qwen2VLVideoProcessor(),
        chat_template=CHAT_TEMPLATE,
    )


def save_tokenizer(tokenizer, directory: str | Path) -> None:
    tokenizer.save_pretrained(str(directory))
