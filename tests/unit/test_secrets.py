"""SecretBox: key parsing, AES-GCM round trip, tamper/swap detection, rotation, masking."""

from __future__ import annotations

import base64
import dataclasses

import pytest

from bot.store.secrets import (
    SecretBox,
    SecretUnreadable,
    associated_data,
    describe_scope,
    generate_key,
    key_id_of,
)
from bot.types import SecretValue

PLAIN = "sk-unit-test-4f1c2b9e0d7a"
AAD = associated_data("discord", "111", "222", "openai_api_key")
WHERE = describe_scope("discord", "111", "222")


def box_of(*keys: str) -> SecretBox:
    return SecretBox.from_setting(",".join(keys))


def test_generate_key_is_32_random_bytes_in_urlsafe_base64() -> None:
    first, second = generate_key(), generate_key()
    assert first != second
    assert len(base64.urlsafe_b64decode(first)) == 32
    assert set(first) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_=")


@pytest.mark.parametrize("text", [None, "", "   ", " , ,"])
def test_empty_setting_says_to_run_keygen(text: str | None) -> None:
    with pytest.raises(ValueError, match="BOT_SECRET_KEYS") as err:
        SecretBox.from_setting(text)
    assert "./scripts/run.sh keygen" in str(err.value)


@pytest.mark.parametrize(
    "bad",
    [
        "not-base64-at-all!!",
        base64.urlsafe_b64encode(b"x" * 16).decode(),  # 128-bit: too short for AES-256
        base64.urlsafe_b64encode(b"x" * 33).decode(),
    ],
)
def test_invalid_key_is_refused_without_echoing_it(bad: str) -> None:
    good = generate_key()
    with pytest.raises(ValueError) as err:
        box_of(good, bad)
    message = str(err.value)
    assert "BOT_SECRET_KEYS" in message and "#2" in message and "./scripts/run.sh keygen" in message
    assert bad not in message and good not in message


def test_key_without_padding_and_with_spaces_is_accepted() -> None:
    key = generate_key()
    box = SecretBox.from_setting(f"  {key.rstrip('=')} ")
    assert box.primary_key_id == key_id_of(base64.urlsafe_b64decode(key))


@pytest.mark.parametrize("after", [" # the new one", ";", "\n", "\t"])
def test_anything_but_a_comma_after_a_key_is_refused_not_dropped(after: str) -> None:
    """Decoded leniently, `KEY # comment` or `NEW;OLD` was the first key alone."""
    first, second = generate_key(), generate_key()
    with pytest.raises(ValueError) as err:
        SecretBox.from_setting(f"{first}{after}{second if after != ' # the new one' else ''}")
    assert "entry #1 has" in str(err.value) and "separate keys with commas" in str(err.value)
    assert first not in str(err.value) and second not in str(err.value)


def test_a_key_run_on_into_another_is_refused() -> None:
    with pytest.raises(ValueError, match="entry #1 is not a valid key"):
        SecretBox.from_setting(generate_key() + generate_key())


def test_key_id_is_stable_and_short() -> None:
    key = generate_key()
    assert box_of(key).primary_key_id == box_of(key).primary_key_id
    assert len(box_of(key).primary_key_id) == 8
    assert box_of(key).primary_key_id != box_of(generate_key()).primary_key_id


def test_round_trip_with_fresh_nonce_per_write() -> None:
    box = box_of(generate_key())
    first = box.seal(SecretValue(PLAIN), AAD)
    second = box.seal(SecretValue(PLAIN), AAD)
    assert first.nonce != second.nonce and first.ciphertext != second.ciphertext
    assert len(first.nonce) == 12
    assert PLAIN.encode() not in first.ciphertext
    assert box.open(first, AAD, where=WHERE, name="openai_api_key").reveal() == PLAIN
    assert box.open(second, AAD, where=WHERE, name="openai_api_key").reveal() == PLAIN


@pytest.mark.parametrize("field", ["ciphertext", "nonce"])
def test_tampering_is_detected(field: str) -> None:
    box = box_of(generate_key())
    sealed = box.seal(SecretValue(PLAIN), AAD)
    data = bytearray(getattr(sealed, field))
    data[0] ^= 0x01
    if field == "nonce":
        tampered = dataclasses.replace(sealed, nonce=bytes(data))
    else:
        tampered = dataclasses.replace(sealed, ciphertext=bytes(data))
    with pytest.raises(SecretUnreadable) as err:
        box.open(tampered, AAD, where=WHERE, name="openai_api_key")
    message = str(err.value)
    assert (
        "The openai key stored" in message
        and "channel 222" in message
        and "key set command" in message
    )
    assert PLAIN not in message


@pytest.mark.parametrize(
    "other_row",
    [
        ("discord", "111", "999", "openai_api_key"),  # another channel
        ("discord", "111", "", "openai_api_key"),  # the server row
        ("discord", "111", "222", "claude_api_key"),  # another name on the same channel
        ("matrix", "111", "222", "openai_api_key"),  # another platform
    ],
)
def test_ciphertext_copied_to_another_row_fails(other_row: tuple[str, str, str, str]) -> None:
    box = box_of(generate_key())
    sealed = box.seal(SecretValue(PLAIN), AAD)
    with pytest.raises(SecretUnreadable, match="altered or copied"):
        box.open(sealed, associated_data(*other_row), where="x", name=other_row[3])


def test_aad_cannot_be_forged_by_separators_in_ids() -> None:
    assert associated_data("discord", "1|2", "3", "n") != associated_data(
        "discord", "1", "2|3", "n"
    )


def test_wrong_key_names_the_missing_key_id_and_tells_the_operator(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A process still running without the key rotate-keys sealed with told members the
    key was "no longer" there and to set it again; the log said nothing."""
    sealed = box_of(generate_key()).seal(SecretValue(PLAIN), AAD)
    stranger = box_of(generate_key())
    with caplog.at_level("WARNING", logger="bot.store"), pytest.raises(SecretUnreadable) as err:
        stranger.open(sealed, AAD, where=WHERE, name="openai_api_key")
    said = str(err.value)
    assert f"key {sealed.key_id}, which this bot's BOT_SECRET_KEYS lacks" in said
    assert "If the operator changed BOT_SECRET_KEYS" in said and "a restart" in said
    assert "no longer" not in said and PLAIN not in said
    [record] = caplog.records
    logged = record.getMessage()  # (a word another test made a known secret may be ****)
    assert record.levelname == "WARNING" and sealed.key_id in logged
    assert "channel 222" in logged and PLAIN not in logged


def test_rotation_first_key_encrypts_every_key_decrypts() -> None:
    old, new = generate_key(), generate_key()
    sealed_old = box_of(old).seal(SecretValue(PLAIN), AAD)
    both = box_of(new, old)
    assert both.open(sealed_old, AAD, where=WHERE, name="n").reveal() == PLAIN
    resealed = both.seal(SecretValue(PLAIN), AAD)
    assert resealed.key_id == both.primary_key_id != sealed_old.key_id
    # After the old key is removed, the re-sealed value still opens.
    assert box_of(new).open(resealed, AAD, where=WHERE, name="n").reveal() == PLAIN
    with pytest.raises(SecretUnreadable):
        box_of(new).open(sealed_old, AAD, where=WHERE, name="n")


def test_duplicate_key_is_listed_once_and_keeps_its_place() -> None:
    first, second = generate_key(), generate_key()
    box = box_of(first, second, first)
    assert box.key_ids == (box_of(first).primary_key_id, box_of(second).primary_key_id)


def test_box_and_values_never_show_key_or_plaintext() -> None:
    key = generate_key()
    box = box_of(key)
    value = SecretValue(PLAIN)
    shown = [repr(box), str(box), repr(value), str(value), f"{value}", f"{value!r}"]
    for text in shown:
        assert key not in text and key.rstrip("=") not in text and PLAIN not in text
