"""Leaderboard tables as LaTeX for papers: booktabs rules, mean ± std, ↑/↓ in the header, the best value of each
column in bold (compared as printed, so a tie is bold twice; the trivial row never competes)."""
from __future__ import annotations

import math
from typing import Any

from mtbench.leaderboard import MISSING, Table, cell_values, extra_columns, headers

#: direction of the columns after the tasks' (True: higher is better)

_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
            "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}
_SYMBOLS = {"↑": r"$\uparrow$", "↓": r"$\downarrow$", "±": r"$\pm$", "Δ": r"$\Delta$", "°": r"$^\circ$",
            "·": r"$\cdot$", "—": "--", "−": "$-$", "×": r"$\times$"}


def escape(text: str) -> str:
    """Plain text (names, titles, headers) → LaTeX that compiles with no extra package but booktabs."""
    return "".join(_SPECIAL.get(ch, _SYMBOLS.get(ch, ch)) for ch in str(text))


def _cell(mean: float, std: float, digits: int, bold: bool) -> str:
    if mean is None or not math.isfinite(mean):
        return "--"
    text = f"{mean:.{digits}f}"
    if bold:
        text = rf"\textbf{{{text}}}"
    if std is not None and math.isfinite(std):
        text += rf" $\pm$ {std:.{digits}f}"
    return text


def competes(row: dict[str, Any]) -> bool:
    return not row["method"].startswith("trivial")


def best_per_column(table: Table) -> list[float | None]:
    """The best value of each numeric column as printed (rounded to the column's decimals); None where fewer than
    two rows have a number. The trivial row does not compete."""
    higher = [c.higher_is_better for c in table.columns] + [hib for _, _, _, hib in extra_columns(table)]
    best: list[float | None] = []
    for i, hib in enumerate(higher):
        printed = []
        for r in filter(competes, table.rows):
            mean, _, digits = cell_values(table, r)[i]
            if mean is not None and math.isfinite(mean):
                printed.append(round(mean, digits))
        best.append((max(printed) if hib else min(printed)) if len(printed) > 1 else None)
    return best


def is_best(row: dict[str, Any], value: tuple[float, float, int], best: float | None) -> bool:
    mean, _, digits = value
    return competes(row) and best is not None and mean is not None and math.isfinite(mean) \
        and round(mean, digits) == best


def to_latex(table: Table) -> str:
    best = best_per_column(table)
    cols = "ll" + "r" * len(best)
    lines = [f"% {table.title}", r"% needs \usepackage{booktabs}", r"\begin{table}[t]", r"\centering",
             rf"\caption{{{escape(table.title)}}}", rf"\label{{tab:{table.slug}}}",
             rf"\begin{{tabular}}{{{cols}}}", r"\toprule",
             " & ".join(["Method", "Seeds"] + [escape(h) for h in headers(table)]) + r" \\", r"\midrule"]
    for row in table.rows:
        if row["method"].startswith("trivial"):
            lines.append(r"\midrule")
        cells = [escape(row["method"]), escape(str(row["seeds"]))]
        for v, b in zip(cell_values(table, row), best):
            cells.append(_cell(*v, is_best(row, v, b)))
        lines.append(" & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines) + "\n"


def to_latex_document(tables: list[Table], source: Any) -> str:
    """Every table, one after the other, with a comment saying where the numbers came from."""
    head = (f"% mtbench leaderboard, generated from run records by `python bench.py leaderboard {source} "
            f"--format latex`.\n% Mean ± sample std over seeds; '{MISSING}' is printed as '--'.\n")
    return head + "\n".join(to_latex(t) for t in tables)
