"""RemoteClassifier end to end against a real uvicorn server on 127.0.0.1 serving the demo digits CNN."""

from __future__ import annotations

import io
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

fastapi = pytest.importorskip("fastapi")
uvicorn = pytest.importorskip("uvicorn")

from fastapi import FastAPI, Request, UploadFile  # noqa: E402
from fastapi.responses import JSONResponse  # noqa: E402
from PIL import Image  # noqa: E402

from bastion.attacks import ATTACKS  # noqa: E402
from bastion.cli.main import main  # noqa: E402
from bastion.data import Dataset  # noqa: E402
from bastion.errors import BudgetExhaustedError, RemoteModelError  # noqa: E402
from bastion.evaluation import assess  # noqa: E402
from bastion.evaluation.runner import BUDGET_EXHAUSTED  # noqa: E402
from bastion.models import RemoteClassifier, RemoteConfig, TorchClassifier, predict  # noqa: E402

TOKEN = "Bearer test-token"


@dataclass
class Served:
    """What the test server saw: rows per endpoint, and the flaky endpoint's call count."""

    url: str
    rows: dict[str, int] = field(default_factory=dict)
    flaky_calls: int = 0


def build_app(model: TorchClassifier, served: Served) -> FastAPI:
    app = FastAPI()
    lock = threading.Lock()

    def forward(x: torch.Tensor, endpoint: str) -> torch.Tensor:
        with lock:
            served.rows[endpoint] = served.rows.get(endpoint, 0) + x.shape[0]
        with torch.no_grad():
            return model.module(x)

    async def batch(request: Request) -> torch.Tensor:
        body = await request.json()
        return torch.tensor(body["inputs"], dtype=torch.float32)

    @app.post("/scores")
    async def scores(request: Request) -> Any:
        if request.headers.get("authorization") != TOKEN:
            return JSONResponse({"detail": "unauthorised"}, status_code=401)
        return {"outputs": forward(await batch(request), "scores").tolist()}

    @app.post("/labels")
    async def labels(request: Request) -> Any:
        return {"labels": forward(await batch(request), "labels").argmax(1).tolist()}

    @app.post("/image")
    async def image(file: UploadFile) -> Any:
        pixels = np.asarray(Image.open(io.BytesIO(await file.read())), dtype=np.float32) / 255
        return {"scores": forward(torch.from_numpy(pixels)[None, None], "image")[0].tolist()}

    @app.post("/flaky")
    async def flaky(request: Request) -> Any:
        served.flaky_calls += 1
        if served.flaky_calls <= 2:
            return JSONResponse({"detail": "busy"}, status_code=503, headers={"Retry-After": "1"})
        return {"outputs": forward(await batch(request), "flaky").tolist()}

    @app.post("/broken")
    async def broken(request: Request) -> Any:
        return JSONResponse({"detail": "boom"}, status_code=500)

    return app


@pytest.fixture(scope="module")
def server(digits_model: TorchClassifier) -> Iterator[Served]:
    """A uvicorn server in a thread on a free loopback port, stopped at teardown."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    served = Served(url=f"http://127.0.0.1:{sock.getsockname()[1]}")
    config = uvicorn.Config(build_app(digits_model, served), log_level="warning", lifespan="off")
    instance = uvicorn.Server(config)
    thread = threading.Thread(target=instance.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not instance.started and time.monotonic() < deadline:
        time.sleep(0.01)
    assert instance.started, "the test server did not start"
    yield served
    instance.should_exit = True
    thread.join(timeout=10)
    sock.close()


def remote(served: Served, path: str, waits: list[float] | None = None, **options: Any) -> RemoteClassifier:
    settings: dict[str, Any] = {"num_classes": 10, "input_shape": (1, 8, 8), "batch_size": 16, **options}
    sleep = waits.append if waits is not None else (lambda seconds: None)
    return RemoteClassifier(RemoteConfig(url=served.url + path, **settings), sleep=sleep)


def test_scores_agree_with_the_local_model(server: Served, digits_model: TorchClassifier, digits_data: Dataset) -> None:
    with remote(server, "/scores", headers={"Authorization": TOKEN}) as model:
        out = model.logits(digits_data.x)
    with torch.no_grad():
        local = digits_model.module(digits_data.x)
    torch.testing.assert_close(out, local, rtol=1e-5, atol=1e-5)
    assert model.rows_sent == len(digits_data) == model.queries.forward


def test_labels_agree_with_the_local_model(server: Served, digits_model: TorchClassifier, digits_data: Dataset) -> None:
    with remote(server, "/labels", knowledge="labels", response_field="labels") as model:
        out = model.logits(digits_data.x)
    assert torch.equal(out.argmax(1), predict(digits_model, digits_data.x))
    assert torch.equal(out.sum(1), torch.ones(len(digits_data)))


def test_image_uploads_agree_on_the_quantised_input(
    server: Served, digits_model: TorchClassifier, digits_data: Dataset
) -> None:
    x = digits_data.x[:12]
    with remote(server, "/image", request_mode="image", request_field="file", response_field="scores") as model:
        out = model.logits(x)
    quantised = (x * 255).round() / 255
    assert torch.equal(out.argmax(1), predict(digits_model, quantised))


def test_retry_after_is_honoured_then_the_answer_arrives(server: Served, digits_data: Dataset) -> None:
    waits: list[float] = []
    with remote(server, "/flaky", waits, batch_size=64) as model:
        out = model.logits(digits_data.x[:5])
    assert waits == [1.0, 1.0] and out.shape == (5, 10) and model.rows_sent == 15


def test_always_500_is_reported_after_the_retries(server: Served, digits_data: Dataset) -> None:
    waits: list[float] = []
    with remote(server, "/broken", waits, retries=2) as model, pytest.raises(RemoteModelError) as error:
        model.logits(digits_data.x[:3])
    assert f"{server.url}/broken failed after 3 attempts: HTTP 500 Internal Server Error" == str(error.value)
    assert len(waits) == 2


def test_missing_credentials_are_not_retried(server: Served, digits_data: Dataset) -> None:
    with remote(server, "/scores") as model, pytest.raises(RemoteModelError, match="after 1 attempt: HTTP 401"):
        model.logits(digits_data.x[:3])


def test_the_budget_is_honoured_at_the_server(server: Served, digits_data: Dataset) -> None:
    before = server.rows.get("labels", 0)
    with remote(server, "/labels", knowledge="labels", response_field="labels", query_budget=50) as model:
        with pytest.raises(BudgetExhaustedError, match="50 rows"):
            model.logits(digits_data.x)  # 64 rows: refused whole, nothing sent
        model.logits(digits_data.x[:40])
        with pytest.raises(BudgetExhaustedError):
            model.logits(digits_data.x[40:52])
    assert server.rows["labels"] - before == 40 == model.rows_sent


@pytest.mark.skipif(not {"square", "hopskipjump"} & set(ATTACKS), reason="no score- or label-based attack registered")
def test_assess_over_http_stops_at_the_budget_with_partial_results(server: Served, digits_data: Dataset) -> None:
    attack = "square" if "square" in ATTACKS else "hopskipjump"
    knowledge = "scores" if attack == "square" else "labels"
    field = "outputs" if knowledge == "scores" else "labels"
    path = "/scores" if knowledge == "scores" else "/labels"
    budget = 400
    with remote(
        server, path, knowledge=knowledge, response_field=field, headers={"Authorization": TOKEN}, query_budget=budget
    ) as model:
        report = assess(model, digits_data, preset="quick", attacks=[attack], epsilons=[0.1], batch_size=16)
    assert model.rows_sent <= budget
    assert sum(r.incomplete for r in report.runs) > 0
    assert all(set(r.incomplete_reasons) <= {BUDGET_EXHAUSTED} for r in report.runs)


def test_cli_target_reaches_the_server_and_needs_a_black_box_attack(
    server: Served, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = server.rows.get("scores", 0)
    args = ["assess", "--target", f"{server.url}/scores", "--header", f"Authorization: {TOKEN}"]
    args += ["--data", "demo:digits:test", "--input-shape", "1,8,8", "--num-classes", "10", "-n", "16"]
    code = main([*args, "--attack", "fgsm", "--eps", "0.1", "-o", str(tmp_path), "-q"])
    err = " ".join(capsys.readouterr().err.split())
    # the plan refuses a gradient attack on a scores endpoint before a single query is spent
    assert server.rows.get("scores", 0) == before
    assert code == 2 and "'fgsm' needs white-box access" in err and "test-token" not in err


def test_hopskipjump_through_a_label_only_endpoint(server: Served, digits_data: Dataset) -> None:
    """The issue's end-to-end case: a decision-based attack over HTTP misclassifies most examples within budget."""
    from bastion.attacks.blackbox import HopSkipJump

    x, y = digits_data.x[:12], digits_data.y[:12]
    with remote(server, "/labels", knowledge="labels", response_field="labels", batch_size=64) as model:
        result = HopSkipJump(max_queries=300)(model, x, y, norm="l2", seed=0)
        sent = model.rows_sent
    assert result.success_rate >= 0.75  # misclassified: HopSkipJump always starts from an adversarial point
    assert int(result.queries.max()) <= 300 and int(result.queries.sum()) == sent
    assert float(result.distance[result.success].median()) < 4.0  # well below a random misclassified start
