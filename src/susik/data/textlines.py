"""Distractor text for synthetic worksheets: Korean/English problem sentences and problem numbers, rendered
as ink masks with the Nanum fonts (Debian `fonts-nanum`).

A rendered segment is a uint8 alpha mask (255 = full ink) whose rows span the font's ascender to descender,
so segments of one font size share a baseline at row `ascent` and line up when placed side by side.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

FONT_DIR = Path("/usr/share/fonts/truetype/nanum")
# The faces of Debian's fonts-nanum, which set-up installs (its coding faces left out). The optional
# fonts-nanum-extra puts 21 more in the same folder, handwriting among them: taking whatever is there would
# change the pages a seed makes from one machine to the next.
PRINT_FONTS = (
    "NanumBarunGothic.ttf", "NanumBarunGothicBold.ttf", "NanumGothic.ttf", "NanumGothicBold.ttf",
    "NanumMyeongjo.ttf", "NanumMyeongjoBold.ttf", "NanumSquareB.ttf", "NanumSquareR.ttf",
    "NanumSquareRoundB.ttf", "NanumSquareRoundR.ttf",
)

KOREAN_SENTENCES: tuple[str, ...] = (
    "다음 식을 간단히 하시오.",
    "x의 값을 구하시오.",
    "다음 방정식을 푸시오.",
    "다음 부등식의 해를 구하시오.",
    "다음 식을 전개하시오.",
    "다음 식을 인수분해하시오.",
    "함수의 최댓값과 최솟값을 구하시오.",
    "다음 그래프의 꼭짓점의 좌표를 구하시오.",
    "두 점 사이의 거리를 구하시오.",
    "다음 수열의 일반항을 구하시오.",
    "다음 극한값을 구하시오.",
    "다음 정적분의 값을 계산하시오.",
    "옳은 것만을 <보기>에서 있는 대로 고른 것은?",
    "다음 중 옳지 않은 것은?",
    "조건을 만족시키는 모든 실수 k의 값의 합은?",
    "이차방정식의 두 근을 α, β라 할 때,",
    "삼각형 ABC의 넓이를 구하시오.",
    "다음 연립방정식을 푸시오.",
    "a, b는 상수이다. (단, a > 0)",
    "다음 식의 값을 구하시오.",
    "주어진 식을 만족시키는 자연수 n의 개수는?",
    "확률을 구하시오. (풀이 과정을 쓰시오.)",
    "다음 행렬의 곱을 계산하시오.",
    "아래 그림과 같이 원 O에 내접하는 사각형이 있다.",
    "[3점]",
    "풀이)",
    "답:",
)

# (before, after) pairs that read naturally around an inline formula.
KOREAN_AROUND_FORMULA: tuple[tuple[str, str], ...] = (
    ("다음 식", "을 간단히 하시오."),
    ("방정식", "의 해를 구하시오."),
    ("함수", "의 최댓값을 구하시오."),
    ("", "일 때, x의 값을 구하시오."),
    ("등식", "이 성립하도록 하는 a의 값은?"),
    ("다항식", "을 인수분해하시오."),
    ("부등식", "을 만족시키는 정수의 개수는?"),
    ("", "의 값은?"),
    ("곡선", "위의 점에서의 접선의 방정식을 구하시오."),
    ("수열", "의 합을 구하시오."),
)

ENGLISH_SENTENCES: tuple[str, ...] = (
    "Simplify the following expression.",
    "Solve for x.",
    "Find the value of the expression.",
    "Evaluate the integral.",
    "Factor completely.",
    "Find all real solutions.",
    "Show your work.",
    "Which of the following is true?",
    "Compute the limit.",
    "Find the area of the triangle.",
    "Answer:",
)

ENGLISH_AROUND_FORMULA: tuple[tuple[str, str], ...] = (
    ("Simplify", "."),
    ("Solve", "for x."),
    ("If", ", find the value of a."),
    ("Let", "be a real number."),
    ("Evaluate", "."),
    ("Show that", "."),
)

_CIRCLED = "①②③④⑤⑥⑦⑧⑨⑩⑪⑫⑬⑭⑮⑯⑰⑱⑲⑳"
_HANGUL_ORDER = "가나다라마바사아자차카타파하"

# A worksheet keeps one numbering style; a style is an index into these.
NUMBER_STYLES = ("{n}.", "({n})", "circled", "{n})", "문제 {n}.")
SUB_NUMBER_STYLES = ("({n})", "circled", "{n})", "(hangul)")


def _label(template: str, index: int) -> str:
    if template == "circled":
        return _CIRCLED[index - 1] if index <= len(_CIRCLED) else f"({index})"
    if template == "(hangul)":
        return f"({_HANGUL_ORDER[(index - 1) % len(_HANGUL_ORDER)]})"
    return template.format(n=index)


def problem_number(index: int, style: int) -> str:
    """The label of problem `index` (1-based) in numbering style `style` (an index into NUMBER_STYLES)."""
    return _label(NUMBER_STYLES[style % len(NUMBER_STYLES)], index)


def sub_number(index: int, style: int) -> str:
    """The label of sub-problem `index` (1-based) in style `style` (an index into SUB_NUMBER_STYLES)."""
    return _label(SUB_NUMBER_STYLES[style % len(SUB_NUMBER_STYLES)], index)


def sentence(rng: np.random.Generator, korean_share: float = 0.8) -> str:
    """A whole distractor sentence, Korean with probability `korean_share`."""
    pool = KOREAN_SENTENCES if rng.random() < korean_share else ENGLISH_SENTENCES
    return pool[int(rng.integers(len(pool)))]


def around_formula(rng: np.random.Generator, korean_share: float = 0.8) -> tuple[str, str]:
    """Text to put before and after an inline formula."""
    pool = KOREAN_AROUND_FORMULA if rng.random() < korean_share else ENGLISH_AROUND_FORMULA
    return pool[int(rng.integers(len(pool)))]


def print_fonts(folder: Path) -> tuple[str, ...]:
    """Paths of the `PRINT_FONTS` present in `folder`, sorted."""
    return tuple(sorted(str(folder / name) for name in PRINT_FONTS if (folder / name).is_file()))


@lru_cache(maxsize=1)
def font_paths() -> tuple[str, ...]:
    """Installed fonts-nanum faces (sorted); empty when fonts-nanum is absent."""
    return print_fonts(FONT_DIR)


@lru_cache(maxsize=256)
def load_font(path: str | None, size: int) -> ImageFont.FreeTypeFont:
    """A font at `size` px; `None` (or a missing Nanum install) falls back to PIL's default font."""
    if path is None:
        warnings.warn(
            "fonts-nanum not found: distractor text uses PIL's default font (no Hangul)", stacklevel=2
        )
        return ImageFont.load_default(size)
    return ImageFont.truetype(path, size)


def pick_font(rng: np.random.Generator) -> str | None:
    """A random installed font path, or None when none is installed."""
    paths = font_paths()
    return paths[int(rng.integers(len(paths)))] if paths else None


@dataclass(frozen=True)
class TextMask:
    """A rendered text segment: `mask` rows run from the font's ascender line to its descender line."""

    mask: np.ndarray  # uint8, 255 = ink; may be a read-only cached array
    ascent: int  # baseline row within `mask`


# Text is rasterised once per (text, font) at this size and resized per page: with ~15 page font sizes a
# per-size cache would hold 15x the masks for the same hit rate.
REFERENCE_PX = 48


@lru_cache(maxsize=2048)
def _render_reference(text: str, font_path: str | None) -> TextMask:
    font = load_font(font_path, REFERENCE_PX)
    ascent, descent = font.getmetrics()
    left, _, right, _ = font.getbbox(text, anchor="ls")
    width = max(1, int(np.ceil(right - min(left, 0))))
    canvas = Image.new("L", (width, ascent + descent), 0)
    ImageDraw.Draw(canvas).text((-min(left, 0), ascent), text, fill=255, font=font, anchor="ls")
    mask = np.asarray(canvas)
    mask.flags.writeable = False
    return TextMask(mask=mask, ascent=ascent)


def render_text(text: str, font_path: str | None, size: int) -> TextMask:
    """Render one text segment at `size` px as an ink mask (from a cached rendering at REFERENCE_PX)."""
    reference = _render_reference(text, font_path)
    if size == REFERENCE_PX:
        return reference
    scale = size / REFERENCE_PX
    height, width = reference.mask.shape
    mask = cv2.resize(
        reference.mask,
        (max(1, round(width * scale)), max(1, round(height * scale))),
        interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR,
    )
    return TextMask(mask=mask, ascent=round(reference.ascent * scale))
