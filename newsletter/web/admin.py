"""The admin web UI under /admin (server-rendered)."""

from fastapi import APIRouter

router = APIRouter(include_in_schema=False)
