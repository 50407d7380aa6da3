"""Every kind of bad input against a live generated service: a 4xx that names the field, never a
5xx, and the server still answers a good request afterwards.

The catalogue (``CASES``) is also what docs/bad-input.md shows: ``python tests/test_bad_input.py``
deploys the test model in a temporary home, runs every case and prints the Markdown table of
observed answers (``--url URL`` runs them against a server that already serves this schema).

A case can carry ``xfail=<reason naming the fix>`` (it becomes ``xfail(strict=True)``) while the
generated service has a known bug; once the fix lands strict xfail fails the run and the mark goes.
"""

from __future__ import annotations

import argparse
import json
import math
import pickle
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from dataclasses import field as default
from pathlib import Path
from typing import Any

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # when run as a script
    sys.path.insert(0, str(ROOT))

from tests.helpers.fault_deploy import mixed_classifier  # noqa: E402
from tests.helpers.procs import family  # noqa: E402

pytestmark = pytest.mark.slow

NAME = "bad-input"
GOOD = {"age": 30, "income": 52000.5, "city": "lyon", "plan": "pro", "score": 3.0}
JSON = {"content-type": "application/json"}


def dumps(value: Any) -> bytes:
    """JSON the way Python writes it (NaN and Infinity as bare literals)."""
    return json.dumps(value, ensure_ascii=False).encode()


def rows(*records: dict[str, Any]) -> bytes:
    return dumps({"rows": list(records)})


def row(**changes: Any) -> dict[str, Any]:
    """The good row with some fields changed (a value of ``...`` removes the field)."""
    out = {**GOOD, **changes}
    return {k: v for k, v in out.items() if v is not ...}


def nested(depth: int, leaf: str = "0") -> str:
    return '{"a": ' * depth + leaf + "}" * depth


def v2(**columns: Any) -> bytes:
    """An Open Inference Protocol request, one tensor per column."""
    kinds = {bool: "BOOL", int: "INT64", float: "FP64", str: "BYTES", type(None): "BYTES"}
    return dumps({"inputs": [{"name": k, "shape": [1], "datatype": kinds.get(type(v), "BYTES"), "data": [v]}
                             for k, v in columns.items()]})


@dataclass
class Case:
    """One request and the answer it must get."""

    id: str
    what: str  # the input, as docs/bad-input.md shows it
    body: Callable[[], bytes] | None
    status: set[int] = default(default_factory=lambda: {400})
    field: str | None = None  # the field the answer must name
    path: str = "/predict"
    headers: dict[str, str] = default(default_factory=lambda: dict(JSON))
    method: str = "POST"
    files: dict[str, Any] | None = None
    xfail: str | None = None

    def send(self, client: httpx.Client, url: str, name: str) -> httpx.Response:
        path = self.path.replace("{name}", name)
        if self.files is not None:
            return client.post(url + path, files=self.files)
        content = self.body() if self.body else None
        return client.request(self.method, url + path, content=content, headers=self.headers)

    def param(self) -> Any:
        marks = [pytest.mark.xfail(strict=True, reason=self.xfail)] if self.xfail else []
        return pytest.param(self, id=self.id, marks=marks)


CASES: list[Case] = [
    # wrong types
    Case("str-for-int", 'age: "thirty"', lambda: rows(row(age="thirty")), field="age"),
    Case("numeric-str-for-int", 'age: "30"', lambda: rows(row(age="30")), field="age"),
    Case("numeric-str-for-float", 'income: "52000.5"', lambda: rows(row(income="52000.5")),
         field="income"),
    Case("bool-for-int", "age: true", lambda: rows(row(age=True)), field="age"),
    Case("bool-for-float", "score: false", lambda: rows(row(score=False)), field="score"),
    Case("fraction-for-int", "age: 30.5", lambda: rows(row(age=30.5)), field="age"),
    Case("int-beyond-int64", "age: 2**70", lambda: rows(row(age=2**70)), field="age"),
    Case("list-for-float", "income: [1, 2]", lambda: rows(row(income=[1, 2])), field="income"),
    Case("object-for-category", 'city: {"name": "lyon"}', lambda: rows(row(city={"name": "lyon"})),
         field="city"),
    # missing / extra columns
    Case("missing-column", "row without income", lambda: rows(row(income=...)), field="income"),
    Case("extra-column", 'row with an extra "colour": "red"', lambda: rows(row(colour="red")),
         field="colour"),
    Case("duplicate-key", 'row with "age" twice, the last "x"',
         lambda: b'{"rows": [{"age": 1, "income": 1.0, "city": "lyon", "plan": "pro", "score": 1.0, '
                 b'"age": "x"}]}',
         field="age"),
    # NaN, infinities, nulls
    Case("nan-not-nullable", "income: NaN (column had no missing values)",
         lambda: rows(row(income=math.nan)), field="income"),
    Case("inf-not-nullable", "income: Infinity", lambda: rows(row(income=math.inf)), field="income"),
    Case("minus-inf-not-nullable", "income: -Infinity", lambda: rows(row(income=-math.inf)), field="income"),
    Case("inf-nullable", "score: Infinity (nullable column)", lambda: rows(row(score=math.inf)),
         field="score"),
    Case("null-not-nullable-int", "age: null", lambda: rows(row(age=None)), field="age"),
    Case("null-not-nullable-category", "city: null", lambda: rows(row(city=None)), field="city"),
    # categories
    Case("unknown-category", 'city: "marseille" (not seen in training)', lambda: rows(row(city="marseille")),
         field="city"),
    Case("category-wrong-case", 'city: "Lyon"', lambda: rows(row(city="Lyon")), field="city"),
    Case("unknown-str-category", 'plan: "gold"', lambda: rows(row(plan="gold")), field="plan"),
    # batch shape and size
    Case("empty-batch", '{"rows": []}', lambda: dumps({"rows": []}), field="rows"),
    Case("rows-missing", "{}", lambda: b"{}", field="rows"),
    Case("rows-as-object", '{"rows": {one row object}}', lambda: dumps({"rows": GOOD}), field="rows"),
    Case("non-object-rows", '{"rows": [1, "a", null]}', lambda: dumps({"rows": [1, "a", None]}),
         field="rows"),
    Case("body-is-a-list", "[{one row}] (no rows key)", lambda: dumps([GOOD])),
    Case("body-is-a-string", '"hello"', lambda: b'"hello"'),
    Case("50k-rows", "50 000 good rows (limit 10 000)", lambda: rows(*[GOOD] * 50_000), field="rows"),
    Case("20mb-body", "20 MB body: 10 000 rows whose plan is a 2 KB string",
         lambda: rows(*[row(plan="y" * 2000)] * 10_000), field="plan"),
    Case("20mb-value", "20 MB body: one row whose plan is a 20 MB string",
         lambda: rows(row(plan="z" * 20_000_000)), field="plan"),
    # broken JSON
    Case("malformed-json", '{"rows": [  (truncated)', lambda: b'{"rows": ['),
    Case("empty-body", "empty body, Content-Type: application/json", lambda: b"", field="rows"),
    Case("not-utf8", "bytes that are not UTF-8", lambda: b'{"rows": [{"city": "\xff\xfe"}]}'),
    Case("deep-nesting-rows", "rows nested 10 000 arrays deep",
         lambda: b'{"rows": ' + b"[" * 10_000 + b"]" * 10_000 + b"}"),
    Case("deep-nesting-value", "age: an object nested 100 deep",
         lambda: b'{"rows": [{"age": ' + nested(100).encode() + b', "income": 1.0, "city": "lyon", '
                 b'"plan": "pro", "score": 1.0}]}', field="age"),
    # unicode
    Case("unicode-column", 'extra column "âge🙂"', lambda: rows(row(**{"âge🙂": 1})), field="âge🙂"),
    Case("unicode-category", 'city: "lyön🙂"', lambda: rows(row(city="lyön🙂")), field="city"),
    Case("unicode-str", 'plan: "bäsic"', lambda: rows(row(plan="bäsic")), field="plan"),
    # content types
    Case("text-plain", "good JSON sent as text/plain", lambda: rows(GOOD), status={415},
         headers={"content-type": "text/plain"}),
    Case("octet-stream", "good JSON sent as application/octet-stream", lambda: rows(GOOD), status={415},
         headers={"content-type": "application/octet-stream"}),
    Case("python-pickle", "a real pickle of the request, application/python-pickle",
         lambda: pickle.dumps({"rows": [GOOD]}), status={415},
         headers={"content-type": "application/python-pickle"}),
    Case("bentoml-pickle", "a real pickle, application/vnd.bentoml+pickle",
         lambda: pickle.dumps({"rows": [GOOD]}), status={415},
         headers={"content-type": "application/vnd.bentoml+pickle"}),
    Case("multipart-form", "multipart/form-data with a rows part", None, status={415},
         files={"rows": ("rows.json", json.dumps([GOOD]), "application/json")}),
    Case("multipart-no-boundary", "multipart/form-data header without boundary", lambda: rows(GOOD),
         status={415}, headers={"content-type": "multipart/form-data"}),
    Case("form-urlencoded", "rows=1 as application/x-www-form-urlencoded", lambda: b"rows=1", status={415},
         headers={"content-type": "application/x-www-form-urlencoded"}),
    Case("no-content-type", "good JSON with no Content-Type header (read as JSON, as V2 clients send it)",
         lambda: rows(GOOD), status={200}, headers={}),
    Case("no-content-type-garbage", "not JSON, no Content-Type header", lambda: b"rows=1", headers={}),
    Case("get-not-post", "GET /predict", None, status={405}, method="GET", headers={}),
    # the other routes
    Case("proba-str-for-float", 'POST /predict_proba, income: "x"', lambda: rows(row(income="x")),
         field="income", path="/predict_proba"),
    Case("proba-missing-column", "POST /predict_proba, row without city", lambda: rows(row(city=...)),
         field="city", path="/predict_proba"),
    Case("proba-empty-batch", "POST /predict_proba, no rows", lambda: dumps({"rows": []}), field="rows",
         path="/predict_proba"),
    Case("proba-text-plain", "POST /predict_proba, text/plain", lambda: rows(GOOD), status={415},
         path="/predict_proba", headers={"content-type": "text/plain"}),
    Case("explain-unknown-category", 'POST /explain, city: "rome"', lambda: rows(row(city="rome")),
         field="city", path="/explain"),
    Case("explain-10001-rows", "POST /explain, 10 001 rows (limit 10 000, as /predict)",
         lambda: rows(*[GOOD] * 10_001), field="rows", path="/explain"),
    Case("explain-str-for-int", 'POST /explain, age: "thirty"', lambda: rows(row(age="thirty")),
         field="age", path="/explain"),
    Case("explain-missing-column", "POST /explain, row without income", lambda: rows(row(income=...)),
         field="income", path="/explain"),
    Case("explain-nan-not-nullable", "POST /explain, income: NaN", lambda: rows(row(income=math.nan)),
         field="income", path="/explain"),
    Case("explain-extra-column", 'POST /explain, an extra "colour": "red"',
         lambda: rows(row(colour="red")), field="colour", path="/explain"),
    Case("explain-bad-class-index", 'POST /explain, "class_index": 7 (the model has 2 classes)',
         lambda: dumps({"rows": [GOOD], "class_index": 7}), field="class_index", path="/explain"),
    Case("explain-malformed", "POST /explain, malformed JSON", lambda: b"{", path="/explain"),
    Case("v2-str-for-int", 'POST /v2/models/NAME/infer, age tensor ["x"]',
         lambda: v2(**row(age="x")), field="age", path="/v2/models/{name}/infer"),
    Case("v2-missing-column", "POST /v2/models/NAME/infer without the income tensor",
         lambda: v2(**row(income=...)), field="income", path="/v2/models/{name}/infer"),
    Case("v2-ragged", "POST /v2/models/NAME/infer, tensors of different lengths",
         lambda: dumps({"inputs": [{"name": "age", "shape": [2], "datatype": "INT64", "data": [1, 2]},
                                   {"name": "income", "shape": [1], "datatype": "FP64", "data": [1.0]}]}),
         path="/v2/models/{name}/infer"),
    Case("v2-malformed", "POST /v2/models/NAME/infer, malformed JSON", lambda: b"{",
         path="/v2/models/{name}/infer"),
    Case("v2-text-plain", "POST /v2/models/NAME/infer, good tensors as text/plain", lambda: v2(**GOOD),
         status={415}, path="/v2/models/{name}/infer", headers={"content-type": "text/plain"}),
]

ACCEPTED: list[Case] = [  # edge cases that are valid input: shown in the doc, checked to answer 200
    Case("null-in-nullable", "score: null, plan: null (columns with missing values)",
         lambda: rows(row(score=None, plan=None)), status={200}),
    Case("nan-in-nullable", "score: NaN (a missing value)", lambda: rows(row(score=math.nan)), status={200}),
    Case("int-for-float", "income: 52000 (an integer for a float column)", lambda: rows(row(income=52000)),
         status={200}),
    Case("charset-param", "Content-Type: application/json; charset=utf-8", lambda: rows(GOOD), status={200},
         headers={"content-type": "application/json; charset=utf-8"}),
]


def answer_text(resp: httpx.Response) -> str:
    """The whole answer as text (JSON decoded, so unicode field names read as they are)."""
    try:
        return json.dumps(resp.json(), ensure_ascii=False)
    except ValueError:
        return resp.text


def error_message(resp: httpx.Response) -> str:
    """The answer's ``error`` string (what a client shows its user)."""
    try:
        data = resp.json()
    except ValueError:
        return resp.text
    data = data[0] if isinstance(data, list) and data else data  # BentoML wraps some errors in a list
    return str(data.get("error", "")) if isinstance(data, dict) else str(data)


# -- the live service ------------------------------------------------------------------------
@dataclass
class Served:
    url: str
    name: str
    pids: list[int]




@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    from nbdeploy import api
    from nbdeploy.registry import Registry
    from nbdeploy.serve import process

    home = tmp_path_factory.mktemp("bad-input") / "nbdeploy"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("NBDEPLOY_HOME", str(home))
        mp.setenv("BENTOML_DO_NOT_TRACK", "true")
        model, X = mixed_classifier()
        dep = api.deploy(model, NAME, X)
        pid, url = dep.row["pid"], str(dep.url)
        router = Registry().deployment(NAME).get("router_pid")
    try:
        yield Served(url, NAME, sorted(family(pid)))
    finally:
        process.stop_pid(router, grace=3.0)
        process.stop_pid(pid, grace=5.0)


@pytest.fixture(scope="module")
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=120) as c:
        yield c


def check_good(client: httpx.Client, url: str) -> None:
    resp = client.post(f"{url}/predict", json={"rows": [GOOD]})
    assert resp.status_code == 200 and len(resp.json()) == 1, resp.text


@pytest.mark.parametrize("case", [c.param() for c in CASES])
def test_bad_input_is_a_4xx_naming_the_field(served: Served, client: httpx.Client, case: Case) -> None:
    resp = case.send(client, served.url, served.name)
    assert resp.status_code < 500, f"{resp.status_code}: {resp.text[:500]}"
    assert resp.status_code in case.status, f"{resp.status_code}: {resp.text[:500]}"
    assert error_message(resp), resp.text[:500]  # a message, not an empty body
    if case.field:
        assert case.field in answer_text(resp), resp.text[:500]
    check_good(client, served.url)


@pytest.mark.parametrize("case", [c.param() for c in ACCEPTED])
def test_valid_edge_cases_are_accepted(served: Served, client: httpx.Client, case: Case) -> None:
    resp = case.send(client, served.url, served.name)
    assert resp.status_code == 200, resp.text[:500]
    assert len(resp.json()) == 1


@pytest.mark.parametrize("case_id", ["str-for-int", "missing-column", "extra-column", "unknown-category",
                                     "nan-not-nullable", "unicode-column", "explain-unknown-category"])
def test_error_message_itself_names_the_field(served: Served, client: httpx.Client, case_id: str) -> None:
    case = next(c for c in CASES if c.id == case_id)
    resp = case.send(client, served.url, served.name)
    assert resp.status_code == 400
    message = error_message(resp)
    assert case.field and case.field in message, message
    assert isinstance(resp.json().get("detail", ""), str)


# /explain validates its rows with the same Row model and limits as /predict: same answer.
SAME_AS_PREDICT = {
    "explain-str-for-int": "str-for-int",
    "explain-missing-column": "missing-column",
    "explain-nan-not-nullable": "nan-not-nullable",
    "explain-extra-column": "extra-column",
    "explain-unknown-category": "unknown-category",
}


@pytest.mark.parametrize("explain_id", list(SAME_AS_PREDICT))
def test_explain_answers_bad_rows_like_predict(served: Served, client: httpx.Client,
                                               explain_id: str) -> None:
    explained = next(c for c in CASES if c.id == explain_id).send(client, served.url, served.name)
    predicted = next(c for c in CASES if c.id == SAME_AS_PREDICT[explain_id]).send(
        client, served.url, served.name)
    assert explained.status_code == predicted.status_code == 400, explained.text[:500]
    assert error_message(explained) == error_message(predicted)  # the same field, the same words


def test_explain_takes_as_many_rows_as_predict(served: Served, client: httpx.Client) -> None:
    limit = dumps({"rows": [GOOD] * 10_001})
    answers = [client.post(served.url + path, content=limit, headers=JSON)
               for path in ("/predict", "/explain")]
    assert [a.status_code for a in answers] == [400, 400]
    assert all("10000" in a.text.replace(" ", "").replace("_", "") for a in answers), answers[1].text
    good = client.post(f"{served.url}/explain", json={"rows": [GOOD] * 3})
    assert good.status_code == 200 and len(good.json()["outputs"]) == 3, good.text[:500]


def test_server_process_survived_every_case(served: Served, client: httpx.Client) -> None:
    """No worker crashed and was silently respawned: the same processes still serve."""
    check_good(client, served.url)
    assert sorted(family(served.pids[0])) == served.pids


# -- docs/bad-input.md ---------------------------------------------------------------------------
def _cell(text: str, limit: int = 170) -> str:
    text = text.replace("|", "\\|").replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _observed(resp: httpx.Response) -> str:
    message = error_message(resp)
    try:
        data = resp.json()
    except ValueError:
        return message
    detail = data.get("detail") if isinstance(data, dict) else None
    if isinstance(detail, list) and detail and isinstance(detail[0], dict):
        first = detail[0]
        loc = ".".join(str(p) for p in first.get("loc", []))
        message += f" — detail[0]: {loc}: {first.get('msg')}"
    elif isinstance(detail, str):
        message += f" — detail: {detail}"
    if resp.status_code == 200:
        message = f"accepted: {resp.text[:60]}"
    return message


def markdown(url: str, name: str) -> str:
    """Run every case against ``url`` and return the Markdown table of what came back."""
    lines = ["| # | input | route | expected | observed | message (observed) |",
             "|---|---|---|---|---|---|"]
    with httpx.Client(timeout=120) as c:
        for i, case in enumerate(CASES + ACCEPTED, 1):
            resp = case.send(c, url, name)
            expected = "/".join(map(str, sorted(case.status)))
            flag = "" if resp.status_code in case.status else " ✗"
            route = f"{case.method} {case.path}".replace("{name}", "NAME")
            lines.append(f"| {i} | {_cell(case.what, 80)} | `{route}` | {expected} | "
                         f"{resp.status_code}{flag} | {_cell(_observed(resp))} |")
            good = c.post(f"{url}/predict", json={"rows": [GOOD]})
            assert good.status_code == 200, f"the server stopped answering after case {case.id}"
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description="Print the bad-input table of docs/bad-input.md.")
    parser.add_argument("--url", help="a server already serving the test schema (default: deploy one)")
    args = parser.parse_args()
    if args.url:
        name = httpx.get(f"{args.url}/metadata").json()["name"]
        print(markdown(args.url.rstrip("/"), name))
        return
    import os
    import tempfile

    from nbdeploy import api

    home = tempfile.mkdtemp(prefix="bad-input-")
    os.environ["NBDEPLOY_HOME"] = home
    os.environ.setdefault("BENTOML_HOME", str(Path(home) / "bentoml"))
    model, X = mixed_classifier()
    dep = api.deploy(model, NAME, X)
    try:
        print(markdown(str(dep.url), NAME))
    finally:
        api.stop(NAME)  # the server and the deployment's router


if __name__ == "__main__":
    main()
