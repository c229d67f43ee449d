"""``--model auto``: the default base model (``geocert train-pc`` defaults on the default dataset), trained
once into ``$GEOCERT_CACHE/pointcloud/models/`` (temp folder + rename) and reused afterwards."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

__all__ = ["default_checkpoint"]


def default_checkpoint() -> Path:
    from geocert.pipeline import cache_root
    from geocert_pointcloud.config import TrainPcConfig
    from geocert_pointcloud.scenes import _DATASET_VERSION
    from geocert_pointcloud.train import DEFAULT_MODEL_VERSION  # bumped when train-pc's defaults change
    from geocert_pointcloud.train_pc import run

    target = cache_root("pointcloud", "models", f"default_procedural_v{_DATASET_VERSION}_m{DEFAULT_MODEL_VERSION}.pt")
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    print(f"certify-pc: training the default model once into {target}", file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix=".tmp_train_", dir=target.parent) as tmp:
        run(TrainPcConfig(output=Path(tmp) / "run"))
        (Path(tmp) / "run" / "model.pt").replace(target)
    return target
