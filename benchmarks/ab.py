"""Before/after in one run: a benchmark script under two source trees, alternating, with ratios.

Runs ``python TREE/benchmarks/SCRIPT ARGS`` with ``PYTHONPATH=TREE/src`` for the baseline checkout
(``--before``, e.g. ``git worktree add /tmp/before REV``) and for this tree, ``--rounds`` times each
in the order B A B A ..., so both see the same machine load. ``--same-script`` runs this tree's script
against both source trees (for scripts that only use the public API). Prints JSON: every run's
output (the last JSON object on its stdout), the load average, and for every number both outputs
hold, the median after / median before.

    python benchmarks/ab.py --before /tmp/before --same-script query_latency.py --n 30000
    python benchmarks/ab.py --before /tmp/before dedup_scale.py --grouping 20000
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from bench import emit

HERE = Path(__file__).resolve().parent.parent


def run(tree: Path, script_tree: Path, script: str, args: list[str]) -> dict:
    env = {**os.environ, "PYTHONPATH": str(tree / "src")}
    proc = subprocess.run([sys.executable, str(script_tree / "benchmarks" / script), *args], env=env,
                          cwd=script_tree / "benchmarks", capture_output=True, text=True, check=True)
    text = proc.stdout
    return json.loads(text[text.rindex("\n{") + 1 if "\n{" in text else text.index("{"):])


def numbers(tree, prefix: str = "") -> dict[str, float]:
    """Every numeric leaf of a JSON tree by its dotted path."""
    if isinstance(tree, dict):
        return {k: v for key, value in tree.items() for k, v in numbers(value, f"{prefix}{key}.").items()}
    if isinstance(tree, (int, float)) and not isinstance(tree, bool):
        return {prefix[:-1]: float(tree)}
    return {}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", type=Path, required=True, help="the baseline checkout")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--same-script", action="store_true", help="run this tree's script under both")
    ap.add_argument("script")
    ap.add_argument("--out", type=Path, help="also write the JSON here")
    ap.add_argument("args", nargs=argparse.REMAINDER)
    args = ap.parse_args()
    before = args.before.resolve()
    runs: dict[str, list] = {"before": [], "after": []}
    load = [os.getloadavg()]
    for _ in range(args.rounds):
        for name, tree in (("before", before), ("after", HERE)):
            out = run(tree, HERE if args.same_script else tree, args.script, args.args)
            runs[name].append(out)
            load.append(os.getloadavg())
            print(json.dumps({name: out}), file=sys.stderr, flush=True)
    medians = {name: {} for name in runs}
    for name, outs in runs.items():
        leaves = [numbers(o) for o in outs]
        medians[name] = {k: statistics.median(leaf[k] for leaf in leaves) for k in set.intersection(
            *(set(leaf) for leaf in leaves))}
    ratio = {k: round(medians["after"][k] / medians["before"][k], 3)
             for k in sorted(set(medians["after"]) & set(medians["before"])) if medians["before"][k]}
    emit({"benchmark": args.script, "args": args.args, "rounds": args.rounds, "cpu_count": os.cpu_count(),
          "loadavg": [[round(x, 2) for x in la] for la in load], "runs": runs, "after_over_before": ratio},
         args.out, indent=1)


if __name__ == "__main__":
    main()
