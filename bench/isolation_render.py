#!/usr/bin/env python3
"""bench/isolation.sh's CSVs (isolation_PART.csv, one row per measurement)
turned into what docs/BENCHMARKS.md shows: per part a markdown table with
the issue's goal next to the figure, and SVG bar charts (stdlib only).

  isolation_render.py OUTDIR [--svg-dir DIR] [--svg-prefix PATH]
      reads OUTDIR/isolation_*.csv, writes the charts into DIR (default
      OUTDIR) and prints the markdown block to paste (images linked as
      PATH/NAME.svg; PATH defaults to DIR).
  isolation_render.py --table PART CSV
      the short plain-text table isolation.sh prints last.
"""
import argparse
import csv
import glob
import math
import os
import sys
from collections import OrderedDict, defaultdict

GOALS = {"7x/1x": 6.0, "7x/whole": 5.0, "dyn 7x/whole": 0.85, "qos": 1.3,
         "recovery_s": 2.0, "reconfig_s": 1.0}


def load(paths):
    rows = []
    for p in paths:
        with open(p, newline="") as f:
            rows += list(csv.DictReader(f))
    return rows


def num(v):
    try:
        x = float(v)
        return x if math.isfinite(x) else None
    except (TypeError, ValueError):
        return None


def fmt(v, digits=2):
    if v is None:
        return "-"
    return ("%%.%df" % digits) % v


def modes_of(rows, case=None):
    """Modes with measurements (of CASE), in the order they ran."""
    seen = OrderedDict()
    for r in rows:
        if r["mode"] not in ("-", "") and r["case"] != "setup" and \
                (case is None or r["case"] == case):
            seen[r["mode"]] = True
    return list(seen)


def unavailable(rows, part):
    out = OrderedDict()
    for r in rows:
        if r["part"] == part and r["metric"] == "available" and r["value"] == "0":
            out[r["mode"]] = r["note"]
        if r["part"] == part and r["metric"] == "skipped":
            out[r["mode"]] = r["note"] or "skipped"
    return out


def header(rows):
    r = rows[0]
    return "%s, %s, driver %s, %s backend" % (r["date"], r["gpu"], r["driver"],
                                             r["backend"])


# ---- consolidation ------------------------------------------------------------

def best_within(rows, mode, case, budget):
    """Highest throughput among levels whose p99 is within the budget."""
    levels = defaultdict(dict)
    for r in rows:
        if r["part"] == "consolidation" and r["case"] == case and \
                (mode is None or r["mode"] == mode):
            levels[r["level"]][r["metric"]] = num(r["value"])
    best = None
    for lv, m in levels.items():
        if m.get("p99_ms") is not None and m["p99_ms"] <= budget and \
                m.get("infer_per_s") is not None:
            if best is None or m["infer_per_s"] > best[1]:
                best = (lv, m["infer_per_s"], m["p99_ms"])
    return best


def ratio(a, b):
    return a / b if a is not None and b else None


def consolidation(rows, budget):
    rows = [r for r in rows if r["part"] == "consolidation"]
    cases = sorted({r["case"] for r in rows if r["case"].endswith("x1g-b1")
                    and not r["case"].startswith("1x")})
    many = cases[0].split("x")[0] if cases else "7"
    whole_b1 = best_within(rows, None, "whole-b1", budget)
    whole_dyn = best_within(rows, None, "whole-dyn", budget)
    # GS_ISOL_WHOLE_AGAIN=1: the whole GPU once more, after the modes
    has_again = any(r["case"] == "whole-b1-again" for r in rows)
    whole_again = best_within(rows, None, "whole-b1-again", budget)
    has_direct = any(r["case"].endswith("-direct") for r in rows)
    out = []
    for mode in modes_of(rows, "1x1g-b1"):
        one = best_within(rows, mode, "1x1g-b1", budget)
        seven = best_within(rows, mode, many + "x1g-b1", budget)
        dyn = best_within(rows, mode, many + "x1g-dyn", budget)
        val = lambda b: b[1] if b else None
        out.append(OrderedDict([
            ("mode", mode), ("1x1g", val(one)), (many + "x1g", val(seven)),
            ("whole", val(whole_b1)),
            (many + "x/1x", ratio(val(seven), val(one))),
            (many + "x/whole", ratio(val(seven), val(whole_b1))),
            (many + "x dyn", val(dyn)), ("whole dyn", val(whole_dyn)),
            ("dyn " + many + "x/whole", ratio(val(dyn), val(whole_dyn)))]))
        if has_again:
            out[-1].update([
                ("whole again", val(whole_again)),
                (many + "x/whole again", ratio(val(seven), val(whole_again)))])
        # GS_ISOL_DIRECT=1: the same without the router, a client per worker
        one_d = best_within(rows, mode, "1x1g-direct", budget)
        seven_d = best_within(rows, mode, many + "x1g-direct", budget)
        if has_direct:
            out[-1].update([
                ("1x1g direct", val(one_d)), (many + "x1g direct", val(seven_d)),
                ("direct " + many + "x/1x", ratio(val(seven_d), val(one_d))),
                ("direct " + many + "x/whole", ratio(val(seven_d), val(whole_b1)))])
    return out, many


# ---- qos ------------------------------------------------------------------------

def qos(rows):
    rows = [r for r in rows if r["part"] == "qos"]
    out = []
    for mode in modes_of(rows):
        get = lambda case, inst, metric: next(
            (num(r["value"]) for r in rows if r["mode"] == mode and r["case"] == case
             and r["instance"] == inst and r["metric"] == metric), None)
        solo = get("solo", "victim", "p99_ms")
        if solo is None and get("noisy", "victim", "p99_ms") is None:
            continue
        noisy, paced = get("noisy", "victim", "p99_ms"), get("paced", "victim", "p99_ms")
        out.append(OrderedDict([
            ("mode", mode), ("solo p99", solo), ("noisy p99", noisy),
            ("noisy/solo", ratio(noisy, solo)),
            ("neighbours infer/s", get("noisy", "neighbours", "infer_per_s")),
            ("paced p99", paced), ("paced/solo", ratio(paced, solo)),
            ("paced neighbours infer/s", get("paced", "neighbours", "infer_per_s"))]))
    return out


# ---- faults, reconfig, memory (request timelines) -------------------------------

def windows(rows, part, mode):
    """{window: {target: {metric: value}}} from the load analysis rows."""
    w = defaultdict(lambda: defaultdict(dict))
    for r in rows:
        if r["part"] == part and r["mode"] == mode and "/" in r["case"]:
            case, win = r["case"].split("/", 1)
            w[win][r["instance"]][r["metric"]] = num(r["value"])
    return w


def event_instance(rows, part, mode, case):
    return next((r["instance"] for r in rows if r["part"] == part and r["mode"] == mode
                 and r["case"] == case and r["metric"] == "event"), None)


def metric(rows, part, mode, case, name):
    return next((num(r["value"]) for r in rows if r["part"] == part and r["mode"] == mode
                 and r["case"] == case and r["metric"] == name), None)


def others(win, hit):
    return {t: m for t, m in win.items() if t not in ("router", hit)}


def recovery(ms):
    vals = [m.get("recovery_s") for m in ms.values()]
    if not vals or any(v is None for v in vals):
        return None
    return -1.0 if any(v < 0 for v in vals) else max(vals)


def faults(rows):
    out = []
    for mode in modes_of([r for r in rows if r["part"] == "faults"]):
        w = windows(rows, "faults", mode)
        for event in ("fault", "kill9"):
            if event not in w:
                continue
            hit = event_instance(rows, "faults", mode, event)
            oth = others(w[event], hit)
            router = w[event].get("router", {})
            out.append(OrderedDict([
                ("mode", mode), ("event", event), ("hit", hit),
                ("failed on others", sum(m.get("failed") or 0 for m in oth.values())),
                ("failed on hit", (w[event].get(hit) or {}).get("failed")),
                ("failed via router", router.get("failed")),
                ("all serve again s", recovery(w[event])),
                ("router serves again s", router.get("recovery_s")),
                ("probe exit", metric(rows, "faults", mode, "fault", "probe_exit")
                 if event == "fault" else None)]))
    return out


def worst_p99(win):
    vals = [m.get("p99_ms") for t, m in win.items() if t != "router"
            and m.get("p99_ms") is not None]
    return max(vals) if vals else None


def reconfig(rows):
    out = []
    for mode in modes_of([r for r in rows if r["part"] == "reconfig"]):
        w = windows(rows, "reconfig", mode)
        failed = sum(m.get("failed") or 0 for win in ("create", "destroy")
                     for t, m in w.get(win, {}).items() if t != "router")
        out.append(OrderedDict([
            ("mode", mode),
            ("create s", metric(rows, "reconfig", mode, "create", "apply_s")),
            ("new serving s", metric(rows, "reconfig", mode, "create", "serving_s")),
            ("destroy s", metric(rows, "reconfig", mode, "destroy", "apply_s")),
            ("p99 before", worst_p99(w.get("baseline", {}))),
            ("p99 create", worst_p99(w.get("create", {}))),
            ("p99 destroy", worst_p99(w.get("destroy", {}))),
            ("failed on staying", failed),
            ("staying restarted", metric(rows, "reconfig", mode, "destroy",
                                         "staying_restarted"))]))
    return out


def memory(rows):
    out = []
    for mode in modes_of([r for r in rows if r["part"] == "memory"]):
        w = windows(rows, "memory", mode)
        note = next((r["note"] for r in rows if r["part"] == "memory" and r["mode"] == mode
                     and r["metric"] == "probe_exit"), "")
        refusal = next((r["note"] for r in rows if r["part"] == "memory" and r["mode"] == mode
                        and r["metric"] == "run_exit"), "")
        failed = sum(m.get("failed") or 0 for win in ("overalloc", "refusal")
                     for t, m in w.get(win, {}).items() if t != "router")
        out.append(OrderedDict([
            ("mode", mode),
            ("probe exit", metric(rows, "memory", mode, "overalloc", "probe_exit")),
            ("allocated MiB", metric(rows, "memory", mode, "overalloc", "allocated_mib")),
            ("run --memory exit", metric(rows, "memory", mode, "refusal", "run_exit")),
            ("others failed", failed),
            ("p99 before", worst_p99(w.get("baseline", {}))),
            ("p99 during", worst_p99(w.get("overalloc", {}))),
            ("probe says", note.split("; ", 1)[-1][:80]),
            ("run says", refusal[:80])]))
    return out


# ---- output -----------------------------------------------------------------------

def cell(v, key=""):
    if isinstance(v, float) and ("failed" in key or "exit" in key or "MiB" in key):
        return "%d" % v
    if isinstance(v, float):
        return fmt(v, 3 if abs(v) < 10 else 1)
    return "-" if v is None or v == "" else str(v)


def markdown(table):
    if not table:
        return "(no rows)\n"
    keys = list(table[0])
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    for r in table:
        lines.append("| " + " | ".join(cell(r[k], k).replace("|", "/") for k in keys) + " |")
    return "\n".join(lines) + "\n"


def plain(table):
    if not table:
        return "(no rows)\n"
    keys = list(table[0])
    cells = [[cell(r[k], k)[:60] for k in keys] for r in table]
    width = [max(len(k), *(len(c[i]) for c in cells)) for i, k in enumerate(keys)]
    line = lambda vals: "  ".join(v.ljust(width[i]) for i, v in enumerate(vals)).rstrip()
    return "\n".join([line(keys)] + [line(c) for c in cells]) + "\n"


def part_table(rows, part, budget):
    if part == "consolidation":
        return consolidation(rows, budget)[0]
    return {"qos": qos, "faults": faults, "reconfig": reconfig, "memory": memory}[part](rows)


def svg_bars(path, title, ylabel, groups, series, values, goal=None, goal_label=""):
    """Grouped bars: values[g][s] (None: no bar); a dashed goal line."""
    w, h, left, bottom, top = 760, 340, 70, 60, 40
    vmax = max([v for g in values for v in g if v is not None] + [goal or 0, 1e-9]) * 1.15
    plot_w, plot_h = w - left - 20, h - top - bottom
    colours = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948"]
    out = ['<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" '
           'font-family="sans-serif" font-size="12">' % (w, h),
           '<rect width="100%" height="100%" fill="white"/>',
           '<text x="%d" y="22" font-size="15">%s</text>' % (left, esc(title))]
    for i in range(6):
        v = vmax * i / 5
        y = top + plot_h - plot_h * i / 5
        out.append('<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="#ddd"/>' %
                   (left, left + plot_w, y, y))
        out.append('<text x="%d" y="%.1f" text-anchor="end">%s</text>' %
                   (left - 6, y + 4, "%.3g" % v))
    out.append('<text x="14" y="%d" transform="rotate(-90 14 %d)" text-anchor="middle">%s</text>'
               % (top + plot_h // 2, top + plot_h // 2, esc(ylabel)))
    gw = plot_w / max(1, len(groups))
    bw = gw * 0.8 / max(1, len(series))
    for gi, g in enumerate(groups):
        x0 = left + gi * gw + gw * 0.1
        for si, _ in enumerate(series):
            v = values[gi][si]
            if v is None:
                continue
            bh = plot_h * v / vmax
            out.append('<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s">'
                       '<title>%s %s: %.4g</title></rect>' %
                       (x0 + si * bw, top + plot_h - bh, bw * 0.92, bh,
                        colours[si % len(colours)], esc(g), esc(series[si]), v))
        out.append('<text x="%.1f" y="%d" text-anchor="middle">%s</text>' %
                   (left + gi * gw + gw / 2, top + plot_h + 18, esc(g)))
    if goal:
        y = top + plot_h - plot_h * goal / vmax
        out.append('<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="#c00" '
                   'stroke-dasharray="6 4"/>' % (left, left + plot_w, y, y))
        out.append('<text x="%d" y="%.1f" fill="#c00" text-anchor="end">%s</text>' %
                   (left + plot_w, y - 4, esc(goal_label)))
    for si, s in enumerate(series):
        x = left + si * 170
        out.append('<rect x="%d" y="%d" width="12" height="12" fill="%s"/>' %
                   (x, h - 22, colours[si % len(colours)]))
        out.append('<text x="%d" y="%d">%s</text>' % (x + 16, h - 12, esc(s)))
    out.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")


def esc(s):
    return str(s).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def charts(rows, budget, svg_dir):
    made = []
    cons, many = consolidation(rows, budget)
    if cons:
        p = os.path.join(svg_dir, "isolation-consolidation.svg")
        series = [many + "x1g / 1x1g", many + "x1g / whole GPU", "dynamic batching: " + many + "x1g / whole"]
        svg_bars(p, "ResNet-50 batch 1 within %g ms p99: consolidation ratios" % budget,
                 "ratio", [r["mode"] for r in cons], series,
                 [[r[many + "x/1x"], r[many + "x/whole"], r["dyn " + many + "x/whole"]]
                  for r in cons], goal=GOALS["7x/1x"], goal_label="goal 6x (1x1g)")
        made.append(("consolidation", p))
    q = qos(rows)
    if q:
        p = os.path.join(svg_dir, "isolation-qos.svg")
        svg_bars(p, "Victim p99 beside six batch-64 neighbours, over its p99 alone",
                 "p99 / solo p99", [r["mode"] for r in q],
                 ["neighbours closed loop", "neighbours paced"],
                 [[r["noisy/solo"], r["paced/solo"]] for r in q],
                 goal=GOALS["qos"], goal_label="goal 1.3x")
        made.append(("qos", p))
    fl = faults(rows)
    if fl:
        p = os.path.join(svg_dir, "isolation-faults.svg")
        modes = list(OrderedDict((r["mode"], 1) for r in fl))
        get = lambda m, e: next((r["all serve again s"] for r in fl
                                 if r["mode"] == m and r["event"] == e), None)
        svg_bars(p, "Time until every instance serves again (s; -1: never)",
                 "seconds", modes, ["illegal address (probe)", "kill -9 of a worker"],
                 [[get(m, "fault"), get(m, "kill9")] for m in modes],
                 goal=GOALS["recovery_s"], goal_label="goal 2 s")
        made.append(("faults", p))
    return made


TITLES = {
    "consolidation": "Consolidation (infer/s at the best concurrency whose p99 is within "
                     "the budget; goals: %sx/1x >= 6, %sx/whole >= 5, dynamic batching "
                     "%sx/whole >= 0.85)",
    "qos": "QoS (victim batch 1 beside six neighbours at batch 64; p99 in ms; goal: "
           "noisy/solo <= 1.3 with the best mode)",
    "faults": "Faults (requests failed per window; time until every instance serves "
              "again; goals: 0 failed on others with process, recovery < 2 s)",
    "reconfig": "Reconfiguration (one instance created then destroyed while the others "
                "serve; p99 in ms of the worst staying instance; goals: < 1 s, 0 failed)",
    "memory": "Memory (an allocation past the quota, and a process asking more than is "
              "left, beside serving instances; goals: a clear message, others unaffected)",
}


def render(outdir, svg_dir, prefix, budget):
    rows = load(sorted(glob.glob(os.path.join(outdir, "isolation_*.csv"))))
    if not rows:
        sys.exit("isolation_render: no isolation_*.csv in %s" % outdir)
    os.makedirs(svg_dir, exist_ok=True)
    made = dict(charts(rows, budget, svg_dir))
    print("### Isolation on soft instances (bench/isolation.sh)\n")
    print("%s. Raw rows: `isolation_PART.csv`; regenerate with "
          "`python3 bench/isolation_render.py OUTDIR`.\n" % header(rows))
    for part in ("consolidation", "qos", "faults", "reconfig", "memory"):
        prow = [r for r in rows if r["part"] == part]
        if not prow:
            continue
        many = consolidation(rows, budget)[1]
        title = TITLES[part] % ((many,) * 3) if part == "consolidation" else TITLES[part]
        print("#### " + title + "\n")
        print(markdown(part_table(rows, part, budget)))
        na = unavailable(rows, part)
        for m, why in na.items():
            print("- `%s`: %s" % (m, why))
        if na:
            print()
        if part in made:
            print("![%s](%s)\n" % (part, os.path.join(prefix, os.path.basename(made[part]))))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("outdir", nargs="?")
    ap.add_argument("--table", nargs=2, metavar=("PART", "CSV"))
    ap.add_argument("--svg-dir")
    ap.add_argument("--svg-prefix")
    ap.add_argument("--budget-ms", type=float, default=50.0)
    ap.add_argument("--date", help="--table: only the rows of the run stamped DATE "
                    "(a CSV that earlier runs appended to holds theirs too)")
    args = ap.parse_args()
    if args.table:
        part, path = args.table
        try:
            rows = [r for r in load([path]) if not args.date or r["date"] == args.date]
        except (OSError, KeyError) as e:
            print("isolation_render: %s: cannot read its rows (%s)" % (path, e), file=sys.stderr)
            return 1
        print("isolation %s: %s" % (part, header(rows) if rows else "no rows"))
        sys.stdout.write(plain(part_table(rows, part, args.budget_ms)))
        for m, why in unavailable(rows, part).items():
            print("%s: %s" % (m, why))
        return 0
    if not args.outdir:
        ap.error("OUTDIR or --table PART CSV")
    svg_dir = args.svg_dir or args.outdir
    render(args.outdir, svg_dir, args.svg_prefix or svg_dir, args.budget_ms)
    return 0


if __name__ == "__main__":
    sys.exit(main())
