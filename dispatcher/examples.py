"""One valid job per operation: used by the demo, the docs and the tests."""

from __future__ import annotations

import copy
from typing import Any

MEMBERSHIP = "1f2e3d4c-5b6a-4978-8a9b-0c1d2e3f4a5b"

EXAMPLE_PARAMS: dict[str, dict[str, Any]] = {
    "quicksight.StartAutomationJob": {
        "AwsAccountId": "123456789012",
        "AutomationGroupId": "0f1e2d3c-4b5a-6978-8695-a4b3c2d1e0f9",
        "AutomationId": "a1b2c3d4-e5f6-7890-abcd-ef1234567890",
        "InputPayload": {"orderId": "A-1001", "lines": [1, 2]},
    },
    "lookoutequipment.StartDataIngestionJob": {
        "DatasetName": "pump-sensors",
        "IngestionInputConfiguration": {
            "S3InputConfiguration": {"Bucket": "factory-telemetry", "Prefix": "pumps/2026/"},
        },
        "RoleArn": "arn:aws:iam::123456789012:role/LookoutIngestion",
    },
    "datazone.StartDataSourceRun": {
        "domainIdentifier": "dzd_4p9n6sw4qt9xgn",
        "dataSourceIdentifier": "ds-5ab2c7",
    },
    "m2.StartBatchJob": {
        "applicationId": "app-billing",
        "batchJobIdentifier": {"fileBatchJobIdentifier": {"fileName": "NIGHTLY.JCL", "folderPath": "jcl/"}},
        "jobParams": {"RUNDATE": "20261123"},
    },
    "cleanrooms.StartProtectedJob": {
        "type": "PYSPARK",
        "membershipIdentifier": MEMBERSHIP,
        "jobParameters": {
            "analysisTemplateArn": (
                f"arn:aws:cleanrooms:us-east-1:123456789012:membership/{MEMBERSHIP}"
                "/analysistemplate/7a8b9c0d-1e2f-4a3b-8c4d-5e6f7a8b9c0d"
            ),
        },
        "resultConfiguration": {"outputConfiguration": {"member": {"accountId": "123456789012"}}},
    },
}


def example_job(routing_key: str, job_id: str, **extra: Any) -> dict[str, Any]:  # noqa: ANN401 - any JSON field
    """A complete job message body for one operation; its params are a copy the caller may change."""
    service, _, operation = routing_key.partition(".")
    return {
        "job_id": job_id,
        "service": service,
        "operation": operation,
        "params": copy.deepcopy(EXAMPLE_PARAMS[routing_key]),
        **extra,
    }
