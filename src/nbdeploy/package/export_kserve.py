"""KServe target: an InferenceService (serving.kserve.io/v1beta1) running the bento's image.

The bento image is a custom predictor container. A local two-version split maps onto
KServe's canary rollout: the older version is rolled out first, then the newer one is
applied with ``canaryTrafficPercent`` equal to its local weight. Every manifest is checked
against ``schemas/inferenceservice-v1beta1.handwritten-subset.schema.json`` before it is
written: a schema written by hand from KServe's v1beta1 API reference for the fields nbdeploy
uses, not KServe's own CRD (no registry reachable here ships that CRD's openAPIV3Schema).
The tests also check every manifest against KServe's own API definition as its PyPI SDK
generates it (field names, types, required fields; ``tests/data/``).
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from nbdeploy.package.export import Exported, ExportError, ExportSpec, Variant, dump_yaml
from nbdeploy.package.export_k8s import API_KEY_ENV, BENTO_UID, HEADER, labels

__all__ = ["SCHEMA_FILE", "check", "export_kserve", "inference_service", "schema"]

SCHEMA_FILE = "inferenceservice-v1beta1.handwritten-subset.schema.json"
TARGET_CONCURRENCY = 8  # requests in flight per pod before Knative adds one (one CPU worker)


@cache
def schema() -> dict[str, Any]:
    """The hand-written JSON schema of the InferenceService subset nbdeploy writes."""
    return json.loads((Path(__file__).parent / "schemas" / SCHEMA_FILE).read_text())


def check(manifest: dict[str, Any]) -> None:
    """Raise ExportError if the manifest breaks the schema or KServe's replica rule."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(schema())
    errors = sorted(validator.iter_errors(manifest), key=lambda e: list(e.absolute_path))
    if errors:
        where = "/".join(str(p) for p in errors[0].absolute_path) or "(top)"
        raise ExportError(f"InferenceService is invalid at {where}: {errors[0].message}")
    predictor = manifest["spec"]["predictor"]
    if predictor.get("minReplicas", 0) > predictor.get("maxReplicas", 10**9) > 0:
        raise ExportError("InferenceService minReplicas is above maxReplicas.")


def _container(spec: ExportSpec, variant: Variant) -> dict[str, Any]:
    """Knative-friendly container: one port named http1, probes on that port, no volumes."""
    probe = {"path": "/readyz", "port": spec.port}
    return {
        "name": "kserve-container",
        "image": variant.image,
        "imagePullPolicy": "IfNotPresent",
        "ports": [{"name": "http1", "containerPort": spec.port, "protocol": "TCP"}],
        "env": [
            {
                "name": API_KEY_ENV,
                "valueFrom": {"secretKeyRef": {"name": spec.api_key_secret, "key": API_KEY_ENV}},
            },
            {"name": "BENTOML_PORT", "value": str(spec.port)},
        ],
        "resources": spec.resources,
        "readinessProbe": {"httpGet": probe, "periodSeconds": 5, "failureThreshold": 3},
        "livenessProbe": {
            "httpGet": {**probe, "path": "/livez"},
            "initialDelaySeconds": 30,
            "periodSeconds": 10,
            "failureThreshold": 3,
        },
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "runAsNonRoot": True,
            "runAsUser": BENTO_UID,
            "capabilities": {"drop": ["ALL"]},
        },
    }


def inference_service(spec: ExportSpec, variant: Variant, canary: int | None) -> dict[str, Any]:
    """One InferenceService for ``variant``; ``canary`` is its traffic percent, if any."""
    predictor: dict[str, Any] = {
        "minReplicas": spec.min_replicas,
        "maxReplicas": spec.max_replicas,
        "scaleMetric": "concurrency",
        "scaleTarget": TARGET_CONCURRENCY,
        "timeout": 60,
        "containers": [_container(spec, variant)],
    }
    if canary is not None:
        predictor = {"canaryTrafficPercent": canary, **predictor}
    manifest = {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {
            "name": spec.k8s_name,
            "labels": labels(spec, variant),
            "annotations": {"serving.kserve.io/deploymentMode": "Serverless"},
        },
        "spec": {"predictor": predictor},
    }
    check(manifest)
    return manifest


def _readme(spec: ExportSpec, stable: Variant | None, newest: Variant) -> str:
    """What to apply in which order, and what KServe needs in the cluster."""
    steps = ["kubectl apply -f kserve/inferenceservice.yaml"]
    if stable is not None:
        steps = [
            "kubectl apply -f kserve/inferenceservice-stable.yaml",
            f"kubectl wait --for=condition=Ready inferenceservice/{spec.k8s_name} --timeout=10m",
            "kubectl apply -f kserve/inferenceservice.yaml",
        ]
    canary = (
        f"Version {newest.version} is the canary: `canaryTrafficPercent: {newest.weight}` sends "
        f"{newest.weight} % of requests to it and the rest to the last revision rolled out at "
        f"100 %, version {stable.version}. That is why `inferenceservice-stable.yaml` (version "
        f"{stable.version}) goes first. Promote with `canaryTrafficPercent: 100`, or remove the "
        "field; roll back by applying the stable file again.\n\n"
        if stable is not None
        else ""
    )
    shadow = (
        f"A shadow version ({spec.shadow.version}) is not exported here: KServe does not mirror "
        "requests; use the `k8s` target with a mirroring proxy for that.\n\n"
        if spec.shadow is not None
        else ""
    )
    return (
        f"# KServe InferenceService for `{spec.name}`\n\n"
        "Needs KServe in **Serverless** mode (Knative): canary rollouts and the concurrency "
        "autoscaler exist only there (KServe 0.15+ also calls this mode `Knative`). "
        f"The predictor runs the bento image as a custom container on port {spec.port}; "
        f"Knative adds a pod when about {TARGET_CONCURRENCY} requests are in flight per pod.\n\n"
        f"{canary}{shadow}"
        "First create the API key Secret (nbdeploy never writes the key into a file):\n\n"
        "```bash\n"
        f"kubectl create secret generic {spec.api_key_secret} "
        f'--from-literal={API_KEY_ENV}="$(openssl rand -hex 32)"\n' + "\n".join(steps) + "\n```\n\n"
        "Unlike the `k8s` target, the root filesystem stays writable: an `emptyDir` for `/tmp` "
        "needs a Knative feature flag (`kubernetes.podspec-volumes-emptydir`).\n\n"
        "Checked offline against nbdeploy's own schema of the InferenceService fields it "
        "writes (written from the KServe v1beta1 API reference), not against a cluster.\n"
    )


def export_kserve(spec: ExportSpec, to: Path) -> Exported:
    """Write ``kserve/inferenceservice.yaml`` (and the stable one first, for a canary)."""
    live = [v for v in spec.live if v.weight > 0]
    if len(live) > 2:
        raise ExportError(
            f"KServe splits traffic between two revisions, the split has {len(live)} versions "
            f"({', '.join(str(v.version) for v in live)}). Reduce it to two, or use the k8s target."
        )
    folder = to / "kserve"
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.yaml"):
        old.unlink()
    header = HEADER.format(name=spec.name, version=spec.version, tag=spec.bento_tag)
    result = Exported()
    newest = live[-1]
    stable = live[0] if len(live) == 2 else None
    if stable is not None:
        path = folder / "inferenceservice-stable.yaml"
        path.write_text(dump_yaml(inference_service(spec, stable, None), header))
        result.add(path, f"InferenceService at version {stable.version} (apply first)")
        canary: int | None = newest.weight
    else:
        canary = None
    path = folder / "inferenceservice.yaml"
    path.write_text(dump_yaml(inference_service(spec, newest, canary), header))
    what = f", canary at {canary} %" if canary is not None else ""
    result.add(path, f"InferenceService at version {newest.version}{what}")
    readme = folder / "README.md"
    readme.write_text(_readme(spec, stable, newest))
    result.add(readme, "KServe prerequisites, apply order and what the canary does")
    result.commands = [
        f"kubectl create secret generic {spec.api_key_secret} "
        f'--from-literal={API_KEY_ENV}="$(openssl rand -hex 32)"',
        *(["kubectl apply -f kserve/inferenceservice-stable.yaml"] if stable else []),
        "kubectl apply -f kserve/inferenceservice.yaml",
    ]
    if spec.shadow is not None:
        result.notes.append(
            f"KServe has no shadow traffic: version {spec.shadow.version} is not in the KServe "
            "export (the k8s target writes a shadow Deployment)."
        )
    return result
