"""A version's stored files: the model in the BentoML store, its integrity check, the
reference sample, and loading the model back into Python."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from nbdeploy import config
from nbdeploy.errors import NbdeployError, TamperedArtifactError
from nbdeploy.package.runtime.integrity import artifact_sha256
from nbdeploy.refs import parse_ref
from nbdeploy.registry import Registry


def save_model(adapter: Any, model: Any, name: str, model_hash: str, info: Any) -> str:
    import bentoml

    tag = f"{name}:{model_hash[:20]}" + ("-skops" if info.framework == "skops" else "")
    try:
        return str(bentoml.models.get(tag).tag)
    except bentoml.exceptions.NotFound:
        pass
    labels = {"nbdeploy.name": name, "framework": info.framework}
    saved = adapter.save(model, tag, labels=labels, metadata={"task": info.task})
    return str(saved.tag)


def load_skops(path: str | Path, trusted: list[str]) -> Any:
    """Load a skops file trusting exactly ``trusted`` (the types recorded at deploy time);
    a file holding any other type is refused with the types named, nothing is run."""
    import skops.io as sio
    from skops.io.exceptions import UntrustedTypesFoundException

    try:
        return sio.load(path, trusted=list(trusted))
    except UntrustedTypesFoundException:
        extra = sorted(set(sio.get_untrusted_types(file=path)) - set(trusted))
        raise NbdeployError(
            f"refusing to load {path}: it holds types outside the model's trusted list "
            f"{sorted(trusted)}: {extra}. Deploy the model again from its notebook instead."
        ) from None


def model_path(model_tag: str) -> str:
    import bentoml

    return bentoml.models.get(model_tag).path


def stamp_version(bento_path: str, version: int) -> None:
    """Write the registry's version number into the built bento's metadata.json."""
    import json

    meta = Path(bento_path) / "src" / "metadata.json"
    if meta.exists():
        data = json.loads(meta.read_text())
        data["version"] = version
        meta.write_text(json.dumps(data, indent=2, default=str))


def mask_sensitive(name: str, frame: pd.DataFrame, sensitive: dict[str, str] | None) -> pd.DataFrame:
    """``frame`` with sensitive columns dropped or hashed as the prediction log does (same
    salted sha256, so drift still compares like with like); never a value in clear."""
    if not sensitive:
        return frame
    from nbdeploy.monitor.predlog import PredictionLog

    out = frame.drop(columns=[c for c, mode in sensitive.items() if mode == "drop" and c in frame])
    hashed = [c for c, mode in sensitive.items() if mode == "hash" and c in out]
    if hashed:
        log = PredictionLog.for_deployment(name, sensitive=sensitive)
        out = out.astype({c: object for c in hashed})
        for column in hashed:
            out[column] = [None if pd.isna(v) else log.hash_value(v.item() if hasattr(v, "item") else v)
                           for v in out[column]]
    return out


def mask_stored_reference(name: str, version: int, bento_tag: str, sensitive: dict[str, str]) -> None:
    """Mask an already stored version's reference sample: the pickle and the bento's copy."""
    import json

    import bentoml

    path = reference_path(name, version)
    if path.exists():
        masked = mask_sensitive(name, pd.read_pickle(path), sensitive)
        masked.to_pickle(path)
    copy = Path(bentoml.bentos.get(bento_tag).path) / "src" / "reference.json"
    if copy.exists():
        rows = json.loads(copy.read_text())
        frame = mask_sensitive(name, pd.DataFrame(rows), sensitive)
        copy.write_text(json.dumps(frame.to_dict(orient="records"), default=str))


def reference_path(name: str, version: int) -> Path:
    """Where a version's reference sample is kept (explanations and drift use it)."""
    return config.runs_dir() / name / f"v{version}" / "reference.parquet.pkl"


def write_reference(name: str, version: int, reference: pd.DataFrame) -> None:
    path = reference_path(name, version)
    path.parent.mkdir(parents=True, exist_ok=True)
    reference.to_pickle(path)


def load_reference(name: str, version: int | None = None) -> pd.DataFrame:
    """The reference sample stored with a version."""
    row = Registry().version(name, version)
    return pd.read_pickle(reference_path(name, row["version"]))


def verify_artifact(row: dict[str, Any]) -> None:
    """Refuse a stored model whose files changed since deploy (with an audit event)."""
    try:
        actual = artifact_sha256(model_path(row["model_tag"]))
    except Exception as exc:
        raise TamperedArtifactError(
            f"the model {row['model_tag']} of {row['name']} v{row['version']} is missing from the "
            f"BentoML store ({exc}); redeploy it from the notebook."
        ) from None
    if actual != row["artifact_sha256"]:
        Registry().log_event("artifact-tampered", name=row["name"], version=row["version"],
                             detail={"expected": row["artifact_sha256"], "actual": actual})
        raise TamperedArtifactError(
            f"refusing to serve {row['name']} v{row['version']}: its model files changed after deploy "
            f"(sha256 {actual[:12]}… ≠ recorded {row['artifact_sha256'][:12]}…). Redeploy from the notebook."
        )


def load_model(ref: str) -> tuple[Any, pd.DataFrame]:
    """The deployed model object and its reference sample, loaded from the BentoML store."""
    import bentoml
    import cloudpickle

    name, version = parse_ref(ref)
    row = Registry().version(name, version)
    verify_artifact(row)
    stored = bentoml.models.get(row["model_tag"])
    framework = row["framework"]
    if framework == "pyfunc":
        from nbdeploy.capture.frameworks import PYFUNC_FILE

        model = cloudpickle.loads(Path(stored.path_of(PYFUNC_FILE)).read_bytes())
    elif framework == "xgboost":
        import xgboost as xgb

        from nbdeploy.capture.frameworks import XGB_FILE

        cls = stored.info.metadata.get("xgboost_class", "Booster")
        model = xgb.Booster() if cls == "Booster" else getattr(xgb, cls)()
        model.load_model(stored.path_of(XGB_FILE))
    elif framework == "skops":
        from nbdeploy.capture.frameworks import SKOPS_FILE, trusted_types

        model = load_skops(stored.path_of(SKOPS_FILE), trusted_types(stored.path))
    elif framework == "lightgbm" and stored.info.module.endswith("lightgbm"):
        model = bentoml.lightgbm.load_model(stored)
    else:
        model = bentoml.sklearn.load_model(stored)
    return model, load_reference(name, row["version"])
