"""Wiring of the ``variants`` pipeline (no logic here: see ``nodes.py``).

One template pipeline (``train_variant``) instantiated per variant with ``namespace=<variant>``
(Kedro modular pipelines): ``kedro viz`` draws each, ``kedro run --namespaces=zero_fill``
trains one. Shared inputs (features, retrieval tables, the per-seed stage I) and parameters
keep their names; each namespace writes ``<variant>.variant_models`` / ``.variant_history``.
"""

from functools import partial

from kedro.pipeline import Node, Pipeline, pipeline

from r2scp_pipeline.variants import variant_names

from .nodes import pretrain_seed_experts, train_generative_imputers, train_variant

FEATURES = ["qa_pairs", "audio_features", "visual_features", "question_features"]
RETRIEVAL = ["memory_bank_audio", "memory_bank_visual", "neighbors"]
GROUNDING = "grounding_labels"  # stage I's grounding targets (variants that retrain stage I)
AUDIO_SET = "audio_pretraining_set"  # the audio encoder's pretraining data (ditto)


#: train_variant's parameter -> dataset; only the ``r2scp`` variant reads ``r2scp_model`` (at
#: ``params:seed`` it is the mix pipeline's model, not trained again), so the other variants do
#: not wait for the mix pipeline and can train next to it (docs/scaling.md, DaskRunner)
INPUTS = {
    "seed_experts": "seed_experts", "generative_imputers": "generative_imputers",
    **{name: name for name in (*FEATURES, *RETRIEVAL, GROUNDING, AUDIO_SET)},
    "model_params": "params:model", "pretrain_params": "params:pretrain",
    "mix_params": "params:mix", "train_missing": "params:train_missing", "seed": "params:seed",
    "evaluate_params": "params:evaluate",
}  # fmt: skip
REUSES_MIX_MODEL = "r2scp"


def _variant(name: str) -> Pipeline:
    reuses = name == REUSES_MIX_MODEL
    inputs = {"r2scp_model": "r2scp_model", **INPUTS} if reuses else INPUTS
    func = partial(train_variant, **({} if reuses else {"r2scp_model": None}), variant=name)
    template = Pipeline([
        Node(func, inputs=inputs, outputs=["variant_models", "variant_history"],
             name="train_variant")
    ])  # fmt: skip
    # every input keeps its name across namespaces: the shared datasets and the parameters
    params = {d for d in inputs.values() if d.startswith("params:")}
    shared = set(inputs.values()) - params
    return pipeline(template, namespace=name, inputs=shared, parameters=params)


def create_pipeline(**kwargs) -> Pipeline:
    shared = Pipeline(
        [
            Node(
                pretrain_seed_experts,
                inputs=["stage1_experts", *FEATURES, GROUNDING, AUDIO_SET, "params:model",
                        "params:pretrain", "params:train_missing", "params:seed",
                        "params:evaluate"],  # fmt: skip
                outputs="seed_experts",
                name="pretrain_seed_experts",
            ),
            Node(
                train_generative_imputers,
                inputs=[*FEATURES, "params:seed", "params:evaluate"],
                outputs="generative_imputers",
                name="train_generative_imputers",
            ),
        ]
    )
    return sum((_variant(v) for v in variant_names()), shared)
