"""Two localiser bundles' time per image, and its ratio, measured in one run.

    python benchmarks/localiser_time.py localiser runs/localiser_most_probable [--calls 10]

Each of the four shipped sample images (``monai_bus/samples``) goes through
:meth:`monai_bus.localiser.LesionLocaliser.locate` of each bundle ``--calls`` times, the bundles
alternating call by call so that both see the same machine; one warm-up call each first. Prints each
bundle's median seconds per call over all images and calls, and the second's median over the first's.
Run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from monai_bus.localiser import LesionLocaliser

SAMPLES = Path(__file__).resolve().parents[1] / "monai_bus" / "samples"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundles", nargs=2, help="two localiser bundle folders")
    parser.add_argument("--calls", type=int, default=10, help="timed calls per image and bundle")
    args = parser.parse_args()
    localisers = [LesionLocaliser(bundle, device="cpu") for bundle in args.bundles]
    images = sorted(SAMPLES.glob("*.png"))
    seconds = {bundle: [] for bundle in args.bundles}
    for image in images:
        for localiser in localisers:
            localiser.locate(image)
        for _ in range(args.calls):
            for bundle, localiser in zip(args.bundles, localisers):
                start = time.perf_counter()
                localiser.locate(image)
                seconds[bundle].append(time.perf_counter() - start)
    medians = [statistics.median(seconds[bundle]) for bundle in args.bundles]
    for bundle, median in zip(args.bundles, medians):
        print(f"{bundle}: median {1000 * median:.1f} ms per image ({len(images)} images x {args.calls} calls)")
    print(f"{args.bundles[1]} / {args.bundles[0]}: {medians[1] / medians[0]:.3f}")


if __name__ == "__main__":
    main()
