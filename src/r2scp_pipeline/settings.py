"""Project settings (see https://docs.kedro.org/en/stable/configure/configuration_basics/).

Every ``kedro run`` is tracked in MLflow with the store configured in ``conf/base/mlflow.yml``,
by kedro-mlflow's hook in the subclass :class:`~r2scp_pipeline.hooks.MlflowParamsOnce` (which
logs each parameter once per run); kedro-mlflow's own registration through its entry point is
turned off so the hook does not run twice.
"""

from kedro.config import OmegaConfigLoader

CONFIG_LOADER_CLASS = OmegaConfigLoader
CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
    # deep-merge environments, so conf/test (or conf/local) can override one nested value
    # (mlflow.yml too: conf/test/mlflow.yml changes only the store)
    "merge_strategy": {"parameters": "soft", "mlflow": "soft"},
    "config_patterns": {"mlflow": ["mlflow*", "mlflow*/**", "**/mlflow*"]},
}

from r2scp_pipeline.hooks import (  # noqa: E402
    EarlyChecks,
    MlflowParamsOnce,
    NodeTimes,
    ProjectMlflowStore,
)

# Checks that span pipelines, run before the first node (and before kedro-mlflow's run);
# the local MLflow store kept with the project (artifact locations, experiment kind);
# wall seconds per node (node_times); kedro-mlflow's tracking, registered last as its entry
# point would be (pluggy calls the last registered first).
HOOKS = (EarlyChecks(), ProjectMlflowStore(), NodeTimes(), MlflowParamsOnce())
# kedro compares the installed distribution's metadata name (kedro_mlflow in 2.0's wheel)
DISABLE_HOOKS_FOR_PLUGINS = ("kedro_mlflow", "kedro-mlflow")
