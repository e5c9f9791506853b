"""The AWS Batch tier end to end against moto in server mode (S3, Batch with
{"batch": {"use_docker": false}}), a real broker, the API and a real job worker process.

moto completes (or, with MOTO_SIMPLE_BATCH_FAIL_AFTER, fails) a Batch job inside SubmitJob
without running anything, so in these tests the test itself is the compute environment: it
runs `geoflux batch-run` against moto's S3, as the container would. moto's SNS signs HTTP
deliveries with a placeholder signature and a certificate URL on the real AWS host, which
cannot verify; the completion is therefore signed here with a locally generated key, its
certificate served from a local HTTP server the API is configured to trust.
"""

import base64
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import uuid

import boto3
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from connectors.compute.sns_signature import string_to_sign
from services.devstack.local_process import free_port, port_is_open
from tests.conftest import wait_for
from tests.fakes import Answer, FakeReceiver
from tests.integration.geo_helpers import http, kill, start_api, start_cli, stop, worker_env

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

AWS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
SQUARE = {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 1], [0, 0]]]}
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/geoflux:1.4.0-test"


def aws(endpoint, service):
    return boto3.client(service, endpoint_url=endpoint, region_name="us-east-1",
                        aws_access_key_id="testing", aws_secret_access_key="testing")


def batch_resources(endpoint: str) -> dict:
    """A bucket, an IAM role, an unmanaged compute environment, a queue, a job definition."""
    n = uuid.uuid4().hex[:8]
    aws(endpoint, "s3").create_bucket(Bucket=f"geoflux-jobs-{n}")
    role = aws(endpoint, "iam").create_role(
        RoleName=f"batch-{n}", AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": []}))
    b = aws(endpoint, "batch")
    b.create_compute_environment(computeEnvironmentName=f"ce-{n}", type="UNMANAGED", state="ENABLED",
                                 serviceRole=role["Role"]["Arn"])
    b.create_job_queue(jobQueueName=f"q-{n}", state="ENABLED", priority=1,
                       computeEnvironmentOrder=[{"order": 1, "computeEnvironment": f"ce-{n}"}])
    b.register_job_definition(jobDefinitionName=f"geoflux-batch-{n}", type="container",
                              containerProperties={"image": IMAGE, "vcpus": 1, "memory": 512,
                                                   "command": ["batch-run"]})
    return {"bucket": f"geoflux-jobs-{n}", "queue": f"q-{n}", "definition": f"geoflux-batch-{n}"}


def batch_jobs(endpoint, res, job_id):
    pages = aws(endpoint, "batch").get_paginator("list_jobs").paginate(
        jobQueue=res["queue"], filters=[{"name": "JOB_NAME", "values": [f"geoflux-{job_id}-a*"]}])
    return [j for p in pages for j in p["jobSummaryList"]]


@pytest.fixture(scope="module")
def signer():
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.local.test")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(7).not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=1)).sign(key, hashes.SHA256()))
    server = FakeReceiver(Answer(200, cert.public_bytes(serialization.Encoding.PEM).decode()))
    yield key, server
    server.close()


def sns_message(key, cert_url, detail):
    msg = {"Type": "Notification", "MessageId": str(uuid.uuid4()),
           "TopicArn": "arn:aws:sns:us-east-1:123456789012:batch-events",
           "Message": json.dumps({"version": "0", "source": "aws.batch", "detail-type": "Batch Job State Change",
                                  "detail": detail}),
           "Timestamp": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
           "SignatureVersion": "2", "SigningCertURL": cert_url}
    msg["Signature"] = base64.b64encode(key.sign(string_to_sign(msg), padding.PKCS1v15(), hashes.SHA256())).decode()
    return msg


def env_for(endpoint, res, signer_server, **extra):
    return {**AWS, "GEOFLUX_BATCH_JOB_QUEUE": res["queue"], "GEOFLUX_BATCH_JOB_DEFINITION": res["definition"],
            "GEOFLUX_BATCH_BUCKET": res["bucket"], "GEOFLUX_BATCH_ENDPOINT_URL": endpoint,
            "GEOFLUX_JOBS_BATCH_THRESHOLD_BYTES": "10",  # every input here is "large"
            "GEOFLUX_JOBS_MIN_TIMEOUT_S": "1",
            "GEOFLUX_BATCH_SNS_CERT_URL_PATTERN": f"^{signer_server.url}/.*\\.pem$", **extra}


def submit(base, inputs):
    return http("POST", f"{base}/processes/buffer/execution", {"inputs": inputs},
                headers={"Prefer": "respond-async"})


def test_batch_end_to_end_duplicate_submit_starts_one_batch_job(kafka_settings, tmp_path, moto_endpoint, signer):
    key, cert_server = signer
    res = batch_resources(moto_endpoint)
    env = env_for(moto_endpoint, res, cert_server, GEOFLUX_BATCH_POLL_INTERVAL_S="600")  # SNS only
    port = free_port()
    api = start_api(kafka_settings, port, tmp_path, **env)
    worker = start_cli(kafka_settings, ["worker", "jobs", "--no-postgis"], "jobs", tmp_path, **env)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: port_is_open("127.0.0.1", port), 60, what="API port")
        status, st = submit(base, {"geometry": SQUARE, "distance_m": 500})
        assert status == 201, st
        job_id = st["jobID"]
        wait_for(lambda: batch_jobs(moto_endpoint, res, job_id), 60, what="a Batch job submitted")
        # the inputs were staged where the container reads them
        staged = json.loads(aws(moto_endpoint, "s3").get_object(
            Bucket=res["bucket"], Key=f"jobs/{job_id}/inputs.json")["Body"].read())
        assert staged["process_id"] == "buffer" and staged["inputs"]["distance_m"] == 500
        tags = aws(moto_endpoint, "batch").describe_jobs(jobs=[batch_jobs(moto_endpoint, res, job_id)[0]["jobId"]])["jobs"][0]["tags"]
        assert tags["geoflux:job_id"] == job_id and tags["geoflux:idempotency_key"].startswith("auto:")
        # the worker dies after submitting; its successor re-reads the request and must adopt
        # the Batch job it finds by name, not submit a second one
        wait_for(lambda: "image" in (http("GET", f"{base}/jobs/{job_id}")[1]["message"] or ""), 30,
                 what="the image recorded in the job status")
        kill(worker)
        worker = start_cli(kafka_settings, ["worker", "jobs", "--no-postgis"], "jobs2", tmp_path, **env)
        wait_for(lambda: "adopted" in (http("GET", f"{base}/jobs/{job_id}")[1]["message"] or ""), 60,
                 what="the restarted worker adopting the Batch job")
        found = batch_jobs(moto_endpoint, res, job_id)
        assert len(found) == 1, found
        batch_job_id = found[0]["jobId"]
        assert IMAGE in http("GET", f"{base}/jobs/{job_id}")[1]["message"]
        # the compute environment: run the container's entrypoint against moto's S3
        run = subprocess.run([sys.executable, "-m", "services.cli", "batch-run", "--job-id", job_id,
                              "--attempt", "1"], env={**worker_env(kafka_settings, **env),
                                                      "AWS_BATCH_JOB_ID": batch_job_id},
                             capture_output=True, text=True, timeout=60)
        assert run.returncode == 0, run.stderr
        assert json.loads(run.stdout.splitlines()[-1])["event"] == "done"  # JSON logs on stdout
        # moto's own SNS signature cannot verify: such a message is refused
        detail = {"jobName": found[0]["jobName"], "jobId": batch_job_id, "status": "SUCCEEDED",
                  "container": {"exitCode": 0, "logStreamName": f"geoflux-batch/default/{batch_job_id}",
                                "image": IMAGE}, "attempts": [{"container": {"exitCode": 0}}]}
        forged = dict(sns_message(key, f"{cert_server.url}/cert.pem", detail),
                      Signature="EXAMPLEpH+DcEwjAPg8O9mY8dReBSwksfg2S7WKQcikcNKWLQjwu6A4VbeS0QHVCkhRS7")
        assert http("POST", f"{base}/api/v1/webhooks/batch-sns", forged, key=None)[0] == 403
        moto_like = dict(forged, SigningCertURL="https://sns.us-east-1.amazonaws.com/SimpleNotificationService-x.pem")
        assert http("POST", f"{base}/api/v1/webhooks/batch-sns", moto_like, key=None)[0] == 403
        assert http("GET", f"{base}/jobs/{job_id}")[1]["status"] == "running"
        # the signed completion
        status, body = http("POST", f"{base}/api/v1/webhooks/batch-sns",
                            sns_message(key, f"{cert_server.url}/cert.pem", detail), key=None)
        assert status == 200 and body == {"job_id": job_id, "status": "SUCCEEDED"}
        done = wait_for(lambda: (s := http("GET", f"{base}/jobs/{job_id}")[1])["status"] == "successful" and s,
                        60, what="job successful")
        assert done["tier"] == "batch"
        out = http("GET", f"{base}/jobs/{job_id}/results")[1]
        assert out["geometry"]["type"] == "Polygon"
        assert len(batch_jobs(moto_endpoint, res, job_id)) == 1  # one Batch job, ever
    finally:
        stop(worker)
        stop(api)


@pytest.fixture(scope="module")
def failing_moto():
    """A second moto server whose Batch fails every job (MOTO_SIMPLE_BATCH_FAIL_AFTER=0)."""
    import urllib.request

    port = free_port()
    proc = subprocess.Popen([shutil.which("moto_server") or "moto_server", "-H", "127.0.0.1", "-p", str(port)],
                            env={**os.environ, "MOTO_SIMPLE_BATCH_FAIL_AFTER": "0"},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: port_is_open("127.0.0.1", port), 30, what="moto server")
        urllib.request.urlopen(urllib.request.Request(
            url + "/moto-api/config", method="POST", data=b'{"batch": {"use_docker": false}}',
            headers={"Content-Type": "application/json"}), timeout=10).read()
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


def test_batch_failure_found_by_describe_jobs_polling_retries_then_dead_letters(
        kafka_settings, tmp_path, failing_moto, signer):
    _key, cert_server = signer
    res = batch_resources(failing_moto)
    env = env_for(failing_moto, res, cert_server, GEOFLUX_BATCH_POLL_INTERVAL_S="0.3",
                  GEOFLUX_JOBS_MAX_ATTEMPTS="2", GEOFLUX_JOBS_BACKOFF_S="[0.2]")
    port = free_port()
    api = start_api(kafka_settings, port, tmp_path, **env)
    worker = start_cli(kafka_settings, ["worker", "jobs", "--no-postgis"], "jobs", tmp_path, **env)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: port_is_open("127.0.0.1", port), 60, what="API port")
        status, st = submit(base, {"geometry": SQUARE, "distance_m": 250})
        assert status == 201, st
        job_id = st["jobID"]
        failed = wait_for(lambda: (s := http("GET", f"{base}/jobs/{job_id}")[1])["status"] == "failed" and s,
                          60, what="job failed")
        assert "transient" in failed["message"] and "after 2 attempt" in failed["message"]
        found = batch_jobs(failing_moto, res, job_id)  # one Batch job per geoflux attempt
        assert sorted(j["jobName"] for j in found) == [f"geoflux-{job_id}-a1", f"geoflux-{job_id}-a2"]
        assert {j["status"] for j in found} == {"FAILED"}
        def mine() -> list:  # the API's DLQ view follows jobs.dlq: it shows the record a moment later
            entries = http("GET", f"{base}/api/v1/dlq?queue=jobs")[1]
            return [e for e in entries.get("items", []) if job_id in json.dumps(e)]

        dead = wait_for(mine, 60, what="the job's DLQ record in /api/v1/dlq")
        assert dead[0]["error_class"] == "transient"
    finally:
        stop(worker)
        stop(api)


def test_large_inputs_staged_in_s3_complete_on_batch(kafka_settings, tmp_path, moto_endpoint, signer):
    """2.5 MB and 15 MB inputs: the API stages them in the object store (S3 here), the topic
    carries the key, the worker hands them to Batch; DescribeJobs polling sees the end."""
    from tests.integration.job_inputs import line_of_size

    _key, cert_server = signer
    res = batch_resources(moto_endpoint)
    env = env_for(moto_endpoint, res, cert_server, GEOFLUX_BATCH_POLL_INTERVAL_S="0.5",
                  GEOFLUX_OBJECT_STORE_URL=f"s3://{res['bucket']}/objects",
                  GEOFLUX_OBJECT_STORE_ENDPOINT_URL=moto_endpoint)
    port = free_port()
    api = start_api(kafka_settings, port, tmp_path, **env)
    worker = start_cli(kafka_settings, ["worker", "jobs", "--no-postgis"], "jobs", tmp_path, **env)
    base = f"http://127.0.0.1:{port}"
    s3 = aws(moto_endpoint, "s3")
    try:
        wait_for(lambda: port_is_open("127.0.0.1", port), 90, what="API port")
        jobs = []
        for size in (2_500_000, 15_000_000):
            status, st = http("POST", f"{base}/processes/area-length/execution",
                              {"inputs": line_of_size(size)}, timeout=120, headers={"Prefer": "respond-async"})
            assert status == 201, st
            jobs.append(st["jobID"])
            # staged by the API under the object store's prefix, before the job was accepted
            assert s3.head_object(Bucket=res["bucket"], Key=f"objects/inputs/{st['jobID']}.json")[
                "ContentLength"] == size
        for job_id in jobs:
            found = wait_for(lambda: batch_jobs(moto_endpoint, res, job_id), 120, what="a Batch job submitted")
            run = subprocess.run([sys.executable, "-m", "services.cli", "batch-run", "--job-id", job_id,
                                  "--attempt", "1"], env={**worker_env(kafka_settings, **env),
                                                          "AWS_BATCH_JOB_ID": found[0]["jobId"]},
                                 capture_output=True, text=True, timeout=300)
            assert run.returncode == 0, run.stderr[-2000:]
        for job_id in jobs:
            done = wait_for(lambda: (s := http("GET", f"{base}/jobs/{job_id}")[1])["status"]
                            in ("successful", "failed") and s, 120, what="job finished")
            assert done["status"] == "successful" and done["tier"] == "batch", done
            assert http("GET", f"{base}/jobs/{job_id}/results")[1]["length_m"] > 1e10
        # staged inputs of finished jobs are deleted (Batch's own staging stays with its job)
        wait_for(lambda: "Contents" not in s3.list_objects_v2(Bucket=res["bucket"], Prefix="objects/inputs/"),
                 30, what="staged inputs deleted")
    finally:
        stop(worker)
        stop(api)
