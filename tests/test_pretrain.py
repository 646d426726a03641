"""The tiny default's pretraining recipe: its pure parts, and a quick run that must learn."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vlmrl.data_recipes import shapes
from vlmrl.pretrain import (
    CELL_ATTRIBUTES,
    PretrainConfig,
    align_vision,
    anchor_token_ids,
    batch_for_step,
    cell_labels,
    parse_mixture,
    scene_bounds,
)

# The quick recipe's budget and its floors: parseable answers on held-out scenes, and the share
# of object cells whose visual token is nearest its colour's word (chance 1/9).
QUICK_STEPS = 120
QUICK_FORMAT_FLOOR = 0.98
QUICK_ALIGNED_COLOR_FLOOR = 0.25


def test_parse_mixture_normalises_and_rejects_unknown_skills():
    assert parse_mixture("qa=3,caption=1") == {"qa": 0.75, "caption": 0.25}
    with pytest.raises(ValueError, match="unknown skill 'dance'"):
        parse_mixture("qa=1,dance=1")
    with pytest.raises(ValueError, match="not a number"):
        parse_mixture("qa=lots")
    with pytest.raises(ValueError, match="no positive weight"):
        parse_mixture("qa=0")


def test_cell_labels_pick_the_object_covering_a_quarter_of_each_cell():
    scene = shapes.Scene(
        objects=[
            shapes.SceneObject("cube", "red", "large", "metal", 0.0, 0.5),
            shapes.SceneObject("sphere", "blue", "small", "rubber", 0.5, 0.2),
        ]
    )
    cube = np.zeros((8, 8), bool)
    cube[0:4, 0:4] = True  # fills cell (0, 0) of a 2x2 grid of 4-pixel cells
    sphere = np.zeros((8, 8), bool)
    sphere[4:8, 4:5] = True  # a quarter of cell (1, 1): exactly the threshold, still background
    sphere[0:2, 4:8] = True  # half of cell (0, 1)
    labels = cell_labels(scene, [cube, sphere], cell=4)
    colors = CELL_ATTRIBUTES["color"]
    assert [colors[i] for i in labels["color"]] == ["red", "blue", "none", "none"]
    assert [CELL_ATTRIBUTES["shape"][i] for i in labels["shape"]] == ["cube", "sphere", "none", "none"]
    assert [CELL_ATTRIBUTES["size"][i] for i in labels["size"]] == ["large", "small", "none", "none"]


def test_batches_are_a_pure_function_of_seed_and_step():
    config = PretrainConfig(batch_size=6)
    weights = parse_mixture(config.mixture)

    def texts(batch):
        def text(message):
            content = message["content"]
            return content if isinstance(content, str) else " ".join(p.get("text", "") for p in content)

        return [[text(m) for m in conversation] for conversation in batch]

    assert texts(batch_for_step(3, config, weights)) == texts(batch_for_step(3, config, weights))
    assert texts(batch_for_step(3, config, weights)) != texts(batch_for_step(4, config, weights))
    skills = {"qa", "caption", "clue", "vote", "zoom"}
    assert set(parse_mixture(config.mixture)) == skills


def test_every_skill_builds_a_conversation_the_tiny_model_can_score():
    from vlmrl.model.tiny import build_random_tiny
    from vlmrl.pretrain import BUILDERS

    vlm = build_random_tiny()
    config = PretrainConfig()
    rng = np.random.default_rng(0)
    conversations = [builder(rng, config) for builder in BUILDERS.values()]
    scores = vlm.score(conversations)
    # every conversation has assistant tokens to learn from
    assert bool(scores.action_mask.any(dim=1).all())
    zoom = conversations[list(BUILDERS).index("zoom")]
    assert [m["role"] for m in zoom] == ["user", "assistant", "tool", "assistant"]


def test_curriculum_grows_scenes_from_one_object_to_the_configured_range():
    config = PretrainConfig(min_objects=3, max_objects=10, curriculum_steps=90)
    assert scene_bounds(0, config) == (1, 1)
    assert scene_bounds(9, config) == (1, 2)  # 1 + 9 * 10 // 90
    assert scene_bounds(44, config) == (1, 5)
    assert scene_bounds(89, config) == (1, 10)
    assert scene_bounds(90, config) == (3, 10)
    assert scene_bounds(0, PretrainConfig(curriculum_steps=0)) == (3, 10)
    weights = parse_mixture("qa=1")
    early = batch_for_step(0, config, weights)
    # a one-object scene: the first question's image holds a single object, so any query is about it
    assert all(len(conversation) >= 2 for conversation in early)


def test_alignment_anchors_are_single_tokens_of_the_project_tokenizer():
    from vlmrl.model.tiny import tiny_processor

    tokenizer = tiny_processor().tokenizer
    ids = anchor_token_ids(tokenizer)
    assert set(ids) == set(CELL_ATTRIBUTES) | {"background"}
    assert len(ids["shape"]) == len(CELL_ATTRIBUTES["shape"]) - 1
    assert tokenizer.decode([int(ids["color"][1])]) == "red"
    assert tokenizer.decode([int(ids["background"][0])]) == " no"

    class Splitter:
        def encode(self, text, add_special_tokens=False):
            return list(range(len(text)))

    with pytest.raises(ValueError, match="'gray' to be one token"):
        anchor_token_ids(Splitter())


def test_sft_leaves_the_anchor_words_where_alignment_put_them():
    from vlmrl.model.tiny import build_random_tiny
    from vlmrl.pretrain import freeze_anchor_words
    from vlmrl.rl.sft import SFTSettings, train_sft

    vlm = build_random_tiny(seed=2)
    rows = torch.cat([v for v in anchor_token_ids(vlm.processor.tokenizer).values()])
    other = vlm.processor.tokenizer.encode(" cubes", add_special_tokens=False)[0]
    before = vlm.model.get_input_embeddings().weight.detach().clone()
    freeze_anchor_words(vlm)
    batch = [[{"role": "user", "content": "What color?"}, {"role": "assistant", "content": "red cubes"}]]
    settings = SFTSettings(steps=3, learning_rate=1e-2, warmup_steps=1, weight_decay=0.0, prefetch=False)
    train_sft(vlm, lambda step: batch, settings)
    after = vlm.model.get_input_embeddings().weight.detach()
    assert torch.equal(after[rows], before[rows])
    assert not torch.equal(after[other], before[other])  # the rest of the vocabulary still learns


@pytest.mark.slow
def test_quick_recipe_reaches_its_floor_on_small_scenes(tmp_path):
    """Two minutes of the whole recipe (alignment, SFT, held-out eval through the harness, model
    card) on scenes of one or two objects. The floors are what two minutes do reach: word-like
    visual tokens, the answer format, a falling SFT loss. Reading attributes off the image in
    QA takes longer than a test can run (see the tiny model card), so it has no floor here."""
    import json

    from vlmrl.pretrain import pretrain

    config = PretrainConfig(
        out=str(tmp_path / "run"),
        steps=QUICK_STEPS,
        batch_size=16,
        align_steps=100,
        warmup_steps=20,
        min_objects=1,
        max_objects=2,
        mixture="qa=1",
        questions_per_image=4,
        eval_questions=90,
        eval_every=0,
        seed=0,
        threads=2,
    )
    evaluation = pretrain(config)["eval"]
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    aligned = [r for r in records if "align/color_accuracy" in r]
    trained = [r for r in records if "loss" in r]
    assert evaluation["format"] >= QUICK_FORMAT_FLOOR, evaluation
    assert aligned[-1]["align/color_accuracy"] >= QUICK_ALIGNED_COLOR_FLOOR, aligned[-1]
    assert trained[-1]["loss"] < 0.2 * trained[0]["loss"], (trained[0], trained[-1])
    assert (tmp_path / "run" / "model" / "README.md").is_file()


@pytest.mark.slow
def test_quick_vision_alignment_reaches_its_accuracy_floor():
    """A minute of the alignment stage makes visual tokens word-like: each object cell's token
    is nearest to its colour's word embedding (measured on object cells only; chance is 1/9)."""
    from vlmrl.model.tiny import build_random_tiny

    vlm = build_random_tiny(seed=1)
    history = align_vision(vlm, PretrainConfig(align_steps=100, batch_size=16, seed=1))
    last = history[-10:]
    color = float(np.mean([h["align/color_accuracy"] for h in last]))
    first_loss = history[0]["align/loss"]
    last_loss = float(np.mean([h["align/loss"] for h in last]))
    # measured: loss 26.7 -> 0.82, colour 0.56 (shape is the slowest attribute: 0.26)
    assert last_loss < 0.1 * first_loss
    assert color >= 0.4, color
