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
