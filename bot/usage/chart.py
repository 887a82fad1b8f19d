"""A small PNG of tokens per day, stacked by model, drawn with Pillow (already needed for
images): no plotting library for one bar chart."""

from __future__ import annotations

import io
from datetime import date

from bot.usage.report import UsageReport

WIDTH, HEIGHT = 720, 360
_PAD_LEFT, _PAD_RIGHT, _PAD_TOP, _PAD_BOTTOM = 70, 16, 40, 70
_COLOURS = (
    (66, 133, 244),
    (234, 67, 53),
    (251, 188, 5),
    (52, 168, 83),
    (171, 71, 188),
    (0, 172, 193),
    (255, 112, 67),
)
_OTHER = (158, 158, 158)
_MAX_MODELS = len(_COLOURS)  # the rest are drawn together as "other"
_BACKGROUND = (255, 255, 255)
_INK = (33, 33, 33)
_GRID = (224, 224, 224)


def _short(number: int) -> str:
    for size, unit in ((1_000_000_000, "G"), (1_000_000, "M"), (1_000, "k")):
        if number >= size:
            return f"{number / size:.1f}".rstrip("0").rstrip(".") + unit
    return str(number)


def _label(day: date, count: int) -> str:
    return day.strftime("%m-%d") if count <= 10 else day.strftime("%d")


def chart_png(report: UsageReport, title: str) -> bytes:
    """Tokens per day of the report's period, one stacked bar a day, as PNG bytes."""
    from PIL import Image, ImageDraw, ImageFont  # Pillow loads when a chart is drawn

    shown = report.models[:_MAX_MODELS]
    if len(report.models) > _MAX_MODELS:
        shown = report.models[: _MAX_MODELS - 1]
    colours = {model: _COLOURS[i] for i, model in enumerate(shown)}
    image = Image.new("RGB", (WIDTH, HEIGHT), _BACKGROUND)
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default()
    draw.text((_PAD_LEFT, 10), title[:90], fill=_INK, font=font)
    left, right = _PAD_LEFT, WIDTH - _PAD_RIGHT
    top, bottom = _PAD_TOP, HEIGHT - _PAD_BOTTOM
    totals = [sum(by_model.values()) for _, by_model in report.per_day]
    peak = max(totals, default=0) or 1
    for step in range(5):  # grid lines with their values
        value = peak * step // 4
        y = bottom - (bottom - top) * step / 4
        draw.line((left, y, right, y), fill=_GRID)
        draw.text((6, y - 6), _short(value), fill=_INK, font=font)
    count = max(1, len(report.per_day))
    slot = (right - left) / count
    bar = max(1.0, slot * 0.7)
    for i, (day, by_model) in enumerate(report.per_day):
        x0 = left + i * slot + (slot - bar) / 2
        y = float(bottom)
        ordered = [m for m in shown if m in by_model]
        other = sum(v for m, v in by_model.items() if m not in colours)
        for model, tokens in [*((m, by_model[m]) for m in ordered), ("", other)]:
            if tokens <= 0:
                continue
            height = (bottom - top) * tokens / peak
            draw.rectangle(
                (x0, y - height, x0 + bar, y), fill=colours.get(model, _OTHER) if model else _OTHER
            )
            y -= height
        if count <= 10 or i % max(1, count // 10) == 0:
            draw.text((x0, bottom + 4), _label(day, count), fill=_INK, font=font)
    draw.line((left, bottom, right, bottom), fill=_INK)
    legend = [(m, colours[m]) for m in shown]
    if len(report.models) > len(shown):
        legend.append(("other", _OTHER))
    x, y = float(left), float(bottom + 24)
    for model, colour in legend:
        name = model if len(model) <= 28 else model[:27] + "…"
        width = draw.textlength(name, font=font) + 30
        if x + width > right:
            x, y = float(left), y + 16
        draw.rectangle((x, y + 2, x + 10, y + 12), fill=colour)
        draw.text((x + 14, y), name, fill=_INK, font=font)
        x += width
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=True)
    return out.getvalue()
