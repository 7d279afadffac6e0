"""train.preprocess: raw uint8 train batches finished on the device equal the host's float32 batches
bit for bit (normalise, RandomErasing, MixUp/CutMix, soft labels), on one device and on a sharded
8-device mesh over several processes' rows."""
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from train import data, preprocess


def _take(cfg, info, n, batch=8, **kw):
    it = data.train_batches(cfg, info, global_batch_size=batch, seed=7, **kw)
    try:
        return [next(it) for _ in range(n)]
    finally:
        it.close()


def test_normalize_table_is_the_host_normalisation():
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    u8 = np.random.default_rng(0).integers(0, 256, (2, 5, 7, 3), dtype=np.uint8)
    fin = preprocess.DeviceFinish(mean, std)
    got = np.asarray(jax.jit(fin)({"image": u8, "label": np.zeros(2, np.int32)})["image"])
    np.testing.assert_array_equal(got, data.augment.normalize(u8, mean, std))
    with pytest.raises(TypeError, match="uint8"):
        fin({"image": u8.astype(np.float32), "label": np.zeros(2, np.int32)})


@pytest.mark.parametrize("kw", [
    {},
    {"auto_augment": "ta_wide", "random_erase": 0.7},
    {"random_erase": 1.0, "mixup_alpha": 0.8},
    {"random_erase": 0.5, "cutmix_alpha": 1.0},
    {"auto_augment": "ra", "random_erase": 0.5, "mixup_alpha": 0.2, "cutmix_alpha": 1.0},
])
def test_device_finish_equals_host_batches(photo_folder, kw):
    cfg = data.DataConfig(dataset=photo_folder, image_size=40, **kw)
    info = data.get_dataset_info(cfg)
    host = _take(cfg, info, 6)
    raw = _take(cfg, info, 6, raw=True)
    fin = jax.jit(data.finish_for(cfg, info))
    spec = data.raw_batch_spec(cfg, info, 8)
    kinds = set()
    for h, r in zip(host, raw):
        assert {k: (v.shape, v.dtype) for k, v in r.items()} == {k: (s, np.dtype(d)) for k, (s, d) in spec.items()}
        got = fin(r)
        assert set(got) == set(h)
        np.testing.assert_array_equal(np.asarray(got["image"]), h["image"])
        np.testing.assert_array_equal(np.asarray(got["label"]), h["label"])
        if "mix_kind" in r:
            kinds.add(int(r["mix_kind"][0]))
    if kw.get("mixup_alpha") and kw.get("cutmix_alpha"):
        assert kinds == {preprocess.MIXUP, preprocess.CUTMIX}  # both branches exercised
    if kw.get("random_erase", 0) >= 0.5:
        assert any((r["erase"][:, 2] > 0).any() for r in raw)


def _sharded_check(folder: str) -> None:
    from jax.sharding import NamedSharding, PartitionSpec as P

    cfg = data.DataConfig(dataset=folder, image_size=32, random_erase=0.5, mixup_alpha=0.4, cutmix_alpha=1.0)
    info = data.get_dataset_info(cfg)
    host = _take(cfg, info, 3)
    parts = [_take(cfg, info, 3, raw=True, process_index=p, process_count=4) for p in range(4)]
    assert jax.device_count() == 8
    mesh = jax.make_mesh((8,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
    fin = jax.jit(data.finish_for(cfg, info), in_shardings=NamedSharding(mesh, P("data")))
    for step in range(3):
        glob = {k: np.concatenate([p[step][k] for p in parts]) for k in parts[0][step]}
        got = fin(glob)
        assert len(got["image"].sharding.device_set) == 8
        np.testing.assert_array_equal(np.asarray(got["image"]), host[step]["image"])
        np.testing.assert_array_equal(np.asarray(got["label"]), host[step]["label"])


def test_device_finish_on_a_sharded_mesh_of_process_rows(photo_folder):
    """4 processes' raw rows assembled into one global batch sharded over 8 CPU devices (a subprocess):
    MixUp's partner of each process's first row is the previous process's last row, as on the host."""
    here = os.path.dirname(os.path.abspath(__file__))
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=8",
           "PYTHONPATH": os.pathsep.join([os.path.dirname(here), here, os.environ.get("PYTHONPATH", "")])}
    code = "import sys, test_preprocess as t; t._sharded_check(sys.argv[1])"
    res = subprocess.run([sys.executable, "-c", code, photo_folder], env=env, capture_output=True, text=True,
                         timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
