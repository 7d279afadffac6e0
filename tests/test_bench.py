"""Smoke test of `python -m benchmarks.bench`: a tiny model, batch 2, 32x32, one timed round.

Checks the markdown table and the JSON fields, not the timings.
"""
from __future__ import annotations

import contextlib
import functools
import json

import pytest

from benchmarks import bench

VARIANTS = {"flax train", "flax infer", "torch train", "torch infer", "torch-cl train", "torch-cl infer"}
ROW_FIELDS = {"model", "variant", "framework", "mode", "img_s", "img_s_min", "img_s_max", "vs_torch",
              "step_s", "cpu_s_per_step", "compile_s", "rss_peak_growth_mb", "xla_buffers_mb",
              "minor_faults_per_step", "flops_per_step", "gflop_s"}


def test_bench_smoke(tmp_path, capsys):
    md, js = tmp_path / "bench.md", tmp_path / "bench.json"
    md.write_text("# Results\n\n<!-- bench:smoke -->\nold\n<!-- /bench:smoke -->\ntail\n")
    bench.main(["--models", "lenet5", "--batch", "2", "--size", "32", "--repeats", "1", "--matmul-n", "256",
                "--out", str(md), "--tag", "smoke", "--json", str(js)])

    data = json.loads(js.read_text())
    assert data["batch"] == 2 and data["size"] == 32 and data["dtype"] == "float32"
    assert data["settle"] == 1
    assert set(data["matmul_peak_gflop_s"]) == {"flax", "torch"}
    assert {"cpu", "cores", "jax", "torch", "XLA_FLAGS", "loadavg_start", "loadavg_end"} <= set(data["meta"])
    rows = data["models"][0]["rows"]
    assert {r["variant"] for r in rows} == VARIANTS
    for r in rows:
        assert ROW_FIELDS <= set(r), ROW_FIELDS - set(r)
        assert r["img_s"] > 0 and len(r["step_s"]) == 1
        if r["framework"] == "flax":
            assert r["compile_s"] > 0 and r["flops_per_step"] > 0 and r["xla_buffers_mb"] > 0
        assert r["vs_torch"] > 0
    assert next(r for r in rows if r["variant"] == "torch train")["vs_torch"] == 1.0

    text = md.read_text()
    assert text.startswith("# Results\n\n<!-- bench:smoke -->\n`python -m benchmarks.bench --models lenet5")
    assert text.endswith("<!-- /bench:smoke -->\ntail\n") and "old" not in text
    assert data["meta"]["isolate"] is True and set(data["meta"]["thp"]) == {"flax", "torch"}
    assert "| lenet5 | flax train |" in text and "| lenet5 | torch-cl infer |" in text
    assert "| lenet5 | flax train |" in capsys.readouterr().out
    table = [line for line in text.splitlines() if line.startswith("|")]
    assert len(table) == 2 + len(VARIANTS) and len({line.count("|") for line in table}) == 1, table


def test_bench_same_process(tmp_path):
    """--same-process: every variant in this process (the mode used on a GPU)."""
    md = tmp_path / "bench.md"
    data = bench.main(["--models", "lenet5", "--batch", "2", "--size", "32", "--repeats", "1",
                       "--same-process", "--train-only", "--no-channels-last", "--settle", "0",
                       "--out", str(md), "--tag", "t"])
    assert data["meta"]["isolate"] is False and data["settle"] == 0
    assert {r["variant"] for r in data["models"][0]["rows"]} == {"flax train", "torch train"}
    assert "| lenet5 | flax train |" in md.read_text()


def test_conv_bench_smoke(monkeypatch, tmp_path):
    monkeypatch.setattr(bench, "CONV_SHAPES", [("grouped", 2, 8, 32, 32, 3, 1, 2),
                                               ("depthwise", 2, 9, 8, 8, 3, 2, 8)])
    md = tmp_path / "convs.md"
    results = bench.main(["--convs", "--repeats", "1", "--out", str(md), "--tag", "convs"])
    assert {(r["shape"], r["impl"], r["mode"]) for r in results["convs"]} == {
        (s, i, m) for s in ("grouped", "depthwise") for i in ("plain", "fast") for m in ("fwd", "fwd+bwd")}
    assert all(r["gflop_s"] > 0 for r in results["convs"])
    table = [line for line in md.read_text().splitlines() if line.startswith("|")]
    assert any(line.startswith("| depthwise |") for line in table) and len({line.count("|") for line in table}) == 1


def test_bench_rejects_unknown_model_before_any_work(capsys):
    with pytest.raises(SystemExit):
        bench.main(["--models", "lenet5,resnet5O"])
    assert "resnet5O" in capsys.readouterr().err


@pytest.mark.parametrize("opt,value", [("--settle", "-1"), ("--repeats", "0"), ("--batch", "0")])
def test_bench_rejects_bad_counts(capsys, opt, value):
    with pytest.raises(SystemExit):
        bench.main(["--models", "lenet5", opt, value])
    assert f"{opt} must be >=" in capsys.readouterr().err


def test_ab_smoke(capsys):
    """`benchmarks.ab`: both sides of a switch traced and timed per round, one row per model and
    step with positive times; an unknown switch or step kind is refused before any work."""
    from benchmarks import ab
    from flaxnets import conv_ops, layers

    seen = []
    real = ab._sides

    @contextlib.contextmanager
    def record(side, ctx):  # the switch's value inside each side's trace
        with ctx():
            seen.append((side, layers._SEPARABLE))
            yield

    def spy(switch):
        return {side: functools.partial(record, side, ctx) for side, ctx in real(switch).items()}

    ab._sides = spy
    try:
        rows = ab.main(["--switch", "max_pool_separable", "--models", "lenet5", "--batch", "2", "--size", "32",
                        "--rounds", "2", "--steps", "1"])
    finally:
        ab._sides = real
    assert [(r["model"], r["what"]) for r in rows] == [("lenet5", "train"), ("lenet5", "infer")]
    assert all(r["fast_ms"] > 0 and r["plain_ms"] > 0 and r["fast_range"][0] <= r["fast_ms"] for r in rows)
    assert seen == [("fast", True), ("plain", False)] * 4 and layers._SEPARABLE is True
    out = capsys.readouterr().out
    assert "switch max_pool_separable" in out and out.count("| lenet5 |") == 2
    with conv_ops.use_impl("plain"), ab._sides("fast_paths")["fast"]():
        assert conv_ops.fast_paths()
    for argv in (["--switch", "nope"], ["--switch", "fast_paths", "--what", "train,eval"]):
        with pytest.raises(SystemExit):
            ab.main(argv)


@pytest.mark.large  # ~23 s on 2 cores (default-suite budget, 2026-12-03): a past investigation's script
def test_regnet_blocks_smoke(capsys):
    """`python -m benchmarks.regnet_blocks`: one row per stage's first block and per
    repeated block, counts adding up to the model's depth; not the timings."""
    from benchmarks import regnet_blocks as bench_regnet_blocks
    from flaxnets import regnet

    rows = bench_regnet_blocks.main(["--batch", "2", "--size", "32", "--repeats", "1"])
    stages = regnet.VARIANTS["regnet_x_400mf"].stages()
    assert sum(r["count"] for r in rows) == sum(s.depth for s in stages)
    assert [r["stride"] for r in rows if r["block"].endswith("-0")] == [s.stride for s in stages]
    assert all(r["flax_ms"] > 0 and r["torch_ms"] > 0 for r in rows)
    out = capsys.readouterr().out
    assert "| all blocks, weighted by count |" in out
    with pytest.raises(SystemExit):
        bench_regnet_blocks.main(["--model", "resnet50"])


@pytest.mark.large  # ~28 s on 2 cores, mostly two worker processes' start (default-suite budget)
def test_xla_flag_bench_smoke(capsys):
    """`python -m benchmarks.xla_flag`: both workers run, one with flaxnets' XLA flag, one without
    (or, with --against, with the given flags)."""
    from benchmarks import xla_flag

    rows = xla_flag.main(["--models", "lenet5", "--batch", "2", "--size", "32", "--repeats", "1"])
    assert {r["mode"] for r in rows} == {"flax train", "flax infer"}
    assert all(r["with_flag_ms"] > 0 and r["without_ms"] > 0 for r in rows)
    out = capsys.readouterr().out
    assert "with: `--xla_cpu_experimental_ynn_fusion_type=-individual_convolution`" in out
    assert "without: ``" in out
    # --against: the second worker runs with the given flags instead of none
    flags = "--xla_cpu_experimental_ynn_fusion_type=-individual_convolution,-dot"
    rows = xla_flag.main(["--models", "lenet5", "--batch", "2", "--size", "32", "--repeats", "1",
                          f"--against={flags}"])
    assert all(r["with_flag_ms"] > 0 and r["without_ms"] > 0 for r in rows)
    out = capsys.readouterr().out
    assert f"against: `{flags}`" in out and "| against (ms) |" in out


# ----------------------------------------------------------------------------- input pipeline

PIPE_ARGS = ["--files", "12", "--min-side", "80", "--max-side", "120", "--size", "32", "--batch", "4",
             "--batches", "2", "--repeats", "1", "--workers", "0"]


def _pipe_table(text):
    return [line for line in text.splitlines() if line.startswith("|")]


def test_input_pipeline_smoke(tmp_path, capsys):
    """`python -m benchmarks.input_pipeline` at 0 workers on a handful of small JPEGs: the
    table's rows, the docs block, and both sides' batches (same NHWC shape, float32)."""
    from benchmarks import input_pipeline

    docs = tmp_path / "input_pipeline.md"
    docs.write_text("# Input pipeline\n\n<!-- bench:input-pipeline -->\nold\n<!-- /bench:input-pipeline -->\n")
    res = input_pipeline.main(PIPE_ARGS + ["--no-augment", "--cache-dir", str(tmp_path / "cache"),
                                           "--write-docs", str(docs)])
    assert [r["workers"] for r in res["rows"]] == [0]
    r = res["rows"][0]
    for m in ("flax_device", "flax_host"):
        assert r[f"{m}_img_s"] > 0 and r["torch_img_s"] > 0 and r[f"{m}_ratio"] == r[f"{m}_img_s"] / r["torch_img_s"]
        assert res["shapes"][m] == res["shapes"]["torch"] == {"shape": [4, 32, 32, 3], "dtype": "float32"}
    assert res["files"] == 12 and res["augment"] is False and res["augment_note"] == "--no-augment"
    table = _pipe_table(docs.read_text())
    assert len(table) == 3 and table[2].startswith("| 0 | ") and len({line.count("|") for line in table}) == 1
    assert "old" not in docs.read_text() and "off on both sides" in docs.read_text()
    assert table[2] in capsys.readouterr().out
    # the photographs are cached, distinct and of the requested sizes
    files, labels = input_pipeline.list_train_files(res["root"])
    assert len(files) == 12 and sorted(set(labels)) == list(range(10))
    from PIL import Image

    sizes = [Image.open(f).size for f in files]
    assert all(80 <= max(s) <= 120 for s in sizes)
    assert len({open(f, "rb").read() for f in files}) == 12


def test_input_pipeline_torch_side_ta_wide(tmp_path, monkeypatch):
    """With a TrivialAugmentWide op available both sides are asked for it; the torch side draws
    torchvision's ops and magnitudes (checked against the 14-op, 31-bin space)."""
    from benchmarks import input_pipeline

    calls = []

    def op(img, op_name, magnitude):
        calls.append((op_name, magnitude))
        return img

    monkeypatch.setattr(input_pipeline, "_ta_op", lambda: op)
    res = input_pipeline.main(PIPE_ARGS + ["--cache-dir", str(tmp_path / "cache")])
    assert res["augment"] is True and res["shapes"]["torch"]["shape"] == [4, 32, 32, 3]
    assert input_pipeline.flax_config(res["root"], 32, 0, True).auto_augment == "ta_wide"
    space = input_pipeline.ta_wide_space()
    assert len(space) == 14 and len(calls) >= 8  # (2 warm-up + 2 timed batches of 4)
    for name, mag in calls:
        mags, signed = space[name]
        assert (mag == 0.0) if mags is None else (abs(mag) in mags.tolist() and (signed or mag >= 0))


@pytest.mark.parametrize("default,expected", [("nearest", "bilinear"), (None, "PIL")])
def test_input_pipeline_finds_train_augment_op(monkeypatch, default, expected):
    """_ta_op: train.augment's apply_op(img, op_name, magnitude, interpolation, fill), given
    bilinear interpolation (a string when the function's default is one, else PIL's)."""
    import sys
    import types

    import train
    from PIL import Image

    from benchmarks import input_pipeline

    got = []
    fake = types.ModuleType("train.augment")
    fake.apply_op = lambda img, op_name, magnitude, interpolation=default, fill=0: got.append(
        (op_name, magnitude, interpolation, fill)) or img
    monkeypatch.setitem(sys.modules, "train.augment", fake)
    monkeypatch.setattr(train, "augment", fake, raising=False)
    input_pipeline._ta_op()("img", "Rotate", -3.0)
    want = "bilinear" if expected == "bilinear" else Image.Resampling.BILINEAR
    assert got == [("Rotate", -3.0, want, None)]
    del fake.apply_op
    assert input_pipeline._ta_op() is None


def test_input_pipeline_real_augment_op(tmp_path):
    """After the #16 augmentations land: the torch side runs with train.augment's own op."""
    pytest.importorskip("train.augment")
    from benchmarks import input_pipeline

    if input_pipeline._ta_op() is None:
        pytest.fail("train.augment has no apply_op(img, op_name, magnitude, ...) for the benchmark's torch side")
    root = input_pipeline.prepare_folder(str(tmp_path), 10, 80, 120)
    ds = input_pipeline.TorchvisionStyleDataset(*input_pipeline.list_train_files(root), 32, augment=True)
    for k in range(10):
        x, _ = ds[k]
        assert tuple(x.shape) == (3, 32, 32)


# ----------------------------------------------------------------------------- the suite (--what)


def _tables(text):
    """{title line: [table lines]} of a markdown text's summary tables."""
    out, title, cur = {}, None, None
    for line in text.splitlines():
        if line.startswith("**"):
            title, cur = line, None
        elif line.startswith("Details:"):
            title, cur = None, None
        elif line.startswith("|") and title is not None:
            if cur is None:
                cur = out.setdefault(title.split("**")[1].split(",")[0], [])
            cur.append(line)
    return out


def test_bench_suite_smoke(tmp_path):
    """--what all on lenet5 in one process: every summary table with one row, the JSON."""
    md, js = tmp_path / "suite.md", tmp_path / "suite.json"
    res = bench.main(["--models", "lenet5", "--what", "all", "--same-process", "--batch", "2", "--size", "32",
                      "--repeats", "1", "--latency-repeats", "2", "--settle", "0", "--matmul-n", "256", "--out", str(md), "--tag", "s",
                      "--json", str(js)])
    assert set(res["runs"]) == {"fp32", "latency", "bf16", "memory"}
    assert res["runs"]["latency"]["batch"] == 1 and res["runs"]["bf16"]["dtype"] == "bfloat16"
    assert len(res["runs"]["latency"]["models"][0]["rows"][0]["step_s"]) == 2
    s = res["summary"]["lenet5"]
    assert s["mobile"] is False and "mnas" not in s
    for key in ("train", "infer", "bf16_train", "bf16_infer"):
        assert s[key]["flax_img_s"] > 0 and s[key]["vs_torch"] > 0 and s[key]["vs_torch_cl"] > 0, key
    lat = s["latency"]
    assert lat["flax_ms"] > 0 and lat["vs_torch"] == pytest.approx(lat["torch_ms"] / lat["flax_ms"])
    c = s["compile"]  # from fresh worker processes, also under --same-process
    assert c["train_compile_s"] > 0 and c["params_m"] == pytest.approx(bench.param_count("lenet5", 32) / 1e6)
    assert 0 < c["flax_step_peak_mb"] < c["flax_peak_rss_mb"] and 0 < c["torch_step_peak_mb"] < c["torch_peak_rss_mb"]
    assert c["xla_vs_torch"] == pytest.approx(c["xla_total_mb"] / c["torch_step_peak_mb"])
    assert c["xla_mb"]["temp"] > 0 and c["xla_total_mb"] == pytest.approx(
        c["xla_mb"]["temp"] + c["xla_mb"]["argument"] + c["xla_mb"]["output"] - c["xla_mb"]["alias"])
    text = md.read_text()
    tables = _tables(text)
    assert {t.split(",")[0] for t in tables} >= {"Train step", "Inference", "Latency", "bfloat16", "Compile time and memory"}
    for title, lines in tables.items():
        assert len(lines) == 3 and lines[2].startswith("| lenet5 |"), title
        assert len({line.count("|") for line in lines}) == 1, lines
    assert "Matmul peak GFLOP/s (256³)" in text and "Matmul peak (bfloat16, 256³)" in text
    assert "Details: bf16 (batch 2, bfloat16)" in text and "| lenet5 | torch-cl train |" in text
    assert "AMX-BF16" in text or "AVX512-BF16" in text
    data = json.loads(js.read_text())
    assert set(data["meta"]["cpu_flags"]) >= {"amx_bf16", "avx512_bf16"}
    assert data["summary"]["lenet5"]["latency"]["flax_ms"] == lat["flax_ms"] and "args" not in data["runs"]["fp32"]


def test_matmul_peak_times_fewer_calls_when_slow(monkeypatch):
    """A framework whose warm-up matmul exceeds budget_s / repeats gets fewer timed calls (one at
    least), and the log says so: torch's emulated bf16 matmul takes ~50 s at 2048³ on CPUs
    without AVX512-BF16/AMX."""
    said = []
    monkeypatch.setattr(bench, "log", said.append)
    peak = bench.matmul_peak("float32", 64, repeats=3, budget_s=0.0)
    assert set(peak) == {"flax", "torch"} and all(v > 0 for v in peak.values())
    assert len(said) == 2 and all("timing 1 call(s), not 3" in m for m in said), said
    said.clear()
    bench.matmul_peak("float32", 64, repeats=3, budget_s=1e9)
    assert said == []


def test_bench_suite_latency_mnas_objective(monkeypatch):
    """The latency and MnasNet-objective tables of a mobile model, from given step times."""
    rows = [{"variant": f"{v} infer", "step_s": [t / 1e3]} for v, t in (("flax", 20.0), ("torch", 30.0))]
    results = {"command": "x", "what": ["latency"], "size": 224, "batch": 32,
               "runs": {"latency": {"models": [{"model": "mobilenet_v3_small", "rows": rows}]}}}
    s = bench.suite_summary(results, ["mobilenet_v3_small"])["mobilenet_v3_small"]
    m, lat = s["mnas"], s["latency"]
    assert s["mobile"] and m["weights"] == "IMAGENET1K_V1" and m["acc1"] == pytest.approx(67.668)
    assert lat["flax_ms"] == pytest.approx(20.0) and lat["vs_torch"] == pytest.approx(1.5)
    assert m["flax_objective"] == pytest.approx(67.668 * (20 / 80) ** -0.07)
    assert m["torch_objective"] == pytest.approx(67.668 * (30 / 80) ** -0.07)
    assert m["torch_cl_objective"] is None and lat["torch_cl_ms"] is None
    results["summary"] = {"mobilenet_v3_small": s}
    results["meta"] = {"cpu": "c", "cores": 2, "cpu_flags": {}, "jax": "j", "flax": "f", "torch": "t",
                       "torch_threads": 2, "loadavg_start": (0, 0, 0), "loadavg_end": (0, 0, 0), "XLA_FLAGS": ""}
    results["runs"]["latency"].update(dtype="float32", batch=1, matmul_peak_gflop_s={"flax": 1, "torch": 1})
    monkeypatch.setattr(bench, "markdown", lambda run: "a\nb\ndetails\n")  # (not under test here)
    tables = _tables(bench.suite_markdown(results))
    assert tables["Latency"][2] == "| mobilenet_v3_small | 20.0 | 30.0 | – | 1.50× | – |"
    assert tables["MnasNet objective"][2].startswith("| mobilenet_v3_small | IMAGENET1K_V1 | 67.668 | ")


def test_max_params_keeps_the_small_models(monkeypatch, capsys):
    """--max-params filters the chosen models by bench.param_count before any run."""
    seen = []
    monkeypatch.setattr(bench, "run_suite", lambda names, *a: seen.append(names) or {"summary": {}, "runs": {}})
    monkeypatch.setattr(bench, "suite_markdown", lambda results: "")
    bench.main(["--models", "squeezenet1_1,resnet18,alexnet", "--what", "compile", "--max-params", "12"])
    assert seen == [["squeezenet1_1", "resnet18"]]
    assert "skipping alexnet (61.1M)" in capsys.readouterr().err
    assert bench.param_count("resnet18") == 11_689_512  # torchvision's resnet18: 11,689,512 parameters


def test_mnas_objective_and_representatives():
    import flaxnets
    import netspecs

    assert bench.mnas_objective(75.0, 80.0) == 75.0
    assert bench.mnas_objective(75.0, 160.0) == pytest.approx(75.0 * 2 ** -0.07)
    assert bench.mnas_objective(None, 10.0) is None and bench.top1("semnasnet_100")[0] is None
    assert set(bench.REPRESENTATIVES) == set(netspecs.FAMILIES) - {"lenet"}
    assert set(bench.REPRESENTATIVES.values()) <= set(flaxnets.list_models())
    mobile = {n for n in bench.REPRESENTATIVES.values() if bench.is_mobile(n)}
    assert mobile == {"mobilenet_v1", "mobilenet_v2", "mobilenet_v3_large", "mnasnet1_0", "shufflenet_v2_x1_0",
                      "efficientnet_b0", "mobilenetv1_100", "semnasnet_100"}
    # inception_v3's train step needs 299x299 (its auxiliary head): benchmarked there, labelled so
    assert bench.model_size("inception_v3", 224) == 299 and bench.model_size("inception_v3", 320) == 320
    assert bench.model_size("resnet50", 224) == 224


@pytest.mark.parametrize("argv,msg", [
    (["--families", "resnet,nope"], "--families: unknown"),
    (["--what", "train,bogus"], "--what: unknown"),
    (["--what", "all", "--dtype", "bfloat16"], "drop --dtype bfloat16"),
    (["--families", "--models", "lenet5"], "one of --models"),
    (["--what", "latency", "--latency-repeats", "0"], "--latency-repeats must be"),
    (["--models", "lenet5", "--size", "32", "--max-params", "0"], "--max-params must be > 0"),
    (["--models", "lenet5,squeezenet1_1", "--size", "32", "--max-params", "0.01"], "no chosen model is that small"),
])
def test_bench_suite_rejects_bad_options(capsys, argv, msg):
    with pytest.raises(SystemExit):
        bench.main(argv)
    assert msg in capsys.readouterr().err


# ----------------------------------------------------------------------------- GPU script


def test_gpu_script_fails_fast_without_gpu(capsys):
    """`python -m benchmarks.gpu` on a machine without a GPU stops before building a model."""
    import jax

    from benchmarks import gpu

    if jax.default_backend() == "gpu":
        pytest.skip("a GPU is present")
    with pytest.raises(SystemExit, match="no GPU to benchmark on: jax's default backend is 'cpu'"):
        gpu.main(["--models", "resnet50"])


def test_gpu_script_cpu_smoke(tmp_path):
    """The GPU script's measurement path, run on the CPU (--allow-cpu) at a tiny size."""
    from benchmarks import gpu

    md, js = tmp_path / "gpu.md", tmp_path / "gpu.json"
    res = gpu.main(["--allow-cpu", "--models", "lenet5,alexnet", "--dtypes", "float32", "--batch", "2",
                    "--size", "32", "--repeats", "1", "--steps", "1", "--warmup", "0", "--budget-s", "0",
                    "--md", str(md), "--json", str(js)])
    rows = res["rows"]
    assert [r["variant"] for r in rows[:3]] == ["flax train", "torch train", "torch-cl train"]
    assert rows[3] == {"model": "alexnet", "dtype": "float32", "skipped": "skipped (--budget-s 0)"}
    assert rows[2]["vs_torch_cl"] == 1.0 and rows[0]["flops_per_step"] > 0 and rows[0]["pct_peak"] > 0
    table = [line for line in md.read_text().splitlines() if line.startswith("|")]
    assert len(table) == 2 + 4 and len({line.count("|") for line in table}) == 1, table
    assert json.loads(js.read_text())["rows"][0]["img_s"] == rows[0]["img_s"]
    assert set(gpu.ORDER) <= set(__import__("flaxnets").list_models())


def test_input_pipeline_default_workers():
    from benchmarks.input_pipeline import default_workers

    assert default_workers(1) == [0, 1] and default_workers(2) == [0, 1, 2]
    assert default_workers(12) == [0, 1, 2, 4, 8, 12] and default_workers(16) == [0, 1, 2, 4, 8, 16]


def test_profile_step_smoke(capsys):
    """`python -m benchmarks.profile_step` on lenet5 (batch 2, 32x32): every Flax thunk it times is an
    instruction of the compiled step, attributed to a torch module class (LeNet-5's Conv2d / Linear
    layers appear, forward and backward), and torch's operators are listed."""
    from benchmarks import profile_step

    res = profile_step.main(["--model", "lenet5", "--batch", "2", "--size", "32", "--steps", "2", "--top", "5"])
    ops = res["flax_ops"]
    assert ops and all(r["ms"] > 0 and r["opcode"] for r in ops)
    kinds = {(r["kind"], r["pass"]) for r in res["flax_by_kind"]}
    assert any(k.startswith("Conv2d[") and p == "fwd" for k, p in kinds)
    assert any(k.startswith("Conv2d[") and p == "bwd" for k, p in kinds)
    assert ("Linear", "fwd") in kinds
    assert any(r["op"].startswith("aten::") for r in res["torch_ops"])
    assert res["step_ms"]["flax"] > 0 and res["step_ms"]["torch"] > 0
    out = capsys.readouterr().out
    assert "Flax by torch module class and pass:" in out and "torch operators (self CPU):" in out
    with pytest.raises(SystemExit):
        profile_step.main(["--model", "no_such_model"])


def test_profile_step_attribution():
    from benchmarks import profile_step

    assert profile_step.module_path("jit(train_step)/transpose(jvp(ConvNeXt))/features/1/0/block/0/mul") == \
        ("features.1.0.block.0", True)
    assert profile_step.module_path("jit(infer)/ConvNeXt/classifier/2/dot_general") == \
        ("ConvNeXt.classifier.2", False)
    kinds = {"features": "Sequential", "features.1.0.block.0": "Conv2d[dw 7x7]"}
    assert profile_step.kind_of("features.1.0.block.0.while.body", kinds) == "Conv2d[dw 7x7]"
    assert profile_step.kind_of("features.9", kinds) == "Sequential"
    assert profile_step.kind_of("", kinds) == "(top)"
    assert profile_step.kind_of("ConvNeXt.features.1.0.block.0", kinds) == "Conv2d[dw 7x7]"
    insts = profile_step.hlo_instructions(
        '  %fusion.3 = f32[2]{0} fusion(%p), kind=kLoop, metadata={op_name="jit(f)/a/b/add"}\n'
        '  ROOT %dot.1 = f32[2]{0} dot(%x, %y), metadata={op_name="jit(f)/c/dot_general"}\n'
        '  %p = f32[2]{0} parameter(0)\n')
    assert insts == {"fusion.3": ("fusion", "jit(f)/a/b/add"), "dot.1": ("dot", "jit(f)/c/dot_general")}
