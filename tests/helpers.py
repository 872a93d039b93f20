"""What tests share besides fixtures: tiny cells and results, free ports, the repo's root.

A module of its own, not ``conftest``: a test folder with its own ``conftest.py`` (tests/report)
would shadow the top one under that name.
"""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

SYNTH = {"classes": 4, "train_per_class": 60, "val_per_class": 15, "test_per_class": 15, "image_size": 16}


def make_cell(
    strategy: str | dict = "scratch",
    *,
    dataset: str | dict | None = None,
    backbone: str = "test_resnet",
    weights: str = "none",
    optimizer: str | dict = "sgd",
    augmentation: str = "none",
    grid: str = "t",
    metric: str = "acc",
    **train,
):
    """One cell of a one-cell grid: tiny defaults (synthetic 4 classes at 16 px, 2 epochs),
    any axis entry or train setting overridden by keyword."""
    from tlbench.cells import expand
    from tlbench.spec import parse_grid

    raw = {
        "name": grid,
        "train": {"epochs": 2, "batch_size": 32, "image_size": 16, "lr": 0.05, "seed": 0, **train},
        "datasets": [dataset or {"name": "synthetic", "params": SYNTH}],
        "backbones": [{"name": backbone, "weights": weights}],
        "strategies": [strategy],
        "optimizers": [optimizer],
        "augmentations": [augmentation],
        "metric": metric,
    }
    return expand(parse_grid(raw))[0]


def make_result(cell, *, epochs: int = 2, val_acc: float = 0.5, test_acc: float = 0.5):
    """A ``Result`` as ``fit`` returns it, without training: for tests of what is done with one."""
    import numpy as np
    import timm

    from tlbench.train import Result

    history = [
        {
            "epoch": float(e),
            "train_loss": 1.0,
            "train_acc": 0.5,
            "val_loss": 1.0,
            "val_acc": val_acc,
            "lr": 0.1,
        }
        for e in range(epochs)
    ]
    model = timm.create_model(cell.backbone.name, num_classes=2)
    return Result(
        history=history,
        best_epoch=epochs - 1,
        best_val_acc=val_acc,
        test_loss=1.0,
        test_acc=test_acc,
        test_top5=1.0,
        confusion=np.array([[3, 1], [1, 3]]),
        classes=["a", "b"],
        train_time_s=1.0,
        images_per_s=100.0,
        params_trainable=10,
        params_total=10,
        device="cpu",
        best_state={k: v.detach().clone() for k, v in model.state_dict().items()},
    )


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _jpeg(path: Path, colour: tuple[int, int, int], size: tuple[int, int] = (40, 30)) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path, "JPEG")


def write_dtd(data_dir: Path, classes: int = 3, per_split: int = 4) -> Path:
    """A DTD tree in torchvision's layout (``DTD/dtd/dtd/{images,labels}``), partition 1: every image
    one flat colour of its own (red says its class)."""
    base = data_dir / "torchvision" / "DTD" / "dtd" / "dtd"
    n = 0
    for split in ("train", "val", "test"):
        lines = []
        for c in range(classes):
            for i in range(per_split):
                name = f"texture{c}/{split}_{i}.jpg"
                n += 1  # every image its own colour: a split's images can be told from another's
                _jpeg(base / "images" / name, (60 * c, 4 * (n % 64), 4 * (n // 64)))
                lines.append(name)
        (base / "labels").mkdir(parents=True, exist_ok=True)
        (base / "labels" / f"{split}1.txt").write_text("\n".join(lines) + "\n")
    return base


def write_pets(data_dir: Path, breeds: int = 3, trainval: int = 12, test: int = 5) -> Path:
    """An Oxford-IIIT Pet tree in torchvision's layout (``images/``, ``annotations/{trainval,test}.txt``)."""
    base = data_dir / "torchvision" / "OxfordIIITPet" / "oxford-iiit-pet"
    (base / "annotations").mkdir(parents=True, exist_ok=True)
    n = 0
    for split, count in (("trainval", trainval), ("test", test)):
        lines = []
        for b in range(breeds):
            for _ in range(count):
                n += 1
                image_id = f"breed_{chr(97 + b)}_{n}"
                _jpeg(
                    base / "images" / f"{image_id}.jpg", (80 * b, 4 * (n % 64), 4 * (n // 64)), size=(30, 50)
                )
                lines.append(f"{image_id} {b + 1} {1 + b % 2} 1")
        (base / "annotations" / f"{split}.txt").write_text("\n".join(lines) + "\n")
    return base


class ServerProcess:
    """A ``tlbench server`` (or any long-running command) that a test can stop and start again,
    logging to a file (never an unread pipe) in its own process group."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.args, self.env, self.log = args, env, log
        self.proc = None

    def start(self) -> ServerProcess:
        import subprocess

        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                self.args, env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        return self

    def wait_http(self, url: str, timeout: float = 180) -> None:
        """GET ``url`` (no credentials) until the server answers anything, even 401."""
        import time
        import urllib.error
        import urllib.request

        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                urllib.request.urlopen(url, timeout=5).close()
                return
            except urllib.error.HTTPError:
                return
            except OSError:
                if self.proc.poll() is not None:
                    raise AssertionError(f"exited {self.proc.returncode}:\n{self.output()}") from None
                time.sleep(0.5)
        raise AssertionError(f"{url} did not answer in {timeout:g} s:\n{self.output()}")

    def stop(self) -> None:
        import contextlib
        import os
        import signal
        import subprocess

        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def process_cmdlines() -> list[str]:
    """Every process's command line, as ``ps`` shows it to any user of the machine."""
    out = []
    for path in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            out.append(path.read_bytes().replace(b"\0", b" ").decode(errors="replace"))
        except OSError:
            continue
    return out


class Recorder:
    """A ``Reporter`` that keeps what ``fit`` told it: the start info and every epoch's metrics."""

    def __init__(self):
        self.started: dict = {}
        self.epochs: list[tuple[int, dict]] = []

    def on_start(self, info):
        self.started = info

    def on_epoch(self, epoch, metrics):
        self.epochs.append((epoch, metrics))


class StopAfter:
    """A reporter that interrupts training after a given epoch, like Ctrl-C would."""

    def __init__(self, epoch: int):
        self.epoch = epoch

    def on_start(self, info):
        pass

    def on_epoch(self, epoch, metrics):
        if epoch == self.epoch:
            raise KeyboardInterrupt
