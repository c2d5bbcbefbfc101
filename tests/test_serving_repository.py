"""triton_models/: up to date with the catalogue, and every config parses and matches its model."""

from __future__ import annotations

from pathlib import Path

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from restore_r1.serving import backend as b
from restore_r1.serving.repository import (
    CPU_CONFIG_NAME,
    DEFAULT_REPOSITORY,
    MODEL_VERSION,
    model_specs,
    render_repository,
    write_repository,
)

ModelConfig = model_config_pb2.ModelConfig
KIND_GPU = model_config_pb2.ModelInstanceGroup.KIND_GPU
KIND_CPU = model_config_pb2.ModelInstanceGroup.KIND_CPU
SPECS = model_specs()
#: Inputs and outputs (name, data type) each model kind's code reads and writes.
IO = {
    "tool": ({(b.IMAGE, "TYPE_UINT8")}, {(b.OUTPUT_IMAGE, "TYPE_UINT8")}),
    "policy": (
        {(b.IMAGE, "TYPE_UINT8"), (b.HISTORY, "TYPE_INT32")},
        {(b.ACTION, "TYPE_INT32"), (b.ACTION_NAME, "TYPE_STRING"), (b.POLICY_VERSION, "TYPE_STRING")},
    ),
    "agent": ({(b.IMAGE, "TYPE_UINT8"), (b.MAX_STEPS, "TYPE_INT32")}, {(b.OUTPUT_IMAGE, "TYPE_UINT8"), (b.TRAJECTORY, "TYPE_STRING")}),
}


def parse(path: Path) -> ModelConfig:
    return text_format.Parse(path.read_text(), ModelConfig())


def test_committed_repository_is_up_to_date():
    expected = render_repository()
    committed = {
        str(p.relative_to(DEFAULT_REPOSITORY)): p.read_text()
        for p in DEFAULT_REPOSITORY.rglob("*")
        if p.is_file() and p.suffix in (".pbtxt", ".py") and "__pycache__" not in p.parts
    }
    stale = sorted(k for k in set(expected) | set(committed) if expected.get(k) != committed.get(k))
    assert not stale, f"triton_models/ is stale in {stale}; run `python -m restore_r1.serving.repository`"


def test_one_tool_model_per_available_tool():
    from restore_r1.tools import list_tools

    tools = {p for n, k, _, p, _ in SPECS if k == "tool" for p in [p[b.PARAM_TOOL]]}
    assert tools == {t.name for t in list_tools(available_only=True)}
    assert {n for n, k, *_ in SPECS if k != "tool"} == {b.POLICY_MODEL, b.AGENT_MODEL}


def test_gpu_config_puts_only_neural_tools_on_the_gpu():
    """Issue 10 §3: on GPU nodes the networks get GPU instances, the classical tools CPU ones."""
    from restore_r1.serving.repository import GPU_NODE_CLASSICAL_INSTANCES
    from restore_r1.tools import get_tool

    kinds = {}
    for name, kind, _, params, _ in SPECS:
        if kind == "tool":
            config = parse(DEFAULT_REPOSITORY / name / "config.pbtxt")
            kinds[params[b.PARAM_TOOL]] = [(g.kind, g.count) for g in config.instance_group]
    neural = {t for t in kinds if get_tool(t).neural}
    assert neural >= {"dncnn6_denoise", "dncnn17_denoise"} and "clahe" not in neural
    assert all(kinds[t] == [(KIND_GPU, 1)] for t in neural)
    assert all(kinds[t] == [(KIND_CPU, GPU_NODE_CLASSICAL_INSTANCES)] for t in set(kinds) - neural)


@pytest.mark.parametrize("name,kind,on_gpu", [(n, k, g) for n, k, _, _, g in SPECS])
def test_configs_parse_and_match_the_model(name, kind, on_gpu):
    folder = DEFAULT_REPOSITORY / name
    gpu = parse(folder / "config.pbtxt")
    cpu = parse(folder / "configs" / f"{CPU_CONFIG_NAME}.pbtxt")
    assert (folder / MODEL_VERSION / "model.py").is_file()
    assert f'make_model("{kind}"' in (folder / MODEL_VERSION / "model.py").read_text()
    for config, kind_expected in ((gpu, KIND_GPU if on_gpu else KIND_CPU), (cpu, KIND_CPU)):
        assert config.name == name
        assert config.backend == "python"
        assert config.max_batch_size > 0
        assert config.HasField("dynamic_batching")
        assert [g.kind for g in config.instance_group] == [kind_expected]
        inputs = {(t.name, model_config_pb2.DataType.Name(t.data_type)) for t in config.input}
        outputs = {(t.name, model_config_pb2.DataType.Name(t.data_type)) for t in config.output}
        assert (inputs, outputs) == IO[kind]
        for tensor in list(config.input) + list(config.output):
            if tensor.name in (b.IMAGE, b.OUTPUT_IMAGE):
                assert list(tensor.dims) == [-1, -1, 3]
        if kind == "policy":
            assert [list(t.dims) for t in config.input if t.name == b.HISTORY] == [[b.HISTORY_LEN]]
        if kind == "tool":
            assert config.parameters[b.PARAM_TOOL].string_value == name.removeprefix(b.TOOL_MODEL_PREFIX)
        if kind == "agent":
            assert [t.optional for t in config.input if t.name == b.MAX_STEPS] == [True]
            assert float(config.parameters[b.PARAM_TOOL_TIMEOUT].string_value) > 0
    # The CPU config differs only in sizes and the instance kind.
    assert gpu.max_batch_size >= cpu.max_batch_size


def test_no_dynamic_batching_variant(tmp_path):
    root = write_repository(tmp_path / "repo", dynamic_batching=False)
    config = parse(root / b.POLICY_MODEL / "config.pbtxt")
    assert not config.HasField("dynamic_batching") and config.max_batch_size > 0


def test_rewrite_keeps_an_exported_policy_and_drops_stale_tools(tmp_path):
    root = write_repository(tmp_path / "repo")
    exported = root / b.POLICY_MODEL / MODEL_VERSION / b.POLICY_SUBDIR / "policy.json"
    exported.parent.mkdir(parents=True)
    exported.write_text("{}")
    (root / b.tool_model_name("retired_tool")).mkdir()
    write_repository(root)
    assert exported.read_text() == "{}"
    assert not (root / b.tool_model_name("retired_tool")).exists()


def test_the_policy_model_keeps_two_versions_loaded():
    from restore_r1.serving.repository import POLICY_VERSIONS_LOADED

    for name in ("config.pbtxt", f"configs/{CPU_CONFIG_NAME}.pbtxt"):
        config = parse(DEFAULT_REPOSITORY / b.POLICY_MODEL / name)
        assert config.version_policy.latest.num_versions == POLICY_VERSIONS_LOADED == 2
