"""The one ONNX Runtime session factory: the Predictor, the export parity check and compression all open models here."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from arginator.errors import ModelLoadError


def create_session(path: Path | str, threads: int = 0, cpu_only: bool = False) -> Any:
    """An `onnxruntime.InferenceSession` for `path`.

    Args:
        path: the `.onnx` file.
        threads: intra-op threads (0: ONNX Runtime's default, all physical cores). Inter-op is 1: these graphs are a
            chain of operators, and a second pool only adds spinning threads.
        cpu_only: use the CPU provider even when CUDA is available (measurements that must compare like with like).

    Raises:
        ModelLoadError: the file is missing or ONNX Runtime cannot load it.
    """
    import onnxruntime as ort

    path = Path(path)
    if not path.is_file():
        raise ModelLoadError(f"model not found: {path}")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    available = ort.get_available_providers()
    wanted = ("CPUExecutionProvider",) if cpu_only else ("CUDAExecutionProvider", "CPUExecutionProvider")
    try:
        return ort.InferenceSession(str(path), options, providers=[p for p in wanted if p in available])
    except Exception as exc:  # ORT raises its own Fail/InvalidGraph/etc. for corrupt files
        raise ModelLoadError(f"cannot load {path.name}: not a valid ONNX model ({type(exc).__name__})") from None
