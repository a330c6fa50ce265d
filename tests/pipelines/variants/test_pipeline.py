"""Wiring of the ``variants`` pipeline: one namespaced ``train_variant`` node per variant."""

from __future__ import annotations

import inspect

from r2scp_pipeline.pipelines.variants import create_pipeline
from r2scp_pipeline.variants import variant_names


def test_one_node_per_variant_and_only_r2scp_waits_for_the_mix_model():
    pipe = create_pipeline()
    names = {n.name for n in pipe.nodes}
    assert {f"{v}.train_variant" for v in variant_names()} <= names
    # the other variants train their own stage II: they can run next to the mix pipeline
    assert {n.name for n in pipe.nodes if "r2scp_model" in n.inputs} == {"r2scp.train_variant"}
    assert "r2scp_model" in pipe.inputs()


def test_a_variant_node_binds_every_input_by_name():
    node = next(n for n in create_pipeline().nodes if n.name == "zero_fill.train_variant")
    params = inspect.signature(node.func).parameters
    assert params["r2scp_model"].default is None and params["variant"].default == "zero_fill"
    assert "params:mix" in node.inputs and "seed_experts" in node.inputs
