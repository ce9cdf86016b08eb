"""The admin REST API under /api/v1 (bearer-token auth)."""

from fastapi import APIRouter

router = APIRouter(tags=["admin"])
