"""one_line's shortcut for text with nothing to clean answers as clean_text does."""

import itertools
import random

from newsletter.core.text import clean_text, one_line

ASCII = [chr(i) for i in range(128)]
OTHER = ["\u2028", "\u2029", "\x85", "\xa0", "é", "\u202e", "\ufeff", "\u3000", "李"]


def test_one_line_matches_clean_text_on_every_pair_of_characters():
    for a, b in itertools.product(ASCII + OTHER, repeat=2):
        for text in (a + b, f" {a}{b} ", f"{a} {b}", f"{a}  {b}"):
            assert one_line(text) == clean_text(text), repr(text)


def test_one_line_matches_clean_text_on_generated_names():
    rng = random.Random(5)
    printable = ASCII[32:127]
    for _ in range(50_000):
        pool = ASCII + OTHER if rng.random() < 0.3 else printable
        text = "".join(rng.choice(pool) for _ in range(rng.randint(0, 16)))
        assert one_line(text) == clean_text(text), repr(text)
