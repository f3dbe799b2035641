"""Validation pairs made as derain-synth's own (short side 480, fixed seeds), from the corpus's val photos.

    python scripts/make_derain_synth_val.py CORPUS    # writes CORPUS/derain-synth-val/{light,medium,heavy}
"""

import sys
from pathlib import Path

from derain.data.benchmark import BENCHMARK_SEED, BENCHMARK_SHORT_SIDE, make_pairs

corpus = Path(sys.argv[1])
for number, preset in enumerate(("light", "medium", "heavy")):
    count = make_pairs(
        corpus / "photos" / "val", corpus / "derain-synth-val" / preset, preset=preset,
        seed=BENCHMARK_SEED + 100 + number, short_side=BENCHMARK_SHORT_SIDE,
    )
    print(f"{corpus}/derain-synth-val/{preset}: {count} pairs")
