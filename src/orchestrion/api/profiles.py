"""Profiles in the admin API: look-up, timeline, consent (read as of an instant, and the preference center),
unmerge, and erasure.

References may contain `/` (`user_id:team/7`): routes take the rest of the path, so the ones with a suffix
(`/timeline`, `/consent`, `/unmerge`) are declared before the bare one.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field

from orchestrion.api.admin import require_admin
from orchestrion.api.responses import FastJSONResponse, error_json
from orchestrion.collect.normalize import parse_instant
from orchestrion.identity.consent import ConsentInputError
from orchestrion.identity.consent_store import consent_state, preference_rows
from orchestrion.identity.erasure import erase
from orchestrion.identity.errors import UnlinkRefused
from orchestrion.identity.links import Identifier
from orchestrion.identity.lookup import (
    InvalidProfileReference,
    ProfileNotFound,
    find_profile,
    profile_document,
    timeline,
)
from orchestrion.pipeline import Processing
from orchestrion.store.profile_rows import ProcessingStep, UnlinkRow

router = APIRouter(prefix="/api/profiles", tags=["profiles"], dependencies=[Depends(require_admin)])


class UnmergeRequest(BaseModel):
    identifier: str = Field(description="the identifier to detach, as type:value (e.g. device_id:ipad-1)")


def _processing(request: Request) -> Processing:
    processing: Processing = request.app.state.processing
    return processing


def _find(request: Request, reference: str) -> str | Any:
    try:
        return find_profile(request.app.state.store, reference)
    except ProfileNotFound as exc:
        return error_json(404, "profile_not_found", str(exc))
    except InvalidProfileReference as exc:
        return error_json(400, "invalid_reference", str(exc))


@router.get("/{reference:path}/timeline", summary="A profile's events, newest first, paginated")
async def get_timeline(
    request: Request,
    reference: str,
    limit: int = Query(50, ge=1, le=1000),
    cursor: str | None = Query(None, description="next_cursor of the previous page"),
) -> Any:
    profile_id = _find(request, reference)
    if not isinstance(profile_id, str):
        return profile_id
    try:
        return FastJSONResponse(timeline(request.app.state.store, profile_id, limit=limit, cursor=cursor))
    except InvalidProfileReference as exc:
        return error_json(400, "invalid_cursor", str(exc))


@router.get("/{reference:path}/consent", summary="Consent per channel and purpose, now or as of ?at=")
async def get_consent(
    request: Request,
    reference: str,
    at: str | None = Query(None, description="ISO-8601 instant, e.g. 2026-11-01T09:00:00Z"),
) -> Any:
    profile_id = _find(request, reference)
    if not isinstance(profile_id, str):
        return profile_id
    instant = None
    if at is not None:
        instant = parse_instant(at)
        if instant is None:
            return error_json(400, "invalid_at", f"at: {at!r} is not an ISO-8601 instant; e.g. 2026-11-01T09:00:00Z")
    state = consent_state(request.app.state.store, profile_id, request.app.state.workspace.config.consent, instant)
    return FastJSONResponse({"profile_id": profile_id, **state.as_json()})


@router.put("/{reference:path}/consent", summary="Preference center: set consent per channel and purpose")
async def put_consent(request: Request, reference: str) -> Any:
    profile_id = _find(request, reference)
    if not isinstance(profile_id, str):
        return profile_id
    try:
        body = await request.json()
    except ValueError:
        return error_json(400, "invalid_json", 'body must be JSON like {"email": {"marketing": false}}')
    config = request.app.state.workspace.config.consent
    now: dt.datetime = request.app.state.clock.now()
    try:
        rows = preference_rows(body, profile_id, "preference_center", now, config)
    except ConsentInputError as exc:
        problems = [p.as_dict() for p in exc.problems]
        first = exc.problems[0] if exc.problems else None
        message = f"{first.field or '/'}: {first.message}" if first else str(exc)
        return FastJSONResponse({"code": "invalid_consent", "message": message, "problems": problems}, status_code=422)
    store = request.app.state.store
    with _processing(request).identity.lock:
        store.commit_processing(ProcessingStep(consent=rows))
    store.audit("admin", "consent.update", profile_id, {"changes": len(rows)})
    state = consent_state(store, profile_id, config, None)
    return FastJSONResponse({"profile_id": profile_id, **state.as_json()})


@router.post("/{reference:path}/unmerge", summary="Detach an identifier from the profile into a profile of its own")
async def unmerge(request: Request, reference: str, body: UnmergeRequest) -> Any:
    profile_id = _find(request, reference)
    if not isinstance(profile_id, str):
        return profile_id
    try:
        identifier = Identifier.parse(body.identifier)
    except ValueError as exc:
        return error_json(400, "invalid_identifier", f"identifier: {exc}")
    processing = _processing(request)
    store = request.app.state.store
    stage = processing.identity
    with stage.lock:
        stage.ensure_current()
        if stage.resolver.resolve(identifier) != profile_id:
            return error_json(
                409, "not_on_profile", f"{identifier} is not an identifier of profile {profile_id}; nothing changed"
            )
        now: dt.datetime = request.app.state.clock.now()
        unlink_id = f"unlink_{int(now.timestamp() * 1000)}_{identifier.type}"
        try:
            rule, effects = stage.resolver.unlink(identifier, timestamp=now, unlink_id=unlink_id)
        except UnlinkRefused as exc:
            return error_json(409, "unmerge_refused", str(exc))
        step = stage.step_for_effects(effects)
        step.unlinks.append(
            UnlinkRow(unlink_id, str(identifier), sorted(str(i) for i in rule.separated_from), now, "admin")
        )
        try:
            store.commit_processing(step)
        except Exception:
            stage.load()
            raise
    store.audit("admin", "identity.unmerge", profile_id, {"identifier_type": identifier.type, "unlink_id": unlink_id})
    return FastJSONResponse(
        {"profile_id": profile_id, "detached": str(identifier), "new_profile_id": stage.resolver.resolve(identifier)}
    )


@router.delete("/{reference:path}", summary="Erase a profile everywhere (right to be forgotten)")
async def delete_profile(request: Request, reference: str) -> Any:
    profile_id = _find(request, reference)
    if not isinstance(profile_id, str):
        return profile_id
    report = await asyncio.to_thread(erase, _processing(request).identity, profile_id, actor="admin")
    return FastJSONResponse(report.as_dict())


@router.get("/{reference:path}", summary="A profile: identities, traits with provenance, consent, merges")
async def get_profile(request: Request, reference: str) -> Any:
    profile_id = _find(request, reference)
    if not isinstance(profile_id, str):
        return profile_id
    store = request.app.state.store
    document = profile_document(store, profile_id)
    config = request.app.state.workspace.config.consent
    document["consent"] = consent_state(store, profile_id, config, None).as_json()
    return FastJSONResponse(document)
