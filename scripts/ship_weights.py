"""Make a trained model.pt the bundle's shipped weights (half precision, recorded in metadata.json).

    python scripts/ship_weights.py \\
        docs/results/recipe/busi_busbra/wide_head/runs/attention_vgg16_ce_logcosh/seed_0/models/model.pt \\
        --bundle bundle --trained-on "docs/results/lists/busi_busbra.json of the monai-bus repository: ..."

The shipped file's SHA-256 and training data go into ``configs/metadata.json`` ``weights``
(:func:`monai_bus.weights.ship`); training then refuses to overwrite it.
"""

import argparse
import json

from monai_bus.weights import ship

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("trained", help="model.pt written by training, with its record model.json beside it")
parser.add_argument("--bundle", default="bundle", help="bundle folder (default: %(default)s)")
parser.add_argument("--trained-on", help="the training data in words (default: the record's)")
args = parser.parse_args()
print(json.dumps(ship(args.trained, args.bundle, args.trained_on), indent=1))
