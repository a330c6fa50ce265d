"""Frames of a scene: a procedural indoor/outdoor background, the visible instruments at
left/middle/right, and a visible cue on each instrument in every second it sounds.

Frame ``k`` (file ``{k+1:06d}.jpg``) shows second ``[k, k+1)``. The cue: a warm glow around the
instrument's silhouette and a small upward hop that alternates between frames; instruments
that are silent in that second only sway by at most one pixel.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from .assets import load_image

GLOW_RGB = (255, 226, 80)


# --------------------------------------------------------------------------------------------
# backgrounds


def _c(rng: np.random.Generator, base: tuple[int, int, int], spread: int = 25) -> tuple[int, ...]:
    return tuple(int(np.clip(v + rng.integers(-spread, spread + 1), 0, 255)) for v in base)


def _vgradient(
    size: int, top: tuple, bottom: tuple, y0: int = 0, y1: int | None = None
) -> np.ndarray:
    y1 = size if y1 is None else y1
    t = np.linspace(0.0, 1.0, max(1, y1 - y0))[:, None, None]
    band = (1 - t) * np.array(top, float) + t * np.array(bottom, float)
    return np.broadcast_to(band, (y1 - y0, size, 3))


def _indoor(rng: np.random.Generator, s: int) -> Image.Image:
    wall = _c(rng, [(200, 190, 170), (170, 185, 200), (190, 170, 175), (120, 110, 130),
                    (90, 80, 70), (210, 205, 190)][int(rng.integers(6))], 20)  # fmt: skip
    horizon = int(s * rng.uniform(0.55, 0.7))
    arr = np.empty((s, s, 3), float)
    arr[:horizon] = _vgradient(s, wall, tuple(0.75 * np.array(wall)), 0, horizon)
    floor = [(150, 100, 60), (110, 70, 40), (170, 130, 90), (90, 90, 100), (130, 30, 40)]
    fc = _c(rng, floor[int(rng.integers(len(floor)))], 15)
    arr[horizon:] = _vgradient(s, tuple(0.8 * np.array(fc)), fc, horizon, s)
    im = Image.fromarray(arr.astype(np.uint8))
    d = ImageDraw.Draw(im)
    deco = int(rng.integers(4))
    dark = tuple(int(0.85 * v) for v in wall)
    if deco == 0:  # wallpaper stripes
        step = int(rng.integers(8, 20))
        for x in range(int(rng.integers(step)), s, step):
            d.line([(x, 0), (x, horizon)], fill=dark, width=max(1, step // 4))
    elif deco == 1:  # panels
        for x in range(4, s - 20, s // 4):
            d.rectangle(
                [x + 4, int(horizon * 0.15), x + s // 4 - 6, horizon - 10], outline=dark, width=2
            )
    elif deco == 2:  # window with a view
        x0, y0 = int(rng.uniform(0.1, 0.6) * s), int(rng.uniform(0.05, 0.2) * s)
        w, h = int(s * rng.uniform(0.2, 0.3)), int(horizon * rng.uniform(0.3, 0.45))
        d.rectangle(
            [x0, y0, x0 + w, y0 + h],
            fill=_c(rng, (160, 200, 235)),
            outline=(240, 240, 240),
            width=3,
        )
        d.line([(x0 + w // 2, y0), (x0 + w // 2, y0 + h)], fill=(240, 240, 240), width=2)
        d.line([(x0, y0 + h // 2), (x0 + w, y0 + h // 2)], fill=(240, 240, 240), width=2)
    for _ in range(int(rng.integers(0, 3))):  # picture frames
        x0, y0 = int(rng.uniform(0.02, 0.85) * s), int(rng.uniform(0.05, 0.3) * s)
        w, h = int(rng.uniform(0.08, 0.14) * s), int(rng.uniform(0.08, 0.14) * s)
        d.rectangle(
            [x0, y0, x0 + w, y0 + h],
            fill=_c(rng, (120, 140, 120), 80),
            outline=(60, 40, 20),
            width=2,
        )
    if rng.random() < 0.5:  # floor boards / carpet edge
        for y in range(horizon + 6, s, int(rng.integers(7, 14))):
            d.line([(0, y), (s, y)], fill=tuple(int(0.85 * v) for v in fc), width=1)
    if rng.random() < 0.4:  # stage curtains
        cc = _c(rng, (150, 20, 30), 20)
        w = int(s * rng.uniform(0.08, 0.14))
        for x0, x1 in ((0, w), (s - w, s)):
            d.rectangle([x0, 0, x1, horizon + 10], fill=cc)
            for x in range(x0 + 3, x1, 6):
                d.line([(x, 0), (x, horizon + 10)], fill=tuple(int(0.7 * v) for v in cc), width=2)
        d.rectangle([0, 0, s, int(s * 0.06)], fill=cc)
    if rng.random() < 0.5:  # a spotlight on the floor
        light = Image.new("L", (s, s), 0)
        cx = int(rng.uniform(0.3, 0.7) * s)
        ImageDraw.Draw(light).ellipse([cx - s // 3, horizon - 5, cx + s // 3, s - 5], fill=90)
        light = light.filter(ImageFilter.GaussianBlur(s / 20))
        im = Image.composite(Image.new("RGB", (s, s), (255, 245, 210)), im, light)
    return im


def _outdoor(rng: np.random.Generator, s: int) -> Image.Image:
    sky = int(rng.integers(3))
    top, low = [((70, 130, 220), (170, 210, 245)), ((90, 60, 140), (250, 170, 110)),
                ((140, 150, 160), (200, 205, 210))][sky]  # fmt: skip
    horizon = int(s * rng.uniform(0.5, 0.65))
    arr = np.empty((s, s, 3), float)
    arr[:horizon] = _vgradient(s, _c(rng, top, 15), _c(rng, low, 15), 0, horizon)
    ground = [(80, 150, 60), (110, 160, 70), (150, 140, 110), (120, 120, 125)][int(rng.integers(4))]
    g = _c(rng, ground, 15)
    arr[horizon:] = _vgradient(s, tuple(0.8 * np.array(g)), g, horizon, s)
    im = Image.fromarray(arr.astype(np.uint8))
    d = ImageDraw.Draw(im)
    if sky != 2 and rng.random() < 0.6:  # sun
        cx, cy, r = (
            rng.uniform(0.1, 0.9) * s,
            rng.uniform(0.08, 0.3) * s,
            rng.uniform(0.04, 0.07) * s,
        )
        d.ellipse(
            [cx - r, cy - r, cx + r, cy + r], fill=(255, 240, 170) if sky == 0 else (255, 200, 120)
        )
    for _ in range(int(rng.integers(1, 5))):  # clouds
        cx, cy = rng.uniform(0, 1) * s, rng.uniform(0.05, 0.35) * s
        col = (250, 250, 250) if sky != 2 else (225, 225, 230)
        for _ in range(4):
            dx, dy, r = (
                rng.uniform(-0.07, 0.07) * s,
                rng.uniform(-0.02, 0.02) * s,
                rng.uniform(0.03, 0.06) * s,
            )
            d.ellipse([cx + dx - r * 1.6, cy + dy - r, cx + dx + r * 1.6, cy + dy + r], fill=col)
    hills = [(0, horizon)]
    for x in np.linspace(0, s, int(rng.integers(4, 8))):
        hills.append((float(x), horizon - rng.uniform(0.02, 0.15) * s))
    hills.append((s, horizon))
    d.polygon(hills, fill=_c(rng, (90, 130, 110) if sky != 1 else (110, 80, 110), 20))
    for _ in range(int(rng.integers(0, 5))):  # trees
        x = rng.uniform(0.0, 1.0) * s
        base = horizon + rng.uniform(-0.02, 0.06) * s
        h = rng.uniform(0.18, 0.32) * s
        d.rectangle([x - 0.012 * s, base - h * 0.5, x + 0.012 * s, base], fill=(100, 70, 40))
        green = _c(rng, (40, 110, 50), 25)
        for _ in range(3):
            r = rng.uniform(0.05, 0.08) * s
            cx, cy = x + rng.uniform(-0.03, 0.03) * s, base - h * rng.uniform(0.6, 0.9)
            d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=green)
    if ground[1] > 140:  # grass strokes
        dark = tuple(int(0.8 * v) for v in g)
        for _ in range(60):
            x, y = rng.uniform(0, s), rng.uniform(horizon + 2, s)
            d.line([(x, y), (x + rng.uniform(-2, 2), y - rng.uniform(2, 5))], fill=dark, width=1)
    elif rng.random() < 0.6:  # paving
        for y in range(horizon + 8, s, 12):
            d.line([(0, y), (s, y)], fill=tuple(int(0.85 * v) for v in g), width=1)
    return im


def draw_background(background: dict[str, Any], size: int) -> Image.Image:
    """The scene's background (RGB, ``size`` x ``size``), drawn from its own seed."""
    rng = np.random.default_rng(background["seed"])
    im = _indoor(rng, size) if background["kind"] == "indoor" else _outdoor(rng, size)
    grain = rng.normal(0.0, 3.0, (size, size, 1))  # sensor noise, same in every frame
    return Image.fromarray(np.clip(np.asarray(im, float) + grain, 0, 255).astype(np.uint8))


# --------------------------------------------------------------------------------------------
# instruments


def _sprite(inst: dict[str, Any], size: int) -> tuple[Image.Image, Image.Image, int]:
    """(sprite RGBA, glow RGBA of the same size plus padding, padding) for one instrument."""
    im = load_image(inst["image"])
    if inst["flip"]:
        im = im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    target = max(8, int(round(inst["size"] * size)))
    scale = target / max(im.size)
    im = im.resize(
        (max(1, round(im.width * scale)), max(1, round(im.height * scale))), Image.BILINEAR
    )
    pad = max(4, size // 28)
    alpha = Image.new("L", (im.width + 2 * pad, im.height + 2 * pad), 0)
    alpha.paste(im.getchannel("A"), (pad, pad))
    halo = alpha.filter(ImageFilter.GaussianBlur(pad / 2)).point(lambda a: min(255, int(a * 2.5)))
    glow = Image.new("RGBA", alpha.size, GLOW_RGB + (0,))
    glow.putalpha(halo)
    return im, glow, pad


def instrument_boxes(scene: dict[str, Any], size: int) -> dict[int, tuple[int, int, int, int]]:
    """Resting bounding box ``(x0, y0, x1, y1)`` of each visible instrument, in pixels."""
    boxes = {}
    for inst in scene["instruments"]:
        if inst["visible"]:
            im, _, _ = _sprite(inst, size)
            x0 = int(round(inst["x"] * size - im.width / 2))
            y0 = int(round(inst["y"] * size - im.height))
            boxes[inst["id"]] = (x0, y0, x0 + im.width, y0 + im.height)
    return boxes


def render_frames(scene: dict[str, Any], size: int, cue: bool = True) -> list[Image.Image]:
    """One RGB frame per second. ``cue=False`` draws the same frames without any glow or hop
    (used by the tests to show that the cue is visible)."""
    seconds = int(scene["seconds"])
    bg = draw_background(scene["background"], size)
    rng = np.random.default_rng(scene["frame_seed"])
    visible = [i for i in scene["instruments"] if i["visible"]]
    sway = rng.integers(-1, 2, size=(len(visible), seconds, 2))  # drawn whatever ``cue`` is
    sprites = [_sprite(inst, size) for inst in visible]
    hop = max(2, size // 50)
    frames = []
    for k in range(seconds):
        frame = bg.copy()
        for j, (inst, (im, glow, pad)) in enumerate(zip(visible, sprites, strict=True)):
            x0 = int(round(inst["x"] * size - im.width / 2)) + int(sway[j, k, 0])
            y0 = int(round(inst["y"] * size - im.height)) + int(sway[j, k, 1])
            if cue and inst["sounding"] and k in inst["active_seconds"]:
                y0 -= hop * (1 + (k % 2))
                frame.paste(glow, (x0 - pad, y0 - pad), glow)
            frame.paste(im, (x0, y0), im)
        frames.append(frame)
    return frames
