"""Email addresses as accounts see them (wealthalloc.accounts.emails)."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wealthalloc.accounts.emails import MAX_LENGTH, InvalidEmail, normalise_email

INVISIBLE_MESSAGE = "must not contain control or invisible characters"


# Accepted addresses -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "address",
    [
        "alice@example.com",
        "alice.martin@example.co.uk",
        "alice+portfolio@example.com",
        "a_b-c@sub.example.org",
        "o'neil@example.ie",
    ],
)
def test_an_ordinary_address_is_accepted_unchanged(address: str) -> None:
    assert normalise_email(address) == address


def test_surrounding_whitespace_is_removed() -> None:
    assert normalise_email("  alice@example.com\t\n") == "alice@example.com"


def test_the_domain_is_lowercased_and_the_local_part_kept_as_typed() -> None:
    # Mailbox names may be case-sensitive; uniqueness ignoring case is the database index's job.
    assert normalise_email("Alice.Martin@Example.COM") == "Alice.Martin@example.com"


def test_an_internationalised_domain_is_accepted_in_its_unicode_form() -> None:
    assert normalise_email("user@bücher.de") == "user@bücher.de"


def test_a_punycode_domain_is_the_same_account_as_its_unicode_spelling() -> None:
    assert normalise_email("user@xn--bcher-kva.de") == normalise_email("user@bücher.de")


def test_an_internationalised_local_part_is_accepted() -> None:
    assert normalise_email("用户@例子.广告") == "用户@例子.广告"
    assert normalise_email("δοκιμή@παράδειγμα.δοκιμή") == "δοκιμή@παράδειγμα.δοκιμή"


def test_fullwidth_characters_are_normalised_to_their_ordinary_forms() -> None:
    assert normalise_email("ａｌｉｃｅ＠ｅｘａｍｐｌｅ．ｃｏｍ") == "alice@example.com"


def test_a_decomposed_accent_and_a_precomposed_one_are_the_same_address() -> None:
    decomposed = "jose\u0301@example.com"
    precomposed = "jos\u00e9@example.com"

    assert normalise_email(decomposed) == normalise_email(precomposed) == precomposed


def test_normalising_twice_changes_nothing() -> None:
    once = normalise_email("  ＡＬＩＣＥ@Bücher.DE ")

    assert normalise_email(once) == once


# Invisible and control characters ------------------------------------------------------------------


INVISIBLE = [
    "\u200b",  # zero width space
    "\u200c",  # zero width non-joiner
    "\u200d",  # zero width joiner
    "\u2060",  # word joiner
    "\ufeff",  # zero width no-break space (byte order mark)
    "\u00ad",  # soft hyphen
    "\u202e",  # right-to-left override
    "\u202d",  # left-to-right override
    "\u200f",  # right-to-left mark
    "\u2067",  # right-to-left isolate
    "\x00",
    "\x07",
    "\x1b",
    "\x7f",
    "\ue000",  # private use
]
SEPARATORS = ["\u2028", "\u2029", "\x85"]  # line and paragraph separators, next line


def _name(ch: str) -> str:
    return unicodedata.name(ch, f"U+{ord(ch):04X}")


@pytest.mark.parametrize("character", INVISIBLE + SEPARATORS, ids=_name)
def test_an_invisible_or_control_character_inside_an_address_is_refused(character: str) -> None:
    for address in (f"ali{character}ce@example.com", f"alice@exam{character}ple.com"):
        with pytest.raises(InvalidEmail, match=INVISIBLE_MESSAGE):
            normalise_email(address)


@pytest.mark.parametrize("character", INVISIBLE, ids=_name)
def test_an_invisible_or_control_character_at_either_end_is_refused_not_trimmed(character: str) -> None:
    for address in (f"{character}alice@example.com", f"alice@example.com{character}"):
        with pytest.raises(InvalidEmail, match=INVISIBLE_MESSAGE):
            normalise_email(address)


@pytest.mark.parametrize("character", SEPARATORS, ids=_name)
def test_a_line_separator_at_either_end_is_trimmed_like_other_whitespace(character: str) -> None:
    assert normalise_email(f"{character}alice@example.com{character}") == "alice@example.com"


def test_a_right_to_left_override_that_reverses_how_the_domain_looks_is_refused() -> None:
    with pytest.raises(InvalidEmail):
        normalise_email("alice@\u202emoc.elpmaxe")


def test_a_line_break_inside_the_address_is_refused() -> None:
    with pytest.raises(InvalidEmail):
        normalise_email("alice\n@example.com")
    with pytest.raises(InvalidEmail):
        normalise_email("alice@example.com\r\nBcc: mallory@example.com")


def test_a_lone_surrogate_is_refused() -> None:
    with pytest.raises(InvalidEmail):
        normalise_email("ali\ud800ce@example.com")


@pytest.mark.parametrize(
    "character",
    ["\u034f", "\ufe0f", "\u3164"],
    ids=["COMBINING GRAPHEME JOINER", "VARIATION SELECTOR-16", "HANGUL FILLER"],
)
def test_a_default_ignorable_invisible_character_in_the_local_part_is_refused(character: str) -> None:
    with pytest.raises(InvalidEmail):
        normalise_email(f"alice{character}@example.com")


# Not addresses ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "alice",
        "alice@",
        "@example.com",
        "alice@@example.com",
        "alice example@example.com",
        "alice@example",
        "alice@-example.com",
        "alice..martin@example.com",
        ".alice@example.com",
        "<alice@example.com>",
        "Alice <alice@example.com>",
    ],
)
def test_text_that_is_not_an_address_is_refused(text: str) -> None:
    with pytest.raises(InvalidEmail):
        normalise_email(text)


def test_an_address_longer_than_320_characters_is_refused() -> None:
    too_long = "a" * 64 + "@" + ".".join(["b" * 60] * 5) + ".com"
    assert len(too_long) > MAX_LENGTH

    with pytest.raises(InvalidEmail, match="between 1 and 320"):
        normalise_email(too_long)


def test_a_refusal_is_a_value_error() -> None:
    assert issubclass(InvalidEmail, ValueError)


# Properties ------------------------------------------------------------------------------------


@given(st.text(max_size=80))
def test_any_text_is_either_refused_or_a_clean_stable_address(text: str) -> None:
    try:
        address = normalise_email(text)
    except InvalidEmail:
        return

    assert "@" in address
    assert not any(unicodedata.category(ch) in {"Cc", "Cf", "Co", "Cs", "Zl", "Zp"} for ch in address)
    assert normalise_email(address) == address


_local = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=20)
_label = st.text(alphabet="abcdefghijklmnopqrstuvwxyz", min_size=1, max_size=12)
# A fixed public suffix: generated labels could otherwise end in a special-use name (.local, .test,
# .arpa ...) that the validator refuses for reasons unrelated to the property under test.
_public_suffix = st.sampled_from(["com", "org", "net", "de", "co.uk"])


@given(local=_local, labels=st.lists(_label, min_size=1, max_size=3), suffix=_public_suffix)
def test_a_fullwidth_spelling_of_an_ascii_address_normalises_to_the_ascii_address(
    local: str, labels: list[str], suffix: str
) -> None:
    address = f"{local}@{'.'.join([*labels, suffix])}"
    fullwidth = "".join(chr(ord(ch) + 0xFEE0) for ch in address)

    assert normalise_email(fullwidth) == normalise_email(address) == address


@given(
    local=_local,
    labels=st.lists(_label, min_size=2, max_size=4),
    character=st.sampled_from(["\u200b", "\u200c", "\u200d", "\u2060", "\ufeff", "\u202e", "\u2066"]),
    data=st.data(),
)
def test_a_zero_width_or_bidi_control_inserted_anywhere_is_refused(
    local: str, labels: list[str], character: str, data: st.DataObject
) -> None:
    address = f"{local}@{'.'.join(labels)}"
    at = data.draw(st.integers(min_value=0, max_value=len(address)))

    with pytest.raises(InvalidEmail):
        normalise_email(address[:at] + character + address[at:])
