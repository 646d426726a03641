import json

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as coco_mask

from vlmrl.data_recipes import masks
from vlmrl.data_recipes.masks import CocoError, coco_document, decode_rle, encode_rle, read_coco, write_coco


def random_masks(rng, count=5, shape=(37, 53)):
    result = []
    for _ in range(count):
        m = rng.random(shape) < 0.3
        m[rng.integers(shape[0]) :, : rng.integers(shape[1])] = True  # some long runs too
        result.append(m)
    result.append(np.zeros(shape, dtype=bool))
    result.append(np.ones(shape, dtype=bool))
    return result


def test_rle_round_trip_through_our_encoder_and_pycocotools():
    for mask in random_masks(np.random.default_rng(0)):
        rle = encode_rle(mask)
        assert json.loads(json.dumps(rle)) == rle  # JSON-ready
        assert np.array_equal(decode_rle(rle), mask)
        theirs = coco_mask.decode({"size": rle["size"], "counts": rle["counts"].encode()})
        assert np.array_equal(theirs.astype(bool), mask)
        assert coco_mask.area({"size": rle["size"], "counts": rle["counts"].encode()}) == mask.sum()


def test_coco_file_round_trip(tmp_path):
    rng = np.random.default_rng(1)
    objects = [("cube", m) for m in random_masks(rng, 3)[:3]]
    document = coco_document([("a.png", 37, 53, objects)], ["cube", "cone"])
    path = write_coco(tmp_path / "annotations.json", document)
    images = read_coco(path)
    assert len(images) == 1 and len(images[0].objects) == 3
    for (_, expected), parsed in zip(objects, images[0].objects):
        assert parsed["category"] == "cube" and np.array_equal(parsed["mask"], expected)
    from pycocotools.coco import COCO

    api = COCO(str(path))
    for annotation, (_, expected) in zip(api.loadAnns(api.getAnnIds()), objects):
        assert np.array_equal(api.annToMask(annotation).astype(bool), expected)


def test_polygons_rasterise_and_convert_back():
    square = [[10.0, 10.0, 30.0, 10.0, 30.0, 20.0, 10.0, 20.0]]
    mask = masks.polygons_to_mask(square, 40, 50)
    assert mask[12:18, 12:28].all() and not mask[:8].any() and 150 <= mask.sum() <= 260
    back = masks.polygons_to_mask(masks.mask_to_polygons(mask), 40, 50)
    assert (back ^ mask).sum() <= 0.25 * mask.sum()  # polygons are lossy at the border


def test_bad_coco_input_raises_clear_errors(tmp_path):
    (tmp_path / "broken.json").write_text("{ images: [")
    with pytest.raises(CocoError, match="not valid JSON"):
        read_coco(tmp_path / "broken.json")
    with pytest.raises(CocoError, match="does not exist"):
        read_coco(tmp_path / "missing.json")
    (tmp_path / "shape.json").write_text('{"images": {}}')
    with pytest.raises(CocoError, match="'images' and 'annotations'"):
        read_coco(tmp_path / "shape.json")
    outside = {
        "images": [{"id": 1, "file_name": "a.png", "height": 20, "width": 20}],
        "annotations": [{"id": 7, "image_id": 1, "category_id": 1, "segmentation": [[0, 0, 25, 0, 25, 5]]}],
        "categories": [{"id": 1, "name": "thing"}],
    }
    (tmp_path / "outside.json").write_text(json.dumps(outside))
    with pytest.raises(CocoError, match="annotation 7 .*outside its 20x20 image"):
        read_coco(tmp_path / "outside.json")
    outside["annotations"][0]["segmentation"] = encode_rle(np.ones((30, 20), dtype=bool))
    (tmp_path / "outside.json").write_text(json.dumps(outside))
    with pytest.raises(CocoError, match="30x20 but its image is 20x20"):
        read_coco(tmp_path / "outside.json")


def test_export_shapes_to_coco_matches_rendered_masks(tmp_path):
    from vlmrl.data_recipes.shapes import record_rng, render_scene, sample_scene

    path = masks.export_shapes_coco(tmp_path / "coco", n=3, seed=5, resolution=64)
    images = read_coco(path)
    assert len(images) == 3
    for index, image in enumerate(images):
        scene = sample_scene(record_rng(5, index, stream=6))
        _, rendered, _ = render_scene(scene, 64)
        assert [o["category"] for o in image.objects] == [o.shape for o in scene.objects]
        for parsed, expected in zip(image.objects, rendered):
            assert np.array_equal(parsed["mask"], expected)
        assert Image.open(tmp_path / "coco" / image.file_name).size == (64, 64)


def test_masks_recipe_from_a_coco_file(tmp_path):
    from vlmrl.data_recipes.masks import MASKS_RECIPE, MasksConfig
    from vlmrl.data_recipes.recipe import RecipeError, build, load_recipe_dataset

    path = masks.export_shapes_coco(tmp_path / "coco", n=2, seed=0, resolution=48)
    config = MasksConfig(
        out=str(tmp_path / "out"), source="coco", coco=str(path), images=str(tmp_path / "coco")
    )
    manifest = build(MASKS_RECIPE, config)
    assert manifest["n"] == 2
    row = load_recipe_dataset(tmp_path / "out")[1]
    objects = json.loads(row["objects"])
    assert row["count"] == len(objects) == len(read_coco(path)[1].objects)
    with pytest.raises(RecipeError, match="not under"):
        build(
            MASKS_RECIPE,
            MasksConfig(out=str(tmp_path / "o2"), source="coco", coco=str(path), images=str(tmp_path)),
        )


def test_dedup_drops_near_duplicates_and_mines_hard_pairs(tmp_path):
    from vlmrl.data_recipes.dedup import color_histogram_embedder, deduplicate, embed, hard_pairs

    rng = np.random.default_rng(0)
    bases = [rng.uniform(0, 255, size=(6, 6, 3)).astype(np.uint8) for _ in range(4)]
    images = [Image.fromarray(b).resize((64, 64), Image.BICUBIC) for b in bases]
    near_copy = Image.fromarray(np.clip(np.asarray(images[1]).astype(int) + 2, 0, 255).astype(np.uint8))
    images.append(near_copy)  # index 4 duplicates index 1
    similar = np.asarray(images[2]).copy()
    similar[:16] = 255 - similar[:16]  # index 5: same picture with a strip changed
    images.append(Image.fromarray(similar))
    embeddings = embed(images, color_histogram_embedder)
    assert np.allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-5)
    kept, duplicate_of = deduplicate(embeddings, threshold=0.97)
    assert duplicate_of == {4: 1} and kept == [0, 1, 2, 3, 5]
    similarity = float(embeddings[2] @ embeddings[5])
    pairs = hard_pairs(embeddings, threshold=0.97, hard_low=similarity - 0.01)
    assert (2, 5) in {(i, j) for i, j, _ in pairs}
    assert all(s < 0.97 for _, _, s in pairs)


def test_dedup_recipe_on_a_folder(tmp_path):
    from vlmrl.data_recipes.dedup import DEDUP_RECIPE, DedupConfig, register_embedder
    from vlmrl.data_recipes.recipe import build, load_recipe_dataset

    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(2)
    for i in range(3):
        Image.fromarray(rng.uniform(0, 255, size=(6, 6, 3)).astype(np.uint8)).resize((40, 40)).save(
            folder / f"{i}.png"
        )
    (folder / "0_again.png").write_bytes((folder / "0.png").read_bytes())
    (folder / "junk.png").write_bytes(b"junk")
    manifest = build(DEDUP_RECIPE, DedupConfig(out=str(tmp_path / "out"), folder=str(folder)))
    assert manifest["kept"] == 3 and manifest["duplicates"] == 1 and manifest["skipped_count"] == 1
    assert sorted(load_recipe_dataset(tmp_path / "out")["file"]) == ["0.png", "1.png", "2.png"]
    # A pluggable embedder (the lead's VLM vision tower plugs in the same way).
    register_embedder("constant", lambda: lambda images: np.ones((len(images), 4)))
    manifest = build(
        DEDUP_RECIPE, DedupConfig(out=str(tmp_path / "o2"), folder=str(folder), embedder="constant")
    )
    assert manifest["kept"] == 1
