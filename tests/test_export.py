"""Export targets: a real bento archive and build context, manifests checked offline.

Nothing here needs a Docker engine or a cluster: Kubernetes manifests go through
kubernetes-validate --strict (schemas shipped in the package), the InferenceService through
nbdeploy's schema, and the docker target is exercised up to the point an engine is needed.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

from nbdeploy.package import export as export_mod
from nbdeploy.package.export import (
    Exported,
    ExportError,
    ExportSpec,
    available_targets,
    dns_name,
    export,
    register_target,
)
from nbdeploy.package.export_docker import docker_engine_running
from nbdeploy.package.export_k8s import replica_split
from nbdeploy.package.export_kserve import schema

K8S_VERSION = "1.30.0"  # shipped by kubernetes-validate 1.37 (1.25 .. 1.37 available)
PLANTED = "sk-test-PLANTED-4f1d9c"
VENV_BIN = Path(sys.executable).parent


def spec(**kw) -> ExportSpec:
    """A spec like the registry would fill for iris v3."""
    base = dict(name="Iris_Clf", version=3, bento_tag="iris_clf:abc123")
    return ExportSpec(**{**base, **kw})


def split_spec(**kw) -> ExportSpec:
    """90/10 between v3 and v4, with v5 as shadow."""
    return spec(
        version=4,
        bento_tag="iris_clf:new444",
        traffic=[(3, "iris_clf:abc123", "", 90), (4, "iris_clf:new444", "", 10)],
        shadow=(5, "iris_clf:shadow5", ""),
        **kw,
    )


def docs(folder: Path) -> dict[str, dict]:
    """Every manifest under ``folder`` (except kustomization) by file name."""
    out = {}
    for path in sorted(folder.glob("*.yaml")):
        if path.name != "kustomization.yaml":
            (out[path.name],) = list(yaml.safe_load_all(path.read_text()))
    return out


def by_kind(manifests: dict[str, dict], kind: str) -> list[dict]:
    return [m for m in manifests.values() if m["kind"] == kind]


# ---------------------------------------------------------------- the spec and the front


def test_spec_defaults_and_names() -> None:
    s = spec()
    assert s.image == "iris_clf:3"
    assert s.k8s_name == "iris-clf"
    assert s.api_key_secret == "iris-clf-api-key"
    assert s.live[0].weight == 100 and s.live[0].image == "iris_clf:3"
    assert spec(image="ghcr.io/acme/iris:3").image == "ghcr.io/acme/iris:3"
    assert dns_name("3D Model__v2!") == "m-3d-model-v2"
    assert dns_name("x" * 80, max_len=40) == "x" * 40
    assert spec(name="a" * 80).k8s_name == "a" * 40


def test_spec_rejects_what_a_cluster_would() -> None:
    with pytest.raises(ExportError, match="add up to 100"):
        spec(traffic=[(3, "iris_clf:a", "", 60), (4, "iris_clf:b", "", 30)])
    with pytest.raises(ExportError, match="min_replicas"):
        spec(min_replicas=6, max_replicas=5)
    with pytest.raises(ExportError, match="name:version"):
        spec(bento_tag="iris_clf")
    with pytest.raises(ExportError, match="twice"):
        spec(traffic=[(3, "iris_clf:a", "", 50), (3, "iris_clf:a", "", 50)])


def test_unknown_target_lists_the_known_ones(tmp_path: Path) -> None:
    with pytest.raises(ExportError) as info:
        export(spec(), tmp_path, "helm")
    message = str(info.value)
    for name in ("docker", "k8s", "kserve", "github-actions"):
        assert name in message
    assert not (tmp_path / "EXPORT.md").exists()


def test_a_new_target_is_one_registration(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(export_mod, "_REGISTERED", {})

    def exporter(s: ExportSpec, to: Path) -> Exported:
        out = Exported()
        (to / "hello.txt").write_text(s.image)
        out.add(to / "hello.txt", "a greeting")
        out.commands.append("cat hello.txt")
        return out

    register_target("hello", exporter)
    assert "hello" in available_targets()
    paths = export(spec(), tmp_path, "hello", echo=None)
    assert paths == [tmp_path / "hello.txt", tmp_path / "EXPORT.md"]
    index = (tmp_path / "EXPORT.md").read_text()
    assert "`hello.txt` | a greeting" in index and "cat hello.txt" in index


def test_index_keeps_other_targets_of_the_same_export_only(tmp_path: Path) -> None:
    export(spec(), tmp_path, "k8s", echo=None)
    export(spec(), tmp_path, "kserve", echo=None)
    index = (tmp_path / "EXPORT.md").read_text()
    assert "## k8s" in index and "## kserve" in index
    assert "kubectl apply -k k8s/" in index
    export(spec(version=4, bento_tag="iris_clf:v4"), tmp_path, "kserve", echo=None)
    index = (tmp_path / "EXPORT.md").read_text()
    assert "## kserve" in index and "## k8s" not in index  # stale section dropped


# ---------------------------------------------------------------- kubernetes


def test_replica_split() -> None:
    assert replica_split([100], 2) == [2]
    assert replica_split([50, 50], 2) == [1, 1]
    assert replica_split([90, 10], 2) == [9, 1]
    assert replica_split([75, 25], 2) == [3, 1]
    assert replica_split([95, 5], 2) == [9, 1]  # exact needs 20 pods: closest at 10
    assert replica_split([34, 33, 33], 2) == [4, 3, 3]


def test_k8s_single_version_passes_strict_validation(tmp_path: Path) -> None:
    paths = export(spec(), tmp_path, "k8s", echo=None)
    folder = tmp_path / "k8s"
    manifests = docs(folder)
    assert {m["kind"] for m in manifests.values()} == {
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
    }
    for body in manifests.values():
        kubernetes_validate.validate(body, K8S_VERSION, strict=True)
    # the real command line too, on every file at once
    files = [str(folder / name) for name in manifests]
    done = subprocess.run(
        [str(VENV_BIN / "kubernetes-validate"), "--strict", "-k", K8S_VERSION, *files],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("passed") == len(files)

    (dep,) = by_kind(manifests, "Deployment")
    assert dep["metadata"]["name"] == "iris-clf"
    assert dep["spec"]["strategy"]["rollingUpdate"] == {"maxUnavailable": 0, "maxSurge": 1}
    assert "replicas" not in dep["spec"]  # the HPA owns the count
    pod = dep["spec"]["template"]["spec"]
    (main,) = pod["containers"]
    assert main["image"] == "iris_clf:3"
    assert main["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert main["livenessProbe"]["httpGet"]["path"] == "/livez"
    assert main["resources"]["limits"]["memory"] == "1Gi"
    assert main["securityContext"]["allowPrivilegeEscalation"] is False
    assert main["securityContext"]["readOnlyRootFilesystem"] is True
    assert (
        pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] > 0
    )
    assert {"name": "tmp", "mountPath": "/tmp"} in main["volumeMounts"]
    assert pod["terminationGracePeriodSeconds"] >= 10
    (key_env,) = [e for e in main["env"] if e["name"] == "NBDEPLOY_API_KEY"]
    assert key_env == {
        "name": "NBDEPLOY_API_KEY",
        "valueFrom": {"secretKeyRef": {"name": "iris-clf-api-key", "key": "NBDEPLOY_API_KEY"}},
    }
    labels = dep["spec"]["template"]["metadata"]["labels"]
    assert labels["app.kubernetes.io/name"] == "iris-clf"
    assert labels["app.kubernetes.io/version"] == "3"
    assert labels["app.kubernetes.io/managed-by"] == "nbdeploy"
    (svc,) = by_kind(manifests, "Service")
    assert svc["spec"]["type"] == "ClusterIP"
    assert svc["spec"]["ports"][0]["port"] == 80 and svc["spec"]["ports"][0]["targetPort"] == "http"
    assert main["ports"][0] == {"name": "http", "containerPort": 3000, "protocol": "TCP"}
    assert all(labels[k] == v for k, v in svc["spec"]["selector"].items())
    (hpa,) = by_kind(manifests, "HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 5)
    assert hpa["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"] == 70
    (pdb,) = by_kind(manifests, "PodDisruptionBudget")
    assert pdb["apiVersion"] == "policy/v1"
    assert all(labels[k] == v for k, v in pdb["spec"]["selector"]["matchLabels"].items())
    kustomization = yaml.safe_load((folder / "kustomization.yaml").read_text())
    assert sorted(kustomization["resources"]) == sorted(manifests)
    assert folder / "README.md" in paths and tmp_path / "EXPORT.md" in paths


def test_k8s_split_and_shadow(tmp_path: Path) -> None:
    export(split_spec(), tmp_path, "k8s", echo=None)
    manifests = docs(tmp_path / "k8s")
    for body in manifests.values():
        kubernetes_validate.validate(body, K8S_VERSION, strict=True)
    deps = {d["metadata"]["name"]: d for d in by_kind(manifests, "Deployment")}
    assert set(deps) == {"iris-clf", "iris-clf-v4", "iris-clf-v5-shadow"}
    version = {n: d["spec"]["template"]["metadata"]["labels"] for n, d in deps.items()}
    assert version["iris-clf"]["app.kubernetes.io/version"] == "3"
    assert version["iris-clf-v4"]["app.kubernetes.io/version"] == "4"
    hpas = {
        h["metadata"]["name"]: h["spec"]["minReplicas"]
        for h in by_kind(manifests, "HorizontalPodAutoscaler")
    }
    assert hpas == {"iris-clf": 9, "iris-clf-v4": 1}  # 90/10 by replicas; no HPA for the shadow
    assert deps["iris-clf-v5-shadow"]["spec"]["replicas"] == 1
    main = manifests["service.yaml"]["spec"]["selector"]
    selected = {n for n, lab in version.items() if all(lab.get(k) == v for k, v in main.items())}
    assert selected == {
        "iris-clf",
        "iris-clf-v4",
    }  # both versions share the Service, not the shadow
    shadow_sel = manifests["service-shadow.yaml"]["spec"]["selector"]
    assert {
        n for n, lab in version.items() if all(lab.get(k) == v for k, v in shadow_sel.items())
    } == {"iris-clf-v5-shadow"}
    readme = (tmp_path / "k8s" / "README.md").read_text()
    assert "cannot weigh traffic" in readme and "cannot copy requests" in readme
    assert "| 3 | `iris-clf` | 90 % | 9-" in readme


def test_no_secret_value_is_ever_written(tmp_path: Path, monkeypatch, tiny_bento: str) -> None:
    monkeypatch.setenv("NBDEPLOY_API_KEY", PLANTED)
    s = spec(bento_tag=tiny_bento, validation_notebooks=["nb/check.ipynb"], build_image=False)
    for target in ("docker", "k8s", "kserve", "github-actions"):
        export(s, tmp_path, target, echo=None)
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert len(written) > 10
    leaks = [p for p in written if PLANTED.encode() in p.read_bytes()]
    assert leaks == []
    assert any(b"secretKeyRef" in p.read_bytes() for p in written)


# ---------------------------------------------------------------- kserve


def test_kserve_canary_from_the_local_split(tmp_path: Path) -> None:
    messages: list[str] = []
    export(split_spec(), tmp_path, "kserve", echo=messages.append)
    validator = jsonschema.Draft202012Validator(schema())
    canary = yaml.safe_load((tmp_path / "kserve" / "inferenceservice.yaml").read_text())
    stable = yaml.safe_load((tmp_path / "kserve" / "inferenceservice-stable.yaml").read_text())
    for body in (canary, stable):
        validator.validate(body)
        assert body["apiVersion"] == "serving.kserve.io/v1beta1"
        assert body["metadata"]["name"] == "iris-clf"
    predictor = canary["spec"]["predictor"]
    assert predictor["canaryTrafficPercent"] == 10
    assert (predictor["minReplicas"], predictor["maxReplicas"]) == (2, 5)
    (box,) = predictor["containers"]
    assert box["image"] == "iris_clf:4" and box["ports"][0]["containerPort"] == 3000
    assert box["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert box["env"][0]["valueFrom"]["secretKeyRef"]["name"] == "iris-clf-api-key"
    assert "canaryTrafficPercent" not in stable["spec"]["predictor"]
    assert stable["spec"]["predictor"]["containers"][0]["image"] == "iris_clf:3"
    assert any("shadow" in m for m in messages)


def test_kserve_single_version_has_no_canary(tmp_path: Path) -> None:
    export(spec(), tmp_path, "kserve", echo=None)
    body = yaml.safe_load((tmp_path / "kserve" / "inferenceservice.yaml").read_text())
    jsonschema.Draft202012Validator(schema()).validate(body)
    assert "canaryTrafficPercent" not in body["spec"]["predictor"]
    assert not (tmp_path / "kserve" / "inferenceservice-stable.yaml").exists()


def _k8s_validator(definition: str) -> jsonschema.Draft202012Validator:
    """A strict validator for one Kubernetes type (e.g. ``container-v1``) of the pinned version,
    from the schemas kubernetes-validate ships."""
    from referencing import Registry, Resource

    folder = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema" / \
        f"v{K8S_VERSION}-local-strict"
    body = json.loads((folder / f"{definition}.json").read_text())
    defs = Resource.from_contents(json.loads((folder / "_definitions.json").read_text()))
    registry = defs @ (Resource.from_contents(body) @ Registry())
    return jsonschema.Draft202012Validator(body, registry=registry)


KSERVE_MODELS = json.loads(
    (Path(__file__).parent / "data" / "kserve-0.21.0-inferenceservice-models.json").read_text()
)["models"]


def _kserve_errors(value: object, kind: str, path: str = "") -> list[str]:
    """What KServe's own API definition (its SDK's generated models, see the data file) and
    Kubernetes' strict schemas say is wrong with ``value`` as type ``kind``."""
    if m := re.fullmatch(r"list\[(.+)\]", kind):
        if not isinstance(value, list):
            return [f"{path}: not a list"]
        return [e for i, item in enumerate(value) for e in _kserve_errors(item, m[1], f"{path}[{i}]")]
    if m := re.fullmatch(r"dict\((\w+), (.+)\)", kind):
        if not isinstance(value, dict):
            return [f"{path}: not a mapping"]
        return [e for k, v in value.items() for e in _kserve_errors(v, m[2], f"{path}.{k}")]
    simple = {"str": str, "int": int, "bool": bool, "float": (int, float), "object": object}
    if kind in simple:
        ok = isinstance(value, simple[kind]) and not (kind == "int" and isinstance(value, bool))
        return [] if ok else [f"{path}: {value!r} is not {kind}"]
    if kind in KSERVE_MODELS:
        model = KSERVE_MODELS[kind]
        if not isinstance(value, dict):
            return [f"{path}: not an object ({kind})"]
        errors = [f"{path}.{k}: unknown field of {kind}" for k in value if k not in model["fields"]]
        errors += [f"{path}.{k}: required by {kind}" for k in model["required"] if k not in value]
        for k, v in value.items():
            if k in model["fields"]:
                errors += _kserve_errors(v, model["fields"][k], f"{path}.{k}")
        return errors
    for definition in (f"{kind[2:].lower()}-v1", f"{kind[2:].lower()}-meta-v1"):  # V1Container ...
        folder = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema"
        if (folder / f"v{K8S_VERSION}-local-strict" / f"{definition}.json").exists():
            return [f"{path}: {e.message}" for e in _k8s_validator(definition).iter_errors(value)]
    return [f"{path}: no definition for type {kind}"]


def test_kserve_manifests_match_kserves_own_api_definition(tmp_path: Path) -> None:
    # KServe's CRD is not shipped by any registry reachable here; its PyPI SDK is, and its
    # generated models are KServe's own field names, types and required fields.
    export(split_spec(), tmp_path, "kserve", echo=None)
    files = sorted((tmp_path / "kserve").glob("inferenceservice*.yaml"))
    assert len(files) == 2
    for file in files:
        body = yaml.safe_load(file.read_text())
        assert (body["apiVersion"], body["kind"]) == ("serving.kserve.io/v1beta1", "InferenceService")
        assert _kserve_errors(body, "V1beta1InferenceService") == [], file.name
    good = yaml.safe_load(files[0].read_text())
    typo = json.loads(json.dumps(good))
    typo["spec"]["predictor"]["minReplica"] = 2
    typo["spec"]["predictor"]["canaryTrafficPercent"] = "10"
    typo["spec"]["predictor"]["containers"][0]["imagePullPolicy"] = 3
    errors = _kserve_errors(typo, "V1beta1InferenceService")
    assert len(errors) == 3, errors
    assert any("minReplica: unknown field of V1beta1PredictorSpec" in e for e in errors)


def test_kserve_schema_rejects_mistakes(tmp_path: Path) -> None:
    export(split_spec(), tmp_path, "kserve", echo=None)
    good = yaml.safe_load((tmp_path / "kserve" / "inferenceservice.yaml").read_text())
    validator = jsonschema.Draft202012Validator(schema())

    def broken(edit) -> dict:
        body = json.loads(json.dumps(good))
        edit(body)
        return body

    bad = [
        broken(lambda b: b["spec"]["predictor"].update(canaryTrafficPercent=150)),
        broken(lambda b: b["spec"]["predictor"].update(canaryTrafficPrecent=10)),
        broken(lambda b: b["spec"]["predictor"]["containers"][0].pop("image")),
        broken(lambda b: b["spec"]["predictor"].pop("containers")),
        broken(lambda b: b.update(apiVersion="serving.kserve.io/v1alpha1")),
        broken(lambda b: b["metadata"].update(name="Iris_Clf")),
        broken(lambda b: b["spec"]["predictor"]["containers"][0]["env"][0].update(value="x")),
    ]
    for body in bad:
        assert not validator.is_valid(body)


def test_kserve_refuses_a_three_way_split(tmp_path: Path) -> None:
    s = spec(traffic=[(1, "m:a", "", 40), (2, "m:b", "", 30), (3, "m:c", "", 30)])
    with pytest.raises(ExportError, match="two revisions"):
        export(s, tmp_path, "kserve")


# ---------------------------------------------------------------- github actions


def test_github_actions_gate_then_build(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    s = spec(
        validation_notebooks=[str(tmp_path / "notebooks" / "check.ipynb"), "notebooks/fair.ipynb"],
        requirements=["scikit-learn==1.5.2", "pandas==2.2.3"],
        python_version="3.11",
    )
    (path, wheel, _) = export(s, Path("deploy"), "github-actions", echo=None)
    assert path == Path("deploy/.github/workflows/deploy-iris-clf.yml")
    flow = yaml.safe_load(path.read_text())
    assert set(flow["on"]) == {"workflow_dispatch", "push"}
    validate, build = flow["jobs"]["validate"], flow["jobs"]["build"]
    assert "needs" not in validate and build["needs"] == "validate"
    for job in (validate, build):
        steps = job["steps"]
        assert steps[0]["uses"].startswith("actions/checkout@")
        assert steps[1]["with"]["python-version"] == "3.11"
        install = steps[2]["run"]
        for pin in ("scikit-learn==1.5.2", "pandas==2.2.3", "bentoml=="):
            assert pin in install
        assert install.endswith(" ./deploy/wheels/nbdeploy-0.1.0-py3-none-any.whl")
        assert "nbdeploy==" not in install  # not on PyPI: the exported wheel instead
    assert wheel == Path("deploy/wheels/nbdeploy-0.1.0-py3-none-any.whl") and wheel.is_file()
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {"nbdeploy/cli.py", "nbdeploy/package/runtime/integrity.py"} <= names
    assert "nbdeploy-0.1.0.dist-info/entry_points.txt" in names
    gate = validate["steps"][-1]["run"]
    assert 'bentoml serve "$BENTO_TAG" --host 127.0.0.1 --port "$PORT"' in gate
    assert 'curl -fsS "http://127.0.0.1:$PORT/readyz"' in gate
    assert gate.splitlines()[-1] == (
        "nbdeploy validate notebooks/check.ipynb notebooks/fair.ipynb "
        "-p model_name=Iris_Clf -p model_version=3 -p \"endpoint=http://127.0.0.1:$PORT\""
    )  # iris_clf:abc123 is not in the store here: no model_tag to pass
    assert "--model" not in gate  # that looks the model up in a registry a runner has not got
    runs = [step.get("run", "") for step in build["steps"]]
    assert any(r.startswith("bentoml containerize iris_clf:abc123") for r in runs)
    assert not any("nbdeploy validate" in r for r in runs)
    assert flow["env"]["BENTO_ARCHIVE"] == "deploy/iris-clf-v3.bento"


def test_github_actions_needs_a_notebook(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="validation notebook"):
        export(spec(), tmp_path, "github-actions")


# ---------------------------------------------------------------- docker (a real bento)

SERVICE = """
import bentoml
import numpy as np


@bentoml.service
class Tiny:
    model_ref = bentoml.models.BentoModel("{model}")

    def __init__(self) -> None:
        self.model = bentoml.sklearn.load_model(self.model_ref)

    @bentoml.api
    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.model.predict(x)
"""


@pytest.fixture(scope="module")
def tiny_bento(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A real bento in the (temporary) BentoML store: a logistic regression on 2 features."""
    import bentoml
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BENTOML_DO_NOT_TRACK", "true")
        rng = np.random.default_rng(0)
        x = rng.random((40, 2))
        model = LogisticRegression().fit(x, (x[:, 0] > 0.5).astype(int))
        saved = bentoml.sklearn.save_model("tiny_clf", model)
        ctx = tmp_path_factory.mktemp("bento-src")
        (ctx / "service.py").write_text(SERVICE.format(model=saved.tag))
        sys.modules.pop("service", None)  # another test's build may have imported a `service`
        bento = bentoml.bentos.build(
            "service:Tiny",
            name="tiny_clf",
            build_ctx=str(ctx),
            python={"lock_packages": False, "packages": ["scikit-learn", "numpy"]},
        )
    return str(bento.tag)


def test_docker_archive_and_context(tmp_path: Path, tiny_bento: str) -> None:
    s = spec(name="tiny", version=1, bento_tag=tiny_bento, build_image=False)
    messages: list[str] = []
    paths = export(s, tmp_path, "docker", echo=messages.append)
    archive = tmp_path / "tiny-v1.bento"
    assert archive in paths and archive.stat().st_size > 1000
    dockerfile = tmp_path / "docker" / "Dockerfile"
    text = dockerfile.read_text()
    assert "EXPOSE 3000" in text and "ENTRYPOINT" in text and "USER bentoml" in text
    assert (tmp_path / "docker" / "env" / "docker" / "entrypoint.sh").exists()
    assert (tmp_path / "docker" / "src" / "service.py").exists()
    assert list((tmp_path / "docker" / "models" / "tiny_clf").glob("*/saved_model.pkl"))
    build_sh = tmp_path / "build.sh"
    assert os.access(build_sh, os.X_OK)
    assert subprocess.run(["bash", "-n", str(build_sh)], check=False).returncode == 0
    assert 'docker build -t "$IMAGE" docker/' in build_sh.read_text()
    assert f"bentoml containerize {tiny_bento} -t tiny_clf:1" in (tmp_path / "BUILD.md").read_text()
    assert messages == [
        f"Build context ready at {tmp_path / 'docker'}; image not built (as asked)."
    ]

    # the archive is self-contained: a fresh BentoML home gets the bento *and* its model
    fresh = tmp_path / "fresh-home"
    code = textwrap.dedent(
        f"""
        import bentoml
        bento = bentoml.bentos.import_bento({str(archive)!r})
        print(bento.tag)
        for model in bento.info.all_models:
            print(bentoml.models.get(model.tag).tag)
        """
    )
    env = {**os.environ, "BENTOML_HOME": str(fresh), "BENTOML_DO_NOT_TRACK": "true"}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.split()
    assert lines[0] == tiny_bento and lines[1].startswith("tiny_clf:")
    assert list((fresh / "models" / "tiny_clf").glob("*/saved_model.pkl"))


def test_docker_without_engine_says_what_to_do(
    tmp_path: Path, tiny_bento: str, monkeypatch
) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-such-docker.sock")
    monkeypatch.chdir(tmp_path)  # and a relative export folder, as a CLI user would give
    assert docker_engine_running() is False
    messages: list[str] = []
    s = spec(name="tiny", version=1, bento_tag=tiny_bento)
    export(s, Path("out"), "docker", echo=messages.append)
    (note,) = messages
    assert note.startswith("No Docker engine is running here; the build context is ready at ")
    assert "out/docker" in note and "./build.sh" in note and "docker build" in note
    assert "Traceback" not in note
    assert (tmp_path / "out" / "tiny-v1.bento").is_file()
    assert (tmp_path / "out" / "docker" / "Dockerfile").is_file()
    assert "No Docker engine" in (tmp_path / "out" / "EXPORT.md").read_text()


def test_docker_on_this_machine(tmp_path: Path, tiny_bento: str) -> None:
    """The machine's own engine state: here there is none, so only the message is checked."""
    if docker_engine_running():
        pytest.skip("a Docker engine answers here: the no-engine branch cannot be observed")
    messages: list[str] = []
    export(
        spec(name="tiny", version=1, bento_tag=tiny_bento), tmp_path, "docker", echo=messages.append
    )
    assert messages[0].startswith("No Docker engine is running here")


def test_docker_build_with_an_engine(tmp_path: Path, tiny_bento: str) -> None:
    if not docker_engine_running():
        pytest.skip("no Docker engine answers `docker info` on this machine")
    messages: list[str] = []
    export(
        spec(name="tiny", version=1, bento_tag=tiny_bento), tmp_path, "docker", echo=messages.append
    )
    assert messages[0].startswith("Built image tiny_clf:1")


def test_docker_missing_bento_is_a_clear_error(tmp_path: Path, tiny_bento: str) -> None:
    with pytest.raises(ExportError, match="not in the local BentoML store"):
        export(spec(bento_tag="nope:0000"), tmp_path, "docker")


# ---------------------------------------------------------------- the workflow, run for real

GATE_NOTEBOOK = {
    "parameters": "endpoint = None\nmodel_name = None\nmodel_version = None\nmodel_tag = None\n"
                  "threshold = {threshold}",
    "check": (
        "import bentoml\nimport httpx\nimport nbdeploy\nfrom sklearn.datasets import load_iris\n\n"
        "X, y = load_iris(return_X_y=True, as_frame=True)\n"
        "rows = X.to_dict(orient='records')\n"
        "resp = httpx.post(f'{endpoint}/predict', json={'rows': rows}, timeout=120)\n"
        "resp.raise_for_status()\n"
        "accuracy = float((resp.json() == y.to_numpy()).mean())\n"
        "nbdeploy.record('accuracy', accuracy)\n"
        "assert bentoml.models.get(model_tag).tag.name == model_name.lower()\n"
        "assert accuracy >= threshold, f'accuracy {accuracy} < {threshold}'"
    ),
}


def _gate_notebook(path: Path, threshold: float) -> Path:
    import nbformat

    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell(GATE_NOTEBOOK["parameters"].format(threshold=threshold))
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell(GATE_NOTEBOOK["check"])]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


def _runner_venv(tmp_path: Path) -> Path:
    """A fresh venv standing in for the runner's Python: it sees this venv's packages (so pip
    needs no network) but not nbdeploy's source, which must come from the exported wheel."""
    import site

    venv = tmp_path / "runner"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    (purelib,) = venv.glob("lib/python*/site-packages")
    (purelib / "shared.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    # pip finds bentoml already there, so it writes no console script: copy this venv's
    script = (VENV_BIN / "bentoml").read_text().split("\n", 1)[1]
    (venv / "bin" / "bentoml").write_text(f"#!{venv / 'bin' / 'python'}\n{script}")
    (venv / "bin" / "bentoml").chmod(0o755)
    return venv


def _run_job(flow: dict, job: str, repo: Path, venv: Path, tmp_path: Path) -> int:
    """Run a job's shell steps as Actions would (bash -eo pipefail, workflow env), in a fresh
    NBDEPLOY_HOME and BENTOML_HOME; returns the exit code of the first failing step (or 0)."""
    from nbdeploy.serve.process import free_port

    home = tmp_path / f"runner-home-{job}-{len(list(tmp_path.glob('runner-home-*')))}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV", "NBDEPLOY"))}
    env.update({k: str(v) for k, v in flow["env"].items()})
    env.update(PATH=f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}", VIRTUAL_ENV=str(venv),
               NBDEPLOY_HOME=str(home / "nbdeploy"), BENTOML_HOME=str(home / "bentoml"),
               PORT=str(free_port()), PIP_NO_INDEX="1")
    for step in flow["jobs"][job]["steps"]:
        if "run" not in step:
            continue
        done = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", step["run"]],
                              cwd=repo, env=env, capture_output=True, text=True, timeout=1500)
        print(f"$ {step['name']} -> {done.returncode}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
        if done.returncode != 0:
            return done.returncode
    assert list((home / "bentoml" / "bentos").glob("*/*/bento.yaml")), "the bento was not imported"
    return 0


@pytest.mark.slow
def test_github_actions_workflow_runs_on_a_fresh_runner(tmp_path: Path, monkeypatch) -> None:
    """Export a real deployment, then run the validate job's shell steps in a fresh venv and
    fresh stores: the wheel installs, the bento imports and serves, the notebooks gate it."""
    import dataclasses

    from sklearn.linear_model import LogisticRegression

    from nbdeploy import api
    from nbdeploy.lifecycle import export_spec
    from tests import models

    X, y = models.iris()
    api.deploy(LogisticRegression(max_iter=500).fit(X, y), "gha_iris", X, serve=False)
    repo = tmp_path / "repo"
    passing = _gate_notebook(repo / "checks" / "accuracy.ipynb", 0.9)
    failing = _gate_notebook(repo / "checks" / "perfect.ipynb", 1.01)
    monkeypatch.chdir(repo)
    base = dataclasses.replace(export_spec("gha_iris"), build_image=False)
    export(base, Path("deploy"), "docker", echo=None)
    venv = _runner_venv(tmp_path)

    codes = {}
    for nb in (passing, failing):
        s = dataclasses.replace(base, validation_notebooks=[str(nb)])
        export(s, Path("deploy"), "github-actions", echo=None)
        flow = yaml.safe_load((repo / "deploy/.github/workflows/deploy-gha-iris.yml").read_text())
        assert flow["env"]["BENTO_ARCHIVE"] == "deploy/gha-iris-v1.bento"
        (wheel,) = (repo / "deploy" / "wheels").glob("nbdeploy-*-py3-none-any.whl")
        assert f"./deploy/wheels/{wheel.name}" in flow["jobs"]["validate"]["steps"][2]["run"]
        codes[nb.name] = _run_job(flow, "validate", repo, venv, tmp_path)
    assert codes == {"accuracy.ipynb": 0, "perfect.ipynb": 1}
    # the runner's nbdeploy came from the wheel, not from this checkout
    out = subprocess.run([str(venv / "bin" / "python"), "-c", "import nbdeploy; print(nbdeploy.__file__)"],
                         capture_output=True, text=True, check=True,
                         env={k: v for k, v in os.environ.items() if not k.startswith("PYTHON")})
    assert out.stdout.strip().startswith(str(venv))


# ---------------------------------------------------------------- the real path: deploy, then the CLI


@pytest.mark.slow
def test_cli_exports_a_real_split_and_shadow(tmp_path: Path, monkeypatch) -> None:
    """Three real versions (80/20 split, shadow), exported with `nbdeploy export` for k8s,
    kserve and docker: manifests pass strict validation, the build context holds the runtime."""
    from click.testing import CliRunner
    from sklearn.linear_model import LogisticRegression

    from nbdeploy import api
    from nbdeploy.cli import cli
    from nbdeploy.registry import Registry
    from tests import models

    X, y = models.iris()
    for c in (1.0, 0.5, 0.1):
        api.deploy(LogisticRegression(C=c, max_iter=500).fit(X, y), "exp_iris", X, serve=c == 1.0)
    api.split("exp_iris", {1: 80, 2: 20})
    api.shadow("exp_iris", 3)
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-such-docker.sock")
    runner = CliRunner()
    for target in ("k8s", "kserve", "docker"):
        done = runner.invoke(cli, ["export", "exp_iris", "--to", str(tmp_path / target), "--target", target])
        assert done.exit_code == 0, done.output
        assert "Traceback" not in done.output

    manifests = docs(tmp_path / "k8s" / "k8s")
    files = [str(tmp_path / "k8s" / "k8s" / name) for name in manifests]
    done = subprocess.run([str(VENV_BIN / "kubernetes-validate"), "--strict", "-k", K8S_VERSION, *files],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    deps = {d["metadata"]["name"]: d for d in by_kind(manifests, "Deployment")}
    assert set(deps) == {"exp-iris", "exp-iris-v2", "exp-iris-v3-shadow"}
    images = {n: d["spec"]["template"]["spec"]["containers"][0]["image"] for n, d in deps.items()}
    assert images == {"exp-iris": "exp_iris:v1", "exp-iris-v2": "exp_iris:v2",
                      "exp-iris-v3-shadow": "exp_iris:v3"}
    hpas = {h["metadata"]["name"]: h["spec"]["minReplicas"]
            for h in by_kind(manifests, "HorizontalPodAutoscaler")}
    assert hpas == {"exp-iris": 4, "exp-iris-v2": 1}  # 80/20 by replicas

    body = yaml.safe_load((tmp_path / "kserve" / "kserve" / "inferenceservice.yaml").read_text())
    jsonschema.Draft202012Validator(schema()).validate(body)
    assert body["spec"]["predictor"]["canaryTrafficPercent"] == 20
    assert body["spec"]["predictor"]["containers"][0]["image"] == "exp_iris:v2"

    context = tmp_path / "docker" / "docker"
    assert "No Docker engine is running here" in (tmp_path / "docker" / "EXPORT.md").read_text()
    for module in ("service.py", "guard.py", "v2.py", "integrity.py", "frames.py", "metadata.json",
                   "reference.json"):
        assert (context / "src" / module).is_file(), module
    meta = json.loads((context / "src" / "metadata.json").read_text())
    assert meta["artifact_sha256"] == Registry().version("exp_iris", 1)["artifact_sha256"]
    assert list((context / "models" / "exp_iris").glob("*/model.yaml"))
    assert (tmp_path / "docker" / "exp-iris-v1.bento").is_file()


FAKE_DOCKER = """#!/usr/bin/env bash
# stands in for the Docker client: `info` answers, `build` records its arguments and
# succeeds or fails as FAKE_DOCKER_BUILD says
echo "$@" >> "{log}"
case "$1" in
  info) exit 0 ;;
  build)
    if [ "$FAKE_DOCKER_BUILD" = ok ]; then echo "writing image sha256:0123 done"; exit 0; fi
    echo "#7 ERROR: failed to solve: process did not complete successfully" >&2
    echo "pip: could not find a version that satisfies scikit-learn==0.0" >&2
    exit 17 ;;
esac
exit 2
"""


@pytest.mark.parametrize("outcome", ["ok", "fail"])
def test_docker_build_branches_with_a_fake_engine(
    tmp_path: Path, tiny_bento: str, monkeypatch, outcome: str
) -> None:
    """The only mock here: a `docker` executable on PATH, since no engine runs on this machine."""
    bin_dir, log = tmp_path / "bin", tmp_path / "docker-calls.txt"
    bin_dir.mkdir()
    (bin_dir / "docker").write_text(FAKE_DOCKER.format(log=log))
    (bin_dir / "docker").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_DOCKER_BUILD", outcome)
    assert docker_engine_running() is True
    log.unlink()
    s = spec(name="tiny", version=1, bento_tag=tiny_bento)
    messages: list[str] = []
    if outcome == "ok":
        export(s, tmp_path / "out", "docker", echo=messages.append)
        assert messages == ["Built image tiny_clf:1. Push it with: docker push tiny_clf:1"]
    else:
        with pytest.raises(ExportError) as info:
            export(s, tmp_path / "out", "docker", echo=messages.append)
        message = str(info.value)
        assert message.startswith("docker build failed (exit 17); the context is at ")
        assert "could not find a version that satisfies scikit-learn==0.0" in message
        assert "./build.sh" in message and "Traceback" not in message
        assert "docker build failed (exit 17)" in (tmp_path / "out" / "EXPORT.md").read_text()
    calls = log.read_text().splitlines()
    assert calls == ["info", f"build -t tiny_clf:1 {tmp_path / 'out' / 'docker'}"]
    assert (tmp_path / "out" / "docker" / "Dockerfile").is_file()
