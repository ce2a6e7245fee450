"""Benchmark a vitlab config against timm: ``python tools/bench.py CONFIG --timm NAME`` (= ``vitlab bench``)."""

import argparse
import sys

from vitlab.bench import add_arguments, run

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    add_arguments(parser)
    sys.exit(run(parser.parse_args()))
