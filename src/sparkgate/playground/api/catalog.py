"""What the UI starts from: sample manifests, the environments, who the caller is."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter

from sparkgate.playground.deps import CurrentSettings, User
from sparkgate.playground.models import Sample

SAMPLES = Path(__file__).parents[2] / "runner" / "samples"

router = APIRouter()


@router.get("/samples", response_model=list[Sample], summary="Sample manifests to start from")
def samples() -> list[Sample]:  # (files: in a worker thread)
    out = []
    for f in sorted(SAMPLES.glob("*.yaml")):
        text = f.read_text()
        first = next((ln.lstrip("# ").strip() for ln in text.splitlines() if ln.startswith("#")), f.stem)
        out.append(Sample(name=f.stem, title=first, manifest=text))
    return out


@router.get("/environments", response_model=list[str], summary="Environments jobs may run in")
async def environments(settings: CurrentSettings) -> list[str]:
    return sorted(settings.environments)


@router.get("/whoami", summary="Who the Playground thinks you are")
async def whoami(user: User, settings: CurrentSettings) -> dict[str, Any]:
    return {"user": user.name, "auth": settings.auth.mode}
