"""Files people attach, with `/attach` in `chatbot console`, checked in what the console
shows and in the request the loopback endpoint records."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path
from typing import Any

from tests.e2e.hostile_endpoint import HostileEndpoint
from tests.e2e.test_hostile_console import Run, Workspace


def _run(ws: Workspace, endpoint: HostileEndpoint, lines: list[str]) -> Run:
    setup = ["/source custom", f"/proxy set {endpoint.url_v1}", "/model m", "/connect bypass:on"]
    run = ws.run([*setup, *lines, "/help"])
    run.assert_survived()
    return run


def _asked(endpoint: HostileEndpoint) -> list[dict[str, Any]]:
    """The messages of the last chat request."""
    [*_, last] = endpoint.chat_requests()
    messages: list[dict[str, Any]] = json.loads(last.body)["messages"]
    return messages


def test_a_latin1_file_with_few_accents_is_read_with_them(
    ws: Workspace, endpoint: HostileEndpoint, tmp_path: Path
) -> None:
    """Files probe: an old source file saved in Latin-1 (its header says so) whose only
    accents are its author's name reached the model as `G\ufffdrard Lef\ufffdvre`: a
    stray byte or two per 200 was taken for damaged UTF-8, though the file held no UTF-8
    character at all. So was a CSV from Excel whose accents are few among its numbers."""
    header = "# -*- coding: latin-1 -*-\n# Auteur : Gérard Lefèvre\n"
    code = header + "".join(f"def f{i}(x):\n    return x * {i}\n\n" for i in range(120))
    (tmp_path / "legacy.py").write_bytes(code.encode("latin-1"))
    rows = "".join(f"{i};{i * 3},50;ok\n" for i in range(60))
    table = "Nr;Betrag;Empfänger\n" + rows + "61;12,00;Überweisung zurück\n"
    (tmp_path / "konto.csv").write_bytes(table.encode("cp1252"))
    run = _run(ws, endpoint, ["/attach legacy.py", "/attach konto.csv", "who wrote this?"])
    assert "Attached legacy.py" in run.out and "Attached konto.csv" in run.out, run.describe()
    question = _asked(endpoint)[-1]["content"]
    assert "# Auteur : Gérard Lefèvre\n" in question, question[:300]
    assert "Nr;Betrag;Empfänger\n" in question, question
    assert "61;12,00;Überweisung zurück\n" in question, question[-300:]
    assert "\ufffd" not in question


def test_an_image_not_sent_is_named_on_a_line_of_its_own_after_a_file(
    ws: Workspace, endpoint: HostileEndpoint, tmp_path: Path
) -> None:
    """Files probe: an image the model was not shown is named in the text, and that name
    was glued to the end of the message with a space: after an attached file it made the
    file's closing fence "``` [image: shot.png]", which closes nothing (a fence closes
    only alone on its line), so the model read the name as part of the file."""
    from PIL import Image as PILImage

    PILImage.new("RGB", (32, 24), "red").save(tmp_path / "shot.png")
    (tmp_path / "error.log").write_text("Traceback: KeyError 'id'\n")
    run = _run(
        ws,
        endpoint,
        ["/attach error.log", "/attach shot.png", "what broke?", "/attach shot.png", "and now?"],
    )
    assert run.out.count("Attached shot.png") == 2, run.describe()
    first, second = (m["content"] for m in _asked(endpoint) if m["role"] == "user")
    # The model "m" is not known to see: its images are named instead.
    assert first == "what broke?\nerror.log\n```\nTraceback: KeyError 'id'\n```\n[image: shot.png]"
    assert second == "and now? [image: shot.png]"  # one line: the name follows it


def test_a_see_through_image_shows_its_drawing_to_a_decoder_that_drops_alpha(
    ws: Workspace, endpoint: HostileEndpoint, tmp_path: Path
) -> None:
    """Files probe: a black logo on a transparent background (saved, as many tools do,
    with white under the transparency) was sent as a PNG with alpha whose see-through
    pixels scaling had made black. llama.cpp's server reads images as RGB only
    (ggml-org/llama.cpp tools/mtmd/mtmd-helper.cpp: stbi_load_from_memory(…, 3), which
    drops alpha), so its model saw a black rectangle. The picture now goes flattened:
    on white, or on black when what shows is light (white text for a dark chat theme)."""
    from PIL import Image as PILImage
    from PIL import ImageDraw

    for name, ink in (("black-logo.png", (0, 0, 0, 255)), ("white-logo.png", (255,) * 4)):
        logo = PILImage.new("RGBA", (2000, 1000), (255, 255, 255, 0))
        ImageDraw.Draw(logo).rectangle((500, 250, 1500, 750), fill=ink)
        logo.save(tmp_path / name)
    lines = ["/params vision on", "/attach black-logo.png", "/attach white-logo.png", "logos?"]
    run = _run(ws, endpoint, lines)
    assert "vision set to on" in run.out, run.describe()
    parts = _asked(endpoint)[-1]["content"]
    urls = [p["image_url"]["url"] for p in parts if p["type"] == "image_url"]
    assert len(urls) == 2, parts
    for url in urls:
        sent = PILImage.open(io.BytesIO(base64.b64decode(url.partition(";base64,")[2])))
        assert sent.size == (1568, 784) and "A" not in sent.getbands(), (sent.size, sent.mode)
        shown = sent.convert("RGB")  # what an RGB-only decoder keeps
        corner, centre = shown.getpixel((10, 10)), shown.getpixel((784, 392))
        assert abs(sum(corner) - sum(centre)) > 600, (corner, centre)  # type: ignore[arg-type]


def test_an_avif_photo_is_refused_in_english(
    ws: Workspace, endpoint: HostileEndpoint, tmp_path: Path
) -> None:
    """Files probe: an Android phone's AVIF photo was refused as "a AVIF image"."""
    from PIL import Image as PILImage

    PILImage.new("RGB", (64, 48), "green").save(tmp_path / "photo.avif", "AVIF")
    run = _run(ws, endpoint, ["/attach photo.avif"])
    assert (
        "Not attached: photo.avif is an AVIF image, which models are not sent; attach JPEG, "
        "PNG, GIF or WebP images."
    ) in run.out, run.describe()


def test_a_file_dropped_on_the_terminal_is_attached_as_the_terminal_wrote_it(
    ws: Workspace, endpoint: HostileEndpoint, tmp_path: Path
) -> None:
    """Files probe: a file dragged onto a terminal is written as a shell reads it, macOS's
    Terminal and iTerm2 with its spaces escaped and a space after (`my\\ notes.md `),
    GNOME's quoted with a quote inside escaped (`'it'\\''s here.md'`); `/attach` took the
    backslashes for part of the name: "Cannot attach … No such file or directory"."""
    (tmp_path / "my notes.md").write_text("- buy milk\n")
    (tmp_path / "it's here.md").write_text("- call Bob\n")
    lines = [f"/attach {tmp_path}/my\\ notes.md ", "/attach 'it'\\''s here.md'", "my lists?"]
    run = _run(ws, endpoint, lines)
    assert "Attached my notes.md (11 bytes)" in run.out, run.describe()
    assert "Attached it's here.md (11 bytes)" in run.out, run.describe()
    question = _asked(endpoint)[-1]["content"]
    assert "- buy milk" in question and "- call Bob" in question, question


def test_a_home_folder_of_no_user_is_no_such_file(ws: Workspace, endpoint: HostileEndpoint) -> None:
    """Files probe: `/attach ~bobb/notes.txt` (a user name mistyped) said "Something went
    wrong (RuntimeError)": the home folder of a user who does not exist cannot be found."""
    run = _run(ws, endpoint, ["/attach ~no-such-user-here/notes.txt"])
    looked_for = ws.cwd / "~no-such-user-here" / "notes.txt"  # no home: a folder's name
    assert f"Cannot attach `{looked_for}`: No such file or directory." in run.out, run.describe()
    assert "went wrong" not in run.out
