"""Parses a Prometheus text exposition (a file, or - for stdin) with
prometheus_client's own parser (Debian's python3-prometheus-client) and
prints it as JSON: {family: {"type": T, "help": H, "samples": [[labels,
value], ...]}}. A text the parser refuses exits 1 with its message."""
import json
import sys

from prometheus_client.parser import text_string_to_metric_families


def main():
    text = sys.stdin.read() if sys.argv[1] == "-" else open(sys.argv[1]).read()
    out = {}
    try:
        for fam in text_string_to_metric_families(text):
            out[fam.name] = {
                "type": fam.type,
                "help": fam.documentation,
                "samples": [[s.labels, s.value] for s in fam.samples],
            }
    except Exception as e:  # the parser raises ValueError and friends
        print("prometheus_client refused the text: %s" % e, file=sys.stderr)
        sys.exit(1)
    json.dump(out, sys.stdout)


main()
