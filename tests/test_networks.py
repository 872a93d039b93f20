"""The networks users really have: a hub mirror (HF_ENDPOINT), an HTTP proxy, dataset URL overrides,
a silent host. Every server is real and on 127.0.0.1: the mirror in a thread, pproxy in a process.

The proxy test routes a hostname that does not resolve (``tlbench-mirror.invalid``): pproxy sends
every request to the mirror (its ``tunnel://`` upstream, like a site proxy that knows internal
names), and the mirror answers 403 to any other Host, so a request that bypassed the proxy fails.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import pickle
import socket
import subprocess
import sys
import tarfile
import threading
import time
import zipfile
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest
from helpers import free_port

REPO_ID = "timm/test_resnet.r160_in1k"  # timm's default tag of test_resnet (weights: hub)
COMMIT = "1" * 40
PROXIED_HOST = "tlbench-mirror.invalid"  # resolves nowhere: only the proxy can reach it

HUB_GRID = """
name: net
train: {epochs: 1, batch_size: 16, image_size: 16, lr: 0.05, seed: 0}
datasets:
  - {name: synthetic, params: {classes: 2, train_per_class: 8, val_per_class: 4, test_per_class: 4, image_size: 16}}
backbones:
  - {name: test_resnet, weights: hub}
strategies: [linear_probe]
optimizers: [sgd]
augmentations: [none]
"""


class Mirror(ThreadingHTTPServer):
    """Files by URL path (a hub's ``/{repo}/resolve/{rev}/{file}`` or a dataset archive), HEAD and GET.

    With ``only_host`` set, a request whose Host is another name gets 403: it did not come
    through the proxy that routes that name here.
    """

    daemon_threads = True

    def __init__(self, files: dict[str, bytes], only_host: str | None = None) -> None:
        super().__init__(("127.0.0.1", 0), _MirrorHandler)
        self.files = files
        self.only_host = only_host
        self.seen: list[str] = []  # "METHOD path host status"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _MirrorHandler(BaseHTTPRequestHandler):
    server: Mirror

    def log_message(self, format: str, *args: object) -> None:  # quiet: the test reads `seen`
        pass

    def do_HEAD(self) -> None:
        self._answer(body=False)

    def do_GET(self) -> None:
        self._answer(body=True)

    def _answer(self, body: bool) -> None:
        path = urlsplit(self.path).path
        host = (self.headers.get("Host") or "").split(":")[0]
        data = self.server.files.get(path)
        if self.server.only_host and host != self.server.only_host:
            status, data, extra = 403, b"not through the proxy", {}
        elif data is None:
            status, data, extra = 404, b"not here", {"X-Error-Code": "EntryNotFound"}
        else:
            etag = hashlib.sha256(data).hexdigest()
            status, extra = 200, {"ETag": f'"{etag}"', "X-Repo-Commit": COMMIT}
        self.server.seen.append(f"{self.command} {path} {host} {status}")
        self.send_response(status)
        for k, v in extra.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if body:
            self.wfile.write(data)


@contextlib.contextmanager
def serving(files: dict[str, bytes], only_host: str | None = None) -> Iterator[Mirror]:
    """A mirror in a thread for the duration of the block."""
    server = Mirror(files, only_host)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def hub_files(tmp_path_factory) -> dict[str, bytes]:
    """test_resnet's weights (random, made here) in the hub's URL layout, and the reference tensor."""
    import json

    import timm
    import torch
    from safetensors.torch import save_file

    torch.manual_seed(7)
    model = timm.create_model("test_resnet", pretrained=False)
    path = tmp_path_factory.mktemp("hub") / "model.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    base = f"/{REPO_ID}/resolve/main"
    return {
        f"{base}/model.safetensors": path.read_bytes(),
        f"{base}/config.json": json.dumps({"architecture": "test_resnet", "num_classes": 1000}).encode(),
    }


@pytest.fixture
def proxy(services) -> Iterator[Callable[[str], str]]:
    """Start pproxy on a free port routing every request to ``target`` (host:port); its URL."""

    def start(target: str) -> str:
        port = free_port()
        proc = services.start(
            [
                sys.executable,
                "-m",
                "pproxy",
                "-l",
                f"http://127.0.0.1:{port}",
                "-r",
                f"tunnel://{target}",
                "-v",
            ]
        )
        deadline = time.time() + 20
        while time.time() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                return f"http://127.0.0.1:{port}"
            if proc.poll() is not None:
                pytest.fail(f"pproxy exited {proc.returncode}:\n{services.output(proc)}")
            time.sleep(0.2)
        pytest.fail(f"pproxy did not listen in 20 s:\n{services.output(proc)}")

    yield start


def net_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The environment of a `tlbench` subprocess: online, its own HF cache, no inherited proxy."""
    env = {k: v for k, v in os.environ.items() if k.upper() not in _NET_VARS}
    env.update(HF_HOME=str(tmp_path / "hf"), PYTHONUNBUFFERED="1", **extra)
    return env


_NET_VARS = {
    "HF_HUB_OFFLINE",
    "TLBENCH_OFFLINE",
    "HF_ENDPOINT",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "NO_PROXY",
    "HF_HUB_CACHE",
    "HF_HUB_ETAG_TIMEOUT",
    "HF_HUB_DOWNLOAD_TIMEOUT",
}


def tlbench(*args: str, env: dict[str, str], timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tlbench.cli", *args], env=env, capture_output=True, text=True, timeout=timeout
    )


def _cached_weights(tmp_path: Path) -> list[Path]:
    return list((tmp_path / "hf").rglob("model.safetensors"))


# ---------------------------------------------------------------------------------------------
# the hub: a mirror, a proxy, offline afterwards


@pytest.mark.slow
def test_a_hub_mirror_trains_and_its_cache_then_serves_offline(
    tmp_path, write_grid, store, hub_files, monkeypatch
):
    """HF_ENDPOINT at a mirror: the run downloads and trains (huggingface.co is unreachable here,
    where tlbench used to probe it and say "the hub is unreachable"); offline, the mirror gone,
    the cache it left gives the mirror's tensors."""
    import huggingface_hub.constants as hc
    import torch
    from safetensors.torch import load

    from tlbench.models.build import build_model
    from tlbench.spec import WeightsSpec

    with serving(hub_files) as mirror:
        env = net_env(tmp_path, HF_ENDPOINT=mirror.url)
        run = tlbench("run", "--grid", str(write_grid(HUB_GRID)), "--tracking-uri", store, env=env)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "unreachable" not in run.stdout + run.stderr
    assert f"GET /{REPO_ID}/resolve/main/model.safetensors 127.0.0.1 200" in mirror.seen
    (cached,) = _cached_weights(tmp_path)

    assert os.environ["HF_HUB_OFFLINE"] == "1"  # this process: offline (conftest), as a GPU node
    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    model = build_model("test_resnet", num_classes=2, weights=WeightsSpec(kind="hub"))
    served = load(hub_files[f"/{REPO_ID}/resolve/main/model.safetensors"])
    assert torch.equal(model.conv1[0].weight, served["conv1.0.weight"]) and cached.is_file()


@pytest.mark.slow
def test_prefetch_through_a_proxy_and_a_dead_proxy_named(tmp_path, write_grid, hub_files, proxy):
    """HF_ENDPOINT names a host only the proxy can reach: prefetch downloads through pproxy (every
    request: the mirror refuses any other Host); with the proxy gone, the error names it."""
    grid = write_grid(HUB_GRID)
    with serving(hub_files, only_host=PROXIED_HOST) as mirror:
        via = proxy(f"127.0.0.1:{mirror.server_address[1]}")
        env = net_env(tmp_path, HF_ENDPOINT=f"http://{PROXIED_HOST}", HTTP_PROXY=via, NO_PROXY="")
        pre = tlbench("prefetch", "--grid", str(grid), env=env)
    assert pre.returncode == 0, pre.stdout + pre.stderr
    assert "fetched" in pre.stdout and _cached_weights(tmp_path)
    assert f"GET /{REPO_ID}/resolve/main/model.safetensors {PROXIED_HOST} 200" in mirror.seen
    assert not [s for s in mirror.seen if s.endswith(" 403")]  # nothing went round the proxy

    dead = f"http://127.0.0.1:{free_port()}"
    env = net_env(tmp_path / "dead", HF_ENDPOINT=f"http://{PROXIED_HOST}", HTTP_PROXY=dead)
    t0 = time.perf_counter()
    pre = tlbench("prefetch", "--grid", str(grid), env=env)
    assert pre.returncode == 1 and time.perf_counter() - t0 < 30
    flat = " ".join((pre.stdout + pre.stderr).split())  # the table wraps its cells
    assert f"http://{PROXIED_HOST}/{REPO_ID} through proxy {dead}" in flat
    assert "HF_ENDPOINT" in flat and "weights: file:PATH" in flat


@pytest.mark.slow
def test_a_silent_hub_fails_within_seconds_naming_the_endpoint(tmp_path, write_grid):
    """A host that accepts and never answers: huggingface_hub's shortened metadata timeout ends it."""
    with silent_host() as url:
        env = net_env(tmp_path, HF_ENDPOINT=url)
        t0 = time.perf_counter()
        pre = tlbench("prefetch", "--grid", str(write_grid(HUB_GRID)), env=env)
        took = time.perf_counter() - t0
    flat = " ".join((pre.stdout + pre.stderr).split())
    assert pre.returncode == 1 and took < 30, flat
    assert f"{url}/{REPO_ID} (direct" in flat and "timeout 5 s" in flat


@contextlib.contextmanager
def silent_host() -> Iterator[str]:
    """A listening socket that never accepts: the kernel completes the handshake, nothing answers."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(16)
        yield f"http://127.0.0.1:{s.getsockname()[1]}"


# ---------------------------------------------------------------------------------------------
# datasets: URL overrides (mirrors), MD5s, a proxy, a silent host


def _pickled(obj: object) -> bytes:
    return pickle.dumps(obj)


def cifar10_archive(per_batch: int = 10) -> bytes:
    """A CIFAR-10 python-format tar.gz (tiny batches) as the official archive lays it out."""
    rng = np.random.default_rng(0)
    members = {
        f"data_batch_{i}": {
            b"data": rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8),
            b"labels": [j % 10 for j in range(per_batch)],
        }
        for i in range(1, 6)
    }
    members["test_batch"] = {
        b"data": rng.integers(0, 256, (20, 3072), dtype=np.uint8),
        b"labels": [j % 10 for j in range(20)],
    }
    members["batches.meta"] = {b"label_names": [f"class{i}".encode() for i in range(10)]}
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, obj in members.items():
            data = _pickled(obj)
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def hymenoptera_zip() -> bytes:
    """The tutorial's layout, ``hymenoptera_data/{train,val}/{ants,bees}/*.jpg``, two tiny JPEGs each."""
    from PIL import Image

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for split in ("train", "val"):
            for c, cls in enumerate(("ants", "bees")):
                for i in range(2):
                    img = io.BytesIO()
                    Image.new("RGB", (20, 16), (200 * c, 40 * i, 90)).save(img, "JPEG")
                    z.writestr(f"hymenoptera_data/{split}/{cls}/{i}.jpg", img.getvalue())
    return buf.getvalue()


DATA_GRID = """
name: data
datasets: [cifar10, {name: hymenoptera, params: {image_size: 32}}]
backbones: [{name: test_resnet, weights: none}]
strategies: [scratch]
optimizers: [sgd]
augmentations: [none]
"""


def test_datasets_download_from_mirrors_through_a_proxy(tmp_path, write_grid, proxy):
    """TLBENCH_CIFAR10_URL / TLBENCH_HYMENOPTERA_URL at a host only the proxy reaches: prefetch
    downloads both (CIFAR checked against the mirror's MD5) and the data dir then has them."""
    archive = cifar10_archive()
    files = {"/cifar-10-python.tar.gz": archive, "/hymenoptera_data.zip": hymenoptera_zip()}
    data = tmp_path / "data"
    with serving(files, only_host=PROXIED_HOST) as mirror:
        via = proxy(f"127.0.0.1:{mirror.server_address[1]}")
        env = net_env(
            tmp_path,
            HTTP_PROXY=via,
            TLBENCH_CIFAR10_URL=f"http://{PROXIED_HOST}/cifar-10-python.tar.gz",
            TLBENCH_CIFAR10_MD5=hashlib.md5(archive).hexdigest(),
            TLBENCH_HYMENOPTERA_URL=f"http://{PROXIED_HOST}/hymenoptera_data.zip",
        )
        pre = tlbench("prefetch", "--grid", str(write_grid(DATA_GRID)), "--data-dir", str(data), env=env)
    assert pre.returncode == 0, pre.stdout + pre.stderr
    assert pre.stdout.count("fetched") == 2
    assert (data / "cifar-10-batches-py" / "data_batch_5").is_file()
    assert len(list((data / "hymenoptera_data" / "val" / "bees").glob("*.jpg"))) == 2
    got = {s for s in mirror.seen if s.startswith("GET")}  # torchvision GETs twice (a redirect check)
    assert got == {f"GET {p} {PROXIED_HOST} 200" for p in files}


@pytest.fixture
def online(monkeypatch):
    """Downloads allowed in this process (conftest switches them off), no proxy inherited."""
    for name in _NET_VARS:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


def test_a_cifar_mirror_is_md5_checked_unless_told_not_to(tmp_path, monkeypatch, capfd, online):
    from tlbench.data import DatasetNotFoundError, load_dataset

    archive = cifar10_archive()
    with serving({"/c10.tgz": archive}) as mirror:
        monkeypatch.setenv("TLBENCH_CIFAR10_URL", f"{mirror.url}/c10.tgz")
        with pytest.raises(DatasetNotFoundError, match="TLBENCH_CIFAR10_MD5"):  # the official MD5
            load_dataset("cifar10", data_dir=tmp_path / "a", download=True)
        monkeypatch.setenv("TLBENCH_CIFAR10_MD5", "")  # a repacked mirror: unchecked, and said so
        d = load_dataset("cifar10", data_dir=tmp_path / "b", download=True)
        assert d.sizes()["test"] == 20 and d.classes[3] == "class3"
        assert "not checked against an MD5" in capfd.readouterr().err


def test_a_silent_dataset_host_is_reported_within_seconds(tmp_path, monkeypatch, online):
    from tlbench.data import DatasetNotFoundError, load_dataset

    with silent_host() as url:
        monkeypatch.setenv("TLBENCH_HYMENOPTERA_URL", f"{url}/hymenoptera_data.zip")
        t0 = time.perf_counter()
        with pytest.raises(DatasetNotFoundError) as info:
            load_dataset("hymenoptera", data_dir=tmp_path, download=True)
        assert time.perf_counter() - t0 < 10
    message = str(info.value)
    assert f"{url}/hymenoptera_data.zip (direct" in message and "timeout" in message
    assert not (tmp_path / "hymenoptera_data.zip").exists()


def test_a_hymenoptera_mirror_with_a_wrong_md5_leaves_no_archive(tmp_path, monkeypatch, online):
    from tlbench.data import DatasetNotFoundError, load_dataset

    archive = hymenoptera_zip()
    with serving({"/h.zip": archive}) as mirror:
        monkeypatch.setenv("TLBENCH_HYMENOPTERA_URL", f"{mirror.url}/h.zip")
        monkeypatch.setenv("TLBENCH_HYMENOPTERA_MD5", "0" * 32)
        with pytest.raises(DatasetNotFoundError, match="TLBENCH_HYMENOPTERA_MD5"):
            load_dataset("hymenoptera", params={"image_size": 16}, data_dir=tmp_path, download=True)
        assert sorted(p.name for p in tmp_path.iterdir()) == []  # no bad zip to trip the next run
        monkeypatch.setenv("TLBENCH_HYMENOPTERA_MD5", hashlib.md5(archive).hexdigest())
        d = load_dataset("hymenoptera", params={"image_size": 16}, data_dir=tmp_path, download=True)
    assert d.classes == ["ants", "bees"] and d.sizes()["train"] == 4


def test_the_catalog_probe_goes_through_the_proxy(monkeypatch, proxy, online):
    """torchvision-catalog sets are probed before a download: behind a proxy, a host that only the
    proxy reaches is reachable (the old probe connected to it directly and said it was not)."""
    from tlbench.data.fetching import download_blocker

    with serving({}, only_host=PROXIED_HOST) as mirror:
        monkeypatch.setenv("HTTP_PROXY", proxy(f"127.0.0.1:{mirror.server_address[1]}"))
        assert download_blocker(f"http://{PROXIED_HOST}/") is None  # a 404 for the root: it is up
    assert mirror.seen == [f"HEAD / {PROXIED_HOST} 404"]
