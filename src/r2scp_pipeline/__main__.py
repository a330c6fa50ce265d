"""r2scp-pipeline file for ensuring the package is executable
as `r2scp-pipeline` and `python -m r2scp_pipeline`

``r2scp-pipeline predict ...`` is the project command of ``cli.py`` (same as ``kedro predict``);
anything else is ``kedro run`` with those options.
"""

import contextlib
import sys
from pathlib import Path
from typing import Any


def main(*args, **kwargs) -> Any:
    package_name = Path(__file__).parent.name
    argv = list(args[0]) if args else sys.argv[1:]
    predicting = argv[:1] == ["predict"]
    # predict keeps stdout for its result (--json): Kedro's logging banner (printed when
    # kedro.framework.project is first imported) goes to stderr
    with contextlib.redirect_stdout(sys.stderr) if predicting else contextlib.nullcontext():
        from kedro.framework.cli.utils import find_run_command
        from kedro.framework.project import configure_project

        configure_project(package_name)

    interactive = hasattr(sys, "ps1")
    kwargs["standalone_mode"] = not interactive

    if predicting:
        from .cli import predict

        return predict(argv[1:], prog_name="r2scp-pipeline predict", **kwargs)
    run = find_run_command(package_name)
    return run(*args, **kwargs)


if __name__ == "__main__":
    main()
