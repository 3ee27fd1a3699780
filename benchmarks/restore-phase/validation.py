"""Phase retrieval on validation digits 500-515: ``python validation.py METHOD:STEPS[:OPTION=VALUE]...``.

One sample per digit, sigma_y = 0.05, seed 0; prints the PSNR of the samples registered to the truth
(``posteria.restore.restore``) and their data consistency.
"""

import sys
import time

import torch

from posteria.data import load_dataset
from posteria.lab.fit import restoration_prior
from posteria.operators import get_operator
from posteria.restore import measure, restore

torch.set_num_threads(1)
prior, _ = restoration_prior("mnist")
truth = load_dataset(prior.card["data"], "test")[0][500:516]
operator = get_operator("phase", (1, 28, 28), 0.05)
y = measure(operator, truth, 0)
for spec in sys.argv[1:]:
    method, steps, *given = spec.split(":")
    options = {k: float(v) if "." in v else int(v) for k, v in (item.split("=") for item in given)}
    start = time.time()
    metrics = restore(prior, operator, y, method, int(steps), 1, 0, truth, **options).metrics(operator)
    seconds = time.time() - start
    print(f"{spec} {seconds:.0f}s psnr {metrics['psnr_sample']:.2f} cons {metrics['consistency']:.3f}")
