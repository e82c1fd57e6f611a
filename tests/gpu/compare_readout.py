#!/usr/bin/env python3
"""Compares three readings of the MIG GPU-instance profiles of each GPU:
nvidia-smi's tables (`nvidia-smi mig -lgip` and `-lgipp`), what gpuslice's
NVML shim reads (tests/gpu/nvml_record's JSON) and gpuslice's catalog table
for that model (`gpuslice --json profiles --gpu MODEL`). Profile IDs, names,
total instances, SMs, CE, DEC, ENC, JPEG, OFA and placements must be equal;
memory must agree within nvidia-smi's rounding (2 decimals of GiB) between
nvidia-smi and NVML, and within 1% between NVML and the table.

Prints a table and exits 0 when everything agrees, 1 on any mismatch, 2 on
bad input. Where nvidia-smi lists no profiles (some drivers print "No
MIG-enabled devices found" with MIG off) NVML is compared with the table
only, and the output says so. Standard library only.
"""
import argparse
import json
import re
import sys

FIELDS = ("name", "instances", "sms", "ce", "dec", "enc", "jpeg", "ofa",
          "placements")

ROW1 = re.compile(r"^\|\s*(\d+)\s+MIG\s+(\S+)\s+(\d+)\s+(\d+)/(\d+)\s+"
                  r"([\d.]+)\s+(\S+)\s+(\d+)\s+(\d+)\s+(\d+)\s*\|")
ROW2 = re.compile(r"^\|\s+(\d+)\s+(\d+)\s+(\d+)\s*\|\s*$")
PLACEMENT = re.compile(r"GPU\s+(\d+)\s+Profile ID\s+(\d+)\s+Placements?\s*:"
                       r"\s*\{([\d,\s]*)\}\s*:\s*(\d+)")


def parse_lgip(text):
    """{gpu: {profile id: {...}}} from `nvidia-smi mig -lgip`; raises
    ValueError on a profile row it cannot read (a changed table layout)."""
    out, last = {}, None
    for line in text.splitlines():
        m = ROW1.match(line)
        if not m and re.match(r"^\|\s*\d+\s+MIG\s", line):
            raise ValueError("cannot parse nvidia-smi row: " + line.strip())
        if m:
            gpu, pid = int(m.group(1)), int(m.group(3))
            last = {"name": m.group(2), "instances": int(m.group(5)),
                    "gib": float(m.group(6)), "sms": int(m.group(8)),
                    "dec": int(m.group(9)), "enc": int(m.group(10))}
            out.setdefault(gpu, {})[pid] = last
            continue
        m = ROW2.match(line)
        if m and last is not None:
            last.update(ce=int(m.group(1)), jpeg=int(m.group(2)),
                        ofa=int(m.group(3)))
            last = None
    return out


def parse_lgipp(text):
    """{gpu: {profile id: "starts:size"}} from `nvidia-smi mig -lgipp`."""
    out = {}
    for m in PLACEMENT.finditer(text):
        starts = sorted(int(s) for s in m.group(3).replace(" ", "").split(",")
                        if s)
        out.setdefault(int(m.group(1)), {})[int(m.group(2))] = \
            placement_text(starts, int(m.group(4)))
    return out


def placement_text(starts, size):
    return "{%s}:%s" % (",".join(str(s) for s in starts), size)


def strip_mig(name):
    return name[4:] if name.startswith("MIG ") else name


def nvml_profiles(gpu):
    """{profile id: {...}} of one GPU in nvml_record's JSON (first index of
    a profile ID, as gpuslice keeps it)."""
    out = {}
    for e in gpu.get("gi_profiles", []):
        info = e.get("info")
        if e.get("rc") != 0 or not info or info["id"] in out:
            continue
        pl = e.get("placements", {})
        placements = None
        if pl.get("rc") == 0:
            lst = pl.get("list", [])
            size = lst[0]["size"] if lst else 0
            placements = placement_text(sorted(p["start"] for p in lst), size)
        out[info["id"]] = {
            "name": strip_mig(info["name"]), "instances": info["instances"],
            "mib": info["memory_mib"], "sms": info["sms"],
            "ce": info["copy_engines"], "dec": info["decoders"],
            "enc": info["encoders"], "jpeg": info["jpegs"],
            "ofa": info["ofas"], "placements": placements,
            "index": e["index"]}
    return out


def table_profiles(doc):
    """{model: {profile id: {...}}} from `gpuslice --json profiles`."""
    out = {}
    for dev in doc.get("devices", []):
        profs = {}
        for p in dev.get("profiles", []):
            profs[p["id"]] = {
                "name": p["name"], "instances": p["max_count"],
                "mib": p["memory_mib"], "sms": p["sms"],
                "ce": p["copy_engines"], "dec": p["decoders"],
                "enc": p.get("encoders", 0), "jpeg": p["jpegs"],
                "ofa": p["ofas"],
                "placements": placement_text(sorted(p["starts"]),
                                             p["memory_slices"])}
        out[dev["model"]] = profs
    return out


def compare_gpu(index, gpu, smi, smi_pl, table, model, have_smi):
    """Prints one GPU's table; returns the number of mismatches."""
    nv = nvml_profiles(gpu)
    def order(pid):  # nvidia-smi's order: memory, then SMs, +me last
        row = nv.get(pid) or smi.get(pid) or (table or {}).get(pid)
        return (row.get("mib", row.get("gib", 0) * 1024), row.get("sms", 0),
                row.get("name", ""), pid)
    ids = sorted(set(nv) | set(smi) | set(table or {}), key=order)
    print("GPU %d: %s, gpuslice table %s%s" % (
        index, gpu.get("name", "?"), model or "none",
        "" if have_smi else "; nvidia-smi lists no profiles: NVML vs "
        "table only"))
    print("  %-4s %-12s %4s %8s %4s %3s %3s %3s %4s %3s  %-18s %s" % (
        "ID", "NAME", "INST", "MiB", "SMS", "CE", "DEC", "ENC", "JPEG", "OFA",
        "PLACEMENTS", "RESULT"))
    bad = 0
    for pid in ids:
        n, s, t = nv.get(pid), smi.get(pid), (table or {}).get(pid)
        if s is not None:
            s = dict(s, placements=smi_pl.get(pid))
        problems = []
        if n is None:
            problems.append("NVML lacks it")
        if have_smi and s is None:
            problems.append("nvidia-smi lacks it")
        if table is not None and t is None:
            problems.append("table lacks it")
        if n is not None:
            for f in FIELDS:
                if f == "name" and not n[f]:
                    continue  # v1-only drivers give NVML no name
                if s is not None and s.get(f) != n[f]:
                    problems.append("%s: nvidia-smi %s, NVML %s" %
                                    (f, s.get(f), n[f]))
                if t is not None and t[f] != n[f]:
                    problems.append("%s: table %s, NVML %s" % (f, t[f], n[f]))
            if s is not None and abs(s["gib"] * 1024 - n["mib"]) > 6:
                problems.append("memory: nvidia-smi %.2f GiB, NVML %d MiB" %
                                (s["gib"], n["mib"]))
            if t is not None and abs(t["mib"] - n["mib"]) > 0.01 * n["mib"]:
                problems.append("memory: table %d MiB, NVML %d MiB (>1%%)" %
                                (t["mib"], n["mib"]))
        row = n or s or t
        bad += bool(problems)
        print("  %-4d %-12s %4s %8s %4s %3s %3s %3s %4s %3s  %-18s %s" % (
            pid, row.get("name"), row.get("instances"),
            row.get("mib", "%.0f" % (row.get("gib", 0) * 1024)),
            row.get("sms"), row.get("ce"), row.get("dec"), row.get("enc"),
            row.get("jpeg"), row.get("ofa"), row.get("placements"),
            "ok" if not problems else "MISMATCH: " + "; ".join(problems)))
    return bad


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lgip", required=True, help="nvidia-smi mig -lgip output")
    ap.add_argument("--lgipp", required=True,
                    help="nvidia-smi mig -lgipp output")
    ap.add_argument("--nvml", required=True, help="nvml_record's JSON")
    ap.add_argument("--gpuslice", action="append", default=[],
                    help="gpuslice --json profiles --gpu MODEL (repeatable)")
    ap.add_argument("--model", help="table model for every GPU (default: "
                    "the gpuslice_table nvml_record found)")
    args = ap.parse_args()
    try:
        with open(args.lgip, encoding="utf-8", errors="replace") as f:
            lgip_text = f.read()
        with open(args.lgipp, encoding="utf-8", errors="replace") as f:
            lgipp_text = f.read()
        with open(args.nvml, encoding="utf-8") as f:
            nvml = json.load(f)
        tables = {}
        for path in args.gpuslice:
            with open(path, encoding="utf-8") as f:
                tables.update(table_profiles(json.load(f)))
    except (OSError, ValueError, KeyError) as e:
        print("compare_readout: %s" % e, file=sys.stderr)
        return 2
    try:
        lgip, lgipp = parse_lgip(lgip_text), parse_lgipp(lgipp_text)
    except ValueError as e:
        print("compare_readout: %s" % e)
        return 1
    if not lgip:
        first = (lgip_text.strip().splitlines() or ["(no output)"])[0]
        print("nvidia-smi mig -lgip listed no profiles (%s): comparing NVML "
              "with gpuslice's table only" % first.strip())
    bad, compared = 0, 0
    for gpu in nvml.get("gpus", []):
        index = gpu.get("index", 0)
        if not nvml_profiles(gpu) and index not in lgip:
            print("GPU %d: %s offers no MIG profiles: skipped" %
                  (index, gpu.get("name", "?")))
            continue
        model = args.model or gpu.get("gpuslice_table")
        table = tables.get(model) if model else None
        if model and table is None:
            print("GPU %d: no gpuslice profiles given for model %s" %
                  (index, model))
            bad += 1
        bad += compare_gpu(index, gpu, lgip.get(index, {}),
                           lgipp.get(index, {}), table, model, bool(lgip))
        compared += 1
    if compared == 0:
        print("no MIG-capable GPU to compare")
        return 1
    print("readout: %s (%d mismatching profile%s)" % (
        "all sources agree" if bad == 0 else "MISMATCH", bad,
        "" if bad == 1 else "s"))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
