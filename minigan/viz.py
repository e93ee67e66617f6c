"""Pictures with numpy alone: a PNG writer, image grids and 2-D scatter plots."""
import struct
import textwrap
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


# ---------------------------------------------------------------- readable figures
# With matplotlib (``pip install "minigan[plot]"``) the pictures get axes, a title and a legend;
# without it, the numpy-only writer above draws them (image grids enlarged to stay readable).

def _pyplot():
    """matplotlib's pyplot on the file-only Agg backend, or None when matplotlib is missing."""
    try:
        import matplotlib
        matplotlib.use("Agg", force=True)
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def smooth(y, window):
    """Moving average over ``window`` points (shorter at the start), the same length as y."""
    y = np.asarray(y, dtype=np.float64)
    if window <= 1 or len(y) < 3:
        return y
    c = np.cumsum(np.insert(np.where(np.isfinite(y), y, 0.0), 0, 0.0))
    n = np.minimum(np.arange(1, len(y) + 1), window)
    return (c[1:] - c[np.arange(1, len(y) + 1) - n]) / n


def samples_figure(path, points, centers=None, title="", real=None):
    """Generated 2-D points (blue, drawn on top) over the true modes (red crosses) or real samples
    (grey), with axes, title (wrapped to the figure) and legend."""
    plt = _pyplot()
    pts = np.asarray(points, dtype=np.float64)
    if plt is None:
        write_png(path, scatter_image(pts, centers))
        return path
    fig, ax = plt.subplots(figsize=(6, 6), dpi=110)
    if real is not None:
        r = np.asarray(real, dtype=np.float64)
        ax.scatter(r[:, 0], r[:, 1], s=3, alpha=0.35, color="0.55", label=f"{len(r)} real samples")
    ax.scatter(pts[:, 0], pts[:, 1], s=3, alpha=0.5, color="tab:blue", label=f"{len(pts)} generated samples",
               zorder=3)             # above the crosses: samples tight on a mode stay visible
    if centers is not None:
        c = np.asarray(centers)
        ax.scatter(c[:, 0], c[:, 1], s=80, marker="x", color="tab:red", linewidths=1.5, alpha=0.6, label="true modes",
                   zorder=2)
        extent = float(np.abs(c).max()) * 1.4 + 1e-9
        ax.set_xlim(-extent, extent)
        ax.set_ylim(-extent, extent)
    ax.set_aspect("equal")
    ax.set_xlabel("x1")
    ax.set_ylabel("x2")
    ax.set_title(textwrap.fill(title, 75), fontsize=9)
    ax.legend(loc="upper right", fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def grid_figure(path, images, ncols=8, title=""):
    """A grid of (N, 1 or 3, H, W) images in [-1, 1] at a readable size, with a title."""
    grid = image_grid(images, ncols=ncols)
    plt = _pyplot()
    if plt is None:
        scale = max(1, -(-720 // max(grid.shape[1], 1)))         # e.g. 8 MNIST digits per row (242 px): x3
        write_png(path, np.repeat(np.repeat(grid, scale, axis=0), scale, axis=1))
        return path
    h, w = grid.shape[:2]
    fig = plt.figure(figsize=(7.2, 7.2 * h / w + 0.5), dpi=110)
    ax = fig.add_axes([0, 0, 1, 1 - 0.5 / (7.2 * h / w + 0.5)])
    ax.imshow(grid, cmap="gray" if grid.ndim == 2 else None, interpolation="nearest", vmin=0, vmax=255)
    ax.axis("off")
    fig.suptitle(title, y=0.995, fontsize=10)
    fig.savefig(path)
    plt.close(fig)
    return path


def curves_figure(path, panels, title=""):
    """One panel per {name: (steps, values)}: the raw per-step line, faint, and a moving average
    over ~2 % of the run on top; x axis 'step'.  Evaluation metrics (few points) are drawn as marked lines."""
    plt = _pyplot()
    if plt is None:
        write_png(path, line_plots(panels))
        return path
    names = list(panels)
    fig, axes = plt.subplots(len(names), 1, figsize=(8, 2.1 * max(len(names), 1)), dpi=100, sharex=True,
                             squeeze=False)
    for ax, name in zip(axes[:, 0], names):
        x, y = (np.asarray(a, dtype=np.float64) for a in panels[name])
        if len(x) > 50:
            window = max(5, len(x) // 50)
            ax.plot(x, y, color="tab:blue", alpha=0.25, linewidth=0.7, label="per step")
            ax.plot(x, smooth(y, window), color="tab:blue", linewidth=1.6, label=f"moving average ({window} steps)")
            ax.legend(loc="upper right", fontsize=7)
        else:
            ax.plot(x, y, marker="o", color="tab:green", linewidth=1.4)
        ax.set_ylabel(name, fontsize=8)
        ax.grid(alpha=0.3)
    axes[-1, 0].set_xlabel("step")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
