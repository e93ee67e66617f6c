"""Pictures with numpy alone: a PNG writer, image grids and 2-D scatter plots."""
import struct
import zlib
from pathlib import Path

import numpy as np


def write_png(path, image):
    """Write a uint8 image (H, W) grey or (H, W, 3) RGB as a PNG file."""
    img = np.ascontiguousarray(image)
    if img.dtype != np.uint8 or img.ndim not in (2, 3) or (img.ndim == 3 and img.shape[2] != 3):
        raise ValueError(f"write_png needs uint8 (H, W) or (H, W, 3), got {img.dtype} {img.shape}")
    h, w = img.shape[:2]
    color = 0 if img.ndim == 2 else 2
    rows = img.reshape(h, -1)
    raw = b"".join(b"\x00" + rows[i].tobytes() for i in range(h))

    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, color, 0, 0, 0)) \
        + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b"")
    Path(path).write_bytes(png)


def image_grid(images, ncols=None, pad=2):
    """(N, C, H, W) floats in [-1, 1] (C = 1 or 3) -> one uint8 picture, ``ncols`` per row."""
    x = np.asarray(images, dtype=np.float64)
    n, c, h, w = x.shape
    ncols = ncols or int(np.ceil(np.sqrt(n)))
    nrows = int(np.ceil(n / ncols))
    grid = np.zeros((c, nrows * (h + pad) + pad, ncols * (w + pad) + pad))
    for i in range(n):
        r, col = divmod(i, ncols)
        grid[:, pad + r * (h + pad):pad + r * (h + pad) + h, pad + col * (w + pad):pad + col * (w + pad) + w] = x[i]
    pixels = np.clip((grid + 1) * 127.5 + 0.5, 0, 255).astype(np.uint8)
    return pixels[0] if c == 1 else pixels.transpose(1, 2, 0)


def scatter_image(points, centers=None, size=512, extent=None):
    """2-D points (black) over mode centres (red rings) -> uint8 RGB picture."""
    pts = np.asarray(points, dtype=np.float64)
    if extent is None:
        ref = pts if centers is None else np.asarray(centers)
        extent = float(np.abs(ref).max()) * 1.3 + 1e-9
    img = np.full((size, size, 3), 255, np.uint8)

    def to_px(p):
        return np.clip(((p + extent) / (2 * extent) * (size - 1)).round().astype(int), 0, size - 1)

    if centers is not None:
        ang = np.linspace(0, 2 * np.pi, 64)
        for cx, cy in to_px(np.asarray(centers, dtype=np.float64)):
            rr = np.clip((cy + 6 * np.sin(ang)).astype(int), 0, size - 1)
            cc = np.clip((cx + 6 * np.cos(ang)).astype(int), 0, size - 1)
            img[size - 1 - rr, cc] = (220, 30, 30)
    finite = pts[np.isfinite(pts).all(axis=1)]
    px = to_px(finite)
    for dy in (0, 1):
        for dx in (0, 1):
            img[np.clip(size - 1 - px[:, 1] - dy, 0, size - 1), np.clip(px[:, 0] + dx, 0, size - 1)] = (0, 0, 0)
    return img


# A 3x5 bitmap font: enough to label plots (lower-case letters, digits and . - _ : / =).
_GLYPHS = {
    "0": "111101101101111", "1": "010110010010111", "2": "111001111100111", "3": "111001111001111",
    "4": "101101111001001", "5": "111100111001111", "6": "111100111101111", "7": "111001010010010",
    "8": "111101111101111", "9": "111101111001111", "a": "010101111101101", "b": "110101110101110",
    "c": "011100100100011", "d": "110101101101110", "e": "111100110100111", "f": "111100110100100",
    "g": "011100101101011", "h": "101101111101101", "i": "111010010010111", "j": "001001001101010",
    "k": "101101110101101", "l": "100100100100111", "m": "101111111101101", "n": "110101101101101",
    "o": "010101101101010", "p": "110101110100100", "q": "010101101110011", "r": "110101110101101",
    "s": "011100010001110", "t": "111010010010010", "u": "101101101101111", "v": "101101101101010",
    "w": "101101111111101", "x": "101101010101101", "y": "101101010010010", "z": "111001010100111",
    ".": "000000000000010", "-": "000000111000000", "_": "000000000000111", ":": "000010000010000",
    "/": "001001010100100", "=": "000111000111000", " ": "000000000000000", "+": "000010111010000",
}


def draw_text(img, text, row, col, color=(0, 0, 0), scale=2):
    """Draw ``text`` (lower-cased; unknown characters as spaces) with its top-left corner at (row, col)."""
    for k, ch in enumerate(str(text).lower()):
        bits = _GLYPHS.get(ch, _GLYPHS[" "])
        for i in range(5):
            for j in range(3):
                if bits[3 * i + j] == "1":
                    r, c = row + i * scale, col + (4 * k + j) * scale
                    img[max(r, 0):r + scale, max(c, 0):c + scale] = color
    return img


def _fmt(v):
    return f"{v:.3g}"


def line_plots(panels, width=640, panel_height=170):
    """One panel per entry of ``panels`` {title: (x, y)}: a polyline with its y range written on the
    left and x range below.  -> uint8 RGB picture."""
    names = list(panels)
    img = np.full((panel_height * max(len(names), 1), width, 3), 255, np.uint8)
    left, right, top, bottom = 70, 12, 22, 22
    colors = [(31, 119, 180), (214, 39, 40), (44, 160, 44), (148, 103, 189), (255, 127, 14), (23, 190, 207)]
    for p, name in enumerate(names):
        x, y = (np.asarray(a, dtype=np.float64) for a in panels[name])
        ok = np.isfinite(x) & np.isfinite(y)
        x, y = x[ok], y[ok]
        y0 = p * panel_height
        h, w = panel_height - top - bottom, width - left - right
        img[y0 + top:y0 + top + h, left] = (160, 160, 160)
        img[y0 + top + h, left:left + w] = (160, 160, 160)
        draw_text(img, name, y0 + 4, left)
        if len(x) == 0:
            continue
        xmin, xmax, ymin, ymax = x.min(), x.max(), y.min(), y.max()
        xs = (x - xmin) / (xmax - xmin if xmax > xmin else 1) * (w - 1)
        ys = (y - ymin) / (ymax - ymin if ymax > ymin else 1) * (h - 1)
        draw_text(img, _fmt(ymax), y0 + top, 4)
        draw_text(img, _fmt(ymin), y0 + top + h - 10, 4)
        draw_text(img, _fmt(xmin), y0 + top + h + 6, left)
        draw_text(img, _fmt(xmax), y0 + top + h + 6, left + w - 8 * len(_fmt(xmax)))
        # densify the polyline so steep segments stay connected
        steps = np.maximum(np.abs(np.diff(xs)), np.abs(np.diff(ys))).astype(int) + 1 if len(xs) > 1 else np.array([])
        px, py = [xs[:1]], [ys[:1]]
        for i, n in enumerate(steps):
            t = np.linspace(0, 1, n + 1)[1:]
            px.append(xs[i] + (xs[i + 1] - xs[i]) * t)
            py.append(ys[i] + (ys[i + 1] - ys[i]) * t)
        px, py = np.concatenate(px).round().astype(int), np.concatenate(py).round().astype(int)
        img[y0 + top + h - 1 - py, left + 1 + np.clip(px, 0, w - 2)] = colors[p % len(colors)]
    return img
