"""`browserml goldens approve DIR`: review obtained files (a CI job's artifact) and move them into place.

DIR mirrors the golden folder (`<module>/<test>[<ep>].obtained.npz` and its
`.json`, possibly inside more folders). Each obtained file is listed against
the golden it would replace: per output the max abs change, and what its
sidecar changes (model, browser, onnxruntime-web ...). Only a per-EP golden can
be approved: a reference golden is native onnxruntime's output, which an EP's
output must not become. A file whose sidecar names another model than the
golden's is refused, and nothing is written outside the golden folder. The
obtained tensors are read like goldens (never unpickled, sizes checked against
what their sidecar declares) and written atomically.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import store as goldens

_SIDECAR_FACTS = ("model", "model_sha256")


@dataclass(frozen=True)
class Approval:
    """One obtained file against its golden: what would change, or why it is refused."""

    obtained: goldens.GoldenFiles
    golden: goldens.GoldenFiles | None
    changes: tuple[str, ...] = ()
    refusal: str | None = None
    arrays: dict | None = None
    metadata: dict | None = None


def plan(source: Path, golden_dir: Path) -> list[Approval]:
    """Every obtained file under `source`, matched with its golden under `golden_dir`."""
    return [_plan_one(goldens.GoldenFiles(path), Path(golden_dir))
            for path in sorted(Path(source).rglob("*" + goldens.OBTAINED_NPZ)) if path.is_file()]


def apply(approval: Approval) -> None:
    """Write the obtained tensors and sidecar as the golden; drop the obtained files when they sat in the golden folder."""
    goldens.write_golden(approval.golden, approval.arrays, approval.metadata)
    if approval.obtained.npz.resolve().is_relative_to(approval.golden.npz.parent.parent.resolve()):
        goldens.remove(approval.obtained)


def _plan_one(obtained: goldens.GoldenFiles, golden_dir: Path) -> Approval:
    try:
        sidecar = goldens.read_sidecar(obtained.sidecar)
    except goldens.GoldenError as error:
        return Approval(obtained, None, refusal=str(error))
    if not goldens.is_store_sidecar(sidecar):
        return Approval(obtained, None, refusal=f"{obtained.sidecar} is missing or not a sidecar pytest-browserml wrote")
    if sidecar["kind"] != "per-EP":
        return Approval(obtained, None, refusal=(
            "it was compared with a reference golden (native onnxruntime's output), which an EP's output must not "
            f"replace: re-run {sidecar['test']} with --update-goldens to remake the reference, or use per_ep=True"))
    name = obtained.npz.name[: -len(goldens.OBTAINED_NPZ)] + ".npz"
    golden = goldens.GoldenFiles(golden_dir / obtained.npz.parent.name / name)
    if not golden.npz.parent.resolve().is_relative_to(golden_dir.resolve()):
        return Approval(obtained, golden, refusal=f"{golden.npz.parent} leads outside the golden folder {golden_dir}")
    try:
        old_sidecar = goldens.read_sidecar(golden.sidecar) if golden.npz.exists() else None
        arrays = goldens.read_golden(obtained.npz, _declared_sizes(obtained, sidecar))
        old = goldens.read_golden(golden.npz) if golden.npz.exists() else None
    except goldens.GoldenError as error:
        return Approval(obtained, golden, refusal=str(error))
    if old_sidecar and not goldens.same_model(old_sidecar.get("model"), sidecar["model"]):
        return Approval(obtained, golden, refusal=(
            f"its sidecar names the model {sidecar['model']}, the golden's is {old_sidecar.get('model')}"))
    changes = [change.describe() for change in goldens.changes(old, arrays)]
    changes += _sidecar_changes(old_sidecar, sidecar)
    used_by = sorted(goldens.used_by(old_sidecar) | goldens.used_by(sidecar))
    return Approval(obtained, golden, tuple(changes), arrays=arrays, metadata={**sidecar, "used_by": used_by})


def _declared_sizes(obtained: goldens.GoldenFiles, sidecar: dict) -> dict[str, int]:
    """Each output's bytes as its sidecar declares them: the limits its .npz is read within."""
    try:
        return {name: math.prod(entry["shape"]) * np.dtype(entry["dtype"]).itemsize
                for name, entry in sidecar["outputs"].items()}
    except (KeyError, TypeError, ValueError) as error:
        raise goldens.GoldenError(f"{obtained.sidecar}: its outputs are not declared as shape and dtype "
                                  f"({error})") from None


def _sidecar_changes(old: dict | None, new: dict) -> list[str]:
    """What the golden's sidecar would say differently: the model, and who made the tensors."""
    old = old or {}
    pairs = [(key, old.get(key), new.get(key)) for key in _SIDECAR_FACTS]
    made_before, made_now = old.get("made_by") or {}, new.get("made_by") or {}
    pairs += [(f"made_by.{key}", made_before.get(key), made_now.get(key)) for key in sorted({*made_before, *made_now})]
    return [f"{key}: {before} -> {after}" for key, before, after in pairs if before != after]
