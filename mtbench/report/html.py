"""The page: plain HTML with its CSS inline, no script, no font or file from the network; figures are ``<img>``
of PNG files beside it, each linked to its PDF."""
from __future__ import annotations

from html import escape
from typing import Any

from mtbench.latex import best_per_column, is_best
from mtbench.leaderboard import MISSING, Table, cell_values, headers

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;margin:0 auto;max-width:1200px;
padding:1em 1.5em;color:#222;line-height:1.4}
h1{font-size:1.5em}h2{font-size:1.25em;border-bottom:2px solid #4477AA;padding-bottom:.2em;margin-top:2em}
h3{font-size:1.05em;margin-top:1.5em}
table{border-collapse:collapse;margin:.5em 0;font-size:.88em}
th,td{padding:.25em .6em;text-align:right;border-bottom:1px solid #ddd;white-space:nowrap}
th{border-bottom:2px solid #444;background:#f4f4f4}td:first-child,th:first-child{text-align:left}
tr.trivial td{color:#666;border-top:1px solid #444}
.figs{display:flex;flex-wrap:wrap;gap:1em;align-items:flex-start}
figure{margin:0;flex:0 1 560px;min-width:300px}figure.wide{flex:1 1 100%}
figure img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{font-size:.8em;color:#555}
.note{color:#555;font-size:.9em}.warn{color:#a33}
ul.notes li{font-size:.9em}
details pre{font-size:.75em;background:#f7f7f7;padding:.5em;overflow-x:auto;max-width:100%}
nav ul{columns:2}
code{background:#f3f3f3;padding:0 .2em}
"""


def leaderboard_table(table: Table) -> str:
    best = best_per_column(table)
    head = "".join(f"<th>{escape(h)}</th>" for h in ["Method", "Seeds"] + headers(table))
    rows = []
    for row in table.rows:
        cells = [f"<td><b>{escape(row['method'])}</b></td>", f"<td>{escape(str(row['seeds']))}</td>"]
        for v, b in zip(cell_values(table, row), best):
            mean, std, digits = v
            if mean is None or mean != mean:
                text = MISSING
            else:
                text = f"{mean:.{digits}f}"
                if is_best(row, v, b):
                    text = f"<b>{text}</b>"
                if std == std and std is not None:
                    text += f" ± {std:.{digits}f}"
            cells.append(f"<td>{text}</td>")
        cls = ' class="trivial"' if row["method"].startswith("trivial") else ""
        rows.append(f"<tr{cls}>{''.join(cells)}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def figure(png: str, caption: str, pdf: str | None = None, wide: bool = False) -> str:
    link = f' (<a href="{escape(pdf)}">PDF</a>)' if pdf else ""
    cls = ' class="wide"' if wide else ""
    return (f'<figure{cls}><img src="{escape(png)}" alt="{escape(caption)}" loading="eager">'
            f"<figcaption>{escape(caption)}{link}</figcaption></figure>")


def figures(items: list[tuple[str, str]], wide: bool = False) -> str:
    """(png path relative to the page, caption); each PNG has its PDF beside it. ``wide``: one per line."""
    return '<div class="figs">' + "".join(figure(p, c, p[:-4] + ".pdf", wide) for p, c in items) + "</div>"


def bullet_list(items: list[str], cls: str = "notes") -> str:
    return f'<ul class="{cls}">' + "".join(f"<li>{escape(i)}</li>" for i in items) + "</ul>"


def simple_table(head: list[str], rows: list[list[str]]) -> str:
    """A table of already-escaped cells."""
    h = "".join(f"<th>{c}</th>" for c in head)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{h}</tr></thead><tbody>{body}</tbody></table>"


def failure(record: dict[str, Any]) -> str:
    err = escape(str(record.get("error", "no error recorded")))
    tb = record.get("traceback")
    what = escape(f"{record.get('method', '?')} seed {record.get('seed', '?')} ({record['run_id']})")
    more = f"<details><summary>traceback</summary><pre>{escape(tb)}</pre></details>" if tb else ""
    return f"<li><b>{what}</b>: <span class=\"warn\">{err}</span>{more}</li>"


def page(title: str, intro: str, nav: list[tuple[str, str]], body: str) -> str:
    links = "".join(f'<li><a href="#{escape(a)}">{escape(t)}</a></li>' for a, t in nav)
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">"
            f"<title>{escape(title)}</title><style>{CSS}</style></head><body>"
            f"<h1>{escape(title)}</h1>{intro}<nav><ul>{links}</ul></nav>{body}</body></html>\n")
