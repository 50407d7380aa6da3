"""Run one validation notebook with papermill and turn every way it can end into a RunResult.

Statuses: ``passed`` (every cell ran), ``failed`` (a cell raised, timed out or killed its
kernel) and ``error`` (the notebook could not be run as asked: missing file, no
``parameters`` cell, a required parameter left empty, no such kernel). The executed
notebook is written to ``output_path`` in every case except a missing input file.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import nbformat
import papermill
from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel
from nbclient.exceptions import CellTimeoutError, DeadKernelError
from papermill.clientwrap import PapermillNotebookClient
from papermill.engines import NBClientEngine, papermill_engines
from papermill.exceptions import PapermillExecutionError
from papermill.log import logger as papermill_logger
from papermill.translators import papermill_translators

from nbdeploy.validate import spares
from nbdeploy.validate.fastkernel import kernel_manager
from nbdeploy.validate.record import read_metrics

__all__ = ["INJECTED", "RunResult", "run_notebook"]

Status = Literal["passed", "failed", "error"]

#: Parameters nbdeploy injects itself; a notebook need not declare them all.
INJECTED = ("model_name", "model_version", "model_tag", "endpoint")

ENGINE = "nbdeploy"

TAG_HINT = (
    "tag the cell that holds the default values with `parameters` (JupyterLab: select the "
    "cell, open the property inspector (gear icon, right sidebar) and add the tag "
    "`parameters`; Notebook 7: View > Right Sidebar > Show Notebook Tools)"
)


@dataclass
class RunResult:
    """The outcome of one notebook run: status, why it failed, the metrics it recorded."""

    notebook: str
    output_path: str
    parameters: dict[str, Any]
    status: Status
    reason: str | None
    metrics: dict[str, Any]
    duration_s: float
    failed_cell: int | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when the notebook ran to the end."""
        return self.status == "passed"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (for the registry and reports)."""
        return asdict(self)


class _QuietRepeats(logging.Filter):
    """Drop papermill/nbclient log lines that RunResult already reports more clearly."""

    DROP = (
        "Passed unknown parameter",
        "does not contain a cell with tag 'parameters'",
        "Timeout waiting for execute reply",
        "Kernel died while waiting",
        "Interrupting kernel",
        "coro=<NotebookClient.",  # a poll task left pending by a cell timeout, at exit
    )

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(text in message for text in self.DROP)


logging.getLogger("papermill").addFilter(_QuietRepeats())
logging.getLogger("asyncio").addFilter(_QuietRepeats())


class _Client(PapermillNotebookClient):
    """papermill's notebook client that owns even a kernel manager handed to it (an adopted
    spare kernel), so every run ends by shutting its kernel down and closing its channels."""

    def __init__(self, nb_man: Any, km: Any = None, **kw: Any) -> None:
        super().__init__(nb_man, km=km, **kw)
        self.owns_km = True


class _Engine(NBClientEngine):
    """papermill's nbclient engine with :class:`_Client`, keeping the partly executed
    notebook when a run aborts."""

    @classmethod
    def execute_managed_notebook(  # type: ignore[override]
        cls, nb_man: Any, kernel_name: str, log_output: bool = False,
        stdout_file: Any = None, stderr_file: Any = None, start_timeout: float = 60,
        execution_timeout: float | None = None, **kwargs: Any,
    ) -> Any:
        kwargs.pop("input_path", None)
        try:
            return _Client(
                nb_man, timeout=execution_timeout, startup_timeout=start_timeout,
                kernel_name=kernel_name, log=papermill_logger, log_output=log_output,
                stdout_file=stdout_file, stderr_file=stderr_file, **kwargs,
            ).execute()
        except (CellTimeoutError, DeadKernelError) as exc:
            index = _last_started_cell(nb_man.nb)
            if index is not None:
                cell = nb_man.nb.cells[index]
                nb_man.cell_exception(cell, cell_index=index)
                cell.setdefault("outputs", []).append(
                    nbformat.v4.new_output(
                        "error", ename=type(exc).__name__, evalue=str(exc).strip(), traceback=[]
                    )
                )
            exc.nbdeploy_notebook = nb_man.nb  # type: ignore[attr-defined]
            exc.nbdeploy_cell = index  # type: ignore[attr-defined]
            raise


papermill_engines.register(ENGINE, _Engine)


def _last_started_cell(nb: nbformat.NotebookNode) -> int | None:
    """Index of the cell that was running when execution stopped."""
    started = [
        i
        for i, cell in enumerate(nb.cells)
        if cell.get("metadata", {}).get("papermill", {}).get("start_time")
    ]
    return started[-1] if started else None


def _tagged(nb: nbformat.NotebookNode, tag: str) -> int:
    """Index of the first cell carrying ``tag``, or -1."""
    for i, cell in enumerate(nb.cells):
        if tag in cell.get("metadata", {}).get("tags", []):
            return i
    return -1


def _declared(nb: nbformat.NotebookNode, index: int, kernel_name: str | None) -> dict[str, Any]:
    """Parameters declared in the parameters cell: name -> papermill Parameter dict."""
    kernel = kernel_name or nb.metadata.get("kernelspec", {}).get("name") or "python3"
    language = nb.metadata.get("kernelspec", {}).get("language") or nb.metadata.get(
        "language_info", {}
    ).get("name", "python")
    try:
        translator = papermill_translators.find_translator(kernel, language)
        return {p.name: p._asdict() for p in translator.inspect(nb.cells[index])}
    except (NotImplementedError, ValueError, AttributeError):
        return {}


def _missing_required(
    declared: dict[str, Any], parameters: dict[str, Any], required: Iterable[str]
) -> list[str]:
    """Required parameters that would run as None (passed as None or left at a None default)."""
    wanted = list(required) + [
        name for name, p in declared.items() if "required" in str(p.get("help", "")).lower()
    ]
    missing = []
    for name in dict.fromkeys(wanted):
        if name in parameters:
            empty = parameters[name] is None
        else:
            empty = name not in declared or str(declared[name].get("default")).strip() == "None"
        if empty:
            missing.append(name)
    return missing


def _kernel_warning(nb: nbformat.NotebookNode, kernel_name: str | None) -> str | None:
    """Warn when the chosen Python kernel is another environment (nbdeploy may be missing)."""
    name = kernel_name or nb.metadata.get("kernelspec", {}).get("name") or "python3"
    try:
        spec = KernelSpecManager().get_kernel_spec(name)
    except (NoSuchKernel, OSError, ValueError):
        return None  # reported by the run itself
    exe = spec.argv[0] if spec.argv else ""
    same_interpreter = ("python", "python3", f"python3.{sys.version_info[1]}")
    if spec.language.lower() != "python" or exe in same_interpreter:
        return None  # jupyter_client starts these with this very interpreter
    if Path(os.path.abspath(exe)).parent == Path(os.path.abspath(sys.executable)).parent:
        return None
    return (
        f"kernel {name!r} runs {exe}, not this environment ({sys.executable}); nbdeploy may "
        f"not be importable there: register this environment with `{sys.executable} -m "
        f"ipykernel install --sys-prefix --name python3`, or choose another kernel"
    )


def _first_line(source: str) -> str:
    """The first non-blank line of a cell, shortened, to name the cell in a reason."""
    for line in source.splitlines():
        if line.strip():
            return line.strip()[:60] + ("..." if len(line.strip()) > 60 else "")
    return ""


def _shorten(text: str, limit: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _write(nb: nbformat.NotebookNode, output_path: Path) -> None:
    output_path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(output_path))


def run_notebook(
    path: str | Path,
    *,
    parameters: dict[str, Any] | None = None,
    output_path: Path,
    timeout: float | None = 600,
    kernel_name: str | None = None,
    cwd: Path | None = None,
    required: Iterable[str] = (),
    next_spare: bool = False,
) -> RunResult:
    """Execute ``path`` with ``parameters`` into ``output_path``; never raises for notebook faults.

    ``timeout`` is per cell (seconds, None for no limit). ``cwd`` defaults to the notebook's
    folder. ``required`` names parameters that must not stay None; a parameter whose
    comment in the parameters cell says ``# required`` is required too. Inside
    :func:`nbdeploy.validate.spares.spare_kernels`, the run adopts a spare kernel started by
    the previous run on this thread, and ``next_spare`` starts one for the next run.
    """
    started = time.perf_counter()
    path, output_path = Path(path), Path(output_path)
    parameters = dict(parameters or {})
    result = RunResult(str(path), str(output_path), parameters, "error", None, {}, 0.0)

    def done(status: Status, reason: str | None, cell: int | None = None) -> RunResult:
        result.status, result.reason, result.failed_cell = status, reason, cell
        if output_path.is_file():
            try:
                result.metrics = read_metrics(output_path)
            except (OSError, ValueError):
                result.warnings.append(f"could not read metrics back from {output_path}")
        result.duration_s = round(time.perf_counter() - started, 3)
        return result

    if output_path.is_file():
        output_path.unlink()  # never read a stale result from an earlier run
    if not path.is_file():
        return done("error", f"notebook not found: {path} (check the path)")
    try:
        nb = nbformat.read(str(path), as_version=4)
    except Exception as exc:  # nbformat raises several unrelated types for bad files
        return done("error", f"{path} is not a readable notebook: {_shorten(str(exc), 200)}")

    param_index = _tagged(nb, "parameters")
    if param_index < 0:
        _write(nb, output_path)
        return done("error", f"{path.name} has no cell tagged 'parameters': {TAG_HINT}")

    declared = _declared(nb, param_index, kernel_name)
    unknown = [k for k in parameters if k not in declared and k not in INJECTED]
    if unknown and declared:
        result.warnings.append(
            f"{path.name} does not declare {', '.join(unknown)} in its parameters cell "
            f"(declared: {', '.join(declared)}); injected anyway"
        )
    missing = _missing_required(declared, parameters, required)
    if missing:
        _write(nb, output_path)
        hint = " ".join(f"-p {name}=..." for name in missing)
        return done("error", f"missing parameter {', '.join(missing)}: pass {hint}")
    warning = _kernel_warning(nb, kernel_name)
    if warning:
        result.warnings.append(warning)

    # papermill inserts one injected cell after the parameters cell (unless one exists).
    shift = 1 if parameters and _tagged(nb, "injected-parameters") < 0 else 0

    def source_index(index: int | None) -> int | None:
        if index is None or not shift or index <= param_index:
            return index
        return max(index - shift, param_index)

    output_path.parent.mkdir(parents=True, exist_ok=True)
    log_path = output_path.with_suffix(".kernel.log")
    log_path.unlink(missing_ok=True)
    workdir = str(cwd or path.parent.resolve())
    adopted: dict[str, Any] = {}
    spec_name = kernel_name or nb.metadata.get("kernelspec", {}).get("name")
    if spec_name:
        key = spares.SpareKey.of(spec_name, workdir, log_path.parent)
        km = spares.take(key, log_path, prepare_next=next_spare)
        if km is not None:
            adopted["km"] = km
    try:
        papermill.execute_notebook(
            str(path),
            str(output_path),
            parameters=parameters,
            engine_name=ENGINE,
            request_save_on_cell_execute=False,
            progress_bar=False,
            kernel_name=kernel_name,
            execution_timeout=timeout,
            resources={"metadata": {"path": workdir}},
            shutdown_kernel="immediate",
            kernel_manager_class=kernel_manager(log_path),
            **adopted,
        )
    except PapermillExecutionError as exc:
        log_path.unlink(missing_ok=True)  # the error is in the notebook itself
        index = source_index(exc.cell_index)
        reason = f"{exc.ename}: {_shorten(exc.evalue)}" if exc.evalue else exc.ename
        return done("failed", f"{reason} (cell {index}: {_first_line(exc.source)})", index)
    except (CellTimeoutError, DeadKernelError) as exc:
        executed = getattr(exc, "nbdeploy_notebook", None)
        _write(executed if executed is not None else nb, output_path)
        raw = getattr(exc, "nbdeploy_cell", None)
        index = source_index(raw)
        where = ""
        if raw is not None and executed is not None:
            where = f" (cell {index}: {_first_line(executed.cells[raw].source)})"
        if isinstance(exc, CellTimeoutError):
            log_path.unlink(missing_ok=True)
            limit = f"{timeout:g} s" if timeout else "the time limit"
            reason = f"cell timed out after {limit}{where}: make it faster or raise --timeout"
        else:
            reason = (
                f"kernel died{where}: the kernel process exited (os._exit, a crash in native "
                f"code, or out of memory); its stderr is in {log_path}"
            )
        return done("failed", reason, index)
    except NoSuchKernel as exc:
        _write(nb, output_path)
        return done(
            "error",
            f"no Jupyter kernel named {exc.name!r}: see `jupyter kernelspec list`, pass "
            f"--kernel NAME, or register this environment with `{sys.executable} -m ipykernel "
            "install --sys-prefix --name python3`",
        )
    except Exception as exc:  # kernel start failures, unreadable outputs, ...
        if not output_path.is_file():
            _write(nb, output_path)
        why = f"{type(exc).__name__}: {_shorten(str(exc))}"
        return done("error", f"could not run {path.name}: {why}")
    finally:
        if "km" in adopted:  # shut down by nbclient, unless papermill failed before it ran
            spares.kill(adopted["km"])
    log_path.unlink(missing_ok=True)  # kept only when the kernel died or would not start
    return done("passed", None)
