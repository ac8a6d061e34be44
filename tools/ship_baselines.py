"""Write the baselines that ship with the package, so that a first run does not compute them:

- mnist_ae/analysis/raw_quality_shipped.json: the raw-pixel quality numbers of the canonical MNIST and
  Fashion-MNIST test sets under the default analysis settings (about 25 s per dataset, quiet 2-core CPU);
- mnist_ae/analysis/pca_curves_shipped.json: PCA's test error at every code size, fitted on the full
  training set (about 3 s per dataset);
- mnist_ae/analysis/retrieval_shipped.json: raw pixels' retrieval numbers and PCA's at each of
  `retrieval.SHIPPED_SIZES` (about a minute per dataset).

    python tools/ship_baselines.py

Rerun it when a setting that enters `raw_baseline.cache_key` changes (the key then differs, and a run
computes the numbers itself until this is rerun). Data files: the package's default data dir.
"""

from __future__ import annotations

import json
import time

from mnist_ae.analysis import baselines, raw_baseline, retrieval
from mnist_ae.analysis.embed import default_threads
from mnist_ae.config import base_config
from mnist_ae.data import load_dataset


def main() -> None:
    config = base_config()
    settings = {"tsne_backend": config.tsne_backend, "seed": config.seed, "with_tsne": True}
    quality, curves, ranked = {}, {}, {}
    for dataset in ("mnist", "fashion_mnist"):
        ds = load_dataset(dataset, config.data_dir, config.data_source)
        images, labels = ds.test_images, ds.test_labels
        start = time.perf_counter()
        numbers = raw_baseline.raw_quality(images, labels, threads=default_threads(), **settings)
        key = raw_baseline.cache_key(images, labels, **settings)
        quality[key] = {"dataset": dataset, "test_images": len(images), "settings": settings, "numbers": numbers}
        print(f"{dataset}: raw quality {time.perf_counter() - start:.1f} s  {numbers}", flush=True)
        start = time.perf_counter()
        curve = baselines.pca_test_mse_curve(ds.train_images, images).tolist()
        curves[baselines.curve_key(ds.train_images, images)] = {"dataset": dataset, "curve": curve}
        print(f"{dataset}: PCA curve {time.perf_counter() - start:.1f} s", flush=True)
        start = time.perf_counter()
        data = (ds.train_images, ds.train_labels, images, labels)
        ranked[retrieval.cache_key(*data)] = {
            "dataset": dataset, "pixels": retrieval.baseline(*data, None),
            "pca": {str(size): retrieval.baseline(*data, size) for size in retrieval.SHIPPED_SIZES}}
        print(f"{dataset}: retrieval baselines {time.perf_counter() - start:.1f} s", flush=True)
    raw_baseline.SHIPPED.write_text(json.dumps(quality, indent=1, sort_keys=True) + "\n")
    baselines.SHIPPED_CURVES.write_text(json.dumps(curves, sort_keys=True) + "\n")
    retrieval.SHIPPED.write_text(json.dumps(ranked, indent=1, sort_keys=True) + "\n")
    print(f"wrote {raw_baseline.SHIPPED}, {baselines.SHIPPED_CURVES} and {retrieval.SHIPPED}")


if __name__ == "__main__":
    main()
