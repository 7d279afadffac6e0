"""Turn measured parity figures into the tables in docs/parity.md and README.md.

    PARITY_RESULTS=/tmp/parity.jsonl pytest parity_tests            # default suite
    PARITY_RESULTS=/tmp/parity.jsonl pytest parity_tests -m large   # large tier
    python -m parity_tests.report /tmp/parity.jsonl [more.jsonl]     # rewrites both tables

A cell the given results do not measure ("large tier", "–") keeps the figure the current
table has for that model (from an earlier `-m large` run), so a default-suite run does not
erase large-tier figures.
"""
from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BEGIN, END = "<!-- models:begin -->", "<!-- models:end -->"


def load(*paths: str) -> dict[str, dict]:
    rows: dict[str, dict] = {}
    for line in (ln for p in paths for ln in Path(p).read_text().splitlines()):
        if not line.strip():
            continue
        r = json.loads(line)
        m = rows.setdefault(r["model"], {"params": r.get("params")})
        if r["kind"] == "eval_full" or (r["kind"] == "eval" and m.get("eval_kind") != "eval_full"):
            m["eval_kind"] = r["kind"]
            m["eval"] = r
        elif r["kind"] == "train":
            m["train"] = r
    return rows


NOT_RUN = "large tier"  # no figure in the results file: the check runs in `pytest -m large`


def _e(x) -> str:
    return "–" if x is None else f"{x:.1e}"


def _sizes(logits: dict) -> str:
    return ", ".join(k.replace("x", "×") if k.split("x")[0] != k.split("x")[1] else k.split("x")[0] + "²"
                     for k in logits)


def _params(name: str, m: dict) -> str:
    n = m.get("params")
    if n is None:
        from parity_tests.test_parity import num_params
        n = num_params(name)
    return f"{n / 1e6:.1f}M"


def table(rows: dict[str, dict], detailed: bool) -> str:
    import flaxnets

    if detailed:
        head = ("| model | params | eval logits, fp32 (per size) | worst layer (of N compared) | train size "
                "| train logits | running stats | grads (worst) |\n|---|---:|---|---|---|---:|---:|---|\n")
    else:
        head = ("| model | params | eval logits, fp32 | eval sizes | worst layer, fp32 | train grads, fp64 |\n"
                "|---|---:|---:|---|---:|---:|\n")
    out = [head]
    for name in flaxnets.list_models():
        m = rows.get(name, {})
        ev, tr = m.get("eval"), m.get("train")
        p = _params(name, m)
        logits = ev["logits"] if ev else {}
        worst_logit = max(logits.values()) if logits else None
        layers = ev.get("layers") if ev else None
        if detailed:
            sizes = ", ".join(f"{_e(v)} @{k}" for k, v in logits.items()) or NOT_RUN
            lay = f"{_e(layers['worst_err'])} `{layers['worst_path']}` ({layers['compared']})" if layers else "–"
            if tr:
                out.append(f"| {name} | {p} | {sizes} | {lay} | {tr['size']} | {_e(tr['logits'])} "
                           f"| {_e(tr['running_stats'])} | {_e(tr['grads'])} `{tr['grads_worst_key']}` |\n")
            else:
                out.append(f"| {name} | {p} | {sizes} | {lay} | {NOT_RUN} | – | – | – |\n")
        else:
            out.append(f"| {name} | {p} | {_e(worst_logit) if ev else NOT_RUN} | {_sizes(logits) or '–'} "
                       f"| {_e(layers['worst_err'] if layers else None)} "
                       f"| {_e(tr['grads']) if tr else NOT_RUN} |\n")
    return "".join(out)


def _keep_old(new: str, old: str) -> str:
    """Rows of table `new`, each unmeasured cell filled from the same model's row in `old`."""
    def rows(text):
        return {line.split("|")[1].strip(): line for line in text.splitlines()
                if line.startswith("| ") and not line.startswith("| model")}
    before = rows(old)
    out = []
    for line in new.splitlines(keepends=True):
        name = line.split("|")[1].strip() if line.startswith("| ") else None
        if name in before and not line.startswith("| model"):
            cells, prev = line.rstrip("\n").split("|"), before[name].split("|")
            if len(cells) == len(prev):
                cells = [o if c.strip() in (NOT_RUN, "–") and o.strip() not in (NOT_RUN, "–") else c
                         for c, o in zip(cells, prev)]
                line = "|".join(cells) + "\n"
        out.append(line)
    return "".join(out)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("results", nargs="+", help="JSON lines written by the parity tests (PARITY_RESULTS)")
    args = ap.parse_args(argv)
    rows = load(*args.results)
    doc = ROOT / "docs" / "parity.md"
    text = doc.read_text() if doc.exists() else ""
    marker = "<!-- table -->"
    body = table(rows, detailed=True)
    if marker in text:
        body = _keep_old(body, text[text.index(marker):])
        text = text[: text.index(marker) + len(marker)] + "\n\n" + body
    else:
        text = "# Parity: measured errors\n\n" + marker + "\n\n" + body
    doc.write_text(text)
    readme = ROOT / "README.md"
    r = readme.read_text()
    if BEGIN in r and END in r:
        old = r[r.index(BEGIN):r.index(END)]
        r = re.sub(re.escape(BEGIN) + ".*?" + re.escape(END),
                   lambda _: BEGIN + "\n" + _keep_old(table(rows, detailed=False), old) + END, r, flags=re.S)
        readme.write_text(r)
    print(f"{len(rows)} models -> {doc.relative_to(ROOT)}, README.md")


if __name__ == "__main__":
    main()
