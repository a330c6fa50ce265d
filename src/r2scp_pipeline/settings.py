"""Project settings (see https://docs.kedro.org/en/stable/configure/configuration_basics/).

kedro-mlflow registers its hooks through its entry point, so every ``kedro run`` is tracked
in MLflow with the store configured in ``conf/base/mlflow.yml``.
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

from r2scp_pipeline.hooks import EarlyChecks, NodeTimes, ProjectMlflowStore  # noqa: E402

# Checks that span pipelines, run before the first node (and before kedro-mlflow's run);
# the local MLflow store kept with the project (artifact locations, experiment kind);
# wall seconds per node (node_times).
HOOKS = (EarlyChecks(), ProjectMlflowStore(), NodeTimes())
