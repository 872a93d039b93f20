#!/bin/sh
# A second database for Optuna's studies: MLflow and Optuna both keep an alembic_version table,
# so they cannot share one.
set -e
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
    -c "CREATE DATABASE \"${OPTUNA_DB:-optuna}\";"
