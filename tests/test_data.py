"""Tests for the training input pipeline (train/data.py, train/digits.py).

TFDS datasets other than digits32 are not on this machine: cifar10 and
imagenet2012 are read through ``tfds.testing.mock_data`` (policy USE_FILES),
which supplies random records to the real ``tfds.data_source`` path; the test
writes the dataset's metadata (ArrayRecord file format, split sizes) as a
prepared dataset would have it, so the pipeline's own "is it prepared" and
split checks run unpatched.
"""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from train import data

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def digits_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("tfds"))


@pytest.fixture(scope="module")
def digits_cfg(digits_dir):
    return data.DataConfig(dataset="digits32", data_dir=digits_dir)


@pytest.fixture(scope="module")
def digits_info(digits_cfg):
    return data.get_dataset_info(digits_cfg)


def take(it, n):
    out = [next(it) for _ in range(n)]
    it.close()
    return out


def assert_batches_equal(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x.keys() == y.keys()
        for k in x:
            np.testing.assert_array_equal(x[k], y[k], err_msg=k)


def test_digits_builds_array_record(digits_dir, digits_info):
    assert digits_info == data.DatasetInfo(
        name="digits32", num_classes=10, num_train=1500, num_eval=297, image_size=32,
        train_split="train", eval_split="test")
    files = sorted(os.listdir(os.path.join(digits_dir, "digits32", "1.0.0")))
    assert "digits32-train.array_record-00000-of-00001" in files
    assert "digits32-test.array_record-00000-of-00001" in files
    source = tfds.data_source("digits32", split="test", data_dir=digits_dir, download=False)
    ex = source[0]
    assert ex["image"].shape == (32, 32, 3) and ex["image"].dtype == np.uint8
    assert (ex["image"][..., 0] == ex["image"][..., 2]).all() and ex["image"].max() > 200
    # The split is the fixed RandomState(0) permutation: same label histogram as sklearn's digits.
    from sklearn.datasets import load_digits

    want = np.bincount(load_digits().target[np.random.RandomState(0).permutation(1797)[1500:]], minlength=10)
    got = np.bincount([int(source[i]["label"]) for i in range(len(source))], minlength=10)
    np.testing.assert_array_equal(got, want)


def test_digits_build_survives_killed_and_concurrent_builds(tmp_path):
    env = {**os.environ, "PYTHONPATH": REPO}
    # A build that hangs mid-generation, killed with SIGKILL while its incomplete.* dir exists.
    hang = textwrap.dedent(f"""
        import time
        from train import digits
        gen = digits.Digits32._generate_examples
        def slow(self, indices):
            yield from list(gen(self, indices))[:10]
            time.sleep(600)
        digits.Digits32._generate_examples = slow
        digits.prepare({str(tmp_path)!r})
    """)
    proc = subprocess.Popen([sys.executable, "-c", hang], env=env)
    try:
        deadline = time.time() + 60
        while not list(tmp_path.glob("digits32/incomplete.*")):
            assert proc.poll() is None and time.time() < deadline, "hanging build never started"
            time.sleep(0.05)
        time.sleep(0.5)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert not (tmp_path / "digits32" / "1.0.0").exists()
    # Two builders at once, both must succeed and leave one complete dataset.
    build = f"from train import digits; assert digits.prepare({str(tmp_path)!r}).is_prepared()"
    procs = [subprocess.Popen([sys.executable, "-c", build], env=env) for _ in range(2)]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    assert os.listdir(tmp_path / "digits32") == ["1.0.0"]
    source = tfds.data_source("digits32", split="train", data_dir=str(tmp_path), download=False)
    assert len(source) == 1500


def test_train_batches_shapes_and_determinism(digits_cfg, digits_info):
    def stream(seed, start_step=0, n=8):
        return take(data.train_batches(digits_cfg, digits_info, global_batch_size=250, seed=seed,
                                       start_step=start_step), n)

    assert data.steps_per_epoch(digits_info, 250) == 6
    a = stream(0)
    b0 = a[0]
    assert b0["image"].shape == (250, 32, 32, 3) and b0["image"].dtype == np.float32
    assert b0["label"].shape == (250,) and b0["label"].dtype == np.int32
    assert set(b0) == {"image", "label"}
    assert abs(float(b0["image"].mean())) < 2 and 0.3 < float(b0["image"].std()) < 3
    assert_batches_equal(a, stream(0))
    assert_batches_equal(a[5:], stream(0, start_step=5, n=3))  # crosses the epoch boundary at step 6
    assert not np.array_equal(a[0]["label"], stream(1, n=1)[0]["label"])
    assert not np.array_equal(a[0]["label"], a[6]["label"])  # each epoch is reshuffled
    # An epoch of 6 steps * 250 visits each of the 1500 train examples exactly once.
    source = tfds.data_source("digits32", split="train", data_dir=digits_cfg.data_dir, download=False)
    np.testing.assert_array_equal(np.bincount(np.concatenate([b["label"] for b in a[:6]]), minlength=10),
                                  np.bincount([int(source[i]["label"]) for i in range(1500)], minlength=10))
    # Augmentation is on: two epochs see the same example differently often enough.
    assert not np.array_equal(np.sort(a[0]["image"].reshape(250, -1).sum(1)),
                              np.sort(a[6]["image"].reshape(250, -1).sum(1)))


def test_process_shards_make_up_the_global_batch(digits_cfg, digits_info):
    def local(p, n):
        return take(data.train_batches(digits_cfg, digits_info, global_batch_size=128, seed=3, start_step=2,
                                       process_index=p, process_count=n), 2)

    whole, p0, p1 = local(0, 1), local(0, 2), local(1, 2)
    for w, a, b in zip(whole, p0, p1):
        assert a["image"].shape[0] == b["image"].shape[0] == 64
        for k in w:
            np.testing.assert_array_equal(np.concatenate([a[k], b[k]]), w[k])
        assert not np.array_equal(a["image"], b["image"])


def test_eval_covers_every_example_once(digits_cfg, digits_info, digits_dir):
    source = tfds.data_source("digits32", split="test", data_dir=digits_dir, download=False)
    want_labels = np.array([int(source[i]["label"]) for i in range(len(source))])
    want_images = data._normalize(np.stack([source[i]["image"] for i in range(len(source))]))
    shards = [list(data.eval_batches(digits_cfg, digits_info, global_batch_size=128, process_index=p,
                                     process_count=2)) for p in range(2)]
    assert len(shards[0]) == len(shards[1]) == 3  # ceil(297 / 128)
    images, labels, total = [], [], 0
    for b0, b1 in zip(*shards):
        for b in (b0, b1):
            assert b["image"].shape == (64, 32, 32, 3) and b["mask"].dtype == np.float32
            assert (b["image"][b["mask"] == 0] == 0).all()
        batch = {k: np.concatenate([b0[k], b1[k]]) for k in b0}
        real = batch["mask"] == 1
        total += real.sum()
        images.append(batch["image"][real])
        labels.append(batch["label"][real])
    assert total == 297
    np.testing.assert_array_equal(np.concatenate(labels), want_labels)
    np.testing.assert_array_equal(np.concatenate(images), want_images)


def test_pad_crop_flip_matches_a_loop():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (5, 32, 32, 3), dtype=np.uint8)
    offsets, flips = rng.integers(0, 9, (5, 2)), np.array([True, False, True, False, False])
    out = data._pad_crop_flip(images, offsets, flips)
    for img, (y, x), f, o in zip(images, offsets, flips, out):
        want = np.pad(img, ((4, 4), (4, 4), (0, 0)))[y:y + 32, x:x + 32]
        np.testing.assert_array_equal(o, want[:, ::-1] if f else want)


def test_random_resized_crop_box_is_valid():
    rng = np.random.default_rng(0)
    for w, h in [(500, 375), (100, 400), (64, 64), (1000, 20)]:
        for _ in range(50):
            l, t, r, b = data._random_resized_crop_box(rng, w, h)
            assert 0 <= l < r <= w and 0 <= t < b <= h


def test_errors(digits_cfg, digits_info, tmp_path):
    with pytest.raises(ValueError, match="no_such_dataset"):
        data.get_dataset_info(data.DataConfig(dataset="no_such_dataset", data_dir=str(tmp_path)))
    with pytest.raises(ValueError, match="nowhere"):
        data.get_dataset_info(data.DataConfig(dataset=f"folder:{tmp_path}/nowhere"))
    with pytest.raises(ValueError, match="process_count=3"):
        data.train_batches(digits_cfg, digits_info, global_batch_size=128, seed=0, process_count=3)
    with pytest.raises(ValueError, match="process_count=3"):
        data.eval_batches(digits_cfg, digits_info, global_batch_size=128, process_count=3)


def test_missing_dataset_fails_fast(tmp_path, monkeypatch):
    """A missing dataset raises at once, without trying the network."""
    import socket

    def no_network(*a, **k):
        raise AssertionError("tried to reach the network for a missing dataset")
    monkeypatch.setattr(socket.socket, "connect", no_network)
    with pytest.raises(FileNotFoundError) as e:
        data.get_dataset_info(data.DataConfig(dataset="cifar10", data_dir=str(tmp_path)))
    assert str(tmp_path / "cifar10") in str(e.value) and "download=True" in str(e.value)
    assert not (tmp_path / "cifar10" / "3.0.2" / "dataset_info.json").exists()


def write_prepared_metadata(name: str, data_dir: str, sizes: dict[str, int]) -> None:
    builder = tfds.builder(name, data_dir=data_dir, try_gcs=False)
    builder.info.set_file_format(tfds.core.FileFormat.ARRAY_RECORD, override=True)
    builder.info.set_splits(tfds.core.SplitDict([
        tfds.core.SplitInfo(name=split, shard_lengths=[n], num_bytes=0, filename_template=tfds.core.ShardedFileTemplate(
            data_dir=builder.data_path, dataset_name=builder.name, split=split, filetype_suffix="array_record"))
        for split, n in sizes.items()]))
    builder.data_path.mkdir(parents=True)
    builder.info.write_to_directory(builder.data_path)


@pytest.mark.parametrize("name,eval_split,size,classes", [
    ("cifar10", "test", 32, 10),
    ("imagenet2012", "validation", 224, 1000),
])
def test_mock_tfds_datasets(tmp_path, name, eval_split, size, classes):
    n = 24
    write_prepared_metadata(name, str(tmp_path), {"train": n, eval_split: n})
    with tfds.testing.mock_data(num_examples=n, policy=tfds.testing.MockPolicy.USE_FILES, data_dir=str(tmp_path)):
        cfg = data.DataConfig(dataset=name, data_dir=str(tmp_path))
        info = data.get_dataset_info(cfg)
        assert info == data.DatasetInfo(name, classes, n, n, size, "train", eval_split)
        batches = take(data.train_batches(cfg, info, global_batch_size=8, seed=0), 4)
        assert_batches_equal(batches[3:], take(data.train_batches(cfg, info, global_batch_size=8, seed=0,
                                                                  start_step=3), 1))
        evals = list(data.eval_batches(cfg, info, global_batch_size=10))
    for b in batches:
        assert b["image"].shape == (8, size, size, 3) and b["image"].dtype == np.float32
        assert ((0 <= b["label"]) & (b["label"] < classes)).all()
    assert [int(b["mask"].sum()) for b in evals] == [10, 10, 4]
    assert all(b["image"].shape == (10, size, size, 3) for b in evals)


def make_tree(root, classes, per_class, size):
    rng = np.random.default_rng(0)
    for c in classes:
        os.makedirs(os.path.join(root, c), exist_ok=True)
        for i in range(per_class):
            arr = rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
            Image.fromarray(arr).save(os.path.join(root, c, f"{i}.png"))


def test_folder_single_tree(tmp_path):
    make_tree(tmp_path, ["cat", "dog", "eel"], 5, (40, 30))
    (tmp_path / "cat" / "notes.txt").write_text("not an image")
    cfg = data.DataConfig(dataset=f"folder:{tmp_path}", val_fraction=0.2)
    info = data.get_dataset_info(cfg)
    assert (info.num_classes, info.num_train, info.num_eval, info.image_size) == (3, 12, 3, 40)
    b = take(data.train_batches(cfg, info, global_batch_size=4, seed=0), 1)[0]
    assert b["image"].shape == (4, 40, 40, 3)
    ev = list(data.eval_batches(cfg, info, global_batch_size=2))
    assert sum(int(e["mask"].sum()) for e in ev) == 3


def test_folder_train_val_imagenet_like(tmp_path):
    make_tree(tmp_path / "train", ["a", "b"], 3, (96, 80))
    make_tree(tmp_path / "val", ["a", "b"], 2, (120, 90))
    cfg = data.DataConfig(dataset=f"folder:{tmp_path}", image_size=48)
    info = data.get_dataset_info(cfg)
    assert (info.num_classes, info.num_train, info.num_eval, info.image_size) == (2, 6, 4, 48)
    assert (info.train_split, info.eval_split) == ("train", "val")
    b = take(data.train_batches(cfg, info, global_batch_size=6, seed=0), 1)[0]
    assert b["image"].shape == (6, 48, 48, 3)
    assert sorted(b["label"].tolist()) == [0, 0, 0, 1, 1, 1]
    ev = list(data.eval_batches(cfg, info, global_batch_size=4))
    assert len(ev) == 1 and ev[0]["label"].tolist() == [0, 0, 1, 1] and ev[0]["mask"].tolist() == [1, 1, 1, 1]


@pytest.mark.slow
def test_worker_processes_give_the_same_stream(digits_cfg, digits_info):
    import dataclasses

    inproc = take(data.train_batches(digits_cfg, digits_info, global_batch_size=64, seed=5, start_step=1), 3)
    cfg = dataclasses.replace(digits_cfg, num_workers=2)
    assert_batches_equal(inproc, take(data.train_batches(cfg, digits_info, global_batch_size=64, seed=5,
                                                         start_step=1), 3))


# ----------------------------------------------------------------------------- bad files in folder: trees


def make_bad_tree(root, size=(40, 30)):
    """train/{a,b} with 4 PNGs each, a truncated JPEG in train/a and a text file named .jpg in train/b;
    val/{a,b} with 2 PNGs each and a truncated JPEG in val/a."""
    make_tree(root / "train", ["a", "b"], 4, size)
    make_tree(root / "val", ["a", "b"], 2, size)
    rng = np.random.default_rng(1)
    for path in (root / "train" / "a" / "cut.jpg", root / "val" / "a" / "cut.jpg"):
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(buf, "JPEG", quality=95)
        path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    (root / "train" / "b" / "notes.jpg").write_text("not an image, only named like one\n")


def test_folder_bad_files_fail_with_their_path(tmp_path):
    make_bad_tree(tmp_path)
    cfg = data.DataConfig(dataset=f"folder:{tmp_path}")
    with pytest.raises(data.BadImageError, match=r"1 file\(s\) are not readable images: .*train/b/notes\.jpg "
                                                 r"\(UnidentifiedImageError.*pass --skip-bad-images"):
        data.get_dataset_info(cfg)
    # The truncated JPEG passes the header check; decoding it names it (no traceback from deep inside PIL).
    (tmp_path / "train" / "b" / "notes.jpg").unlink()
    info = data.get_dataset_info(cfg)
    assert (info.num_train, info.num_eval, info.bad_files) == (9, 5, ())
    with pytest.raises(data.BadImageError, match=r"train/a/cut\.jpg: unreadable image \(OSError: image file is "
                                                 r"truncated.*pass --skip-bad-images"):
        take(data.train_batches(cfg, info, global_batch_size=9, seed=0), 1)
    with pytest.raises(data.BadImageError, match=r"val/a/cut\.jpg: unreadable image"):
        list(data.eval_batches(cfg, info, global_batch_size=5))


def test_folder_skip_bad_images(tmp_path):
    make_bad_tree(tmp_path)
    cfg = data.DataConfig(dataset=f"folder:{tmp_path}", skip_bad_images=True)
    info = data.get_dataset_info(cfg)
    assert info.bad_files == (str(tmp_path / "train" / "b" / "notes.jpg"),)
    assert (info.num_train, info.num_eval, info.image_size) == (9, 5, 40)  # the truncated JPEGs stay listed
    # train: each epoch reads the truncated file once and replaces it by the next readable example
    batches = take(data.train_batches(cfg, info, global_batch_size=3, seed=0), 6)  # 2 epochs of 3 steps
    assert [int(b["skipped"]) for b in batches[:3]].count(1) == 1 and sum(int(b["skipped"]) for b in batches) == 2
    assert all(b["image"].shape == (3, 40, 40, 3) and np.isfinite(b["image"]).all() for b in batches)
    assert_batches_equal(batches, take(data.train_batches(cfg, info, global_batch_size=3, seed=0), 6))
    # the replacement is the next file of the split, with its label: train/a/cut.jpg is index 4 -> 0.png of b
    reader = data._BatchReader(data._resolve(cfg), "train", 40, 0, 3, 0, 1, train=True)
    src = reader._source = reader.open_split("train")
    bad = src.files.index(str(tmp_path / "train" / "a" / "cut.jpg"))
    assert src[bad] is None and reader._substitute(bad)["label"] == src.labels[bad + 1] == 1
    # eval: masked out
    ev = list(data.eval_batches(cfg, info, global_batch_size=5))
    assert len(ev) == 1 and int(ev[0]["skipped"]) == 1
    assert ev[0]["mask"].tolist() == [1, 1, 0, 1, 1]  # val/a: 0.png, 1.png, cut.jpg
    # without the option batches carry no "skipped"
    clean = data.DataConfig(dataset=f"folder:{tmp_path}/val")
    assert "skipped" not in take(data.train_batches(clean, data.get_dataset_info(clean), global_batch_size=2,
                                                    seed=0), 1)[0]


def test_trainer_skip_bad_images_summary(tmp_path, capsys):
    import json

    from train import main as train_main

    make_bad_tree(tmp_path / "ds", size=(32, 32))
    args = ["--model", "lenet5", "--dataset", f"folder:{tmp_path / 'ds'}", "--epochs", "2", "--batch-size", "3",
            "--no-progress", "--workdir"]
    assert train_main.main(args + [str(tmp_path / "w0")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: dataset") and "notes.jpg (UnidentifiedImageError" in err and "Traceback" not in err
    assert train_main.main(args + [str(tmp_path / "w1"), "--skip-bad-images"]) == 0
    out = capsys.readouterr().out
    assert "--skip-bad-images: left out 1 unreadable file(s):" in out
    summary = json.loads((tmp_path / "w1" / "summary.json").read_text())
    notes = str(tmp_path / "ds" / "train" / "b" / "notes.jpg")
    assert summary["bad_images"] == {"left_out": 1, "left_out_files": [notes], "train_reads_replaced": 2,
                                     "eval_masked": 1}
    assert summary["num_eval"] == 4
    # without the option, the truncated JPEG met in the first epoch is a one-line error naming it
    (tmp_path / "ds" / "train" / "b" / "notes.jpg").unlink()
    assert train_main.main(args + [str(tmp_path / "w2")]) == 2
    err = capsys.readouterr().err
    assert "cut.jpg: unreadable image (OSError: image file is truncated" in err


def test_eval_weights_transform(tmp_path):
    import flaxnets
    from train.config import TrainConfig

    make_tree(tmp_path / "train", ["a", "b"], 2, (300, 260))
    make_tree(tmp_path / "val", ["a", "b"], 2, (250, 333))
    tcfg = TrainConfig(model="resnet50", dataset=f"folder:{tmp_path}", eval_weights="IMAGENET1K_V2")
    cfg = tcfg.data_config()
    tf = flaxnets.eval_transform("resnet50", "IMAGENET1K_V2")
    assert cfg.eval_transform == tf and (tf.resize_size, tf.crop_size) == (232, 224)
    info = data.get_dataset_info(cfg)
    assert info.image_size == 224
    ev = list(data.eval_batches(cfg, info, global_batch_size=4))
    files = sorted(str(p) for p in (tmp_path / "val").rglob("*.png"))
    want = np.stack([tf(np.asarray(Image.open(f).convert("RGB"))) for f in files])
    np.testing.assert_array_equal(ev[0]["image"], want)
    b = take(data.train_batches(cfg, info, global_batch_size=4, seed=0), 1)[0]
    assert b["image"].shape == (4, 224, 224, 3)
    # efficientnet_v2_l's weights use mean = std = 0.5: train batches follow them
    v2l = data.DataConfig(dataset=f"folder:{tmp_path}", eval_transform=flaxnets.eval_transform("efficientnet_v2_l"))
    b2 = take(data.train_batches(v2l, data.get_dataset_info(v2l), global_batch_size=4, seed=0), 1)[0]
    assert b2["image"].shape == (4, 480, 480, 3) and b2["image"].min() >= -1 and b2["image"].max() <= 1
    with pytest.raises(ValueError, match="--image-size 128 differs from the eval transform's crop size 224"):
        data.get_dataset_info(TrainConfig(model="resnet50", dataset=f"folder:{tmp_path}", image_size=128,
                                          eval_weights="DEFAULT").data_config())
    with pytest.raises(ValueError, match="resnet50 has no weights 'V9'"):
        TrainConfig(model="resnet50", eval_weights="V9").data_config()
