"""Two installations (or test runs) on one Redis server with different db numbers do not hear each other's
channel-layer messages: pub/sub is shared by every db, so the layer's names carry the db number
(cpms/settings.py CHANNEL_LAYER_PREFIX)."""

import json
import os
import subprocess
import sys

from django.conf import settings


def layer_config(**env) -> dict:
    code = (
        "import django, json, os; os.environ['DJANGO_SETTINGS_MODULE'] = 'cpms.settings'; django.setup(); "
        "from django.conf import settings as s; print(json.dumps(s.CHANNEL_LAYERS['default']))"
    )
    environment = {k: v for k, v in os.environ.items() if k not in {"REDIS_URL", "CHANNEL_LAYER_PREFIX"}}
    result = subprocess.run(
        [sys.executable, "-c", code],
        env={**environment, **env},
        cwd=settings.BASE_DIR,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_the_prefix_is_the_redis_db_number_unless_set():
    assert layer_config(REDIS_URL="redis://127.0.0.1:6379/7")["CONFIG"]["prefix"] == "cpms7."
    assert layer_config(REDIS_URL="redis://127.0.0.1:6379")["CONFIG"]["prefix"] == "cpms0."
    config = layer_config(REDIS_URL="redis://127.0.0.1:6379/7", CHANNEL_LAYER_PREFIX="staging.")
    assert config["CONFIG"]["prefix"] == "staging."
