"""Azure ML's data collector format (shared.domain.collected_data) against the documented samples:
https://learn.microsoft.com/azure/machine-learning/how-to-collect-production-data ("Store collected data in Blob
Storage", "Data collector batching")."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from shared.domain import collected_data
from shared.domain.collected_data import Collection, EnvelopeError

# The documented `model_inputs` line (its line breaks removed, as the page says the .jsonl files have none).
DOCUMENTED_LINE = (
    '{"specversion":"1.0","id":"725aa8af-0834-415c-aaf5-c76d0c08f694",'
    '"source":"/subscriptions/bbbb1b1b-cc2c-dd3d-ee4e-ffffff5f5f5f/resourceGroups/mire2etesting/providers/'
    'Microsoft.MachineLearningServices/workspaces/mirmasterws/onlineEndpoints/localdev-endpoint/deployments/localdev",'
    '"type":"azureml.inference.inputs","datacontenttype":"application/json","time":"2022-12-01T08:51:30Z",'
    '"data":[{"label":"DRUG","pattern":"aspirin"},{"label":"DRUG","pattern":"trazodone"},'
    '{"label":"DRUG","pattern":"citalopram"}],'
    '"correlationid":"bbbb1111-cc22-3333-44dd-555555eeeeee","xrequestid":"bbbb1111-cc22-3333-44dd-555555eeeeee",'
    '"modelversion":"default","collectdatatype":"pandas.core.frame.DataFrame","agent":"monitoring-sdk/0.1.2",'
    '"contentrange":"bytes 0-116/117"}')
DOCUMENTED_FIELDS = set(json.loads(DOCUMENTED_LINE))
AT = datetime(2022, 12, 1, 8, 51, 30, tzinfo=UTC).timestamp()


def test_the_documented_line_parses_to_its_time_and_rows():
    line = collected_data.parse_line(DOCUMENTED_LINE)
    assert line.at == AT
    assert line.rows == [{"label": "DRUG", "pattern": "aspirin"}, {"label": "DRUG", "pattern": "trazodone"},
                         {"label": "DRUG", "pattern": "citalopram"}]


def test_what_we_write_has_the_documented_fields_and_byte_range():
    rows = [{"label": "DRUG", "pattern": "aspirin"}, {"label": "DRUG", "pattern": "trazodone"},
            {"label": "DRUG", "pattern": "citalopram"}]
    source = collected_data.deployment_source("/subscriptions/s/resourceGroups/r/providers/"
                                              "Microsoft.MachineLearningServices/workspaces/w", "ep", "blue")
    written = collected_data.envelope(Collection.MODEL_INPUTS, source=source, at=AT + 0.9, rows=rows,
                                      correlation_id="c1", agent="local.scoring_server")
    assert set(written) == DOCUMENTED_FIELDS
    assert written["contentrange"] == "bytes 0-116/117"  # the documented sample's rows are 117 bytes too
    assert written["time"] == "2022-12-01T08:51:30Z"  # whole seconds, UTC, as in the samples
    assert written["type"] == "azureml.inference.model_inputs"  # the "Data collector batching" sample's type
    assert written["source"].endswith("/workspaces/w/onlineEndpoints/ep/deployments/blue")
    assert written["correlationid"] == written["xrequestid"] == "c1"
    assert collected_data.parse_line(json.dumps(written)).rows == rows


def test_the_layout_is_endpoint_deployment_collection_and_hour():
    name = collected_data.blob_name("ep", "green", Collection.MODEL_OUTPUTS, AT)
    assert name.startswith("modelDataCollector/ep/green/model_outputs/2022/12/01/08/") and name.endswith(".jsonl")
    assert collected_data.window_hours(AT - 3600, AT) == ["2022/12/01/07/", "2022/12/01/08/"]


def test_a_window_keeps_the_lines_of_its_interval_and_skips_payloads_stored_apart():
    def line(at: str, rows: list) -> str:
        return json.dumps({"specversion": "1.0", "time": at, "data": rows})

    stored_apart = json.dumps({"specversion": "1.0", "time": "2022-12-01T08:51:31Z", "datainblob": "true",
                               "data": "https://account.blob.core.windows.net/c/blob"})
    text = "\n".join([line("2022-12-01T08:51:29Z", [{"a": 1}]), line("2022-12-01T08:51:30Z", [{"a": 2}, {"a": 3}]),
                      stored_apart, "", line("2022-12-01T08:51:40Z", [{"a": 4}])])
    assert collected_data.rows_in_window(text, AT, AT + 10) == [{"a": 2}, {"a": 3}]
    assert len(collected_data.rows_in_window(text)) == 4


@pytest.mark.parametrize("bad", ['{"time": "2022-12-01T08:51:30Z"}', '{"data": []}', "[1]", "not json",
                                 '{"time": "yesterday", "data": []}', '{"time": "2022-12-01T08:51:30Z", "data": [1]}'])
def test_a_line_that_is_not_an_envelope_is_named(bad):
    with pytest.raises(EnvelopeError, match="line 2"):
        collected_data.rows_in_window(DOCUMENTED_LINE + "\n" + bad)
