"""CPU time to prepare an attached image for a model (decode, downscale, encode).

Run: .venv/bin/python bench/bench_media.py [--runs 20]

The photo is made here: 4000×3000, a gradient under coarse and fine noise, saved as
JPEG quality 95 and checked to be about 4 MB, the size of a phone camera's photo. Time
is CPU time of this process (time.process_time), so other load on the machine inflates
it less than wall time. A 2560×1440 PNG screenshot is timed too (no target).
Target from issue 13: a 4 MB photo prepared in ≤ 150 ms of CPU.
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bot.media import PreparedImage, prepare_image

TARGET_MS = 150.0
PHOTO_BYTES = (3_500_000, 4_500_000)


def photo_jpeg() -> bytes:
    """About 4 MB of JPEG with detail at every scale, as a photo has (downscaling keeps some)."""
    width, height = 4000, 3000
    grad = Image.linear_gradient("L").resize((width, height))
    bands = []
    for _ in range(3):
        coarse = Image.effect_noise((500, 375), 80).resize(
            (width, height), Image.Resampling.BICUBIC
        )
        fine = Image.effect_noise((width, height), 8)
        bands.append(Image.blend(Image.blend(grad, coarse, 0.6), fine, 0.25))
    out = io.BytesIO()
    Image.merge("RGB", bands).save(out, "JPEG", quality=95)
    data = out.getvalue()
    low, high = PHOTO_BYTES
    if not low <= len(data) <= high:
        raise SystemExit(f"the test photo is {len(data):,} bytes, not about 4 MB")
    return data


def screenshot_png() -> bytes:
    image = Image.new("RGB", (2560, 1440), "white")
    draw = ImageDraw.Draw(image)
    for row in range(0, 1440, 18):
        draw.text((20, row), f"line {row:04d} " + "lorem ipsum dolor sit amet " * 8, fill="black")
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def measure(runs: int, work: Callable[[], PreparedImage]) -> tuple[list[float], PreparedImage]:
    result = work()  # warm-up: imports, codec set-up
    times = []
    for _ in range(runs):
        start = time.process_time()
        result = work()
        times.append((time.process_time() - start) * 1000)
    return times, result


def report(label: str, size: int, times: list[float], result: PreparedImage) -> None:
    print(
        f"{label}: {size / 1e6:.2f} MB in → {result.width}×{result.height} "
        f"{result.media_type}, {len(result.data) / 1e3:.0f} kB out; CPU ms over "
        f"{len(times)} runs: best {min(times):.1f}, median {statistics.median(times):.1f}, "
        f"worst {max(times):.1f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()

    load = os.getloadavg()
    print(
        f"{platform.python_version()} · Pillow {Image.__version__} · {os.cpu_count()} cores · "
        f"load {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
    )
    photo = photo_jpeg()
    times, result = measure(args.runs, lambda: prepare_image(photo, "photo.jpg"))
    report("4 MB photo (JPEG q95, 4000×3000)", len(photo), times, result)
    median = statistics.median(times)
    verdict = "meets" if median <= TARGET_MS else "MISSES"
    print(f"target ≤ {TARGET_MS:.0f} ms CPU: median {median:.1f} ms {verdict} it")

    shot = screenshot_png()
    times, result = measure(args.runs, lambda: prepare_image(shot, "screen.png"))
    report("screenshot (PNG, 2560×1440)", len(shot), times, result)


if __name__ == "__main__":
    main()
