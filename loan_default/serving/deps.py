"""Dependencies the routes declare: the scorer loaded in the lifespan and the app's settings."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request

from loan_default.core.scorer import Scorer
from loan_default.serving.monitoring import Window
from loan_default.serving.settings import ServeSettings


# async: a plain attribute read should not take a trip through the thread pool.
async def get_scorer(request: Request) -> Scorer:
    scorer = getattr(request.app.state, "scorer", None)
    if scorer is None:
        raise HTTPException(503, "the model bundle is not loaded yet")
    return scorer


async def get_app_settings(request: Request) -> ServeSettings:
    return request.app.state.settings


async def get_monitor(request: Request) -> Window:
    return request.app.state.monitor


ScorerDep = Annotated[Scorer, Depends(get_scorer)]
SettingsDep = Annotated[ServeSettings, Depends(get_app_settings)]
MonitorDep = Annotated[Window, Depends(get_monitor)]
