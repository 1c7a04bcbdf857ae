"""Celery entry point for evidence packs: thin, and safe to run twice (the build claims
its pack first; a second run finds nothing to claim)."""

from celery import shared_task

from evidence.services.build import evidence_pack_build
from evidence.services.packs import evidence_packs_resume


@shared_task
def evidence_pack_build_task(pack_id: int) -> bool:
    """Build the pack; False when another run built it or is building it."""
    return evidence_pack_build(pack_id=pack_id)


@shared_task
def evidence_packs_resume_task() -> int:
    """Beat's sweep: builds owed but not running (lost publish, dead worker) start again."""
    return len(evidence_packs_resume())
