"""Contract section 2: a job may name any region of the partition unless the deployment restricts them."""

from __future__ import annotations

import uuid

from dispatcher.examples import example_job

M2 = "m2.StartBatchJob"


async def test_a_region_named_by_a_job_gets_its_client_and_limit_on_first_use(start_worker, broker, emulator):
    """No allow-list: eu-west-1 and ap-south-1 jobs run, each on a limiter of its own (operation, region)."""
    worker = await start_worker()
    ids = {region: f"job-{uuid.uuid4().hex[:12]}" for region in ("eu-west-1", "ap-south-1", "us-east-1")}
    for region, job_id in ids.items():
        await broker.publish(example_job(M2, job_id, region=region), M2)

    results = await broker.collect_ids(broker.results_queue, ids.values())

    assert {region: results[job_id][0].json()["outcome"] for region, job_id in ids.items()} == dict.fromkeys(
        ids, "succeeded"
    )
    assert {(M2, region) for region in ids} <= set(worker.parts.limiters)
    assert len(emulator.state.calls.to_json()) == len(ids)


async def test_an_allow_list_restricts_regions(start_worker, broker, emulator):
    """With DISPATCHER_AWS_REGIONS set, a region not listed is dead-lettered invalid and AWS is not called."""
    await start_worker(aws_regions=["eu-west-1"])
    allowed, refused = f"job-{uuid.uuid4().hex[:12]}", f"job-{uuid.uuid4().hex[:12]}"
    await broker.publish(example_job(M2, allowed, region="eu-west-1"), M2)
    await broker.publish(example_job(M2, refused, region="ap-south-1"), M2)

    results = await broker.collect_ids(broker.results_queue, [allowed, refused])

    assert results[allowed][0].json()["outcome"] == "succeeded"
    error = results[refused][0].json()["error"]
    assert (error["category"], error["code"]) == ("invalid", "RegionNotEnabled")
    assert len(emulator.state.calls.to_json()) == 1
