#!/bin/sh
# Apply migrations (idempotent), then run the given newsletter command.
set -e
newsletter db upgrade
exec newsletter "$@"
