"""The shapes world: CLEVR-like scenes rendered with numpy and PIL, with verifiable QA.

A scene is a handful of objects (sphere, cube, cylinder, cone; 8 colours; 2 sizes; rubber or
metal) standing on a ground plane seen by a fixed camera. Rendering is analytic per shape
(silhouette + per-pixel normal), lit by one directional light with a specular highlight for
metal, soft blurred shadows on the ground, and painted far to near, so each object's visible
mask is exactly the pixels it owns in the final image (no anti-aliasing blurs ownership).

Everything a question asks about is read off the scene graph, so every answer is checkable.
Records are a pure function of (seed, index): `shapes_qa_records(n, seed)` can be sharded or
resumed anywhere without changing a single byte.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from itertools import combinations
from typing import Any

import numpy as np
from PIL import Image, ImageFilter

from vlmrl.config import option
from vlmrl.data_recipes.recipe import Recipe, RecipeConfig

SHAPES = ("sphere", "cube", "cylinder", "cone")
COLORS = ("gray", "red", "blue", "green", "brown", "purple", "cyan", "yellow")
SIZES = ("small", "large")
MATERIALS = ("rubber", "metal")
ATTRIBUTES = ("size", "color", "material", "shape")  # the order adjectives are spoken in
QUESTION_TYPES = (
    "count",
    "exist",
    "query_color",
    "query_shape",
    "query_material",
    "query_size",
    "compare_count",
    "relation",
)

COLOR_RGB = {
    "gray": (125, 125, 125),
    "red": (210, 40, 40),
    "blue": (40, 80, 220),
    "green": (40, 165, 65),
    "brown": (135, 85, 40),
    "purple": (140, 55, 190),
    "cyan": (40, 200, 210),
    "yellow": (240, 210, 35),
}
PLURAL = {"sphere": "spheres", "cube": "cubes", "cylinder": "cylinders", "cone": "cones", "object": "objects"}

# Light direction in camera space (right, up, toward the viewer): from the upper left.
LIGHT = np.array([-0.55, 0.65, 0.55]) / np.linalg.norm([-0.55, 0.65, 0.55])
HALF_VECTOR = (LIGHT + np.array([0.0, 0.0, 1.0])) / np.linalg.norm(LIGHT + np.array([0.0, 0.0, 1.0]))

# Geometry, in fractions of the image height. Objects shrink and rise with depth (perspective).
LARGE_RADIUS = 0.14
SMALL_RADIUS = 0.09
PERSPECTIVE = 0.3
X_RANGE = 0.8  # |x| bound keeping the largest object inside the frame
MIN_VISIBLE_FRACTION = 0.7  # occlusion limit: every object keeps most of itself visible
# Screen-space margins a relation question needs, so "left of" is never a judgement call.
RELATION_MARGIN_X = 0.06
RELATION_MARGIN_DEPTH = 0.15


@dataclass
class SceneObject:
    shape: str
    color: str
    size: str
    material: str
    x: float  # left (-1) to right (+1) on the ground plane
    depth: float  # front (0, near the camera) to back (1)

    def attribute(self, name: str) -> str:
        return getattr(self, name)


@dataclass
class Scene:
    objects: list[SceneObject] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"objects": [asdict(o) for o in self.objects]}

    @classmethod
    def from_dict(cls, value: dict[str, Any]) -> Scene:
        try:
            objects = [
                SceneObject(
                    shape=o["shape"],
                    color=o["color"],
                    size=o["size"],
                    material=o["material"],
                    x=float(o["x"]),
                    depth=float(o["depth"]),
                )
                for o in value["objects"]
            ]
        except (KeyError, TypeError) as error:
            raise ValueError(
                f"scene graph is missing {error}; expected objects with shape, color, size, material, x, depth"
            ) from error
        return cls(objects)


# --------------------------------------------------------------------------- geometry


def project(obj: SceneObject, height: int, width: int) -> tuple[float, float, float]:
    """Pixel position of the object's ground contact point and its radius in pixels."""
    scale = 1.0 - PERSPECTIVE * obj.depth
    contact_x = width / 2 + obj.x * width * 0.40 * scale
    contact_y = height * (0.86 - 0.5 * obj.depth)
    radius = height * (LARGE_RADIUS if obj.size == "large" else SMALL_RADIUS) * scale
    return contact_x, contact_y, radius


def _window(x0: float, y0: float, x1: float, y1: float, height: int, width: int):
    """Integer pixel window [row0,row1) x [col0,col1) covering a float box, clipped to the image."""
    col0, col1 = max(0, int(np.floor(x0))), min(width, int(np.ceil(x1)) + 1)
    row0, row1 = max(0, int(np.floor(y0))), min(height, int(np.ceil(y1)) + 1)
    return row0, row1, col0, col1


def _normalize(vectors: np.ndarray) -> np.ndarray:
    return vectors / np.maximum(np.linalg.norm(vectors, axis=-1, keepdims=True), 1e-9)


def _shade(
    base: np.ndarray, normals: np.ndarray, material: str, sheen: np.ndarray | None = None
) -> np.ndarray:
    """Per-pixel colour from unit normals [..., 3]: Lambert + Blinn-Phong; metal is glossier."""
    diffuse = np.clip(normals @ LIGHT, 0.0, 1.0)[..., None]
    specular = np.clip(normals @ HALF_VECTOR, 0.0, 1.0)[..., None]
    if material == "metal":
        # Metal: darker body, sky reflection on upward normals, a sharp white highlight.
        sky = np.clip(normals[..., 1:2], 0.0, 1.0)
        colour = base * (0.22 + 0.6 * diffuse) + 35.0 * sky + 255.0 * (specular**40) * 1.1
        colour = colour + 50.0 * specular**8
        if sheen is not None:
            # Tinted by the base colour so a shiny object keeps its hue at low resolution.
            colour = colour + sheen[..., None] * (40.0 + 0.5 * base)
    else:
        colour = base * (0.38 + 0.72 * diffuse) + 18.0 * specular**12
    return np.clip(colour, 0.0, 255.0)


def _draw_sphere(cx, cy, r, height, width, base, material, shading):
    row0, row1, col0, col1 = _window(cx - r, cy - r, cx + r, cy + r, height, width)
    ys = (np.arange(row0, row1) + 0.5 - cy) / r
    xs = (np.arange(col0, col1) + 0.5 - cx) / r
    u, v = np.meshgrid(xs, ys)
    inside = u * u + v * v <= 1.0
    colour = None
    if shading:
        w = np.sqrt(np.clip(1.0 - u * u - v * v, 0.0, 1.0))
        colour = _shade(base, np.stack([u, -v, w], axis=-1), material)
    return (row0, row1, col0, col1), inside, colour


def _draw_cube(cx, by, a, height, width, base, material, shading):
    """A cube seen slightly from above and the left: front face, top face, right face."""
    k = 0.55 * a  # receding edge length in the oblique projection
    left, right, top, bottom = cx - a, cx + a, by - 2 * a, by
    row0, row1, col0, col1 = _window(left, top - k, right + k, bottom, height, width)
    ys = np.arange(row0, row1) + 0.5
    xs = np.arange(col0, col1) + 0.5
    x, y = np.meshgrid(xs, ys)
    front = (x >= left) & (x <= right) & (y >= top) & (y <= bottom)
    t_top = (top - y) / k
    s_top = (x - left - t_top * k) / (2 * a)
    top_face = (t_top >= 0) & (t_top <= 1) & (s_top >= 0) & (s_top <= 1) & ~front
    s_side = (x - right) / k
    t_side = (bottom - y - s_side * k) / (2 * a)
    side_face = (s_side >= 0) & (s_side <= 1) & (t_side >= 0) & (t_side <= 1) & ~front & ~top_face
    inside = front | top_face | side_face
    colour = None
    if shading:
        normals = np.zeros(x.shape + (3,))
        normals[front] = (0.0, 0.0, 1.0)
        normals[top_face] = _normalize(np.array([0.0, 1.0, 0.25]))
        normals[side_face] = _normalize(np.array([1.0, 0.0, 0.35]))
        sheen = None
        if material == "metal":
            # A diagonal reflection streak: flat faces would otherwise look matte.
            diagonal = ((x - left) + (y - top)) / (2 * a)
            sheen = np.exp(-(((diagonal - 0.7) / 0.18) ** 2)) * front
        colour = _shade(base, normals, material, sheen)
        # Darken the side a little more so the three faces read as a box.
        colour[side_face] *= 0.8
    return (row0, row1, col0, col1), inside, colour


def _draw_cylinder(cx, by, rc, h, height, width, base, material, shading):
    ry = 0.32 * rc
    row0, row1, col0, col1 = _window(cx - rc, by - h - ry, cx + rc, by + ry, height, width)
    ys = np.arange(row0, row1) + 0.5
    xs = np.arange(col0, col1) + 0.5
    x, y = np.meshgrid(xs, ys)
    u = (x - cx) / rc
    top_cap = u * u + ((y - (by - h)) / ry) ** 2 <= 1.0
    body = (np.abs(u) <= 1.0) & (y >= by - h) & (y <= by)
    bottom_cap = u * u + ((y - by) / ry) ** 2 <= 1.0
    inside = top_cap | body | bottom_cap
    colour = None
    if shading:
        w = np.sqrt(np.clip(1.0 - u * u, 0.0, 1.0))
        normals = np.stack([u, np.zeros_like(u), w], axis=-1)
        normals[top_cap] = _normalize(np.array([0.0, 1.0, 0.3]))
        sheen = None
        if material == "metal":
            sheen = np.exp(-(((u + 0.15) / 0.12) ** 2)) * ~top_cap
        colour = _shade(base, normals, material, sheen)
    return (row0, row1, col0, col1), inside, colour


def _draw_cone(cx, by, rc, h, height, width, base, material, shading):
    ry = 0.32 * rc
    apex = by - h
    row0, row1, col0, col1 = _window(cx - rc, apex, cx + rc, by + ry, height, width)
    ys = np.arange(row0, row1) + 0.5
    xs = np.arange(col0, col1) + 0.5
    x, y = np.meshgrid(xs, ys)
    half_width = rc * np.clip((y - apex) / h, 0.0, None)
    body = (y >= apex) & (y <= by) & (np.abs(x - cx) <= half_width)
    base_cap = (((x - cx) / rc) ** 2 + ((y - by) / ry) ** 2 <= 1.0) & (y >= by)
    inside = body | base_cap
    colour = None
    if shading:
        u = np.clip((x - cx) / np.maximum(half_width, 1e-6), -1.0, 1.0)
        u = np.where(base_cap & ~body, (x - cx) / rc, u)
        w = np.sqrt(np.clip(1.0 - u * u, 0.0, 1.0))
        normals = _normalize(np.stack([u, np.full_like(u, 0.45), w], axis=-1))
        sheen = None
        if material == "metal":
            sheen = 0.5 * np.exp(-(((u + 0.2) / 0.15) ** 2)) * body
        colour = _shade(base, normals, material, sheen)
    return (row0, row1, col0, col1), inside, colour


def _draw(obj: SceneObject, height: int, width: int, shading: bool = True):
    """(window, silhouette mask in the window, colour [h, w, 3] or None) of one object."""
    cx, cy, r = project(obj, height, width)
    base = np.array(COLOR_RGB[obj.color], dtype=np.float64)
    if obj.shape == "sphere":
        return _draw_sphere(cx, cy - 0.95 * r, r, height, width, base, obj.material, shading)
    if obj.shape == "cube":
        a = 0.8 * r
        return _draw_cube(cx - 0.25 * a, cy + 0.2 * a, a, height, width, base, obj.material, shading)
    if obj.shape == "cylinder":
        return _draw_cylinder(cx, cy, 0.85 * r, 1.55 * r, height, width, base, obj.material, shading)
    if obj.shape == "cone":
        return _draw_cone(cx, cy, 0.95 * r, 2.1 * r, height, width, base, obj.material, shading)
    raise ValueError(f"unknown shape {obj.shape!r}; expected one of {SHAPES}")


def paint_order(scene: Scene) -> list[int]:
    """Object indices from far to near: later ones are painted over earlier ones."""
    return sorted(range(len(scene.objects)), key=lambda i: (-scene.objects[i].depth, i))


def _ownership(scene: Scene, height: int, width: int) -> tuple[np.ndarray, list[int]]:
    """Map of which object owns each pixel (-1: ground) and each object's full silhouette area."""
    owner = np.full((height, width), -1, dtype=np.int16)
    areas = [0] * len(scene.objects)
    for index in paint_order(scene):
        (row0, row1, col0, col1), inside, _ = _draw(scene.objects[index], height, width, shading=False)
        areas[index] = int(inside.sum())
        owner[row0:row1, col0:col1][inside] = index
    return owner, areas


def _background(height: int, width: int) -> np.ndarray:
    rows = np.linspace(0.0, 1.0, height)[:, None, None]
    columns = np.linspace(-1.0, 1.0, width)[None, :, None]
    far, near = np.array([150.0, 150.0, 155.0]), np.array([200.0, 197.0, 190.0])
    ground = far + (near - far) * rows
    # A light pool on the upper left, where the light comes from.
    ground = ground * (1.0 + 0.06 * np.exp(-((columns + 0.4) ** 2) * 2.0 - (rows - 0.3) ** 2 * 3.0))
    return np.broadcast_to(ground, (height, width, 3)).copy()


SHADOW_BLUR = 0.012  # Gaussian blur radius of shadows, as a fraction of the image height


def _shadow_ellipse(obj: SceneObject, height: int, width: int) -> np.ndarray:
    """The unblurred shadow footprint of one object (full-image boolean array)."""
    ys = np.arange(height)[:, None] + 0.5
    xs = np.arange(width)[None, :] + 0.5
    cx, cy, r = project(obj, height, width)
    stretch = 1.5 if obj.shape in ("cone", "cylinder") else 1.25
    ellipse = ((xs - (cx + 0.65 * r * stretch)) / (r * stretch)) ** 2 + (
        (ys - (cy - 0.12 * r)) / (0.42 * r)
    ) ** 2
    return ellipse <= 1.0


def _shadows(scene: Scene, height: int, width: int) -> np.ndarray:
    """Soft shadow strength in [0, 1] on the ground, cast away from the light (right and back)."""
    canvas = np.zeros((height, width), dtype=bool)
    for obj in scene.objects:
        canvas |= _shadow_ellipse(obj, height, width)
    blurred = Image.fromarray(canvas.astype(np.uint8) * 255).filter(
        ImageFilter.GaussianBlur(radius=max(1.0, SHADOW_BLUR * height))
    )
    return np.asarray(blurred, dtype=np.float64) / 255.0


def influence_region(obj: SceneObject, height: int, width: int) -> np.ndarray:
    """Every pixel whose value can depend on `obj`: its silhouette and its blurred shadow.

    Adding, removing or changing one object changes the image only inside this region (other
    objects are painted over it or revealed only where its silhouette is), which is what the
    pairs recipe records as the edit mask.
    """
    region = np.zeros((height, width), dtype=bool)
    (row0, row1, col0, col1), inside, _ = _draw(obj, height, width, shading=False)
    region[row0:row1, col0:col1] |= inside
    shadow = _shadow_ellipse(obj, height, width)
    reach = int(np.ceil(4 * max(1.0, SHADOW_BLUR * height))) + 2
    if shadow.any():
        import cv2

        kernel = np.ones((2 * reach + 1, 2 * reach + 1), dtype=np.uint8)
        shadow = cv2.dilate(shadow.astype(np.uint8), kernel).astype(bool)
    return region | shadow


def render_scene(
    scene: Scene, resolution: int | tuple[int, int] = 112
) -> tuple[Image.Image, list[np.ndarray], list[list[int]]]:
    """Render a scene.

    Returns the RGB image, one boolean mask per object (exactly its visible pixels: pixels of a
    nearer object painted over it are not in it) and per-object boxes [x0, y0, x1, y1] of the
    visible mask in pixels (x1, y1 exclusive). Objects hidden entirely get an empty mask and
    the box [0, 0, 0, 0].
    """
    height, width = (resolution, resolution) if isinstance(resolution, int) else resolution
    if height < 16 or width < 16:
        raise ValueError(f"resolution must be at least 16 pixels, got {resolution}")
    image = _background(height, width)
    image *= (1.0 - 0.45 * _shadows(scene, height, width))[..., None]
    owner = np.full((height, width), -1, dtype=np.int16)
    for index in paint_order(scene):
        (row0, row1, col0, col1), inside, colour = _draw(scene.objects[index], height, width)
        image[row0:row1, col0:col1][inside] = colour[inside]
        owner[row0:row1, col0:col1][inside] = index
    masks, boxes = [], []
    for index in range(len(scene.objects)):
        mask = owner == index
        masks.append(mask)
        boxes.append(mask_box(mask))
    picture = Image.fromarray(np.clip(image + 0.5, 0, 255).astype(np.uint8), "RGB")
    return picture, masks, boxes


def mask_box(mask: np.ndarray) -> list[int]:
    """[x0, y0, x1, y1] (exclusive ends) of a boolean mask's pixels; [0, 0, 0, 0] if empty."""
    rows = np.flatnonzero(mask.any(axis=1))
    columns = np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return [0, 0, 0, 0]
    return [int(columns[0]), int(rows[0]), int(columns[-1]) + 1, int(rows[-1]) + 1]


# --------------------------------------------------------------------------- sampling


def random_object(rng: np.random.Generator) -> SceneObject:
    return SceneObject(
        shape=SHAPES[rng.integers(len(SHAPES))],
        color=COLORS[rng.integers(len(COLORS))],
        size=SIZES[rng.integers(len(SIZES))],
        material=MATERIALS[rng.integers(len(MATERIALS))],
        x=0.0,
        depth=0.0,
    )


def place(scene: Scene, obj: SceneObject, rng: np.random.Generator, tries: int = 40) -> bool:
    """Put `obj` at a random free spot of the ground (in place); False if none was found."""
    reference = 96  # placement is checked on a small raster; geometry is resolution-free
    for _ in range(tries):
        obj.x = float(np.round(rng.uniform(-X_RANGE, X_RANGE), 4))
        obj.depth = float(np.round(rng.uniform(0.0, 1.0), 4))
        cx, cy, r = project(obj, reference, reference)
        clear = True
        for other in scene.objects:
            if other is obj:
                continue
            ox, oy, other_r = project(other, reference, reference)
            # Horizontal spacing matters more than vertical: objects are taller than deep.
            if ((cx - ox) / (r + other_r)) ** 2 + ((cy - oy) / (0.6 * (r + other_r))) ** 2 < 0.85**2:
                clear = False
                break
        if clear:
            return True
    return False


def visible_fractions(scene: Scene, reference: int = 96) -> list[float]:
    owner, areas = _ownership(scene, reference, reference)
    counts = np.bincount(owner.ravel() + 1, minlength=len(scene.objects) + 1)[1:]
    return [float(c) / max(a, 1) for c, a in zip(counts, areas)]


def sample_scene(rng: np.random.Generator, min_objects: int = 3, max_objects: int = 10) -> Scene:
    """A random scene whose objects all stay at least MIN_VISIBLE_FRACTION visible."""
    if not 1 <= min_objects <= max_objects:
        raise ValueError(f"need 1 <= min_objects <= max_objects, got {min_objects}, {max_objects}")
    if max_objects > 12:
        raise ValueError(f"max_objects is at most 12 (the ground fits no more visibly), got {max_objects}")
    while True:
        count = int(rng.integers(min_objects, max_objects + 1))
        scene = Scene()
        for _ in range(count):
            obj = random_object(rng)
            if not place(scene, obj, rng):
                break
            scene.objects.append(obj)
        if len(scene.objects) == count and min(visible_fractions(scene)) >= MIN_VISIBLE_FRACTION:
            return scene


# --------------------------------------------------------------------------- language


def _article(phrase: str) -> str:
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


def phrase(attributes: dict[str, str], plural: bool = False) -> str:
    """'large red metal cube' from {'size': 'large', 'color': 'red', ...}; noun 'object' if no shape."""
    words = [attributes[a] for a in ATTRIBUTES[:-1] if a in attributes]
    noun = attributes.get("shape", "object")
    words.append(PLURAL[noun] if plural else noun)
    return " ".join(words)


def describe(obj: SceneObject) -> str:
    return phrase({a: obj.attribute(a) for a in ATTRIBUTES})


def caption(scene: Scene) -> str:
    """'5 objects. From left to right: a large red metal sphere, ...'"""
    ordered = sorted(scene.objects, key=lambda o: o.x)
    count = len(ordered)
    noun = "object" if count == 1 else "objects"
    return f"{count} {noun}. From left to right: " + ", ".join(_article(describe(o)) for o in ordered) + "."


def matches(obj: SceneObject, attributes: dict[str, str]) -> bool:
    return all(obj.attribute(k) == v for k, v in attributes.items())


def count_matching(scene: Scene, attributes: dict[str, str]) -> int:
    return sum(matches(o, attributes) for o in scene.objects)


def _all_filters(max_attributes: int = 2) -> list[dict[str, str]]:
    values = {"shape": SHAPES, "color": COLORS, "size": SIZES, "material": MATERIALS}
    filters: list[dict[str, str]] = [{}]
    for width in range(1, max_attributes + 1):
        for names in combinations(ATTRIBUTES, width):
            combos: list[dict[str, str]] = [{}]
            for name in names:
                combos = [{**c, name: v} for c in combos for v in values[name]]
            filters.extend(combos)
    return filters


FILTERS = _all_filters(2)


def unique_description(
    scene: Scene, index: int, rng: np.random.Generator, exclude: str | None = None
) -> dict[str, str] | None:
    """The fewest attributes (never `exclude`) singling out object `index`, or None if it has a twin.

    Shapes are preferred as nouns ("the red cube" rather than "the red object").
    """
    obj = scene.objects[index]
    names = [a for a in ATTRIBUTES if a != exclude]
    for width in range(1, len(names) + 1):
        candidates = []
        for subset in combinations(names, width):
            attributes = {a: obj.attribute(a) for a in subset}
            if count_matching(scene, attributes) == 1:
                candidates.append(attributes)
        if candidates:
            with_shape = [c for c in candidates if "shape" in c]
            pool = with_shape or candidates
            return pool[int(rng.integers(len(pool)))]
    return None


def _choice(rng: np.random.Generator, items: list) -> Any:
    return items[int(rng.integers(len(items)))]


def count_question(scene: Scene, rng: np.random.Generator, target: int | None = None) -> dict | None:
    """'How many X are there?'; with `target`, only a question whose answer is target (or None)."""
    by_answer: dict[int, list[dict[str, str]]] = {}
    for attributes in FILTERS:
        by_answer.setdefault(count_matching(scene, attributes), []).append(attributes)
    if target is None:
        target = _choice(rng, sorted(by_answer))
    if target not in by_answer:
        return None
    attributes = _choice(rng, by_answer[target])
    return {"question": f"How many {phrase(attributes, plural=True)} are there?", "answer": str(target)}


def exist_question(scene: Scene, rng: np.random.Generator, target: bool | None = None) -> dict | None:
    target = bool(rng.integers(2)) if target is None else target
    pool = [f for f in FILTERS if f and (count_matching(scene, f) > 0) == target]
    if not pool:
        return None
    attributes = _choice(rng, pool)
    return {"question": f"Is there {_article(phrase(attributes))}?", "answer": "yes" if target else "no"}


QUERY_TEMPLATES = {
    "color": "What color is the {}?",
    "shape": "What shape is the {}?",
    "material": "What material is the {} made of?",
    "size": "What size is the {}?",
}


def query_question(scene: Scene, rng: np.random.Generator, attribute: str) -> dict | None:
    order = [int(i) for i in rng.permutation(len(scene.objects))]
    for index in order:
        attributes = unique_description(scene, index, rng, exclude=attribute)
        if attributes is not None:
            return {
                "question": QUERY_TEMPLATES[attribute].format(phrase(attributes)),
                "answer": scene.objects[index].attribute(attribute),
                "object_indices": [index],
            }
    return None


def compare_count_question(scene: Scene, rng: np.random.Generator, target: bool | None = None) -> dict | None:
    target = bool(rng.integers(2)) if target is None else target
    values = {"shape": SHAPES, "color": COLORS, "material": MATERIALS, "size": SIZES}
    candidates = []
    for name, domain in values.items():
        for first, second in combinations(domain, 2):
            a = count_matching(scene, {name: first})
            b = count_matching(scene, {name: second})
            if a == 0 and b == 0:
                continue
            for left, right, n_left, n_right in ((first, second, a, b), (second, first, b, a)):
                left_words = phrase({name: left}, plural=True)
                right_words = phrase({name: right}, plural=True)
                candidates.append((f"Are there more {left_words} than {right_words}?", n_left > n_right))
                candidates.append((f"Are there fewer {left_words} than {right_words}?", n_left < n_right))
                candidates.append(
                    (f"Are there the same number of {left_words} and {right_words}?", n_left == n_right)
                )
    pool = [question for question, answer in candidates if answer == target]
    if not pool:
        return None
    return {"question": _choice(rng, pool), "answer": "yes" if target else "no"}


RELATIONS = {
    "left": "to the left of",
    "right": "to the right of",
    "front": "in front of",
    "behind": "behind",
}


def relation_holds(first: SceneObject, second: SceneObject, relation: str) -> bool | None:
    """True/False when the relation is clear-cut; None when the two are too close to call."""
    if relation in ("left", "right"):
        gap = second.x - first.x if relation == "left" else first.x - second.x
        margin = RELATION_MARGIN_X / 0.4  # in ground units: RELATION_MARGIN_X of the image width
    else:
        gap = second.depth - first.depth if relation == "front" else first.depth - second.depth
        margin = RELATION_MARGIN_DEPTH
    if abs(gap) < margin:
        return None
    return gap > 0


def relation_question(scene: Scene, rng: np.random.Generator, target: bool | None = None) -> dict | None:
    target = bool(rng.integers(2)) if target is None else target
    count = len(scene.objects)
    pairs = [(i, j) for i in range(count) for j in range(count) if i != j]
    order = [int(k) for k in rng.permutation(len(pairs))]
    relations = list(RELATIONS)
    for k in order:
        i, j = pairs[k]
        relation = _choice(rng, relations)
        if relation_holds(scene.objects[i], scene.objects[j], relation) is not target:
            continue
        first = unique_description(scene, i, rng)
        second = unique_description(scene, j, rng)
        if first is None or second is None:
            continue
        return {
            "question": f"Is the {phrase(first)} {RELATIONS[relation]} the {phrase(second)}?",
            "answer": "yes" if target else "no",
            "object_indices": [i, j],
            "relation": relation,
        }
    return None


def question_of_type(
    scene: Scene, question_type: str, rng: np.random.Generator, **target: Any
) -> dict | None:
    """One question of the given type about the scene, or None if the scene cannot support it."""
    if question_type == "count":
        result = count_question(scene, rng, target.get("target"))
    elif question_type == "exist":
        result = exist_question(scene, rng, target.get("target"))
    elif question_type.startswith("query_"):
        attribute = question_type.removeprefix("query_")
        if attribute not in QUERY_TEMPLATES:
            raise ValueError(f"unknown question type {question_type!r}; expected one of {QUESTION_TYPES}")
        result = query_question(scene, rng, attribute)
    elif question_type == "compare_count":
        result = compare_count_question(scene, rng, target.get("target"))
    elif question_type == "relation":
        result = relation_question(scene, rng, target.get("target"))
    else:
        raise ValueError(f"unknown question type {question_type!r}; expected one of {QUESTION_TYPES}")
    if result is not None:
        result["question_type"] = question_type
    return result


def generate_questions(scene: Scene, rng: np.random.Generator) -> list[dict]:
    """One question of each type the scene supports (yes/no answers drawn 50/50)."""
    questions = []
    for question_type in QUESTION_TYPES:
        question = question_of_type(scene, question_type, rng)
        if question is not None:
            questions.append(question)
    return questions


# --------------------------------------------------------------------------- records


def record_rng(seed: int, index: int, stream: int = 0) -> np.random.Generator:
    """The random generator of record `index`: independent of every other record."""
    if seed < 0 or index < 0:
        raise ValueError(f"seed and index must be non-negative, got seed={seed}, index={index}")
    return np.random.default_rng([seed, index, stream])


def scene_graph(
    scene: Scene, boxes: list[list[int]], masks: list[np.ndarray] | None = None
) -> dict[str, Any]:
    """JSON-ready scene graph: attributes, ground position, visible box (and COCO RLE masks)."""
    objects = []
    for index, (obj, box) in enumerate(zip(scene.objects, boxes)):
        entry = {**asdict(obj), "box": box}
        if masks is not None:
            from vlmrl.data_recipes.masks import encode_rle

            entry["area"] = int(masks[index].sum())
            entry["rle"] = encode_rle(masks[index])
        objects.append(entry)
    return {"objects": objects}


def shapes_qa_record(
    index: int,
    seed: int,
    resolution: int = 112,
    min_objects: int = 3,
    max_objects: int = 10,
    masks: bool = False,
) -> dict[str, Any]:
    """Record `index` of the shapes QA stream; question types cycle so every type is equally common."""
    rng = record_rng(seed, index)
    question_type = QUESTION_TYPES[index % len(QUESTION_TYPES)]
    target: dict[str, Any] = {}
    lowest = min_objects
    if question_type == "count":
        # Balance count answers: draw the answer first, then find a scene that has it.
        target["target"] = int(rng.integers(0, max_objects + 1))
        lowest = max(min_objects, target["target"])
    elif question_type in ("exist", "compare_count", "relation"):
        target["target"] = bool(rng.integers(2))
    if question_type == "relation":
        lowest = max(lowest, 2)  # a relation needs a second object
        if max_objects < 2:
            raise ValueError(
                f"shapes QA with max_objects={max_objects}: relation questions need scenes of at least 2 objects"
            )
    for _ in range(200):
        scene = sample_scene(rng, lowest, max_objects)
        question = question_of_type(scene, question_type, rng, **target)
        if question is not None:
            break
    else:  # pragma: no cover - 200 scenes without one fitting question does not happen in practice
        raise RuntimeError(f"could not build a {question_type} question for record {index} (seed {seed})")
    image, object_masks, boxes = render_scene(scene, resolution)
    graph = scene_graph(scene, boxes, object_masks if masks else None)
    record = {
        "id": f"shapes-{seed}-{index}",
        "image": image,
        "question": question["question"],
        "answer": question["answer"],
        "question_type": question_type,
        "caption": caption(scene),
        "scene": json.dumps(graph, sort_keys=True),
    }
    return record


def shapes_qa_records(
    n: int, seed: int, resolution: int = 112, min_objects: int = 3, max_objects: int = 10, start: int = 0
) -> Iterator[dict[str, Any]]:
    """Records start..start+n-1 of the shapes QA stream (each a pure function of (seed, index)).

    Keys: id, image (PIL RGB), question, answer, question_type, caption, scene (JSON scene graph
    with per-object attributes, ground position and visible box).
    """
    for index in range(start, start + n):
        yield shapes_qa_record(index, seed, resolution, min_objects, max_objects)


# --------------------------------------------------------------------------- recipe


@dataclass
class ShapesConfig(RecipeConfig):
    """`vlmrl data shapes`: CLEVR-like scenes with scene graphs, COCO RLE masks, captions and QA."""

    out: str = option("data/shapes", help="Output directory.")
    resolution: int = option(112, help="Image side in pixels (tiny model 112-224; real models 448-1024).")
    min_objects: int = option(3, help="Fewest objects in a scene.")
    max_objects: int = option(10, help="Most objects in a scene (at most 12).")


def _shapes_recipe_record(index: int, config: ShapesConfig) -> dict[str, Any]:
    return shapes_qa_record(
        index, config.seed, config.resolution, config.min_objects, config.max_objects, masks=True
    )


def _shapes_features(config: ShapesConfig):
    from datasets import Features, Image, Value

    text = Value("string")
    return Features(
        {
            "id": text,
            "image": Image(),
            "question": text,
            "answer": text,
            "question_type": text,
            "caption": text,
            "scene": text,
        }
    )


def _shapes_tile(record: dict[str, Any]) -> tuple[Image.Image, str]:
    return record["image"], f"{record['question']} -> {record['answer']}"


SHAPES_RECIPE = Recipe(
    name="shapes",
    version="1",
    record=_shapes_recipe_record,
    features=_shapes_features,
    tile=_shapes_tile,
    count_columns=("question_type", "answer"),
)


# --------------------------------------------------------------------------- boxes

BOX_TEMPLATE = "Where is the {}? Give its bounding box as [x1, y1, x2, y2] in pixels."


def box_question(
    scene: Scene, boxes: list[list[int]], rng: np.random.Generator, min_area: int = 16
) -> dict | None:
    """'Where is the red cube? ...' with the answer the visible box "[x1, y1, x2, y2]" in pixels of
    the rendered image (as Qwen2.5-VL writes boxes: absolute coordinates). Only objects a
    description singles out and that show at least `min_area` pixels of box; None if none does."""
    order = [int(i) for i in rng.permutation(len(scene.objects))]
    for index in order:
        x0, y0, x1, y1 = boxes[index]
        if (x1 - x0) * (y1 - y0) < min_area:
            continue
        attributes = unique_description(scene, index, rng)
        if attributes is None:
            continue
        return {
            "question": BOX_TEMPLATE.format(phrase(attributes)),
            "answer": f"[{x0}, {y0}, {x1}, {y1}]",
            "box": [x0, y0, x1, y1],
            "object_indices": [index],
            "question_type": "box",
        }
    return None


def box_record(
    index: int, seed: int, resolution: int = 168, min_objects: int = 1, max_objects: int = 4
) -> dict[str, Any]:
    """Record `index` of the box stream: a scene, a named object and its visible box."""
    rng = record_rng(seed, index, stream=2)
    for _ in range(200):
        scene = sample_scene(rng, min_objects, max_objects)
        image, _, boxes = render_scene(scene, resolution)
        question = box_question(scene, boxes, rng)
        if question is not None:
            break
    else:  # pragma: no cover - a scene of 1-4 objects always singles one out in practice
        raise RuntimeError(f"could not build a box question for record {index} (seed {seed})")
    return {
        "id": f"shapes-box-{seed}-{index}",
        "image": image,
        "question": question["question"],
        "answer": question["answer"],
        "box": question["box"],
        "question_type": "box",
        "width": image.width,
        "height": image.height,
    }
