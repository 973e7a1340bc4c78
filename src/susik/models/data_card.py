"""The model card's data section, rendered from the sources and licences a checkpoint recorded while it
trained (so the card states what actually trained the model, not what a config meant to use)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

_NON_COMMERCIAL = re.compile(r"\bNC\b|non-?commercial|research", re.IGNORECASE)
_SHARE_ALIKE = re.compile(r"\bSA\b|share-?alike", re.IGNORECASE)
_UNKNOWN = re.compile(r"unknown|unspecified", re.IGNORECASE)
_USER_UPLOADS = "susik-online:"  # exported user corrections (see susik.serve.online)


def data_section(sources: Iterable[Mapping[str, str]]) -> list[str]:
    """Markdown lines: a table of source, licence and samples, then what the licences allow together.

    `sources` are provenance records `{"name", "license"(, "samples", "manifest")}`; records of one source
    under one licence are summed over manifests. The verdict reads the licence texts as recorded: a
    licence marked NC / non-commercial / research restricts use, "unknown" needs review.
    """
    totals: dict[tuple[str, str], int | None] = {}
    for source in sources:
        key = (source.get("name") or "?", source.get("license") or "unknown")
        samples = source.get("samples")
        count = int(samples) if samples is not None and str(samples).isdigit() else None
        before = totals.get(key, 0)
        totals[key] = None if before is None or count is None else before + count
    lines = ["## Training data and licences", ""]
    if not totals:
        return [*lines, "- No training sources were recorded with this model: data and licences unknown."]
    lines += [
        "Generated from the sources and licences the training run recorded.",
        "",
        "| source | licence | samples |",
        "|---|---|---|",
    ]
    lines += [
        f"| {_cell(name)} | {_cell(license)} | {'—' if count is None else f'{count:,}'} |"
        for (name, license), count in totals.items()
    ]
    lines += ["", *_verdict(list(totals))]
    return lines


def _verdict(pairs: list[tuple[str, str]]) -> list[str]:
    restricted = [name for name, license in pairs if _NON_COMMERCIAL.search(license)]
    unknown = [name for name, license in pairs if _UNKNOWN.search(license)]
    share_alike = [name for name, license in pairs if _SHARE_ALIKE.search(license)]
    users = [name for name, _ in pairs if name.startswith(_USER_UPLOADS)]
    lines = []
    if restricted:
        lines.append(f"- **Research and non-commercial use only**, because of: {', '.join(restricted)}.")
    elif unknown:
        lines.append("- **Review before any commercial use**: some licences are unknown.")
    else:
        lines.append("- No recorded licence restricts commercial use; each licence's own terms still apply.")
    if unknown:
        lines.append(f"- Licence unknown: {', '.join(unknown)}.")
    if share_alike:
        lines.append(f"- Share-alike terms may extend to the weights: {', '.join(share_alike)}.")
    if users:
        lines.append(
            f"- User uploads ({len(users)} source{'s' if len(users) != 1 else ''}): only photos whose users "
            "consented to training; a user's purge removes them from later dataset versions, not from these "
            "weights."
        )
    return lines


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")
