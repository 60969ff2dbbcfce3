import json
import logging

from console.logging import JsonFormatter


def test_json_formatter_writes_one_object_with_extras():
    record = logging.makeLogRecord({"name": "console.test", "levelname": "WARNING", "levelno": 30,
                                    "msg": "ingest refused %s", "args": ("batch",), "agent": "support-bot"})
    line = JsonFormatter().format(record)
    payload = json.loads(line)
    assert payload["message"] == "ingest refused batch"
    assert payload["level"] == "WARNING"
    assert payload["logger"] == "console.test"
    assert payload["agent"] == "support-bot"
    assert "\n" not in line
