"""The faults of issue #29 as a user meets them, one line each: what they see, the exit code, the store.

    python benchmarks/faults/scenarios.py                 # this checkout
    python benchmarks/faults/scenarios.py --src OLD_TREE  # another tree (PYTHONPATH), e.g. a worktree
                                                          # of an older commit: before / after
Every server is real and on 127.0.0.1: a hub mirror (a thread serving a timm test model's
safetensors in the hub's URL layout), pproxy (a process), tmpfs mounts for a full disk (root
only; skipped otherwise). Shared-server outages take minutes each: they are tests/test_outages.py.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

REPO_ID = "timm/test_resnet.r160_in1k"
HIDDEN_HOST = "tlbench-mirror.invalid"  # resolves nowhere: reached only through the proxy
NET_VARS = ("HF_HUB_OFFLINE", "TLBENCH_OFFLINE", "HF_ENDPOINT", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY")
TINY = """
name: {name}
train: {{epochs: {epochs}, batch_size: 16, image_size: 16, lr: 0.05, seed: 0}}
datasets:
  - {{name: synthetic, params: {{classes: 2, train_per_class: 8, val_per_class: 4, test_per_class: 4, image_size: 16}}}}
backbones:
  - {{name: test_resnet, weights: {weights}}}
strategies: [{strategies}]
optimizers: [sgd]
augmentations: [none]
"""


class Mirror(ThreadingHTTPServer):
    """Files by URL path, HEAD and GET, with the headers huggingface_hub needs; 403 to any Host
    but ``only_host`` when set (a request that did not come through the proxy)."""

    daemon_threads = True

    def __init__(self, files: dict[str, bytes], only_host: str | None = None) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.files, self.only_host, self.seen = files, only_host, []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    server: Mirror

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_HEAD(self) -> None:
        self._answer(False)

    def do_GET(self) -> None:
        self._answer(True)

    def _answer(self, body: bool) -> None:
        path, host = urlsplit(self.path).path, (self.headers.get("Host") or "").split(":")[0]
        data = self.server.files.get(path)
        if self.server.only_host and host != self.server.only_host:
            status, data, extra = 403, b"not through the proxy", {}
        elif data is None:
            status, data, extra = 404, b"not here", {"X-Error-Code": "EntryNotFound"}
        else:
            status, extra = 200, {"ETag": f'"{hashlib.sha256(data).hexdigest()}"', "X-Repo-Commit": "1" * 40}
        self.server.seen.append(f"{self.command} {path} {status}")
        self.send_response(status)
        for k, v in extra.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if body:
            self.wfile.write(data)


@contextlib.contextmanager
def serving(files: dict[str, bytes], only_host: str | None = None) -> Iterator[Mirror]:
    server = Mirror(files, only_host)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@contextlib.contextmanager
def proxy_to(target: str) -> Iterator[str]:
    """pproxy on a free port sending every request to ``target`` (host:port), like a site proxy."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "pproxy", "-l", f"http://127.0.0.1:{port}", "-r", f"tunnel://{target}"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                break
            time.sleep(0.2)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait()


def hub_files(folder: Path) -> dict[str, bytes]:
    import timm
    from safetensors.torch import save_file

    model = timm.create_model("test_resnet", pretrained=False)
    path = folder / "model.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    base = f"/{REPO_ID}/resolve/main"
    config = json.dumps({"architecture": "test_resnet", "num_classes": 1000}).encode()
    return {f"{base}/model.safetensors": path.read_bytes(), f"{base}/config.json": config}


def cifar10_archive() -> bytes:
    import pickle

    import numpy as np

    rng = np.random.default_rng(0)
    batch = {
        b"data": rng.integers(0, 256, (20, 3072), dtype=np.uint8),
        b"labels": [j % 10 for j in range(20)],
    }
    members = {f"data_batch_{i}": batch for i in range(1, 6)} | {"test_batch": batch}
    members["batches.meta"] = {b"label_names": [f"class{i}".encode() for i in range(10)]}
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, obj in members.items():
            data = pickle.dumps(obj)
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


class Scenarios:
    def __init__(self, root: Path, src: str | None) -> None:
        self.root, self.src = root, src
        self.lines: list[str] = []

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k.upper() not in NET_VARS}
        env.update(HF_HOME=str(self.root / "hf"), TLBENCH_DATA=str(self.root / "data"), COLUMNS="400")
        if self.src:
            env["PYTHONPATH"] = self.src + os.pathsep + env.get("PYTHONPATH", "")
        env.update(extra)
        return env

    def tlbench(self, *args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
        out = subprocess.run(
            [sys.executable, "-m", "tlbench.cli", *args],
            env=env or self.env(),
            capture_output=True,
            text=True,
            timeout=600,
            cwd=self.root,
        )
        return out.returncode, out.stdout + out.stderr

    def grid(self, name: str, epochs: int = 1, weights: str = "none", strategies: str = "scratch") -> str:
        path = self.root / f"{name}.yaml"
        path.write_text(TINY.format(name=name, epochs=epochs, weights=weights, strategies=strategies))
        return str(path)

    def store(self, name: str) -> str:
        return f"sqlite:///{self.root / name / 'mlflow.db'}"

    def say(self, scenario: str, code: int, output: str, store: str = "") -> None:
        self.lines.append(f"{scenario} | {said(output)} | exit {code} | {store}")
        print(self.lines[-1], flush=True)


def said(output: str) -> str:
    """The line a user reads first: an error, a failed cell, or the last line."""
    lines = [" ".join(x.split()) for x in output.splitlines() if x.strip()]
    for marker in ("error:", "Error:", "✗", "Traceback"):
        hit = next((x for x in lines if marker in x), None)
        if hit:
            return hit[:400] + (" [+traceback]" if marker != "Traceback" and "Traceback" in output else "")
    return lines[-1][:400] if lines else ""


def runs(store: str) -> str:
    """``FINISHED x1, FAILED x1 (reason...)`` of the cell runs in a store."""
    db = store.removeprefix("sqlite:///")
    if not Path(db).exists():
        return "no store"
    try:
        with contextlib.closing(sqlite3.connect(db)) as con:
            rows = con.execute(
                "select r.status, (select value from tags t where t.run_uuid = r.run_uuid and "
                "t.key = 'tlbench.failure_reason') from runs r join experiments e on "
                "r.experiment_id = e.experiment_id where e.name not like 'zz-%' and r.lifecycle_stage = 'active'"
            ).fetchall()
    except sqlite3.DatabaseError as err:
        return f"store unreadable ({err})"
    out = [f"{s}" + (f" ({' '.join(r.split())[:120]})" if r else "") for s, r in rows]
    return "runs: " + (", ".join(out) if out else "none")


def hub(sc: Scenarios) -> None:
    files = hub_files(sc.root)
    grid = sc.grid("hub", weights="hub", strategies="linear_probe")
    with serving(files) as mirror:
        store = sc.store("hub-mirror")
        code, out = sc.tlbench(
            "run", "--grid", grid, "--tracking-uri", store, env=sc.env(HF_ENDPOINT=mirror.url)
        )
        sc.say("weights: hub, HF_ENDPOINT at a local mirror", code, out, runs(store))
    store = sc.store("hub-offline")
    code, out = sc.tlbench("run", "--grid", grid, "--tracking-uri", store, env=sc.env(HF_HUB_OFFLINE="1"))
    sc.say("the same, HF_HUB_OFFLINE=1, the mirror stopped", code, out, runs(store))
    shutil.rmtree(sc.root / "hf", ignore_errors=True)
    with (
        serving(files, only_host=HIDDEN_HOST) as mirror,
        proxy_to(mirror.url.removeprefix("http://")) as proxy,
    ):
        env = sc.env(HF_ENDPOINT=f"http://{HIDDEN_HOST}", HTTP_PROXY=proxy, HTTPS_PROXY=proxy)
        store = sc.store("hub-proxy")
        code, out = sc.tlbench("run", "--grid", grid, "--tracking-uri", store, env=env)
        sc.say("weights: hub, a mirror reachable only through HTTP(S)_PROXY", code, out, runs(store))


def cifar(sc: Scenarios) -> None:
    archive = cifar10_archive()
    grid = sc.root / "cifar.yaml"
    grid.write_text(
        TINY.format(name="cifar", epochs=1, weights="none", strategies="scratch").replace(
            "{name: synthetic, params: {classes: 2, train_per_class: 8, val_per_class: 4, test_per_class: 4, image_size: 16}}",
            "{name: cifar10, train: {train_examples: 40}}",
        )
    )
    with (
        serving({"/cifar-10-python.tar.gz": archive}, only_host=HIDDEN_HOST) as mirror,
        proxy_to(mirror.url.removeprefix("http://")) as proxy,
    ):
        env = sc.env(
            HTTP_PROXY=proxy,
            HTTPS_PROXY=proxy,
            TLBENCH_CIFAR10_URL=f"http://{HIDDEN_HOST}/cifar-10-python.tar.gz",
            TLBENCH_CIFAR10_MD5=hashlib.md5(archive).hexdigest(),
        )
        code, out = sc.tlbench("prefetch", "--grid", str(grid), env=env)
        have = (sc.root / "data" / "cifar-10-batches-py").is_dir()
        sc.say(
            "prefetch cifar10 from TLBENCH_CIFAR10_URL through a proxy", code, out, f"data dir has it: {have}"
        )


@contextlib.contextmanager
def tmpfs(folder: Path, size: str) -> Iterator[Path | None]:
    folder.mkdir(parents=True, exist_ok=True)
    if (
        os.geteuid() != 0
        or subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)]).returncode
    ):
        yield None
        return
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)])


def disk_full(sc: Scenarios) -> None:
    with tmpfs(sc.root / "small", "8m") as disk:
        if disk is None:
            sc.lines.append("full checkpoint disk | skipped: needs root for a tmpfs")
            return
        ballast = disk / "ballast"
        ballast.write_bytes(b"\0" * (8 * 2**20 - 1152 * 4096))  # room for one checkpoint, not two
        store = sc.store("full")
        env = sc.env(TLBENCH_CHECKPOINTS=str(disk), TLBENCH_CHECKPOINT_S="0")
        code, out = sc.tlbench("run", "--grid", sc.grid("full", epochs=2), "--tracking-uri", store, env=env)
        sc.say("checkpoint folder on a full disk", code, out, runs(store))
        ballast.unlink()
        code, out = sc.tlbench("run", "--grid", sc.grid("full", epochs=2), "--tracking-uri", store, env=env)
        sc.say("the same after space is freed", code, out, runs(store))


def damaged(sc: Scenarios) -> None:
    store = sc.store("damaged")
    grid = sc.grid("damaged", strategies="scratch, finetune")
    sc.tlbench("run", "--grid", grid, "--tracking-uri", store)
    db = Path(store.removeprefix("sqlite:///"))
    with db.open("r+b") as f:
        f.truncate(db.stat().st_size // 2)
    for cmd in ("report", "run"):
        code, out = sc.tlbench(cmd, "--grid", grid, "--tracking-uri", store)
        sc.say(
            f"tlbench {cmd} on a mlflow.db truncated to half", code, out, f"db {db.stat().st_size:,} bytes"
        )
    code, out = sc.tlbench(
        "store", "backup", "--tracking-uri", sc.store("hub-mirror"), "--to", str(sc.root / "backup")
    )
    sc.say("tlbench store backup", code, out)


def same_settings(sc: Scenarios) -> None:
    path = sc.root / "dup.yaml"
    path.write_text(
        TINY.format(
            name="dup", epochs=1, weights="none", strategies="scratch, {name: scratch, label: scratch2}"
        )
    )
    code, out = sc.tlbench("ls", "--grid", str(path))
    said_line = next((x for x in out.splitlines() if "run" in x and "=" in x), "")
    sc.say("tlbench ls, two entries with identical settings", code, said_line or out.splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--src", help="a source tree to run instead of the installed tlbench (PYTHONPATH)")
    parser.add_argument(
        "--only", nargs="*", default=["hub", "cifar", "disk_full", "damaged", "same_settings"]
    )
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="tlbench-faults-"))
    sc = Scenarios(root, args.src)
    print(f"tree: {args.src or 'installed'}; scratch: {root}", flush=True)
    for name in args.only:
        globals()[name](sc)
    print("\n".join(["", "scenario | what the user sees | exit | store afterwards", *sc.lines]))


if __name__ == "__main__":
    main()
