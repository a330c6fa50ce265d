"""``r2scp_pipeline.params``: one schema per parameter group, checked by ``hooks.EarlyChecks``
before the first node (issue #11 item 2: typos outside ``model`` used to run with defaults)."""

from __future__ import annotations

import copy
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from kedro.config import OmegaConfigLoader
from kedro.framework.cli.utils import _split_params

from r2scp_pipeline.params import ParameterError, Parameters, validate_parameters
from r2scp_pipeline.settings import CONFIG_LOADER_ARGS
from tests.conftest import PROJECT_ROOT, make_project_copy, run_pipelines

GROUPS = list(Parameters.model_fields)


def load(env: str, cli: str | None = None) -> dict[str, Any]:
    """The merged parameters of ``env`` (over base), with ``--params=cli`` parsed and merged the
    way ``kedro run`` does (Kedro's own parser, then the config loader's runtime_params)."""
    runtime = _split_params(None, None, cli) if cli else None
    loader = OmegaConfigLoader(
        str(PROJECT_ROOT / "conf"), env=env, runtime_params=runtime, **CONFIG_LOADER_ARGS
    )
    return loader["parameters"]


@pytest.fixture(scope="module")
def base() -> dict[str, Any]:
    return load("base")


def fails(params: dict[str, Any], message: str) -> str:
    with pytest.raises(ParameterError) as info:
        validate_parameters(params)
    assert message in str(info.value), str(info.value)
    return str(info.value)


@pytest.mark.parametrize("env", ["base", "test", "full", "corpus_study"])
def test_every_environment_validates(env):
    params = load(env)
    assert set(params) == set(GROUPS), "a parameter group without a schema (or vice versa)"
    validate_parameters(params)


# the four examples of issue #11 item 2
EXAMPLES = [
    ("mix.rank_los_weight=0", "unknown parameter mix.rank_los_weight; did you mean mix.rank_loss_weight?"),
    ("pretrain.epoch=1", "unknown parameter pretrain.epoch; did you mean pretrain.epochs?"),
    ("build_index.neighbours.n=5",
     "unknown parameter build_index.neighbours; did you mean build_index.neighbors?"),
    ("dataset.embedded.questions_per_video=3",
     "dataset.embedded.questions_per_video=3: expected a list [low, high] of two integers"),
]  # fmt: skip


@pytest.mark.parametrize(("cli", "message"), EXAMPLES)
def test_the_issue_examples_fail_naming_the_key(cli, message):
    msg = fails(load("test", cli), message)
    assert msg.count("\n  - ") == 1, f"one problem, one line:\n{msg}"


@pytest.mark.parametrize("group", GROUPS)
def test_an_unknown_key_in_each_group_is_rejected(base, group):
    params = copy.deepcopy(base)
    if group == "seed":  # a scalar: a wrong type, and a misspelt top-level key
        params["seed"] = "7"
        fails(params, "seed='7': expected an integer")
        params = copy.deepcopy(base)
        params["sede"] = 7
        fails(params, "unknown parameter sede; did you mean seed?")
        return
    params[group]["no_such_knob"] = 1
    fails(params, f"unknown parameter {group}.no_such_knob; known keys of {group}: [")


def test_nested_blocks_and_ablations_are_checked(base):
    params = copy.deepcopy(base)
    params["features"]["audio"]["logmel"]["n_mel"] = 32
    params["evaluate"]["ablations"]["no_cmr"]["model"]["use_cm"] = False
    params["evaluate"]["ablations"]["no_cap"]["modle"] = {"use_cap": False}
    params["evaluate"]["ablations"]["no_rank_loss"]["mix"]["rank_loss_weight"] = "0"
    msg = fails(params, "unknown parameter features.audio.logmel.n_mel; did you mean "
                        "features.audio.logmel.n_mels?")  # fmt: skip
    assert "unknown parameter evaluate.ablations.no_cmr.model.use_cm; did you mean" in msg
    assert "unknown parameter evaluate.ablations.no_cap.modle; did you mean" in msg
    assert "evaluate.ablations.no_rank_loss.mix.rank_loss_weight='0': expected a number" in msg
    assert msg.count("\n  - ") == 4, msg  # every problem, each once


@pytest.mark.parametrize(
    ("cli", "message"),
    [
        ("pretrain.epochs=2.5", "pretrain.epochs=2.5: expected an integer"),
        ("model.use_cmr=1", "model.use_cmr=1: expected true or false"),
        ("features.num_threads=many", "features.num_threads='many': expected an integer or null"),
        # (--params splits at commas: one-element lists only)
        ("features.visual.grid=[4]", "features.visual.grid=[4]: expected a list [rows, cols]"),
        ("evaluate.missing_rates=[x]", "evaluate.missing_rates=['x']: expected a list of numbers"),
        ("seed=true", "seed=True: expected an integer"),
    ],
)
def test_a_wrong_type_names_key_value_and_type(cli, message):
    fails(load("test", cli), message)


def test_runtime_params_with_the_right_type_pass():
    """``--params`` values are YAML-typed by Kedro's parser: ints, floats, bools, null, lists."""
    cli = (
        "model.k_purge=3,mix.rank_loss_weight=0,mix.lr=1e-3,pretrain.max_epochs_this_run=1,"
        "evaluate.all_ablations=true,dataset.protocol=null,build_index.index.train_size=1000,"
        "features.num_threads=null,evaluate.missing_rates=[1],build_index.index.factory=IVF8,"
        "dataset.music_avqa.annotations_dir=/tmp/avqa,seed=3"
    )
    params = load("test", cli)
    assert params["model"]["k_purge"] == 3 and params["mix"]["rank_loss_weight"] == 0
    checked = validate_parameters(params)
    assert checked.model.k_purge == 3 and checked.evaluate.missing_rates == [1.0]
    assert checked.dataset.protocol is None and checked.seed == 3


def test_the_hook_stops_a_run_before_any_node(tmp_path: Path):
    """In process, through ``EarlyChecks``: each example fails before the dataset node runs."""
    project = make_project_copy(tmp_path / "project")
    for cli, message in EXAMPLES:
        key, _, value = cli.partition("=")
        value = 3 if value == "3" else int(value) if value.isdigit() else value
        with pytest.raises(ParameterError, match=message.split(";")[0].replace("[", r"\[")):
            run_pipelines(project, ["dataset"], {key: value})
    assert not (project / "data/test/01_raw").exists(), "a node ran before the check"
    if (project / "data/test/mlflow.db").exists():  # checked before kedro-mlflow opens its run
        with sqlite3.connect(project / "data/test/mlflow.db") as con:
            assert con.execute("select count(*) from runs").fetchone()[0] == 0


@pytest.mark.e2e
def test_kedro_run_cli_fails_naming_the_typo(tmp_path: Path):
    """``kedro run --env=test --params=mix.rank_los_weight=0`` (every pipeline) stops before
    the first node, the message naming the key and the closest known one."""
    project = make_project_copy(tmp_path / "project")
    cmd = [sys.executable, "-m", "kedro", "run", "--env=test", "--params=mix.rank_los_weight=0"]
    env = dict(os.environ, KEDRO_DISABLE_TELEMETRY="1", COLUMNS="1000")
    done = subprocess.run(cmd, cwd=project, env=env, capture_output=True, text=True, timeout=300)
    out = done.stdout + done.stderr
    assert done.returncode != 0, out[-3000:]
    assert "unknown parameter mix.rank_los_weight; did you mean mix.rank_loss_weight?" in out
    assert not (project / "data/test/01_raw").exists(), "a node ran before the check"


def test_predict_checks_the_parameters_too(tmp_path: Path, monkeypatch):
    """``kedro predict`` reads the same parameters (no pipeline run, no hook): a typo in a conf
    file is one ``Error:`` line naming the key, before any model is loaded."""
    from click.testing import CliRunner

    from r2scp_pipeline.cli import cli

    project = make_project_copy(tmp_path / "project")
    (project / "conf/test/parameters_typo.yml").write_text("pretrain:\n  epoch: 1\n")
    monkeypatch.chdir(project)
    result = CliRunner().invoke(
        cli, ["predict", "--env", "test", "--video-id", "v", "-q", "Is it?"]
    )
    assert result.exit_code == 1
    lines = [ln for ln in result.stderr.splitlines() if ln.startswith("Error:")]
    assert (
        len(lines) == 1
        and "unknown parameter pretrain.epoch; did you mean pretrain.epochs?" in (lines[0])
    ), result.stderr


# ---- corpus (the external retrieval corpus of the corpus study) ---------------------------------
def test_the_corpus_group_is_checked(base):
    assert load("corpus_study")["build_index"]["corpus"]["source"] == "external"
    assert load("test")["corpus"]["num_videos"] == 8
    fails(load("base", "corpus.num_video=5"),
          "unknown parameter corpus.num_video; did you mean corpus.num_videos?")  # fmt: skip
    bad = copy.deepcopy(base)
    bad["corpus"]["seed_offset"] = "1000"
    fails(bad, "corpus.seed_offset='1000': expected an integer")
    bad = copy.deepcopy(base)
    bad["corpus"]["embedded"] = [1]
    fails(bad, "corpus.embedded=[1]")
    bad = copy.deepcopy(base)
    del bad["corpus"]["id_prefix"]
    fails(bad, "parameter corpus.id_prefix is missing")

