"""Refusals and failures typed into `python -m bot console` say what to do next: a status
check's failure given again from an earlier check says when a check asks anew, a choice
typed with look-alike letters is suggested for the option it fits, and a message held
back by several limits names each, with when each frees up."""

from __future__ import annotations

import re

from bot.providers._http import LIST_REUSE_SECONDS
from tests.e2e.hostile_endpoint import HostileEndpoint, status_only
from tests.e2e.test_hostile_console import Workspace


def _lines(out: str, start: str) -> list[str]:
    return [line for line in out.splitlines() if line.startswith(start)]


def test_a_failed_check_given_again_says_when_it_was_made(
    ws: Workspace, endpoint: HostileEndpoint
) -> None:
    """The endpoint's answer to a status check is shared for LIST_REUSE_SECONDS (a flood
    of /connect asks it once). An admin who fixed the key on the endpoint's side and ran
    /connect again at once got the same failure, word for word, as if the fix did nothing.
    Now a failure given again says how old it is and when a check asks anew."""
    endpoint.on_models = status_only(401, "invalid api key")
    run = ws.run(
        [
            "/source custom",
            f"/proxy set {endpoint.url_v1}",  # checks: the endpoint is asked
            "/connect",
            "/connect",
            "/help",
        ]
    )
    run.assert_survived()
    failed = _lines(run.out, "Status check failed")
    assert len(failed) == 3, run.describe()
    assert failed[0].startswith("Status check failed: "), failed  # asked now: no note
    asked = [r for r in endpoint.requests if r.path.endswith("/models")]
    if len(asked) > 1:  # a machine so slow the window passed: asked anew, said as such
        return
    for line in failed[1:]:
        found = re.search(r"\(checked (.+?); run /connect again (.+?) to check anew\): ", line)
        assert found is not None, line
        ago = 0 if found[1] == "under a second ago" else int(found[1].removesuffix(" s ago"))
        # `now`: the window ended between the check and its words
        again = LIST_REUSE_SECONDS - ago if found[2] == "now" else int(found[2][3:-2])
        assert ago + again == LIST_REUSE_SECONDS, line
        assert "rejected the credentials (HTTP 401)" in line, line


def test_a_model_list_failure_given_again_says_when_it_was_asked(
    ws: Workspace, endpoint: HostileEndpoint
) -> None:
    """`/models external` right after a failed check got that check's failure, word for
    word, with no word of when it was asked (the list is shared for LIST_REUSE_SECONDS),
    while /connect says it; an admin who fixed the key meanwhile saw the fix do nothing.
    It now says how old the failure is and when the command asks anew, as /connect does."""
    endpoint.on_models = status_only(401, "invalid api key")
    run = ws.run(
        [
            "/source custom",
            f"/proxy set {endpoint.url_v1}",  # checks: the endpoint is asked
            "/models external",
            "/help",
        ]
    )
    run.assert_survived()
    asked = [r for r in endpoint.requests if r.path.endswith("/models")]
    if len(asked) > 1:  # a machine so slow the window passed: asked anew, said as such
        return
    [line] = [
        line for line in run.before_help().splitlines() if "rejected the credentials" in line
    ][1:]
    found = re.search(
        r"^Listing failed \(checked (.+?); run /models external again (.+?) to check anew\): "
        r"The endpoint at \S+ rejected the credentials \(HTTP 401\)",
        line,
    )
    assert found is not None, line
    ago = 0 if found[1] == "under a second ago" else int(found[1].removesuffix(" s ago"))
    again = LIST_REUSE_SECONDS - ago if found[2] == "now" else int(found[2][3:-2])
    assert ago + again == LIST_REUSE_SECONDS, line


def test_a_choice_typed_with_look_alike_letters_is_suggested_where_it_fits(
    ws: Workspace,
) -> None:
    """`/usage wееk` (Cyrillic е) was refused as "not a valid scope" with no suggestion:
    a value no choice names went to the first optional choice (scope), whose words it is
    nothing like, though `/usage period:wееk` suggested `week`. Now it goes to the choice
    it spells, and the same holds for fullwidth letters, a switch and a limit's `off`."""
    run = ws.run(
        [
            "/usage wееk",  # Cyrillic е
            "/usage ｗｅｅｋ",  # fullwidth, as a CJK keyboard types it
            "/limits mеssages_per_user_minute",
            "/connect bypass:оn",  # Cyrillic о
            "/limits set messages_per_user_minute ｏｆｆ",
            "/help",
        ]
    )
    run.assert_survived()
    said = run.before_help().splitlines()
    assert said[0].startswith(
        "`wееk` is not a valid period. Did you mean `week`? Choose one of: day, week, month."
    ), said
    assert said[1].startswith("`ｗｅｅｋ` is not a valid period. Did you mean `week`?"), said
    assert said[2].startswith(
        "`mеssages_per_user_minute` is not a valid name. Did you mean `messages_per_user_minute`?"
    ), said
    assert said[3] == "`bypass` must be on or off (or default), not `оn`. Did you mean `on`?"
    assert said[4].startswith("`ｏｆｆ` is not a limit: ") and said[4].endswith(
        "Did you mean `off`?"
    ), said
    assert len(said) == 5, said
    assert ws.query("SELECT count(*) FROM limits") in ([], [(0,)])


def test_a_message_held_back_by_two_limits_names_both(
    ws: Workspace, endpoint: HostileEndpoint
) -> None:
    """A person's minute and day both used up: the refusal named only the minute's limit
    and said it freed up in 60 s, and a minute later the day's refused them again until
    midnight. Now it names each limit that holds, when each frees up, and when the
    message can go: once both have."""
    endpoint.stream.usage = {"prompt_tokens": 150, "completion_tokens": 50, "total_tokens": 200}
    run = ws.run(
        [
            "/source custom",
            f"/proxy set {endpoint.url_v1}",
            "/model m",
            "/limits set messages_per_user_minute 1",
            "/limits set tokens_per_user_day 400",  # 200 left: less than a message needs
            "Name one colour.",
            "Name another colour.",
            "/help",
        ]
    )
    run.assert_survived()
    said = run.before_help()
    assert len(endpoint.chat_requests()) == 1, run.describe()
    minute = _lines(said, "Limit reached: messages_per_user_minute (1 message a minute")
    day = _lines(said, "Limit reached: tokens_per_user_day (400 tokens a day (UTC) per person)")
    assert len(minute) == len(day) == 1, run.describe()
    assert "It frees up at " in minute[0] and "(in 60 s)" in minute[0], minute
    assert "200 used, this message needs about " in day[0], day
    assert re.search(r"It frees up at 00:00(:00)? UTC \(in ", day[0]), day  # seconds near midnight
    [last] = _lines(said, "It can go once both have freed up, at 00:00")
    assert last.endswith("Nothing was sent to the model."), last
    assert said.count("Nothing was sent to the model.") == 1, said
    # The operator's log names both too (it named the first alone).
    log = (ws.data_dir / "chatbot.log").read_text(encoding="utf-8")
    [refused] = [line for line in log.splitlines() if " was refused by " in line]
    assert refused.endswith("was refused by messages_per_user_minute and tokens_per_user_day"), (
        refused
    )


def test_refusals_say_what_to_do_next(ws: Workspace) -> None:
    """Refusals that said only what was wrong: a file that holds no card or preset (what
    to send instead), a key pasted with more than it (its limit, that nothing was saved),
    and a parameter's word typed with a look-alike letter (no suggestion, though a
    command's choices suggest one)."""
    (ws.cwd / "notes.json").write_text('{"title": "not a card"}', encoding="utf-8")
    run = ws.run(
        [
            "/character import notes.json",
            "/preset import notes.json",
            "/key set custom",
            "k" * 5000,
            "/params reasoning_effort hіgh",  # Cyrillic і
            "/params temperature dfault",
            "/help",
        ]
    )
    run.assert_survived()
    said = run.before_help().splitlines()
    assert said[0] == (
        "The file is JSON but not a character card (no `spec` and no `name`). Export the "
        "character as a card (PNG or JSON) and send that file."
    ), said
    assert said[1].endswith(
        "Export one from SillyTavern's AI Response Configuration panel and send that."
    ), said
    assert said[2] == (
        "That is too long for the API key (5,000 characters; it takes at most 4,000). "
        "Nothing was saved: paste the API key alone."
    ), said
    assert said[3].endswith("Did you mean `high`?"), said
    assert said[4].endswith("Did you mean `default`?"), said
    assert ws.secret_names() == []


def test_a_custom_channel_without_its_url_is_sent_to_proxy_set_first(ws: Workspace) -> None:
    """A new admin who chose custom and chatted before `/proxy set` was told "No model is
    selected … (see /models list)"; `/models list` sent them on to `/models external`, which
    only then named the URL: three replies to reach the first step. The URL comes first."""
    run = ws.run(["/source custom", "Hello!", "/model default", "/help"])
    run.assert_survived()
    step = "The custom source needs an endpoint URL: run /proxy set <url>"
    said = [line for line in run.out.splitlines() if step in line]
    assert len(said) == 3, run.describe()  # /source's Next:, the chat, /model default
    assert "No model is selected" not in run.out, run.describe()


def test_models_list_on_custom_without_a_url_names_proxy_set(ws: Workspace) -> None:
    """`/models list` on a custom channel with no URL said "Run /models external to fetch
    them from the endpoint": there is no endpoint yet, and /models external only then
    named the URL. It names `/proxy set` at once, an admin's step to anyone else."""
    run = ws.run(["/source custom", "/models list", "/models list m-", "/help"])
    run.assert_survived()
    step = "No models known for custom. The custom source needs an endpoint URL: run /proxy set"
    said = [line for line in run.out.splitlines() if line.startswith(step)]
    assert len(said) == 2, run.describe()
    assert "/models external" not in run.before_help().split("/models list", 1)[-1]
    member = ws.run(["/models list", "/help"], args=["--user", "bob"])
    assert "an admin runs /proxy set <url>" in member.before_help(), member.describe()
