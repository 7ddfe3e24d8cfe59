"""Pre-train the transfer experiment's CNN on digits 0-4 and write ``pretrained.pt``.

``python pretrain.py`` (run.py calls it when the file is missing). Central SGD on the
training split of classes 0-4 that the scenario's own data pipeline produces
(``data.classes = [0, ..., 4]``, same seed, same 80/20 split), so no digit of the
fine-tuning classes 5-9 is ever seen. The model is the scenario's (``cnn``, the same
seed's initial weights, ten outputs); the file is a plain ``state_dict``
(``torch.save``), which ``model.init`` loads with ``weights_only=True``.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from p2pfl.config import load_scenario
from p2pfl.experiment import build_experiment

HERE = Path(__file__).resolve().parent
OUT = HERE / "pretrained.pt"
EPOCHS = 10
LR = 0.1
BATCH = 32


def pretrain(out: Path = OUT) -> float:
    """Train, save, and return the test accuracy on digits 0-4."""
    exp = build_experiment(
        load_scenario(HERE / "scenario.toml", ["data.classes=[0,1,2,3,4]", "data.partition=iid"])
    )
    model = exp.model
    x, y = exp.train.x, exp.train.y
    gen = torch.Generator().manual_seed(0)
    opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=0.9)
    for _ in range(EPOCHS):
        order = torch.randperm(len(y), generator=gen)
        for start in range(0, len(y), BATCH):
            idx = order[start : start + BATCH]
            opt.zero_grad()
            F.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
    with torch.no_grad():
        acc = float((model(exp.test.x).argmax(1) == exp.test.y).float().mean())
    torch.save(model.state_dict(), out)
    return acc


if __name__ == "__main__":
    accuracy = pretrain()
    print(f"wrote {OUT.name}: test accuracy on digits 0-4 = {accuracy:.3f}")
