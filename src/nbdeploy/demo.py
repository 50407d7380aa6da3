"""``make demo`` / ``python -m nbdeploy.demo``: the main job end to end on embedded data.

Train on scikit-learn's breast-cancer set, deploy through a validation notebook, explain,
serve, query with good and bad requests, then stop the server."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

TEMPLATE = Path(__file__).parent / "templates" / "validation_breast_cancer.ipynb"


def _say(stage: str, message: str) -> None:
    print(f"  [{stage:>10}] {message}", flush=True)


def _show(title: str, resp: Any) -> None:
    body = resp.text if len(resp.text) < 400 else resp.text[:400] + "…"
    print(f"  {title:<38} -> HTTP {resp.status_code}  {body}")


def main() -> int:
    """Run the demo; return the process exit code."""
    import httpx
    from sklearn.datasets import load_breast_cancer
    from sklearn.ensemble import GradientBoostingClassifier
    from sklearn.model_selection import train_test_split

    import nbdeploy
    from nbdeploy import config

    home = config.home()
    print(f"nbdeploy demo — state in {home}\n")
    print("1. train a gradient-boosting classifier on scikit-learn's breast-cancer data")
    data = load_breast_cancer(as_frame=True)
    X_train, X_test, y_train, y_test = train_test_split(
        data.data, data.target, test_size=0.25, random_state=0
    )
    model = GradientBoostingClassifier(n_estimators=60, max_depth=3, random_state=0).fit(X_train, y_train)
    print(f"   held-out accuracy in the notebook: {model.score(X_test, y_test):.3f}\n")

    print("2. deploy: capture, build a bento, serve the candidate, run the validation notebook")
    t0 = time.time()
    dep = nbdeploy.deploy(model, "breast-cancer", X_train, validate=[TEMPLATE],
                          require={"accuracy": ">=0.9"}, progress=_say)
    row = dep.row
    if row["status"] == "rejected":
        print(f"   rejected: {row['reason']}")
        return 1
    metrics = row["validation"]["metrics"]
    print(f"   v{dep.version} {dep.status()} at {dep.url} in {time.time() - t0:.1f} s; "
          f"validation: " + ", ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}"
                                      for k, v in metrics.items()) + "\n")
    try:
        print("3. explain in the notebook (SHAP) and save the plots")
        exp = nbdeploy.explain(model, X_test.head(100), background=X_train, progress=False)
        top = exp.importance().head(5)
        for col, val in top.items():
            print(f"   {col:<28} mean |SHAP| {val:.3f}")
        plots = home / "demo-plots"
        plots.mkdir(exist_ok=True)
        for kind, fig in (("bar", exp.plot_bar()), ("beeswarm", exp.plot_beeswarm()),
                          ("waterfall", exp.plot_waterfall(0))):
            (plots / f"{kind}.png").write_bytes(exp.to_png(fig))
        print(f"   plots: {plots}/bar.png, beeswarm.png, waterfall.png\n")

        print("4. query the live endpoint")
        rows = X_test.head(3).to_dict(orient="records")
        url = dep.endpoint  # the stable URL: same across versions, rollbacks and splits
        _show("POST /predict (3 good rows)", httpx.post(f"{url}/predict", json={"rows": rows}))
        print(f"   in-process model.predict: {model.predict(X_test.head(3)).tolist()}")
        _show("POST /predict_proba (1 row)", httpx.post(f"{url}/predict_proba", json={"rows": rows[:1]}))
        served = httpx.post(f"{url}/explain", json={"rows": rows[:1]}).json()
        total = served["base_values"][0] + sum(served["contributions"][0])
        print(f"   POST /explain: base {served['base_values'][0]:.3f} + contributions = {total:.3f} "
              f"(model output {served['outputs'][0]:.3f}, {served['output_space']})")
        first = dict(rows[0])
        bad = {
            "wrong type": [{**first, "mean radius": "big"}],
            "missing column": [{k: v for k, v in first.items() if k != "mean radius"}],
            "extra column": [{**first, "colour": "red"}],
            "NaN where none was seen": [{**first, "mean radius": None}],
        }
        for title, body in bad.items():
            _show(f"bad input: {title}", httpx.post(f"{url}/predict", json={"rows": body}))
        _show("bad input: malformed JSON", httpx.post(
            f"{url}/predict", content=b'{"rows": [', headers={"content-type": "application/json"}))
        print(f"\n   stable endpoint {url}  (Swagger UI at {url}/)")
        print(f"   metadata: {json.dumps(httpx.get(f'{url}/metadata').json()['pins'])[:160]}…")
    finally:
        print("\n5. stop the server")
        nbdeploy.stop("breast-cancer")
        bentoml_home = os.environ.get("BENTOML_HOME", "")
        print(f"   stopped. Inspect with: NBDEPLOY_HOME={home} BENTOML_HOME={bentoml_home} "
              ".venv/bin/nbdeploy show breast-cancer")
    return 0


if __name__ == "__main__":
    sys.exit(main())
